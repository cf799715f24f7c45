//! Where runner gets the time: the system clock in production, a virtual clock in tests, so
//! schedules, alert timers, backoff and rotation ages are tested in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The longest single sleep on the system clock. Sleeping in slices and re-reading the wall
/// clock means a clock step (NTP, a VM resumed) delays a run by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A backwards move of the wall clock larger than this ends a sleep early.
const STEP_BACK: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now() >= deadline`, or early when the clock steps backwards (NTP, an
    /// operator): the caller re-reads the time and plans again, instead of waiting out the step.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<()>;

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let deadline = self.now() + chrono::Duration::from_std(duration).unwrap_or_default();
        self.sleep_until(deadline)
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Wall-clock time, with tokio timers for the waiting.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<()> {
        Box::pin(async move {
            let mut last = Utc::now();
            loop {
                let now = Utc::now();
                if now >= deadline || now < last - STEP_BACK {
                    return;
                }
                last = now;
                let remaining = (deadline - now).to_std().unwrap_or_default();
                tokio::time::sleep(remaining.min(MAX_SLEEP)).await;
            }
        })
    }
}

/// Time that only moves when a test moves it; sleepers wake as it passes their deadline.
#[derive(Debug)]
pub struct VirtualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(VirtualClock {
            now: watch::Sender::new(start),
        })
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.now.send_replace(to);
    }

    pub fn advance(&self, by: Duration) {
        let to = self.now() + chrono::Duration::from_std(by).unwrap_or_default();
        self.set(to);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let mut last = *rx.borrow();
            loop {
                let now = *rx.borrow_and_update();
                if now >= deadline || now < last - STEP_BACK {
                    return;
                }
                last = now;
                if rx.changed().await.is_err() {
                    // The clock is gone: its time will never come.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_sleep_wakes_when_time_passes_the_deadline() {
        let start = DateTime::from_timestamp(1_000, 0).unwrap();
        let clock = VirtualClock::new(start);
        let sleeper = tokio::spawn(clock.sleep(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .expect("woke")
            .unwrap();
    }

    #[tokio::test]
    async fn system_sleep_reaches_its_deadline() {
        let deadline = Utc::now() + chrono::Duration::milliseconds(30);
        SystemClock.sleep_until(deadline).await;
        assert!(Utc::now() >= deadline);
    }
}
