//! Probes as the jobs file declares them. Each probe type has one file here holding all that is
//! known about it before it runs: its settings as written (a serde struct), its description
//! (`TYPE`: the fields it reports, how its instances are named, its default timeout), and the
//! checks that turn the settings into its `Spec`. The table below lists the types once; the
//! config checks, the rules' metric schema and the probe builder all read it.
//!
//! A new probe type is a file here, a line in the table, its measuring code in `probes/` with
//! a line in `Probe::build`, and its tests.

pub mod access_log;
pub mod cloudwatch;
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
pub mod postgres;
pub mod process;
pub mod tcp;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::build::Builder;
use super::raw::Text;
use super::tagged::tagged_config;

pub use access_log::{AccessLogFormat, AccessLogSpec, TimeUnit};
pub use cloudwatch::CloudwatchSpec;
pub use command::{CommandSpec, OutputFormat};
pub use connections::ConnectionsSpec;
pub use cpu::CpuSpec;
pub use disk::DiskSpec;
pub use disk_io::DiskIoSpec;
pub use http::{HttpSpec, StatusMatch, StatusSpec, json_pointer};
pub use load::LoadSpec;
pub use memory::MemorySpec;
pub use net_io::NetIoSpec;
pub use ping::PingSpec;
pub use postgres::PostgresSpec;
pub use process::ProcessMatch;
pub use tcp::TcpSpec;

/// What is known about a probe type before it runs.
#[derive(Debug)]
pub struct ProbeType {
    /// `type:` in the jobs file, and the family of its metrics (`ping.<name>.rtt_avg_ms`).
    pub name: &'static str,
    pub instances: Instances,
    /// Every field it reports; the unit is the name's suffix (`_percent`, `_ms`, ...).
    pub fields: &'static [Field],
    /// Field names come from what it reads (a command's output keys): any name goes.
    pub open_fields: bool,
    /// Fields reported for parts of one named instance (a database or a replica of a
    /// `postgres` probe): `<type>.<name>.<part>.<field>`, where parts are found at run time.
    pub nested_fields: &'static [Field],
    /// How long one reading may take when `timeout_ms` does not say.
    pub default_timeout: Duration,
}

/// How the middle part of a metric name is made.
#[derive(Debug)]
pub enum Instances {
    /// `memory.used_percent`: the family has no instances.
    None,
    /// Found on the machine (mounts, cores, devices, interfaces); `well_known` names exist on
    /// every host (`total`), and `numbered` instances are the prefix and a number (`core0`).
    Discovered {
        well_known: &'static [&'static str],
        numbered: Option<&'static str>,
    },
    /// One per probe of this type, named by its `name` (`ping.gateway`).
    Named,
}

/// One field a probe type reports.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    /// A line for people: the `/metrics` help text and the docs.
    pub help: &'static str,
}

/// What every checked probe settings type says about itself beyond its type's description.
pub trait Settings: fmt::Debug + Clone {
    /// Fields its own settings add (an http probe's `extract`).
    fn extra_fields(&self) -> Vec<String> {
        Vec::new()
    }

    /// The timeout when `timeout_ms` does not say, if it depends on the settings.
    fn default_timeout(&self) -> Option<Duration> {
        None
    }
}

/// Lists every probe type once: its `type:` tag, its variant, and the module that describes it.
macro_rules! probe_types {
    ($( $tag:literal => $variant:ident($module:ident::$config:ident, $spec:ident), )+) => {
        tagged_config! {
            /// One probe of a monitor job, as written; `type` picks the probe.
            #[derive(Debug)]
            pub enum ProbeConfig: "probe type" {
                $( $tag => $variant($module::$config), )+
            }
        }

        /// One probe's settings, checked.
        // Built once at load time: boxing the big variants would buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum ProbeKind {
            $( $variant($spec), )+
        }

        /// Every probe type, in the order the docs list them.
        pub const PROBE_TYPES: &[&ProbeType] = &[$( &$module::TYPE ),+];

        impl ProbeKind {
            pub fn describe(&self) -> &'static ProbeType {
                match self {
                    $( ProbeKind::$variant(_) => &$module::TYPE, )+
                }
            }

            fn extra_fields(&self) -> Vec<String> {
                match self {
                    $( ProbeKind::$variant(s) => s.extra_fields(), )+
                }
            }

            fn default_timeout(&self) -> Duration {
                match self {
                    $( ProbeKind::$variant(s) => s.default_timeout().unwrap_or($module::TYPE.default_timeout), )+
                }
            }
        }

        impl ProbeConfig {
            /// The probe's `name` and `timeout_ms`, whatever its type.
            fn common(&self) -> (Option<&Text>, Option<&Spanned<u64>>) {
                match self {
                    $( ProbeConfig::$variant(c) => c.common(), )+
                }
            }

            fn check(self, b: &mut Builder<'_>, field: &str, at: Location) -> Option<ProbeKind> {
                match self {
                    $( ProbeConfig::$variant(c) => c.check(b, field, at).map(ProbeKind::$variant), )+
                }
            }
        }
    };
}

probe_types! {
    "cpu" => Cpu(cpu::CpuProbeConfig, CpuSpec),
    "memory" => Memory(memory::MemoryProbeConfig, MemorySpec),
    "load" => Load(load::LoadProbeConfig, LoadSpec),
    "disk" => Disk(disk::DiskProbeConfig, DiskSpec),
    "disk_io" => DiskIo(disk_io::DiskIoProbeConfig, DiskIoSpec),
    "net_io" => NetIo(net_io::NetIoProbeConfig, NetIoSpec),
    "ping" => Ping(ping::PingProbeConfig, PingSpec),
    "tcp" => Tcp(tcp::TcpProbeConfig, TcpSpec),
    "http" => Http(http::HttpProbeConfig, HttpSpec),
    "process" => Process(process::ProcessProbeConfig, ProcessMatch),
    "connections" => Connections(connections::ConnectionsProbeConfig, ConnectionsSpec),
    "access_log" => AccessLog(access_log::AccessLogProbeConfig, AccessLogSpec),
    "command" => Command(command::CommandProbeConfig, CommandSpec),
    "postgres" => Postgres(postgres::PostgresProbeConfig, PostgresSpec),
    "cloudwatch" => Cloudwatch(cloudwatch::CloudwatchProbeConfig, CloudwatchSpec),
}

/// One probe of a monitor job, checked and ready to build.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// The instance name of named probes (`gateway`).
    pub name: Option<String>,
    /// From `timeout_ms`, or the type's default.
    pub timeout: Duration,
    pub kind: ProbeKind,
}

impl ProbeSpec {
    /// A probe with its type's default timeout (tests and benchmarks build them by hand).
    pub fn new(name: Option<&str>, kind: ProbeKind) -> ProbeSpec {
        ProbeSpec {
            name: name.map(str::to_string),
            timeout: kind.default_timeout(),
            kind,
        }
    }

    /// `cpu`, `ping`: the probe's type and the family of its metrics.
    pub fn type_name(&self) -> &'static str {
        self.kind.describe().name
    }

    /// `cpu`, `ping.gateway`: the key of the probe's errors in a sample.
    pub fn key(&self) -> String {
        match &self.name {
            Some(name) => format!("{}.{name}", self.type_name()),
            None => self.type_name().to_string(),
        }
    }

    /// Every field this probe can report: its type's and its own settings' (`extract`).
    pub fn fields(&self) -> impl Iterator<Item = String> + '_ {
        self.kind
            .describe()
            .fields
            .iter()
            .map(|f| f.name.to_string())
            .chain(self.kind.extra_fields())
    }
}

/// `^[a-z][a-z0-9_]*$`: a probe name must be writable in a rule (`ping.gateway.loss_percent`).
pub fn valid_probe_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks a probe's settings and makes its spec.
trait Check {
    type Spec;
    fn check(self, b: &mut Builder<'_>, field: &str, at: Location) -> Option<Self::Spec>;
}

/// Declares the config struct of a probe of the machine itself (cpu, disk, ...): these are
/// listed once per job, and their instances (cores, mounts, devices) are discovered.
macro_rules! system_probe_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Longest the probe may take per tick before it counts as failed.
            #[serde(default)]
            pub timeout_ms: Option<serde_saphyr::Spanned<u64>>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn common(&self) -> (Option<&crate::config::raw::Text>, Option<&serde_saphyr::Spanned<u64>>) {
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
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Instance name in metric names, `^[a-z][a-z0-9_]*$` so a rule can write it.
            pub name: crate::config::raw::Text,
            /// Longest the probe may take per tick before it counts as failed.
            #[serde(default)]
            pub timeout_ms: Option<serde_saphyr::Spanned<u64>>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn common(&self) -> (Option<&crate::config::raw::Text>, Option<&serde_saphyr::Spanned<u64>>) {
                (Some(&self.name), self.timeout_ms.as_ref())
            }
        }
    };
}

use named_probe_config;
use system_probe_config;

impl Builder<'_> {
    /// Every probe of a job, checked; a probe with problems is left out (the problems are
    /// recorded, so the config as a whole is refused).
    pub(in crate::config) fn probes(
        &mut self,
        probes: Vec<Spanned<ProbeConfig>>,
        field: &str,
        job_at: &Location,
    ) -> Vec<ProbeSpec> {
        let mut seen: HashSet<(&'static str, String)> = HashSet::new();
        let mut out = Vec::with_capacity(probes.len());
        let job_at = (job_at.line(), job_at.column());
        for (i, probe) in probes.into_iter().enumerate() {
            // Its index as written: a broken probe before it, reported and skipped while
            // parsing, is not in `probes` but still counts. Those of this list lie between the
            // job's name and this probe (the jobs do not overlap).
            let at = (probe.referenced.line(), probe.referenced.column());
            let before = self
                .skipped_probes
                .iter()
                .filter(|skipped| **skipped > job_at && **skipped < at)
                .count();
            let i = i + before;
            let field = format!("{field}.probes[{i}]");
            let type_name = probe.value.type_name();
            let (name, timeout) = probe.value.common();
            let name = name.cloned();
            let timeout = timeout.cloned();
            let key = match &name {
                Some(name) => {
                    if !valid_probe_name(&name.value) {
                        self.error_help(
                            &name.referenced,
                            &format!("{field}.name"),
                            format!("invalid probe name `{}`", name.value),
                            "a probe name is used in metric names that rules read, so it must match ^[a-z][a-z0-9_]*$ (e.g. `gateway`, `db_primary`)",
                        );
                    }
                    name.value.clone()
                }
                None => String::new(),
            };
            if !seen.insert((type_name, key.clone())) {
                let message = if key.is_empty() {
                    format!("the `{type_name}` probe is listed twice in this job; list it once")
                } else {
                    format!(
                        "two `{type_name}` probes are named `{key}`; names must be unique per type"
                    )
                };
                self.error(&probe.referenced, &field, message);
            }
            let timeout = match timeout {
                Some(t) if t.value == 0 => {
                    self.error(
                        &t.referenced,
                        &format!("{field}.timeout_ms"),
                        "`timeout_ms` must be above 0",
                    );
                    None
                }
                Some(t) => Some(Duration::from_millis(t.value)),
                None => None,
            };
            if let Some(kind) = probe.value.check(self, &field, probe.referenced) {
                out.push(ProbeSpec {
                    name: name.map(|n| n.value),
                    timeout: timeout.unwrap_or_else(|| kind.default_timeout()),
                    kind,
                });
            }
        }
        out
    }

    fn strings(&mut self, list: Option<Vec<Text>>, field: &str) -> Option<Vec<String>> {
        list.map(|l| {
            l.iter()
                .enumerate()
                .filter_map(|(i, t)| self.string(t, &format!("{field}[{i}]")))
                .collect()
        })
    }

    fn regex(&mut self, text: &Text, field: &str) -> Option<regex::Regex> {
        match regex::Regex::new(&text.value) {
            Ok(re) => Some(re),
            Err(e) => {
                let reason = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                self.error(
                    &text.referenced,
                    field,
                    format!("invalid regex `{}`: {reason}", text.value),
                );
                None
            }
        }
    }

    fn check_host(&mut self, host: &str, text: &Text, field: &str) {
        if host.trim().is_empty() || host.contains(['/', ' ']) {
            self.error_help(
                &text.referenced,
                field,
                format!("`{host}` is not a host name or address"),
                "give a name (`db1.internal`) or an address (`10.0.0.5`, `::1`), without scheme or path",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_described_once_with_its_fields() {
        let names: Vec<&str> = PROBE_TYPES.iter().map(|t| t.name).collect();
        assert_eq!(names, ProbeConfig::TYPES);
        for t in PROBE_TYPES {
            assert!(!t.fields.is_empty(), "{}", t.name);
            let mut fields: Vec<&str> = t.fields.iter().map(|f| f.name).collect();
            fields.sort_unstable();
            fields.dedup();
            assert_eq!(fields.len(), t.fields.len(), "{}: a field twice", t.name);
            assert!(t.default_timeout > Duration::ZERO, "{}", t.name);
        }
    }
}
