//! Which alerts were pending and which firing at each tick, for the `ALERTS` series (with
//! `alertstate="pending"` or `"firing"`, as Prometheus' rule evaluation writes them), and when
//! each became active, for `ALERTS_FOR_STATE`.
//!
//! Firing comes from the alert log: a monitor's alert events (`firing`, `repeat`, `resolved`)
//! are applied up to each of its ticks as the ticks are sent, so a backlog sent after an outage
//! carries the alerts as they were then, not as they are now. The alert log has no pending
//! events; pending comes from two places that together cover every pending spell still
//! running or that led to firing: a `firing` event's `active_since` (the alert was pending from
//! then until it fired), and the monitor's saved alert state (`state/alerts/<job>.json`), whose
//! pending alerts have been pending at every tick since their `pending_since`. A pending spell
//! that ended without firing before its ticks were read (within a pass, 5 to 10 s, or during
//! an outage with a restart) is not sent.
//!
//! The alert log is read from `LOOKBACK` before the oldest tick that may still be sent: an
//! alert firing longer than that without a `repeat` in the log is not seen after a restart.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Seek};
use std::path::PathBuf;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::alerts::event::{AlertEvent, EventKind};
use crate::alerts::lifecycle::Phase;
use crate::vocab::Severity;

/// How far back the alert log is read at start for alerts still firing.
pub const LOOKBACK: chrono::Duration = chrono::Duration::days(7);

pub const FIRING: &str = "firing";
pub const PENDING: &str = "pending";

/// An alert pending or firing at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    pub name: String,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    /// `FIRING` or `PENDING`: the `alertstate` label.
    pub state: &'static str,
    /// When the spell became active (its `active_since`, or the saved state's
    /// `pending_since`), in ms: the value of `ALERTS_FOR_STATE`, one per spell.
    pub active_since_ms: i64,
}

/// One event as the tracker keeps it until its monitor's ticks reach it.
#[derive(Debug)]
struct Change {
    at_ms: i64,
    fingerprint: String,
    /// `None`: resolved.
    active: Option<Active>,
}

/// Ticks in `[from_ms, to_ms)` when an alert was pending.
#[derive(Debug)]
struct Pending {
    fingerprint: String,
    active: Active,
    from_ms: i64,
    /// `i64::MAX`: still pending when the saved state was read.
    to_ms: i64,
}

#[derive(Debug, Default)]
struct JobAlerts {
    queued: VecDeque<Change>,
    active: BTreeMap<String, Active>,
    /// Pending spells that ended in a `firing` event.
    fired_after_pending: Vec<Pending>,
    /// Pending spells of the saved state, and when that file was read.
    pending_now: Vec<Pending>,
    state_read: Option<SystemTime>,
}

/// The part of a saved `Lifecycle` that says what is pending.
#[derive(Debug, Deserialize)]
struct SavedLifecycle {
    #[serde(default)]
    states: BTreeMap<String, SavedAlert>,
}

#[derive(Debug, Deserialize)]
struct SavedAlert {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    severity: Severity,
    phase: Phase,
    pending_since: Option<DateTime<Utc>>,
}

/// The alert log, followed as it grows, and the monitors' saved alert state.
#[derive(Debug)]
pub struct AlertTracker {
    dir: PathBuf,
    state_dir: PathBuf,
    /// How far each day's file has been read (complete lines only).
    read: BTreeMap<NaiveDate, u64>,
    first_day: NaiveDate,
    jobs: BTreeMap<String, JobAlerts>,
}

impl AlertTracker {
    /// Follows `data_dir/alerts`, from `LOOKBACK` before `from`.
    pub fn new(data_dir: &std::path::Path, from: DateTime<Utc>) -> AlertTracker {
        AlertTracker {
            dir: data_dir.join("alerts"),
            state_dir: data_dir.join("state").join("alerts"),
            read: BTreeMap::new(),
            first_day: (from - LOOKBACK).date_naive(),
            jobs: BTreeMap::new(),
        }
    }

    /// Reads what the alert log gained since the last call, up to today's file, and the saved
    /// states that changed.
    pub fn refresh(&mut self, today: NaiveDate) {
        let mut day = self.first_day;
        while day <= today {
            self.read_day(day);
            day = day.succ_opt().unwrap_or(today + chrono::Days::new(1));
        }
        // Days before yesterday are complete: only their offsets were kept.
        if let Some(yesterday) = today.pred_opt() {
            self.first_day = self.first_day.max(yesterday);
            self.read.retain(|d, _| *d >= yesterday);
        }
        self.read_states();
    }

    /// Each monitor's pending alerts from its saved state, read again when the file changed
    /// (it is written when an alert changes phase, not every tick).
    fn read_states(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.state_dir) else {
            return;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(job) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            let alerts = self.jobs.entry(job.to_string()).or_default();
            if modified.is_some() && alerts.state_read == modified {
                continue;
            }
            let Ok(saved) = std::fs::read(&path)
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice::<SavedLifecycle>(&b).map_err(|_| ()))
            else {
                continue;
            };
            alerts.state_read = modified;
            alerts.pending_now = saved
                .states
                .into_iter()
                .filter(|(_, a)| a.phase == Phase::Pending)
                .filter_map(|(fingerprint, a)| {
                    let since_ms = a.pending_since?.timestamp_millis();
                    Some(Pending {
                        fingerprint,
                        from_ms: since_ms,
                        to_ms: i64::MAX,
                        active: Active {
                            name: a.name,
                            severity: a.severity.as_str().to_string(),
                            labels: a.labels,
                            state: PENDING,
                            active_since_ms: since_ms,
                        },
                    })
                })
                .collect();
        }
    }

    fn read_day(&mut self, day: NaiveDate) {
        let path = self.dir.join(format!("{day}.jsonl"));
        let Ok(mut file) = std::fs::File::open(&path) else {
            return;
        };
        let offset = self.read.get(&day).copied().unwrap_or(0);
        if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
            return;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        let mut consumed = offset;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) if !line.ends_with('\n') => {
                    // A line still being written: read again next time.
                    let _ = n;
                    break;
                }
                Ok(n) => {
                    consumed += n as u64;
                    if let Ok(event) = serde_json::from_str::<AlertEvent>(&line) {
                        self.queue(event);
                    }
                }
            }
        }
        self.read.insert(day, consumed);
    }

    fn queue(&mut self, event: AlertEvent) {
        let active = match event.kind {
            EventKind::Firing | EventKind::Repeat => Some(Active {
                name: event.name,
                severity: event.severity.as_str().to_string(),
                labels: event.labels,
                state: FIRING,
                active_since_ms: event.active_since.timestamp_millis(),
            }),
            EventKind::Resolved => None,
            // Held notices say nothing about whether it fires.
            // An action that failed is no change of state either.
            EventKind::Flapping | EventKind::ActionFailed => return,
        };
        let at_ms = event.at.timestamp_millis();
        let alerts = self.jobs.entry(event.job).or_default();
        // It was pending from when it became active until it fired (`pending_for`).
        let since_ms = event.active_since.timestamp_millis();
        if event.kind == EventKind::Firing
            && since_ms < at_ms
            && let Some(active) = &active
        {
            alerts.fired_after_pending.push(Pending {
                fingerprint: event.fingerprint.clone(),
                active: Active {
                    state: PENDING,
                    ..active.clone()
                },
                from_ms: since_ms,
                to_ms: at_ms,
            });
        }
        alerts.queued.push_back(Change {
            at_ms,
            fingerprint: event.fingerprint,
            active,
        });
    }

    /// The alerts of `job` firing, then those pending, at its tick at `ts_ms`: every event up
    /// to it applied. A job's ticks come in time order.
    pub fn alerts_at(&mut self, job: &str, ts_ms: i64) -> Vec<Active> {
        let Some(alerts) = self.jobs.get_mut(job) else {
            return Vec::new();
        };
        while alerts.queued.front().is_some_and(|c| c.at_ms <= ts_ms) {
            let Some(change) = alerts.queued.pop_front() else {
                break;
            };
            match change.active {
                Some(active) => {
                    alerts.active.insert(change.fingerprint, active);
                }
                None => {
                    alerts.active.remove(&change.fingerprint);
                }
            }
        }
        // Later ticks come later: spells over by now are done with.
        alerts.fired_after_pending.retain(|p| p.to_ms > ts_ms);
        let mut pending: BTreeMap<&str, &Active> = BTreeMap::new();
        for p in alerts
            .fired_after_pending
            .iter()
            .chain(&alerts.pending_now)
            .filter(|p| p.from_ms <= ts_ms && ts_ms < p.to_ms)
            .filter(|p| !alerts.active.contains_key(&p.fingerprint))
        {
            pending.entry(&p.fingerprint).or_insert(&p.active);
        }
        alerts
            .active
            .values()
            .chain(pending.into_values())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Severity;

    #[test]
    fn alerts_fire_from_their_tick_until_resolved_and_lines_in_writing_wait() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .to_utc();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let line = |kind, s| {
            let mut event = AlertEvent::example("HighCpu", kind, Severity::Warning, at(s));
            // No `pending_for`: active when it fired.
            event.active_since = at(s);
            serde_json::to_string(&event).unwrap()
        };
        std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
        let file = dir.path().join("alerts/2026-12-06.jsonl");
        std::fs::write(
            &file,
            format!(
                "{}\n{}\n{}",
                line(EventKind::Firing, 10),
                line(EventKind::Resolved, 20),
                "{\"torn"
            ),
        )
        .unwrap();
        let mut tracker = AlertTracker::new(dir.path(), at(0));
        tracker.refresh(t0.date_naive());
        let firing =
            |t: &mut AlertTracker, s: i64| t.alerts_at("monitor", at(s).timestamp_millis());
        assert!(firing(&mut tracker, 9).is_empty());
        assert_eq!(firing(&mut tracker, 10)[0].name, "HighCpu");
        assert_eq!(firing(&mut tracker, 10)[0].severity, "warning");
        assert_eq!(firing(&mut tracker, 10)[0].state, FIRING);
        assert_eq!(firing(&mut tracker, 19).len(), 1);
        assert!(firing(&mut tracker, 20).is_empty());
        assert!(
            tracker
                .alerts_at("other", at(15).timestamp_millis())
                .is_empty()
        );
        // The torn line, completed, is read from where the last read stopped.
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.truncate(text.len() - "{\"torn".len());
        text.push_str(&format!("{}\n", line(EventKind::Firing, 30)));
        std::fs::write(&file, text).unwrap();
        tracker.refresh(t0.date_naive());
        assert!(firing(&mut tracker, 29).is_empty());
        assert_eq!(firing(&mut tracker, 31).len(), 1);
    }

    /// Pending from a `firing` event's `active_since` until it fired, even when the event is
    /// read after those ticks were; and pending from the saved state's `pending_since` on.
    #[test]
    fn alerts_are_pending_before_they_fire_and_while_the_saved_state_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .to_utc();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let mut fired =
            AlertEvent::example("HighCpu", EventKind::Firing, Severity::Warning, at(30));
        fired.active_since = at(25);
        std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
        std::fs::write(
            dir.path().join("alerts/2026-12-06.jsonl"),
            format!("{}\n", serde_json::to_string(&fired).unwrap()),
        )
        .unwrap();
        let state = crate::alerts::state_path(dir.path(), "monitor");
        std::fs::create_dir_all(state.parent().unwrap()).unwrap();
        std::fs::write(
            &state,
            serde_json::json!({ "states": { "fp-disk": {
                "fingerprint": "fp-disk", "name": "DiskFull", "labels": { "mount": "/" },
                "severity": "critical", "phase": "pending",
                "pending_since": at(40), "firing_since": null,
            } } })
            .to_string(),
        )
        .unwrap();
        let mut tracker = AlertTracker::new(dir.path(), at(0));
        tracker.refresh(t0.date_naive());
        let states = |t: &mut AlertTracker, s: i64| {
            t.alerts_at("monitor", at(s).timestamp_millis())
                .into_iter()
                .map(|a| (a.name, a.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(states(&mut tracker, 24), []);
        assert_eq!(states(&mut tracker, 25), [("HighCpu".to_string(), PENDING)]);
        assert_eq!(states(&mut tracker, 29), [("HighCpu".to_string(), PENDING)]);
        let pending = tracker.alerts_at("monitor", at(29).timestamp_millis());
        assert_eq!(pending[0].active_since_ms, at(25).timestamp_millis());
        assert_eq!(states(&mut tracker, 30), [("HighCpu".to_string(), FIRING)]);
        assert_eq!(
            states(&mut tracker, 40),
            [
                ("HighCpu".to_string(), FIRING),
                ("DiskFull".to_string(), PENDING)
            ]
        );
        let disk = tracker.alerts_at("monitor", at(41).timestamp_millis());
        assert_eq!(disk[1].labels["mount"], "/");
        assert_eq!(disk[1].severity, "critical");
        // One active-since per spell, pending (above) or firing: what `ALERTS_FOR_STATE`
        // carries.
        assert_eq!(disk[0].active_since_ms, at(25).timestamp_millis());
        assert_eq!(disk[1].active_since_ms, at(40).timestamp_millis());
    }
}
