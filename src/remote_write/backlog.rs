//! The metrics log read as remote write's write-ahead log: from the cursor on, oldest day
//! first and each day's lines in the order written (so each series' samples stay in time
//! order), in batches of at most `max_batch` samples. A line is read one pass after it
//! appeared, by when its tick's alert events are in the alert log too; at shutdown everything
//! written is read.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use super::alerts::AlertTracker;
use super::cursor::{Cursor, Position};
use super::series::{Converter, Labels, Point};
use crate::store::sample::{LineParser, peek_ts_ms};

/// Samples to send, and where the cursor goes once the receiver has them.
#[derive(Debug, Default)]
pub struct Batch {
    /// Each series once, its samples in time order as `(timestamp ms, value)`.
    pub series: Vec<(Labels, Vec<(i64, f64)>)>,
    pub samples: usize,
    /// The oldest sample's time.
    pub oldest_ms: Option<i64>,
    /// Samples passed over because they were older than `max_age` when their turn came.
    pub too_old: u64,
    after: BTreeMap<NaiveDate, Position>,
    index: HashMap<Labels, usize>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Whether reading it moved the cursor (samples, or lines passed over).
    pub fn moves(&self) -> bool {
        !self.after.is_empty()
    }

    fn push(&mut self, labels: &Labels, ts_ms: i64, value: f64) {
        let i = *self.index.entry(labels.clone()).or_insert_with(|| {
            self.series.push((labels.clone(), Vec::new()));
            self.series.len() - 1
        });
        self.series[i].1.push((ts_ms, value));
        self.samples += 1;
        self.oldest_ms = Some(self.oldest_ms.map_or(ts_ms, |o| o.min(ts_ms)));
    }
}

/// The metrics log from the cursor on.
#[derive(Debug)]
pub struct Backlog {
    data_dir: PathBuf,
    cursor: Cursor,
    /// No cursor was saved before: lines older than `max_age` are not news, so not counted.
    fresh: bool,
    /// Each day file's length at the previous pass, and what this pass may read.
    seen: BTreeMap<NaiveDate, u64>,
    limits: BTreeMap<NaiveDate, u64>,
    max_batch: usize,
    max_age: chrono::Duration,
    parser: LineParser,
    converter: Converter,
    alerts: AlertTracker,
    points: Vec<Point>,
}

fn day_file(data_dir: &Path, day: NaiveDate) -> PathBuf {
    data_dir.join("metrics").join(format!("{day}.jsonl"))
}

impl Backlog {
    pub fn open(
        data_dir: &Path,
        max_batch: usize,
        max_age: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Backlog {
        let saved = Cursor::load(data_dir);
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        let horizon = now.checked_sub_signed(max_age).unwrap_or(now);
        Backlog {
            data_dir: data_dir.to_path_buf(),
            fresh: saved.is_none(),
            cursor: saved.unwrap_or_default(),
            seen: BTreeMap::new(),
            limits: BTreeMap::new(),
            max_batch: max_batch.max(1),
            max_age,
            parser: LineParser::default(),
            converter: Converter::default(),
            alerts: AlertTracker::new(data_dir, horizon),
            points: Vec::new(),
        }
    }

    fn horizon(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.max_age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Starts a pass: what it may read (`drain`: everything written; else what was there at
    /// the previous pass). Days of the cursor older than `max_age` are given up; returns how
    /// many samples they still held.
    pub fn begin_pass(&mut self, now: DateTime<Utc>, drain: bool) -> u64 {
        let first_day = self.horizon(now).date_naive();
        let today = now.date_naive();
        let mut too_old = 0;
        let old: Vec<(NaiveDate, Position)> = self
            .cursor
            .files
            .range(..first_day)
            .map(|(d, p)| (*d, *p))
            .collect();
        for (day, position) in old {
            too_old += self.count_rest(day, position);
            self.cursor.files.remove(&day);
        }
        let mut lengths = BTreeMap::new();
        let mut day = first_day.min(today);
        while day <= today {
            if let Ok(meta) = std::fs::metadata(day_file(&self.data_dir, day)) {
                lengths.insert(day, meta.len());
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        self.limits = if drain {
            lengths.clone()
        } else {
            lengths
                .keys()
                .map(|d| (*d, self.seen.get(d).copied().unwrap_or(0)))
                .collect()
        };
        self.seen = lengths;
        self.alerts.refresh(today);
        too_old
    }

    /// Samples left in a day file from `position` (metrics and failed probes), unsent.
    fn count_rest(&mut self, day: NaiveDate, position: Position) -> u64 {
        let Ok(mut file) = std::fs::File::open(day_file(&self.data_dir, day)) else {
            return 0;
        };
        if file
            .seek(std::io::SeekFrom::Start(position.offset))
            .is_err()
        {
            return 0;
        }
        let mut count = 0u64;
        let mut skip = position.done as u64;
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            if let Ok(view) = self.parser.parse(&line) {
                let n = (view.metric_count() + view.error_count()) as u64;
                count += n.saturating_sub(skip);
            }
            skip = 0;
        }
        count
    }

    /// The next batch: empty when this pass has nothing more. Reading advances alert state,
    /// so a batch once read is sent (again and again) until it is acknowledged or dropped.
    pub fn next_batch(&mut self, now: DateTime<Utc>) -> Batch {
        let horizon_ms = self.horizon(now).timestamp_millis();
        let mut batch = Batch::default();
        let limits: Vec<(NaiveDate, u64)> = self.limits.iter().map(|(d, l)| (*d, *l)).collect();
        for (day, limit) in limits {
            if batch.samples >= self.max_batch {
                break;
            }
            let start = self.cursor.files.get(&day).copied().unwrap_or_default();
            let start = if start.offset > self.seen.get(&day).copied().unwrap_or(0) {
                // The file is shorter than what was sent from it: replaced, start over.
                Position::default()
            } else {
                start
            };
            if start.offset >= limit {
                continue;
            }
            let position = self.read_day(day, start, limit, horizon_ms, &mut batch);
            if position != start {
                batch.after.insert(day, position);
            }
        }
        batch
    }

    fn read_day(
        &mut self,
        day: NaiveDate,
        start: Position,
        limit: u64,
        horizon_ms: i64,
        batch: &mut Batch,
    ) -> Position {
        let Ok(mut file) = std::fs::File::open(day_file(&self.data_dir, day)) else {
            return start;
        };
        if file.seek(std::io::SeekFrom::Start(start.offset)).is_err() {
            return start;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut position = start;
        let mut line = String::new();
        while position.offset < limit && batch.samples < self.max_batch {
            line.clear();
            let n = match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => n as u64,
            };
            if !line.ends_with('\n') || position.offset + n > limit {
                break;
            }
            let line_end = position.offset + n;
            // The first start reads past a day of history it does not send: on the time alone.
            if self.fresh && peek_ts_ms(&line).is_some_and(|ts| ts < horizon_ms) {
                position = Position {
                    offset: line_end,
                    done: 0,
                };
                continue;
            }
            let Ok(view) = self.parser.parse(line.trim_end_matches('\n')) else {
                // A torn tail fenced off, or a line edited by hand: nothing to send.
                position = Position {
                    offset: line_end,
                    done: 0,
                };
                continue;
            };
            let (ts_ms, job) = (view.ts_ms, view.job());
            let alerts = self.alerts.alerts_at(job, ts_ms);
            if ts_ms < horizon_ms {
                if !self.fresh {
                    let n = (view.metric_count() + view.error_count()) as u64;
                    batch.too_old += n.saturating_sub(position.done as u64);
                }
                position = Position {
                    offset: line_end,
                    done: 0,
                };
                continue;
            }
            self.points.clear();
            self.converter.points(&view, &alerts, &mut self.points);
            let room = self.max_batch - batch.samples;
            let rest = self.points.len().saturating_sub(position.done);
            let take = rest.min(room);
            for (labels, value) in &self.points[position.done..position.done + take] {
                batch.push(labels, ts_ms, *value);
            }
            position = if take < rest {
                Position {
                    offset: position.offset,
                    done: position.done + take,
                }
            } else {
                Position {
                    offset: line_end,
                    done: 0,
                }
            };
        }
        position
    }

    /// The receiver has the batch (or it was dropped): the cursor moves past it, on disk.
    pub fn commit(&mut self, batch: &Batch) -> std::io::Result<()> {
        if batch.after.is_empty() {
            return Ok(());
        }
        for (day, position) in &batch.after {
            self.cursor.files.insert(*day, *position);
        }
        self.fresh = false;
        self.cursor.save(&self.data_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MetricsLog;
    use crate::store::sample::Sample;

    fn sample(at: DateTime<Utc>, job: &str, n: usize) -> Sample {
        Sample {
            ts: at,
            host: "h".into(),
            job: job.into(),
            metrics: (0..n)
                .map(|i| (format!("cpu.c{i}.usage_percent").into(), i as f64))
                .collect(),
            errors: Vec::new(),
        }
    }

    fn drain(backlog: &mut Backlog, now: DateTime<Utc>) -> Vec<(String, i64)> {
        let mut sent = Vec::new();
        loop {
            let batch = backlog.next_batch(now);
            if !batch.moves() {
                return sent;
            }
            assert!(batch.samples <= 3, "{}", batch.samples);
            for (labels, samples) in &batch.series {
                let cpu = &labels.iter().find(|(k, _)| k == "cpu").unwrap().1;
                sent.extend(samples.iter().map(|(ts, _)| (cpu.clone(), *ts)));
            }
            backlog.commit(&batch).unwrap();
        }
    }

    /// Each series' samples in time order, and all of them in (time, series) order.
    fn in_order(mut sent: Vec<(String, i64)>) -> Vec<(String, i64)> {
        let mut last = std::collections::HashMap::new();
        for (series, ts) in &sent {
            let before = last.insert(series.clone(), *ts);
            assert!(before.is_none_or(|b| b < *ts), "{series} out of order");
        }
        sent.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        sent
    }

    #[test]
    fn batches_are_bounded_split_inside_ticks_and_resume_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .to_utc();
        let mut log = MetricsLog::new(dir.path());
        for s in 0..3 {
            log.append(&sample(t0 + chrono::Duration::seconds(s), "m", 2))
                .unwrap();
        }
        let now = t0 + chrono::Duration::seconds(3);
        let age = std::time::Duration::from_secs(3600);
        let mut backlog = Backlog::open(dir.path(), 3, age, now);
        // The first pass only notes what is there: a line waits one pass.
        backlog.begin_pass(now, false);
        assert!(!backlog.next_batch(now).moves());
        backlog.begin_pass(now, false);
        let first = backlog.next_batch(now);
        assert_eq!(first.samples, 3);
        backlog.commit(&first).unwrap();
        // A restart: what was acknowledged is not sent again, the rest is, in order.
        log.append(&sample(t0 + chrono::Duration::seconds(3), "m", 2))
            .unwrap();
        let mut backlog = Backlog::open(dir.path(), 3, age, now);
        backlog.begin_pass(now, true);
        let ms = |s: i64| (t0 + chrono::Duration::seconds(s)).timestamp_millis();
        assert_eq!(
            in_order(drain(&mut backlog, now)),
            [
                ("c1".to_string(), ms(1)),
                ("c0".to_string(), ms(2)),
                ("c1".to_string(), ms(2)),
                ("c0".to_string(), ms(3)),
                ("c1".to_string(), ms(3)),
            ]
        );
    }

    #[test]
    fn samples_older_than_max_age_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .to_utc();
        let mut log = MetricsLog::new(dir.path());
        log.append(&sample(t0 - chrono::Duration::seconds(120), "m", 4))
            .unwrap();
        log.append(&sample(t0, "m", 1)).unwrap();
        let age = std::time::Duration::from_secs(60);
        let mut backlog = Backlog::open(dir.path(), 10, age, t0);
        backlog.begin_pass(t0, true);
        // The first start: history older than max_age is passed over, not counted.
        let batch = backlog.next_batch(t0);
        assert_eq!((batch.samples, batch.too_old), (1, 0));
        backlog.commit(&batch).unwrap();
        log.append(&sample(t0 + chrono::Duration::seconds(1), "m", 2))
            .unwrap();
        log.append(&sample(t0 + chrono::Duration::seconds(100), "m", 1))
            .unwrap();
        let later = t0 + chrono::Duration::seconds(100);
        backlog.begin_pass(later, true);
        let batch = backlog.next_batch(later);
        assert_eq!((batch.samples, batch.too_old), (1, 2));
    }
}
