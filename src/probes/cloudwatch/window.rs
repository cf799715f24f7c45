//! Which periods to ask CloudWatch for and which value to take. A period's value is only
//! taken once the period has ended; CloudWatch's own data arrives minutes late, so the probe
//! asks for the periods of the last `lookback` and takes the newest that has a value.

use std::time::Duration;

/// How far back a tick looks: three periods, and at least 15 minutes, since EC2's basic
/// monitoring delivers a 5-minute period several minutes after it ends.
pub fn lookback(period: Duration) -> Duration {
    (period * 3).max(Duration::from_secs(900))
}

/// `(start, end)` in epoch seconds, both on the period's boundaries: `end` is the start of the
/// period still running, so every period asked for has ended.
pub fn window(now_s: i64, period: Duration) -> (i64, i64) {
    let p = period.as_secs().max(1) as i64;
    let end = now_s.div_euclid(p) * p;
    let back = lookback(period).as_secs() as i64;
    let start = end - back.div_euclid(p).max(1) * p;
    (start, end)
}

/// The newest point that ends by `end`: `(timestamp, value)`.
pub fn newest(points: &[(i64, f64)], end: i64) -> Option<(i64, f64)> {
    points
        .iter()
        .filter(|(t, v)| *t < end && v.is_finite())
        .max_by_key(|(t, _)| *t)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_ends_where_the_running_period_begins() {
        assert_eq!(
            window(1_000_123, Duration::from_secs(300)),
            (999_000, 999_900)
        );
        assert_eq!(window(600, Duration::from_secs(60)), (-300, 600));
        assert_eq!(
            window(7_200 + 5, Duration::from_secs(3600)),
            (-3_600, 7_200)
        );
    }

    #[test]
    fn the_newest_ended_period_is_taken() {
        let points = [(600, 1.0), (900, 2.0), (300, 0.5), (1200, 9.0)];
        assert_eq!(newest(&points, 1200), Some((900, 2.0)));
        assert_eq!(newest(&[], 1200), None);
    }
}
