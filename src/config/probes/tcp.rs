//! `tcp`: whether a host's port accepts connections, and how long connecting takes.

use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

pub const TYPE: ProbeType = ProbeType {
    name: "tcp",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "up",
            help: "1 if the port accepted a connection, else 0",
        },
        Field {
            name: "connect_ms",
            help: "time to connect, when up",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(3_000),
};

named_probe_config! {
    /// TCP connect time to a host and port, and whether it accepts connections.
    pub struct TcpProbeConfig {
        /// Host name or address, resolved every tick.
        pub host: Text,
        pub port: Spanned<u16>,
    }
}

#[derive(Debug, Clone)]
pub struct TcpSpec {
    pub host: String,
    pub port: u16,
}

impl Settings for TcpSpec {}

impl Check for TcpProbeConfig {
    type Spec = TcpSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _: Location) -> Option<TcpSpec> {
        let host = b.string(&self.host, &format!("{field}.host"))?;
        b.check_host(&host, &self.host, &format!("{field}.host"));
        if self.port.value == 0 {
            b.error(
                &self.port.referenced,
                &format!("{field}.port"),
                "`port` must be between 1 and 65535",
            );
        }
        Some(TcpSpec {
            host,
            port: self.port.value,
        })
    }
}
