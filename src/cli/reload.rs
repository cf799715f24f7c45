//! Reloading a running scheduler (SIGHUP, `runner reload`): the jobs file, rules and templates
//! are checked as `runner check` does, then swapped in. Jobs whose settings did not change keep
//! their state (history, probe counters, alert state, timers) and load their rule files again;
//! changed jobs start afresh (a monitor warms its history from the metrics log, its alerts from
//! their saved state); removed jobs stop after their current run. A change with problems, or
//! one that needs a restart (data_dir, host, timezone, notifiers, listen), keeps the running
//! configuration and says why.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::config::{Config, JobSpec};
use crate::job::Job;
use crate::notify::Notifiers;
use crate::scheduler::Entry;
use crate::scheduler::clock::SharedClock;

/// The jobs running now, each with what its settings were.
pub struct Running {
    pub config: Arc<Config>,
    jobs: BTreeMap<String, (String, Arc<Job>)>,
}

/// Everything of a job's settings, secrets shown redacted: equal means unchanged.
fn fingerprint(spec: &JobSpec) -> String {
    format!("{spec:?}")
}

/// What a reload cannot change in place.
fn restart_only(config: &Config) -> String {
    format!(
        "{:?}|{}|{}|{:?}|{:?}|{:?}",
        config.data_dir,
        config.host,
        config.zone.name(),
        config.shutdown_grace,
        config.notifiers,
        config.listen.as_ref().map(|l| l.address),
    )
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
    (entries, Running { config, jobs }, kept)
}

/// How a reload went, for `/metrics` and the log.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ok: bool,
    pub kept: usize,
    pub changed: usize,
    pub removed: usize,
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
            for problem in problems.iter() {
                error!(at = %problem.location(), "reload refused: {}", problem.message);
            }
            warn!(
                problems = problems.len(),
                "the jobs file has problems; the running configuration stays"
            );
            return Outcome::default();
        }
        Err(e) => {
            error!(error = %e, "reload failed (a bug); the running configuration stays");
            return Outcome::default();
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
        return Outcome::default();
    }
    if restart_only(&config) != restart_only(&running.config) {
        warn!(
            "data_dir, host, timezone, shutdown_grace, notifiers or listen changed: that needs a restart; the running configuration stays"
        );
        return Outcome::default();
    }
    let config = Arc::new(config);
    let before: Vec<String> = running.jobs.keys().cloned().collect();
    let (entries, next, kept) = entries(config.clone(), clock, notifiers, Some(running));
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
    };
    if scheduler.send(entries).is_err() {
        error!("the scheduler is gone; nothing was reloaded");
        return Outcome::default();
    }
    *running = next;
    info!(
        kept = outcome.kept,
        changed_or_added = outcome.changed,
        removed = outcome.removed,
        elapsed_ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        "reloaded the jobs file, rules and templates"
    );
    outcome
}

/// `runner reload`: signals the scheduler running on the jobs file's data_dir to reload.
pub fn signal_running(file: &Path) -> u8 {
    use crate::lock::{LockError, LockFile, scheduler_lock_path};
    let config = match super::load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let lock_path = scheduler_lock_path(&config.data_dir);
    match LockFile::try_acquire(&lock_path, "the scheduler of this data_dir") {
        Err(LockError::Held { pid: Some(pid), .. }) => {
            // SAFETY: kill has no memory preconditions; the pid is the lock holder's.
            if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
                super::fail(format_args!(
                    "cannot signal the scheduler (pid {pid}): {}",
                    std::io::Error::last_os_error()
                ));
                return super::exit::FAILED;
            }
            super::say(format_args!(
                "asked the scheduler (pid {pid}) to reload; its log says how it went"
            ));
            super::exit::OK
        }
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
