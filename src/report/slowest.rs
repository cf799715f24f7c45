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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::postgres::statements::{Snapshot, Window, window};
    use crate::template::bounds::Limits;

    fn rendered(slowest: SlowQueries) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs.yaml");
        std::fs::write(
            &jobs,
            "data_dir: var\njobs:\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n",
        )
        .unwrap();
        let config = crate::config::Config::load(&jobs).unwrap();
        let mut summary = crate::report::summary::example(&config);
        summary.database[0].slowest_queries = Some(slowest);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let render = |name: &str| {
            crate::report::render::render(
                &root.join(name),
                &summary,
                &config.zone,
                &Limits::report(),
            )
            .unwrap()
            .text
        };
        (render("weekly.md.hbs"), render("weekly.html.hbs"))
    }

    #[test]
    fn without_the_extension_the_section_says_so_and_lists_nothing() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let snapshots = [Snapshot::absent(
            at,
            "pg_stat_statements is not installed".into(),
        )];
        let entry = of_window(
            "main".into(),
            "db".into(),
            &window(&snapshots, at - chrono::Duration::days(7)),
            10,
        );
        let (md, html) = rendered(entry);
        assert!(
            md.contains("#### Slowest queries\n\npg_stat_statements is not installed\n"),
            "{md}"
        );
        assert!(!md.contains("By total time"), "{md}");
        assert!(
            html.contains("<h4>Slowest queries</h4>\n<p>pg_stat_statements is not installed</p>")
        );
    }

    #[test]
    fn a_statement_is_user_data_escaped_for_each_template() {
        let statement = Statement {
            key: "1:2:3:1".into(),
            database: "shop".into(),
            user: "app".into(),
            query: "SELECT '<b>' | `x` FROM t".into(),
            calls: 4,
            rows: 8,
            total_ms: 10.0,
            shared_blks_hit: 1,
            shared_blks_read: 0,
        };
        let w = Window {
            since: DateTime::from_timestamp(1_800_000_000, 0),
            until: DateTime::from_timestamp(1_800_003_600, 0),
            note: None,
            statements: vec![statement],
        };
        let entry = of_window("main".into(), "db".into(), &w, 10);
        assert_eq!(entry.by_mean[0].mean_ms, 2.5);
        let (md, html) = rendered(entry);
        assert!(
            md.contains("| ``SELECT '<b>' \\| `x` FROM t`` | shop | app | 4 | 8 | "),
            "{md}"
        );
        assert!(
            html.contains("<code>SELECT &#x27;&lt;b&gt;&#x27; | &#x60;x&#x60; FROM t</code>"),
            "{html}"
        );
    }
}
