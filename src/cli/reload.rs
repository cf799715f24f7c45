//! Reloading a running scheduler (SIGHUP, `runner reload`): the jobs file, rules and templates
//! are checked as `runner check` does, then swapped in. Jobs whose settings did not change keep
//! their state (history, probe counters, alert state, timers) and load their rule files again;
//! changed jobs start afresh (a monitor warms its history from the metrics log, its alerts from
//! their saved state); removed jobs stop after their current run. A change with problems, or
//! one that needs a restart (data_dir, host, timezone, shutdown_grace, notifiers, listen and
//! its auth and TLS files, remote_write, maintenance and inhibit, actions), keeps the running
//! configuration and says why. The outcome goes to the log, to systemd (`RELOADING=1`, then
//! `READY=1` with a `STATUS=`) and to `state/last-reload.json`, where `runner reload` waits
//! for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::output::errln;

use crate::config::{Config, JobSpec, ListenAuth};
use crate::job::Job;
use crate::notify::Notifiers;
use crate::scheduler::Entry;
use crate::scheduler::clock::SharedClock;

/// The jobs running now, each with what its settings were.
pub struct Running {
    pub config: Arc<Config>,
    jobs: BTreeMap<String, (String, Arc<Job>)>,
    /// Where the status page is served (`http://127.0.0.1:9100/`), whichever of `--listen`,
    /// `RUNNER_LISTEN` or `listen:` chose it: a reload does not move it.
    pub listening: Option<String>,
}

/// Everything of a job's settings, secrets shown redacted: equal means unchanged.
fn fingerprint(spec: &JobSpec) -> String {
    format!("{spec:?}")
}

/// What a reload cannot change in place and `config` changes from `running`: one line each,
/// naming the setting.
fn needs_restart(config: &Config, running: &Running) -> Vec<String> {
    let old = &running.config;
    let mut changes = Vec::new();
    let mut differs = |name: &str, before: String, after: String| {
        if before != after {
            changes.push(format!(
                "`{name}` changed from {before} to {after}: that needs a restart"
            ));
        }
    };
    differs(
        "data_dir",
        old.data_dir.display().to_string(),
        config.data_dir.display().to_string(),
    );
    differs("host", old.host.clone(), config.host.clone());
    differs(
        "timezone",
        old.zone.name().to_string(),
        config.zone.name().to_string(),
    );
    differs(
        "shutdown_grace",
        format!("{:?}", old.shutdown_grace),
        format!("{:?}", config.shutdown_grace),
    );
    let address = |c: &Config| match &c.listen {
        Some(listen) => listen.address.to_string(),
        None => "none".to_string(),
    };
    let (before, after) = (address(old), address(config));
    if before != after {
        let serving = match &running.listening {
            Some(url) => format!("the status page and /metrics stay on {url} until then"),
            None => "nothing is served until then".to_string(),
        };
        changes.push(format!(
            "`listen` changed from {before} to {after}: that needs a restart; {serving}"
        ));
    }
    // The listener checks the credentials it started with: a new token (one that leaked,
    // say) must not look taken in while the old one still opens the page.
    if listen_auth_settings(old) != listen_auth_settings(config) {
        changes.push(
            "`listen_auth` changed: that needs a restart; the listener asks for the credentials it started with until then".to_string(),
        );
    }
    // New contents of the same two files are served at the next connection; other files are not.
    if old.listen_tls != config.listen_tls {
        changes.push(
            "`listen_tls` names other files: that needs a restart (new contents of the same files are taken at the next connection)".to_string(),
        );
    }
    // Secrets are redacted in the Debug text, and printing them all would say too much.
    if format!("{:?}", old.notifiers) != format!("{:?}", config.notifiers) {
        changes.push("`notifiers` changed: that needs a restart".to_string());
    }
    // A kept monitor keeps the alerts' mute decision it was built with (its windows and
    // inhibition rules hold alerts in its saved state); a new one would not apply to it.
    if old.mute != config.mute {
        changes.push("`maintenance` or `inhibit` changed: that needs a restart".to_string());
    }
    // A kept monitor keeps the actions it was built with, as it keeps its mute decision.
    if old.actions != config.actions {
        changes.push("`actions` changed: that needs a restart".to_string());
    }
    // The remote-write task keeps its receiver and cursor from the start.
    if remote_write_settings(old) != remote_write_settings(config) {
        changes.push("`remote_write` changed: that needs a restart".to_string());
    }
    changes
}

/// `listen_auth` with its secrets, to compare, never to show.
fn listen_auth_settings(config: &Config) -> Option<(String, String)> {
    config.listen_auth.as_ref().map(|auth| match auth {
        ListenAuth::Bearer(token) => (String::new(), token.expose().to_string()),
        ListenAuth::Basic { username, password } => {
            (username.clone(), password.expose().to_string())
        }
    })
}

/// `remote_write` with its secrets, to compare, never to show.
fn remote_write_settings(config: &Config) -> Option<String> {
    config.remote_write.as_ref().map(|rw| {
        let secrets: Vec<&str> = std::iter::once(rw.endpoint.url.expose())
            .chain(rw.endpoint.headers.iter().map(|(_, v)| v.expose()))
            .collect();
        format!("{rw:?}{secrets:?}")
    })
}

/// The scheduler's entries for `config`, reusing the jobs of `previous` whose settings did not
/// change; returns them with the new running set.
pub fn entries(
    config: Arc<Config>,
    clock: &SharedClock,
    notifiers: &Arc<Notifiers>,
    previous: Option<&Running>,
) -> (Vec<Entry>, Running, Vec<Arc<Job>>) {
    let mut jobs = BTreeMap::new();
    let mut entries = Vec::new();
    let mut kept = Vec::new();
    let now = clock.now();
    for spec in config.jobs.values() {
        let print = fingerprint(spec);
        let job = match previous.and_then(|p| p.jobs.get(&spec.name)) {
            Some((old, job)) if *old == print => {
                kept.push(job.clone());
                job.clone()
            }
            _ => Arc::new(Job::new(
                config.clone(),
                &spec.name,
                clock.clone(),
                notifiers.clone(),
            )),
        };
        jobs.insert(spec.name.clone(), (print, job.clone()));
        if let Some(reason) = spec.inactive_reason() {
            info!(job = %spec.name, "job is off: {reason}");
            continue;
        }
        let next = spec
            .schedule
            .next_after(now, &config.zone)
            .map(|t| config.zone.format(t))
            .unwrap_or_else(|| "never".into());
        info!(job = %spec.name, r#type = spec.type_name(), schedule = %spec.schedule, next = %next, "job scheduled");
        entries.push(Entry {
            name: spec.name.clone(),
            schedule: spec.schedule.clone(),
            timeout: spec.timeout,
            task: job,
        });
    }
    (
        entries,
        Running {
            config,
            jobs,
            listening: None,
        },
        kept,
    )
}

/// How a reload went, for `/metrics`, the log and `runner reload`.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ok: bool,
    pub kept: usize,
    pub changed: usize,
    pub removed: usize,
    /// Why it was refused: each problem with its place, or each setting that needs a restart.
    pub problems: Vec<String>,
}

impl Outcome {
    fn refused(problems: Vec<String>) -> Outcome {
        Outcome {
            problems,
            ..Outcome::default()
        }
    }

    /// One line for systemd's `STATUS=` and `runner reload`.
    pub fn summary(&self) -> String {
        if self.ok {
            format!(
                "reloaded: {} kept, {} changed or added, {} removed",
                crate::vocab::words::plural(self.kept, "job"),
                self.changed,
                self.removed
            )
        } else {
            format!(
                "reload refused ({}); the running configuration stays",
                crate::vocab::words::plural(self.problems.len(), "problem")
            )
        }
    }
}

/// Loads and checks `file`; when it is sound and changes nothing that needs a restart, hands
/// the new entries to the scheduler and becomes the running set.
pub async fn reload(
    file: &Path,
    running: &mut Running,
    clock: &SharedClock,
    notifiers: &Arc<Notifiers>,
    scheduler: &tokio::sync::mpsc::UnboundedSender<Vec<Entry>>,
) -> Outcome {
    let started = Instant::now();
    let file = file.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || {
        Config::load(&file).map(|config| {
            let (problems, _) = super::check::problems(&config);
            (config, problems)
        })
    })
    .await;
    let (config, problems) = match checked {
        Ok(Ok(checked)) => checked,
        Ok(Err(problems)) => {
            let mut said = Vec::new();
            for problem in problems.iter() {
                error!(at = %problem.location(), "reload refused: {}", problem.message);
                said.push(format!("{}: {}", problem.location(), problem.message));
            }
            warn!(
                problems = problems.len(),
                "the jobs file has problems; the running configuration stays"
            );
            return Outcome::refused(said);
        }
        Err(e) => {
            error!(error = %e, "reload failed (a bug); the running configuration stays");
            return Outcome::refused(vec![format!("reload failed (a bug): {e}")]);
        }
    };
    if problems.has_errors() {
        let errors: Vec<_> = problems
            .iter()
            .filter(|p| p.severity == crate::diagnostic::Severity::Error)
            .collect();
        for problem in &errors {
            error!(at = %problem.location(), "reload refused: {}", problem.message);
        }
        warn!(
            problems = errors.len(),
            "the change has problems; the running configuration stays"
        );
        return Outcome::refused(
            errors
                .iter()
                .map(|p| format!("{}: {}", p.location(), p.message))
                .collect(),
        );
    }
    let changes = needs_restart(&config, running);
    if !changes.is_empty() {
        for change in &changes {
            warn!("reload refused: {change}");
        }
        warn!("the change needs a restart; the running configuration stays");
        return Outcome::refused(changes);
    }
    let config = Arc::new(config);
    let before: Vec<String> = running.jobs.keys().cloned().collect();
    let (entries, mut next, kept) = entries(config.clone(), clock, notifiers, Some(running));
    for job in &kept {
        job.reload_rules();
    }
    let removed = before
        .iter()
        .filter(|name| !config.jobs.contains_key(*name))
        .count();
    let outcome = Outcome {
        ok: true,
        kept: kept.len(),
        changed: config.jobs.len() - kept.len(),
        removed,
        problems: Vec::new(),
    };
    if scheduler.send(entries).is_err() {
        error!("the scheduler is gone; nothing was reloaded");
        return Outcome::refused(vec!["the scheduler is gone; nothing was reloaded".into()]);
    }
    next.listening = running.listening.take();
    *running = next;
    super::loaded::record(&running.config);
    info!(
        kept = outcome.kept,
        changed_or_added = outcome.changed,
        removed = outcome.removed,
        elapsed_ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        "reloaded the jobs file, rules and templates"
    );
    outcome
}

/// A reload asked for (SIGHUP, `runner reload`, `watch`), told to systemd as it begins and
/// ends, and recorded for `runner reload`.
pub async fn on_request(
    file: &Path,
    running: &mut Running,
    clock: &SharedClock,
    notifiers: &Arc<Notifiers>,
    scheduler: &tokio::sync::mpsc::UnboundedSender<Vec<Entry>>,
) -> Outcome {
    let started = super::sd_notify::monotonic_usec();
    super::sd_notify::reloading();
    let outcome = reload(file, running, clock, notifiers, scheduler).await;
    let record = Record {
        pid: std::process::id(),
        started_monotonic_usec: started,
        ok: outcome.ok,
        summary: outcome.summary(),
        problems: outcome.problems.clone(),
    };
    let path = record_path(&running.config.data_dir);
    if let Err(e) = write_record(&path, &record) {
        warn!(path = %path.display(), error = %e, "cannot record how the reload went; `runner reload` will not learn it");
    }
    super::sd_notify::notify(&format!("READY=1\nSTATUS={}", record.summary));
    outcome
}

/// How the last reload went, for `runner reload` in another process.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The scheduler's pid: a record left by an earlier scheduler is not this one's answer.
    pid: u32,
    /// CLOCK_MONOTONIC when the reload began: after `runner reload`'s signal, or not its answer.
    started_monotonic_usec: u64,
    ok: bool,
    summary: String,
    problems: Vec<String>,
}

fn record_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("last-reload.json")
}

/// Whole or not at all, so a reader never sees half of it.
fn write_record(path: &Path, record: &Record) -> std::io::Result<()> {
    let text = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    crate::store::atomic::write(path, &text)
}

fn read_record(path: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// `runner reload`: signals the scheduler running on the jobs file's data_dir to reload, waits
/// up to `wait` for it to say how it went, and prints that: exit 0 when the change went in, 1
/// when it was refused (with why), when no scheduler runs, or when none answered in time.
pub fn signal_running(file: &Path, wait: Duration) -> u8 {
    use crate::lock::{LockError, LockFile, scheduler_lock_path};
    let config = match super::load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let lock_path = scheduler_lock_path(&config.data_dir);
    match LockFile::try_acquire(&lock_path, "the scheduler of this data_dir") {
        Err(LockError::Held { pid: Some(pid), .. }) => ask(&config.data_dir, pid, wait),
        Err(e) => {
            super::fail(format_args!("cannot find the scheduler: {e}"));
            super::exit::FAILED
        }
        Ok(_) => {
            super::fail(format_args!(
                "no scheduler runs on {}; nothing to reload",
                config.data_dir.display()
            ));
            super::exit::FAILED
        }
    }
}

fn ask(data_dir: &Path, pid: u32, wait: Duration) -> u8 {
    let path = record_path(data_dir);
    let asked = super::sd_notify::monotonic_usec();
    // SAFETY: kill has no memory preconditions; the pid is the lock holder's.
    if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
        super::fail(format_args!(
            "cannot signal the scheduler (pid {pid}): {}",
            std::io::Error::last_os_error()
        ));
        return super::exit::FAILED;
    }
    let deadline = Instant::now() + wait;
    let record = loop {
        if let Some(record) =
            read_record(&path).filter(|r| r.pid == pid && r.started_monotonic_usec >= asked)
        {
            break record;
        }
        if !alive(pid) {
            super::fail(format_args!(
                "the scheduler (pid {pid}) ended before saying how the reload went"
            ));
            return super::exit::FAILED;
        }
        if Instant::now() >= deadline {
            super::fail(format_args!(
                "the scheduler (pid {pid}) did not say how the reload went within {}s; it may still be checking the files, and its log says how it goes (`journalctl -u runner`)",
                wait.as_secs_f64()
            ));
            return super::exit::FAILED;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if record.ok {
        super::say(format_args!("the scheduler (pid {pid}) {}", record.summary));
        return super::exit::OK;
    }
    super::fail(format_args!(
        "the scheduler (pid {pid}): {}",
        record.summary
    ));
    for problem in &record.problems {
        if crate::logging::is_json() {
            error!("{problem}");
        } else {
            let priority = crate::logging::journal_prefix(tracing::Level::ERROR);
            errln!("{priority}  {problem}");
        }
    }
    super::exit::FAILED
}

/// Whether `pid` is still there (EPERM: it is, as another user's).
pub(super) fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let found = unsafe { libc::kill(pid as i32, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
