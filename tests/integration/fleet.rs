//! The fleet report against a real Prometheus 2.42 (started here, as the remote-write tests
//! start it): three hosts' metrics logs pushed with the remote-write code, then for each host
//! the fleet report's figures equal that host's own report from its metrics log over the same
//! window: counts, min, max, mean and availability exactly, p95 within the documented
//! tolerance (docs/reports.md, "Fleet reports"); and its alerts fired and time firing equal
//! those its own report reads from its alert log. A VictoriaMetrics with small query limits
//! refuses the report's queries, which are split by hosts and by time, and the figures stay.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use runner::alerts::event::{AlertEvent, EventKind, event_id, fingerprint};
use runner::config::raw::P95Mode;
use runner::config::{Config, Endpoint, FleetSource, Secret};
use runner::remote_write::{PassEnd, RemoteWriter};
use runner::report::fleet::{self, FleetSummary};
use runner::scheduler::clock::{SharedClock, VirtualClock};
use runner::store::MetricsLog;
use runner::store::prometheus;
use runner::store::sample::Sample;
use runner::vocab::Severity;

use crate::remote_write::{Kind, Receiver, free_port};
use crate::support::jobs_file;

const TICKS: i64 = 180;
const STEP_S: i64 = 10;

/// Host `h`'s value of each metric at tick `i`: different per host, with repeats and a few
/// failed checks so counts, extremes and ranks all matter.
fn values(h: usize, i: i64) -> Vec<(String, f64)> {
    let i = i as f64;
    let h = h as f64;
    vec![
        (
            "cpu.total.usage_percent".into(),
            ((i * 7.0 + h * 13.0) % 97.0) + 0.25 * h,
        ),
        ("memory.used_percent".into(), 30.0 + h * 5.0 + (i % 11.0)),
        (
            "ping.gw.rtt_avg_ms".into(),
            0.5 + ((i * 3.0 + h) % 17.0) / 8.0,
        ),
        (
            "tcp.db.up".into(),
            if (i as i64 + h as i64) % 29 == 0 {
                0.0
            } else {
                1.0
            },
        ),
    ]
}

/// Host `h`'s alert spells as (alert, severity, tick it fired, tick it resolved, ticks it was
/// pending before): a spell of one tick and one firing again at the tick after it resolved, a
/// spell pending for five ticks first, an alert whose spells are single ticks 40 s or more
/// apart (its own samples do not show the monitor's step), and one firing from tick 30 to 70,
/// across the start of `LATE_FROM_S`'s window. `SKIPPED` lies inside two spells.
fn spells_of(h: usize) -> Vec<(&'static str, Severity, i64, i64, i64)> {
    let h = h as i64;
    vec![
        ("a", Severity::Warning, 10 + h, 11 + h, 0),
        ("a", Severity::Warning, 12 + h, 20 + h, 0),
        ("b", Severity::Critical, 50, 80, 5),
        ("b", Severity::Critical, 150, 151 + h, 0),
        ("c", Severity::Info, 100, 101, 0),
        ("c", Severity::Info, 103 + h, 104 + h, 0),
        ("d", Severity::Warning, 30, 70, 2),
    ]
}

/// A tick the monitor skipped (an overrun) in `each_hosts_fleet_figures_equal_its_own_report`:
/// no line in the metrics log, so no `ALERTS` sample, inside the spells of `b` and `d`.
const SKIPPED: i64 = 60;
/// Windows that start later than the first one, in seconds after the first tick: at 47.5
/// ticks `d` is firing (since tick 30) and `b` pending (fires at tick 50, in the window); at
/// 99.5 ticks only `c` has a sample before 101.5 ticks, a single tick, so the alerts show no
/// step.
const LATE_FROM_S: [(i64, i64); 2] = [(475, TICKS * STEP_S + 60), (995, 1015)];

/// The alert log a monitor writes for `spells_of(h)`: `firing` and `resolved` at the ticks.
fn write_alert_log(data_dir: &std::path::Path, h: usize, tick: impl Fn(i64) -> DateTime<Utc>) {
    let host = format!("h{h}");
    let mut events = Vec::new();
    for (name, severity, fired, resolved, pending) in spells_of(h) {
        for (kind, i) in [(EventKind::Firing, fired), (EventKind::Resolved, resolved)] {
            let mut e = AlertEvent::example(name, kind, severity, tick(i));
            e.host = host.clone();
            e.job = "m".into();
            e.fingerprint = fingerprint(&host, name, &e.labels);
            e.id = event_id(&e.fingerprint, kind, e.at);
            e.active_since = tick(fired - pending);
            events.push(e);
        }
    }
    events.sort_by_key(|e| e.at);
    let dir = data_dir.join("alerts");
    std::fs::create_dir_all(&dir).unwrap();
    for e in events {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.jsonl", e.at.date_naive())))
            .unwrap();
        let line = format!("{}\n", serde_json::to_string(&e).unwrap());
        std::io::Write::write_all(&mut file, line.as_bytes()).unwrap();
    }
}

fn config_in(dir: &std::path::Path) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    let file = jobs_file(
        dir,
        "jobs:\n  m: { type: monitor, schedule: \"@every 10s\", probes: [{ type: cpu }] }\n  r: { type: report, schedule: \"@hourly\", window: 1h }\n",
    );
    Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render()))
}

fn source(port: u16) -> FleetSource {
    FleetSource {
        endpoint: Endpoint {
            url: Secret::new(format!("http://127.0.0.1:{port}")),
            headers: Vec::new(),
            ca_file: None,
            timeout: Duration::from_secs(30),
        },
        hosts: Vec::new(),
        p95: P95Mode::Exact,
    }
}

/// The two samples around the 95th rank of `values`: quantile_over_time interpolates between
/// them.
fn around_p95(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let rank = 0.95 * (values.len() - 1) as f64;
    (values[rank.floor() as usize], values[rank.ceil() as usize])
}

/// Three hosts' metrics logs of `TICKS` ticks from `start`, each pushed with the remote-write
/// code to `write_url`; their configs.
async fn push_hosts(dir: &Path, write_url: &str, start: DateTime<Utc>) -> Vec<Config> {
    push_hosts_skipping(dir, write_url, start, None).await
}

/// `push_hosts` with the tick `skipped` left out of the metrics logs.
async fn push_hosts_skipping(
    dir: &Path,
    write_url: &str,
    start: DateTime<Utc>,
    skipped: Option<i64>,
) -> Vec<Config> {
    let mut configs = Vec::new();
    for h in 1..=3usize {
        let root = dir.join(format!("h{h}"));
        let config = config_in(&root);
        let clock = VirtualClock::new(start);
        let shared: SharedClock = clock.clone();
        let spec = runner::config::RemoteWriteSpec {
            endpoint: runner::config::Endpoint {
                url: Secret::new(write_url.to_string()),
                headers: Vec::new(),
                ca_file: None,
                timeout: Duration::from_secs(10),
            },
            max_batch: 500,
            max_age: Duration::from_secs(2 * 3600),
        };
        let mut log = MetricsLog::new(&config.data_dir);
        for i in (0..TICKS).filter(|i| Some(*i) != skipped) {
            log.append(&Sample {
                ts: start + chrono::Duration::seconds(i * STEP_S),
                host: format!("h{h}"),
                job: "m".into(),
                metrics: values(h, i)
                    .into_iter()
                    .map(|(n, v)| (n.as_str().into(), v))
                    .collect(),
                errors: Vec::new(),
            })
            .unwrap();
        }
        drop(log);
        write_alert_log(&config.data_dir, h, |i| {
            start + chrono::Duration::seconds(i * STEP_S)
        });
        clock.advance(Duration::from_secs((TICKS * STEP_S) as u64));
        let mut writer = RemoteWriter::new(&spec, &config.data_dir, shared).unwrap();
        assert_eq!(writer.pass(true).await, PassEnd::CaughtUp);
        configs.push(config);
    }
    configs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hosts_fleet_figures_equal_its_own_report() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Kind::Prometheus, &dir.path().join("receiver"), free_port());
    // Inside Prometheus' head block, which takes samples up to about an hour old.
    let start_s = Utc::now().timestamp() - 40 * 60;
    let start = DateTime::from_timestamp(start_s - start_s % 60 + 3, 0).unwrap();
    let to = start + chrono::Duration::seconds(TICKS * STEP_S + 60);
    let configs =
        push_hosts_skipping(dir.path(), &receiver.write_url(), start, Some(SKIPPED)).await;
    let window = Duration::from_secs(3600);
    let from = runner::report::window_start(&configs[0].zone, window, to);
    let fleet: FleetSummary = {
        let config = config_in(&dir.path().join("fleet"));
        let src = source(receiver.port);
        // As a report job runs: on a blocking thread, its own runtime inside.
        tokio::task::spawn_blocking(move || {
            fleet::build(&config, "fleet", "Fleet", &src, from, to, "hour".into()).unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(
        fleet
            .hosts
            .iter()
            .map(|h| h.host.as_str())
            .collect::<Vec<_>>(),
        ["h1", "h2", "h3"]
    );
    // `p95: buckets` on a server without MetricsQL: the exact p95, nothing refused.
    let fallback = fleet_with(
        &dir.path().join("fallback"),
        FleetSource {
            p95: P95Mode::Buckets,
            ..source(receiver.port)
        },
        from,
        to,
    )
    .await;
    assert_eq!(figures(&fallback), figures(&fleet));
    for (h, config) in configs.iter().enumerate() {
        let own = runner::report::summary::build(config, "r", "t", window, to);
        let host = &fleet.hosts[h];
        assert_eq!(host.samples, own.samples * 4, "{}", host.host);
        let mut compared = 0;
        for metric in own.families.iter().flat_map(|f| &f.metrics) {
            let prom = prometheus::series_of(&metric.name).unwrap();
            let labels = prom
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let theirs = host
                .families
                .iter()
                .flat_map(|f| &f.metrics)
                .find(|m| m.name == prom.name && m.labels == labels)
                .unwrap_or_else(|| panic!("{} {labels} missing on {}", prom.name, host.host));
            let f = prom.factor;
            assert_eq!(theirs.samples, metric.samples, "{}", metric.name);
            assert_eq!(theirs.max, metric.max * f, "{}", metric.name);
            assert_eq!(theirs.min, metric.min * f, "{}", metric.name);
            // The same values summed in the same order; scaled ones were scaled one by one.
            let mean_error = (theirs.avg - metric.avg * f).abs();
            if f == 1.0 {
                assert_eq!(theirs.avg, metric.avg, "{}", metric.name);
            } else {
                assert!(mean_error <= 1e-12 * theirs.avg.abs(), "{}", metric.name);
            }
            // The documented tolerance: quantile_over_time interpolates between the two
            // samples around rank 0.95 (n-1); the local p95 is within 1 % of a sample's value.
            let logged: Vec<f64> = (0..TICKS)
                .filter(|i| *i != SKIPPED)
                .map(|i| {
                    values(h + 1, i)
                        .into_iter()
                        .find(|(n, _)| *n == metric.name)
                        .unwrap()
                        .1
                        * f
                })
                .collect();
            let (lo, hi) = around_p95(logged);
            let p95 = theirs.p95.unwrap();
            assert!(lo <= p95 && p95 <= hi, "{} {lo} {p95} {hi}", metric.name);
            let own_p95 = metric.p95.unwrap() * f;
            assert!(
                (own_p95 - p95).abs() <= 0.01 * own_p95.abs() + (hi - lo),
                "{} fleet {p95} own {own_p95}",
                metric.name
            );
            compared += 1;
        }
        assert_eq!(compared, 4);
        let own_db = own
            .availability
            .iter()
            .find(|a| a.metric == "tcp.db.up")
            .unwrap();
        let fleet_db = host
            .availability
            .iter()
            .find(|a| a.metric == "runner_tcp_up" && a.labels == "name=db")
            .unwrap();
        assert!(own_db.failed > 0);
        assert_eq!(
            (fleet_db.checks, fleet_db.failed, fleet_db.downtime_seconds),
            (own_db.checks, own_db.failed, own_db.downtime_seconds)
        );
        // Alerts: fired and time firing per alert and in all, as the host's own report reads
        // them from its alert log (every spell of the window is among its longest ten and
        // ended inside it).
        let own_alerts = &own.alerts;
        assert!(own_alerts.longest.len() < 10 && own_alerts.still_firing.is_empty());
        assert_eq!(own_alerts.fired, spells_of(h + 1).len() as u64);
        assert_alerts_equal(&fleet, &own, from, to, &host.host);
    }
    // Windows that begin with an alert firing (`d`, not fired in it, its time from the
    // window's start) or pending (`b`, fired in it), or hold one single tick of `c` only.
    for (late_from_s, late_to_s) in LATE_FROM_S {
        let (late_from, late_to) = (
            start + chrono::Duration::seconds(late_from_s),
            start + chrono::Duration::seconds(late_to_s),
        );
        let late = fleet_of(&dir.path().join("late"), receiver.port, late_from, late_to).await;
        for (h, config) in configs.iter().enumerate() {
            let window = (late_to - late_from).to_std().unwrap();
            let own = runner::report::summary::build(config, "r", "t", window, late_to);
            assert_eq!(own.period.from, late_from);
            assert!(own.alerts.longest.len() < 10);
            assert_alerts_equal(&late, &own, late_from, late_to, &format!("h{}", h + 1));
        }
    }
    assert_eq!(fleet.totals.hosts, 3);
    assert_eq!(fleet.worst.len(), 4);
    // The shipped fleet templates render what was read.
    for template in ["templates/fleet.md.hbs", "templates/fleet.html.hbs"] {
        let out = runner::report::render::render(
            &crate::support::root().join(template),
            &fleet,
            &configs[0].zone,
            &runner::template::bounds::Limits::report(),
        )
        .unwrap();
        for word in [
            "h1",
            "h2",
            "h3",
            "runner_tcp_up",
            "runner_ping_rtt_avg_seconds",
            "3 hosts",
        ] {
            assert!(out.text.contains(word), "{template}: {word}\n{}", out.text);
        }
    }
}

/// `runner check` points at what is wrong in a report's `source:` with the same checks as
/// `remote_write` (one builder), named by the job's field.
#[test]
fn check_points_at_what_is_wrong_in_a_report_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  fleet:\n    type: report\n    schedule: \"@daily\"\n    source:\n      prometheus: \"ftp://x\"\n      bearer_token: written-here\n      headers: { \"Bad Header\": x }\n      timeout: 0s\n",
    );
    let output = crate::support::command(&["check", "--jobs", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    for (line, words) in [
        (7, "is not an http:// or https:// URL with a host"),
        (8, "a secret is written in the jobs file"),
        (
            9,
            "header name `Bad Header` is not a valid HTTP header name",
        ),
        (10, "`timeout` must be longer than 0s"),
    ] {
        assert!(text.contains(words), "{words} in\n{text}");
        assert!(
            text.contains(&format!("jobs.yaml:{line}:")),
            "line {line} in\n{text}"
        );
    }
    assert!(text.contains("jobs.fleet.source"), "{text}");
}

/// `runner check` takes `p95: exact` and `p95: buckets` and names the line and the two
/// values when given another.
#[test]
fn check_takes_only_the_two_p95_methods() {
    let dir = tempfile::tempdir().unwrap();
    let check = |p95: &str| {
        let file = jobs_file(
            dir.path(),
            &format!(
                "jobs:\n  fleet:\n    type: report\n    schedule: \"@daily\"\n    source:\n      prometheus: \"http://127.0.0.1:9\"\n      p95: {p95}\n"
            ),
        );
        let output = crate::support::command(&["check", "--jobs", file.to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    for good in ["exact", "buckets"] {
        let (ok, text) = check(good);
        assert!(ok, "{good}: {text}");
    }
    let (ok, text) = check("tdigest");
    assert!(!ok, "{text}");
    assert!(text.contains("jobs.yaml:8:"), "{text}");
    assert!(text.contains("jobs.fleet.source.p95"), "{text}");
    assert!(
        text.contains("unknown variant `tdigest`, expected one of exact, buckets"),
        "{text}"
    );
}

/// A VictoriaMetrics on 127.0.0.1 with the given flags (its query limits), stopped when
/// dropped; started again over the same storage to ask the same samples under other limits.
struct Limited {
    child: Child,
}

impl Limited {
    fn start(storage: &Path, port: u16, flags: &[&str]) -> Limited {
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", storage.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            // Every answer computed from the samples, none from a cache of an earlier run.
            .arg("-search.disableCache")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics is installed (.ci/run installs it)");
        let started = Instant::now();
        while !http_get(port, "/health").is_some_and(|(s, b)| s == 200 && b.contains("OK")) {
            assert!(started.elapsed() < crate::support::PATIENCE, "not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Limited { child }
    }
}

impl Drop for Limited {
    /// Stopped as a service is (SIGTERM), so what it took is on disk for the next start.
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `POST path` with `body` over HTTP/1.0: the status.
fn http_post(port: u16, path: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

/// `GET path` over HTTP/1.0 (an answer not chunked): status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

/// Per alert and in all, the fleet's `fired` and `firing_seconds` of `host` equal those of its
/// own report over `[from, to)`: its firing notices in the window, and its spells' seconds
/// inside the window (a spell that began before it counts from its start).
fn assert_alerts_equal(
    fleet: &FleetSummary,
    own: &runner::report::summary::Summary,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    host: &str,
) {
    let mut own_by_alert: std::collections::BTreeMap<String, (u64, i64)> = Default::default();
    for rule in &own.alerts.by_rule {
        own_by_alert.entry(rule.name.clone()).or_default().0 += rule.fired;
    }
    for spell in &own.alerts.longest {
        let end = spell.to.unwrap_or(to).min(to);
        own_by_alert.entry(spell.name.clone()).or_default().1 +=
            (end - spell.from.max(from)).num_seconds().max(0);
    }
    let fleet_by_alert: std::collections::BTreeMap<String, (u64, i64)> = fleet
        .alerts
        .iter()
        .filter(|a| a.host == host)
        .map(|a| (a.alertname.clone(), (a.fired, a.firing_seconds)))
        .collect();
    assert_eq!(fleet_by_alert, own_by_alert, "{host} from {from}");
    let fleet_host = fleet.hosts.iter().find(|h| h.host == host).unwrap();
    assert_eq!(
        (fleet_host.alerts_fired, fleet_host.firing_seconds),
        (
            own.alerts.fired,
            own_by_alert.values().map(|(_, s)| s).sum::<i64>()
        ),
        "{host} from {from}"
    );
}

async fn fleet_of(dir: &Path, port: u16, from: DateTime<Utc>, to: DateTime<Utc>) -> FleetSummary {
    fleet_with(dir, source(port), from, to).await
}

async fn fleet_with(
    dir: &Path,
    src: FleetSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> FleetSummary {
    let config = config_in(&dir.join("fleet"));
    tokio::task::spawn_blocking(move || {
        fleet::build(&config, "fleet", "Fleet", &src, from, to, "hour".into()).unwrap()
    })
    .await
    .unwrap()
}

/// Each host's series: name and labels, then samples, min, max, mean and p95.
type Figures = Vec<(String, String, u64, f64, f64, f64, Option<f64>)>;

fn figures(fleet: &FleetSummary) -> Figures {
    fleet
        .hosts
        .iter()
        .flat_map(|h| {
            h.families.iter().flat_map(|f| &f.metrics).map(|m| {
                (
                    format!("{} {}", h.host, m.name),
                    m.labels.clone(),
                    m.samples,
                    m.min,
                    m.max,
                    m.avg,
                    m.p95,
                )
            })
        })
        .collect()
}

fn availability(fleet: &FleetSummary) -> Vec<(String, u64, u64, i64)> {
    fleet
        .hosts
        .iter()
        .flat_map(|h| {
            h.availability.iter().map(|a| {
                (
                    format!("{} {} {}", h.host, a.metric, a.labels),
                    a.checks,
                    a.failed,
                    a.downtime_seconds,
                )
            })
        })
        .collect()
}

/// Queries stay inside the server's limits: a VictoriaMetrics that refuses queries over 400
/// samples (three hosts' series of 180 samples are 540) gets them again for fewer hosts, and
/// every figure equals the unlimited server's; one that refuses over 120 samples per series
/// gets them again over pieces of the window, and counts, extremes, means and availability
/// stay equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_refused_as_too_big_are_split_and_the_figures_stay() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("vm");
    let port = free_port();
    let start_s = Utc::now().timestamp() - 40 * 60;
    let start = DateTime::from_timestamp(start_s - start_s % 60 + 3, 0).unwrap();
    let to = start + chrono::Duration::seconds(TICKS * STEP_S + 60);
    let from = to - chrono::Duration::hours(1);
    let whole = {
        let _vm = Limited::start(&storage, port, &[]);
        let write_url = format!("http://127.0.0.1:{port}/api/v1/write");
        push_hosts(dir.path(), &write_url, start).await;
        assert_eq!(http_get(port, "/internal/force_flush").unwrap().0, 200);
        fleet_of(dir.path(), port, from, to).await
    };
    assert_eq!(whole.split_queries, 0);
    assert_eq!(whole.totals.hosts, 3);
    assert_eq!(whole.totals.samples, 3 * 4 * TICKS as u64);
    let whole_figures = figures(&whole);
    assert_eq!(whole_figures.len(), 12);
    assert_eq!(availability(&whole).len(), 3);

    let by_hosts = {
        let _vm = Limited::start(&storage, port, &["-search.maxSamplesPerQuery=400"]);
        fleet_of(dir.path(), port, from, to).await
    };
    assert!(by_hosts.split_queries > 0);
    assert!(by_hosts.queries > whole.queries);
    assert_eq!(figures(&by_hosts), whole_figures);
    assert_eq!(availability(&by_hosts), availability(&whole));

    let by_time = {
        let _vm = Limited::start(&storage, port, &["-search.maxSamplesPerSeries=120"]);
        fleet_of(dir.path(), port, from, to).await
    };
    assert!(by_time.split_queries > 0);
    assert_eq!(availability(&by_time), availability(&whole));
    let pieced = figures(&by_time);
    assert_eq!(pieced.len(), whole_figures.len());
    for (p, w) in pieced.iter().zip(&whole_figures) {
        assert_eq!((&p.0, &p.1, p.2, p.3, p.4), (&w.0, &w.1, w.2, w.3, w.4));
        // Sums of the pieces added: the same values in another order.
        assert!(
            (p.5 - w.5).abs() <= 1e-12 * w.5.abs(),
            "{} {} {}",
            p.0,
            p.5,
            w.5
        );
        // The pieces' p95 weighted by their counts: between the series' extremes.
        let p95 = p.6.unwrap();
        assert!(w.3 <= p95 && p95 <= w.4, "{} {p95}", p.0);
    }
}

/// `p95: buckets` on VictoriaMetrics: each p95 comes from `histogram_over_time`'s log buckets
/// (18 a decade), so it lies within one bucket's width (a factor 10^(1/18)) of the two samples
/// around rank 0.95 (n-1) that the exact p95 is interpolated between (docs/reports.md), and
/// differs from the exact one: the interpolation inside a bucket does not land on a sample's
/// value. Every other figure is the exact report's; a series with negative samples (which
/// `histogram_over_time` leaves out) has the exact p95.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucketed_p95_is_within_a_bucket_of_the_exact_one_and_nothing_else_moves() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _vm = Limited::start(&dir.path().join("vm"), port, &[]);
    let start_s = Utc::now().timestamp() - 40 * 60;
    let start = DateTime::from_timestamp(start_s - start_s % 60 + 3, 0).unwrap();
    let to = start + chrono::Duration::seconds(TICKS * STEP_S + 60);
    let from = to - chrono::Duration::hours(1);
    let write_url = format!("http://127.0.0.1:{port}/api/v1/write");
    push_hosts(dir.path(), &write_url, start).await;
    // A series below zero in part, which `histogram_over_time` would count without its
    // negative samples: it gets the exact p95.
    let below: Vec<f64> = (0..TICKS).map(|i| (i % 13) as f64 - 10.0).collect();
    let stamps: Vec<i64> = (0..TICKS)
        .map(|i| (start.timestamp() + i * STEP_S) * 1000)
        .collect();
    let line = format!(
        "{{\"metric\":{{\"__name__\":\"runner_below_celsius\",\"host\":\"h1\",\"runner_job\":\"m\"}},\"values\":{below:?},\"timestamps\":{stamps:?}}}\n"
    );
    assert_eq!(http_post(port, "/api/v1/import", &line), Some(204));
    assert_eq!(http_get(port, "/internal/force_flush").unwrap().0, 200);
    let exact = fleet_of(dir.path(), port, from, to).await;
    let bucketed = fleet_with(
        dir.path(),
        FleetSource {
            p95: P95Mode::Buckets,
            ..source(port)
        },
        from,
        to,
    )
    .await;
    // One more: the exact p95 of the group holding the series below zero.
    assert_eq!(bucketed.queries, exact.queries + 1);
    assert_eq!(availability(&bucketed), availability(&exact));
    let (exact_figures, bucketed_figures) = (figures(&exact), figures(&bucketed));
    assert_eq!(exact_figures.len(), 13);
    assert_eq!(bucketed_figures.len(), 13);
    let bucket = 10f64.powf(1.0 / 18.0);
    let mut moved = 0;
    for (b, e) in bucketed_figures.iter().zip(&exact_figures) {
        assert_eq!(
            (&b.0, &b.1, b.2, b.3, b.4, b.5),
            (&e.0, &e.1, e.2, e.3, e.4, e.5)
        );
        let (host, name) = b.0.split_once(' ').unwrap();
        if name == "runner_below_celsius" {
            assert_eq!(b.6, e.6);
            let (lo, hi) = around_p95(below.clone());
            assert!(lo <= b.6.unwrap() && b.6.unwrap() <= hi, "{:?}", b.6);
            continue;
        }
        let h: usize = host.trim_start_matches('h').parse().unwrap();
        let prom_name = |n: &str| prometheus::series_of(n).unwrap();
        let (local, factor) = values(h, 0)
            .into_iter()
            .map(|(n, _)| {
                let p = prom_name(&n);
                (n, p.name, p.factor)
            })
            .find(|(_, p, _)| p == name)
            .map(|(n, _, f)| (n, f))
            .unwrap();
        let logged: Vec<f64> = (0..TICKS)
            .map(|i| {
                values(h, i)
                    .into_iter()
                    .find(|(n, _)| *n == local)
                    .unwrap()
                    .1
                    * factor
            })
            .collect();
        let (lo, hi) = around_p95(logged);
        let (p95, exact_p95) = (b.6.unwrap(), e.6.unwrap());
        assert!(lo <= exact_p95 && exact_p95 <= hi, "{} {exact_p95}", b.0);
        assert!(
            lo / bucket * (1.0 - 1e-9) <= p95 && p95 <= hi * bucket * (1.0 + 1e-9),
            "{}: bucketed {p95}, samples around the rank {lo} and {hi}",
            b.0
        );
        if (p95 - exact_p95).abs() > 1e-6 * exact_p95.abs() {
            moved += 1;
        }
    }
    // An ignored `p95: buckets` would leave every p95 exact.
    assert!(moved >= 6, "{moved} of 12 p95 differ from the exact ones");
}
