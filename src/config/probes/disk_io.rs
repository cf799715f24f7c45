//! `disk_io`: block device throughput, operations, utilisation and wait.

use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, system_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

pub const TYPE: ProbeType = ProbeType {
    name: "disk_io",
    instances: Instances::Discovered {
        well_known: &["total"],
        numbered: None,
    },
    fields: &[
        Field {
            name: "read_bytes_per_sec",
            help: "bytes read per second",
        },
        Field {
            name: "write_bytes_per_sec",
            help: "bytes written per second",
        },
        Field {
            name: "reads_per_sec",
            help: "completed reads per second",
        },
        Field {
            name: "writes_per_sec",
            help: "completed writes per second",
        },
        Field {
            name: "util_percent",
            help: "share of time the device was busy; for `total`, the busiest device",
        },
        Field {
            name: "await_ms",
            help: "average time per operation, queue included; absent when there was none",
        },
        // The kernel's own counters, per device (no `total`), for Prometheus' `rate()`.
        Field {
            name: "read_bytes_total",
            help: "bytes read since boot (the kernel's counter)",
        },
        Field {
            name: "written_bytes_total",
            help: "bytes written since boot (the kernel's counter)",
        },
        Field {
            name: "reads_total",
            help: "reads completed since boot (the kernel's counter)",
        },
        Field {
            name: "writes_total",
            help: "writes completed since boot (the kernel's counter)",
        },
        Field {
            name: "io_time_seconds_total",
            help: "time the device was busy since boot, in seconds (the kernel's counter)",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(1_000),
};

system_probe_config! {
    /// Block device throughput, operations, utilisation and wait.
    pub struct DiskIoProbeConfig {
        /// Devices to report (`sda`, `nvme0n1`); every whole disk when absent.
        #[serde(default)]
        pub devices: Option<Vec<Text>>,
    }
}

#[derive(Debug, Clone)]
pub struct DiskIoSpec {
    /// `None`: whole disks, not loop, ram or zram devices.
    pub devices: Option<Vec<String>>,
}

impl Settings for DiskIoSpec {}

impl Check for DiskIoProbeConfig {
    type Spec = DiskIoSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _: Location) -> Option<DiskIoSpec> {
        Some(DiskIoSpec {
            devices: b.strings(self.devices, &format!("{field}.devices")),
        })
    }
}
