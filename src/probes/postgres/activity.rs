//! What the `postgres` probe reads each tick beside sessions and locks: checkpoints and the
//! buffers each writer wrote, WAL written, the archiver's failures, client sessions by
//! database, user and application, the session at the head of the lock queue, and the probe's
//! own transactions, which it leaves out of the commit and rollback rates.
//!
//! All of it is in the tick's one query string (`sql`), so it costs no extra round trip.

use std::collections::HashMap;
use std::time::Instant;

use tokio_postgres::SimpleQueryRow;

use super::{number, whole};
use crate::probes::rate::growth;

/// The statements this module adds to the tick's query, for a server of this version.
///
/// PostgreSQL 17 moved the checkpoint counters to `pg_stat_checkpointer` and the backends'
/// writes to `pg_stat_io`; `pg_stat_wal` exists from 14 (before it WAL is left out). From 15
/// the tick asks for its own statistics to be published as soon as it ends
/// (`pg_stat_force_next_flush`), so the next tick finds the probe's own transaction counted
/// and can take exactly it out.
pub fn sql(version_num: u32) -> String {
    let (checkpoints, from) = if version_num >= 170_000 {
        (
            "c.num_timed AS checkpoints_timed, c.num_requested AS checkpoints_requested,
  c.buffers_written AS buffers_checkpointer, b.buffers_clean AS buffers_bgwriter,
  (SELECT coalesce(sum(writes), 0) FROM pg_stat_io
     WHERE object = 'relation'
       AND backend_type NOT IN ('checkpointer', 'background writer')) AS buffers_backend",
            "pg_stat_checkpointer c, pg_stat_bgwriter b, pg_stat_archiver a",
        )
    } else {
        (
            "b.checkpoints_timed, b.checkpoints_req AS checkpoints_requested,
  b.buffers_checkpoint AS buffers_checkpointer, b.buffers_clean AS buffers_bgwriter,
  b.buffers_backend",
            "pg_stat_bgwriter b, pg_stat_archiver a",
        )
    };
    let wal = if version_num >= 140_000 {
        "(SELECT wal_bytes FROM pg_stat_wal)"
    } else {
        "NULL"
    };
    let flush = if version_num >= 150_000 {
        ";\nSELECT 'flush' AS section, pg_stat_force_next_flush()"
    } else {
        ""
    };
    format!(
        "\
SELECT 'writes' AS section, current_database() AS own_database,
  {checkpoints},
  {wal} AS wal_bytes,
  a.failed_count AS archive_failed,
  CASE WHEN a.last_failed_time IS NOT NULL
    THEN extract(epoch FROM greatest(now() - a.last_failed_time, '0'::interval))
  END AS archive_failure_age_s,
  (a.last_failed_time IS NOT NULL
     AND a.last_failed_time >= coalesce(a.last_archived_time, '-infinity'))::int AS archive_failing
FROM {from};
{SESSIONS};
{HEAD_BLOCKER}{flush}"
    )
}

/// Client sessions other than the probe's, counted by database, by user and by application
/// (one grouping set each).
const SESSIONS: &str = "\
SELECT 'sessions' AS section,
  CASE GROUPING(datname, usename, application_name)
    WHEN 3 THEN 'database' WHEN 5 THEN 'user' ELSE 'application' END AS kind,
  CASE GROUPING(datname, usename, application_name)
    WHEN 3 THEN datname::text WHEN 5 THEN usename::text ELSE application_name END AS name,
  count(*) AS sessions
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY GROUPING SETS ((datname), (usename), (application_name))";

/// The session at the head of the longest lock queue: among those blocking others while
/// waiting on no lock themselves, the one most sessions wait on directly, then the oldest
/// transaction. Its query (at most `track_activity_query_size` bytes) is cut by the probe once
/// it is on one line.
const HEAD_BLOCKER: &str = "\
WITH waiting AS (
  SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity
  WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()),
heads AS (
  SELECT b AS pid, count(*) AS blocked FROM waiting, unnest(blocked_by) AS b
  WHERE b NOT IN (SELECT pid FROM waiting) GROUP BY b)
SELECT 'blocker' AS section, a.pid, h.blocked, coalesce(a.usename::text, '') AS usename,
  coalesce(a.application_name, '') AS application_name, coalesce(a.state, '') AS state,
  extract(epoch FROM greatest(now() - coalesce(a.xact_start, a.query_start, a.backend_start),
    '0'::interval)) AS age_s,
  coalesce(a.query, '') AS query
FROM heads h JOIN pg_stat_activity a ON a.pid = h.pid
ORDER BY h.blocked DESC, age_s DESC, a.pid
LIMIT 1";

/// Users and applications reported each, those with the most sessions first: an application
/// that names itself per process (`worker-4711`) would otherwise add metrics without end.
pub const MAX_NAMED: usize = 50;

/// How many characters of the head blocker's query the note shows.
pub const QUERY_CHARS: usize = 200;

/// The server-wide counters of one tick.
#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    checkpoints_timed: u64,
    checkpoints_requested: u64,
    buffers_checkpointer: u64,
    buffers_bgwriter: u64,
    buffers_backend: u64,
    wal_bytes: Option<u64>,
    archive_failed: u64,
}

/// Transactions the probe ran in its own database since the statistics the previous tick read:
/// they are not the workload's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Own {
    pub commits: u64,
    pub rollbacks: u64,
}

impl Own {
    /// Counts a query string's implicit transaction by its answer: committed, or rolled back by
    /// a server error. A broken connection's is not known.
    pub fn count<T>(&mut self, answer: &Result<T, tokio_postgres::Error>) {
        match answer {
            Ok(_) => self.commits += 1,
            Err(e) if e.as_db_error().is_some() => self.rollbacks += 1,
            Err(_) => {}
        }
    }

    pub fn add(&mut self, other: Own) {
        self.commits += other.commits;
        self.rollbacks += other.rollbacks;
    }
}

/// Ends a query string of the probe's own: from PostgreSQL 15 its statistics are published as
/// its transaction ends (they wait up to 10 s otherwise), so the next tick's reading holds it
/// and the commit rate leaves out exactly the probe's own. PL/pgSQL resolves the function only
/// when run: it does not exist before 15.
pub const PUBLISH_OWN: &str = "DO $$BEGIN IF current_setting('server_version_num')::int >= 150000 \
THEN PERFORM pg_stat_force_next_flush(); END IF; END$$";

/// What this module keeps between ticks.
#[derive(Debug, Default)]
pub struct Activity {
    previous: Option<(Instant, Writes)>,
    /// The database the probe is connected to, as the server names it.
    pub database: Option<String>,
    /// The probe's own transactions the next reading of `pg_stat_database` will include.
    pub own: Own,
}

/// One reading of a session at the head of a lock queue.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadBlocker {
    pub pid: i64,
    pub blocked: u64,
    pub user: String,
    pub application: String,
    pub state: String,
    pub age_s: f64,
    pub query: String,
}

impl HeadBlocker {
    fn from_row(row: &SimpleQueryRow) -> Option<HeadBlocker> {
        let text = |column| row.try_get(column).ok().flatten().unwrap_or_default();
        Some(HeadBlocker {
            pid: row.try_get("pid").ok().flatten()?.parse().ok()?,
            blocked: whole(row, "blocked").unwrap_or(0),
            user: text("usename").to_string(),
            application: text("application_name").to_string(),
            state: text("state").to_string(),
            age_s: number(row, "age_s").unwrap_or(0.0),
            query: text("query").to_string(),
        })
    }

    /// One line for an alert: `pid 4242 (user shop, application billing, idle in
    /// transaction, transaction open 73 s, blocking 4), query "UPDATE stock SET …"`. Names and the
    /// query are the server's users' data: control characters and line breaks become spaces,
    /// and the query is cut to `QUERY_CHARS` characters, so the line never breaks a notice.
    pub fn describe(&self) -> String {
        let application = if self.application.is_empty() {
            "none".to_string()
        } else {
            one_line(&self.application, QUERY_CHARS)
        };
        let state = if self.state.is_empty() {
            "state unknown".to_string()
        } else {
            one_line(&self.state, QUERY_CHARS)
        };
        format!(
            "pid {} (user {}, application {}, {}, transaction open {} s, blocking {}), query \"{}\"",
            self.pid,
            one_line(&self.user, QUERY_CHARS),
            application,
            state,
            self.age_s.floor(),
            self.blocked,
            one_line(&conceal_passwords(&self.query), QUERY_CHARS),
        )
    }
}

/// A statement that mentions a password (`ALTER ROLE shop PASSWORD '...'`, a connection string
/// with `password=`) shown up to that word: a notice goes to chat rooms and tickets.
fn conceal_passwords(query: &str) -> String {
    let lower = query.to_ascii_lowercase();
    match lower.find("password") {
        Some(at) => format!("{} ****", &query[..at + "password".len()]),
        None => query.to_string(),
    }
}

/// `text` on one line and at most `chars` characters: each run of whitespace or control
/// characters is one space, and the cut falls between characters.
pub fn one_line(text: &str, chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(chars * 4));
    let mut count = 0;
    let mut gap = false;
    for c in text.trim().chars() {
        if c.is_whitespace() || c.is_control() {
            gap = true;
            continue;
        }
        let needed = 1 + usize::from(gap);
        if count + needed > chars {
            break;
        }
        if gap {
            out.push(' ');
            gap = false;
        }
        out.push(c);
        count += needed;
    }
    out
}

/// Keeps the `most` users and the `most` applications with the most sessions (then by name, so
/// the choice is stable); every database stays.
fn keep_busiest(sessions: &mut Vec<(String, &'static str, f64)>, most: usize) {
    sessions.sort_by(|a, b| {
        a.1.cmp(b.1)
            .then(b.2.total_cmp(&a.2))
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut kept: HashMap<&'static str, usize> = HashMap::new();
    sessions.retain(|(_, field, _)| {
        let n = kept.entry(field).or_default();
        *n += 1;
        *field == "connections" || *n <= most
    });
}

/// What a tick's rows say, for the probe to record.
#[derive(Debug, Default)]
pub struct Reading {
    /// `(field, value)` of the server's own fields.
    pub fields: Vec<(&'static str, f64)>,
    /// `(name, nested field, sessions)`: a database's, user's or application's sessions.
    pub sessions: Vec<(String, &'static str, f64)>,
    pub head_blocker: Option<HeadBlocker>,
}

impl Activity {
    /// Reads this module's rows of a tick at `at`. Counters become growth since the previous
    /// tick (none on the first tick or after a reset) and rates over the time between.
    pub fn read(&mut self, rows: &[SimpleQueryRow], at: Instant) -> Reading {
        let mut reading = Reading::default();
        for row in rows {
            match row.get("section") {
                Some("writes") => {
                    if let Some(name) = row.get("own_database") {
                        self.database = Some(name.to_string());
                    }
                    let count = |column| whole(row, column).unwrap_or(0);
                    let now = Writes {
                        checkpoints_timed: count("checkpoints_timed"),
                        checkpoints_requested: count("checkpoints_requested"),
                        buffers_checkpointer: count("buffers_checkpointer"),
                        buffers_bgwriter: count("buffers_bgwriter"),
                        buffers_backend: count("buffers_backend"),
                        wal_bytes: whole(row, "wal_bytes"),
                        archive_failed: count("archive_failed"),
                    };
                    self.rates(&mut reading.fields, now, at);
                    reading.fields.push((
                        "archive_failing",
                        number(row, "archive_failing").unwrap_or(0.0),
                    ));
                    if let Some(age) = number(row, "archive_failure_age_s") {
                        reading.fields.push(("archive_failure_age_s", age));
                    }
                }
                Some("sessions") => {
                    let field = match row.get("kind") {
                        Some("database") => "connections",
                        Some("user") => "user_connections",
                        Some("application") => "application_connections",
                        _ => continue,
                    };
                    if let Some(n) = number(row, "sessions") {
                        let name = row.get("name").unwrap_or_default().to_string();
                        reading.sessions.push((name, field, n));
                    }
                }
                Some("blocker") => reading.head_blocker = HeadBlocker::from_row(row),
                _ => {}
            }
        }
        keep_busiest(&mut reading.sessions, MAX_NAMED);
        reading
    }

    fn rates(&mut self, fields: &mut Vec<(&'static str, f64)>, now: Writes, at: Instant) {
        if let Some((then, before)) = self.previous.replace((at, now)) {
            let secs = at.saturating_duration_since(then).as_secs_f64();
            if secs <= 0.0 {
                return;
            }
            let mut counted = |field, per_sec, prev, now| {
                if let Some(grew) = growth(prev, now) {
                    if let Some(field) = field {
                        fields.push((field, grew as f64));
                    }
                    fields.push((per_sec, grew as f64 / secs));
                }
            };
            counted(
                Some("checkpoints_timed"),
                "checkpoints_timed_per_sec",
                before.checkpoints_timed,
                now.checkpoints_timed,
            );
            counted(
                Some("checkpoints_requested"),
                "checkpoints_requested_per_sec",
                before.checkpoints_requested,
                now.checkpoints_requested,
            );
            counted(
                None,
                "buffers_checkpointer_per_sec",
                before.buffers_checkpointer,
                now.buffers_checkpointer,
            );
            counted(
                None,
                "buffers_bgwriter_per_sec",
                before.buffers_bgwriter,
                now.buffers_bgwriter,
            );
            counted(
                None,
                "buffers_backend_per_sec",
                before.buffers_backend,
                now.buffers_backend,
            );
            counted(
                Some("archive_failures"),
                "archive_failures_per_sec",
                before.archive_failed,
                now.archive_failed,
            );
            if let (Some(prev), Some(wal)) = (before.wal_bytes, now.wal_bytes) {
                counted(None, "wal_bytes_per_sec", prev, wal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_put_on_one_line_and_cut_between_characters() {
        assert_eq!(
            one_line("  UPDATE t\n\tSET a = 1\r\n", 200),
            "UPDATE t SET a = 1"
        );
        assert_eq!(one_line("a\u{7}b", 200), "a b");
        let long = "é".repeat(300);
        let cut = one_line(&long, QUERY_CHARS);
        assert_eq!(cut.chars().count(), QUERY_CHARS);
        assert_eq!(cut.len(), QUERY_CHARS * 2);
        assert_eq!(one_line("ab cd", 3), "ab");
        assert_eq!(one_line("ab cd", 4), "ab c");
    }

    #[test]
    fn a_password_in_the_query_is_not_shown() {
        assert_eq!(
            conceal_passwords("ALTER ROLE shop ENCRYPTED PASSWORD 's3cret'"),
            "ALTER ROLE shop ENCRYPTED PASSWORD ****"
        );
        assert_eq!(
            conceal_passwords("SELECT dblink_connect('host=a Password=s3cret')"),
            "SELECT dblink_connect('host=a Password ****"
        );
        assert_eq!(conceal_passwords("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn only_the_busiest_users_and_applications_are_kept_and_every_database() {
        let mut sessions = vec![
            ("b".to_string(), "application_connections", 1.0),
            ("a".to_string(), "application_connections", 1.0),
            ("busy".to_string(), "application_connections", 9.0),
            ("u".to_string(), "user_connections", 2.0),
            ("d1".to_string(), "connections", 1.0),
            ("d2".to_string(), "connections", 1.0),
            ("d3".to_string(), "connections", 1.0),
        ];
        keep_busiest(&mut sessions, 2);
        let names: Vec<&str> = sessions.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["busy", "a", "d1", "d2", "d3", "u"]);
    }

    #[test]
    fn a_head_blocker_reads_as_one_line_whatever_its_query_holds() {
        let blocker = HeadBlocker {
            pid: 4242,
            blocked: 4,
            user: "shop".into(),
            application: "billing\n\"quoted\"".into(),
            state: "idle in transaction".into(),
            age_s: 73.6,
            query: format!("UPDATE stock\n SET qty = 0 -- {}", "x".repeat(400)),
        };
        let line = blocker.describe();
        assert!(
            line.starts_with(
                "pid 4242 (user shop, application billing \"quoted\", idle in transaction, transaction open 73 s, blocking 4), query \"UPDATE stock SET qty = 0 -- xxx"
            ),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let query = line.split_once(", query \"").unwrap().1;
        assert_eq!(
            query.strip_suffix('"').unwrap().chars().count(),
            QUERY_CHARS
        );
    }
}
