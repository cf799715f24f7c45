//! The webhook notifier: each alert event POSTed as JSON in the Standard Webhooks shape
//! (`{"type": "alert.firing", "timestamp": ..., "data": <the event>}`), with extra headers and,
//! when a secret is set, signed: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`. A retry
//! sends the same `webhook-id` (the event id), so receivers can drop duplicates.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::destination::{DeliverFuture, Destination, Rendered, classify};
use super::notice::ReportNotice;
use crate::alerts::event::AlertEvent;
use crate::config::build::signing_key;
use crate::config::{DeliverySpec, Secret};
use crate::http::redact_url;

pub struct Webhook {
    name: String,
    url: Secret,
    headers: Vec<(String, Secret)>,
    /// The headers as sent, built once when the notifier is: one that cannot be sent is an
    /// error of `runner check`, not a failure at every delivery.
    built_headers: reqwest::header::HeaderMap,
    signing_secret: Option<Secret>,
    key: Option<Vec<u8>>,
    http: reqwest::Client,
}

/// `v1,<base64 signature>` of `<id>.<timestamp>.<body>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    // HMAC takes keys of any length; the error exists for other MACs.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .map_err(|e| format!("cannot sign with the signing secret: {e}"))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The JSON body for one event.
pub fn body(event: &AlertEvent) -> Value {
    json!({
        "type": format!("alert.{}", event.kind),
        "timestamp": event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": event,
    })
}

impl Webhook {
    pub fn new(
        name: &str,
        url: &Secret,
        headers: &[(String, Secret)],
        signing_secret: Option<&Secret>,
        delivery: &DeliverySpec,
    ) -> Result<Webhook, String> {
        let key = signing_secret
            .map(|s| signing_key(s.expose()))
            .transpose()?;
        if key.as_ref().is_some_and(Vec::is_empty) {
            // A bare `whsec_` decodes to no key: every signature would be forgeable.
            return Err("`signing_secret` is `whsec_` with no key after it".into());
        }
        crate::http::request_url(url.expose())?;
        let mut built_headers = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let (name, value) = crate::http::header(name, value.expose())?;
            built_headers.append(name, value);
        }
        let http = crate::http::client(delivery.timeout)?;
        Ok(Webhook {
            name: name.to_string(),
            url: Secret::new(url.expose().to_string()),
            built_headers,
            signing_secret: signing_secret.map(|s| Secret::new(s.expose().to_string())),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.expose().to_string())))
                .collect(),
            key,
            http,
        })
    }
}

impl Webhook {
    /// POSTs a body with the configured headers, signed when a secret is set.
    async fn post(&self, id: &str, body: &Value) -> super::destination::Delivery {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut request = self
            .http
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .headers(self.built_headers.clone());
        if let Some(key) = &self.key {
            let timestamp = chrono::Utc::now().timestamp();
            let signature = match sign(key, id, timestamp, &bytes) {
                Ok(signature) => signature,
                Err(reason) => return super::destination::Delivery::Refused { reason },
            };
            request = request
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature);
        }
        classify(request.body(bytes).send().await).await
    }
}

/// The JSON body for a report notice.
pub fn report_body(notice: &ReportNotice) -> Value {
    json!({
        "type": "report.ready",
        "timestamp": notice.to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": notice,
    })
}

impl Destination for Webhook {
    fn takes_reports(&self) -> bool {
        true
    }

    fn render_report(&self, notice: &ReportNotice) -> Vec<Rendered> {
        vec![Rendered {
            method: "POST",
            url: redact_url(self.url.expose()),
            body: serde_json::to_string_pretty(&report_body(notice)).unwrap_or_default(),
            text: notice.headline(),
        }]
    }

    fn deliver_report<'a>(&'a self, notice: &'a ReportNotice) -> DeliverFuture<'a> {
        Box::pin(async move { self.post(&notice.id, &report_body(notice)).await })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = crate::http::url_secrets(self.url.expose());
        secrets.extend(
            self.headers
                .iter()
                .map(|(_, value)| value.expose().to_string())
                .filter(|v| v.chars().count() >= 4),
        );
        // Not sent, but a receiver that misconfigured its own copy may quote it.
        secrets.extend(self.signing_secret.as_ref().map(|s| s.expose().to_string()));
        secrets
    }

    fn render(&self, events: &[AlertEvent]) -> Vec<Rendered> {
        events
            .iter()
            .map(|event| {
                // A program reads a webhook: the body is its message.
                let body = serde_json::to_string_pretty(&body(event)).unwrap_or_default();
                Rendered {
                    method: "POST",
                    url: redact_url(self.url.expose()),
                    text: body.clone(),
                    body,
                }
            })
            .collect()
    }

    fn deliver<'a>(&'a self, events: &'a [AlertEvent]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let Some(event) = events.first() else {
                return super::destination::Delivery::delivered();
            };
            self.post(&event.id, &body(event)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(signing_key("plain").unwrap(), b"plain");
        assert!(signing_key("whsec_!!!").is_err());
        // Without its padding, as the reference libraries accept it: the same key.
        let unpadded = signing_key("whsec_c2VjcmV0").unwrap();
        assert_eq!(unpadded, b"secret");
        assert_eq!(signing_key("whsec_c2VjcmV0IQ").unwrap(), b"secret!");
        assert_eq!(signing_key("whsec_c2VjcmV0IQ==").unwrap(), b"secret!");
    }
}
