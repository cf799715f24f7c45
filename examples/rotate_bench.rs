//! Measures the rotate job on a generated metrics log: throughput and peak memory.
//!
//!   cargo run --release --example rotate_bench -- gen DIR TOTAL_MIB FILES
//!   cargo run --release --example rotate_bench -- run DIR [LEVEL]
//!
//! `gen` writes FILES daily metrics files (40 metrics a line) totalling about TOTAL_MIB, all
//! last modified 30 days ago; `run` rotates them into `DIR/var/archive` and prints MB/s, the
//! compression ratio and this process's peak RSS (VmHWM), which must not grow with file size.

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use runner::config::RotateSpec;
use runner::config::raw::GroupBy;
use runner::rotate::{Flow, Rotation};

/// Bytes a sample line of 40 synthetic metrics takes, near enough to size the interval.
const LINE_BYTES: u64 = 1_720;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir, mib, files] if cmd == "gen" => {
            generate(Path::new(dir), mib.parse()?, files.parse()?)
        }
        [cmd, dir] if cmd == "run" => rotate(Path::new(dir), 6),
        [cmd, dir, level] if cmd == "run" => rotate(Path::new(dir), level.parse()?),
        _ => {
            Err("usage: rotate_bench gen DIR TOTAL_MIB FILES | rotate_bench run DIR [LEVEL]".into())
        }
    }
}

fn generate(dir: &Path, total_mib: u64, files: u32) -> Result<(), Box<dyn std::error::Error>> {
    let per_file = total_mib * 1024 * 1024 / u64::from(files);
    let interval = Duration::from_millis(86_400_000 * LINE_BYTES / per_file);
    // Whole UTC days, so there are exactly FILES files.
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .ok_or("no midnight")?
        .and_utc();
    let from = today - chrono::Duration::days(30 + i64::from(files));
    let data = dir.join("var");
    let bytes = runner::store::synth::write_log(
        &data,
        "monitor",
        from,
        files,
        interval,
        &runner::store::synth::metric_names(40),
    )?;
    let old = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    for entry in std::fs::read_dir(data.join("metrics"))? {
        std::fs::File::options()
            .write(true)
            .open(entry?.path())?
            .set_modified(old)?;
    }
    println!(
        "generated {files} files, {:.0} MiB",
        bytes as f64 / 1048576.0
    );
    Ok(())
}

fn rotate(dir: &Path, level: u32) -> Result<(), Box<dyn std::error::Error>> {
    let data = dir.join("var");
    let spec = RotateSpec {
        paths: vec![data.join("metrics/*.jsonl")],
        max_age: Duration::from_secs(86_400),
        max_size: None,
        archive_dir: data.join("archive"),
        archive_max_age: None,
        keep_archives: None,
        group_by: GroupBy::Day,
        compression: level,
        postrotate: None,
        settle: Duration::ZERO,
    };
    let rotation = Rotation {
        job: "bench",
        spec: &spec,
        data_dir: &data,
    };
    let started = Instant::now();
    let summary = rotation.run(Utc::now(), &mut |_| Flow::Continue);
    let elapsed = started.elapsed().as_secs_f64();
    if !summary.problems.is_empty() {
        return Err(format!("problems: {:?}", summary.problems).into());
    }
    let hwm_kib = runner::probes::procfs::own_peak_rss_bytes().unwrap_or(0) / 1024;
    println!(
        "deflate level {level}: rotated {} files, {:.0} MiB in {elapsed:.2} s: {:.0} MB/s read, written, verified and deleted; {:.1}x smaller; peak RSS {:.1} MiB",
        summary.archived_files,
        summary.bytes_before as f64 / 1048576.0,
        summary.bytes_before as f64 / 1e6 / elapsed,
        summary.bytes_before as f64 / summary.bytes_after.max(1) as f64,
        hwm_kib as f64 / 1024.0
    );
    Ok(())
}
