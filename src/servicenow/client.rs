//! The ServiceNow Table API client shared by the incident notifier and the fetch job: auth
//! (basic, a fixed bearer token, or OAuth tokens fetched and refreshed before they expire),
//! and answers sorted into what to retry and what to give up on, with ServiceNow's own error
//! message. A hibernating instance answers 200 with an HTML page: that is an error here.
//!
//! Bodies are read chunk by chunk up to a byte cap, never whole: a server that sends more
//! than anyone asked for (or never stops) costs at most the cap, not the agent's memory.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, Url};
use serde_json::Value;

use crate::config::{ServicenowAuth, ServicenowSettings};
use crate::http::{TokenAnswer, TokenCache, describe_error, form_body, retry_after, snippet};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Worth trying again: timeouts, 429, 5xx, an HTML page instead of JSON.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help until someone fixes something (credentials, ACLs, a data
    /// policy, a bad query).
    #[error("{message}")]
    Permanent {
        status: Option<u16>,
        message: String,
    },
}

impl Error {
    /// The error with every form of `secrets` scrubbed from its message.
    fn scrubbed(self, secrets: &crate::http::Secrets) -> Error {
        match self {
            Error::Transient {
                message,
                retry_after,
            } => Error::Transient {
                message: secrets.scrub(&message),
                retry_after,
            },
            Error::Permanent { status, message } => Error::Permanent {
                status,
                message: secrets.scrub(&message),
            },
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Permanent { status, .. } => *status,
            Error::Transient { .. } => None,
        }
    }
}

/// Bytes of a successful answer read at most unless the caller says otherwise. The notifier's
/// answers (a lookup of at most 20 rows of three fields, a created or updated incident, an
/// OAuth token) are a few KiB; 1 MiB leaves room for an instance that sends whole records.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Bytes of an error answer (non-2xx) read at most: ServiceNow's error JSON or the start of an
/// HTML page is all a message needs, so the rest is left unread rather than refused.
const MAX_ERROR_BODY: usize = 64 << 10;

/// How much of a successful answer a request reads, and what to do when an answer is bigger.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub bytes: usize,
    /// Said after "the answer is larger than ...": what the operator can change.
    pub advice: &'static str,
}

impl Default for BodyLimit {
    fn default() -> Self {
        BodyLimit {
            bytes: DEFAULT_MAX_BODY,
            advice: "the instance sent far more than was asked for; check what answers at its address",
        }
    }
}

/// `1.5 MiB`, `64 KiB`, `900 bytes`: sizes in error messages.
pub fn human_bytes(bytes: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= KIB {
        format!("{:.1} KiB", bytes as f64 / KIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: ServicenowAuth,
    token: TokenCache,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &crate::http::redact_url(self.base.as_str()))
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(settings: &ServicenowSettings) -> Result<Client, String> {
        let http = crate::http::client(settings.timeout)?;
        // The URL's text is a secret as a whole (it may carry credentials): never echoed.
        let base = Url::parse(settings.base_url.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| "the ServiceNow instance is not an http(s) URL".to_string())?;
        Ok(Client {
            http,
            base,
            auth: settings.auth.clone(),
            token: TokenCache::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `<base>/<segments...>`, below whatever path the instance URL has.
    fn endpoint<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        // An http(s) URL always has path segments (checked in `new`).
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `<base>/api/now/table/<table>[/<sys_id>]` with query parameters.
    pub fn table_url(&self, table: &str, sys_id: Option<&str>, query: &[(&str, &str)]) -> Url {
        let mut url = self.endpoint(["api", "now", "table", table].into_iter().chain(sys_id));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends a request with auth; on a 401 with OAuth, fetches a fresh token and tries once more.
    /// Reads at most [`DEFAULT_MAX_BODY`] of the answer.
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Response, Error> {
        self.call_limited(method, url, body, BodyLimit::default())
            .await
    }

    /// [`Client::call`], reading at most `limit` of a successful answer: a bigger one is a
    /// permanent error (the same request would get the same answer again).
    pub async fn call_limited(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        limit: BodyLimit,
    ) -> Result<Response, Error> {
        let mut refreshed = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/json");
            if let Some(body) = body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(serde_json::to_vec(body).unwrap_or_default());
            }
            let (request, access_token) = self.authorize(request, refreshed).await?;
            let response = request.send().await.map_err(|e| Error::Transient {
                message: describe_error(e),
                retry_after: None,
            })?;
            let status = response.status().as_u16();
            if status == 401 && self.is_oauth() && !refreshed {
                refreshed = true;
                continue;
            }
            // An OAuth access token is fetched at run time, so it is not among the secrets
            // the notifier was built with: an answer that echoes the request is scrubbed of it
            // here, where it is known.
            return read(response, limit).await.map_err(|e| match access_token {
                Some(token) => e.scrubbed(&crate::http::Secrets::new([token])),
                None => e,
            });
        }
    }

    fn is_oauth(&self) -> bool {
        matches!(
            self.auth,
            ServicenowAuth::OAuthClientCredentials { .. } | ServicenowAuth::OAuthPassword { .. }
        )
    }

    /// The request with its credentials, and the OAuth access token it carries, if any.
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        force: bool,
    ) -> Result<(reqwest::RequestBuilder, Option<String>), Error> {
        Ok(match &self.auth {
            ServicenowAuth::Basic { username, password } => {
                (request.basic_auth(username, Some(password.expose())), None)
            }
            ServicenowAuth::Bearer(token) => (request.bearer_auth(token.expose()), None),
            ServicenowAuth::OAuthClientCredentials { .. }
            | ServicenowAuth::OAuthPassword { .. } => {
                let token = self.token.get(force, self.fetch_token()).await?;
                (request.bearer_auth(&token), Some(token))
            }
        })
    }

    /// `POST /oauth_token.do` with the client credentials (and the user, for the password grant).
    async fn fetch_token(&self) -> Result<(String, Duration), Error> {
        let body = match &self.auth {
            ServicenowAuth::OAuthClientCredentials {
                client_id,
                client_secret,
            } => form_body(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose()),
            ]),
            ServicenowAuth::OAuthPassword {
                client_id,
                client_secret,
                username,
                password,
            } => form_body(&[
                ("grant_type", "password"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose()),
                ("username", username),
                ("password", password.expose()),
            ]),
            _ => String::new(),
        };
        let response = self
            .http
            .post(self.endpoint(["oauth_token.do"]))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Transient {
                message: format!("OAuth token request: {}", describe_error(e)),
                retry_after: None,
            })?;
        let answer = read(response, BodyLimit::default())
            .await
            .map_err(|e| match e {
                Error::Permanent { status, message } => Error::Permanent {
                    status,
                    message: format!(
                        "OAuth token request refused: {message}; check client_id and client_secret"
                    ),
                },
                Error::Transient {
                    message,
                    retry_after,
                } => Error::Transient {
                    message: format!("OAuth token request: {message}"),
                    retry_after,
                },
            })?;
        let token: TokenAnswer =
            serde_json::from_value(answer.json).map_err(|e| Error::Permanent {
                status: Some(answer.status),
                message: format!("OAuth token answer without `access_token`: {e}"),
            })?;
        Ok((
            token.access_token,
            Duration::from_secs(token.expires_in.unwrap_or(1800)),
        ))
    }
}

/// Sorts an answer: JSON on 2xx is success; everything else is an error with ServiceNow's own
/// message when it sent one. A successful answer larger than `limit` is refused unread (by its
/// `Content-Length`) or as soon as the bytes read pass the limit.
async fn read(mut response: reqwest::Response, limit: BodyLimit) -> Result<Response, Error> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let success = (200..300).contains(&status);
    let too_large = || Error::Permanent {
        status: Some(status),
        message: format!(
            "HTTP {status}: the answer is larger than {}, the most runner reads for this request, so it was refused: {}",
            human_bytes(limit.bytes),
            limit.advice
        ),
    };
    let cap = if success { limit.bytes } else { MAX_ERROR_BODY };
    let declared = response.content_length().unwrap_or(0);
    if success && declared > limit.bytes as u64 {
        return Err(too_large());
    }
    let mut body: Vec<u8> = Vec::with_capacity(declared.min(cap as u64) as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - body.len();
                if chunk.len() > room {
                    if success {
                        return Err(too_large());
                    }
                    // An error page only needs its start for the message.
                    body.extend_from_slice(&chunk[..room]);
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Error::Transient {
                    message: format!("HTTP {status}: reading the answer: {}", describe_error(e)),
                    retry_after: None,
                });
            }
        }
    }
    let text = || String::from_utf8_lossy(&body).into_owned();
    if (200..300).contains(&status) {
        if !is_json {
            return Err(Error::Transient {
                message: format!(
                    "HTTP {status} with {} instead of JSON (a hibernating developer instance answers so: wake it up): {}",
                    content_kind(&headers),
                    snippet(&text())
                ),
                retry_after: None,
            });
        }
        let json = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| Error::Transient {
                message: format!("HTTP {status} with JSON that does not parse: {e}"),
                retry_after: None,
            })?
        };
        return Ok(Response {
            status,
            headers,
            json,
        });
    }
    let text = text();
    let message = error_message(&text).unwrap_or_else(|| snippet(&text));
    let message = format!(
        "HTTP {status}{}{message}",
        if message.is_empty() { "" } else { ": " }
    );
    match status {
        408 | 429 | 500..=599 => Err(Error::Transient {
            message,
            retry_after: retry_after(&headers),
        }),
        401 => Err(Error::Permanent {
            status: Some(status),
            message: format!("{message} (not authenticated: check the credentials)"),
        }),
        _ => Err(Error::Permanent {
            status: Some(status),
            message,
        }),
    }
}

fn content_kind(headers: &HeaderMap) -> String {
    match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(t) if t.to_ascii_lowercase().contains("html") => "an HTML page".to_string(),
        Some(t) => format!("`{t}`"),
        None => "no content type".to_string(),
    }
}

/// `message (detail)` from `{"error": {"message": ..., "detail": ...}, "status": "failure"}`.
fn error_message(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let error = value.get("error")?;
    let message = error.get("message")?.as_str()?.to_string();
    match error
        .get("detail")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        Some(detail) => Some(format!("{message} ({detail})")),
        None => Some(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servicenow_error_bodies_give_their_message() {
        assert_eq!(
            error_message(
                r#"{"error":{"message":"Data Policy Exception","detail":"Resolution code is mandatory"},"status":"failure"}"#
            ),
            Some("Data Policy Exception (Resolution code is mandatory)".into())
        );
        assert_eq!(
            error_message(r#"{"error":{"message":"User Not Authenticated","detail":""}}"#),
            Some("User Not Authenticated".into())
        );
        assert_eq!(error_message("<html>"), None);
    }
}
