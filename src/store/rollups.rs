//! Hourly rollups (count, sum, min, max and a quantile sketch per metric), one JSON line per
//! hour in `state/rollups/<job>/<UTC day>.jsonl`, kept five weeks. They are what `baseline()`,
//! long-window rule functions and the report's week-over-week trends read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::daily::DailyWriter;
use super::sketch::{Extremes, Sketch};

/// How long hourly rollups are kept: five weeks of same-hour-of-week baselines.
pub const RETENTION_DAYS: i64 = 35;

/// One metric over one hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub count: u64,
    pub sum: f64,
    /// Sum of squares, for the standard deviation.
    #[serde(default)]
    pub sumsq: f64,
    pub min: f64,
    pub max: f64,
    /// How many finite values equal `min` and `max`, so a percentile at an extreme is exact (0
    /// in rollups written before they were kept: not known).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_min: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_max: u64,
    pub sketch: Sketch,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Rollup {
    pub fn add(&mut self, value: f64) {
        let (old_min, old_max) = (self.min, self.max);
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        let first = self.count == 0;
        self.at_min = recount(self.at_min, value, old_min, self.min, first);
        self.at_max = recount(self.at_max, value, old_max, self.max, first);
        self.count += 1;
        self.sum += value;
        self.sumsq += value * value;
        self.sketch.add(value);
    }

    pub fn merge(&mut self, other: &Rollup) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
            self.at_min = other.at_min;
            self.at_max = other.at_max;
        } else {
            let (min, max) = (self.min.min(other.min), self.max.max(other.max));
            self.at_min = merged_tally((self.min, self.at_min), (other.min, other.at_min), min);
            self.at_max = merged_tally((self.max, self.at_max), (other.max, other.at_max), max);
            (self.min, self.max) = (min, max);
        }
        self.count += other.count;
        self.sum += other.sum;
        self.sumsq += other.sumsq;
        self.sketch.merge(&other.sketch);
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

    /// Population standard deviation.
    pub fn stddev(&self) -> Option<f64> {
        let mean = self.mean()?;
        Some(
            (self.sumsq / self.count as f64 - mean * mean)
                .max(0.0)
                .sqrt(),
        )
    }
}

/// How many values equal an extreme once `value` came in and the extreme went from `old` to
/// `new`.
fn recount(count: u64, value: f64, old: f64, new: f64, first: bool) -> u64 {
    if value != new {
        count
    } else if !value.is_finite() {
        // The sketch leaves infinities out: no rank is known to hold one.
        0
    } else if !first && value == old {
        count + 1
    } else {
        1
    }
}

/// How many values of two merged rollups equal the merged extreme `new`.
fn merged_tally(ours: (f64, u64), theirs: (f64, u64), new: f64) -> u64 {
    let counted = |(extreme, count): (f64, u64)| if extreme == new { count } else { 0 };
    counted(ours) + counted(theirs)
}

/// Every metric of one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourRollup {
    /// The hour's start, UTC.
    pub hour: DateTime<Utc>,
    pub metrics: BTreeMap<String, Rollup>,
}

/// The rollup files of one monitor job.
#[derive(Debug)]
pub struct RollupStore {
    dir: PathBuf,
    writer: DailyWriter,
    pruned_through: Option<NaiveDate>,
}

impl RollupStore {
    pub fn new(data_dir: &Path, job: &str) -> Self {
        let dir = data_dir.join("state").join("rollups").join(job);
        RollupStore {
            writer: DailyWriter::named(dir.clone(), "rollups"),
            dir,
            pruned_through: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one hour; once a day, deletes day files older than the retention.
    pub fn append(&mut self, rollup: &HourRollup) -> io::Result<()> {
        let line = serde_json::to_string(rollup).map_err(io::Error::other)?;
        self.writer.append(rollup.hour, &line)?;
        let today = rollup.hour.date_naive();
        if self.pruned_through != Some(today) {
            self.prune(today - ChronoDuration::days(RETENTION_DAYS));
            self.pruned_through = Some(today);
        }
        Ok(())
    }

    fn prune(&self, before: NaiveDate) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let day = name
                .get(..10)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            if day.is_some_and(|d| d < before) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Every stored hour in `[from, to)`, oldest first; a later line for the same hour replaces
    /// an earlier one, and a torn last line (a crash mid-write) is skipped.
    pub fn hours(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<HourRollup> {
        let mut by_hour: BTreeMap<DateTime<Utc>, HourRollup> = BTreeMap::new();
        let mut day = from.date_naive();
        while day <= to.date_naive() {
            let path = self.writer.path_for(day);
            if let Ok(file) = std::fs::File::open(&path) {
                for line in BufReader::new(file).lines().map_while(Result::ok) {
                    if let Ok(rollup) = serde_json::from_str::<HourRollup>(&line)
                        && rollup.hour >= from
                        && rollup.hour < to
                    {
                        by_hour.insert(rollup.hour, rollup);
                    }
                }
            }
            day += ChronoDuration::days(1);
        }
        by_hour.into_values().collect()
    }

    /// Every stored hour of one UTC day, for the per-metric cache in history.
    pub fn day(&self, day: NaiveDate) -> Vec<HourRollup> {
        let from = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        self.hours(from, from + ChronoDuration::days(1))
    }

    /// Which hours of `[from, to)` are stored, so a warm-up does not write them twice.
    pub fn stored_hours(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
        self.hours(from, to).into_iter().map(|h| h.hour).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn stores_and_reads_back_hours() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RollupStore::new(dir.path(), "monitor");
        for (h, v) in [
            ("2026-11-27T23:00:00Z", 1.0),
            ("2026-11-28T00:00:00Z", 2.0),
            ("2026-11-28T01:00:00Z", 3.0),
        ] {
            let mut r = Rollup::default();
            r.add(v);
            r.add(v * 10.0);
            store
                .append(&HourRollup {
                    hour: hour(h),
                    metrics: BTreeMap::from([("m".to_string(), r)]),
                })
                .unwrap();
        }
        let got = store.hours(hour("2026-11-27T23:00:00Z"), hour("2026-11-28T01:00:00Z"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].metrics["m"].max, 20.0);
        assert_eq!(got[1].metrics["m"].mean(), Some(11.0));
        // A torn line is skipped.
        let path = dir.path().join("state/rollups/monitor/2026-11-28.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"hour\":\"2026-11-28T02:00");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            store
                .hours(hour("2026-11-28T00:00:00Z"), hour("2026-11-29T00:00:00Z"))
                .len(),
            2
        );
    }

    #[test]
    fn rollups_merge() {
        let mut a = Rollup::default();
        let mut b = Rollup::default();
        a.add(5.0);
        b.add(-1.0);
        b.add(9.0);
        a.merge(&b);
        assert_eq!((a.count, a.sum, a.min, a.max), (3, 13.0, -1.0, 9.0));
        assert_eq!(a.sumsq, 25.0 + 1.0 + 81.0);
        let sd = a.stddev().unwrap();
        assert!((sd - 4.1096).abs() < 1e-3, "{sd}");
        a.merge(&Rollup::default());
        assert_eq!(a.count, 3);
    }

    #[test]
    fn rollups_count_the_values_at_each_extreme() {
        let mut a = Rollup::default();
        for v in [2.0, 1.0, 1.0, 5.0, 2.0, 5.0, 5.0] {
            a.add(v);
        }
        assert_eq!((a.at_min, a.at_max), (2, 3));
        // Infinities are not in the sketch, so no rank holds one.
        let mut inf = a.clone();
        inf.add(f64::INFINITY);
        assert_eq!((inf.max, inf.at_max), (f64::INFINITY, 0));
        let mut b = Rollup::default();
        b.add(1.0);
        b.add(0.5);
        b.add(5.0);
        a.merge(&b);
        assert_eq!((a.min, a.at_min, a.max, a.at_max), (0.5, 1, 5.0, 4));
        // The p95 of 10 values is the 10th: the maximum, exactly.
        assert_eq!(a.sketch.quantile_between(0.95, a.extremes()), Some(5.0));
        // A rollup written before the counts were kept reads them as 0: not known.
        let old: Rollup =
            serde_json::from_str(r#"{"count":1,"sum":3.0,"min":3.0,"max":3.0,"sketch":{}}"#)
                .unwrap();
        assert_eq!((old.at_min, old.at_max), (0, 0));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Rollup>(&json).unwrap(), a);
    }
}
