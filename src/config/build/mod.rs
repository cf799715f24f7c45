//! From the jobs file's text to a checked `Config`: parse (one pass per section), expand
//! `${VAR}`, resolve paths, check every value, and collect every problem on the way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::Location;

use super::env::{EnvError, Expanded, expand_with};
use super::host::local_hostname;
use super::raw::{JobConfig, ListenAuthConfig, ListenTlsConfig, NotifierConfig, RawConfig, Text};
use super::{Config, ListenAuth, ListenSpec, ListenTls, Secret, resolve_path};
use crate::diagnostic::{Problem, Problems};
use crate::scheduler::schedule::Zone;
use crate::vocab::duration::parse_duration;
use jobs::valid_job_name;
use yaml::parse_sections;

mod action;
mod jobs;
mod mute;
mod notifiers;
mod remote_write;
mod yaml;

pub use notifiers::{instance_url, signing_key};

/// A setting that may be left out, checked: `Some(None)` when it was left out, `Some(Some(v))`
/// when it is valid, `None` when it was given and is wrong (the problem is recorded).
fn optional<T>(checked: Option<Option<T>>) -> Option<Option<T>> {
    match checked {
        None => Some(None),
        Some(value) => value.map(Some),
    }
}

/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Reads an environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Reads `file` and builds the config, or returns every problem found.
/// On success, warnings (a notifier left off) are in `Config::warnings`.
pub fn load(file: &Path, env: EnvLookup<'_>) -> Result<Config, Problems> {
    let source = crate::diagnostic::read_text(file, "jobs file").map_err(|problem| {
        if problem.line == 0 {
            problem.help("pass the jobs file with `--jobs FILE` (default: jobs/jobs.yaml)")
        } else {
            *problem
        }
    })?;
    parse(file, &source, env)
}

/// Builds the config from a jobs file's text; `file` names it in problems and anchors
/// relative paths.
pub fn parse(file: &Path, source: &str, env: EnvLookup<'_>) -> Result<Config, Problems> {
    let (config, problems) = build(file, source, env, false)?;
    if problems.has_errors() {
        return Err(problems);
    }
    config.ok_or(problems)
}

/// Reads `file` and builds what can be built of it, with every problem found: `runner check`
/// checks the files a broken jobs file names (rule files, templates) too, so one round shows
/// every problem. The config is `None` when the top level cannot be built (no `data_dir`); its
/// `warnings` are empty (they are in the problems), and a job whose schedule, timeout or rule
/// timeout is wrong is kept with a stand-in so its rules and templates are checked. Never run
/// it.
pub fn load_partial(file: &Path, env: EnvLookup<'_>) -> (Option<Config>, Problems) {
    let source = match crate::diagnostic::read_text(file, "jobs file") {
        Ok(source) => source,
        Err(problem) => return (None, (*problem).into()),
    };
    match build(file, &source, env, true) {
        Ok((config, problems)) => {
            let config = config.map(|config| Config {
                warnings: Problems::default(),
                ..config
            });
            (config, problems)
        }
        Err(problems) => (None, problems),
    }
}

/// The config as far as it builds, and every problem found (sorted); `Err` when the YAML
/// cannot be read at all.
fn build(
    file: &Path,
    source: &str,
    env: EnvLookup<'_>,
    partial: bool,
) -> Result<(Option<Config>, Problems), Problems> {
    let raw = parse_sections(file, source)?;
    let mut builder = Builder {
        file,
        base_dir: file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        env,
        problems: raw.problems,
        missing_files: Problems::default(),
        off_notifiers: Vec::new(),
        partial,
        skipped_probes: raw.skipped_probes,
    };
    let config = builder.config(raw.top, raw.notifiers, raw.jobs);
    Ok((config, builder.problems.sorted()))
}

pub(in crate::config) struct Builder<'a> {
    file: &'a Path,
    base_dir: PathBuf,
    env: EnvLookup<'a>,
    problems: Problems,
    missing_files: Problems,
    /// "Notifier X is off" warnings, said only for notifiers a job sends to.
    off_notifiers: Vec<(String, Problem)>,
    /// Building for `load_partial`: a wrong schedule or timeout gets a stand-in.
    partial: bool,
    /// `(line, column)` of the `probes` items skipped while parsing, sorted: each was reported
    /// then, and the probes after it keep their index.
    pub(in crate::config) skipped_probes: Vec<(u64, u64)>,
}

impl Builder<'_> {
    pub(in crate::config) fn problem(
        &self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
    ) -> Problem {
        Problem::error(self.file, message)
            .at(at.line(), at.column(), at.span().len())
            .field(field)
    }

    pub(in crate::config) fn error(
        &mut self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
    ) {
        let problem = self.problem(at, field, message);
        self.problems.push(problem);
    }

    pub(in crate::config) fn error_help(
        &mut self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
        help: &str,
    ) {
        let problem = self.problem(at, field, message).help(help);
        self.problems.push(problem);
    }

    /// A variable of the environment the config is loaded with: probes that find their
    /// credentials as other tools do (`cloudwatch`) take them from there.
    pub(in crate::config) fn env_var(&self, key: &str) -> Option<String> {
        (self.env)(key)
    }

    /// Keeps a secret written in the file out of every source line `check` shows.
    pub(in crate::config) fn conceal(&mut self, secret: &str) {
        self.problems.conceal(secret);
    }

    pub(in crate::config) fn warn(
        &mut self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
        help: String,
    ) {
        let problem = self.warning(at, field, message, help);
        self.problems.push(problem);
    }

    /// A warning at `at`, for the caller to keep or push.
    pub(in crate::config) fn warning(
        &self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
        help: String,
    ) -> Problem {
        let mut problem = self.problem(at, field, message).help(help);
        problem.severity = crate::diagnostic::Severity::Warning;
        problem
    }

    /// A secret that must come from the environment: written in the file, it is a problem.
    fn secret_from_env(&mut self, text: &Text, field: &str) -> Option<Secret> {
        let expanded = self.expand(text, field)?;
        if expanded.vars.is_empty() {
            self.error_help(
                &text.referenced,
                field,
                "a secret is written in the jobs file",
                &format!(
                    "give it through the environment: `{}: \"${{RUNNER_LISTEN_SECRET}}\"`",
                    field.rsplit('.').next().unwrap_or(field)
                ),
            );
            return None;
        }
        if expanded.value.is_empty() {
            self.error(
                &text.referenced,
                field,
                "is empty: set the environment variable it names",
            );
            return None;
        }
        Some(Secret::new(expanded.value))
    }

    fn listen_auth(&mut self, auth: &ListenAuthConfig) -> Option<ListenAuth> {
        match (&auth.bearer_token, &auth.username, &auth.password) {
            (Some(token), None, None) => self
                .secret_from_env(token, "listen_auth.bearer_token")
                .map(ListenAuth::Bearer),
            (None, Some(username), Some(password)) => {
                let username = self.string(username, "listen_auth.username");
                let password = self.secret_from_env(password, "listen_auth.password");
                Some(ListenAuth::Basic {
                    username: username?,
                    password: password?,
                })
            }
            _ => {
                self.problems.push(
                    Problem::error(
                        self.file,
                        "`listen_auth` takes either `bearer_token`, or `username` and `password`",
                    )
                    .field("listen_auth"),
                );
                None
            }
        }
    }

    /// `listen_tls`: both paths resolved and the pair loaded as the listener will load it, a
    /// problem at the line of the file that is wrong.
    fn listen_tls(&mut self, tls: &ListenTlsConfig) -> Option<ListenTls> {
        let cert_file = self.path(&tls.cert_file, "listen_tls.cert_file");
        let key_file = self.path(&tls.key_file, "listen_tls.key_file");
        let files = ListenTls {
            cert_file: cert_file?,
            key_file: key_file?,
        };
        match crate::tls::load_located(&files.cert_file, &files.key_file) {
            Ok(_) => Some(files),
            Err((part, message)) => {
                let (at, field) = match part {
                    crate::tls::Part::Cert => (&tls.cert_file, "listen_tls.cert_file"),
                    crate::tls::Part::Key => (&tls.key_file, "listen_tls.key_file"),
                };
                self.error(&at.referenced, field, message);
                None
            }
        }
    }

    /// `${VAR}` expanded, or a problem recorded at the string's position.
    pub(in crate::config) fn expand(&mut self, text: &Text, field: &str) -> Option<Expanded> {
        match expand_with(&text.value, self.env) {
            Ok(expanded) => Some(expanded),
            Err(e) => {
                let help = e.help();
                let message = match &e {
                    EnvError::Unset(_) => format!("{e} (used in `{field}`)"),
                    _ => format!("{e} in `{}`", text.value),
                };
                self.error_help(&text.referenced, field, message, help);
                None
            }
        }
    }

    pub(in crate::config) fn string(&mut self, text: &Text, field: &str) -> Option<String> {
        self.expand(text, field).map(|e| e.value)
    }

    /// A path written inside another setting (`sslrootcert=` in a connection string), resolved
    /// like every path of the jobs file.
    pub(in crate::config) fn resolve(&self, path: &str) -> PathBuf {
        resolve_path(&self.base_dir, path)
    }

    pub(in crate::config) fn path(&mut self, text: &Text, field: &str) -> Option<PathBuf> {
        self.string(text, field)
            .map(|p| resolve_path(&self.base_dir, &p))
    }

    /// A path that names a file runner reads (a rule, a template): resolved, and when no such
    /// file exists (or a pattern matches none), a problem at the line that names it.
    pub(in crate::config) fn existing_path(
        &mut self,
        text: &Text,
        field: &str,
        what: &str,
    ) -> Option<PathBuf> {
        let path = self.path(text, field)?;
        let pattern = path.to_string_lossy();
        if crate::glob::has_wildcards(&pattern) {
            if crate::glob::expand(&path).is_ok_and(|found| found.is_empty()) {
                let problem = self
                    .problem(
                        &text.referenced,
                        field,
                        format!("no {what} matches `{}`", path.display()),
                    )
                    .help(format!("check the pattern; {}", self.relative_to()));
                self.missing_files.push(crate::diagnostic::Problem {
                    severity: crate::diagnostic::Severity::Warning,
                    ..problem
                });
            }
        } else if !path.is_file() {
            let problem = self
                .problem(
                    &text.referenced,
                    field,
                    format!("no {what} at `{}`", path.display()),
                )
                .help(format!("check the path; {}", self.relative_to()));
            self.missing_files.push(problem);
        }
        Some(path)
    }

    /// How relative paths in the file are read, for help texts.
    fn relative_to(&self) -> String {
        match self.base_dir.as_os_str().is_empty() {
            true => "relative paths start at the jobs file's folder".to_string(),
            false => format!(
                "relative paths start at the jobs file's folder, {}",
                self.base_dir.display()
            ),
        }
    }

    pub(in crate::config) fn duration(&mut self, text: &Text, field: &str) -> Option<Duration> {
        let value = self.string(text, field)?;
        match parse_duration(&value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(&text.referenced, field, e.to_string());
                None
            }
        }
    }

    pub(in crate::config) fn optional_duration(
        &mut self,
        text: Option<&Text>,
        field: &str,
        default: Duration,
    ) -> Option<Duration> {
        match text {
            Some(text) => self.duration(text, field),
            None => Some(default),
        }
    }

    /// A data_dir that is a file is an error; one this user cannot write (or create) is a
    /// warning: `check` may run as another user than the scheduler.
    fn check_data_dir(&mut self, dir: &Path, text: &Text) {
        let mut existing = dir;
        while !existing.exists() {
            match existing.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
                _ => {
                    existing = Path::new(".");
                    break;
                }
            }
        }
        if !existing.is_dir() {
            self.error_help(
                &text.referenced,
                "data_dir",
                format!("`{}` is a file, not a folder", existing.display()),
                "data_dir is the folder where runner keeps everything it writes",
            );
        } else if !writable(existing) {
            let what = if existing == dir {
                format!("this user cannot write data_dir `{}`", dir.display())
            } else {
                format!(
                    "this user cannot create data_dir `{}` (`{}` is not writable)",
                    dir.display(),
                    existing.display()
                )
            };
            self.warn(
                &text.referenced,
                "data_dir",
                what,
                "run runner as a user that may write it, or choose another folder".into(),
            );
        }
    }

    fn config(
        &mut self,
        top: RawConfig,
        notifiers: Vec<(Text, Option<NotifierConfig>)>,
        jobs: Vec<(Text, Option<JobConfig>)>,
    ) -> Option<Config> {
        let data_dir = match &top.data_dir {
            Some(text) => {
                let dir = self.path(text, "data_dir");
                if let Some(dir) = &dir {
                    self.check_data_dir(dir, text);
                }
                dir
            }
            // Written but unreadable (`data_dir: [a]`), and said so while parsing: not said
            // again as missing. `runner check` still checks the jobs' files, with the jobs
            // file's folder standing in.
            None if self.problems.errors().any(|p| p.field == "data_dir") => {
                self.partial.then(|| self.base_dir.clone())
            }
            None => {
                self.problems.push(
                    Problem::error(self.file, "missing field `data_dir`")
                        .at(1, 1, 1)
                        .field("data_dir")
                        .help("data_dir is the folder where runner keeps everything it writes: add `data_dir: var` (relative to this file)"),
                );
                None
            }
        };
        let wants_local = top
            .timezone
            .as_ref()
            .is_none_or(|tz| tz.value.trim().eq_ignore_ascii_case("local"));
        if wants_local && let Some(why) = Zone::local_problem() {
            let message = format!(
                "the machine's timezone cannot be determined ({why}); schedules and reports use UTC"
            );
            let help = "set `timezone:` to an IANA name such as `Europe/Berlin`, or fix `TZ` or /etc/localtime";
            match top.timezone.as_ref().or(top.data_dir.as_ref()) {
                Some(at) => self.warn(&at.referenced, "timezone", message, help.to_string()),
                None => {
                    self.problems.push(
                        Problem::warning(self.file, message)
                            .at(1, 1, 1)
                            .field("timezone")
                            .help(help),
                    );
                }
            }
        }
        let zone = match &top.timezone {
            None => Some(Zone::local()),
            Some(tz) => match Zone::parse(tz.value.trim()) {
                Ok(zone) => Some(zone),
                Err(message) => {
                    self.error(&tz.referenced, "timezone", message);
                    None
                }
            },
        };
        let host = match &top.host {
            Some(host) => match self.string(host, "host") {
                Some(name) if name == "auto" => {
                    let endpoint = self
                        .env_var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                        .unwrap_or_else(|| super::host::IMDS_ENDPOINT.to_string());
                    match super::host::ec2_host(&endpoint) {
                        Ok(name) => Some(name),
                        Err(e) => {
                            self.error_help(
                                &host.referenced,
                                "host",
                                format!("`host: auto` asks EC2's instance metadata (IMDSv2) for this instance's name: {e}"),
                                "off EC2, or with instance metadata turned off, write the host's name",
                            );
                            None
                        }
                    }
                }
                other => other,
            },
            None => Some(local_hostname()),
        };
        let shutdown_grace = self.optional_duration(
            top.shutdown_grace.as_ref(),
            "shutdown_grace",
            DEFAULT_SHUTDOWN_GRACE,
        );
        let listen_auth = top.listen_auth.as_ref().and_then(|a| self.listen_auth(a));
        let listen_tls = top.listen_tls.as_ref().and_then(|t| self.listen_tls(t));
        let listen = match &top.listen {
            Some(text) => match self.string(text, "listen") {
                Some(address) => match ListenSpec::parse(&address, listen_auth.clone()) {
                    Ok(spec) => Some(spec),
                    Err(message) => {
                        self.error(&text.referenced, "listen", message);
                        None
                    }
                },
                None => None,
            },
            None => None,
        };
        // `jobs:` that is not a mapping was said while parsing: it is not also "no jobs".
        if top.jobs.is_empty() && !self.problems.errors().any(|p| p.field == "jobs") {
            self.problems.push(
                Problem::error(self.file, "the jobs file has no jobs")
                    .at(
                        top.data_dir.as_ref().map_or(1, |d| d.referenced.line()),
                        1,
                        1,
                    )
                    .field("jobs")
                    .help(
                        "add at least one job under `jobs:`; jobs/jobs.yaml is a commented example",
                    ),
            );
        }

        let mut built_notifiers = IndexMap::new();
        for (name, config) in notifiers {
            if !valid_job_name(&name.value) || name.value == "log" {
                let message = if name.value == "log" {
                    "`log` is built in and cannot be redefined; pick another name".to_string()
                } else {
                    format!(
                        "invalid notifier name `{}`: use lowercase letters, digits, `-` and `_`",
                        name.value
                    )
                };
                self.error(
                    &name.referenced,
                    &format!("notifiers.{}", name.value),
                    message,
                );
                continue;
            }
            if let Some(spec) = config.and_then(|c| self.notifier(&name, c)) {
                built_notifiers.insert(name.value.clone(), spec);
            }
        }
        let remote_write = top
            .remote_write
            .as_ref()
            .and_then(|config| self.remote_write(config));
        let mute = self.mute(&top.maintenance, &top.inhibit);
        let actions = self.actions(&top.actions);
        let known_notifiers: Vec<String> = std::iter::once("log".to_string())
            .chain(built_notifiers.keys().cloned())
            .collect();

        let mut built_jobs = IndexMap::new();
        for (name, config) in jobs {
            let field = format!("jobs.{}", name.value);
            if !valid_job_name(&name.value) {
                self.error(
                    &name.referenced,
                    &field,
                    format!(
                        "invalid job name `{}`: use lowercase letters, digits, `-` and `_` (it names files and locks)",
                        name.value
                    ),
                );
                continue;
            }
            let Some(config) = config else { continue };
            if let Some(spec) = self.job(
                &name,
                config,
                &known_notifiers,
                &built_notifiers,
                data_dir.as_deref(),
            ) {
                built_jobs.insert(name.value.clone(), spec);
            }
        }

        // An off notifier matters only where a job sends to it; one nothing uses is not news.
        let used: std::collections::HashSet<&str> = built_jobs
            .values()
            .flat_map(|job: &crate::config::JobSpec| match &job.kind {
                crate::config::JobKind::Monitor(m) => m.notify.as_slice(),
                crate::config::JobKind::Report(r) => r.notify.as_slice(),
                _ => &[],
            })
            .map(String::as_str)
            .collect();
        for (name, warning) in std::mem::take(&mut self.off_notifiers) {
            if used.contains(name.as_str()) {
                self.problems.push(warning);
            }
        }
        Some(Config {
            file: self.file.to_path_buf(),
            base_dir: self.base_dir.clone(),
            data_dir: data_dir?,
            zone: zone?,
            host: host?,
            shutdown_grace: shutdown_grace?,
            listen,
            listen_auth,
            listen_tls,
            watch: top.watch,
            notifiers: built_notifiers,
            remote_write,
            mute,
            actions,
            jobs: built_jobs,
            warnings: self.problems.clone(),
            missing_files: self.missing_files.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JobKind, NotifierSettings, ServicenowAuth};
    use crate::vocab::Severity;

    fn load_str(yaml: &str, env: &[(&str, &str)]) -> Result<Config, Problems> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jobs.yaml");
        std::fs::write(&file, yaml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        load(&file, &lookup)
    }

    fn messages(result: Result<Config, Problems>) -> Vec<String> {
        result
            .unwrap_err()
            .iter()
            .map(|p| format!("{}:{} {} [{}]", p.line, p.column, p.message, p.field))
            .collect()
    }

    #[test]
    fn alerts_and_reports_go_only_where_they_can() {
        let yaml = "data_dir: var\nnotifiers:\n  drive: { type: gdrive, folder_id: f, client_id: c, client_secret: s, refresh_token: r }\n  sn: { type: servicenow, instance: dev1, username: u, password: p }\njobs:\n  m: { type: monitor, schedule: \"@every 10s\", notify: [log, drive] }\n  w: { type: report, schedule: \"@weekly\", notify: [drive, sn] }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(
            got,
            [
                "6:61 `drive` is a gdrive notifier: it takes reports, not alerts [jobs.m.notify[1]]",
                "7:59 `sn` is a servicenow notifier: it takes alerts, not reports [jobs.w.notify[1]]",
            ]
        );
    }

    const MINIMAL: &str =
        "data_dir: var\njobs:\n  monitor:\n    type: monitor\n    schedule: \"@every 10s\"\n";

    #[test]
    fn minimal_file_builds_with_defaults() {
        let config = load_str(MINIMAL, &[]).unwrap();
        assert_eq!(config.zone, Zone::local());
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        let job = config.job("monitor").unwrap();
        assert_eq!(job.type_name(), "monitor");
        match &job.kind {
            JobKind::Monitor(m) => assert_eq!(m.notify, vec!["log".to_string()]),
            other => panic!("{other:?}"),
        }
        assert!(config.data_dir.ends_with("var"));
    }

    #[test]
    fn reports_problems_of_every_section_at_once() {
        let yaml = "data_dir: var\nnotifiers:\n  chat: { type: slak, url: x }\njobs:\n  a:\n    type: monitor\n    schedule: \"61 * * * *\"\n  b:\n    type: rotate\n    schedule: \"@daily\"\n    paths: [x]\n    max_age: 15x\n  c:\n    type: monitor\n    schedule: \"@hourly\"\n    bogus: 1\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got[0].starts_with("3:17 unknown notifier type `slak`"),
            "{got:#?}"
        );
        assert!(got[0].ends_with("[notifiers.chat]"), "{got:#?}");
        assert!(
            got[1].starts_with(
                "7:15 invalid schedule `61 * * * *`: the minute field `61` is out of range (0-59)"
            ),
            "{got:#?}"
        );
        assert!(got[1].ends_with("[jobs.a.schedule]"), "{got:#?}");
        assert!(
            got[2].starts_with("12:14 invalid duration `15x`"),
            "{got:#?}"
        );
        assert!(got[3].starts_with("16:5 unknown field `bogus`"), "{got:#?}");
        assert!(got[3].ends_with("[jobs.c.bogus]"), "{got:#?}");
    }

    #[test]
    fn postrotate_is_a_command_or_a_signal_with_one_target() {
        let job = |postrotate: &str| {
            format!(
                "data_dir: var\njobs:\n  r:\n    type: rotate\n    schedule: \"@daily\"\n    paths: [/tmp/x.log]\n    max_age: 1d\n    settle: 2s\n    postrotate: {postrotate}\n"
            )
        };
        let config = load_str(&job("{ signal: USR1, pid_file: /run/app.pid }"), &[]).unwrap();
        let JobKind::Rotate(spec) = &config.jobs["r"].kind else {
            panic!("a rotate job")
        };
        assert_eq!(spec.settle, std::time::Duration::from_secs(2));
        assert_eq!(
            spec.postrotate,
            Some(crate::config::Postrotate::Signal {
                signal: libc::SIGUSR1,
                name: "SIGUSR1".into(),
                target: crate::config::SignalTarget::PidFile("/run/app.pid".into()),
            })
        );
        let config = load_str(&job("{ command: [systemctl, reload, nginx] }"), &[]).unwrap();
        let JobKind::Rotate(spec) = &config.jobs["r"].kind else {
            panic!("a rotate job")
        };
        assert_eq!(
            spec.postrotate,
            Some(crate::config::Postrotate::Command(vec![
                "systemctl".into(),
                "reload".into(),
                "nginx".into()
            ]))
        );
        for (bad, says) in [
            (
                "{ signal: KILL, process: app }",
                "`KILL` is not a reopen signal",
            ),
            (
                "{ signal: HUP }",
                "a `signal` needs exactly one of `pid_file` and `process`",
            ),
            (
                "{ command: [x], signal: HUP }",
                "`postrotate` is either a `command` or a `signal`",
            ),
        ] {
            let problems = load_str(&job(bad), &[]).unwrap_err();
            assert!(
                problems.render().contains(says),
                "{bad}: {}",
                problems.render()
            );
        }
    }

    #[test]
    fn an_off_notifier_no_job_sends_to_is_not_a_warning() {
        let yaml = "data_dir: var\nnotifiers:\n  slack: { type: slack, webhook_url: \"${SLACK_WEBHOOK_URL:-}\" }\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    notify: [log]\n";
        let config = load_str(yaml, &[]).unwrap();
        assert!(config.notifiers["slack"].off.is_some());
        assert_eq!(config.warnings.warnings().count(), 0);
    }

    #[test]
    fn empty_secret_turns_a_notifier_off_with_a_warning() {
        let yaml = "data_dir: var\nnotifiers:\n  slack: { type: slack, webhook_url: \"${SLACK_WEBHOOK_URL:-}\" }\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    notify: [log, slack]\n";
        let config = load_str(yaml, &[]).unwrap();
        let slack = &config.notifiers["slack"];
        assert_eq!(slack.off.as_deref(), Some("`webhook_url` is empty"));
        let warnings: Vec<_> = config.warnings.warnings().collect();
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].message,
            "notifier `slack` is off: `webhook_url` is empty"
        );
        assert_eq!(
            warnings[0].help.as_deref(),
            Some("set SLACK_WEBHOOK_URL to turn the notifier on")
        );
        let on = load_str(
            yaml,
            &[("SLACK_WEBHOOK_URL", "https://hooks.example/T/B/X")],
        )
        .unwrap();
        assert!(on.notifiers["slack"].off.is_none());
        assert!(on.warnings.is_empty());
    }

    #[test]
    fn fetch_job_is_off_without_servicenow() {
        let yaml = "data_dir: var\nnotifiers:\n  sn: { type: servicenow, instance: \"${SN:-}\" }\njobs:\n  sync:\n    type: servicenow_fetch\n    schedule: \"@hourly\"\n    from: sn\n";
        let config = load_str(yaml, &[]).unwrap();
        let job = config.job("sync").unwrap();
        assert_eq!(
            job.inactive_reason().as_deref(),
            Some("its ServiceNow notifier `sn` is off: `instance` is empty")
        );
        let config = load_str(yaml, &[("SN", "dev123")]).unwrap();
        assert!(
            config.notifiers["sn"]
                .off
                .as_deref()
                .unwrap()
                .starts_with("no credentials")
        );
    }

    #[test]
    fn servicenow_instance_and_auth() {
        assert_eq!(
            instance_url("dev12345").as_deref(),
            Some("https://dev12345.service-now.com")
        );
        assert_eq!(
            instance_url("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(instance_url("not a name"), None);
        let yaml = "data_dir: var\nnotifiers:\n  sn: { type: servicenow, instance: dev1, username: u, password: \"${PW}\" }\njobs:\n  sync: { type: servicenow_fetch, schedule: \"@hourly\", from: sn }\n";
        let config = load_str(yaml, &[("PW", "secret")]).unwrap();
        match &config.notifiers["sn"].settings {
            NotifierSettings::Servicenow(s) => {
                assert!(
                    matches!(&s.auth, ServicenowAuth::Basic { username, password } if username == "u" && password.expose() == "secret")
                );
                assert_eq!(config.notifiers["sn"].min_severity, Severity::Critical);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unset_variable_is_an_error_at_its_place() {
        let yaml =
            "data_dir: \"${RUNNER_DATA}\"\njobs:\n  m: { type: monitor, schedule: \"@hourly\" }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(
            got,
            ["1:11 environment variable `RUNNER_DATA` is not set (used in `data_dir`) [data_dir]"]
        );
        let config = load_str(yaml, &[("RUNNER_DATA", "/srv/runner")]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/runner"));
    }

    #[test]
    fn probe_names_are_checked() {
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@hourly\"\n    probes:\n      - { type: cpu }\n      - { type: cpu }\n      - { type: ping, name: Gateway, host: 127.0.0.1 }\n      - { type: ping, name: gw, host: 127.0.0.1 }\n      - { type: ping, name: gw, host: ::1 }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].contains("the `cpu` probe is listed twice"),
            "{got:#?}"
        );
        assert!(got[1].contains("invalid probe name `Gateway`"), "{got:#?}");
        assert!(
            got[2].contains("two `ping` probes are named `gw`"),
            "{got:#?}"
        );
    }

    #[test]
    fn probe_settings_are_checked() {
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@hourly\"\n    probes:\n      - { type: disk, mounts: [/, var/log] }\n      - { type: cpu, timeout_ms: 0 }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(
            got,
            [
                "7:35 `var/log` is not an absolute path; mount points start with `/` [jobs.m.probes[0].mounts[1]]",
                "8:34 `timeout_ms` must be above 0 [jobs.m.probes[1].timeout_ms]",
            ]
        );
    }

    #[test]
    fn service_probe_settings_are_checked() {
        let yaml = r#"data_dir: var
jobs:
  m:
    type: monitor
    schedule: "@hourly"
    probes:
      - { type: http, name: a, url: "ftp://x/y" }
      - { type: http, name: b, url: "http://x/", extract: { p95: "items[x]" }, body_regex: "(" }
      - { type: process, name: c }
      - { type: process, name: d, process_name: a-very-long-process-name }
      - { type: command, name: e, command: [a], shell: "b" }
      - { type: access_log, name: f, path: x.log, regex: '(?P<client>\S+)' }
      - { type: tcp, name: g, host: "http://db", port: 5432 }
"#;
        let got: Vec<String> = messages(load_str(yaml, &[]))
            .into_iter()
            .map(|m| m.split_once(' ').unwrap().1.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "the URL's scheme must be http or https [jobs.m.probes[0].url]",
                "`items[x]` is not a JSON path [jobs.m.probes[1].extract.p95]",
                "invalid regex `(`: error: unclosed group [jobs.m.probes[1].body_regex]",
                "a process probe matches by exactly one of `process_name`, `cmdline` or `pid_file` [jobs.m.probes[2]]",
                "`a-very-long-process-name` is longer than the 15 bytes the kernel keeps of a process name [jobs.m.probes[3].process_name]",
                "a command probe needs exactly one of `command` (a program and its arguments) or `shell` (a shell line) [jobs.m.probes[4]]",
                "the regex has no `status` group [jobs.m.probes[5].regex]",
                "`http://db` is not a host name or address [jobs.m.probes[6].host]",
            ]
        );
    }

    #[test]
    fn page_size_is_located_at_its_own_line() {
        let yaml = "data_dir: var\nnotifiers:\n  sn: { type: servicenow, instance: dev1, username: u, password: p }\njobs:\n  sync:\n    type: servicenow_fetch\n    schedule: \"@hourly\"\n    from: sn\n    page_size: 0\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(
            got,
            ["9:16 `page_size` must be between 1 and 10000, not 0 [jobs.sync.page_size]"]
        );
    }

    #[test]
    fn a_bad_field_does_not_hide_the_rest_of_its_job() {
        // `flap_transitions` and `bogus` end the parse of the job; its schedule, its probes
        // and the probe after a bad one are still read and checked.
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10x\"\n    flap_transitions: many\n    bogus: 1\n    probes:\n      - { type: ping, name: gw, host: a, count: x }\n      - { type: cpu, timeout_ms: 0 }\n  r:\n    type: rotate\n    schedule: \"@daily\"\n    paths: [x]\n    max_age: [15]\n";
        let got = messages(load_str(yaml, &[]));
        let lines: Vec<&str> = got
            .iter()
            .map(|m| m.split_once(' ').map_or(m.as_str(), |(at, _)| at))
            .collect();
        assert_eq!(
            lines,
            ["5:15", "6:23", "7:5", "9:49", "10:34", "15:14"],
            "{got:#?}"
        );
        assert!(got[2].contains("unknown field `bogus`"), "{got:#?}");
        assert!(got[3].ends_with("[jobs.m.probes[0].count]"), "{got:#?}");
        // A required field that is wrong is said once, not again as missing.
        assert!(got[5].ends_with("[jobs.r.max_age]"), "{got:#?}");
    }

    #[test]
    fn a_probe_broken_as_a_whole_does_not_hide_the_others() {
        // An unknown type, a missing `type` (sorted keys, no `type` at all), a missing required
        // field: each said at its item, and the probes after them checked at their own index.
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@hourly\"\n    probes:\n      - { type: pong }\n      - { host: a, name: gw }\n      - { name: gw, type: ping }\n      - { type: cpu }\n      - { type: cpu, timeout_ms: 0 }\n";
        let got = messages(load_str(yaml, &[]));
        let fields: Vec<&str> = got
            .iter()
            .filter_map(|m| m.rsplit_once(" [")?.1.strip_suffix(']'))
            .collect();
        assert_eq!(
            fields,
            [
                "jobs.m.probes[0]",
                "jobs.m.probes[1]",
                "jobs.m.probes[2]",
                "jobs.m.probes[4]",
                "jobs.m.probes[4].timeout_ms",
            ],
            "{got:#?}"
        );
        assert!(
            got[0].starts_with("7:17 unknown probe type `pong`"),
            "{got:#?}"
        );
    }

    #[test]
    fn a_bad_top_level_setting_does_not_hide_the_jobs() {
        let yaml = "data_dir: var\nwatch: maybe\nlisten_auth: [x]\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10x\"\n";
        let got = messages(load_str(yaml, &[]));
        let lines: Vec<&str> = got
            .iter()
            .map(|m| m.split_once(' ').map_or(m.as_str(), |(at, _)| at))
            .collect();
        assert_eq!(lines, ["2:8", "3:14", "7:15"], "{got:#?}");
    }

    #[test]
    fn a_partial_load_keeps_what_builds_and_every_problem() {
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10x\"\n    rules: [gone.rhai]\n  r:\n    type: report\n    schedule: \"@weekly\"\n    templates: [gone.hbs]\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jobs.yaml");
        std::fs::write(&file, yaml).unwrap();
        let (config, problems) = load_partial(&file, &|_| None);
        assert_eq!(problems.errors().count(), 1, "{problems}");
        let config = config.expect("the top level builds");
        assert_eq!(config.jobs.len(), 2);
        assert_eq!(config.missing_files.len(), 2, "{}", config.missing_files);
        assert!(config.warnings.is_empty());
    }
}
