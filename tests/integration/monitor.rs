//! The monitor job through the binary: ticks land in the metrics log, rates from the second on.

use crate::support::{PATIENCE, Running, command, jobs_file};

#[test]
fn ticks_are_logged_with_rates_from_the_second_tick() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  monitor:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes:\n      - type: cpu\n      - type: memory\n      - type: load\n      - type: disk\n      - type: disk_io\n      - type: net_io\n",
    );
    let mut runner = Running::spawn(command(&["--jobs", file.to_str().unwrap(), "-v"]));
    for _ in 0..3 {
        runner.wait_for_line("run finished", PATIENCE);
    }
    runner.signal("TERM");
    assert_eq!(runner.wait_exit(PATIENCE).0, Some(0));

    let metrics_dir = dir.path().join("var/metrics");
    let mut text = String::new();
    for entry in std::fs::read_dir(&metrics_dir).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    let first = &lines[0];
    assert_eq!(first["job"], "monitor");
    assert_eq!(first["errors"], serde_json::json!({}));
    // No rate on the first tick: absent, never 0 or a since-boot average.
    assert!(first["metrics"].get("cpu.total.usage_percent").is_none());
    assert!(first["metrics"]["memory.used_percent"].as_f64().is_some());
    assert!(first["metrics"]["load.load1"].as_f64().is_some());
    for later in &lines[1..] {
        let m = &later["metrics"];
        for name in [
            "cpu.total.usage_percent",
            "disk_io.total.write_bytes_per_sec",
            "net_io.lo.rx_bytes_per_sec",
            "memory.major_faults_per_sec",
        ] {
            assert!(m[name].as_f64().is_some(), "{name} missing in {later}");
        }
        assert!(
            m.as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("disk.") && k.ends_with(".used_percent"))
        );
    }
    // A tick's timestamp is on its 1 s boundary (within the tick's own lateness).
    let ts = lines[1]["ts"].as_str().unwrap();
    assert!(
        ts.ends_with(".000Z") || ts[20..23].parse::<u32>().unwrap() < 50,
        "{ts}"
    );
}
