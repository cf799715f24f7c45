//! Remote write: every monitor tick's samples pushed to Prometheus-compatible storage with the
//! Prometheus remote-write 1.0 protocol (a snappy-compressed protobuf `WriteRequest`), named
//! and labelled as `/metrics` names them.
//!
//! The metrics log is the write-ahead log (`backlog`): a cursor in the data_dir (`cursor`)
//! says what the receiver acknowledged, so after an outage or a restart the rest goes out,
//! oldest first, in batches of at most `max_batch` samples; what is older than `max_age` when
//! its turn comes is skipped and counted. One task on the scheduler's runtime, beside the
//! notifiers' delivery loops; file reads run off the runtime, so ticks never wait for it.

pub mod alerts;
pub mod backlog;
pub mod client;
pub mod cursor;
pub mod proto;
pub mod series;

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::RemoteWriteSpec;
use crate::scheduler::clock::SharedClock;
use crate::vocab::backoff::Backoff;
use backlog::{Backlog, Batch};
use client::{Answer, Receiver};

/// How often the metrics log is looked at for new lines when all is sent: Prometheus' own
/// `batch_send_deadline`. A request and a cursor write every 5 s instead of every tick is
/// most of what remote write costs at a 1 s tick.
pub const INTERVAL: Duration = Duration::from_secs(5);
const RETRY_INITIAL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What remote write has done since start, for `/metrics` and the status page.
#[derive(Debug)]
pub struct Stats {
    pub sent: AtomicU64,
    /// Samples in requests that failed and are sent again.
    pub retried: AtomicU64,
    /// Samples of batches the receiver refused for good (a 4xx other than 429).
    pub rejected: AtomicU64,
    /// Samples older than `max_age` when their turn came.
    pub too_old: AtomicU64,
    /// The oldest sample not yet acknowledged, in ms since the epoch; `i64::MIN`: none.
    oldest_unsent_ms: AtomicI64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            sent: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            too_old: AtomicU64::new(0),
            oldest_unsent_ms: AtomicI64::new(i64::MIN),
        }
    }
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// How long the oldest sample not yet acknowledged has waited; 0 when all is sent.
    pub fn backlog_age(&self, now: DateTime<Utc>) -> Duration {
        let oldest = self.oldest_unsent_ms.load(Ordering::Relaxed);
        if oldest == i64::MIN {
            return Duration::ZERO;
        }
        let age = now.timestamp_millis().saturating_sub(oldest);
        Duration::from_millis(u64::try_from(age).unwrap_or(0))
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// How a pass ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PassEnd {
    /// Everything the pass could read was sent or dropped.
    CaughtUp,
    /// The receiver could not take a batch: try again after this (or a backoff).
    Retry(Option<Duration>),
}

/// A batch read and encoded, kept until the receiver takes it or refuses it.
struct Pending {
    batch: Batch,
    body: Vec<u8>,
}

/// The remote-write task.
pub struct RemoteWriter {
    receiver: Receiver,
    backlog: Arc<Mutex<Backlog>>,
    clock: SharedClock,
    stats: Arc<Stats>,
    pending: Option<Pending>,
    timeout: Duration,
    /// Consecutive failed requests, for one warning when it starts and one line when it ends.
    failures: u32,
}

fn lock(backlog: &Mutex<Backlog>) -> std::sync::MutexGuard<'_, Backlog> {
    backlog
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RemoteWriter {
    pub fn new(
        spec: &RemoteWriteSpec,
        data_dir: &Path,
        clock: SharedClock,
    ) -> Result<RemoteWriter, String> {
        let receiver = Receiver::new(spec)?;
        let backlog = Backlog::open(data_dir, spec.max_batch, spec.max_age, clock.now());
        Ok(RemoteWriter {
            receiver,
            backlog: Arc::new(Mutex::new(backlog)),
            clock,
            stats: Arc::new(Stats::default()),
            pending: None,
            timeout: spec.endpoint.timeout,
            failures: 0,
        })
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// What may be shown of the receiver's URL.
    pub fn receiver(&self) -> &str {
        &self.receiver.shown
    }

    /// Runs `work` on the backlog off the runtime (it reads and fsyncs files).
    async fn with_backlog<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Backlog) -> T + Send + 'static,
    ) -> Option<T> {
        let backlog = self.backlog.clone();
        tokio::task::spawn_blocking(move || work(&mut lock(&backlog)))
            .await
            .ok()
    }

    /// Sends what the metrics log holds beyond the cursor, batch after batch, until it is all
    /// sent or the receiver fails. `drain`: read every line written, not only those there at
    /// the previous pass (at shutdown, when no tick is under way).
    pub async fn pass(&mut self, drain: bool) -> PassEnd {
        let now = self.clock.now();
        if let Some(too_old) = self.with_backlog(move |b| b.begin_pass(now, drain)).await {
            Stats::add(&self.stats.too_old, too_old);
        }
        loop {
            if self.pending.is_none() {
                let Some(batch) = self.with_backlog(move |b| b.next_batch(now)).await else {
                    return PassEnd::Retry(None);
                };
                Stats::add(&self.stats.too_old, batch.too_old);
                if !batch.moves() {
                    self.stats
                        .oldest_unsent_ms
                        .store(i64::MIN, Ordering::Relaxed);
                    return PassEnd::CaughtUp;
                }
                if batch.is_empty() {
                    self.commit(batch).await;
                    continue;
                }
                let body = encode(&batch);
                self.pending = Some(Pending { batch, body });
            }
            let Some(pending) = &self.pending else {
                continue;
            };
            if let Some(oldest) = pending.batch.oldest_ms {
                self.stats.oldest_unsent_ms.store(oldest, Ordering::Relaxed);
            }
            let samples = pending.batch.samples as u64;
            match self.receiver.send(pending.body.clone()).await {
                Answer::Accepted => {
                    Stats::add(&self.stats.sent, samples);
                    if self.failures > 0 {
                        info!(receiver = %self.receiver.shown, failed_requests = self.failures, "remote write is through again");
                        self.failures = 0;
                    }
                }
                Answer::Rejected { why } => {
                    Stats::add(&self.stats.rejected, samples);
                    error!(receiver = %self.receiver.shown, samples, error = %why, "the remote-write receiver refused a batch; it is dropped");
                }
                Answer::Retry { after, why } => {
                    Stats::add(&self.stats.retried, samples);
                    if self.failures == 0 {
                        warn!(receiver = %self.receiver.shown, error = %why, "remote write failed; the metrics log keeps the samples and they are sent again");
                    }
                    self.failures = self.failures.saturating_add(1);
                    return PassEnd::Retry(after);
                }
            }
            if let Some(pending) = self.pending.take() {
                self.commit(pending.batch).await;
            }
        }
    }

    async fn commit(&self, batch: Batch) {
        let saved = self.with_backlog(move |b| b.commit(&batch)).await;
        if let Some(Err(e)) = saved {
            warn!(file = %"state/remote_write.json", error = %e, "cannot save the remote-write cursor; a restart sends some samples again");
        }
    }

    /// Passes every `INTERVAL` until `stop`, backing off while the receiver fails; then one
    /// last pass for what the last ticks wrote (within `timeout`: a receiver that is down
    /// gets it after the next start).
    pub async fn run(mut self, stop: CancellationToken) {
        info!(receiver = %self.receiver.shown, "remote write on");
        let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        loop {
            let wait = match self.pass(false).await {
                PassEnd::CaughtUp => {
                    backoff.reset();
                    next_pass_wait(self.clock.now())
                }
                PassEnd::Retry(after) => after.unwrap_or_else(|| backoff.next_wait()),
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.clock.sleep(wait) => {}
            }
        }
        let timeout = self.timeout;
        let _ = tokio::time::timeout(timeout, self.pass(true)).await;
    }
}

/// How long to wait after a pass that caught up: `INTERVAL`, and on to the next half second.
/// Monitors tick on whole seconds and read their probes on the runtime's blocking threads, as
/// a pass reads the logs and saves the cursor; were the two to meet, the pool would start a
/// thread for one of them and keep it (both are woken in turn from then on, each well within
/// the pool's idle timeout): a stack and a heap arena, a few hundred KiB for good.
fn next_pass_wait(now: DateTime<Utc>) -> Duration {
    let into_second = u64::from(now.timestamp_subsec_millis() % 1000);
    INTERVAL + Duration::from_millis((1500 - into_second) % 1000)
}

/// A batch as a snappy-compressed (block format) `WriteRequest`.
fn encode(batch: &Batch) -> Vec<u8> {
    let mut raw = Vec::with_capacity(batch.samples * 64);
    proto::encode_write_request(
        batch
            .series
            .iter()
            .map(|(labels, samples)| proto::Series { labels, samples }),
        &mut raw,
    );
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_fall_between_the_ticks_of_whole_seconds() {
        let at = |ms: i64| DateTime::from_timestamp_millis(1_795_000_000_000 + ms).unwrap();
        for (now, wait_ms) in [(0, 5500), (3, 5497), (499, 5001), (500, 5000), (501, 5999)] {
            let wait = next_pass_wait(at(now));
            assert_eq!(wait, Duration::from_millis(wait_ms as u64), "{now}");
            assert_eq!((now + wait_ms) % 1000, 500);
        }
    }
}
