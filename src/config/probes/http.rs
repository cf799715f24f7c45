//! `http`: a request to a service or an external dependency: up (status and body as
//! expected), status, latency, time to first byte, certificate expiry, and numbers extracted
//! from a JSON body (an application's own metrics endpoint).

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config, valid_probe_name};
use crate::config::Secret;
use crate::config::build::Builder;
use crate::config::raw::Text;

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub const TYPE: ProbeType = ProbeType {
    name: "http",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "up",
            help: "1 when the status is expected and the body checks pass, else 0",
        },
        Field {
            name: "status",
            help: "the HTTP status",
        },
        Field {
            name: "latency_ms",
            help: "time to the full body, connecting and TLS included",
        },
        Field {
            name: "ttfb_ms",
            help: "time to the response headers",
        },
        Field {
            name: "cert_expiry_days",
            help: "days until the server's certificate expires (https)",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(10_000),
};

/// `expect_status`: one code, a class such as `2xx`, or a list of those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSpec(pub Vec<StatusMatch>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    /// `2xx`: any code from 200 to 299.
    Class(u16),
}

impl StatusMatch {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            StatusMatch::Code(code) => *code == status,
            StatusMatch::Class(class) => status / 100 == *class,
        }
    }

    fn parse(text: &str) -> Option<StatusMatch> {
        let text = text.trim();
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            return class
                .parse()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .map(StatusMatch::Class);
        }
        text.parse()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(StatusMatch::Code)
    }
}

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an HTTP status (200), a class (`2xx`), or a list of those")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusSpec, E> {
                StatusMatch::parse(v)
                    .map(|m| StatusSpec(vec![m]))
                    .ok_or_else(|| {
                        E::custom(format!(
                            "`{v}` is not an HTTP status (100-599) or a class like `2xx`"
                        ))
                    })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StatusSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(one) = seq.next_element::<StatusSpec>()? {
                    out.extend(one.0);
                }
                Ok(StatusSpec(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

named_probe_config! {
    /// An HTTP(S) request: up, status, latency, time to first byte, certificate expiry, and
    /// numbers extracted from a JSON body (an application's own metrics endpoint).
    pub struct HttpProbeConfig {
        /// `http://` or `https://` URL.
        pub url: Text,
        /// `GET` (default), `HEAD`, `POST`, `PUT`, ...
        #[serde(default)]
        pub method: Option<Text>,
        /// Request headers; values may use `${VAR}`.
        #[serde(default)]
        pub headers: IndexMap<String, Text>,
        /// Request body, sent as is.
        #[serde(default)]
        pub body: Option<Text>,
        /// Statuses that count as up: `200`, `2xx`, or a list (default `2xx`).
        #[serde(default)]
        pub expect_status: Option<StatusSpec>,
        /// Text the body must contain to count as up.
        #[serde(default)]
        pub body_contains: Option<String>,
        /// A regex the body must match to count as up.
        #[serde(default)]
        pub body_regex: Option<Text>,
        /// Metric name → JSON pointer (`/metrics/p95`) or path (`metrics.p95`, `items[0].ms`).
        #[serde(default)]
        pub extract: IndexMap<String, Text>,
        /// Extra CA certificates (PEM) to trust, for private CAs.
        #[serde(default)]
        pub ca_file: Option<Text>,
        /// `false` accepts any certificate (expiry is still reported). Default true.
        #[serde(default)]
        pub tls_verify: Option<bool>,
        /// Follow up to 5 redirects (default true); `false` reports the redirect itself.
        #[serde(default)]
        pub follow_redirects: Option<bool>,
    }
}

#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// May hold a token, so it is never logged; errors name the host only.
    pub url: Secret,
    pub method: String,
    pub headers: Vec<(String, Secret)>,
    pub body: Option<String>,
    pub expect_status: StatusSpec,
    pub body_contains: Option<String>,
    pub body_regex: Option<regex::Regex>,
    /// Metric field → JSON pointer (`/metrics/p95`).
    pub extract: Vec<(String, String)>,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub follow_redirects: bool,
}

impl Settings for HttpSpec {
    fn extra_fields(&self) -> Vec<String> {
        self.extract
            .iter()
            .map(|(field, _)| field.clone())
            .collect()
    }
}

impl Check for HttpProbeConfig {
    type Spec = HttpSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _: Location) -> Option<HttpSpec> {
        let c = self;
        let url = b.string(&c.url, &format!("{field}.url"))?;
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            // The URL may carry a token: say what is wrong without echoing it.
            Ok(_) => b.error(
                &c.url.referenced,
                &format!("{field}.url"),
                "the URL's scheme must be http or https",
            ),
            Err(e) => b.error(
                &c.url.referenced,
                &format!("{field}.url"),
                format!("not a valid URL: {e}"),
            ),
        }
        let method = match &c.method {
            Some(m) => {
                let upper = m.value.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    b.error(
                        &m.referenced,
                        &format!("{field}.method"),
                        format!(
                            "unknown method `{}` (expected one of: {})",
                            m.value,
                            METHODS.join(", ")
                        ),
                    );
                }
                upper
            }
            None => "GET".to_string(),
        };
        let mut headers = Vec::new();
        for (name, value) in &c.headers {
            let value = b.string(value, &format!("{field}.headers.{name}"))?;
            headers.push((name.clone(), Secret::new(value)));
        }
        let body = match &c.body {
            Some(body) => Some(b.string(body, &format!("{field}.body"))?),
            None => None,
        };
        // Recorded problems refuse the config; carry on to find the rest of them.
        let body_regex = c
            .body_regex
            .as_ref()
            .and_then(|r| b.regex(r, &format!("{field}.body_regex")));
        let mut extract = Vec::new();
        for (metric, path) in &c.extract {
            let metric_field = format!("{field}.extract.{metric}");
            if !valid_probe_name(metric) {
                b.error(&path.referenced, &metric_field, format!("`{metric}` is not a metric field name: use ^[a-z][a-z0-9_]*$ (e.g. `response_time_ms`)"));
            }
            match json_pointer(&path.value) {
                Some(pointer) => extract.push((metric.clone(), pointer)),
                None => b.error_help(
                    &path.referenced,
                    &metric_field,
                    format!("`{}` is not a JSON path", path.value),
                    "write a JSON pointer (`/metrics/p95`) or a path (`metrics.p95`, `items[0].ms`)",
                ),
            }
        }
        let ca_file = match &c.ca_file {
            Some(f) => {
                let path = b.path(f, &format!("{field}.ca_file"))?;
                if let Err(e) = std::fs::metadata(&path) {
                    b.error(
                        &f.referenced,
                        &format!("{field}.ca_file"),
                        format!("cannot read `{}`: {e}", path.display()),
                    );
                }
                Some(path)
            }
            None => None,
        };
        Some(HttpSpec {
            url: Secret::new(url),
            method,
            headers,
            body,
            expect_status: c
                .expect_status
                .unwrap_or(StatusSpec(vec![StatusMatch::Class(2)])),
            body_contains: c.body_contains,
            body_regex,
            extract,
            ca_file,
            tls_verify: c.tls_verify.unwrap_or(true),
            follow_redirects: c.follow_redirects.unwrap_or(true),
        })
    }
}

/// `metrics.p95` or `items[0].ms` → `/metrics/p95`, `/items/0/ms`; a pointer stays as it is.
pub fn json_pointer(path: &str) -> Option<String> {
    let path = path.trim();
    if path.starts_with('/') {
        return Some(path.to_string());
    }
    if path.is_empty() {
        return None;
    }
    let mut pointer = String::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
        } else if rest.is_empty() {
            return None;
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            let index = &inner[..end];
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            pointer.push('/');
            pointer.push_str(index);
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_pointers() {
        assert_eq!(json_pointer("metrics.p95").as_deref(), Some("/metrics/p95"));
        assert_eq!(json_pointer("items[0].ms").as_deref(), Some("/items/0/ms"));
        assert_eq!(json_pointer("[2]").as_deref(), Some("/2"));
        assert_eq!(
            json_pointer("/already/pointer").as_deref(),
            Some("/already/pointer")
        );
        assert_eq!(json_pointer("a/b.c").as_deref(), Some("/a~1b/c"));
        assert_eq!(json_pointer("items[x]"), None);
        assert_eq!(json_pointer("items[0"), None);
        assert_eq!(json_pointer(""), None);
    }
}
