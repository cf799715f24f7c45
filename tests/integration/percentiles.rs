//! The report's percentiles and small numbers as a reader sees them (issue 28): p95 within the
//! sketch's 1 % of the nearest rank even next to the maximum, and values around 1e-9 shown
//! with their digits rather than as 0.

use std::time::Duration;

use chrono::{DateTime, Utc};
use runner::config::Config;
use runner::report::summary;
use runner::store::sample::Sample;
use runner::template::bounds::Limits;
use runner::vocab::MetricName;

use crate::support::{jobs_file, root};

const END: &str = "2026-11-30T08:00:00Z";

fn end() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(END).unwrap().to_utc()
}

/// 100 samples, 10 s apart, ending a minute before `END`: cpu is 1 ×10, 99.55 ×85 and
/// 101.45 ×5 (the values: 99.55 and 101.45 share a sketch bucket); the connect time is
/// around 1.2e-9 ms.
fn write_hour(dir: &std::path::Path) -> Config {
    let mut text = String::new();
    for i in 0..100u32 {
        let cpu = match i {
            0..10 => 1.0,
            10..95 => 99.55,
            _ => 101.45,
        };
        let sample = Sample {
            ts: end() - chrono::Duration::seconds(60 + 10 * i64::from(99 - i)),
            host: "web-1".into(),
            job: "monitor".into(),
            metrics: vec![
                (MetricName::from("cpu.total.usage_percent"), cpu),
                (
                    MetricName::from("tcp.db.connect_ms"),
                    1.1e-9 + f64::from(i % 3) * 0.1e-9,
                ),
            ],
            errors: vec![],
        };
        text.push_str(&(sample.to_json() + "\n"));
    }
    std::fs::create_dir_all(dir.join("var/metrics")).unwrap();
    std::fs::write(dir.join("var/metrics/2026-11-30.jsonl"), text).unwrap();
    let file = jobs_file(
        dir,
        &format!(
            "jobs:\n  monitor: {{ type: monitor, schedule: \"@every 10s\", probes: [{{ type: cpu }}] }}\n  hourly:\n    type: report\n    schedule: \"@hourly\"\n    templates: [\"{}\"]\n",
            root().join("templates/weekly.md.hbs").display()
        ),
    );
    Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render()))
}

#[test]
fn the_reports_p95_is_within_one_percent_of_the_nearest_rank_next_to_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_hour(dir.path());
    let s = summary::build(
        &config,
        "hourly",
        "Hourly performance report",
        Duration::from_secs(3_600),
        end(),
    );
    let cpu = summary::metric(&s, "cpu.total.usage_percent").unwrap();
    assert_eq!((cpu.samples, cpu.min, cpu.max), (100, 1.0, 101.45));
    // The 95th of 100 values is 99.55; it read 101.45 (1.9 % off) when an answer within 1 %
    // of the maximum was taken for it.
    let p95 = cpu.p95.unwrap();
    assert!((p95 - 99.55).abs() <= 99.55 * 0.01, "p95 {p95}");
    let p50 = cpu.p50.unwrap();
    assert!((p50 - 99.55).abs() <= 99.55 * 0.01, "p50 {p50}");
}

#[test]
fn values_around_a_billionth_keep_their_digits_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_hour(dir.path());
    let s = summary::build(
        &config,
        "hourly",
        "Hourly performance report",
        Duration::from_secs(3_600),
        end(),
    );
    let (outputs, problems) = runner::report::render_all(
        &[root().join("templates/weekly.md.hbs")],
        &s,
        &config.zone,
        &Limits::report(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let md = &outputs[0].text;
    let row = md
        .lines()
        .find(|l| l.contains("tcp.db.connect_ms"))
        .unwrap_or_else(|| panic!("{md}"));
    // min, mean and max: 1.1e-9, 1.2e-9 (1.1, 1.2 and 1.3 in turn), 1.3e-9; they read 0 ms.
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[2], "1.1e-9 ms", "{row}");
    assert_eq!(cells[3], "1.2e-9 ms", "{row}");
    assert_eq!(cells[6], "1.3e-9 ms", "{row}");
    assert!(!row.contains("| 0 ms"), "{row}");
}
