//! The `postgres` probe against a real PostgreSQL started by the test: the situations its rules
//! are for (lock waits, a transaction left open, a deadlock, connections running out) made with
//! real sessions, and the failures (a wrong password, a server that goes away).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use runner::config::JobKind;
use runner::probes::{ProbeSet, ProcRoot};

use crate::pg_server::{PROBE_PASSWORD, PgServer};

/// The probe as a jobs file declares it, through the real loader; the password comes from the
/// environment the loader is given.
pub(crate) fn probe(dir: &Path, dsn: &str, password: &str, extra: &str) -> ProbeSet {
    let file = dir.join("jobs.yaml");
    let yaml = format!(
        "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - {{ type: postgres, name: main, dsn: \"{dsn}\", password: \"${{PG_PASSWORD}}\"{extra} }}\n"
    );
    let env = |key: &str| (key == "PG_PASSWORD").then(|| password.to_string());
    let config = runner::config::build::parse(&file, &yaml, &env)
        .unwrap_or_else(|p| panic!("{}", p.render()));
    let JobKind::Monitor(monitor) = &config.job("m").unwrap().kind else {
        panic!("monitor")
    };
    ProbeSet::build(&monitor.probes, &ProcRoot::default())
}

pub(crate) struct Tick {
    pub(crate) metrics: BTreeMap<String, f64>,
    pub(crate) errors: BTreeMap<String, String>,
}

impl Tick {
    /// `postgres.main.<field>`, if the tick read it.
    pub(crate) fn value(&self, field: &str) -> Option<f64> {
        self.metrics.get(&format!("postgres.main.{field}")).copied()
    }

    #[track_caller]
    pub(crate) fn get(&self, field: &str) -> f64 {
        self.value(field).unwrap_or_else(|| {
            panic!(
                "no postgres.main.{field} in {:?} (errors {:?})",
                self.metrics, self.errors
            )
        })
    }
}

pub(crate) async fn tick(set: &mut ProbeSet) -> Tick {
    let out = set.collect().await;
    Tick {
        metrics: out
            .metrics
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect(),
        errors: out.errors.into_iter().collect(),
    }
}

/// Waits until the server shows `n` sessions waiting on a lock: the sessions the test started
/// have sent their statements.
async fn until_waiting(admin: &tokio_postgres::Client, n: i64) {
    let started = Instant::now();
    loop {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) == n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never {n} waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh server with `settings`, a table made by `setup` in `shop`, the probe watching
/// `shop`, and a superuser session there.
struct Watched {
    server: PgServer,
    _dir: tempfile::TempDir,
    set: ProbeSet,
    admin: tokio_postgres::Client,
}

async fn watched(settings: &[&str], setup: &str) -> Watched {
    let server = PgServer::start(settings).await;
    let dir = tempfile::tempdir().unwrap();
    let set = probe(dir.path(), &server.probe_dsn("shop"), PROBE_PASSWORD, "");
    let admin = server.admin("shop").await;
    admin.batch_execute(setup).await.unwrap();
    Watched {
        server,
        _dir: dir,
        set,
        admin,
    }
}

#[tokio::test]
async fn a_row_held_while_two_sessions_wait_reads_two_waiting_one_blocker_and_a_growing_wait() {
    let Watched {
        server,
        mut set,
        admin,
        ..
    } = watched(
        &[],
        "CREATE TABLE stock (id int PRIMARY KEY, qty int); INSERT INTO stock VALUES (1, 10);",
    )
    .await;
    let quiet = tick(&mut set).await;
    assert!(quiet.errors.is_empty(), "{:?}", quiet.errors);
    assert_eq!(quiet.get("up"), 1.0);
    assert_eq!(quiet.get("lock_waiting"), 0.0);
    assert_eq!(quiet.get("lock_wait_max_ms"), 0.0);

    let holder = server.admin("shop").await;
    holder
        .batch_execute("BEGIN; UPDATE stock SET qty = qty - 1 WHERE id = 1;")
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let waiter = server.admin("shop").await;
        waiters.push(tokio::spawn(async move {
            waiter
                .execute("UPDATE stock SET qty = qty - 1 WHERE id = 1", &[])
                .await
        }));
    }
    until_waiting(&admin, 2).await;
    let first = tick(&mut set).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.get("lock_waiting"), 2.0);
    assert_eq!(first.get("lock_blocked"), 2.0);
    assert_eq!(
        first.get("lock_blockers"),
        1.0,
        "the session holding the row"
    );
    assert_eq!(first.get("connections_active"), 2.0, "the two waiting");
    assert_eq!(
        first.get("connections_idle_in_transaction"),
        1.0,
        "the holder"
    );
    assert!(first.get("lock_wait_max_ms") > 0.0);
    assert!(first.get("oldest_transaction_s") * 1000.0 >= first.get("lock_wait_max_ms"));

    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = tick(&mut set).await;
    assert!(
        later.get("lock_wait_max_ms") >= first.get("lock_wait_max_ms") + 300.0,
        "the wait grows with time: {} then {}",
        first.get("lock_wait_max_ms"),
        later.get("lock_wait_max_ms")
    );

    // A backend publishes its counters at most once a second (an idle one within 10 s), so on a
    // quick run the three commits could all still be unpublished at the next tick; the holder
    // asks for its own to be published as it goes idle.
    holder
        .batch_execute("SELECT pg_stat_force_next_flush(); COMMIT")
        .await
        .unwrap();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap(), 1);
    }
    let after = tick(&mut set).await;
    assert_eq!(after.get("lock_waiting"), 0.0);
    assert_eq!(after.get("lock_blockers"), 0.0);
    assert_eq!(after.get("lock_wait_max_ms"), 0.0);
    assert!(
        after.get("commits_per_sec") > 0.0,
        "three updates committed: {:?}",
        after.metrics
    );
}

#[tokio::test]
async fn a_transaction_left_open_reads_its_age_and_one_connection_serves_every_tick() {
    let server = PgServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &server.probe_dsn("shop"), PROBE_PASSWORD, "");
    let admin = server.admin("postgres").await;
    let idle = server.admin("shop").await;
    let before_begin = Instant::now();
    idle.batch_execute("BEGIN; SELECT 1;").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t = tick(&mut set).await;
    let age = t.get("oldest_transaction_s");
    assert!(
        (1.2..=before_begin.elapsed().as_secs_f64()).contains(&age),
        "open for {age} s"
    );
    assert_eq!(t.get("connections_idle_in_transaction"), 1.0);
    assert_eq!(
        t.get("longest_statement_s"),
        0.0,
        "the probe's own statement is not counted"
    );

    let probe_sessions = || async {
        admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'runner'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>()
    };
    let pids = probe_sessions().await;
    assert_eq!(pids.len(), 1, "{pids:?}");
    for _ in 0..3 {
        tick(&mut set).await;
    }
    assert_eq!(
        probe_sessions().await,
        pids,
        "the same connection, kept open"
    );

    idle.batch_execute("COMMIT").await.unwrap();
    let t = tick(&mut set).await;
    assert_eq!(t.get("oldest_transaction_s"), 0.0);
    assert_eq!(t.get("connections_idle_in_transaction"), 0.0);
}

/// Two sessions of `shop` taking rows 1 and 2 of `t` in opposite orders: one is the victim.
/// Both end afterwards, which sends their statistics at once.
async fn make_deadlock(server: &PgServer, admin: &tokio_postgres::Client) {
    let a = server.admin("shop").await;
    let b = server.admin("shop").await;
    a.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1;")
        .await
        .unwrap();
    b.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 2;")
        .await
        .unwrap();
    let a_waits = tokio::spawn(async move {
        let result = a.batch_execute("UPDATE t SET v = 2 WHERE id = 2").await;
        (a, result)
    });
    until_waiting(admin, 1).await;
    let b_result = b.batch_execute("UPDATE t SET v = 2 WHERE id = 1").await;
    let (a, a_result) = a_waits.await.unwrap();
    let failed = [&a_result, &b_result]
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.code().map(|c| c.code().to_string()))
        .collect::<Vec<_>>();
    assert_eq!(
        failed,
        [Some("40P01".to_string())],
        "one side is the deadlock victim"
    );
    drop(a);
    drop(b);
}

#[tokio::test]
async fn a_deadlock_shows_on_the_tick_it_happened_in_and_in_its_database() {
    let Watched {
        server,
        mut set,
        admin,
        ..
    } = watched(
        &[],
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);",
    )
    .await;
    let baseline = tick(&mut set).await;
    assert_eq!(baseline.get("up"), 1.0);

    make_deadlock(&server, &admin).await;

    let mut seen = 0.0;
    for _ in 0..50 {
        let t = tick(&mut set).await;
        let now = t.get("deadlocks");
        if now > 0.0 {
            assert!(t.get("deadlocks_per_sec") > 0.0);
            assert_eq!(t.metrics.get("postgres.main.shop.deadlocks"), Some(&now));
            assert_eq!(
                t.metrics.get("postgres.main.postgres.deadlocks"),
                Some(&0.0)
            );
            seen += now;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 1.0, "one deadlock, counted once");
    let next = tick(&mut set).await;
    assert_eq!(next.get("deadlocks"), 0.0);
    assert!(next.get("rollbacks_per_sec") >= 0.0);
}

#[tokio::test]
async fn connections_near_the_limit_read_against_what_ordinary_roles_may_use() {
    let server = PgServer::start(&["max_connections=20", "superuser_reserved_connections=3"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &server.probe_dsn("shop"), PROBE_PASSWORD, "");
    let mut held = Vec::new();
    for _ in 0..15 {
        held.push(server.admin("shop").await);
    }
    let t = tick(&mut set).await;
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    // 15 held, and the probe's own.
    assert_eq!(t.get("connections"), 16.0);
    assert_eq!(t.get("connections_idle"), 15.0);
    assert_eq!(t.get("connections_max"), 20.0);
    assert_eq!(t.get("connections_reserved"), 3.0);
    assert!((t.get("connections_used_percent") - 16.0 * 100.0 / 17.0).abs() < 1e-9);
    // A database's sessions leave the probe's own out, as the states do.
    assert_eq!(t.metrics.get("postgres.main.shop.connections"), Some(&15.0));
}

#[tokio::test]
async fn a_wrong_password_reads_down_with_postgres_own_words_and_never_the_password() {
    let server = PgServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "not-the-Password-123";
    let mut set = probe(dir.path(), &server.probe_dsn("shop"), wrong, "");
    let t = tick(&mut set).await;
    assert_eq!(t.get("up"), 0.0);
    let error = &t.errors["postgres.main"];
    assert!(
        error.contains("password authentication failed for user \"runner\"")
            && error.contains("SQLSTATE 28P01"),
        "{error}"
    );
    assert!(
        error.contains(&format!("127.0.0.1:{}/shop", server.port)),
        "{error}"
    );
    assert!(!error.contains(wrong), "{error}");
}

#[tokio::test]
async fn a_server_that_goes_away_reads_down_then_up_again_when_it_returns() {
    let mut server = PgServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &server.probe_dsn("shop"), PROBE_PASSWORD, "");
    let t = tick(&mut set).await;
    assert_eq!(t.get("up"), 1.0);
    assert!(t.get("version_num") >= 100_000.0);
    assert_eq!(t.get("is_replica"), 0.0);
    assert_eq!(t.get("replicas"), 0.0);

    server.halt();
    let down = tick(&mut set).await;
    assert_eq!(down.get("up"), 0.0);
    assert!(!down.errors["postgres.main"].is_empty());
    let again = tick(&mut set).await;
    assert_eq!(again.get("up"), 0.0);
    assert!(
        again.errors["postgres.main"].contains("refused"),
        "{}",
        again.errors["postgres.main"]
    );

    server.resume().await;
    let back = tick(&mut set).await;
    assert!(back.errors.is_empty(), "{:?}", back.errors);
    assert_eq!(back.get("up"), 1.0);
}

/// A CA (`ca.crt`) and a server certificate for `localhost` signed by it (`server.crt`,
/// `server.key`).
fn certificates(dir: &Path, ca_name: &str) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn tls_is_checked_as_sslmode_says() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path(), "runner test CA");
    let other = tempfile::tempdir().unwrap();
    certificates(other.path(), "someone else's CA");
    let key = certs.path().join("server.key");
    crate::pg_server::give_key_to_server(&key);
    let server = PgServer::start(&[
        "ssl=on",
        &format!(
            "ssl_cert_file={}",
            certs.path().join("server.crt").display()
        ),
        &format!("ssl_key_file={}", key.display()),
    ])
    .await;
    let admin = server.admin("postgres").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = certs.path().join("ca.crt");
    let other_ca = other.path().join("ca.crt");
    let dsn = |host: &str, mode: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user=runner dbname=shop sslmode={mode}",
            server.port
        )
    };
    let with_ca = |ca: &Path| format!(", ca_file: \"{}\"", ca.display());
    let cases = [
        (dsn("localhost", "verify-full"), with_ca(&ca), None),
        (dsn("127.0.0.1", "verify-ca"), with_ca(&ca), None),
        (dsn("localhost", "require"), String::new(), None),
        (
            dsn("127.0.0.1", "verify-full"),
            with_ca(&ca),
            Some("not valid for name"),
        ),
        (
            dsn("localhost", "verify-full"),
            with_ca(&other_ca),
            Some("not signed by the CA in ca_file"),
        ),
    ];
    for (dsn, extra, refused) in cases {
        let mut set = probe(dir.path(), &dsn, PROBE_PASSWORD, &extra);
        let t = tick(&mut set).await;
        match refused {
            None => {
                assert!(t.errors.is_empty(), "{dsn}: {:?}", t.errors);
                let encrypted: bool = admin
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'runner'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert!(encrypted, "{dsn}");
            }
            Some(reason) => {
                assert_eq!(t.get("up"), 0.0, "{dsn}");
                let error = &t.errors["postgres.main"];
                assert!(error.contains(reason), "{dsn}: {error}");
            }
        }
    }
}

/// What libpq does for each `sslmode` under one pg_hba.conf rule: `Some(encrypted)` when it
/// connects, `None` when the server refuses it.
struct HbaCase {
    rule: &'static str,
    unix: bool,
    modes: [(&'static str, Option<bool>); 5],
}

#[tokio::test]
async fn every_sslmode_connects_as_libpq_does_under_hostssl_hostnossl_and_local_rules() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path(), "runner test CA");
    let key = certs.path().join("server.key");
    crate::pg_server::give_key_to_server(&key);
    let server = PgServer::start(&[
        "ssl=on",
        &format!(
            "ssl_cert_file={}",
            certs.path().join("server.crt").display()
        ),
        &format!("ssl_key_file={}", key.display()),
    ])
    .await;
    let admin = server.admin("postgres").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = format!(", ca_file: \"{}\"", certs.path().join("ca.crt").display());
    let cases = [
        HbaCase {
            rule: "hostssl all runner 127.0.0.1/32 scram-sha-256",
            unix: false,
            modes: [
                ("disable", None),
                ("allow", Some(true)),
                ("prefer", Some(true)),
                ("require", Some(true)),
                ("verify-full", Some(true)),
            ],
        },
        HbaCase {
            rule: "hostnossl all runner 127.0.0.1/32 scram-sha-256",
            unix: false,
            modes: [
                ("disable", Some(false)),
                ("allow", Some(false)),
                ("prefer", Some(false)),
                ("require", None),
                ("verify-full", None),
            ],
        },
        // libpq ignores sslmode over a Unix socket: the server offers no TLS there.
        HbaCase {
            rule: "local all runner scram-sha-256",
            unix: true,
            modes: [
                ("disable", Some(false)),
                ("allow", Some(false)),
                ("prefer", Some(false)),
                ("require", Some(false)),
                ("verify-full", Some(false)),
            ],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        server.hba(case.rule).await;
        for (mode, expected) in case.modes {
            let host = if case.unix {
                server.socket_dir().display().to_string()
            } else {
                "localhost hostaddr=127.0.0.1".to_string()
            };
            let application = format!("case{i}_{}", mode.replace('-', "_"));
            let dsn = format!(
                "host={host} port={} user=runner dbname=shop sslmode={mode} application_name={application}",
                server.port
            );
            let mut set = probe(dir.path(), &dsn, PROBE_PASSWORD, &ca);
            let t = tick(&mut set).await;
            let what = format!("{} with sslmode={mode}", case.rule);
            match expected {
                Some(encrypted) => {
                    assert!(t.errors.is_empty(), "{what}: {:?}", t.errors);
                    assert_eq!(t.get("up"), 1.0, "{what}");
                    let ssl: bool = admin
                        .query_one(
                            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = $1",
                            &[&application],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(ssl, encrypted, "{what}");
                }
                None => {
                    assert_eq!(t.get("up"), 0.0, "{what}");
                    let error = &t.errors["postgres.main"];
                    assert!(error.contains("no pg_hba.conf entry"), "{what}: {error}");
                }
            }
        }
    }
}

/// Every `postgres.main.*` value of every sample the monitor wrote so far.
fn written(dir: &Path, field: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for entry in std::fs::read_dir(dir.join("var/metrics"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(sample) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(v) = sample["metrics"][format!("postgres.main.{field}")].as_f64()
            {
                values.push(v);
            }
        }
    }
    values
}

#[tokio::test]
async fn the_scheduled_monitor_records_a_deadlock_its_rule_fires_and_the_report_has_a_database_section()
 {
    let server = PgServer::start(&[]).await;
    let admin = server.admin("shop").await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "jobs:\n  db:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes:\n      - {{ type: postgres, name: main, dsn: \"{}\", password: \"${{PG_PASSWORD}}\" }}\n    rules: [\"{}\"]\n    notify: [log]\n  weekly:\n    type: report\n    schedule: \"0 8 * * Mon\"\n    window: 1h\n    templates: [\"{}\"]\n",
            server.probe_dsn("shop"),
            crate::support::root()
                .join("rules/db/postgres.rhai")
                .display(),
            crate::support::root()
                .join("templates/weekly.md.hbs")
                .display(),
        ),
    );
    let mut command = crate::support::command(&["--jobs", file.to_str().unwrap()]);
    command.env("PG_PASSWORD", PROBE_PASSWORD);
    let mut running = crate::support::Running::spawn(command);
    let patience = Instant::now() + crate::support::PATIENCE;
    while written(dir.path(), "up").len() < 2 {
        assert!(Instant::now() < patience, "no samples: {:?}", running.seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    make_deadlock(&server, &admin).await;
    while written(dir.path(), "deadlocks").iter().sum::<f64>() < 1.0 {
        assert!(Instant::now() < patience, "the deadlock was never recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.wait_for_line("deadlocks", crate::support::PATIENCE);
    running.signal("TERM");
    assert_eq!(running.wait_exit(crate::support::PATIENCE).0, Some(0));
    assert_eq!(written(dir.path(), "deadlocks").iter().sum::<f64>(), 1.0);
    assert!(written(dir.path(), "up").iter().all(|up| *up == 1.0));

    let output = crate::support::command(&["report", "--jobs", file.to_str().unwrap()])
        .env("PG_PASSWORD", PROBE_PASSWORD)
        .output()
        .unwrap();
    let report = crate::support::stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    assert!(
        report.contains("## Database\n\n### PostgreSQL main\n"),
        "{report}"
    );
    assert!(report.contains("| deadlocks | 1 |"), "{report}");
    assert!(report.contains("\n| shop | "), "{report}");
    assert!(report.contains("PostgreSQL main: 1 deadlock"), "{report}");
    assert!(
        report.contains("| postgres | main | 100.000 % | 0s | 0 of "),
        "{report}"
    );
    assert!(report.contains("| deadlocks | warning | 1 |"), "{report}");
}

#[test]
fn a_password_in_the_file_a_wrong_sslmode_or_a_missing_ca_are_located_check_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.yaml");
    let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n      - { type: postgres, name: a, dsn: \"postgres://runner:hunter2@db1/shop\" }\n      - { type: postgres, name: b, dsn: \"host=db1 user=runner sslmode=verify-full\" }\n      - { type: postgres, name: c, dsn: \"host=db1 sslmode=strict\" }\n      - { type: postgres, name: d, dsn: \"host=db1\", password: \"hunter2\" }\n      - { type: postgres, name: e, dsn: \"${PG_DSN}\" }\n      - { type: postgres, name: f, dsn: \"host=db1 colour=blue\" }\n";
    let env = |key: &str| {
        (key == "PG_DSN").then(|| "postgres://runner:from-the-env@db1/shop".to_string())
    };
    // On disk, so the problems show their source lines as `runner check` does.
    std::fs::write(&file, yaml).unwrap();
    let problems = runner::config::build::parse(&file, yaml, &env)
        .expect_err("refused")
        .render();
    for expected in [
        "jobs.yaml:7:41",
        "a password is written in the jobs file",
        "field: jobs.m.probes[0].dsn",
        "sslmode verify-ca and verify-full need the CA",
        "field: jobs.m.probes[1].dsn",
        "unknown sslmode `strict`",
        "field: jobs.m.probes[3].password",
        "not a PostgreSQL connection string: unknown option `colour`",
    ] {
        assert!(problems.contains(expected), "{expected}: {problems}");
    }
    assert!(
        !problems.contains("probes[4]"),
        "from the environment: {problems}"
    );
    assert!(!problems.contains("from-the-env"), "{problems}");
    // The source lines show where the password is, not what it is.
    assert!(!problems.contains("hunter2"), "{problems}");
    assert!(
        problems.contains(&format!(
            "dsn: \"postgres://runner:****@db1/shop\" }}\n  | {}{}\n",
            " ".repeat(40),
            "^".repeat(33)
        )),
        "{problems}"
    );
    assert!(problems.contains("password: \"****\" }"), "{problems}");
}

#[tokio::test]
async fn a_standby_whose_replay_is_paused_reads_lag_on_both_sides() {
    let primary = PgServer::start(&[]).await;
    let standby = primary.standby("replica1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut on_primary = probe(dir.path(), &primary.probe_dsn("shop"), PROBE_PASSWORD, "");
    let mut on_standby = probe(dir.path(), &standby.probe_dsn("shop"), PROBE_PASSWORD, "");
    let admin = primary.admin("shop").await;
    // The standby is connected once the primary lists it.
    let patience = Instant::now() + crate::support::PATIENCE;
    loop {
        let t = tick(&mut on_primary).await;
        if t.get("replicas") == 1.0 {
            break;
        }
        assert!(Instant::now() < patience, "the standby never streamed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = tick(&mut on_standby).await;
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert_eq!(t.get("is_replica"), 1.0);

    // A transaction replayed, so the standby knows when it last replayed one: lag in seconds
    // is measured from it.
    admin
        .batch_execute("CREATE TABLE first (id int)")
        .await
        .unwrap();
    // Replayed, as the standby itself says: nothing left to replay (lag 0) is not enough, the
    // table may not have arrived yet.
    let standby_shop = standby.admin("shop").await;
    loop {
        let replayed: bool = standby_shop
            .query_one(
                "SELECT pg_last_xact_replay_timestamp() IS NOT NULL AND to_regclass('first') IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if replayed {
            break;
        }
        assert!(
            Instant::now() < patience,
            "the standby never replayed the table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = tick(&mut on_standby).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    standby
        .admin("postgres")
        .await
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE TABLE filler AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Received, not replayed: the standby says how far behind it is, and so does the primary.
    loop {
        let s = tick(&mut on_standby).await;
        let p = tick(&mut on_primary).await;
        if s.get("replication_lag_bytes") > 1_000_000.0 {
            assert!(s.get("replication_lag_s") >= 1.0, "{:?}", s.metrics);
            assert!(
                p.get("replication_lag_bytes") > 1_000_000.0,
                "{:?}",
                p.metrics
            );
            assert_eq!(
                p.metrics
                    .get("postgres.main.replica1.replication_lag_bytes"),
                Some(&p.get("replication_lag_bytes"))
            );
            break;
        }
        assert!(Instant::now() < patience, "no lag seen: {:?}", s.metrics);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    standby
        .admin("postgres")
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    loop {
        let s = tick(&mut on_standby).await;
        if s.get("replication_lag_bytes") == 0.0 {
            assert_eq!(s.get("replication_lag_s"), 0.0);
            break;
        }
        assert!(
            Instant::now() < patience,
            "replay never caught up: {:?}",
            s.metrics
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn databases_whose_names_sanitise_alike_and_standbys_sharing_a_name_read_apart() {
    let primary = PgServer::start(&[]).await;
    let admin = primary.admin("postgres").await;
    for create in ["CREATE DATABASE \"Shop-EU\"", "CREATE DATABASE shop_eu"] {
        admin.batch_execute(create).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(primary.admin("Shop-EU").await);
    }
    // Two standbys with the same application_name, as two without a cluster_name would be.
    let first = primary.standby("walreceiver").await;
    let second = primary.standby("walreceiver").await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &primary.probe_dsn("shop"), PROBE_PASSWORD, "");
    let patience = Instant::now() + crate::support::PATIENCE;
    let t = loop {
        let out = set.collect().await;
        let mut names: Vec<String> = out.metrics.iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        let pushed = names.len();
        names.dedup();
        assert_eq!(names.len(), pushed, "a name pushed twice: {names:?}");
        let t = Tick {
            metrics: out
                .metrics
                .iter()
                .map(|(n, v)| (n.to_string(), *v))
                .collect(),
            errors: out.errors.into_iter().collect(),
        };
        // A standby that has just connected has replayed nothing yet: no lag of its own.
        let both = ["walreceiver", "walreceiver~2"].iter().all(|part| {
            t.metrics
                .contains_key(&format!("postgres.main.{part}.replication_lag_bytes"))
        });
        if t.get("replicas") == 2.0 && both {
            break t;
        }
        assert!(
            Instant::now() < patience,
            "the standbys never streamed: {:?}",
            t.metrics
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        t.metrics.get("postgres.main.-shop--2d-e-u.connections"),
        Some(&3.0),
        "{:?}",
        t.metrics
    );
    assert_eq!(
        t.metrics.get("postgres.main.shop_eu.connections"),
        Some(&0.0),
        "{:?}",
        t.metrics
    );
    drop((first, second, held));
}

#[tokio::test]
async fn a_standby_cut_off_from_its_primary_reads_not_receiving_with_growing_lag_and_the_primary_misses_it()
 {
    let primary = PgServer::start(&[]).await;
    let standby = primary.standby("replica1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut on_primary = probe(
        dir.path(),
        &primary.probe_dsn("shop"),
        PROBE_PASSWORD,
        ", expected_replicas: 1",
    );
    let mut on_standby = probe(dir.path(), &standby.probe_dsn("shop"), PROBE_PASSWORD, "");
    let admin = primary.admin("shop").await;
    let patience = Instant::now() + crate::support::PATIENCE;
    loop {
        let p = tick(&mut on_primary).await;
        // A standby that has just connected has reported no replay position yet (its lag is
        // unknown, so absent) until its first status message, a moment later.
        let lag = p.metrics.get("postgres.main.replication_lag_s").copied();
        if p.get("replicas") == 1.0 && lag.is_some() {
            assert_eq!(p.get("replicas_expected"), 1.0);
            assert!(p.get("replication_lag_s") >= 0.0);
            break;
        }
        if p.get("replicas") == 0.0 {
            assert_eq!(
                lag, None,
                "the expected standby is not streaming yet: its lag is unknown"
            );
        }
        assert!(Instant::now() < patience, "the standby never streamed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = tick(&mut on_standby).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.get("receiving"), 1.0);
    assert!(s.get("receive_age_s") >= 0.0);

    // The primary refuses replication from now on and ends the stream; writes go on.
    primary
        .hba("host all runner 127.0.0.1/32 scram-sha-256")
        .await;
    primary
        .admin("postgres")
        .await
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE TABLE after_cut AS SELECT g AS id FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let cut = loop {
        let s = tick(&mut on_standby).await;
        if s.get("receiving") == 0.0 {
            break s;
        }
        assert!(
            Instant::now() < patience,
            "the standby never stopped receiving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        cut.metrics.get("postgres.main.replication_lag_bytes"),
        None,
        "how far behind is unknown: {:?}",
        cut.metrics
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = tick(&mut on_standby).await;
    assert_eq!(later.get("receiving"), 0.0);
    assert!(
        later.get("replication_lag_s") >= cut.get("replication_lag_s") + 1.2
            && later.get("replication_lag_s") >= later.get("receive_age_s"),
        "the lag grows with the silence: {:?} then {:?}",
        cut.metrics,
        later.metrics
    );

    let p = tick(&mut on_primary).await;
    assert_eq!(p.get("replicas"), 0.0);
    assert_eq!(p.get("replicas_expected"), 1.0);
    assert_eq!(
        p.metrics.get("postgres.main.replication_lag_s"),
        None,
        "a missing standby is no lag of 0: {:?}",
        p.metrics
    );
}

#[tokio::test]
async fn a_base_backup_in_progress_is_no_replica() {
    let primary = PgServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &primary.probe_dsn("shop"), PROBE_PASSWORD, "");
    let admin = primary.admin("postgres").await;
    let backup_dir = tempfile::tempdir().unwrap();
    let mut backup = primary.slow_base_backup(backup_dir.path());
    // Its copy shows in pg_stat_replication with the state `backup`.
    let patience = Instant::now() + crate::support::PATIENCE;
    loop {
        let states: Vec<String> = admin
            .query("SELECT state FROM pg_stat_replication ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if states.iter().any(|s| s == "backup") {
            break;
        }
        assert!(
            Instant::now() < patience,
            "the backup never started: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = tick(&mut set).await;
    let _ = backup.kill();
    let _ = backup.wait();
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert_eq!(t.get("replicas"), 0.0, "{:?}", t.metrics);
    assert!(
        !t.metrics.keys().any(|k| k.contains("pg_basebackup")),
        "{:?}",
        t.metrics
    );
}

#[tokio::test]
async fn a_server_restarted_between_ticks_reads_up_on_the_next_tick() {
    let mut server = PgServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &server.probe_dsn("shop"), PROBE_PASSWORD, "");
    assert_eq!(tick(&mut set).await.get("up"), 1.0);
    // Stopped and back before the next tick: the probe's kept connection died with it.
    server.halt();
    server.resume().await;
    let t = tick(&mut set).await;
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert_eq!(t.get("up"), 1.0);
}

#[tokio::test]
async fn a_standby_promoted_under_the_kept_connection_reads_as_a_primary_at_the_next_tick() {
    let primary = PgServer::start(&[]).await;
    let standby = primary.standby("replica1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &standby.probe_dsn("shop"), PROBE_PASSWORD, "");
    let before = tick(&mut set).await;
    assert!(before.errors.is_empty(), "{:?}", before.errors);
    assert_eq!(before.get("is_replica"), 1.0);
    assert!(before.metrics.contains_key("postgres.main.receiving"));
    assert!(!before.metrics.contains_key("postgres.main.replicas"));
    let probe_pid = || async {
        standby
            .admin("postgres")
            .await
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'runner'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i32>(0)
    };
    let pid = probe_pid().await;
    // pg_promote waits until the promotion is done.
    standby
        .admin("postgres")
        .await
        .batch_execute("SELECT pg_promote()")
        .await
        .unwrap();
    let after = tick(&mut set).await;
    assert!(after.errors.is_empty(), "{:?}", after.errors);
    assert_eq!(after.get("is_replica"), 0.0);
    assert_eq!(after.get("replicas"), 0.0, "{:?}", after.metrics);
    assert_eq!(after.get("replication_lag_s"), 0.0);
    assert!(
        !after.metrics.contains_key("postgres.main.receiving"),
        "{:?}",
        after.metrics
    );
    assert_eq!(probe_pid().await, pid, "the same connection");
}

#[tokio::test]
async fn transaction_id_age_grows_with_each_id_taken_and_falls_when_the_database_is_frozen() {
    let Watched {
        server: _server,
        mut set,
        admin,
        ..
    } = watched(&[], "CREATE TABLE t (id int)").await;
    let age_of = |db: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT age(datfrozenxid)::float8 FROM pg_database WHERE datname = $1",
                    &[&db],
                )
                .await
                .unwrap()
                .get::<_, f64>(0)
        }
    };
    let before = tick(&mut set).await;
    assert!(before.errors.is_empty(), "{:?}", before.errors);
    let shop = before.metrics["postgres.main.shop.xid_age"];
    assert_eq!(shop, age_of("shop").await);
    assert!(before.get("xid_age_max") >= shop);
    assert!(before.metrics.contains_key("postgres.main.shop.mxid_age"));
    assert!(before.get("mxid_age_max") >= 0.0);
    // 200 transactions that each take an ID.
    for _ in 0..200 {
        admin
            .batch_execute("INSERT INTO t VALUES (1)")
            .await
            .unwrap();
    }
    let after = tick(&mut set).await;
    assert_eq!(after.metrics["postgres.main.shop.xid_age"], shop + 200.0);
    assert_eq!(
        after.get("wraparound_percent"),
        after.get("xid_age_max").max(after.get("mxid_age_max")) * 100.0 / 2_147_483_648.0
    );
    admin.batch_execute("VACUUM FREEZE").await.unwrap();
    let frozen = tick(&mut set).await;
    assert!(
        frozen.metrics["postgres.main.shop.xid_age"] < shop,
        "{:?}",
        frozen.metrics
    );
}

#[tokio::test]
async fn a_forgotten_prepared_transaction_and_an_inactive_slot_holding_wal_and_xmin_are_read() {
    let Watched {
        server: _server,
        mut set,
        admin,
        ..
    } = watched(
        &["max_prepared_transactions=2", "wal_level=logical"],
        "CREATE TABLE t (id int)",
    )
    .await;
    let quiet = tick(&mut set).await;
    assert!(quiet.errors.is_empty(), "{:?}", quiet.errors);
    for field in [
        "prepared_transactions",
        "oldest_prepared_s",
        "slots_inactive",
        "slot_retained_bytes_max",
        "slot_xmin_age_max",
    ] {
        assert_eq!(quiet.get(field), 0.0, "{field}");
    }

    // The slots first: a logical slot is made once every running transaction has ended, a
    // prepared one included.
    admin
        .batch_execute(
            "SELECT pg_create_physical_replication_slot('lost', true);
             SELECT pg_create_logical_replication_slot('decoder', 'pgoutput');",
        )
        .await
        .unwrap();
    let before_prepare = Instant::now();
    admin
        .batch_execute("BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'forgotten'")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE TABLE filler AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g")
        .await
        .unwrap();
    for _ in 0..10 {
        admin
            .batch_execute("INSERT INTO t VALUES (2)")
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = tick(&mut set).await;
    assert_eq!(t.get("prepared_transactions"), 1.0);
    let age = t.get("oldest_prepared_s");
    assert!(
        (1.1..=before_prepare.elapsed().as_secs_f64()).contains(&age),
        "prepared {age} s ago"
    );
    assert_eq!(t.get("slots_inactive"), 2.0);
    assert!(
        t.get("slot_retained_bytes_max") > 1_000_000.0,
        "{:?}",
        t.metrics
    );
    // The logical slot holds the catalog horizon from before the filler and the ten inserts.
    assert!(t.get("slot_xmin_age_max") >= 11.0, "{:?}", t.metrics);

    for statement in [
        "COMMIT PREPARED 'forgotten'",
        "SELECT pg_drop_replication_slot('lost')",
        "SELECT pg_drop_replication_slot('decoder')",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    let after = tick(&mut set).await;
    for field in [
        "prepared_transactions",
        "slots_inactive",
        "slot_retained_bytes_max",
    ] {
        assert_eq!(after.get(field), 0.0, "{field}");
    }
}

#[tokio::test]
async fn sessions_are_counted_by_what_they_wait_on() {
    let Watched {
        server,
        mut set,
        admin,
        ..
    } = watched(
        &[],
        "CREATE TABLE stock (id int PRIMARY KEY, qty int); INSERT INTO stock VALUES (1, 10);",
    )
    .await;
    let holder = server.admin("shop").await;
    holder
        .batch_execute("BEGIN; UPDATE stock SET qty = qty - 1 WHERE id = 1;")
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let waiter = server.admin("shop").await;
        waiters.push(tokio::spawn(async move {
            waiter
                .execute("UPDATE stock SET qty = qty - 1 WHERE id = 1", &[])
                .await
        }));
    }
    until_waiting(&admin, 2).await;
    let t = tick(&mut set).await;
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert_eq!(t.get("waiting_lock"), 2.0);
    // The holder, idle in its transaction, and the test's own admin session wait on their
    // clients.
    assert_eq!(t.get("waiting_client"), 2.0, "{:?}", t.metrics);
    for field in [
        "waiting_lwlock",
        "waiting_io",
        "waiting_ipc",
        "waiting_other",
    ] {
        assert!(t.get(field) >= 0.0, "{field}");
    }
    holder.batch_execute("COMMIT").await.unwrap();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap(), 1);
    }
    let after = tick(&mut set).await;
    assert_eq!(after.get("waiting_lock"), 0.0);
}
