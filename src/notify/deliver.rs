//! One destination's delivery loop: read the outbox in order, group what arrived within
//! `group_wait`, keep to the rate limit, send, and on failure wait (backoff with jitter, or
//! the destination's `Retry-After`) and send the same again. A destination that keeps failing
//! is reported once and tried at the backoff's pace; a refusal goes to the dead letters,
//! loudly. Nothing leaves the outbox unsent or unrecorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::dead_alert::DeadLetterWatch;
use super::destination::{Delivery, Destination};
use super::notice::Message;
use super::outbox::Queue;
use super::policy::{Breaker, BreakerState, TokenBucket, Transition};
use crate::alerts::event::AlertEvent;
use crate::config::DeliverySpec;
use crate::http::Secrets;
use crate::scheduler::clock::SharedClock;
use crate::vocab::Backoff;
use crate::vocab::words::format_for;

/// Failures in a row before a destination is reported as down.
const BREAKER_THRESHOLD: u32 = 5;
/// How often an idle queue is looked at for entries other processes appended.
const POLL: Duration = Duration::from_secs(1);

/// Counters of one destination, for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub delivered_events: AtomicU64,
    pub messages: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_events: AtomicU64,
}

impl Stats {
    pub fn delivered(&self) -> u64 {
        self.delivered_events.load(Ordering::Relaxed)
    }

    pub fn dead(&self) -> u64 {
        self.dead_events.load(Ordering::Relaxed)
    }
}

/// Whether the loop serves until stopped, or sends what is queued and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    /// Until the queue is empty or the deadline passes; `group_wait` is not waited for.
    Drain {
        deadline: DateTime<Utc>,
    },
}

pub struct Deliverer {
    /// What the destination's answers are scrubbed of.
    secrets: Secrets,
    dest: Arc<dyn Destination>,
    queue: Arc<Queue>,
    spec: DeliverySpec,
    clock: SharedClock,
    wake: Arc<Notify>,
    stats: Arc<Stats>,
    backoff: Backoff,
    bucket: TokenBucket,
    breaker: Breaker,
    next_attempt: Option<DateTime<Utc>>,
    /// Told of dead letters and deliveries, for the `notification_dead_letter` alert.
    watch: Option<Arc<DeadLetterWatch>>,
}

enum Wait {
    Until(DateTime<Utc>),
    Idle,
}

impl Deliverer {
    pub fn new(
        dest: Arc<dyn Destination>,
        queue: Arc<Queue>,
        spec: DeliverySpec,
        clock: SharedClock,
        wake: Arc<Notify>,
        stats: Arc<Stats>,
    ) -> Deliverer {
        Deliverer {
            secrets: Secrets::new(dest.secrets()),
            backoff: Backoff::new(spec.retry_initial, spec.retry_max),
            bucket: TokenBucket::new(spec.max_per_second, spec.burst),
            // An outage that began before a restart counts from the oldest notice queued.
            breaker: Breaker::new(BREAKER_THRESHOLD)
                .failing_since(queue.oldest_queued().ok().flatten()),
            next_attempt: None,
            watch: None,
            dest,
            queue,
            spec,
            clock,
            wake,
            stats,
        }
    }

    /// Reports dead letters and deliveries to `watch`.
    pub fn watched(mut self, watch: Arc<DeadLetterWatch>) -> Deliverer {
        self.watch = Some(watch);
        self
    }

    fn name(&self) -> &str {
        self.dest.name()
    }

    /// `outcome`, or a refusal when it is a retry of a notice queued `give_up_after` ago or
    /// longer: a notice failing with 5xx for a day is a dead letter, loudly, rather than
    /// holding its queue for ever. `queued_at` is the outbox's, so a restart does not start the
    /// count again.
    fn give_up(&self, outcome: Delivery, queued_at: DateTime<Utc>, now: DateTime<Utc>) -> Delivery {
        let Delivery::Retry { reason, after } = outcome else {
            return outcome;
        };
        let limit =
            chrono::Duration::from_std(self.spec.give_up_after).unwrap_or(chrono::Duration::MAX);
        if now - queued_at < limit {
            return Delivery::Retry { reason, after };
        }
        let waited = format_for((now - queued_at).num_seconds());
        let give_up_after = format_for(self.spec.give_up_after.as_secs() as i64);
        error!(
            notifier = self.name(),
            waited = %waited,
            give_up_after = %give_up_after,
            reason = %reason,
            "gave up on a notification that kept failing; kept as a dead letter"
        );
        Delivery::Refused {
            reason: format!(
                "gave up after {waited} of failures (give_up_after {give_up_after}): {reason}"
            ),
        }
    }

    /// Waits for `wait`, a wake-up, the stop, or (in a drain) the deadline; `false` when the
    /// loop should end.
    async fn wait(&self, wait: Wait, mode: Mode, stop: &CancellationToken) -> bool {
        let until = match (wait, mode) {
            (Wait::Until(t), Mode::Drain { deadline }) => t.min(deadline),
            (Wait::Until(t), Mode::Serve) => t,
            (Wait::Idle, Mode::Drain { .. }) => return false,
            (Wait::Idle, Mode::Serve) => {
                self.clock.now() + chrono::Duration::from_std(POLL).unwrap_or_default()
            }
        };
        tokio::select! {
            _ = self.clock.sleep_until(until) => {}
            _ = self.wake.notified() => {}
            _ = stop.cancelled() => return false,
        }
        match mode {
            Mode::Drain { deadline } => self.clock.now() < deadline,
            Mode::Serve => true,
        }
    }

    /// Delivers until stopped (`Serve`) or until the queue is empty or the deadline passed
    /// (`Drain`). Errors of the outbox files end the loop with the error.
    pub async fn run(&mut self, mode: Mode, stop: &CancellationToken) -> std::io::Result<()> {
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let now = self.clock.now();
            if let Mode::Drain { deadline } = mode
                && now >= deadline
            {
                return Ok(());
            }
            let done = self.queue.done_offset()?;
            let batch = self.queue.read(done, self.dest.max_group())?;
            if let Some(bad) = batch.unreadable.first() {
                error!(notifier = self.name(), error = %bad.error, dead_letters = %self.queue.dead_path().display(), "an outbox line cannot be read; kept as a dead letter");
                self.queue.dead_line(now, bad)?;
                self.queue.mark_done(bad.end)?;
                if let Some(watch) = &self.watch {
                    let reason = format!("an outbox line cannot be read: {}", bad.error);
                    watch.dead(self.name(), 1, &reason, self.queue.dead_path(), now);
                }
                continue;
            }
            let Some(first) = batch.pending.first() else {
                self.queue.compact_if_delivered()?;
                if !self.wait(Wait::Idle, mode, stop).await {
                    return Ok(());
                }
                continue;
            };
            // A report goes on its own; alert events go together up to the next report.
            let take = match &first.entry.message {
                Message::Report(_) => 1,
                Message::Event(_) => batch
                    .pending
                    .iter()
                    .take_while(|p| p.entry.event().is_some())
                    .count(),
            };
            let pending = &batch.pending[..take];
            if mode == Mode::Serve && !self.spec.group_wait.is_zero() {
                // Wait for the rest of a burst, so it goes out as one message.
                let ready = first.entry.queued_at
                    + chrono::Duration::from_std(self.spec.group_wait).unwrap_or_default();
                if now < ready
                    && matches!(first.entry.message, Message::Event(_))
                    && take < self.dest.max_group()
                {
                    if !self.wait(Wait::Until(ready), mode, stop).await {
                        return Ok(());
                    }
                    continue;
                }
            }
            if let Some(at) = self.next_attempt
                && now < at
            {
                if !self.wait(Wait::Until(at), mode, stop).await {
                    return Ok(());
                }
                continue;
            }
            let rate_wait = self.bucket.wait(now);
            if !rate_wait.is_zero() {
                let at = now + chrono::Duration::from_std(rate_wait).unwrap_or_default();
                if !self.wait(Wait::Until(at), mode, stop).await {
                    return Ok(());
                }
                continue;
            }
            if super::outbox::delivery_held() {
                // An alert tick is saving the state after queueing: send once it is saved,
                // so a kill during the save cannot catch a notice on the wire (see
                // `hold_delivery`). The batch is read again then, with what else came.
                tokio::select! {
                    _ = super::outbox::delivery_released() => {}
                    _ = stop.cancelled() => return Ok(()),
                }
                continue;
            }
            let end = pending.last().map(|p| p.end).unwrap_or(done);
            let events: Vec<AlertEvent> = pending
                .iter()
                .filter_map(|p| p.entry.event().cloned())
                .collect();
            self.bucket.take(now);
            let outcome = match &first.entry.message {
                Message::Report(notice) => self.dest.deliver_report(notice).await,
                Message::Event(_) => self.dest.deliver(&events).await,
            };
            // Record an accepted delivery before anything else: until `.done` says so, a kill
            // sends it again after the restart.
            if matches!(outcome, Delivery::Delivered { .. }) {
                self.queue.mark_done(end)?;
            }
            let outcome = outcome.scrubbed(&self.secrets);
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
            let now = self.clock.now();
            // Only queued notices give up: `notify-test` says how each attempt went as it is.
            let outcome = self.give_up(outcome, first.entry.queued_at, now);
            match outcome {
                Delivery::Delivered { note } => {
                    self.stats
                        .delivered_events
                        .fetch_add(take as u64, Ordering::Relaxed);
                    self.backoff.reset();
                    self.next_attempt = None;
                    if let Some(watch) = &self.watch {
                        watch.delivered(self.name());
                    }
                    if let Transition::Closed { down_for } = self.breaker.success(now) {
                        info!(
                            notifier = self.name(),
                            down_for = %format_for(down_for.num_seconds()),
                            backlog_bytes = self.queue.backlog_bytes().unwrap_or(0),
                            "notifier works again; sending what queued up meanwhile"
                        );
                    }
                    match note {
                        Some(note) => info!(
                            notifier = self.name(),
                            notifications = take,
                            "delivered: {note}"
                        ),
                        None => debug!(notifier = self.name(), notifications = take, "delivered"),
                    }
                }
                Delivery::Retry { reason, after } => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let backoff = self.backoff.next_wait();
                    let wait = after.map_or(backoff, |after| {
                        after.max(backoff.min(after + Duration::from_secs(1)))
                    });
                    self.next_attempt =
                        Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                    let attempt = self.backoff.failures();
                    match self.breaker.failure(now) {
                        Transition::Opened => error!(
                            notifier = self.name(),
                            attempts = attempt,
                            reason = %reason,
                            backlog_bytes = self.queue.backlog_bytes().unwrap_or(0),
                            "notifier keeps failing; notifications stay queued and it is tried again at most every {}",
                            format_for(self.spec.retry_max.as_secs() as i64)
                        ),
                        _ if matches!(self.breaker.state(), BreakerState::Open { .. }) => {
                            debug!(notifier = self.name(), attempt, reason = %reason, "still failing")
                        }
                        _ => warn!(
                            notifier = self.name(),
                            attempt,
                            retry_in_ms = wait.as_millis() as u64,
                            reason = %reason,
                            "delivery failed; will retry"
                        ),
                    }
                }
                Delivery::Refused { reason } => {
                    let entries: Vec<&super::outbox::Entry> =
                        pending.iter().map(|p| &p.entry).collect();
                    self.queue.dead_letter(now, &entries, &reason)?;
                    self.queue.mark_done(end)?;
                    self.stats
                        .dead_events
                        .fetch_add(take as u64, Ordering::Relaxed);
                    self.backoff.reset();
                    self.next_attempt = None;
                    error!(
                        notifier = self.name(),
                        notifications = take,
                        alerts = %events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(","),
                        reason = %reason,
                        dead_letters = %self.queue.dead_path().display(),
                        "notification refused for good; kept as a dead letter"
                    );
                    if let Some(watch) = &self.watch {
                        let dead = self.queue.dead_path();
                        watch.dead(self.name(), take as u64, &reason, dead, now);
                    }
                }
            }
        }
    }

    /// Sends the destination's current state every interval (Alertmanager), until stopped.
    pub async fn keepalive(
        dest: Arc<dyn Destination>,
        clock: SharedClock,
        stop: CancellationToken,
    ) {
        let Some(interval) = dest.keepalive_interval() else {
            return;
        };
        let secrets = Secrets::new(dest.secrets());
        let mut failing = false;
        loop {
            tokio::select! {
                _ = clock.sleep(interval) => {}
                _ = stop.cancelled() => return,
            }
            match dest.keepalive().await.scrubbed(&secrets) {
                Delivery::Delivered { .. } => {
                    if failing {
                        info!(notifier = dest.name(), "keepalive works again");
                    }
                    failing = false;
                }
                Delivery::Retry { reason, .. } | Delivery::Refused { reason } => {
                    if !failing {
                        warn!(notifier = dest.name(), reason = %reason, "keepalive failed; firing alerts may lapse there until it works");
                    }
                    failing = true;
                }
            }
        }
    }
}
