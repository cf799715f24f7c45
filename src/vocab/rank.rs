//! The one definition of a percentile runner uses everywhere (rules, access logs, reports):
//! nearest rank, the smallest value with at least `q` of the values at or below it.

/// The 0-based index of the nearest-rank `q` quantile (0-1) among `n` sorted values (`n > 0`):
/// `ceil(q·n)`, 1-based. p95 of 9 values is the 9th, of 100 values the 95th.
pub fn nearest_rank(n: u64, q: f64) -> u64 {
    ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n.max(1)) - 1
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
    }

    #[test]
    fn an_even_count_has_the_mean_of_its_two_middles_as_median() {
        assert_eq!(median(&[1800, 2400, 3600, 4200]), Some(3000));
        assert_eq!(median(&[60, 120, 600]), Some(120));
        assert_eq!(median(&[]), None);
    }
}
