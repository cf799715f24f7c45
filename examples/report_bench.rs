//! Times the report on a generated metrics log and prints its peak memory.
//!
//!   cargo run --release --example report_bench -- DIR
//!
//! DIR holds `var/metrics/` (write it with the synth_metrics example). Builds the summary of
//! the 7 days before now and renders the shipped Markdown and HTML templates, as the weekly
//! report job does; prints the time, the throughput and this process's peak RSS (VmHWM).

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::path::Path;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: report_bench DIR")?;
    let dir = Path::new(&dir);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let jobs = dir.join("jobs.yaml");
    std::fs::write(
        &jobs,
        format!(
            "data_dir: var\njobs:\n  monitor: {{ type: monitor, schedule: \"@every 1s\", probes: [{{ type: cpu }}] }}\n  weekly-report:\n    type: report\n    schedule: \"0 8 * * Mon\"\n    templates: [\"{}\", \"{}\"]\n",
            root.join("templates/weekly.md.hbs").display(),
            root.join("templates/weekly.html.hbs").display()
        ),
    )?;
    let config = runner::config::Config::load(&jobs).map_err(|p| p.render())?;
    let started = Instant::now();
    let summary = runner::report::summary::build(
        &config,
        "weekly-report",
        "Weekly performance report",
        Duration::from_secs(7 * 86_400),
        chrono::Utc::now(),
    );
    let built = started.elapsed();
    let templates = [
        root.join("templates/weekly.md.hbs"),
        root.join("templates/weekly.html.hbs"),
    ];
    let (outputs, problems) = runner::report::render_all(
        &templates,
        &summary,
        &config.zone,
        &runner::template::bounds::Limits::report(),
    );
    if !problems.is_empty() {
        return Err(format!("{problems:?}").into());
    }
    let total = started.elapsed();
    let hwm_kib = runner::probes::procfs::own_peak_rss_bytes().unwrap_or(0) / 1024;
    let metrics: usize = summary.families.iter().map(|f| f.metrics.len()).sum();
    println!(
        "report of {} samples ({metrics} metrics, {:.0} MB of log): summary {:.2} s ({:.0} MB/s), rendered {} files in {:.0} ms; total {:.2} s; peak RSS {:.1} MiB",
        summary.samples,
        summary.sources.bytes as f64 / 1e6,
        built.as_secs_f64(),
        summary.sources.bytes as f64 / 1e6 / built.as_secs_f64(),
        outputs.len(),
        (total - built).as_secs_f64() * 1000.0,
        total.as_secs_f64(),
        hwm_kib as f64 / 1024.0
    );
    Ok(())
}
