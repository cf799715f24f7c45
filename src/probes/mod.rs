//! Probes: what a monitor job measures each tick. Each probe type has its own file and keeps
//! its own state (previous counters for rates). A probe either reads (kernel files under
//! `/proc` and `/sys`, a log file: synchronous work) or waits (on the network, on a child
//! process). A `ProbeSet` runs a tick's readers one after another on a blocking thread while
//! its waiters run concurrently on the runtime, so no synchronous work ever sits inside a
//! network probe's timed section, and each probe has its own timeout.

pub mod access_log;
pub mod cloudwatch;
pub mod command;
pub mod connections;
pub mod cpu;
pub mod disk;
pub mod disk_io;
pub mod http;
pub mod icmp;
pub mod load;
pub mod memory;
pub mod net_io;
pub mod ping;
pub mod postgres;
pub mod process;
pub mod procfs;
pub mod rate;
pub mod tcp;
pub mod x509;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::probes::{Field, ProbeKind, ProbeSpec};

pub use procfs::ProcRoot;

use crate::vocab::MetricName;

/// What one probe measured in one tick, and what went wrong for parts of it.
#[derive(Debug, Default)]
pub struct Output {
    pub metrics: Vec<(MetricName, f64)>,
    /// Keyed `<type>[.<name>][.<instance>]`, e.g. `disk.mnt_nfs`.
    pub errors: Vec<(String, String)>,
    /// Text a probe found beside its numbers, named like a metric
    /// (`postgres.main.lock_head_blocker`): rules read it with `note()` to say more in an
    /// alert. Not written to the metrics log.
    pub notes: Vec<(MetricName, String)>,
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

    pub fn note(&mut self, name: &MetricName, text: String) {
        self.notes.push((name.clone(), text));
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
    pub fn get(&mut self, instance: &str, fields: &[Field]) -> Arc<[MetricName]> {
        if let Some(names) = self.by_instance.get(instance) {
            return names.clone();
        }
        let names: Arc<[MetricName]> = fields
            .iter()
            .map(|f| MetricName::from(format!("{}.{instance}.{}", self.family, f.name)))
            .collect();
        self.by_instance.insert(instance.to_string(), names.clone());
        names
    }

    /// `family.field` for families without instances (`memory.used_percent`).
    pub fn get_flat(&mut self, fields: &[Field]) -> Arc<[MetricName]> {
        if let Some(names) = self.by_instance.get("") {
            return names.clone();
        }
        let names: Arc<[MetricName]> = fields
            .iter()
            .map(|f| MetricName::from(format!("{}.{}", self.family, f.name)))
            .collect();
        self.by_instance.insert(String::new(), names.clone());
        names
    }
}

/// A probe that reads files: synchronous and quick, run on a blocking thread. `deadline` is when
/// its timeout runs out; one that may read for long (a log) stops there and goes on next tick.
pub trait Read: Send + 'static {
    fn read(&mut self, out: &mut Output, deadline: Instant) -> Result<(), String>;
}

/// What a waiting probe returns: resolves when it has measured.
pub type Waiting<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// How long past its timeout a waiting probe is given to report before it counts as lost: its
/// own timeout should have ended it, and on a busy host that takes a moment.
const WAITER_MARGIN: Duration = Duration::from_millis(500);

/// A probe that waits on the network or on another process, on the runtime. It ends its own
/// work at `timeout` and reports what that means (down, killed), rather than being cut off.
pub trait Wait: Send {
    fn wait<'a>(&'a mut self, out: &'a mut Output, timeout: Duration) -> Waiting<'a>;
}

enum Runner {
    Read(Box<dyn Read>),
    Wait(Box<dyn Wait>),
}

/// One configured probe with its state.
pub struct Probe {
    /// `cpu`, `ping.gateway`: the key of its errors in a sample.
    key: String,
    timeout: Duration,
    /// `None` only while a tick has lent it to the blocking thread.
    runner: Option<Runner>,
}

fn reads(probe: impl Read) -> Runner {
    Runner::Read(Box::new(probe))
}

fn waits(probe: impl Wait + 'static) -> Runner {
    Runner::Wait(Box::new(probe))
}

impl Probe {
    /// The running probe for a checked spec: one line per probe type.
    pub fn build(spec: &ProbeSpec, root: &ProcRoot) -> Probe {
        let root = root.clone();
        let name = spec.name.as_deref().unwrap_or_default();
        let runner = match &spec.kind {
            ProbeKind::Cpu(s) => reads(cpu::CpuProbe::new(root, s.per_core)),
            ProbeKind::Memory(_) => reads(memory::MemoryProbe::new(root)),
            ProbeKind::Load(_) => reads(load::LoadProbe::new(root)),
            ProbeKind::Disk(s) => waits(disk::DiskProbe::new(root, s.mounts.clone())),
            ProbeKind::DiskIo(s) => reads(disk_io::DiskIoProbe::new(root, s.devices.clone())),
            ProbeKind::NetIo(s) => reads(net_io::NetIoProbe::new(root, s.interfaces.clone())),
            ProbeKind::Ping(s) => waits(ping::PingProbe::new(s.clone(), root, name)),
            ProbeKind::Tcp(s) => waits(tcp::TcpProbe::new(s.host.clone(), s.port, name)),
            ProbeKind::Http(s) => waits(http::HttpProbe::new(s.clone(), name, spec.timeout)),
            ProbeKind::Process(s) => reads(process::ProcessProbe::new(root, s.clone(), name)),
            ProbeKind::Connections(s) => reads(connections::ConnectionsProbe::new(
                root,
                s.ports.clone(),
                name,
            )),
            ProbeKind::AccessLog(s) => reads(access_log::AccessLogProbe::new(s.clone(), name)),
            ProbeKind::Command(s) => waits(command::CommandProbe::new(s.clone(), name)),
            ProbeKind::Postgres(s) => waits(postgres::PostgresProbe::new(s.clone(), name)),
            ProbeKind::Cloudwatch(s) => waits(cloudwatch::CloudwatchProbe::new(s.clone(), name)),
        };
        Probe {
            key: spec.key(),
            timeout: spec.timeout,
            runner: Some(runner),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn timed_out(&self) -> Output {
        Output {
            metrics: Vec::new(),
            errors: vec![(
                self.key.clone(),
                format!("timed out after {} ms", self.timeout.as_millis()),
            )],
            notes: Vec::new(),
        }
    }

    /// What a probe's work came to: its output, or its error alone (a failure or a timeout is
    /// an error entry, never a panic or a 0).
    fn finish(&self, mut out: Output, result: Result<(), String>) -> Output {
        if let Err(message) = result {
            out.metrics.clear();
            out.notes.clear();
            out.error(self.key.clone(), message);
        }
        out
    }
}

/// A monitor job's probes, run together each tick.
pub struct ProbeSet {
    probes: Vec<Probe>,
}

impl ProbeSet {
    pub fn build(specs: &[ProbeSpec], root: &ProcRoot) -> ProbeSet {
        // Once a set, for every command that measures (the scheduler, `run`, `dry-run`): what
        // these probes need from the proc and sys roots and do not find there is said once.
        procfs::check_roots(root, specs.iter().map(|s| s.type_name()));
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

    /// Runs every probe once: readers first, on a blocking thread, then waiters concurrently on the
    /// runtime, and merges what they found in probe order.
    pub async fn collect(&mut self) -> Output {
        let mut lent: Vec<(usize, Box<dyn Read>, Duration)> = Vec::new();
        for (i, probe) in self.probes.iter_mut().enumerate() {
            if let Some(Runner::Read(reader)) =
                probe.runner.take_if(|r| matches!(r, Runner::Read(_)))
            {
                lent.push((i, reader, probe.timeout));
            }
        }
        let reading = tokio::task::spawn_blocking(move || {
            let results: Vec<_> = lent
                .into_iter()
                .map(|(i, mut reader, timeout)| {
                    let started = Instant::now();
                    let mut out = Output::default();
                    // A reader that panics fails its own reading only; the others go on.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        reader.read(&mut out, started + timeout)
                    }))
                    .unwrap_or_else(|_| Err("the probe failed unexpectedly (a bug)".to_string()));
                    let late = started.elapsed() > timeout;
                    (i, reader, out, result, late)
                })
                .collect();
            results
        });
        // Readers first, waiters after: a reader's CPU (parsing 20,000 sockets' lines takes
        // milliseconds) would otherwise compete with a network probe for the cores while its
        // timer runs, and the timing would measure this host's busyness, not the network.
        let reading = reading.await;
        let waiting = futures_util::future::join_all(
            self.probes.iter_mut().enumerate().filter_map(|(i, probe)| {
                let timeout = probe.timeout;
                let Some(Runner::Wait(waiter)) = probe.runner.as_mut() else {
                    return None;
                };
                Some(async move {
                    let mut out = Output::default();
                    // A waiter keeps its own timeout (a hung server reads as down, a slow
                    // command is killed); this one only catches a probe that does not.
                    let limit = timeout + (timeout / 4).max(WAITER_MARGIN);
                    let result = tokio::time::timeout(limit, waiter.wait(&mut out, timeout)).await;
                    (i, out, result)
                })
            }),
        )
        .await;
        let mut outputs: Vec<Option<Output>> = (0..self.probes.len()).map(|_| None).collect();
        for (i, out, result) in waiting {
            let probe = &self.probes[i];
            outputs[i] = Some(match result {
                Ok(result) => probe.finish(out, result),
                Err(_) => probe.timed_out(),
            });
        }
        match reading {
            Ok(results) => {
                for (i, reader, out, result, late) in results {
                    let probe = &mut self.probes[i];
                    probe.runner = Some(Runner::Read(reader));
                    outputs[i] = Some(if late {
                        probe.timed_out()
                    } else {
                        probe.finish(out, result)
                    });
                }
            }
            Err(e) => {
                // The blocking thread itself went away: the readers are lost until the next
                // start; say so each tick.
                for (i, probe) in self.probes.iter().enumerate() {
                    if probe.runner.is_none() {
                        outputs[i] = Some(probe.finish(
                            Output::default(),
                            Err(format!("the probe stopped working: {e}")),
                        ));
                    }
                }
            }
        }
        let mut merged = Output::default();
        for out in outputs.into_iter().flatten() {
            merged.metrics.extend(out.metrics);
            merged.errors.extend(out.errors);
            merged.notes.extend(out.notes);
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// When each fake probe's work began and ended.
    type Log = Arc<Mutex<Vec<(&'static str, Instant)>>>;

    struct SlowReader(Log);

    impl Read for SlowReader {
        fn read(&mut self, out: &mut Output, _deadline: Instant) -> Result<(), String> {
            // Stands for parsing /proc/net/tcp with 20,000 sockets: CPU for milliseconds.
            std::thread::sleep(Duration::from_millis(30));
            self.0.lock().unwrap().push(("read ended", Instant::now()));
            out.push(&MetricName::from("fake.read"), 1.0);
            Ok(())
        }
    }

    struct Timed(Log);

    impl Wait for Timed {
        fn wait<'a>(&'a mut self, out: &'a mut Output, _timeout: Duration) -> Waiting<'a> {
            Box::pin(async move {
                self.0.lock().unwrap().push(("wait began", Instant::now()));
                out.push(&MetricName::from("fake.wait"), 1.0);
                Ok(())
            })
        }
    }

    fn probe(key: &str, runner: Runner) -> Probe {
        Probe {
            key: key.into(),
            timeout: Duration::from_secs(5),
            runner: Some(runner),
        }
    }

    #[tokio::test]
    async fn network_timers_start_after_the_readers_cpu_work() {
        let log = Log::default();
        let mut set = ProbeSet {
            probes: vec![
                probe("wait", waits(Timed(log.clone()))),
                probe("read", reads(SlowReader(log.clone()))),
            ],
        };
        for _ in 0..2 {
            log.lock().unwrap().clear();
            let out = set.collect().await;
            // Probe order is kept in the output whatever ran first.
            let names: Vec<_> = out.metrics.iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(names, ["fake.wait", "fake.read"]);
            let events = log.lock().unwrap().clone();
            assert_eq!(
                events.iter().map(|(what, _)| *what).collect::<Vec<_>>(),
                ["read ended", "wait began"]
            );
            assert!(events[0].1 <= events[1].1);
        }
    }
}
