//! What runner keeps: the metrics log (one JSON line per tick, a file per UTC day), the
//! in-memory history the rules read, and the hourly rollups on disk.

pub mod atomic;
pub mod chunk;
pub mod daily;
pub mod history;
pub mod prometheus;
pub mod rollups;
pub mod sample;
pub mod sketch;
pub mod synth;

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{Config, JobKind};
use daily::{DailyFiles, DailyWriter, ReadStats};
use sample::{LineParser, Sample, SampleView, peek_ts_ms};

/// Appends samples to `data_dir/metrics/<UTC day>.jsonl`, written and flushed each tick.
#[derive(Debug)]
pub struct MetricsLog {
    writer: DailyWriter,
    line: String,
}

impl MetricsLog {
    pub fn new(data_dir: &Path) -> Self {
        MetricsLog {
            writer: DailyWriter::new(data_dir.join("metrics")),
            line: String::with_capacity(4096),
        }
    }

    pub fn append(&mut self, sample: &Sample) -> io::Result<()> {
        self.line.clear();
        sample.write_json(&mut self.line);
        self.writer.append(sample.ts, &self.line)
    }
}

/// Every archive folder a jobs file's rotate jobs write to, plus the default one.
pub fn archive_dirs(config: &Config) -> Vec<PathBuf> {
    let mut dirs = vec![config.data_dir.join("archive")];
    for job in config.jobs.values() {
        if let JobKind::Rotate(rotate) = &job.kind
            && !dirs.contains(&rotate.archive_dir)
        {
            dirs.push(rotate.archive_dir.clone());
        }
    }
    dirs
}

/// Reads samples of a time window back from daily files and zip archives, in time order,
/// streaming: memory does not grow with the window.
#[derive(Debug, Clone)]
pub struct MetricsReader {
    files: DailyFiles,
}

/// What a window read went through.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WindowStats {
    pub read: ReadStats,
    pub samples: u64,
    pub bad_lines: u64,
}

impl WindowStats {
    /// Adds what another part of the same window went through.
    pub fn add(&mut self, other: WindowStats) {
        self.read.files += other.read.files;
        self.read.archive_entries += other.read.archive_entries;
        self.read.lines += other.read.lines;
        self.read.bytes += other.read.bytes;
        self.read.unreadable.extend(other.read.unreadable);
        self.samples += other.samples;
        self.bad_lines += other.bad_lines;
    }
}

impl MetricsReader {
    pub fn new(data_dir: &Path, archive_dirs: Vec<PathBuf>) -> Self {
        MetricsReader {
            files: DailyFiles {
                data_dir: data_dir.to_path_buf(),
                kind: "metrics".to_string(),
                archive_dirs,
            },
        }
    }

    pub fn for_config(config: &Config) -> Self {
        Self::new(&config.data_dir, archive_dirs(config))
    }

    pub fn files(&self) -> &DailyFiles {
        &self.files
    }

    /// Calls `visit` with every sample whose time is in `[from, to)`.
    pub fn read(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        visit: impl FnMut(&SampleView<'_>),
    ) -> WindowStats {
        let last_day = (to - chrono::Duration::milliseconds(1)).date_naive();
        self.read_days(from.date_naive(), last_day, from, to, visit)
    }

    /// Reads the window's days in `threads` runs of consecutive days at once, each into its
    /// own `P` (made by `make`, filled by `visit`); returns them in time order, to be merged.
    pub fn read_split<P: Send>(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        threads: usize,
        make: impl Fn() -> P + Sync,
        visit: impl Fn(&mut P, &SampleView<'_>) + Sync,
    ) -> (Vec<P>, WindowStats) {
        let first = from.date_naive();
        let last = (to - chrono::Duration::milliseconds(1)).date_naive();
        let days = usize::try_from((last - first).num_days() + 1)
            .unwrap_or(1)
            .max(1);
        let runs = threads.clamp(1, days);
        let mut bounds = Vec::with_capacity(runs);
        for run in 0..runs {
            let start = first + chrono::Duration::days((run * days / runs) as i64);
            let end = first + chrono::Duration::days(((run + 1) * days / runs) as i64 - 1);
            bounds.push((start, end));
        }
        let results: Vec<(P, WindowStats)> = std::thread::scope(|scope| {
            let handles: Vec<_> = bounds
                .into_iter()
                .map(|(start, end)| {
                    let (make, visit) = (&make, &visit);
                    scope.spawn(move || {
                        let mut part = make();
                        let stats =
                            self.read_days(start, end, from, to, |view| visit(&mut part, view));
                        (part, stats)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut stats = WindowStats::default();
        let mut parts = Vec::with_capacity(results.len());
        for (part, part_stats) in results {
            stats.add(part_stats);
            parts.push(part);
        }
        (parts, stats)
    }

    fn read_days(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mut visit: impl FnMut(&SampleView<'_>),
    ) -> WindowStats {
        let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
        let mut stats = WindowStats::default();
        let mut parser = LineParser::default();
        stats.read = self.files.for_each_line(first, last, |line| {
            // Most lines of a day file outside the window are skipped on their timestamp.
            if let Some(ts) = peek_ts_ms(line)
                && (ts < from_ms || ts >= to_ms)
            {
                return ControlFlow::Continue(());
            }
            match parser.parse(line) {
                Ok(view) if view.ts_ms >= from_ms && view.ts_ms < to_ms => {
                    stats.samples += 1;
                    visit(&view);
                }
                Ok(_) => {}
                Err(_) => stats.bad_lines += 1,
            }
            ControlFlow::Continue(())
        });
        stats
    }
}
