//! Around a rule change (issue 32 section 3): `runner dry-run` shows the values the rules read
//! this tick; `runner check` while a scheduler runs names a rule file edited since the
//! scheduler loaded it, with the replay that compares the loaded content with the edit, and
//! after the reload, or with no scheduler running, says nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::support::{PATIENCE, Running, command, jobs_file, run, runner_bin, stderr, stdout};

const RULE: &str = r#"
alert("used", #{ severity: "info", value: memory.used_percent, threshold: 0, op: ">=", summary: "used" });
"#;
const EDITED: &str = r#"
alert("used", #{ severity: "info", value: memory.used_percent, threshold: 0, op: ">=", summary: "used" });
alert("added", #{ severity: "warning", value: memory.used_percent, threshold: 0, op: ">=", summary: "added" });
"#;

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check(jobs: &str) -> String {
    let output = run(&["check", "--jobs", jobs]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    stdout(&output)
}

#[test]
fn check_names_a_rule_file_edited_since_the_scheduler_loaded_it_with_the_replay_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.rhai");
    std::fs::write(&rules, RULE).unwrap();
    std::fs::write(
        dir.path().join("jobs.yaml"),
        "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{ type: memory }]\n    rules: [r.rhai]\n",
    )
    .unwrap();
    let file = dir.path().join("jobs.yaml");
    let jobs = file.to_str().unwrap();
    let record = dir.path().join("var/state/loaded-rules.json");
    let mut running = Running::spawn(command(&["--jobs", jobs]));
    until("the scheduler records its rule files", || record.exists());
    // A tick or two in the metrics log, for the replay below to step over.
    until("the metrics log has samples", || {
        std::fs::read_dir(dir.path().join("var/metrics"))
            .map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
            .unwrap_or(false)
    });

    let unchanged = check(jobs);
    assert!(!unchanged.contains("note:"), "{unchanged}");

    std::fs::write(&rules, EDITED).unwrap();
    let edited = check(jobs);
    let note = format!(
        "note: {} changed since the running scheduler loaded it; before `runner reload`",
        rules.display()
    );
    assert!(edited.contains(&note), "{edited}");
    let line = edited
        .lines()
        .find(|l| l.starts_with("  runner --jobs "))
        .unwrap_or_else(|| panic!("no command in {edited}"));
    assert!(
        line.contains(" replay m --from ")
            && line.ends_with(&format!(" --compare {}", rules.display())),
        "{line}"
    );
    // The command as said: the loaded rule against the edit, which adds an alert.
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    let replayed = std::process::Command::new(runner_bin())
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(replayed.status.code(), Some(1), "{}", stderr(&replayed));
    let compared = stdout(&replayed);
    assert!(compared.contains("added"), "{compared}");

    // Once reloaded, the edit is what runs.
    let output = run(&["reload", "--jobs", jobs]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    running.wait_for_line("reloaded the jobs file", PATIENCE);
    let reloaded = check(jobs);
    assert!(!reloaded.contains("note:"), "{reloaded}");

    // With no scheduler running, there is no running configuration to differ from.
    drop(running);
    std::fs::write(&rules, RULE).unwrap();
    let stopped = check(jobs);
    assert!(!stopped.contains("note:"), "{stopped}");
    assert!(Path::new(&record).exists());
}

#[test]
fn dry_run_shows_each_value_the_rules_read_and_what_their_functions_computed() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = jobs_file(
        dir.path(),
        "timezone: UTC\njobs:\n  monitor:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - type: command\n        name: v\n        shell: \"echo 1\"\n    rules: [v.rhai]\n",
    );
    std::fs::write(
        dir.path().join("v.rhai"),
        "let v = command.v.value;\nlet top = max(\"command.v.value\", \"1m\");\nlet r = rate(\"command.v.value\", \"1m\");\nlet usual = baseline(\"command.v.value\");\nalert(\"v_high\", #{ active: v > 1000, value: v, threshold: 1000.0, metric: \"command.v.value\" });\n",
    )
    .unwrap();
    // Twelve samples 10 s apart, the value growing 1 a second: 0, 10, … 110 the last.
    let metrics = dir.path().join("var/metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    let last = Utc::now() - chrono::Duration::seconds(10);
    for i in 0..12 {
        let at = last - chrono::Duration::seconds(110 - 10 * i);
        let line = format!(
            "{{\"ts\":\"{}\",\"host\":\"h\",\"job\":\"monitor\",\"metrics\":{{\"command.v.value\":{}}},\"errors\":{{}}}}\n",
            at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            i * 10
        );
        let day = metrics.join(format!("{}.jsonl", at.format("%Y-%m-%d")));
        let mut text = std::fs::read_to_string(&day).unwrap_or_default();
        text.push_str(&line);
        std::fs::write(&day, text).unwrap();
    }
    let output = run(&[
        "dry-run",
        "--jobs",
        jobs.to_str().unwrap(),
        "--from-log",
        "monitor",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let table: Vec<Vec<&str>> = text
        .split("values the rules read this tick:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no values in {text}"))
        .lines()
        .take_while(|l| !l.is_empty())
        .skip(1)
        .map(|l| {
            l.trim()
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        table,
        [
            vec!["command.v.value", "110"],
            vec!["max(command.v.value, 1m)", "110"],
            vec!["rate(command.v.value, 1m)", "1"],
            vec!["baseline(command.v.value)", "(not computed here)"],
        ],
        "{text}"
    );
}
