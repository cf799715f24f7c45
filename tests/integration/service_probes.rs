//! Latency, service, process, session and application probes against real servers, files and
//! processes that the tests start on this machine (network traffic only to 127.0.0.1 and ::1).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use runner::config::{Config, JobKind};
use runner::probes::{ProbeSet, ProcRoot};

use crate::http_server::{Response, TestServer};

/// Builds the probes of a monitor job from YAML list items, through the real config loader.
fn probes(dir: &Path, items: &str) -> ProbeSet {
    let file = dir.join("jobs.yaml");
    let indented: String = items.lines().map(|l| format!("      {l}\n")).collect();
    std::fs::write(
        &file,
        format!("data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n{indented}"),
    )
    .unwrap();
    let config = Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render()));
    let JobKind::Monitor(monitor) = &config.job("m").unwrap().kind else {
        panic!("monitor")
    };
    ProbeSet::build(&monitor.probes, &ProcRoot::default())
}

struct Tick {
    metrics: BTreeMap<String, f64>,
    errors: BTreeMap<String, String>,
}

impl Tick {
    fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }

    fn error(&self, key: &str) -> &str {
        self.errors.get(key).map(String::as_str).unwrap_or("")
    }
}

/// When a tick began and ended, to bound the interval a rate was taken over.
#[derive(Clone, Copy)]
struct Span {
    start: Instant,
    end: Instant,
}

/// A tick and when it ran.
async fn timed_tick(set: &mut ProbeSet) -> (Tick, Span) {
    let start = Instant::now();
    let t = tick(set).await;
    (
        t,
        Span {
            start,
            end: Instant::now(),
        },
    )
}

/// `rate` per second is `count` events between the readings of two ticks: the probe read
/// somewhere within each tick, so the interval lies between the gap of the ticks and their
/// whole span. Holds however slow the machine is.
#[track_caller]
fn assert_rate_counts(rate: f64, count: f64, before: Span, now: Span) {
    let shortest = (now.start - before.end).as_secs_f64();
    let longest = (now.end - before.start).as_secs_f64();
    assert!(
        rate * shortest <= count + 1e-9 && count <= rate * longest + 1e-9,
        "{rate}/s is not {count} events over {shortest}..{longest} s"
    );
}

async fn tick(set: &mut ProbeSet) -> Tick {
    let out = set.collect().await;
    Tick {
        metrics: out
            .metrics
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect(),
        errors: out.errors.into_iter().collect(),
    }
}

#[tokio::test]
async fn ping_reaches_loopback_on_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = probes(
        dir.path(),
        "- { type: ping, name: v4, host: 127.0.0.1, count: 3, interval_ms: 20 }\n- { type: ping, name: v6, host: \"::1\", count: 3, interval_ms: 20 }\n- { type: ping, name: named, host: localhost, count: 2, interval_ms: 20 }",
    );
    let t = tick(&mut set).await;
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    for name in ["v4", "v6", "named"] {
        assert_eq!(
            t.get(&format!("ping.{name}.loss_percent")),
            Some(0.0),
            "{name}"
        );
        let avg = t.get(&format!("ping.{name}.rtt_avg_ms")).unwrap();
        assert!(avg > 0.0 && avg < 5.0, "{name}: {avg} ms");
        let (min, max) = (
            t.get(&format!("ping.{name}.rtt_min_ms")).unwrap(),
            t.get(&format!("ping.{name}.rtt_max_ms")).unwrap(),
        );
        assert!(min <= avg && avg <= max);
    }
    // Jitter is the mean gap between successive round trips: never more than their spread.
    let jitter = t.get("ping.v4.jitter_ms").unwrap();
    let spread = t.get("ping.v4.rtt_max_ms").unwrap() - t.get("ping.v4.rtt_min_ms").unwrap();
    assert!(
        jitter <= spread + 1e-9,
        "jitter {jitter} ms over a spread of {spread} ms"
    );
}

#[tokio::test]
async fn ping_of_a_name_that_does_not_resolve_is_an_error_not_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = probes(
        dir.path(),
        "- { type: ping, name: bad, host: no-such-host.invalid, count: 2 }",
    );
    let t = tick(&mut set).await;
    assert!(
        t.error("ping.bad")
            .starts_with("cannot resolve `no-such-host.invalid`"),
        "{:?}",
        t.errors
    );
    assert_eq!(t.get("ping.bad.loss_percent"), None);
}

#[tokio::test]
async fn tcp_to_a_listening_and_a_closed_port() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut set = probes(
        dir.path(),
        &format!(
            "- {{ type: tcp, name: up, host: 127.0.0.1, port: {open} }}\n- {{ type: tcp, name: down, host: 127.0.0.1, port: {closed} }}"
        ),
    );
    let t = tick(&mut set).await;
    assert_eq!(t.get("tcp.up.up"), Some(1.0));
    let ms = t.get("tcp.up.connect_ms").unwrap();
    assert!(ms > 0.0 && ms < 100.0, "{ms}");
    assert_eq!(t.get("tcp.down.up"), Some(0.0));
    assert_eq!(t.get("tcp.down.connect_ms"), None);
    assert!(
        t.error("tcp.down").starts_with("refused: "),
        "{:?}",
        t.errors
    );
    assert!(!t.errors.contains_key("tcp.up"));
}

fn app_server() -> TestServer {
    TestServer::start(|req| match req.path() {
        "/ok" => Response::new(200, "all good here"),
        "/fail" => Response::new(500, "database is down"),
        "/hang" => Response::hang(),
        "/html" => Response::new(200, "<html><body>Service hibernating</body></html>")
            .header("Content-Type", "text/html"),
        "/metrics" => Response::json(
            200,
            r#"{"metrics": {"p95": 123.5, "sessions": "42", "name": "x"}, "items": [{"ms": 7}]}"#,
        ),
        "/echo-header" => Response::new(200, req.header("x-home").unwrap_or("none").to_string()),
        _ => Response::new(404, "no"),
    })
}

#[tokio::test]
async fn http_up_down_and_matching() {
    let dir = tempfile::tempdir().unwrap();
    let server = app_server();
    let mut set = probes(
        dir.path(),
        &format!(
            "- {{ type: http, name: ok, url: \"{}\", body_contains: good, body_regex: \"^all\" }}\n- {{ type: http, name: fail, url: \"{}\" }}\n- {{ type: http, name: wrongtext, url: \"{}\", body_contains: bad }}\n- {{ type: http, name: hdr, url: \"{}\", headers: {{ X-Home: \"${{HOME}}\" }}, expect_status: [200, 204] }}",
            server.url("/ok"),
            server.url("/fail"),
            server.url("/ok"),
            server.url("/echo-header")
        ),
    );
    let t = tick(&mut set).await;
    assert_eq!(t.get("http.ok.up"), Some(1.0), "{:?}", t.errors);
    assert_eq!(t.get("http.ok.status"), Some(200.0));
    let (latency, ttfb) = (
        t.get("http.ok.latency_ms").unwrap(),
        t.get("http.ok.ttfb_ms").unwrap(),
    );
    assert!(
        ttfb > 0.0 && ttfb <= latency,
        "ttfb {ttfb} latency {latency}"
    );
    assert_eq!(t.get("http.ok.cert_expiry_days"), None);
    assert_eq!(t.get("http.fail.up"), Some(0.0));
    assert_eq!(t.get("http.fail.status"), Some(500.0));
    assert_eq!(t.error("http.fail"), "status 500 is not an expected one");
    assert_eq!(t.get("http.wrongtext.up"), Some(0.0));
    assert_eq!(t.error("http.wrongtext"), "the body does not contain `bad`");
    assert_eq!(t.get("http.hdr.up"), Some(1.0));
    let seen = server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/echo-header")
        .unwrap();
    assert_eq!(seen.header("x-home"), std::env::var("HOME").ok().as_deref());
    assert!(seen.header("user-agent").unwrap().starts_with("runner/"));
}

#[tokio::test]
async fn http_that_never_answers_times_out_in_about_timeout_ms() {
    let dir = tempfile::tempdir().unwrap();
    let server = app_server();
    let mut set = probes(
        dir.path(),
        &format!(
            "- {{ type: http, name: slow, url: \"{}\", timeout_ms: 500 }}",
            server.url("/hang")
        ),
    );
    let started = Instant::now();
    let t = tick(&mut set).await;
    // It waited for its timeout (a lower bound holds on a busy machine too)...
    assert!(started.elapsed() >= Duration::from_millis(500));
    // ...and then read as down, not as a probe that was lost: this is the first tick, and the
    // client is built with the probe, outside the timed request.
    assert_eq!(t.get("http.slow.up"), Some(0.0), "{:?}", t.errors);
    assert_eq!(t.error("http.slow"), "timed out", "{:?}", t.errors);
    // The URL never shows in errors: it may carry a token.
    assert!(
        !t.errors.values().any(|e| e.contains("127.0.0.1")),
        "{:?}",
        t.errors
    );
}

#[tokio::test]
async fn http_extracts_numbers_and_explains_what_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let server = app_server();
    let mut set = probes(
        dir.path(),
        &format!(
            "- type: http\n  name: app\n  url: \"{}\"\n  extract: {{ response_time_ms: /metrics/p95, sessions: metrics.sessions, first_ms: \"items[0].ms\", missing: metrics.nope, label: metrics.name }}\n- type: http\n  name: sleepy\n  url: \"{}\"\n  extract: {{ response_time_ms: /metrics/p95 }}",
            server.url("/metrics"),
            server.url("/html")
        ),
    );
    let t = tick(&mut set).await;
    assert_eq!(t.get("http.app.up"), Some(1.0));
    assert_eq!(t.get("http.app.response_time_ms"), Some(123.5));
    assert_eq!(t.get("http.app.sessions"), Some(42.0));
    assert_eq!(t.get("http.app.first_ms"), Some(7.0));
    assert_eq!(t.error("http.app.missing"), "no value at /metrics/nope");
    assert_eq!(
        t.error("http.app.label"),
        "the value at /metrics/name is a string, not a number: `x`"
    );
    // HTML where JSON was expected: an error for the field, the probe itself is fine.
    assert_eq!(t.get("http.sleepy.up"), Some(1.0));
    assert_eq!(t.get("http.sleepy.response_time_ms"), None);
    assert_eq!(
        t.error("http.sleepy.response_time_ms"),
        "the body is not JSON (text/html): `<html><body>Service hibernating</body></html>`"
    );
}

/// An https server with a certificate valid for `days`, answering 200 to one request per
/// connection; returns the port and the certificate's PEM.
fn https_server(days: i64) -> (u16, String) {
    use std::sync::Arc;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let now = rcgen::date_time_ymd(2000, 1, 1);
    let _ = now;
    let today = std::time::SystemTime::now();
    params.not_before = (today - Duration::from_secs(86_400)).into();
    params.not_after = (today + Duration::from_secs(days as u64 * 86_400)).into();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut tls, &mut buf);
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, pem)
}

#[tokio::test]
async fn https_reports_days_until_the_certificate_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (port, pem) = https_server(90);
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    let mut set = probes(
        dir.path(),
        &format!(
            "- {{ type: http, name: tls, url: \"https://localhost:{port}/\", ca_file: ca.pem }}\n- {{ type: http, name: untrusted, url: \"https://localhost:{port}/\" }}"
        ),
    );
    let t = tick(&mut set).await;
    assert_eq!(t.get("http.tls.up"), Some(1.0), "{:?}", t.errors);
    let days = t.get("http.tls.cert_expiry_days").unwrap();
    assert!((89.9..=90.0).contains(&days), "{days}");
    // Without the CA the self-signed certificate is refused: down, with the reason.
    assert_eq!(t.get("http.untrusted.up"), Some(0.0));
    assert!(
        t.error("http.untrusted").contains("certificate"),
        "{:?}",
        t.errors
    );
}

#[tokio::test]
async fn connections_counts_established_sessions_on_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("[::]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut set = probes(
        dir.path(),
        &format!("- {{ type: connections, name: app, ports: [{port}] }}"),
    );
    let empty = tick(&mut set).await;
    assert_eq!(empty.get("connections.app.established"), Some(0.0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    for _ in 0..2 {
        clients.push(std::net::TcpStream::connect(("::1", port)).unwrap());
    }
    let t = tick(&mut set).await;
    assert_eq!(t.get("connections.app.established"), Some(5.0));
    // 127.0.0.1 (seen as ::ffff:127.0.0.1 on the dual-stack socket) and ::1.
    assert_eq!(t.get("connections.app.remote_addresses_count"), Some(2.0));
    assert_eq!(t.get("connections.app.max_per_remote_count"), Some(3.0));
    drop(clients);
}

fn log_line(client: &str, status: u16, time_s: f64, session: &str) -> String {
    format!(
        "{client} - - [28/Nov/2026:10:00:00 +0000] \"GET /shop?q=\\\"x\\\" HTTP/1.1\" {status} 512 \"-\" \"Mozilla/5.0 (X11)\" {time_s:.3} {session}\n"
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test]
async fn access_log_counts_what_was_written_across_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // History before runner started is not this tick's load.
    append(&log, &log_line("10.0.0.9", 500, 9.0, "old"));
    let mut set = probes(
        dir.path(),
        "- { type: access_log, name: web, path: access.log, extra_fields: [request_time, session] }",
    );
    let (first, first_span) = timed_tick(&mut set).await;
    assert_eq!(first.get("access_log.web.requests_per_sec"), None);
    assert_eq!(first.get("access_log.web.clients_count"), Some(0.0));

    // 20 requests: statuses 200 ×14, 404 ×2, 503 ×4; times 10..200 ms; 3 clients; 5 sessions.
    let mut text = String::new();
    for i in 0..20u32 {
        let status = match i {
            0..=13 => 200,
            14..=15 => 404,
            _ => 503,
        };
        text.push_str(&log_line(
            &format!("10.0.0.{}", i % 3),
            status,
            f64::from(i + 1) * 0.010,
            &format!("s{}", i % 5),
        ));
    }
    // A line that is not in the format is counted as such, not as a request.
    text.push_str("garbage line\n");
    append(&log, &text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (t, span) = timed_tick(&mut set).await;
    let requests = t.get("access_log.web.requests_per_sec").unwrap();
    assert_rate_counts(requests, 20.0, first_span, span);
    let share = |name: &str| t.get(name).unwrap() / requests;
    assert!((share("access_log.web.server_errors_per_sec") - 4.0 / 20.0).abs() < 1e-9);
    assert!((share("access_log.web.client_errors_per_sec") - 2.0 / 20.0).abs() < 1e-9);
    assert_eq!(t.get("access_log.web.error_ratio"), Some(0.2));
    assert_eq!(t.get("access_log.web.request_p50_ms"), Some(100.0));
    assert_eq!(t.get("access_log.web.request_p95_ms"), Some(190.0));
    assert_eq!(t.get("access_log.web.request_p99_ms"), Some(200.0));
    assert_eq!(t.get("access_log.web.clients_count"), Some(3.0));
    assert_eq!(t.get("access_log.web.sessions_count"), Some(5.0));
    assert!(
        t.error("access_log.web")
            .starts_with("1 lines did not match the format; the first: `garbage line`")
    );

    // Rotation: two more lines land in the old file, then it is renamed and a new one starts.
    append(
        &log,
        &(log_line("10.0.0.50", 200, 0.001, "s1")
            + log_line("10.0.0.51", 200, 0.001, "s1").as_str()),
    );
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    append(
        &log,
        &(log_line("10.0.0.52", 500, 0.001, "s9")
            + log_line("10.0.0.52", 200, 0.001, "s9").as_str()
            + log_line("10.0.0.52", 200, 0.001, "s9").as_str()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let previous = span;
    let (t, span) = timed_tick(&mut set).await;
    let requests = t.get("access_log.web.requests_per_sec").unwrap();
    assert_rate_counts(requests, 5.0, previous, span);
    assert_eq!(t.get("access_log.web.error_ratio"), Some(0.2));
    assert_eq!(t.get("access_log.web.clients_count"), Some(6.0));
    assert_eq!(t.get("access_log.web.sessions_count"), Some(6.0));

    // Truncation in place (copytruncate): the new, shorter content is read from the start.
    std::fs::write(&log, log_line("10.0.0.60", 404, 0.002, "s9")).unwrap();
    let t = tick(&mut set).await;
    assert_eq!(t.get("access_log.web.error_ratio"), Some(0.0));
    assert!(t.get("access_log.web.client_errors_per_sec").unwrap() > 0.0);
    assert_eq!(t.get("access_log.web.clients_count"), Some(7.0));
}

/// A copy of `sleep` under a name nothing else on the machine has.
fn uniquely_named_sleeper(dir: &Path) -> std::path::PathBuf {
    let name = format!("rt{}", std::process::id() % 1_000_000);
    let path = dir.join(&name);
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("sleep");
    std::fs::copy(sleep, &path).unwrap();
    path
}

#[tokio::test]
async fn process_by_name_and_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = uniquely_named_sleeper(dir.path());
    let name = sleeper.file_name().unwrap().to_str().unwrap().to_string();
    let pid_file = dir.path().join("app.pid");
    let mut set = probes(
        dir.path(),
        &format!(
            "- {{ type: process, name: byname, process_name: {name} }}\n- {{ type: process, name: bypid, pid_file: app.pid }}"
        ),
    );
    let none = tick(&mut set).await;
    assert_eq!(none.get("process.byname.count"), Some(0.0));
    assert_eq!(none.get("process.byname.rss_bytes"), None);
    assert_eq!(none.get("process.bypid.count"), Some(0.0));

    let mut child = std::process::Command::new(&sleeper)
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = tick(&mut set).await;
    assert_eq!(t.get("process.byname.count"), Some(1.0), "{:?}", t.errors);
    let rss = t.get("process.byname.rss_bytes").unwrap();
    assert!(rss > 100_000.0 && rss < 50_000_000.0, "{rss}");
    assert_eq!(t.get("process.byname.threads"), Some(1.0));
    assert!(t.get("process.byname.open_fds").unwrap() >= 3.0);
    assert_eq!(t.get("process.bypid.count"), Some(1.0));
    assert_eq!(t.get("process.byname.restarts_count"), Some(0.0));

    // A restart: the old pid goes, a new one takes its place.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut again = std::process::Command::new(&sleeper)
        .arg("30")
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = tick(&mut set).await;
    assert_eq!(t.get("process.byname.count"), Some(1.0));
    assert_eq!(t.get("process.byname.restarts_count"), Some(1.0));
    assert!(t.get("process.byname.cpu_percent").is_some());
    // The pid file still names the dead process.
    assert_eq!(t.get("process.bypid.count"), Some(0.0));
    again.kill().unwrap();
    again.wait().unwrap();
}

#[tokio::test]
async fn command_outputs_exit_codes_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = probes(
        dir.path(),
        "- { type: command, name: number, shell: \"echo 42.5\" }\n- { type: command, name: lines, shell: \"printf 'queue depth 3\\nlag: 0.25\\n'\" }\n- { type: command, name: json, command: [/bin/echo, '{\"connections\": 17}'] }\n- { type: command, name: failing, shell: \"echo boom >&2; exit 1\" }\n- { type: command, name: slow, command: [sleep, \"5\"], timeout_ms: 300 }\n- { type: command, name: missing, command: [/no/such/program] }",
    );
    let t = tick(&mut set).await;
    assert_eq!(t.get("command.number.value"), Some(42.5));
    assert_eq!(t.get("command.lines.queue_depth"), Some(3.0));
    assert_eq!(t.get("command.lines.lag"), Some(0.25));
    assert_eq!(t.get("command.json.connections"), Some(17.0));
    assert!(t.get("command.number.duration_ms").unwrap() > 0.0);
    assert_eq!(t.error("command.failing"), "`/bin/sh` exited with 1: boom");
    assert!(
        t.error("command.slow")
            .starts_with("`sleep` did not finish within"),
        "{:?}",
        t.errors
    );
    assert!(
        t.error("command.missing")
            .starts_with("cannot run `/no/such/program`")
    );
}

/// A copy of `sh` under a name of its own, to run a busy loop that only this test matches.
fn uniquely_named_shell(dir: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("busy{}", std::process::id() % 100_000));
    std::fs::copy("/bin/sh", &path).unwrap();
    path
}

/// A process that restarted between two ticks: the new pid's CPU since it started counts, rather
/// than a 0 for the pid the previous tick did not know.
#[tokio::test]
async fn a_restarted_process_shows_the_new_pids_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let shell = uniquely_named_shell(dir.path());
    let name = shell.file_name().unwrap().to_str().unwrap().to_string();
    let busy = || {
        std::process::Command::new(&shell)
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap()
    };
    let mut set = probes(
        dir.path(),
        &format!("- {{ type: process, name: busy, process_name: {name} }}"),
    );
    let mut first = busy();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tick(&mut set).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = busy();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = tick(&mut set).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(t.get("process.busy.restarts_count"), Some(1.0));
    let cpu = t
        .get("process.busy.cpu_percent")
        .expect("the new pid's CPU");
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(cpu > 0.0 && cpu <= 100.0 * cores, "{cpu} %");
}
