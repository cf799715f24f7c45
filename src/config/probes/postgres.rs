//! `postgres`: a PostgreSQL server as its clients meet it: connections by state and against the
//! limit, lock waits and who blocks, long transactions and statements, throughput, deadlocks,
//! cache hits, and replication lag.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

/// The rates and ratios a database and the whole server both report.
const THROUGHPUT: [Field; 6] = [
    Field {
        name: "commits_per_sec",
        help: "transactions committed per second",
    },
    Field {
        name: "rollbacks_per_sec",
        help: "transactions rolled back per second",
    },
    Field {
        name: "deadlocks",
        help: "deadlocks detected since the previous tick",
    },
    Field {
        name: "deadlocks_per_sec",
        help: "deadlocks detected per second",
    },
    Field {
        name: "temp_bytes_per_sec",
        help: "bytes written to temporary files per second (sorts and hashes that did not fit work_mem)",
    },
    Field {
        name: "cache_hit_percent",
        help: "share of block reads served from shared buffers since the previous tick (absent when nothing was read)",
    },
];

pub const TYPE: ProbeType = ProbeType {
    name: "postgres",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "up",
            help: "1 if the probe connected and its queries ran, else 0",
        },
        Field {
            name: "version_num",
            help: "the server's version as `server_version_num` gives it (150018 for 15.18)",
        },
        Field {
            name: "is_replica",
            help: "1 on a standby (in recovery), 0 on a primary",
        },
        Field {
            name: "connections",
            help: "client connections, the probe's own included",
        },
        Field {
            name: "connections_active",
            help: "client sessions running a statement (the probe excluded)",
        },
        Field {
            name: "connections_idle",
            help: "client sessions waiting for a command",
        },
        Field {
            name: "connections_idle_in_transaction",
            help: "sessions inside a transaction doing nothing: they hold locks and snapshots",
        },
        Field {
            name: "connections_idle_in_transaction_aborted",
            help: "sessions in a failed transaction nobody rolled back",
        },
        Field {
            name: "connections_max",
            help: "`max_connections`",
        },
        Field {
            name: "connections_reserved",
            help: "connections only superusers (and `pg_use_reserved_connections`) may use",
        },
        Field {
            name: "connections_used_percent",
            help: "client connections against those ordinary roles may use (max minus reserved)",
        },
        Field {
            name: "waiting_lock",
            help: "client sessions waiting on a heavyweight lock (`wait_event_type` Lock; the probe excluded)",
        },
        Field {
            name: "waiting_lwlock",
            help: "client sessions waiting on a lightweight lock (LWLock: shared memory contention)",
        },
        Field {
            name: "waiting_io",
            help: "client sessions waiting on disk reads or writes (IO)",
        },
        Field {
            name: "waiting_client",
            help: "client sessions waiting on their client (Client: idle sessions, slow readers)",
        },
        Field {
            name: "waiting_ipc",
            help: "client sessions waiting on another process (IPC: parallel workers, sync replication)",
        },
        Field {
            name: "waiting_other",
            help: "client sessions waiting on anything else (timeouts, extensions, buffer pins)",
        },
        Field {
            name: "lock_waiting",
            help: "sessions waiting on a heavyweight lock",
        },
        Field {
            name: "lock_wait_max_ms",
            help: "the longest current lock wait (0 when none waits)",
        },
        Field {
            name: "lock_blocked",
            help: "sessions another session blocks (`pg_blocking_pids`)",
        },
        Field {
            name: "lock_blockers",
            help: "sessions at the head of a wait chain: blocking others while waiting on no lock",
        },
        Field {
            name: "oldest_transaction_s",
            help: "age of the oldest open transaction of a client session (0 when none)",
        },
        Field {
            name: "longest_statement_s",
            help: "run time of the longest running statement of a client session (0 when none)",
        },
        Field {
            name: "prepared_transactions",
            help: "transactions prepared for two-phase commit and not yet committed or rolled back",
        },
        Field {
            name: "oldest_prepared_s",
            help: "age of the oldest of them (0 when none): it holds its locks and vacuum's horizon like an open transaction",
        },
        Field {
            name: "slots_inactive",
            help: "replication slots no client is using",
        },
        Field {
            name: "slot_retained_bytes_max",
            help: "WAL the inactive slot furthest behind keeps from being removed (0 when none)",
        },
        Field {
            name: "slot_xmin_age_max",
            help: "age of the oldest `xmin` or `catalog_xmin` a slot holds from vacuum (0 when none)",
        },
        Field {
            name: "xid_age_max",
            help: "the oldest unfrozen transaction ID's age of any database, templates included (`age(datfrozenxid)`)",
        },
        Field {
            name: "mxid_age_max",
            help: "the oldest unfrozen multixact ID's age of any database (`mxid_age(datminmxid)`)",
        },
        Field {
            name: "wraparound_percent",
            help: "the larger of the two against 2^31, where IDs wrap around (PostgreSQL stops taking writes just before)",
        },
        Field {
            name: "checkpoints_timed",
            help: "checkpoints started by `checkpoint_timeout` since the previous tick (skipped ones on an idle server included)",
        },
        Field {
            name: "checkpoints_requested",
            help: "checkpoints requested since the previous tick: `max_wal_size` reached, a `CHECKPOINT`, a base backup (many mean `max_wal_size` is too small)",
        },
        Field {
            name: "checkpoints_timed_per_sec",
            help: "timed checkpoints per second",
        },
        Field {
            name: "checkpoints_requested_per_sec",
            help: "requested checkpoints per second",
        },
        Field {
            name: "buffers_checkpointer_per_sec",
            help: "shared buffers (`block_size`, 8 KiB by default) the checkpointer wrote per second",
        },
        Field {
            name: "buffers_bgwriter_per_sec",
            help: "shared buffers the background writer wrote per second",
        },
        Field {
            name: "buffers_backend_per_sec",
            help: "shared buffers sessions had to write themselves per second (no clean buffer was free; 17 on: `pg_stat_io`)",
        },
        Field {
            name: "wal_bytes_per_sec",
            help: "WAL written per second, in bytes (`pg_stat_wal`, PostgreSQL 14 on; absent before)",
        },
        Field {
            name: "archive_failures",
            help: "WAL segments `archive_command` failed to archive since the previous tick (each retry counts)",
        },
        Field {
            name: "archive_failures_per_sec",
            help: "failed archiving attempts per second",
        },
        Field {
            name: "archive_failing",
            help: "1 when the archiver's latest attempt failed (no success since the last failure), else 0",
        },
        Field {
            name: "archive_failure_age_s",
            help: "seconds since archiving last failed (absent if it never did)",
        },
        THROUGHPUT[0],
        THROUGHPUT[1],
        THROUGHPUT[2],
        THROUGHPUT[3],
        THROUGHPUT[4],
        THROUGHPUT[5],
        Field {
            name: "replicas",
            help: "standbys streaming from this primary (`pg_basebackup` sessions left out)",
        },
        Field {
            name: "replicas_expected",
            help: "the probe's `expected_replicas` (absent when it has none)",
        },
        Field {
            name: "replication_lag_s",
            help: "on a standby, how stale its data is; on a primary, the largest replay lag of its standbys (absent while fewer than `expected_replicas` stream)",
        },
        Field {
            name: "replication_lag_bytes",
            help: "WAL the primary had when it last spoke that the standby has not replayed (standby, absent while it receives nothing), or not yet replayed by the furthest standby (primary)",
        },
        Field {
            name: "receiving",
            help: "on a standby, 1 while its WAL receiver streams from the primary, else 0",
        },
        Field {
            name: "receive_age_s",
            help: "on a standby, seconds since the last message from the primary",
        },
        Field {
            name: "tables_read",
            help: "tables whose vacuum state this tick read (the `tables_top` with the most dead tuples); present on slow-views ticks only",
        },
        Field {
            name: "vacuums_running",
            help: "VACUUMs running now, autovacuum's included, in any database (`pg_stat_progress_vacuum`)",
        },
        Field {
            name: "statements_installed",
            help: "1 when `pg_stat_statements` is installed in the probe's database and answers, else 0 (read on slow-views ticks)",
        },
    ],
    open_fields: false,
    nested_fields: &[
        Field {
            name: "connections",
            help: "client sessions connected to this database, the probe's own left out (0 when none)",
        },
        Field {
            name: "user_connections",
            help: "client sessions of this user (role), the probe's own left out (absent when none)",
        },
        Field {
            name: "application_connections",
            help: "client sessions of this `application_name` (`-` for none set), the probe's own left out (absent when none)",
        },
        Field {
            name: "xid_age",
            help: "this database's oldest unfrozen transaction ID's age (`age(datfrozenxid)`)",
        },
        Field {
            name: "mxid_age",
            help: "this database's oldest unfrozen multixact ID's age (`mxid_age(datminmxid)`)",
        },
        THROUGHPUT[0],
        THROUGHPUT[1],
        THROUGHPUT[2],
        THROUGHPUT[3],
        THROUGHPUT[4],
        THROUGHPUT[5],
        Field {
            name: "replication_lag_s",
            help: "this standby's replay lag (`pg_stat_replication`, by `application_name`)",
        },
        Field {
            name: "replication_lag_bytes",
            help: "WAL this standby has not replayed yet",
        },
        Field {
            name: "live_tuples",
            help: "a table's live rows as the statistics estimate them (`n_live_tup`; slow-views ticks)",
        },
        Field {
            name: "dead_tuples",
            help: "a table's dead rows not yet vacuumed away (`n_dead_tup`; slow-views ticks)",
        },
        Field {
            name: "dead_percent",
            help: "dead rows of all the table's rows, live and dead (absent when it has none)",
        },
        Field {
            name: "last_vacuum_age_s",
            help: "seconds since a manual VACUUM of the table last ended (absent if never)",
        },
        Field {
            name: "last_autovacuum_age_s",
            help: "seconds since autovacuum last vacuumed the table (absent if never)",
        },
        Field {
            name: "last_analyze_age_s",
            help: "seconds since a manual ANALYZE of the table last ended (absent if never)",
        },
        Field {
            name: "last_autoanalyze_age_s",
            help: "seconds since autovacuum last analyzed the table (absent if never)",
        },
        Field {
            name: "vacuum_phase",
            help: "a running VACUUM's phase, in PostgreSQL's order: 0 initializing, 1 scanning heap, 2 vacuuming indexes, 3 vacuuming heap, 4 cleaning up indexes, 5 truncating heap, 6 performing final cleanup",
        },
        Field {
            name: "vacuum_scanned_percent",
            help: "a running VACUUM's heap blocks scanned of the table's (`heap_blks_scanned` / `heap_blks_total`)",
        },
    ],
    default_timeout: Duration::from_millis(5_000),
};

named_probe_config! {
    /// A PostgreSQL server, through one connection kept open across ticks.
    pub struct PostgresProbeConfig {
        /// A libpq connection string: a URL (`postgres://runner@db1:5432/shop?sslmode=require`)
        /// or `key=value` pairs (`host=db1 user=runner dbname=shop`). A password only through
        /// `${VAR}`: the whole string (`"${PG_DSN}"`) or the `password` setting.
        pub dsn: Text,
        /// The role's password, from the environment (`"${PG_PASSWORD}"`).
        #[serde(default)]
        pub password: Option<Text>,
        /// CA certificates (PEM) that sign the server's certificate; the same as `sslrootcert`.
        #[serde(default)]
        pub ca_file: Option<Text>,
        /// Standbys that should stream from this primary: with fewer, its replication lag is
        /// unknown (absent) rather than 0, and `replicas_missing` fires.
        #[serde(default)]
        pub expected_replicas: Option<u32>,
        /// The slower-moving views (tables' vacuum state, `pg_stat_statements`) are read on the
        /// first tick and then every this many ticks, as a second query after the tick's own.
        #[serde(default)]
        pub slow_views_every_ticks: Option<NonZeroU32>,
        /// Tables reported, those with the most dead tuples first.
        #[serde(default)]
        pub tables_top: Option<NonZeroU32>,
        /// Statements the report's "Slowest queries" lists, by total and by mean time.
        #[serde(default)]
        pub statements_top: Option<NonZeroU32>,
        /// How often the `pg_stat_statements` counters are written down for the report, at
        /// most (on a slow-views tick at least this long after the last one written).
        #[serde(default)]
        pub statements_snapshot_every_s: Option<serde_saphyr::Spanned<u64>>,
    }
}

/// Ticks between two readings of the slower-moving views: a minute at `@every 10s`.
pub const DEFAULT_SLOW_VIEWS_EVERY_TICKS: u32 = 6;
pub const DEFAULT_TABLES_TOP: u32 = 10;
pub const DEFAULT_STATEMENTS_TOP: u32 = 10;
/// One snapshot an hour: a week's report reads 169 of them.
pub const DEFAULT_STATEMENTS_SNAPSHOT_EVERY_S: u64 = 3600;
pub const MAX_STATEMENTS_SNAPSHOT_EVERY_S: u64 = 86_400;

/// How the connection is protected, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// Plaintext first; TLS, its certificate not checked, when the server refuses plaintext.
    Allow,
    /// TLS when the server offers it, its certificate not checked, and plaintext when the
    /// server refuses the encrypted session (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked against the CA when one is given.
    Require,
    /// TLS, and the certificate must chain to the CA.
    VerifyCa,
    /// TLS, chained to the CA and naming the host.
    VerifyFull,
}

#[derive(Debug, Clone)]
pub struct PostgresSpec {
    /// Without `sslmode` and `sslrootcert`, which runner handles itself (the probe sets
    /// tokio-postgres' own `ssl_mode` for each attempt). Its `Debug` hides the password.
    pub config: tokio_postgres::Config,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    /// `host:port/dbname`, for messages: never the user's password.
    pub target: String,
    pub expected_replicas: Option<u32>,
    pub slow_views_every_ticks: u32,
    pub tables_top: u32,
    pub statements_top: u32,
    pub statements_snapshot_every: Duration,
    /// The folder the `pg_stat_statements` snapshots go to, set from `data_dir` once the job
    /// is known (`None` where nothing is kept: a dry run, a probe built by hand).
    pub statements_dir: Option<PathBuf>,
}

impl Settings for PostgresSpec {}

/// Where a probe's `pg_stat_statements` snapshots go: `<data_dir>/statements/<job>/<probe>`.
pub fn statements_dir(data_dir: &std::path::Path, job: &str, probe: &str) -> PathBuf {
    data_dir.join("statements").join(job).join(probe)
}

/// Options runner takes out of a connection string before tokio-postgres reads it: it knows
/// only three `sslmode`s and no `sslrootcert`.
const TLS_OPTIONS: &[&str] = &["sslmode", "sslrootcert"];

impl Check for PostgresProbeConfig {
    type Spec = PostgresSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _at: Location) -> Option<PostgresSpec> {
        let dsn_field = format!("{field}.dsn");
        let dsn = b.string(&self.dsn, &dsn_field)?;
        let (rest, taken) = match take_options(&dsn, TLS_OPTIONS) {
            Ok(split) => split,
            Err(e) => {
                b.error(&self.dsn.referenced, &dsn_field, e);
                return None;
            }
        };
        let mut config: tokio_postgres::Config = match rest.parse() {
            Ok(config) => config,
            Err(e) => {
                // tokio-postgres says what is wrong (`unknown option`) in the error's source.
                let reason = std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), |cause| cause.to_string());
                b.error_help(
                    &self.dsn.referenced,
                    &dsn_field,
                    format!("not a PostgreSQL connection string: {reason}"),
                    "write a URL (`postgres://runner@db1:5432/shop?sslmode=require`) or key=value pairs (`host=db1 user=runner dbname=shop`)",
                );
                return None;
            }
        };
        if let Some(password) = config.get_password()
            && !password.is_empty()
            && written_in(&self.dsn.value, password)
        {
            for written in written_forms(password) {
                b.conceal(&written);
            }
            b.error_help(
                &self.dsn.referenced,
                &dsn_field,
                "a password is written in the jobs file",
                "give it through the environment: `dsn: \"${PG_DSN}\"` or `password: \"${PG_PASSWORD}\"`",
            );
        }
        if let Some(text) = &self.password {
            let password_field = format!("{field}.password");
            if let Some(expanded) = b.expand(text, &password_field) {
                if expanded.vars.is_empty() {
                    b.conceal(&expanded.value);
                    b.error_help(
                        &text.referenced,
                        &password_field,
                        "a password is written in the jobs file",
                        "give it through the environment: `password: \"${PG_PASSWORD}\"`",
                    );
                }
                // `${PG_PASSWORD:-}` left empty: no password (trust or peer authentication).
                if !expanded.value.is_empty() {
                    config.password(expanded.value);
                }
            }
        }
        let mut tls = TlsMode::Prefer;
        let mut ca_file = None;
        for (key, value) in taken {
            match key.as_str() {
                "sslmode" => match tls_mode(&value) {
                    Some(mode) => tls = mode,
                    None => b.error_help(
                        &self.dsn.referenced,
                        &dsn_field,
                        format!("unknown sslmode `{value}`"),
                        "use disable, allow, prefer, require, verify-ca or verify-full",
                    ),
                },
                _ => ca_file = Some(b.resolve(&value)),
            }
        }
        if let Some(text) = &self.ca_file {
            ca_file = b.path(text, &format!("{field}.ca_file"));
        }
        if let Some(path) = &ca_file
            && let Err(e) = std::fs::metadata(path)
        {
            b.error(
                self.ca_file
                    .as_ref()
                    .map_or(&self.dsn.referenced, |t| &t.referenced),
                &format!("{field}.ca_file"),
                format!("cannot read the CA file `{}`: {e}", path.display()),
            );
        }
        if matches!(tls, TlsMode::VerifyCa | TlsMode::VerifyFull) && ca_file.is_none() {
            b.error_help(
                &self.dsn.referenced,
                &dsn_field,
                "sslmode verify-ca and verify-full need the CA that signed the server's certificate",
                "add `ca_file: /etc/ssl/certs/db-ca.pem` to the probe (or `sslrootcert=` to the string)",
            );
        }
        // `Require` with a CA checks the chain, as libpq does.
        if tls == TlsMode::Require && ca_file.is_some() {
            tls = TlsMode::VerifyCa;
        }
        if config.get_application_name().is_none() {
            config.application_name("runner");
        }
        // The report looks for the snapshot before its window's start from the day before on.
        if let Some(every) = &self.statements_snapshot_every_s
            && every.value > MAX_STATEMENTS_SNAPSHOT_EVERY_S
        {
            b.error_help(
                &every.referenced,
                &format!("{field}.statements_snapshot_every_s"),
                "`statements_snapshot_every_s` must be at most 86400 (a day)",
                "a report finds the snapshot its window starts from only if one was written the day before",
            );
        }
        Some(PostgresSpec {
            target: target(&config),
            config,
            tls,
            ca_file,
            expected_replicas: self.expected_replicas,
            slow_views_every_ticks: self
                .slow_views_every_ticks
                .map_or(DEFAULT_SLOW_VIEWS_EVERY_TICKS, NonZeroU32::get),
            tables_top: self.tables_top.map_or(DEFAULT_TABLES_TOP, NonZeroU32::get),
            statements_top: self
                .statements_top
                .map_or(DEFAULT_STATEMENTS_TOP, NonZeroU32::get),
            statements_snapshot_every: Duration::from_secs(
                self.statements_snapshot_every_s
                    .map_or(DEFAULT_STATEMENTS_SNAPSHOT_EVERY_S, |s| s.value),
            ),
            statements_dir: None,
        })
    }
}

fn tls_mode(value: &str) -> Option<TlsMode> {
    Some(match value {
        "disable" => TlsMode::Disable,
        "allow" => TlsMode::Allow,
        "prefer" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        _ => return None,
    })
}

/// Whether the password appears as written in the jobs file (rather than from `${VAR}`), as is
/// or percent-encoded in a URL.
fn written_in(raw: &str, password: &[u8]) -> bool {
    std::str::from_utf8(password).is_err()
        || written_forms(password)
            .iter()
            .any(|form| raw.contains(form.as_str()))
}

/// How a password may be spelled in a connection string: as is, or percent-encoded in a URL.
fn written_forms(password: &[u8]) -> Vec<String> {
    let mut forms = vec![String::from_utf8_lossy(password).into_owned()];
    let encoded: String = form_urlencoded::byte_serialize(password).collect();
    if encoded != forms[0] {
        forms.push(encoded);
    }
    forms
}

/// `host:port/dbname` of the first host, for messages.
pub fn target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("{host}:{port}/{db}")
}

/// Removes `keys` from a connection string in either form and returns them with their values.
pub fn take_options(dsn: &str, keys: &[&str]) -> Result<(String, Vec<(String, String)>), String> {
    let mut taken = Vec::new();
    let trimmed = dsn.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return Ok((trimmed.to_string(), taken));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if keys.contains(&key) {
                let value: String = form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                taken.push((key.to_string(), value));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, taken));
    }
    // key=value pairs: values are bare words or single-quoted with backslash escapes.
    let mut rest = String::new();
    let mut chars = trimmed.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no `=value` in the connection string"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut written = String::new();
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            written.push('\'');
            loop {
                match chars.next() {
                    Some('\\') => {
                        let escaped = chars.next().ok_or("a `\\` ends the connection string")?;
                        written.push('\\');
                        written.push(escaped);
                        value.push(escaped);
                    }
                    Some('\'') => {
                        written.push('\'');
                        break;
                    }
                    Some(c) => {
                        written.push(c);
                        value.push(c);
                    }
                    None => return Err(format!("the quoted value of `{key}` is not closed")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                written.push(c);
                value.push(c);
            }
        }
        if keys.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(&key);
            rest.push('=');
            rest.push_str(&written);
        }
    }
    Ok((rest, taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_come_out_of_both_forms_and_the_rest_stays_as_written() {
        let (rest, taken) = take_options(
            "postgres://runner@db1:5433/shop?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Fetc%2Fca.pem",
            TLS_OPTIONS,
        )
        .unwrap();
        assert_eq!(rest, "postgres://runner@db1:5433/shop?connect_timeout=3");
        assert_eq!(
            taken,
            [
                ("sslmode".to_string(), "verify-full".to_string()),
                ("sslrootcert".to_string(), "/etc/ca.pem".to_string())
            ]
        );
        let (rest, taken) = take_options(
            "host=db1  sslmode = require application_name='my app\\'s' sslrootcert='/a b/ca.pem'",
            TLS_OPTIONS,
        )
        .unwrap();
        assert_eq!(rest, "host=db1 application_name='my app\\'s'");
        assert_eq!(taken[0], ("sslmode".to_string(), "require".to_string()));
        assert_eq!(taken[1].1, "/a b/ca.pem");
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_application_name(), Some("my app's"));
        assert!(take_options("host=db1 port", TLS_OPTIONS).is_err());
        assert!(take_options("host='db1", TLS_OPTIONS).is_err());
    }

    #[test]
    fn a_snapshot_interval_over_a_day_is_shown_at_its_own_line() {
        // Pointed at the probe's `- type:` line before, three lines above the value.
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - type: postgres\n        name: main\n        dsn: \"host=db1 user=runner\"\n        statements_snapshot_every_s: 90000\n";
        let refused =
            crate::config::build::parse(std::path::Path::new("jobs.yaml"), yaml, &|_| None)
                .map(|_| ())
                .map_err(|p| p.render())
                .unwrap_err();
        assert!(refused.contains("jobs.yaml:10:38"), "{refused}");
    }

    #[test]
    fn a_count_of_zero_is_refused_in_words_at_its_value() {
        // serde's own words were `invalid value: integer `0`, expected a nonzero u32`.
        for setting in ["slow_views_every_ticks", "tables_top", "statements_top"] {
            let yaml = format!(
                "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - type: postgres\n        name: main\n        dsn: \"host=db1 user=runner\"\n        {setting}: 0\n"
            );
            let refused =
                crate::config::build::parse(std::path::Path::new("jobs.yaml"), &yaml, &|_| None)
                    .map(|_| ())
                    .map_err(|p| p.render())
                    .unwrap_err();
            assert!(
                refused.contains("expected a whole number of one or more, found `0`"),
                "{refused}"
            );
            assert!(
                refused.contains(&format!("jobs.yaml:10:{}", 11 + setting.len())),
                "{refused}"
            );
            assert!(
                refused.contains(&format!("jobs.m.probes[0].{setting}")),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_password_counts_as_written_in_the_file_as_is_or_encoded() {
        assert!(written_in("postgres://u:s3cret@h/db", b"s3cret"));
        assert!(written_in("postgres://u:a%2Fb@h/db", b"a/b"));
        assert!(!written_in("${PG_DSN}", b"s3cret"));
        assert!(!written_in("postgres://u:${PG_PASSWORD}@h/db", b"s3cret"));
    }
}
