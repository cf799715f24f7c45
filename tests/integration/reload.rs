//! Reloading a running scheduler: a changed rule takes effect at the next tick while the
//! alerts it still raises keep their state, a removed job stops, and a broken change keeps the
//! running configuration, said in the log and in `/metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, Running, command, run, stderr};

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn firing(port: u16) -> Vec<(String, String)> {
    let alerts: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alerts")).unwrap();
    alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_string(),
                a["activeAt"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The port of the status page, from the line that says where it is served.
fn status_port(running: &mut Running) -> u16 {
    let line = running.wait_for_line("serving the status page", PATIENCE);
    line.split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"))
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_jobs(dir: &Path, with_second: bool) {
    let second = if with_second {
        "  second:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{ type: load }]\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("jobs.yaml"),
        format!(
            "data_dir: var\nlisten: 127.0.0.1:0\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: memory }}]\n    rules: [r.rhai]\n    notify: [log]\n{second}"
        ),
    )
    .unwrap();
}

const TWO_ALERTS: &str = r#"
alert("kept", #{ severity: "info", value: memory.used_percent, threshold: 0, op: ">=", summary: "kept" });
alert("dropped", #{ severity: "info", value: memory.used_percent, threshold: 0, op: ">=", summary: "dropped" });
"#;
const ONE_ALERT: &str = r#"
alert("kept", #{ severity: "info", value: memory.used_percent, threshold: 0, op: ">=", summary: "kept" });
alert("added", #{ severity: "info", value: memory.used_percent, threshold: 0, op: ">=", summary: "added" });
"#;

#[test]
fn a_reload_swaps_rules_and_jobs_in_place_and_a_broken_change_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), true);
    std::fs::write(dir.path().join("r.rhai"), TWO_ALERTS).unwrap();
    let file = dir.path().join("jobs.yaml");
    let jobs = file.to_str().unwrap();
    let mut running = Running::spawn(command(&["--jobs", jobs]));
    let port = status_port(&mut running);
    until("both alerts fire", || firing(port).len() == 2);
    let kept_since = firing(port)
        .into_iter()
        .find(|(name, _)| name == "kept")
        .unwrap()
        .1;

    // The rule changes and the second job goes: `runner reload` signals the scheduler.
    std::fs::write(dir.path().join("r.rhai"), ONE_ALERT).unwrap();
    write_jobs(dir.path(), false);
    let output = run(&["reload", "--jobs", jobs]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let line = running.wait_for_line("reloaded the jobs file", PATIENCE);
    assert!(
        line.contains("kept=1") && line.contains("removed=1"),
        "{line}"
    );
    // Said by the scheduler as it takes the change: before or after the line above.
    if !running.seen.iter().any(|l| l.contains("job removed")) {
        running.wait_for_line("job removed", PATIENCE);
    }
    until(
        "the new rule's alert fires and the dropped one resolves",
        || {
            let now = firing(port);
            now.iter().any(|(n, _)| n == "added") && !now.iter().any(|(n, _)| n == "dropped")
        },
    );
    let after = firing(port);
    let kept_after = after.iter().find(|(name, _)| name == "kept").unwrap();
    assert_eq!(
        kept_after.1, kept_since,
        "an alert the rule still raises keeps its state"
    );
    let metrics = get(port, "/metrics");
    assert!(
        metrics.contains("runner_config_last_reload_successful{host="),
        "{metrics}"
    );
    assert!(
        !metrics.contains("runner_job=\"second\""),
        "the removed job is gone from /metrics: {metrics}"
    );

    // A broken change: the log says where, the running configuration stays.
    std::fs::write(&file, "data_dir: var\njobs:\n  m: { type: monitr }\n").unwrap();
    running.signal("HUP");
    let refused = running.wait_for_line("reload refused", PATIENCE);
    assert!(refused.contains("jobs.yaml:3"), "{refused}");
    if !running
        .seen
        .iter()
        .any(|l| l.contains("the running configuration stays"))
    {
        running.wait_for_line("the running configuration stays", PATIENCE);
    }
    // The log says it a moment before the counters are updated: a busy machine can scrape
    // in between.
    let refusal_shown = |metrics: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with("runner_config_last_reload_successful{") && l.ends_with("} 0"))
            && metrics.lines().any(|l| {
                l.starts_with("runner_config_reloads_total{") && l.ends_with("result=\"failed\"} 1")
            })
    };
    until("the refused reload shows in /metrics", || {
        refusal_shown(&get(port, "/metrics"))
    });
    let ticks_before = get(port, "/metrics")
        .lines()
        .find(|l| l.starts_with("runner_sample_timestamp_seconds"))
        .map(str::to_string);
    until("the monitor goes on ticking", || {
        get(port, "/metrics")
            .lines()
            .find(|l| l.starts_with("runner_sample_timestamp_seconds"))
            .map(str::to_string)
            != ticks_before
    });
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn reload_without_a_running_scheduler_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), false);
    std::fs::write(dir.path().join("r.rhai"), ONE_ALERT).unwrap();
    let output = run(&[
        "reload",
        "--jobs",
        dir.path().join("jobs.yaml").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no scheduler runs on"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn with_watch_an_edited_rule_a_new_rule_file_and_a_broken_jobs_file_are_taken_as_sighup_would() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("a.rhai"), TWO_ALERTS).unwrap();
    let file = dir.path().join("jobs.yaml");
    let jobs_text = "data_dir: var\nlisten: 127.0.0.1:0\nwatch: true\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{ type: memory }]\n    rules: [\"rules/*.rhai\"]\n    notify: [log]\n";
    std::fs::write(&file, jobs_text).unwrap();
    let mut running = Running::spawn(command(&["--jobs", file.to_str().unwrap()]));
    let port = status_port(&mut running);
    until("both alerts fire", || firing(port).len() == 2);

    // Saved as editors save: a new file renamed over the old one.
    let draft = dir.path().join("a.rhai.swp");
    std::fs::write(&draft, ONE_ALERT).unwrap();
    std::fs::rename(&draft, rules.join("a.rhai")).unwrap();
    let changed = running.wait_for_line("a watched file changed", PATIENCE);
    assert!(changed.contains("a.rhai"), "{changed}");
    running.wait_for_line("reloaded the jobs file", PATIENCE);
    until(
        "the edited rule's alert fires, the dropped one resolves",
        || {
            let now = firing(port);
            now.iter().any(|(n, _)| n == "added") && !now.iter().any(|(n, _)| n == "dropped")
        },
    );

    // A new file the pattern matches is a change too.
    std::fs::write(
        rules.join("b.rhai"),
        r#"alert("from_b", #{ severity: "info", value: memory.used_percent, threshold: 0, op: ">=", summary: "b" });"#,
    )
    .unwrap();
    until("the new file's alert fires", || {
        firing(port).iter().any(|(n, _)| n == "from_b")
    });

    // A broken jobs file is refused and the monitor goes on; fixed, it goes in.
    std::fs::write(
        &file,
        "data_dir: var\nwatch: true\njobs:\n  m: { type: monitr }\n",
    )
    .unwrap();
    let refused = running.wait_for_line("reload refused", PATIENCE);
    assert!(refused.contains("jobs.yaml:4"), "{refused}");
    std::fs::write(
        &file,
        jobs_text.replace("[{ type: memory }]", "[{ type: memory }, { type: load }]"),
    )
    .unwrap();
    let line = running.wait_for_line("reloaded the jobs file", PATIENCE);
    assert!(line.contains("changed_or_added=1"), "{line}");
    until("the changed job's alerts fire again", || {
        firing(port).len() == 3
    });
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}
