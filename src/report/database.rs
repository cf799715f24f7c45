//! The report's Database section: for each `postgres` probe, the week's connections and lock
//! waits, its deadlocks, its longest transactions and statements, and each database's share,
//! read from the window's metric summaries (nothing when no `postgres` probe ran).

use serde::Serialize;

use super::summary::{Family, MetricSummary};

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseServer {
    /// The probe's name (`main`).
    pub name: String,
    /// `connections`: mean and peak over the window.
    pub connections_avg: Option<f64>,
    pub connections_max: Option<f64>,
    /// The peak share of the connections ordinary roles may use.
    pub connections_used_percent_max: Option<f64>,
    /// Sessions waiting on locks: mean, p95 and peak.
    pub lock_waiting_avg: Option<f64>,
    pub lock_waiting_p95: Option<f64>,
    pub lock_waiting_max: Option<f64>,
    /// The longest lock wait seen at any tick, in milliseconds.
    pub lock_wait_longest_ms: Option<f64>,
    /// Deadlocks over the window: the sum of each tick's count.
    pub deadlocks: u64,
    pub longest_transaction_seconds: Option<f64>,
    pub longest_statement_seconds: Option<f64>,
    pub commits_per_sec_avg: Option<f64>,
    pub rollbacks_per_sec_avg: Option<f64>,
    pub cache_hit_percent_avg: Option<f64>,
    pub replication_lag_seconds_max: Option<f64>,
    pub databases: Vec<DatabaseRow>,
    /// "Slowest queries": from `pg_stat_statements`' snapshots, when the probe kept any.
    pub slowest_queries: Option<super::slowest::SlowQueries>,
}

/// One database of a server over the window.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseRow {
    /// The database's own name (`Shop-EU`), read back from its metric name part.
    pub name: String,
    pub connections_max: Option<f64>,
    pub commits_per_sec_avg: Option<f64>,
    pub deadlocks: u64,
    pub temp_bytes_per_sec_avg: Option<f64>,
    pub cache_hit_percent_avg: Option<f64>,
}

/// The section for the families of a window, one entry per `postgres` probe.
pub fn summarize(families: &[Family]) -> Vec<DatabaseServer> {
    let Some(family) = families.iter().find(|f| f.name == "postgres") else {
        return Vec::new();
    };
    let mut servers: Vec<String> = family
        .metrics
        .iter()
        .filter(|m| !m.instance.contains('.'))
        .map(|m| m.instance.clone())
        .collect();
    servers.sort_unstable();
    servers.dedup();
    servers
        .into_iter()
        .map(|server| {
            let get = |field: &str| {
                family
                    .metrics
                    .iter()
                    .find(|m| m.instance == server && m.field == field)
            };
            let avg = |field: &str| get(field).map(|m| m.avg);
            let max = |field: &str| get(field).map(|m| m.max);
            let prefix = format!("{server}.");
            let mut parts: Vec<&str> = family
                .metrics
                .iter()
                .filter(|m| m.field == "commits_per_sec" || m.field == "connections")
                .filter_map(|m| m.instance.strip_prefix(&prefix))
                .collect();
            parts.sort_unstable();
            parts.dedup();
            let databases = parts
                .into_iter()
                .map(|db| {
                    let instance = format!("{server}.{db}");
                    let get = |field: &str| {
                        family
                            .metrics
                            .iter()
                            .find(|m| m.instance == instance && m.field == field)
                    };
                    DatabaseRow {
                        name: crate::probes::postgres::names::original_name(db),
                        connections_max: get("connections").map(|m| m.max),
                        commits_per_sec_avg: get("commits_per_sec").map(|m| m.avg),
                        deadlocks: get("deadlocks").map_or(0, total),
                        temp_bytes_per_sec_avg: get("temp_bytes_per_sec").map(|m| m.avg),
                        cache_hit_percent_avg: get("cache_hit_percent").map(|m| m.avg),
                    }
                })
                .collect();
            DatabaseServer {
                connections_avg: avg("connections"),
                connections_max: max("connections"),
                connections_used_percent_max: max("connections_used_percent"),
                lock_waiting_avg: avg("lock_waiting"),
                lock_waiting_p95: get("lock_waiting").and_then(|m| m.p95),
                lock_waiting_max: max("lock_waiting"),
                lock_wait_longest_ms: max("lock_wait_max_ms"),
                deadlocks: get("deadlocks").map_or(0, total),
                longest_transaction_seconds: max("oldest_transaction_s"),
                longest_statement_seconds: max("longest_statement_s"),
                commits_per_sec_avg: avg("commits_per_sec"),
                rollbacks_per_sec_avg: avg("rollbacks_per_sec"),
                cache_hit_percent_avg: avg("cache_hit_percent"),
                replication_lag_seconds_max: max("replication_lag_s"),
                databases,
                slowest_queries: None,
                name: server,
            }
        })
        .collect()
}

/// The sum of a per-tick count over the window (the mean is exact, so is mean × samples).
fn total(m: &MetricSummary) -> u64 {
    (m.avg * m.samples as f64).round().max(0.0) as u64
}
