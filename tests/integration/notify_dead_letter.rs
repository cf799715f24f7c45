//! `notification_dead_letter`: a notifier whose notices go to its dead letters (given up after
//! `give_up_after`, refused for good) raises runner's own alert, which lands in the alert log
//! and the alert state (the status page, `/metrics`, the report read them) and goes to the
//! other notifiers the monitor jobs route to, never to the failing one; it resolves once that
//! notifier delivers again, and a restart does not resolve it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use runner::alerts::event::{AlertEvent, EventKind};
use runner::alerts::lifecycle::Phase;
use runner::notify::dead_alert;
use runner::vocab::Severity;

use crate::http_server::{Response, TestServer};
use crate::notify::{Harness, event, virtual_clock};

const JOBS: &str = "  m: { type: monitor, schedule: \"@every 10s\", notify: [log, hook, other] }\n";

/// Every event in the harness's alert log, in order.
fn alert_log(h: &Harness) -> Vec<AlertEvent> {
    let Ok(days) = std::fs::read_dir(h.config.data_dir.join("alerts")) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = days.map(|d| d.unwrap().path()).collect();
    paths.sort();
    paths
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<AlertEvent>>()
        })
        .collect()
}

/// The kinds of the dead-letter alert's events in the alert log.
fn logged_kinds(h: &Harness) -> Vec<EventKind> {
    alert_log(h)
        .iter()
        .filter(|e| e.name == dead_alert::ALERT)
        .map(|e| e.kind)
        .collect()
}

/// The dead-letter alert's phase for `notifier` in runner's alert state, as the status page and
/// `/metrics` read it.
fn phase(h: &Harness, notifier: &str) -> Option<Phase> {
    let stores = h.notifiers.alert_stores();
    let (_, store) = stores.iter().find(|(job, _)| job == dead_alert::JOB)?;
    let store = store.lock().unwrap();
    store
        .lifecycle()
        .states
        .values()
        .find(|s| s.name == dead_alert::ALERT && s.labels["notifier"] == notifier)
        .map(|s| s.phase)
}

/// The webhook bodies `server` received about the dead-letter alert.
fn alert_bodies(server: &TestServer) -> Vec<serde_json::Value> {
    server
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|b| b["data"]["name"] == dead_alert::ALERT)
        .collect()
}

#[tokio::test]
async fn a_give_up_raises_notification_dead_letter_to_the_other_notifiers_until_it_delivers_again()
{
    let up = Arc::new(AtomicBool::new(false));
    let hook = {
        let up = up.clone();
        TestServer::start(move |_| match up.load(Ordering::SeqCst) {
            true => Response::new(200, ""),
            false => Response::new(503, "down for maintenance"),
        })
    };
    let other = TestServer::start(|_| Response::new(200, ""));
    let h = Harness::with_jobs(
        &format!(
            "  hook: {{ type: webhook, url: \"{}\", retry_initial: 100ms, retry_max: 1s, give_up_after: 30s }}\n  other: {{ type: webhook, url: \"{}\" }}\n",
            hook.url("/in"),
            other.url("/other")
        ),
        JOBS,
        virtual_clock(),
    );
    h.send(
        &["hook"],
        &[event(1, EventKind::Firing, Severity::Critical)],
    );
    h.drive("the alert at the other notifier", || {
        !alert_bodies(&other).is_empty()
    })
    .await;
    assert_eq!(h.dead("hook"), 1);
    let firing = &alert_bodies(&other)[0];
    assert_eq!(firing["type"], "alert.firing", "{firing}");
    let data = &firing["data"];
    assert_eq!(data["labels"]["notifier"], "hook", "{data}");
    assert_eq!(data["severity"], "warning", "{data}");
    assert_eq!(data["job"], dead_alert::JOB, "{data}");
    let summary = data["summary"].as_str().unwrap();
    let dead = h.outbox().join("dead/hook.jsonl");
    for part in [
        "notifier `hook`",
        "1 notification ",
        &dead.display().to_string(),
        "gave up after",
        "HTTP 503",
    ] {
        assert!(summary.contains(part), "{part:?} not in {summary}");
    }
    assert_eq!(logged_kinds(&h), [EventKind::Firing]);
    assert_eq!(phase(&h, "hook"), Some(Phase::Firing));

    // Back up: the next notice it delivers resolves the alert, wherever the firing went.
    up.store(true, Ordering::SeqCst);
    h.send(
        &["hook"],
        &[event(2, EventKind::Firing, Severity::Critical)],
    );
    h.drive("the resolve at the other notifier", || {
        alert_bodies(&other).len() == 2
    })
    .await;
    assert_eq!(alert_bodies(&other)[1]["type"], "alert.resolved");
    assert_eq!(h.delivered("hook"), 1);
    assert!(
        alert_bodies(&hook).is_empty(),
        "the failing notifier was asked to deliver the alert about itself"
    );
    assert_eq!(logged_kinds(&h), [EventKind::Firing, EventKind::Resolved]);
    assert_eq!(
        phase(&h, "hook").unwrap_or(Phase::Inactive),
        Phase::Inactive
    );
    h.stop().await;
}

#[tokio::test]
async fn a_lone_notifier_s_dead_letters_raise_the_alert_in_the_log_only_and_a_restart_keeps_it() {
    let hook = TestServer::start(|_| Response::new(400, "no such channel"));
    let h = Harness::with_jobs(
        &format!(
            "  hook: {{ type: webhook, url: \"{}\" }}\n",
            hook.url("/in")
        ),
        "  m: { type: monitor, schedule: \"@every 10s\", notify: [hook] }\n",
        virtual_clock(),
    );
    h.send(
        &["hook"],
        &[
            event(1, EventKind::Firing, Severity::Critical),
            event(2, EventKind::Firing, Severity::Critical),
        ],
    );
    h.drive("the alert in the log", || {
        h.dead("hook") == 2 && !logged_kinds(&h).is_empty()
    })
    .await;
    let firing: Vec<AlertEvent> = alert_log(&h)
        .into_iter()
        .filter(|e| e.name == dead_alert::ALERT)
        .collect();
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert!(
        firing[0].summary.contains("HTTP 400"),
        "{}",
        firing[0].summary
    );
    assert_eq!(phase(&h, "hook"), Some(Phase::Firing));

    // A restart goes on from the saved state: the notifier has not delivered since, so the
    // alert stays firing rather than resolving at the first step.
    let h = h.restart().await;
    h.pass(dead_alert::STEP_EVERY + Duration::from_secs(1))
        .await;
    assert_eq!(phase(&h, "hook"), Some(Phase::Firing));
    assert_eq!(logged_kinds(&h), [EventKind::Firing]);
    assert!(
        alert_bodies(&hook).is_empty(),
        "the failing notifier was asked to deliver the alert about itself"
    );
    assert_eq!(hook.requests().len(), 2, "only the two notices it refused");
    h.stop().await;
}

/// `runner run`'s drain: the refusal raises the alert, and the alert goes out to the other
/// notifier before the drain returns.
#[tokio::test]
async fn a_drain_sends_the_alert_its_dead_letters_raised() {
    let hook = TestServer::start(|_| Response::new(400, "no such channel"));
    let other = TestServer::start(|_| Response::new(200, ""));
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "notifiers:\n  hook: {{ type: webhook, url: \"{}\" }}\n  other: {{ type: webhook, url: \"{}\" }}\njobs:\n{JOBS}",
            hook.url("/in"),
            other.url("/other")
        ),
    );
    let config = runner::config::Config::load(&file).unwrap_or_else(|p| panic!("{}", p.render()));
    let clock: runner::scheduler::clock::SharedClock =
        Arc::new(runner::scheduler::clock::SystemClock);
    let notifiers = runner::notify::Notifiers::new(&config, clock.clone());
    notifiers.dispatch(
        &["hook".to_string()],
        &[event(1, EventKind::Firing, Severity::Critical)],
    );
    let drained = notifiers
        .drain(clock.now() + chrono::Duration::seconds(30))
        .await;
    assert!(drained.waiting.is_empty(), "{drained:?}");
    let bodies = alert_bodies(&other);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["type"], "alert.firing");
    assert_eq!(bodies[0]["data"]["labels"]["notifier"], "hook");
    assert!(alert_bodies(&hook).is_empty());
}
