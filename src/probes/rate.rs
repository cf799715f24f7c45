//! Counters to rates. The kernel's counters (bytes, sectors, pages, faults) only ever grow;
//! runner reports how fast they grow, never the running total.

use std::time::Instant;

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
    let secs = now.at.checked_duration_since(prev.at)?.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    growth(prev.value, now.value).map(|d| d as f64 / secs)
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
