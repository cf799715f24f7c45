//! `ping`: ICMP echo round-trip times (min, avg, max), jitter and loss to a host, IPv4 or IPv6.
//!
//! The host is resolved every tick (a name that does not resolve is an error, not 100 % loss).
//! Echoes go out `interval` apart without waiting for each other, so one lost packet does not
//! delay the rest. Sockets are unprivileged ICMP datagram sockets where the kernel allows them
//! (`net.ipv4.ping_group_range`) and raw sockets otherwise, which need root or CAP_NET_RAW.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};

use super::{Names, Output};
use crate::config::probes::PingSpec;
use crate::config::probes::ping::TYPE;

const PAYLOAD: [u8; 16] = *b"runner-ping-0123";

/// Identifiers differ per probe so concurrent probes to one host never take each other's replies.
static NEXT_IDENT: AtomicU16 = AtomicU16::new(0);

/// What to tell an operator when the kernel refuses an ICMP socket.
pub fn socket_error_message(kind: ICMP, error: &io::Error) -> String {
    let denied = error.kind() == io::ErrorKind::PermissionDenied
        || matches!(error.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES));
    if denied {
        // One sysctl governs unprivileged ping sockets of both families.
        let family = match kind {
            ICMP::V4 => "IPv4",
            ICMP::V6 => "IPv6",
        };
        format!(
            "this user may not open {family} ICMP sockets: allow unprivileged ping with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` (the range must include runner's group), or give runner raw sockets with `setcap cap_net_raw+ep <path of the runner binary>`"
        )
    } else {
        format!("cannot open an ICMP socket: {error}")
    }
}

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

pub fn summarize(rtts: &[Option<f64>]) -> Summary {
    let got: Vec<f64> = rtts.iter().flatten().copied().collect();
    let sent = rtts.len().max(1) as f64;
    let loss_percent = (sent - got.len() as f64) / sent * 100.0;
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
    ident: PingIdentifier,
    v4: Option<Client>,
    v6: Option<Client>,
    names: Names,
    instance: String,
}

impl PingProbe {
    pub fn new(spec: PingSpec, instance: &str) -> Self {
        PingProbe {
            spec,
            ident: PingIdentifier(
                NEXT_IDENT.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16),
            ),
            v4: None,
            v6: None,
            names: Names::new("ping"),
            instance: instance.to_string(),
        }
    }

    /// The socket of the address's family, opened on first use and kept.
    fn client(&mut self, addr: IpAddr) -> Result<Client, String> {
        let (slot, kind) = match addr {
            IpAddr::V4(_) => (&mut self.v4, ICMP::V4),
            IpAddr::V6(_) => (&mut self.v6, ICMP::V6),
        };
        if let Some(client) = slot {
            return Ok(client.clone());
        }
        let config = Config::builder()
            .kind(kind)
            .sock_type_hint(socket2::Type::DGRAM)
            .build();
        let client = Client::new(&config).map_err(|e| socket_error_message(kind, &e))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    pub async fn collect(&mut self, out: &mut Output, timeout: Duration) -> Result<(), String> {
        let host = self.spec.host.clone();
        let addr = resolve(&host).await?;
        let client = self.client(addr)?;
        let count = self.spec.count;
        let interval = self.spec.interval;
        // Each echo waits at most a second, and never past the probe's deadline.
        let spread = interval * count.saturating_sub(1);
        let wait = timeout
            .saturating_sub(spread)
            .saturating_sub(Duration::from_millis(20))
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let echoes = (0..count).map(|seq| {
            let client = client.clone();
            let ident = self.ident;
            async move {
                tokio::time::sleep(interval * seq).await;
                let mut pinger = client.pinger(addr, ident).await;
                pinger.timeout(wait);
                match pinger.ping(PingSequence(seq as u16), &PAYLOAD).await {
                    Ok((_, rtt)) => Ok(Some(rtt.as_secs_f64() * 1000.0)),
                    Err(SurgeError::Timeout { .. }) => Ok(None),
                    Err(SurgeError::IOError(e)) => Err(format!("sending to {addr}: {e}")),
                    Err(e) => Err(format!("ping {addr}: {e}")),
                }
            }
        });
        let results = futures_util::future::join_all(echoes).await;
        let mut rtts = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(rtt) => rtts.push(rtt),
                // A send error (no route, network down) is a failed probe, not a lost packet.
                Err(message) => return Err(message),
            }
        }
        let summary = summarize(&rtts);
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
        Ok(())
    }
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
        let s = summarize(&[Some(1.0), Some(3.0), None, Some(2.0)]);
        assert_eq!(s.min_ms, Some(1.0));
        assert_eq!(s.max_ms, Some(3.0));
        assert_eq!(s.avg_ms, Some(2.0));
        // Successive replies 1 → 3 → 2: differences 2 and 1.
        assert_eq!(s.jitter_ms, Some(1.5));
        assert_eq!(s.loss_percent, 25.0);
        let lost = summarize(&[None, None]);
        assert_eq!((lost.avg_ms, lost.loss_percent), (None, 100.0));
        assert_eq!(summarize(&[Some(4.0)]).jitter_ms, None);
    }

    #[test]
    fn a_refused_socket_says_what_to_change() {
        let denied = io::Error::from_raw_os_error(libc::EPERM);
        let message = socket_error_message(ICMP::V4, &denied);
        assert!(
            message.contains("sysctl -w net.ipv4.ping_group_range=\"0 2147483647\""),
            "{message}"
        );
        assert!(message.contains("setcap cap_net_raw+ep"), "{message}");
        let v6 = socket_error_message(ICMP::V6, &io::Error::from_raw_os_error(libc::EACCES));
        assert!(
            v6.starts_with("this user may not open IPv6 ICMP sockets"),
            "{v6}"
        );
        assert!(v6.contains("net.ipv4.ping_group_range"), "{v6}");
        let other = socket_error_message(ICMP::V4, &io::Error::from_raw_os_error(libc::EMFILE));
        assert!(other.starts_with("cannot open an ICMP socket: "), "{other}");
    }
}
