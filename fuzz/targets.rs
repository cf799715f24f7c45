//! What the fuzz targets feed runner, written once: cargo-fuzz's binaries (`fuzz_targets/`) and
//! the short deterministic run inside `cargo test` (`tests/integration/fuzz_inputs.rs`) both
//! call these. Each takes arbitrary bytes and must return: no panic, no hang, bounded memory.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// A jobs file: parsed and checked, and its problems rendered.
pub fn jobs_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    if let Err(problems) = runner::config::build::parse(Path::new("fuzz/jobs.yaml"), &text, &env) {
        let _ = problems.render();
    }
}

/// A rule test file, run against a small rule.
pub fn rule_test_file(data: &[u8]) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a scratch folder");
        std::fs::write(
            dir.path().join("r.rhai"),
            "if m.v > 50 { alert(\"high\", #{ value: m.v, pending_for: \"1m\" }) }\n",
        )
        .expect("the rule");
        dir
    });
    // One file per thread: the deterministic run and libFuzzer may use several.
    let path = dir
        .path()
        .join(format!("{:?}.test.yaml", std::thread::current().id()).replace(['(', ')'], ""));
    if std::fs::write(&path, data).is_ok() {
        let _ = runner::rule_test::run_file(&path);
    }
}

/// One access-log line, in the combined format and through a regex.
pub fn access_log_line(data: &[u8]) {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^(?P<client>\S+) (?P<status>\d+) (?P<request_time>\S+)(?: (?P<session>\S+))?$",
        )
        .expect("a regex")
    });
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = runner::probes::access_log::parse_combined(line, Some(0), Some(1));
        let _ = runner::probes::access_log::parse_regex(re, line);
    }
}

/// A report template: checked, registered and rendered against an example summary, within
/// small limits.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if runner::template::bounds::check_source(text).is_err() {
        return;
    }
    let mut hb = runner::template::registry(runner::template::Escape::Html);
    if hb.register_template_string("t", text).is_err() {
        return;
    }
    if runner::template::bounds::check_structure(&hb).is_err() {
        return;
    }
    let limits = runner::template::bounds::Limits {
        time: Duration::from_millis(200),
        max_bytes: 1 << 20,
        cancel: None,
    };
    let _ = runner::template::bounds::render(&hb, "t", example_summary(), &limits);
}

/// What a report template sees, with every field filled.
fn example_summary() -> &'static serde_json::Value {
    static SUMMARY: OnceLock<serde_json::Value> = OnceLock::new();
    SUMMARY.get_or_init(|| {
        let config = runner::config::build::parse(
            Path::new("jobs.yaml"),
            "data_dir: var\njobs:\n  m: { type: monitor, schedule: \"@hourly\" }\n",
            &|_| None,
        )
        .expect("a minimal jobs file");
        serde_json::to_value(runner::report::summary::example(&config)).expect("JSON")
    })
}
