//! The slower-moving views, read on the first tick that reaches the server and then every
//! `slow_views_every_ticks` ticks (counted, not timed): the tables with the most dead tuples and
//! whether `pg_stat_statements` is installed (one query), then, when it is and a snapshot is
//! due (every `statements_snapshot_every_s`), its counters (a second), written down for the
//! report. The
//! running VACUUMs' progress rides on every tick's own query instead (see `tables::PROGRESS`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryRow};

use super::activity::{Own, PUBLISH_OWN};
use super::statements::{self, Snapshot};
use super::tables;
use crate::config::probes::postgres::PostgresSpec;
use crate::probes::Output;
use crate::vocab::MetricName;

pub struct SlowViews {
    instance: String,
    every: u64,
    /// The tables and the extension's presence, in one transaction of the probe's own
    /// (published as it ends): the same string every time, so made once.
    query: String,
    snapshot_every: Duration,
    dir: Option<PathBuf>,
    /// Ticks that reached the server so far.
    ticks: u64,
    last_snapshot: Option<Instant>,
    /// Whether `pg_stat_statements` answered when its counters were last read.
    answered: bool,
    names: HashMap<(String, &'static str), MetricName>,
    vacuums_running: MetricName,
    tables_read: MetricName,
    statements_installed: MetricName,
    /// The transactions its queries ran in the probe's database since the probe took them,
    /// which the commit rate leaves out.
    pub own: Own,
}

/// What reading the slow views left of the connection.
pub enum Read {
    /// Not due this tick, or read (what failed is in the tick's errors).
    Done,
    /// Cut off mid-query: the connection's state is unknown.
    Abandoned,
}

impl SlowViews {
    pub fn new(spec: &PostgresSpec, instance: &str) -> SlowViews {
        SlowViews {
            instance: instance.to_string(),
            every: u64::from(spec.slow_views_every_ticks.max(1)),
            query: format!(
                "{};\n{};\n{PUBLISH_OWN}",
                tables::top(spec.tables_top),
                statements::DETECT
            ),
            snapshot_every: spec.statements_snapshot_every,
            dir: spec.statements_dir.clone(),
            ticks: 0,
            last_snapshot: None,
            answered: false,
            names: HashMap::new(),
            vacuums_running: MetricName::from(format!("postgres.{instance}.vacuums_running")),
            tables_read: MetricName::from(format!("postgres.{instance}.tables_read")),
            statements_installed: MetricName::from(format!(
                "postgres.{instance}.statements_installed"
            )),
            own: Own::default(),
        }
    }

    /// The running VACUUMs among the tick's rows: their count, and each one's phase and
    /// progress under its table's part.
    pub fn progress(&mut self, out: &mut Output, rows: &[SimpleQueryRow]) {
        let mut running = 0;
        for row in rows {
            if row.try_get("section").ok().flatten() != Some("vacuum") {
                continue;
            }
            running += 1;
            for (part, field, value) in tables::vacuum_values(row) {
                let name = self.name(part, field);
                out.push(&name, value);
            }
        }
        out.push(&self.vacuums_running, f64::from(running));
    }

    /// Reads the slow views if this tick is due, within `budget`.
    pub async fn tick(&mut self, client: &Client, out: &mut Output, budget: Duration) -> Read {
        let due = self.ticks.is_multiple_of(self.every);
        self.ticks += 1;
        if !due {
            return Read::Done;
        }
        match tokio::time::timeout(budget, self.read(client, out)).await {
            Ok(()) => Read::Done,
            Err(_) => {
                out.error(
                    self.error_key(),
                    format!(
                        "the slow views gave no answer within the tick's {} ms left",
                        budget.as_millis()
                    ),
                );
                Read::Abandoned
            }
        }
    }

    fn error_key(&self) -> String {
        format!("postgres.{}.slow_views", self.instance)
    }

    async fn read(&mut self, client: &Client, out: &mut Output) {
        let answer = client.simple_query(&self.query).await;
        self.own.count(&answer);
        let rows = match answer {
            Ok(messages) => super::rows(messages),
            Err(e) => {
                out.error(self.error_key(), super::describe(&e));
                return;
            }
        };
        let mut extension = None;
        let mut tables = 0;
        for row in &rows {
            match row.try_get("section").ok().flatten() {
                Some("table") => {
                    tables += 1;
                    for (part, field, value) in tables::table_values(row) {
                        let name = self.name(part, field);
                        out.push(&name, value);
                    }
                }
                Some("statements") => {
                    if let (Ok(Some(version)), Ok(Some(schema))) =
                        (row.try_get("extversion"), row.try_get("schema"))
                    {
                        extension = Some(statements::query(schema, version));
                    }
                }
                _ => {}
            }
        }
        out.push(&self.tables_read, f64::from(tables));
        let now = Instant::now();
        let due = self.snapshot_due(now);
        let installed = match extension {
            None => {
                if due {
                    let snapshot = Snapshot::absent(
                        chrono::Utc::now(),
                        "pg_stat_statements is not installed in the probe's database (CREATE EXTENSION pg_stat_statements)".to_string(),
                    );
                    self.keep(out, snapshot, now).await;
                }
                false
            }
            // Its counters cost the server milliseconds while the tables cost well under one:
            // read only when a snapshot is to be written; between them the last answer stands.
            Some(_) if !due => self.answered,
            // Installed but not preloaded, or not readable: said in the report, not a failed tick.
            Some(query) => {
                let snapshot = match self
                    .counted(client, &format!("{query};\n{PUBLISH_OWN}"))
                    .await
                {
                    Ok(messages) => Snapshot::from_rows(chrono::Utc::now(), &super::rows(messages)),
                    Err(e) => Snapshot::absent(
                        chrono::Utc::now(),
                        format!("pg_stat_statements did not answer: {}", super::describe(&e)),
                    ),
                };
                self.answered = snapshot.installed;
                self.keep(out, snapshot, now).await;
                self.answered
            }
        };
        out.push(&self.statements_installed, f64::from(u8::from(installed)));
    }

    /// Whether a snapshot is to be written at `now`: the first, then once per
    /// `statements_snapshot_every_s`. Without a folder (a dry run) every slow-views tick reads
    /// the counters, so what the scheduler would read is shown; nothing is written.
    fn snapshot_due(&self, now: Instant) -> bool {
        self.dir.is_none()
            || self
                .last_snapshot
                .is_none_or(|then| now.saturating_duration_since(then) >= self.snapshot_every)
    }

    async fn counted(
        &mut self,
        client: &Client,
        query: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error> {
        let answer = client.simple_query(query).await;
        self.own.count(&answer);
        answer
    }

    /// Writes the snapshot down, off the runtime's threads.
    async fn keep(&mut self, out: &mut Output, snapshot: Snapshot, now: Instant) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        self.last_snapshot = Some(now);
        let written = tokio::task::spawn_blocking(move || statements::write(&dir, &snapshot))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(message) = written {
            out.error(self.error_key(), message);
        }
    }

    fn name(&mut self, part: String, field: &'static str) -> MetricName {
        let instance = &self.instance;
        self.names
            .entry((part, field))
            .or_insert_with_key(|(part, field)| {
                MetricName::from(format!("postgres.{instance}.{part}.{field}"))
            })
            .clone()
    }
}
