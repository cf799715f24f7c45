//! `load`: the kernel's load averages, and the 1-minute one per online CPU.

use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, system_probe_config};
use crate::config::build::Builder;

pub const TYPE: ProbeType = ProbeType {
    name: "load",
    instances: Instances::None,
    fields: &[
        Field {
            name: "load1",
            help: "load average over 1 minute",
        },
        Field {
            name: "load5",
            help: "load average over 5 minutes",
        },
        Field {
            name: "load15",
            help: "load average over 15 minutes",
        },
        Field {
            name: "load1_per_core",
            help: "load average over 1 minute per online CPU",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(1_000),
};

system_probe_config! {
    /// Load averages.
    pub struct LoadProbeConfig {}
}

#[derive(Debug, Clone)]
pub struct LoadSpec;

impl Settings for LoadSpec {}

impl Check for LoadProbeConfig {
    type Spec = LoadSpec;

    fn check(self, _: &mut Builder<'_>, _: &str, _: Location) -> Option<LoadSpec> {
        Some(LoadSpec)
    }
}
