//! Probes: what a monitor job measures each tick. Each probe type has its own file and keeps
//! its own state (previous counters for rates); a `ProbeSet` runs a job's probes concurrently,
//! each under its own timeout, and gathers what they measured and what went wrong.

pub mod access_log;
pub mod command;
pub mod connections;
pub mod cpu;
pub mod disk;
pub mod disk_io;
pub mod http;
pub mod load;
pub mod memory;
pub mod net_io;
pub mod ping;
pub mod process;
pub mod procfs;
pub mod rate;
pub mod tcp;
pub mod x509;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::probe_spec::{ProbeKind, ProbeSpec};

pub use procfs::ProcRoot;

use crate::vocab::MetricName;

const SYSTEM_TIMEOUT: Duration = Duration::from_millis(1_000);
const DISK_TIMEOUT: Duration = Duration::from_millis(2_000);
const TCP_TIMEOUT: Duration = Duration::from_millis(3_000);
const HTTP_TIMEOUT: Duration = Duration::from_millis(10_000);
const PROCESS_TIMEOUT: Duration = Duration::from_millis(2_000);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(10_000);

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
    Ping(ping::PingProbe),
    Tcp(tcp::TcpProbe),
    Http(Box<http::HttpProbe>),
    Process(process::ProcessProbe),
    Connections(connections::ConnectionsProbe),
    AccessLog(Box<access_log::AccessLogProbe>),
    Command(command::CommandProbe),
}

/// One configured probe with its state.
pub struct Probe {
    /// `cpu`, `ping.gateway`: the key of its errors in a sample.
    key: String,
    timeout: Duration,
    kind: Kind,
}

impl Probe {
    pub fn build(spec: &ProbeSpec, root: &ProcRoot) -> Probe {
        let root = root.clone();
        let instance = spec.name.clone().unwrap_or_default();
        let (kind, default_timeout) = match &spec.kind {
            ProbeKind::Cpu { per_core } => (
                Kind::Cpu(cpu::CpuProbe::new(root, *per_core)),
                SYSTEM_TIMEOUT,
            ),
            ProbeKind::Memory => (Kind::Memory(memory::MemoryProbe::new(root)), SYSTEM_TIMEOUT),
            ProbeKind::Load => (Kind::Load(load::LoadProbe::new(root)), SYSTEM_TIMEOUT),
            ProbeKind::Disk { mounts } => (
                Kind::Disk(disk::DiskProbe::new(root, mounts.clone())),
                DISK_TIMEOUT,
            ),
            ProbeKind::DiskIo { devices } => (
                Kind::DiskIo(disk_io::DiskIoProbe::new(root, devices.clone())),
                SYSTEM_TIMEOUT,
            ),
            ProbeKind::NetIo { interfaces } => (
                Kind::NetIo(net_io::NetIoProbe::new(root, interfaces.clone())),
                SYSTEM_TIMEOUT,
            ),
            ProbeKind::Ping(p) => {
                // Every echo sent, and a second for the last reply.
                let default = p.interval * p.count.saturating_sub(1) + Duration::from_secs(1);
                (
                    Kind::Ping(ping::PingProbe::new(p.clone(), &instance)),
                    default,
                )
            }
            ProbeKind::Tcp { host, port } => (
                Kind::Tcp(tcp::TcpProbe::new(host.clone(), *port, &instance)),
                TCP_TIMEOUT,
            ),
            ProbeKind::Http(h) => (
                Kind::Http(Box::new(http::HttpProbe::new((**h).clone(), &instance))),
                HTTP_TIMEOUT,
            ),
            ProbeKind::Process(m) => (
                Kind::Process(process::ProcessProbe::new(root, m.clone(), &instance)),
                PROCESS_TIMEOUT,
            ),
            ProbeKind::Connections { ports } => (
                Kind::Connections(connections::ConnectionsProbe::new(
                    root,
                    ports.clone(),
                    &instance,
                )),
                PROCESS_TIMEOUT,
            ),
            ProbeKind::AccessLog(a) => (
                Kind::AccessLog(Box::new(access_log::AccessLogProbe::new(
                    a.clone(),
                    &instance,
                ))),
                PROCESS_TIMEOUT,
            ),
            ProbeKind::Command(c) => (
                Kind::Command(command::CommandProbe::new(c.clone(), &instance)),
                COMMAND_TIMEOUT,
            ),
        };
        Probe {
            key: spec.key(),
            timeout: spec.timeout.unwrap_or(default_timeout),
            kind,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
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
                Kind::Ping(p) => p.collect(&mut out, timeout).await,
                Kind::Tcp(p) => p.collect(&mut out, timeout).await,
                Kind::Http(p) => p.collect(&mut out, timeout).await,
                Kind::Process(p) => p.collect(&mut out),
                Kind::Connections(p) => p.collect(&mut out),
                Kind::AccessLog(p) => p.collect(&mut out),
                Kind::Command(p) => p.collect(&mut out, timeout).await,
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
    pub fn build(specs: &[ProbeSpec], root: &ProcRoot) -> ProbeSet {
        ProbeSet {
            probes: specs.iter().map(|s| Probe::build(s, root)).collect(),
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
