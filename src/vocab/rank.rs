//! The one definition of a percentile runner uses everywhere (rules, access logs, reports):
//! nearest rank, the smallest value with at least `q` of the values at or below it.

/// A share `q` is taken to this many parts, so a percent with up to 6 decimals (p99.9999) is
/// exact: in floating point `ceil(0.55 × 100)` is 56, and p7, p14, p99.9 and others miss by one
/// at some counts (issue 28).
const PARTS: u128 = 100_000_000;

/// The 0-based index of the nearest-rank `q` quantile (0-1) among `n` sorted values (`n > 0`):
/// `ceil(q·n)`, 1-based, computed in integers with `q` rounded to 8 decimals (a percent to 6).
/// p95 of 9 values is the 9th, of 100 values the 95th.
pub fn nearest_rank(n: u64, q: f64) -> u64 {
    let n = n.max(1);
    // Rounding to whole parts takes out the binary error of `q` (0.55 is 0.55000000000000004):
    // it is 1e-8 parts at most, far from the half part where rounding would go wrong. NaN reads
    // as 0.
    let parts = (q.clamp(0.0, 1.0) * PARTS as f64).round() as u128;
    let rank = (parts * u128::from(n)).div_ceil(PARTS);
    // At most `n`, as `parts` is at most PARTS.
    u64::try_from(rank).unwrap_or(n).clamp(1, n) - 1
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_is_the_smallest_value_covering_the_share() {
        assert_eq!(nearest_rank(9, 0.95), 8);
        assert_eq!(nearest_rank(100, 0.95), 94);
        assert_eq!(nearest_rank(20, 0.5), 9);
        assert_eq!(nearest_rank(1, 0.95), 0);
        assert_eq!(nearest_rank(10, 0.0), 0);
        assert_eq!(nearest_rank(10, 1.0), 9);
        assert_eq!(nearest_rank(10, f64::NAN), 0);
    }

    /// Exact nearest rank for a percent with up to 6 decimals, `ppm` millionths of a percent.
    fn exact(n: u64, ppm: u64) -> u64 {
        let rank = (u128::from(ppm) * u128::from(n)).div_ceil(100_000_000) as u64;
        rank.clamp(1, n) - 1
    }

    #[test]
    fn percents_that_miss_in_floating_point_are_exact() {
        // ceil(0.55 × 100) is 56 in floating point.
        assert_eq!(nearest_rank(100, 55.0 / 100.0), 54);
        for p in [7u64, 14, 17, 27, 28, 34, 54, 55, 56, 67, 68, 81] {
            for n in 1..=1_000u64 {
                assert_eq!(
                    nearest_rank(n, p as f64 / 100.0),
                    exact(n, p * 1_000_000),
                    "p{p} of {n}"
                );
            }
        }
        for n in 1..=10_000u64 {
            assert_eq!(
                nearest_rank(n, 99.9 / 100.0),
                exact(n, 99_900_000),
                "p99.9 of {n}"
            );
        }
    }

    #[test]
    fn every_percent_to_six_decimals_is_exact_on_random_counts() {
        // xorshift64: reproducible without a crate.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            // Whole and one-decimal percents, and counts that are multiples of 1,000, land
            // `q·n` on whole numbers, where floating point misses.
            let ppm = match next() % 3 {
                0 => next() % 101 * 1_000_000,
                1 => next() % 1_001 * 100_000,
                _ => next() % 100_000_001,
            };
            let n = match next() % 4 {
                0 => next() % 100 + 1,
                1 => (next() % 10_000 + 1) * 1_000,
                2 => next() % 1_000_000 + 1,
                _ => next() % (1 << 40) + 1,
            };
            let p = ppm as f64 / 1e6;
            assert_eq!(nearest_rank(n, p / 100.0), exact(n, ppm), "p{p} of {n}");
        }
    }

    #[test]
    fn an_even_count_has_the_mean_of_its_two_middles_as_median() {
        assert_eq!(median(&[1800, 2400, 3600, 4200]), Some(3000));
        assert_eq!(median(&[60, 120, 600]), Some(120));
        assert_eq!(median(&[]), None);
    }
}
