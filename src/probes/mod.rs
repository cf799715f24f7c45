//! Probes: what a monitor job measures each tick. Each probe type has its own file and keeps
//! its own state (previous counters for rates); a `ProbeSet` runs a job's probes concurrently,
//! each under its own timeout, and gathers what they measured and what went wrong.

pub mod cpu;
pub mod disk;
pub mod disk_io;
pub mod load;
pub mod memory;
pub mod net_io;
pub mod procfs;
pub mod rate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::probes::ProbeConfig;

pub use procfs::ProcRoot;

/// A metric's full name, `cpu.total.usage_percent`; shared, since it repeats every tick.
pub type MetricName = Arc<str>;

const SYSTEM_TIMEOUT: Duration = Duration::from_millis(1_000);
const DISK_TIMEOUT: Duration = Duration::from_millis(2_000);

/// What one probe measured in one tick, and what went wrong for parts of it.
#[derive(Debug, Default)]
pub struct Output {
    pub metrics: Vec<(MetricName, f64)>,
    /// Keyed `<type>[.<name>][.<instance>]`, e.g. `disk.mnt_nfs`.
    pub errors: Vec<(String, String)>,
}

impl Output {
    /// Records a value; NaN and infinities are not measurements and are dropped.
    pub fn push(&mut self, name: &MetricName, value: f64) {
        if value.is_finite() {
            self.metrics.push((name.clone(), value));
        }
    }

    pub fn error(&mut self, key: String, message: String) {
        self.errors.push((key, message));
    }
}

/// Metric names of one family, built once per instance and reused every tick.
#[derive(Debug)]
pub struct Names {
    family: &'static str,
    by_instance: HashMap<String, Arc<[MetricName]>>,
}

impl Names {
    pub fn new(family: &'static str) -> Self {
        Names {
            family,
            by_instance: HashMap::new(),
        }
    }

    /// `family.instance.field` for each field, in the order given.
    pub fn get(&mut self, instance: &str, fields: &[&str]) -> Arc<[MetricName]> {
        if let Some(names) = self.by_instance.get(instance) {
            return names.clone();
        }
        let names: Arc<[MetricName]> = fields
            .iter()
            .map(|f| MetricName::from(format!("{}.{instance}.{f}", self.family)))
            .collect();
        self.by_instance.insert(instance.to_string(), names.clone());
        names
    }

    /// `family.field` for families without instances (`memory.used_percent`).
    pub fn get_flat(&mut self, fields: &[&str]) -> Arc<[MetricName]> {
        if let Some(names) = self.by_instance.get("") {
            return names.clone();
        }
        let names: Arc<[MetricName]> = fields
            .iter()
            .map(|f| MetricName::from(format!("{}.{f}", self.family)))
            .collect();
        self.by_instance.insert(String::new(), names.clone());
        names
    }
}

enum Kind {
    Cpu(cpu::CpuProbe),
    Memory(memory::MemoryProbe),
    Load(load::LoadProbe),
    Disk(disk::DiskProbe),
    DiskIo(disk_io::DiskIoProbe),
    NetIo(net_io::NetIoProbe),
    /// A probe type whose body is not built yet: it says so every tick instead of measuring.
    NotBuilt(&'static str),
}

/// One configured probe with its state.
pub struct Probe {
    /// `cpu`, `ping.gateway`: the key of its errors in a sample.
    key: String,
    timeout: Duration,
    kind: Kind,
}

impl Probe {
    pub fn build(config: &ProbeConfig, root: &ProcRoot) -> Probe {
        let root = root.clone();
        let (name, timeout_ms) = config.common();
        let key = match name {
            Some(name) => format!("{}.{}", config.type_name(), name.value),
            None => config.type_name().to_string(),
        };
        let strings = |list: &Option<Vec<crate::config::raw::Text>>| {
            list.as_ref()
                .map(|l| l.iter().map(|t| t.value.clone()).collect::<Vec<_>>())
        };
        let (kind, default_timeout) = match config {
            ProbeConfig::Cpu(c) => (
                Kind::Cpu(cpu::CpuProbe::new(root, c.per_core.unwrap_or(true))),
                SYSTEM_TIMEOUT,
            ),
            ProbeConfig::Memory(_) => {
                (Kind::Memory(memory::MemoryProbe::new(root)), SYSTEM_TIMEOUT)
            }
            ProbeConfig::Load(_) => (Kind::Load(load::LoadProbe::new(root)), SYSTEM_TIMEOUT),
            ProbeConfig::Disk(c) => (
                Kind::Disk(disk::DiskProbe::new(
                    root,
                    strings(&c.mounts).map(|l| l.into_iter().map(PathBuf::from).collect()),
                )),
                DISK_TIMEOUT,
            ),
            ProbeConfig::DiskIo(c) => (
                Kind::DiskIo(disk_io::DiskIoProbe::new(root, strings(&c.devices))),
                SYSTEM_TIMEOUT,
            ),
            ProbeConfig::NetIo(c) => (
                Kind::NetIo(net_io::NetIoProbe::new(root, strings(&c.interfaces))),
                SYSTEM_TIMEOUT,
            ),
            ProbeConfig::Ping(_) => (Kind::NotBuilt("ping"), SYSTEM_TIMEOUT),
        };
        Probe {
            key,
            timeout: timeout_ms.map_or(default_timeout, |t| Duration::from_millis(t.value)),
            kind,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Measures once; a failure or timeout becomes an error entry, never a panic or a 0.
    pub async fn collect(&mut self) -> Output {
        let timeout = self.timeout;
        let mut out = Output::default();
        let work = async {
            match &mut self.kind {
                Kind::Cpu(p) => p.collect(&mut out),
                Kind::Memory(p) => p.collect(&mut out),
                Kind::Load(p) => p.collect(&mut out),
                Kind::Disk(p) => p.collect(&mut out, timeout).await,
                Kind::DiskIo(p) => p.collect(&mut out),
                Kind::NetIo(p) => p.collect(&mut out),
                Kind::NotBuilt(kind) => Err(format!("the {kind} probe is not built yet")),
            }
        };
        let result = tokio::time::timeout(timeout, work).await;
        let key = self.key.clone();
        match result {
            Ok(Ok(())) => out,
            Ok(Err(message)) => {
                out.metrics.clear();
                out.error(key, message);
                out
            }
            Err(_) => Output {
                metrics: Vec::new(),
                errors: vec![(key, format!("timed out after {} ms", timeout.as_millis()))],
            },
        }
    }
}

/// A monitor job's probes, run together each tick.
pub struct ProbeSet {
    probes: Vec<Probe>,
}

impl ProbeSet {
    pub fn build(configs: &[ProbeConfig], root: &ProcRoot) -> ProbeSet {
        ProbeSet {
            probes: configs.iter().map(|c| Probe::build(c, root)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.probes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Runs every probe concurrently and merges what they found, in probe order.
    pub async fn collect(&mut self) -> Output {
        let outputs =
            futures_util::future::join_all(self.probes.iter_mut().map(Probe::collect)).await;
        let mut merged = Output::default();
        for out in outputs {
            merged.metrics.extend(out.metrics);
            merged.errors.extend(out.errors);
        }
        merged
    }
}
