//! Rules through the binary: shipped rules pass their tests, failures read well, `check`
//! points into rule files, dry runs change nothing, and alerts survive restarts.

use crate::support::{PATIENCE, Running, command, jobs_file, root, run, stderr, stdout};

#[test]
fn every_shipped_rule_has_tests_and_they_pass() {
    let mut rules = Vec::new();
    let mut stack = vec![root().join("rules")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rhai") {
                rules.push(path);
            }
        }
    }
    assert!(rules.len() >= 8, "{rules:?}");
    for rule in &rules {
        let test = rule.with_extension("test.yaml");
        assert!(
            test.exists(),
            "{} has no {}",
            rule.display(),
            test.display()
        );
    }
    let output = run(&["test", "rules"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok   ")).count(),
        rules.len()
    );
}

#[test]
fn failed_rule_tests_say_expected_and_got_with_the_line() {
    let output = run(&["test", "tests/fixtures/rules/failing.test.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "FAIL tests/fixtures/rules/failing.test.yaml
  tests/fixtures/rules/failing.test.yaml:10: expectations that are wrong on purpose: at 0s (2026-11-23 09:00:00 UTC): firing: expected [], got [memory_seen]
  tests/fixtures/rules/failing.test.yaml:12: expectations that are wrong on purpose: at 20s (2026-11-23 09:00:20 UTC): events: expected [memory_seen resolved], got []
0 passed, 2 failed
"
    );
}

#[test]
fn check_points_at_a_typo_in_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rule = root().join("tests/fixtures/rules/typo.rhai");
    let file = jobs_file(
        dir.path(),
        &format!(
            "jobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{{ type: memory }}]\n    rules: [\"{}\"]\n",
            rule.display()
        ),
    );
    let output = run(&["check", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "error: `memory` has no field `usd_percent` (fields: available_bytes, major_faults_per_sec, major_faults_total, pressure_some_avg10_percent, swap_in_pages_total, swap_in_per_sec, swap_out_pages_total, swap_out_per_sec, swap_used_percent, total_bytes, used_percent)\n --> {}:2:4\n  |\n2 | if memory.usd_percent > LIMIT {{\n  |    ^^^^^^^^^^^^^^^^^^\n",
            rule.display()
        )),
        "{err}"
    );
}

fn always_job(dir: &std::path::Path, schedule: &str) -> std::path::PathBuf {
    jobs_file(
        dir,
        &format!(
            "jobs:\n  m:\n    type: monitor\n    schedule: \"{schedule}\"\n    probes: [{{ type: memory }}]\n    rules: [\"{}\"]\n",
            root().join("tests/fixtures/rules/always.rhai").display()
        ),
    )
}

#[test]
fn dry_run_shows_the_alert_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = always_job(dir.path(), "@every 10s");
    let output = run(&["dry-run", "m", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("FIRING  memory_seen [info]"), "{out}");
    assert!(
        out.contains("firing memory_seen [info]: memory is measured — memory_seen "),
        "{out}"
    );
    assert!(out.contains(" >= 0 for 0s"), "{out}");
    assert!(
        !dir.path().join("var/metrics").exists(),
        "dry run wrote metrics"
    );
    assert!(
        !dir.path().join("var/state/alerts").exists(),
        "dry run wrote alert state"
    );
    assert!(
        !dir.path().join("var/alerts").exists(),
        "dry run wrote the alert log"
    );
}

#[test]
fn a_restart_neither_loses_a_firing_alert_nor_sends_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = always_job(dir.path(), "@every 1s");
    let file = file.to_str().unwrap();
    let mut first = Running::spawn(command(&["--jobs", file]));
    first.wait_for_line("memory is measured", PATIENCE);
    first.signal("TERM");
    assert_eq!(first.wait_exit(PATIENCE).0, Some(0));
    let state = std::fs::read_to_string(dir.path().join("var/state/alerts/m.json")).unwrap();
    assert!(state.contains("\"phase\": \"firing\""), "{state}");

    let mut second = Running::spawn(command(&["--jobs", file, "-v"]));
    for _ in 0..2 {
        second.wait_for_line("run finished", PATIENCE);
    }
    second.signal("TERM");
    assert_eq!(second.wait_exit(PATIENCE).0, Some(0));
    assert!(
        !second.seen.iter().any(|l| l.contains("memory is measured")),
        "sent again:\n{}",
        second.seen.join("\n")
    );
    let mut log = String::new();
    for entry in std::fs::read_dir(dir.path().join("var/alerts"))
        .unwrap()
        .flatten()
    {
        log.push_str(&std::fs::read_to_string(entry.path()).unwrap());
    }
    assert_eq!(log.lines().count(), 1, "{log}");
    let event: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(event["kind"], "firing");
    assert_eq!(event["schema_version"], 1);
    assert_eq!(event["fingerprint"].as_str().unwrap().len(), 64);
}

/// Writes `files` (name, text) into a new folder.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// `runner test FILE` in `dir`: the exit code and what it printed.
fn test_in(dir: &std::path::Path, file: &str) -> (Option<i32>, String) {
    let output = command(&["test", file]).current_dir(dir).output().unwrap();
    (output.status.code(), stdout(&output))
}

/// A rule test that names a job runs the rules as that job does: its flap policy, its rule
/// timeout, and its notifiers' messages, a Slack `template` included (off for want of a
/// webhook URL, it still renders).
#[test]
fn rule_tests_run_as_the_named_job_with_its_flap_policy_timeout_and_template() {
    let dir = folder(&[
        (
            "slack.hbs",
            "TEMPLATED{{#each events}} {{this.name}}/{{this.kind}}{{/each}}",
        ),
        (
            "high.rhai",
            "if memory.used_percent > 50 { alert(\"high\", #{ severity: \"critical\" }) }\n",
        ),
        // Tens of thousands of operations: longer than the 50 ms default deadline in a debug
        // build, well within the job's 10 s.
        (
            "slow.rhai",
            "let x = 0;\nfor i in 0..40000 { x += 1; }\nif memory.used_percent > 50 { alert(\"slow_high\") }\n",
        ),
    ]);
    let d = dir.path();
    jobs_file(
        d,
        "notifiers:\n  slack: { type: slack, webhook_url: \"${SLACK_WEBHOOK_URL:-}\", template: slack.hbs }\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{ type: memory }]\n    rules: [high.rhai, slow.rhai]\n    notify: [log, slack]\n    rule_timeout: 10s\n    flap_transitions: 1\n    flap_window: 1h\n",
    );
    std::fs::write(
        d.join("high.test.yaml"),
        r#"rules: [high.rhai, slow.rhai]
jobs: jobs.yaml
job: m
scenarios:
  - name: as job m
    interval: 10s
    start: "2026-11-23T09:00:00Z"
    input:
      memory.used_percent: "60 40 60"
    tests:
      - at: 5s
        firing: [high, slow_high]
        events:
          - alert: slow_high
            kind: firing
          - alert: high
            kind: firing
            messages:
              slack: "TEMPLATED high/firing"
              log: "high on test-host"
      # The second change of state is one more than the job's flap_transitions allow.
      - at: 15s
        flapping: [high, slow_high]
        events:
          - { alert: slow_high, kind: flapping }
          - { alert: high, kind: flapping }
"#,
    )
    .unwrap();
    let (code, out) = test_in(d, "high.test.yaml");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "ok   high.test.yaml (2 checks)\n2 passed, 0 failed\n");

    // The same test against a job with a 1 ms rule timeout: the slow rule is stopped, and a
    // rule that fails at run time fails its test, saying why.
    let jobs = std::fs::read_to_string(d.join("jobs.yaml")).unwrap();
    std::fs::write(
        d.join("jobs.yaml"),
        jobs.replace("rule_timeout: 10s", "rule_timeout: 1ms"),
    )
    .unwrap();
    let (code, out) = test_in(d, "high.test.yaml");
    assert_eq!(code, Some(1), "{out}");
    // Where in the loop the deadline stops it varies; the line and the reason do not.
    let failure = out
        .lines()
        .find(|l| l.contains("slow.rhai failed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        failure.starts_with(
            "  high.test.yaml:6: as job m: at 2026-11-23 09:00:00 UTC: slow.rhai failed: line 2, column "
        ) && failure.ends_with(": took longer than its deadline and was stopped"),
        "{out}"
    );
}

/// `messages:` keyed by a notifier the job does not send the event to is a failure that says
/// so, not a message rendered for nobody.
#[test]
fn a_message_check_for_a_notifier_that_does_not_get_the_event_fails() {
    let dir = folder(&[(
        "warn.rhai",
        "if memory.used_percent > 50 { alert(\"warm\", #{ severity: \"warning\" }) }\n",
    )]);
    let d = dir.path();
    jobs_file(
        d,
        "notifiers:\n  sn: { type: servicenow, instance: \"${SN:-}\" }\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{ type: memory }]\n    rules: [warn.rhai]\n    notify: [log, sn]\n",
    );
    std::fs::write(
        d.join("warn.test.yaml"),
        "rules: [warn.rhai]\njobs: jobs.yaml\nscenarios:\n  - name: warning\n    interval: 10s\n    start: \"2026-11-23T09:00:00Z\"\n    input: { memory.used_percent: \"60\" }\n    tests:\n      - at: 5s\n        events:\n          - { alert: warm, kind: firing, messages: { sn: \"warm\", servicenow: \"[WARNING]\" } }\n",
    )
    .unwrap();
    let (code, out) = test_in(d, "warn.test.yaml");
    assert_eq!(code, Some(1), "{out}");
    // `sn` takes critical alerts only (ServiceNow's default); the `servicenow` type's built-in
    // message is still rendered for whoever wants to see it.
    assert_eq!(
        out,
        "FAIL warn.test.yaml\n  warn.test.yaml:9: warning: at 5s (2026-11-23 09:00:05 UTC): warm firing: `sn` message: the job does not send this event to `sn` (its `notify` list or the notifier's `min_severity` leaves it out)\n0 passed, 1 failed\n"
    );
}

/// Series are measured from their notation and refused before they are expanded: each of
/// these aborted `runner test` (an allocation failure, SIGABRT) or took a gigabyte or more.
#[test]
fn rule_test_series_too_long_to_expand_end_with_an_error_not_an_abort() {
    for (seed, input, expected) in [
        (
            "",
            "_x2000000000",
            "input `m.v`: this series is 2000000000 values, and a scenario runs at most 1000000 ticks",
        ),
        (
            "",
            "30x60000000",
            "input `m.v`: this series is 60000001 values",
        ),
        (
            "    seed: { m.v: { weeks: 1, series: \"10x4294967296\" } }\n",
            "5x3",
            "seed `m.v`: this series is 4294967297 values, and a seed may have at most 840",
        ),
        (
            "    seed: { m.v: { weeks: 5, series: \"10x60000000\" } }\n",
            "5x3",
            "seed `m.v`: this series is 60000001 values",
        ),
    ] {
        let test = format!(
            "rules: [r.rhai]\nscenarios:\n  - name: long\n    interval: 1m\n    start: \"2026-11-23T09:00:00Z\"\n{seed}    input: {{ m.v: \"{input}\" }}\n    tests:\n      - {{ at: 1m, firing: [] }}\n"
        );
        let dir = folder(&[
            ("r.rhai", "if m.v > 1 { alert(\"x\") }\n"),
            ("r.test.yaml", &test),
        ]);
        let (code, out) = test_in(dir.path(), "r.test.yaml");
        assert_eq!(code, Some(1), "{input}: {out}");
        assert!(
            out.contains(&format!("error: {expected}")),
            "{input}: {out}"
        );
        assert!(out.contains(" --> r.test.yaml:6:"), "{input}: {out}");
    }
}
