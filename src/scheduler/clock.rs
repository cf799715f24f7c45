//! Where runner gets the time: the system clock in production, a virtual clock in tests, so
//! schedules, alert timers, backoff and rotation ages are tested in milliseconds.
//!
//! Two clocks, for two questions. The wall clock (`now`) says *when*: occurrences, timestamps,
//! lateness. The monotonic clock (`instant`, `sleep`) says *how long*: timeouts, grace periods,
//! elapsed times. The wall clock can step (NTP, an operator, a VM resumed); a duration measured
//! on it would be cut short or stretched by the step, so none is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The longest single sleep while waiting for a wall-clock time. The wall clock is re-read
/// after each slice, so a step in either direction is noticed within this much: a forward step
/// (suspend, NTP) runs what is due, a backward one has the schedule planned again instead of
/// waiting out the step.
pub const SLICE: Duration = Duration::from_secs(1);

/// How far the wall clock may fall behind the monotonic clock over one slice before it counts
/// as a backward step; less is an adjustment, which just makes the wait that much longer.
const STEP_BACK: Duration = Duration::from_secs(1);

/// How a wait for a wall-clock time ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The wall clock reached the deadline.
    Reached,
    /// The wall clock stepped back before the deadline. `since` is the last moment the wait
    /// saw before the step, on the new clock: the step happened after it, so an occurrence
    /// after `since` that is already past on the new clock is due, not gone.
    SteppedBack { since: DateTime<Utc> },
}

pub trait Clock: Send + Sync + 'static {
    /// The wall clock: when.
    fn now(&self) -> DateTime<Utc>;

    /// The monotonic clock: never steps, so the difference of two instants is how long passed.
    /// Only instants of the same clock compare (a virtual clock's are not the system's).
    fn instant(&self) -> Instant;

    /// Resolves once `duration` has passed on the monotonic clock, whatever the wall clock does.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;

    /// Resolves once `now() >= deadline`, or at most a [`SLICE`] after the wall clock steps
    /// backwards (NTP, an operator), saying so: the caller plans again from the new time
    /// instead of waiting out the step.
    fn wake_at(&self, deadline: DateTime<Utc>) -> BoxFuture<Wake>;

    /// As [`Clock::wake_at`], for callers that only re-read the time after it.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<()> {
        let wake = self.wake_at(deadline);
        Box::pin(async move {
            wake.await;
        })
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// What [`wait_sliced`] needs of a clock, owned, so the wait outlives the borrow of the clock.
trait Source: Send + 'static {
    fn wall(&self) -> DateTime<Utc>;
    fn mono(&self) -> Instant;
    fn pause(&self, duration: Duration) -> BoxFuture<()>;
}

/// Waits for `deadline` on the wall clock in monotonic slices of at most [`SLICE`], re-reading
/// the wall clock after each. One loop for the system and the virtual clock, so what the tests
/// see of a clock step is what production does.
async fn wait_sliced(source: impl Source, deadline: DateTime<Utc>) -> Wake {
    let mut last = (source.wall(), source.mono());
    loop {
        let (wall, mono) = (source.wall(), source.mono());
        if wall >= deadline {
            return Wake::Reached;
        }
        // Where the wall clock should be had it only moved with the monotonic one.
        let passed =
            chrono::Duration::from_std(mono.saturating_duration_since(last.1)).unwrap_or_default();
        let behind = (last.0 + passed - wall).to_std().unwrap_or_default();
        if behind > STEP_BACK {
            return Wake::SteppedBack {
                since: wall - passed,
            };
        }
        last = (wall, mono);
        let remaining = (deadline - wall).to_std().unwrap_or_default();
        source.pause(remaining.min(SLICE)).await;
    }
}

/// Wall-clock time, with tokio timers (monotonic) for the waiting.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Source for SystemClock {
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn mono(&self) -> Instant {
        Instant::now()
    }

    fn pause(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn wake_at(&self, deadline: DateTime<Utc>) -> BoxFuture<Wake> {
        Box::pin(wait_sliced(SystemClock, deadline))
    }
}

/// The virtual clock's two times.
#[derive(Debug, Clone, Copy)]
struct Times {
    wall: DateTime<Utc>,
    /// Monotonic time passed since the clock was made.
    mono: Duration,
}

/// Time that only moves when a test moves it; sleepers wake as it passes their deadline.
/// [`VirtualClock::advance`] is time passing (both clocks move); [`VirtualClock::set`] is a
/// step of the wall clock alone, noticed by waits at the end of their slice, as in production.
#[derive(Debug)]
pub struct VirtualClock {
    times: watch::Sender<Times>,
    origin: Instant,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(VirtualClock {
            times: watch::Sender::new(Times {
                wall: start,
                mono: Duration::ZERO,
            }),
            origin: Instant::now(),
        })
    }

    /// Steps the wall clock to `to` (NTP, an operator, a resumed VM); no time passes.
    pub fn set(&self, to: DateTime<Utc>) {
        self.times.send_modify(|t| t.wall = to);
    }

    /// Lets `by` pass: both the wall and the monotonic clock move.
    pub fn advance(&self, by: Duration) {
        self.times.send_modify(|t| {
            t.wall += chrono::Duration::from_std(by).unwrap_or_default();
            t.mono += by;
        });
    }

    fn source(&self) -> VirtualSource {
        VirtualSource {
            times: self.times.subscribe(),
            origin: self.origin,
        }
    }
}

/// A virtual clock as one wait sees it.
struct VirtualSource {
    times: watch::Receiver<Times>,
    origin: Instant,
}

impl Source for VirtualSource {
    fn wall(&self) -> DateTime<Utc> {
        self.times.borrow().wall
    }

    fn mono(&self) -> Instant {
        self.origin + self.times.borrow().mono
    }

    fn pause(&self, duration: Duration) -> BoxFuture<()> {
        let mut rx = self.times.clone();
        // From the call, not the first poll, as a system timer does.
        let until = rx.borrow_and_update().mono + duration;
        Box::pin(async move {
            while rx.borrow_and_update().mono < until {
                if rx.changed().await.is_err() {
                    // The clock is gone: its time will never come.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        self.times.borrow().wall
    }

    fn instant(&self) -> Instant {
        self.origin + self.times.borrow().mono
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        self.source().pause(duration)
    }

    fn wake_at(&self, deadline: DateTime<Utc>) -> BoxFuture<Wake> {
        Box::pin(wait_sliced(self.source(), deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[tokio::test]
    async fn virtual_sleep_wakes_when_time_passes_the_deadline() {
        let clock = VirtualClock::new(at(1_000));
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
    async fn a_duration_is_not_moved_by_a_wall_clock_step() {
        let clock = VirtualClock::new(at(1_000));
        let start = clock.instant();
        let sleeper = tokio::spawn(clock.sleep(Duration::from_secs(10)));
        clock.set(at(1_000 + 3_600));
        clock.advance(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "a forward step cut the sleep short");
        clock.set(at(1_000));
        clock.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .expect("a backward step stretched the sleep")
            .unwrap();
        assert_eq!(clock.instant() - start, Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_backward_step_is_noticed_within_a_slice() {
        let clock = VirtualClock::new(at(1_000));
        let waiter = tokio::spawn(clock.wake_at(at(1_060)));
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(200));
        clock.set(at(1_000 - 3_600));
        clock.advance(Duration::from_millis(700));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // The slice that began at 1_000 ends now: the step is seen, 300 ms after it happened.
        clock.advance(Duration::from_millis(100));
        let wake = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("noticed within a slice")
            .unwrap();
        assert_eq!(
            wake,
            Wake::SteppedBack {
                since: at(1_000 - 3_600) - chrono::Duration::milliseconds(200)
            }
        );
    }

    #[tokio::test]
    async fn a_forward_step_reaches_the_deadline_within_a_slice() {
        let clock = VirtualClock::new(at(1_000));
        let waiter = tokio::spawn(clock.wake_at(at(1_060)));
        tokio::task::yield_now().await;
        clock.set(at(5_000));
        clock.advance(Duration::from_millis(999));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_millis(1));
        let wake = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(wake, Wake::Reached);
    }

    #[tokio::test]
    async fn system_wait_reaches_its_deadline() {
        let deadline = Utc::now() + chrono::Duration::milliseconds(30);
        assert_eq!(SystemClock.wake_at(deadline).await, Wake::Reached);
        assert!(Utc::now() >= deadline);
    }
}
