//! `runner replay` and `replay --compare` (issue 32): a metrics log with a known spike pattern,
//! replayed with a rule and a changed rule; and a replay of a period the live monitor ran on a
//! virtual clock, event for event against its alert log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::support::{jobs_file, run, stderr, stdout};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const JOBS: &str = "timezone: UTC\njobs:\n  monitor:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - type: command\n        name: v\n        shell: \"cat value.txt\"\n    rules: [rules/v.rhai]\n";

/// Fires 30 s after the value goes above `threshold`, resolves on the first tick at or below.
fn rule(threshold: u32) -> String {
    format!(
        "const LIMIT = {threshold}.0;\nlet v = command.v.value;\nalert(\"v_high\", #{{\n    active: v > LIMIT,\n    value: v, threshold: LIMIT, metric: \"command.v.value\",\n    pending_for: \"30s\",\n}});\n"
    )
}

/// The value at `at`: 10, with a spike to 95 from 10:10:00 to 10:14:50, one to 60 from
/// 10:30:00 to 10:39:50 and a blip to 95 at 10:50:00 (UTC, 2026-11-30).
fn value_at(at: DateTime<Utc>) -> f64 {
    let spike = |from: &str, to: &str| at >= t(from) && at <= t(to);
    if spike("2026-11-30T10:10:00Z", "2026-11-30T10:14:50Z") {
        95.0
    } else if spike("2026-11-30T10:30:00Z", "2026-11-30T10:39:50Z") {
        60.0
    } else if at == t("2026-11-30T10:50:00Z") {
        // Too short to fire: pending, then inactive.
        95.0
    } else {
        10.0
    }
}

/// A data_dir whose metrics log holds 10 s samples of `monitor` from 09:00 to 11:00, with a
/// sample of another job and a torn line between them.
fn logged() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let jobs = jobs_file(dir.path(), JOBS);
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/v.rhai"), rule(80)).unwrap();
    std::fs::write(dir.path().join("v50.rhai"), rule(50)).unwrap();
    let metrics = dir.path().join("var/metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    let mut text = String::new();
    let mut at = t("2026-11-30T09:00:00Z");
    while at <= t("2026-11-30T11:00:00Z") {
        text.push_str(&format!(
            "{{\"ts\":\"{}\",\"host\":\"h\",\"job\":\"monitor\",\"metrics\":{{\"command.v.value\":{}}},\"errors\":{{}}}}\n",
            at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            value_at(at)
        ));
        if at == t("2026-11-30T10:20:00Z") {
            // Another job's spike is not this job's.
            text.push_str("{\"ts\":\"2026-11-30T10:20:01.000Z\",\"host\":\"h\",\"job\":\"other\",\"metrics\":{\"command.v.value\":99},\"errors\":{}}\n");
        }
        at += Duration::seconds(10);
    }
    std::fs::write(metrics.join("2026-11-30.jsonl"), text).unwrap();
    (dir, jobs)
}

fn replay(jobs: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "replay",
        "monitor",
        "--jobs",
        jobs.to_str().unwrap(),
        "--from",
        "2026-11-30 10:00",
        "--to",
        "2026-11-30T10:59:50Z",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn json(output: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(output), stderr(output)))
}

/// `(at, from → to)` of each change in a replay's timeline.
fn timeline(found: &Value) -> Vec<(String, String)> {
    found["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["at"].as_str().unwrap().to_string(),
                format!(
                    "{} {} → {}",
                    c["alert"].as_str().unwrap(),
                    c["from"].as_str().unwrap(),
                    c["to"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn replay_gives_the_alert_times_of_the_jobs_rules_and_of_changed_ones() {
    let (dir, jobs) = logged();
    let out = replay(&jobs, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let found = json(&out);
    assert_eq!(found["ticks"], 360);
    assert_eq!(found["warm_samples"], 360);
    assert_eq!(
        timeline(&found),
        pairs(&[
            ("2026-11-30T10:10:00Z", "v_high inactive → pending"),
            ("2026-11-30T10:10:30Z", "v_high pending → firing"),
            ("2026-11-30T10:15:00Z", "v_high firing → inactive"),
            ("2026-11-30T10:50:00Z", "v_high inactive → pending"),
            ("2026-11-30T10:50:10Z", "v_high pending → inactive"),
        ])
    );
    // A pending alert the lifecycle forgets keeps the severity it pended at.
    assert_eq!(found["timeline"][4]["severity"], "warning");
    let alert = &found["alerts"][0];
    assert_eq!(alert["spells"].as_array().unwrap().len(), 1);
    assert_eq!(alert["firing_secs"], 270);
    assert_eq!(alert["notifications"], 2);
    let kinds: Vec<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["firing", "resolved"]);

    // The changed rule in place of the job's file of the same name.
    let changed = dir.path().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    std::fs::copy(dir.path().join("v50.rhai"), changed.join("v.rhai")).unwrap();
    let file = changed.join("v.rhai");
    let out = replay(
        &jobs,
        &["--format", "json", "--rules", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let found = json(&out);
    assert_eq!(found["rules"], serde_json::json!([file.to_str().unwrap()]));
    assert_eq!(
        timeline(&found),
        pairs(&[
            ("2026-11-30T10:10:00Z", "v_high inactive → pending"),
            ("2026-11-30T10:10:30Z", "v_high pending → firing"),
            ("2026-11-30T10:15:00Z", "v_high firing → inactive"),
            ("2026-11-30T10:30:00Z", "v_high inactive → pending"),
            ("2026-11-30T10:30:30Z", "v_high pending → firing"),
            ("2026-11-30T10:40:00Z", "v_high firing → inactive"),
            ("2026-11-30T10:50:00Z", "v_high inactive → pending"),
            ("2026-11-30T10:50:10Z", "v_high pending → inactive"),
        ])
    );

    // Nothing was written: no alert log, state or rollups.
    assert!(!dir.path().join("var/alerts").exists());
    assert!(!dir.path().join("var/state").exists());
}

#[test]
fn compare_shows_what_the_change_would_have_done_alert_by_alert() {
    let (dir, jobs) = logged();
    let file = dir.path().join("v50.rhai");
    // Not the job's file name: it runs besides the job's rule, so `v_high` is raised by both.
    std::fs::write(&file, rule(50).replace("v_high", "v_warm")).unwrap();
    let out = replay(&jobs, &["--compare", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(concat!(
            "  alert   change  current                                          proposed                                                                                          what differs\n",
            "  v_high  same    2026-11-30 10:10:30–2026-11-30 10:15:00 warning  2026-11-30 10:10:30–2026-11-30 10:15:00 warning\n",
            "  v_warm  added   -                                                2026-11-30 10:10:30–2026-11-30 10:15:00 warning, 2026-11-30 10:30:30–2026-11-30 10:40:00 warning\n",
        )),
        "{text}"
    );
    assert!(
        text.contains("notifications: current 2, proposed 6; 1 alert differs"),
        "{text}"
    );

    // The job's file replaced: one alert, changed.
    let changed = dir.path().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    std::fs::write(changed.join("v.rhai"), rule(50)).unwrap();
    let file = changed.join("v.rhai");
    let out = replay(
        &jobs,
        &["--format", "json", "--compare", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = json(&out);
    assert_eq!(found["differs"], true);
    assert_eq!(found["current"]["notifications"], 2);
    assert_eq!(found["proposed"]["notifications"], 4);
    let rows = found["alerts"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["alert"], "v_high");
    assert_eq!(rows[0]["difference"], "changed");
    assert_eq!(
        rows[0]["notes"],
        serde_json::json!(["1 → 2 spells", "fires 9m30s longer", "notifications 2 → 4"])
    );
    let spells = |side: &str| -> Vec<(String, String)> {
        rows[0][side]["spells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["start"].as_str().unwrap().to_string(),
                    s["end"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        spells("current"),
        pairs(&[("2026-11-30T10:10:30Z", "2026-11-30T10:15:00Z")])
    );
    assert_eq!(
        spells("proposed"),
        pairs(&[
            ("2026-11-30T10:10:30Z", "2026-11-30T10:15:00Z"),
            ("2026-11-30T10:30:30Z", "2026-11-30T10:40:00Z"),
        ])
    );

    // The same rules on both sides: nothing differs, exit 0.
    let own = dir.path().join("rules/v.rhai");
    let out = replay(&jobs, &["--compare", own.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("notifications: current 2, proposed 2; 0 alerts differ"));
}

#[test]
fn a_changed_rule_that_does_not_compile_is_shown_where_it_is_and_not_replayed() {
    let (dir, jobs) = logged();
    let file = dir.path().join("bad.rhai");
    std::fs::write(&file, "alert(\"x\", #{ actve: command.v.value > 1 });\n").unwrap();
    let out = replay(&jobs, &["--compare", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.rhai:1:"), "{err}");
    assert!(err.contains("1 error: not replayed"), "{err}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn times_are_read_as_report_at_reads_them() {
    let (_dir, jobs) = logged();
    let out = run(&[
        "replay",
        "monitor",
        "--jobs",
        jobs.to_str().unwrap(),
        "--from",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "--from: `yesterday` is not a time: give `2026-11-30 08:00` (in UTC) or RFC 3339"
        ),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "replay",
        "monitor",
        "--jobs",
        jobs.to_str().unwrap(),
        "--from",
        "2026-11-30 11:00",
        "--to",
        "2026-11-30 10:00",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not after --from"));
}

/// The live monitor on a virtual clock for 20 minutes of 10 s ticks, its command probe reading
/// the spike pattern from a file; then `runner replay` of those minutes gives its alert log's
/// events, one for one, and the same instants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_period_the_monitor_ran_gives_its_alert_log_exactly() {
    use runner::scheduler::clock::{SharedClock, VirtualClock};
    let dir = tempfile::tempdir().unwrap();
    let value = dir.path().join("value.txt");
    let jobs = jobs_file(
        dir.path(),
        &JOBS.replace("cat value.txt", &format!("cat {}", value.display())),
    );
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    // A window function, so history must be what the live engine had at each tick.
    std::fs::write(
        dir.path().join("rules/v.rhai"),
        "let v = max(\"command.v.value\", \"20s\");\nalert(\"v_high\", #{ active: v > 80.0, value: v, threshold: 80.0, pending_for: \"30s\", severity: if v > 90.0 { \"critical\" } else { \"warning\" } });\n",
    )
    .unwrap();
    let config = Arc::new(runner::config::Config::load(&jobs).unwrap());
    let start = t("2026-11-30T10:05:00Z");
    let clock = VirtualClock::new(start);
    let shared: SharedClock = clock.clone();
    let notifiers = Arc::new(runner::notify::Notifiers::new(&config, shared.clone()));
    let job = runner::job::Job::new(config, "monitor", shared.clone(), notifiers);
    let mut at = start;
    while at < t("2026-11-30T10:25:00Z") {
        clock.set(at);
        std::fs::write(&value, format!("{}\n", value_at(at))).unwrap();
        let info = runner::scheduler::RunInfo {
            scheduled: at,
            started: at,
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        job.run_once(info).await.unwrap();
        at += Duration::seconds(10);
    }
    let logged: Vec<Value> =
        std::fs::read_to_string(dir.path().join("var/alerts/2026-11-30.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let kinds: Vec<(&str, &str)> = logged
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["at"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("firing", "2026-11-30T10:10:30Z"),
            ("resolved", "2026-11-30T10:15:10Z")
        ]
    );

    let out = run(&[
        "replay",
        "monitor",
        "--jobs",
        jobs.to_str().unwrap(),
        "--from",
        "2026-11-30T10:05:00Z",
        "--to",
        "2026-11-30T10:25:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let found = json(&out);
    assert_eq!(found["ticks"], 120);
    // Every field of every event: id (fingerprint, kind, instant), severity, value, words.
    assert_eq!(found["events"].as_array().unwrap(), &logged);
}

#[test]
fn archived_days_are_replayed_from_their_zip_archives_as_they_are() {
    use std::io::Write;
    let (dir, jobs) = logged();
    let live = replay(&jobs, &["--format", "json"]);
    let day = dir.path().join("var/metrics/2026-11-30.jsonl");
    let text = std::fs::read_to_string(&day).unwrap();
    let archive = dir.path().join("var/archive");
    std::fs::create_dir_all(&archive).unwrap();
    let mut zip =
        zip::ZipWriter::new(std::fs::File::create(archive.join("metrics-2026-11-30.zip")).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("metrics/2026-11-30.jsonl", options).unwrap();
    zip.write_all(text.as_bytes()).unwrap();
    zip.finish().unwrap();
    std::fs::remove_file(&day).unwrap();
    let archived = replay(&jobs, &["--format", "json"]);
    assert_eq!(archived.status.code(), Some(0), "{}", stderr(&archived));
    let (live, archived) = (json(&live), json(&archived));
    assert_eq!(archived["ticks"], 360);
    assert_eq!(archived["warm_samples"], 360);
    assert_eq!(archived["timeline"], live["timeline"]);
    assert_eq!(archived["events"], live["events"]);
    // Nothing was unpacked beside the archive.
    assert_eq!(std::fs::read_dir(&archive).unwrap().count(), 1);
}

#[test]
fn json_is_the_issues_spelling_of_format_json() {
    let (_dir, jobs) = logged();
    let spelled = replay(&jobs, &["--format", "json"]);
    let short = replay(&jobs, &["--json"]);
    assert_eq!(short.status.code(), Some(0), "{}", stderr(&short));
    assert_eq!(json(&short), json(&spelled));
    // Saying both is a usage error, not one silently winning.
    let both = replay(&jobs, &["--json", "--format", "text"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let help = stdout(&run(&["replay", "--help"]));
    assert!(help.contains("--json"), "{help}");
}

/// Replay steps the job's real rules and alerts over the log, but runs no action: a rule whose
/// alert fires in the period names an action that would leave a marker file.
#[test]
fn replay_never_runs_an_action() {
    let (dir, _) = logged();
    let marker = dir.path().join("ran.marker");
    let jobs = jobs_file(
        dir.path(),
        &format!(
            "actions:\n  restart_v: {{ command: [\"sh\", \"-c\", \"echo ran >> {}\"], timeout: 10s }}\n{JOBS}",
            marker.display()
        ),
    );
    std::fs::write(
        dir.path().join("rules/v.rhai"),
        rule(80).replace(
            "pending_for: \"30s\",",
            "pending_for: \"30s\", action: \"restart_v\",",
        ),
    )
    .unwrap();
    let out = run(&["--jobs", jobs.to_str().unwrap(), "check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = replay(&jobs, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let found = json(&out);
    let kinds: Vec<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["firing", "resolved"]);
    // It says which action the live scheduler would have run, and when.
    let actions = found["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["at"], "2026-11-30T10:10:30Z");
    assert_eq!(actions[0]["alert"], "v_high");
    assert_eq!(actions[0]["action"], "restart_v");
    assert_eq!(actions[0]["command"][0], "sh");
    // The text output too, which replays the same period again.
    let out = replay(&jobs, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("v_high: would run action `restart_v` (sh -c echo ran >> "),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("; not run by replay"),
        "{}",
        stdout(&out)
    );
    assert!(!marker.exists(), "replay ran the action");
    assert!(!dir.path().join("var/alerts").exists());

    // A maintenance window over the spike's start holds its firing notice back as live, so
    // the scheduler would have run nothing then; it fires on at the window's end and runs it.
    let jobs = jobs_file(
        dir.path(),
        &format!(
            "maintenance:\n  - {{ name: spike, schedule: \"10 10 * * *\", duration: 2m, match: {{ alertname: v_high }} }}\nactions:\n  restart_v: {{ command: [\"sh\", \"-c\", \"echo ran >> {}\"], timeout: 10s }}\n{JOBS}",
            marker.display()
        ),
    );
    let out = replay(&jobs, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let actions = json(&out)["actions"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["at"], "2026-11-30T10:12:00Z");
    assert!(!marker.exists(), "replay ran the action");
    // The held firing is no notification: one firing (at the window's end) and one resolved.
    let out = replay(&jobs, &["--format", "json"]);
    let found = json(&out);
    let notified = |name: &str| {
        found["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["alert"] == name)
            .map(|a| a["notifications"].clone())
    };
    assert_eq!(notified("v_high"), Some(2.into()), "{found:#}");
}
