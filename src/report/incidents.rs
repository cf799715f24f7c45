//! The report's ServiceNow incidents, from the cache the fetch job keeps: opened and resolved in
//! the window, and still open at its end. Says plainly when ServiceNow is not configured or was
//! never fetched, rather than showing an empty list as if there were no incidents.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, JobKind};
use crate::servicenow::cache::{Cache, Incident, cache_path};

#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    pub number: String,
    pub short_description: String,
    pub state: String,
    pub priority: String,
    pub opened_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// From opening to its end (resolved, closed, or the last update of one canceled), or to
    /// the window's end while it is open.
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct IncidentsSummary {
    /// Whether a servicenow_fetch job is configured and on.
    pub configured: bool,
    /// A sentence for the report when there is nothing to show, or something to say about it.
    pub note: String,
    pub fetched_at: Option<DateTime<Utc>>,
    pub opened: Vec<IncidentRow>,
    pub resolved: Vec<IncidentRow>,
    pub open: Vec<IncidentRow>,
}

/// When an incident ended, as far as its timestamps say: `None` while it is open now. A closed
/// incident may carry no `resolved_at` (closed straight away), and a canceled one neither
/// (it ended when it was last changed).
fn ended_at(i: &Incident) -> Option<DateTime<Utc>> {
    if i.is_open() {
        return None;
    }
    i.resolved_at.or(i.closed_at).or(i.updated_at)
}

/// Whether the incident was open at `to`, judged by its timestamps rather than its state now:
/// a report of a past window shows what was open then, including those resolved since.
fn open_at(i: &Incident, to: DateTime<Utc>) -> bool {
    let opened = i.opened_at.is_none_or(|o| o < to);
    // An ended incident without any end time cannot be placed; only its state says it ended.
    let not_ended = i.is_open() || ended_at(i).is_some_and(|end| end >= to);
    opened && not_ended
}

fn row(i: &Incident, to: DateTime<Utc>) -> IncidentRow {
    let end = if i.is_open() { Some(to) } else { ended_at(i) }.map(|end| end.min(to));
    IncidentRow {
        number: i.number.clone(),
        short_description: i.short_description.clone(),
        state: i.state_name.clone(),
        priority: i.priority_name.clone(),
        opened_at: i.opened_at,
        resolved_at: i.resolved_at,
        closed_at: i.closed_at,
        age_seconds: i
            .opened_at
            .zip(end)
            .map(|(o, end)| (end - o).num_seconds().max(0)),
    }
}

/// Opened in `[from, to)`, resolved (or closed without a resolution time) in it, and open at
/// `to`, each sorted by opening time.
fn classify<'a>(
    incidents: impl Iterator<Item = &'a Incident>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (Vec<IncidentRow>, Vec<IncidentRow>, Vec<IncidentRow>) {
    let (mut opened, mut resolved, mut open) = (Vec::new(), Vec::new(), Vec::new());
    let within = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t >= from && t < to);
    for i in incidents {
        if within(i.opened_at) {
            opened.push(row(i, to));
        }
        if within(i.resolved_at.or(i.closed_at)) {
            resolved.push(row(i, to));
        }
        if open_at(i, to) {
            open.push(row(i, to));
        }
    }
    for list in [&mut opened, &mut resolved, &mut open] {
        list.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.number.cmp(&b.number)));
    }
    (opened, resolved, open)
}

/// The incidents section for `[from, to)`.
pub fn summarize(
    config: &Config,
    data_dir: &Path,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> IncidentsSummary {
    let fetch_jobs: Vec<_> = config
        .jobs
        .values()
        .filter(|j| matches!(j.kind, JobKind::ServicenowFetch(_)))
        .collect();
    let on = fetch_jobs.iter().any(|j| j.inactive_reason().is_none());
    if !on {
        return IncidentsSummary {
            // Plain words: the note goes into HTML and Markdown alike, where `code` marks
            // would show as they are in one of them.
            note: match fetch_jobs.first().and_then(|j| j.inactive_reason()) {
                Some(reason) => format!("ServiceNow not configured: {}.", reason.replace('`', "")),
                None => "ServiceNow not configured: no servicenow_fetch job.".into(),
            },
            ..IncidentsSummary::default()
        };
    }
    let cache = match Cache::read(&cache_path(data_dir)) {
        Ok(Some(cache)) => cache,
        Ok(None) => {
            return IncidentsSummary {
                configured: true,
                note: "ServiceNow is configured but no incidents were fetched yet.".into(),
                ..IncidentsSummary::default()
            };
        }
        Err(e) => {
            return IncidentsSummary {
                configured: true,
                note: format!("The incidents cache cannot be read: {e}."),
                ..IncidentsSummary::default()
            };
        }
    };
    let mut s = IncidentsSummary {
        configured: true,
        fetched_at: cache.fetched_at,
        ..IncidentsSummary::default()
    };
    let lists = classify(cache.incidents.values(), from, to);
    (s.opened, s.resolved, s.open) = lists;
    if s.opened.is_empty() && s.resolved.is_empty() && s.open.is_empty() {
        s.note = "No incidents matched the fetch job's query in this window.".into();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(text).unwrap().to_utc())
    }

    /// An incident in `state` (1 new, 2 in progress, 6 resolved, 7 closed, 8 canceled).
    fn incident(number: &str, state: &str, opened: &str, resolved: &str, closed: &str) -> Incident {
        let time = |t: &str| if t.is_empty() { None } else { at(t) };
        Incident {
            sys_id: number.to_lowercase(),
            number: number.into(),
            short_description: String::new(),
            state: state.into(),
            state_name: state.into(),
            priority: String::new(),
            priority_name: String::new(),
            opened_at: time(opened),
            resolved_at: time(resolved),
            closed_at: time(closed),
            updated_at: time(closed).or(time(resolved)).or(time(opened)),
            sys_updated_on: String::new(),
            fields: Default::default(),
        }
    }

    fn numbers(rows: &[IncidentRow]) -> Vec<&str> {
        rows.iter().map(|r| r.number.as_str()).collect()
    }

    #[test]
    fn a_past_window_shows_what_was_open_at_its_end() {
        let from = at("2026-11-23T08:00:00Z").unwrap();
        let to = at("2026-11-30T08:00:00Z").unwrap();
        let incidents = [
            // Open now, opened before the window: open at its end.
            incident("INC1", "2", "2026-11-20T10:00:00Z", "", ""),
            // Opened in the window, resolved after its end: open at its end.
            incident(
                "INC2",
                "6",
                "2026-11-25T10:00:00Z",
                "2026-12-01T09:00:00Z",
                "",
            ),
            // Resolved and closed after the end.
            incident(
                "INC3",
                "7",
                "2026-11-10T10:00:00Z",
                "2026-12-02T09:00:00Z",
                "2026-12-05T09:00:00Z",
            ),
            // Closed without a resolution time, after the end.
            incident(
                "INC4",
                "7",
                "2026-11-26T10:00:00Z",
                "",
                "2026-12-01T12:00:00Z",
            ),
            // Open now, opened before the end.
            incident("INC5", "1", "2026-11-29T23:00:00Z", "", ""),
            // Opened after the end: not in this window at all.
            incident("INC6", "1", "2026-11-30T09:00:00Z", "", ""),
            // Closed without a resolution time, in the window.
            incident(
                "INC7",
                "7",
                "2026-11-20T10:00:00Z",
                "",
                "2026-11-24T12:00:00Z",
            ),
            // Resolved in the window.
            incident(
                "INC8",
                "6",
                "2026-11-24T10:00:00Z",
                "2026-11-24T11:00:00Z",
                "",
            ),
        ];
        let (opened, resolved, open) = classify(incidents.iter(), from, to);
        assert_eq!(numbers(&opened), ["INC8", "INC2", "INC4", "INC5"]);
        assert_eq!(numbers(&resolved), ["INC7", "INC8"]);
        assert_eq!(numbers(&open), ["INC3", "INC1", "INC2", "INC4", "INC5"]);
        // Their age runs to the window's end, not to the resolution after it.
        let inc2 = open.iter().find(|r| r.number == "INC2").unwrap();
        assert_eq!(
            inc2.age_seconds,
            Some((to - at("2026-11-25T10:00:00Z").unwrap()).num_seconds())
        );
        let inc7 = &resolved[0];
        assert_eq!(inc7.age_seconds, Some(4 * 86_400 + 2 * 3_600));
    }

    #[test]
    fn one_resolved_at_the_end_belongs_to_the_next_window() {
        let from = at("2026-11-23T08:00:00Z").unwrap();
        let to = at("2026-11-30T08:00:00Z").unwrap();
        let incidents = [
            // Resolved at the very end: the window is `[from, to)`, so it was open through
            // it, and the next window has its resolution.
            incident(
                "INC1",
                "6",
                "2026-11-25T10:00:00Z",
                "2026-11-30T08:00:00Z",
                "",
            ),
            // Canceled: no resolution or closing time; it ended at its last change.
            incident("INC2", "8", "2026-11-25T10:00:00Z", "", ""),
        ];
        let (_, resolved, open) = classify(incidents.iter(), from, to);
        assert!(resolved.is_empty(), "{resolved:?}");
        assert_eq!(numbers(&open), ["INC1"]);
        let (_, resolved, open) = classify(incidents.iter(), to, to + chrono::Duration::days(7));
        assert_eq!(numbers(&resolved), ["INC1"]);
        assert!(open.is_empty(), "{open:?}");
    }
}
