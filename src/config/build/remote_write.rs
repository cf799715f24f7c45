//! Checking `remote_write`: the URL, the auth (its secrets from the environment, present),
//! every header as it will be sent, the CA file, and the batch and age limits with defaults.

use std::time::Duration;

use super::Builder;
use crate::config::RemoteWriteSpec;
use crate::config::raw::RemoteWriteConfig;
use crate::config::{Secret, resolve_path};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Prometheus' own `max_samples_per_send`.
const DEFAULT_MAX_BATCH: u64 = 2000;
/// Prometheus keeps about two hours in its head block and refuses samples older than that.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2 * 3600);

impl Builder<'_> {
    pub(super) fn remote_write(&mut self, config: &RemoteWriteConfig) -> Option<RemoteWriteSpec> {
        let field = "remote_write";
        let url = self.expand(&config.url, "remote_write.url");
        if let Some(url) = &url
            && let Err(message) = crate::http::request_url(&url.value)
        {
            self.error_help(
                &config.url.referenced,
                "remote_write.url",
                message,
                "the receiver's write endpoint, e.g. `http://127.0.0.1:9090/api/v1/write`",
            );
        }
        let mut headers: Vec<(String, Secret)> = Vec::new();
        let mut ok = true;
        match (&config.bearer_token, &config.basic_auth) {
            (Some(_), Some(_)) => {
                self.error(
                    &config.url.referenced,
                    field,
                    "`remote_write` takes `bearer_token` or `basic_auth`, not both",
                );
                ok = false;
            }
            (Some(token), None) => match self.secret_from_env(token, "remote_write.bearer_token") {
                Some(token) => headers.push((
                    "Authorization".into(),
                    Secret::new(format!("Bearer {}", token.expose())),
                )),
                None => ok = false,
            },
            (None, Some(basic)) => {
                let username = self.string(&basic.username, "remote_write.basic_auth.username");
                let password =
                    self.secret_from_env(&basic.password, "remote_write.basic_auth.password");
                match (username, password) {
                    (Some(username), Some(password)) => {
                        use base64::Engine;
                        let pair = format!("{username}:{}", password.expose());
                        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                        headers.push((
                            "Authorization".into(),
                            Secret::new(format!("Basic {encoded}")),
                        ));
                    }
                    _ => ok = false,
                }
            }
            (None, None) => {}
        }
        for (name, text) in &config.headers {
            let header_field = format!("remote_write.headers.{name}");
            let Some(value) = self.string(text, &header_field) else {
                ok = false;
                continue;
            };
            if let Err(message) = crate::http::header(name, &value) {
                self.error(&text.referenced, &header_field, message);
                ok = false;
                continue;
            }
            if name.eq_ignore_ascii_case("authorization") && !headers.is_empty() {
                self.error(
                    &text.referenced,
                    &header_field,
                    "`Authorization` is set by `bearer_token` or `basic_auth` already",
                );
                ok = false;
                continue;
            }
            headers.push((name.clone(), Secret::new(value)));
        }
        let ca_file = match &config.ca_file {
            Some(text) => {
                let path = self.existing_path(text, "remote_write.ca_file", "CA file")?;
                if let Ok(pem) = std::fs::read(&path)
                    && reqwest::Certificate::from_pem_bundle(&pem)
                        .map_or(true, |certs| certs.is_empty())
                {
                    self.error(
                        &text.referenced,
                        "remote_write.ca_file",
                        format!("`{}` holds no PEM certificate", path.display()),
                    );
                    ok = false;
                }
                Some(resolve_path(&self.base_dir, &path.to_string_lossy()))
            }
            None => None,
        };
        let timeout = self.optional_duration(
            config.timeout.as_ref(),
            "remote_write.timeout",
            DEFAULT_TIMEOUT,
        );
        let max_age = self.optional_duration(
            config.max_age.as_ref(),
            "remote_write.max_age",
            DEFAULT_MAX_AGE,
        );
        for (value, text, name) in [
            (timeout, &config.timeout, "timeout"),
            (max_age, &config.max_age, "max_age"),
        ] {
            if let (Some(Duration::ZERO), Some(text)) = (value, text) {
                self.error(
                    &text.referenced,
                    &format!("remote_write.{name}"),
                    format!("`{name}` must be longer than 0s"),
                );
                ok = false;
            }
        }
        let max_batch = match &config.max_batch {
            Some(n) if n.value == 0 => {
                self.error(
                    &n.referenced,
                    "remote_write.max_batch",
                    "`max_batch` must be at least 1",
                );
                None
            }
            Some(n) => Some(n.value),
            None => Some(DEFAULT_MAX_BATCH),
        };
        let url = url?;
        if !ok || crate::http::request_url(&url.value).is_err() {
            return None;
        }
        Some(RemoteWriteSpec {
            url: Secret::new(url.value),
            headers,
            ca_file,
            timeout: timeout?,
            max_batch: usize::try_from(max_batch?).unwrap_or(usize::MAX),
            max_age: max_age?,
        })
    }
}
