//! `cpu`: usage in total and per core, its user/system/iowait/steal split, and CPU pressure;
//! and the kernel's counters of CPU time by mode (`total` only, in seconds) for `rate()`.

use std::time::Instant;

use super::procfs::{PressureFile, ProcFile, ProcRoot};
use super::{Names, Output};
use crate::config::probes::Field;
use crate::config::probes::cpu::TYPE;

/// The description lists the totals' fields first, then pressure's; cores have the first.
fn total_fields() -> &'static [Field] {
    &TYPE.fields[..5]
}

fn core_fields() -> &'static [Field] {
    &TYPE.fields[..1]
}

fn pressure_fields() -> &'static [Field] {
    &TYPE.fields[5..6]
}

/// `user_seconds_total` ... `steal_seconds_total`, in `CpuTimes`' order.
fn counter_fields() -> &'static [Field] {
    &TYPE.fields[6..]
}

/// One line of `/proc/stat`, in clock ticks since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

/// Shares of the time between two readings, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuShares {
    pub usage: f64,
    pub user: f64,
    pub system: f64,
    pub iowait: f64,
    pub steal: f64,
}

impl CpuTimes {
    /// The shares of the interval since `prev`, or `None` when no time was counted.
    ///
    /// Each field's growth is taken on its own and clamped at zero: the kernel's iowait is
    /// known to step backwards on tickless kernels, and one such field must not void the rest.
    pub fn shares_since(&self, prev: &CpuTimes) -> Option<CpuShares> {
        let d = |now: u64, before: u64| now.saturating_sub(before) as f64;
        let user = d(self.user, prev.user) + d(self.nice, prev.nice);
        let system =
            d(self.system, prev.system) + d(self.irq, prev.irq) + d(self.softirq, prev.softirq);
        let idle = d(self.idle, prev.idle);
        let iowait = d(self.iowait, prev.iowait);
        let steal = d(self.steal, prev.steal);
        let total = user + system + idle + iowait + steal;
        if total <= 0.0 {
            return None;
        }
        let pct = |x: f64| x / total * 100.0;
        Some(CpuShares {
            usage: pct(user + system + steal),
            user: pct(user),
            system: pct(system),
            iowait: pct(iowait),
            steal: pct(steal),
        })
    }
}

/// `cpu` and `cpuN` lines of `/proc/stat`: the total first, then each core in order.
pub fn parse_stat(text: &str) -> Option<(CpuTimes, Vec<CpuTimes>)> {
    let mut total = None;
    let mut cores = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            if total.is_some() {
                break;
            }
            continue;
        };
        let mut parts = rest.split_whitespace();
        let label = if rest.starts_with(' ') {
            ""
        } else {
            parts.next()?
        };
        let mut v = [0u64; 8];
        for slot in &mut v {
            *slot = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        }
        let times = CpuTimes {
            user: v[0],
            nice: v[1],
            system: v[2],
            idle: v[3],
            iowait: v[4],
            irq: v[5],
            softirq: v[6],
            steal: v[7],
        };
        if label.is_empty() {
            total = Some(times);
        } else {
            cores.push(times);
        }
    }
    total.map(|t| (t, cores))
}

pub struct CpuProbe {
    stat: ProcFile,
    pressure: PressureFile,
    per_core: bool,
    prev: Option<(CpuTimes, Vec<CpuTimes>, Instant)>,
    names: Names,
    /// The counters' names: `total` has them beside its shares, so a cache of their own.
    counter_names: Names,
    /// Clock ticks per second, the unit of `/proc/stat`.
    ticks_per_sec: f64,
    buf: String,
}

impl CpuProbe {
    pub fn new(root: ProcRoot, per_core: bool) -> Self {
        CpuProbe {
            stat: ProcFile::new(root.proc.join("stat")),
            pressure: PressureFile::new(&root, "cpu"),
            per_core,
            prev: None,
            names: Names::new("cpu"),
            counter_names: Names::new("cpu"),
            ticks_per_sec: {
                // SAFETY: sysconf has no preconditions; it returns -1 on error, handled here.
                let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
                if hz > 0 { hz as f64 } else { 100.0 }
            },
            buf: String::new(),
        }
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        self.stat.read_required(&mut self.buf)?;
        let (total, cores) =
            parse_stat(&self.buf).ok_or("no `cpu` line in /proc/stat".to_string())?;
        let names = self.counter_names.get("total", counter_fields());
        for (name, ticks) in names.iter().zip([
            total.user,
            total.nice,
            total.system,
            total.idle,
            total.iowait,
            total.irq,
            total.softirq,
            total.steal,
        ]) {
            out.push(name, ticks as f64 / self.ticks_per_sec);
        }
        // The first reading is the average since boot: keep it only as the baseline.
        if let Some((prev_total, prev_cores, _)) = &self.prev {
            if let Some(s) = total.shares_since(prev_total) {
                let names = self.names.get("total", total_fields());
                for (name, value) in names
                    .iter()
                    .zip([s.usage, s.user, s.system, s.iowait, s.steal])
                {
                    out.push(name, value);
                }
            }
            if self.per_core {
                for (i, (now, before)) in cores.iter().zip(prev_cores).enumerate() {
                    if let Some(s) = now.shares_since(before) {
                        let names = self.names.get(&format!("core{i}"), core_fields());
                        out.push(&names[0], s.usage);
                    }
                }
            }
        }
        self.prev = Some((total, cores, Instant::now()));
        if let Some(avg10) = self.pressure.some_avg10(&mut self.buf) {
            let names = self.names.get("pressure", pressure_fields());
            out.push(&names[0], avg10);
        }
        Ok(())
    }
}

impl super::Read for CpuProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str = "cpu  100 0 50 800 40 0 10 0 0 0\ncpu0 60 0 30 400 20 0 5 0 0 0\ncpu1 40 0 20 400 20 0 5 0 0 0\nintr 123\n";
    const STAT_2: &str = "cpu  300 0 90 1300 60 0 10 40 0 0\ncpu0 250 0 60 420 20 0 5 20 0 0\ncpu1 50 0 30 880 40 0 5 20 0 0\nintr 456\n";

    #[test]
    fn parses_total_and_cores() {
        let (total, cores) = parse_stat(STAT_1).unwrap();
        assert_eq!(total.user, 100);
        assert_eq!(total.iowait, 40);
        assert_eq!(cores.len(), 2);
        assert_eq!(cores[1].idle, 400);
    }

    #[test]
    fn shares_of_the_interval() {
        let (t1, c1) = parse_stat(STAT_1).unwrap();
        let (t2, c2) = parse_stat(STAT_2).unwrap();
        // Growth: user 200, system 40, idle 500, iowait 20, steal 40 = 800.
        let s = t2.shares_since(&t1).unwrap();
        assert_eq!(s.user, 25.0);
        assert_eq!(s.system, 5.0);
        assert_eq!(s.iowait, 2.5);
        assert_eq!(s.steal, 5.0);
        assert_eq!(s.usage, 35.0);
        // core0 grew user 190 system 30 idle 20 steal 20 = 260: busy 240.
        let core0 = c2[0].shares_since(&c1[0]).unwrap();
        assert!((core0.usage - 240.0 / 260.0 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn iowait_stepping_back_does_not_void_the_tick() {
        let before = CpuTimes {
            user: 10,
            idle: 10,
            iowait: 50,
            ..Default::default()
        };
        let after = CpuTimes {
            user: 20,
            idle: 20,
            iowait: 45,
            ..Default::default()
        };
        let s = after.shares_since(&before).unwrap();
        assert_eq!(s.usage, 50.0);
        assert_eq!(s.iowait, 0.0);
        assert_eq!(after.shares_since(&after), None);
    }
}
