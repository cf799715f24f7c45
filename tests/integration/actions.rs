//! Alerts' actions in the real binary: a running scheduler runs the action once when the alert
//! fires (its cooldown keeps the repeats and a second spell from running it again), with the
//! alert in its environment, and puts the outcome in the alert log; `runner dry-run` says
//! which action would run and runs none; `runner check` points at a bad `actions:` entry.

use crate::http_server::{Response, TestServer};
use crate::notify::scripted;
use crate::support::{PATIENCE, Running, command, jobs_file, run, stderr, stdout};

/// A monitor ticking every second whose alert `v_high` fires while `value.txt` holds more than
/// 50 and runs action `act`, which appends the alert's name and host label to `ran.txt`.
fn setup(dir: &std::path::Path, server: &TestServer, act: &str) -> String {
    let value = dir.join("value.txt");
    std::fs::write(&value, "0\n").unwrap();
    std::fs::write(
        dir.join("v.rhai"),
        "let v = command.v.value;\nalert(\"v_high\", #{ active: v > 50.0, value: v, threshold: 50.0, op: \">\", labels: #{ svc: \"web\" }, repeat_interval: \"1s\", action: \"act\" });\n",
    )
    .unwrap();
    let body = format!(
        "actions:\n  act: {act}\nnotifiers:\n  hook: {{ type: webhook, url: \"{}\", retry_initial: 50ms }}\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: command, name: v, shell: \"cat {}\" }}]\n    rules: [\"{}\"]\n    notify: [log, hook]\n",
        server.url("/in"),
        value.display(),
        dir.join("v.rhai").display()
    );
    jobs_file(dir, &body).to_str().unwrap().to_string()
}

fn appends_to(file: &std::path::Path) -> String {
    format!(
        "{{ command: [\"sh\", \"-c\", \"echo \\\"$ALERT_NAME $ALERT_LABEL_SVC $ALERT_VALUE\\\" >> {}; echo restarted\"], timeout: 30s, cooldown: 10m, max_per_hour: 3 }}",
        file.display()
    )
}

fn alert_log(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir.join("var/alerts")) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_firing_alert_runs_its_action_once_per_spell_under_its_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, &appends_to(&ran));
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);

    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    let said = running.wait_for_line("action ran", PATIENCE);
    assert!(said.contains("act: exit 0 in"), "{said}");
    assert!(said.contains("(restarted)"), "{said}");
    // Repeats every second run nothing: the action is run on firing only.
    for _ in 0..3 {
        running.wait_for_line("run finished", PATIENCE);
    }
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "v_high web 93\n");
    // The next notice of the spell says what the action did.
    let repeat = alert_log(dir.path())
        .into_iter()
        .rfind(|e| e["kind"] == "repeat")
        .expect("a repeat in the alert log");
    assert_eq!(repeat["action"]["action"], "act");
    assert_eq!(repeat["action"]["exit"], 0);
    assert_eq!(repeat["action"]["first_line"], "restarted");
    assert!(
        repeat["explanation"]
            .as_str()
            .unwrap()
            .contains("; act: exit 0 in "),
        "{repeat}"
    );

    // A second spell inside the 10 minute cooldown runs nothing.
    std::fs::write(dir.path().join("value.txt"), "0\n").unwrap();
    running.wait_for_line("alert inactive", PATIENCE);
    std::fs::write(dir.path().join("value.txt"), "94\n").unwrap();
    let said = running.wait_for_line("action not run", PATIENCE);
    assert!(said.contains("in its cooldown"), "{said}");
    running.wait_for_line("run finished", PATIENCE);
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "v_high web 93\n");
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

/// Waits for the alert log's `action_failed` event and the webhook's notice of it.
fn failure_event_and_notice(
    dir: &std::path::Path,
    server: &TestServer,
) -> (serde_json::Value, serde_json::Value) {
    crate::notify::block_on_wait(PATIENCE, "the webhook's action_failed notice", || {
        server
            .requests()
            .iter()
            .any(|r| r.json()["type"] == "alert.action_failed")
    });
    let notice = server
        .requests()
        .into_iter()
        .map(|r| r.json())
        .find(|b| b["type"] == "alert.action_failed")
        .unwrap();
    let logged = alert_log(dir)
        .into_iter()
        .filter(|e| e["kind"] == "action_failed")
        .collect::<Vec<_>>();
    assert_eq!(logged.len(), 1, "{logged:?}");
    (logged[0].clone(), notice)
}

#[test]
fn a_failing_action_is_an_event_of_its_own_sent_to_the_notifiers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(
        dir.path(),
        &server,
        "{ command: [\"sh\", \"-c\", \"echo unit not found >&2; exit 3\"] }",
    );
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    let said = running.wait_for_line("action failed", PATIENCE);
    assert!(said.contains("ERROR"), "{said}");
    assert!(said.contains("act: exit 3 in"), "{said}");
    assert!(said.contains("(unit not found)"), "{said}");
    let (logged, notice) = failure_event_and_notice(dir.path(), &server);
    assert_eq!(logged["name"], "v_high");
    assert_eq!(logged["labels"]["svc"], "web");
    assert_eq!(logged["action"]["action"], "act");
    assert_eq!(logged["action"]["exit"], 3);
    assert_eq!(logged["action"]["first_line"], "unit not found");
    assert!(logged["action"]["duration_ms"].is_u64(), "{logged}");
    assert!(
        logged["explanation"]
            .as_str()
            .unwrap()
            .starts_with("action failed: act: exit 3 in "),
        "{logged}"
    );
    // The notice is the logged event, as the webhook sends every event.
    assert_eq!(notice["data"], logged);
    // The firing notice went too, before it.
    let kinds: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_string())
        .collect();
    let firing = kinds.iter().position(|k| k == "alert.firing");
    let failed = kinds.iter().position(|k| k == "alert.action_failed");
    assert!(firing.is_some() && firing < failed, "{kinds:?}");
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

/// Real time: the action must outlive its 1 s timeout.
#[test]
fn a_hung_action_killed_at_its_timeout_is_an_event_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(
        dir.path(),
        &server,
        "{ command: [\"sh\", \"-c\", \"echo restarting; exec sleep 100\"], timeout: 1s }",
    );
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    let said = running.wait_for_line("action failed", PATIENCE);
    assert!(said.contains("act: killed at its timeout of 1 s"), "{said}");
    let (logged, notice) = failure_event_and_notice(dir.path(), &server);
    assert_eq!(logged["action"]["exit"], serde_json::Value::Null);
    assert_eq!(logged["action"]["failure"], "killed at its timeout of 1 s");
    assert_eq!(logged["action"]["first_line"], "restarting");
    assert!(
        logged["action"]["duration_ms"].as_u64().unwrap() >= 1000,
        "{logged}"
    );
    assert_eq!(notice["data"], logged);
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn dry_run_says_which_action_would_run_and_runs_none() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, &appends_to(&ran));
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    let out = run(&["--jobs", &file, "dry-run", "m"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("firing v_high: would run action `act` (sh -c "),
        "{text}"
    );
    assert!(text.contains("not run by dry-run"), "{text}");
    assert!(!ran.exists(), "dry-run ran the action");
}

#[test]
fn check_points_at_a_bad_action() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(
        dir.path(),
        &server,
        "{ command: [], timeout: soon, max_per_hour: 0, on: resolved }",
    );
    let out = run(&["--jobs", &file, "check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("actions.act.command"), "{text}");
    // The rule names `act`, which the file has, broken: no "unknown action" besides.
    assert!(!text.contains("unknown action"), "{text}");
    assert!(text.contains("actions.act.timeout"), "{text}");
    assert!(text.contains("`max_per_hour` must be at least 1"), "{text}");
    assert!(
        text.contains("`on` is `firing` or `repeat`, not `resolved`"),
        "{text}"
    );
    // An empty program name is no program either.
    let file = setup(dir.path(), &server, "{ command: [\"\", \"x\"] }");
    let out = run(&["--jobs", &file, "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`command` must name a program"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn runner_test_asserts_the_action_and_runs_none() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let jobs = setup(dir.path(), &server, &appends_to(&ran));
    let test = |want: &str| {
        format!(
            "rules: [v.rhai]\njobs: {jobs}\njob: m\nscenarios:\n  - name: v goes high\n    interval: 1s\n    start: \"2026-11-23T09:00:00Z\"\n    input:\n      command.v.value: \"0 93x3\"\n    tests:\n      - at: 1s\n        events:\n          - alert: v_high\n            kind: firing\n            action: {want}\n"
        )
    };
    std::fs::write(dir.path().join("v.test.yaml"), test("act")).unwrap();
    let out = command(&["test", "v.test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    std::fs::write(dir.path().join("v.test.yaml"), test("none")).unwrap();
    let out = command(&["test", "v.test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("v_high firing: action: expected none, got act"),
        "{}",
        stdout(&out)
    );
    assert!(!ran.exists(), "runner test ran the action");
}

/// `runner test` counts the runs as the scheduler does: a second spell 8 minutes after the
/// first run, inside the action's 10 minute cooldown, runs nothing.
#[test]
fn runner_test_holds_a_run_back_in_the_actions_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let jobs = setup(dir.path(), &server, &appends_to(&ran));
    let test = |second: &str| {
        format!(
            "rules: [v.rhai]\njobs: {jobs}\njob: m\nscenarios:\n  - name: two spells\n    interval: 4m\n    start: \"2026-11-23T09:00:00Z\"\n    input:\n      command.v.value: \"0 93 0 93\"\n    tests:\n      - at: 4m\n        events:\n          - {{ alert: v_high, kind: firing, action: act }}\n      - at: 12m\n        events:\n          - {{ alert: v_high, kind: resolved }}\n          - {{ alert: v_high, kind: firing, action: {second} }}\n"
        )
    };
    let run_test = |second: &str| {
        std::fs::write(dir.path().join("v.test.yaml"), test(second)).unwrap();
        command(&["test", "v.test.yaml"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run_test("none");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = run_test("act");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("v_high firing: action: expected act, got none"),
        "{}",
        stdout(&out)
    );
    assert!(!ran.exists(), "runner test ran the action");
}

#[test]
fn check_points_at_an_action_a_rule_names_that_actions_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "{ command: [\"true\"] }");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("  act: ", "  restart_web: ")).unwrap();
    let out = run(&["--jobs", &file, "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stderr(&out);
    assert!(
        text.contains("unknown action `act` (known: restart_web)"),
        "{text}"
    );
    assert!(text.contains("v.rhai:2:"), "{text}");
}

#[test]
fn the_report_lists_the_actions_taken_in_its_window_once_per_spell() {
    let dir = tempfile::tempdir().unwrap();
    let templates = crate::support::root().join("templates/weekly.md.hbs");
    let jobs = jobs_file(
        dir.path(),
        &format!(
            "jobs:\n  weekly: {{ type: report, schedule: \"0 8 * * Mon\", window: 7d, templates: [\"{}\"] }}\n",
            templates.display()
        ),
    );
    let alerts = dir.path().join("var/alerts");
    std::fs::create_dir_all(&alerts).unwrap();
    let event = |kind: &str, at: &str, since: &str, action: Option<serde_json::Value>| {
        let mut e = serde_json::json!({
            "schema_version": 1, "id": format!("web_down-{kind}-{at}"), "kind": kind,
            "fingerprint": "fp", "name": "web_down", "labels": {}, "severity": "critical",
            "summary": "web down", "description": "", "value": 0.0, "threshold": 1.0,
            "explanation": "", "active_since": since, "at": at, "host": "h", "job": "m",
            "rule_file": "r.rhai"
        });
        if let Some(action) = action {
            e["action"] = action;
        }
        e.to_string()
    };
    let ok = serde_json::json!({"action": "restart_web", "exit": 0, "duration_ms": 1200, "first_line": "restarted"});
    let failed = serde_json::json!({"action": "restart_web", "duration_ms": 30000, "failure": "killed at its timeout of 30 s"});
    let exit3 = serde_json::json!({"action": "restart_web", "exit": 3, "duration_ms": 40, "first_line": "unit not found"});
    std::fs::write(
        alerts.join("2027-03-25.jsonl"),
        [
            event(
                "firing",
                "2027-03-25T09:00:00Z",
                "2027-03-25T09:00:00Z",
                None,
            ),
            event(
                "repeat",
                "2027-03-25T13:00:00Z",
                "2027-03-25T09:00:00Z",
                Some(ok.clone()),
            ),
            event(
                "resolved",
                "2027-03-25T14:00:00Z",
                "2027-03-25T09:00:00Z",
                Some(ok),
            ),
            event(
                "firing",
                "2027-03-25T20:00:00Z",
                "2027-03-25T20:00:00Z",
                None,
            ),
            event(
                "resolved",
                "2027-03-25T21:00:00Z",
                "2027-03-25T20:00:00Z",
                Some(failed),
            ),
            // A failure is an event of its own, which no later event of its spell follows
            // in the window.
            event(
                "firing",
                "2027-03-26T09:00:00Z",
                "2027-03-26T09:00:00Z",
                None,
            ),
            event(
                "action_failed",
                "2027-03-26T09:00:01Z",
                "2027-03-26T09:00:00Z",
                Some(exit3),
            ),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let file = jobs.to_str().unwrap();
    let out = run(&[
        "report",
        "--jobs",
        file,
        "--at",
        "2027-03-29 08:00",
        "--summary",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let actions = summary["muted"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert_eq!(actions[0]["ok"], true);
    assert_eq!(actions[1]["ok"], false);
    assert_eq!(actions[2]["ok"], false);
    // The failure is no step of the alert's life: three spells fired, one still firing.
    assert_eq!(summary["alerts"]["fired"], 3, "{}", summary["alerts"]);
    assert_eq!(summary["alerts"]["bad_lines"], 0);
    assert_eq!(
        summary["alerts"]["still_firing"].as_array().unwrap().len(),
        1
    );
    let out = run(&["report", "--jobs", file, "--at", "2027-03-29 08:00"]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "- web_down (firing from 2027-03-25 09:00): restart_web: exit 0 in 1.2 s (restarted)"
        ),
        "{text}"
    );
    assert!(
        text.contains("- web_down (firing from 2027-03-25 20:00): FAILED restart_web: killed at its timeout of 30 s after 30.0 s"),
        "{text}"
    );
    assert!(
        text.contains("- web_down (firing from 2027-03-26 09:00): FAILED restart_web: exit 3 in 0.0 s (unit not found)"),
        "{text}"
    );
}

/// Real time: the action outlives several ticks.
#[test]
fn a_slow_action_runs_off_the_tick_and_goes_when_runner_stops() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("action.pid");
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(
        dir.path(),
        &server,
        &format!(
            "{{ command: [\"sh\", \"-c\", \"echo $$$$ > {}; exec sleep 100\"], timeout: 10m }}",
            pid_file.display()
        ),
    );
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    running.wait_for_line("alert firing", PATIENCE);
    // Ticks go on every second while the action sleeps for 100 s.
    for _ in 0..3 {
        running.wait_for_line("run finished", PATIENCE);
    }
    crate::notify::block_on_wait(PATIENCE, "the action's pid", || pid_file.exists());
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
    // runner kills the groups of the commands it started on its way out.
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
        })
    };
    crate::notify::block_on_wait(PATIENCE, "the action gone", gone);
}

#[test]
fn a_changed_action_needs_a_restart_and_a_reload_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "{ command: [\"true\"], timeout: 30s }");
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("timeout: 30s", "timeout: 1m")).unwrap();
    let out = run(&["--jobs", &file, "reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("`actions` changed: that needs a restart"),
        "{said}"
    );
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}
