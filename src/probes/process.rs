//! `process`: the processes matched by name, command line or pid file: how many, their CPU
//! (percent of one core), resident memory, threads, open files, and restarts (matched pids that
//! went away while others took their place since the last tick). No match: `count` is 0 and
//! the rest is absent.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::procfs::{ProcRoot, read_into};
use super::{Names, Output};
use crate::config::probes::ProcessMatch;
use crate::config::probes::process::TYPE;

/// What `/proc/<pid>/stat` says of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    pub rss_pages: u64,
    /// When it started, in clock ticks since boot.
    pub start_ticks: u64,
}

/// Fields of `/proc/<pid>/stat`, read after the command name (which may hold spaces and
/// parentheses, so the last `)` ends it).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3 of the man page, so man field N is fields[N - 3].
    let get = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        cpu_ticks: get(14)? + get(15)?,
        threads: get(20)?,
        rss_pages: get(24)?,
        start_ticks: get(22)?,
    })
}

pub struct ProcessProbe {
    root: ProcRoot,
    matcher: ProcessMatch,
    instance: String,
    names: Names,
    /// The previous reading: CPU ticks per pid, when it was taken, and the kernel's uptime
    /// then (in clock ticks, to compare with a process's start).
    prev: Option<(HashMap<u32, u64>, Instant, u64)>,
    buf: String,
    page_size: u64,
    ticks_per_sec: f64,
}

impl ProcessProbe {
    pub fn new(root: ProcRoot, matcher: ProcessMatch, instance: &str) -> Self {
        // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
        let (page, hz) = unsafe {
            (
                libc::sysconf(libc::_SC_PAGESIZE),
                libc::sysconf(libc::_SC_CLK_TCK),
            )
        };
        ProcessProbe {
            root,
            matcher,
            instance: instance.to_string(),
            names: Names::new("process"),
            prev: None,
            buf: String::new(),
            page_size: if page > 0 { page as u64 } else { 4096 },
            ticks_per_sec: if hz > 0 { hz as f64 } else { 100.0 },
        }
    }

    fn matching_pids(&mut self) -> Result<Vec<u32>, String> {
        let own = std::process::id();
        if let ProcessMatch::PidFile(path) = &self.matcher {
            let pid = match std::fs::read_to_string(path) {
                Ok(text) => text
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{} does not hold a pid", path.display()))?,
                // No pid file: the service is not running.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            let alive = self.root.proc.join(pid.to_string()).exists();
            return Ok(if alive { vec![pid] } else { Vec::new() });
        }
        let entries =
            std::fs::read_dir(&self.root.proc).map_err(|e| format!("cannot list /proc: {e}"))?;
        let mut pids = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == own {
                continue;
            }
            let dir = entry.path();
            let matched = match &self.matcher {
                ProcessMatch::Name(name) => {
                    read_into(&dir.join("comm"), &mut self.buf).is_ok()
                        && self.buf.trim_end_matches('\n') == name
                }
                ProcessMatch::Cmdline(re) => {
                    read_into(&dir.join("cmdline"), &mut self.buf).is_ok() && {
                        let line = self.buf.trim_end_matches('\0').replace('\0', " ");
                        !line.is_empty() && re.is_match(&line)
                    }
                }
                ProcessMatch::PidFile(_) => false,
            };
            if matched {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// The kernel's uptime in clock ticks, the clock of a process's start time.
    fn uptime_ticks(&mut self) -> Option<u64> {
        read_into(&self.root.proc.join("uptime"), &mut self.buf).ok()?;
        let secs: f64 = self.buf.split_whitespace().next()?.parse().ok()?;
        Some((secs * self.ticks_per_sec) as u64)
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        // Before listing: a process that starts after this reading is new to the next tick.
        let uptime = self.uptime_ticks();
        let pids = self.matching_pids()?;
        let at = Instant::now();
        let mut started: HashMap<u32, u64> = HashMap::new();
        let names = self.names.get(&self.instance, TYPE.fields);
        let mut cpu: HashMap<u32, u64> = HashMap::new();
        let (mut rss, mut threads, mut fds, mut fds_readable) = (0u64, 0u64, 0u64, true);
        for &pid in &pids {
            let dir = self.root.proc.join(pid.to_string());
            // A process may exit between listing and reading: it is simply not counted.
            if read_into(&dir.join("stat"), &mut self.buf).is_err() {
                continue;
            }
            let Some(stat) = parse_stat(&self.buf) else {
                continue;
            };
            cpu.insert(pid, stat.cpu_ticks);
            started.insert(pid, stat.start_ticks);
            rss += stat.rss_pages * self.page_size;
            threads += stat.threads;
            match count_fds(&dir) {
                Some(n) => fds += n,
                None => fds_readable = false,
            }
        }
        out.push(&names[0], cpu.len() as f64);
        if !cpu.is_empty() {
            out.push(&names[2], rss as f64);
            out.push(&names[3], threads as f64);
            if fds_readable {
                out.push(&names[4], fds as f64);
            } else {
                out.error(
                    format!("process.{}.open_fds", self.instance),
                    "open files of another user's process need root (or CAP_SYS_PTRACE)"
                        .to_string(),
                );
            }
        }
        if let Some((prev, prev_at, prev_uptime)) = &self.prev {
            let secs = at.duration_since(*prev_at).as_secs_f64();
            // CPU used in the interval: what each pid added since the last reading; a pid
            // that started since then used all it has within the interval. A pid whose share
            // of the interval cannot be known (it existed before but was not matched) leaves
            // the value absent rather than make one up.
            let used: Option<u64> = cpu
                .iter()
                .map(|(pid, now)| match prev.get(pid) {
                    Some(before) => now.checked_sub(*before),
                    None if started.get(pid).is_some_and(|s| *s >= *prev_uptime) => Some(*now),
                    None => None,
                })
                .sum();
            if let Some(used) = used
                && !cpu.is_empty()
                && secs > 0.0
            {
                out.push(&names[1], used as f64 / self.ticks_per_sec / secs * 100.0);
            }
            let gone = prev.keys().filter(|p| !cpu.contains_key(p)).count();
            let new = cpu.keys().filter(|p| !prev.contains_key(p)).count();
            if !cpu.is_empty() {
                out.push(&names[5], gone.min(new) as f64);
            }
        }
        self.prev = uptime.map(|uptime| (cpu, at, uptime));
        Ok(())
    }
}

fn count_fds(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir.join("fd"))
        .ok()
        .map(|d| d.count() as u64)
}

impl super::Read for ProcessProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_name() {
        let text = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 500 0 0 0 120 30 0 0 20 0 7 0 100 12345678 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                cpu_ticks: 150,
                threads: 7,
                rss_pages: 2048,
                start_ticks: 100,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }
}
