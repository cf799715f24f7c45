//! Checking `remote_write` (and the HTTP endpoint settings a report's `source:` shares with
//! it): the URL, the auth (its secrets from the environment, present),
//! every header as it will be sent, the CA file, and the batch and age limits with defaults.

use std::time::Duration;

use super::Builder;
use indexmap::IndexMap;

use crate::config::raw::{BasicAuthConfig, RemoteWriteConfig, Text};
use crate::config::{Endpoint, RemoteWriteSpec, Secret, resolve_path};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Prometheus' own `max_samples_per_send`.
const DEFAULT_MAX_BATCH: u64 = 2000;
/// Prometheus keeps about two hours in its head block and refuses samples older than that.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2 * 3600);

/// The parts of an HTTP endpoint's settings that `remote_write` and a report's `source:`
/// share, borrowed from either.
pub(super) struct EndpointConfig<'a> {
    pub url: &'a Text,
    pub bearer_token: Option<&'a Text>,
    pub basic_auth: Option<&'a BasicAuthConfig>,
    pub ca_file: Option<&'a Text>,
    pub headers: &'a IndexMap<String, Text>,
    pub timeout: Option<&'a Text>,
    /// The URL's key: `url` in `remote_write`, `prometheus` in `source`.
    pub url_key: &'static str,
    /// What the URL should look like, for the error's help.
    pub url_help: &'static str,
}

impl Builder<'_> {
    /// Checks an endpoint's URL, auth (secrets from the environment, present), headers as
    /// they will be sent, CA file and timeout; `field` names the section in messages.
    pub(super) fn endpoint(
        &mut self,
        field: &str,
        config: &EndpointConfig<'_>,
    ) -> Option<Endpoint> {
        let url_field = format!("{field}.{}", config.url_key);
        let url = self.expand(config.url, &url_field);
        if let Some(url) = &url
            && let Err(message) = crate::http::request_url(&url.value)
        {
            self.error_help(&config.url.referenced, &url_field, message, config.url_help);
        }
        let mut headers: Vec<(String, Secret)> = Vec::new();
        let mut ok = true;
        match (config.bearer_token, config.basic_auth) {
            (Some(_), Some(_)) => {
                self.error(
                    &config.url.referenced,
                    field,
                    format!("`{field}` takes `bearer_token` or `basic_auth`, not both"),
                );
                ok = false;
            }
            (Some(token), None) => {
                match self.secret_from_env(token, &format!("{field}.bearer_token")) {
                    Some(token) => headers.push((
                        "Authorization".into(),
                        Secret::new(format!("Bearer {}", token.expose())),
                    )),
                    None => ok = false,
                }
            }
            (None, Some(basic)) => {
                let username =
                    self.string(&basic.username, &format!("{field}.basic_auth.username"));
                let password =
                    self.secret_from_env(&basic.password, &format!("{field}.basic_auth.password"));
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
        for (name, text) in config.headers {
            let header_field = format!("{field}.headers.{name}");
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
        let ca_field = format!("{field}.ca_file");
        let ca_file = match config.ca_file {
            Some(text) => {
                let path = self.existing_path(text, &ca_field, "CA file")?;
                if let Ok(pem) = std::fs::read(&path)
                    && reqwest::Certificate::from_pem_bundle(&pem)
                        .map_or(true, |certs| certs.is_empty())
                {
                    self.error(
                        &text.referenced,
                        &ca_field,
                        format!("`{}` holds no PEM certificate", path.display()),
                    );
                    ok = false;
                }
                Some(resolve_path(&self.base_dir, &path.to_string_lossy()))
            }
            None => None,
        };
        let timeout_field = format!("{field}.timeout");
        let timeout = self.optional_duration(config.timeout, &timeout_field, DEFAULT_TIMEOUT);
        if let (Some(Duration::ZERO), Some(text)) = (timeout, config.timeout) {
            self.error(
                &text.referenced,
                &timeout_field,
                "`timeout` must be longer than 0s",
            );
            ok = false;
        }
        let url = url?;
        if !ok || crate::http::request_url(&url.value).is_err() {
            return None;
        }
        Some(Endpoint {
            url: Secret::new(url.value),
            headers,
            ca_file,
            timeout: timeout?,
        })
    }

    pub(super) fn remote_write(&mut self, config: &RemoteWriteConfig) -> Option<RemoteWriteSpec> {
        let endpoint = self.endpoint(
            "remote_write",
            &EndpointConfig {
                url: &config.url,
                bearer_token: config.bearer_token.as_ref(),
                basic_auth: config.basic_auth.as_ref(),
                ca_file: config.ca_file.as_ref(),
                headers: &config.headers,
                timeout: config.timeout.as_ref(),
                url_key: "url",
                url_help: "the receiver's write endpoint, e.g. `http://127.0.0.1:9090/api/v1/write`",
            },
        );
        let max_age = self.optional_duration(
            config.max_age.as_ref(),
            "remote_write.max_age",
            DEFAULT_MAX_AGE,
        );
        let mut ok = true;
        if let (Some(Duration::ZERO), Some(text)) = (max_age, &config.max_age) {
            self.error(
                &text.referenced,
                "remote_write.max_age",
                "`max_age` must be longer than 0s",
            );
            ok = false;
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
        let endpoint = endpoint?;
        if !ok {
            return None;
        }
        Some(RemoteWriteSpec {
            endpoint,
            max_batch: usize::try_from(max_batch?).unwrap_or(usize::MAX),
            max_age: max_age?,
        })
    }
}
