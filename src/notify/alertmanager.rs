//! The Alertmanager notifier (API v2): `POST /api/v2/alerts` with each alert's labels
//! (`alertname`, `severity`, `host`, `job` and the rule's labels), annotations (summary,
//! description), `startsAt` and `endsAt`. Alertmanager forgets an alert whose `endsAt` passed,
//! so firing alerts are sent again every `resend_interval` with `endsAt` four intervals ahead;
//! a resolved alert is sent with `endsAt` = when it resolved, and repeated for a few intervals
//! in case one Alertmanager of an HA pair missed it. `severity` is a label, so an escalation
//! is a new Alertmanager alert: the label set it replaces goes in the same POST, resolved
//! (`endsAt` = now), so it does not linger until its own `endsAt`. Delivered when any of the
//! URLs accepted.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::destination::{DeliverFuture, Delivery, Destination, Rendered, classify};
use crate::alerts::event::{AlertEvent, EventKind};
use crate::config::DeliverySpec;
use crate::http::redact_url;
use crate::scheduler::clock::SharedClock;

/// How many resend intervals ahead a firing alert's `endsAt` is.
const ENDS_AFTER_INTERVALS: u32 = 4;
/// How many resend intervals a resolved alert is repeated.
const RESOLVED_REPEATS: u32 = 5;

pub struct Alertmanager {
    name: String,
    urls: Vec<String>,
    /// Each URL's `/api/v2/alerts`, built when the notifier is (so `runner check` sees a URL
    /// that cannot be sent to).
    endpoints: Vec<reqwest::Url>,
    resend_interval: Duration,
    http: reqwest::Client,
    clock: SharedClock,
    /// What Alertmanager should know now, by fingerprint: firing alerts, and resolved ones
    /// until their repeats are done.
    known: Mutex<BTreeMap<String, Known>>,
}

struct Known {
    event: AlertEvent,
    /// For resolved alerts: send until then.
    until: Option<DateTime<Utc>>,
}

/// `<url>/api/v2/alerts`, the API path added to the URL's own path with its query kept after it
/// (a proxy in front of Alertmanager may want `?token=`): appending the text would put the path
/// inside the query.
pub fn alerts_url(url: &str) -> Result<reqwest::Url, String> {
    let mut parsed = crate::http::request_url(url)?;
    let path = format!("{}/api/v2/alerts", parsed.path().trim_end_matches('/'));
    parsed.set_path(&path);
    Ok(parsed)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Alertmanager {
    pub fn new(
        name: &str,
        urls: &[String],
        resend_interval: Duration,
        delivery: &DeliverySpec,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let endpoints = urls
            .iter()
            .map(|url| alerts_url(url))
            .collect::<Result<Vec<_>, _>>()?;
        let http = crate::http::client(delivery.timeout)?;
        Ok(Alertmanager {
            name: name.to_string(),
            urls: urls.to_vec(),
            endpoints,
            resend_interval,
            http,
            clock,
            known: Mutex::new(BTreeMap::new()),
        })
    }

    fn ends_ahead(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.resend_interval * ENDS_AFTER_INTERVALS).unwrap_or_default()
    }

    /// One alert as Alertmanager takes it.
    pub fn alert(&self, event: &AlertEvent, now: DateTime<Utc>) -> Value {
        let mut labels = Map::new();
        for (k, v) in &event.labels {
            labels.insert(k.clone(), json!(v));
        }
        labels.insert("alertname".into(), json!(event.name));
        labels.insert("severity".into(), json!(event.severity.as_str()));
        labels.insert("host".into(), json!(event.host));
        labels.entry("job").or_insert_with(|| json!(event.job));
        let mut description = event.explanation.clone();
        if !event.description.is_empty() {
            description = format!("{}\n{description}", event.description);
        }
        let mut annotations = Map::new();
        annotations.insert("summary".into(), json!(event.summary));
        annotations.insert("description".into(), json!(description));
        annotations.insert("rule_file".into(), json!(event.rule_file));
        if let Some(incident) = &event.incident {
            annotations.insert("incident".into(), json!(incident.number));
        }
        let ends = match event.kind {
            EventKind::Resolved => event.at,
            _ => now.max(event.at) + self.ends_ahead(),
        };
        json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": time(event.active_since),
            "endsAt": time(ends),
        })
    }

    /// What one delivery posts: the label sets these events replace (an alert whose severity
    /// changed since Alertmanager last heard of it), resolved now, then the events.
    fn body(&self, events: &[AlertEvent], now: DateTime<Utc>) -> Value {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut alerts = Vec::new();
        for event in events {
            if matches!(event.kind, EventKind::Flapping | EventKind::ActionFailed) {
                continue;
            }
            if let Some(sent) = known.get(&event.fingerprint)
                && sent.until.is_none()
                && sent.event.severity != event.severity
            {
                let mut replaced = sent.event.clone();
                replaced.kind = EventKind::Resolved;
                replaced.at = now;
                alerts.push(self.alert(&replaced, now));
            }
        }
        alerts.extend(
            events
                .iter()
                .filter(|e| e.kind.is_lifecycle())
                .map(|e| self.alert(e, now)),
        );
        Value::Array(alerts)
    }

    fn remember(&self, events: &[AlertEvent], now: DateTime<Utc>) {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let repeat_for =
            chrono::Duration::from_std(self.resend_interval * RESOLVED_REPEATS).unwrap_or_default();
        for event in events {
            match event.kind {
                EventKind::Firing | EventKind::Repeat => {
                    known.insert(
                        event.fingerprint.clone(),
                        Known {
                            event: event.clone(),
                            until: None,
                        },
                    );
                }
                EventKind::Resolved => {
                    known.insert(
                        event.fingerprint.clone(),
                        Known {
                            event: event.clone(),
                            until: Some(now + repeat_for),
                        },
                    );
                }
                EventKind::Flapping | EventKind::ActionFailed => {}
            }
        }
    }

    async fn post(&self, body: &Value) -> Delivery {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut outcomes = Vec::new();
        for (url, endpoint) in self.urls.iter().zip(&self.endpoints) {
            let result = self
                .http
                .post(endpoint.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
                .send()
                .await;
            let outcome = classify(result).await;
            if matches!(outcome, Delivery::Delivered { .. }) {
                // The members of an HA pair gossip: one that took it is enough.
                return Delivery::delivered();
            }
            outcomes.push((redact_url(url), outcome));
        }
        let reasons = outcomes
            .iter()
            .map(|(url, o)| match o {
                Delivery::Retry { reason, .. } | Delivery::Refused { reason } => {
                    format!("{url}: {reason}")
                }
                Delivery::Delivered { .. } => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        if outcomes
            .iter()
            .any(|(_, o)| matches!(o, Delivery::Retry { .. }))
        {
            let after = outcomes
                .iter()
                .filter_map(|(_, o)| match o {
                    Delivery::Retry { after, .. } => *after,
                    _ => None,
                })
                .max();
            Delivery::Retry {
                reason: reasons,
                after,
            }
        } else {
            Delivery::Refused { reason: reasons }
        }
    }
}

impl Destination for Alertmanager {
    fn name(&self) -> &str {
        &self.name
    }

    fn secrets(&self) -> Vec<String> {
        // Alertmanager's own paths are not secret; credentials in a URL (and the Basic header
        // reqwest makes of them) and query values (a proxy's `?token=`) are.
        self.endpoints
            .iter()
            .flat_map(|url| {
                let mut parts = crate::http::url_credentials(url);
                parts.extend(crate::http::query_secrets(url));
                parts
            })
            .collect()
    }

    fn max_group(&self) -> usize {
        // One POST takes a list; a backlog goes out in few requests.
        100
    }

    fn render(&self, events: &[AlertEvent]) -> Vec<Rendered> {
        if !events.iter().any(|e| e.kind.is_lifecycle()) {
            return Vec::new();
        }
        let now = self.clock.now();
        let body = self.body(events, now);
        self.urls
            .iter()
            .take(1)
            .map(|url| Rendered {
                method: "POST",
                url: format!("{}/api/v2/alerts", redact_url(url)),
                body: serde_json::to_string_pretty(&body).unwrap_or_default(),
                text: events
                    .iter()
                    .map(|e| format!("{} {}: {}", e.name, e.summary, e.explanation))
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
            .collect()
    }

    fn deliver<'a>(&'a self, events: &'a [AlertEvent]) -> DeliverFuture<'a> {
        Box::pin(async move {
            // Alertmanager holds alerts, not notices: a failed action alone has nothing to
            // post, and posting its alert would tell it the alert fires (it may have resolved).
            if !events.iter().any(|e| e.kind.is_lifecycle()) {
                return Delivery::delivered();
            }
            let now = self.clock.now();
            let body = self.body(events, now);
            let outcome = self.post(&body).await;
            if matches!(outcome, Delivery::Delivered { .. }) {
                self.remember(events, now);
            }
            outcome
        })
    }

    fn restore(&self, firing: &[AlertEvent]) {
        self.remember(firing, self.clock.now());
    }

    fn keepalive_interval(&self) -> Option<Duration> {
        Some(self.resend_interval)
    }

    fn keepalive<'a>(&'a self) -> DeliverFuture<'a> {
        Box::pin(async move {
            let now = self.clock.now();
            let alerts: Vec<Value> = {
                let mut known = self
                    .known
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                known.retain(|_, k| k.until.is_none_or(|until| until > now));
                known.values().map(|k| self.alert(&k.event, now)).collect()
            };
            if alerts.is_empty() {
                return Delivery::delivered();
            }
            self.post(&Value::Array(alerts)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::alerts_url;

    #[test]
    fn the_api_path_goes_before_the_query() {
        assert_eq!(
            alerts_url("http://am:9093/prefix?token=abc")
                .unwrap()
                .as_str(),
            "http://am:9093/prefix/api/v2/alerts?token=abc"
        );
        assert_eq!(
            alerts_url("http://am:9093").unwrap().as_str(),
            "http://am:9093/api/v2/alerts"
        );
        assert!(alerts_url("not a url").is_err());
    }
}
