//! Notifiers against local servers that answer like Slack, a webhook receiver and Alertmanager
//! (ServiceNow is in `servicenow.rs`): deliveries, retries with `Retry-After`, refusals kept as
//! dead letters, outages, grouping, and nothing lost or sent twice.

use crate::support::PATIENCE;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use runner::alerts::event::{AlertEvent, EventKind};
use runner::config::Config;
use runner::notify::Notifiers;
use runner::scheduler::clock::{Clock, SharedClock, VirtualClock};
use runner::vocab::Severity;
use tokio_util::sync::CancellationToken;

use crate::http_server::{Request, Response, TestServer};

pub(crate) fn event(n: u32, kind: EventKind, severity: Severity) -> AlertEvent {
    let at = DateTime::parse_from_rfc3339("2026-11-28T09:00:00Z")
        .unwrap()
        .to_utc()
        + chrono::Duration::seconds(i64::from(n));
    let mut e = AlertEvent::example(&format!("alert_{n}"), kind, severity, at);
    e.fingerprint = format!("{n:064x}");
    e.id = runner::alerts::event::event_id(&e.fingerprint, kind, at);
    e.labels = [("mount".to_string(), "/var".to_string())].into();
    e.summary = format!("event {n} on web-1");
    e.explanation = "cpu.total.usage_percent 93.2 > 85 for 5m".into();
    e.active_since = at - chrono::Duration::minutes(5);
    e.job = "m".into();
    e
}

/// Answers from a script, then `fallback` for every request after it.
pub(crate) fn scripted(
    script: Vec<Response>,
    fallback: Response,
) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    let script = Mutex::new(VecDeque::from(script));
    move |_| {
        script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| fallback.clone())
    }
}

pub(crate) fn slack_ok() -> Response {
    Response::new(200, "ok").header("Content-Type", "text/plain")
}

/// Where the harness's virtual clock starts: shortly after the test events.
const START: &str = "2026-11-28T09:10:00Z";

/// Virtual time that passes for each millisecond of real time while a test waits.
const STEP: Duration = Duration::from_millis(20);

/// A jobs file with these notifiers, its config and notifiers; delivery started on a virtual
/// clock, so backoff, rate limits, grouping and keepalives take no real time.
pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub notifiers: Arc<Notifiers>,
    pub clock: Arc<VirtualClock>,
    stop: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Harness {
    pub fn new(notifiers_yaml: &str) -> Harness {
        Harness::with_clock(notifiers_yaml, virtual_clock())
    }

    pub fn with_clock(notifiers_yaml: &str, clock: Arc<VirtualClock>) -> Harness {
        Harness::with_jobs(
            notifiers_yaml,
            "  m: { type: monitor, schedule: \"@every 10s\" }\n",
            clock,
        )
    }

    /// A harness whose jobs file has these jobs (their `notify` lists route runner's own
    /// alerts).
    pub fn with_jobs(notifiers_yaml: &str, jobs_yaml: &str, clock: Arc<VirtualClock>) -> Harness {
        let shared: SharedClock = clock.clone();
        let dir = tempfile::tempdir().unwrap();
        let file = crate::support::jobs_file(
            dir.path(),
            &format!("notifiers:\n{notifiers_yaml}jobs:\n{jobs_yaml}"),
        );
        let config = Arc::new(Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render())));
        let notifiers = Arc::new(Notifiers::new(&config, shared));
        let stop = CancellationToken::new();
        let handles = notifiers.start(stop.clone());
        Harness {
            _dir: dir,
            config,
            notifiers,
            clock,
            stop,
            handles,
        }
    }

    /// Lets virtual time pass until `cond` holds (a real-time limit catches a hang).
    pub async fn drive(&self, what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
            self.clock.advance(STEP);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Lets `by` of virtual time pass, a step at a time, so whatever it wakes gets to run.
    pub async fn pass(&self, by: Duration) {
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(STEP);
            self.clock.advance(step);
            left -= step;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn send(&self, to: &[&str], events: &[AlertEvent]) {
        let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        self.notifiers.dispatch(&to, events);
    }

    pub fn outbox(&self) -> PathBuf {
        self.config.data_dir.join("outbox")
    }

    pub fn delivered(&self, notifier: &str) -> u64 {
        self.notifiers.stats(notifier).unwrap().delivered()
    }

    pub fn dead(&self, notifier: &str) -> u64 {
        self.notifiers.stats(notifier).unwrap().dead()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        for h in self.handles {
            let _ = h.await;
        }
    }

    /// Stops delivery and starts it again from the same files: a restart.
    pub async fn restart(self) -> Harness {
        self.stop.cancel();
        for h in self.handles {
            let _ = h.await;
        }
        let shared: SharedClock = self.clock.clone();
        let notifiers = Arc::new(Notifiers::new(&self.config, shared));
        let stop = CancellationToken::new();
        let handles = notifiers.start(stop.clone());
        Harness {
            _dir: self._dir,
            config: self.config,
            notifiers,
            clock: self.clock,
            stop,
            handles,
        }
    }
}

/// A virtual clock at the harness's start, for a test that needs it before the harness.
pub(crate) fn virtual_clock() -> Arc<VirtualClock> {
    VirtualClock::new(DateTime::parse_from_rfc3339(START).unwrap().to_utc())
}

/// When requests arrived, in virtual time.
pub(crate) type Arrivals = Arc<Mutex<Vec<DateTime<Utc>>>>;

/// A handler that also notes the virtual time each request arrives at.
pub(crate) fn stamped(
    clock: &Arc<VirtualClock>,
    handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
) -> (
    impl Fn(&Request) -> Response + Send + Sync + 'static,
    Arrivals,
) {
    let times: Arrivals = Arc::default();
    let (clock, seen) = (clock.clone(), times.clone());
    let stamped = move |r: &Request| {
        seen.lock().unwrap().push(clock.now());
        handler(r)
    };
    (stamped, times)
}

/// Polls `cond` every 10 ms for up to `timeout` of real time.
pub(crate) async fn wait_for(timeout: Duration, what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `wait_for` for tests without a runtime.
pub(crate) fn block_on_wait(timeout: Duration, what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn slack_yaml(url: &str, extra: &str) -> String {
    format!(
        "  slack: {{ type: slack, webhook_url: \"{url}\", group_wait: 0s, retry_initial: 20ms, retry_max: 200ms, max_per_second: 1000{extra} }}\n"
    )
}

/// The summaries of every alert in a Slack message, from its fallback text.
fn summaries(request: &Request) -> Vec<String> {
    let text = request.json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    text.lines()
        .filter_map(|line| {
            let start = line.find("event ")?;
            let rest = &line[start..];
            Some(rest.split(" on ").next()?.to_string())
        })
        .collect()
}

#[tokio::test]
async fn slack_gets_a_block_kit_message_and_the_queue_empties() {
    let server = TestServer::start(scripted(vec![], slack_ok()));
    let h = Harness::new(&slack_yaml(&server.url("/services/T0/B0/secret"), ""));
    h.send(
        &["log", "slack"],
        &[event(1, EventKind::Firing, Severity::Critical)],
    );
    h.drive("the delivery", || h.delivered("slack") == 1).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path(), "/services/T0/B0/secret");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("user-agent").unwrap().starts_with("runner/"));
    let body = r.json();
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        ":rotating_light: [CRITICAL] event 1 on web-1"
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] event 1 on web-1")
    );
    let outbox = std::fs::read_to_string(h.outbox().join("slack.jsonl")).unwrap();
    let done: u64 = std::fs::read_to_string(h.outbox().join("slack.done"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(done, outbox.len() as u64, "marked done to the end");
    assert!(
        !outbox.contains("secret"),
        "the webhook URL is not in the outbox"
    );
    h.stop().await;
}

#[tokio::test]
async fn slack_429_with_retry_after_waits_then_sends_once() {
    let server = TestServer::start(scripted(
        vec![Response::new(429, "rate_limited").header("Retry-After", "2")],
        slack_ok(),
    ));
    let h = Harness::new(&slack_yaml(&server.url("/hook"), ""));
    let clock = h.clock.clone();
    h.send(
        &["slack"],
        &[event(1, EventKind::Firing, Severity::Warning)],
    );
    wait_for(PATIENCE, "the first attempt", || {
        server.requests().len() == 1
    })
    .await;
    // Real time passes, virtual time does not: it must wait for Retry-After.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests().len(), 1, "retried before Retry-After");
    clock.advance(Duration::from_millis(1900));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.requests().len(), 1, "retried before Retry-After");
    clock.advance(Duration::from_millis(200));
    h.drive("the retry", || h.delivered("slack") == 1).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "the same message again");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.requests().len(), 2, "no duplicate");
    assert_eq!(h.dead("slack"), 0);
    h.stop().await;
}

#[tokio::test]
async fn slack_500_three_times_then_ok_is_delivered_once() {
    let clock = virtual_clock();
    let (handler, times) = stamped(
        &clock,
        scripted(
            vec![
                Response::new(500, "rollup_error"),
                Response::new(503, ""),
                Response::new(500, "rollup_error"),
            ],
            slack_ok(),
        ),
    );
    let server = TestServer::start(handler);
    let h = Harness::with_clock(&slack_yaml(&server.url("/hook"), ""), clock);
    h.send(
        &["slack"],
        &[event(1, EventKind::Firing, Severity::Warning)],
    );
    h.drive("the delivery", || h.delivered("slack") == 1).await;
    assert_eq!(server.requests().len(), 4);
    let stats = h.notifiers.stats("slack").unwrap();
    assert_eq!(
        stats
            .failed_attempts
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    // Backoff: the retries waited at least half of 20, 40 and 80 ms, not hammered.
    let at = times.lock().unwrap().clone();
    assert!(
        at[3] - at[0] >= chrono::Duration::milliseconds(70),
        "{:?}",
        at[3] - at[0]
    );
    h.stop().await;
}

#[tokio::test]
async fn slack_404_no_service_is_a_dead_letter_and_the_queue_moves_on() {
    let server = TestServer::start(scripted(vec![Response::new(404, "no_service")], slack_ok()));
    let h = Harness::new(&slack_yaml(&server.url("/hook"), ""));
    h.send(
        &["slack"],
        &[event(1, EventKind::Firing, Severity::Warning)],
    );
    h.drive("the refusal", || h.dead("slack") == 1).await;
    let dead = std::fs::read_to_string(h.outbox().join("dead/slack.jsonl")).unwrap();
    let letter: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 404 no_service"),
        "{letter}"
    );
    assert_eq!(letter["entry"]["event"]["name"], "alert_1");
    assert_eq!(server.requests().len(), 1, "a refusal is not retried");
    h.send(
        &["slack"],
        &[event(2, EventKind::Firing, Severity::Warning)],
    );
    h.drive("the next delivery", || h.delivered("slack") == 1)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn a_destination_down_for_a_while_gets_everything_once_in_order() {
    // Take a free port, then leave it closed: connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/hook");
    let h = Harness::new(&slack_yaml(&url, ""));
    for n in 0..12 {
        h.send(
            &["slack"],
            &[event(n, EventKind::Firing, Severity::Warning)],
        );
        h.pass(Duration::from_millis(15)).await;
    }
    let stats = h.notifiers.stats("slack").unwrap();
    let failed = || {
        stats
            .failed_attempts
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    h.drive("it to keep trying", || failed() >= 3).await;
    assert_eq!(h.delivered("slack"), 0);
    let server = TestServer::start_at(addr, scripted(vec![], slack_ok()));
    h.drive("the backlog", || h.delivered("slack") == 12).await;
    let got: Vec<String> = server.requests().iter().flat_map(summaries).collect();
    let want: Vec<String> = (0..12).map(|n| format!("event {n}")).collect();
    assert_eq!(got, want, "every event once, in order");
    h.stop().await;
}

#[tokio::test]
async fn a_burst_of_50_alerts_becomes_a_few_grouped_messages_within_the_rate_limit() {
    let clock = virtual_clock();
    let (handler, times) = stamped(&clock, scripted(vec![], slack_ok()));
    let server = TestServer::start(handler);
    // Slack's defaults: one message a second, a burst of three; group for 300 ms.
    let yaml = format!(
        "  slack: {{ type: slack, webhook_url: \"{}\", group_wait: 300ms }}\n",
        server.url("/hook")
    );
    let h = Harness::with_clock(&yaml, clock);
    for n in 0..50 {
        h.send(
            &["slack"],
            &[event(n, EventKind::Firing, Severity::Warning)],
        );
    }
    h.drive("the burst", || h.delivered("slack") == 50).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "20 + 20 + 10 alerts a message");
    let got: Vec<String> = requests.iter().flat_map(summaries).collect();
    assert_eq!(
        got,
        (0..50).map(|n| format!("event {n}")).collect::<Vec<_>>()
    );
    assert_eq!(
        requests[0].json()["blocks"][0]["text"]["text"],
        ":warning: [WARNING] 20 alerts: 20 firing"
    );
    h.send(
        &["slack"],
        &[event(50, EventKind::Firing, Severity::Warning)],
    );
    h.drive("one more", || h.delivered("slack") == 51).await;
    // The burst allowance was spent: the fourth message waited for the rate.
    let at = times.lock().unwrap().clone();
    assert!(
        at[3] - at[0] >= chrono::Duration::milliseconds(900),
        "{:?}",
        at[3] - at[0]
    );
    h.stop().await;
}

#[tokio::test]
async fn webhook_posts_signed_standard_webhooks_with_the_same_id_on_retry() {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let server = TestServer::start(scripted(
        vec![Response::new(502, "")],
        Response::new(204, ""),
    ));
    let yaml = format!(
        "  hook: {{ type: webhook, url: \"{}\", signing_secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", headers: {{ X-Team: ops }}, retry_initial: 20ms }}\n",
        server.url("/in")
    );
    let h = Harness::new(&yaml);
    let e = event(7, EventKind::Resolved, Severity::Critical);
    h.send(&["hook"], std::slice::from_ref(&e));
    h.drive("the delivery", || h.delivered("hook") == 1).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("webhook-id"),
        requests[1].header("webhook-id")
    );
    let r = &requests[1];
    assert_eq!(r.header("webhook-id"), Some(e.id.as_str()));
    assert_eq!(r.header("x-team"), Some("ops"));
    let body = r.json();
    assert_eq!(body["type"], "alert.resolved");
    assert_eq!(body["data"]["id"], e.id);
    assert_eq!(body["data"]["schema_version"], 1);
    assert_eq!(body["data"]["name"], "alert_7");
    assert_eq!(body["data"]["labels"]["mount"], "/var");
    assert_eq!(body["data"]["explanation"], e.explanation);
    // Verify as a receiver would, with the shared secret.
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let timestamp = r.header("webhook-timestamp").unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{timestamp}.", e.id).as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), Some(expected.as_str()));
    // The timestamp is the real time of sending: receivers hold it against their own clock.
    let age = Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!((0..30).contains(&age), "timestamp is now: {age}");
    h.stop().await;
}

#[tokio::test]
async fn alertmanager_gets_labels_annotations_and_times_and_resolves_with_ends_at() {
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = TestServer::start(scripted(vec![], Response::new(200, "")));
    let yaml = format!(
        "  am: {{ type: alertmanager, urls: [\"http://{down}\", \"{}\"], resend_interval: 100ms }}\n",
        server.url("")
    );
    let h = Harness::new(&yaml);
    let firing = event(3, EventKind::Firing, Severity::Critical);
    h.send(&["am"], std::slice::from_ref(&firing));
    h.drive("the firing alert", || h.delivered("am") == 1).await;
    let first = &server.requests()[0];
    assert_eq!(first.path(), "/api/v2/alerts");
    let alerts = first.json();
    let alert = &alerts[0];
    assert_eq!(alert["labels"]["alertname"], "alert_3");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["host"], "web-1");
    assert_eq!(alert["labels"]["mount"], "/var");
    assert_eq!(alert["annotations"]["summary"], "event 3 on web-1");
    assert_eq!(alert["annotations"]["description"], firing.explanation);
    assert_eq!(alert["startsAt"], "2026-11-28T08:55:03.000Z");
    let ends = DateTime::parse_from_rfc3339(alert["endsAt"].as_str().unwrap()).unwrap();
    assert!(
        ends > h.clock.now(),
        "a firing alert ends in the future: {ends}"
    );
    // Re-sent while firing, so Alertmanager keeps it.
    h.drive("a resend", || server.requests().len() >= 3).await;
    let mut resolved = firing.clone();
    resolved.kind = EventKind::Resolved;
    resolved.at = firing.at + chrono::Duration::minutes(1);
    h.send(&["am"], &[resolved]);
    h.drive("the resolve", || h.delivered("am") == 2).await;
    let last = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.json()[0]["endsAt"] == "2026-11-28T09:01:03.000Z")
        .expect("a resolve with endsAt = when it resolved");
    assert_eq!(last.json()[0]["labels"]["alertname"], "alert_3");
    h.stop().await;
}

#[tokio::test]
async fn an_escalation_resolves_the_label_set_it_replaces_in_the_same_post() {
    let server = TestServer::start(scripted(vec![], Response::new(200, "")));
    let yaml = format!(
        "  am: {{ type: alertmanager, urls: [\"{}\"], resend_interval: 1s }}\n",
        server.url("")
    );
    let h = Harness::new(&yaml);
    let warning = event(5, EventKind::Firing, Severity::Warning);
    h.send(&["am"], std::slice::from_ref(&warning));
    h.drive("the warning", || h.delivered("am") == 1).await;
    let mut critical = warning.clone();
    critical.kind = EventKind::Repeat;
    critical.severity = Severity::Critical;
    critical.at = warning.at + chrono::Duration::minutes(2);
    h.send(&["am"], &[critical]);
    h.drive("the escalation", || h.delivered("am") == 2).await;
    let posted = server.requests().len();
    let escalation = server
        .requests()
        .iter()
        .map(|r| r.json())
        .find(|body| body[1]["labels"]["severity"] == "critical")
        .expect("the escalation's POST");
    let alerts = escalation.as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{escalation}");
    assert_eq!(alerts[0]["labels"]["severity"], "warning");
    let ended = DateTime::parse_from_rfc3339(alerts[0]["endsAt"].as_str().unwrap()).unwrap();
    assert!(
        ended <= h.clock.now(),
        "the old label set ends now: {ended}"
    );
    let ends = DateTime::parse_from_rfc3339(alerts[1]["endsAt"].as_str().unwrap()).unwrap();
    assert!(ends > h.clock.now());
    // Keepalives carry only the current label set.
    h.drive("a keepalive", || server.requests().len() > posted)
        .await;
    let keepalive = server.requests().last().unwrap().json();
    assert_eq!(keepalive.as_array().unwrap().len(), 1, "{keepalive}");
    assert_eq!(keepalive[0]["labels"]["severity"], "critical");
    h.stop().await;
}

#[tokio::test]
async fn what_a_destination_says_back_is_scrubbed_of_the_notifiers_secrets() {
    // Express answers an unknown route by quoting it, token and all.
    let server = TestServer::start(|r: &Request| {
        // ... and some echo the credentials they were given.
        let auth = r.header("authorization").unwrap_or_default();
        Response::new(404, format!("<pre>Cannot POST {} ({auth})</pre>", r.target))
            .header("Content-Type", "text/html")
    });
    let yaml = format!(
        "{}  hook: {{ type: webhook, url: \"{}\", headers: {{ Authorization: \"Bearer HEADERTOKEN42\" }}, retry_initial: 20ms }}\n",
        slack_yaml(&server.url("/services/T000/B000/SECRETTOKEN123"), ""),
        server.url("/in?token=QUERYSECRET99")
    );
    let h = Harness::new(&yaml);
    h.send(
        &["slack", "hook"],
        &[event(1, EventKind::Firing, Severity::Critical)],
    );
    h.drive("both refusals", || {
        h.dead("slack") == 1 && h.dead("hook") == 1
    })
    .await;
    for name in ["slack", "hook"] {
        let dead = std::fs::read_to_string(h.outbox().join(format!("dead/{name}.jsonl"))).unwrap();
        assert!(dead.contains("HTTP 404"), "{dead}");
        assert!(dead.contains("Cannot POST"), "what it said is kept: {dead}");
        for secret in ["SECRETTOKEN123", "T000", "QUERYSECRET99", "HEADERTOKEN42"] {
            assert!(!dead.contains(secret), "{secret} in {dead}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn routing_takes_the_job_list_the_rule_list_and_min_severity() {
    let server = TestServer::start(scripted(vec![], slack_ok()));
    let yaml = format!(
        "{}  hook: {{ type: webhook, url: \"{}\", min_severity: critical }}\n",
        slack_yaml(&server.url("/slack"), ", min_severity: warning"),
        server.url("/hook")
    );
    let h = Harness::new(&yaml);
    let job = vec!["log".to_string(), "slack".to_string(), "hook".to_string()];
    let info = event(1, EventKind::Firing, Severity::Info);
    let warning = event(2, EventKind::Firing, Severity::Warning);
    let critical = event(3, EventKind::Firing, Severity::Critical);
    let mut narrowed = event(4, EventKind::Firing, Severity::Critical);
    narrowed.notify = Some(vec!["hook".into(), "pagerduty".into()]);
    assert_eq!(h.notifiers.targets(&job, &info), ["log"]);
    assert_eq!(h.notifiers.targets(&job, &warning), ["log", "slack"]);
    assert_eq!(
        h.notifiers.targets(&job, &critical),
        ["log", "slack", "hook"]
    );
    assert_eq!(h.notifiers.targets(&job, &narrowed), ["hook"]);
    assert_eq!(
        h.notifiers.targets(&["slack".to_string()], &narrowed),
        Vec::<&str>::new()
    );
    h.stop().await;
}

/// A server that answers every request with `status` and the request echoed back: the
/// `Authorization` header as it came and JSON-escaped, the other headers, the target and the
/// body. The worst a destination (or a debugging proxy) can do with a notifier's secrets.
fn echo(status: u16) -> TestServer {
    TestServer::start(move |r: &Request| {
        let auth = r.header("authorization").unwrap_or_default().to_string();
        let headers: Vec<String> = r
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-") || k.starts_with("X-"))
            .map(|(k, v)| format!("{k}: {v} {}", serde_json::to_string(v).unwrap()))
            .collect();
        Response::new(
            status,
            format!(
                "{auth} {} {} {} {}",
                serde_json::to_string(&auth).unwrap(),
                headers.join(" "),
                r.target,
                r.text()
            ),
        )
        .header("Content-Type", "text/plain")
    })
}

/// Base64 of a Basic credential pair, as the `Authorization` header carries it.
fn basic(pair: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(pair)
}

/// Panics if any of `leaks` is in `text`.
fn assert_no_leak(what: &str, text: &str, leaks: &[String]) {
    for leak in leaks {
        assert!(!text.contains(leak.as_str()), "{leak:?} in {what}: {text}");
    }
}

/// Pieces of each secret of `secret_notifiers_yaml`, in the forms they travel in: as they are,
/// percent-encoded, JSON-escaped, and the Basic header made of a user and password.
fn secret_leaks() -> Vec<String> {
    [
        // webhook: the URL's password, its header value (JSON-escaped: `\"`, `\\`).
        "pw/Se".to_string(),
        "pw%2FSe".into(),
        "Se cret".into(),
        "Se%20cret".into(),
        basic("alice:pw/Se cret")[..16].to_string(),
        "HdrQ".into(),
        "uoteS".into(),
        "lash7".into(),
        // alertmanager: the query token.
        "AmTok".into(),
        // servicenow basic: the password and the Basic header.
        "Sn/pa".into(),
        "Sn%2Fpa".into(),
        basic("admin:Sn/pa ss+1")[..16].to_string(),
        // servicenow OAuth: the client secret, form-encoded in the token request.
        "Cl/ient".into(),
        "Cl%2Fient".into(),
        "ient+sec".into(),
        "sec%2Bret".into(),
        // gdrive: the client secret and the refresh token, form-encoded.
        "GcS/ecret".into(),
        "GcS%2Fecret".into(),
        "0gRefreshTok9".into(),
    ]
    .to_vec()
}

fn secret_notifiers_yaml(
    hook: &TestServer,
    am: &TestServer,
    sn: &TestServer,
    drive: &TestServer,
) -> String {
    let at = |s: &TestServer| {
        s.url("")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    };
    format!(
        concat!(
            "  hook: {{ type: webhook, url: \"http://alice:pw%2FSe%20cret@{}/in\", headers: {{ X-Token: 'HdrQ\"uoteS\\lash7' }}, retry_initial: 20ms }}\n",
            "  am: {{ type: alertmanager, urls: [\"{}?token=AmTok%2Fen+9\"], retry_initial: 20ms }}\n",
            "  snbasic: {{ type: servicenow, instance: \"{}\", username: admin, password: \"Sn/pa ss+1\", min_severity: info, retry_initial: 20ms }}\n",
            "  snoauth: {{ type: servicenow, instance: \"{}\", client_id: runner, client_secret: \"Cl/ient sec+ret\", min_severity: info, retry_initial: 20ms }}\n",
            "  drive: {{ type: gdrive, folder_id: F0lder, client_id: cid, client_secret: \"GcS/ecret x\", refresh_token: \"1//0gRefreshTok9\", token_url: \"{}\", upload_url: \"{}\", retry_initial: 20ms }}\n",
        ),
        at(hook),
        am.url("/am"),
        sn.url(""),
        sn.url(""),
        drive.url("/token"),
        drive.url("/upload"),
    )
}

#[tokio::test]
async fn no_form_of_a_secret_reaches_a_dead_letter_when_the_destination_echoes_the_request() {
    let (hook, am, sn, drive) = (echo(400), echo(400), echo(401), echo(400));
    let h = Harness::new(&secret_notifiers_yaml(&hook, &am, &sn, &drive));
    let names = ["hook", "am", "snbasic", "snoauth"];
    h.send(&names, &[event(1, EventKind::Firing, Severity::Critical)]);
    h.drive("every refusal", || names.iter().all(|n| h.dead(n) == 1))
        .await;
    // The echo did carry the secrets: what is kept must have been scrubbed.
    assert!(
        hook.requests()[0]
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert!(am.requests()[0].target.contains("AmTok"));
    for name in names {
        let dead = std::fs::read_to_string(h.outbox().join(format!("dead/{name}.jsonl"))).unwrap();
        assert!(dead.contains("HTTP 40"), "{dead}");
        assert!(dead.contains("***"), "scrubbed, not dropped: {dead}");
        assert_no_leak(&format!("dead/{name}.jsonl"), &dead, &secret_leaks());
    }
    h.stop().await;
}

#[test]
fn notify_test_output_shows_no_form_of_any_secret() {
    let (hook, am, sn, drive) = (echo(400), echo(400), echo(401), echo(400));
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "notifiers:\n{}jobs:\n  m: {{ type: monitor, schedule: \"@every 1m\" }}\n",
            secret_notifiers_yaml(&hook, &am, &sn, &drive)
        ),
    );
    for name in ["hook", "am", "snbasic", "snoauth", "drive"] {
        let output = crate::support::run(&["notify-test", name, "--jobs", file.to_str().unwrap()]);
        let said = format!(
            "{}{}",
            crate::support::stdout(&output),
            crate::support::stderr(&output)
        );
        assert_eq!(output.status.code(), Some(1), "{name}: {said}");
        assert!(
            said.contains("refused") && said.contains("***"),
            "{name}: {said}"
        );
        assert_no_leak(&format!("notify-test {name}"), &said, &secret_leaks());
    }
    // Google Drive was asked for a token: its test goes as far as the others.
    let token = drive.requests()[0].text();
    assert!(
        token.contains("refresh_token=1%2F%2F0gRefreshTok9"),
        "{token}"
    );
}

/// OAuth access tokens are fetched at run time, after the notifier was built: an answer that
/// echoes the request carries the live token, and it is scrubbed too.
#[test]
fn an_oauth_access_token_echoed_back_is_scrubbed() {
    let token_then_echo = || {
        TestServer::start(|r: &Request| {
            if r.path() == "/token" || r.path().ends_with("/oauth_token.do") {
                return Response::json(
                    200,
                    r#"{"access_token":"LiveAcc/ess+Tok9","expires_in":3600}"#,
                );
            }
            let auth = r.header("authorization").unwrap_or_default().to_string();
            Response::new(
                400,
                format!("{auth} {}", serde_json::to_string(&auth).unwrap()),
            )
            .header("Content-Type", "text/plain")
        })
    };
    let (sn, drive) = (token_then_echo(), token_then_echo());
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            concat!(
                "notifiers:\n",
                "  snoauth: {{ type: servicenow, instance: \"{}\", client_id: runner, client_secret: s3cret, min_severity: info }}\n",
                "  drive: {{ type: gdrive, folder_id: F0lder, client_id: cid, client_secret: s3cret, refresh_token: \"1//r\", token_url: \"{}\", upload_url: \"{}\" }}\n",
                "jobs:\n  m: {{ type: monitor, schedule: \"@every 1m\" }}\n",
            ),
            sn.url(""),
            drive.url("/token"),
            drive.url("/upload"),
        ),
    );
    for (name, server) in [("snoauth", &sn), ("drive", &drive)] {
        let output = crate::support::run(&["notify-test", name, "--jobs", file.to_str().unwrap()]);
        let said = format!(
            "{}{}",
            crate::support::stdout(&output),
            crate::support::stderr(&output)
        );
        // The token went out and came back in the answer.
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.header("authorization") == Some("Bearer LiveAcc/ess+Tok9")),
            "{name}: {said}"
        );
        assert_eq!(output.status.code(), Some(1), "{name}: {said}");
        assert!(said.contains("***"), "{name}: {said}");
        assert_no_leak(
            &format!("notify-test {name}"),
            &said,
            &[
                "LiveAcc".to_string(),
                "ess+Tok9".to_string(),
                "ess%2BTok9".to_string(),
            ],
        );
    }
}

#[test]
fn notify_test_uploads_a_marked_test_file_to_google_drive() {
    let drive = TestServer::start(|r: &Request| {
        if r.path() == "/token" {
            Response::json(200, r#"{"access_token":"at-1","expires_in":3600}"#)
        } else {
            Response::json(200, r#"{"id":"file-1"}"#)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "notifiers:\n  drive: {{ type: gdrive, folder_id: F0lder, client_id: cid, client_secret: cs, refresh_token: rt, token_url: \"{}\", upload_url: \"{}\" }}\njobs:\n  m: {{ type: monitor, schedule: \"@every 1m\" }}\n",
            drive.url("/token"),
            drive.url("/upload")
        ),
    );
    let output = crate::support::run(&["notify-test", "drive", "--jobs", file.to_str().unwrap()]);
    let err = crate::support::stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("drive: test file uploaded"), "{err}");
    let upload = drive
        .requests()
        .into_iter()
        .find(|r| r.path() == "/upload")
        .unwrap();
    let body = upload.text();
    assert!(
        body.contains("runner-notify-test-") && body.contains("[TEST] runner notify-test from "),
        "{body}"
    );
    assert!(body.contains("F0lder"), "into the folder: {body}");
}

#[test]
fn check_builds_every_request_part_and_the_outbox_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "hook: { type: webhook, url: \"http://127.0.0.1:9/x\", headers: { \"Bad Header\": v } }",
            "not a valid HTTP header name",
        ),
        (
            "hook: { type: webhook, url: \"http://127.0.0.1:9/x\", headers: { X-Token: \"${NOTIFY_TOK}\" } }",
            "not a valid HTTP header value",
        ),
        (
            "hook: { type: webhook, url: \"http://127.0.0.1:9/x\", signing_secret: whsec_ }",
            "no key after it",
        ),
    ];
    for (notifier, expected) in cases {
        let file = crate::support::jobs_file(
            dir.path(),
            &format!(
                "notifiers:\n  {notifier}\njobs:\n  m: {{ type: monitor, schedule: \"@every 1m\", notify: [hook] }}\n"
            ),
        );
        let output = crate::support::command(&["check", "--jobs", file.to_str().unwrap()])
            .env("NOTIFY_TOK", "abc\ndef")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            crate::support::stdout(&output),
            crate::support::stderr(&output)
        );
        assert_eq!(output.status.code(), Some(1), "{notifier}: {said}");
        assert!(said.contains(expected), "{notifier}: {said}");
        assert!(!said.contains("abc"), "the value is not quoted: {said}");
    }
    // A file where the outbox folder goes (`data_dir: var`, relative to the jobs file).
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    std::fs::write(dir.path().join("var/outbox"), "not a folder").unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        "notifiers:\n  hook: { type: webhook, url: \"http://127.0.0.1:9/x\" }\njobs:\n  m: { type: monitor, schedule: \"@every 1m\", notify: [hook] }\n",
    );
    let output = crate::support::run(&["check", "--jobs", file.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        crate::support::stdout(&output),
        crate::support::stderr(&output)
    );
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("is in the way and is not a folder"), "{said}");
}

#[tokio::test]
async fn alertmanager_urls_keep_their_query_after_the_api_path() {
    let server = TestServer::start(|_| Response::new(200, ""));
    let h = Harness::new(&format!(
        "  am: {{ type: alertmanager, urls: [\"{}\"] }}\n",
        server.url("/prefix/?token=t0k")
    ));
    h.send(&["am"], &[event(1, EventKind::Firing, Severity::Critical)]);
    h.drive("the post", || h.delivered("am") == 1).await;
    let request = &server.requests()[0];
    assert_eq!(request.path(), "/prefix/api/v2/alerts");
    assert_eq!(request.query("token").as_deref(), Some("t0k"));
    h.stop().await;
}

#[tokio::test]
async fn the_dead_letter_count_goes_on_from_the_outbox_after_a_restart() {
    let server = TestServer::start(|_| Response::new(400, "no"));
    let h = Harness::new(&format!(
        "  hook: {{ type: webhook, url: \"{}\" }}\n",
        server.url("/in")
    ));
    h.send(
        &["hook"],
        &[
            event(1, EventKind::Firing, Severity::Critical),
            event(2, EventKind::Firing, Severity::Critical),
        ],
    );
    h.drive("two refusals", || h.dead("hook") == 2).await;
    let clock: SharedClock = h.clock.clone();
    let restarted = Notifiers::new(&h.config, clock);
    assert_eq!(restarted.stats("hook").unwrap().dead(), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_notice_failing_past_give_up_after_becomes_a_dead_letter() {
    let server = TestServer::start(|_| Response::new(503, "down for maintenance"));
    let h = Harness::new(&format!(
        "  hook: {{ type: webhook, url: \"{}\", retry_initial: 100ms, retry_max: 1s, give_up_after: 30s }}\n  other: {{ type: webhook, url: \"{}\" }}\n",
        server.url("/in"),
        server.url("/other")
    ));
    assert_eq!(
        h.config.notifiers["other"].delivery.give_up_after,
        Duration::from_secs(24 * 3600),
        "a day by default"
    );
    h.send(
        &["hook"],
        &[event(1, EventKind::Firing, Severity::Critical)],
    );
    h.drive("the give-up", || h.dead("hook") == 1).await;
    assert!(
        h.clock.now()
            >= DateTime::parse_from_rfc3339(START).unwrap().to_utc()
                + chrono::Duration::seconds(30)
    );
    let dead = std::fs::read_to_string(h.outbox().join("dead/hook.jsonl")).unwrap();
    assert!(
        dead.contains("gave up after") && dead.contains("HTTP 503"),
        "{dead}"
    );
    let tries = server.requests().len();
    h.pass(Duration::from_secs(10)).await;
    assert_eq!(server.requests().len(), tries, "not tried again");
    h.stop().await;
}
