//! Retry pacing shared by every client that talks to a service that may be down: the
//! notifiers' delivery loops and the ServiceNow fetch.

use std::time::Duration;

/// Waits that double from `initial` to `max`, each drawn from its upper half (so retries of
/// many runners spread out but never come sooner than half the step).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// The wait after one more failure.
    pub fn next_wait(&mut self) -> Duration {
        let step = self
            .initial
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let steps = [1, 2, 4, 8, 8, 8];
        for step in steps {
            let wait = b.next_wait();
            let step = Duration::from_secs(step);
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} for step {step:?}"
            );
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(1));
    }
}
