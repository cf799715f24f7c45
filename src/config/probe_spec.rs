//! Probes as checked: `${VAR}` expanded, regexes compiled, paths resolved, defaults filled in.
//! `config::build` makes these from the YAML; `probes` builds the running probes from these.

use std::path::PathBuf;
use std::time::Duration;

use super::Secret;
use super::probes::{OutputFormat, StatusSpec, TimeUnit};

/// One probe of a monitor job.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// `cpu`, `ping`, ...
    pub type_name: &'static str,
    /// The instance name of named probes (`gateway`).
    pub name: Option<String>,
    /// From `timeout_ms`; the probe type's default when absent.
    pub timeout: Option<Duration>,
    pub kind: ProbeKind,
}

impl ProbeSpec {
    /// `cpu`, `ping.gateway`: the key of the probe's errors in a sample.
    pub fn key(&self) -> String {
        match &self.name {
            Some(name) => format!("{}.{name}", self.type_name),
            None => self.type_name.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ProbeKind {
    Cpu { per_core: bool },
    Memory,
    Load,
    Disk { mounts: Option<Vec<PathBuf>> },
    DiskIo { devices: Option<Vec<String>> },
    NetIo { interfaces: Option<Vec<String>> },
    Ping(PingSpec),
    Tcp { host: String, port: u16 },
    Http(Box<HttpSpec>),
    Process(ProcessMatch),
    Connections { ports: Vec<u16> },
    AccessLog(AccessLogSpec),
    Command(CommandSpec),
}

#[derive(Debug, Clone)]
pub struct PingSpec {
    pub host: String,
    pub count: u32,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// May hold a token, so it is never logged; errors name the host only.
    pub url: Secret,
    pub method: String,
    pub headers: Vec<(String, Secret)>,
    pub body: Option<String>,
    pub expect_status: StatusSpec,
    pub body_contains: Option<String>,
    pub body_regex: Option<regex::Regex>,
    /// Metric field → JSON pointer (`/metrics/p95`).
    pub extract: Vec<(String, String)>,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub follow_redirects: bool,
}

#[derive(Debug, Clone)]
pub enum ProcessMatch {
    Name(String),
    Cmdline(regex::Regex),
    PidFile(PathBuf),
}

#[derive(Debug, Clone)]
pub enum AccessLogFormat {
    /// nginx/Apache combined, then optional extra fields (0-based index after the user agent).
    Combined {
        request_time: Option<usize>,
        session: Option<usize>,
    },
    /// Named groups `status`, `client`, `request_time`, `session`.
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct AccessLogSpec {
    pub path: PathBuf,
    pub format: AccessLogFormat,
    pub time_unit: TimeUnit,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program and arguments; `/bin/sh -c LINE` for `shell:`.
    pub argv: Vec<String>,
    pub parse: OutputFormat,
    pub env: Vec<(String, Secret)>,
}

/// `metrics.p95` or `items[0].ms` → `/metrics/p95`, `/items/0/ms`; a pointer stays as it is.
pub fn json_pointer(path: &str) -> Option<String> {
    let path = path.trim();
    if path.starts_with('/') {
        return Some(path.to_string());
    }
    if path.is_empty() {
        return None;
    }
    let mut pointer = String::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
        } else if rest.is_empty() {
            return None;
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            let index = &inner[..end];
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            pointer.push('/');
            pointer.push_str(index);
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_pointers() {
        assert_eq!(json_pointer("metrics.p95").as_deref(), Some("/metrics/p95"));
        assert_eq!(json_pointer("items[0].ms").as_deref(), Some("/items/0/ms"));
        assert_eq!(json_pointer("[2]").as_deref(), Some("/2"));
        assert_eq!(
            json_pointer("/already/pointer").as_deref(),
            Some("/already/pointer")
        );
        assert_eq!(json_pointer("a/b.c").as_deref(), Some("/a~1b/c"));
        assert_eq!(json_pointer("items[x]"), None);
        assert_eq!(json_pointer("items[0"), None);
        assert_eq!(json_pointer(""), None);
    }
}
