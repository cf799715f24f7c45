//! The metrics log on disk: written by day, read back across days and zip archives, and used
//! to warm history.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use runner::store::MetricsReader;
use runner::store::history::{History, HistoryConfig};
use runner::store::rollups::RollupStore;
use runner::store::sample::Sample;
use runner::vocab::MetricName;

pub(crate) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn sample(ts: DateTime<Utc>, value: f64) -> Sample {
    Sample {
        ts,
        host: "web-1".into(),
        job: "monitor".into(),
        metrics: vec![
            (MetricName::from("cpu.total.usage_percent"), value),
            (MetricName::from("memory.used_percent"), 50.0),
        ],
        errors: vec![],
    }
}

/// Samples every `step` from `from` (inclusive) to `to` (exclusive), numbered from 0.
pub(crate) fn samples(from: DateTime<Utc>, to: DateTime<Utc>, step: Duration) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut ts = from;
    while ts < to {
        out.push(sample(ts, out.len() as f64));
        ts += step;
    }
    out
}

pub(crate) fn lines(samples: &[Sample]) -> String {
    samples.iter().map(|s| s.to_json() + "\n").collect()
}

fn write_zip(path: &Path, entries: &[(&str, String)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

pub(crate) fn read(reader: &MetricsReader, from: &str, to: &str) -> Vec<Sample> {
    let mut got = Vec::new();
    reader.read(t(from), t(to), |view| got.push(view.to_sample()));
    got
}

#[test]
fn a_window_across_two_days_and_an_archive_reads_exactly_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let all = samples(
        t("2026-11-19T00:00:00Z"),
        t("2026-11-22T00:00:00Z"),
        Duration::minutes(10),
    );
    let day = |d: u32| -> Vec<Sample> {
        all.iter()
            .filter(|s| s.ts.format("%d").to_string() == format!("{d}"))
            .cloned()
            .collect()
    };
    // The 19th was archived by the rotate job; the 20th and 21st are plain files.
    write_zip(
        &data.join("archive/rotate-logs-20261121T023000-1.zip"),
        &[
            ("metrics/2026-11-19.jsonl", lines(&day(19))),
            ("logs/app.log", "x\n".into()),
        ],
    );
    std::fs::create_dir_all(data.join("metrics")).unwrap();
    std::fs::write(data.join("metrics/2026-11-20.jsonl"), lines(&day(20))).unwrap();
    std::fs::write(data.join("metrics/2026-11-21.jsonl"), lines(&day(21))).unwrap();
    std::fs::write(data.join("metrics/notes.txt"), "not a day file").unwrap();

    let reader = MetricsReader::new(data, vec![data.join("archive")]);
    let got = read(&reader, "2026-11-19T12:00:00Z", "2026-11-21T06:00:00Z");
    let want: Vec<Sample> = all
        .iter()
        .filter(|s| s.ts >= t("2026-11-19T12:00:00Z") && s.ts < t("2026-11-21T06:00:00Z"))
        .cloned()
        .collect();
    assert_eq!(want.len(), 72 + 144 + 36);
    assert_eq!(got, want);

    // A crash after verifying an archive but before deleting the original leaves both: the
    // day is still read once.
    write_zip(
        &data.join("archive/rotate-logs-20261122T023000-1.zip"),
        &[("metrics/2026-11-20.jsonl", lines(&day(20)))],
    );
    assert_eq!(
        read(&reader, "2026-11-19T12:00:00Z", "2026-11-21T06:00:00Z"),
        want
    );
}

#[test]
fn a_day_split_by_size_rotation_reads_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let all = samples(
        t("2026-11-21T00:00:00Z"),
        t("2026-11-22T00:00:00Z"),
        Duration::minutes(5),
    );
    let (early, late) = all.split_at(100);
    write_zip(
        &data.join("archive/rotate-logs-20261121T082000-1.zip"),
        &[("metrics/2026-11-21.20261121T082000.jsonl", lines(early))],
    );
    std::fs::create_dir_all(data.join("metrics")).unwrap();
    std::fs::write(data.join("metrics/2026-11-21.jsonl"), lines(late)).unwrap();
    let reader = MetricsReader::new(data, vec![data.join("archive")]);
    assert_eq!(
        read(&reader, "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"),
        all
    );
}

#[test]
fn a_bad_line_is_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let all = samples(
        t("2026-11-21T00:00:00Z"),
        t("2026-11-21T01:00:00Z"),
        Duration::minutes(10),
    );
    let mut text = lines(&all[..3]);
    text.push_str("{\"ts\":\"2026-11-21T00:25:00.000Z\",\"host\":\"web-1\",\"metr\n");
    text.push_str(&lines(&all[3..]));
    std::fs::create_dir_all(data.join("metrics")).unwrap();
    std::fs::write(data.join("metrics/2026-11-21.jsonl"), text).unwrap();
    let reader = MetricsReader::new(data, vec![]);
    let mut got = Vec::new();
    let stats = reader.read(t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"), |v| {
        got.push(v.to_sample())
    });
    assert_eq!(got, all);
    assert_eq!(stats.bad_lines, 1);
}

#[test]
fn history_warms_from_the_log_and_writes_missing_rollups_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let start = t("2026-11-28T08:00:00Z");
    let now = t("2026-11-28T10:30:00Z");
    let all = samples(start, now, Duration::seconds(10));
    std::fs::create_dir_all(data.join("metrics")).unwrap();
    let mut text = lines(&all);
    // Another monitor job's samples in the same file are not this job's history.
    let mut other = sample(t("2026-11-28T10:00:05Z"), 999.0);
    other.job = "monitor-db".into();
    text.push_str(&(other.to_json() + "\n"));
    std::fs::write(data.join("metrics/2026-11-28.jsonl"), text).unwrap();

    let reader = MetricsReader::new(data, vec![]);
    let mut history = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(data, "monitor")),
    );
    let stats = history.warm(reader.files(), "monitor", now);
    assert_eq!(stats.samples, all.len() as u64);
    let raw: Vec<(i64, f64)> = history.raw_since("cpu.total.usage_percent", 0).collect();
    // The last hour of 10 s ticks, both ends included.
    assert_eq!(raw.len(), 361);
    assert_eq!(raw.last().unwrap().1, (all.len() - 1) as f64);
    assert!(!raw.iter().any(|(_, v)| *v == 999.0));
    let store = RollupStore::new(data, "monitor");
    let hours = store.hours(start, now);
    assert_eq!(
        hours.iter().map(|h| h.hour).collect::<Vec<_>>(),
        [t("2026-11-28T08:00:00Z"), t("2026-11-28T09:00:00Z")]
    );
    assert_eq!(hours[0].metrics["cpu.total.usage_percent"].count, 360);
    assert_eq!(hours[1].metrics["cpu.total.usage_percent"].min, 360.0);

    // A restart warms again: the stored hours are not appended a second time.
    let mut again = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(data, "monitor")),
    );
    again.warm(reader.files(), "monitor", now);
    let text =
        std::fs::read_to_string(data.join("state/rollups/monitor/2026-11-28.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn a_warm_up_that_starts_inside_an_hour_does_not_write_that_hour_as_a_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let now = t("2026-11-28T10:30:00Z");
    let window = Duration::from_std(HistoryConfig::default().bucket_window).unwrap();
    let warm_from = now - window;
    // The log goes back further than the warm-up reads.
    let all = samples(warm_from - Duration::hours(2), now, Duration::minutes(1));
    std::fs::create_dir_all(data.join("metrics")).unwrap();
    let mut by_day: std::collections::BTreeMap<String, Vec<Sample>> = Default::default();
    for s in all {
        by_day
            .entry(s.ts.format("%Y-%m-%d").to_string())
            .or_default()
            .push(s);
    }
    for (day, day_samples) in by_day {
        std::fs::write(
            data.join(format!("metrics/{day}.jsonl")),
            lines(&day_samples),
        )
        .unwrap();
    }
    let reader = MetricsReader::new(data, vec![]);
    let mut history = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(data, "monitor")),
    );
    history.warm(reader.files(), "monitor", now);
    let hours = RollupStore::new(data, "monitor").hours(warm_from - Duration::hours(3), now);
    let partial = t("2026-11-26T10:00:00Z");
    assert_eq!(warm_from, t("2026-11-26T10:30:00Z"));
    assert!(
        hours.iter().all(|h| h.hour != partial),
        "the warm-up read only half of {partial}"
    );
    assert_eq!(
        hours.first().map(|h| h.hour),
        Some(t("2026-11-26T11:00:00Z"))
    );
    assert!(
        hours
            .iter()
            .all(|h| h.metrics["cpu.total.usage_percent"].count == 60)
    );
}
