//! The jobs file: read (`raw`), checked and built (`build`) into the `Config` the rest of runner
//! uses. Every problem found is returned at once, each with file, line, column and field path.

pub mod action;
pub mod build;
pub mod host;
pub mod mute;

pub mod env;
pub mod probes;
pub mod raw;
pub mod scan;
pub mod sections;

pub mod tagged;

use crate::http::{self, EndpointClient, Secrets};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::diagnostic::Problems;
use crate::scheduler::schedule::{Schedule, Zone};
use crate::vocab::Severity;

/// The jobs file, checked and ready to run.
#[derive(Debug)]
pub struct Config {
    /// The jobs file as given on the command line.
    pub file: PathBuf,
    /// The folder relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    pub data_dir: PathBuf,
    pub zone: Zone,
    pub host: String,
    pub shutdown_grace: Duration,
    /// Where to serve `/metrics`, health and alerts; `None`: nothing is served.
    pub listen: Option<ListenSpec>,
    /// `listen_auth`, kept apart so `--listen` can use it too.
    pub listen_auth: Option<ListenAuth>,
    /// `listen_tls`: the listener speaks HTTPS with this pair, kept apart like `listen_auth`.
    pub listen_tls: Option<ListenTls>,
    /// `watch`: reload when the jobs file, a rule file or a template changes.
    pub watch: bool,
    pub notifiers: IndexMap<String, NotifierSpec>,
    /// `remote_write`: where samples are pushed; `None`: nowhere.
    pub remote_write: Option<RemoteWriteSpec>,
    /// `maintenance` and `inhibit`: what keeps alerts' notices back.
    pub mute: mute::MuteSpec,
    /// `actions`: commands an alert may run, by name.
    pub actions: IndexMap<String, action::ActionSpec>,
    pub jobs: IndexMap<String, JobSpec>,
    /// Things worth saying once at start that do not stop runner (a notifier left off).
    pub warnings: Problems,
    /// Files the jobs file names that are not there (a rule, a template), at the line that
    /// names them: errors for `runner check`; the scheduler says them at start and runs every
    /// job that can run without them.
    pub missing_files: Problems,
}

/// The HTTP listener's address and who may read it.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    pub address: std::net::SocketAddr,
    pub auth: Option<ListenAuth>,
}

/// `listen_tls`: PEM files, resolved against the jobs file's folder; checked when loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub enum ListenAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

impl ListenSpec {
    /// `--listen`, `RUNNER_LISTEN` or `listen:`: an address and port, or `localhost:PORT`
    /// (127.0.0.1, as Prometheus' own `localhost:9090` listens); anything but loopback needs
    /// `auth`.
    pub fn parse(text: &str, auth: Option<ListenAuth>) -> Result<ListenSpec, String> {
        let localhost = text
            .trim()
            .strip_prefix("localhost:")
            .and_then(|port| port.parse::<u16>().ok())
            .map(|port| std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)));
        let address: std::net::SocketAddr = match localhost {
            Some(address) => address,
            None => text.trim().parse().map_err(|_| {
                format!("`{text}` is not an address and port (`127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`, `0.0.0.0:9464`)")
            })?,
        };
        if !address.ip().is_loopback() && auth.is_none() {
            return Err(format!(
                "`{address}` is reachable from other machines: add `listen_auth` (a bearer_token, or username and password, from ${{VAR}}) or listen on 127.0.0.1"
            ));
        }
        Ok(ListenSpec { address, auth })
    }
}

/// A Prometheus remote-write receiver, checked: every header buildable, every secret set.
#[derive(Debug, Clone)]
pub struct RemoteWriteSpec {
    /// The write endpoint and how to reach it.
    pub endpoint: Endpoint,
    /// Most samples in one request.
    pub max_batch: usize,
    /// Samples older than this when their turn comes are skipped.
    pub max_age: Duration,
}

/// A secret from the config (URL, token, password): usable, never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A notifier, checked; `off` says why it will not send (an empty secret), if so.
#[derive(Debug)]
pub struct NotifierSpec {
    pub name: String,
    pub min_severity: Severity,
    pub settings: NotifierSettings,
    pub delivery: DeliverySpec,
    pub off: Option<String>,
}

/// How a notifier's messages travel: request timeout, retries, rate and grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySpec {
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `None`: no limit.
    pub max_per_second: Option<f64>,
    pub burst: u32,
    /// Events queued within this time go out as one message; zero sends each on its own.
    pub group_wait: Duration,
    /// A notice still failing (5xx, timeouts) this long after it was queued becomes a dead
    /// letter.
    pub give_up_after: Duration,
}

/// Per-type notifier settings with `${VAR}` expanded and paths resolved.
#[derive(Debug, Clone)]
pub enum NotifierSettings {
    Slack {
        webhook_url: Secret,
        template: Option<PathBuf>,
    },
    Webhook {
        url: Secret,
        headers: Vec<(String, Secret)>,
        signing_secret: Option<Secret>,
    },
    Servicenow(ServicenowSettings),
    Alertmanager {
        urls: Vec<String>,
        resend_interval: Duration,
    },
    Gdrive(GdriveSettings),
}

impl NotifierSettings {
    pub fn type_name(&self) -> &'static str {
        match self {
            NotifierSettings::Slack { .. } => "slack",
            NotifierSettings::Webhook { .. } => "webhook",
            NotifierSettings::Servicenow(_) => "servicenow",
            NotifierSettings::Alertmanager { .. } => "alertmanager",
            NotifierSettings::Gdrive(_) => "gdrive",
        }
    }
}

/// Where and as whom reports are uploaded to Google Drive.
#[derive(Debug, Clone)]
pub struct GdriveSettings {
    pub folder_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
    pub token_url: String,
    pub upload_url: String,
}

/// How runner reaches a ServiceNow instance: shared by the notifier and the fetch job.
#[derive(Debug, Clone)]
pub struct ServicenowSettings {
    /// `https://dev12345.service-now.com` for a bare name, or the URL as given.
    pub base_url: String,
    pub auth: ServicenowAuth,
    pub category: String,
    pub close_code: String,
    pub close_notes: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum ServicenowAuth {
    Basic {
        username: String,
        password: Secret,
    },
    Bearer(Secret),
    OAuthClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    OAuthPassword {
        client_id: String,
        client_secret: Secret,
        username: String,
        password: Secret,
    },
}

/// A job, checked; `off` says why it will not run even though it is listed, if so.
#[derive(Debug)]
pub struct JobSpec {
    pub name: String,
    pub schedule: Schedule,
    pub description: Option<String>,
    pub enabled: bool,
    pub timeout: Option<Duration>,
    pub kind: JobKind,
    pub off: Option<String>,
}

impl JobSpec {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            JobKind::Monitor(_) => "monitor",
            JobKind::Report(_) => "report",
            JobKind::ServicenowFetch(_) => "servicenow_fetch",
            JobKind::Rotate(_) => "rotate",
        }
    }

    /// Why the job will not run: switched off in the file, or missing what it needs.
    pub fn inactive_reason(&self) -> Option<String> {
        if !self.enabled {
            Some("disabled in the jobs file (`enabled: false`)".to_string())
        } else {
            self.off.clone()
        }
    }
}

#[derive(Debug)]
pub enum JobKind {
    Monitor(MonitorSpec),
    Report(ReportSpec),
    ServicenowFetch(Box<FetchSpec>),
    Rotate(RotateSpec),
}

/// How many state changes within how long make an alert flap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapPolicy {
    pub max_transitions: usize,
    pub window: Duration,
}

impl Default for FlapPolicy {
    fn default() -> Self {
        FlapPolicy {
            max_transitions: 4,
            window: Duration::from_secs(30 * 60),
        }
    }
}

/// How long one rule file may run per tick when the job does not say (`rule_timeout`).
pub const DEFAULT_RULE_TIMEOUT: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct MonitorSpec {
    pub probes: Vec<probes::ProbeSpec>,
    /// Rule file patterns, resolved against the jobs file's folder.
    pub rules: Vec<PathBuf>,
    pub notify: Vec<String>,
    pub rule_timeout: Duration,
    pub flap: FlapPolicy,
}

#[derive(Debug)]
pub struct ReportSpec {
    /// `title:` as written; without it the title follows the window (`title_for`).
    pub title: Option<String>,
    pub window: Duration,
    pub templates: Vec<PathBuf>,
    pub notify: Vec<String>,
    /// `source:`: a Prometheus-compatible store the window is read from (a fleet report);
    /// `None`: the local metrics log.
    pub source: Option<FleetSource>,
}

/// Where a fleet report reads: a query API, its auth, and the hosts it covers.
#[derive(Debug, Clone)]
pub struct FleetSource {
    pub endpoint: Endpoint,
    /// Host names or globs; empty: every host that pushed.
    pub hosts: Vec<String>,
    /// How each series' p95 is computed.
    pub p95: raw::P95Mode,
}

/// An HTTP endpoint runner talks to, checked: every header buildable, every secret set.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// May hold a token.
    pub url: Secret,
    /// Headers sent with every request (auth included), values secret.
    pub headers: Vec<(String, Secret)>,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl Endpoint {
    /// The client for `remote_write` and a report's `source:`, from their shared settings.
    pub fn client(&self) -> Result<EndpointClient, String> {
        let endpoint = self;
        let url = http::request_url(endpoint.url.expose())?;
        let mut builder = http::client_builder()
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout.min(std::time::Duration::from_secs(10)));
        if let Some(ca_file) = &endpoint.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| format!("cannot read ca_file {}: {e}", ca_file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!("ca_file {}: {}", ca_file.display(), http::describe_error(e))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if url.scheme() == "http" {
            // TLS is never used: the system's CA certificates (about 100 KiB held for good,
            // a few hundred read and parsed at build) are not loaded. A redirect to https://
            // then fails certificate verification.
            builder = builder.tls_certs_only([]);
        }
        let client = builder.build().map_err(http::describe_error)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &endpoint.headers {
            let (name, value) = http::header(name, value.expose())?;
            headers.insert(name, value);
        }
        let secrets = Secrets::new(http::url_secrets(endpoint.url.expose()).into_iter().chain(
            endpoint.headers.iter().flat_map(|(_, v)| {
                let value = v.expose().to_string();
                // `Bearer x` and `Basic x`: the credential alone may be echoed too.
                let credential = value.split_once(' ').map(|(_, c)| c.to_string());
                std::iter::once(value).chain(credential)
            }),
        ));
        Ok(EndpointClient {
            client,
            shown: http::redact_url(url.as_str()),
            url,
            headers,
            secrets,
        })
    }
}

impl ReportSpec {
    /// The title of a report over `window`: the job's own, or one that says the window's
    /// kind (`Weekly performance report` for 7 days, `Daily ...` for one, `Hourly ...`).
    pub fn title_for(&self, window: Duration) -> String {
        if let Some(title) = &self.title {
            return title.clone();
        }
        match window.as_secs() {
            604_800 => "Weekly performance report",
            86_400 => "Daily performance report",
            3_600 => "Hourly performance report",
            _ => "Performance report",
        }
        .to_string()
    }
}

#[derive(Debug)]
pub struct FetchSpec {
    /// The `servicenow` notifier whose settings the fetch reuses.
    pub from: String,
    pub servicenow: Option<ServicenowSettings>,
    /// The notifier's timeouts and retry pace, which the fetch follows too.
    pub delivery: Option<DeliverySpec>,
    pub query: Option<String>,
    pub fields: Option<Vec<String>>,
    pub page_size: u32,
}

#[derive(Debug, Clone)]
pub struct RotateSpec {
    pub paths: Vec<PathBuf>,
    pub max_age: Duration,
    pub max_size: Option<u64>,
    pub archive_dir: PathBuf,
    pub archive_max_age: Option<Duration>,
    pub keep_archives: Option<u32>,
    pub group_by: raw::GroupBy,
    pub compression: u32,
    /// Run after files past `max_size` were renamed, so writers reopen their logs.
    pub postrotate: Option<Postrotate>,
    /// How long a renamed file must be quiet before it is archived.
    pub settle: Duration,
}

/// How a rotate job tells writers to reopen their logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Postrotate {
    /// A program and its arguments, no shell.
    Command(Vec<String>),
    /// A signal (`libc::SIGHUP`…) to the pid in a file or to every process of a name.
    Signal {
        signal: i32,
        name: String,
        target: SignalTarget,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SignalTarget {
    PidFile(PathBuf),
    Process(String),
}

impl Config {
    /// Reads and checks a jobs file against the process environment.
    pub fn load(file: &Path) -> Result<Config, Problems> {
        build::load(file, &|name| std::env::var(name).ok())
    }

    /// What can be built of a jobs file that may have errors, with every problem: for
    /// `runner check` only (see `build::load_partial`).
    pub fn load_partial(file: &Path) -> (Option<Config>, Problems) {
        build::load_partial(file, &|name| std::env::var(name).ok())
    }

    pub fn job(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.get(name)
    }
}

/// `base/rel` for a relative path, `rel` for an absolute one, with `.` and `..` folded where the
/// path allows it, so a user sees `var/metrics` rather than `jobs/../var/metrics`.
pub fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let joined = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                let can_pop = matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                );
                if can_pop {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn localhost_listens_on_loopback_without_auth() {
        let spec = super::ListenSpec::parse("localhost:9464", None).unwrap();
        assert_eq!(spec.address, "127.0.0.1:9464".parse().unwrap());
        assert!(super::ListenSpec::parse(" localhost:0 ", None).is_ok());
        let err = super::ListenSpec::parse("localhost:http", None).unwrap_err();
        assert!(err.contains("`localhost:9464`"), "{err}");
        assert!(super::ListenSpec::parse("example.org:9464", None).is_err());
    }

    use super::*;

    #[test]
    fn resolves_relative_paths_against_the_jobs_folder() {
        assert_eq!(
            resolve_path(Path::new("jobs"), "../var"),
            PathBuf::from("var")
        );
        assert_eq!(
            resolve_path(Path::new("/etc/runner"), "../var/lib/runner"),
            PathBuf::from("/etc/var/lib/runner")
        );
        assert_eq!(
            resolve_path(Path::new("/etc/runner"), "/var/lib/runner"),
            PathBuf::from("/var/lib/runner")
        );
        assert_eq!(resolve_path(Path::new(""), "../x"), PathBuf::from("../x"));
        assert_eq!(resolve_path(Path::new("jobs"), ".."), PathBuf::from("."));
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("https://hooks.slack.com/services/T/B/X".into());
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    }
}
