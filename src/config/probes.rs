//! Probe settings as written under a monitor job's `probes:`; `type` picks the probe.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::raw::Text;
use super::tagged::tagged_config;

tagged_config! {
    /// One probe of a monitor job.
    #[derive(Debug)]
    pub enum ProbeConfig: "probe type" {
        "cpu" => Cpu(CpuProbeConfig),
        "memory" => Memory(MemoryProbeConfig),
        "load" => Load(LoadProbeConfig),
        "disk" => Disk(DiskProbeConfig),
        "disk_io" => DiskIo(DiskIoProbeConfig),
        "net_io" => NetIo(NetIoProbeConfig),
        "ping" => Ping(PingProbeConfig),
    }
}

/// Declares the config struct of a probe of the machine itself (cpu, disk, ...): these are
/// listed once per job, and their instances (cores, mounts, devices) are discovered.
macro_rules! system_probe_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Longest the probe may take per tick before it counts as failed.
            #[serde(default)]
            pub timeout_ms: Option<Spanned<u64>>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn common(&self) -> (Option<&Text>, Option<&Spanned<u64>>) {
                (None, self.timeout_ms.as_ref())
            }
        }
    };
}

/// Declares the config struct of a probe of something else (a host, a URL, a process): these
/// need a `name`, which becomes the instance in metric names (`ping.<name>.rtt_avg_ms`).
macro_rules! named_probe_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Instance name in metric names, `^[a-z][a-z0-9_]*$` so a rule can write it.
            pub name: Text,
            /// Longest the probe may take per tick before it counts as failed.
            #[serde(default)]
            pub timeout_ms: Option<Spanned<u64>>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn common(&self) -> (Option<&Text>, Option<&Spanned<u64>>) {
                (Some(&self.name), self.timeout_ms.as_ref())
            }
        }
    };
}

impl ProbeConfig {
    /// The probe's `name` and `timeout_ms`, whatever its type.
    pub fn common(&self) -> (Option<&Text>, Option<&Spanned<u64>>) {
        match self {
            ProbeConfig::Cpu(p) => p.common(),
            ProbeConfig::Memory(p) => p.common(),
            ProbeConfig::Load(p) => p.common(),
            ProbeConfig::Disk(p) => p.common(),
            ProbeConfig::DiskIo(p) => p.common(),
            ProbeConfig::NetIo(p) => p.common(),
            ProbeConfig::Ping(p) => p.common(),
        }
    }
}

system_probe_config! {
    /// CPU usage in total and per core, and CPU pressure.
    pub struct CpuProbeConfig {
        /// Also report `cpu.coreN.usage_percent` (default true).
        #[serde(default)]
        pub per_core: Option<bool>,
    }
}

system_probe_config! {
    /// Memory, swap, paging and memory pressure.
    pub struct MemoryProbeConfig {}
}

system_probe_config! {
    /// Load averages.
    pub struct LoadProbeConfig {}
}

system_probe_config! {
    /// Space and inodes per mounted filesystem.
    pub struct DiskProbeConfig {
        /// Mount points to watch; every real filesystem when absent.
        #[serde(default)]
        pub mounts: Option<Vec<Text>>,
    }
}

system_probe_config! {
    /// Block device throughput, operations, utilisation and wait.
    pub struct DiskIoProbeConfig {
        /// Devices to report (`sda`, `nvme0n1`); every whole disk when absent.
        #[serde(default)]
        pub devices: Option<Vec<Text>>,
    }
}

system_probe_config! {
    /// Network interface throughput, packets, errors and drops.
    pub struct NetIoProbeConfig {
        /// Interfaces to report; every interface when absent (loopback never counts in `total`).
        #[serde(default)]
        pub interfaces: Option<Vec<Text>>,
    }
}

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
