//! The ServiceNow notifier against a fake instance: one incident per fingerprint even across
//! restarts, resolve with the close fields, OAuth refresh, and the error paths (401, 403, 429,
//! an HTML page from a hibernating instance).

use runner::alerts::event::EventKind;
use runner::vocab::Severity;

use crate::fake_servicenow::{FakeServiceNow, error_body};
use crate::http_server::Response;
use crate::notify::{Harness, event};

fn basic_yaml(url: &str, password: &str) -> String {
    format!(
        "  sn: {{ type: servicenow, instance: \"{url}\", username: admin, password: \"{password}\", close_code: \"Solved (Permanently)\", close_notes: \"Closed by runner\", retry_initial: 20ms, retry_max: 200ms }}\n"
    )
}

fn harness(yaml: &str) -> Harness {
    Harness::new(yaml)
}

#[tokio::test]
async fn firing_opens_one_incident_even_after_a_restart_and_resolved_resolves_it() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    let yaml = basic_yaml(&sn.url(), "pw");
    let firing = event(1, EventKind::Firing, Severity::Critical);
    let h = harness(&yaml);
    h.send(&["sn"], std::slice::from_ref(&firing));
    h.drive("the incident", || h.delivered("sn") == 1).await;
    let incidents = sn.incidents();
    assert_eq!(incidents.len(), 1);
    let i = &incidents[0];
    assert_eq!(i["correlation_id"], firing.fingerprint.as_str());
    assert_eq!(i["short_description"], "[CRITICAL] event 1 on web-1");
    assert!(
        i["description"]
            .as_str()
            .unwrap()
            .starts_with(&firing.explanation)
    );
    assert_eq!(i["impact"], "1");
    assert_eq!(i["urgency"], "1");
    assert_eq!(i["category"], "performance");
    h.stop().await;

    // A restart (new process state) with the same alert firing again: found, not created.
    let again = harness(&yaml);
    let mut repeat = firing.clone();
    repeat.kind = EventKind::Repeat;
    again.send(&["sn"], &[repeat]);
    again
        .drive("the lookup", || again.delivered("sn") == 1)
        .await;
    assert_eq!(sn.incidents().len(), 1, "no second incident");

    let mut resolved = firing.clone();
    resolved.kind = EventKind::Resolved;
    resolved.explanation = "resolved after firing for 12m".into();
    again.send(&["sn"], &[resolved]);
    again
        .drive("the resolve", || again.delivered("sn") == 2)
        .await;
    let i = &sn.incidents()[0];
    assert_eq!(i["state"], "6");
    assert_eq!(i["close_code"], "Solved (Permanently)");
    assert_eq!(
        i["close_notes"],
        "Closed by runner\nresolved after firing for 12m"
    );
    let methods: Vec<String> = sn
        .server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        methods,
        [
            "GET /api/now/table/incident",
            "POST /api/now/table/incident",
            // After creating: did another runner create one at the same moment?
            "GET /api/now/table/incident",
            "GET /api/now/table/incident",
            "GET /api/now/table/incident",
            &format!(
                "PATCH /api/now/table/incident/{}",
                i["sys_id"].as_str().unwrap()
            ),
        ]
    );

    // Firing again after it was resolved opens a new incident.
    again.send(&["sn"], &[event(1, EventKind::Firing, Severity::Critical)]);
    again
        .drive("a new incident", || again.delivered("sn") == 3)
        .await;
    assert_eq!(sn.incidents().len(), 2);
    again.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_a_dead_letter_that_says_why() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    let h = harness(&basic_yaml(&sn.url(), "wrong"));
    h.send(&["sn"], &[event(1, EventKind::Firing, Severity::Critical)]);
    h.drive("the refusal", || h.dead("sn") == 1).await;
    let dead = std::fs::read_to_string(h.outbox().join("dead/sn.jsonl")).unwrap();
    assert!(dead.contains("HTTP 401: User Not Authenticated"), "{dead}");
    assert!(dead.contains("check the credentials"), "{dead}");
    assert!(
        !dead.contains("wrong"),
        "the password is not written: {dead}"
    );
    assert!(sn.incidents().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn oauth_tokens_are_fetched_and_refreshed_when_refused() {
    let sn = FakeServiceNow::start(None, None);
    let yaml = format!(
        "  sn: {{ type: servicenow, instance: \"{}\", client_id: runner, client_secret: s3cret, retry_initial: 20ms }}\n",
        sn.url()
    );
    let h = harness(&yaml);
    h.send(&["sn"], &[event(1, EventKind::Firing, Severity::Critical)]);
    h.drive("the first incident", || h.delivered("sn") == 1)
        .await;
    assert_eq!(sn.state.lock().unwrap().issued, 1);
    sn.expire_tokens();
    h.send(&["sn"], &[event(2, EventKind::Firing, Severity::Critical)]);
    h.drive("the second incident", || h.delivered("sn") == 2)
        .await;
    assert_eq!(
        sn.state.lock().unwrap().issued,
        2,
        "a refused token is replaced once"
    );
    assert_eq!(sn.incidents().len(), 2);
    let form = sn
        .server
        .requests()
        .iter()
        .find(|r| r.path() == "/oauth_token.do")
        .unwrap()
        .text();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    h.stop().await;
}

#[tokio::test]
async fn rate_limits_and_a_hibernating_instance_are_retried_not_lost() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    sn.answer_next(error_body(429, "Too many requests", "").header("Retry-After", "0"));
    sn.answer_next(
        Response::new(
            200,
            "<html><body>Your instance is hibernating</body></html>",
        )
        .header("Content-Type", "text/html"),
    );
    sn.answer_next(error_body(500, "Internal error", ""));
    let h = harness(&basic_yaml(&sn.url(), "pw"));
    h.send(&["sn"], &[event(1, EventKind::Firing, Severity::Critical)]);
    h.drive("the incident", || h.delivered("sn") == 1).await;
    assert_eq!(sn.incidents().len(), 1);
    assert_eq!(h.dead("sn"), 0);
    let stats = h.notifiers.stats("sn").unwrap();
    assert_eq!(
        stats
            .failed_attempts
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    h.stop().await;
}

#[tokio::test]
async fn a_data_policy_refusal_on_resolve_keeps_servicenow_words() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    let h = harness(&basic_yaml(&sn.url(), "pw"));
    let firing = event(1, EventKind::Firing, Severity::Critical);
    h.send(&["sn"], std::slice::from_ref(&firing));
    h.drive("the incident", || h.delivered("sn") == 1).await;
    sn.answer_next(error_body(
        403,
        "Operation Failed",
        "Data Policy Exception: Resolution code is mandatory",
    ));
    let mut resolved = firing;
    resolved.kind = EventKind::Resolved;
    h.send(&["sn"], &[resolved]);
    h.drive("the refusal", || h.dead("sn") == 1).await;
    let dead = std::fs::read_to_string(h.outbox().join("dead/sn.jsonl")).unwrap();
    assert!(
        dead.contains(
            "HTTP 403: Operation Failed (Data Policy Exception: Resolution code is mandatory)"
        ),
        "{dead}"
    );
    h.stop().await;
}

#[tokio::test]
async fn two_runners_firing_at_the_same_moment_leave_one_incident_per_alert() {
    let sn = FakeServiceNow::start(Some("admin:pw"), None);
    sn.pair_lookups();
    let yaml = basic_yaml(&sn.url(), "pw");
    // An HA pair: the same host's alerts, two data_dirs, one instance.
    let (a, b) = (harness(&yaml), harness(&yaml));
    let alerts: Vec<_> = (1..=20)
        .map(|n| event(n, EventKind::Firing, Severity::Critical))
        .collect();
    a.send(&["sn"], &alerts);
    b.send(&["sn"], &alerts);
    let start = std::time::Instant::now();
    while a.delivered("sn") < 20 || b.delivered("sn") < 20 {
        assert!(start.elapsed() < crate::support::PATIENCE, "timed out");
        a.pass(std::time::Duration::from_millis(20)).await;
        b.pass(std::time::Duration::from_millis(20)).await;
    }
    let incidents = sn.incidents();
    let open: Vec<_> = incidents
        .iter()
        .filter(|i| !["6", "7", "8"].contains(&i["state"].as_str().unwrap()))
        .collect();
    assert_eq!(open.len(), 20, "one open incident per alert");
    for alert in &alerts {
        let mine: Vec<_> = open
            .iter()
            .filter(|i| i["correlation_id"] == alert.fingerprint.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{}", alert.name);
    }
    // The race happened (the lookups were paired), and its duplicates say what they duplicate.
    let canceled: Vec<_> = incidents.iter().filter(|i| i["state"] == "8").collect();
    assert!(
        !canceled.is_empty(),
        "both runners created: the test made them race"
    );
    for duplicate in canceled {
        let keeper = open
            .iter()
            .find(|i| i["correlation_id"] == duplicate["correlation_id"])
            .unwrap();
        let note = duplicate["work_notes"].as_str().unwrap();
        assert!(
            note.starts_with(&format!(
                "Duplicate of {}",
                keeper["number"].as_str().unwrap()
            )),
            "{note}"
        );
    }
    a.stop().await;
    b.stop().await;
}
