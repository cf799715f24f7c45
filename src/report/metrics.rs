//! The report's pass over the metrics log: per metric the exact count, min, max, mean and
//! last value, quantiles from a sketch, hourly means for charts, and for check probes (ping,
//! tcp, http) availability and downtime. One streaming pass; memory grows with the number of
//! metrics, not with the window.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::store::sample::SampleView;
use crate::store::sketch::{DenseSketch, Extremes, Sketch};

/// A gap between samples longer than this is not counted as downtime: runner was not running.
const MAX_DOWNTIME_GAP_MS: i64 = 10 * 60 * 1000;

/// What makes a value of a check metric a failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `tcp.*.up`, `http.*.up`, `postgres.*.up`: 0 is down.
    Up,
    /// `ping.*.loss_percent`: every packet lost is down.
    Loss,
}

impl Check {
    /// The check a metric is, from its name; `None` for metrics that are no check.
    pub fn of(name: &str) -> Option<Check> {
        let field = name.rsplit('.').next().unwrap_or(name);
        match (name.split('.').next(), field) {
            (Some("tcp" | "http" | "postgres"), "up") => Some(Check::Up),
            (Some("ping"), "loss_percent") => Some(Check::Loss),
            _ => None,
        }
    }

    pub fn failed(self, value: f64) -> bool {
        match self {
            Check::Up => value < 0.5,
            Check::Loss => value >= 100.0,
        }
    }
}

/// An interval between checks, or `0` when it is longer than `MAX_DOWNTIME_GAP_MS`: then
/// runner was not running, nothing was measured, and no one knows whether the target was down.
fn measured(interval_ms: i64) -> i64 {
    if (0..=MAX_DOWNTIME_GAP_MS).contains(&interval_ms) {
        interval_ms
    } else {
        0
    }
}

#[derive(Debug, Clone)]
pub struct Availability {
    check: Check,
    pub checks: u64,
    pub failed: u64,
    pub downtime_ms: i64,
    /// The first and the previous sample: time and whether it failed (the first joins a pass
    /// over earlier days to this one).
    first: Option<(i64, bool)>,
    prev: Option<(i64, bool)>,
}

impl Availability {
    pub fn new(check: Check) -> Availability {
        Availability {
            check,
            checks: 0,
            failed: 0,
            downtime_ms: 0,
            first: None,
            prev: None,
        }
    }

    /// Continues with what a pass over the following days found.
    fn merge(&mut self, later: &Availability) {
        if let (Some((prev_ts, true)), Some((first_ts, _))) = (self.prev, later.first) {
            self.downtime_ms += measured(first_ts - prev_ts);
        }
        self.checks += later.checks;
        self.failed += later.failed;
        self.downtime_ms += later.downtime_ms;
        self.first = self.first.or(later.first);
        self.prev = later.prev.or(self.prev);
    }

    pub fn add(&mut self, ts_ms: i64, value: f64) {
        let failed = self.check.failed(value);
        self.checks += 1;
        if failed {
            self.failed += 1;
        }
        if let Some((prev_ts, prev_failed)) = self.prev
            && prev_failed
        {
            // A failed check counts as down until the next check.
            self.downtime_ms += measured(ts_ms - prev_ts);
        }
        self.prev = Some((ts_ms, failed));
        self.first.get_or_insert((ts_ms, failed));
    }

    /// The window ended while the last check was failing.
    fn close(&mut self, end_ms: i64) {
        if let Some((prev_ts, true)) = self.prev {
            self.downtime_ms += measured(end_ms - prev_ts);
            self.prev = None;
        }
    }
}

/// Everything one metric did in the window.
#[derive(Debug, Clone)]
pub struct MetricStats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// How many values equal `min` and `max`: a percentile at an extreme is then exact.
    pub at_min: u64,
    pub at_max: u64,
    pub last: f64,
    pub last_ts: i64,
    /// Filled when the pass finishes, from `dense`.
    pub sketch: Sketch,
    dense: DenseSketch,
    /// Sum and count per chart step of the window (see `chart_step_ms`).
    pub points: Vec<(f64, u32)>,
    pub availability: Option<Availability>,
}

impl MetricStats {
    fn new(points: usize, check: Option<Check>) -> MetricStats {
        MetricStats {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            at_min: 0,
            at_max: 0,
            last: f64::NAN,
            last_ts: i64::MIN,
            sketch: Sketch::default(),
            dense: DenseSketch::default(),
            points: vec![(0.0, 0); points],
            availability: check.map(Availability::new),
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The exact extremes, for the sketch's percentiles.
    pub fn extremes(&self) -> Extremes {
        Extremes {
            min: self.min,
            max: self.max,
            at_min: self.at_min,
            at_max: self.at_max,
        }
    }

    /// The mean of each chart step; `None` for steps without samples.
    pub fn series(&self) -> Vec<Option<f64>> {
        self.points
            .iter()
            .map(|(sum, n)| (*n > 0).then(|| sum / f64::from(*n)))
            .collect()
    }
}

/// The step of a report's charts: the shortest round step that gives the window at most 168
/// points, so a week is charted by the hour (as before), a day by the 10 minutes and an hour
/// by the minute; a short window is a line, not one dot.
pub fn chart_step_ms(window_ms: i64) -> i64 {
    const MAX_POINTS: i64 = 168;
    const STEPS_MIN: [i64; 12] = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];
    STEPS_MIN
        .iter()
        .map(|minutes| minutes * 60_000)
        .find(|step| step * MAX_POINTS >= window_ms)
        .unwrap_or_else(|| (window_ms + MAX_POINTS - 1) / MAX_POINTS)
}

/// The pass itself: feed it samples, then take the results.
#[derive(Debug)]
pub struct MetricsPass {
    from_ms: i64,
    to_ms: i64,
    /// The chart's step and how many steps the window has.
    step_ms: i64,
    points: usize,
    names: Vec<String>,
    stats: Vec<MetricStats>,
    index: HashMap<String, usize>,
    /// The slot of each position in the previous line: lines of one job list their metrics
    /// in the same order, so most lookups are one string comparison.
    layout: Vec<usize>,
    pub samples: u64,
    /// The time of the earliest sample seen (`i64::MAX` before the first).
    pub first_ms: i64,
    pub hosts: BTreeSet<String>,
    /// Probe → (errors, the last message).
    pub errors: BTreeMap<String, (u64, String)>,
}

impl MetricsPass {
    pub fn new(from_ms: i64, to_ms: i64) -> MetricsPass {
        MetricsPass::with_step(from_ms, to_ms, chart_step_ms((to_ms - from_ms).max(0)))
    }

    /// A pass charted by `step_ms`: a calendar week across a DST change (167 or 169 hours)
    /// keeps the hourly step of its nominal week rather than jumping to two hours.
    pub fn with_step(from_ms: i64, to_ms: i64, step_ms: i64) -> MetricsPass {
        let window_ms = (to_ms - from_ms).max(0);
        let step_ms = step_ms.max(1);
        let points = (window_ms as u64).div_ceil(step_ms as u64) as usize;
        MetricsPass {
            from_ms,
            to_ms,
            step_ms,
            points: points.max(1),
            names: Vec::new(),
            stats: Vec::new(),
            index: HashMap::new(),
            layout: Vec::new(),
            samples: 0,
            first_ms: i64::MAX,
            hosts: BTreeSet::new(),
            errors: BTreeMap::new(),
        }
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.index.get(name) {
            return slot;
        }
        let slot = self.names.len();
        self.names.push(name.to_string());
        self.stats
            .push(MetricStats::new(self.points, Check::of(name)));
        self.index.insert(name.to_string(), slot);
        slot
    }

    pub fn visit(&mut self, view: &SampleView<'_>) {
        self.samples += 1;
        let ts = view.ts_ms;
        self.first_ms = self.first_ms.min(ts);
        if !self.hosts.contains(view.host()) {
            self.hosts.insert(view.host().to_string());
        }
        let point = (((ts - self.from_ms).max(0)) / self.step_ms) as usize;
        let point = point.min(self.points - 1);
        for (i, (name, value)) in view.metrics().enumerate() {
            let slot = match self.layout.get(i) {
                Some(&slot) if self.names[slot] == name => slot,
                _ => {
                    let slot = self.slot(name);
                    if i < self.layout.len() {
                        self.layout[i] = slot;
                    } else {
                        self.layout.push(slot);
                    }
                    slot
                }
            };
            if !value.is_finite() {
                continue;
            }
            let s = &mut self.stats[slot];
            s.count += 1;
            s.sum += value;
            // Values are finite here, and the first one is below INFINITY and above its
            // negative: it starts both counts.
            if value <= s.min {
                if value < s.min {
                    s.min = value;
                    s.at_min = 0;
                }
                s.at_min += 1;
            }
            if value >= s.max {
                if value > s.max {
                    s.max = value;
                    s.at_max = 0;
                }
                s.at_max += 1;
            }
            if ts >= s.last_ts {
                s.last_ts = ts;
                s.last = value;
            }
            s.dense.add(value);
            let p = &mut s.points[point];
            p.0 += value;
            p.1 += 1;
            if let Some(availability) = &mut s.availability {
                availability.add(ts, value);
            }
        }
        if view.error_count() > 0 {
            for (probe, message) in view.errors() {
                let entry = self
                    .errors
                    .entry(probe.into_owned())
                    .or_insert((0, String::new()));
                entry.0 += 1;
                entry.1 = message.into_owned();
            }
        }
    }

    /// Continues with a pass over the days that follow this one's (the same window).
    pub fn merge(&mut self, later: MetricsPass) {
        self.samples += later.samples;
        self.first_ms = self.first_ms.min(later.first_ms);
        self.hosts.extend(later.hosts);
        for (probe, (count, last)) in later.errors {
            let entry = self.errors.entry(probe).or_insert((0, String::new()));
            entry.0 += count;
            entry.1 = last;
        }
        for (name, theirs) in later.names.iter().zip(later.stats) {
            let slot = self.slot(name);
            let ours = &mut self.stats[slot];
            ours.count += theirs.count;
            ours.sum += theirs.sum;
            let (min, max) = (ours.min.min(theirs.min), ours.max.max(theirs.max));
            let at = |extreme: f64, count: u64, of: f64| if extreme == of { count } else { 0 };
            ours.at_min = at(ours.min, ours.at_min, min) + at(theirs.min, theirs.at_min, min);
            ours.at_max = at(ours.max, ours.at_max, max) + at(theirs.max, theirs.at_max, max);
            (ours.min, ours.max) = (min, max);
            if theirs.last_ts >= ours.last_ts && theirs.count > 0 {
                ours.last_ts = theirs.last_ts;
                ours.last = theirs.last;
            }
            ours.dense.merge(&theirs.dense);
            for (point, (sum, n)) in ours.points.iter_mut().zip(theirs.points) {
                point.0 += sum;
                point.1 += n;
            }
            if let (Some(a), Some(b)) = (&mut ours.availability, &theirs.availability) {
                a.merge(b);
            }
        }
    }

    /// Every metric with its numbers, sorted by name.
    pub fn finish(mut self) -> Vec<(String, MetricStats)> {
        for s in &mut self.stats {
            if let Some(a) = &mut s.availability {
                a.close(self.to_ms);
            }
            s.sketch = std::mem::take(&mut s.dense).finish();
        }
        let mut out: Vec<(String, MetricStats)> = self.names.into_iter().zip(self.stats).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sample::{LineParser, Sample};

    fn line(ts_ms: i64, metrics: &[(&str, f64)]) -> String {
        Sample {
            ts: chrono::DateTime::from_timestamp_millis(ts_ms).unwrap(),
            host: "web-1".into(),
            job: "monitor".into(),
            metrics: metrics.iter().map(|(n, v)| ((*n).into(), *v)).collect(),
            errors: vec![],
        }
        .to_json()
    }

    #[test]
    fn exact_numbers_chart_points_and_downtime() {
        let mut pass = MetricsPass::new(0, 2 * 3_600_000);
        let mut parser = LineParser::default();
        // A check that fails for the samples at 40 and 50 minutes.
        for (i, minute) in [0i64, 10, 20, 30, 40, 50, 60, 70].iter().enumerate() {
            let failed = *minute == 40 || *minute == 50;
            let text = line(
                minute * 60_000,
                &[
                    ("cpu.total.usage_percent", i as f64),
                    ("tcp.db.up", if failed { 0.0 } else { 1.0 }),
                ],
            );
            pass.visit(&parser.parse(&text).unwrap());
        }
        let stats: BTreeMap<String, MetricStats> = pass.finish().into_iter().collect();
        let cpu = &stats["cpu.total.usage_percent"];
        assert_eq!((cpu.count, cpu.min, cpu.max, cpu.last), (8, 0.0, 7.0, 7.0));
        assert_eq!(cpu.mean(), Some(3.5));
        // Two hours are charted by the minute: a point where a sample is, none between.
        let series = cpu.series();
        assert_eq!(series.len(), 120);
        assert_eq!(
            (series[0], series[1], series[10]),
            (Some(0.0), None, Some(1.0))
        );
        assert_eq!(series[70], Some(7.0));
        let db = stats["tcp.db.up"].availability.clone().unwrap();
        assert_eq!((db.checks, db.failed), (8, 2));
        assert_eq!(
            db.downtime_ms,
            20 * 60_000,
            "from the first failure to the first success"
        );
    }

    #[test]
    fn a_week_is_charted_by_the_hour_and_shorter_windows_finer() {
        let (minute, hour, day) = (60_000, 3_600_000, 86_400_000);
        assert_eq!(chart_step_ms(7 * day), hour);
        assert_eq!(chart_step_ms(day), 10 * minute);
        assert_eq!(chart_step_ms(hour), minute);
        assert_eq!(chart_step_ms(30 * day), 6 * hour);
        assert_eq!(chart_step_ms(0), minute);
        // Beyond 168 days, a step that still gives 168 points.
        assert_eq!(chart_step_ms(336 * day), 2 * day);
        let mut pass = MetricsPass::new(0, 7 * day);
        let mut parser = LineParser::default();
        for minute_of_week in [0, 30, 90] {
            let text = line(
                minute_of_week * minute,
                &[("load.load1", minute_of_week as f64)],
            );
            pass.visit(&parser.parse(&text).unwrap());
        }
        let series = pass.finish()[0].1.series();
        assert_eq!(series.len(), 168);
        assert_eq!(&series[..3], &[Some(15.0), Some(90.0), None]);
    }

    #[test]
    fn a_window_ending_while_down_counts_to_its_end() {
        let mut pass = MetricsPass::new(0, 3_600_000);
        let mut parser = LineParser::default();
        let text = line(3_000_000, &[("ping.gw.loss_percent", 100.0)]);
        pass.visit(&parser.parse(&text).unwrap());
        let stats = pass.finish();
        assert_eq!(
            stats[0].1.availability.as_ref().unwrap().downtime_ms,
            600_000
        );
    }

    #[test]
    fn time_when_nothing_was_measured_is_not_downtime() {
        // Up at 23:00:00, down from 23:00:10 to 23:00:30, then runner stopped until 23:30:10.
        let mut pass = MetricsPass::new(0, 7_200_000);
        let mut parser = LineParser::default();
        for (s, up) in [
            (0, 1.0),
            (10, 0.0),
            (20, 0.0),
            (30, 0.0),
            (1810, 1.0),
            (1820, 0.0),
        ] {
            let text = line(s * 1000, &[("tcp.db.up", up)]);
            pass.visit(&parser.parse(&text).unwrap());
        }
        // The last check failed 98 minutes before the window's end: no more downtime either.
        let stats = pass.finish();
        let a = stats[0].1.availability.as_ref().unwrap();
        assert_eq!((a.checks, a.failed), (6, 4));
        assert_eq!(a.downtime_ms, 20_000);
    }

    #[test]
    fn passes_over_consecutive_days_merge_into_the_pass_over_all() {
        // Down across the split: from 50 min to 70 min, with the split at 60.
        let lines: Vec<String> = (0..24)
            .map(|i| {
                let minute = i * 5;
                let up = if (50..70).contains(&minute) { 0.0 } else { 1.0 };
                line(
                    minute * 60_000,
                    &[
                        ("cpu.total.usage_percent", (i * 7 % 11) as f64),
                        ("tcp.db.up", up),
                    ],
                )
            })
            .collect();
        let mut parser = LineParser::default();
        let mut whole = MetricsPass::new(0, 2 * 3_600_000);
        let mut early = MetricsPass::new(0, 2 * 3_600_000);
        let mut late = MetricsPass::new(0, 2 * 3_600_000);
        for (i, text) in lines.iter().enumerate() {
            let view = parser.parse(text).unwrap();
            whole.visit(&view);
            if i < 12 {
                early.visit(&view)
            } else {
                late.visit(&view)
            }
        }
        early.merge(late);
        let (whole, merged) = (whole.finish(), early.finish());
        assert_eq!(whole.len(), merged.len());
        for ((name, a), (other, b)) in whole.iter().zip(&merged) {
            assert_eq!(name, other);
            assert_eq!(
                (a.count, a.sum, a.min, a.max, a.last),
                (b.count, b.sum, b.min, b.max, b.last)
            );
            assert_eq!(a.sketch, b.sketch);
            assert_eq!(a.points, b.points);
            let (x, y) = (a.availability.as_ref(), b.availability.as_ref());
            assert_eq!(
                x.map(|a| (a.checks, a.failed, a.downtime_ms)),
                y.map(|a| (a.checks, a.failed, a.downtime_ms))
            );
        }
        let db = merged.iter().find(|(n, _)| n == "tcp.db.up").unwrap();
        assert_eq!(db.1.availability.as_ref().unwrap().downtime_ms, 20 * 60_000);
    }
}
