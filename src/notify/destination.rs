//! What every notifier type implements: render events into the exact request it would send
//! (for dry runs and rule tests), and deliver them, saying whether to retry or give up.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::notice::ReportNotice;
use crate::alerts::event::AlertEvent;
use crate::http::{Secrets, describe_error, retry_after, snippet};

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;

/// How a delivery went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The destination accepted it; `note` says anything worth logging (an incident number).
    Delivered { note: Option<String> },
    /// Worth trying again (timeouts, 408, 429, 5xx); `after` is the destination's own wait.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Refused for good (4xx): the configuration needs fixing. Kept as a dead letter.
    Refused { reason: String },
}

impl Delivery {
    pub fn delivered() -> Delivery {
        Delivery::Delivered { note: None }
    }

    /// The same outcome with `secrets` removed from what the destination said, before it is
    /// logged or kept as a dead letter.
    pub fn scrubbed(self, secrets: &Secrets) -> Delivery {
        match self {
            Delivery::Retry { reason, after } => Delivery::Retry {
                reason: secrets.scrub(&reason),
                after,
            },
            Delivery::Refused { reason } => Delivery::Refused {
                reason: secrets.scrub(&reason),
            },
            Delivery::Delivered { note } => Delivery::Delivered {
                note: note.map(|n| secrets.scrub(&n)),
            },
        }
    }
}

/// A request as it would be sent, secrets removed: the URL shows scheme and host only.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub method: &'static str,
    pub url: String,
    /// The body as sent (JSON pretty-printed).
    pub body: String,
    /// The words a person reads, for `runner test` to check.
    pub text: String,
}

pub trait Destination: Send + Sync {
    /// The notifier's name in the jobs file.
    fn name(&self) -> &str;

    /// Every secret part of this notifier's settings (URL path and query, user info, tokens,
    /// passwords), in any order: scrubbed from whatever the destination answers.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    /// Most events one message carries; more than one only where the API groups well.
    fn max_group(&self) -> usize {
        1
    }

    /// The requests `events` (at most `max_group`) would make, in order.
    fn render(&self, events: &[AlertEvent]) -> Vec<Rendered>;

    fn deliver<'a>(&'a self, events: &'a [AlertEvent]) -> DeliverFuture<'a>;

    /// For destinations that forget what is not said again (Alertmanager): how often to
    /// send the current state.
    fn keepalive_interval(&self) -> Option<Duration> {
        None
    }

    /// Sends the current state again (best effort, outside the outbox).
    fn keepalive<'a>(&'a self) -> DeliverFuture<'a> {
        Box::pin(async { Delivery::delivered() })
    }

    /// Alerts firing when runner starts, so a keepalive does not wait for their next event.
    fn restore(&self, _firing: &[AlertEvent]) {}

    /// Whether a report job may send reports here.
    fn takes_reports(&self) -> bool {
        false
    }

    /// The requests a report notice would make.
    fn render_report(&self, _notice: &ReportNotice) -> Vec<Rendered> {
        Vec::new()
    }

    fn deliver_report<'a>(&'a self, _notice: &'a ReportNotice) -> DeliverFuture<'a> {
        Box::pin(async {
            Delivery::Refused {
                reason: "this notifier type takes alerts, not reports".into(),
            }
        })
    }
}

/// Sorts an HTTP answer the way most notification APIs mean it: 2xx accepted; 408, 429 and 5xx
/// worth retrying (after `Retry-After` if given); any other status, and a request that could
/// not be built, refused.
pub async fn classify(result: Result<reqwest::Response, reqwest::Error>) -> Delivery {
    let response = match result {
        Ok(response) => response,
        // A request that cannot be built (a header name or URL reqwest refuses) fails the same
        // way every time: retrying it would hold the queue for ever.
        Err(e) if e.is_builder() => {
            return Delivery::Refused {
                reason: format!("the request cannot be built: {}", describe_error(e)),
            };
        }
        Err(e) => {
            return Delivery::Retry {
                reason: describe_error(e),
                after: None,
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        // Accepted as soon as the status line says so: reading the body first would widen the
        // window in which a kill makes the next start send it again.
        return Delivery::delivered();
    }
    let after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let said = snippet(&body);
    let reason = if said.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {} {said}", status.as_u16())
    };
    match status.as_u16() {
        408 | 429 | 500..=599 => Delivery::Retry { reason, after },
        _ => Delivery::Refused { reason },
    }
}

/// `s` cut to `max` characters, ending in `…` when cut, so a reader sees it was.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let cut = s
        .char_indices()
        .nth(keep)
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_refused_not_retried() {
        let client = crate::http::client(Duration::from_secs(1)).unwrap();
        let result = client
            .post("http://127.0.0.1:9/hook")
            .header("Bad Header", "x")
            .send()
            .await;
        match classify(result).await {
            Delivery::Refused { reason } => assert!(reason.contains("cannot be built"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncation_is_visible_and_respects_characters() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdefghij", 5), "abcd…");
        assert_eq!(truncate("ééééé", 3).chars().count(), 3);
    }
}
