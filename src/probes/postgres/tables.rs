//! Vacuum as a DBA watches it: the tables of the probe's database with the most dead tuples
//! (`pg_stat_user_tables`, read on slow-views ticks) and the VACUUMs running now
//! (`pg_stat_progress_vacuum`, cheap enough to read every tick, as part of the tick's query).
//! Each table is a part of its own (`postgres.main.public~~orders.dead_tuples`, see `names`).

use tokio_postgres::SimpleQueryRow;

use super::{names, number};

/// Appended to the tick's query. Every running VACUUM is a row; those of other databases have
/// no table (their relation IDs mean nothing here) and are only counted.
pub const PROGRESS: &str = "\
SELECT 'vacuum' AS section, n.nspname AS schemaname, c.relname, p.phase,
  p.heap_blks_total, p.heap_blks_scanned
FROM pg_stat_progress_vacuum p
LEFT JOIN pg_class c ON c.oid = p.relid AND p.datname = current_database()
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace";

/// The `top` tables with the most dead tuples, ties by name so the set is stable. Ages are
/// against the transaction's `now()`, clamped at 0; a table never vacuumed or analyzed has
/// none (NULL: `greatest` alone would turn a NULL into 0, a vacuum just now).
pub fn top(top: u32) -> String {
    let age = |column: &str| {
        format!(
            "CASE WHEN {column} IS NOT NULL \
             THEN extract(epoch FROM greatest(now() - {column}, '0'::interval)) END AS {column}_age_s"
        )
    };
    format!(
        "\
SELECT 'table' AS section, schemaname, relname, n_live_tup, n_dead_tup,
  {}, {}, {}, {}
FROM pg_stat_user_tables
ORDER BY n_dead_tup DESC, schemaname, relname
LIMIT {top}",
        age("last_vacuum"),
        age("last_autovacuum"),
        age("last_analyze"),
        age("last_autoanalyze"),
    )
}

/// One value of one table: its part and field.
pub type TableValue = (String, &'static str, f64);

/// The fields of a `table` row, for the table's part.
pub fn table_values(row: &SimpleQueryRow) -> Vec<TableValue> {
    let (Some(schema), Some(table)) = (text(row, "schemaname"), text(row, "relname")) else {
        return Vec::new();
    };
    let part = names::table_part(schema, table);
    let live = number(row, "n_live_tup");
    let dead = number(row, "n_dead_tup");
    let mut out = Vec::new();
    let mut push = |field, value: Option<f64>| {
        if let Some(value) = value {
            out.push((part.clone(), field, value));
        }
    };
    push("live_tuples", live);
    push("dead_tuples", dead);
    if let (Some(live), Some(dead)) = (live, dead)
        && live + dead > 0.0
    {
        push("dead_percent", Some(dead * 100.0 / (live + dead)));
    }
    for field in [
        "last_vacuum_age_s",
        "last_autovacuum_age_s",
        "last_analyze_age_s",
        "last_autoanalyze_age_s",
    ] {
        push(field, number(row, field));
    }
    out
}

/// The phases of `pg_stat_progress_vacuum`, in PostgreSQL's own order (`PROGRESS_VACUUM_PHASE_*`).
const PHASES: [&str; 7] = [
    "initializing",
    "scanning heap",
    "vacuuming indexes",
    "vacuuming heap",
    "cleaning up indexes",
    "truncating heap",
    "performing final cleanup",
];

/// The fields of a `vacuum` row of this database's table; none for another database's.
pub fn vacuum_values(row: &SimpleQueryRow) -> Vec<TableValue> {
    let (Some(schema), Some(table)) = (text(row, "schemaname"), text(row, "relname")) else {
        return Vec::new();
    };
    let part = names::table_part(schema, table);
    let mut out = Vec::new();
    if let Some(phase) = text(row, "phase").and_then(|p| PHASES.iter().position(|&n| n == p)) {
        out.push((part.clone(), "vacuum_phase", phase as f64));
    }
    if let (Some(total), Some(scanned)) = (
        number(row, "heap_blks_total"),
        number(row, "heap_blks_scanned"),
    ) && total > 0.0
    {
        out.push((part, "vacuum_scanned_percent", scanned * 100.0 / total));
    }
    out
}

fn text<'a>(row: &'a SimpleQueryRow, column: &str) -> Option<&'a str> {
    row.try_get(column).ok().flatten()
}
