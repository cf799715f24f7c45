//! `net_io`: per interface and in total, bytes and packets per second each way, and errors and
//! drops per second, from `/proc/net/dev`. Loopback is reported but never counted in `total`.
//! Each interface's counters themselves are reported too (`rx_bytes_total`...), as the kernel
//! has them, for Prometheus' `rate()`.

use std::collections::HashMap;
use std::time::Instant;

use super::procfs::{ProcFile, ProcRoot, sanitize_instance};
use super::rate::{Clock, Monotonic, growth, secs_between};
use super::{Names, Output};
use crate::config::probes::net_io::TYPE;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// Receive plus transmit errors.
    pub errors: u64,
    /// Receive plus transmit drops.
    pub drops: u64,
}

pub fn parse_net_dev(text: &str) -> Vec<(String, NetCounters)> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if v.len() < 16 {
                return None;
            }
            Some((
                name.trim().to_string(),
                NetCounters {
                    rx_bytes: v[0],
                    rx_packets: v[1],
                    errors: v[2] + v[10],
                    drops: v[3] + v[11],
                    tx_bytes: v[8],
                    tx_packets: v[9],
                },
            ))
        })
        .collect()
}

fn diff(now: &NetCounters, prev: &NetCounters) -> Option<NetCounters> {
    Some(NetCounters {
        rx_bytes: growth(prev.rx_bytes, now.rx_bytes)?,
        rx_packets: growth(prev.rx_packets, now.rx_packets)?,
        tx_bytes: growth(prev.tx_bytes, now.tx_bytes)?,
        tx_packets: growth(prev.tx_packets, now.tx_packets)?,
        errors: growth(prev.errors, now.errors)?,
        drops: growth(prev.drops, now.drops)?,
    })
}

fn push_rates(out: &mut Output, names: &[super::MetricName], d: &NetCounters, secs: f64) {
    for (name, value) in names.iter().zip([
        d.rx_bytes,
        d.tx_bytes,
        d.rx_packets,
        d.tx_packets,
        d.errors,
        d.drops,
    ]) {
        out.push(name, value as f64 / secs);
    }
}

pub struct NetIoProbe {
    /// `/sys/class/net`: whether each interface is up.
    class_net: std::path::PathBuf,
    net_dev: ProcFile,
    interfaces: Option<Vec<String>>,
    prev: Option<(HashMap<String, NetCounters>, Instant)>,
    names: Names,
    buf: String,
    /// When each read of the counters happened: rates are over the probe's own two reads.
    clock: Box<dyn Clock>,
}

impl NetIoProbe {
    pub fn new(root: ProcRoot, interfaces: Option<Vec<String>>) -> Self {
        NetIoProbe {
            class_net: root.sys.join("class/net"),
            net_dev: ProcFile::new(root.proc.join("net/dev")),
            interfaces,
            prev: None,
            names: Names::new("net_io"),
            buf: String::new(),
            clock: Box::new(Monotonic),
        }
    }

    /// The same probe taking its reads' instants from `clock` (tests give explicit ones).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        self.net_dev.read_required(&mut self.buf)?;
        // The counters are as of this read: its instant, not the tick's, times the rates.
        let at = self.clock.now();
        let now: HashMap<String, NetCounters> = parse_net_dev(&self.buf)
            .into_iter()
            .filter(|(name, _)| match &self.interfaces {
                // Named in the job: reported whatever its state.
                Some(list) => list.iter().any(|i| i == name),
                // Otherwise only interfaces that are up and have a link: one that is down
                // carries nothing, and its zeros are not a measurement.
                None => is_live(&self.class_net.join(name)),
            })
            .collect();
        if let Some(list) = &self.interfaces {
            for iface in list.iter().filter(|i| !now.contains_key(*i)) {
                out.error(
                    format!("net_io.{}", sanitize_instance(iface)),
                    format!("no interface `{iface}` in /proc/net/dev"),
                );
            }
        }
        // Sorted and named once a tick, for the counters and again for the rates.
        let mut ifaces: Vec<(&String, &NetCounters, std::sync::Arc<[super::MetricName]>)> = now
            .iter()
            .map(|(name, c)| {
                (
                    name,
                    c,
                    self.names.get(&sanitize_instance(name), TYPE.fields),
                )
            })
            .collect();
        ifaces.sort_by(|a, b| a.0.cmp(b.0));
        for (_, c, names) in &ifaces {
            // Rates first in the field list, then the counters in the same order.
            for (name, value) in names[6..].iter().zip([
                c.rx_bytes,
                c.tx_bytes,
                c.rx_packets,
                c.tx_packets,
                c.errors,
                c.drops,
            ]) {
                out.push(name, value as f64);
            }
        }
        if let Some((prev, prev_at)) = &self.prev
            && let Some(secs) = secs_between(*prev_at, at)
        {
            let mut total = NetCounters::default();
            let mut counted = 0;
            for (name, c, names) in &ifaces {
                let Some(d) = prev.get(*name).and_then(|p| diff(c, p)) else {
                    continue;
                };
                push_rates(out, names, &d, secs);
                if *name != "lo" {
                    total.rx_bytes += d.rx_bytes;
                    total.rx_packets += d.rx_packets;
                    total.tx_bytes += d.tx_bytes;
                    total.tx_packets += d.tx_packets;
                    total.errors += d.errors;
                    total.drops += d.drops;
                    counted += 1;
                }
            }
            if counted > 0 {
                push_rates(out, &self.names.get("total", TYPE.fields), &total, secs);
            }
        }
        self.prev = Some((now, at));
        Ok(())
    }
}

/// Whether an interface is administratively up and its link is not down
/// (`/sys/class/net/<iface>/{flags,operstate}`). Loopback and tunnels say `unknown`: live.
fn is_live(dir: &std::path::Path) -> bool {
    const IFF_UP: u32 = 0x1;
    let up = std::fs::read_to_string(dir.join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_none_or(|flags| flags & IFF_UP != 0);
    let operstate = std::fs::read_to_string(dir.join("operstate")).unwrap_or_default();
    up && !matches!(operstate.trim(), "down" | "lowerlayerdown" | "notpresent")
}

impl super::Read for NetIoProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two header lines of /proc/net/dev.
    const DEV_HEADER: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    /// A /proc and /sys under `dir`, with the proc/net folder made.
    fn proc_root(dir: &std::path::Path) -> ProcRoot {
        let root = ProcRoot {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
        };
        std::fs::create_dir_all(root.proc.join("net")).unwrap();
        root
    }

    /// Writes `dev` as /proc/net/dev, lets `probe` read it and returns what it output.
    fn collect_reading(probe: &mut NetIoProbe, root: &ProcRoot, dev: &str) -> Output {
        std::fs::write(root.proc.join("net/dev"), dev).unwrap();
        let mut out = Output::default();
        probe.collect(&mut out).unwrap();
        out
    }

    #[test]
    fn interfaces_that_are_down_are_left_out_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = proc_root(dir.path());
        let dev = |bytes: u64| {
            format!(
                "{DEV_HEADER}  eth0: {bytes} 10 0 0 0 0 0 0 {bytes} 10 0 0 0 0 0 0\n  eth1: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n  eth2: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
            )
        };
        for (iface, flags, state) in [
            ("eth0", "0x1003", "up"),
            ("eth1", "0x1002", "down"),
            ("eth2", "0x1003", "lowerlayerdown"),
        ] {
            let d = root.sys.join("class/net").join(iface);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("flags"), format!("{flags}\n")).unwrap();
            std::fs::write(d.join("operstate"), format!("{state}\n")).unwrap();
        }
        let instances = |interfaces: Option<Vec<String>>| {
            let mut probe = NetIoProbe::new(root.clone(), interfaces);
            collect_reading(&mut probe, &root, &dev(1000));
            std::thread::sleep(std::time::Duration::from_millis(5));
            let out = collect_reading(&mut probe, &root, &dev(2000));
            let mut seen: Vec<String> = out
                .metrics
                .iter()
                .filter(|(n, _)| !n.ends_with("_total"))
                .map(|(n, _)| n.split('.').nth(1).unwrap().to_string())
                .collect();
            seen.dedup();
            seen
        };
        assert_eq!(instances(None), ["eth0", "total"]);
        assert_eq!(
            instances(Some(vec!["eth0".into(), "eth1".into()])),
            ["eth0", "eth1", "total"]
        );
    }

    /// The value of the metric named `name` in `out`.
    fn value(out: &Output, name: &str) -> Option<f64> {
        out.metrics
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| *v)
    }

    #[test]
    fn rates_are_over_the_time_between_the_probes_own_reads() {
        // Ticks are nominally 1 s apart, but this probe's reads happen at 0, 0.7 s and 2.0 s
        // (it ran late, then on time): each rate is the growth over its reads' own interval.
        let dir = tempfile::tempdir().unwrap();
        let root = proc_root(dir.path());
        let base = Instant::now();
        let mut probe = NetIoProbe::new(root.clone(), Some(vec!["eth0".into()]))
            .with_clock(crate::probes::rate::Script::at_ms(base, &[0, 700, 2_000]));
        let dev = |bytes: u64, packets: u64| {
            format!(
                "{DEV_HEADER}  eth0: {bytes} {packets} 0 0 0 0 0 0 {tx} {packets} 0 0 0 0 0 0\n",
                tx = bytes * 2
            )
        };
        let mut outputs = Vec::new();
        for (bytes, packets) in [(1_000, 10), (8_000, 80), (21_000, 210)] {
            outputs.push(collect_reading(&mut probe, &root, &dev(bytes, packets)));
        }
        // The first read has nothing to compare with: no rate, as ever; the counters as read.
        assert!(
            outputs[0]
                .metrics
                .iter()
                .all(|(n, _)| n.ends_with("_total")),
            "{:?}",
            outputs[0].metrics
        );
        assert_eq!(
            value(&outputs[0], "net_io.eth0.rx_bytes_total"),
            Some(1_000.0)
        );
        assert_eq!(
            value(&outputs[2], "net_io.eth0.tx_bytes_total"),
            Some(42_000.0)
        );
        assert_eq!(
            value(&outputs[2], "net_io.eth0.rx_packets_total"),
            Some(210.0)
        );
        assert_eq!(value(&outputs[2], "net_io.total.rx_bytes_total"), None);
        let secs = |ms| std::time::Duration::from_millis(ms).as_secs_f64();
        for (out, grew, ms) in [(&outputs[1], 7_000.0, 700), (&outputs[2], 13_000.0, 1_300)] {
            assert_eq!(
                value(out, "net_io.eth0.rx_bytes_per_sec"),
                Some(grew / secs(ms))
            );
            assert_eq!(
                value(out, "net_io.eth0.tx_bytes_per_sec"),
                Some(2.0 * grew / secs(ms))
            );
            assert_eq!(
                value(out, "net_io.eth0.rx_packets_per_sec"),
                Some(grew / 100.0 / secs(ms))
            );
            assert_eq!(
                value(out, "net_io.total.rx_bytes_per_sec"),
                Some(grew / secs(ms))
            );
        }
        // 10,000 bytes/s both times, though the reads were 0.7 s and 1.3 s apart.
        assert_eq!(
            value(&outputs[1], "net_io.eth0.rx_bytes_per_sec"),
            Some(10_000.0)
        );
        assert_eq!(
            value(&outputs[2], "net_io.eth0.rx_bytes_per_sec"),
            Some(10_000.0)
        );
    }

    #[test]
    fn reads_at_the_same_instant_give_no_rate() {
        let dir = tempfile::tempdir().unwrap();
        let root = proc_root(dir.path());
        let base = Instant::now();
        let mut probe = NetIoProbe::new(root.clone(), Some(vec!["eth0".into()]))
            .with_clock(crate::probes::rate::Script::at_ms(base, &[5, 5]));
        for bytes in [1_000, 2_000] {
            let out = collect_reading(
                &mut probe,
                &root,
                &format!("  eth0: {bytes} 1 0 0 0 0 0 0 {bytes} 1 0 0 0 0 0 0\n"),
            );
            // No time between two reads: a rate would be infinite, so there is none.
            assert!(
                out.metrics.iter().all(|(n, _)| n.ends_with("_total")),
                "{:?}",
                out.metrics
            );
        }
    }

    #[test]
    fn parses_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  eth0: 5000      50    1    2    0     0          0         0     7000      70    3    4    0     0       0          0\n";
        let stats = parse_net_dev(text);
        assert_eq!(stats.len(), 2);
        assert_eq!(
            stats[1],
            (
                "eth0".to_string(),
                NetCounters {
                    rx_bytes: 5000,
                    rx_packets: 50,
                    tx_bytes: 7000,
                    tx_packets: 70,
                    errors: 4,
                    drops: 6
                }
            )
        );
    }
}
