//! The scheduler on a virtual clock: DST, no overlap, failures contained, graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use runner::scheduler::clock::{BoxFuture, SharedClock, VirtualClock};
use runner::scheduler::schedule::{Schedule, Zone};
use runner::scheduler::{
    Entry, JobStats, Outcome, RunInfo, Scheduler, SchedulerState, Shutdown, Task,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A task that reports each start and then behaves as told.
struct Probe {
    started: mpsc::UnboundedSender<DateTime<Utc>>,
    behaviour: Behaviour,
    runs: AtomicU32,
}

enum Behaviour {
    Finish,
    /// Holds until the test adds a permit.
    WaitFor(Arc<Semaphore>),
    /// Panics on the first run, then finishes.
    PanicOnce,
    /// Fails every run.
    Fail,
    /// Holds until the run is cancelled (its timeout, the end of the grace period).
    UntilCancelled,
}

impl Task for Probe {
    fn run(self: Arc<Self>, info: RunInfo) -> BoxFuture<anyhow::Result<Outcome>> {
        Box::pin(async move {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            let _ = self.started.send(info.scheduled);
            match &self.behaviour {
                Behaviour::Finish => {}
                Behaviour::WaitFor(gate) => {
                    let _permit = gate.acquire().await.expect("gate open");
                }
                Behaviour::PanicOnce if run == 0 => panic!("probe exploded"),
                Behaviour::PanicOnce => {}
                Behaviour::Fail => anyhow::bail!("disk on fire"),
                Behaviour::UntilCancelled => {
                    info.cancel.cancelled().await;
                    anyhow::bail!("cancelled");
                }
            }
            Ok(Outcome::Done("ok".into()))
        })
    }
}

struct Harness {
    clock: Arc<VirtualClock>,
    state: Arc<SchedulerState>,
    stop: CancellationToken,
    started: mpsc::UnboundedReceiver<DateTime<Utc>>,
    handle: tokio::task::JoinHandle<Shutdown>,
}

fn start(at: &str, zone: &str, schedule: &str, behaviour: Behaviour) -> Harness {
    start_with_timeout(at, zone, schedule, behaviour, None)
}

fn start_with_timeout(
    at: &str,
    zone: &str,
    schedule: &str,
    behaviour: Behaviour,
    timeout: Option<Duration>,
) -> Harness {
    let clock = VirtualClock::new(utc(at));
    let (tx, started) = mpsc::unbounded_channel();
    let task = Arc::new(Probe {
        started: tx,
        behaviour,
        runs: AtomicU32::new(0),
    });
    let shared: SharedClock = clock.clone();
    let scheduler = Scheduler::new(
        shared,
        Zone::parse(zone).unwrap(),
        vec![Entry {
            name: "job".into(),
            schedule: Schedule::parse(schedule).unwrap(),
            timeout,
            task,
        }],
    );
    let state = scheduler.state();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(scheduler.run(stop.clone(), Duration::from_secs(2)));
    Harness {
        clock,
        state,
        stop,
        started,
        handle,
    }
}

/// Polls until `cond` holds, in real time, so tests never depend on task interleaving.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Lets every task that can make progress on this (single-threaded) runtime make it.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

impl Harness {
    fn stats(&self) -> Arc<JobStats> {
        self.state.stats("job").unwrap()
    }

    /// Waits until the loop sleeps for an occurrence after `after`, returns it.
    async fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        let mut next = None;
        until("the loop to wait for its next run", || {
            next = self.state.next_run("job").filter(|t| *t > after);
            next.is_some()
        })
        .await;
        next.unwrap()
    }

    /// Lets time pass up to the next occurrence and returns the scheduled time of the run.
    async fn fire_next(&mut self) -> DateTime<Utc> {
        let next = self.next_after(self.clock_now_minus()).await;
        self.advance_to(next);
        self.next_started().await
    }

    /// Waits for the next run to start and returns its scheduled time.
    async fn next_started(&mut self) -> DateTime<Utc> {
        tokio::time::timeout(Duration::from_secs(5), self.started.recv())
            .await
            .expect("a run starts")
            .expect("channel open")
    }

    /// Lets time pass (wall and monotonic clock alike) until the wall clock reads `to`.
    fn advance_to(&self, to: DateTime<Utc>) {
        let by = (to - self.clock_now_minus()).to_std().unwrap();
        self.clock.advance(by);
    }

    fn clock_now_minus(&self) -> DateTime<Utc> {
        use runner::scheduler::clock::Clock;
        self.clock.now()
    }

    /// Stops scheduling; the handle ends when the shutdown does.
    fn begin_shutdown(self) -> tokio::task::JoinHandle<Shutdown> {
        self.stop.cancel();
        self.handle
    }

    async fn shutdown(self) -> Shutdown {
        self.stop.cancel();
        self.handle.await.unwrap()
    }
}

fn local(zone: &str, times: &[DateTime<Utc>]) -> Vec<String> {
    let zone = Zone::parse(zone).unwrap();
    times.iter().map(|t| zone.format(*t)).collect()
}

#[tokio::test]
async fn fixed_time_job_runs_at_local_time_across_the_berlin_autumn_switch() {
    let mut h = start(
        "2026-10-23T12:00:00Z",
        "Europe/Berlin",
        "0 9 * * *",
        Behaviour::Finish,
    );
    let mut fired = Vec::new();
    for _ in 0..3 {
        fired.push(h.fire_next().await);
    }
    assert_eq!(
        local("Europe/Berlin", &fired),
        [
            "2026-10-24 09:00:00 +02:00",
            "2026-10-25 09:00:00 +01:00",
            "2026-10-26 09:00:00 +01:00"
        ]
    );
    assert_eq!(h.shutdown().await, Shutdown::Clean);
}

#[tokio::test]
async fn skipped_and_repeated_hours_in_new_york_run_once() {
    // 02:30 does not exist on 2026-03-08: once at 03:00 EDT.
    let mut h = start(
        "2026-03-07T12:00:00Z",
        "America/New_York",
        "30 2 * * *",
        Behaviour::Finish,
    );
    let fired = vec![h.fire_next().await, h.fire_next().await];
    assert_eq!(
        local("America/New_York", &fired),
        ["2026-03-08 03:00:00 -04:00", "2026-03-09 02:30:00 -04:00"]
    );
    h.shutdown().await;
    // 01:30 happens twice on 2026-11-01: once, at the first.
    let mut h = start(
        "2026-10-31T12:00:00Z",
        "America/New_York",
        "30 1 * * *",
        Behaviour::Finish,
    );
    let fired = vec![h.fire_next().await, h.fire_next().await];
    assert_eq!(
        local("America/New_York", &fired),
        ["2026-11-01 01:30:00 -04:00", "2026-11-02 01:30:00 -05:00"]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn every_10s_keeps_its_cadence_through_the_spring_switch() {
    let mut h = start(
        "2026-03-29T00:59:35Z",
        "Europe/Berlin",
        "@every 10s",
        Behaviour::Finish,
    );
    let mut fired = Vec::new();
    for _ in 0..4 {
        fired.push(h.fire_next().await);
    }
    let gaps: Vec<i64> = fired
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect();
    assert_eq!(gaps, [10, 10, 10]);
    assert_eq!(
        local("Europe/Berlin", &fired[1..3]),
        ["2026-03-29 01:59:50 +01:00", "2026-03-29 03:00:00 +02:00"]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn six_field_cron_fires_on_seconds() {
    let mut h = start(
        "2026-11-28T10:00:01Z",
        "UTC",
        "*/15 * * * * *",
        Behaviour::Finish,
    );
    let fired = vec![h.fire_next().await, h.fire_next().await];
    assert_eq!(
        fired,
        [utc("2026-11-28T10:00:15Z"), utc("2026-11-28T10:00:30Z")]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_job_slower_than_its_interval_is_skipped_not_stacked() {
    let gate = Arc::new(Semaphore::new(0));
    let mut h = start(
        "2026-11-28T10:00:00Z",
        "UTC",
        "@every 10s",
        Behaviour::WaitFor(gate.clone()),
    );
    let first = h.fire_next().await;
    assert_eq!(first, utc("2026-11-28T10:00:10Z"));
    // Two more occurrences pass while the first run holds.
    for (n, at) in ["2026-11-28T10:00:20Z", "2026-11-28T10:00:30Z"]
        .iter()
        .enumerate()
    {
        let next = h.next_after(h.clock_now_minus()).await;
        assert_eq!(next, utc(at));
        h.advance_to(next);
        let stats = h.stats();
        until("the overlap to be counted", || {
            JobStats::get(&stats.skipped_overlap) == n as u64 + 1
        })
        .await;
    }
    assert!(h.started.try_recv().is_err(), "a second run was stacked");
    assert_eq!(JobStats::get(&h.stats().started), 1);
    assert_eq!(h.state.running().len(), 1);
    gate.add_permits(1);
    let stats = h.stats();
    until("the first run to finish", || {
        JobStats::get(&stats.succeeded) == 1
    })
    .await;
    assert_eq!(h.fire_next().await, utc("2026-11-28T10:00:40Z"));
    gate.add_permits(1);
    assert_eq!(h.shutdown().await, Shutdown::Clean);
}

#[tokio::test]
async fn a_panicking_job_is_counted_and_the_scheduler_goes_on() {
    let mut h = start(
        "2026-11-28T10:00:00Z",
        "UTC",
        "@every 1m",
        Behaviour::PanicOnce,
    );
    h.fire_next().await;
    let stats = h.stats();
    until("the panic to be counted", || {
        JobStats::get(&stats.panicked) == 1
    })
    .await;
    h.fire_next().await;
    until("the second run to succeed", || {
        JobStats::get(&stats.succeeded) == 1
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_failing_job_is_counted_and_runs_again() {
    let mut h = start("2026-11-28T10:00:00Z", "UTC", "@every 1m", Behaviour::Fail);
    h.fire_next().await;
    h.fire_next().await;
    let stats = h.stats();
    until("both failures to be counted", || {
        JobStats::get(&stats.failed) == 2
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_backward_clock_step_does_not_stop_the_job() {
    let mut h = start(
        "2026-11-28T10:00:00Z",
        "UTC",
        "@every 5s",
        Behaviour::Finish,
    );
    assert_eq!(h.fire_next().await, utc("2026-11-28T10:00:05Z"));
    h.next_after(utc("2026-11-28T10:00:05Z")).await;
    // NTP (or an operator) sets the clock back an hour; the loop sees it within a second.
    h.clock.set(utc("2026-11-28T09:00:06Z"));
    h.clock.advance(Duration::from_secs(1));
    let state = h.state.clone();
    until("the next run planned from the new time", || {
        state.next_run("job") == Some(utc("2026-11-28T09:00:10Z"))
    })
    .await;
    let mut fired = Vec::new();
    for _ in 0..5 {
        fired.push(h.fire_next().await);
    }
    assert_eq!(fired.first(), Some(&utc("2026-11-28T09:00:10Z")));
    assert_eq!(fired.last(), Some(&utc("2026-11-28T09:00:30Z")));
    h.shutdown().await;
}

#[tokio::test]
async fn a_clock_jump_runs_once_and_counts_the_missed_runs() {
    let mut h = start(
        "2026-11-28T10:00:00Z",
        "UTC",
        "@every 10s",
        Behaviour::Finish,
    );
    h.next_after(utc("2026-11-28T10:00:00Z")).await;
    // The machine was suspended for an hour; the loop sees it within a second.
    h.clock.set(utc("2026-11-28T11:00:04Z"));
    h.clock.advance(Duration::from_secs(1));
    let fired = h.next_started().await;
    assert_eq!(fired, utc("2026-11-28T10:00:10Z"));
    let stats = h.stats();
    until("missed runs to be counted", || {
        JobStats::get(&stats.missed) == 359
    })
    .await;
    assert_eq!(h.next_after(fired).await, utc("2026-11-28T11:00:10Z"));
    assert!(h.started.try_recv().is_err(), "missed runs were replayed");
    h.shutdown().await;
}

/// Starts a job every 10 s whose run waits for `gate`, lets one run start, then begins the
/// shutdown; returns the clock and the shutdown's handle.
async fn shut_down_while_running(
    gate: Arc<Semaphore>,
) -> (Arc<VirtualClock>, tokio::task::JoinHandle<Shutdown>) {
    let mut h = start(
        "2026-11-28T10:00:00Z",
        "UTC",
        "@every 10s",
        Behaviour::WaitFor(gate),
    );
    h.fire_next().await;
    let clock = h.clock.clone();
    (clock, h.begin_shutdown())
}

#[tokio::test]
async fn shutdown_waits_for_a_running_job_within_the_grace_period() {
    let gate = Arc::new(Semaphore::new(0));
    let (clock, shutdown) = shut_down_while_running(gate.clone()).await;
    // Within the grace period (virtual time stands still), the run is waited for...
    tokio::task::yield_now().await;
    assert!(!shutdown.is_finished(), "did not wait for the run");
    clock.advance(Duration::from_millis(1900));
    tokio::task::yield_now().await;
    assert!(!shutdown.is_finished(), "did not wait for the run");
    // ...and once it ends, the shutdown is clean.
    gate.add_permits(1);
    assert_eq!(shutdown.await.unwrap(), Shutdown::Clean);
}

#[tokio::test]
async fn shutdown_abandons_a_job_that_outlives_the_grace_period() {
    let gate = Arc::new(Semaphore::new(0));
    let (clock, shutdown) = shut_down_while_running(gate).await;
    // The 2 s grace passes on the virtual clock; the run never ends.
    until("the grace period to run out", || {
        clock.advance(Duration::from_millis(500));
        shutdown.is_finished()
    })
    .await;
    assert_eq!(
        shutdown.await.unwrap(),
        Shutdown::Abandoned(vec!["job".to_string()])
    );
}

#[tokio::test]
async fn cron_fires_on_the_second_and_lateness_is_from_the_true_instant() {
    // Started at a fraction of a second (issue 24: runs came at …:34.717, …:36.717).
    let mut h = start(
        "2026-11-28T10:00:34.717Z",
        "UTC",
        "*/2 * * * * *",
        Behaviour::Finish,
    );
    let next = h.next_after(utc("2026-11-28T10:00:34.717Z")).await;
    assert_eq!(next, utc("2026-11-28T10:00:36Z"));
    // The run starts 250 ms late: that is its lateness, not 250 ms less a fraction.
    h.advance_to(utc("2026-11-28T10:00:36.250Z"));
    let fired = h.next_started().await;
    assert_eq!(fired, utc("2026-11-28T10:00:36Z"));
    let stats = h.stats();
    until("the lateness to be recorded", || {
        JobStats::get(&stats.last_lateness_micros) == 250_000
    })
    .await;
    assert_eq!(h.fire_next().await, utc("2026-11-28T10:00:38Z"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_run_timeout_is_not_moved_by_wall_clock_steps() {
    let mut h = start_with_timeout(
        "2026-11-28T10:00:00Z",
        "UTC",
        "@every 10m",
        Behaviour::UntilCancelled,
        Some(Duration::from_secs(90)),
    );
    h.fire_next().await;
    let stats = h.stats();
    // A forward step (was: the timeout fired at once) and a backward one (was: the wait for
    // the timeout ended early, or the run looked hours long) while the run holds.
    h.clock.advance(Duration::from_secs(30));
    h.clock.set(utc("2026-11-28T11:00:00Z"));
    h.clock.advance(Duration::from_secs(30));
    h.clock.set(utc("2026-11-28T09:00:00Z"));
    h.clock.advance(Duration::from_millis(29_999));
    settle().await;
    assert_eq!(JobStats::get(&stats.timed_out), 0, "cancelled before 90 s");
    h.clock.advance(Duration::from_millis(1));
    until("the run to time out at 90 s", || {
        JobStats::get(&stats.timed_out) == 1
    })
    .await;
    // Its length is what passed, not the difference of wall-clock readings.
    assert_eq!(JobStats::get(&stats.last_run_micros), 90_000_000);
    h.shutdown().await;
}

#[tokio::test]
async fn the_grace_period_is_not_moved_by_a_wall_clock_step() {
    let gate = Arc::new(Semaphore::new(0));
    let (clock, shutdown) = shut_down_while_running(gate).await;
    // Let the scheduler reach the grace period before the clock moves.
    settle().await;
    clock.set(utc("2026-11-28T12:00:00Z"));
    clock.advance(Duration::from_millis(1_999));
    settle().await;
    assert!(!shutdown.is_finished(), "a clock step cut the grace short");
    clock.advance(Duration::from_millis(1));
    let ended = tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended, Shutdown::Abandoned(vec!["job".to_string()]));
}

#[tokio::test]
async fn a_backward_step_is_noticed_within_a_second_and_drops_nothing() {
    let mut h = start(
        "2026-11-28T10:00:00Z",
        "UTC",
        "@every 5s",
        Behaviour::Finish,
    );
    assert_eq!(h.fire_next().await, utc("2026-11-28T10:00:05Z"));
    h.next_after(utc("2026-11-28T10:00:05Z")).await;
    // The clock is set back an hour, onto an occurrence. The loop sees the step at the end of
    // its slice, 700 ms later; the 09:00:10 occurrence passed meanwhile and is due, not gone
    // (was: planned from the moment it noticed, the next run was 09:00:15).
    h.clock.advance(Duration::from_millis(300));
    h.clock.set(utc("2026-11-28T09:00:10Z"));
    let mut waited = Duration::ZERO;
    let fired = loop {
        if let Ok(fired) = h.started.try_recv() {
            break fired;
        }
        assert!(
            waited < Duration::from_secs(1),
            "the step was not noticed within a second"
        );
        h.clock.advance(Duration::from_millis(100));
        waited += Duration::from_millis(100);
        settle().await;
    };
    assert_eq!(fired, utc("2026-11-28T09:00:10Z"));
    let stats = h.stats();
    until("the lateness to be recorded", || {
        JobStats::get(&stats.started) == 2
    })
    .await;
    assert!(JobStats::get(&stats.last_lateness_micros) <= 1_000_000);
    assert_eq!(JobStats::get(&stats.missed), 0);
    assert_eq!(h.fire_next().await, utc("2026-11-28T09:00:15Z"));
    h.shutdown().await;
}
