//! Synthetic metrics logs with realistic names and deterministic values, for the benchmarks
//! and the performance scripts (`examples/synth_metrics.rs`). Nothing in runner's own jobs
//! reads from here.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::sample::Sample;
use crate::vocab::MetricName;

/// The names a default monitor on a 4-core host with one disk and one NIC writes, then
/// application metrics until there are `count`.
pub fn metric_names(count: usize) -> Vec<MetricName> {
    let mut names: Vec<String> = Vec::new();
    for f in [
        "usage_percent",
        "user_percent",
        "system_percent",
        "iowait_percent",
        "steal_percent",
    ] {
        names.push(format!("cpu.total.{f}"));
    }
    for core in 0..4 {
        names.push(format!("cpu.core{core}.usage_percent"));
    }
    for f in [
        "used_percent",
        "available_bytes",
        "total_bytes",
        "swap_in_per_sec",
        "swap_out_per_sec",
        "major_faults_per_sec",
    ] {
        names.push(format!("memory.{f}"));
    }
    for f in ["load1", "load5", "load15", "load1_per_core"] {
        names.push(format!("load.{f}"));
    }
    for f in crate::config::probes::disk::TYPE.fields {
        names.push(format!("disk.root.{}", f.name));
    }
    for dev in ["sda", "total"] {
        for f in crate::config::probes::disk_io::TYPE.fields {
            names.push(format!("disk_io.{dev}.{}", f.name));
        }
    }
    for f in crate::config::probes::net_io::TYPE.fields {
        names.push(format!("net_io.eth0.{}", f.name));
    }
    let mut i = 0;
    while names.len() < count {
        names.push(format!("http.app{i}.latency_ms"));
        i += 1;
    }
    names.truncate(count);
    names.into_iter().map(MetricName::from).collect()
}

/// A value for metric `index` at tick `n`: a daily wave plus deterministic noise, scaled by the
/// index to one of three magnitudes (tens, tens of millions, whole thousands) so the log has
/// the number shapes a real one has. The name is not consulted: a `_percent` metric may read
/// millions, so rules warmed from this history fire on values no host reports; the figures
/// taken with it are about speed and memory, not about what the rules say.
pub fn value(index: usize, n: u64, ticks_per_day: u64) -> f64 {
    let phase = (n % ticks_per_day.max(1)) as f64 / ticks_per_day.max(1) as f64;
    let wave = (phase * std::f64::consts::TAU).sin() * 0.5 + 0.5;
    let mut x = n
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(index as u64 * 1_442_695_040_888_963_407);
    x ^= x >> 33;
    let noise = (x % 1000) as f64 / 1000.0;
    let base = 10.0 + 60.0 * wave + 20.0 * noise;
    match index % 3 {
        0 => base,
        1 => base * 1_000_000.0,
        _ => (base * 37.0).round(),
    }
}

/// Writes `days` days of ticks every `interval` from `from` into `data_dir/metrics/`, one file
/// per UTC day; returns the bytes written.
pub fn write_log(
    data_dir: &Path,
    job: &str,
    from: DateTime<Utc>,
    days: u32,
    interval: Duration,
    names: &[MetricName],
) -> io::Result<u64> {
    let dir = data_dir.join("metrics");
    std::fs::create_dir_all(&dir)?;
    let step = chrono::Duration::from_std(interval).map_err(io::Error::other)?;
    let ticks_per_day = (86_400_000 / interval.as_millis().max(1)) as u64;
    let end = from + chrono::Duration::days(i64::from(days));
    let mut ts = from;
    let mut n: u64 = 0;
    let mut bytes = 0u64;
    let mut line = String::with_capacity(4096);
    let mut current: Option<(chrono::NaiveDate, BufWriter<std::fs::File>)> = None;
    while ts < end {
        let day = ts.date_naive();
        if current.as_ref().is_none_or(|(d, _)| *d != day) {
            if let Some((_, mut w)) = current.take() {
                w.flush()?;
            }
            let file = std::fs::File::create(dir.join(format!("{day}.jsonl")))?;
            current = Some((day, BufWriter::with_capacity(1 << 20, file)));
        }
        let sample = Sample {
            ts,
            host: "synthetic-1".into(),
            job: job.into(),
            metrics: names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), value(i, n, ticks_per_day)))
                .collect(),
            errors: Vec::new(),
        };
        line.clear();
        sample.write_json(&mut line);
        line.push('\n');
        if let Some((_, w)) = &mut current {
            w.write_all(line.as_bytes())?;
        }
        bytes += line.len() as u64;
        ts += step;
        n += 1;
    }
    if let Some((_, mut w)) = current {
        w.flush()?;
    }
    Ok(bytes)
}
