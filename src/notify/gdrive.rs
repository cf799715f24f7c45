//! The Google Drive notifier: uploads a report's files into a folder. Access tokens come from
//! the OAuth refresh-token flow (a bare access token expires within the hour): fetched when
//! needed, renewed a minute before they expire and once more when Drive refuses one. Uploads are
//! multipart (metadata, then the file), which Drive takes up to 5 MB.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;

use super::destination::{DeliverFuture, Delivery, Destination, Rendered, classify};
use super::notice::ReportNotice;
use crate::alerts::event::AlertEvent;
use crate::config::{DeliverySpec, GdriveSettings, Secret};
use crate::http::{TokenAnswer, TokenCache, describe_error, form_body, redact_url, snippet};

/// Drive's limit for a multipart upload.
pub const MAX_MULTIPART_BYTES: u64 = 5 * 1024 * 1024;

pub struct Gdrive {
    name: String,
    settings: GdriveSettings,
    http: reqwest::Client,
    token: TokenCache,
    /// Files of a notice already uploaded, so a retry after a partial failure does not upload
    /// them twice.
    uploaded: Mutex<HashSet<(String, PathBuf)>>,
}

/// The MIME type of a report file.
pub fn mime_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html",
        Some("md") => "text/markdown",
        Some("json") => "application/json",
        _ => "text/plain",
    }
}

/// A `multipart/related` body: the metadata as JSON, then the file.
pub fn multipart(
    boundary: &str,
    metadata: &serde_json::Value,
    mime: &str,
    content: &[u8],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(content.len() + 512);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(metadata.to_string().as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: {mime}\r\n\r\n").as_bytes());
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

impl Gdrive {
    pub fn new(
        name: &str,
        settings: &GdriveSettings,
        delivery: &DeliverySpec,
    ) -> Result<Gdrive, String> {
        crate::http::request_url(&settings.token_url)?;
        crate::http::request_url(&settings.upload_url)?;
        // Uploads take longer than a notification.
        let http = crate::http::client(delivery.timeout.max(Duration::from_secs(30)))?;
        Ok(Gdrive {
            name: name.to_string(),
            settings: GdriveSettings {
                folder_id: settings.folder_id.clone(),
                client_id: settings.client_id.clone(),
                client_secret: Secret::new(settings.client_secret.expose().to_string()),
                refresh_token: Secret::new(settings.refresh_token.expose().to_string()),
                token_url: settings.token_url.clone(),
                upload_url: settings.upload_url.clone(),
            },
            http,
            token: TokenCache::default(),
            uploaded: Mutex::new(HashSet::new()),
        })
    }

    async fn access_token(&self, force: bool) -> Result<String, Delivery> {
        self.token.get(force, self.fetch_token()).await
    }

    /// The refresh-token grant: a new access token and how long it lives.
    async fn fetch_token(&self) -> Result<(String, Duration), Delivery> {
        let body = form_body(&[
            ("grant_type", "refresh_token"),
            ("client_id", &self.settings.client_id),
            ("client_secret", self.settings.client_secret.expose()),
            ("refresh_token", self.settings.refresh_token.expose()),
        ]);
        let result = self
            .http
            .post(&self.settings.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                return Err(Delivery::Retry {
                    reason: format!("OAuth token request: {}", describe_error(e)),
                    after: None,
                });
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let reason = format!("OAuth token request: HTTP {status} {}", snippet(&text));
            return Err(if status == 429 || status >= 500 {
                Delivery::Retry {
                    reason,
                    after: None,
                }
            } else {
                Delivery::Refused {
                    reason: format!(
                        "{reason}; the refresh token may be revoked or the client credentials wrong"
                    ),
                }
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(|e| Delivery::Refused {
            reason: format!("OAuth token answer without `access_token`: {e}"),
        })?;
        Ok((
            answer.access_token,
            Duration::from_secs(answer.expires_in.unwrap_or(3600)),
        ))
    }

    async fn upload(&self, path: &Path) -> Delivery {
        let content = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) => {
                return Delivery::Refused {
                    reason: format!("cannot read {}: {e}", path.display()),
                };
            }
        };
        if content.len() as u64 > MAX_MULTIPART_BYTES {
            return Delivery::Refused {
                reason: format!(
                    "{} is larger than Drive's 5 MB multipart limit",
                    path.display()
                ),
            };
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mime = mime_of(path);
        let metadata =
            json!({ "name": name, "parents": [self.settings.folder_id], "mimeType": mime });
        let boundary = format!("runner-{:016x}", fastrand::u64(..));
        let body = multipart(&boundary, &metadata, mime, &content);
        let url = format!(
            "{}?uploadType=multipart&supportsAllDrives=true",
            self.settings.upload_url
        );
        let mut refreshed = false;
        loop {
            let token = match self.access_token(refreshed).await {
                Ok(t) => t,
                Err(outcome) => return outcome,
            };
            let result = self
                .http
                .post(&url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(
                    CONTENT_TYPE,
                    format!("multipart/related; boundary={boundary}"),
                )
                .body(body.clone())
                .send()
                .await;
            if let Ok(r) = &result
                && r.status().as_u16() == 401
                && !refreshed
            {
                refreshed = true;
                continue;
            }
            // The access token is fetched at run time, so it is not among the secrets the
            // notifier was built with: an answer echoing the request is scrubbed of it here.
            let secrets = crate::http::Secrets::new([token]);
            // Drive says rate limits with 403 as well as 429.
            return match classify(result).await.scrubbed(&secrets) {
                Delivery::Refused { reason }
                    if reason.contains("RateLimitExceeded")
                        || reason.contains("rateLimitExceeded") =>
                {
                    Delivery::Retry {
                        reason,
                        after: None,
                    }
                }
                other => other,
            };
        }
    }
}

impl Destination for Gdrive {
    fn name(&self) -> &str {
        &self.name
    }

    fn secrets(&self) -> Vec<String> {
        // Both go URL-encoded in the token request (a refresh token starts `1//`); the forms
        // are added by `Secrets`. A token or upload URL may carry its own query token.
        let mut secrets: Vec<String> = [&self.settings.client_secret, &self.settings.refresh_token]
            .into_iter()
            .map(|s| s.expose().to_string())
            .collect();
        for url in [&self.settings.token_url, &self.settings.upload_url] {
            if let Ok(parsed) = reqwest::Url::parse(url) {
                secrets.extend(crate::http::url_credentials(&parsed));
                secrets.extend(crate::http::query_secrets(&parsed));
            }
        }
        secrets
    }

    fn render(&self, _events: &[AlertEvent]) -> Vec<Rendered> {
        Vec::new()
    }

    fn deliver<'a>(&'a self, _events: &'a [AlertEvent]) -> DeliverFuture<'a> {
        Box::pin(async {
            Delivery::Refused {
                reason: "Google Drive takes reports, not alerts".into(),
            }
        })
    }

    fn takes_reports(&self) -> bool {
        true
    }

    fn render_report(&self, notice: &ReportNotice) -> Vec<Rendered> {
        notice
            .files
            .iter()
            .map(|f| Rendered {
                method: "POST",
                url: format!(
                    "{}?uploadType=multipart (into folder {})",
                    redact_url(&self.settings.upload_url),
                    self.settings.folder_id
                ),
                body: format!("{} ({})", f.display(), mime_of(f)),
                text: f.display().to_string(),
            })
            .collect()
    }

    fn deliver_report<'a>(&'a self, notice: &'a ReportNotice) -> DeliverFuture<'a> {
        Box::pin(async move {
            let mut uploaded = 0;
            for file in &notice.files {
                let key = (notice.id.clone(), file.clone());
                if self
                    .uploaded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .contains(&key)
                {
                    continue;
                }
                match self.upload(file).await {
                    Delivery::Delivered { .. } => {
                        uploaded += 1;
                        self.uploaded
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(key);
                    }
                    other => return other,
                }
            }
            Delivery::Delivered {
                note: Some(format!("{uploaded} files uploaded to Google Drive")),
            }
        })
    }
}
