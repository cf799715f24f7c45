//! `memory`: used and available memory, swap use and swapping, major faults, memory pressure.

use std::time::Instant;

use super::procfs::{PressureFile, ProcFile, ProcRoot, field_u64};
use super::rate::{Reading, per_sec};
use super::{Names, Output};
use crate::config::probes::memory::TYPE;

/// What `/proc/meminfo` says, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemInfo {
    pub fn parse(text: &str) -> Option<MemInfo> {
        let kib = |key| field_u64(text, key).map(|v| v * 1024);
        Some(MemInfo {
            total: kib("MemTotal")?,
            available: kib("MemAvailable")?,
            swap_total: kib("SwapTotal").unwrap_or(0),
            swap_free: kib("SwapFree").unwrap_or(0),
        })
    }

    /// Memory in use as the kernel sees it: what is not available to a new program.
    pub fn used_percent(&self) -> Option<f64> {
        (self.total > 0)
            .then(|| self.total.saturating_sub(self.available) as f64 / self.total as f64 * 100.0)
    }

    /// `None` without swap: 0 % of nothing is not a measurement.
    pub fn swap_used_percent(&self) -> Option<f64> {
        (self.swap_total > 0).then(|| {
            self.swap_total.saturating_sub(self.swap_free) as f64 / self.swap_total as f64 * 100.0
        })
    }
}

#[derive(Clone, Copy)]
struct PagingCounters {
    swap_in: Reading,
    swap_out: Reading,
    major_faults: Reading,
}

pub struct MemoryProbe {
    meminfo: ProcFile,
    vmstat: ProcFile,
    pressure: PressureFile,
    prev: Option<PagingCounters>,
    names: Names,
    buf: String,
}

impl MemoryProbe {
    pub fn new(root: ProcRoot) -> Self {
        MemoryProbe {
            meminfo: ProcFile::new(root.proc.join("meminfo")),
            vmstat: ProcFile::new(root.proc.join("vmstat")),
            pressure: PressureFile::new(&root, "memory"),
            prev: None,
            names: Names::new("memory"),
            buf: String::new(),
        }
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        self.meminfo.read_required(&mut self.buf)?;
        let info = MemInfo::parse(&self.buf)
            .ok_or("/proc/meminfo lacks MemTotal or MemAvailable".to_string())?;
        let names = self.names.get_flat(TYPE.fields);
        if let Some(v) = info.used_percent() {
            out.push(&names[0], v);
        }
        out.push(&names[1], info.available as f64);
        out.push(&names[2], info.total as f64);
        if let Some(v) = info.swap_used_percent() {
            out.push(&names[3], v);
        }

        self.vmstat.read_required(&mut self.buf)?;
        let at = Instant::now();
        let counter = |key| field_u64(&self.buf, key).map(|value| Reading { value, at });
        if let (Some(swap_in), Some(swap_out), Some(major_faults)) =
            (counter("pswpin"), counter("pswpout"), counter("pgmajfault"))
        {
            let now = PagingCounters {
                swap_in,
                swap_out,
                major_faults,
            };
            let prev = self.prev.replace(now);
            for (name, counter) in names[8..11].iter().zip([swap_in, swap_out, major_faults]) {
                out.push(name, counter.value as f64);
            }
            for (name, before, after) in [
                (&names[4], prev.map(|p| p.swap_in), now.swap_in),
                (&names[5], prev.map(|p| p.swap_out), now.swap_out),
                (&names[6], prev.map(|p| p.major_faults), now.major_faults),
            ] {
                if let Some(rate) = per_sec(before, after) {
                    out.push(name, rate);
                }
            }
        }
        if let Some(avg10) = self.pressure.some_avg10(&mut self.buf) {
            out.push(&names[7], avg10);
        }
        Ok(())
    }
}

impl super::Read for MemoryProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_and_swap_percent() {
        let info = MemInfo::parse(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\nSwapTotal: 400 kB\nSwapFree: 300 kB\n",
        )
        .unwrap();
        assert_eq!(info.total, 1_024_000);
        assert_eq!(info.used_percent(), Some(75.0));
        assert_eq!(info.swap_used_percent(), Some(25.0));
        let no_swap =
            MemInfo::parse("MemTotal: 1000 kB\nMemAvailable: 1000 kB\nSwapTotal: 0 kB\n").unwrap();
        assert_eq!(no_swap.swap_used_percent(), None);
        assert_eq!(no_swap.used_percent(), Some(0.0));
    }
}
