//! What an operator who knows Prometheus expects of `/metrics` and of the shipped dashboard:
//! series there from the start (so `absent()` and `increase()` work), runner's own `process_*`
//! and `runner_build_info`, cumulative counters beside the rates, and panels that keep `host`.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::{PATIENCE, Running, command, jobs_file, root};

/// The body of one GET.
fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    body.to_string()
}

/// A scheduler listening on a free port whose jobs run once an hour, so nothing has happened
/// yet when the test scrapes; the port comes from its start line.
fn start(jobs: &str) -> (Running, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), jobs);
    let mut running = Running::spawn(command(&[
        "--jobs",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    (running, port, dir)
}

/// The value of the series written exactly as `series` (name and labels).
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

#[test]
fn series_are_there_right_after_start() {
    let jobs = format!(
        "host: h\nnotifiers:\n  hook: {{ type: webhook, url: \"http://127.0.0.1:9/nobody\" }}\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1h\"\n    probes: [{{ type: memory }}, {{ type: tcp, name: db, host: 127.0.0.1, port: 1 }}]\n    rules: [\"{}\"]\n    notify: [hook]\n",
        root().join("tests/fixtures/rules/always.rhai").display()
    );
    let (_running, port, _dir) = start(&jobs);
    let body = get(port, "/metrics");
    for (series, expected) in [
        (
            "runner_config_last_reload_successful{host=\"h\"}",
            Some(1.0),
        ),
        (
            "runner_config_last_reload_timestamp_seconds{host=\"h\"}",
            None,
        ),
        (
            "runner_config_reloads_total{host=\"h\",result=\"failed\"}",
            Some(0.0),
        ),
        (
            "runner_probe_failing{host=\"h\",runner_job=\"m\",probe=\"memory\"}",
            Some(0.0),
        ),
        (
            "runner_probe_failing{host=\"h\",runner_job=\"m\",probe=\"tcp.db\"}",
            Some(0.0),
        ),
        (
            "runner_notifier_dead_events_total{host=\"h\",notifier=\"hook\"}",
            Some(0.0),
        ),
        (
            "runner_job_runs_total{host=\"h\",runner_job=\"m\",result=\"failed\"}",
            Some(0.0),
        ),
        (
            "runner_job_skipped_total{host=\"h\",runner_job=\"m\",reason=\"missed\"}",
            Some(0.0),
        ),
        ("process_cpu_seconds_total{host=\"h\"}", None),
        ("process_resident_memory_bytes{host=\"h\"}", None),
        ("process_virtual_memory_bytes{host=\"h\"}", None),
        ("process_open_fds{host=\"h\"}", None),
        ("process_max_fds{host=\"h\"}", None),
        ("process_start_time_seconds{host=\"h\"}", None),
    ] {
        let got = value(&body, series);
        if let Some(expected) = expected {
            assert_eq!(got, expected, "{series}\n{body}");
        }
    }
    assert!(body.contains("# TYPE process_cpu_seconds_total counter\n"));
    // The process started within the last minute, and holds a few descriptors.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value(&body, "process_start_time_seconds{host=\"h\"}");
    assert!(started <= now + 1.0 && started > now - 60.0, "{started}");
    assert!(value(&body, "process_resident_memory_bytes{host=\"h\"}") > 1e6);
    assert!(value(&body, "process_open_fds{host=\"h\"}") >= 3.0);
    // The build's version and commit: the commit is this checkout's when git can say.
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        });
    let info = format!(
        "runner_build_info{{host=\"h\",version=\"{}\",revision=\"",
        env!("CARGO_PKG_VERSION")
    );
    let line = body
        .lines()
        .find(|l| l.starts_with(&info))
        .unwrap_or_else(|| panic!("no {info} in\n{body}"));
    // A commit made since the build would differ; the build's is a revision all the same.
    assert!(
        line == format!("{info}{revision}\"}} 1") || line.len() == info.len() + 12 + 4,
        "{line} (HEAD is {revision})"
    );
}
