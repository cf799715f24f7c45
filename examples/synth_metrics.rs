//! Writes a synthetic metrics log for the performance scripts.
//!
//!   cargo run --release --example synth_metrics -- DATA_DIR DAYS INTERVAL METRICS [END]
//!   e.g. `... -- /tmp/var 1 1s 60` writes the 24 h before now at 1 s with 60 metrics.
//!   METRICS is a count (a 4-core host's names, then application metrics) or a file of names,
//!   one per line (`scripts/overhead.sh` passes the names this host's probes write).

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_dir, days, interval, metrics, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: synth_metrics DATA_DIR DAYS INTERVAL METRICS [END (RFC 3339, default now)]"
                .into(),
        );
    };
    let days: u32 = days.parse()?;
    let interval: Duration = runner::vocab::duration::parse_duration(interval)?;
    let names = match metrics.parse::<usize>() {
        Ok(count) => runner::store::synth::metric_names(count),
        Err(_) => std::fs::read_to_string(metrics)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(runner::vocab::MetricName::from)
            .collect(),
    };
    let end = match rest.first() {
        Some(end) => chrono::DateTime::parse_from_rfc3339(end)?.with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let from = end - chrono::Duration::days(i64::from(days));
    let bytes = runner::store::synth::write_log(
        std::path::Path::new(data_dir),
        "monitor",
        from,
        days,
        interval,
        &names,
    )?;
    println!("wrote {bytes} bytes of samples from {from} to {end}");
    Ok(())
}
