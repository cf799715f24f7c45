//! `connections`: established TCP connections to local ports, a server's live sessions.

use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config};
use crate::config::build::Builder;

pub const TYPE: ProbeType = ProbeType {
    name: "connections",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "established",
            help: "established TCP connections to the ports, IPv4 and IPv6",
        },
        Field {
            name: "remote_addresses_count",
            help: "distinct client addresses among them",
        },
        Field {
            name: "max_per_remote_count",
            help: "connections of the busiest client",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(2_000),
};

named_probe_config! {
    /// Established TCP connections to local ports (IPv4 and IPv6): a server's live sessions.
    pub struct ConnectionsProbeConfig {
        /// Local ports whose established connections count.
        pub ports: Vec<Spanned<u16>>,
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionsSpec {
    pub ports: Vec<u16>,
}

impl Settings for ConnectionsSpec {}

impl Check for ConnectionsProbeConfig {
    type Spec = ConnectionsSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, at: Location) -> Option<ConnectionsSpec> {
        if self.ports.is_empty() {
            b.error(&at, &format!("{field}.ports"), "`ports` lists no port");
        }
        for (i, port) in self.ports.iter().enumerate() {
            if port.value == 0 {
                b.error(
                    &port.referenced,
                    &format!("{field}.ports[{i}]"),
                    "a port is between 1 and 65535",
                );
            }
        }
        Some(ConnectionsSpec {
            ports: self.ports.iter().map(|p| p.value).collect(),
        })
    }
}
