//! Which alerts were firing at each tick, read back from the alert log, for the `ALERTS`
//! series: a monitor's alert events (`firing`, `repeat`, `resolved`) are applied up to each of
//! its ticks as the ticks are sent, so a backlog sent after an outage carries the alerts as
//! they were then, not as they are now.
//!
//! The alert log is read from `LOOKBACK` before the oldest tick that may still be sent: an
//! alert firing longer than that without a `repeat` in the log is not seen after a restart.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Seek};
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};

use crate::alerts::event::{AlertEvent, EventKind};

/// How far back the alert log is read at start for alerts still firing.
pub const LOOKBACK: chrono::Duration = chrono::Duration::days(7);

/// An alert firing at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    pub name: String,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
}

/// One event as the tracker keeps it until its monitor's ticks reach it.
#[derive(Debug)]
struct Change {
    at_ms: i64,
    fingerprint: String,
    /// `None`: resolved.
    active: Option<Active>,
}

#[derive(Debug, Default)]
struct JobAlerts {
    queued: VecDeque<Change>,
    active: BTreeMap<String, Active>,
}

/// The alert log, followed as it grows.
#[derive(Debug)]
pub struct AlertTracker {
    dir: PathBuf,
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
            read: BTreeMap::new(),
            first_day: (from - LOOKBACK).date_naive(),
            jobs: BTreeMap::new(),
        }
    }

    /// Reads what the alert log gained since the last call, up to today's file.
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
            }),
            EventKind::Resolved => None,
            // Held notices say nothing about whether it fires.
            // An action that failed is no change of state either.
            EventKind::Flapping | EventKind::ActionFailed => return,
        };
        self.jobs
            .entry(event.job)
            .or_default()
            .queued
            .push_back(Change {
                at_ms: event.at.timestamp_millis(),
                fingerprint: event.fingerprint,
                active,
            });
    }

    /// The alerts of `job` firing at its tick at `ts_ms`: every event up to it applied.
    pub fn firing_at(&mut self, job: &str, ts_ms: i64) -> Vec<Active> {
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
        alerts.active.values().cloned().collect()
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
            serde_json::to_string(&AlertEvent::example(
                "HighCpu",
                kind,
                Severity::Warning,
                at(s),
            ))
            .unwrap()
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
            |t: &mut AlertTracker, s: i64| t.firing_at("monitor", at(s).timestamp_millis());
        assert!(firing(&mut tracker, 9).is_empty());
        assert_eq!(firing(&mut tracker, 10)[0].name, "HighCpu");
        assert_eq!(firing(&mut tracker, 10)[0].severity, "warning");
        assert_eq!(firing(&mut tracker, 19).len(), 1);
        assert!(firing(&mut tracker, 20).is_empty());
        assert!(
            tracker
                .firing_at("other", at(15).timestamp_millis())
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
}
