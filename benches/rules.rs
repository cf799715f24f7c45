//! `cargo bench --bench rules`: 1,000 compiled rules against one sample with history
//! functions (per rule: the time divided by 1,000), and history functions over a 24 h window.

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use divan::counter::ItemsCount;
use runner::rules::RuleSet;
use runner::rules::functions;
use runner::rules::values::Schema;
use runner::store::history::{History, HistoryConfig};
use runner::vocab::MetricName;

fn main() {
    divan::main();
}

const RULES: usize = 1_000;
const METRIC: &str = "cpu.total.usage_percent";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// 24 h of 10 s ticks of 20 metrics (one is `cpu.total.usage_percent`).
fn day_of_history() -> History {
    let mut h = History::new(HistoryConfig::default(), None);
    let names: Vec<MetricName> = (0..20)
        .map(|i| {
            if i == 0 {
                MetricName::from(METRIC)
            } else {
                MetricName::from(format!("cpu.core{i}.usage_percent"))
            }
        })
        .collect();
    let start = now() - chrono::Duration::hours(24);
    for tick in 0..8640 {
        let t = start + chrono::Duration::seconds(tick * 10);
        let v = 30.0 + (tick % 60) as f64;
        h.push(t, names.iter().map(|n| (n, v)));
    }
    h
}

/// 1,000 rules in `files` files: each rule reads a current value and a 5-minute average
/// (both evaluated every tick) and compares them with a threshold that does not fire.
fn rule_set(files: usize) -> (RuleSet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let per_file = RULES / files;
    for f in 0..files {
        let mut source = String::new();
        for r in 0..per_file {
            let i = f * per_file + r;
            source.push_str(&format!(
                "let usage_{r} = cpu.total.usage_percent;\nlet recent_{r} = avg(\"{METRIC}\", \"5m\");\nif usage_{r} > {limit}.0 || recent_{r} > {limit}.0 {{\n    alert(\"r{i}\", #{{ value: usage_{r}, threshold: {limit} }});\n}}\n",
                limit = 200 + i
            ));
        }
        std::fs::write(dir.path().join(format!("r{f:04}.rhai")), source).unwrap();
    }
    let schema = Schema::for_probes(&[runner::config::probes::ProbeSpec::new(
        None,
        runner::config::probes::ProbeKind::Cpu(runner::config::probes::CpuSpec { per_core: true }),
    )]);
    let (set, problems) = RuleSet::load(
        &[dir.path().join("*.rhai")],
        schema,
        runner::config::DEFAULT_RULE_TIMEOUT,
    );
    assert!(problems.is_empty(), "{}", problems.render());
    assert_eq!(set.files().len(), files);
    (set, dir)
}

/// One tick: all 1,000 rules against the sample and a day of history, as 1,000 files of one
/// rule, 100 files of 10, or 10 files of 100 (Rhai has a fixed cost per file it runs).
#[divan::bench(args = [1000, 100, 10], sample_count = 30)]
fn evaluate_1000_rules(bencher: divan::Bencher, files: usize) {
    let (set, _dir) = rule_set(files);
    let mut history = Some(day_of_history());
    let sample = [(METRIC, 55.0)];
    bencher.counter(ItemsCount::new(RULES)).bench_local(|| {
        let (back, evaluation) =
            set.evaluate(history.take().unwrap(), now(), sample.iter().copied());
        history = Some(back);
        assert!(evaluation.activations.is_empty());
    });
}

fn history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(day_of_history)
}

fn window_ms(window: &str) -> i64 {
    runner::vocab::duration::parse_duration(window)
        .unwrap()
        .as_millis() as i64
}

#[divan::bench(args = ["15m", "1h", "6h", "24h"])]
fn avg_over(window: &str) -> Option<f64> {
    let w = window_ms(window);
    functions::aggregate(
        divan::black_box(history()),
        METRIC,
        now().timestamp_millis(),
        w,
    )
    .mean()
}

#[divan::bench(args = ["15m", "24h"])]
fn max_over(window: &str) -> Option<f64> {
    let w = window_ms(window);
    functions::aggregate(
        divan::black_box(history()),
        METRIC,
        now().timestamp_millis(),
        w,
    )
    .max()
}

#[divan::bench(args = ["15m", "24h"])]
fn percentile_over(window: &str) -> Option<f64> {
    let w = window_ms(window);
    functions::percentile(
        divan::black_box(history()),
        METRIC,
        95.0,
        now().timestamp_millis(),
        w,
    )
}
