//! The ServiceNow notifier: one incident per firing spell. Firing (and a repeat, which also
//! carries an escalation) finds the open incident whose `correlation_id` is the alert's
//! fingerprint, or creates one; resolved resolves that spell's incident with the configured
//! close fields. So a restart or a retry after a timeout never opens a second incident, and a
//! second runner that created one at the same moment cancels its own as a duplicate. The
//! incident's number is attached to the spell in the alert state and shown in its later
//! messages; the next spell opens its own.

use std::sync::Arc;

use serde_json::{Value, json};

use super::destination::{DeliverFuture, Delivery, Destination, Rendered};
use crate::alerts::event::{AlertEvent, EventKind, Incident};
use crate::config::ServicenowSettings;
use crate::http::redact_url;
use crate::servicenow::{Client, Error, IncidentRef};
use crate::vocab::Severity;

/// Records an incident on the alert it was opened for.
pub type AttachIncident = Arc<dyn Fn(&AlertEvent, &Incident) + Send + Sync>;

pub struct ServicenowNotifier {
    name: String,
    settings: ServicenowSettings,
    client: Client,
    attach: AttachIncident,
}

/// Impact and urgency (1 high, 2 medium, 3 low) from the alert's severity.
fn impact(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "1",
        Severity::Warning => "2",
        Severity::Info => "3",
    }
}

/// The incident a firing alert opens.
pub fn incident_fields(category: &str, event: &AlertEvent) -> Value {
    let mut description = event.explanation.clone();
    if !event.description.is_empty() {
        description.push_str("\n\n");
        description.push_str(&event.description);
    }
    description.push_str(&format!(
        "\n\nHost: {}\nAlert: {}\nSince: {}\nJob: {}\nRule file: {}\nFingerprint: {}\nRaised by runner.",
        event.host,
        event.name,
        event.active_since.format("%Y-%m-%d %H:%M:%S UTC"),
        event.job,
        event.rule_file,
        event.fingerprint,
    ));
    json!({
        "short_description": super::destination::truncate(&format!("[{}] {}", event.severity.as_str().to_uppercase(), event.summary), 160),
        "description": description,
        "impact": impact(event.severity),
        "urgency": impact(event.severity),
        "category": category,
        "correlation_id": event.fingerprint,
        "correlation_display": "runner",
    })
}

fn to_delivery(error: Error) -> Delivery {
    match error {
        Error::Transient {
            message,
            retry_after,
        } => Delivery::Retry {
            reason: message,
            after: retry_after,
        },
        Error::Permanent { message, .. } => Delivery::Refused { reason: message },
    }
}

impl ServicenowNotifier {
    pub fn new(
        name: &str,
        settings: &ServicenowSettings,
        attach: AttachIncident,
    ) -> Result<Self, String> {
        // Every part of its requests that could fail to build fails now, at `runner check`:
        // the instance URL and a bearer token (a line break from `${TOKEN}`).
        crate::http::request_url(&settings.base_url)?;
        if let crate::config::ServicenowAuth::Bearer(token) = &settings.auth {
            crate::http::header("authorization", &format!("Bearer {}", token.expose())).map_err(
                |_| "`token` is not a valid HTTP header value (a line break?)".to_string(),
            )?;
        }
        if let crate::config::ServicenowAuth::Basic { username, .. } = &settings.auth
            && username.contains(':')
        {
            return Err("`username` contains `:`, which Basic auth cannot carry".into());
        }
        Ok(ServicenowNotifier {
            name: name.to_string(),
            client: Client::new(settings)?,
            settings: settings.clone(),
            attach,
        })
    }

    /// The problem's open incident, created if there is none. Find-then-create is not atomic:
    /// two runners (an HA pair) that look at the same moment both create one. So after
    /// creating, the open incidents are listed again and the earliest stays, everywhere: a
    /// runner whose incident came second cancels it as a duplicate of the first.
    async fn open(&self, event: &AlertEvent) -> Result<(IncidentRef, String), Error> {
        let open = self.client.open_incidents(&event.fingerprint).await?;
        if let Some(first) = open.first() {
            let note = self.cancel_later(&open).await?;
            return Ok((
                first.clone(),
                format!("incident {} already open{note}", first.number),
            ));
        }
        let created = self
            .client
            .create_incident(&incident_fields(&self.settings.category, event))
            .await?;
        let open = self.client.open_incidents(&event.fingerprint).await?;
        match open.first() {
            Some(first) if first.sys_id != created.sys_id => {
                self.client.cancel_duplicate(&created.sys_id, first).await?;
                Ok((
                    first.clone(),
                    format!(
                        "incident {} already open: {} created at the same moment was canceled as its duplicate",
                        first.number, created.number
                    ),
                ))
            }
            _ => Ok((
                created.clone(),
                format!("incident {} created", created.number),
            )),
        }
    }

    /// Cancels every open incident of the problem but the earliest (left by a runner that
    /// stopped between creating and checking); what to add to the log note.
    async fn cancel_later(&self, open: &[IncidentRef]) -> Result<String, Error> {
        let Some((first, later)) = open.split_first() else {
            return Ok(String::new());
        };
        for duplicate in later {
            self.client
                .cancel_duplicate(&duplicate.sys_id, first)
                .await?;
        }
        Ok(if later.is_empty() {
            String::new()
        } else {
            format!(
                "; canceled {} as duplicates",
                later
                    .iter()
                    .map(|i| i.number.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    async fn resolve(&self, event: &AlertEvent) -> Result<Option<IncidentRef>, Error> {
        let known = event.incident.as_ref().map(|i| IncidentRef {
            sys_id: i.sys_id.clone(),
            number: i.number.clone(),
        });
        let incident = match known {
            Some(incident) => Some(incident),
            None => self
                .client
                .open_incidents(&event.fingerprint)
                .await?
                .into_iter()
                .next(),
        };
        let Some(incident) = incident else {
            return Ok(None);
        };
        let notes = format!("{}\n{}", self.settings.close_notes, event.explanation);
        let found = self
            .client
            .resolve_incident(&incident.sys_id, &self.settings.close_code, notes.trim())
            .await?;
        Ok(found.then_some(incident))
    }
}

impl Destination for ServicenowNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn secrets(&self) -> Vec<String> {
        use crate::config::ServicenowAuth;
        let mut secrets = crate::http::url_secrets(self.client.base_url());
        match &self.settings.auth {
            ServicenowAuth::Basic { username, password } => {
                secrets.push(password.expose().to_string());
                // What the `Authorization: Basic` header carries: an echo shows this.
                secrets.extend(crate::http::basic_auth_forms(username, password.expose()));
            }
            ServicenowAuth::Bearer(token) => secrets.push(token.expose().to_string()),
            ServicenowAuth::OAuthClientCredentials {
                client_id,
                client_secret,
            } => {
                secrets.push(client_secret.expose().to_string());
                // Sent in the form body; an instance behind a proxy may take them as Basic.
                secrets.extend(crate::http::basic_auth_forms(
                    client_id,
                    client_secret.expose(),
                ));
            }
            ServicenowAuth::OAuthPassword {
                client_id,
                client_secret,
                password,
                ..
            } => {
                secrets.push(client_secret.expose().to_string());
                secrets.push(password.expose().to_string());
                secrets.extend(crate::http::basic_auth_forms(
                    client_id,
                    client_secret.expose(),
                ));
            }
        }
        secrets
    }

    fn render(&self, events: &[AlertEvent]) -> Vec<Rendered> {
        let base = redact_url(self.client.base_url());
        let mut out = Vec::new();
        for event in events {
            match event.kind {
                EventKind::Firing | EventKind::Repeat => {
                    let fields = incident_fields(&self.settings.category, event);
                    out.push(Rendered {
                        method: "POST",
                        url: format!("{base}/api/now/table/incident (unless an open incident has correlation_id {})", event.short_fingerprint()),
                        text: format!(
                            "{}\n{}",
                            fields["short_description"].as_str().unwrap_or_default(),
                            fields["description"].as_str().unwrap_or_default()
                        ),
                        body: serde_json::to_string_pretty(&fields).unwrap_or_default(),
                    });
                }
                EventKind::Resolved => {
                    let target = match &event.incident {
                        Some(i) => i.number.clone(),
                        None => format!(
                            "the open incident with correlation_id {}",
                            event.short_fingerprint()
                        ),
                    };
                    let body = json!({
                        "state": crate::servicenow::RESOLVED_STATE,
                        "close_code": self.settings.close_code,
                        "close_notes": format!("{}\n{}", self.settings.close_notes, event.explanation).trim(),
                    });
                    out.push(Rendered {
                        method: "PATCH",
                        url: format!("{base}/api/now/table/incident/<sys_id of {target}>"),
                        text: body["close_notes"].as_str().unwrap_or_default().to_string(),
                        body: serde_json::to_string_pretty(&body).unwrap_or_default(),
                    });
                }
                // An incident is opened and resolved by the alert's spell; a failed action
                // is in the alert log and with the other notifiers.
                EventKind::Flapping | EventKind::ActionFailed => {}
            }
        }
        out
    }

    fn deliver<'a>(&'a self, events: &'a [AlertEvent]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let Some(event) = events.first() else {
                return Delivery::delivered();
            };
            match event.kind {
                EventKind::Firing | EventKind::Repeat => match self.open(event).await {
                    Ok((incident, note)) => {
                        (self.attach)(
                            event,
                            &Incident {
                                number: incident.number.clone(),
                                sys_id: incident.sys_id.clone(),
                            },
                        );
                        Delivery::Delivered { note: Some(note) }
                    }
                    Err(e) => to_delivery(e),
                },
                EventKind::Resolved => match self.resolve(event).await {
                    Ok(Some(incident)) => Delivery::Delivered {
                        note: Some(format!("incident {} resolved", incident.number)),
                    },
                    Ok(None) => Delivery::Delivered {
                        note: Some("no open incident to resolve".into()),
                    },
                    Err(e) => to_delivery(e),
                },
                // Flapping and a failed action change nothing in an incident.
                EventKind::Flapping | EventKind::ActionFailed => Delivery::delivered(),
            }
        })
    }
}
