//! The embedded cron scheduler: one small loop per job on tokio that sleeps until the next
//! occurrence, re-reads the clock, and starts the run unless the previous one is still going.
//!
//! Why not tokio-cron-scheduler: 0.15 freezes the UTC offset when a job is created (its DST bug
//! #87), polls every 500 ms (runs fire about 230 ms late), lets runs of one job overlap, and its
//! shutdown does not wait for running jobs. `cron` computes occurrences; this loop does the rest.

pub mod clock;
pub mod cron;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use self::clock::{BoxFuture, SharedClock, Wake};
use self::schedule::{Schedule, Zone};

/// What one scheduled run is told about itself.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The occurrence this run is for.
    pub scheduled: DateTime<Utc>,
    /// When it actually started.
    pub started: DateTime<Utc>,
    /// Cancelled when the run is out of time (`timeout`) or runner is stopping: the work stops
    /// at its next check (between files, entries, rows, template steps).
    pub cancel: CancellationToken,
}

/// How a run ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text is a one-line summary for the log.
    Done(String),
    /// Not run: another process holds the job's lock (`runner run JOB`).
    Busy(String),
    /// Not run: the job lacks what it needs (a notifier it reads from is off).
    Off(String),
}

/// A job body the scheduler can start.
pub trait Task: Send + Sync + 'static {
    fn run(self: Arc<Self>, info: RunInfo) -> BoxFuture<anyhow::Result<Outcome>>;
}

/// One job as the scheduler sees it.
pub struct Entry {
    pub name: String,
    pub schedule: Schedule,
    /// A run longer than this is cancelled and counted as failed.
    pub timeout: Option<Duration>,
    pub task: Arc<dyn Task>,
}

/// Counters per job, readable while the scheduler runs.
#[derive(Debug, Default)]
pub struct JobStats {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub panicked: AtomicU64,
    pub timed_out: AtomicU64,
    /// Occurrences skipped because the previous run was still going.
    pub skipped_overlap: AtomicU64,
    /// Runs the job itself declined (e.g. its lock is held by `runner run`).
    pub skipped_busy: AtomicU64,
    /// Occurrences that passed while the process could not run them (suspend, clock jump).
    pub missed: AtomicU64,
    /// Time spent in finished runs, and the last one's, in microseconds.
    pub run_micros_total: AtomicU64,
    pub last_run_micros: AtomicU64,
    /// How late the last run started after its scheduled time, in microseconds.
    pub last_lateness_micros: AtomicU64,
}

impl JobStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Shared view of every job's counters and which jobs are running now.
#[derive(Debug, Default)]
pub struct SchedulerState {
    stats: Mutex<BTreeMap<String, Arc<JobStats>>>,
    running: Mutex<BTreeMap<String, DateTime<Utc>>>,
    next_runs: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl SchedulerState {
    pub fn stats(&self, job: &str) -> Option<Arc<JobStats>> {
        lock(&self.stats).get(job).cloned()
    }

    /// The occurrence a job's loop is waiting for; absent before the loop starts waiting.
    pub fn next_run(&self, job: &str) -> Option<DateTime<Utc>> {
        lock(&self.next_runs).get(job).copied()
    }

    /// Jobs running now, with the time each started.
    pub fn running(&self) -> Vec<(String, DateTime<Utc>)> {
        lock(&self.running)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these only ever leaves counters behind; keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a shutdown ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Every running job finished within the grace period.
    Clean,
    /// These jobs were still running when the grace period ran out.
    Abandoned(Vec<String>),
}

/// Says the scheduler loop is alive (systemd's `WATCHDOG=1`).
pub type Ping = Arc<dyn Fn() + Send + Sync>;

pub struct Scheduler {
    clock: SharedClock,
    zone: Zone,
    entries: Vec<Entry>,
    state: Arc<SchedulerState>,
    watchdog: Option<(Duration, Ping)>,
}

impl Scheduler {
    pub fn new(clock: SharedClock, zone: Zone, entries: Vec<Entry>) -> Self {
        let state = Arc::new(SchedulerState::default());
        for entry in &entries {
            lock(&state.stats).insert(entry.name.clone(), Arc::default());
        }
        Scheduler {
            clock,
            zone,
            entries,
            state,
            watchdog: None,
        }
    }

    /// Has the scheduler loop call `ping` at its start and then every `every` on the monotonic
    /// clock, from the loop itself: a loop that is stuck stops pinging, and the supervisor
    /// (systemd's `WatchdogSec=`) restarts runner.
    pub fn with_watchdog(mut self, every: Duration, ping: Ping) -> Self {
        self.watchdog = Some((every, ping));
        self
    }

    pub fn state(&self) -> Arc<SchedulerState> {
        self.state.clone()
    }

    /// Runs every job on its schedule until `stop` is cancelled, then waits up to `grace` for
    /// running jobs to finish.
    pub async fn run(self, stop: CancellationToken, grace: Duration) -> Shutdown {
        let (_keep, reloads) = tokio::sync::mpsc::unbounded_channel();
        self.run_reloadable(stop, grace, reloads).await
    }

    /// As `run`, and takes new sets of entries from `reloads` as it goes: an entry with the
    /// same task, schedule and timeout as a running one keeps its loop (and its timer); a
    /// changed one gets a new loop; one no longer there stops. A run in progress always
    /// finishes, and a job's next run waits for it, whichever loop started it.
    pub async fn run_reloadable(
        self,
        stop: CancellationToken,
        grace: Duration,
        mut reloads: tokio::sync::mpsc::UnboundedReceiver<Vec<Entry>>,
    ) -> Shutdown {
        let runs = TaskTracker::new();
        let loops = TaskTracker::new();
        // Runs are cancelled when the grace period ends, not at the first signal.
        let cancel_runs = CancellationToken::new();
        let mut active: HashMap<String, (CancellationToken, Arc<Entry>)> = HashMap::new();
        let mut running: HashMap<String, Arc<AtomicBool>> = HashMap::new();
        let mut start =
            |entry: Arc<Entry>, active: &mut HashMap<String, (CancellationToken, Arc<Entry>)>| {
                let loop_stop = stop.child_token();
                let stats = {
                    let mut all = lock(&self.state.stats);
                    all.entry(entry.name.clone()).or_default().clone()
                };
                let job = JobLoop {
                    cancel_runs: cancel_runs.clone(),
                    stats,
                    entry: entry.clone(),
                    clock: self.clock.clone(),
                    zone: self.zone.clone(),
                    state: self.state.clone(),
                    runs: runs.clone(),
                    running: running.entry(entry.name.clone()).or_default().clone(),
                };
                loops.spawn(job.run(loop_stop.clone()));
                active.insert(entry.name.clone(), (loop_stop, entry));
            };
        for entry in self.entries {
            start(Arc::new(entry), &mut active);
        }
        // One timer across iterations: a reload does not push the next ping back.
        let mut next_ping: BoxFuture<()> = match &self.watchdog {
            Some((every, ping)) => {
                ping();
                self.clock.sleep(*every)
            }
            None => Box::pin(std::future::pending()),
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = &mut next_ping => {
                    if let Some((every, ping)) = &self.watchdog {
                        ping();
                        next_ping = self.clock.sleep(*every);
                    }
                }
                Some(entries) = reloads.recv() => {
                    let names: std::collections::HashSet<String> =
                        entries.iter().map(|e| e.name.clone()).collect();
                    for (name, (loop_stop, _)) in active.iter() {
                        if !names.contains(name) {
                            info!(job = %name, "job removed: it stops after its current run");
                            loop_stop.cancel();
                            lock(&self.state.next_runs).remove(name);
                        }
                    }
                    active.retain(|name, _| names.contains(name));
                    for entry in entries {
                        let same = active.get(&entry.name).is_some_and(|(_, old)| {
                            Arc::ptr_eq(&old.task, &entry.task)
                                && old.schedule == entry.schedule
                                && old.timeout == entry.timeout
                        });
                        if same {
                            continue;
                        }
                        if let Some((loop_stop, _)) = active.remove(&entry.name) {
                            loop_stop.cancel();
                        }
                        start(Arc::new(entry), &mut active);
                    }
                }
            }
        }
        loops.close();
        loops.wait().await;
        runs.close();
        let still_running = self.state.running();
        if !still_running.is_empty() {
            let names: Vec<&str> = still_running.iter().map(|(n, _)| n.as_str()).collect();
            info!(jobs = ?names, grace_s = grace.as_secs_f64(), "waiting for running jobs to finish");
        }
        let finished = tokio::select! {
            _ = runs.wait() => true,
            // Monotonic: a clock step during shutdown neither cuts the grace short nor stretches it.
            _ = self.clock.sleep(grace) => false,
        };
        if finished {
            Shutdown::Clean
        } else {
            cancel_runs.cancel();
            let names: Vec<String> = self.state.running().into_iter().map(|(n, _)| n).collect();
            warn!(jobs = ?names, "grace period over; abandoning jobs still running");
            Shutdown::Abandoned(names)
        }
    }
}

use std::collections::HashMap;

struct JobLoop {
    entry: Arc<Entry>,
    cancel_runs: CancellationToken,
    clock: SharedClock,
    zone: Zone,
    state: Arc<SchedulerState>,
    stats: Arc<JobStats>,
    runs: TaskTracker,
    running: Arc<AtomicBool>,
}

impl JobLoop {
    async fn run(self, stop: CancellationToken) {
        let name = self.entry.name.as_str();
        let mut cursor = self.clock.now();
        // `next_after` is strictly after: planning from just before the last moment seen
        // before a backward step keeps an occurrence at that very moment.
        let just_before = chrono::Duration::milliseconds(1);
        loop {
            let Some(next) = self.entry.schedule.next_after(cursor, &self.zone) else {
                warn!(
                    job = name,
                    "schedule has no further runs; the job will not run again"
                );
                return;
            };
            lock(&self.state.next_runs).insert(name.to_string(), next);
            let wake = tokio::select! {
                _ = stop.cancelled() => return,
                wake = self.clock.wake_at(next) => wake,
            };
            if stop.is_cancelled() {
                return;
            }
            if let Wake::SteppedBack { since } = wake {
                // The clock stepped back: plan again from the new time, or the job would wait
                // out the whole step. From the last moment seen before the step, not from now:
                // the step is noticed up to a slice late, and an occurrence that passed on the
                // new clock meanwhile is due now, not dropped.
                info!(job = name, now = %self.clock.now().to_rfc3339(), planned = %next.to_rfc3339(), "the clock stepped back; next run planned again");
                cursor = since - just_before;
                continue;
            }
            let now = self.clock.now();
            let started_at = self.clock.instant();
            cursor = next;
            // Woken long after `next` (suspend, clock step): run once now, not once per missed
            // occurrence.
            let mut missed = 0u64;
            while let Some(later) = self.entry.schedule.next_after(cursor, &self.zone) {
                if later > now || missed >= 1_000_000 {
                    break;
                }
                cursor = later;
                missed += 1;
            }
            if missed > 0 {
                self.stats.missed.fetch_add(missed, Ordering::Relaxed);
                warn!(
                    job = name,
                    missed, "woke late; missed runs are not made up, running once now"
                );
            }
            if self.running.swap(true, Ordering::AcqRel) {
                self.stats.skipped_overlap.fetch_add(1, Ordering::Relaxed);
                let since = lock(&self.state.running).get(name).copied();
                warn!(
                    job = name,
                    running_since = %since.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    skipped = JobStats::get(&self.stats.skipped_overlap),
                    "previous run still going; this run is skipped"
                );
                continue;
            }
            let info = RunInfo {
                scheduled: next,
                started: now,
                cancel: self.cancel_runs.child_token(),
            };
            self.runs.spawn(run_once(
                self.entry.clone(),
                info,
                started_at,
                self.clock.clone(),
                self.state.clone(),
                self.stats.clone(),
                self.running.clone(),
            ));
        }
    }
}

/// Runs one occurrence in its own task, so a panic or a timeout is contained and counted.
async fn run_once(
    entry: Arc<Entry>,
    info: RunInfo,
    started_at: Instant,
    clock: SharedClock,
    state: Arc<SchedulerState>,
    stats: Arc<JobStats>,
    running: Arc<AtomicBool>,
) {
    let name = entry.name.as_str();
    lock(&state.running).insert(name.to_string(), info.started);
    stats.started.fetch_add(1, Ordering::Relaxed);
    let lateness_us = (info.started - info.scheduled)
        .num_microseconds()
        .unwrap_or(0)
        .max(0) as u64;
    stats
        .last_lateness_micros
        .store(lateness_us, Ordering::Relaxed);
    let lateness_ms = lateness_us as f64 / 1e3;
    debug!(job = name, scheduled = %info.scheduled.to_rfc3339(), lateness_ms, "run started");

    let ended = run_within(name, entry.task.clone(), info, entry.timeout, &clock).await;
    // On the monotonic clock: a wall-clock step during the run must not change its length.
    let elapsed = clock.instant().saturating_duration_since(started_at);
    let elapsed_ms = elapsed.as_millis() as u64;
    let elapsed_us = elapsed.as_micros().min(u64::MAX as u128) as u64;
    stats
        .run_micros_total
        .fetch_add(elapsed_us, Ordering::Relaxed);
    stats.last_run_micros.store(elapsed_us, Ordering::Relaxed);
    match ended {
        RunEnd::TimedOut { limit } => {
            stats.timed_out.fetch_add(1, Ordering::Relaxed);
            stats.failed.fetch_add(1, Ordering::Relaxed);
            info!(
                job = name,
                timeout_ms = limit.as_millis() as u64,
                elapsed_ms,
                "cancelled run ended"
            );
        }
        RunEnd::Finished(Ok(Outcome::Done(summary))) => {
            stats.succeeded.fetch_add(1, Ordering::Relaxed);
            debug!(job = name, elapsed_ms, summary = %summary, "run finished");
        }
        RunEnd::Finished(Ok(Outcome::Busy(reason))) => {
            stats.skipped_busy.fetch_add(1, Ordering::Relaxed);
            warn!(job = name, reason = %reason, "run skipped");
        }
        RunEnd::Finished(Ok(Outcome::Off(reason))) => {
            debug!(job = name, reason = %reason, "job is off");
        }
        RunEnd::Finished(Err(e)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            error!(job = name, elapsed_ms, error = %format!("{e:#}"), "run failed");
        }
        RunEnd::Panicked(reason) => {
            stats.panicked.fetch_add(1, Ordering::Relaxed);
            stats.failed.fetch_add(1, Ordering::Relaxed);
            error!(job = name, elapsed_ms, panic = %reason, "run panicked; the scheduler goes on");
        }
    }
    lock(&state.running).remove(name);
    running.store(false, Ordering::Release);
}

/// How a run ended: with the task's own result, past its timeout (then cancelled and waited
/// for), or in a panic.
pub enum RunEnd {
    Finished(anyhow::Result<Outcome>),
    TimedOut { limit: Duration },
    Panicked(String),
}

/// Runs `task` in a task of its own, so a panic is contained, and cancels it at `timeout`:
/// the scheduler and `runner run JOB` hold a job to the same limit. A cancelled run is waited
/// for (the work stops at its next check), so nothing of it outlives its end here and no later
/// run overlaps it.
pub async fn run_within(
    name: &str,
    task: Arc<dyn Task>,
    info: RunInfo,
    timeout: Option<Duration>,
    clock: &SharedClock,
) -> RunEnd {
    let cancel = info.cancel.clone();
    let mut handle = tokio::spawn(task.run(info));
    let joined = match timeout {
        None => (&mut handle).await,
        Some(limit) => tokio::select! {
            joined = &mut handle => joined,
            // Monotonic: a wall-clock step during the run must not move its timeout.
            _ = clock.sleep(limit) => {
                error!(job = name, timeout_ms = limit.as_millis() as u64, "run timed out; cancelling it");
                cancel.cancel();
                let _ = handle.await;
                return RunEnd::TimedOut { limit };
            }
        },
    };
    match joined {
        Ok(result) => RunEnd::Finished(result),
        Err(join) if join.is_panic() => RunEnd::Panicked(panic_message(join.into_panic())),
        Err(_) => RunEnd::Panicked("cancelled".to_string()),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
