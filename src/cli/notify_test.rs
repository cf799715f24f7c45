//! `runner notify-test NOTIFIER`: a clearly marked test alert through one notifier, now, so a
//! new set-up (a Slack webhook, ServiceNow credentials) is seen to work before the first real
//! alert. It fires and then resolves, so an incident it opens is closed again. Google Drive,
//! which takes reports only, gets a small test file instead.

use std::path::Path;
use std::sync::Arc;

use super::{block_on, exit, load};
use crate::alerts::event::{AlertEvent, EventKind};
use crate::config::NotifierSettings;
use crate::notify::Notifiers;
use crate::notify::destination::Delivery;
use crate::notify::notice::ReportNotice;
use crate::scheduler::clock::{SharedClock, SystemClock};
use crate::vocab::Severity;

pub fn run(file: &Path, notifier: &str) -> u8 {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(spec) = config.notifiers.get(notifier) else {
        let names: Vec<&str> = config.notifiers.keys().map(String::as_str).collect();
        super::fail(format_args!(
            "no notifier named `{notifier}` in {} (notifiers: {})",
            config.file.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
        return exit::USAGE;
    };
    if let Some(reason) = &spec.off {
        super::fail(format_args!(
            "notifier `{notifier}` is off: {reason}; nothing was sent"
        ));
        return exit::FAILED;
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.now();
    let events = test_events(&config.host, now);
    let notifiers = Notifiers::new(&config, clock);
    block_on(async move {
        if matches!(spec.settings, NotifierSettings::Gdrive(_)) {
            // Google Drive takes reports, not alerts: its test is a small marked report file.
            return test_upload(&notifiers, notifier, &config.host, now).await;
        }
        let Some(outcomes) = notifiers.send_now(notifier, &events).await else {
            super::fail(format_args!(
                "notifier `{notifier}` cannot be used (see the log above); nothing was sent"
            ));
            return exit::FAILED;
        };
        let mut ok = true;
        for (event, outcome) in events.iter().zip(&outcomes) {
            match outcome {
                Delivery::Delivered { note } => super::say(format_args!(
                    "{notifier}: test {} delivered{}",
                    event.kind,
                    note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                )),
                Delivery::Retry { reason, .. } => {
                    ok = false;
                    super::fail(format_args!(
                        "{notifier}: test {} not delivered, worth trying again: {reason}",
                        event.kind
                    ));
                }
                Delivery::Refused { reason } => {
                    ok = false;
                    super::fail(format_args!(
                        "{notifier}: test {} refused: {reason}; check the notifier's settings",
                        event.kind
                    ));
                }
            }
        }
        if ok { exit::OK } else { exit::FAILED }
    })
}

/// Uploads a small file marked `[TEST]` through a report-only notifier (Google Drive), so its
/// credentials and folder are seen to work before the first weekly report needs them.
async fn test_upload(
    notifiers: &Notifiers,
    notifier: &str,
    host: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> u8 {
    let dir = std::env::temp_dir().join(format!(
        "runner-notify-test-{}-{}",
        std::process::id(),
        now.timestamp_millis()
    ));
    let file = dir.join(format!(
        "runner-notify-test-{}.md",
        now.format("%Y%m%dT%H%M%SZ")
    ));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &file,
            format!("# [TEST] runner notify-test from {host}\n\nA test file uploaded by `runner notify-test` to check this notifier works. It can be deleted.\n"),
        )
    });
    if let Err(e) = written {
        super::fail(format_args!(
            "cannot write the test file {}: {e}; nothing was sent",
            file.display()
        ));
        return exit::FAILED;
    }
    let notice = ReportNotice {
        id: format!("notify-test-{}", now.timestamp_millis()),
        job: "notify-test".into(),
        title: "[TEST] runner notify-test".into(),
        host: host.to_string(),
        from: now,
        to: now,
        highlights: vec!["A test upload; nothing is wrong.".into()],
        files: vec![file.clone()],
        alerts_fired: 0,
        incidents_open: 0,
        samples: 0,
    };
    let outcome = notifiers.send_report_now(notifier, &notice).await;
    // The file was only a carrier; what was uploaded stays in the folder, marked `[TEST]`.
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Some(Delivery::Delivered { note }) => {
            super::say(format_args!(
                "{notifier}: test file uploaded{}",
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            ));
            exit::OK
        }
        Some(Delivery::Retry { reason, .. }) => {
            super::fail(format_args!(
                "{notifier}: test file not uploaded, worth trying again: {reason}"
            ));
            exit::FAILED
        }
        Some(Delivery::Refused { reason }) => {
            super::fail(format_args!(
                "{notifier}: test file refused: {reason}; check the notifier's settings"
            ));
            exit::FAILED
        }
        None => {
            super::fail(format_args!(
                "notifier `{notifier}` cannot be used (see the log above); nothing was sent"
            ));
            exit::FAILED
        }
    }
}

/// A test alert, marked as one in every field a person reads: firing, then resolved.
fn test_events(host: &str, now: chrono::DateTime<chrono::Utc>) -> Vec<AlertEvent> {
    let mut firing = AlertEvent::example(
        "runner_notify_test",
        EventKind::Firing,
        Severity::Warning,
        now,
    );
    firing.summary = format!("[TEST] runner notify-test from {host}: nothing is wrong");
    firing.description =
        "A test message sent by `runner notify-test` to check this notifier works. No action is needed.".into();
    firing.explanation = "a test sent by hand with runner notify-test".into();
    firing.host = host.to_string();
    firing.job = "notify-test".into();
    firing.rule_file = String::new();
    firing.value = None;
    firing.threshold = None;
    firing.active_since = now;
    firing.fingerprint = format!("notify-test-{}", now.timestamp_millis());
    firing.id = format!("{}-firing", firing.fingerprint);
    let mut resolved = firing.clone();
    resolved.kind = EventKind::Resolved;
    resolved.id = format!("{}-resolved", firing.fingerprint);
    resolved.explanation = "the test is over".into();
    vec![firing, resolved]
}
