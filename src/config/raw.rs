//! The jobs file exactly as written: serde types that mirror the YAML, one per section (probes
//! are in `probes/`, one file per type).
//!
//! Strings that are checked after parsing (schedules, durations, names, anything that may hold
//! `${VAR}`) are kept `Spanned`, so the build step can point at them. `build/` turns these into
//! the runtime types the rest of runner uses.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::probes::ProbeConfig;
use super::sections::Section;
use super::tagged::tagged_config;
use crate::vocab::Severity;

/// A string with its position in the jobs file.
pub type Text = Spanned<String>;

/// The top-level keys of a jobs file. Unknown keys are found by the loader (against this list)
/// rather than by serde, whose error would end the parse and hide every job's problems.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "timezone",
    "host",
    "shutdown_grace",
    "listen",
    "listen_auth",
    "listen_tls",
    "watch",
    "notifiers",
    "remote_write",
    "maintenance",
    "inhibit",
    "actions",
    "jobs",
];

/// The whole jobs file.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    /// Where runner keeps all it writes (metrics, alerts, state, reports, archives), relative to
    /// the jobs file's folder. Required; missing, it is reported with the other problems.
    #[serde(default)]
    pub data_dir: Option<Text>,
    /// Timezone of schedules and reports: `Local` (default) or an IANA name like `Europe/Berlin`.
    #[serde(default)]
    pub timezone: Option<Text>,
    /// Host name written into samples and alerts; the machine's hostname when absent; `auto`: on
    /// EC2, the instance's `Name` tag (where instance metadata shows tags) or its instance id.
    #[serde(default)]
    pub host: Option<Text>,
    /// How long running jobs may take to finish after SIGINT or SIGTERM (default `30s`).
    #[serde(default)]
    pub shutdown_grace: Option<Text>,
    /// Where runner serves Prometheus `/metrics`, its health and its alerts over HTTP
    /// (`127.0.0.1:9464`); nothing is served without it (or `--listen`).
    #[serde(default)]
    pub listen: Option<Text>,
    /// Who may read what `listen` serves; required for an address other than loopback.
    #[serde(default)]
    pub listen_auth: Option<ListenAuthConfig>,
    /// Serve HTTPS instead of HTTP, with this certificate and key (PEM files); reread when
    /// either file changes.
    #[serde(default)]
    pub listen_tls: Option<ListenTlsConfig>,
    /// `true`: reload by itself when the jobs file, a rule file or a report template changes,
    /// as SIGHUP does (default `false`).
    #[serde(default)]
    pub watch: bool,
    /// Named destinations for alerts and reports; `log` is built in and needs no entry.
    #[serde(default)]
    pub notifiers: IndexMap<Text, Section<NotifierConfig>>,
    /// Where every monitor tick's samples are pushed with Prometheus remote write; nothing is
    /// pushed without it.
    #[serde(default)]
    pub remote_write: Option<RemoteWriteConfig>,
    /// Recurring windows in which matching alerts are logged but not sent.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceConfig>,
    /// Rules by which a firing alert keeps others' notices back.
    #[serde(default)]
    pub inhibit: Vec<InhibitConfig>,
    /// Commands a rule's alert may run when it fires, by name (`alert(…, #{ action: "…" })`).
    #[serde(default)]
    pub actions: IndexMap<Text, ActionConfig>,
    /// Named jobs, each with a `type` and a `schedule`.
    #[serde(default)]
    pub jobs: IndexMap<Text, Section<JobConfig>>,
}

/// A `maintenance:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Its name, in the alert log and the report.
    pub name: Text,
    /// When it opens: a cron expression in the jobs file's timezone, as jobs have.
    pub schedule: Text,
    /// How long it stays open (`1h`).
    pub duration: Text,
    /// Which alerts it holds: `alertname`, `job`, `host`, `severity` or a label, each value
    /// with an optional operator (`=~disk_.*`, `!=info`); every entry must match.
    #[serde(default, rename = "match")]
    pub matchers: IndexMap<Text, Text>,
}

/// An `actions:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The program and its arguments, run without a shell.
    pub command: Vec<Text>,
    /// How long it may run before its process group is killed (`30s`).
    #[serde(default)]
    pub timeout: Option<Text>,
    /// The least time between two runs for one alert (`10m`).
    #[serde(default)]
    pub cooldown: Option<Text>,
    /// The most runs for one alert in any hour.
    #[serde(default)]
    pub max_per_hour: Option<Spanned<u32>>,
    /// `firing` (the default): when the alert turns firing; `repeat`: also at each repeat.
    #[serde(default)]
    pub on: Option<Text>,
}

/// An `inhibit:` entry, as Alertmanager's `inhibit_rules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// What a firing alert that inhibits others matches.
    pub source_match: IndexMap<Text, Text>,
    /// What an alert it inhibits matches.
    pub target_match: IndexMap<Text, Text>,
    /// Labels whose values source and target must share (`host`).
    #[serde(default)]
    pub equal: Vec<Text>,
}

/// `remote_write`: a Prometheus remote-write 1.0 receiver (Prometheus, VictoriaMetrics, Mimir,
/// Thanos, Cortex, Grafana Cloud) and how runner talks to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's write endpoint (`https://metrics.example.com/api/v1/write`); may hold a
    /// secret, so it is never printed.
    pub url: Text,
    /// `Authorization: Bearer <token>`; from `${VAR}`.
    #[serde(default)]
    pub bearer_token: Option<Text>,
    /// HTTP basic authentication, its password from `${VAR}`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// A PEM file of the CA certificates that sign the receiver's certificate, trusted besides
    /// the system's.
    #[serde(default)]
    pub ca_file: Option<Text>,
    /// Extra request headers (`X-Scope-OrgID` for Mimir and Cortex); values may use `${VAR}`.
    #[serde(default)]
    pub headers: IndexMap<String, Text>,
    /// Longest one request may take (default `30s`).
    #[serde(default)]
    pub timeout: Option<Text>,
    /// Most samples in one request (default 2000).
    #[serde(default)]
    pub max_batch: Option<Spanned<u64>>,
    /// Samples older than this when their turn comes are skipped and counted, not sent
    /// (default `2h`): most receivers refuse samples that old.
    #[serde(default)]
    pub max_age: Option<Text>,
}

/// A user name and a password from the environment (HTTP basic authentication).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name.
    pub username: Text,
    /// The password; from `${VAR}`.
    pub password: Text,
}

/// `listen_auth`: a bearer token, or a user name and password (HTTP basic), each secret from
/// the environment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenAuthConfig {
    /// `Authorization: Bearer <token>`; from `${VAR}`.
    #[serde(default)]
    pub bearer_token: Option<Text>,
    /// HTTP basic authentication's user name.
    #[serde(default)]
    pub username: Option<Text>,
    /// HTTP basic authentication's password; from `${VAR}`.
    #[serde(default)]
    pub password: Option<Text>,
}

/// `listen_tls`: the listener's certificate and private key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTlsConfig {
    /// The certificate chain, PEM, the server's own first; relative to the jobs file's folder.
    pub cert_file: Text,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1); relative to the jobs file's folder.
    pub key_file: Text,
}

tagged_config! {
    /// One job; `type` picks its kind.
    #[derive(Debug)]
    pub enum JobConfig: "job type" {
        "monitor" => Monitor(MonitorJobConfig),
        "report" => Report(ReportJobConfig),
        "servicenow_fetch" => ServicenowFetch(ServicenowFetchJobConfig),
        "rotate" => Rotate(RotateJobConfig),
    }
}

/// The settings every job has, whatever its type.
pub struct JobCommon<'a> {
    pub schedule: &'a Text,
    pub description: Option<&'a str>,
    pub enabled: bool,
    pub timeout: Option<&'a Text>,
}

/// Declares a job's config struct with the settings every job shares, then its own.
macro_rules! job_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// When the job runs: cron with 5 fields, or 6 with seconds first; `@hourly`,
            /// `@daily`, `@weekly`, `@monthly`; or `@every 10s`.
            pub schedule: Text,
            /// What the job is for, shown by `runner jobs`.
            #[serde(default)]
            pub description: Option<String>,
            /// `false` keeps the job in the file without ever running it.
            #[serde(default = "enabled_by_default")]
            pub enabled: bool,
            /// Longest a run may take before it is cancelled and counted as failed (`5m`).
            #[serde(default)]
            pub timeout: Option<Text>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn common(&self) -> JobCommon<'_> {
                JobCommon {
                    schedule: &self.schedule,
                    description: self.description.as_deref(),
                    enabled: self.enabled,
                    timeout: self.timeout.as_ref(),
                }
            }
        }
    };
}

fn enabled_by_default() -> bool {
    true
}

impl JobConfig {
    pub fn common(&self) -> JobCommon<'_> {
        match self {
            JobConfig::Monitor(job) => job.common(),
            JobConfig::Report(job) => job.common(),
            JobConfig::ServicenowFetch(job) => job.common(),
            JobConfig::Rotate(job) => job.common(),
        }
    }
}

job_config! {
    /// Collects probes every tick, keeps the metrics log and evaluates rules.
    pub struct MonitorJobConfig {
        /// What to measure each tick; each probe has its own `timeout_ms`.
        #[serde(default)]
        pub probes: Vec<Spanned<ProbeConfig>>,
        /// Rule files (globs allowed), relative to the jobs file's folder.
        #[serde(default)]
        pub rules: Vec<Text>,
        /// Notifiers that receive this job's alerts (default: `[log]`).
        #[serde(default)]
        pub notify: Option<Vec<Text>>,
        /// Longest one rule file may run per tick before it is stopped (default `50ms`).
        #[serde(default)]
        pub rule_timeout: Option<Text>,
        /// An alert that changes state more than this many times within `flap_window` is
        /// flapping (default 4).
        #[serde(default)]
        pub flap_transitions: Option<u32>,
        /// The window for `flap_transitions` (default `30m`).
        #[serde(default)]
        pub flap_window: Option<Text>,
    }
}

job_config! {
    /// Renders the performance report of a past window through templates.
    pub struct ReportJobConfig {
        /// The report's title (default: from the window, `Weekly performance report` for 7
        /// days, `Daily ...` for one, `Hourly ...` for an hour, `Performance report` otherwise).
        #[serde(default)]
        pub title: Option<String>,
        /// How far back the report looks, ending at the run time (default `7d`).
        #[serde(default)]
        pub window: Option<Text>,
        /// Handlebars templates to render, relative to the jobs file's folder.
        #[serde(default)]
        pub templates: Vec<Text>,
        /// Notifiers that receive the report (a summary, or the file).
        #[serde(default)]
        pub notify: Option<Vec<Text>>,
        /// Where the window is read from instead of the local metrics log: a
        /// Prometheus-compatible query API holding what runners pushed (a fleet report).
        #[serde(default)]
        pub source: Option<ReportSourceConfig>,
    }
}

/// `source:` of a report job: the query API of a Prometheus-compatible store and how runner
/// talks to it (auth as `remote_write` has it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSourceConfig {
    /// The query API's base URL (`http://prometheus:9090`, without `/api/v1`).
    pub prometheus: Text,
    /// `Authorization: Bearer <token>`; from `${VAR}`.
    #[serde(default)]
    pub bearer_token: Option<Text>,
    /// HTTP basic authentication, its password from `${VAR}`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// A PEM file of CA certificates trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<Text>,
    /// Extra request headers (`X-Scope-OrgID`); values may use `${VAR}`.
    #[serde(default)]
    pub headers: IndexMap<String, Text>,
    /// Longest one query may take (default `30s`).
    #[serde(default)]
    pub timeout: Option<Text>,
    /// Host names or globs (`web-*`) the report covers; every host that pushed when absent.
    #[serde(default)]
    pub hosts: Vec<Text>,
    /// How each series' p95 is computed (default `exact`): `buckets` asks VictoriaMetrics for
    /// it from log buckets, faster and within one or two buckets' width of the exact one.
    #[serde(default)]
    pub p95: Option<P95Mode>,
}

/// `source.p95:` of a report job: how the server computes each series' p95.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum P95Mode {
    /// `quantile_over_time(0.95, …)`: the server sorts every series' samples.
    #[default]
    Exact,
    /// `histogram_quantile(0.95, histogram_over_time(…))` on VictoriaMetrics: each series'
    /// samples counted into log buckets (18 a decade) and the p95 interpolated inside the
    /// bucket its rank falls in; servers without MetricsQL get `exact`.
    Buckets,
}

job_config! {
    /// Pulls incidents from the ServiceNow Table API into the incidents cache.
    pub struct ServicenowFetchJobConfig {
        /// The `servicenow` notifier whose instance and credentials are reused.
        pub from: Text,
        /// An encoded query (`sysparm_query`), e.g. `category=performance`.
        #[serde(default)]
        pub query: Option<String>,
        /// Fields to fetch (`sysparm_fields`); the report's fields when absent.
        #[serde(default)]
        pub fields: Option<Vec<String>>,
        /// Rows per page (`sysparm_limit`, default 100).
        #[serde(default)]
        pub page_size: Option<Spanned<u32>>,
    }
}

/// How a rotate job groups files into archives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One zip per run holding every file of that run's day.
    Day,
    /// One zip per file.
    File,
}

job_config! {
    /// Archives old logs into verified zip files and deletes expired archives.
    pub struct RotateJobConfig {
        /// Files to rotate (globs), relative to the jobs file's folder.
        pub paths: Vec<Text>,
        /// Files last modified longer ago than this are archived (`15d`).
        pub max_age: Text,
        /// Files larger than this are archived even if young (`100MiB`).
        #[serde(default)]
        pub max_size: Option<Text>,
        /// Where archives go (default `<data_dir>/archive`).
        #[serde(default)]
        pub archive_dir: Option<Text>,
        /// Archives older than this are deleted (`90d`); kept forever when absent.
        #[serde(default)]
        pub archive_max_age: Option<Text>,
        /// Keep at most this many archives of this job, newest first (at least 1; the
        /// archives a run writes are never deleted by that run).
        #[serde(default)]
        pub keep_archives: Option<Spanned<u32>>,
        /// `day` (one zip per run, default) or `file` (one zip per file).
        #[serde(default)]
        pub group_by: Option<GroupBy>,
        /// Deflate level from 0 (store) to 9 (smallest); default 6.
        #[serde(default)]
        pub compression: Option<Spanned<u32>>,
        /// What tells writers to reopen their logs after files past `max_size` were renamed,
        /// as logrotate's `postrotate`.
        #[serde(default)]
        pub postrotate: Option<Spanned<PostrotateConfig>>,
        /// How long a renamed file must go unmodified before it is archived (default `1s`);
        /// one still written after `settle` × 10 waits for the next run.
        #[serde(default)]
        pub settle: Option<Text>,
    }
}

/// `postrotate:` of a rotate job: a command, or a signal to a pid file's or a named process.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostrotateConfig {
    /// A program and its arguments, run without a shell (`[systemctl, reload, nginx]`).
    #[serde(default)]
    pub command: Option<Vec<Text>>,
    /// A signal to send instead: `HUP`, `USR1` or `USR2`.
    #[serde(default)]
    pub signal: Option<Text>,
    /// The file holding the pid to signal.
    #[serde(default)]
    pub pid_file: Option<Text>,
    /// The process name (as in `/proc/PID/comm`) whose processes are signalled.
    #[serde(default)]
    pub process: Option<Text>,
}

tagged_config! {
    /// One notifier; `type` picks its kind.
    #[derive(Debug)]
    pub enum NotifierConfig: "notifier type" {
        "slack" => Slack(SlackNotifierConfig),
        "webhook" => Webhook(WebhookNotifierConfig),
        "servicenow" => Servicenow(ServicenowNotifierConfig),
        "alertmanager" => Alertmanager(AlertmanagerNotifierConfig),
        "gdrive" => Gdrive(GdriveNotifierConfig),
    }
}

impl NotifierConfig {
    pub fn common(&self) -> NotifierCommon<'_> {
        match self {
            NotifierConfig::Slack(n) => n.common(),
            NotifierConfig::Webhook(n) => n.common(),
            NotifierConfig::Servicenow(n) => n.common(),
            NotifierConfig::Alertmanager(n) => n.common(),
            NotifierConfig::Gdrive(n) => n.common(),
        }
    }
}

/// How every notifier delivers, whatever its type.
pub struct NotifierCommon<'a> {
    pub min_severity: Option<Severity>,
    pub timeout: Option<&'a Text>,
    pub retry_initial: Option<&'a Text>,
    pub retry_max: Option<&'a Text>,
    pub max_per_second: Option<&'a Spanned<f64>>,
    pub burst: Option<u32>,
    pub give_up_after: Option<&'a Text>,
}

/// Declares a notifier's config struct with its own settings, then the delivery settings every
/// notifier shares.
macro_rules! notifier_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Lowest severity sent (default `info`; `critical` for ServiceNow).
            #[serde(default)]
            pub min_severity: Option<Severity>,
            /// Longest one request may take (default `10s`).
            #[serde(default)]
            pub timeout: Option<Text>,
            /// Wait before the first retry (default `1s`); it doubles with each failure, with
            /// jitter, up to `retry_max`. A `Retry-After` from the destination wins.
            #[serde(default)]
            pub retry_initial: Option<Text>,
            /// Longest wait between retries (default `5m`); also how often a destination
            /// that keeps failing is tried again.
            #[serde(default)]
            pub retry_max: Option<Text>,
            /// Most messages a second to this destination (Slack: 1; others: no limit).
            #[serde(default)]
            pub max_per_second: Option<Spanned<f64>>,
            /// Messages that may go at once before `max_per_second` applies (default 3).
            #[serde(default)]
            pub burst: Option<u32>,
            /// How long a notice that keeps failing is retried before it becomes a dead letter
            /// (default `24h`).
            #[serde(default)]
            pub give_up_after: Option<Text>,
        }

        impl $name {
            pub fn common(&self) -> NotifierCommon<'_> {
                NotifierCommon {
                    min_severity: self.min_severity,
                    timeout: self.timeout.as_ref(),
                    retry_initial: self.retry_initial.as_ref(),
                    retry_max: self.retry_max.as_ref(),
                    max_per_second: self.max_per_second.as_ref(),
                    burst: self.burst,
                    give_up_after: self.give_up_after.as_ref(),
                }
            }
        }
    };
}

notifier_config! {
    /// Slack incoming webhook.
    pub struct SlackNotifierConfig {
        /// The webhook URL (a secret: write `${SLACK_WEBHOOK_URL}`); empty turns the notifier off.
        pub webhook_url: Text,
        /// A handlebars template that replaces the built-in message: its output is sent as
        /// the message text, or as the whole payload when it is a JSON object.
        #[serde(default)]
        pub template: Option<Text>,
        /// Alerts arriving within this time go out as one message (default `10s`).
        #[serde(default)]
        pub group_wait: Option<Text>,
    }
}

notifier_config! {
    /// A JSON POST of every alert event to a URL.
    pub struct WebhookNotifierConfig {
        /// Where events are POSTed (may be a secret); empty turns the notifier off.
        pub url: Text,
        /// Extra request headers; values may use `${VAR}`.
        #[serde(default)]
        pub headers: IndexMap<String, Text>,
        /// Standard Webhooks signing secret (`whsec_<base64>` or raw); unsigned when absent.
        #[serde(default)]
        pub signing_secret: Option<Text>,
    }
}

notifier_config! {
    /// ServiceNow incidents: created on firing, resolved on resolved; also the fetch job's source.
    pub struct ServicenowNotifierConfig {
        /// Instance name (`dev12345`) or full URL; empty turns the notifier off.
        pub instance: Text,
        /// Basic-auth user (or the user of OAuth's password grant).
        #[serde(default)]
        pub username: Option<Text>,
        /// Basic-auth password (a secret).
        #[serde(default)]
        pub password: Option<Text>,
        /// A fixed bearer token (a secret), instead of basic auth or OAuth.
        #[serde(default)]
        pub token: Option<Text>,
        /// OAuth client id; with `client_secret` runner fetches and refreshes tokens itself.
        #[serde(default)]
        pub client_id: Option<Text>,
        /// OAuth client secret (a secret).
        #[serde(default)]
        pub client_secret: Option<Text>,
        /// Incident category (default `performance`).
        #[serde(default)]
        pub category: Option<String>,
        /// `close_code` sent when resolving (default `Solved (Permanently)`).
        #[serde(default)]
        pub close_code: Option<String>,
        /// `close_notes` sent when resolving.
        #[serde(default)]
        pub close_notes: Option<String>,
    }
}

notifier_config! {
    /// Prometheus Alertmanager, API v2.
    pub struct AlertmanagerNotifierConfig {
        /// Base URLs of every Alertmanager of an HA pair (`http://am1:9093`).
        pub urls: Vec<Text>,
        /// How often firing alerts are sent again so Alertmanager keeps them (default `1m`);
        /// each says it ends four intervals later unless sent again.
        #[serde(default)]
        pub resend_interval: Option<Text>,
    }
}

notifier_config! {
    /// Google Drive: uploads rendered reports into a folder.
    pub struct GdriveNotifierConfig {
        /// Id of the Drive folder that receives reports.
        pub folder_id: Text,
        /// OAuth client id.
        pub client_id: Text,
        /// OAuth client secret (a secret).
        pub client_secret: Text,
        /// OAuth refresh token (a secret); access tokens are fetched with it as they expire.
        pub refresh_token: Text,
        /// The OAuth token endpoint (default Google's).
        #[serde(default)]
        pub token_url: Option<Text>,
        /// The Drive upload endpoint (default Google's).
        #[serde(default)]
        pub upload_url: Option<Text>,
    }
}
