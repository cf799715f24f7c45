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
            // Nothing runs that could be writing the renamed files, so nothing needs telling
            // (logrotate's `missingok`): a stopped daemon must not fail every rotation.
            Ok(pids) if pids.is_empty() => summary.skipped.push(format!(
                "postrotate: {}; no {name} sent",
                not_running(target)
            )),
            Ok(pids) => {
                for pid in pids {
                    // SAFETY: kill(2) only sends a signal; its result is checked.
                    if unsafe { libc::kill(pid, *signal) } == 0 {
                        info!(job, pid, signal = %name, "postrotate: signal sent");
                        continue;
                    }
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ESRCH) {
                        // A stale pid file: the process is gone, as above.
                        summary.skipped.push(format!(
                            "postrotate: process {pid}, {}; no {name} sent",
                            not_running(target)
                        ));
                    } else {
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

/// Whether process `pid` is named `name`. The kernel keeps only the first 15 bytes of a
/// program's name in `comm`, so a longer name (which could never match `comm`) is matched on
/// the file name of the command line's program, once `comm` agrees with its first 15 bytes.
fn is_named(pid: i32, name: &str) -> bool {
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    let comm = comm.trim_end_matches('\n');
    if comm == name {
        return true;
    }
    if comm.len() != 15 || !name.starts_with(comm) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let base = program.rsplit(|b| *b == b'/').next().unwrap_or_default();
        base == name.as_bytes()
    })
}

/// The log line's words for a target that is not running.
fn not_running(target: &SignalTarget) -> String {
    match target {
        SignalTarget::PidFile(path) => {
            format!("the process of pid file {} is not running", path.display())
        }
        SignalTarget::Process(name) => format!("no process named `{name}` is running"),
    }
}

/// The processes a signal goes to; none when the process is not running.
fn pids(target: &SignalTarget) -> Result<Vec<i32>, String> {
    match target {
        SignalTarget::PidFile(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                // Daemons remove their pid file when they stop.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(format!("cannot read pid file {}: {e}", path.display())),
            };
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
                .filter(|pid| is_named(*pid, name))
                .collect();
            Ok(found)
        }
    }
}
