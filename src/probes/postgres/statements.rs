//! `pg_stat_statements` for the report's "Slowest queries": its counters are cumulative since
//! its last reset, so the probe writes snapshots of them down and the report takes the
//! growth between the snapshots around its window.
//!
//! Snapshots are JSON lines, one file per UTC day, under
//! `<data_dir>/statements/<job>/<probe>/<YYYY-MM-DD>.jsonl`. Bounded: one line per
//! `statements_snapshot_every_s` at most (an hour by default); a line keeps the
//! `KEPT_BY_TOTAL` statements of most total time and the `KEPT_BY_MEAN` of most mean time,
//! their text cut at `QUERY_CHARS`; files older than `KEEP_DAYS` are removed when a snapshot
//! is written.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::SimpleQueryRow;

pub const KEPT_BY_TOTAL: u32 = 100;
pub const KEPT_BY_MEAN: u32 = 20;
pub const QUERY_CHARS: u32 = 300;
pub const KEEP_DAYS: i64 = 35;

/// Part of the slow-views query: where the extension is installed in this database, if it is.
pub const DETECT: &str = "\
SELECT 'statements' AS section, e.extversion, quote_ident(n.nspname) AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'";

/// `1.10` → (1, 10).
fn version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The statements to keep, from the extension in `schema` (quoted) at `extversion`: 1.8
/// renamed `total_time` to `total_exec_time`; 1.9 added `toplevel` and the reset time.
/// A statement is one per database, role, query ID and nesting level, as the view keys it.
pub fn query(schema: &str, extversion: &str) -> String {
    let v = version(extversion);
    let total = if v >= (1, 8) {
        "total_exec_time"
    } else {
        "total_time"
    };
    let toplevel = if v >= (1, 9) { "s.toplevel::int" } else { "1" };
    let reset = if v >= (1, 9) {
        format!("(SELECT stats_reset::text FROM {schema}.pg_stat_statements_info)")
    } else {
        "NULL".to_string()
    };
    format!(
        "\
WITH s AS (
  SELECT s.*, {toplevel} AS top_level,
    row_number() OVER (ORDER BY s.{total} DESC) AS by_total,
    row_number() OVER (ORDER BY s.{total} / greatest(s.calls, 1) DESC) AS by_mean,
    count(*) OVER () AS tracked
  FROM {schema}.pg_stat_statements s WHERE s.queryid IS NOT NULL)
SELECT 'statement' AS section,
  s.dbid || ':' || s.userid || ':' || s.queryid || ':' || s.top_level AS key,
  coalesce(d.datname, s.dbid::text) AS datname, coalesce(r.rolname, s.userid::text) AS rolname,
  left(s.query, {QUERY_CHARS}) AS query, s.calls, s.rows, s.{total} AS total_ms,
  s.shared_blks_hit, s.shared_blks_read, s.tracked, {reset} AS reset
FROM s LEFT JOIN pg_database d ON d.oid = s.dbid LEFT JOIN pg_roles r ON r.oid = s.userid
WHERE s.by_total <= {KEPT_BY_TOTAL} OR s.by_mean <= {KEPT_BY_MEAN}"
    )
}

/// One statement's counters at one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// `dbid:userid:queryid:toplevel`: what the view keys a statement by.
    pub key: String,
    pub database: String,
    pub user: String,
    /// The normalised text (`$1` for constants), cut at `QUERY_CHARS` characters.
    pub query: String,
    pub calls: u64,
    pub rows: u64,
    pub total_ms: f64,
    pub shared_blks_hit: u64,
    pub shared_blks_read: u64,
}

/// The counters at one moment, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub ts: DateTime<Utc>,
    pub installed: bool,
    /// Why nothing was read (not installed, not preloaded, no permission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `pg_stat_statements_info.stats_reset` (1.9 on): a change is a reset of every counter.
    #[serde(default)]
    pub reset: Option<String>,
    /// Every statement the view tracked is here (it tracked no more than were kept): one
    /// missing from it is new since.
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub statements: Vec<Statement>,
}

impl Snapshot {
    pub fn absent(ts: DateTime<Utc>, note: String) -> Snapshot {
        Snapshot {
            ts,
            installed: false,
            note: Some(note),
            reset: None,
            complete: true,
            statements: Vec::new(),
        }
    }

    /// The snapshot the statements query's rows make.
    pub fn from_rows(ts: DateTime<Utc>, rows: &[SimpleQueryRow]) -> Snapshot {
        let text = |row: &SimpleQueryRow, column: &str| -> Option<String> {
            row.try_get(column).ok().flatten().map(str::to_string)
        };
        let count = |row: &SimpleQueryRow, column: &str| -> u64 {
            text(row, column).and_then(|t| t.parse().ok()).unwrap_or(0)
        };
        let mut statements = Vec::new();
        let mut tracked = 0;
        let mut reset = None;
        for row in rows {
            if text(row, "section").as_deref() != Some("statement") {
                continue;
            }
            tracked = count(row, "tracked");
            reset = text(row, "reset");
            let Some(key) = text(row, "key") else {
                continue;
            };
            statements.push(Statement {
                key,
                database: text(row, "datname").unwrap_or_default(),
                user: text(row, "rolname").unwrap_or_default(),
                query: text(row, "query").unwrap_or_default(),
                calls: count(row, "calls"),
                rows: count(row, "rows"),
                total_ms: text(row, "total_ms")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0.0),
                shared_blks_hit: count(row, "shared_blks_hit"),
                shared_blks_read: count(row, "shared_blks_read"),
            });
        }
        Snapshot {
            ts,
            installed: true,
            note: None,
            reset,
            complete: statements.len() as u64 >= tracked,
            statements,
        }
    }
}

fn day_file(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("{}.jsonl", day.format("%Y-%m-%d")))
}

/// Appends a snapshot to its day's file, and removes the files past `KEEP_DAYS`.
pub fn write(dir: &Path, snapshot: &Snapshot) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = day_file(dir, snapshot.ts.date_naive());
    let mut line = serde_json::to_string(snapshot).map_err(|e| e.to_string())?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let oldest = snapshot.ts.date_naive() - chrono::Duration::days(KEEP_DAYS);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let day = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        if day.is_some_and(|d| d < oldest) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The snapshots of the days from `from`'s day before to `to`'s, in time order, up to `to`.
pub fn read(dir: &Path, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Snapshot> {
    let mut snapshots = Vec::new();
    let mut day = from.date_naive() - chrono::Duration::days(1);
    while day <= to.date_naive() {
        if let Ok(text) = std::fs::read_to_string(day_file(dir, day)) {
            snapshots.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Snapshot>(l).ok())
                    .filter(|s| s.ts <= to),
            );
        }
        day += chrono::Duration::days(1);
    }
    snapshots.sort_by_key(|s| s.ts);
    snapshots
}

/// What the statements did over a window: each one's counters' growth.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// The snapshots the growth is between (the last at or before the window's start, or the
    /// first in it; the last in it).
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub statements: Vec<Statement>,
    /// The newest snapshot's reason for having no statements, if it had none.
    pub note: Option<String>,
}

/// The growth of every statement between the snapshots around `from`..`to`: summed snapshot
/// to snapshot, so a reset (the reset time changed, or a statement's calls went down) in the
/// middle costs only the growth between the two snapshots around it. A statement missing
/// from the earlier snapshot of a pair counts from 0 when that snapshot was complete (it is
/// new), else that pair adds nothing for it (it was below the cut: its start is unknown).
pub fn window(snapshots: &[Snapshot], from: DateTime<Utc>) -> Window {
    let start = snapshots.iter().rposition(|s| s.ts <= from).unwrap_or(0);
    let used = snapshots.get(start..).unwrap_or_default();
    let mut grown: HashMap<&str, Statement> = HashMap::new();
    for pair in used.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if !after.installed {
            continue;
        }
        let all_new = !before.installed
            || (before.reset.is_some() && after.reset.is_some() && before.reset != after.reset);
        let earlier: HashMap<&str, &Statement> = before
            .statements
            .iter()
            .map(|s| (s.key.as_str(), s))
            .collect();
        for now in &after.statements {
            let growth = match earlier.get(now.key.as_str()) {
                _ if all_new => Some(now.clone()),
                Some(then) if now.calls < then.calls => Some(now.clone()),
                Some(then) => Some(Statement {
                    calls: now.calls - then.calls,
                    rows: now.rows.saturating_sub(then.rows),
                    total_ms: (now.total_ms - then.total_ms).max(0.0),
                    shared_blks_hit: now.shared_blks_hit.saturating_sub(then.shared_blks_hit),
                    shared_blks_read: now.shared_blks_read.saturating_sub(then.shared_blks_read),
                    ..now.clone()
                }),
                None if before.complete => Some(now.clone()),
                None => None,
            };
            let Some(growth) = growth.filter(|g| g.calls > 0) else {
                continue;
            };
            let sum = grown.entry(now.key.as_str()).or_insert_with(|| Statement {
                calls: 0,
                rows: 0,
                total_ms: 0.0,
                shared_blks_hit: 0,
                shared_blks_read: 0,
                ..now.clone()
            });
            sum.calls += growth.calls;
            sum.rows += growth.rows;
            sum.total_ms += growth.total_ms;
            sum.shared_blks_hit += growth.shared_blks_hit;
            sum.shared_blks_read += growth.shared_blks_read;
            // The newest text: a longer cut written by a newer runner wins.
            sum.query.clone_from(&now.query);
        }
    }
    let mut statements: Vec<Statement> = grown.into_values().collect();
    statements.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.key.cmp(&b.key)));
    Window {
        since: used.first().map(|s| s.ts),
        until: used.last().map(|s| s.ts),
        note: used.last().and_then(|s| s.note.clone()),
        statements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn statement(key: &str, calls: u64, total_ms: f64) -> Statement {
        Statement {
            key: key.into(),
            database: "shop".into(),
            user: "app".into(),
            query: format!("SELECT {key}"),
            calls,
            rows: calls * 2,
            total_ms,
            shared_blks_hit: calls * 10,
            shared_blks_read: calls,
        }
    }

    fn snapshot(minute: i64, reset: &str, complete: bool, statements: Vec<Statement>) -> Snapshot {
        Snapshot {
            ts: at(minute),
            installed: true,
            note: None,
            reset: Some(reset.into()),
            complete,
            statements,
        }
    }

    #[test]
    fn growth_is_summed_pair_by_pair_through_resets_and_new_statements() {
        let snapshots = vec![
            snapshot(0, "r0", true, vec![statement("a", 100, 1000.0)]),
            // The window starts here: what `a` did before is not the window's.
            snapshot(60, "r0", true, vec![statement("a", 110, 1100.0)]),
            // `b` is new (the snapshot before was complete).
            snapshot(
                120,
                "r0",
                true,
                vec![statement("a", 130, 1300.0), statement("b", 5, 50.0)],
            ),
            // A reset: every counter since it is growth.
            snapshot(
                180,
                "r1",
                false,
                vec![statement("a", 4, 40.0), statement("b", 1, 10.0)],
            ),
            // `c` was below the cut before (not complete): its start is unknown.
            snapshot(
                240,
                "r1",
                true,
                vec![
                    statement("a", 6, 60.0),
                    statement("b", 1, 10.0),
                    statement("c", 50, 5000.0),
                ],
            ),
            // `a`'s own counters went down (pg_stat_statements_reset for one query).
            snapshot(300, "r1", true, vec![statement("a", 3, 30.0)]),
        ];
        let w = window(&snapshots, at(90));
        assert_eq!(w.since, Some(at(60)));
        assert_eq!(w.until, Some(at(300)));
        let by_key: HashMap<&str, &Statement> =
            w.statements.iter().map(|s| (s.key.as_str(), s)).collect();
        assert_eq!(by_key["a"].calls, 20 + 4 + 2 + 3);
        assert_eq!(by_key["a"].total_ms, 200.0 + 40.0 + 20.0 + 30.0);
        assert_eq!(by_key["a"].rows, 2 * 29);
        assert_eq!(by_key["b"].calls, 5 + 1);
        assert!(!by_key.contains_key("c"), "{w:?}");
        assert_eq!(w.statements[0].key, "a", "most total time first");
    }

    #[test]
    fn a_window_before_any_snapshot_starts_at_the_first_and_absence_is_noted() {
        let snapshots = vec![
            Snapshot::absent(at(0), "not installed".into()),
            snapshot(60, "r0", true, vec![statement("a", 7, 70.0)]),
        ];
        let w = window(&snapshots, at(-600));
        assert_eq!(w.since, Some(at(0)));
        assert_eq!(
            w.statements[0].calls, 7,
            "installed since: all of it is growth"
        );
        let w = window(&snapshots[..1], at(-600));
        assert_eq!(w.note.as_deref(), Some("not installed"));
        assert!(w.statements.is_empty());
    }

    #[test]
    fn snapshots_round_trip_through_day_files_and_old_days_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = snapshot(-60 * 24 * 40, "r0", true, vec![statement("a", 1, 1.0)]);
        write(dir.path(), &old).unwrap();
        let one = snapshot(0, "r0", true, vec![statement("a", 1, 1.0)]);
        let two = snapshot(60 * 24, "r0", true, vec![statement("a", 2, 2.0)]);
        write(dir.path(), &one).unwrap();
        write(dir.path(), &two).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(read(dir.path(), at(0), at(60 * 24)), vec![one, two]);
    }

    #[test]
    fn the_view_is_read_under_the_names_of_its_version() {
        assert!(query("public", "1.10").contains("s.total_exec_time"));
        assert!(query("public", "1.10").contains("pg_stat_statements_info"));
        assert!(query("\"My Schema\"", "1.7").contains("s.total_time"));
        assert!(!query("public", "1.7").contains("toplevel"));
    }
}
