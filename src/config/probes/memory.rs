//! `memory`: use, swap, paging and memory pressure.

use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, system_probe_config};
use crate::config::build::Builder;

pub const TYPE: ProbeType = ProbeType {
    name: "memory",
    instances: Instances::None,
    fields: &[
        Field {
            name: "used_percent",
            help: "memory in use: (total - available) / total",
        },
        Field {
            name: "available_bytes",
            help: "memory available for new work without swapping (MemAvailable)",
        },
        Field {
            name: "total_bytes",
            help: "memory in total (MemTotal)",
        },
        Field {
            name: "swap_used_percent",
            help: "swap in use; absent without swap",
        },
        Field {
            name: "swap_in_per_sec",
            help: "pages swapped in per second",
        },
        Field {
            name: "swap_out_per_sec",
            help: "pages swapped out per second",
        },
        Field {
            name: "major_faults_per_sec",
            help: "page faults that read from disk, per second",
        },
        Field {
            name: "pressure_some_avg10_percent",
            help: "share of time some task waited for memory over the last 10 s (PSI)",
        },
        // The kernel's own counters behind the three rates, for Prometheus' `rate()`.
        Field {
            name: "swap_in_pages_total",
            help: "pages swapped in since boot (`pswpin`, the kernel's counter)",
        },
        Field {
            name: "swap_out_pages_total",
            help: "pages swapped out since boot (`pswpout`, the kernel's counter)",
        },
        Field {
            name: "major_faults_total",
            help: "page faults that read from disk since boot (`pgmajfault`, the kernel's counter)",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(1_000),
};

system_probe_config! {
    /// Memory, swap, paging and memory pressure.
    pub struct MemoryProbeConfig {}
}

#[derive(Debug, Clone)]
pub struct MemorySpec;

impl Settings for MemorySpec {}

impl Check for MemoryProbeConfig {
    type Spec = MemorySpec;

    fn check(self, _: &mut Builder<'_>, _: &str, _: Location) -> Option<MemorySpec> {
        Some(MemorySpec)
    }
}
