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
    // The build's version and commit: a commit's 12 hex digits, or `unknown` where the build
    // could not ask git (a tarball; a build sandbox that hides `.git`).
    let info = format!(
        "runner_build_info{{host=\"h\",version=\"{}\",revision=\"",
        env!("CARGO_PKG_VERSION")
    );
    let revision = body
        .lines()
        .find_map(|l| l.strip_prefix(&info)?.strip_suffix("\"} 1"))
        .unwrap_or_else(|| panic!("no {info} in\n{body}"));
    assert!(
        revision == "unknown"
            || (revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit())),
        "{revision}"
    );
}

/// The kernel's counters as the probes read them, on `/metrics` as counters in base units, from
/// the first tick (no previous reading needed), beside the rates.
#[test]
fn kernel_counters_are_exposed_as_counters_in_base_units() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    std::fs::create_dir_all(proc.join("net")).unwrap();
    std::fs::write(
        proc.join("stat"),
        "cpu  100 5 50 800 40 3 10 2 0 0\ncpu0 100 5 50 800 40 3 10 2 0 0\nintr 1\n",
    )
    .unwrap();
    std::fs::write(
        proc.join("net/dev"),
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n  eth0: 1234 10 1 2 0 0 0 0 5678 20 3 4 0 0 0 0\n",
    )
    .unwrap();
    for file in ["meminfo", "vmstat"] {
        std::fs::copy(
            root().join("tests/fixtures/host/proc").join(file),
            proc.join(file),
        )
        .unwrap();
    }
    std::fs::write(
        proc.join("diskstats"),
        " 253 0 vda 100 0 2000 50 300 0 4000 70 0 1500 120\n",
    )
    .unwrap();
    let jobs = "host: h\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{ type: cpu }, { type: memory }, { type: net_io, interfaces: [eth0] }, { type: disk_io, devices: [vda] }]\n";
    let file = jobs_file(dir.path(), jobs);
    let mut running = Running::spawn(command(&[
        "--jobs",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--proc-root",
        proc.to_str().unwrap(),
        "--sys-root",
        dir.path().join("sys").to_str().unwrap(),
    ]));
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let port: u16 = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let started = std::time::Instant::now();
    let body = loop {
        let body = get(port, "/metrics");
        if body.contains("runner_disk_io_reads_total{") {
            break body;
        }
        assert!(started.elapsed() < PATIENCE, "no counters yet:\n{body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let labels = "host=\"h\",runner_job=\"m\"";
    let net = |field: &str| format!("runner_net_io_{field}{{{labels},interface=\"eth0\"}}");
    let disk = |field: &str| format!("runner_disk_io_{field}{{{labels},device=\"vda\"}}");
    let cpu =
        |mode: &str| format!("runner_cpu_seconds_total{{{labels},cpu=\"total\",mode=\"{mode}\"}}");
    // /proc/stat counts in USER_HZ, 100 a second on Linux.
    for (series, expected) in [
        (net("rx_bytes_total"), 1234.0),
        (net("tx_bytes_total"), 5678.0),
        (net("rx_packets_total"), 10.0),
        (net("tx_packets_total"), 20.0),
        (net("errors_total"), 4.0),
        (net("drops_total"), 6.0),
        (disk("read_bytes_total"), 2000.0 * 512.0),
        (disk("written_bytes_total"), 4000.0 * 512.0),
        (disk("reads_total"), 100.0),
        (disk("writes_total"), 300.0),
        (disk("io_time_seconds_total"), 1.5),
        (cpu("user"), 1.0),
        (cpu("nice"), 0.05),
        (cpu("system"), 0.5),
        (cpu("idle"), 8.0),
        (cpu("iowait"), 0.4),
        (cpu("irq"), 0.03),
        (cpu("softirq"), 0.1),
        (cpu("steal"), 0.02),
        (
            format!("runner_memory_major_faults_total{{{labels}}}"),
            12.0,
        ),
        (
            format!("runner_memory_swap_in_pages_total{{{labels}}}"),
            0.0,
        ),
        (
            format!("runner_memory_swap_out_pages_total{{{labels}}}"),
            0.0,
        ),
    ] {
        let got = value(&body, &series);
        assert!(
            (got - expected).abs() < 1e-9,
            "{series} {got}, not {expected}"
        );
    }
    for family in [
        "runner_net_io_rx_bytes_total",
        "runner_disk_io_io_time_seconds_total",
        "runner_cpu_seconds_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} counter\n")),
            "{family}\n{body}"
        );
    }
    // No `total` instance sums counters of devices that come and go.
    assert!(
        !body.contains(
            "runner_net_io_rx_bytes_total{host=\"h\",runner_job=\"m\",interface=\"total\"}"
        )
    );
}

/// The shipped dashboard: every panel and query on the `DS_PROMETHEUS` input Grafana asks for
/// at import, an `up` panel, and nothing that sums `host` away, so two runners never blur into
/// one line. Where promtool is installed, every query parses as PromQL.
#[test]
fn the_dashboard_keeps_host_uses_its_input_and_shows_up() {
    let text = std::fs::read_to_string(root().join("dist/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let inputs = dashboard["__inputs"].as_array().unwrap();
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let uses_input = |ds: &serde_json::Value| ds["uid"] == "${DS_PROMETHEUS}";
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        assert_ne!(var["type"], "datasource", "a second way to pick: {var}");
        if var.get("datasource").is_some() {
            assert!(uses_input(&var["datasource"]), "{var}");
        }
    }
    let aggregation = regex::Regex::new(
        r"\b(sum|avg|max|min|count|topk|bottomk)\s*(by|without)?\s*(\(([^)]*)\))?\s*\(",
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let title = &panel["title"];
        assert!(uses_input(&panel["datasource"]), "panel {title}");
        for target in panel["targets"].as_array().unwrap() {
            assert!(uses_input(&target["datasource"]), "panel {title}");
            let expr = target["expr"].as_str().unwrap();
            assert!(
                target["legendFormat"]
                    .as_str()
                    .is_some_and(|l| l.contains("{{host}}")),
                "panel {title}: the legend names the host"
            );
            for found in aggregation.captures_iter(expr) {
                let labels = found.get(4).map_or("", |m| m.as_str());
                let keeps_host = match found.get(2).map(|m| m.as_str()) {
                    Some("by") => labels.split(',').any(|l| l.trim() == "host"),
                    Some(_) => !labels.split(',').any(|l| l.trim() == "host"),
                    None => false,
                };
                assert!(keeps_host, "panel {title}: {expr} sums host away");
            }
            exprs.push((title.to_string(), expr.replace("$host", ".*")));
        }
    }
    assert!(
        exprs
            .iter()
            .any(|(_, e)| e.starts_with("up ") || e.starts_with("up{")),
        "no up panel"
    );
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            format!(
                "      - record: dashboard:query{i}\n        expr: {}\n",
                serde_json::to_string(expr).unwrap()
            )
        })
        .collect();
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(
        &file,
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `localhost:PORT`, as Prometheus' own flags take it, listens on loopback without `listen_auth`.
#[test]
fn localhost_is_a_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  m: { type: monitor, schedule: \"@every 1h\", probes: [{ type: memory }] }\n",
    );
    let mut running = Running::spawn(command(&[
        "--jobs",
        file.to_str().unwrap(),
        "--listen",
        "localhost:0",
    ]));
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let port: u16 = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not on 127.0.0.1: {line}"));
    assert!(get(port, "/metrics").contains("runner_build_info{"));
}
