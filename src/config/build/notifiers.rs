//! Checking each notifier: its secrets (an empty one turns it off with a warning), URLs, auth,
//! and the delivery settings every notifier has, with each type's defaults.

use std::time::Duration;

use serde_saphyr::Location;

use super::Builder;
use crate::config::env::Expanded;
use crate::config::raw::{NotifierConfig, ServicenowNotifierConfig, Text};
use crate::config::{
    DeliverySpec, GdriveSettings, NotifierSettings, NotifierSpec, Secret, ServicenowAuth,
    ServicenowSettings,
};
use crate::vocab::Severity;

const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
const DEFAULT_BURST: u32 = 3;
/// A day: long enough to outlast a destination's maintenance window or a weekend night.
const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Slack asks for about one message a second per webhook.
const SLACK_MAX_PER_SECOND: f64 = 1.0;
const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_UPLOAD_URL: &str = "https://www.googleapis.com/upload/drive/v3/files";

impl Builder<'_> {
    pub(super) fn notifier(&mut self, name: &Text, config: NotifierConfig) -> Option<NotifierSpec> {
        let field = format!("notifiers.{}", name.value);
        let delivery = self.delivery(&config, &field)?;
        let min_severity = config.common().min_severity;
        let mut off: Option<(String, Location, String)> = None;
        let mut switch_off = |reason: String, at: Location, vars: &[String]| {
            if off.is_none() {
                let help = if vars.is_empty() {
                    "fill it in to turn the notifier on".to_string()
                } else {
                    format!("set {} to turn the notifier on", vars.join(" and "))
                };
                off = Some((reason, at, help));
            }
        };
        let settings = match config {
            NotifierConfig::Slack(n) => {
                let url = self.expand(&n.webhook_url, &format!("{field}.webhook_url"))?;
                if url.value.is_empty() {
                    switch_off(
                        "`webhook_url` is empty".into(),
                        n.webhook_url.referenced,
                        &url.vars,
                    );
                } else {
                    self.check_url(&url.value, &n.webhook_url, &format!("{field}.webhook_url"));
                }
                NotifierSettings::Slack {
                    webhook_url: Secret::new(url.value),
                    template: match &n.template {
                        Some(t) => {
                            Some(self.existing_path(t, &format!("{field}.template"), "template")?)
                        }
                        None => None,
                    },
                }
            }
            NotifierConfig::Webhook(n) => {
                let url = self.expand(&n.url, &format!("{field}.url"))?;
                if url.value.is_empty() {
                    switch_off("`url` is empty".into(), n.url.referenced, &url.vars);
                } else {
                    self.check_url(&url.value, &n.url, &format!("{field}.url"));
                }
                let mut headers = Vec::new();
                for (key, value) in &n.headers {
                    let value = self.string(value, &format!("{field}.headers.{key}"))?;
                    headers.push((key.clone(), Secret::new(value)));
                }
                let signing_secret = match &n.signing_secret {
                    Some(s) => Some(
                        self.string(s, &format!("{field}.signing_secret"))
                            .map(Secret::new)?,
                    )
                    .filter(|s| !s.is_empty()),
                    None => None,
                };
                if let (Some(secret), Some(written)) = (&signing_secret, &n.signing_secret)
                    && let Err(e) = signing_key(secret.expose())
                {
                    self.error_help(
                        &written.referenced,
                        &format!("{field}.signing_secret"),
                        &e,
                        "a Standard Webhooks secret is `whsec_` and base64 of random bytes; any other text is used as the key as it is",
                    );
                }
                NotifierSettings::Webhook {
                    url: Secret::new(url.value),
                    headers,
                    signing_secret,
                }
            }
            NotifierConfig::Servicenow(n) => {
                let settings = self.servicenow(&n, &field, &mut switch_off)?;
                NotifierSettings::Servicenow(settings)
            }
            NotifierConfig::Alertmanager(n) => {
                let mut urls = Vec::new();
                let mut vars = Vec::new();
                for (i, u) in n.urls.iter().enumerate() {
                    let url_field = format!("{field}.urls[{i}]");
                    let expanded = self.expand(u, &url_field)?;
                    vars.extend(expanded.vars);
                    if !expanded.value.is_empty() {
                        self.check_url(&expanded.value, u, &url_field);
                        urls.push(expanded.value.trim_end_matches('/').to_string());
                    }
                }
                if urls.is_empty() {
                    switch_off("no Alertmanager URL is set".into(), name.referenced, &vars);
                }
                NotifierSettings::Alertmanager {
                    urls,
                    resend_interval: self.optional_duration(
                        n.resend_interval.as_ref(),
                        &format!("{field}.resend_interval"),
                        DEFAULT_RESEND_INTERVAL,
                    )?,
                }
            }
            NotifierConfig::Gdrive(n) => {
                let mut values = Vec::new();
                for (key, text) in [
                    ("folder_id", &n.folder_id),
                    ("client_id", &n.client_id),
                    ("client_secret", &n.client_secret),
                    ("refresh_token", &n.refresh_token),
                ] {
                    let expanded = self.expand(text, &format!("{field}.{key}"))?;
                    if expanded.value.is_empty() {
                        switch_off(format!("`{key}` is empty"), text.referenced, &expanded.vars);
                    }
                    values.push(expanded.value);
                }
                let mut values = values.into_iter();
                let mut next = || values.next().unwrap_or_default();
                let mut endpoint =
                    |text: &Option<Text>, key: &str, default: &str| -> Option<String> {
                        match text {
                            Some(t) => {
                                let url = self.string(t, &format!("{field}.{key}"))?;
                                self.check_url(&url, t, &format!("{field}.{key}"));
                                Some(url)
                            }
                            None => Some(default.to_string()),
                        }
                    };
                let token_url = endpoint(&n.token_url, "token_url", GOOGLE_TOKEN_URL)?;
                let upload_url = endpoint(&n.upload_url, "upload_url", GOOGLE_UPLOAD_URL)?;
                NotifierSettings::Gdrive(GdriveSettings {
                    folder_id: next(),
                    client_id: next(),
                    client_secret: Secret::new(next()),
                    refresh_token: Secret::new(next()),
                    token_url,
                    upload_url,
                })
            }
        };
        let default_severity = match settings {
            NotifierSettings::Servicenow(_) => Severity::Critical,
            _ => Severity::Info,
        };
        let off = off.map(|(reason, at, help)| {
            let warning = self.warning(
                &at,
                &field,
                format!("notifier `{}` is off: {reason}", name.value),
                help,
            );
            self.off_notifiers.push((name.value.clone(), warning));
            reason
        });
        Some(NotifierSpec {
            name: name.value.clone(),
            min_severity: min_severity.unwrap_or(default_severity),
            settings,
            delivery,
            off,
        })
    }

    /// The delivery settings every notifier has, with each type's defaults.
    fn delivery(&mut self, config: &NotifierConfig, field: &str) -> Option<DeliverySpec> {
        let common = config.common();
        let slack = matches!(config, NotifierConfig::Slack(_));
        let timeout = self.optional_duration(
            common.timeout,
            &format!("{field}.timeout"),
            DEFAULT_REQUEST_TIMEOUT,
        );
        let retry_initial = self.optional_duration(
            common.retry_initial,
            &format!("{field}.retry_initial"),
            DEFAULT_RETRY_INITIAL,
        );
        let retry_max = self.optional_duration(
            common.retry_max,
            &format!("{field}.retry_max"),
            DEFAULT_RETRY_MAX,
        );
        let give_up_after = self.optional_duration(
            common.give_up_after,
            &format!("{field}.give_up_after"),
            DEFAULT_GIVE_UP_AFTER,
        );
        let group_wait = match config {
            NotifierConfig::Slack(n) => self.optional_duration(
                n.group_wait.as_ref(),
                &format!("{field}.group_wait"),
                DEFAULT_GROUP_WAIT,
            ),
            _ => Some(Duration::ZERO),
        };
        let max_per_second = match common.max_per_second {
            Some(rate) if !(rate.value > 0.0 && rate.value.is_finite()) => {
                self.error_help(
                    &rate.referenced,
                    &format!("{field}.max_per_second"),
                    format!("`max_per_second` must be above 0, not {}", rate.value),
                    "leave it out for no limit",
                );
                None
            }
            Some(rate) => Some(rate.value),
            None if slack => Some(SLACK_MAX_PER_SECOND),
            None => None,
        };
        let (timeout, retry_initial, retry_max, group_wait, give_up_after) = (
            timeout?,
            retry_initial?,
            retry_max?,
            group_wait?,
            give_up_after?,
        );
        if retry_initial > retry_max
            && let Some(text) = common.retry_initial
        {
            self.error(
                &text.referenced,
                &format!("{field}.retry_initial"),
                "`retry_initial` is longer than `retry_max`",
            );
        }
        Some(DeliverySpec {
            timeout,
            retry_initial,
            retry_max,
            max_per_second,
            burst: common.burst.unwrap_or(DEFAULT_BURST).max(1),
            group_wait,
            give_up_after,
        })
    }

    fn servicenow(
        &mut self,
        n: &ServicenowNotifierConfig,
        field: &str,
        switch_off: &mut impl FnMut(String, Location, &[String]),
    ) -> Option<ServicenowSettings> {
        let instance = self.expand(&n.instance, &format!("{field}.instance"))?;
        let mut opt = |text: &Option<Text>, key: &str| -> Option<Expanded> {
            match text {
                Some(t) => self.expand(t, &format!("{field}.{key}")),
                None => Some(Expanded {
                    value: String::new(),
                    vars: Vec::new(),
                }),
            }
        };
        let username = opt(&n.username, "username")?;
        let password = opt(&n.password, "password")?;
        let token = opt(&n.token, "token")?;
        let client_id = opt(&n.client_id, "client_id")?;
        let client_secret = opt(&n.client_secret, "client_secret")?;
        let timeout = self.optional_duration(
            n.timeout.as_ref(),
            &format!("{field}.timeout"),
            DEFAULT_REQUEST_TIMEOUT,
        )?;

        let base_url = instance_url(instance.value.trim());
        if instance.value.trim().is_empty() {
            switch_off(
                "`instance` is empty".into(),
                n.instance.referenced,
                &instance.vars,
            );
        } else if base_url.is_none() {
            self.error_help(
                &n.instance.referenced,
                &format!("{field}.instance"),
                format!("invalid ServiceNow instance `{}`", instance.value),
                "give the instance name (`dev12345`) or its full URL (`https://dev12345.service-now.com`)",
            );
        }
        let has = |e: &Expanded| !e.value.is_empty();
        let auth = if has(&token) {
            Some(ServicenowAuth::Bearer(Secret::new(token.value)))
        } else if has(&client_id) && has(&client_secret) {
            Some(if has(&username) && has(&password) {
                ServicenowAuth::OAuthPassword {
                    client_id: client_id.value,
                    client_secret: Secret::new(client_secret.value),
                    username: username.value,
                    password: Secret::new(password.value),
                }
            } else {
                ServicenowAuth::OAuthClientCredentials {
                    client_id: client_id.value,
                    client_secret: Secret::new(client_secret.value),
                }
            })
        } else if has(&username) && has(&password) {
            Some(ServicenowAuth::Basic {
                username: username.value,
                password: Secret::new(password.value),
            })
        } else {
            let vars: Vec<String> = [&username, &password, &token, &client_id, &client_secret]
                .iter()
                .flat_map(|e| e.vars.iter().cloned())
                .collect();
            switch_off(
                "no credentials: set `username` and `password`, `token`, or `client_id` and `client_secret`".into(),
                n.instance.referenced,
                &vars,
            );
            None
        };
        Some(ServicenowSettings {
            base_url: base_url.unwrap_or_default(),
            auth: auth.unwrap_or(ServicenowAuth::Bearer(Secret::default())),
            category: n.category.clone().unwrap_or_else(|| "performance".into()),
            close_code: n
                .close_code
                .clone()
                .unwrap_or_else(|| "Solved (Permanently)".into()),
            close_notes: n.close_notes.clone().unwrap_or_else(|| {
                "Resolved by runner: the alert that opened this incident has cleared.".into()
            }),
            timeout,
        })
    }

    /// Checks that a URL has an http(s) scheme without ever echoing it: URLs can be secrets.
    fn check_url(&mut self, url: &str, text: &Text, field: &str) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.error_help(
                &text.referenced,
                field,
                "this is not an http:// or https:// URL",
                "check the value (or the environment variable it comes from)",
            );
        }
    }
}

/// The signing key of a webhook secret: the base64 after `whsec_` (Standard Webhooks' format),
/// with or without its `=` padding as the reference libraries take it, or the raw text.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    match secret.strip_prefix("whsec_") {
        Some(encoded) => LENIENT.decode(encoded).map_err(|e| {
            format!("`signing_secret` starts with `whsec_` but the rest is not base64: {e}")
        }),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `https://<name>.service-now.com` for an instance name, the URL itself for a URL.
pub fn instance_url(instance: &str) -> Option<String> {
    if instance.starts_with("http://") || instance.starts_with("https://") {
        return Some(instance.trim_end_matches('/').to_string());
    }
    let is_name = !instance.is_empty()
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    is_name.then(|| format!("https://{instance}.service-now.com"))
}
