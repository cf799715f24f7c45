//! `load`: the kernel's 1, 5 and 15 minute load averages, and the 1 minute one per CPU.

use super::procfs::{self, ProcFile, ProcRoot};
use super::{Names, Output};
use crate::config::probes::load::TYPE;

pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().ok());
    Some([parts.next()??, parts.next()??, parts.next()??])
}

/// CPUs in a `/sys/devices/system/cpu/online` list such as `0-3,6,8-9`.
pub fn count_cpu_list(text: &str) -> Option<usize> {
    let mut count = 0;
    for part in text.trim().split(',') {
        count += match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (first.parse::<usize>().ok()?, last.parse::<usize>().ok()?);
                last.checked_sub(first)? + 1
            }
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    (count > 0).then_some(count)
}

pub struct LoadProbe {
    loadavg: ProcFile,
    /// Read each tick (CPUs go on- and offline) from the `--sys-root` tree, so a containerised
    /// runner divides by its host's CPUs; libc's `sysconf` would read this process's `/sys`.
    cpus_online: ProcFile,
    names: Names,
    buf: String,
}

impl LoadProbe {
    pub fn new(root: ProcRoot) -> Self {
        LoadProbe {
            loadavg: ProcFile::new(root.proc.join("loadavg")),
            cpus_online: ProcFile::new(root.sys.join("devices/system/cpu/online")),
            names: Names::new("load"),
            buf: String::new(),
        }
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        self.loadavg.read_required(&mut self.buf)?;
        let [l1, l5, l15] = parse_loadavg(&self.buf).ok_or("cannot parse /proc/loadavg")?;
        let names = self.names.get_flat(TYPE.fields);
        out.push(&names[0], l1);
        out.push(&names[1], l5);
        out.push(&names[2], l15);
        let cpus = match self.cpus_online.read(&mut self.buf) {
            Ok(()) => count_cpu_list(&self.buf),
            Err(_) => None,
        };
        let cpus = cpus.unwrap_or_else(procfs::online_cpus);
        out.push(&names[3], l1 / cpus as f64);
        Ok(())
    }
}

impl super::Read for LoadProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_online_cpu_list_and_refuses_what_is_not_one() {
        assert_eq!(count_cpu_list("0\n"), Some(1));
        assert_eq!(count_cpu_list("0-3\n"), Some(4));
        assert_eq!(count_cpu_list("0-3,6,8-9\n"), Some(7));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("0-x"), None);
    }

    #[test]
    fn parses_loadavg() {
        assert_eq!(
            parse_loadavg("0.52 0.58 1.59 1/467 12345\n"),
            Some([0.52, 0.58, 1.59])
        );
        assert_eq!(parse_loadavg("x"), None);
    }
}
