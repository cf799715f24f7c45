//! A throwaway PostgreSQL for the tests: the distribution's `initdb` and `postgres`, a data
//! folder in a temporary directory, a Unix socket there and a random port on 127.0.0.1. One
//! `initdb` per test process; each server starts from a copy of it and is stopped and removed
//! when dropped. As root, the server runs as the `postgres` user (or `nobody`): PostgreSQL
//! refuses to run as root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The role the probe connects as, and its password (TCP connections need one).
pub const PROBE_ROLE: &str = "runner";
pub const PROBE_PASSWORD: &str = "probe-secret-Xy7";

/// The folder holding `initdb` and `postgres`: `PATH`, else the newest under
/// `/usr/lib/postgresql` (Debian puts them there, off `PATH`).
fn bin_dir() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            // A link on PATH (`/usr/local/bin/initdb`) stands for the folder it points into,
            // which also has `pg_basebackup`.
            if let Ok(initdb) = dir.join("initdb").canonicalize()
                && let Some(real) = initdb.parent()
                && real.join("postgres").is_file()
            {
                return real.to_path_buf();
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL's initdb is not installed: `.ci/run` installs it (apt package postgresql)",
    )
}

/// The user the server runs as: this one, or an unprivileged one when this is root.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let name = std::ffi::CString::new(name).unwrap();
        // SAFETY: a valid C string; the result is read before any other getpw call.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: checked non-null above.
            let pw = unsafe { &*pw };
            return Some((pw.pw_uid, pw.pw_gid));
        }
    }
    panic!("running as root and neither a `postgres` nor a `nobody` user exists");
}

fn as_server_user(command: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        command.uid(uid).gid(gid);
    }
    command
}

fn give_to_server_user(path: &Path) {
    if let Some((uid, gid)) = server_user() {
        let status = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// A TLS key the server reads: its own, readable by it alone, as PostgreSQL demands.
pub fn give_key_to_server(key: &Path) {
    give_to_server_user(key.parent().unwrap());
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        key.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

/// The data folder `initdb` made: once per machine (kept in the temporary folder under a fixed
/// name and reused), at most once per test process.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let kept = std::env::temp_dir().join(format!(
            "runner-pg-template-{}",
            bin_dir().display().to_string().replace('/', "_")
        ));
        if kept.join("data/PG_VERSION").is_file() {
            return kept.join("data");
        }
        let dir = tempfile::Builder::new()
            .prefix("runner-pg-initdb")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        let password_file = dir.path().join("pw");
        std::fs::write(&password_file, "superuser-test-password\n").unwrap();
        give_to_server_user(dir.path());
        let output = as_server_user(&mut Command::new(bin_dir().join("initdb")))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Another test process may have made it meanwhile: either copy serves.
        let made = dir.keep();
        if std::fs::rename(&made, &kept).is_err() {
            let _ = std::fs::remove_dir_all(&made);
        }
        kept.join("data")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
    settings: Vec<String>,
    child: Option<Child>,
}

impl PgServer {
    /// A server with `settings` (`max_connections=20`) on top of quick test defaults, with the
    /// probe's role (`pg_monitor`) and a `shop` database.
    pub async fn start(settings: &[&str]) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("runner-pg")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(dir.path().join("data"))
            .status()
            .unwrap();
        assert!(status.success());
        give_to_server_user(dir.path());
        let mut server = PgServer {
            dir,
            port: free_port(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.resume().await;
        let admin = server.admin("postgres").await;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {PROBE_ROLE} LOGIN PASSWORD '{PROBE_PASSWORD}';
                 GRANT pg_monitor TO {PROBE_ROLE};"
            ))
            .await
            .unwrap();
        admin.batch_execute("CREATE DATABASE shop").await.unwrap();
        server
    }

    /// A standby streaming from this server (`pg_basebackup -R`), its `cluster_name` the
    /// `application_name` the primary sees.
    pub async fn standby(&self, name: &str) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("runner-pg-standby")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        give_to_server_user(dir.path());
        let output = as_server_user(&mut Command::new(bin_dir().join("pg_basebackup")))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-D",
            ])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut standby = PgServer {
            dir,
            port: free_port(),
            settings: vec![format!("cluster_name={name}")],
            child: None,
        };
        standby.resume().await;
        standby
    }

    /// A `pg_basebackup` of this server at 32 kB/s, WAL streamed beside it: a backup that
    /// stays in progress until the child is killed.
    pub fn slow_base_backup(&self, into: &Path) -> Child {
        give_to_server_user(into);
        as_server_user(&mut Command::new(bin_dir().join("pg_basebackup")))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-X",
                "stream",
                "--max-rate=32k",
                "-D",
            ])
            .arg(into.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Starts the server (again) on its port and waits until it takes connections.
    pub async fn resume(&mut self) {
        let mut command = Command::new(bin_dir().join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "deadlock_timeout=100ms",
            ]);
        for setting in &self.settings {
            command.args(["-c", setting]);
        }
        let child = as_server_user(&mut command)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if tokio_postgres::connect(&self.admin_dsn("postgres"), tokio_postgres::NoTls)
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server at once, as a crash or a kill would (SIGQUIT: immediate shutdown).
    pub fn halt(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
        }
    }

    fn admin_dsn(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.path().display(),
            self.port
        )
    }

    /// A superuser session over the Unix socket, for setting up what the probe should see.
    pub async fn admin(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.admin_dsn(db), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client
    }

    /// The folder holding the server's Unix socket (a libpq `host=` for it).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces `pg_hba.conf` with `local all postgres trust` (the tests' own sessions) and
    /// `rules`, and waits until the server has read it.
    pub async fn hba(&self, rules: &str) {
        std::fs::write(
            self.dir.path().join("data/pg_hba.conf"),
            format!("local all postgres trust\n{rules}\n"),
        )
        .unwrap();
        let loaded_at = |client: tokio_postgres::Client| async move {
            client
                .query_one("SELECT pg_conf_load_time()::text", &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        };
        let before = loaded_at(self.admin("postgres").await).await;
        let admin = self.admin("postgres").await;
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .unwrap();
        let errors: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(errors, 0, "{rules}");
        // The postmaster reads the files on the signal, after pg_reload_conf returns; a new
        // session carries the time it last did.
        let started = Instant::now();
        while loaded_at(self.admin("postgres").await).await == before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "pg_hba.conf never reloaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The probe's connection string, without its password (that comes from the environment).
    pub fn probe_dsn(&self, db: &str) -> String {
        format!(
            "postgres://{PROBE_ROLE}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.halt();
    }
}
