//! `cargo bench --bench postgres` (or `scripts/postgres-probe-cost.sh`): what one tick of the
//! `postgres` probe costs against a server with 200 client sessions (150 idle, 30 idle in a
//! transaction, 10 running, 9 queued behind a row lock held by one more): the tick's wall time
//! (one round trip), runner's CPU, and the CPU of the server process that answers the probe.
//! Needs PostgreSQL's `initdb` and `postgres`, as the tests do; the server is started and
//! removed here.

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

#[path = "../tests/integration/pg_server.rs"]
#[allow(dead_code)]
mod pg_server;

use std::time::{Duration, Instant};

use pg_server::{PROBE_PASSWORD, PgServer};
use runner::config::JobKind;
use runner::probes::{ProbeSet, ProcRoot};

const TICKS: usize = 300;

fn probe(dir: &std::path::Path, dsn: &str) -> ProbeSet {
    let file = dir.join("jobs.yaml");
    let yaml = format!(
        "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - {{ type: postgres, name: main, dsn: \"{dsn}\", password: \"${{PG_PASSWORD}}\" }}\n"
    );
    let env = |key: &str| (key == "PG_PASSWORD").then(|| PROBE_PASSWORD.to_string());
    let config = runner::config::build::parse(&file, &yaml, &env).expect("valid probe");
    let JobKind::Monitor(monitor) = &config.job("m").expect("job m").kind else {
        unreachable!("job m is a monitor")
    };
    ProbeSet::build(&monitor.probes, &ProcRoot::default())
}

/// CPU seconds of this process (user + system).
fn own_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds of another process, from `/proc/PID/stat` (clock ticks: read over many ticks).
fn process_cpu(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = PgServer::start(&["max_connections=250"]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute(
            "CREATE TABLE stock (id int PRIMARY KEY, qty int); INSERT INTO stock VALUES (1, 10);",
        )
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..150 {
        sessions.push(server.admin("shop").await);
    }
    for _ in 0..30 {
        let session = server.admin("shop").await;
        session.batch_execute("BEGIN; SELECT 1;").await.unwrap();
        sessions.push(session);
    }
    let holder = server.admin("shop").await;
    holder
        .batch_execute("BEGIN; UPDATE stock SET qty = 0 WHERE id = 1;")
        .await
        .unwrap();
    let mut running = Vec::new();
    for i in 0..19 {
        let session = server.admin("shop").await;
        let sql = if i < 10 {
            "SELECT pg_sleep(3600)"
        } else {
            "UPDATE stock SET qty = 1 WHERE id = 1"
        };
        running.push(tokio::spawn(async move {
            let _ = session.batch_execute(sql).await;
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &server.probe_dsn("shop"));
    for _ in 0..5 {
        set.collect().await;
    }
    let backend: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'runner'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let counted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let check = set.collect().await;
    assert!(check.errors.is_empty(), "{:?}", check.errors);
    let value = |name: &str| {
        check
            .metrics
            .iter()
            .find(|(n, _)| n.to_string() == name)
            .map(|(_, v)| *v)
    };

    let mut walls = Vec::with_capacity(TICKS);
    let cpu_before = own_cpu();
    let backend_before = process_cpu(backend);
    let started = Instant::now();
    for _ in 0..TICKS {
        let tick = Instant::now();
        let out = set.collect().await;
        walls.push(tick.elapsed().as_secs_f64() * 1000.0);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        // A tick a few milliseconds apart, so the rates have an interval.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_ms = (own_cpu() - cpu_before) * 1000.0 / TICKS as f64;
    let backend_ms = (process_cpu(backend) - backend_before) * 1000.0 / TICKS as f64;
    walls.sort_by(f64::total_cmp);
    println!(
        "postgres probe against {counted} client sessions ({} waiting on a lock, {} blocker), {TICKS} ticks in {elapsed:.1} s:",
        value("postgres.main.lock_waiting").unwrap_or(f64::NAN),
        value("postgres.main.lock_blockers").unwrap_or(f64::NAN),
    );
    println!(
        "  tick wall time: median {:.2} ms, p95 {:.2} ms, max {:.2} ms (one round trip)",
        percentile(&walls, 0.5),
        percentile(&walls, 0.95),
        walls[walls.len() - 1]
    );
    println!("  runner CPU per tick: {cpu_ms:.2} ms");
    println!("  server CPU per tick (the probe's backend): {backend_ms:.2} ms");
    println!(
        "  at a 15 s schedule: {:.3} % of a core in runner, {:.3} % in the server",
        cpu_ms / 15_000.0 * 100.0,
        backend_ms / 15_000.0 * 100.0
    );
    drop(holder);
    for task in running {
        task.abort();
    }
}
