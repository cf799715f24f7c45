//! A job ready to run: the checked spec, the per-job lock shared by the scheduler and
//! `runner run`, and the body of its type.

use std::sync::Arc;

use crate::config::{Config, JobKind};
use crate::lock::{LockError, RunLock, job_lock_path};
use crate::monitor::Monitor;
use crate::notify::Notifiers;
use crate::scheduler::clock::{BoxFuture, SharedClock};
use crate::scheduler::{Outcome, RunInfo, Task};
use crate::template::bounds::Limits;

/// One job of the jobs file, runnable by the scheduler or by `runner run`.
pub struct Job {
    name: String,
    config: Arc<Config>,
    clock: SharedClock,
    notifiers: Arc<Notifiers>,
    lock: RunLock,
    /// State that lives from run to run (a monitor's rates and history), built on first use.
    body: tokio::sync::Mutex<Option<Body>>,
    /// Set by a reload: the monitor loads its rule files again before its next tick.
    rules_stale: std::sync::atomic::AtomicBool,
}

enum Body {
    Monitor(Box<Monitor>),
}

impl Job {
    pub fn new(
        config: Arc<Config>,
        name: &str,
        clock: SharedClock,
        notifiers: Arc<Notifiers>,
    ) -> Job {
        Job {
            name: name.to_string(),
            lock: RunLock::new(
                job_lock_path(&config.data_dir, name),
                &format!("job `{name}`"),
            ),
            config,
            clock,
            notifiers,
            body: tokio::sync::Mutex::new(None),
            rules_stale: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// For a reload that keeps this job: a monitor loads its rule files again at its next tick
    /// (their text may have changed though the jobs file did not); its history, probe counters
    /// and alerts stay. Returns at once, even while a tick runs.
    pub fn reload_rules(&self) {
        self.rules_stale
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Runs the job once under its lock; another process holding the lock skips this run.
    pub async fn run_once(&self, info: RunInfo) -> anyhow::Result<Outcome> {
        let _lock = match self.lock.try_acquire() {
            Ok(lock) => lock,
            Err(LockError::Held { holder, .. }) => {
                return Ok(Outcome::Busy(format!(
                    "job `{}` is already running in {holder}",
                    self.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let spec = self
            .config
            .job(&self.name)
            .ok_or_else(|| anyhow::anyhow!("job `{}` is not in the jobs file", self.name))?;
        // `enabled: false` only keeps a job off the schedule; `runner run` still runs it.
        if let Some(reason) = &spec.off {
            return Ok(Outcome::Off(format!(
                "job `{}` is off: {reason}",
                self.name
            )));
        }
        let cancel = info.cancel.clone();
        let line = match &spec.kind {
            JobKind::Monitor(monitor) => {
                let mut guard = self.body.lock().await;
                let Body::Monitor(state) = guard.get_or_insert_with(|| {
                    Body::Monitor(Box::new(Monitor::new(
                        &self.config,
                        &self.name,
                        monitor,
                        self.notifiers.clone(),
                    )))
                });
                if self
                    .rules_stale
                    .swap(false, std::sync::atomic::Ordering::AcqRel)
                {
                    state.reload_rules(monitor);
                }
                let (_, _, summary) = state.tick(self.clock.now()).await?;
                let line = format!(
                    "{} metrics, {} probe errors, {} alert events, {} alerts firing",
                    summary.metrics, summary.errors, summary.events, summary.firing
                );
                // A tick that measured nothing is recorded (its errors are in the sample) but
                // is a failed run: the scheduler counts it, `runner run` exits 1.
                if let Some(failed) = &summary.all_failed {
                    anyhow::bail!("{line}; {failed}");
                }
                line
            }
            JobKind::Report(_) => {
                // Reading a week of samples blocks: keep it off the runtime's workers.
                let (config, name, notifiers) = (
                    self.config.clone(),
                    self.name.clone(),
                    self.notifiers.clone(),
                );
                // The window ends at the occurrence this run is for, not when the run got
                // going: consecutive reports then meet to the millisecond.
                let now = info.scheduled;
                let limits = Limits {
                    cancel: Some(cancel),
                    ..Limits::report()
                };
                tokio::task::spawn_blocking(move || match config.job(&name).map(|j| &j.kind) {
                    Some(JobKind::Report(report)) => {
                        crate::report::run_job(&config, &name, report, now, &notifiers, &limits)
                    }
                    _ => anyhow::bail!("job `{name}` is not a report job"),
                })
                .await??
            }
            JobKind::ServicenowFetch(fetch) => {
                let fetching = crate::servicenow::fetch::run_job(
                    &self.name,
                    fetch,
                    &self.config.data_dir,
                    self.clock.clone(),
                );
                // The cache is written once, at the end: a fetch stopped on the way leaves it
                // as it was.
                tokio::select! {
                    done = fetching => done?,
                    _ = cancel.cancelled() => anyhow::bail!("cancelled before the fetch finished"),
                }
            }
            JobKind::Rotate(rotate) => {
                // File copying and fsync block: keep them off the runtime's workers.
                let (name, spec, data_dir) = (
                    self.name.clone(),
                    rotate.clone(),
                    self.config.data_dir.clone(),
                );
                let now = self.clock.now();
                let summary = tokio::task::spawn_blocking(move || {
                    crate::rotate::run_job(&name, &spec, &data_dir, now, &cancel)
                })
                .await?;
                // A run with problems (a full disk, an archive that does not verify) failed,
                // though the rest was rotated: the scheduler counts it and `runner run` exits 1.
                if let Some(first) = summary.problems.first() {
                    anyhow::bail!(
                        "{}; {} problem(s), the first: {first}",
                        summary.line(),
                        summary.problems.len()
                    );
                }
                summary.line()
            }
        };
        Ok(Outcome::Done(line))
    }
}

impl Task for Job {
    fn run(self: Arc<Self>, info: RunInfo) -> BoxFuture<anyhow::Result<Outcome>> {
        Box::pin(async move { self.run_once(info).await })
    }
}
