//! Functions over a metric's history that rules use for adaptive thresholds: `avg`, `min`,
//! `max`, `sum`, `count`, `percentile`, `stddev`, `zscore`, `ewma`, `rate`, `delta`, `predict`,
//! `baseline` and `ticks_above`.
//!
//! A window up to the raw window reads raw points (exact); up to six hours, one-minute
//! buckets; up to 48 hours, five-minute buckets (the window's start rounds down to the bucket);
//! longer, hourly rollups from disk plus the hour being built. Percentiles beyond the raw
//! window come from the hourly quantile sketches (1 % relative error, the window rounded to
//! whole hours); standard deviations over bucket tiers use the buckets' means, which
//! understates spread within a bucket. A function that has no data returns `None`, which a rule
//! sees as `()`.

use crate::store::history::{History, MinuteBucket};
use crate::store::rollups::Rollup;

const MINUTE_MS: i64 = 60_000;
const FIVE_MINUTES_MS: i64 = 300_000;
const HOUR_MS: i64 = 3_600_000;
const WEEK_MS: i64 = 7 * 24 * HOUR_MS;

/// Weeks `baseline` looks back, and how many must have data.
pub const BASELINE_WEEKS: i64 = 5;
pub const BASELINE_MIN_WEEKS: i64 = 2;

/// Count, sum, extremes and sum of squares of the values in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub sumsq: f64,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sumsq: 0.0,
        }
    }
}

impl Agg {
    fn add(&mut self, value: f64) {
        self.count += 1.0;
        self.sum += value;
        self.sumsq += value * value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// A bucket's count, sum and extremes. Its spread is not known, so `sumsq` stays
    /// unset: `stddev` over bucket tiers takes its own pass over the buckets' means.
    fn add_bucket(&mut self, b: &MinuteBucket) {
        self.count += f64::from(b.count);
        self.sum += f64::from(b.sum);
        self.min = self.min.min(f64::from(b.min));
        self.max = self.max.max(f64::from(b.max));
    }

    fn add_rollup(&mut self, r: &Rollup) {
        if r.count == 0 {
            return;
        }
        self.count += r.count as f64;
        self.sum += r.sum;
        self.sumsq += r.sumsq;
        self.min = self.min.min(r.min);
        self.max = self.max.max(r.max);
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    pub fn stddev(&self) -> Option<f64> {
        let mean = self.mean()?;
        Some((self.sumsq / self.count - mean * mean).max(0.0).sqrt())
    }

    pub fn min(&self) -> Option<f64> {
        (self.count > 0.0).then_some(self.min)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0.0).then_some(self.max)
    }
}

/// Where a window's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Raw,
    Minutes,
    FiveMinutes,
    Hours,
}

pub fn tier(history: &History, window_ms: i64) -> Tier {
    let config = history.config();
    if window_ms <= config.raw_window.as_millis() as i64 {
        Tier::Raw
    } else if window_ms <= config.minute_window.as_millis() as i64 {
        Tier::Minutes
    } else if window_ms <= config.bucket_window.as_millis() as i64 {
        Tier::FiveMinutes
    } else {
        Tier::Hours
    }
}

fn floor(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

/// Hour starts of a window, oldest first: the hours from the window's start to now.
fn hours(now_ms: i64, window_ms: i64) -> impl Iterator<Item = i64> {
    let first = floor(now_ms - window_ms, HOUR_MS);
    let last = floor(now_ms, HOUR_MS);
    (0..=((last - first) / HOUR_MS)).map(move |i| first + i * HOUR_MS)
}

/// Aggregate of the window `(now - window, now]`.
pub fn aggregate(h: &History, name: &str, now_ms: i64, window_ms: i64) -> Agg {
    let mut agg = Agg::default();
    let from = now_ms - window_ms;
    match tier(h, window_ms) {
        Tier::Raw => {
            for (_, v) in h.raw_since(name, from + 1).filter(|(t, _)| *t <= now_ms) {
                agg.add(v);
            }
        }
        Tier::Minutes | Tier::FiveMinutes => {
            let (five, width) = match tier(h, window_ms) {
                Tier::FiveMinutes => (true, FIVE_MINUTES_MS),
                _ => (false, MINUTE_MS),
            };
            let (a, b) = h.bucket_slices(name, five, floor(from, width));
            for bucket in a.iter().chain(b).filter(|b| b.count > 0) {
                agg.add_bucket(bucket);
            }
        }
        Tier::Hours => {
            for hour in hours(now_ms, window_ms) {
                if let Some(r) = h.hour_rollup(name, hour) {
                    agg.add_rollup(&r);
                }
            }
        }
    }
    agg
}

/// Points of a window as (time, value, weight): raw points, or bucket means at their middle.
fn observations(h: &History, name: &str, now_ms: i64, window_ms: i64) -> Vec<(i64, f64, f64)> {
    let from = now_ms - window_ms;
    let bucket = |(t, b): (i64, MinuteBucket), width: i64| {
        (
            t + width / 2,
            f64::from(b.sum) / f64::from(b.count),
            f64::from(b.count),
        )
    };
    match tier(h, window_ms) {
        Tier::Raw => h
            .raw_since(name, from + 1)
            .filter(|(t, _)| *t <= now_ms)
            .map(|(t, v)| (t, v, 1.0))
            .collect(),
        Tier::Minutes => h
            .minutes_since(name, floor(from, MINUTE_MS))
            .map(|b| bucket(b, MINUTE_MS))
            .collect(),
        Tier::FiveMinutes => h
            .five_minutes_since(name, floor(from, FIVE_MINUTES_MS))
            .map(|b| bucket(b, FIVE_MINUTES_MS))
            .collect(),
        Tier::Hours => hours(now_ms, window_ms)
            .filter_map(|hour| {
                let r = h.hour_rollup(name, hour)?;
                Some((hour + HOUR_MS / 2, r.mean()?, r.count as f64))
            })
            .collect(),
    }
}

/// The value at quantile `p` (0-100) of the window; nearest rank, exact over raw points.
pub fn percentile(h: &History, name: &str, p: f64, now_ms: i64, window_ms: i64) -> Option<f64> {
    let q = (p / 100.0).clamp(0.0, 1.0);
    if tier(h, window_ms) == Tier::Raw {
        let mut values: Vec<f64> = h
            .raw_since(name, now_ms - window_ms + 1)
            .filter(|(t, _)| *t <= now_ms)
            .map(|(_, v)| v)
            .collect();
        if values.is_empty() {
            return None;
        }
        let rank = crate::vocab::rank::nearest_rank(values.len() as u64, q) as usize;
        let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
        return Some(*v);
    }
    let mut merged = Rollup::default();
    for hour in hours(now_ms, window_ms) {
        if let Some(r) = h.hour_rollup(name, hour) {
            merged.merge(&r);
        }
    }
    sketch_quantile(&merged, q)
}

/// A rollup's quantile from its sketch, held within the exact extremes it also keeps: a
/// constant series reads as itself rather than as its bucket's midpoint.
fn sketch_quantile(rollup: &Rollup, q: f64) -> Option<f64> {
    rollup.sketch.quantile_between(q, rollup.extremes())
}

/// Standard deviation of the window: exact over raw points and hourly rollups, over the
/// buckets' means on the bucket tiers.
pub fn stddev(h: &History, name: &str, now_ms: i64, window_ms: i64) -> Option<f64> {
    match tier(h, window_ms) {
        Tier::Raw | Tier::Hours => aggregate(h, name, now_ms, window_ms).stddev(),
        Tier::Minutes | Tier::FiveMinutes => {
            let mut agg = Agg::default();
            for (_, mean, weight) in observations(h, name, now_ms, window_ms) {
                agg.count += weight;
                agg.sum += mean * weight;
                agg.sumsq += mean * mean * weight;
            }
            agg.stddev()
        }
    }
}

/// `(current - mean) / stddev` of the window; `None` without spread.
pub fn zscore(h: &History, name: &str, current: f64, now_ms: i64, window_ms: i64) -> Option<f64> {
    let mean = aggregate(h, name, now_ms, window_ms).mean()?;
    let sd = stddev(h, name, now_ms, window_ms)?;
    (sd > 0.0).then(|| (current - mean) / sd)
}

/// Exponentially weighted mean, each point weighing half as much `half_life` older; points up
/// to ten half-lives back (weights beyond are below 0.1 %).
pub fn ewma(h: &History, name: &str, now_ms: i64, half_life_ms: i64) -> Option<f64> {
    let points = observations(h, name, now_ms, (half_life_ms * 10).max(1));
    let (mut num, mut den) = (0.0, 0.0);
    for (t, v, w) in points {
        let age = (now_ms - t).max(0) as f64;
        let weight = w * 0.5f64.powf(age / half_life_ms as f64);
        num += weight * v;
        den += weight;
    }
    (den > 0.0).then(|| num / den)
}

/// Last minus first value in the window.
pub fn delta(h: &History, name: &str, now_ms: i64, window_ms: i64) -> Option<f64> {
    let points = observations(h, name, now_ms, window_ms);
    let (first, last) = (points.first()?, points.last()?);
    Some(last.1 - first.1)
}

/// Change per second over the window (last minus first, over the time between them).
pub fn rate(h: &History, name: &str, now_ms: i64, window_ms: i64) -> Option<f64> {
    let points = observations(h, name, now_ms, window_ms);
    let (first, last) = (points.first()?, points.last()?);
    let secs = (last.0 - first.0) as f64 / 1000.0;
    (secs > 0.0).then(|| (last.1 - first.1) / secs)
}

/// The least-squares line through the window, read `ahead` from now: "disk full in 4 h".
pub fn predict(h: &History, name: &str, now_ms: i64, window_ms: i64, ahead_ms: i64) -> Option<f64> {
    let points = observations(h, name, now_ms, window_ms);
    if points.len() < 2 {
        return None;
    }
    // Times relative to now, in seconds, so the sums stay well conditioned.
    let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (t, v, w) in &points {
        let x = (t - now_ms) as f64 / 1000.0;
        sw += w;
        sx += w * x;
        sy += w * v;
        sxx += w * x * x;
        sxy += w * x * v;
    }
    let denominator = sw * sxx - sx * sx;
    if denominator.abs() < f64::EPSILON {
        return None;
    }
    let slope = (sw * sxy - sx * sy) / denominator;
    let intercept = (sy - slope * sx) / sw;
    Some(intercept + slope * ahead_ms as f64 / 1000.0)
}

/// How much of the window `(now - window, now]` the history of `name` covers: from its oldest
/// point there (a bucket's middle beyond the raw window) to now; `None` without a point.
pub fn covered(h: &History, name: &str, now_ms: i64, window_ms: i64) -> Option<i64> {
    observations(h, name, now_ms, window_ms)
        .iter()
        .map(|(t, _, _)| *t)
        .min()
        .map(|oldest| (now_ms - oldest).clamp(0, window_ms))
}

/// A window as an explanation says it: `asked` (the rule's own spelling, `6h`) when the
/// history covers it, else what it covered too: `5m (6h asked)`, so an alert raised on a few
/// minutes after a start does not claim a trend of hours. A tenth of the window short (the
/// first bucket's half, a late first tick) still counts as covered.
pub fn covered_text(h: &History, name: &str, now_ms: i64, window_ms: i64, asked: &str) -> String {
    match covered(h, name, now_ms, window_ms) {
        Some(ms) if ms >= window_ms - window_ms / 10 => asked.to_string(),
        Some(ms) => {
            // Whole minutes from a minute on, whole seconds below: what people say.
            let unit = if ms >= 60_000 { 60_000 } else { 1_000 };
            let rounded = ((ms + unit / 2) / unit * unit).max(1_000) as u64;
            format!(
                "{} ({asked} asked)",
                crate::vocab::duration::format_duration(std::time::Duration::from_millis(rounded))
            )
        }
        None => format!("no history yet ({asked} asked)"),
    }
}

/// The same hour of the week in past weeks, from the hourly rollups.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub mean: f64,
    pub stddev: f64,
    pub p95: f64,
    pub weeks: i64,
}

/// `None` while fewer than `min_weeks` of the last five weeks have that hour.
pub fn baseline(h: &History, name: &str, now_ms: i64, min_weeks: i64) -> Option<Baseline> {
    let hour = floor(now_ms, HOUR_MS);
    let mut merged = Rollup::default();
    let mut weeks = 0;
    for k in 1..=BASELINE_WEEKS {
        if let Some(r) = h.hour_rollup(name, hour - k * WEEK_MS)
            && r.count > 0
        {
            merged.merge(&r);
            weeks += 1;
        }
    }
    if weeks < min_weeks.max(1) {
        return None;
    }
    Some(Baseline {
        mean: merged.mean()?,
        stddev: merged.stddev()?,
        p95: sketch_quantile(&merged, 0.95)?,
        weeks,
    })
}

/// How many of the last `n` ticks were above `threshold` ("3 of the last 5").
pub fn ticks_above(h: &History, name: &str, threshold: f64, n: usize) -> usize {
    h.raw_last(name, n)
        .iter()
        .filter(|(_, v)| *v > threshold)
        .count()
}

/// How many of the last `n` ticks were below `threshold` ("down 3 of the last 5").
pub fn ticks_below(h: &History, name: &str, threshold: f64, n: usize) -> usize {
    h.raw_last(name, n)
        .iter()
        .filter(|(_, v)| *v < threshold)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::HistoryConfig;
    use crate::vocab::MetricName;
    use chrono::DateTime;

    const START: i64 = 1_795_000_000_000; // 2026-11-18T...

    /// A history of `values` one per `step_ms`, ending at the returned time.
    fn history(values: &[f64], step_ms: i64) -> (History, i64) {
        let mut h = History::new(HistoryConfig::default(), None);
        let name: MetricName = "m".into();
        let mut t = START;
        for v in values {
            h.push(DateTime::from_timestamp_millis(t).unwrap(), [(&name, *v)]);
            t += step_ms;
        }
        (h, t - step_ms)
    }

    #[test]
    fn raw_window_aggregates() {
        let (h, now) = history(&[10.0, 20.0, 30.0, 40.0, 50.0], 10_000);
        // The last 30 s: 30, 40, 50 (the point at exactly now - 30 s is outside).
        let agg = aggregate(&h, "m", now, 30_000);
        assert_eq!(
            (agg.count, agg.sum, agg.min(), agg.max()),
            (3.0, 120.0, Some(30.0), Some(50.0))
        );
        assert_eq!(agg.mean(), Some(40.0));
        assert!((agg.stddev().unwrap() - 8.16496).abs() < 1e-4);
        assert_eq!(percentile(&h, "m", 50.0, now, 60_000), Some(30.0));
        assert_eq!(percentile(&h, "m", 100.0, now, 60_000), Some(50.0));
        assert_eq!(aggregate(&h, "other", now, 30_000).mean(), None);
    }

    #[test]
    fn percentile_ranks_are_exact_in_integers() {
        // Issue 28: ceil(0.55 × 100) is 56 in floating point, so p55 of 1..100 read 56.
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let (h, now) = history(&values, 10_000);
        for p in [
            7.0, 14.0, 17.0, 27.0, 28.0, 34.0, 54.0, 55.0, 56.0, 67.0, 68.0, 81.0,
        ] {
            assert_eq!(percentile(&h, "m", p, now, HOUR_MS), Some(p), "p{p}");
        }
        // p99.9 of 1,000 values is the 999th.
        let values: Vec<f64> = (1..=1_000).map(f64::from).collect();
        let (h, now) = history(&values, 1_000);
        assert_eq!(percentile(&h, "m", 99.9, now, HOUR_MS), Some(999.0));
    }

    #[test]
    fn trends() {
        // A line rising 1 per 10 s.
        let values: Vec<f64> = (0..60).map(f64::from).collect();
        let (h, now) = history(&values, 10_000);
        assert_eq!(delta(&h, "m", now, 100_000), Some(9.0));
        assert!((rate(&h, "m", now, 100_000).unwrap() - 0.1).abs() < 1e-9);
        let ahead = predict(&h, "m", now, 600_000, 100_000).unwrap();
        assert!((ahead - 69.0).abs() < 1e-6, "{ahead}");
        // The EWMA of a rising line lags behind the last value.
        let e = ewma(&h, "m", now, 30_000).unwrap();
        assert!(e < 59.0 && e > 54.0, "{e}");
        assert_eq!(ticks_above(&h, "m", 56.5, 5), 3);
        assert_eq!(ticks_below(&h, "m", 56.5, 5), 2);
        assert!(zscore(&h, "m", 59.0, now, 600_000).unwrap() > 1.5);
    }

    #[test]
    fn explanations_say_the_window_the_history_covered() {
        // 5 minutes of 10 s ticks, a rule asking for the trend of 6 h.
        let values: Vec<f64> = (0..31).map(f64::from).collect();
        let (h, now) = history(&values, 10_000);
        // Six hours read one-minute buckets, each at its middle: within half a minute.
        let ms = covered(&h, "m", now, 6 * HOUR_MS).unwrap();
        assert!((270_000..=330_000).contains(&ms), "{ms}");
        assert_eq!(
            covered_text(&h, "m", now, 6 * HOUR_MS, "6h"),
            "5m (6h asked)"
        );
        assert_eq!(
            format!(
                "trend of the last {}",
                covered_text(&h, "m", now, 6 * HOUR_MS, "6h")
            ),
            "trend of the last 5m (6h asked)"
        );
        // A window the history fills is said as the rule wrote it.
        assert_eq!(covered_text(&h, "m", now, 300_000, "5m"), "5m");
        assert_eq!(covered_text(&h, "m", now, 120_000, "2m"), "2m");
        assert_eq!(
            covered_text(&h, "other", now, 300_000, "5m"),
            "no history yet (5m asked)"
        );
        // Under a minute: seconds.
        let (h, now) = history(&[1.0, 2.0, 3.0], 10_000);
        assert_eq!(covered_text(&h, "m", now, HOUR_MS, "1h"), "20s (1h asked)");
    }

    #[test]
    fn long_windows_use_buckets() {
        // 3 h of 10 s ticks: the last 2 h read one-minute buckets.
        let values: Vec<f64> = (0..1080)
            .map(|i| if i < 540 { 10.0 } else { 30.0 })
            .collect();
        let (h, now) = history(&values, 10_000);
        assert_eq!(tier(&h, 2 * HOUR_MS), Tier::Minutes);
        let agg = aggregate(&h, "m", now, 2 * HOUR_MS);
        // 30 min of 10 and 90 of 30, rounded to whole minutes.
        let mean = agg.mean().unwrap();
        assert!((mean - 25.0).abs() < 0.2, "{mean}");
        assert_eq!((agg.min(), agg.max()), (Some(10.0), Some(30.0)));
        assert_eq!(tier(&h, 24 * HOUR_MS), Tier::FiveMinutes);
        assert_eq!(aggregate(&h, "m", now, 24 * HOUR_MS).count, 1080.0);
    }

    #[test]
    fn baseline_needs_weeks_of_data() {
        let (h, now) = history(&[1.0, 2.0], 10_000);
        assert_eq!(baseline(&h, "m", now, BASELINE_MIN_WEEKS), None);
    }
}
