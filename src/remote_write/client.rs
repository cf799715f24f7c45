//! One remote-write request and what its answer means: 2xx acknowledged; 5xx, 429, a timeout
//! or no connection to be retried (after `Retry-After` when given); any other status refused
//! for good, so the batch is dropped. Answers are scrubbed of the URL's and headers' secrets.

use std::time::Duration;

use crate::config::RemoteWriteSpec;
use crate::http::{Secrets, describe_error, retry_after, snippet};

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
        let endpoint = spec.endpoint.client()?;
        let mut headers = endpoint.headers;
        for (name, value) in [
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ] {
            let (name, value) = crate::http::header(name, value)?;
            headers.insert(name, value);
        }
        Ok(Receiver {
            client: endpoint.client,
            shown: endpoint.shown,
            url: endpoint.url,
            headers,
            secrets: endpoint.secrets,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, Secret};

    fn spec(url: &str) -> RemoteWriteSpec {
        RemoteWriteSpec {
            endpoint: Endpoint {
                url: Secret::new(url.to_string()),
                headers: Vec::new(),
                ca_file: None,
                timeout: Duration::from_secs(10),
            },
            max_batch: 100,
            max_age: Duration::from_secs(3600),
        }
    }

    /// An http:// receiver's client does not load and keep the system's CA certificates
    /// (about 100 KiB of heap for good, measured with the process's allocator); an https://
    /// one does.
    #[test]
    fn only_an_https_receiver_keeps_the_systems_ca_certificates() {
        let before = crate::alloc::held_by_this_thread();
        let plain = Receiver::new(&spec("http://127.0.0.1:9/api/v1/write")).unwrap();
        let held = crate::alloc::held_by_this_thread() - before;
        assert!(held < 40 << 10, "{} KiB", held >> 10);
        drop(plain);
        let before = crate::alloc::held_by_this_thread();
        let tls = Receiver::new(&spec("https://127.0.0.1:9/api/v1/write")).unwrap();
        let held = crate::alloc::held_by_this_thread() - before;
        assert!(held > 40 << 10, "{} KiB", held >> 10);
        drop(tls);
    }
}
