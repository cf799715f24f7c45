//! Notifiers in the real binary: killed with notifications queued, restarted, nothing lost or
//! sent twice; a ServiceNow incident's number kept in the alert state and shown in later
//! messages; `runner dry-run` printing the exact payloads.

use std::time::Duration;

use crate::fake_servicenow::FakeServiceNow;
use crate::http_server::TestServer;
use crate::notify::{scripted, slack_ok};
use crate::support::{PATIENCE, Running, command, jobs_file, root, run, stderr, stdout};

fn rule(dir: &std::path::Path, options: &str) -> std::path::PathBuf {
    let path = dir.join("seen.rhai");
    std::fs::write(
        &path,
        format!(
            "if memory.used_percent >= 0.0 {{\n    alert(\"memory_seen\", #{{ severity: \"critical\", value: memory.used_percent, threshold: 0, op: \">=\", summary: \"memory is measured\"{options} }});\n}}\n"
        ),
    )
    .unwrap();
    path
}

fn monitor(notifiers: &str, rule: &std::path::Path, notify: &str) -> String {
    format!(
        "notifiers:\n{notifiers}jobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: memory }}]\n    rules: [\"{}\"]\n    notify: [{notify}]\n",
        rule.display()
    )
}

/// The notifiers line of a webhook notifier `hook` posting to `server`'s `/in`.
fn hook_notifier(server: &TestServer) -> String {
    format!(
        "  hook: {{ type: webhook, url: \"{}\", retry_initial: 50ms }}\n",
        server.url("/in")
    )
}

/// The event ids of the firing notices `server` received, in the order they came.
fn firing_ids(server: &TestServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|body| body["type"] == "alert.firing")
        .map(|body| body["data"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn killed_with_a_notification_queued_then_restarted_it_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let notifiers = format!(
        "  slack: {{ type: slack, webhook_url: \"http://{addr}/services/T/B/x\", group_wait: 0s, retry_initial: 50ms, retry_max: 100ms }}\n"
    );
    let file = jobs_file(
        dir.path(),
        &monitor(&notifiers, &rule(dir.path(), ""), "log, slack"),
    );
    let file = file.to_str().unwrap();
    let mut first = Running::spawn(command(&["--jobs", file]));
    first.wait_for_line("memory is measured", PATIENCE);
    first.wait_for_line("delivery failed", PATIENCE);
    first.signal("KILL");
    first.wait_exit(PATIENCE);
    let queued = std::fs::read_to_string(dir.path().join("var/outbox/slack.jsonl")).unwrap();
    assert_eq!(queued.lines().count(), 1, "{queued}");

    let server = TestServer::start_at(addr, scripted(vec![], slack_ok()));
    let mut second = Running::spawn(command(&["--jobs", file, "-v"]));
    for _ in 0..3 {
        second.wait_for_line("run finished", PATIENCE);
    }
    second.signal("TERM");
    assert_eq!(second.wait_exit(PATIENCE).0, Some(0));
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "delivered once: {:?}",
        requests.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
    let body = requests[0].json();
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        ":rotating_light: [CRITICAL] memory is measured"
    );
}

#[test]
fn an_incident_number_is_kept_in_the_alert_state_and_shown_in_later_messages() {
    let dir = tempfile::tempdir().unwrap();
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    let slack = TestServer::start(scripted(vec![], slack_ok()));
    let notifiers = format!(
        "  sn: {{ type: servicenow, instance: \"{}\", username: admin, password: \"${{SN_PASSWORD}}\", retry_initial: 50ms }}\n  slack: {{ type: slack, webhook_url: \"{}\", group_wait: 0s, max_per_second: 100 }}\n",
        sn.url(),
        slack.url("/hook")
    );
    let rule = rule(dir.path(), ", repeat_interval: \"2s\"");
    let file = jobs_file(dir.path(), &monitor(&notifiers, &rule, "log, sn, slack"));
    let mut cmd = command(&["--jobs", file.to_str().unwrap()]);
    cmd.env("SN_PASSWORD", "pw");
    let mut running = Running::spawn(cmd);
    running.wait_for_line("incident INC0010001 created", PATIENCE);
    crate::notify::block_on_wait(
        Duration::from_secs(10),
        "a message with the incident",
        || {
            slack
                .requests()
                .iter()
                .any(|r| r.text().contains("INC0010001"))
        },
    );
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
    assert_eq!(sn.incidents().len(), 1);
    let state = std::fs::read_to_string(dir.path().join("var/state/alerts/m.json")).unwrap();
    assert!(state.contains("INC0010001"), "{state}");
    assert!(
        !running
            .seen
            .iter()
            .any(|l| l.contains("pw@") || l.contains("password")),
        "{:?}",
        running.seen
    );

    // A restart finds the incident instead of opening another.
    let mut cmd = command(&["--jobs", file.to_str().unwrap()]);
    cmd.env("SN_PASSWORD", "pw");
    let mut again = Running::spawn(cmd);
    again.wait_for_line("incident INC0010001 already open", PATIENCE);
    again.signal("TERM");
    again.wait_exit(PATIENCE);
    assert_eq!(sn.incidents().len(), 1, "no second incident");
}

#[test]
fn dry_run_prints_each_notifiers_payload_without_secrets_or_sending() {
    let dir = tempfile::tempdir().unwrap();
    let slack = TestServer::start(scripted(vec![], slack_ok()));
    let notifiers = format!(
        "  slack: {{ type: slack, webhook_url: \"{}\" }}\n  hook: {{ type: webhook, url: \"{}\" }}\n",
        slack.url("/services/T0/B0/very-secret"),
        slack.url("/in?token=also-secret")
    );
    let file = jobs_file(
        dir.path(),
        &monitor(
            &notifiers,
            &root().join("tests/fixtures/rules/always.rhai"),
            "log, slack, hook",
        ),
    );
    let output = run(&["dry-run", "m", "--jobs", file.to_str().unwrap()]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(out.contains("-> log, slack, hook"), "{out}");
    assert!(
        out.contains(&format!("slack: POST {}", slack.url(""))),
        "{out}"
    );
    assert!(out.contains("\"type\": \"header\""), "{out}");
    assert!(out.contains("hook: POST"), "{out}");
    assert!(out.contains("\"type\": \"alert.firing\""), "{out}");
    assert!(!out.contains("secret"), "{out}");
    assert!(slack.requests().is_empty(), "a dry run sent something");
    assert!(
        !dir.path().join("var/outbox").exists(),
        "a dry run wrote the outbox"
    );
}

/// Stops runner with SIGKILL at each step of the tick that raises an alert (after its journal,
/// after the alert log append, after the outbox append, after the state write), restarts it,
/// and counts: the receiver hears of the alert once, and the alert log says it fired once.
#[test]
fn a_kill_at_any_step_of_an_alert_tick_neither_loses_nor_repeats_its_notice() {
    for step in [
        "after-journal",
        "after-alert-log",
        "after-outbox",
        "after-state",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let hook = TestServer::start(scripted(vec![], crate::http_server::Response::new(200, "")));
        let notifiers = hook_notifier(&hook);
        let file = jobs_file(
            dir.path(),
            &monitor(&notifiers, &rule(dir.path(), ""), "log, hook"),
        );
        let file = file.to_str().unwrap();
        let mut cmd = command(&["--jobs", file]);
        cmd.env("RUNNER_FAILPOINT", step);
        let mut first = Running::spawn(cmd);
        let (code, _) = first.wait_exit(PATIENCE);
        assert_eq!(code, None, "{step}: killed by the failpoint");

        let mut second = Running::spawn(command(&["--jobs", file, "-v"]));
        for _ in 0..3 {
            second.wait_for_line("run finished", PATIENCE);
        }
        crate::notify::block_on_wait(PATIENCE, "the notice", || !hook.requests().is_empty());
        second.signal("TERM");
        assert_eq!(second.wait_exit(PATIENCE).0, Some(0));
        let mut firing = firing_ids(&hook);
        // A kill while a POST is on the wire may send it again after the restart, with the
        // same webhook-id, which receivers drop (at-least-once); never a second event.
        firing.dedup();
        assert_eq!(firing.len(), 1, "{step}: one firing notice, got {firing:?}");
        let day = std::fs::read_dir(dir.path().join("var/alerts"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<String>();
        let logged: Vec<&str> = day
            .lines()
            .filter(|l| l.contains("\"kind\":\"firing\""))
            .collect();
        assert_eq!(logged.len(), 1, "{step}: logged once: {day}");
        assert!(logged[0].contains(&firing[0]), "{step}: the same event");
        assert!(
            !dir.path().join("var/state/alerts/m.journal").exists(),
            "{step}: the tick was finished"
        );
    }
}

#[test]
fn notify_test_sends_a_marked_test_alert_that_fires_and_resolves_and_says_how_it_went() {
    let server =
        crate::http_server::TestServer::start(|_| crate::http_server::Response::new(200, "ok"));
    let refusing = crate::http_server::TestServer::start(|_| {
        crate::http_server::Response::new(401, "{\"error\":\"bad token\"}")
    });
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "notifiers:\n  hook: {{ type: webhook, url: \"{}\" }}\n  wrong: {{ type: webhook, url: \"{}\" }}\n  slack: {{ type: slack, webhook_url: \"${{NOTIFY_TEST_UNSET:-}}\" }}\njobs:\n  m: {{ type: monitor, schedule: \"@every 1m\", probes: [{{ type: load }}], notify: [hook, wrong, slack] }}\n",
            server.url("/hook"),
            refusing.url("/hook")
        ),
    );
    let jobs = file.to_str().unwrap();
    let output = crate::support::run(&["notify-test", "hook", "--jobs", jobs]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let (fired, resolved) = (requests[0].json(), requests[1].json());
    assert_eq!(fired["type"], "alert.firing", "{fired}");
    assert_eq!(resolved["type"], "alert.resolved", "{resolved}");
    assert!(
        fired
            .to_string()
            .contains("[TEST] runner notify-test from "),
        "{fired}"
    );
    assert!(crate::support::stderr(&output).contains("hook: test firing delivered"));

    let output = crate::support::run(&["notify-test", "wrong", "--jobs", jobs]);
    assert_eq!(output.status.code(), Some(1));
    let err = crate::support::stderr(&output);
    assert!(
        err.contains("wrong: test firing refused") && err.contains("401"),
        "{err}"
    );
    assert_eq!(
        refusing.requests().len(),
        1,
        "the resolve is not sent after a refusal"
    );

    let output = crate::support::run(&["notify-test", "slack", "--jobs", jobs]);
    assert_eq!(output.status.code(), Some(1));
    assert!(crate::support::stderr(&output).contains("notifier `slack` is off"));
    let output = crate::support::run(&["notify-test", "nope", "--jobs", jobs]);
    assert_eq!(output.status.code(), Some(2));
    assert!(crate::support::stderr(&output).contains("notifiers: hook, wrong, slack"));
}

/// A rule that raises five alerts at once: a tick of five notices.
fn five_alerts(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("five.rhai");
    std::fs::write(
        &path,
        "if memory.used_percent >= 0.0 {\n    for i in 0..5 {\n        alert(\"five\", #{ severity: \"critical\", labels: #{ n: `${i}` }, summary: `notice ${i}` });\n    }\n}\n",
    )
    .unwrap();
    path
}

/// Every line of the day files under `var/<kind>`, and how many of them are not JSON.
fn log_lines(dir: &std::path::Path, kind: &str) -> (Vec<serde_json::Value>, usize) {
    let mut good = Vec::new();
    let mut bad = 0;
    for entry in std::fs::read_dir(dir.join("var").join(kind)).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for line in String::from_utf8_lossy(&bytes).lines() {
            match serde_json::from_str(line) {
                Ok(v) => good.push(v),
                Err(_) => bad += 1,
            }
        }
    }
    (good, bad)
}

/// `runner run m` once with `point` set (a write cut in half, then a kill), then once without:
/// the five notices of the tick reach the webhook once each, none is a dead letter, and the
/// alert log holds each once.
fn torn_write_then_restart(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let hook = TestServer::start(scripted(vec![], crate::http_server::Response::new(200, "")));
    let notifiers = hook_notifier(&hook);
    let file = jobs_file(
        dir.path(),
        &monitor(&notifiers, &five_alerts(dir.path()), "hook"),
    );
    let file = file.to_str().unwrap();
    let mut cmd = command(&["run", "m", "--jobs", file]);
    cmd.env("RUNNER_FAILPOINT", point);
    let output = cmd.output().unwrap();
    assert_eq!(
        output.status.code(),
        None,
        "{point}: killed by the failpoint"
    );

    let output = run(&["run", "m", "--jobs", file]);
    let err = stderr(&output);
    let mut ids = firing_ids(&hook);
    ids.sort();
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        5,
        "{point}: all five notices: {ids:?}\n{err}"
    );
    assert_eq!(ids.len(), 5, "{point}: each once: {ids:?}");
    let dead = dir.path().join("var/outbox/dead/hook.jsonl");
    assert!(
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .is_empty(),
        "{point}: nothing dead: {}",
        std::fs::read_to_string(&dead).unwrap_or_default()
    );
    let (logged, _) = log_lines(dir.path(), "alerts");
    let mut logged: Vec<String> = logged
        .iter()
        .filter(|e| e["kind"] == "firing")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    logged.sort();
    assert_eq!(logged, ids, "{point}: the alert log holds each notice once");
    assert!(err.contains("torn"), "{point}: the repair is said: {err}");
}

#[test]
fn an_outbox_append_torn_by_a_kill_is_queued_again_whole() {
    torn_write_then_restart("torn-outbox");
}

#[test]
fn an_alert_log_append_torn_by_a_kill_is_written_again_whole() {
    torn_write_then_restart("torn-alerts");
}

/// A sample torn by a kill does not take the next one with it: the next run fences it off.
#[test]
fn a_metrics_log_append_torn_by_a_kill_costs_only_that_sample() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &monitor(
            "  hook: { type: webhook, url: \"http://127.0.0.1:9/in\" }\n",
            &rule(dir.path(), ""),
            "log",
        ),
    );
    let file = file.to_str().unwrap();
    let mut cmd = command(&["run", "m", "--jobs", file]);
    cmd.env("RUNNER_FAILPOINT", "torn-metrics");
    assert_eq!(cmd.output().unwrap().status.code(), None, "killed");
    for _ in 0..2 {
        let output = run(&["run", "m", "--jobs", file]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let (samples, bad) = log_lines(dir.path(), "metrics");
    assert_eq!(samples.len(), 2, "both later samples are whole");
    assert_eq!(bad, 1, "the torn one is one unreadable line");
}

/// A kill while the tick saves its state must not catch the tick's notice on the wire. The
/// delivery loop is made busy elsewhere when the tick queues: a notice an earlier run left
/// queued is on the wire, held by the destination until the tick (made slow by `slow-tick`)
/// has queued its resolved notice, then answered; the answer wakes the loop on the worker the
/// tick does not occupy, and before delivery waited for the state save it sent the resolved
/// notice at once. The destination holds that one open, the kill at `after-state` comes, and
/// the restart sent it again: two resolved notices (6 runs of 6 on the code before
/// `hold_delivery`, given the `slow-tick` pause point). Now the loop waits for the save, the
/// kill finds the notice queued and not sent, and the restart sends it once.
#[test]
fn a_kill_while_the_tick_saves_its_state_does_not_repeat_the_notice() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    // 0: the first run, down; 1: the killed run; 2: the restart, up.
    let stage = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let hook = {
        let (stage, release, seen) = (stage.clone(), release.clone(), seen.clone());
        TestServer::start(move |request| {
            let stage = stage.load(Ordering::SeqCst);
            let kind = request.json()["type"].as_str().unwrap_or("").to_string();
            seen.lock().unwrap().push((stage, kind.clone()));
            match (stage, kind.as_str()) {
                (0, _) => crate::http_server::Response::new(503, "down"),
                (1, "alert.firing") => {
                    let start = std::time::Instant::now();
                    while !release.load(Ordering::SeqCst) && start.elapsed() < PATIENCE {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    crate::http_server::Response::new(200, "")
                }
                (1, _) => crate::http_server::Response::hang(),
                _ => crate::http_server::Response::new(200, ""),
            }
        })
    };
    let notifiers = hook_notifier(&hook);
    let rule = rule(dir.path(), "");
    // A second job due at every tick: its run, spawned with the monitor's, wakes the other
    // worker, which then serves the runtime's I/O while the tick holds its own (without it,
    // that worker may sleep through the tick and nothing is delivered during it at all).
    let rotate = "  rot:\n    type: rotate\n    schedule: \"@every 1s\"\n    paths: [logs/*.log]\n    max_age: 7d\n";
    let file = jobs_file(dir.path(), &(monitor(&notifiers, &rule, "hook") + rotate));
    let file = file.to_str().unwrap();
    let var = dir.path().join("var");

    // The first run fires the alert; the destination is down, so the notice stays queued.
    let mut first = Running::spawn(command(&["--jobs", file]));
    crate::notify::block_on_wait(PATIENCE, "a failed delivery", || {
        !seen.lock().unwrap().is_empty()
    });
    crate::notify::block_on_wait(PATIENCE, "the tick's state saved", || {
        var.join("state/alerts/m.json").exists() && !var.join("state/alerts/m.journal").exists()
    });
    first.signal("KILL");
    first.wait_exit(PATIENCE);

    // The killed run sends that notice, held on the wire; then the rule stops raising the
    // alert, and the tick that resolves it is killed once it saved its state.
    stage.store(1, Ordering::SeqCst);
    let mut cmd = command(&["--jobs", file]);
    cmd.env("RUNNER_FAILPOINT", "slow-tick,after-state");
    let mut second = Running::spawn(cmd);
    crate::notify::block_on_wait(PATIENCE, "the queued notice on the wire", || {
        seen.lock().unwrap().iter().any(|(s, _)| *s == 1)
    });
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(&rule, text.replace(">= 0.0", "< 0.0")).unwrap();
    second.signal("HUP");
    let outbox = var.join("outbox/hook.jsonl");
    crate::notify::block_on_wait(PATIENCE, "the resolved notice queued", || {
        std::fs::read_to_string(&outbox).is_ok_and(|q| q.contains("\"resolved\""))
    });
    release.store(true, Ordering::SeqCst);
    assert_eq!(
        second.wait_exit(PATIENCE).0,
        None,
        "killed by the failpoint"
    );

    stage.store(2, Ordering::SeqCst);
    let mut third = Running::spawn(command(&["--jobs", file, "-v"]));
    crate::notify::block_on_wait(PATIENCE, "the resolved notice", || {
        seen.lock().unwrap().iter().any(|(s, _)| *s == 2)
    });
    for _ in 0..2 {
        third.wait_for_line("run finished", PATIENCE);
    }
    third.signal("TERM");
    assert_eq!(third.wait_exit(PATIENCE).0, Some(0));
    let seen = seen.lock().unwrap().clone();
    let count = |stage: Option<usize>, kind: &str| {
        seen.iter()
            .filter(|(s, k)| stage.is_none_or(|want| *s == want) && k == kind)
            .count()
    };
    // The setup held: the queued firing notice was answered before the kill, not sent again.
    assert_eq!(count(Some(1), "alert.firing"), 1, "{seen:?}");
    assert_eq!(count(Some(2), "alert.firing"), 0, "{seen:?}");
    assert_eq!(count(None, "alert.resolved"), 1, "sent once: {seen:?}");
}
