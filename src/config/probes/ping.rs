//! `ping`: ICMP echo round trips, jitter and loss to a host.

use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

const DEFAULT_COUNT: u32 = 5;
const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

pub const TYPE: ProbeType = ProbeType {
    name: "ping",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "rtt_min_ms",
            help: "shortest round trip of the tick's echo replies",
        },
        Field {
            name: "rtt_avg_ms",
            help: "mean round trip of the tick's echo replies",
        },
        Field {
            name: "rtt_max_ms",
            help: "longest round trip of the tick's echo replies",
        },
        Field {
            name: "jitter_ms",
            help: "mean absolute difference of successive round trips",
        },
        Field {
            name: "loss_percent",
            help: "echoes without a reply",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    // Without settings: count × interval + 1 s (5 × 200 ms + 1 s), as documented.
    default_timeout: Duration::from_millis(2_000),
};

named_probe_config! {
    /// ICMP echo round-trip time, jitter and loss.
    pub struct PingProbeConfig {
        /// Host name or address (IPv4 or IPv6), resolved every tick.
        pub host: Text,
        /// Echo requests per tick (default 5).
        #[serde(default)]
        pub count: Option<u32>,
        /// Gap between requests (default 200).
        #[serde(default)]
        pub interval_ms: Option<u64>,
    }
}

#[derive(Debug, Clone)]
pub struct PingSpec {
    pub host: String,
    pub count: u32,
    pub interval: Duration,
}

impl Settings for PingSpec {
    /// count × interval + 1 s, the documented default: every echo sent, an interval after
    /// the last, and a second for its reply.
    fn default_timeout(&self) -> Option<Duration> {
        Some(self.interval * self.count + Duration::from_secs(1))
    }
}

impl Check for PingProbeConfig {
    type Spec = PingSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _: Location) -> Option<PingSpec> {
        let host = b.string(&self.host, &format!("{field}.host"))?;
        let count = self.count.unwrap_or(DEFAULT_COUNT);
        if !(1..=100).contains(&count) {
            b.error(
                &self.host.referenced,
                &format!("{field}.count"),
                format!("`count` must be between 1 and 100, not {count}"),
            );
        }
        let interval = self
            .interval_ms
            .map_or(DEFAULT_INTERVAL, Duration::from_millis);
        if interval < Duration::from_millis(10) {
            b.error(
                &self.host.referenced,
                &format!("{field}.interval_ms"),
                "`interval_ms` must be at least 10",
            );
        }
        b.check_host(&host, &self.host, &format!("{field}.host"));
        Some(PingSpec {
            host,
            count,
            interval,
        })
    }
}
