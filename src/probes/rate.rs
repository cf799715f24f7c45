//! Counters to rates. The kernel's counters (bytes, sectors, pages, faults) only ever grow;
//! runner reports how fast they grow, and where Prometheus wants the counter itself (`_total`
//! fields) the kernel's value as read, never a running total of runner's own.
//!
//! A rate divides a counter's growth by the monotonic time between the probe's own two reads
//! of it, never by the time between ticks: a tick that starts late, a probe that waits behind
//! another, or a read cut short would otherwise put the growth over the wrong time.

use std::time::Instant;

/// Where a probe takes the instant of each read of its counters. It is a trait so tests can
/// give reads explicit instants and check a rate exactly; probes run on `Monotonic`.
pub trait Clock: Send {
    fn now(&mut self) -> Instant;
}

/// The monotonic clock: a wall-clock step (NTP, a manual change) never bends a rate.
#[derive(Debug, Default, Clone, Copy)]
pub struct Monotonic;

impl Clock for Monotonic {
    fn now(&mut self) -> Instant {
        Instant::now()
    }
}

/// Seconds from `prev` to `now`, or `None` when no time passed (or `now` is not later): a
/// rate over no time is not a measurement.
pub fn secs_between(prev: Instant, now: Instant) -> Option<f64> {
    let secs = now.checked_duration_since(prev)?.as_secs_f64();
    (secs > 0.0).then_some(secs)
}

/// A counter's value and when it was read.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub value: u64,
    pub at: Instant,
}

/// How much `now` grew since `prev`, or `None` when it went backwards (a reboot, a wrapped
/// 32-bit counter, a device removed and added again): a rate across that would be a lie.
pub fn growth(prev: u64, now: u64) -> Option<u64> {
    now.checked_sub(prev)
}

/// Per-second rate between two readings; `None` on the first reading (no previous), when the
/// counter went backwards, or when no time passed.
pub fn per_sec(prev: Option<Reading>, now: Reading) -> Option<f64> {
    let prev = prev?;
    let secs = secs_between(prev.at, now.at)?;
    growth(prev.value, now.value).map(|d| d as f64 / secs)
}

/// A clock for tests: each read gets the next of the given instants, so a test says exactly
/// when each read happened, however long the test itself takes.
#[cfg(test)]
pub struct Script(pub std::collections::VecDeque<Instant>);

#[cfg(test)]
impl Script {
    /// Reads at `base` plus each of `ms` milliseconds, in order.
    pub fn at_ms(base: Instant, ms: &[u64]) -> Script {
        Script(
            ms.iter()
                .map(|&m| base + std::time::Duration::from_millis(m))
                .collect(),
        )
    }
}

#[cfg(test)]
impl Clock for Script {
    fn now(&mut self) -> Instant {
        // A test that reads more often than it scripted is wrong; say so loudly.
        self.0.pop_front().expect("the test scripted fewer reads")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn first_reading_has_no_rate() {
        let t = Instant::now();
        assert_eq!(
            per_sec(
                None,
                Reading {
                    value: 1_000,
                    at: t
                }
            ),
            None
        );
    }

    #[test]
    fn steady_growth_gives_the_rate() {
        let t = Instant::now();
        let prev = Reading {
            value: 1_000,
            at: t,
        };
        let now = Reading {
            value: 6_000,
            at: at(t, 2_500),
        };
        assert_eq!(per_sec(Some(prev), now), Some(2_000.0));
    }

    #[test]
    fn a_reset_gives_no_rate() {
        // A reboot or a re-added device starts the counter again from zero.
        let t = Instant::now();
        let prev = Reading {
            value: 9_000_000,
            at: t,
        };
        let now = Reading {
            value: 120,
            at: at(t, 1_000),
        };
        assert_eq!(per_sec(Some(prev), now), None);
    }

    #[test]
    fn a_wrapped_32_bit_counter_gives_no_rate() {
        // Some drivers keep 32-bit counters: past 4 GiB they start over near zero.
        let t = Instant::now();
        let prev = Reading {
            value: u64::from(u32::MAX) - 10,
            at: t,
        };
        let now = Reading {
            value: 50,
            at: at(t, 1_000),
        };
        assert_eq!(per_sec(Some(prev), now), None);
        // The tick after the wrap has a rate again.
        let later = Reading {
            value: 1_050,
            at: at(t, 2_000),
        };
        assert_eq!(per_sec(Some(now), later), Some(1_000.0));
    }

    #[test]
    fn no_time_passed_gives_no_rate() {
        let t = Instant::now();
        let r = Reading { value: 5, at: t };
        assert_eq!(per_sec(Some(r), Reading { value: 9, at: t }), None);
    }
}
