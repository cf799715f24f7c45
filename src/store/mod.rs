//! What runner keeps: the metrics log (one JSON line per tick, a file per UTC day), the
//! in-memory history the rules read, and the hourly rollups on disk.

pub mod atomic;
pub mod chunk;
pub mod daily;
pub mod history;
pub mod rollups;
pub mod sample;
pub mod sketch;
pub mod synth;

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

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
        mut visit: impl FnMut(&SampleView<'_>),
    ) -> WindowStats {
        let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
        let mut stats = WindowStats::default();
        let mut parser = LineParser::default();
        let last_day = (to - chrono::Duration::milliseconds(1)).date_naive();
        stats.read = self
            .files
            .for_each_line(from.date_naive(), last_day, |line| {
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
