//! `cpu`: usage in total and per core, its user/system/iowait/steal split, and CPU pressure.

use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, system_probe_config};
use crate::config::build::Builder;

pub const TYPE: ProbeType = ProbeType {
    name: "cpu",
    instances: Instances::Discovered {
        well_known: &["total", "pressure"],
        numbered: Some("core"),
    },
    fields: &[
        Field {
            name: "usage_percent",
            help: "CPU time not idle and not waiting for I/O (steal counts as used), in total and per core",
        },
        Field {
            name: "user_percent",
            help: "CPU time in user space (user + nice)",
        },
        Field {
            name: "system_percent",
            help: "CPU time in the kernel (system + irq + softirq)",
        },
        Field {
            name: "iowait_percent",
            help: "CPU time idle while waiting for I/O",
        },
        Field {
            name: "steal_percent",
            help: "CPU time stolen by the hypervisor",
        },
        Field {
            name: "some_avg10_percent",
            help: "share of time some task waited for CPU over the last 10 s (PSI, `cpu.pressure`)",
        },
        // The kernel's own counters of `cpu.total`, by mode, for Prometheus' `rate()`.
        Field {
            name: "user_seconds_total",
            help: "CPU time in user space, nice excluded since boot, all cores, in seconds (`total` only)",
        },
        Field {
            name: "nice_seconds_total",
            help: "CPU time in user space at a lowered priority since boot, all cores, in seconds (`total` only)",
        },
        Field {
            name: "system_seconds_total",
            help: "CPU time in the kernel since boot, all cores, in seconds (`total` only)",
        },
        Field {
            name: "idle_seconds_total",
            help: "CPU time idle since boot, all cores, in seconds (`total` only)",
        },
        Field {
            name: "iowait_seconds_total",
            help: "CPU time idle while waiting for I/O since boot, all cores, in seconds (`total` only)",
        },
        Field {
            name: "irq_seconds_total",
            help: "CPU time serving interrupts since boot, all cores, in seconds (`total` only)",
        },
        Field {
            name: "softirq_seconds_total",
            help: "CPU time serving soft interrupts since boot, all cores, in seconds (`total` only)",
        },
        Field {
            name: "steal_seconds_total",
            help: "CPU time stolen by the hypervisor since boot, all cores, in seconds (`total` only)",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(1_000),
};

system_probe_config! {
    /// CPU usage in total and per core, and CPU pressure.
    pub struct CpuProbeConfig {
        /// Also report `cpu.coreN.usage_percent` (default true).
        #[serde(default)]
        pub per_core: Option<bool>,
    }
}

#[derive(Debug, Clone)]
pub struct CpuSpec {
    pub per_core: bool,
}

impl Settings for CpuSpec {}

impl Check for CpuProbeConfig {
    type Spec = CpuSpec;

    fn check(self, _: &mut Builder<'_>, _: &str, _: Location) -> Option<CpuSpec> {
        Some(CpuSpec {
            per_core: self.per_core.unwrap_or(true),
        })
    }
}
