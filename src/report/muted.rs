//! The report's quiet time: how long each maintenance window of the jobs file was open in the
//! report's window, and the alerts whose notices were held back (by a window, a silence or
//! inhibition), from the `muted` field of the alert log's events.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alerts::event::{AlertEvent, EventKind};
use crate::config::Config;
use crate::store::daily::DailyFiles;

#[derive(Debug, Default, Clone, Serialize)]
pub struct MutedSummary {
    /// Each maintenance window that was open in the report's window.
    pub windows: Vec<WindowTime>,
    /// Alerts that fired held back, by alert and what held them.
    pub held: Vec<HeldAlert>,
    /// Actions alerts ran, as the alert log's events after each run tell it.
    pub actions: Vec<ActionTaken>,
}

/// One action an alert ran in one firing spell.
#[derive(Debug, Clone, Serialize)]
pub struct ActionTaken {
    pub alert: String,
    pub action: String,
    /// When the spell began (the run was at or after it).
    pub spell: DateTime<Utc>,
    pub ok: bool,
    /// `restart_web: exit 0 in 1.2 s (first line of output)`.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowTime {
    pub name: String,
    /// Times it opened (a window open when the report's window began counts).
    pub opened: u64,
    pub open_seconds: i64,
    /// `3 h 0 min`.
    pub open: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldAlert {
    pub name: String,
    /// `maintenance`, `silence` or `inhibited`.
    pub by: String,
    /// The window's name, the silence's id or the inhibiting alert's name.
    pub reason: String,
    /// Firing spells with a notice held back: a spell's held repeats count once, since an
    /// alert that fired once in a window is not one that fired every repeat interval.
    pub fired: u64,
}

/// An alert's firing spell: its fingerprint and when it began.
type Spell = (String, DateTime<Utc>);

/// Sums up `[from, to)`: the windows' open time from their schedules, and the muted events
/// of the alert log.
pub fn summarize(
    config: &Config,
    files: &DailyFiles,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> MutedSummary {
    let mut windows = Vec::new();
    for window in &config.mute.maintenance {
        let Ok(span) = chrono::Duration::from_std(window.duration) else {
            continue;
        };
        let (mut opened, mut open) = (0, chrono::Duration::zero());
        let mut cursor = from - span;
        while let Some(start) = window.schedule.next_after(cursor, &config.zone) {
            if start >= to {
                break;
            }
            let (begin, end) = (start.max(from), (start + span).min(to));
            if end > begin {
                opened += 1;
                open += end - begin;
            }
            cursor = start;
        }
        if opened > 0 {
            windows.push(WindowTime {
                name: window.name.clone(),
                opened,
                open_seconds: open.num_seconds(),
                open: format!("{} h {} min", open.num_hours(), open.num_minutes() % 60),
            });
        }
    }
    let mut held: BTreeMap<(String, String, String), HashSet<Spell>> = BTreeMap::new();
    // Every later event of a spell carries its run's outcome: one entry per spell and action.
    let mut actions: BTreeMap<(DateTime<Utc>, String, String), ActionTaken> = BTreeMap::new();
    let last_day = (to - chrono::Duration::milliseconds(1)).date_naive();
    files.for_each_line(from.date_naive(), last_day, |line| {
        // Most lines are not muted: skip them without parsing.
        if line.contains("\"muted\"")
            && let Ok(event) = serde_json::from_str::<AlertEvent>(line)
            && event.at >= from
            && event.at < to
            && matches!(event.kind, EventKind::Firing | EventKind::Repeat)
            && let Some(muted) = &event.muted
        {
            held.entry((
                event.name,
                muted.by.as_str().to_string(),
                muted.name.clone(),
            ))
            .or_default()
            .insert((event.fingerprint, event.active_since));
        }
        if line.contains("\"action\":{")
            && let Ok(event) = serde_json::from_str::<AlertEvent>(line)
            && event.at >= from
            && event.at < to
            && let Some(outcome) = &event.action
        {
            actions
                .entry((
                    event.active_since,
                    event.fingerprint.clone(),
                    outcome.action.clone(),
                ))
                .or_insert_with(|| ActionTaken {
                    alert: event.name.clone(),
                    action: outcome.action.clone(),
                    spell: event.active_since,
                    ok: outcome.ok(),
                    outcome: outcome.to_string(),
                });
        }
        ControlFlow::Continue(())
    });
    MutedSummary {
        actions: actions.into_values().collect(),
        windows,
        held: held
            .into_iter()
            .map(|((name, by, reason), spells)| HeldAlert {
                name,
                by,
                reason,
                fired: spells.len() as u64,
            })
            .collect(),
    }
}
