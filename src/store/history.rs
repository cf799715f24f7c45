//! History per metric for the rules: raw points for a short window (default 1 h), one-minute
//! buckets for 6 h, five-minute buckets for 48 h, and the hour being built, whose rollup goes to
//! disk when the hour ends (longer windows read those).
//!
//! Memory is what bounds this module. Raw points are packed in chunks (`chunk.rs`): 1.3 bytes
//! a point for a steady value, about 4.6 for a noisy one, against 8 unpacked. A bucket is 16
//! bytes (`f32` sum, min and max, a count). Per metric, once the windows are full at a 1 s
//! tick: 3,600 packed points (5 to 17 KB) + 16 B × (360 + 576) buckets (15 KB), plus the hour's
//! sketch (about 16 B per distinct 1 % bucket). Buffers grow in small steps, not by doubling,
//! so capacity stays close to use.
//!
//! Why two bucket tiers: 48 h of one-minute buckets would be 46 KB per metric, the biggest
//! part of an agent that should stay within a few MiB; windows longer than six hours lose
//! nothing that matters at five-minute resolution (only their edges are rounded to five
//! minutes).

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::chunk::Chunk;
use super::daily::DailyFiles;
use super::rollups::{HourRollup, Rollup, RollupStore};
use super::sample::{LineParser, SampleView, peek_ts_ms};
use crate::vocab::MetricName;

const MINUTE_MS: i64 = 60_000;
const FIVE_MINUTES_MS: i64 = 300_000;
const HOUR_MS: i64 = 3_600_000;

/// Pushes onto a ring, growing it by an eighth when full rather than doubling.
fn push_compact<T>(ring: &mut VecDeque<T>, item: T) {
    if ring.len() == ring.capacity() {
        ring.reserve_exact((ring.len() / 8).max(16));
    }
    ring.push_back(item);
}

/// How much history to keep in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    pub raw_window: Duration,
    /// One-minute buckets.
    pub minute_window: Duration,
    /// Five-minute buckets; also how far back a warm-up reads.
    pub bucket_window: Duration,
}

impl Default for HistoryConfig {
    // Keep in step with the History table of docs/metrics.md.
    fn default() -> Self {
        HistoryConfig {
            raw_window: Duration::from_secs(3_600),
            minute_window: Duration::from_secs(6 * 3_600),
            bucket_window: Duration::from_secs(48 * 3_600),
        }
    }
}

/// One bucket (a minute, or five) of one metric; `count == 0` marks one without data.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MinuteBucket {
    pub sum: f32,
    pub min: f32,
    pub max: f32,
    pub count: u16,
}

impl MinuteBucket {
    fn add(&mut self, value: f32) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.sum += value;
        self.count = self.count.saturating_add(1);
    }
}

/// Consecutive buckets of one width, kept for a fixed span.
#[derive(Debug)]
struct Buckets {
    width_ms: i64,
    keep: i64,
    /// Bucket index (`ms / width_ms`) of `items[0]`.
    first: i64,
    items: VecDeque<MinuteBucket>,
}

impl Buckets {
    fn new(width_ms: i64, span: Duration) -> Self {
        Buckets {
            width_ms,
            keep: (span.as_millis() as i64 / width_ms).max(1),
            first: 0,
            items: VecDeque::new(),
        }
    }

    fn add(&mut self, ts_ms: i64, value: f32) {
        let index = ts_ms.div_euclid(self.width_ms);
        let last = self.first + self.items.len() as i64 - 1;
        if self.items.is_empty() || index - last > self.keep {
            self.items.clear();
            self.first = index;
            push_compact(&mut self.items, MinuteBucket::default());
        } else {
            for _ in last..index {
                push_compact(&mut self.items, MinuteBucket::default());
            }
        }
        // A clock that stepped back adds to the latest bucket rather than rewriting the past.
        let at = (index - self.first).clamp(0, self.items.len() as i64 - 1) as usize;
        self.items[at].add(value);
        while self.items.len() as i64 > self.keep {
            self.items.pop_front();
            self.first += 1;
        }
    }

    /// Buckets with data that start at or after `from_ms`, with their start.
    fn since(&self, from_ms: i64) -> impl Iterator<Item = (i64, MinuteBucket)> + '_ {
        // The ring is contiguous in time: the first bucket is found by arithmetic.
        let first_wanted =
            from_ms.div_euclid(self.width_ms) + i64::from(from_ms.rem_euclid(self.width_ms) > 0);
        let skip = (first_wanted - self.first).clamp(0, self.items.len() as i64) as usize;
        self.items
            .range(skip..)
            .enumerate()
            .map(move |(i, b)| ((self.first + (skip + i) as i64) * self.width_ms, *b))
            .filter(|(_, b)| b.count > 0)
    }

    /// The buckets from the one that starts at or after `from_ms`, as the ring's two slices.
    fn slices_since(&self, from_ms: i64) -> (&[MinuteBucket], &[MinuteBucket]) {
        let first_wanted =
            from_ms.div_euclid(self.width_ms) + i64::from(from_ms.rem_euclid(self.width_ms) > 0);
        let skip = (first_wanted - self.first).clamp(0, self.items.len() as i64) as usize;
        let (a, b) = self.items.as_slices();
        if skip <= a.len() {
            (&a[skip..], b)
        } else {
            (&[], &b[skip - a.len()..])
        }
    }

    fn bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<MinuteBucket>()
    }
}

#[derive(Debug)]
struct Series {
    /// The raw window, packed; its first chunk may start before `raw_from_ms`.
    raw: VecDeque<Chunk>,
    /// Where the raw window starts, as of the latest point.
    raw_from_ms: i64,
    minutes: Buckets,
    fives: Buckets,
    hour: Rollup,
    last_ms: i64,
}

impl Series {
    fn new(config: &HistoryConfig) -> Self {
        Series {
            raw: VecDeque::new(),
            raw_from_ms: i64::MIN,
            minutes: Buckets::new(MINUTE_MS, config.minute_window),
            fives: Buckets::new(FIVE_MINUTES_MS, config.bucket_window),
            hour: Rollup::default(),
            last_ms: 0,
        }
    }

    fn push(&mut self, ts_ms: i64, value: f64, config: &HistoryConfig) {
        let value32 = value as f32;
        match self.raw.back_mut() {
            Some(chunk) if !chunk.is_full() => chunk.push(ts_ms, value32),
            last => {
                if let Some(full) = last {
                    full.seal();
                }
                push_compact(&mut self.raw, Chunk::new(ts_ms, value32));
            }
        }
        self.raw_from_ms = ts_ms - config.raw_window.as_millis() as i64;
        while self
            .raw
            .front()
            .is_some_and(|chunk| chunk.last_ms() < self.raw_from_ms)
        {
            self.raw.pop_front();
        }
        self.minutes.add(ts_ms, value32);
        self.fives.add(ts_ms, value32);
        self.hour.add(value);
        self.last_ms = self.last_ms.max(ts_ms);
    }

    fn bytes(&self) -> usize {
        self.raw.capacity() * std::mem::size_of::<Chunk>()
            + self.raw.iter().map(Chunk::heap_bytes).sum::<usize>()
            + self.minutes.bytes()
            + self.fives.bytes()
            + self.hour.sketch.buckets() * 16
            + std::mem::size_of::<Self>()
    }
}

/// Past hours of single metrics read from the rollup store, shared by rule functions.
type HourCache = HashMap<(MetricName, i64), Option<Arc<Rollup>>>;

/// The history of every metric of one monitor job.
#[derive(Debug, Default)]
pub struct History {
    config: HistoryConfig,
    series: HashMap<MetricName, Series>,
    /// Hourly rollups read back from disk (past hours never change), per metric and hour.
    hour_cache: std::sync::Mutex<HourCache>,
    /// The hour (`ms / 3 600 000`) the accumulators are for.
    hour: Option<i64>,
    store: Option<RollupStore>,
    /// While warming up: hours already on disk, not to be written again.
    skip_hours: Option<std::collections::BTreeSet<DateTime<Utc>>>,
    read_only: bool,
    /// While a rule runs: past this, hours not read yet are not read from disk (the rule is
    /// being stopped at its deadline).
    deadline: Option<std::time::Instant>,
}

/// What a warm-up read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WarmStats {
    pub samples: u64,
    pub bad_lines: u64,
    pub unreadable: Vec<String>,
}

impl History {
    pub fn new(config: HistoryConfig, store: Option<RollupStore>) -> Self {
        History {
            config,
            series: HashMap::new(),
            hour_cache: Default::default(),
            hour: None,
            store,
            skip_hours: None,
            read_only: false,
            deadline: None,
        }
    }

    /// Until when reading past hours from disk may go on (a rule's deadline); `None`: always.
    pub fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    pub fn config(&self) -> HistoryConfig {
        self.config
    }

    /// Adds one tick's metrics; the first tick of a new hour closes the previous one.
    pub fn push<'a>(
        &mut self,
        ts: DateTime<Utc>,
        metrics: impl IntoIterator<Item = (&'a MetricName, f64)>,
    ) {
        let ts_ms = ts.timestamp_millis();
        self.roll_hour(ts_ms);
        for (name, value) in metrics {
            if !value.is_finite() {
                continue;
            }
            match self.series.get_mut(name.as_ref()) {
                Some(series) => series.push(ts_ms, value, &self.config),
                None => {
                    let mut series = Series::new(&self.config);
                    series.push(ts_ms, value, &self.config);
                    self.series.insert(name.clone(), series);
                }
            }
        }
    }

    fn push_view(&mut self, view: &SampleView<'_>) {
        let ts_ms = view.ts_ms;
        self.roll_hour(ts_ms);
        for (name, value) in view.metrics() {
            if !value.is_finite() {
                continue;
            }
            match self.series.get_mut(name) {
                Some(series) => series.push(ts_ms, value, &self.config),
                None => {
                    let mut series = Series::new(&self.config);
                    series.push(ts_ms, value, &self.config);
                    self.series.insert(Arc::from(name), series);
                }
            }
        }
    }

    fn roll_hour(&mut self, ts_ms: i64) {
        let hour = ts_ms.div_euclid(HOUR_MS);
        match self.hour {
            Some(current) if hour > current => {
                self.close_hour(current);
                self.hour = Some(hour);
            }
            None => self.hour = Some(hour),
            _ => {}
        }
    }

    /// Writes the finished hour's rollups and forgets series that fell out of every window.
    fn close_hour(&mut self, hour: i64) {
        let start = DateTime::from_timestamp_millis(hour * HOUR_MS).unwrap_or_default();
        let mut metrics = std::collections::BTreeMap::new();
        for (name, series) in &mut self.series {
            let rollup = std::mem::take(&mut series.hour);
            if rollup.count > 0 {
                metrics.insert(name.to_string(), rollup);
            }
        }
        let keep_ms = self.config.bucket_window.as_millis() as i64;
        let now_ms = (hour + 1) * HOUR_MS;
        self.series.retain(|_, s| s.last_ms >= now_ms - keep_ms);
        let already = self
            .skip_hours
            .as_ref()
            .is_some_and(|hours| hours.contains(&start));
        // Old entries of the read-back cache can go with the hour.
        let oldest = now_ms - (super::rollups::RETENTION_DAYS + 1) * 24 * HOUR_MS;
        self.hour_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(_, hour), _| *hour >= oldest);
        if let Some(store) = &mut self.store
            && !metrics.is_empty()
            && !already
            && !self.read_only
            && let Err(e) = store.append(&HourRollup {
                hour: start,
                metrics,
            })
        {
            warn!(dir = %store.dir().display(), error = %e, "cannot write hourly rollups");
        }
    }

    /// Fills the raw and minute windows from the metrics log, so rules see history right after
    /// a restart. Hours that end during the warm-up are written to the rollup store unless it
    /// already has them.
    pub fn warm(&mut self, files: &DailyFiles, job: &str, now: DateTime<Utc>) -> WarmStats {
        let from = now - chrono::Duration::from_std(self.config.bucket_window).unwrap_or_default();
        let (from_ms, now_ms) = (from.timestamp_millis(), now.timestamp_millis());
        self.skip_hours = self.store.as_ref().map(|s| {
            let mut skip = s.stored_hours(from, now);
            // The warm-up reads from inside this hour: its rollup would hold a part of it and
            // read as the whole.
            let first = from_ms.div_euclid(HOUR_MS) * HOUR_MS;
            if first < from_ms
                && let Some(hour) = DateTime::from_timestamp_millis(first)
            {
                skip.insert(hour);
            }
            skip
        });
        let mut stats = WarmStats::default();
        let mut parser = LineParser::default();
        let read = files.for_each_line(from.date_naive(), now.date_naive(), |line| {
            match peek_ts_ms(line) {
                Some(ts) if ts < from_ms || ts > now_ms => return ControlFlow::Continue(()),
                _ => {}
            }
            match parser.parse(line) {
                Ok(view) if view.job() == job && view.ts_ms >= from_ms && view.ts_ms <= now_ms => {
                    self.push_view(&view);
                    stats.samples += 1;
                }
                Ok(_) => {}
                Err(_) => stats.bad_lines += 1,
            }
            ControlFlow::Continue(())
        });
        self.skip_hours = None;
        stats.unreadable = read.unreadable;
        stats
    }

    pub fn metric_count(&self) -> usize {
        self.series.len()
    }

    /// Bytes held by the series (buffers as allocated, not as filled).
    pub fn bytes(&self) -> usize {
        self.series
            .iter()
            .map(|(name, s)| s.bytes() + name.len())
            .sum()
    }

    /// Raw points of `name` at or after `from_ms`, oldest first; the first chunk is found by
    /// binary search.
    pub fn raw_since(&self, name: &str, from_ms: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.series.get(name).into_iter().flat_map(move |s| {
            let from = from_ms.max(s.raw_from_ms);
            let first = s.raw.partition_point(|chunk| chunk.last_ms() < from);
            s.raw
                .range(first..)
                .flat_map(Chunk::points)
                .skip_while(move |(t, _)| *t < from)
                .map(|(t, v)| (t, f64::from(v)))
        })
    }

    /// The last `n` raw points of `name`, oldest first.
    pub fn raw_last(&self, name: &str, n: usize) -> Vec<(i64, f64)> {
        let Some(s) = self.series.get(name) else {
            return Vec::new();
        };
        let mut first = s.raw.len();
        let mut held = 0;
        while first > 0 && held < n {
            first -= 1;
            held += s.raw[first].len();
        }
        let mut points: Vec<(i64, f64)> = s
            .raw
            .range(first..)
            .flat_map(Chunk::points)
            .filter(|(t, _)| *t >= s.raw_from_ms)
            .map(|(t, v)| (t, f64::from(v)))
            .collect();
        points.drain(..points.len().saturating_sub(n));
        points
    }

    /// One-minute buckets of `name` that start at or after `from_ms`, with their start.
    pub fn minutes_since(
        &self,
        name: &str,
        from_ms: i64,
    ) -> impl Iterator<Item = (i64, MinuteBucket)> + '_ {
        self.series
            .get(name)
            .into_iter()
            .flat_map(move |s| s.minutes.since(from_ms))
    }

    /// Five-minute buckets of `name` that start at or after `from_ms`, with their start.
    pub fn five_minutes_since(
        &self,
        name: &str,
        from_ms: i64,
    ) -> impl Iterator<Item = (i64, MinuteBucket)> + '_ {
        self.series
            .get(name)
            .into_iter()
            .flat_map(move |s| s.fives.since(from_ms))
    }

    /// One-minute (`five = false`) or five-minute buckets of `name` from `from_ms` on, as two
    /// slices (empty buckets have `count == 0`): the fast path of window aggregates.
    pub fn bucket_slices(
        &self,
        name: &str,
        five: bool,
        from_ms: i64,
    ) -> (&[MinuteBucket], &[MinuteBucket]) {
        match self.series.get(name) {
            Some(s) if five => s.fives.slices_since(from_ms),
            Some(s) => s.minutes.slices_since(from_ms),
            None => (&[], &[]),
        }
    }

    /// The rollup of the hour being built, for `name`.
    pub fn current_hour(&self, name: &str) -> Option<&Rollup> {
        self.series
            .get(name)
            .map(|s| &s.hour)
            .filter(|r| r.count > 0)
    }

    pub fn store(&self) -> Option<&RollupStore> {
        self.store.as_ref()
    }

    /// Stops writing rollups (dry runs and rule tests read history but change nothing).
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The rollup of `name` for the hour starting at `hour_ms`: the hour being built from
    /// memory, finished hours from the store (read a day at a time, then cached).
    pub fn hour_rollup(&self, name: &str, hour_ms: i64) -> Option<Arc<Rollup>> {
        if self.hour == Some(hour_ms.div_euclid(HOUR_MS)) {
            return self.current_hour(name).map(|r| Arc::new(r.clone()));
        }
        let store = self.store.as_ref()?;
        if self.deadline.is_some_and(|d| std::time::Instant::now() > d) {
            return None;
        }
        let mut cache = self
            .hour_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = cache.get(&(MetricName::from(name), hour_ms)) {
            return hit.clone();
        }
        let key_name = MetricName::from(name);
        let day = DateTime::from_timestamp_millis(hour_ms)
            .unwrap_or_default()
            .date_naive();
        let day_start = day
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis();
        for h in 0..24 {
            cache.insert((key_name.clone(), day_start + h * HOUR_MS), None);
        }
        for hour in store.day(day) {
            let rollup = hour.metrics.get(name).cloned().map(Arc::new);
            cache.insert((key_name.clone(), hour.hour.timestamp_millis()), rollup);
        }
        cache.get(&(key_name, hour_ms)).cloned().flatten()
    }

    pub fn metric_names(&self) -> impl Iterator<Item = &MetricName> {
        self.series.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn raw_window_keeps_the_last_hour() {
        let mut h = History::new(HistoryConfig::default(), None);
        let name: MetricName = "cpu.total.usage_percent".into();
        let start = t("2026-11-28T10:00:00Z");
        for i in 0..721 {
            let ts = start + chrono::Duration::seconds(i * 10);
            h.push(ts, [(&name, i as f64)]);
        }
        let points: Vec<(i64, f64)> = h.raw_since(&name, 0).collect();
        // 2 h of 10 s ticks; the last hour (inclusive of its start) is kept.
        assert_eq!(points.len(), 361);
        assert_eq!(points.first().unwrap().1, 360.0);
        assert_eq!(points.last().unwrap().1, 720.0);
        let minutes: Vec<_> = h.minutes_since(&name, 0).collect();
        assert_eq!(minutes.len(), 121);
        assert_eq!(
            minutes[0].1,
            MinuteBucket {
                sum: 15.0,
                min: 0.0,
                max: 5.0,
                count: 6
            }
        );
    }

    #[test]
    fn packed_raw_points_read_back_by_time_and_from_the_end() {
        let mut h = History::new(HistoryConfig::default(), None);
        let name: MetricName = "m".into();
        let start = t("2026-11-28T10:00:00Z").timestamp_millis();
        // 2 h at 1 s with a little jitter: 60 chunks, half of them out of the window.
        let pushed: Vec<(i64, f64)> = (0..7200i64)
            .map(|i| (start + i * 1000 + (i * 7) % 13, (i % 500) as f64 / 4.0))
            .collect();
        for (ts, v) in &pushed {
            h.push(DateTime::from_timestamp_millis(*ts).unwrap(), [(&name, *v)]);
        }
        let last_ms = pushed.last().unwrap().0;
        let in_window: Vec<(i64, f64)> = pushed
            .iter()
            .copied()
            .filter(|(t, _)| *t >= last_ms - 3_600_000)
            .collect();
        let all: Vec<(i64, f64)> = h.raw_since(&name, 0).collect();
        assert_eq!(all, in_window);
        let from = last_ms - 90_000;
        let recent: Vec<(i64, f64)> = h.raw_since(&name, from).collect();
        assert_eq!(recent, all[all.len() - recent.len()..]);
        assert_eq!(
            recent.len(),
            in_window.iter().filter(|(t, _)| *t >= from).count()
        );
        let tail = h.raw_last(&name, 130);
        assert_eq!(tail.len(), 130);
        assert_eq!(tail, all[all.len() - 130..]);
        assert_eq!(h.raw_last(&name, 10_000), in_window);
        // Packed: well under the 8 bytes a point of an unpacked ring, buckets included.
        assert!(h.bytes() < 3600 * 8, "{}", h.bytes());
    }

    #[test]
    fn minute_window_is_bounded_and_gaps_are_empty() {
        let config = HistoryConfig {
            raw_window: Duration::from_secs(60),
            minute_window: Duration::from_secs(10 * 60),
            bucket_window: Duration::from_secs(60 * 60),
        };
        let mut h = History::new(config, None);
        let name: MetricName = "m".into();
        let start = t("2026-11-28T10:00:00Z");
        h.push(start, [(&name, 1.0)]);
        h.push(start + chrono::Duration::minutes(3), [(&name, 2.0)]);
        let minutes: Vec<_> = h.minutes_since(&name, 0).map(|(_, b)| b.sum).collect();
        assert_eq!(minutes, [1.0, 2.0]);
        for i in 0..90 {
            h.push(start + chrono::Duration::minutes(4 + i), [(&name, 3.0)]);
        }
        assert_eq!(h.minutes_since(&name, 0).count(), 10);
        let fives: Vec<_> = h.five_minutes_since(&name, 0).collect();
        assert_eq!(fives.len(), 12);
        // Minutes 90 to 93 of the last five-minute bucket.
        assert_eq!(
            fives[11].1,
            MinuteBucket {
                sum: 12.0,
                min: 3.0,
                max: 3.0,
                count: 4
            }
        );
    }

    #[test]
    fn finished_hours_go_to_the_rollup_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::new(
            HistoryConfig::default(),
            Some(RollupStore::new(dir.path(), "monitor")),
        );
        let name: MetricName = "m".into();
        let start = t("2026-11-28T10:00:00Z");
        for i in 0..(360 + 1) {
            h.push(
                start + chrono::Duration::seconds(i * 10),
                [(&name, (i % 360) as f64)],
            );
        }
        let hours = RollupStore::new(dir.path(), "monitor")
            .hours(start, start + chrono::Duration::hours(2));
        assert_eq!(hours.len(), 1);
        let r = &hours[0].metrics["m"];
        assert_eq!((r.count, r.min, r.max), (360, 0.0, 359.0));
        assert_eq!(r.mean(), Some(179.5));
        // The new hour started with the 361st point.
        assert_eq!(h.current_hour("m").map(|r| r.count), Some(1));
    }
}
