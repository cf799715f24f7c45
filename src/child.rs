//! Running a child program the way runner runs every command (a `command` probe, an alert's
//! action): no input, its own process group killed whole when done or at the timeout (so a
//! shell's background children go with it), output read up to a cap, and no group left
//! behind when runner exits ([`kill_running_commands`]).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What to do when a child writes more to standard output than is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExcess {
    /// Stop it: what it writes is its answer, and too much of it is an error.
    Kill,
    /// Read on and drop the rest, so the child is not blocked on a full pipe.
    Drain,
}

/// A child that ran to its end within the timeout.
#[derive(Debug)]
pub struct Ran {
    pub status: std::io::Result<ExitStatus>,
    /// `Err` with what was kept when it wrote more than the cap.
    pub stdout: Result<Vec<u8>, Vec<u8>>,
    /// Up to its cap; the rest is dropped.
    pub stderr: Vec<u8>,
}

/// Why a child has no [`Ran`].
#[derive(Debug)]
pub enum Failed {
    /// It could not be started.
    Start(std::io::Error),
    /// It ran past the timeout; its process group was killed. What it wrote until then (up
    /// to the caps), for a first line to say what it was doing.
    TimedOut { stdout: Vec<u8>, stderr: Vec<u8> },
}

/// How long output is still read once the command has exited, for what its background
/// children write; they are killed with its group then.
const AFTER_EXIT: Duration = Duration::from_millis(200);

/// Runs `command` under `timeout`, reading at most `max_stdout` and `max_stderr` bytes.
pub async fn run(
    command: &mut tokio::process::Command,
    timeout: Duration,
    max_stdout: usize,
    max_stderr: usize,
    on_excess: OnExcess,
) -> Result<Ran, Failed> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(Failed::Start)?;
    // Its pid is its process group's id (`process_group(0)`).
    let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let mut group = Group::new(pgid);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let on_too_much = match (on_excess, pgid) {
        (OnExcess::Kill, Some(pgid)) => Excess::Kill(pgid),
        _ => Excess::Drain,
    };
    // The buffers outlive the reads, so a timeout still has what was written before it.
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let run = async {
        let reads = async {
            tokio::join!(
                read_capped(stdout, max_stdout, on_too_much, &mut out_buf),
                read_capped(stderr, max_stderr, Excess::Drain, &mut err_buf),
            )
        };
        tokio::pin!(reads);
        tokio::select! {
            (out_cut, _) = &mut reads => (out_cut, child.wait().await),
            status = child.wait() => {
                // It has ended, but what it left in the background (`daemon &`) may hold its
                // output open: what it wrote is in the pipes already, so read briefly, then
                // stop reading (the group is killed below) instead of waiting for the timeout
                // and calling a command that exited a failure.
                let out_cut = match tokio::time::timeout(AFTER_EXIT, &mut reads).await {
                    Ok((out_cut, _)) => out_cut,
                    Err(_) => false,
                };
                (out_cut, status)
            }
        }
    };
    let (out_cut, status) = match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            group.kill();
            return Err(Failed::TimedOut {
                stdout: out_buf,
                stderr: err_buf,
            });
        }
    };
    let stdout = if out_cut { Err(out_buf) } else { Ok(out_buf) };
    let stderr = err_buf;
    // Whatever it started in the background goes with it.
    group.kill();
    Ok(Ran {
        status,
        stdout,
        stderr,
    })
}

enum Excess {
    Kill(i32),
    Drain,
}

/// Reads at most `max` bytes into `bytes`, a chunk at a time so that what was read is there
/// even when the read is cancelled (a timeout); `true` when there was more, which is cut.
async fn read_capped(
    source: Option<impl AsyncRead + Unpin>,
    max: usize,
    excess: Excess,
    bytes: &mut Vec<u8>,
) -> bool {
    let Some(mut source) = source else {
        return false;
    };
    let mut chunk = [0u8; 8192];
    loop {
        match source.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
        if bytes.len() > max {
            break;
        }
    }
    bytes.truncate(max);
    match excess {
        // SAFETY: killpg only sends a signal; a group that is gone is an error we ignore.
        Excess::Kill(pgid) => unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        },
        Excess::Drain => {
            let _ = tokio::io::copy(&mut source, &mut tokio::io::sink()).await;
        }
    }
    true
}

/// The child's process group, killed whole when the caller is done with it: a shell's own
/// children go with it, whatever happens to the caller (a timeout, a runner that stops).
struct Group(Option<i32>);

/// Process groups of commands running now, so that runner leaves none behind when it exits,
/// whatever its tasks were doing then ([`kill_running_commands`]).
static RUNNING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kills every child's process group still running: called on the way out.
pub fn kill_running_commands() {
    for pgid in running().drain(..) {
        // SAFETY: killpg only sends a signal; a group that is gone is an error we ignore.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

impl Group {
    fn new(pgid: Option<i32>) -> Group {
        running().extend(pgid);
        Group(pgid)
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            running().retain(|g| *g != pgid);
            // SAFETY: killpg only sends a signal; a group that is gone is an error we ignore.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that leaves a child in the background holding its output (`daemon &`) has
    /// ended when it exits: its exit and output are the answer, not a timeout, and the
    /// background child goes with its group.
    #[tokio::test]
    async fn a_background_child_holding_the_output_does_not_make_an_exit_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut command = tokio::process::Command::new("sh");
        command.args([
            "-c",
            &format!("sleep 300 & echo $! > {}; echo started", pid_file.display()),
        ]);
        let ran = run(
            &mut command,
            Duration::from_secs(60),
            1024,
            1024,
            OnExcess::Drain,
        )
        .await
        .expect("it exited; no timeout");
        assert!(ran.status.unwrap().success());
        assert_eq!(ran.stdout.unwrap(), b"started\n");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // Killed: gone once reaped, a zombie until then.
        for _ in 0..3000 {
            match std::fs::read_to_string(&stat) {
                Err(_) => return,
                Ok(text) if text.contains(") Z ") => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        panic!("the background child is still running");
    }
}
