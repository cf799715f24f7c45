//! `postgres`: one connection kept open across ticks (opened again after an error), one round
//! trip per tick, counters turned into rates between ticks. A server that cannot be reached or
//! refuses the probe reads `up 0` with PostgreSQL's own message and SQLSTATE.

mod activity;
pub mod names;
mod slow;
mod sql;
pub mod statements;
mod tables;
pub mod tls;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, SimpleQueryMessage, SimpleQueryRow};

use super::rate::growth;
use super::{Names, Output};
use crate::config::probes::postgres::{PostgresSpec, TYPE, TlsMode};
use crate::vocab::MetricName;

/// The open connection and the query made for its server.
struct Connected {
    client: Client,
    tick_query: String,
}

/// One database's counters at one tick, or how much they grew between two.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    commits: u64,
    rollbacks: u64,
    deadlocks: u64,
    temp_bytes: u64,
    blocks_hit: u64,
    blocks_read: u64,
}

/// How much each counter grew between two ticks: the same counters, as differences.
type Growth = Counters;

impl Counters {
    fn between(prev: &Counters, now: &Counters) -> Option<Growth> {
        Some(Growth {
            commits: growth(prev.commits, now.commits)?,
            rollbacks: growth(prev.rollbacks, now.rollbacks)?,
            deadlocks: growth(prev.deadlocks, now.deadlocks)?,
            temp_bytes: growth(prev.temp_bytes, now.temp_bytes)?,
            blocks_hit: growth(prev.blocks_hit, now.blocks_hit)?,
            blocks_read: growth(prev.blocks_read, now.blocks_read)?,
        })
    }

    fn add(&mut self, other: &Growth) {
        self.commits += other.commits;
        self.rollbacks += other.rollbacks;
        self.deadlocks += other.deadlocks;
        self.temp_bytes += other.temp_bytes;
        self.blocks_hit += other.blocks_hit;
        self.blocks_read += other.blocks_read;
    }

    /// `commits_per_sec` ... `cache_hit_percent`, in the order of the type's throughput fields.
    fn values(&self, secs: f64) -> [(&'static str, Option<f64>); 6] {
        let blocks = self.blocks_hit + self.blocks_read;
        [
            ("commits_per_sec", Some(self.commits as f64 / secs)),
            ("rollbacks_per_sec", Some(self.rollbacks as f64 / secs)),
            ("deadlocks", Some(self.deadlocks as f64)),
            ("deadlocks_per_sec", Some(self.deadlocks as f64 / secs)),
            ("temp_bytes_per_sec", Some(self.temp_bytes as f64 / secs)),
            (
                "cache_hit_percent",
                (blocks > 0).then(|| self.blocks_hit as f64 * 100.0 / blocks as f64),
            ),
        ]
    }
}

pub struct PostgresProbe {
    spec: PostgresSpec,
    instance: String,
    names: Names,
    /// `postgres.<name>.<part>.<field>` names, made once per database or standby (its name
    /// and its place among standbys of that name) and field.
    part_names: HashMap<(String, usize, &'static str), MetricName>,
    connected: Option<Connected>,
    /// Each database's counters at the previous successful tick, and when they were read.
    previous: Option<(Instant, HashMap<String, Counters>)>,
    /// On a standby: when a tick last saw the primary's last message, and its age then, so a
    /// silence goes on counting while the WAL receiver is gone and shows no receipt time.
    last_receipt: Option<(Instant, f64)>,
    /// On a standby: the last tick that found everything the primary had sent replayed.
    caught_up: Option<Instant>,
    /// Checkpoint, WAL and archiver counters between ticks, and the probe's own transactions.
    activity: activity::Activity,
    /// `postgres.<instance>.lock_head_blocker`, the note's name, made once.
    head_blocker: MetricName,
    slow: slow::SlowViews,
}

impl PostgresProbe {
    pub fn new(spec: PostgresSpec, instance: &str) -> Self {
        PostgresProbe {
            instance: instance.to_string(),
            names: Names::new("postgres"),
            part_names: HashMap::new(),
            connected: None,
            previous: None,
            last_receipt: None,
            caught_up: None,
            activity: activity::Activity::default(),
            head_blocker: MetricName::from(format!("postgres.{instance}.lock_head_blocker")),
            slow: slow::SlowViews::new(&spec, instance),
            spec,
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<Connected, String> {
        let mut config = self.spec.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        let client = self.open(config).await?;
        let rows = rows(
            client
                .simple_query(&sql::on_connect(timeout.as_millis()))
                .await
                .map_err(|e| describe(&e))?,
        );
        let first = rows.first().ok_or("the server answered no row")?;
        let version_num = number(first, "version_num").unwrap_or(0.0) as u32;
        Ok(Connected {
            client,
            tick_query: format!("{};\n{}", sql::tick(version_num), tables::PROGRESS),
        })
    }

    /// Opens a session as libpq would for the `sslmode`: never TLS over a Unix socket (libpq
    /// ignores `sslmode` there; the server offers none); `allow` tries plaintext, then TLS
    /// when the server answered with an error (a `hostssl` rule); `prefer` tries TLS, then
    /// plaintext when the server took TLS but the session failed (a `hostnossl` rule).
    async fn open(&self, config: Config) -> Result<Client, String> {
        let hosts = config.get_hosts();
        let unix_only = !hosts.is_empty()
            && config.get_hostaddrs().is_empty()
            && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        let mode = if unix_only {
            TlsMode::Disable
        } else {
            self.spec.tls
        };
        let tls = || tls::MakeRustls::new(mode, self.spec.ca_file.as_deref());
        match mode {
            TlsMode::Disable => plain(config).await.map_err(|e| describe(&e)),
            TlsMode::Allow => match plain(config.clone()).await {
                Err(first) if first.as_db_error().is_some() => {
                    encrypted(config, SslMode::Require, tls()?)
                        .await
                        .map_err(|e| {
                            format!("{}; then with TLS: {}", describe(&first), describe(&e))
                        })
                }
                other => other.map_err(|e| describe(&e)),
            },
            TlsMode::Prefer => {
                let make = tls()?;
                match encrypted(config.clone(), SslMode::Prefer, make.clone()).await {
                    Err(first) if make.handshake_started() => plain(config).await.map_err(|e| {
                        format!("{}; then without TLS: {}", describe(&first), describe(&e))
                    }),
                    other => other.map_err(|e| describe(&e)),
                }
            }
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
                encrypted(config, SslMode::Require, tls()?)
                    .await
                    .map_err(|e| describe(&e))
            }
        }
    }

    pub async fn collect(&mut self, out: &mut Output, timeout: Duration) -> Result<(), String> {
        let names = self.names.get(&self.instance, TYPE.fields);
        let up = &names[0];
        let key = format!("postgres.{}", self.instance);
        let deadline = Instant::now() + timeout;
        let work = async {
            let mut fresh = self.connected.is_none();
            if fresh {
                self.connected = Some(self.connect(timeout).await?);
                self.activity.own.commits += 1;
            }
            loop {
                let connected = self.connected.as_ref().ok_or("not connected")?;
                let messages = connected.client.simple_query(&connected.tick_query).await;
                let at = Instant::now();
                match messages {
                    Ok(messages) => return Ok((rows(messages), at)),
                    // A server-side error (a statement timeout, a missing grant) leaves the
                    // connection usable.
                    Err(e) if e.as_db_error().is_some() && !connected.client.is_closed() => {
                        // The tick's implicit transaction was rolled back.
                        self.activity.own.rollbacks += 1;
                        return Err(describe(&e));
                    }
                    // A connection kept from an earlier tick that died (a restart the server
                    // is already back from) is opened again once within this tick, so a
                    // short restart costs no tick of `up 0`.
                    Err(_) if !fresh => {
                        self.connected = None;
                        self.connected = Some(self.connect(timeout).await?);
                        self.activity.own.commits += 1;
                        fresh = true;
                    }
                    Err(e) => {
                        self.connected = None;
                        return Err(describe(&e));
                    }
                }
            }
        };
        let result = tokio::time::timeout(timeout, work).await;
        let (rows, at) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(message)) => {
                out.push(up, 0.0);
                out.error(key, format!("{}: {message}", self.spec.target));
                return Ok(());
            }
            Err(_) => {
                // Mid-query the connection's state is unknown: start afresh next tick.
                self.connected = None;
                out.push(up, 0.0);
                out.error(
                    key,
                    format!(
                        "{}: no answer within {} ms",
                        self.spec.target,
                        timeout.as_millis()
                    ),
                );
                return Ok(());
            }
        };
        out.push(up, 1.0);
        self.record(out, &names, &rows, at);
        self.slow.progress(out, &rows);
        if let Some(connected) = &self.connected {
            let budget = deadline.saturating_duration_since(Instant::now());
            if let slow::Read::Abandoned = self.slow.tick(&connected.client, out, budget).await {
                self.connected = None;
            }
            self.activity.own.add(std::mem::take(&mut self.slow.own));
        }
        Ok(())
    }

    fn record(
        &mut self,
        out: &mut Output,
        names: &[MetricName],
        rows: &[SimpleQueryRow],
        at: Instant,
    ) {
        let field = |name: &str| {
            TYPE.fields
                .iter()
                .position(|f| f.name == name)
                .map(|i| &names[i])
        };
        let mut push = |out: &mut Output, name: &str, value: Option<f64>| {
            if let (Some(metric), Some(value)) = (field(name), value) {
                out.push(metric, value);
            }
        };
        let activity::Reading {
            fields: written,
            sessions,
            head_blocker,
        } = self.activity.read(rows, at);
        for (field, value) in written {
            push(out, field, Some(value));
        }
        for (name, field, n) in &sessions {
            let part = self.part_name(name, 1, field);
            out.push(&part, *n);
        }
        if let Some(blocker) = head_blocker {
            out.note(&self.head_blocker, blocker.describe());
        }
        let mut states: HashMap<&str, f64> = HashMap::new();
        let mut waits: HashMap<&str, f64> = HashMap::new();
        let mut databases: HashMap<String, Counters> = HashMap::new();
        // (application_name, its place among standbys of that name, lag in s, lag in bytes)
        let mut standbys: Vec<(String, usize, Option<f64>, Option<f64>)> = Vec::new();
        for row in rows {
            match row.get("section") {
                Some("server") => {
                    let max = number(row, "max_connections");
                    let reserved = number(row, "reserved");
                    let connections = number(row, "connections");
                    push(out, "version_num", number(row, "version_num"));
                    push(out, "is_replica", number(row, "is_replica"));
                    push(out, "connections", connections);
                    push(out, "connections_max", max);
                    push(out, "connections_reserved", reserved);
                    if let (Some(max), Some(reserved), Some(connections)) =
                        (max, reserved, connections)
                        && max > reserved
                    {
                        push(
                            out,
                            "connections_used_percent",
                            Some(connections * 100.0 / (max - reserved)),
                        );
                    }
                    push(
                        out,
                        "oldest_transaction_s",
                        number(row, "oldest_transaction_s"),
                    );
                    push(
                        out,
                        "longest_statement_s",
                        number(row, "longest_statement_s"),
                    );
                    let xid = number(row, "xid_age_max");
                    let mxid = number(row, "mxid_age_max");
                    push(out, "xid_age_max", xid);
                    push(out, "mxid_age_max", mxid);
                    push(
                        out,
                        "wraparound_percent",
                        larger(xid, mxid).map(|age| age * 100.0 / WRAPAROUND_AGE),
                    );
                }
                Some("wait") => {
                    if let (Some(kind), Some(n)) =
                        (row.get("wait_event_type"), number(row, "sessions"))
                    {
                        let kind = match kind {
                            "Lock" | "LWLock" | "IO" | "Client" | "IPC" => kind,
                            _ => "other",
                        };
                        *waits.entry(kind).or_default() += n;
                    }
                }
                Some("held") => {
                    for field in [
                        "prepared_transactions",
                        "oldest_prepared_s",
                        "slots_inactive",
                        "slot_retained_bytes_max",
                        "slot_xmin_age_max",
                    ] {
                        push(out, field, number(row, field));
                    }
                }
                Some("state") => {
                    if let (Some(state), Some(n)) = (row.get("state"), number(row, "sessions")) {
                        states.insert(state, n);
                    }
                }
                Some("locks") => {
                    push(out, "lock_waiting", number(row, "waiting"));
                    push(out, "lock_blocked", number(row, "blocked"));
                    push(out, "lock_blockers", number(row, "blockers"));
                    push(out, "lock_wait_max_ms", number(row, "wait_max_ms"));
                }
                Some("database") => {
                    let Some(name) = row.get("datname") else {
                        continue;
                    };
                    let count = |column| whole(row, column).unwrap_or(0);
                    databases.insert(
                        name.to_string(),
                        Counters {
                            commits: count("xact_commit"),
                            rollbacks: count("xact_rollback"),
                            deadlocks: count("deadlocks"),
                            temp_bytes: count("temp_bytes"),
                            blocks_hit: count("blks_hit"),
                            blocks_read: count("blks_read"),
                        },
                    );
                    // Sessions per database come from the activity rows (the probe's own left
                    // out); a database nobody is connected to reads 0.
                    if !sessions
                        .iter()
                        .any(|(n, f, _)| n == name && *f == "connections")
                    {
                        let part = self.part_name(name, 1, "connections");
                        out.push(&part, 0.0);
                    }
                    for (column, field) in [("xid_age", "xid_age"), ("mxid_age", "mxid_age")] {
                        if let Some(n) = number(row, column) {
                            let part = self.part_name(name, 1, field);
                            out.push(&part, n);
                        }
                    }
                }
                Some("standby") => {
                    let name = row.get("application_name").unwrap_or_default().to_string();
                    let nth = 1 + standbys.iter().filter(|s| s.0 == name).count();
                    standbys.push((name, nth, number(row, "lag_s"), number(row, "lag_bytes")));
                }
                Some("replay") => {
                    let standby = self.standby_lag(row, at);
                    push(
                        out,
                        "receiving",
                        Some(f64::from(u8::from(standby.receiving))),
                    );
                    push(out, "receive_age_s", standby.silent_s);
                    push(out, "replication_lag_s", standby.lag_s);
                    push(out, "replication_lag_bytes", standby.lag_bytes);
                }
                _ => {}
            }
        }
        // Every state is reported, 0 when no session is in it, so a rule sees the drop to 0.
        for (state, field) in [
            ("active", "connections_active"),
            ("idle", "connections_idle"),
            ("idle in transaction", "connections_idle_in_transaction"),
            (
                "idle in transaction (aborted)",
                "connections_idle_in_transaction_aborted",
            ),
        ] {
            push(out, field, Some(states.get(state).copied().unwrap_or(0.0)));
        }
        for (kind, field) in [
            ("Lock", "waiting_lock"),
            ("LWLock", "waiting_lwlock"),
            ("IO", "waiting_io"),
            ("Client", "waiting_client"),
            ("IPC", "waiting_ipc"),
            ("other", "waiting_other"),
        ] {
            push(out, field, Some(waits.get(kind).copied().unwrap_or(0.0)));
        }
        if !rows.iter().any(|r| r.get("section") == Some("replay")) {
            push(out, "replicas", Some(standbys.len() as f64));
            let expected = self.spec.expected_replicas;
            push(out, "replicas_expected", expected.map(f64::from));
            // A standby that should stream and does not is of unknown lag, not none: its lag
            // absent keeps an active `replica_lag` from resolving when the standby is lost.
            let complete = standbys.len() >= expected.unwrap_or(0) as usize;
            let worst = |values: &mut dyn Iterator<Item = Option<f64>>| {
                values
                    .flatten()
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            };
            let lag_s = worst(&mut standbys.iter().map(|s| s.2));
            let lag_bytes = worst(&mut standbys.iter().map(|s| s.3));
            if complete {
                push(
                    out,
                    "replication_lag_s",
                    lag_s.or(Some(0.0).filter(|_| standbys.is_empty())),
                );
                push(
                    out,
                    "replication_lag_bytes",
                    lag_bytes.or(Some(0.0).filter(|_| standbys.is_empty())),
                );
            }
            for (standby, nth, lag_s, lag_bytes) in &standbys {
                for (field, value) in [
                    ("replication_lag_s", lag_s),
                    ("replication_lag_bytes", lag_bytes),
                ] {
                    if let Some(value) = value {
                        let name = self.part_name(standby, *nth, field);
                        out.push(&name, *value);
                    }
                }
            }
        }
        self.rates(out, &mut push, databases, at);
    }

    /// A standby's reading of itself. Its lag in seconds is not the age of the last replayed
    /// commit alone (after an idle spell that is old while nothing is waiting): 0 when all the
    /// primary had sent is replayed; else the smaller of that age and the time since a tick
    /// last found it caught up; and while the WAL receiver does not stream, at least the
    /// silence since the primary last spoke. Bytes are unknown while it receives nothing.
    fn standby_lag(&mut self, row: &SimpleQueryRow, at: Instant) -> StandbyReading {
        let receiving = number(row, "receiving") == Some(1.0);
        let since = |then: Instant| at.saturating_duration_since(then).as_secs_f64();
        // A receiver that is (re)starting shows its start as the last receipt: only a
        // streaming one says when the primary last spoke.
        let receipt_age = number(row, "receive_age_s");
        let silent_s = match (receiving, receipt_age) {
            (true, Some(age)) => {
                self.last_receipt = Some((at, age));
                Some(age)
            }
            _ => self
                .last_receipt
                .map(|(then, age)| age + since(then))
                .or(receipt_age),
        };
        let lag_bytes = number(row, "lag_bytes");
        let behind_s = if lag_bytes == Some(0.0) {
            if receiving {
                self.caught_up = Some(at);
            }
            Some(0.0)
        } else {
            smaller(number(row, "replay_age_s"), self.caught_up.map(since))
        };
        if receiving {
            StandbyReading {
                receiving,
                silent_s,
                lag_s: behind_s,
                lag_bytes,
            }
        } else {
            StandbyReading {
                receiving,
                silent_s,
                lag_s: larger(behind_s, silent_s),
                lag_bytes: None,
            }
        }
    }

    /// Rates since the previous tick, per database and for the server (the sum of the databases
    /// whose counters did not go back: a reset or a new database does not spike the total).
    fn rates(
        &mut self,
        out: &mut Output,
        push: &mut impl FnMut(&mut Output, &str, Option<f64>),
        databases: HashMap<String, Counters>,
        at: Instant,
    ) {
        if let Some((then, previous)) = self.previous.take() {
            let secs = at.saturating_duration_since(then).as_secs_f64();
            if secs > 0.0 {
                let mut total = Growth::default();
                let own = std::mem::take(&mut self.activity.own);
                for (name, now) in &databases {
                    let Some(mut grew) = previous.get(name).and_then(|p| Growth::between(p, now))
                    else {
                        continue;
                    };
                    // The probe's own transactions are not the workload's.
                    if self.activity.database.as_deref() == Some(name.as_str()) {
                        grew.commits = grew.commits.saturating_sub(own.commits);
                        grew.rollbacks = grew.rollbacks.saturating_sub(own.rollbacks);
                    }
                    total.add(&grew);
                    for (field, value) in grew.values(secs) {
                        if let Some(value) = value {
                            let metric = self.part_name(name, 1, field);
                            out.push(&metric, value);
                        }
                    }
                }
                for (field, value) in total.values(secs) {
                    push(out, field, value);
                }
            }
        }
        // This tick's own transaction is in the next tick's reading.
        self.activity.own = activity::Own {
            commits: 1,
            rollbacks: 0,
        };
        self.previous = Some((at, databases));
    }

    /// `postgres.<name>.<part>.<field>`, the part made from a database's or standby's name by
    /// `names` (the `nth` standby of a shared name numbered apart).
    fn part_name(&mut self, name: &str, nth: usize, field: &'static str) -> MetricName {
        self.part_names
            .entry((name.to_string(), nth, field))
            .or_insert_with(|| {
                MetricName::from(format!(
                    "postgres.{}.{}.{field}",
                    self.instance,
                    names::numbered_part(name, nth)
                ))
            })
            .clone()
    }
}

/// The age of the oldest unfrozen transaction ID (or multixact) at which PostgreSQL would
/// wrap around: 2^31. It refuses new IDs a little before it.
const WRAPAROUND_AGE: f64 = 2_147_483_648.0;

/// What a standby says of itself at one tick.
struct StandbyReading {
    receiving: bool,
    silent_s: Option<f64>,
    lag_s: Option<f64>,
    lag_bytes: Option<f64>,
}

fn smaller(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn larger(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A session without TLS; its connection is driven on the runtime until the client drops.
async fn plain(mut config: Config) -> Result<Client, tokio_postgres::Error> {
    config.ssl_mode(SslMode::Disable);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A session over TLS (`Require`), or over whatever the server offers (`Prefer`).
async fn encrypted(
    mut config: Config,
    ssl_mode: SslMode,
    tls: tls::MakeRustls,
) -> Result<Client, tokio_postgres::Error> {
    config.ssl_mode(ssl_mode);
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

fn number(row: &SimpleQueryRow, column: &str) -> Option<f64> {
    row.try_get(column).ok().flatten()?.parse().ok()
}

fn whole(row: &SimpleQueryRow, column: &str) -> Option<u64> {
    row.try_get(column).ok().flatten()?.parse().ok()
}

/// PostgreSQL's own words and SQLSTATE for a server error; the cause for a connection error.
/// Neither holds the password: tokio-postgres never puts it in an error.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        return message;
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    message
}

impl super::Wait for PostgresProbe {
    fn wait<'a>(&'a mut self, out: &'a mut Output, timeout: Duration) -> super::Waiting<'a> {
        Box::pin(self.collect(out, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_gives_rates_and_a_hit_ratio_only_when_blocks_were_read() {
        let before = Counters {
            commits: 100,
            deadlocks: 1,
            blocks_hit: 90,
            blocks_read: 10,
            ..Counters::default()
        };
        let after = Counters {
            commits: 160,
            deadlocks: 3,
            blocks_hit: 180,
            blocks_read: 20,
            ..Counters::default()
        };
        let grew = Growth::between(&before, &after).unwrap();
        let values: HashMap<_, _> = grew.values(2.0).into_iter().collect();
        assert_eq!(values["commits_per_sec"], Some(30.0));
        assert_eq!(values["deadlocks"], Some(2.0));
        assert_eq!(values["deadlocks_per_sec"], Some(1.0));
        assert_eq!(values["cache_hit_percent"], Some(90.0));
        let idle = Growth::between(&after, &after).unwrap();
        assert_eq!(idle.values(1.0)[5], ("cache_hit_percent", None));
        assert!(
            Growth::between(&after, &before).is_none(),
            "a reset is no rate"
        );
    }
}
