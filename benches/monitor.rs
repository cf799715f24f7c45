//! `cargo bench --bench monitor`: one tick of the default system probes, and the metrics
//! reader's throughput over a synthetic week.

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use divan::counter::BytesCount;
use runner::probes::ProbeSet;
use runner::store::MetricsReader;

mod common;

fn main() {
    divan::main();
}

fn default_probes(dir: &std::path::Path) -> ProbeSet {
    common::probe_set(
        dir,
        "- type: cpu\n- type: memory\n- type: load\n- type: disk\n- type: disk_io\n- type: net_io",
    )
}

/// One tick of cpu, memory, load, disk, disk_io and net_io, with rates (state carried over).
#[divan::bench]
fn tick_default_system_probes(bencher: divan::Bencher) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut probes = default_probes(dir.path());
    rt.block_on(probes.collect());
    bencher.bench_local(|| rt.block_on(probes.collect()));
}

struct Week {
    _dir: tempfile::TempDir,
    reader: MetricsReader,
    bytes: u64,
    from: DateTime<Utc>,
}

/// Seven days at a 10 s tick with 40 metrics, written once.
fn week() -> &'static Week {
    static WEEK: OnceLock<Week> = OnceLock::new();
    WEEK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let from = DateTime::parse_from_rfc3339("2026-11-16T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let bytes = runner::store::synth::write_log(
            dir.path(),
            "monitor",
            from,
            7,
            Duration::from_secs(10),
            &runner::store::synth::metric_names(40),
        )
        .unwrap();
        let reader = MetricsReader::new(dir.path(), vec![]);
        Week {
            _dir: dir,
            reader,
            bytes,
            from,
        }
    })
}

/// Every sample of the week, every metric visited.
#[divan::bench(sample_count = 10)]
fn read_a_week(bencher: divan::Bencher) {
    let week = week();
    bencher.counter(BytesCount::new(week.bytes)).bench(|| {
        let mut sum = 0.0;
        week.reader
            .read(week.from, week.from + chrono::Duration::days(7), |view| {
                for (_, v) in view.metrics() {
                    sum += v;
                }
            });
        sum
    });
}

#[divan::bench(args = ["cpu", "memory", "load", "disk", "disk_io", "net_io"])]
fn tick_one_probe(bencher: divan::Bencher, kind: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut probes = common::probe_set(dir.path(), &format!("- type: {kind}"));
    rt.block_on(probes.collect());
    bencher.bench_local(|| rt.block_on(probes.collect()));
}

/// A whole tick of the shipped monitor job (probes, log, history, rules, alerts), as the
/// scheduler runs it: the cost behind `scripts/overhead.sh`.
#[divan::bench(sample_count = 50)]
fn tick_of_the_shipped_monitor(bencher: divan::Bencher) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/jobs.yaml")).unwrap();
    let file = dir.path().join("jobs.yaml");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/*.rhai");
    std::fs::write(
        &file,
        shipped
            .replace("data_dir: ../var", "data_dir: var")
            .replace("../rules/*.rhai", rules),
    )
    .unwrap();
    let config = runner::config::Config::load(&file).unwrap();
    let runner::config::JobKind::Monitor(spec) = &config.job("monitor").unwrap().kind else {
        unreachable!()
    };
    let mut monitor = runner::monitor::Monitor::new(
        &config,
        "monitor",
        spec,
        std::sync::Arc::new(runner::notify::Notifiers::new(
            &config,
            std::sync::Arc::new(runner::scheduler::clock::SystemClock),
        )),
    );
    let mut now = chrono::Utc::now();
    rt.block_on(monitor.tick(now)).unwrap();
    bencher.bench_local(|| {
        now += chrono::Duration::seconds(1);
        rt.block_on(monitor.tick(now)).unwrap()
    });
}
