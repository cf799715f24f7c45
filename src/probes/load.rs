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
            Ok(()) => count_cpu_list(&self.buf).ok_or_else(|| "not a CPU list".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let cpus = cpus.unwrap_or_else(|e| {
            let own = procfs::online_cpus();
            // The fallback is this process's view (a container's share), not the host's:
            // said once, as a per-core load divided by the wrong count looks plausible.
            if procfs::first_time(self.cpus_online.path()) {
                tracing::warn!(
                    path = %self.cpus_online.path().display(),
                    "cannot read the online CPUs ({e}): load1_per_core divides by the {own} CPUs of this process's view, not the host's; point --sys-root or HOST_SYS at the host's /sys"
                );
            }
            own
        });
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
    fn a_sys_root_without_the_online_cpus_is_said_once_and_still_divides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("loadavg"), "2.0 1.0 0.5 1/100 42\n").unwrap();
        let root = ProcRoot {
            proc: dir.path().to_path_buf(),
            sys: dir.path().join("sys"),
        };
        let mut probe = LoadProbe::new(root);
        let mut out = Output::default();
        probe.collect(&mut out).unwrap();
        let per_core = out
            .metrics
            .iter()
            .find(|(n, _)| &**n == "load.load1_per_core")
            .map(|(_, v)| *v);
        assert_eq!(per_core, Some(2.0 / procfs::online_cpus() as f64));
        // Said already (at start, by the probe's construction): not again at the tick.
        assert!(!procfs::first_time(
            &dir.path().join("sys/devices/system/cpu/online")
        ));
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
