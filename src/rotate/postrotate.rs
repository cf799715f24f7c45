//! The step after renames that tells writers to reopen their logs (logrotate's
//! `postrotate`): a command run without a shell, or a signal to the pid in a file or to every
//! process of a name. Its failure is a problem of the run; the rotation still goes on, and a
//! writer that did not reopen keeps the renamed file busy, so it waits for a later run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::info;

use super::Summary;
use crate::config::{Postrotate, SignalTarget};

/// How long a postrotate command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(job: &str, postrotate: &Postrotate, summary: &mut Summary) {
    match postrotate {
        Postrotate::Command(argv) => match command(argv) {
            Ok(()) => info!(job, command = %argv.join(" "), "postrotate command done"),
            Err(e) => summary
                .problems
                .push(format!("postrotate `{}`: {e}", argv.join(" "))),
        },
        Postrotate::Signal {
            signal,
            name,
            target,
        } => match pids(target) {
            Ok(pids) => {
                for pid in pids {
                    // SAFETY: kill(2) only sends a signal; its result is checked.
                    if unsafe { libc::kill(pid, *signal) } == 0 {
                        info!(job, pid, signal = %name, "postrotate: signal sent");
                    } else {
                        let e = std::io::Error::last_os_error();
                        summary
                            .problems
                            .push(format!("postrotate: cannot send {name} to {pid}: {e}"));
                    }
                }
            }
            Err(e) => summary.problems.push(format!("postrotate: {e}")),
        },
    }
}

fn command(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no program")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut said = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut said);
                }
                let said = said
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>();
                return Err(format!(
                    "{status}{}{said}",
                    if said.is_empty() { "" } else { ": " }
                ));
            }
            Ok(None) if started.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not finish within {} s and was killed",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The processes a signal goes to.
fn pids(target: &SignalTarget) -> Result<Vec<i32>, String> {
    match target {
        SignalTarget::PidFile(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?;
            let pid = text
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("pid file {} holds no pid", path.display()))?;
            Ok(vec![pid])
        }
        SignalTarget::Process(name) => {
            let found: Vec<i32> = std::fs::read_dir("/proc")
                .map_err(|e| e.to_string())?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim_end() == name)
                })
                .collect();
            if found.is_empty() {
                return Err(format!("no process named `{name}` to signal"));
            }
            Ok(found)
        }
    }
}
