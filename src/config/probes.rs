//! Probe settings as written under a monitor job's `probes:`; `type` picks the probe.

use indexmap::IndexMap;
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
        "tcp" => Tcp(TcpProbeConfig),
        "http" => Http(HttpProbeConfig),
        "process" => Process(ProcessProbeConfig),
        "connections" => Connections(ConnectionsProbeConfig),
        "access_log" => AccessLog(AccessLogProbeConfig),
        "command" => Command(CommandProbeConfig),
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
            ProbeConfig::Tcp(p) => p.common(),
            ProbeConfig::Http(p) => p.common(),
            ProbeConfig::Process(p) => p.common(),
            ProbeConfig::Connections(p) => p.common(),
            ProbeConfig::AccessLog(p) => p.common(),
            ProbeConfig::Command(p) => p.common(),
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

named_probe_config! {
    /// TCP connect time to a host and port, and whether it accepts connections.
    pub struct TcpProbeConfig {
        /// Host name or address, resolved every tick.
        pub host: Text,
        pub port: Spanned<u16>,
    }
}

/// `expect_status`: one code, a class such as `2xx`, or a list of those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSpec(pub Vec<StatusMatch>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    /// `2xx`: any code from 200 to 299.
    Class(u16),
}

impl StatusMatch {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            StatusMatch::Code(code) => *code == status,
            StatusMatch::Class(class) => status / 100 == *class,
        }
    }

    fn parse(text: &str) -> Option<StatusMatch> {
        let text = text.trim();
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            return class
                .parse()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .map(StatusMatch::Class);
        }
        text.parse()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(StatusMatch::Code)
    }
}

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an HTTP status (200), a class (`2xx`), or a list of those")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusSpec, E> {
                StatusMatch::parse(v)
                    .map(|m| StatusSpec(vec![m]))
                    .ok_or_else(|| {
                        E::custom(format!(
                            "`{v}` is not an HTTP status (100-599) or a class like `2xx`"
                        ))
                    })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StatusSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(one) = seq.next_element::<StatusSpec>()? {
                    out.extend(one.0);
                }
                Ok(StatusSpec(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

named_probe_config! {
    /// An HTTP(S) request: up, status, latency, time to first byte, certificate expiry, and
    /// numbers extracted from a JSON body (an application's own metrics endpoint).
    pub struct HttpProbeConfig {
        /// `http://` or `https://` URL.
        pub url: Text,
        /// `GET` (default), `HEAD`, `POST`, `PUT`, ...
        #[serde(default)]
        pub method: Option<Text>,
        /// Request headers; values may use `${VAR}`.
        #[serde(default)]
        pub headers: IndexMap<String, Text>,
        /// Request body, sent as is.
        #[serde(default)]
        pub body: Option<Text>,
        /// Statuses that count as up: `200`, `2xx`, or a list (default `2xx`).
        #[serde(default)]
        pub expect_status: Option<StatusSpec>,
        /// Text the body must contain to count as up.
        #[serde(default)]
        pub body_contains: Option<String>,
        /// A regex the body must match to count as up.
        #[serde(default)]
        pub body_regex: Option<Text>,
        /// Metric name → JSON pointer (`/metrics/p95`) or path (`metrics.p95`, `items[0].ms`).
        #[serde(default)]
        pub extract: IndexMap<String, Text>,
        /// Extra CA certificates (PEM) to trust, for private CAs.
        #[serde(default)]
        pub ca_file: Option<Text>,
        /// `false` accepts any certificate (expiry is still reported). Default true.
        #[serde(default)]
        pub tls_verify: Option<bool>,
        /// Follow up to 5 redirects (default true); `false` reports the redirect itself.
        #[serde(default)]
        pub follow_redirects: Option<bool>,
    }
}

named_probe_config! {
    /// Processes matched by name, command line or pid file: how many, their CPU, memory,
    /// threads, open files, and restarts.
    pub struct ProcessProbeConfig {
        /// The process name as the kernel knows it (`/proc/<pid>/comm`, at most 15 bytes).
        #[serde(default)]
        pub process_name: Option<Text>,
        /// A regex on the full command line (arguments joined by spaces).
        #[serde(default)]
        pub cmdline: Option<Text>,
        /// A file holding the pid (`/run/nginx.pid`).
        #[serde(default)]
        pub pid_file: Option<Text>,
    }
}

named_probe_config! {
    /// Established TCP connections to local ports (IPv4 and IPv6): a server's live sessions.
    pub struct ConnectionsProbeConfig {
        /// Local ports whose established connections count.
        pub ports: Vec<Spanned<u16>>,
    }
}

/// Units of a logged request time.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds, as nginx's `$request_time` (`0.123`).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds, as Apache's `%D`.
    Us,
}

named_probe_config! {
    /// A web server's access log, tailed between ticks: request rate, errors, request-time
    /// percentiles, distinct clients and sessions.
    pub struct AccessLogProbeConfig {
        /// The log file; followed across rotation (rename) and truncation.
        pub path: Text,
        /// Names of fields after the combined format's user agent, in order: `request_time`,
        /// `session`, or anything else (ignored). E.g. for nginx `... "$http_user_agent"
        /// $request_time $cookie_sid`: `[request_time, session]`.
        #[serde(default)]
        pub extra_fields: Vec<Text>,
        /// A regex with named groups instead of the combined format: `status` (required),
        /// `client`, `request_time`, `session`.
        #[serde(default)]
        pub regex: Option<Text>,
        /// Unit of `request_time`: `s` (default, nginx), `ms`, `us` (Apache `%D`).
        #[serde(default)]
        pub request_time_unit: Option<TimeUnit>,
        /// Window for distinct clients and sessions (default `15m`).
        #[serde(default)]
        pub window: Option<Text>,
    }
}

/// How a command's standard output is read.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Whatever of the three below the output is.
    Auto,
    /// One number: `command.<name>.value`.
    Number,
    /// `key value` lines: `command.<name>.<key>`.
    Lines,
    /// A JSON object of numbers: `command.<name>.<key>`.
    Json,
}

named_probe_config! {
    /// A command whose standard output is numbers.
    pub struct CommandProbeConfig {
        /// The program and its arguments, run without a shell.
        #[serde(default)]
        pub command: Option<Vec<Text>>,
        /// A shell command line, run with `/bin/sh -c` (instead of `command`).
        #[serde(default)]
        pub shell: Option<Text>,
        /// `auto` (default), `number`, `lines` or `json`.
        #[serde(default)]
        pub parse: Option<OutputFormat>,
        /// Extra environment variables; values may use `${VAR}`.
        #[serde(default)]
        pub env: IndexMap<String, Text>,
    }
}
