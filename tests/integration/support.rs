//! Helpers shared by the integration tests: running the real binary and waiting on it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long a test waits for something that will happen before it calls it a hang. Generous:
/// passing tests return as soon as it happens, and a busy CI machine is slow.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn runner_bin() -> &'static str {
    env!("CARGO_BIN_EXE_runner")
}

/// The crate root, so fixtures are named the way a user would type them.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `runner ARGS` from the crate root with a clean notifier environment.
pub fn run(args: &[&str]) -> Output {
    command(args).output().expect("runner runs")
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(runner_bin());
    cmd.args(args)
        .current_dir(root())
        .env_remove("RUNNER_JOBS")
        .env_remove("RUNNER_LISTEN")
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("SERVICENOW_INSTANCE")
        .env_remove("SERVICENOW_USER")
        .env_remove("SERVICENOW_PASSWORD");
    cmd
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes a jobs file into `dir` whose `data_dir` is `dir/var`.
pub fn jobs_file(dir: &Path, body: &str) -> PathBuf {
    let file = dir.join("jobs.yaml");
    std::fs::write(&file, format!("data_dir: var\n{body}")).expect("write jobs file");
    file
}

/// A runner in the background whose stderr lines arrive on a channel.
pub struct Running {
    pub child: Child,
    pub lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runner starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`; panics with all lines seen on timeout.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {needle:?} within {timeout:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the exit and returns the code and how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "runner did not exit within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
