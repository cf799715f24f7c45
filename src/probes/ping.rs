//! `ping`: ICMP echo round-trip times (min, avg, max), jitter and loss to a host, IPv4 or IPv6.
//!
//! The host is resolved every tick (a name that does not resolve is an error, not 100 % loss);
//! `gateway` is the default route's gateway, read from the routing table every tick. Echoes go
//! out `interval` apart without waiting for each other, so one lost packet does not delay the
//! rest. Round trips run from right before the send call to the kernel's receive stamp, and
//! only echo replies with our identifier and sequence numbers count; an ICMP error about one of
//! our echoes (host unreachable, time exceeded) makes it lost, and says why (`icmp`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime};

use super::icmp::{Answer, EchoSocket, Family};
use super::procfs::ProcRoot;
use super::{Names, Output};
use crate::config::probes::PingSpec;
use crate::config::probes::ping::TYPE;

/// The host name that means "the default route's gateway".
pub const GATEWAY: &str = "gateway";

/// Round-trip summary of one tick's echoes, in send order (`None` for a lost echo).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub min_ms: Option<f64>,
    pub avg_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Mean absolute difference of successive round trips.
    pub jitter_ms: Option<f64>,
    pub loss_percent: f64,
}

/// Sums up one tick's echoes in send order: `None` lost, `Some(None)` replied with a round trip
/// that could not be timed (the clock stepped), `Some(Some(ms))` replied.
pub fn summarize(echoes: &[Option<Option<f64>>]) -> Summary {
    let got: Vec<f64> = echoes.iter().flatten().flatten().copied().collect();
    let replied = echoes.iter().filter(|e| e.is_some()).count();
    let sent = echoes.len().max(1) as f64;
    let loss_percent = (sent - replied as f64) / sent * 100.0;
    let jitter_ms = (got.len() > 1)
        .then(|| got.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (got.len() - 1) as f64);
    Summary {
        min_ms: got.iter().copied().reduce(f64::min),
        avg_ms: (!got.is_empty()).then(|| got.iter().sum::<f64>() / got.len() as f64),
        max_ms: got.iter().copied().reduce(f64::max),
        jitter_ms,
        loss_percent,
    }
}

pub struct PingProbe {
    spec: PingSpec,
    root: ProcRoot,
    v4: Option<EchoSocket>,
    v6: Option<EchoSocket>,
    /// The first sequence number of the next tick: each tick's echoes have their own, so a
    /// reply that arrives after its tick is not taken for one of the next.
    next_seq: u16,
    names: Names,
    instance: String,
}

/// What became of one echo.
#[derive(Debug, Clone, PartialEq)]
enum Echo {
    Waiting {
        sent: SystemTime,
        until: Instant,
    },
    /// The round trip in milliseconds; `None` when the clock stepped between send and reply.
    Replied(Option<f64>),
    Failed(String),
    Lost,
}

impl PingProbe {
    pub fn new(spec: PingSpec, root: ProcRoot, instance: &str) -> Self {
        PingProbe {
            spec,
            root,
            v4: None,
            v6: None,
            next_seq: 0,
            names: Names::new("ping"),
            instance: instance.to_string(),
        }
    }

    /// The socket of the address's family, opened on first use and kept.
    fn socket(&mut self, family: Family) -> Result<&EchoSocket, String> {
        let slot = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        if slot.is_none() {
            *slot = Some(EchoSocket::open(family)?);
        }
        slot.as_ref().ok_or_else(|| "no ICMP socket".to_string())
    }

    pub async fn collect(&mut self, out: &mut Output, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        let addr = if self.spec.host == GATEWAY {
            default_gateway(&self.root)?
        } else {
            resolve(&self.spec.host).await?
        };
        let count = self.spec.count as usize;
        let interval = self.spec.interval;
        // Each echo waits at most a second, and never past the probe's timeout.
        let spread = interval * self.spec.count.saturating_sub(1);
        let wait = timeout
            .saturating_sub(spread)
            .saturating_sub(Duration::from_millis(20))
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let first_seq = self.next_seq;
        self.next_seq = first_seq.wrapping_add(count as u16);
        let socket = self.socket(Family::of(addr))?;
        // Late answers of earlier ticks are of no use now; they only take buffer room.
        socket.drain();
        let mut echoes: Vec<Echo> = Vec::with_capacity(count);
        loop {
            let now = Instant::now();
            for echo in echoes.iter_mut() {
                if matches!(echo, Echo::Waiting { until, .. } if *until <= now) {
                    *echo = Echo::Lost;
                }
            }
            // The next echo is due: send it, then look again.
            if echoes.len() < count && now >= started + interval * echoes.len() as u32 {
                let seq = first_seq.wrapping_add(echoes.len() as u16);
                echoes.push(match socket.send(addr, seq) {
                    Ok(sent) => Echo::Waiting {
                        sent,
                        until: Instant::now() + wait,
                    },
                    Err(e) => Echo::Failed(format!("cannot send to {addr}: {e}")),
                });
                continue;
            }
            let waiting = echoes.iter().filter_map(|e| match e {
                Echo::Waiting { until, .. } => Some(*until),
                _ => None,
            });
            let next_send =
                (echoes.len() < count).then(|| started + interval * echoes.len() as u32);
            let Some(wake) = waiting.chain(next_send).min() else {
                break;
            };
            tokio::select! {
                answer = socket.receive() => {
                    let answer = answer.map_err(|e| format!("receiving from {addr}: {e}"))?;
                    let seq = match &answer {
                        Answer::Reply { seq, .. } | Answer::Error { seq, .. } => *seq,
                    };
                    // Only a waiting echo of this tick takes an answer.
                    let index = usize::from(seq.wrapping_sub(first_seq));
                    match (echoes.get_mut(index), answer) {
                        (Some(echo @ Echo::Waiting { .. }), Answer::Reply { at, .. }) => {
                            if let Echo::Waiting { sent, .. } = *echo {
                                *echo = Echo::Replied(round_trip_ms(sent, at));
                            }
                        }
                        // An error that comes after the echo's wait still says why it was lost.
                        (Some(echo @ (Echo::Waiting { .. } | Echo::Lost)), Answer::Error { reason, .. }) => {
                            *echo = Echo::Failed(reason);
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.report(out, &echoes, wait);
        Ok(())
    }

    fn report(&mut self, out: &mut Output, echoes: &[Echo], wait: Duration) {
        let replies: Vec<Option<Option<f64>>> = echoes
            .iter()
            .map(|e| match e {
                Echo::Replied(ms) => Some(*ms),
                _ => None,
            })
            .collect();
        let summary = summarize(&replies);
        let names = self.names.get(&self.instance, TYPE.fields);
        for (name, value) in names.iter().zip([
            summary.min_ms,
            summary.avg_ms,
            summary.max_ms,
            summary.jitter_ms,
            Some(summary.loss_percent),
        ]) {
            if let Some(value) = value {
                out.push(name, value);
            }
        }
        let lost = replies.iter().filter(|r| r.is_none()).count();
        let reason = echoes.iter().find_map(|e| match e {
            Echo::Failed(reason) => Some(reason.clone()),
            _ => None,
        });
        // Why echoes were lost: an ICMP error says; all lost without one is silence.
        let why = match reason {
            Some(reason) => Some(reason),
            None if lost == echoes.len() && lost > 0 => {
                Some(format!("no reply within {} ms", wait.as_millis()))
            }
            None => None,
        };
        if let Some(why) = why {
            out.error(
                format!("ping.{}", self.instance),
                format!("{lost} of {} echoes lost: {why}", echoes.len()),
            );
        }
    }
}

/// From right before the send call to the kernel's stamp of the reply.
fn round_trip_ms(sent: SystemTime, received: SystemTime) -> Option<f64> {
    received
        .duration_since(sent)
        .ok()
        .map(|d| d.as_secs_f64() * 1000.0)
}

/// The default route's gateway: IPv4's if there is one, else IPv6's.
pub fn default_gateway(root: &ProcRoot) -> Result<IpAddr, String> {
    let v4 = std::fs::read_to_string(root.proc.join("net/route"))
        .ok()
        .and_then(|table| gateway_v4(&table));
    let v6 = || {
        std::fs::read_to_string(root.proc.join("net/ipv6_route"))
            .ok()
            .and_then(|table| gateway_v6(&table))
    };
    v4.or_else(v6)
        .ok_or_else(|| "there is no default route, so there is no gateway to ping".to_string())
}

/// The gateway of the IPv4 default route with the lowest metric (`/proc/net/route`).
fn gateway_v4(table: &str) -> Option<IpAddr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (destination, gateway, flags, metric, mask) =
                (f.get(1)?, f.get(2)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            // RTF_UP and RTF_GATEWAY; destination and mask 0: the default route.
            let default = *destination == "00000000" && *mask == "00000000" && flags & 0x3 == 0x3;
            let gateway = u32::from_str_radix(gateway, 16).ok()?;
            (default && gateway != 0).then(|| {
                // The table holds addresses in the kernel's (little-endian) byte order.
                (
                    metric.parse::<u32>().unwrap_or(u32::MAX),
                    Ipv4Addr::from(gateway.swap_bytes()),
                )
            })
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gateway)| IpAddr::V4(gateway))
}

/// The next hop of the IPv6 default route with the lowest metric (`/proc/net/ipv6_route`).
fn gateway_v6(table: &str) -> Option<IpAddr> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (destination, prefix, next_hop, metric) =
                (f.first()?, f.get(1)?, f.get(4)?, f.get(5)?);
            let default = destination.chars().all(|c| c == '0') && *prefix == "00";
            let hop = u128::from_str_radix(next_hop, 16).ok()?;
            (default && hop != 0).then(|| {
                (
                    u32::from_str_radix(metric, 16).unwrap_or(u32::MAX),
                    Ipv6Addr::from(hop),
                )
            })
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, hop)| IpAddr::V6(hop))
}

/// The host's first address; a literal address needs no lookup.
pub async fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Ok(addr) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(addr);
    }
    match tokio::net::lookup_host((host, 0)).await {
        Ok(mut addrs) => addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("`{host}` resolves to no address")),
        Err(e) => Err(format!("cannot resolve `{host}`: {e}")),
    }
}

impl super::Wait for PingProbe {
    fn wait<'a>(&'a mut self, out: &'a mut Output, timeout: Duration) -> super::Waiting<'a> {
        Box::pin(self.collect(out, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_round_trips() {
        let s = summarize(&[Some(Some(1.0)), Some(Some(3.0)), None, Some(Some(2.0))]);
        assert_eq!(s.min_ms, Some(1.0));
        assert_eq!(s.max_ms, Some(3.0));
        assert_eq!(s.avg_ms, Some(2.0));
        // Successive replies 1 → 3 → 2: differences 2 and 1.
        assert_eq!(s.jitter_ms, Some(1.5));
        assert_eq!(s.loss_percent, 25.0);
        let lost = summarize(&[None, None]);
        assert_eq!((lost.avg_ms, lost.loss_percent), (None, 100.0));
        assert_eq!(summarize(&[Some(Some(4.0))]).jitter_ms, None);
        // A reply that could not be timed is no loss, and no round trip either.
        let untimed = summarize(&[Some(None), Some(Some(2.0))]);
        assert_eq!((untimed.loss_percent, untimed.avg_ms), (0.0, Some(2.0)));
    }

    #[test]
    fn the_default_gateway_comes_from_the_routing_table() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth1\t00000000\t0101A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(gateway_v4(v4), Some("192.168.1.1".parse().unwrap()));
        assert_eq!(gateway_v4("Iface\tDestination\n"), None);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert_eq!(gateway_v6(v6), Some("fe80::1".parse().unwrap()));
    }
}
