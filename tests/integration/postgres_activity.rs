//! The `postgres` probe's per-tick activity against a real PostgreSQL started by the test:
//! checkpoints run, WAL written, archiving failing, sessions of known users and applications,
//! a lock queue whose head the lock alert names, and an idle server whose only transactions are
//! the probe's own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use runner::alerts::AlertStore;
use runner::alerts::event::EventKind;
use runner::alerts::lifecycle::Lifecycle;
use runner::config::{FlapPolicy, JobKind};
use runner::monitor::pipeline::Pipeline;
use runner::probes::{Output, ProbeSet, ProcRoot};
use runner::rules::RuleSet;
use runner::store::history::{History, HistoryConfig};

use crate::pg_server::{PROBE_PASSWORD, PgServer};

/// How long a test waits for PostgreSQL to publish what it did (it runs on a busy machine).
const PATIENCE: Duration = Duration::from_secs(60);

/// The probe on `dsn` and the shipped PostgreSQL rules, as a jobs file's monitor job has them.
fn monitor(dir: &Path, dsn: &str) -> (ProbeSet, Arc<RuleSet>, FlapPolicy) {
    let file = dir.join("jobs.yaml");
    let rules = crate::support::root().join("rules/db/postgres.rhai");
    let yaml = format!(
        "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - {{ type: postgres, name: main, dsn: \"{dsn}\", password: \"${{PG_PASSWORD}}\" }}\n    rules: [\"{}\"]\n",
        rules.display()
    );
    let env = |key: &str| (key == "PG_PASSWORD").then(|| PROBE_PASSWORD.to_string());
    let config = runner::config::build::parse(&file, &yaml, &env)
        .unwrap_or_else(|p| panic!("{}", p.render()));
    let JobKind::Monitor(monitor) = &config.job("m").unwrap().kind else {
        panic!("monitor")
    };
    (
        ProbeSet::build(&monitor.probes, &ProcRoot::default()),
        Arc::new(runner::monitor::load_rules("m", monitor)),
        monitor.flap,
    )
}

/// One tick's output, with when it started and ended (the probe reads its clock in between).
struct Tick {
    metrics: BTreeMap<String, f64>,
    errors: Vec<(String, String)>,
    notes: BTreeMap<String, String>,
    began: Instant,
    ended: Instant,
}

impl Tick {
    fn value(&self, field: &str) -> Option<f64> {
        self.metrics.get(&format!("postgres.main.{field}")).copied()
    }

    #[track_caller]
    fn get(&self, field: &str) -> f64 {
        self.value(field)
            .unwrap_or_else(|| panic!("no {field} in {:?} ({:?})", self.metrics, self.errors))
    }
}

async fn tick(set: &mut ProbeSet) -> (Tick, Output) {
    let began = Instant::now();
    let out = set.collect().await;
    let ended = Instant::now();
    let tick = Tick {
        metrics: out
            .metrics
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect(),
        errors: out.errors.clone(),
        notes: out
            .notes
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
        began,
        ended,
    };
    assert!(tick.errors.is_empty(), "{:?}", tick.errors);
    (tick, out)
}

/// Ticks until `done` holds for a tick, keeping them all; a tick every 100 ms.
async fn ticks_until(set: &mut ProbeSet, mut done: impl FnMut(&[Tick]) -> bool) -> Vec<Tick> {
    let started = Instant::now();
    let mut ticks = Vec::new();
    loop {
        ticks.push(tick(set).await.0);
        if done(&ticks) {
            return ticks;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never: {:?}",
            ticks.last().map(|t| &t.metrics)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sum(ticks: &[Tick], field: &str) -> f64 {
    ticks.iter().filter_map(|t| t.value(field)).sum()
}

async fn set_archive_command(admin: &tokio_postgres::Client, command: &str) {
    admin
        .batch_execute(&format!("ALTER SYSTEM SET archive_command = '{command}'"))
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

async fn failed(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one("SELECT failed_count FROM pg_stat_archiver", &[])
        .await
        .unwrap()
        .get(0)
}

/// A session over the server's Unix socket (trusted there) as `user`, naming itself `app`.
async fn session(server: &PgServer, user: &str, db: &str, app: &str) -> tokio_postgres::Client {
    let dsn = format!(
        "host={} port={} user={user} dbname={db} application_name='{app}'",
        server.socket_dir().display(),
        server.port
    );
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

struct Probed {
    server: PgServer,
    _dir: tempfile::TempDir,
    set: ProbeSet,
    rules: Arc<RuleSet>,
    flap: FlapPolicy,
}

async fn probed(settings: &[&str]) -> Probed {
    let server = PgServer::start(settings).await;
    let dir = tempfile::tempdir().unwrap();
    let (set, rules, flap) = monitor(dir.path(), &server.probe_dsn("shop"));
    Probed {
        server,
        _dir: dir,
        set,
        rules,
        flap,
    }
}

#[tokio::test]
async fn an_idle_server_reads_no_commits_the_probe_made_itself() {
    // Autovacuum's workers run transactions of their own: none here.
    let Probed {
        server: _server,
        mut set,
        ..
    } = probed(&["autovacuum=off"]).await;
    // Until the set-up's sessions are gone, only the probe is connected.
    ticks_until(&mut set, |t| t.last().unwrap().get("connections") == 1.0).await;
    // A session that left publishes its counts as it exits, just after it leaves the list.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tick(&mut set).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (t, _) = tick(&mut set).await;
        assert_eq!(t.get("commits_per_sec"), 0.0, "{:?}", t.metrics);
        assert_eq!(t.get("rollbacks_per_sec"), 0.0);
        assert_eq!(t.get("shop.commits_per_sec"), 0.0);
        assert_eq!(t.get("shop.connections"), 0.0, "the probe is not counted");
    }
}

#[tokio::test]
async fn requested_checkpoints_grow_by_exactly_the_checkpoints_run() {
    let Probed {
        server, mut set, ..
    } = probed(&[]).await;
    let admin = server.admin("shop").await;
    let first = tick(&mut set).await.0;
    admin
        .batch_execute(
            "CREATE TABLE filler (id int, pad text);
             INSERT INTO filler SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i;",
        )
        .await
        .unwrap();
    for _ in 0..3 {
        admin.batch_execute("CHECKPOINT").await.unwrap();
    }
    let mut ticks = vec![first];
    ticks.extend(ticks_until(&mut set, |t| sum(t, "checkpoints_requested") >= 3.0).await);
    // A few more ticks: nothing else requested one.
    for _ in 0..3 {
        ticks.push(tick(&mut set).await.0);
    }
    assert_eq!(sum(&ticks, "checkpoints_requested"), 3.0);
    assert_eq!(sum(&ticks, "checkpoints_timed"), 0.0);
    // The first checkpoint wrote the table's pages (20,000 rows of 200 bytes: over 500 pages).
    let written: f64 = ticks
        .iter()
        .skip(1)
        .zip(&ticks)
        .map(|(t, before)| {
            t.get("buffers_checkpointer_per_sec")
                * t.ended.duration_since(before.began).as_secs_f64()
        })
        .sum();
    assert!(
        written >= 500.0,
        "{written}: {:?}",
        ticks.iter().map(|t| &t.metrics).collect::<Vec<_>>()
    );
    for t in &ticks[1..] {
        assert!(t.get("buffers_bgwriter_per_sec") >= 0.0);
        assert!(t.get("buffers_backend_per_sec") >= 0.0);
    }
}

#[tokio::test]
async fn wal_written_reads_as_its_bytes_per_second() {
    const BYTES: f64 = 2_000_000.0;
    let Probed {
        server, mut set, ..
    } = probed(&["autovacuum=off"]).await;
    let admin = server.admin("shop").await;
    // The set-up's session (it created the database: megabytes of WAL) publishes its WAL as
    // it exits, just after it leaves the list: the readings start once it is gone.
    ticks_until(&mut set, |t| t.last().unwrap().get("connections") == 2.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ticks = vec![tick(&mut set).await.0];
    // A 2 MB WAL record; the session publishes its WAL statistics as the statement ends.
    admin
        .batch_execute(
            "SELECT pg_logical_emit_message(false, 'runner', repeat('x', 2000000));
             SELECT pg_stat_force_next_flush();",
        )
        .await
        .unwrap();
    // The probe's rate covers the time between its two readings: each lies within a tick,
    // so the time between is known within the ticks' own lengths.
    let bounds = |ticks: &[Tick]| -> (f64, f64) {
        let mut low = 0.0;
        let mut high = 0.0;
        for pair in ticks.windows(2) {
            let rate = pair[1].value("wal_bytes_per_sec").unwrap_or(0.0);
            low += rate * pair[1].began.duration_since(pair[0].ended).as_secs_f64();
            high += rate * pair[1].ended.duration_since(pair[0].began).as_secs_f64();
        }
        (low, high)
    };
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ticks.push(tick(&mut set).await.0);
        if bounds(&ticks).1 >= BYTES {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{:?}", bounds(&ticks));
    }
    let (low, high) = bounds(&ticks);
    // The record's own header and what the server writes meanwhile are a few KiB.
    assert!(low <= BYTES + 64.0 * 1024.0, "{low} to {high}");
    assert!(high >= BYTES);
}

#[tokio::test]
async fn failing_archiving_is_counted_and_reads_failing_until_a_segment_is_archived() {
    let Probed {
        server, mut set, ..
    } = probed(&["archive_mode=on"]).await;
    let admin = server.admin("shop").await;
    // Set in postgresql.auto.conf, not on the command line, which a reload could not change.
    set_archive_command(&admin, "false").await;
    let before = failed(&admin).await;
    let first = tick(&mut set).await.0;
    assert_eq!(first.get("archive_failing"), 0.0);
    assert_eq!(
        first.value("archive_failure_age_s"),
        None,
        "it never failed"
    );
    admin
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1); SELECT pg_switch_wal();")
        .await
        .unwrap();
    let mut ticks = ticks_until(&mut set, |t| {
        t.last().unwrap().get("archive_failing") == 1.0 && sum(t, "archive_failures") >= 2.0
    })
    .await;
    assert!(ticks.last().unwrap().get("archive_failure_age_s") >= 0.0);
    set_archive_command(&admin, "true").await;
    ticks.extend(
        ticks_until(&mut set, |t| {
            t.last().unwrap().get("archive_failing") == 0.0
        })
        .await,
    );
    // Archiving works again: the count stays where it is, and every failure was counted once.
    let after = failed(&admin).await;
    ticks.push(tick(&mut set).await.0);
    assert_eq!(sum(&ticks, "archive_failures"), (after - before) as f64);
    assert!(after - before >= 2);
}

#[tokio::test]
async fn sessions_are_counted_by_database_user_and_application_apart_from_the_probe() {
    let Probed {
        server, mut set, ..
    } = probed(&[]).await;
    let admin = server.admin("postgres").await;
    admin
        .batch_execute("CREATE ROLE clerk LOGIN")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE \"Shop-EU\"")
        .await
        .unwrap();
    drop(admin);
    let mut sessions = Vec::new();
    for _ in 0..2 {
        sessions.push(session(&server, "clerk", "shop", "till").await);
    }
    for _ in 0..3 {
        sessions.push(session(&server, "postgres", "Shop-EU", "Back Office").await);
    }
    // The set-up's own session goes away in its own time.
    let ticks = ticks_until(&mut set, |t| t.last().unwrap().get("connections") == 6.0).await;
    let t = ticks.last().unwrap();
    assert_eq!(t.get("shop.connections"), 2.0, "{:?}", t.metrics);
    assert_eq!(t.get("-shop--2d-e-u.connections"), 3.0);
    assert_eq!(t.get("postgres.connections"), 0.0);
    assert_eq!(t.get("clerk.user_connections"), 2.0);
    assert_eq!(t.get("postgres.user_connections"), 3.0);
    assert_eq!(t.get("till.application_connections"), 2.0);
    assert_eq!(t.get("-back--20-office.application_connections"), 3.0);
    // The probe (user runner, application runner) is in none of them.
    assert_eq!(t.value("runner.user_connections"), None);
    assert_eq!(t.value("runner.application_connections"), None);
    assert_eq!(
        runner::probes::postgres::names::original_name("-back--20-office"),
        "Back Office"
    );
    drop(sessions);
}

#[tokio::test]
async fn the_lock_alert_names_the_head_blocker_with_its_pid_user_application_and_query() {
    let Probed {
        server,
        mut set,
        rules,
        flap,
        ..
    } = probed(&[]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute(
            "CREATE TABLE stock (id int PRIMARY KEY, qty int); INSERT INTO stock VALUES (1, 10);
             CREATE ROLE clerk LOGIN; GRANT ALL ON stock TO clerk;",
        )
        .await
        .unwrap();
    let holder = session(&server, "clerk", "shop", "billing").await;
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // A query a person wrote: over two lines, with quotes, longer than the 200 characters a
    // notice shows.
    let statement = format!(
        "UPDATE stock SET qty = qty - 1 WHERE id = 1 /* \"till\" 7,\n checkout {} */",
        "é".repeat(300)
    );
    holder
        .batch_execute(&format!("BEGIN; {statement};"))
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..4 {
        let waiter = server.admin("shop").await;
        waiters.push(tokio::spawn(async move {
            waiter
                .execute("UPDATE stock SET qty = qty - 1 WHERE id = 1", &[])
                .await
        }));
    }
    let ticks = ticks_until(&mut set, |t| t.last().unwrap().get("lock_waiting") == 4.0).await;
    let note = &ticks.last().unwrap().notes["postgres.main.lock_head_blocker"];
    let shown: String = format!("BEGIN; {statement}")
        .replace(",\n ", ", ")
        .chars()
        .take(200)
        .collect();
    assert!(
        note.starts_with(&format!(
            "pid {pid} (user clerk, application billing, idle in transaction, transaction open "
        )),
        "{note}"
    );
    assert!(note.ends_with(&format!("), query \"{shown}\"")), "{note}");

    // The shipped rule, on a virtual clock a minute a tick, with what the probe reads now.
    let alerts = AlertStore::in_memory("db-1", "m", flap, Lifecycle::default());
    let mut pipeline = Pipeline::new(History::new(HistoryConfig::default(), None), rules, alerts);
    let start: DateTime<Utc> = "2026-11-23T09:00:00Z".parse().unwrap();
    let mut fired = Vec::new();
    for minute in 0..3 {
        let (_, out) = tick(&mut set).await;
        let stepped = pipeline.step_noted(
            start + chrono::Duration::minutes(minute),
            &out.metrics,
            &out.notes,
            |_| {},
        );
        fired.extend(
            stepped
                .events
                .into_iter()
                .filter(|e| e.name == "lock_contention" && e.kind == EventKind::Firing),
        );
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    let explanation = &fired[0].explanation;
    assert!(
        explanation.contains(&format!(
            "; head blocker pid {pid} (user clerk, application billing, idle in transaction, "
        )),
        "{explanation}"
    );
    assert!(
        explanation.contains(&format!("query \"{shown}\" for 2m")),
        "{explanation}"
    );
    assert!(!explanation.contains('\n'));

    holder.batch_execute("COMMIT").await.unwrap();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap(), 1);
    }
    let (after, _) = tick(&mut set).await;
    assert!(after.notes.is_empty(), "{:?}", after.notes);
}
