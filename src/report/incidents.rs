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

fn row(i: &Incident, to: DateTime<Utc>) -> IncidentRow {
    // A canceled incident has no resolution time: it ended when it was last changed.
    let end = if i.is_open() {
        Some(to)
    } else {
        i.resolved_at.or(i.closed_at).or(i.updated_at)
    };
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
            .map(|(o, end)| (end.min(to) - o).num_seconds().max(0)),
    }
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
    let within = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t >= from && t < to);
    for i in cache.incidents.values() {
        if within(i.opened_at) {
            s.opened.push(row(i, to));
        }
        if within(i.resolved_at) {
            s.resolved.push(row(i, to));
        }
        if i.is_open() && i.opened_at.is_none_or(|o| o < to) {
            s.open.push(row(i, to));
        }
    }
    for list in [&mut s.opened, &mut s.resolved, &mut s.open] {
        list.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.number.cmp(&b.number)));
    }
    if s.opened.is_empty() && s.resolved.is_empty() && s.open.is_empty() {
        s.note = "No incidents matched the fetch job's query in this window.".into();
    }
    s
}
