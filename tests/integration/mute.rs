//! Maintenance windows, silences and inhibition in the real binary: a silence added and
//! expired with `runner silence` reaches a running scheduler at its next tick, and the shipped
//! example's matchers are checked by `runner check`.

use crate::http_server::{Response, TestServer};
use crate::notify::scripted;
use crate::support::{PATIENCE, Running, command, jobs_file, run, stderr, stdout};

/// A monitor ticking every second whose alert `v_high` fires while `value.txt` holds more than
/// 50, notifying webhook `hook` at `server`.
fn setup(dir: &std::path::Path, server: &TestServer, extra: &str) -> String {
    let value = dir.join("value.txt");
    std::fs::write(&value, "0\n").unwrap();
    std::fs::write(
        dir.join("v.rhai"),
        "let v = command.v.value;\nalert(\"v_high\", #{ active: v > 50.0, value: v, threshold: 50.0, op: \">\", summary: \"v is high\" });\n",
    )
    .unwrap();
    let body = format!(
        "{extra}notifiers:\n  hook: {{ type: webhook, url: \"{}\", retry_initial: 50ms }}\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: command, name: v, shell: \"cat {}\" }}]\n    rules: [\"{}\"]\n    notify: [log, hook]\n",
        server.url("/in"),
        value.display(),
        dir.join("v.rhai").display()
    );
    jobs_file(dir, &body).to_str().unwrap().to_string()
}

fn notices(server: &TestServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_silence_from_the_cli_holds_a_running_schedulers_notice_until_it_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "");
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);

    let added = run(&[
        "--jobs",
        &file,
        "silence",
        "add",
        "--match",
        "alertname=v_high",
        "--match",
        "job=~m|n",
        "--for",
        "2h",
        "--comment",
        "load test",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let id = stdout(&added).trim().to_string();
    assert_eq!(id.len(), 16, "{id}");
    let listed = run(&["--jobs", &file, "silence", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["matchers"][1], "job=~m|n");
    let table = stdout(&run(&["--jobs", &file, "silence", "list"]));
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(&format!("{id}  active")), "{table}");

    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    let held = running.wait_for_line("notice held back", PATIENCE);
    assert!(held.contains(&format!("silenced by `{id}`")), "{held}");
    for _ in 0..2 {
        running.wait_for_line("run finished", PATIENCE);
    }
    assert!(notices(&server).is_empty(), "{:?}", notices(&server));
    let log = std::fs::read_dir(dir.path().join("var/alerts"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    let event: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(event["kind"], "firing");
    assert_eq!(event["muted"]["by"], "silence");
    assert_eq!(event["muted"]["name"], id.as_str());

    let expired = run(&["--jobs", &file, "silence", "expire", &id]);
    assert!(expired.status.success(), "{}", stderr(&expired));
    crate::notify::block_on_wait(PATIENCE, "the held firing notice", || {
        notices(&server) == ["alert.firing"]
    });
    let again = run(&["--jobs", &file, "silence", "expire", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("no active silence"),
        "{}",
        stderr(&again)
    );
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn a_matcher_that_does_not_compile_is_pointed_at_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(
        dir.path(),
        &server,
        "maintenance:\n  - { name: nightly, schedule: \"0 2 * * *\", duration: 1h, match: { mount: \"=~(\" } }\n  - { name: bad, schedule: \"@every 1h\", duration: soon }\ninhibit:\n  - { source_match: { alertname: a }, target_match: { \"bad name\": b } }\n",
    );
    let out = run(&["--jobs", &file, "check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("`(` is not a regular expression"), "{text}");
    assert!(text.contains("maintenance[0].match.mount"), "{text}");
    assert!(text.contains("not `@every`"), "{text}");
    assert!(text.contains("maintenance[1].duration"), "{text}");
    assert!(text.contains("`bad name` is not a label name"), "{text}");
}

/// A window that would never open or that the alert log could not tell from another is a
/// `check` error, not a window that silently holds nothing.
#[test]
fn a_window_of_no_length_or_without_its_own_name_is_pointed_at_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(
        dir.path(),
        &server,
        "maintenance:\n  - { name: nightly, schedule: \"0 2 * * *\", duration: 0s, match: { alertname: v_high } }\n  - { name: nightly, schedule: \"0 3 * * *\", duration: 1h, match: { alertname: v_high } }\n  - { name: \"\", schedule: \"0 4 * * *\", duration: 1h, match: { alertname: v_high } }\n",
    );
    let out = run(&["--jobs", &file, "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("maintenance[0].duration"), "{text}");
    assert!(text.contains("of no length never opens"), "{text}");
    assert!(text.contains("maintenance[1].name"), "{text}");
    assert!(
        text.contains("a second maintenance window named `nightly`"),
        "{text}"
    );
    assert!(text.contains("maintenance[2].name"), "{text}");
}

/// One HTTP request to the listener; the status and the body.
fn http(port: u16, method: &str, path: &str, auth: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

#[test]
fn a_silence_posted_to_the_listener_with_its_credentials_holds_a_notice_until_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(
        dir.path(),
        &server,
        "listen_auth: { bearer_token: \"${MUTE_TEST_TOKEN}\" }\n",
    );
    let mut cmd = command(&["--jobs", &file, "--listen", "127.0.0.1:0", "-v"]);
    cmd.env("MUTE_TEST_TOKEN", "tok-5e1");
    let mut running = Running::spawn(cmd);
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let port: u16 = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    let auth = "Authorization: Bearer tok-5e1\r\n";
    let new =
        r#"{"matchers": ["alertname=v_high", "severity!=info"], "for": "1h", "comment": "deploy"}"#;
    assert_eq!(http(port, "POST", "/api/v1/silences", "", new).0, 401);
    // A chunked body is refused for what it is, not read as an empty one.
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/silences",
        "Transfer-Encoding: chunked\r\n",
        "0\r\n\r\n",
    );
    assert_eq!(status, 411, "{body}");
    assert!(body.contains("Content-Length"), "{body}");
    assert_eq!(
        http(
            port,
            "POST",
            "/api/v1/silences",
            "Authorization: Bearer no\r\n",
            new
        )
        .0,
        401
    );
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/silences",
        auth,
        r#"{"matchers": ["v=~("], "for": "1h"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not a regular expression"), "{body}");
    let (status, body) = http(port, "POST", "/api/v1/silences", auth, new);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = answer["data"]["silenceId"].as_str().unwrap().to_string();
    let (status, body) = http(port, "GET", "/api/v1/silences", auth, "");
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert_eq!(listed["data"][0]["comment"], "deploy");
    let (_, page) = http(port, "GET", "/", auth, "");
    assert!(
        page.contains("<h2>Silences</h2>") && page.contains(&id),
        "{page}"
    );

    running.wait_for_line("run finished", PATIENCE);
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    running.wait_for_line("notice held back", PATIENCE);
    running.wait_for_line("run finished", PATIENCE);
    assert!(notices(&server).is_empty(), "{:?}", notices(&server));
    assert_eq!(
        http(port, "DELETE", &format!("/api/v1/silences/{id}"), "", "").0,
        401
    );
    assert_eq!(
        http(port, "DELETE", &format!("/api/v1/silences/{id}"), auth, "").0,
        200
    );
    crate::notify::block_on_wait(PATIENCE, "the held firing notice", || {
        notices(&server) == ["alert.firing"]
    });
    assert_eq!(
        http(port, "DELETE", &format!("/api/v1/silences/{id}"), auth, "").0,
        404
    );
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn the_report_shows_maintenance_time_and_what_fired_inside_it_apart() {
    let dir = tempfile::tempdir().unwrap();
    let templates = crate::support::root().join("templates/weekly.md.hbs");
    let jobs = jobs_file(
        dir.path(),
        &format!(
            "timezone: Europe/Berlin\nmaintenance:\n  - {{ name: nightly-backup, schedule: \"30 2 * * *\", duration: 1h, match: {{ alertname: disk_busy }} }}\njobs:\n  weekly: {{ type: report, schedule: \"0 8 * * Mon\", window: 7d, templates: [\"{}\"] }}\n",
            templates.display()
        ),
    );
    let alerts = dir.path().join("var/alerts");
    std::fs::create_dir_all(&alerts).unwrap();
    let event = |at: &str, name: &str, muted: bool| {
        let mut e = serde_json::json!({
            "schema_version": 1, "id": format!("{name}-{at}"), "kind": "firing",
            "fingerprint": name, "name": name, "labels": {}, "severity": "warning",
            "summary": name, "description": "", "value": 1.0, "threshold": 0.0,
            "explanation": "", "active_since": at, "at": at, "host": "h", "job": "m",
            "rule_file": "r.rhai"
        });
        if muted {
            e["muted"] = serde_json::json!({"by": "maintenance", "name": "nightly-backup"});
        }
        e.to_string()
    };
    // A held repeat of the spell that began at `since`.
    let repeat = |at: &str, since: &str, name: &str| {
        let mut e: serde_json::Value = serde_json::from_str(&event(since, name, true)).unwrap();
        e["kind"] = "repeat".into();
        e["at"] = at.into();
        e["id"] = format!("{name}-{at}").into();
        e.to_string()
    };
    std::fs::write(
        alerts.join("2027-03-25.jsonl"),
        format!(
            "{}\n{}\n{}\n{}\n",
            event("2027-03-25T01:40:00Z", "disk_busy", true),
            // Its repeats held in the same window are the same spell: still fired once.
            repeat("2027-03-25T01:50:00Z", "2027-03-25T01:40:00Z", "disk_busy"),
            repeat("2027-03-25T02:00:00Z", "2027-03-25T01:40:00Z", "disk_busy"),
            event("2027-03-25T09:00:00Z", "cpu_high", false)
        ),
    )
    .unwrap();
    let file = jobs.to_str().unwrap();
    // 2027-03-22 to 03-29 08:00 Berlin: seven nightly windows, the one of 28 March on CEST.
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
    assert_eq!(summary["muted"]["windows"][0]["name"], "nightly-backup");
    assert_eq!(summary["muted"]["windows"][0]["opened"], 7);
    assert_eq!(summary["muted"]["windows"][0]["open_seconds"], 7 * 3600);
    assert_eq!(
        summary["muted"]["held"],
        serde_json::json!([{"name": "disk_busy", "by": "maintenance", "reason": "nightly-backup", "fired": 1}])
    );
    let out = run(&["report", "--jobs", file, "--at", "2027-03-29 08:00"]);
    let text = stdout(&out);
    assert!(
        text.contains("- nightly-backup: opened 7×, 7h in all"),
        "{text}"
    );
    assert!(
        text.contains("- disk_busy: fired 1× while maintenance (`nightly-backup`)"),
        "{text}"
    );
}

#[test]
fn dry_run_says_which_alerts_would_be_muted_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "");
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    let before = run(&["--jobs", &file, "dry-run", "m"]);
    let text = stdout(&before);
    assert!(
        text.contains("firing v_high [warning]") && !text.contains("held back"),
        "{text}"
    );
    let added = run(&[
        "--jobs",
        &file,
        "silence",
        "add",
        "--match",
        "alertname=v_high",
        "--for",
        "1h",
    ]);
    let id = stdout(&added).trim().to_string();
    let after = run(&["--jobs", &file, "dry-run", "m"]);
    let text = stdout(&after);
    assert!(
        text.contains(&format!("MUTED: silenced by `{id}` until")),
        "{text}"
    );
    assert!(
        text.contains(&format!("-> held back: silenced by `{id}` until")),
        "{text}"
    );
    assert!(
        !text.contains("POST"),
        "no request for a muted event: {text}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn a_changed_maintenance_window_needs_a_restart_and_a_reload_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let window = "maintenance:\n  - { name: nightly, schedule: \"0 2 * * *\", duration: 1h, match: { alertname: v_high } }\n";
    let file = setup(dir.path(), &server, window);
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("duration: 1h", "duration: 2h")).unwrap();
    let out = run(&["--jobs", &file, "reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("`maintenance` or `inhibit` changed: that needs a restart"),
        "{said}"
    );
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

/// A silence with a start to come is listed as pending from then and holds nothing before it:
/// the running scheduler sends the alert's firing notice.
#[test]
fn a_silence_added_to_start_later_holds_nothing_before_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "timezone: Europe/Berlin\n");
    let add = |start: &str| {
        run(&[
            "--jobs",
            &file,
            "silence",
            "add",
            "--match",
            "alertname=v_high",
            "--start",
            start,
            "--for",
            "3h",
            "--comment",
            "patch night",
        ])
    };
    let bad = add("tonight");
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--start"), "{}", stderr(&bad));
    let added = add("2099-03-01 22:00");
    assert!(added.status.success(), "{}", stderr(&added));
    let id = stdout(&added).trim().to_string();
    let listed = run(&["--jobs", &file, "silence", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    // 22:00 in Berlin's winter time is 21:00 UTC.
    assert_eq!(list[0]["starts_at"], "2099-03-01T21:00:00Z");
    assert_eq!(list[0]["ends_at"], "2099-03-02T00:00:00Z");
    let table = stdout(&run(&["--jobs", &file, "silence", "list"]));
    assert!(table.contains("STARTS            ENDS"), "{table}");
    assert!(
        table.contains(&format!(
            "{id}  pending  2099-03-01 22:00  2099-03-02 01:00  alertname=v_high"
        )),
        "{table}"
    );

    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    crate::notify::block_on_wait(PATIENCE, "the firing notice", || {
        notices(&server).contains(&"alert.firing".to_string())
    });
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

/// A silence that cannot be added is a usage error (exit 2) whichever argument is wrong, as a
/// bad `--start` is, and nothing is saved: a matcher that is not one, a regex that does not
/// compile, and a length of zero (a silence that would be listed and hold nothing).
#[test]
fn a_silence_with_a_bad_matcher_or_no_length_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "");
    for (matcher, length, said) in [
        ("alertname", "1h", "is not a matcher"),
        ("alertname=~(", "1h", "is not a regular expression"),
        ("alertname=v_high", "0s", "no length"),
    ] {
        let out = run(&[
            "--jobs", &file, "silence", "add", "--match", matcher, "--for", length,
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{matcher} {length}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(said), "{}", stderr(&out));
    }
    let listed = run(&["--jobs", &file, "silence", "list"]);
    assert_eq!(stdout(&listed).trim(), "no silences");
}

/// `silence list` shows one row a silence: a comment's line break is a space, and a matcher
/// whose value has a space is quoted, so the column reads as the matchers it holds.
#[test]
fn silence_list_keeps_one_row_a_silence() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "");
    let added = run(&[
        "--jobs",
        &file,
        "silence",
        "add",
        "--match",
        "alertname=disk full",
        "--match",
        "host=~web-.*",
        "--for",
        "1h",
        "--comment",
        "swap the disk\nthen reboot",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let table = stdout(&run(&["--jobs", &file, "silence", "list"]));
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("alertname=\"disk full\" host=~web-.*  swap the disk then reboot"),
        "{table}"
    );
}

/// Two monitor jobs: the ping job's packet loss to the gateway inhibits the web job's
/// `http_down` for the same target, and only for it; when the loss resolves, the web job's
/// next tick sends the notice it held.
#[test]
fn an_alert_of_one_job_inhibits_another_jobs_alert_with_equal_labels() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let d = dir.path();
    std::fs::write(d.join("loss.txt"), "0\n").unwrap();
    std::fs::write(d.join("gw.txt"), "1\n").unwrap();
    std::fs::write(d.join("db.txt"), "1\n").unwrap();
    std::fs::write(
        d.join("ping.rhai"),
        "let loss = command.loss.value;\nalert(\"packet_loss\", #{ active: loss >= 100.0, value: loss, labels: #{ target: \"gw\" } });\n",
    )
    .unwrap();
    std::fs::write(
        d.join("http.rhai"),
        "for target in [\"gw\", \"db\"] {\n  let up = if target == \"gw\" { command.gw.value } else { command.db.value };\n  alert(\"http_down\", #{ active: up < 1.0, value: up, labels: #{ target: target } });\n}\n",
    )
    .unwrap();
    let body = format!(
        "inhibit:\n  - source_match: {{ alertname: packet_loss }}\n    target_match: {{ alertname: http_down }}\n    equal: [target]\nnotifiers:\n  hook: {{ type: webhook, url: \"{url}\", retry_initial: 50ms }}\njobs:\n  ping:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: command, name: loss, shell: \"cat {d}/loss.txt\" }}]\n    rules: [\"{d}/ping.rhai\"]\n    notify: [log, hook]\n  web:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes:\n      - {{ type: command, name: gw, shell: \"cat {d}/gw.txt\" }}\n      - {{ type: command, name: db, shell: \"cat {d}/db.txt\" }}\n    rules: [\"{d}/http.rhai\"]\n    notify: [log, hook]\n",
        url = server.url("/in"),
        d = d.display(),
    );
    let file = jobs_file(d, &body).to_str().unwrap().to_string();
    let checked = run(&["--jobs", &file, "check"]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    let mut running = Running::spawn(command(&["--jobs", &file, "-v"]));
    running.wait_for_line("run finished", PATIENCE);
    let sent = || -> Vec<(String, String, String)> {
        server
            .requests()
            .iter()
            .map(|r| {
                let b = r.json();
                (
                    b["type"].as_str().unwrap_or_default().to_string(),
                    b["data"]["name"].as_str().unwrap_or_default().to_string(),
                    b["data"]["labels"]["target"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let row = |kind: &str, name: &str, target: &str| {
        (kind.to_string(), name.to_string(), target.to_string())
    };

    std::fs::write(d.join("loss.txt"), "100\n").unwrap();
    crate::notify::block_on_wait(PATIENCE, "the packet loss notice", || {
        sent().contains(&row("alert.firing", "packet_loss", "gw"))
    });
    // Both targets go down: gw is behind the lossy gateway, db is not.
    std::fs::write(d.join("gw.txt"), "0\n").unwrap();
    std::fs::write(d.join("db.txt"), "0\n").unwrap();
    let held = running.wait_for_line("notice held back", PATIENCE);
    assert!(held.contains("inhibited by firing `packet_loss`"), "{held}");
    assert!(held.contains("job=web"), "{held}");
    crate::notify::block_on_wait(PATIENCE, "the db notice", || {
        sent().contains(&row("alert.firing", "http_down", "db"))
    });
    // A few more ticks of both jobs: the gw notice stays held.
    for _ in 0..4 {
        running.wait_for_line("run finished", PATIENCE);
    }
    assert!(
        !sent().contains(&row("alert.firing", "http_down", "gw")),
        "{:?}",
        sent()
    );
    let logged: Vec<serde_json::Value> = std::fs::read_dir(d.join("var/alerts"))
        .unwrap()
        .flat_map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let gw = logged
        .iter()
        .find(|e| e["name"] == "http_down" && e["labels"]["target"] == "gw")
        .expect("the gw alert in the alert log");
    assert_eq!(gw["muted"]["by"], "inhibited", "{gw}");
    assert_eq!(gw["muted"]["name"], "packet_loss", "{gw}");

    // The loss ends; gw is still down: its firing notice goes out now, once.
    std::fs::write(d.join("loss.txt"), "0\n").unwrap();
    crate::notify::block_on_wait(PATIENCE, "the released gw notice", || {
        sent().contains(&row("alert.firing", "http_down", "gw"))
    });
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
    let gw_firing = sent()
        .iter()
        .filter(|r| **r == row("alert.firing", "http_down", "gw"))
        .count();
    assert_eq!(gw_firing, 1, "{:?}", sent());
}

/// Ticks `job` every 10 s of virtual time until `until`, letting the time between pass a second
/// at a time so delivery and keepalive loops run as it passes.
async fn run_until(
    clock: &runner::scheduler::clock::VirtualClock,
    job: &runner::job::Job,
    until: chrono::DateTime<chrono::Utc>,
) {
    use runner::scheduler::clock::Clock;
    while clock.now() < until {
        for _ in 0..10 {
            clock.advance(std::time::Duration::from_secs(1));
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let at = clock.now();
        let info = runner::scheduler::RunInfo {
            scheduled: at,
            started: at,
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        job.run_once(info).await.unwrap();
    }
}

/// Held through a restart, on a virtual clock: a maintenance window 02:00-03:00 UTC holds the
/// firing notice of an alert that fires at 02:00; runner stops at 02:05 and starts again inside
/// the window. Nothing reaches the webhook or Alertmanager (whose keepalive the restart
/// restores from the saved state) until the window ends; then one firing notice goes to each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_inside_a_window_sends_nothing_until_it_ends_then_one_firing_notice() {
    use runner::scheduler::clock::{SharedClock, VirtualClock};
    use std::sync::Arc;
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let clock = VirtualClock::new(t("2027-01-04T01:59:00Z"));
    let (hook_handler, hook_times) =
        crate::notify::stamped(&clock, scripted(vec![], Response::json(200, "{}")));
    let hook = TestServer::start(hook_handler);
    let (am_handler, am_times) =
        crate::notify::stamped(&clock, scripted(vec![], Response::new(200, "")));
    let am = TestServer::start(am_handler);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("value.txt"), "0\n").unwrap();
    std::fs::write(
        d.join("v.rhai"),
        "let v = command.v.value;\nalert(\"v_high\", #{ active: v > 50.0, value: v, threshold: 50.0, op: \">\" });\n",
    )
    .unwrap();
    let body = format!(
        "timezone: UTC\nmaintenance:\n  - {{ name: nightly, schedule: \"0 2 * * *\", duration: 1h, match: {{ alertname: v_high }} }}\nnotifiers:\n  hook: {{ type: webhook, url: \"{}\", retry_initial: 50ms }}\n  am: {{ type: alertmanager, urls: [\"{}\"], resend_interval: 1m }}\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{{ type: command, name: v, shell: \"cat {}\" }}]\n    rules: [\"{}\"]\n    notify: [hook, am]\n",
        hook.url("/in"),
        am.url(""),
        d.join("value.txt").display(),
        d.join("v.rhai").display()
    );
    let file = jobs_file(d, &body);
    let config =
        Arc::new(runner::config::Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render())));
    let shared: SharedClock = clock.clone();
    let start = || {
        let notifiers = Arc::new(runner::notify::Notifiers::new(&config, shared.clone()));
        let stop = tokio_util::sync::CancellationToken::new();
        let handles = notifiers.start(stop.clone());
        let job = runner::job::Job::new(config.clone(), "m", shared.clone(), notifiers);
        (job, stop, handles)
    };
    let (job, stop, handles) = start();
    run_until(&clock, &job, t("2027-01-04T02:00:00Z")).await;
    std::fs::write(d.join("value.txt"), "93\n").unwrap();
    run_until(&clock, &job, t("2027-01-04T02:05:00Z")).await;
    // Stop: delivery loops end, the job and its alerts go.
    stop.cancel();
    for h in handles {
        let _ = h.await;
    }
    drop(job);
    let (job, stop, handles) = start();
    run_until(&clock, &job, t("2027-01-04T02:59:50Z")).await;
    assert!(
        hook.requests().is_empty(),
        "{:?}",
        hook_times.lock().unwrap()
    );
    assert!(
        am.requests().is_empty(),
        "Alertmanager was told inside the window, at {:?}: {}",
        am_times.lock().unwrap(),
        am.requests()[0].text()
    );
    run_until(&clock, &job, t("2027-01-04T03:00:30Z")).await;
    // Delivery may wait on virtual time (grouping, a retry): let it pass until both are in.
    let waiting = std::time::Instant::now();
    while hook.requests().is_empty() || am.requests().is_empty() {
        assert!(waiting.elapsed() < PATIENCE, "no firing notices");
        clock.advance(std::time::Duration::from_millis(100));
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let sent: Vec<serde_json::Value> = hook.requests().iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["type"], "alert.firing");
    assert!(t(sent[0]["data"]["at"].as_str().unwrap()) >= t("2027-01-04T03:00:00Z"));
    let posted = am.requests()[0].json();
    assert_eq!(posted[0]["labels"]["alertname"], "v_high", "{posted}");
    assert!(
        am_times
            .lock()
            .unwrap()
            .iter()
            .all(|at| *at >= t("2027-01-04T03:00:00Z")),
        "{:?}",
        am_times.lock().unwrap()
    );
    // The alert log has the held firing notice of 02:00, marked.
    let logged = std::fs::read_to_string(d.join("var/alerts/2027-01-04.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(logged.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "firing");
    assert_eq!(first["muted"]["name"], "nightly");
    stop.cancel();
    for h in handles {
        let _ = h.await;
    }
}

/// `runner silence` reads only the jobs file's data_dir and timezone: a notifier's secret the
/// file names with `${VAR}` and the operator's shell has not exported (the scheduler's unit
/// has it) does not stop an alert from being silenced, listed and expired. A file without
/// data_dir is still refused, saying so.
#[test]
fn silence_needs_no_notifier_secret_only_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        "timezone: Europe/Berlin\nnotifiers:\n  chat: { type: slack, webhook_url: \"${RUNNER_TEST_UNSET_TOKEN}\" }\njobs:\n  m: { type: monitor, schedule: \"@every 1s\", notify: [log, chat] }\n",
    );
    let file = file.to_str().unwrap();
    let runner = |args: &[&str]| {
        let mut all = vec!["--jobs", file];
        all.extend_from_slice(args);
        command(&all)
            .env_remove("RUNNER_TEST_UNSET_TOKEN")
            .output()
            .unwrap()
    };
    // The variable is needed by the scheduler: check refuses the file without it.
    let checked = runner(&["check"]);
    assert!(!checked.status.success());
    assert!(
        stderr(&checked).contains("RUNNER_TEST_UNSET_TOKEN"),
        "{}",
        stderr(&checked)
    );
    let added = runner(&[
        "silence",
        "add",
        "--match",
        "alertname=v_high",
        "--start",
        "2099-01-01 10:00",
        "--for",
        "1h",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let id = stdout(&added).trim().to_string();
    let listed = runner(&["silence", "list", "--format", "json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let silences: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(silences[0]["id"], id.as_str());
    // The start is read in the file's timezone (Berlin is UTC+1 in January).
    assert_eq!(silences[0]["starts_at"], "2099-01-01T09:00:00Z");
    assert!(dir.path().join("var/state/silences.json").exists());
    let table = runner(&["silence", "list"]);
    assert!(
        stdout(&table).contains("2099-01-01 10:00"),
        "{}",
        stdout(&table)
    );
    let expired = runner(&["silence", "expire", &id]);
    assert!(expired.status.success(), "{}", stderr(&expired));

    std::fs::write(dir.path().join("jobs.yaml"), "jobs: {}\n").unwrap();
    let refused = runner(&["silence", "list"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("missing field `data_dir`"),
        "{}",
        stderr(&refused)
    );
}

/// A hand-edited silence without matchers is ignored, never silencing everything: `silence
/// list` shows it invalid and warns naming the file and its id, and `dry-run` (which reads the
/// silences as the scheduler does) holds nothing back and warns too.
#[test]
fn a_silence_without_matchers_is_ignored_and_said_to_be() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(scripted(vec![], Response::json(200, "{}")));
    let file = setup(dir.path(), &server, "");
    std::fs::write(dir.path().join("value.txt"), "93\n").unwrap();
    std::fs::create_dir_all(dir.path().join("var/state")).unwrap();
    let silences = dir.path().join("var/state/silences.json");
    std::fs::write(
        &silences,
        r#"[{"id": "c0ffee", "matchers": [], "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z", "comment": "hand-made"}]"#,
    )
    .unwrap();
    let listed = run(&["--jobs", &file, "silence", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let row = stdout(&listed);
    assert!(row.contains("c0ffee  invalid"), "{row}");
    let warning = format!(
        "warning: silence c0ffee in {} is ignored: it has no matchers",
        silences.display()
    );
    assert!(stderr(&listed).contains(&warning), "{}", stderr(&listed));
    let checked = run(&["--jobs", &file, "check"]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert!(stdout(&checked).contains(&warning), "{}", stdout(&checked));
    let dry = run(&["--jobs", &file, "dry-run", "m"]);
    let text = stdout(&dry);
    assert!(
        text.contains("firing v_high [warning]") && !text.contains("MUTED"),
        "{text}"
    );
    let said = stderr(&dry);
    assert!(
        said.contains("silence ignored")
            && said.contains("c0ffee")
            && said.contains("silences.json"),
        "{said}"
    );
    assert!(server.requests().is_empty());
}
