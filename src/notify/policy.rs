//! When to send again: a token bucket per destination and a circuit breaker that goes quiet
//! on a destination that keeps failing (retry backoff is `vocab::Backoff`). Both read time
//! from the caller (the injected clock), so tests run in milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// At most `rate` messages a second on average, `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    at: Option<DateTime<Utc>>,
}

impl TokenBucket {
    /// `rate: None` never waits.
    pub fn new(rate: Option<f64>, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: None,
        }
    }

    fn refill(&mut self, now: DateTime<Utc>) {
        let Some(rate) = self.rate else { return };
        if let Some(at) = self.at {
            let elapsed = (now - at).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
            self.tokens = (self.tokens + elapsed * rate).min(self.burst);
        }
        self.at = Some(now);
    }

    /// How long until a message may go; zero when one may go now.
    pub fn wait(&mut self, now: DateTime<Utc>) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate)
        }
    }

    /// Spends one message.
    pub fn take(&mut self, now: DateTime<Utc>) {
        if self.rate.is_some() {
            self.refill(now);
            self.tokens -= 1.0;
        }
    }
}

/// Whether a destination is believed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Failing since then (the first failure of the run that opened it): attempts go on at
    /// the backoff's pace, reported once.
    Open {
        since: DateTime<Utc>,
    },
}

/// Opens after `threshold` failures in a row, closes on the first success.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    failures: u32,
    /// When the current run of failures began: an outage is as long as that, not as long as
    /// the breaker has been open.
    first_failure: Option<DateTime<Utc>>,
    state: BreakerState,
}

/// What a breaker's change means for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed { down_for: chrono::Duration },
}

impl Breaker {
    pub fn new(threshold: u32) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            failures: 0,
            first_failure: None,
            state: BreakerState::Closed,
        }
    }

    /// A breaker that counts an outage from `since` if the next attempt fails: the oldest
    /// notice still queued when runner starts, so a destination that was down before a restart
    /// is reported down for as long as it really was, not from the restart.
    pub fn failing_since(mut self, since: Option<DateTime<Utc>>) -> Breaker {
        self.first_failure = since;
        self
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn failure(&mut self, now: DateTime<Utc>) -> Transition {
        self.failures += 1;
        let since = *self.first_failure.get_or_insert(now);
        if self.failures >= self.threshold && self.state == BreakerState::Closed {
            self.state = BreakerState::Open { since };
            return Transition::Opened;
        }
        Transition::None
    }

    pub fn success(&mut self, now: DateTime<Utc>) -> Transition {
        self.failures = 0;
        self.first_failure = None;
        match std::mem::replace(&mut self.state, BreakerState::Closed) {
            BreakerState::Open { since } => Transition::Closed {
                down_for: now - since,
            },
            BreakerState::Closed => Transition::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(Some(1.0), 3);
        for _ in 0..3 {
            assert_eq!(bucket.wait(t(0)), Duration::ZERO);
            bucket.take(t(0));
        }
        assert_eq!(bucket.wait(t(0)), Duration::from_secs(1));
        assert_eq!(bucket.wait(t(1)), Duration::ZERO);
        bucket.take(t(1));
        let wait = bucket.wait(t(1)) + bucket.wait(t(1));
        assert!(wait > Duration::ZERO);
        // A quiet spell refills to the burst, not beyond.
        assert_eq!(bucket.wait(t(100)), Duration::ZERO);
        for _ in 0..3 {
            bucket.take(t(100));
        }
        assert!(bucket.wait(t(100)) > Duration::ZERO);
        let mut unlimited = TokenBucket::new(None, 1);
        for _ in 0..100 {
            unlimited.take(t(0));
        }
        assert_eq!(unlimited.wait(t(0)), Duration::ZERO);
    }

    #[test]
    fn an_outage_from_before_a_restart_counts_from_the_oldest_queued_notice() {
        let mut b = Breaker::new(2).failing_since(Some(t(-3600)));
        b.failure(t(0));
        assert_eq!(b.failure(t(1)), Transition::Opened);
        assert_eq!(
            b.success(t(60)),
            Transition::Closed {
                down_for: chrono::Duration::seconds(3660)
            }
        );
        // A destination that works at once was not down: nothing to report.
        let mut up = Breaker::new(2).failing_since(Some(t(-3600)));
        assert_eq!(up.success(t(0)), Transition::None);
        up.failure(t(10));
        up.failure(t(11));
        assert_eq!(up.state(), BreakerState::Open { since: t(10) });
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_closes_on_success() {
        let mut b = Breaker::new(3);
        assert_eq!(b.failure(t(0)), Transition::None);
        assert_eq!(b.failure(t(1)), Transition::None);
        assert_eq!(b.failure(t(2)), Transition::Opened);
        assert_eq!(b.failure(t(3)), Transition::None, "reported once");
        // Down since the first of the failures that opened it.
        assert_eq!(b.state(), BreakerState::Open { since: t(0) });
        assert_eq!(
            b.success(t(62)),
            Transition::Closed {
                down_for: chrono::Duration::seconds(62)
            }
        );
        assert_eq!(b.success(t(63)), Transition::None);
        // A success in between starts the count afresh.
        assert_eq!(b.failure(t(70)), Transition::None);
        b.success(t(71));
        b.failure(t(80));
        b.failure(t(81));
        assert_eq!(b.failure(t(82)), Transition::Opened);
        assert_eq!(b.state(), BreakerState::Open { since: t(80) });
    }
}
