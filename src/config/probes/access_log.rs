//! `access_log`: a web server's access log, tailed between ticks: request rate, errors,
//! request-time percentiles, distinct clients and sessions.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

pub const TYPE: ProbeType = ProbeType {
    name: "access_log",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "requests_per_sec",
            help: "lines read since the last tick, per second",
        },
        Field {
            name: "client_errors_per_sec",
            help: "4xx responses per second",
        },
        Field {
            name: "server_errors_per_sec",
            help: "5xx responses per second",
        },
        Field {
            name: "error_ratio",
            help: "5xx / requests (0-1); absent without requests",
        },
        Field {
            name: "request_p50_ms",
            help: "median request time of the tick's requests",
        },
        Field {
            name: "request_p95_ms",
            help: "95th percentile request time of the tick's requests",
        },
        Field {
            name: "request_p99_ms",
            help: "99th percentile request time of the tick's requests",
        },
        Field {
            name: "clients_count",
            help: "distinct clients within the window",
        },
        Field {
            name: "sessions_count",
            help: "distinct sessions within the window",
        },
        // Counts of runner's own (a log has no counter to read), for Prometheus' `rate()`.
        Field {
            name: "requests_total",
            help: "requests logged since the probe started reading (0 at its first tick)",
        },
        Field {
            name: "client_errors_total",
            help: "4xx requests logged since the probe started reading",
        },
        Field {
            name: "server_errors_total",
            help: "5xx requests logged since the probe started reading",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(2_000),
};

/// Units of a logged request time.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds, as nginx's `$request_time` (`0.123`).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds, as Apache's `%D`.
    Us,
}

named_probe_config! {
    /// A web server's access log, tailed between ticks: request rate, errors, request-time
    /// percentiles, distinct clients and sessions.
    pub struct AccessLogProbeConfig {
        /// The log file; followed across rotation (rename) and truncation.
        pub path: Text,
        /// Names of fields after the combined format's user agent, in order: `request_time`,
        /// `session`, or anything else (ignored). E.g. for nginx `... "$http_user_agent"
        /// $request_time $cookie_sid`: `[request_time, session]`.
        #[serde(default)]
        pub extra_fields: Vec<Text>,
        /// A regex with named groups instead of the combined format: `status` (required),
        /// `client`, `request_time`, `session`.
        #[serde(default)]
        pub regex: Option<Text>,
        /// Unit of `request_time`: `s` (default, nginx), `ms`, `us` (Apache `%D`).
        #[serde(default)]
        pub request_time_unit: Option<TimeUnit>,
        /// Window for distinct clients and sessions (default `15m`).
        #[serde(default)]
        pub window: Option<Text>,
    }
}

#[derive(Debug, Clone)]
pub enum AccessLogFormat {
    /// nginx/Apache combined, then optional extra fields (0-based index after the user agent).
    Combined {
        request_time: Option<usize>,
        session: Option<usize>,
    },
    /// Named groups `status`, `client`, `request_time`, `session`.
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct AccessLogSpec {
    pub path: PathBuf,
    pub format: AccessLogFormat,
    pub time_unit: TimeUnit,
    pub window: Duration,
}

impl Settings for AccessLogSpec {}

impl Check for AccessLogProbeConfig {
    type Spec = AccessLogSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _: Location) -> Option<AccessLogSpec> {
        let c = self;
        let path = b.path(&c.path, &format!("{field}.path"))?;
        let format = match &c.regex {
            Some(text) => {
                if !c.extra_fields.is_empty() {
                    b.error(&text.referenced, &format!("{field}.extra_fields"), "`extra_fields` goes with the combined format; with `regex`, name groups instead");
                }
                let re = b.regex(text, &format!("{field}.regex"))?;
                if !re.capture_names().flatten().any(|n| n == "status") {
                    b.error_help(
                        &text.referenced,
                        &format!("{field}.regex"),
                        "the regex has no `status` group",
                        "name the groups: (?P<status>\\d{3}), and optionally client, request_time, session",
                    );
                }
                AccessLogFormat::Regex(re)
            }
            None => {
                let position = |name: &str| c.extra_fields.iter().position(|f| f.value == name);
                AccessLogFormat::Combined {
                    request_time: position("request_time"),
                    session: position("session"),
                }
            }
        };
        let window = b.optional_duration(
            c.window.as_ref(),
            &format!("{field}.window"),
            DEFAULT_WINDOW,
        )?;
        Some(AccessLogSpec {
            path,
            format,
            time_unit: c.request_time_unit.unwrap_or(TimeUnit::S),
            window,
        })
    }
}
