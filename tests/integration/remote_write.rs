//! Remote write against real receivers started here: Prometheus 2.42 with its remote-write
//! receiver and VictoriaMetrics (Debian packages `prometheus` and `victoria-metrics`; .ci/run
//! installs them). Every sample they hold back is compared with the metrics log; an outage
//! with a restart inside it loses nothing and sends nothing twice; a scripted receiver answers
//! 429, 500 and 400.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use runner::config::{Endpoint, RemoteWriteSpec, Secret};
use runner::remote_write::{PassEnd, RemoteWriter, Stats};
use runner::scheduler::clock::{Clock, SharedClock, VirtualClock};
use runner::store::MetricsLog;
use runner::store::prometheus;
use runner::store::sample::{LineParser, Sample};

use crate::support::{PATIENCE, Running, command, jobs_file, root};

/// Each series as `name{k="v",...}` (labels sorted), with its samples as (ms, value).
type Held = BTreeMap<String, Vec<(i64, f64)>>;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 (so the answer is not chunked); the status and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn identity(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Prometheus,
    VictoriaMetrics,
}

/// A receiver process on 127.0.0.1, killed when dropped (the fleet tests use it too).
pub(crate) struct Receiver {
    kind: Kind,
    pub(crate) port: u16,
    storage: PathBuf,
    child: Option<Child>,
}

impl Receiver {
    pub(crate) fn start(kind: Kind, storage: &Path, port: u16) -> Receiver {
        let mut receiver = Receiver {
            kind,
            port,
            storage: storage.to_path_buf(),
            child: None,
        };
        receiver.restart();
        receiver
    }

    fn restart(&mut self) {
        std::fs::create_dir_all(&self.storage).unwrap();
        let listen = format!("127.0.0.1:{}", self.port);
        let mut cmd = match self.kind {
            Kind::Prometheus => {
                let config = self.storage.join("prometheus.yml");
                std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
                let mut cmd = Command::new("prometheus");
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        self.storage.join("tsdb").display()
                    ))
                    .arg(format!("--web.listen-address={listen}"))
                    .arg("--web.enable-remote-write-receiver");
                cmd
            }
            Kind::VictoriaMetrics => {
                let mut cmd = Command::new("victoria-metrics");
                cmd.arg(format!(
                    "-storageDataPath={}",
                    self.storage.join("vm").display()
                ))
                .arg(format!("-httpListenAddr={listen}"));
                cmd
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus and victoria-metrics are installed (.ci/run installs them)");
        self.child = Some(child);
        let (path, ready) = match self.kind {
            Kind::Prometheus => ("/-/ready", "Ready"),
            Kind::VictoriaMetrics => ("/health", "OK"),
        };
        let started = Instant::now();
        while !get(self.port, path).is_some_and(|(s, b)| s == 200 && b.contains(ready)) {
            assert!(started.elapsed() < PATIENCE, "receiver not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// As `held`, once it holds at least `samples` besides `ALERTS` (VictoriaMetrics makes
    /// what it took searchable a moment later).
    fn held_at_least(&self, job: &str, samples: usize) -> Held {
        let started = Instant::now();
        loop {
            let held = self.held(job);
            let metrics: usize = held
                .iter()
                .filter(|(k, _)| !is_alert(k))
                .map(|(_, v)| v.len())
                .sum();
            if metrics >= samples || started.elapsed() > PATIENCE {
                return held;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// Every sample of the series with `runner_job="<job>"`, as stored.
    fn held(&self, job: &str) -> Held {
        let selector = format!("{{runner_job=\"{job}\"}}");
        let mut held = Held::new();
        match self.kind {
            Kind::Prometheus => {
                let at = Utc::now().timestamp() + 3600;
                let (status, body) = get(
                    self.port,
                    &format!(
                        "/api/v1/query?query={}&time={at}",
                        encode(&format!("{selector}[3h]"))
                    ),
                )
                .unwrap();
                assert_eq!(status, 200, "{body}");
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                for series in answer["data"]["result"].as_array().unwrap() {
                    let labels: BTreeMap<String, String> =
                        serde_json::from_value(series["metric"].clone()).unwrap();
                    let samples = series["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|pair| {
                            let seconds = pair[0].as_f64().unwrap();
                            let value: f64 = pair[1].as_str().unwrap().parse().unwrap();
                            ((seconds * 1000.0).round() as i64, value)
                        })
                        .collect();
                    held.insert(identity(&labels), samples);
                }
            }
            Kind::VictoriaMetrics => {
                // What was just written is searchable once flushed.
                get(self.port, "/internal/force_flush").unwrap();
                let (status, body) = get(
                    self.port,
                    &format!("/api/v1/export?match[]={}", encode(&selector)),
                )
                .unwrap();
                assert_eq!(status, 200, "{body}");
                for line in body.lines().filter(|l| !l.trim().is_empty()) {
                    let series: serde_json::Value = serde_json::from_str(line).unwrap();
                    let labels: BTreeMap<String, String> =
                        serde_json::from_value(series["metric"].clone()).unwrap();
                    let values = series["values"].as_array().unwrap();
                    let stamps = series["timestamps"].as_array().unwrap();
                    let samples = stamps
                        .iter()
                        .zip(values)
                        .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap()))
                        .collect();
                    held.insert(identity(&labels), samples);
                }
            }
        }
        held
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every sample the metrics log holds for `job`, named and labelled as `/metrics` names them
/// (alerts apart).
fn logged(data_dir: &Path, job: &str) -> Held {
    let mut days: Vec<PathBuf> = std::fs::read_dir(data_dir.join("metrics"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    days.sort();
    let mut held = Held::new();
    let mut parser = LineParser::default();
    for day in days {
        for line in std::fs::read_to_string(day).unwrap().lines() {
            let view = parser.parse(line).unwrap();
            if view.job() != job {
                continue;
            }
            let mut add = |name: String, labels: Vec<(&'static str, String)>, value: f64| {
                let mut all: BTreeMap<String, String> = labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                all.insert("__name__".into(), name);
                held.entry(identity(&all))
                    .or_default()
                    .push((view.ts_ms, value));
            };
            for (name, value) in view.metrics() {
                let prom = prometheus::series_of(name).unwrap();
                let labels = prometheus::monitor_labels(view.host(), job, &prom.labels);
                add(prom.name, labels, value * prom.factor);
            }
            for (probe, _) in view.errors() {
                add(
                    prometheus::PROBE_FAILING.into(),
                    prometheus::probe_failing_labels(view.host(), job, &probe),
                    1.0,
                );
            }
        }
    }
    held
}

/// The receiver holds every logged sample, once, at its tick's time; VictoriaMetrics keeps
/// values to about 12 significant digits, Prometheus exactly.
#[track_caller]
fn assert_holds_the_log(kind: Kind, held: &Held, logged: &Held) {
    let held_metrics: BTreeMap<&String, &Vec<(i64, f64)>> =
        held.iter().filter(|(k, _)| !is_alert(k)).collect();
    assert_eq!(
        held_metrics.keys().copied().collect::<Vec<_>>(),
        logged.keys().collect::<Vec<_>>(),
        "series"
    );
    for (series, expected) in logged {
        let got = &held[series];
        let stamps = |s: &[(i64, f64)]| s.iter().map(|(t, _)| *t).collect::<Vec<_>>();
        assert_eq!(stamps(got), stamps(expected), "timestamps of {series}");
        for ((_, a), (_, b)) in got.iter().zip(expected) {
            match kind {
                Kind::Prometheus => assert_eq!(a, b, "{series}"),
                Kind::VictoriaMetrics => assert!(
                    (a - b).abs() <= 1e-11 * b.abs().max(1e-300),
                    "{series}: {a} != {b}"
                ),
            }
        }
    }
}

/// An `ALERTS` or `ALERTS_FOR_STATE` series, which the metrics log does not hold.
fn is_alert(series: &str) -> bool {
    series.starts_with("ALERTS{") || series.starts_with("ALERTS_FOR_STATE{")
}

fn sample_count(held: &Held) -> usize {
    held.values().map(Vec::len).sum()
}

/// The series of one `/metrics` exposition with a `runner_job="<job>"` label, as identities.
fn exposed(metrics: &str, job: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            let (labels, _) = rest.rsplit_once('}')?;
            let labels: BTreeMap<String, String> = labels
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .chain([("__name__".to_string(), name.to_string())])
                .collect();
            (labels.get("runner_job").map(String::as_str) == Some(job)).then(|| identity(&labels))
        })
        .collect()
}

/// Every event of the alert log.
fn alert_events(data_dir: &Path) -> Vec<runner::alerts::event::AlertEvent> {
    let mut days: Vec<PathBuf> = std::fs::read_dir(data_dir.join("alerts"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    days.sort();
    days.iter()
        .flat_map(|d| {
            std::fs::read_to_string(d)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn metrics_log_lines(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("metrics"))
        .map(|dir| {
            dir.flatten()
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The scheduler pushing to a real receiver: every tick, its failed probe, its firing alert and
/// its pending one arrive named as `/metrics` names them, and what the last ticks wrote goes
/// out at shutdown.
fn runner_pushes_every_sample_to(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start(kind, &dir.path().join("receiver"), free_port());
    let file = jobs_file(
        dir.path(),
        &format!(
            "host: rw-test\nremote_write:\n  url: \"{}\"\n  headers: {{ X-Scope-OrgID: \"${{RW_TENANT}}\" }}\n  max_batch: 7\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: cpu }}, {{ type: memory }}, {{ type: tcp, name: closed, host: 127.0.0.1, port: 1 }}]\n    rules: [\"{}\", \"{}\"]\n",
            receiver.write_url(),
            root().join("tests/fixtures/rules/always.rhai").display(),
            root().join("tests/fixtures/rules/pending.rhai").display()
        ),
    );
    let mut cmd = command(&["--jobs", file.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    cmd.env("RW_TENANT", "team-a");
    let mut running = Running::spawn(cmd);
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let port: u16 = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let data_dir = dir.path().join("var");
    let started = Instant::now();
    let metrics = loop {
        let (_, metrics) = get(port, "/metrics").unwrap();
        let sent = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("runner_remote_write_samples_sent_total{host=\"rw-test\"} ")
            })
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        // memory_held fires at its fourth tick: a few after that, to see both states.
        if sent > 0.0 && metrics_log_lines(&data_dir) >= 7 {
            break metrics;
        }
        assert!(started.elapsed() < PATIENCE, "nothing sent: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for series in [
        "runner_remote_write_samples_retried_total{host=\"rw-test\"} 0",
        "runner_remote_write_samples_dropped_total{host=\"rw-test\",reason=\"rejected\"} 0",
        "runner_remote_write_samples_dropped_total{host=\"rw-test\",reason=\"too_old\"} 0",
        "runner_remote_write_backlog_age_seconds{host=\"rw-test\"}",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let (_, page) = get(port, "/").unwrap();
    assert!(page.contains("<h2>Remote write</h2>"), "{page}");
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));

    let logged = logged(&data_dir, "m");
    let held = receiver.held_at_least("m", sample_count(&logged));
    assert_holds_the_log(kind, &held, &logged);
    assert!(
        logged
            .keys()
            .any(|k| k.starts_with("runner_probe_failing{")),
        "{logged:?}"
    );
    // Named and labelled as /metrics showed them.
    let shown = exposed(&metrics, "m");
    for series in held.keys().filter(|k| !is_alert(k)) {
        assert!(
            shown.contains(series),
            "{series} not in /metrics:\n{metrics}"
        );
    }
    // The alert fires from its first tick: ALERTS is there at every tick from then on.
    let alerts = &held[&identity(&BTreeMap::from([
        ("__name__".to_string(), "ALERTS".to_string()),
        ("alertname".to_string(), "memory_seen".to_string()),
        ("alertstate".to_string(), "firing".to_string()),
        ("severity".to_string(), "info".to_string()),
        ("host".to_string(), "rw-test".to_string()),
        ("runner_job".to_string(), "m".to_string()),
    ]))];
    let ticks: Vec<i64> = logged
        .iter()
        .find(|(k, _)| k.starts_with("runner_memory_used_percent{"))
        .unwrap()
        .1
        .iter()
        .map(|(t, _)| *t)
        .collect();
    let first = alerts[0].0;
    assert_eq!(
        alerts.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        ticks
            .iter()
            .copied()
            .filter(|t| *t >= first)
            .collect::<Vec<_>>()
    );
    assert!(alerts.iter().all(|(_, v)| *v == 1.0));
    // As Prometheus' rule evaluation writes it: ALERTS{alertstate="pending"} at each tick from
    // when the condition began to hold until the tick it fired (pending_for 3s), then
    // alertstate="firing" from that tick on; the alert log says when it became active and
    // when it fired.
    let held_series = |state: &str| {
        held.get(&identity(&BTreeMap::from([
            ("__name__".to_string(), "ALERTS".to_string()),
            ("alertname".to_string(), "memory_held".to_string()),
            ("alertstate".to_string(), state.to_string()),
            ("severity".to_string(), "warning".to_string()),
            ("host".to_string(), "rw-test".to_string()),
            ("runner_job".to_string(), "m".to_string()),
        ])))
        .map(|s| s.iter().map(|(t, _)| *t).collect::<Vec<_>>())
        .unwrap_or_default()
    };
    let fired = alert_events(&data_dir)
        .into_iter()
        .find(|e| e.name == "memory_held" && e.kind == runner::alerts::event::EventKind::Firing)
        .expect("memory_held fired");
    let (active_ms, fired_ms) = (
        fired.active_since.timestamp_millis(),
        fired.at.timestamp_millis(),
    );
    assert!(fired_ms - active_ms >= 3000, "{active_ms} {fired_ms}");
    let between = |from: i64, to: i64| {
        ticks
            .iter()
            .copied()
            .filter(|t| *t >= from && *t < to)
            .collect::<Vec<_>>()
    };
    assert_eq!(held_series("pending"), between(active_ms, fired_ms));
    assert!(
        held_series("pending").len() >= 3,
        "{:?}",
        held_series("pending")
    );
    assert_eq!(held_series("firing"), between(fired_ms, i64::MAX));
    // ALERTS_FOR_STATE beside each of them, as Prometheus' rule manager writes it: when the
    // alert became active, in seconds, the same pending and firing.
    let for_state = &held[&identity(&BTreeMap::from([
        ("__name__".to_string(), "ALERTS_FOR_STATE".to_string()),
        ("alertname".to_string(), "memory_held".to_string()),
        ("severity".to_string(), "warning".to_string()),
        ("host".to_string(), "rw-test".to_string()),
        ("runner_job".to_string(), "m".to_string()),
    ]))];
    assert_eq!(
        for_state.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        between(active_ms, i64::MAX)
    );
    for (_, since_s) in for_state {
        // VictoriaMetrics keeps about 12 significant digits: 10 ms of a time in seconds.
        let tolerance = match kind {
            Kind::Prometheus => 0.0,
            Kind::VictoriaMetrics => 0.01,
        };
        assert!(
            (since_s - active_ms as f64 / 1000.0).abs() <= tolerance,
            "{since_s} {active_ms}"
        );
    }
    let sent = sample_count(&logged) + alerts.len();
    assert!(sent >= 5 * 3, "{sent}");
    receiver.stop();
}

#[test]
fn prometheus_holds_every_sample_of_the_metrics_log() {
    runner_pushes_every_sample_to(Kind::Prometheus);
}

#[test]
fn victoria_metrics_holds_every_sample_of_the_metrics_log() {
    runner_pushes_every_sample_to(Kind::VictoriaMetrics);
}

fn spec(url: &str, max_batch: usize) -> RemoteWriteSpec {
    RemoteWriteSpec {
        endpoint: Endpoint {
            url: Secret::new(url.to_string()),
            headers: vec![(
                "Authorization".to_string(),
                Secret::new("Bearer s3cret-token".to_string()),
            )],
            ca_file: None,
            timeout: Duration::from_secs(10),
        },
        max_batch,
        max_age: Duration::from_secs(2 * 3600),
    }
}

fn tick(at: DateTime<Utc>, i: u64) -> Sample {
    Sample {
        ts: at,
        host: "outage".into(),
        job: "m".into(),
        metrics: vec![
            ("cpu.total.usage_percent".into(), (i % 100) as f64 + 0.25),
            ("memory.used_percent".into(), 40.0 + (i % 7) as f64),
            ("ping.gw.rtt_avg_ms".into(), 0.5 + (i % 13) as f64 / 8.0),
        ],
        errors: Vec::new(),
    }
}

fn sent(stats: &Stats) -> u64 {
    Stats::get(&stats.sent)
}

/// A 10-minute receiver outage with a runner restart inside it, on the virtual clock: once the
/// receiver is back, every sample arrives, in order, and none was sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_a_restart_inside_loses_nothing_and_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start(Kind::Prometheus, &dir.path().join("receiver"), free_port());
    let data_dir = dir.path().join("var");
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 15 * 60, 0).unwrap();
    let clock = VirtualClock::new(start);
    let shared: SharedClock = clock.clone();
    let spec = spec(&receiver.write_url(), 100);
    let mut log = MetricsLog::new(&data_dir);
    let mut writer = RemoteWriter::new(&spec, &data_dir, shared.clone()).unwrap();
    let mut ticks = 0u64;
    let mut step = |log: &mut MetricsLog| {
        log.append(&tick(clock.now(), ticks)).unwrap();
        ticks += 1;
        clock.advance(Duration::from_secs(1));
    };
    for _ in 0..30 {
        step(&mut log);
        assert_eq!(writer.pass(false).await, PassEnd::CaughtUp);
    }
    let sent_before = sent(&writer.stats());
    assert!(sent_before > 0);
    receiver.stop();
    let mut retried = 0;
    for second in 0..600 {
        step(&mut log);
        if second == 300 {
            // The restart: what the first runner had read but not had acknowledged is read
            // again from the cursor.
            retried += Stats::get(&writer.stats().retried);
            writer = RemoteWriter::new(&spec, &data_dir, shared.clone()).unwrap();
        }
        if second % 10 == 0 {
            let end = writer.pass(false).await;
            assert!(
                matches!(end, PassEnd::Retry(_) | PassEnd::CaughtUp),
                "{end:?}"
            );
        }
    }
    let stats = writer.stats();
    retried += Stats::get(&stats.retried);
    assert!(retried > 0);
    assert!(stats.backlog_age(clock.now()) >= Duration::from_secs(290));
    receiver.restart();
    step(&mut log);
    assert_eq!(writer.pass(false).await, PassEnd::CaughtUp);
    assert_eq!(writer.pass(true).await, PassEnd::CaughtUp);
    assert_eq!(stats.backlog_age(clock.now()), Duration::ZERO);

    let logged = logged(&data_dir, "m");
    let held = receiver.held("m");
    assert_holds_the_log(Kind::Prometheus, &held, &logged);
    assert_eq!(logged.len(), 3);
    assert_eq!(sample_count(&logged), 631 * 3);
    // Acknowledged once each: the two runners together sent exactly what the log holds.
    assert_eq!(
        sent_before + sent(&stats),
        sample_count(&logged) as u64,
        "sent twice or lost"
    );
    assert_eq!(Stats::get(&stats.too_old), 0);
}

/// One scripted answer: status and extra headers.
type Script = Vec<(u16, &'static str)>;

/// The requests a scripted receiver took: each one's head (lowercase) and body.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver on 127.0.0.1 that answers requests from `script` in turn (200 once it runs out),
/// recording each request's head and body.
fn scripted(script: Script) -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().unwrap().push((head.to_lowercase(), body));
            let (status, extra) = script.next().unwrap_or((200, ""));
            let text = format!("answer {status} for s3cret-token");
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (format!("http://127.0.0.1:{port}/api/v1/write"), seen)
}

/// 429 with Retry-After and 500 are retried (the same batch again), 400 drops the batch and
/// counts it, and the requests carry the remote-write headers and a snappy protobuf body.
#[tokio::test]
async fn refusals_are_retried_or_dropped_by_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = scripted(vec![(429, "Retry-After: 7\r\n"), (500, ""), (400, "")]);
    let now = Utc::now();
    let clock: SharedClock = VirtualClock::new(now);
    let mut log = MetricsLog::new(dir.path());
    for i in 0..3 {
        log.append(&tick(now - chrono::Duration::seconds(10 - i), i as u64))
            .unwrap();
    }
    let mut writer = RemoteWriter::new(&spec(&url, 4), dir.path(), clock).unwrap();
    let stats = writer.stats();
    assert_eq!(
        writer.pass(true).await,
        PassEnd::Retry(Some(Duration::from_secs(7)))
    );
    assert_eq!(Stats::get(&stats.retried), 4);
    assert_eq!(writer.pass(true).await, PassEnd::Retry(None));
    assert_eq!(Stats::get(&stats.retried), 8);
    assert_eq!(writer.pass(true).await, PassEnd::CaughtUp);
    assert_eq!(Stats::get(&stats.rejected), 4);
    assert_eq!(Stats::get(&stats.sent), 5);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    for (head, body) in seen.iter() {
        for header in [
            "content-encoding: snappy",
            "content-type: application/x-protobuf",
            "x-prometheus-remote-write-version: 0.1.0",
            "authorization: bearer s3cret-token",
        ] {
            assert!(head.contains(header), "{header} in {head}");
        }
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        assert_eq!(raw[0], 0x0a, "a WriteRequest's first field is a TimeSeries");
    }
    // The failed batch was sent again as it was; the one after the drop is another.
    assert_eq!(seen[0].1, seen[1].1);
    assert_eq!(seen[1].1, seen[2].1);
    assert_ne!(seen[2].1, seen[3].1);
}

/// `runner check` says what is wrong with `remote_write`, at its line: a URL that is not one,
/// a header value that cannot be sent, a secret written in the file.
#[test]
fn check_points_at_what_is_wrong_in_remote_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "remote_write:\n  url: \"ftp://x\"\n  bearer_token: written-here\n  headers: { \"Bad Header\": x }\n  max_batch: 0\njobs:\n  m: { type: monitor, schedule: \"@every 10s\" }\n",
    );
    let output = command(&["check", "--jobs", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    for (line, words) in [
        (3, "is not an http:// or https:// URL with a host"),
        (4, "a secret is written in the jobs file"),
        (
            5,
            "header name `Bad Header` is not a valid HTTP header name",
        ),
        (6, "`max_batch` must be at least 1"),
    ] {
        assert!(text.contains(words), "{words} in\n{text}");
        assert!(
            text.contains(&format!("jobs.yaml:{line}:")),
            "line {line} in\n{text}"
        );
    }
}

/// The task waits what `Retry-After` asks, on its clock, before it sends the batch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_waits_what_retry_after_asks_on_its_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = scripted(vec![(429, "Retry-After: 30\r\n")]);
    let now = Utc::now();
    let clock = VirtualClock::new(now);
    MetricsLog::new(dir.path())
        .append(&tick(now - chrono::Duration::seconds(5), 0))
        .unwrap();
    let writer = RemoteWriter::new(&spec(&url, 100), dir.path(), clock.clone()).unwrap();
    let stats = writer.stats();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(writer.run(stop.clone()));
    let requests = || seen.lock().unwrap().len();
    // A line is sent one pass after it is seen: a second or two of the task's clock.
    let started = Instant::now();
    while requests() == 0 {
        assert!(started.elapsed() < PATIENCE, "no request");
        clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(requests(), 1, "sent again before Retry-After");
    let mut waited = Duration::from_secs(29);
    while requests() < 2 {
        assert!(
            waited <= Duration::from_secs(40),
            "not sent again after Retry-After"
        );
        clock.advance(Duration::from_secs(1));
        waited += Duration::from_secs(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(Stats::get(&stats.sent), 3);
    assert_eq!(Stats::get(&stats.retried), 3);
}

/// The task keeps its receiver from the start: a reload that changes `remote_write` (its
/// token too) is refused as one that needs a restart.
#[test]
fn a_reload_that_changes_remote_write_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _seen) = scripted(Vec::new());
    let body = |token: &str| {
        format!(
            "remote_write:\n  url: \"{url}\"\n  bearer_token: \"${{{token}}}\"\njobs:\n  m: {{ type: monitor, schedule: \"@every 1h\", probes: [{{ type: memory }}] }}\n"
        )
    };
    let file = jobs_file(dir.path(), &body("RW_TOKEN"));
    let mut cmd = command(&["--jobs", file.to_str().unwrap()]);
    cmd.env("RW_TOKEN", "one").env("RW_OTHER", "two");
    let mut running = Running::spawn(cmd);
    running.wait_for_line("remote write on", PATIENCE);
    jobs_file(dir.path(), &body("RW_OTHER"));
    running.signal("HUP");
    running.wait_for_line("`remote_write` changed: that needs a restart", PATIENCE);
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
    assert!(
        !running.seen.join("\n").contains("two"),
        "{:?}",
        running.seen
    );
}
