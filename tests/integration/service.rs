//! Running under systemd: `runner reload` waits for the scheduler's answer and fails on a
//! refusal, the notification socket hears `RELOADING=1`/`READY=1` and the watchdog's
//! `WATCHDOG=1`, and log lines carry syslog priorities when stderr is the journal's stream.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use runner::scheduler::Scheduler;
use runner::scheduler::clock::{SharedClock, VirtualClock};
use runner::scheduler::schedule::Zone;
use tokio_util::sync::CancellationToken;

use crate::support::{PATIENCE, Running, command, run, stderr, stdout};

/// A stand-in for systemd's notification socket: every datagram runner sends, in order.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    messages: Receiver<String>,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        NotifySocket {
            _dir: dir,
            path,
            messages,
            seen: Vec::new(),
        }
    }

    /// The next message that satisfies `wanted`, skipping others (watchdog pings come between).
    fn next(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.messages.recv_timeout(left) {
                Ok(message) => {
                    self.seen.push(message.clone());
                    if wanted(&message) {
                        return message;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no {what} message; saw: {:?}", self.seen);
    }
}

fn write_jobs(dir: &Path, listen: &str) {
    std::fs::write(
        dir.join("jobs.yaml"),
        format!(
            "data_dir: var\nlisten: {listen}\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: memory }}]\n    rules: [r.rhai]\n    notify: [log]\n"
        ),
    )
    .unwrap();
}

const RULE: &str = r#"alert("high", #{ severity: "info", value: memory.used_percent, threshold: 101, op: ">=", summary: "high" });"#;

fn reload_msg(m: &str) -> bool {
    m.contains("RELOADING=1")
}

fn ready_msg(m: &str) -> bool {
    m.contains("READY=1")
}

#[test]
fn runner_reload_waits_for_the_answer_and_fails_when_the_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), "127.0.0.1:0");
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    let file = dir.path().join("jobs.yaml");
    let jobs = file.to_str().unwrap();
    let mut notify = NotifySocket::bind();
    let mut cmd = command(&["--jobs", jobs]);
    cmd.env("NOTIFY_SOCKET", &notify.path);
    let mut running = Running::spawn(cmd);
    let started = notify.next("READY=1", ready_msg);
    assert!(started.contains("STATUS=1 job scheduled"), "{started}");
    let serving = running.wait_for_line("serving the status page", PATIENCE);
    let url = serving
        .split("url=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // A rule that does not compile: refused, with the place, and the exit says so.
    std::fs::write(
        dir.path().join("r.rhai"),
        r#"alert("high", #{ severity: "info", value: memory.nope, threshold: 1, op: ">=", summary: "x" });"#,
    )
    .unwrap();
    let output = run(&["reload", "--jobs", jobs]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("reload refused (1 problem); the running configuration stays"),
        "{said}"
    );
    assert!(
        said.contains("r.rhai:1"),
        "the problem with its place: {said}"
    );
    // systemd hears the reload begin, with the monotonic time it asks for, then end.
    let reloading = notify.next("RELOADING=1", reload_msg);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    let ready = notify.next("READY=1", ready_msg);
    assert!(
        ready.contains("STATUS=reload refused (1 problem)"),
        "{ready}"
    );

    // `listen` changed: refused, naming the setting and where the page stays.
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    write_jobs(dir.path(), "127.0.0.1:1");
    let output = run(&["reload", "--jobs", jobs]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("`listen` changed from 127.0.0.1:0 to 127.0.0.1:1: that needs a restart")
            && said.contains(&format!(
                "the status page and /metrics stay on {url} until then"
            )),
        "{said}"
    );
    notify.next("RELOADING=1", reload_msg);
    notify.next("READY=1", ready_msg);

    // A sound change goes in, and the command says so.
    write_jobs(dir.path(), "127.0.0.1:0");
    let output = run(&["reload", "--jobs", jobs]);
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("reloaded: 1 job kept, 0 changed or added, 0 removed"),
        "{said}"
    );
    notify.next("RELOADING=1", reload_msg);
    let ready = notify.next("READY=1", ready_msg);
    assert!(ready.contains("STATUS=reloaded: 1 job kept"), "{ready}");

    running.signal("TERM");
    notify.next("STOPPING=1", |m| m.contains("STOPPING=1"));
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn runner_reload_gives_up_with_a_message_when_the_scheduler_does_not_answer() {
    // A process holding the scheduler's lock that ignores SIGHUP: no answer ever comes.
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), "127.0.0.1:0");
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    let lock = dir.path().join("var/state/runner.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let mut holder = Command::new("sh")
        .args([
            "-c",
            &format!(
                "trap '' HUP; exec 9>>{0}; flock 9; echo $$ > {0}; echo locked; exec sleep 600",
                lock.display()
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let output = run(&[
        "reload",
        "--wait",
        "300ms",
        "--jobs",
        dir.path().join("jobs.yaml").to_str().unwrap(),
    ]);
    let _ = holder.kill();
    let _ = holder.wait();
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "the scheduler (pid {}) did not say how the reload went within 0.3s",
            holder.id()
        )),
        "{said}"
    );
}

#[test]
fn the_watchdog_is_pinged_while_the_scheduler_runs_and_only_by_its_own_process() {
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), "127.0.0.1:0");
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    let jobs = dir.path().join("jobs.yaml");
    let mut notify = NotifySocket::bind();
    let mut cmd = command(&["--jobs", jobs.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000");
    let mut running = Running::spawn(cmd);
    notify.next("READY=1", ready_msg);
    for _ in 0..3 {
        notify.next("WATCHDOG=1", |m| m == "WATCHDOG=1");
    }
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));

    // WATCHDOG_PID names another process (runner was started by a wrapper): not ours to ping.
    let mut notify = NotifySocket::bind();
    let mut cmd = command(&["--jobs", jobs.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1");
    let mut running = Running::spawn(cmd);
    notify.next("READY=1", ready_msg);
    running.signal("HUP");
    notify.next("READY=1 after the reload", ready_msg);
    running.signal("TERM");
    notify.next("STOPPING=1", |m| m.contains("STOPPING=1"));
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
    assert!(
        !notify.seen.iter().any(|m| m.contains("WATCHDOG")),
        "{:?}",
        notify.seen
    );
}

async fn next_ping(pings: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(PATIENCE, pings.recv())
        .await
        .expect("a ping")
        .expect("the scheduler runs");
}

#[tokio::test]
async fn watchdog_pings_keep_their_cadence_on_the_scheduler_clock_through_a_reload() {
    let clock = VirtualClock::new(chrono::Utc::now());
    let shared: SharedClock = clock.clone();
    let (tx, mut pings) = tokio::sync::mpsc::unbounded_channel();
    let scheduler = Scheduler::new(shared, Zone::parse("UTC").unwrap(), Vec::new()).with_watchdog(
        Duration::from_secs(10),
        Arc::new(move || {
            let _ = tx.send(());
        }),
    );
    let stop = CancellationToken::new();
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::spawn(scheduler.run_reloadable(stop.clone(), Duration::ZERO, reloads));
    next_ping(&mut pings).await;
    let settle = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    };
    settle().await;
    clock.advance(Duration::from_secs(9));
    settle().await;
    assert!(pings.try_recv().is_err(), "no ping before the interval");
    clock.advance(Duration::from_secs(1));
    next_ping(&mut pings).await;
    // A reload half-way does not push the next ping back.
    clock.advance(Duration::from_secs(5));
    reload.send(Vec::new()).unwrap();
    settle().await;
    assert!(pings.try_recv().is_err());
    clock.advance(Duration::from_secs(5));
    next_ping(&mut pings).await;
    settle().await;
    assert!(pings.try_recv().is_err(), "one ping per interval");
    stop.cancel();
    handle.await.unwrap();
}

/// A pipe for a child's stderr, and its `device:inode` as systemd puts it in `JOURNAL_STREAM`.
fn journal_pipe() -> (std::io::PipeReader, std::io::PipeWriter, String) {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let (reader, writer) = std::io::pipe().unwrap();
    let meta = std::fs::File::from(writer.as_fd().try_clone_to_owned().unwrap())
        .metadata()
        .unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    (reader, writer, stream)
}

/// Runs the scheduler with `-v` on a jobs file, breaks the file and sends SIGHUP (an error and
/// a warning), stops it, and returns every stderr line.
fn log_lines(journal: impl Fn(&str) -> Option<String>, format: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), "127.0.0.1:0");
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    let file = dir.path().join("jobs.yaml");
    let mut cmd = command(&[
        "-v",
        "--log-format",
        format,
        "--jobs",
        file.to_str().unwrap(),
    ]);
    // The stream is known only once the pipe exists: set it through a wrapper shell.
    cmd.env_remove("JOURNAL_STREAM");
    let (reader, writer, stream) = journal_pipe();
    if let Some(value) = journal(&stream) {
        cmd.env("JOURNAL_STREAM", value);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer))
        .spawn()
        .unwrap();
    drop(cmd);
    // Killed if the test fails half-way.
    let mut child = KillOnDrop(child);
    let pid = child.0.id().to_string();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |needle: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = lines.recv_timeout(left) else {
                break;
            };
            seen.push(line.clone());
            if line.contains(needle) {
                return;
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", seen.join("\n"));
    };
    wait_for("run started", &mut seen);
    std::fs::write(&file, "data_dir: var\njobs:\n  m: { type: monitr }\n").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_for("the running configuration stays", &mut seen);
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    child.0.wait().unwrap();
    seen.extend(lines.iter());
    seen
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
}

#[test]
fn log_lines_carry_syslog_priorities_only_when_stderr_is_the_journal() {
    let lines = log_lines(|stream| Some(stream.to_string()), "human");
    assert!(
        line_with(&lines, "runner starting").starts_with("<6>"),
        "{lines:#?}"
    );
    assert!(
        line_with(&lines, "run started").starts_with("<7>"),
        "{lines:#?}"
    );
    assert!(
        line_with(&lines, "reload refused").starts_with("<3>"),
        "{lines:#?}"
    );
    assert!(
        line_with(&lines, "the running configuration stays").starts_with("<4>"),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l.starts_with('<')), "{lines:#?}");

    // JSON lines too: journald takes the prefix off and stores the object, `level` and all.
    let lines = log_lines(|stream| Some(stream.to_string()), "json");
    let refused = line_with(&lines, "reload refused");
    let object = refused
        .strip_prefix("<3>")
        .unwrap_or_else(|| panic!("{refused}"));
    let value: serde_json::Value = serde_json::from_str(object).unwrap();
    assert_eq!(value["level"], "ERROR", "{object}");

    // Not the journal: no variable, or one naming another stream (inherited by a child whose
    // stderr was redirected).
    for journal in [None, Some("1:1".to_string())] {
        let lines = log_lines(|_| journal.clone(), "human");
        line_with(&lines, "reload refused");
        assert!(
            !lines.iter().any(|l| l.starts_with('<')),
            "{journal:?}: {lines:#?}"
        );
    }
}

#[test]
fn the_units_exec_reload_fails_when_the_scheduler_refuses_and_the_unit_asks_for_a_watchdog() {
    let unit = std::fs::read_to_string(crate::support::root().join("dist/runner.service")).unwrap();
    assert!(
        unit.lines().any(|l| l.starts_with("WatchdogSec=")),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), "127.0.0.1:0");
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    let file = dir.path().join("jobs.yaml");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecReload="))
        .expect("an ExecReload line");
    let args: Vec<String> = line
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == "/etc/runner/jobs/jobs.yaml" {
                file.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = Running::spawn(command(&["--jobs", file.to_str().unwrap()]));
    running.wait_for_line("job scheduled", PATIENCE);
    std::fs::write(dir.path().join("r.rhai"), "alert(").unwrap();
    let output = run(&args);
    assert_eq!(output.status.code(), Some(1), "{line}: {}", stderr(&output));
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    let output = run(&args);
    assert_eq!(output.status.code(), Some(0), "{line}: {}", stderr(&output));
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn a_commands_error_line_carries_the_error_priority_on_the_journal() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    write_jobs(dir.path(), "127.0.0.1:0");
    std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
    let file = dir.path().join("jobs.yaml");
    let (mut reader, writer, stream) = journal_pipe();
    let mut cmd = command(&["reload", "--jobs", file.to_str().unwrap()]);
    cmd.env("JOURNAL_STREAM", &stream)
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer));
    let status = cmd.status().unwrap();
    drop(cmd);
    let mut said = String::new();
    reader.read_to_string(&mut said).unwrap();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.starts_with("<3>error: no scheduler runs on"), "{said}");
}

#[test]
fn a_changed_listen_auth_is_refused_as_needing_a_restart_and_the_old_token_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let jobs_with = |var: &str| {
        format!(
            "data_dir: var\nlisten: 127.0.0.1:0\nlisten_auth: {{ bearer_token: \"${{{var}}}\" }}\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{{ type: memory }}]\n"
        )
    };
    let file = dir.path().join("jobs.yaml");
    std::fs::write(&file, jobs_with("TOKEN_OLD")).unwrap();
    let jobs = file.to_str().unwrap();
    let tokens = [("TOKEN_OLD", "old-Tok3n"), ("TOKEN_NEW", "new-Tok3n")];
    let mut cmd = command(&["--jobs", jobs]);
    cmd.envs(tokens);
    let mut running = Running::spawn(cmd);
    let serving = running.wait_for_line("serving the status page", PATIENCE);
    let address = serving
        .split("url=http://")
        .nth(1)
        .unwrap()
        .split(['/', ' '])
        .next()
        .unwrap()
        .to_string();
    // A token that leaked is replaced in the file: the listener would keep the old one.
    std::fs::write(&file, jobs_with("TOKEN_NEW")).unwrap();
    let output = command(&["reload", "--jobs", jobs])
        .envs(tokens)
        .output()
        .unwrap();
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("`listen_auth` changed: that needs a restart"),
        "{said}"
    );
    assert!(!said.contains("Tok3n"), "no token is shown: {said}");
    let status = |token: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    assert_eq!(
        status("old-Tok3n"),
        "200",
        "what the listener still asks for"
    );
    assert_eq!(status("new-Tok3n"), "401");
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}
