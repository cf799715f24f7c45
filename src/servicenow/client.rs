//! The ServiceNow Table API client shared by the incident notifier and the fetch job: auth
//! (basic, a fixed bearer token, or OAuth tokens fetched and refreshed before they expire),
//! and answers sorted into what to retry and what to give up on, with ServiceNow's own error
//! message. A hibernating instance answers 200 with an HTML page: that is an error here.

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
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Permanent { status, .. } => *status,
            Error::Transient { .. } => None,
        }
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
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
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
            request = self.authorize(request, refreshed).await?;
            let response = request.send().await.map_err(|e| Error::Transient {
                message: describe_error(e),
                retry_after: None,
            })?;
            let status = response.status().as_u16();
            if status == 401 && self.is_oauth() && !refreshed {
                refreshed = true;
                continue;
            }
            return read(response).await;
        }
    }

    fn is_oauth(&self) -> bool {
        matches!(
            self.auth,
            ServicenowAuth::OAuthClientCredentials { .. } | ServicenowAuth::OAuthPassword { .. }
        )
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        force: bool,
    ) -> Result<reqwest::RequestBuilder, Error> {
        Ok(match &self.auth {
            ServicenowAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            ServicenowAuth::Bearer(token) => request.bearer_auth(token.expose()),
            ServicenowAuth::OAuthClientCredentials { .. }
            | ServicenowAuth::OAuthPassword { .. } => {
                request.bearer_auth(self.token.get(force, self.fetch_token()).await?)
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
        let answer = read(response).await.map_err(|e| match e {
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
/// message when it sent one.
async fn read(response: reqwest::Response) -> Result<Response, Error> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let text = response.text().await.map_err(|e| Error::Transient {
        message: format!("HTTP {status}: reading the answer: {}", describe_error(e)),
        retry_after: None,
    })?;
    if (200..300).contains(&status) {
        if !is_json {
            return Err(Error::Transient {
                message: format!(
                    "HTTP {status} with {} instead of JSON (a hibernating developer instance answers so: wake it up): {}",
                    content_kind(&headers),
                    snippet(&text)
                ),
                retry_after: None,
            });
        }
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| Error::Transient {
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
