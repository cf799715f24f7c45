//! What an operator writes cannot hang, crash or exhaust runner: long history windows, templates
//! that recurse or loop over loops, output without end, rule tests with absurd times, pipes that
//! close, durations that overflow, paths that are wrong, files that are not text. Each case ends
//! with a clear error, in bounded time and memory, and the process survives it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use runner::config::{Config, JobKind};
use runner::probes::{ProbeSet, ProcRoot};

use crate::support::{PATIENCE, Running, command, jobs_file, run, stderr, stdout};

/// A folder holding these files.
fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

/// `runner ARGS` in `dir`: exit code, stdout, stderr.
fn run_in(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = command(args).current_dir(dir).output().unwrap();
    (output.status.code(), stdout(&output), stderr(&output))
}

const MONITOR: &str = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{ type: cpu }, { type: memory }]\n    rules: [r.rhai]\n";

#[test]
fn history_windows_beyond_what_is_kept_zero_windows_and_bad_percentiles_fail_check() {
    let dir = folder(&[
        ("jobs.yaml", MONITOR.as_bytes()),
        (
            "r.rhai",
            b"let a = avg(\"cpu.total.usage_percent\", \"1000w\");\nlet b = max(\"memory.used_percent\", \"0s\");\nlet c = percentile(\"memory.used_percent\", 150, \"1h\");\nlet d = ewma(\"memory.used_percent\", \"4w\");\n",
        ),
    ]);
    let (code, _, err) = run_in(dir.path(), &["check", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    for (at, message) in [
        (
            "r.rhai:1:40",
            "a window may be at most 35d (runner keeps 35 days of history), not `1000w`",
        ),
        ("r.rhai:2:36", "a window must be longer than zero, not `0s`"),
        (
            "r.rhai:3:43",
            "percentile takes a percent from 0 to 100, not 150",
        ),
        (
            "r.rhai:4:37",
            "a half-life may be at most 3d (runner keeps 35 days of history), not `4w`",
        ),
    ] {
        assert!(
            err.contains(&format!("error: {message}\n --> {at}\n")),
            "{message} at {at}:\n{err}"
        );
    }
}

#[test]
fn a_window_computed_at_run_time_is_held_to_the_same_bounds() {
    let dir = folder(&[
        (
            "r.rhai",
            b"let w = \"1000\" + \"w\";\nif avg(\"m.v\", w) > 1 { alert(\"x\") }\n",
        ),
        (
            "r.test.yaml",
            b"rules: [r.rhai]\nscenarios:\n  - name: long\n    interval: 1m\n    start: \"2026-11-23T09:00:00Z\"\n    input: { m.v: \"5x3\" }\n    tests:\n      - { at: 2m, firing: [] }\n",
        ),
    ]);
    let (code, out, _) = run_in(dir.path(), &["test", "r.test.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("r.rhai failed: line 2, column 4: a window may be at most 35d"),
        "{out}"
    );
}

#[test]
fn a_template_that_includes_itself_is_refused_and_nothing_aborts() {
    let recursive = b"{{#*inline \"p\"}}x{{> p}}{{/inline}}{{> p}}\n";
    let dir = folder(&[
        (
            "jobs.yaml",
            b"data_dir: var\nnotifiers:\n  chat: { type: slack, webhook_url: \"https://hooks.example/x\", template: slack.hbs }\njobs:\n  weekly: { type: report, schedule: \"@weekly\", templates: [rec.md.hbs] }\n  m: { type: monitor, schedule: \"@every 10s\", notify: [chat] }\n",
        ),
        ("rec.md.hbs", recursive),
        ("slack.hbs", recursive),
    ]);
    let (code, _, err) = run_in(dir.path(), &["check", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.matches(
            "error: the partial `p` includes itself (through p); a template cannot recurse"
        )
        .count(),
        2,
        "{err}"
    );
    assert!(err.contains("--> rec.md.hbs:1:"), "{err}");
    assert!(err.contains("--> slack.hbs:1:"), "{err}");
    let (code, _, err) = run_in(
        dir.path(),
        &["report", "--jobs", "jobs.yaml", "--template", "rec.md.hbs"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("includes itself"), "{err}");
    let (code, _, err) = run_in(dir.path(), &["run", "weekly", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("every template failed"), "{err}");
}

/// A report job with `timeout: 1s` whose template loops inside loops over a week of hourly
/// points: far longer than any timeout.
fn report_out_of_time() -> tempfile::TempDir {
    let looping = "{{#each families}}{{#each metrics}}{{#each series}}{{#each ../series}}{{#each ../../series}}{{#each ../../../series}}{{/each}}{{/each}}{{/each}}{{/each}}{{/each}}{{/each}}";
    let now = chrono::Utc::now() - chrono::Duration::minutes(30);
    let sample = format!(
        "{{\"ts\":\"{}\",\"host\":\"h\",\"job\":\"m\",\"metrics\":{{\"cpu.total.usage_percent\":12.5}},\"errors\":{{}}}}\n",
        now.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
    let day = format!("var/metrics/{}.jsonl", now.format("%Y-%m-%d"));
    // A sample six days before as well: with history over the whole week, the charts are the
    // week's 168 hours (a shorter history would be charted alone, by a finer step).
    let before = now - chrono::Duration::days(6);
    let early = sample.replace(
        &now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        &before.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    );
    let early_day = format!("var/metrics/{}.jsonl", before.format("%Y-%m-%d"));
    folder(&[
        (
            "jobs.yaml",
            b"data_dir: var\nshutdown_grace: 10m\njobs:\n  weekly: { type: report, schedule: \"@every 2s\", timeout: 1s, templates: [loop.md.hbs] }\n",
        ),
        ("loop.md.hbs", looping.as_bytes()),
        (&day, sample.as_bytes()),
        (&early_day, early.as_bytes()),
    ])
}

#[test]
fn runner_run_holds_a_job_to_its_timeout_as_the_scheduler_does() {
    let dir = report_out_of_time();
    let (code, _, err) = run_in(dir.path(), &["run", "weekly", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("job `weekly` ran past its timeout of 1s and was cancelled"),
        "{err}"
    );
    assert!(err.contains("run timed out; cancelling it"), "{err}");
}

#[test]
fn a_report_job_out_of_time_stops_rendering_and_no_run_overlaps_it() {
    let dir = report_out_of_time();
    let mut cmd = command(&["--jobs", "jobs.yaml", "-v"]);
    cmd.current_dir(dir.path());
    let mut runner = Running::spawn(cmd);
    runner.wait_for_line("run timed out; cancelling it", PATIENCE);
    runner.wait_for_line("cancelled run ended", PATIENCE);
    runner.wait_for_line("run timed out; cancelling it", PATIENCE);
    runner.wait_for_line("cancelled run ended", PATIENCE);
    runner.signal("TERM");
    let (code, _) = runner.wait_exit(PATIENCE);
    assert_eq!(code, Some(0), "{}", runner.seen.join("\n"));
    assert!(
        !runner
            .seen
            .iter()
            .any(|l| l.contains("previous run still going")),
        "a cancelled run ended before the next began: {}",
        runner.seen.join("\n")
    );
}

/// The probes of a monitor job from YAML list items, through the real config loader.
fn probes(dir: &Path, items: &str) -> ProbeSet {
    let indented: String = items.lines().map(|l| format!("      {l}\n")).collect();
    let file = jobs_file(
        dir,
        &format!(
            "jobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n{indented}"
        ),
    );
    let config = Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render()));
    let JobKind::Monitor(monitor) = &config.job("m").unwrap().kind else {
        panic!("a monitor")
    };
    ProbeSet::build(&monitor.probes, &ProcRoot::default())
}

#[tokio::test]
async fn command_output_is_capped_and_quoted_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = probes(
        dir.path(),
        "- { type: command, name: loud, shell: \"head -c 10000000 /dev/zero | tr '\\\\0' e >&2; exit 1\" }\n- { type: command, name: flood, shell: \"head -c 100000000 /dev/zero | tr '\\\\0' 7\" }\n- { type: command, name: huge, shell: \"printf '1%.0s' $(seq 400)\" }\n- { type: command, name: keys, shell: \"seq 50000 | sed 's/.*/k& 1/'\", parse: lines }",
    );
    let out = set.collect().await;
    let error = |key: &str| {
        out.errors
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, e)| e.clone())
            .unwrap_or_default()
    };
    let loud = error("command.loud");
    assert!(loud.starts_with("`/bin/sh` exited with 1: eeee"), "{loud}");
    assert!(loud.chars().count() < 300 && loud.ends_with('…'), "{loud}");
    assert_eq!(
        error("command.flood"),
        "`/bin/sh` wrote more than 1024 KiB to standard output; a monitor command writes numbers"
    );
    assert!(
        error("command.huge").starts_with("the output is not a finite number: `1111"),
        "{}",
        error("command.huge")
    );
    assert_eq!(
        error("command.keys"),
        "the output has 50000 keys; a command may report at most 500"
    );
    assert!(
        !out.metrics.iter().any(|(n, _)| n.starts_with("command.")),
        "{:?}",
        out.metrics
    );
}

#[tokio::test]
async fn a_shell_command_that_times_out_takes_its_children_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // A marker no other process has, to find the children by.
    let marker = format!("30.{}", std::process::id());
    let mut set = probes(
        dir.path(),
        &format!(
            "- {{ type: command, name: slow, shell: \"sleep {marker} & sleep {marker}; echo 1\", timeout_ms: 300 }}"
        ),
    );
    let out = set.collect().await;
    assert!(
        out.errors
            .iter()
            .any(|(k, e)| k == "command.slow" && e.contains("was killed")),
        "{:?}",
        out.errors
    );
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "children left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn rule_tests_with_absurd_times_end_with_an_error() {
    let rule = b"if m.v > 1 { alert(\"x\") }\n";
    for (case, test, expected) in [
        (
            "at overflow",
            "    tests:\n      - { at: 9999999999w, firing: [] }\n",
            "`at: 9999999999w` is neither an offset",
        ),
        (
            "interval overflow",
            "    tests:\n      - { at: 1m, firing: [] }\n",
            "it is longer than 100 years",
        ),
        (
            "far future",
            "    tests:\n      - { at: \"9999-12-31T00:00:00Z\", firing: [] }\n",
            "a scenario may run at most 1000000",
        ),
        (
            "seed weeks",
            "    seed: { m.v: { weeks: 100000, series: \"1\" } }\n    tests:\n      - { at: 1m, firing: [] }\n",
            "`weeks` may be at most 5",
        ),
    ] {
        let interval = if case == "interval overflow" {
            "18446744073709551615ms"
        } else {
            "1m"
        };
        let file = format!(
            "rules: [r.rhai]\nscenarios:\n  - name: {case}\n    interval: {interval}\n    start: \"2026-11-23T09:00:00Z\"\n    input: {{ m.v: \"5x3\" }}\n{test}"
        );
        let dir = folder(&[("r.rhai", rule), ("r.test.yaml", file.as_bytes())]);
        let (code, out, err) = run_in(dir.path(), &["test", "r.test.yaml"]);
        assert_eq!(code, Some(1), "{case}: {out}{err}");
        assert!(out.contains(expected), "{case}: {out}");
        assert!(!err.contains("panicked"), "{case}: {err}");
    }
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    for args in [vec!["jobs"], vec!["test"], vec!["check"]] {
        let mut child = command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        lines.next();
        drop(lines);
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert!(
            output.status.code() == Some(0) || output.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            output.status
        );
    }
}

#[test]
fn prints_cannot_flood_or_forge_the_log() {
    // Time enough for all 2,500 prints, even in a debug build on a busy machine.
    let jobs = format!("{MONITOR}    rule_timeout: 1m\n");
    let dir = folder(&[
        ("jobs.yaml", jobs.as_bytes()),
        (
            "r.rhai",
            b"print(\"hello\\n2026-12-01T00:00:00.000000Z ERROR forged line\");\nfor i in 0..2500 { print(`line ${i}`); }\n",
        ),
    ]);
    let (code, _, err) = run_in(dir.path(), &["run", "m", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.lines()
            .any(|l| l.starts_with("2026-12-01T00:00:00.000000Z")),
        "{err}"
    );
    assert!(
        err.contains("hello\\n2026-12-01T00:00:00.000000Z ERROR forged line"),
        "{err}"
    );
    let printed = err.lines().filter(|l| l.contains("rule=r.rhai")).count();
    assert!(printed <= 11, "{printed} lines: {err}");
    assert!(err.contains("left_out=2491"), "{err}");
}

#[test]
fn durations_that_would_overflow_are_refused_where_they_are_written() {
    let dir = folder(&[
        ("jobs.yaml", MONITOR.as_bytes()),
        (
            "r.rhai",
            b"alert(\"x\", #{ pending_for: \"18446744073709551615ms\", repeat_interval: \"9999999999w\" });\n",
        ),
    ]);
    let (code, _, err) = run_in(dir.path(), &["check", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: alert option `pending_for`: invalid duration `18446744073709551615ms`: it is longer than 100 years; write a shorter duration\n --> r.rhai:1:28"),
        "{err}"
    );
    assert!(err.contains("alert option `repeat_interval`"), "{err}");
}

#[test]
fn a_data_dir_that_is_a_file_is_named_as_such() {
    let dir = folder(&[
        ("var", b"not a folder"),
        (
            "jobs.yaml",
            b"data_dir: var\njobs:\n  m: { type: monitor, schedule: \"@every 10s\" }\n",
        ),
    ]);
    let (code, _, err) = run_in(dir.path(), &["check", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with("error: `var` is a file, not a folder\n --> jobs.yaml:1:11\n"),
        "{err}"
    );
    let (code, _, err) = run_in(dir.path(), &["--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("already running"), "{err}");
}

#[test]
fn report_out_to_a_bare_file_name_writes_it_and_says_so() {
    let dir = folder(&[
        (
            "jobs.yaml",
            b"data_dir: var\njobs:\n  weekly: { type: report, schedule: \"@weekly\", templates: [w.md.hbs] }\n",
        ),
        ("w.md.hbs", b"# {{title}}\n"),
    ]);
    let (code, _, err) = run_in(
        dir.path(),
        &["report", "--jobs", "jobs.yaml", "--out", "rel.md"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("rel.md")).unwrap(),
        "# Weekly performance report\n"
    );
    assert_eq!(err, "wrote rel.md\n");
}

#[test]
fn files_that_are_not_text_or_not_there_are_located() {
    let dir = folder(&[
        (
            "jobs.yaml",
            b"data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{ type: memory }]\n    rules: [bad.rhai, gone.rhai]\n  weekly: { type: report, schedule: \"@weekly\", templates: [bad.md.hbs, gone.md.hbs] }\n",
        ),
        ("bad.rhai", b"let x = 1;\n// caf\xe9\n"),
        ("bad.md.hbs", b"# ok\n\xff\n"),
    ]);
    let (code, _, err) = run_in(dir.path(), &["check", "--jobs", "jobs.yaml"]);
    assert_eq!(code, Some(1), "{err}");
    for expected in [
        "error: the rule file is not UTF-8 text\n --> bad.rhai:2:7\n",
        "error: no rule file at `gone.rhai`\n --> jobs.yaml:7:23\n",
        "error: the template is not UTF-8 text\n --> bad.md.hbs:2:1\n",
        "error: no template at `gone.md.hbs`\n --> jobs.yaml:8:72\n",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    std::fs::write(
        dir.path().join("bad.yaml"),
        b"data_dir: var\njobs:\n  m\xff: x\n",
    )
    .unwrap();
    let (code, _, err) = run_in(dir.path(), &["check", "--jobs", "bad.yaml"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: the jobs file is not UTF-8 text\n --> bad.yaml:3:4\n"),
        "{err}"
    );
    // The scheduler says what is missing at start, and runs the rest.
    let mut cmd = command(&["--jobs", "jobs.yaml"]);
    cmd.current_dir(dir.path());
    let mut runner = Running::spawn(cmd);
    runner.wait_for_line("no template at `gone.md.hbs`", PATIENCE);
    runner.wait_for_line("job scheduled", PATIENCE);
    runner.signal("TERM");
    assert_eq!(runner.wait_exit(PATIENCE).0, Some(0));
    let _ = run(&["--version"]);
}
