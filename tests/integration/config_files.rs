//! The jobs files users write: the shipped ones load clean, and each kind of mistake gets an
//! exact, located message.

use crate::support::{root, run, stderr, stdout};

/// `runner check` on a fixture: exit code 1 and exactly this on stderr.
#[track_caller]
fn invalid(name: &str, expected: &str) {
    let path = format!("tests/fixtures/invalid/{name}.yaml");
    let output = run(&["check", "--jobs", &path]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stderr(&output), expected.replace("FILE", &path));
}

#[test]
fn shipped_jobs_file_checks_clean() {
    let output = run(&["check", "--jobs", "jobs/jobs.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "jobs/jobs.yaml: ok (2 warnings) (4 jobs, 2 notifiers, 5 rule files)\n"
    );
    // Without Slack and ServiceNow, both are off and say which variable turns them on.
    let err = stderr(&output);
    assert!(
        err.contains("warning: notifier `slack` is off: `webhook_url` is empty"),
        "{err}"
    );
    assert!(
        err.contains("set SLACK_WEBHOOK_URL to turn the notifier on"),
        "{err}"
    );
    assert!(
        err.contains("set SERVICENOW_INSTANCE to turn the notifier on"),
        "{err}"
    );
}

#[test]
fn shipped_jobs_file_has_the_documented_jobs() {
    let config = runner::config::Config::load(&root().join("jobs/jobs.yaml")).expect("loads");
    let names: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["monitor", "servicenow-sync", "weekly-report", "rotate-logs"]
    );
    assert_eq!(
        config.job("monitor").unwrap().schedule.to_string(),
        "@every 10s"
    );
    assert!(config.data_dir.ends_with("var"));
}

#[test]
fn every_example_jobs_file_checks_clean() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("jobs/examples")).expect("jobs/examples exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let rel = path.strip_prefix(root()).unwrap().display().to_string();
            let output = run(&["check", "--jobs", &rel]);
            assert_eq!(output.status.code(), Some(0), "{rel}: {}", stderr(&output));
            checked += 1;
        }
    }
    assert!(checked > 0, "jobs/examples holds no example");
}

#[test]
fn malformed_yaml() {
    invalid(
        "malformed-yaml",
        r#"error: unclosed quote
 --> FILE:5:15
  |
5 |     schedule: "@every 10s
  |               ^
  = field: jobs

"#,
    );
}

#[test]
fn unknown_key() {
    invalid(
        "unknown-key",
        "error: unknown field `probe`, expected one of schedule, description, enabled, timeout, probes, rules, notify, rule_timeout, flap_transitions, flap_window
 --> FILE:6:5
  |
6 |     probe:
  |     ^^^^^
  = field: jobs.monitor.probe
  = help: did you mean `probes`?

",
    );
}

#[test]
fn unknown_job_type() {
    invalid(
        "unknown-job-type",
        "error: unknown job type `monitr` (expected one of: monitor, report, servicenow_fetch, rotate)
 --> FILE:4:11
  |
4 |     type: monitr
  |           ^^^^^^
  = field: jobs.monitor

",
    );
}

#[test]
fn bad_cron() {
    invalid(
        "bad-cron",
        "error: invalid schedule `0 8 * * Mon Tue Wed`: a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first); this one has 7
 --> FILE:5:15
  |
5 |     schedule: \"0 8 * * Mon Tue Wed\"
  |               ^^^^^^^^^^^^^^^^^^^^^
  = field: jobs.weekly-report.schedule
  = help: examples: `*/5 * * * *` (every 5 minutes), `0 8 * * Mon` (Mondays 08:00), `30 2 * * *`, `@daily`, `@every 10s`

",
    );
}

#[test]
fn bad_duration() {
    invalid(
        "bad-duration",
        "error: invalid duration `15 days`: unknown unit; use ms, s, m, h, d or w (e.g. `500ms`, `15m`, `7d`)
 --> FILE:7:14
  |
7 |     max_age: 15 days
  |              ^^^^^^^
  = field: jobs.rotate-logs.max_age

",
    );
}

#[test]
fn missing_notifier() {
    invalid(
        "missing-notifier",
        "error: unknown notifier `slak` (defined: log, slack)
 --> FILE:8:19
  |
8 |     notify: [log, slak]
  |                   ^^^^
  = field: jobs.monitor.notify[1]
  = help: did you mean `slack`?

",
    );
}

#[test]
fn duplicate_key() {
    invalid(
        "duplicate-key",
        "error: duplicate key `schedule`
 --> FILE:6:5
  |
6 |     schedule: \"@every 1m\"
  |     ^^^^^^^^
  = field: jobs.monitor.schedule
  = help: a key may appear once per mapping; keep the one you mean

",
    );
}

#[test]
fn empty_file() {
    invalid(
        "empty",
        "error: the jobs file is empty
 --> FILE:1:1
  = help: it needs at least `data_dir:` and `jobs:`; jobs/jobs.yaml is a commented example

",
    );
}

#[test]
fn several_problems_are_reported_together() {
    let output = run(&[
        "check",
        "--jobs",
        "tests/fixtures/invalid/several-problems.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let located: Vec<&str> = err.lines().filter(|l| l.contains("--> ")).collect();
    assert_eq!(
        located,
        [
            " --> tests/fixtures/invalid/several-problems.yaml:2:11",
            " --> tests/fixtures/invalid/several-problems.yaml:4:18",
            "  --> tests/fixtures/invalid/several-problems.yaml:13:16",
            "  --> tests/fixtures/invalid/several-problems.yaml:16:15",
            "  --> tests/fixtures/invalid/several-problems.yaml:17:14",
        ],
        "{err}"
    );
    assert!(
        err.contains("error: unknown timezone `Europe/Berln`"),
        "{err}"
    );
    assert!(
        err.contains("error: unknown notifier type `pagerduty`"),
        "{err}"
    );
    assert!(
        err.contains("error: expected a whole number of zero or more, found `three`"),
        "{err}"
    );
    assert!(
        err.contains("  = field: jobs.monitor.probes[0].count"),
        "{err}"
    );
    assert!(
        err.contains("the hour field `25` is out of range (0-23)"),
        "{err}"
    );
    assert!(
        err.contains("error: unknown notifier `email` (defined: log)"),
        "{err}"
    );
    assert_eq!(
        stdout(&output),
        "tests/fixtures/invalid/several-problems.yaml: 5 errors and 0 warnings\n"
    );
}

#[test]
fn a_missing_jobs_file_says_how_to_pass_one() {
    let output = run(&["check", "--jobs", "nowhere/jobs.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with("error: cannot read the jobs file: No such file or directory"),
        "{err}"
    );
    assert!(
        err.contains("= help: pass the jobs file with `--jobs FILE`"),
        "{err}"
    );
}

/// Tools that sort keys (PyYAML's `dump`, Helm's `toYaml`, Ansible) put `type` wherever the
/// alphabet does; such a file loads like the hand-written one, and a mistake in it is still
/// reported at its own line.
#[test]
fn a_jobs_file_with_sorted_keys_loads_and_points_at_its_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let sorted = "data_dir: var
jobs:
  monitor:
    notify:
    - log
    probes:
    - type: cpu
    - host: 127.0.0.1
      name: gateway
      type: ping
    rules: []
    schedule: '@every 10s'
    type: monitor
  weekly-report:
    schedule: 0 8 * * Mon
    type: report
notifiers:
  chat:
    min_severity: warning
    type: slack
    webhook_url: ''
";
    let file = dir.path().join("jobs.yaml");
    std::fs::write(&file, sorted).unwrap();
    let output = run(&["check", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = run(&["jobs", "--jobs", file.to_str().unwrap()]);
    let out = stdout(&output);
    assert!(
        out.contains("monitor (monitor)") && out.contains("weekly-report (report)"),
        "{out}"
    );

    let broken = sorted
        .replace(
            "      name: gateway\n",
            "      name: gateway\n      count: many\n",
        )
        .replace("    schedule: 0 8 * * Mon\n", "    schedul: 0 8 * * Mon\n");
    std::fs::write(&file, broken).unwrap();
    let output = run(&["check", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(&format!(" --> {}:10:14\n", file.display())),
        "the bad count is on line 10: {err}"
    );
    assert!(
        err.contains(&format!(" --> {}:16:5\n", file.display()))
            && err.contains("did you mean `schedule`?"),
        "the misspelt key is on line 16: {err}"
    );
}

#[test]
fn a_signing_secret_that_cannot_work_is_a_check_error_and_an_unpadded_one_is_fine() {
    invalid(
        "bad-signing-secret",
        "error: `signing_secret` starts with `whsec_` but the rest is not base64: Invalid symbol 42, offset 3.
  --> FILE:10:21
   |
10 |     signing_secret: \"whsec_not*base64\"
   |                     ^^^^^^^^^^^^^^^^^^
   = field: notifiers.broken.signing_secret
   = help: a Standard Webhooks secret is `whsec_` and base64 of random bytes; any other text is used as the key as it is

",
    );
}

#[test]
fn every_problem_of_the_file_at_once() {
    let path = "tests/fixtures/invalid/everything-at-once.yaml";
    let output = run(&["check", "--jobs", path]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    for (message, field) in [
        ("unknown field `timezon`", "timezon"),
        ("missing field `data_dir`", "data_dir"),
        ("unknown job type `monitr`", "jobs.first"),
        (
            "the hour field `25` is out of range",
            "jobs.second.schedule",
        ),
        ("unknown field `schedul`", "jobs.third.schedul"),
        ("duplicate key `second`", "jobs.second"),
        ("invalid duration `5x`", "jobs.fourth.timeout"),
        ("invalid duration `15`", "jobs.fourth.max_age"),
        ("invalid duration `3q`", "jobs.fourth.archive_max_age"),
        ("invalid duration `2z`", "jobs.fifth.rule_timeout"),
        (
            "`keep_archives: 0` would delete every archive",
            "jobs.fourth.keep_archives",
        ),
    ] {
        let at = err
            .find(message)
            .unwrap_or_else(|| panic!("{message} missing:\n{err}"));
        let rest = &err[at..];
        let end = rest.find("\n\n").map_or(rest.len(), |e| e + 1);
        assert!(
            rest[..end].contains(&format!("= field: {field}\n")),
            "{message}: {}",
            &rest[..end]
        );
    }
    assert!(stdout(&output).contains("11 errors"), "{}", stdout(&output));
}

/// Issue 24 item 7: a file with six problems (a bad `@every`, an ftp URL, a bad
/// `expect_status`, `memory` twice, a missing template, a `max_age` with no unit) reported two
/// of them per round: a bad field hid the rest of its job, and any error hid the file checks.
#[test]
fn six_problems_are_six_errors_each_at_its_place() {
    let path = "tests/fixtures/invalid/six-problems.yaml";
    let output = run(&["check", "--jobs", path]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let found = error_blocks(&err);
    let at = |place: &str| format!("{path}:{place}");
    let expected = [
        (
            "error: invalid schedule `@every 10x`",
            at("6:15"),
            "jobs.monitor.schedule",
        ),
        (
            "error: the URL's scheme must be http or https",
            at("11:14"),
            "jobs.monitor.probes[1].url",
        ),
        (
            "error: `7xx` is not an HTTP status",
            at("12:24"),
            "jobs.monitor.probes[1].expect_status",
        ),
        (
            "error: the `memory` probe is listed twice",
            at("14:9"),
            "jobs.monitor.probes[3]",
        ),
        (
            "error: no template at `tests/fixtures/invalid/templates/missing.hbs`",
            at("18:17"),
            "jobs.weekly-report.templates[0]",
        ),
        (
            "error: invalid duration `15`",
            at("23:14"),
            "jobs.rotate-logs.max_age",
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{err}");
    for ((message, location, field), (want_message, want_location, want_field)) in
        found.iter().zip(&expected)
    {
        assert!(message.starts_with(want_message), "{message}\n{err}");
        assert_eq!(location, want_location, "{err}");
        assert_eq!(field, want_field, "{err}");
    }
    assert_eq!(
        stdout(&output),
        format!("{path}: 6 errors and 0 warnings\n")
    );
}

/// A job whose setting is wrong still has its rule files checked: a missing one and one that
/// does not compile are said in the same round as the jobs file's own mistake.
#[test]
fn rule_files_are_checked_when_the_jobs_file_has_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.rhai"), "let x = ;\n").unwrap();
    let file = dir.path().join("jobs.yaml");
    std::fs::write(
        &file,
        "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10x\"\n    probes:\n      - type: cpu\n    rules: [bad.rhai, gone.rhai]\n",
    )
    .unwrap();
    let output = run(&["check", "--jobs", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("invalid schedule `@every 10x`"), "{err}");
    assert!(err.contains("gone.rhai"), "{err}");
    assert!(err.contains("bad.rhai"), "{err}");
    assert!(
        stdout(&output).contains(": 3 errors"),
        "{}",
        stdout(&output)
    );
}

/// With `--log-format json`, a command line clap refuses is one JSON object on stderr like
/// every other line there, and exit code 2.
#[test]
fn usage_errors_are_json_in_json_mode() {
    for args in [
        &["--log-format", "json", "chek"][..],
        &["check", "--bogus", "--log-format=json"][..],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = stderr(&output);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(line["level"], "ERROR", "{err}");
        assert_eq!(line["exit_code"], 2, "{err}");
        let message = line["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("error: "), "{err}");
        assert!(!message.contains('\u{1b}'), "{err}");
    }
    let output = run(&["chek"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with("error: unrecognized subcommand 'chek'"));
}

/// Each error block of `runner check`'s stderr: its message, its `file:line:column` and its
/// field.
fn error_blocks(err: &str) -> Vec<(String, String, String)> {
    err.split("\n\n")
        .filter(|block| block.starts_with("error: "))
        .map(|block| {
            let line = |prefix: &str| {
                block
                    .lines()
                    .find_map(|l| l.trim_start().strip_prefix(prefix))
                    .unwrap_or_default()
                    .to_string()
            };
            let message = block.lines().next().unwrap_or_default();
            (message.to_string(), line("--> "), line("= field: "))
        })
        .collect()
}

/// `runner check` on `path` finds exactly these errors (a message's start, its place, its
/// field), in this order, in one run.
#[track_caller]
fn errors_in_one_run(path: &str, expected: &[(&str, &str, &str)]) {
    let output = run(&["check", "--jobs", path]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let found = error_blocks(&err);
    assert_eq!(found.len(), expected.len(), "{err}");
    for ((message, location, field), (want_message, want_place, want_field)) in
        found.iter().zip(expected)
    {
        assert!(message.starts_with(want_message), "{message}\n{err}");
        assert_eq!(location, &format!("{path}:{want_place}"), "{err}");
        assert_eq!(field, want_field, "{err}");
    }
    assert!(
        stdout(&output).contains(&format!(": {} errors", expected.len())),
        "{}",
        stdout(&output)
    );
}

/// Issue 24 item 7: a probe broken as a whole (an unknown type, a missing field) no longer
/// hides the other probes of its list; each of three broken probes is said at its own line,
/// and the probes after them keep their index.
#[test]
fn three_broken_probes_are_three_errors_each_at_its_line() {
    errors_in_one_run(
        "tests/fixtures/invalid/three-broken-probes.yaml",
        &[
            (
                "error: unknown probe type `pong`",
                "10:15",
                "jobs.monitor.probes[0]",
            ),
            (
                "error: missing field `host`",
                "13:9",
                "jobs.monitor.probes[1]",
            ),
            (
                "error: `7xx` is not an HTTP status",
                "17:24",
                "jobs.monitor.probes[2].expect_status",
            ),
            (
                "error: the `cpu` probe is listed twice",
                "19:9",
                "jobs.monitor.probes[4]",
            ),
        ],
    );
}

/// Issue 24 item 7: a top-level setting serde cannot read (`listen_auth`) is said with the
/// jobs' mistakes and the missing template, not alone.
#[test]
fn a_bad_top_level_setting_does_not_hide_the_jobs() {
    errors_in_one_run(
        "tests/fixtures/invalid/bad-listen-auth.yaml",
        &[
            ("error: unknown field `bearer`", "4:3", "listen_auth.bearer"),
            (
                "error: invalid schedule `@every 10x`",
                "8:15",
                "jobs.monitor.schedule",
            ),
            (
                "error: no template at `tests/fixtures/invalid/templates/missing.hbs`",
                "14:17",
                "jobs.weekly-report.templates[0]",
            ),
        ],
    );
}

/// Issue 24 item 7: a report whose `window` is wrong still has its templates checked.
#[test]
fn a_bad_report_window_does_not_hide_a_missing_template() {
    errors_in_one_run(
        "tests/fixtures/invalid/bad-report-window.yaml",
        &[
            (
                "error: invalid duration `7 days`",
                "7:13",
                "jobs.weekly-report.window",
            ),
            (
                "error: no template at `tests/fixtures/invalid/templates/missing.hbs`",
                "8:17",
                "jobs.weekly-report.templates[0]",
            ),
        ],
    );
}
