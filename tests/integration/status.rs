//! The HTTP listener of a running scheduler, as Prometheus, a browser and curl use it: the
//! exposition checked by Prometheus' own `promtool`, the alerts API, the status page, health,
//! and credentials for `listen_auth`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, Running, command, jobs_file, root};

/// One HTTP request; the status, the headers and the body.
fn request(port: u16, method: &str, path: &str, headers: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// A scheduler with one monitor (every second, a rule that always fires) listening on a free
/// port; returns it and the port from its start line.
fn start(extra_top: &str, env: &[(&str, &str)]) -> (Running, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &format!(
            "host: status-test\n{extra_top}notifiers:\n  hook: {{ type: webhook, url: \"http://127.0.0.1:9/nobody-listens\" }}\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: cpu }}, {{ type: memory }}, {{ type: tcp, name: closed, host: 127.0.0.1, port: 1 }}]\n    rules: [\"{}\"]\n    notify: [log, hook]\n",
            root().join("tests/fixtures/rules/always.rhai").display()
        ),
    );
    let mut cmd = command(&["--jobs", file.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut running = Running::spawn(cmd);
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    (running, port, dir)
}

/// Waits until `/metrics` shows the monitor's second sample and its firing alert.
fn metrics_when_ready(port: u16, headers: &str) -> String {
    let started = Instant::now();
    loop {
        let (status, _, body) = request(port, "GET", "/metrics", headers);
        assert_eq!(status, 200, "{body}");
        // CPU usage is a rate: it is there from the second tick on.
        if body.contains("runner_cpu_usage_percent{") && body.contains("state=\"firing\"") {
            return body;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no sample or alert yet: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the one series whose line starts with `series`.
fn value_of(body: &str, series: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

#[test]
fn metrics_pass_promtool_and_the_alerts_api_page_and_health_answer() {
    let (mut running, port, dir) = start("", &[]);
    // One line at start says where everything is.
    let starting = running
        .seen
        .iter()
        .find(|l| l.contains("runner starting"))
        .cloned()
        .unwrap();
    let var = dir.path().join("var");
    for expected in [
        format!("metrics={}", var.join("metrics/<UTC day>.jsonl").display()),
        format!("alerts={}", var.join("alerts/<UTC day>.jsonl").display()),
        format!("reports={}", var.join("reports").display()),
        format!("status=http://127.0.0.1:{port}/"),
    ] {
        assert!(starting.contains(&expected), "{expected} in {starting}");
    }
    // Alerts changing state are said at info level.
    let line = running.wait_for_line("alert firing", PATIENCE);
    assert!(
        line.contains("alert=memory_seen") && line.contains("from=Inactive"),
        "{line}"
    );
    let body = metrics_when_ready(port, "");
    for expected in [
        "# TYPE runner_cpu_usage_percent gauge",
        "runner_cpu_usage_percent{host=\"status-test\",runner_job=\"m\",cpu=\"total\"} ",
        "runner_tcp_up{host=\"status-test\",runner_job=\"m\",name=\"closed\"} 0",
        "runner_probe_failing{host=\"status-test\",runner_job=\"m\",probe=\"tcp.closed\"} 1",
        "runner_job_runs_total{host=\"status-test\",runner_job=\"m\",result=\"succeeded\"} ",
        "runner_alerts{host=\"status-test\",runner_job=\"m\",alertname=\"memory_seen\",severity=\"info\",state=\"firing\"} 1",
        "runner_notifier_delivered_events_total{host=\"status-test\",notifier=\"hook\"} 0",
        "runner_notifier_backlog_bytes{host=\"status-test\",notifier=\"hook\"} ",
        "runner_job_run_seconds_total{host=\"status-test\",runner_job=\"m\"} ",
        "runner_job_last_run_seconds{host=\"status-test\",runner_job=\"m\"} ",
        "runner_job_last_lateness_seconds{host=\"status-test\",runner_job=\"m\"} ",
        "runner_info{host=\"status-test\",version=\"",
    ] {
        assert!(body.contains(expected), "{expected}\n{body}");
    }
    let total = value_of(&body, "runner_job_run_seconds_total{");
    assert!(total > 0.0, "two ticks took some time: {total}");
    // Each rule file's evaluations: one per tick, none failed, some time spent.
    let rule = format!(
        "{{host=\"status-test\",runner_job=\"m\",rule_file=\"{}\"}}",
        root().join("tests/fixtures/rules/always.rhai").display()
    );
    assert!(value_of(&body, &format!("runner_rule_evaluations_total{rule}")) >= 2.0);
    assert_eq!(
        value_of(&body, &format!("runner_rule_failures_total{rule}")),
        0.0
    );
    assert!(
        value_of(
            &body,
            &format!("runner_rule_evaluation_seconds_total{rule}")
        ) > 0.0
    );
    assert!(value_of(&body, &format!("runner_rule_last_evaluation_seconds{rule}")) > 0.0);
    // The webhook's port refuses: the firing notice waits in the outbox, and its age grows.
    let age = |body: &str| {
        value_of(
            body,
            "runner_notifier_oldest_queued_age_seconds{host=\"status-test\",notifier=\"hook\"}",
        )
    };
    let first_age = age(&body);
    std::thread::sleep(Duration::from_millis(1100));
    let later = age(&request(port, "GET", "/metrics", "").2);
    assert!(later >= first_age + 1.0, "{first_age} then {later}");
    // Prometheus' own linter has nothing to say.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // What Prometheus 2.x asks for: OpenMetrics, with counters' families named without
    // `_total` and the `# EOF` that tells a whole exposition from a cut one.
    let (status, head, open) = request(
        port,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(open.ends_with("\n# EOF\n"), "{open}");
    assert!(open.contains("# TYPE runner_job_runs counter\n"), "{open}");
    assert!(!open.contains("# TYPE runner_job_runs_total"), "{open}");
    assert!(open.contains("\nrunner_job_runs_total{"), "{open}");
    assert!(open.contains("# TYPE runner_cpu_usage_percent gauge\n"));

    let (status, head, alerts) = request(port, "GET", "/api/v1/alerts", "");
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let alerts: serde_json::Value = serde_json::from_str(&alerts).unwrap();
    let first = &alerts["data"]["alerts"][0];
    assert_eq!(first["labels"]["alertname"], "memory_seen");
    assert_eq!(first["state"], "firing");
    assert!(
        first["annotations"]["explanation"]
            .as_str()
            .unwrap()
            .starts_with("memory_seen "),
        "{first}"
    );

    let (status, _, page) = request(port, "GET", "/", "");
    assert_eq!(status, 200);
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains("memory is measured") && page.contains("memory.used_percent"));
    // Values read as people read them: sizes in IEC units, a service up or down.
    assert!(
        page.contains(" GiB</td>") && page.contains(" %</td>"),
        "{page}"
    );
    assert!(page.contains(">down</td>"), "tcp.closed.up 0: {page}");
    // Each value has its last hour drawn inline (one point so far: a dot).
    assert!(
        page.contains("<th>last hour</th>") && page.contains("<svg "),
        "{page}"
    );
    // Nothing fetched from elsewhere (the SVG namespace is a name, not a fetch).
    for fetch in ["src=", "href=", "url(", "@import"] {
        assert!(!page.contains(fetch), "no external assets: {fetch}");
    }

    assert_eq!(request(port, "GET", "/-/healthy", "").0, 200);
    assert_eq!(request(port, "GET", "/-/ready", "").0, 200);
    assert_eq!(request(port, "GET", "/nope", "").0, 404);
    assert_eq!(request(port, "POST", "/metrics", "").0, 405);
    let (status, head, body) = request(port, "HEAD", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        body.is_empty() && head.contains("Content-Length: "),
        "{head}"
    );

    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn with_listen_auth_only_health_is_open_and_no_secret_is_shown() {
    let token = "tok-3f9a1c7e";
    let (mut running, port, _dir) = start(
        "listen_auth: { bearer_token: \"${STATUS_TEST_TOKEN}\" }\n",
        &[("STATUS_TEST_TOKEN", token)],
    );
    let (status, head, _) = request(port, "GET", "/metrics", "");
    assert_eq!(status, 401);
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    assert_eq!(
        request(port, "GET", "/metrics", "Authorization: Bearer wrong\r\n").0,
        401
    );
    assert_eq!(request(port, "GET", "/", "").0, 401);
    assert_eq!(request(port, "GET", "/-/healthy", "").0, 200);
    let auth = format!("Authorization: Bearer {token}\r\n");
    let body = metrics_when_ready(port, &auth);
    let (_, _, page) = request(port, "GET", "/", &auth);
    let (_, _, alerts) = request(port, "GET", "/api/v1/alerts", &auth);
    for text in [&body, &page, &alerts] {
        assert!(!text.contains(token), "the token is never shown");
    }
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn an_address_other_than_loopback_needs_listen_auth_and_a_secret_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.yaml");
    let parse = |yaml: &str| {
        runner::config::build::parse(&file, yaml, &|key| {
            (key == "TOKEN").then(|| "t0k3n".to_string())
        })
    };
    let jobs = "jobs:\n  m: { type: monitor, schedule: \"@every 1s\", probes: [{ type: cpu }] }\n";
    let problems = parse(&format!("data_dir: var\nlisten: 0.0.0.0:9464\n{jobs}"))
        .expect_err("refused")
        .render();
    assert!(
        problems.contains("jobs.yaml:2:9") && problems.contains("add `listen_auth`"),
        "{problems}"
    );
    let problems = parse(&format!(
        "data_dir: var\nlisten: 0.0.0.0:9464\nlisten_auth: {{ bearer_token: written-here }}\n{jobs}"
    ))
    .expect_err("refused")
    .render();
    assert!(
        problems.contains("a secret is written in the jobs file"),
        "{problems}"
    );
    let config = parse(&format!(
        "data_dir: var\nlisten: 0.0.0.0:9464\nlisten_auth: {{ bearer_token: \"${{TOKEN}}\" }}\n{jobs}"
    ))
    .unwrap_or_else(|p| panic!("{}", p.render()));
    assert_eq!(config.listen.unwrap().address.port(), 9464);
    // --listen outside loopback without listen_auth is refused at start.
    let plain = jobs_file(dir.path(), jobs);
    let output = command(&["--jobs", plain.to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("add `listen_auth`"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_grafana_dashboard_asks_only_for_series_runner_exposes() {
    use runner::config::probes::{Instances, PROBE_TYPES};
    use runner::status::exposition::series_of;
    let text = std::fs::read_to_string(root().join("dist/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut known: std::collections::BTreeSet<String> = [
        "runner_info",
        "runner_start_time_seconds",
        "runner_log_lines_dropped_total",
        "runner_log_tail_repairs_total",
        "runner_sample_timestamp_seconds",
        "runner_probe_failing",
        "runner_job_runs_total",
        "runner_job_skipped_total",
        "runner_job_running",
        "runner_job_next_run_timestamp_seconds",
        "runner_job_run_seconds_total",
        "runner_job_last_run_seconds",
        "runner_job_last_lateness_seconds",
        "runner_alerts",
        "runner_notifier_delivered_events_total",
        "runner_notifier_dead_events_total",
        "runner_notifier_failed_attempts_total",
        "runner_notifier_backlog_bytes",
        "runner_notifier_oldest_queued_age_seconds",
        "runner_rule_evaluations_total",
        "runner_rule_failures_total",
        "runner_rule_evaluation_seconds_total",
        "runner_rule_last_evaluation_seconds",
        "runner_config_reloads_total",
        "runner_config_last_reload_successful",
        "runner_config_last_reload_timestamp_seconds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for t in PROBE_TYPES {
        for field in t.fields {
            let name = match t.instances {
                Instances::None => format!("{}.{}", t.name, field.name),
                _ => format!("{}.x.{}", t.name, field.name),
            };
            known.insert(series_of(&name).unwrap().name);
        }
    }
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("runner_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `runner_job` is a label (`sum by (runner_job)`), not a series.
                if name == "runner_job" {
                    continue;
                }
                assert!(
                    known.contains(&name),
                    "panel {}: no series {name}",
                    panel["title"]
                );
                asked += 1;
            }
        }
    }
    assert!(asked >= 20, "only {asked} series asked for");
}
