//! `runner check` while a scheduler runs: a rule file edited since the scheduler loaded it is
//! named, with the replay that compares the loaded content with the edit; after the reload, or
//! with no scheduler running, nothing is said.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, Running, command, run, runner_bin, stderr, stdout};

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
