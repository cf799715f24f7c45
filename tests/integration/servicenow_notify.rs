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
