//! `net_io`: network interface throughput, packets, errors and drops.

use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, system_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

pub const TYPE: ProbeType = ProbeType {
    name: "net_io",
    instances: Instances::Discovered {
        well_known: &["total"],
        numbered: None,
    },
    fields: &[
        Field {
            name: "rx_bytes_per_sec",
            help: "bytes received per second",
        },
        Field {
            name: "tx_bytes_per_sec",
            help: "bytes sent per second",
        },
        Field {
            name: "rx_packets_per_sec",
            help: "packets received per second",
        },
        Field {
            name: "tx_packets_per_sec",
            help: "packets sent per second",
        },
        Field {
            name: "errors_per_sec",
            help: "receive and transmit errors per second",
        },
        Field {
            name: "drops_per_sec",
            help: "receive and transmit drops per second",
        },
        // The kernel's own counters, per interface (no `total`: a sum over interfaces that
        // come and go would step back), for Prometheus' `rate()`.
        Field {
            name: "rx_bytes_total",
            help: "bytes received since the interface appeared (the kernel's counter)",
        },
        Field {
            name: "tx_bytes_total",
            help: "bytes sent since the interface appeared (the kernel's counter)",
        },
        Field {
            name: "rx_packets_total",
            help: "packets received (the kernel's counter)",
        },
        Field {
            name: "tx_packets_total",
            help: "packets sent (the kernel's counter)",
        },
        Field {
            name: "errors_total",
            help: "receive and transmit errors (the kernel's counters)",
        },
        Field {
            name: "drops_total",
            help: "receive and transmit drops (the kernel's counters)",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(1_000),
};

system_probe_config! {
    /// Network interface throughput, packets, errors and drops.
    pub struct NetIoProbeConfig {
        /// Interfaces to report; every interface when absent (loopback never counts in `total`).
        #[serde(default)]
        pub interfaces: Option<Vec<Text>>,
    }
}

#[derive(Debug, Clone)]
pub struct NetIoSpec {
    /// `None`: every interface.
    pub interfaces: Option<Vec<String>>,
}

impl Settings for NetIoSpec {}

impl Check for NetIoProbeConfig {
    type Spec = NetIoSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _: Location) -> Option<NetIoSpec> {
        Some(NetIoSpec {
            interfaces: b.strings(self.interfaces, &format!("{field}.interfaces")),
        })
    }
}
