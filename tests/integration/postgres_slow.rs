//! The `postgres` probe's slower-moving views against a real PostgreSQL 15: tables' dead tuples
//! and vacuum ages read exactly as `pg_stat_user_tables` says and only every Nth tick, a
//! running VACUUM's phase and progress, and `pg_stat_statements` from the probe's snapshots to
//! the report's "Slowest queries".

use std::path::Path;
use std::time::{Duration, Instant};

use runner::probes::ProbeSet;

use crate::pg_server::{PROBE_PASSWORD, PgServer};
use crate::postgres::tick;

/// The probe as a jobs file declares it (data_dir `var` beside the file), with `extra` settings.
fn probe(dir: &Path, dsn: &str, extra: &str) -> ProbeSet {
    crate::postgres::probe(dir, dsn, PROBE_PASSWORD, extra)
}

/// Waits until `query` (one number) reads `want`: statistics reach the shared view a moment
/// after the transaction that made them.
async fn until(admin: &tokio_postgres::Client, query: &str, want: i64) {
    let started = Instant::now();
    loop {
        let got: i64 = admin.query_one(query, &[]).await.unwrap().get(0);
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{query}: {got}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dead_tuples_and_vacuum_ages_read_as_pg_stat_user_tables_says_only_every_third_tick() {
    // No autovacuum: it would clean the dead rows while the test looks at them.
    let server = PgServer::start(&["autovacuum=off"]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute(
            "CREATE TABLE \"Orders\" (id int PRIMARY KEY, v text);
             INSERT INTO \"Orders\" SELECT g, 'x' FROM generate_series(1, 1000) g;
             DELETE FROM \"Orders\" WHERE id <= 300;
             CREATE TABLE items (id int);
             INSERT INTO items SELECT generate_series(1, 50);
             DELETE FROM items WHERE id <= 10;",
        )
        .await
        .unwrap();
    // One statement each: VACUUM refuses to run in the transaction a batch makes.
    admin.batch_execute("VACUUM items").await.unwrap();
    admin.batch_execute("ANALYZE \"Orders\"").await.unwrap();
    until(
        &admin,
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'Orders'",
        300,
    )
    .await;
    until(
        &admin,
        "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'items' AND last_vacuum IS NOT NULL",
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(
        dir.path(),
        &server.probe_dsn("shop"),
        ", slow_views_every_ticks: 3",
    );
    let mut ticks = Vec::new();
    for _ in 0..7 {
        ticks.push(tick(&mut set).await);
    }
    let read: Vec<bool> = ticks
        .iter()
        .map(|t| t.value("public~~-orders.dead_tuples").is_some())
        .collect();
    assert_eq!(
        read,
        [true, false, false, true, false, false, true],
        "the tables are read on the first tick and every third after"
    );
    for t in &ticks {
        assert_eq!(t.get("up"), 1.0, "{:?}", t.errors);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        assert_eq!(t.get("vacuums_running"), 0.0, "progress is read every tick");
        assert_eq!(
            t.value("tables_read").is_some(),
            t.value("statements_installed").is_some()
        );
    }
    let first = &ticks[0];
    let stats = admin
        .query_one(
            "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'Orders'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        first.get("public~~-orders.dead_tuples"),
        stats.get::<_, i64>(1) as f64
    );
    assert_eq!(first.get("public~~-orders.dead_tuples"), 300.0);
    assert_eq!(
        first.get("public~~-orders.live_tuples"),
        stats.get::<_, i64>(0) as f64
    );
    let (live, dead) = (stats.get::<_, i64>(0) as f64, stats.get::<_, i64>(1) as f64);
    assert_eq!(
        first.get("public~~-orders.dead_percent"),
        dead * 100.0 / (live + dead)
    );
    let items: i64 = admin
        .query_one(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'items'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first.get("public~~items.dead_tuples"), items as f64);
    assert_eq!(first.get("tables_read"), 2.0);
    // Ages only of what happened: `Orders` was analyzed, never vacuumed; `items` vacuumed.
    let analyzed = first.get("public~~-orders.last_analyze_age_s");
    assert!((0.0..60.0).contains(&analyzed), "{analyzed}");
    assert_eq!(first.value("public~~-orders.last_vacuum_age_s"), None);
    assert_eq!(first.value("public~~-orders.last_autovacuum_age_s"), None);
    assert!(first.value("public~~items.last_vacuum_age_s").is_some());
    // Without the extension the report is told so, and no tick fails for it.
    assert_eq!(first.get("statements_installed"), 0.0);
    let snapshots = std::fs::read_dir(dir.path().join("var/statements/m/main"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        snapshots.contains("\"installed\":false") && snapshots.contains("not installed"),
        "{snapshots}"
    );

    // Installed but not preloaded: its view refuses to answer, which is no failed tick.
    admin
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    for _ in 0..2 {
        tick(&mut set).await;
    }
    let t = tick(&mut set).await;
    assert_eq!(t.get("up"), 1.0);
    assert_eq!(t.get("statements_installed"), 0.0);
    assert!(t.errors.is_empty(), "{:?}", t.errors);
}

#[tokio::test]
async fn a_running_vacuum_reads_its_table_phase_and_heap_scanned() {
    let server = PgServer::start(&["autovacuum=off"]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int, v text);
             INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    // A cursor holds a pin on the table's first page: a VACUUM (FREEZE), which must freeze
    // that page's rows, waits for the pin to go, in its heap scan.
    let holder = server.admin("shop").await;
    holder
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT * FROM t; FETCH 1 FROM c;")
        .await
        .unwrap();
    let vacuumer = server.admin("shop").await;
    let vacuum = tokio::spawn(async move { vacuumer.batch_execute("VACUUM (FREEZE) t").await });
    until(
        &admin,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'BufferPin'",
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &server.probe_dsn("shop"), "");
    let t = tick(&mut set).await;
    let progress = admin
        .query_one(
            "SELECT phase, heap_blks_scanned, heap_blks_total FROM pg_stat_progress_vacuum",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(progress.get::<_, String>(0), "scanning heap");
    assert_eq!(t.get("vacuums_running"), 1.0);
    assert_eq!(t.get("public~~t.vacuum_phase"), 1.0);
    let (scanned, total) = (progress.get::<_, i64>(1), progress.get::<_, i64>(2));
    assert!(total > 0);
    assert_eq!(
        t.get("public~~t.vacuum_scanned_percent"),
        scanned as f64 * 100.0 / total as f64
    );
    holder.batch_execute("COMMIT").await.unwrap();
    vacuum.await.unwrap().unwrap();
    let t = tick(&mut set).await;
    assert_eq!(t.get("vacuums_running"), 0.0);
    assert_eq!(t.value("public~~t.vacuum_phase"), None);
}

/// The `pg_stat_statements` snapshots a probe wrote so far.
fn snapshots(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("var/statements/db/main"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out
}

#[tokio::test]
async fn statements_run_a_known_number_of_times_are_counted_and_reported_as_slowest_queries() {
    let server = PgServer::start(&["shared_preload_libraries=pg_stat_statements"]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE TABLE orders (id int PRIMARY KEY);
             INSERT INTO orders SELECT generate_series(1, 100);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "jobs:\n  db:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes:\n      - {{ type: postgres, name: main, dsn: \"{}\", password: \"${{PG_PASSWORD}}\", slow_views_every_ticks: 2, statements_snapshot_every_s: 0, statements_top: 50 }}\n  weekly:\n    type: report\n    schedule: \"0 8 * * Mon\"\n    window: 1h\n    templates: [\"{}\"]\n",
            server.probe_dsn("shop"),
            crate::support::root()
                .join("templates/weekly.md.hbs")
                .display(),
        ),
    );
    let mut command = crate::support::command(&["--jobs", file.to_str().unwrap()]);
    command.env("PG_PASSWORD", PROBE_PASSWORD);
    let mut running = crate::support::Running::spawn(command);
    let patience = Instant::now() + crate::support::PATIENCE;
    while snapshots(dir.path()).is_empty() {
        assert!(Instant::now() < patience, "no snapshot: {:?}", running.seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Seven calls of one statement (its constants normalised away), three of another whose
    // text must be escaped in the report.
    for id in 1..=7 {
        admin
            .simple_query(&format!("SELECT count(*) FROM orders WHERE id < {id}"))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        admin
            .simple_query("SELECT 1 AS \"a|b\", 2 AS \"<i>\"")
            .await
            .unwrap();
    }
    let seen_calls = |snapshots: &[serde_json::Value]| {
        snapshots.last().and_then(|s| {
            s["statements"].as_array()?.iter().find_map(|st| {
                (st["query"] == "SELECT count(*) FROM orders WHERE id < $1")
                    .then(|| (st["calls"].as_u64(), st["rows"].as_u64()))
            })
        })
    };
    while seen_calls(&snapshots(dir.path())) != Some((Some(7), Some(7))) {
        assert!(
            Instant::now() < patience,
            "the calls were never written down: {:?}",
            seen_calls(&snapshots(dir.path()))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.signal("TERM");
    assert_eq!(running.wait_exit(crate::support::PATIENCE).0, Some(0));
    let view = admin
        .query_one(
            "SELECT calls, rows FROM pg_stat_statements WHERE query = 'SELECT count(*) FROM orders WHERE id < $1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((view.get::<_, i64>(0), view.get::<_, i64>(1)), (7, 7));

    let output = crate::support::command(&["report", "--jobs", file.to_str().unwrap()])
        .env("PG_PASSWORD", PROBE_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    let report = crate::support::stdout(&output);
    assert!(report.contains("#### Slowest queries\n"), "{report}");
    assert!(
        report
            .contains("| `SELECT count(*) FROM orders WHERE id < $1` | shop | postgres | 7 | 7 | "),
        "{report}"
    );
    assert!(
        report.contains("| `SELECT $1 AS \"a\\|b\", $2 AS \"<i>\"` | shop | postgres | 3 | 3 | "),
        "{report}"
    );
    let html_file = dir.path().join("report.html");
    let template = crate::support::root().join("templates/weekly.html.hbs");
    let output = crate::support::command(&[
        "report",
        "--jobs",
        file.to_str().unwrap(),
        "--template",
        template.to_str().unwrap(),
        "--out",
        html_file.to_str().unwrap(),
    ])
    .env("PG_PASSWORD", PROBE_PASSWORD)
    .output()
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert!(html.contains("<h4>Slowest queries</h4>"), "{html}");
    assert!(
        html.contains("<code>SELECT $1 AS &quot;a|b&quot;, $2 AS &quot;&lt;i&gt;&quot;</code>"),
        "{html}"
    );
    assert!(!html.contains("<i>"), "the statement's text is escaped");
}

#[tokio::test]
async fn a_reset_between_snapshots_costs_nothing_that_a_snapshot_saw_before_it() {
    let server = PgServer::start(&["shared_preload_libraries=pg_stat_statements"]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE TABLE orders (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(
        dir.path(),
        &server.probe_dsn("shop"),
        ", slow_views_every_ticks: 1, statements_snapshot_every_s: 0",
    );
    let from = chrono::Utc::now();
    let run = |n: usize| {
        let admin = &admin;
        async move {
            for id in 0..n {
                admin
                    .simple_query(&format!("SELECT * FROM orders WHERE id = {id}"))
                    .await
                    .unwrap();
            }
        }
    };
    let first = tick(&mut set).await;
    assert_eq!(first.get("statements_installed"), 1.0, "{:?}", first.errors);
    run(5).await;
    tick(&mut set).await;
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    run(2).await;
    tick(&mut set).await;
    let kept = dir.path().join("var/statements/m/main");
    let snapshots = runner::probes::postgres::statements::read(&kept, from, chrono::Utc::now());
    assert_eq!(snapshots.len(), 3);
    let w = runner::probes::postgres::statements::window(&snapshots, from);
    let ours = w
        .statements
        .iter()
        .find(|s| s.query == "SELECT * FROM orders WHERE id = $1")
        .unwrap_or_else(|| panic!("{w:?}"));
    // Five before the reset (the second snapshot saw them), two after it.
    assert_eq!((ours.calls, ours.rows), (7, 0));
}

#[tokio::test]
async fn the_statements_counters_are_read_only_when_a_snapshot_is_due() {
    let server = PgServer::start(&["shared_preload_libraries=pg_stat_statements"]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Slow views every tick, a snapshot an hour: five ticks write one snapshot.
    let mut set = probe(
        dir.path(),
        &server.probe_dsn("shop"),
        ", slow_views_every_ticks: 1, statements_snapshot_every_s: 3600",
    );
    let from = chrono::Utc::now();
    for _ in 0..5 {
        let t = tick(&mut set).await;
        assert_eq!(t.get("statements_installed"), 1.0, "{:?}", t.errors);
    }
    let kept = dir.path().join("var/statements/m/main");
    let snapshots = runner::probes::postgres::statements::read(&kept, from, chrono::Utc::now());
    assert_eq!(snapshots.len(), 1);
    // The server's own count of the probe's reads of the view: once, for that snapshot (they
    // cost it milliseconds each; reading them at every slow-views tick threw four away).
    let rows = admin
        .simple_query(
            "SELECT coalesce(sum(s.calls), 0)::text FROM pg_stat_statements s \
             JOIN pg_roles r ON r.oid = s.userid \
             WHERE r.rolname <> current_user AND s.query LIKE '%FROM %pg_stat_statements%'",
        )
        .await
        .unwrap();
    let reads: u64 = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(reads, 1);
}

#[tokio::test]
async fn a_dry_run_measures_the_slow_views_and_keeps_no_snapshot() {
    let server = PgServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "jobs:\n  db:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - {{ type: postgres, name: main, dsn: \"{}\", password: \"${{PG_PASSWORD}}\" }}\n",
            server.probe_dsn("shop"),
        ),
    );
    let output = crate::support::command(&["dry-run", "db", "--jobs", file.to_str().unwrap()])
        .env("PG_PASSWORD", PROBE_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    assert!(
        !dir.path().join("var/statements").exists(),
        "a dry run writes nothing"
    );
}

#[test]
fn a_snapshot_interval_over_a_day_is_a_check_error() {
    let dir = tempfile::tempdir().unwrap();
    let load = |every: u64| {
        let yaml = format!(
            "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - {{ type: postgres, name: main, dsn: \"host=db1 user=runner\", statements_snapshot_every_s: {every} }}\n"
        );
        runner::config::build::parse(&dir.path().join("jobs.yaml"), &yaml, &|_| None)
            .map(|_| ())
            .map_err(|p| p.render())
    };
    assert!(load(86_400).is_ok());
    let refused = load(86_401).unwrap_err();
    assert!(
        refused.contains("statements_snapshot_every_s` must be at most 86400"),
        "{refused}"
    );
}
