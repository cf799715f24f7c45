//! One remote-write request and what its answer means: 2xx acknowledged; 5xx, 429, a timeout
//! or no connection to be retried (after `Retry-After` when given); any other status refused
//! for good, so the batch is dropped. Answers are scrubbed of the URL's and headers' secrets.

use std::time::Duration;

use crate::config::RemoteWriteSpec;
use crate::http::{Secrets, describe_error, redact_url, retry_after, snippet};

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Accepted,
    /// Worth sending again: after `after` when the receiver said so.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// Refused for good (a 4xx other than 429).
    Rejected {
        why: String,
    },
}

/// The receiver: a client with its TLS and timeout, and the request's fixed headers.
#[derive(Debug)]
pub struct Receiver {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    secrets: Secrets,
    /// What may be shown of the URL.
    pub shown: String,
}

impl Receiver {
    pub fn new(spec: &RemoteWriteSpec) -> Result<Receiver, String> {
        let url = crate::http::request_url(spec.url.expose())?;
        let mut builder = crate::http::client_builder()
            .timeout(spec.timeout)
            .connect_timeout(spec.timeout.min(Duration::from_secs(10)));
        if let Some(ca_file) = &spec.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| format!("cannot read ca_file {}: {e}", ca_file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {}", ca_file.display(), describe_error(e)))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(describe_error)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in [
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ] {
            let (name, value) = crate::http::header(name, value)?;
            headers.insert(name, value);
        }
        for (name, value) in &spec.headers {
            let (name, value) = crate::http::header(name, value.expose())?;
            headers.insert(name, value);
        }
        let secrets = Secrets::new(
            crate::http::url_secrets(spec.url.expose())
                .into_iter()
                .chain(spec.headers.iter().flat_map(|(_, v)| {
                    let value = v.expose().to_string();
                    // `Bearer x` and `Basic x`: the credential alone may be echoed too.
                    let credential = value.split_once(' ').map(|(_, c)| c.to_string());
                    std::iter::once(value).chain(credential)
                })),
        );
        Ok(Receiver {
            client,
            shown: redact_url(url.as_str()),
            url,
            headers,
            secrets,
        })
    }

    /// Sends one snappy-compressed `WriteRequest`.
    pub async fn send(&self, body: Vec<u8>) -> Answer {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                return Answer::Retry {
                    after: None,
                    why: self.secrets.scrub(&describe_error(e)),
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Answer::Accepted;
        }
        let after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let why = self
            .secrets
            .scrub(&format!("HTTP {}: {}", status.as_u16(), snippet(&body)));
        if status.is_server_error() || status.as_u16() == 429 {
            Answer::Retry { after, why }
        } else {
            Answer::Rejected { why }
        }
    }
}
