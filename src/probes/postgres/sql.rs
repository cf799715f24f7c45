//! What the `postgres` probe asks the server each tick: one simple-protocol query string of a few
//! statements, so a tick costs one round trip. Each statement's first column names its section.
//!
//! Sessions are client backends other than the probe's own; ages are against the transaction's
//! `now()`, clamped at 0 (a session may start after the probe's transaction did).

/// Sent once per connection: the probe's own limits, then the version the tick's query is
/// made for. The role (primary or standby) is asked every tick: a standby promoted under a
/// kept connection reads as a primary at once. Its transaction is published as it ends, so
/// the first tick's reading holds it (see `activity::PUBLISH_OWN`).
pub fn on_connect(statement_timeout_ms: u128) -> String {
    format!(
        "SET statement_timeout = {statement_timeout_ms}; SET lock_timeout = {statement_timeout_ms}; \
         {}; SELECT current_setting('server_version_num') AS version_num",
        super::activity::PUBLISH_OWN
    )
}

const SERVER: &str = "\
SELECT 'server' AS section,
  current_setting('server_version_num') AS version_num,
  pg_is_in_recovery()::int AS is_replica,
  current_setting('max_connections') AS max_connections,
  current_setting('superuser_reserved_connections')::int
    + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
  (SELECT coalesce(extract(epoch FROM greatest(max(now() - xact_start), '0'::interval)), 0)
     FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) AS oldest_transaction_s,
  (SELECT coalesce(extract(epoch FROM greatest(max(now() - query_start), '0'::interval)), 0)
     FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND state = 'active'
       AND pid <> pg_backend_pid()) AS longest_statement_s,
  (SELECT max(age(datfrozenxid)) FROM pg_database) AS xid_age_max,
  (SELECT max(mxid_age(datminmxid)) FROM pg_database) AS mxid_age_max";

const STATES: &str = "\
SELECT 'state' AS section, coalesce(state, '') AS state, count(*) AS sessions
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY 2";

/// Client sessions (the probe's own left out) by what they wait on: `Lock`, `LWLock`, `IO`,
/// `Client` (an idle session waits for its client), `IPC`, and the rest.
const WAITS: &str = "\
SELECT 'wait' AS section, wait_event_type, count(*) AS sessions
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND wait_event_type IS NOT NULL
GROUP BY 2";

/// Lock waits. Blockers counted are the heads of wait chains: with one session holding a row
/// and two waiting, the second waiter also waits behind the first (its tuple lock), yet the
/// session to look at is the one holding the row.
fn locks(version_num: u32) -> String {
    // `pg_locks.waitstart` exists from 14; before it, a waiting statement's age stands in.
    let wait_max = if version_num >= 140_000 {
        "SELECT coalesce(extract(epoch FROM greatest(max(now() - waitstart), '0'::interval)) * 1000, 0)
     FROM pg_locks WHERE NOT granted"
    } else {
        "SELECT coalesce(extract(epoch FROM greatest(max(now() - query_start), '0'::interval)) * 1000, 0)
     FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    };
    format!(
        "\
WITH waiting AS (
  SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity
  WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid())
SELECT 'locks' AS section,
  (SELECT count(*) FROM waiting) AS waiting,
  (SELECT count(*) FROM waiting WHERE cardinality(blocked_by) > 0) AS blocked,
  (SELECT count(DISTINCT b) FROM waiting, unnest(blocked_by) AS b
     WHERE b NOT IN (SELECT pid FROM waiting)) AS blockers,
  ({wait_max}) AS wait_max_ms"
    )
}

/// What holds the oldest transaction back besides sessions: prepared transactions nobody
/// committed, and replication slots (an inactive one keeps every WAL segment since its
/// `restart_lsn`; any keeps its `xmin` from vacuum). On a standby WAL is counted from what it
/// received.
const HELD: &str = "\
SELECT 'held' AS section,
  (SELECT count(*) FROM pg_prepared_xacts) AS prepared_transactions,
  (SELECT coalesce(extract(epoch FROM greatest(max(now() - prepared), '0'::interval)), 0)
     FROM pg_prepared_xacts) AS oldest_prepared_s,
  (SELECT count(*) FROM pg_replication_slots WHERE NOT active) AS slots_inactive,
  (SELECT coalesce(max(pg_wal_lsn_diff(
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
       restart_lsn)), 0)
     FROM pg_replication_slots WHERE NOT active) AS slot_retained_bytes_max,
  (SELECT coalesce(max(greatest(age(xmin), age(catalog_xmin))), 0)
     FROM pg_replication_slots) AS slot_xmin_age_max";

const DATABASES: &str = "\
SELECT 'database' AS section, d.datname, d.numbackends, d.xact_commit, d.xact_rollback,
  d.deadlocks, d.temp_bytes, d.blks_hit, d.blks_read,
  age(p.datfrozenxid) AS xid_age, mxid_age(p.datminmxid) AS mxid_age
FROM pg_stat_database d JOIN pg_database p ON p.oid = d.datid
WHERE p.datallowconn AND NOT p.datistemplate";

/// A primary's standbys; lag columns are null once a standby has caught up and nothing new
/// came, which is no lag. Oldest connection first: standbys sharing an `application_name` are
/// numbered in this order.
const STANDBYS: &str = "\
SELECT 'standby' AS section, application_name,
  pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes,
  CASE WHEN replay_lsn = pg_current_wal_lsn() THEN 0
       ELSE extract(epoch FROM replay_lag) END AS lag_s
FROM pg_stat_replication
WHERE state <> 'backup' AND NOT pg_is_in_recovery()
ORDER BY backend_start, pid";

/// A standby: whether its WAL receiver streams and when the primary last spoke, the WAL the
/// primary had then (`latest_end_lsn`) that is not replayed yet, and the age of the last
/// replayed commit. No receiver row (it is restarting) is not streaming.
const REPLAY: &str = "\
SELECT 'replay' AS section,
  coalesce(r.status = 'streaming', false)::int AS receiving,
  extract(epoch FROM greatest(now() - r.last_msg_receipt_time, '0'::interval)) AS receive_age_s,
  greatest(pg_wal_lsn_diff(
    greatest(r.latest_end_lsn, pg_last_wal_receive_lsn()), pg_last_wal_replay_lsn()), 0)
    AS lag_bytes,
  extract(epoch FROM greatest(now() - pg_last_xact_replay_timestamp(), '0'::interval))
    AS replay_age_s
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true
WHERE pg_is_in_recovery()";

/// The tick's query for a server of this version: a primary answers the standbys' section,
/// a standby the replay section.
pub fn tick(version_num: u32) -> String {
    format!(
        "{SERVER};\n{STATES};\n{WAITS};\n{};\n{HELD};\n{DATABASES};\n{STANDBYS};\n{REPLAY};\n{}",
        locks(version_num),
        super::activity::sql(version_num)
    )
}
