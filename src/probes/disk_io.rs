//! `disk_io`: per block device and in total, bytes and operations per second, utilisation
//! (share of time the device was busy) and average wait per operation, from `/proc/diskstats`.
//!
//! Only whole devices are reported (`/sys/block`), never partitions, and `total` leaves out
//! devices stacked on others (device-mapper, md RAID: those with `slaves/`), so no byte is
//! counted twice. Loop, ram and zram devices are left out unless listed in `devices:`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::procfs::{ProcFile, ProcRoot, sanitize_instance};
use super::rate::{Clock, Monotonic, growth, secs_between};
use super::{Names, Output};
use crate::config::probes::disk_io::TYPE;

/// The counters of one `/proc/diskstats` line that runner uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskCounters {
    pub reads: u64,
    pub read_sectors: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub write_sectors: u64,
    pub write_ms: u64,
    /// Milliseconds the device had I/O in flight.
    pub busy_ms: u64,
}

pub fn parse_diskstats(text: &str) -> Vec<(String, DiskCounters)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let name = f.nth(2)?.to_string();
            let v: Vec<u64> = f.take(10).map(|x| x.parse().unwrap_or(0)).collect();
            if v.len() < 10 {
                return None;
            }
            Some((
                name,
                DiskCounters {
                    reads: v[0],
                    read_sectors: v[2],
                    read_ms: v[3],
                    writes: v[4],
                    write_sectors: v[6],
                    write_ms: v[7],
                    busy_ms: v[9],
                },
            ))
        })
        .collect()
}

/// Growth of every counter between two readings; `None` if any went backwards.
fn diff(now: &DiskCounters, prev: &DiskCounters) -> Option<DiskCounters> {
    Some(DiskCounters {
        reads: growth(prev.reads, now.reads)?,
        read_sectors: growth(prev.read_sectors, now.read_sectors)?,
        read_ms: growth(prev.read_ms, now.read_ms)?,
        writes: growth(prev.writes, now.writes)?,
        write_sectors: growth(prev.write_sectors, now.write_sectors)?,
        write_ms: growth(prev.write_ms, now.write_ms)?,
        busy_ms: growth(prev.busy_ms, now.busy_ms)?,
    })
}

/// The rates of one device (or the total) over `secs`.
fn push_rates(
    out: &mut Output,
    names: &[super::MetricName],
    d: &DiskCounters,
    secs: f64,
    util: f64,
) {
    // /proc/diskstats counts 512-byte sectors whatever the device's own sector size.
    out.push(&names[0], d.read_sectors as f64 * 512.0 / secs);
    out.push(&names[1], d.write_sectors as f64 * 512.0 / secs);
    out.push(&names[2], d.reads as f64 / secs);
    out.push(&names[3], d.writes as f64 / secs);
    out.push(&names[4], util.min(100.0));
    let ops = d.reads + d.writes;
    // No operation, no wait to average: absent rather than a made-up 0.
    if ops > 0 {
        out.push(&names[5], (d.read_ms + d.write_ms) as f64 / ops as f64);
    }
}

/// What `/sys/block` says about the devices.
#[derive(Debug, Default)]
struct Topology {
    whole: HashSet<String>,
    stacked: HashSet<String>,
    seen: Vec<String>,
    /// Why `/sys/block` could not be listed; looked at again next tick.
    unreadable: Option<String>,
}

pub struct DiskIoProbe {
    root: ProcRoot,
    diskstats: ProcFile,
    devices: Option<Vec<String>>,
    topology: Topology,
    prev: Option<(HashMap<String, DiskCounters>, Instant)>,
    names: Names,
    buf: String,
    /// When each read of the counters happened: rates are over the probe's own two reads.
    clock: Box<dyn Clock>,
}

impl DiskIoProbe {
    pub fn new(root: ProcRoot, devices: Option<Vec<String>>) -> Self {
        DiskIoProbe {
            diskstats: ProcFile::new(root.proc.join("diskstats")),
            root,
            devices,
            topology: Topology::default(),
            prev: None,
            names: Names::new("disk_io"),
            buf: String::new(),
            clock: Box::new(Monotonic),
        }
    }

    /// The same probe taking its reads' instants from `clock` (tests give explicit ones).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Re-reads `/sys/block` when the set of devices changed (hotplug), not every tick.
    fn refresh_topology(&mut self, names: &[&str]) {
        if self.topology.unreadable.is_none()
            && self
                .topology
                .seen
                .iter()
                .map(String::as_str)
                .eq(names.iter().copied())
        {
            return;
        }
        let block = self.root.sys.join("block");
        let mut topology = Topology {
            seen: names.iter().map(|s| s.to_string()).collect(),
            ..Topology::default()
        };
        let entries = std::fs::read_dir(&block);
        if let Err(e) = &entries {
            topology.unreadable = Some(format!(
                "cannot list the whole disks in {}: {e}; point --sys-root or HOST_SYS at the host's /sys, or list `devices`",
                block.display()
            ));
        }
        if let Ok(entries) = entries {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let has_slaves = std::fs::read_dir(block.join(&name).join("slaves"))
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if has_slaves {
                    topology.stacked.insert(name.clone());
                }
                topology.whole.insert(name);
            }
        }
        self.topology = topology;
    }

    fn selected(&self, name: &str) -> bool {
        match &self.devices {
            Some(list) => list.iter().any(|d| d == name),
            None => {
                self.topology.whole.contains(name)
                    && !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
            }
        }
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        self.diskstats.read_required(&mut self.buf)?;
        // The counters are as of this read: its instant, not the tick's, times the rates.
        let at = self.clock.now();
        let stats = parse_diskstats(&self.buf);
        let names: Vec<&str> = stats.iter().map(|(n, _)| n.as_str()).collect();
        self.refresh_topology(&names);
        // Without the topology no device is a whole disk: an error, not a probe that
        // silently reports nothing.
        if let (None, Some(why)) = (&self.devices, &self.topology.unreadable) {
            return Err(why.clone());
        }
        let now: HashMap<String, DiskCounters> = stats
            .into_iter()
            .filter(|(name, _)| self.selected(name))
            .collect();
        if let Some(devices) = &self.devices {
            for device in devices.iter().filter(|d| !now.contains_key(*d)) {
                out.error(
                    format!("disk_io.{}", sanitize_instance(device)),
                    format!("no device `{device}` in /proc/diskstats"),
                );
            }
        }
        // Sorted and named once a tick, for the counters and again for the rates.
        let mut devices: Vec<(&String, &DiskCounters, std::sync::Arc<[super::MetricName]>)> = now
            .iter()
            .map(|(name, c)| {
                (
                    name,
                    c,
                    self.names.get(&sanitize_instance(name), TYPE.fields),
                )
            })
            .collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        for (_, c, names) in &devices {
            // Rates first in the field list, then the kernel's counters in base units.
            for (name, value) in names[6..].iter().zip([
                c.read_sectors as f64 * 512.0,
                c.write_sectors as f64 * 512.0,
                c.reads as f64,
                c.writes as f64,
                c.busy_ms as f64 / 1000.0,
            ]) {
                out.push(name, value);
            }
        }
        if let Some((prev, prev_at)) = &self.prev
            && let Some(secs) = secs_between(*prev_at, at)
        {
            let mut total = DiskCounters::default();
            let mut busiest: f64 = 0.0;
            let mut counted = 0;
            for (name, c, names) in &devices {
                let Some(d) = prev.get(*name).and_then(|p| diff(c, p)) else {
                    continue;
                };
                let util = d.busy_ms as f64 / (secs * 1000.0) * 100.0;
                push_rates(out, names, &d, secs, util);
                if !self.topology.stacked.contains(*name) {
                    total.reads += d.reads;
                    total.read_sectors += d.read_sectors;
                    total.read_ms += d.read_ms;
                    total.writes += d.writes;
                    total.write_sectors += d.write_sectors;
                    total.write_ms += d.write_ms;
                    busiest = busiest.max(util);
                    counted += 1;
                }
            }
            if counted > 0 {
                // The total's utilisation is the busiest device's: the bottleneck.
                let names = self.names.get("total", TYPE.fields);
                push_rates(out, &names, &total, secs, busiest);
            }
        }
        self.prev = Some((now, at));
        Ok(())
    }
}

impl super::Read for DiskIoProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sys_root_without_block_is_an_error_not_a_probe_that_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("diskstats"),
            " 252       0 vda 1000 10 80000 500 2000 20 160000 900 0 1200 1400 0 0 0 0\n",
        )
        .unwrap();
        let root = ProcRoot {
            proc: dir.path().to_path_buf(),
            sys: dir.path().join("no-sys"),
        };
        let mut probe = DiskIoProbe::new(root.clone(), None);
        for _ in 0..2 {
            let err = probe.collect(&mut Output::default()).unwrap_err();
            assert!(
                err.contains("no-sys/block") && err.contains("HOST_SYS"),
                "{err}"
            );
        }
        // A probe that lists its devices needs no topology.
        let mut listed = DiskIoProbe::new(root, Some(vec!["vda".into()]));
        assert!(listed.collect(&mut Output::default()).is_ok());
    }

    #[test]
    fn rates_are_over_the_time_between_the_probes_own_reads() {
        // Ticks nominally 1 s apart; this probe read at 0, 0.7 s and 2.0 s. Each rate, and the
        // share of time busy, is over its own reads' interval.
        let dir = tempfile::tempdir().unwrap();
        let root = ProcRoot {
            proc: dir.path().to_path_buf(),
            sys: dir.path().join("sys"),
        };
        let base = Instant::now();
        let mut probe = DiskIoProbe::new(root, Some(vec!["vda".into()]))
            .with_clock(crate::probes::rate::Script::at_ms(base, &[0, 700, 2_000]));
        let mut outputs = Vec::new();
        // Sectors read, reads, busy ms at each read.
        for (sectors, reads, busy) in [
            (1_000u64, 10u64, 100u64),
            (8_000, 80, 450),
            (21_000, 210, 1_100),
        ] {
            std::fs::write(
                dir.path().join("diskstats"),
                format!(" 252 0 vda {reads} 0 {sectors} 0 0 0 0 0 0 {busy} 0 0 0 0 0\n"),
            )
            .unwrap();
            let mut out = Output::default();
            probe.collect(&mut out).unwrap();
            outputs.push(out);
        }
        assert!(
            outputs[0]
                .metrics
                .iter()
                .all(|(n, _)| n.ends_with("_total")),
            "{:?}",
            outputs[0].metrics
        );
        let value = |out: &Output, name: &str| {
            out.metrics
                .iter()
                .find(|(n, _)| n.as_ref() == name)
                .map(|(_, v)| *v)
        };
        let secs = |ms| std::time::Duration::from_millis(ms).as_secs_f64();
        for (out, sectors, reads, busy, ms) in [
            (&outputs[1], 7_000.0, 70.0, 350.0, 700),
            (&outputs[2], 13_000.0, 130.0, 650.0, 1_300),
        ] {
            assert_eq!(
                value(out, "disk_io.vda.read_bytes_per_sec"),
                Some(sectors * 512.0 / secs(ms))
            );
            assert_eq!(
                value(out, "disk_io.vda.reads_per_sec"),
                Some(reads / secs(ms))
            );
            assert_eq!(
                value(out, "disk_io.vda.util_percent"),
                Some(busy / (secs(ms) * 1000.0) * 100.0)
            );
        }
        // 100 reads/s and half the time busy both times, though 0.7 s and 1.3 s apart.
        for out in &outputs[1..] {
            assert_eq!(value(out, "disk_io.vda.reads_per_sec"), Some(100.0));
            assert_eq!(value(out, "disk_io.vda.util_percent"), Some(50.0));
        }
    }

    #[test]
    fn parses_diskstats_lines() {
        let text = " 252       0 vda 1000 10 80000 500 2000 20 160000 900 0 1200 1400 0 0 0 0\n 252       1 vda1 900 10 70000 450 1900 20 150000 850 0 1100 1300\n   7       0 loop0 5 0 10 0 0 0 0 0 0 0 0\n";
        let stats = parse_diskstats(text);
        assert_eq!(stats.len(), 3);
        assert_eq!(stats[0].0, "vda");
        assert_eq!(
            stats[0].1,
            DiskCounters {
                reads: 1000,
                read_sectors: 80000,
                read_ms: 500,
                writes: 2000,
                write_sectors: 160000,
                write_ms: 900,
                busy_ms: 1200
            }
        );
    }

    #[test]
    fn rates_utilisation_and_wait() {
        let prev = DiskCounters {
            reads: 100,
            read_sectors: 1000,
            read_ms: 50,
            writes: 10,
            write_sectors: 2000,
            write_ms: 30,
            busy_ms: 100,
        };
        let now = DiskCounters {
            reads: 140,
            read_sectors: 3048,
            read_ms: 90,
            writes: 20,
            write_sectors: 6096,
            write_ms: 110,
            busy_ms: 600,
        };
        let d = diff(&now, &prev).unwrap();
        let mut out = Output::default();
        let mut names = Names::new("disk_io");
        push_rates(
            &mut out,
            &names.get("vda", TYPE.fields),
            &d,
            2.0,
            d.busy_ms as f64 / 2000.0 * 100.0,
        );
        let got: Vec<(String, f64)> = out
            .metrics
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "disk_io.vda.read_bytes_per_sec".to_string(),
                    2048.0 * 512.0 / 2.0
                ),
                (
                    "disk_io.vda.write_bytes_per_sec".to_string(),
                    4096.0 * 512.0 / 2.0
                ),
                ("disk_io.vda.reads_per_sec".to_string(), 20.0),
                ("disk_io.vda.writes_per_sec".to_string(), 5.0),
                ("disk_io.vda.util_percent".to_string(), 25.0),
                ("disk_io.vda.await_ms".to_string(), 120.0 / 50.0),
            ]
        );
        // A device that was replaced (counters restarted) gives nothing for this tick.
        assert_eq!(diff(&prev, &now), None);
    }
}
