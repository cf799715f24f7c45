//! Hourly rollups (count, sum, min, max and a quantile sketch per metric), one JSON line per
//! hour in `state/rollups/<job>/<UTC day>.jsonl`, kept five weeks. They are what `baseline()`,
//! long-window rule functions and the report's week-over-week trends read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::daily::DailyWriter;
use super::sketch::Sketch;

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
    pub sketch: Sketch,
}

impl Rollup {
    pub fn add(&mut self, value: f64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
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
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
        self.sumsq += other.sumsq;
        self.sketch.merge(&other.sketch);
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
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
}
