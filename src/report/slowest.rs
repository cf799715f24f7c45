//! The report's "Slowest queries": for each `postgres` probe of the monitors, the statements
//! that took the most time in the window, in total and per call, from the growth of the
//! `pg_stat_statements` counters between the probe's snapshots around the window.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::probes::ProbeKind;
use crate::config::{Config, JobKind};
use crate::probes::postgres::statements::{self, Statement};

#[derive(Debug, Clone, Serialize)]
pub struct SlowQueries {
    /// The probe's name (`main`).
    pub name: String,
    pub job: String,
    /// Why no statement is listed (the extension is not installed, or no snapshot spans the
    /// window yet); empty otherwise.
    pub note: String,
    /// The snapshots the figures are between.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The most total execution time first.
    pub by_total: Vec<StatementRow>,
    /// The most mean execution time per call first.
    pub by_mean: Vec<StatementRow>,
}

/// One statement's work over the window.
#[derive(Debug, Clone, Serialize)]
pub struct StatementRow {
    /// Normalised text as `pg_stat_statements` keeps it: user data, for templates to escape.
    pub query: String,
    pub database: String,
    pub user: String,
    pub calls: u64,
    pub rows: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub shared_blks_hit: u64,
    pub shared_blks_read: u64,
}

impl StatementRow {
    fn of(s: &Statement) -> StatementRow {
        StatementRow {
            query: s.query.clone(),
            database: s.database.clone(),
            user: s.user.clone(),
            calls: s.calls,
            rows: s.rows,
            total_ms: s.total_ms,
            mean_ms: s.total_ms / s.calls.max(1) as f64,
            shared_blks_hit: s.shared_blks_hit,
            shared_blks_read: s.shared_blks_read,
        }
    }
}

/// The servers with each one's "Slowest queries" (by probe name; of two jobs' probes of the
/// same name, the first job's).
pub fn attach(
    mut servers: Vec<super::database::DatabaseServer>,
    mut slowest: Vec<SlowQueries>,
) -> Vec<super::database::DatabaseServer> {
    for server in &mut servers {
        if let Some(i) = slowest.iter().position(|s| s.name == server.name) {
            server.slowest_queries = Some(slowest.remove(i));
        }
    }
    servers
}

/// One entry per `postgres` probe with snapshots in or just before the window.
pub fn summarize(config: &Config, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<SlowQueries> {
    let mut out = Vec::new();
    for job in config.jobs.values() {
        let JobKind::Monitor(monitor) = &job.kind else {
            continue;
        };
        for probe in &monitor.probes {
            let ProbeKind::Postgres(spec) = &probe.kind else {
                continue;
            };
            let Some(dir) = &spec.statements_dir else {
                continue;
            };
            let snapshots = statements::read(dir, from, to);
            if snapshots.is_empty() {
                continue;
            }
            out.push(of_window(
                probe.name.clone().unwrap_or_default(),
                job.name.clone(),
                &statements::window(&snapshots, from),
                spec.statements_top as usize,
            ));
        }
    }
    out
}

/// The section's entry for one probe's window.
pub fn of_window(name: String, job: String, w: &statements::Window, top: usize) -> SlowQueries {
    let by_total: Vec<StatementRow> = w
        .statements
        .iter()
        .take(top)
        .map(StatementRow::of)
        .collect();
    let mut by_mean: Vec<StatementRow> = w.statements.iter().map(StatementRow::of).collect();
    by_mean.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
    by_mean.truncate(top);
    let note = match (&w.note, by_total.is_empty(), w.since == w.until) {
        (_, false, _) => String::new(),
        (Some(note), true, _) => note.clone(),
        (None, true, true) => {
            "one snapshot of pg_stat_statements so far: the next one gives the first figures"
                .to_string()
        }
        (None, true, false) => "no statement ran between the snapshots".to_string(),
    };
    SlowQueries {
        name,
        job,
        note,
        since: w.since,
        until: w.until,
        by_total,
        by_mean,
    }
}
