//! Alert events: the one JSON shape that the alert log, the notifiers, the report and the rule
//! tests all read. Every event carries its explanation: value, threshold or baseline, window,
//! and since when.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::vocab::Severity;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The alert started firing.
    Firing,
    /// Still firing, `repeat_interval` after the last notice.
    Repeat,
    /// It stopped.
    Resolved,
    /// It changes state too often: notices are held until it is stable.
    Flapping,
    /// The action the alert ran failed (a non-zero exit, killed at its timeout, or it could
    /// not start): its own notice, with the run's outcome in `action`. It says nothing about
    /// whether the alert fires, so readers of the alert log that follow spells pass over it.
    ActionFailed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Firing => "firing",
            EventKind::Repeat => "repeat",
            EventKind::Resolved => "resolved",
            EventKind::Flapping => "flapping",
            EventKind::ActionFailed => "action_failed",
        }
    }

    /// Whether the event is a step in the alert's life (firing, repeat, resolved, flapping),
    /// as opposed to a fact about it (an action that failed).
    pub fn is_lifecycle(self) -> bool {
        !matches!(self, EventKind::ActionFailed)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ServiceNow incident a notifier opened for the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub number: String,
    pub sys_id: String,
}

/// Whether JSON lines (the alert log, an outbox) hold the event with `id`: an id is unique and
/// written as `"id":"<id>"` in every line that carries the event, so a text search finds it
/// without parsing each line.
pub fn holds_event(json_lines: &str, id: &str) -> bool {
    json_lines.contains(&format!("\"id\":\"{id}\""))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub schema_version: u32,
    /// Stable for a given alert, kind and time: a retried delivery carries the same id.
    pub id: String,
    pub kind: EventKind,
    /// Hex SHA-256 of host, name and sorted labels: one problem, one identity.
    pub fingerprint: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub severity: Severity,
    pub summary: String,
    pub description: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub explanation: String,
    /// When the alert became active (pending or firing), for durations.
    pub active_since: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub host: String,
    pub job: String,
    pub rule_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
    /// The rule's own narrowing of the job's notifiers, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
    /// Set when a maintenance window, a silence or an inhibiting alert keeps this event's
    /// notice back: it is logged, not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<Box<Muted>>,
    /// What the alert's action did this spell, once it is done (`alerts::action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Box<crate::alerts::action::Outcome>>,
}

/// What keeps an alert's notices back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutedBy {
    Maintenance,
    Silence,
    Inhibited,
}

impl MutedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MutedBy::Maintenance => "maintenance",
            MutedBy::Silence => "silence",
            MutedBy::Inhibited => "inhibited",
        }
    }
}

/// Why an event was not sent: the window's name, the silence's id, or the inhibiting alert's
/// name, and until when it holds, if that is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Muted {
    pub by: MutedBy,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// An alert whose notices are kept back: whether the receivers last heard it firing, and
/// what holds it, for a notice that must not go out once the hold ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub told: bool,
    pub muted: Muted,
    /// The resolved notice kept back, for when the alert's state is gone by the hold's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Box<AlertEvent>>,
}

impl fmt::Display for Muted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.by {
            MutedBy::Maintenance => write!(f, "in maintenance window `{}`", self.name)?,
            MutedBy::Silence => write!(f, "silenced by `{}`", self.name)?,
            MutedBy::Inhibited => write!(f, "inhibited by firing `{}`", self.name)?,
        }
        if let Some(until) = self.until {
            write!(f, " until {}", until.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        Ok(())
    }
}

impl AlertEvent {
    /// A CPU alert on `web-1` with every field filled in plausibly: for examples,
    /// benchmarks and tests, which change the fields they are about.
    pub fn example(
        name: &str,
        kind: EventKind,
        severity: Severity,
        at: DateTime<Utc>,
    ) -> AlertEvent {
        let labels = BTreeMap::new();
        let fingerprint = fingerprint("web-1", name, &labels);
        AlertEvent {
            schema_version: SCHEMA_VERSION,
            id: event_id(&fingerprint, kind, at),
            kind,
            fingerprint,
            name: name.to_string(),
            labels,
            severity,
            summary: "CPU busy on web-1".into(),
            description: String::new(),
            value: Some(93.2),
            threshold: Some(85.0),
            explanation: "cpu.total.usage_percent 93.2 > 85 for 12m".into(),
            active_since: at - chrono::Duration::minutes(12),
            at,
            host: "web-1".into(),
            job: "monitor".into(),
            rule_file: "rules/cpu.rhai".into(),
            incident: None,
            notify: None,
            muted: None,
            action: None,
        }
    }

    /// `a3f1…` (16 hex digits): how people see a fingerprint.
    pub fn short_fingerprint(&self) -> &str {
        &self.fingerprint[..self.fingerprint.len().min(16)]
    }
}

/// Hex SHA-256 of host, name and the labels in key order.
pub fn fingerprint(host: &str, name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(host.as_bytes());
    hasher.update([0]);
    hasher.update(name.as_bytes());
    for (key, value) in labels {
        hasher.update([0]);
        hasher.update(key.as_bytes());
        hasher.update([b'=']);
        hasher.update(value.as_bytes());
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A UUID-shaped id derived from what makes the event unique (version 8: custom).
pub fn event_id(fingerprint: &str, kind: EventKind, at: DateTime<Utc>) -> String {
    let digest = Sha256::digest(format!("{fingerprint}/{kind}/{}", at.timestamp_millis()));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_depend_on_host_name_and_sorted_labels() {
        let mut a = BTreeMap::new();
        a.insert("mount".to_string(), "/var".to_string());
        a.insert("device".to_string(), "sda".to_string());
        let f = fingerprint("web-1", "disk_full", &a);
        assert_eq!(f.len(), 64);
        assert_eq!(f, fingerprint("web-1", "disk_full", &a.clone()));
        assert_ne!(f, fingerprint("web-2", "disk_full", &a));
        assert_ne!(f, fingerprint("web-1", "disk_full", &BTreeMap::new()));
    }

    #[test]
    fn ids_are_uuid_shaped_and_stable() {
        let at = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let id = event_id("abc", EventKind::Firing, at);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
        assert_eq!(id, event_id("abc", EventKind::Firing, at));
        assert_ne!(id, event_id("abc", EventKind::Resolved, at));
    }
}
