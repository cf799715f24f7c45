//! Checks each probe of a monitor job and builds its `ProbeSpec`: names unique and writable in
//! a rule, hosts, URLs, regexes and paths valid, one way to match a process, and so on.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::Builder;
use crate::config::Secret;
use crate::config::probe_spec::{
    AccessLogFormat, AccessLogSpec, CommandSpec, HttpSpec, PingSpec, ProbeKind, ProbeSpec,
    ProcessMatch, json_pointer,
};
use crate::config::probes::{
    AccessLogProbeConfig, CommandProbeConfig, HttpProbeConfig, OutputFormat, ProbeConfig,
    ProcessProbeConfig, StatusMatch, StatusSpec, TimeUnit,
};
use crate::config::raw::Text;

const DEFAULT_PING_COUNT: u32 = 5;
const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(200);
const DEFAULT_LOG_WINDOW: Duration = Duration::from_secs(15 * 60);
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// `^[a-z][a-z0-9_]*$`: a probe name must be writable in a rule (`ping.gateway.loss_percent`).
pub fn valid_probe_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Builder<'_> {
    /// Every probe of a job, checked; a probe with problems is left out (the problems are
    /// recorded, so the config as a whole is refused).
    pub(super) fn probes(
        &mut self,
        probes: Vec<Spanned<ProbeConfig>>,
        field: &str,
    ) -> Vec<ProbeSpec> {
        let mut seen: HashSet<(&'static str, String)> = HashSet::new();
        let mut out = Vec::with_capacity(probes.len());
        for (i, probe) in probes.into_iter().enumerate() {
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
            if let Some(kind) = self.probe_kind(probe.value, &field, probe.referenced) {
                out.push(ProbeSpec {
                    type_name,
                    name: name.map(|n| n.value),
                    timeout,
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

    fn probe_kind(&mut self, probe: ProbeConfig, field: &str, at: Location) -> Option<ProbeKind> {
        Some(match probe {
            ProbeConfig::Cpu(c) => ProbeKind::Cpu {
                per_core: c.per_core.unwrap_or(true),
            },
            ProbeConfig::Memory(_) => ProbeKind::Memory,
            ProbeConfig::Load(_) => ProbeKind::Load,
            ProbeConfig::Disk(c) => {
                let mut mounts = None;
                if let Some(list) = c.mounts {
                    let mut paths = Vec::new();
                    for (i, mount) in list.iter().enumerate() {
                        let value = self.string(mount, &format!("{field}.mounts[{i}]"))?;
                        if !value.starts_with('/') {
                            self.error(
                                &mount.referenced,
                                &format!("{field}.mounts[{i}]"),
                                format!(
                                    "`{value}` is not an absolute path; mount points start with `/`"
                                ),
                            );
                        }
                        paths.push(PathBuf::from(value));
                    }
                    mounts = Some(paths);
                }
                ProbeKind::Disk { mounts }
            }
            ProbeConfig::DiskIo(c) => ProbeKind::DiskIo {
                devices: self.strings(c.devices, &format!("{field}.devices")),
            },
            ProbeConfig::NetIo(c) => ProbeKind::NetIo {
                interfaces: self.strings(c.interfaces, &format!("{field}.interfaces")),
            },
            ProbeConfig::Ping(c) => {
                let host = self.string(&c.host, &format!("{field}.host"))?;
                let count = c.count.unwrap_or(DEFAULT_PING_COUNT);
                if !(1..=100).contains(&count) {
                    self.error(
                        &c.host.referenced,
                        &format!("{field}.count"),
                        format!("`count` must be between 1 and 100, not {count}"),
                    );
                }
                let interval = c
                    .interval_ms
                    .map_or(DEFAULT_PING_INTERVAL, Duration::from_millis);
                if interval < Duration::from_millis(10) {
                    self.error(
                        &c.host.referenced,
                        &format!("{field}.interval_ms"),
                        "`interval_ms` must be at least 10",
                    );
                }
                self.check_host(&host, &c.host, &format!("{field}.host"));
                ProbeKind::Ping(PingSpec {
                    host,
                    count,
                    interval,
                })
            }
            ProbeConfig::Tcp(c) => {
                let host = self.string(&c.host, &format!("{field}.host"))?;
                self.check_host(&host, &c.host, &format!("{field}.host"));
                if c.port.value == 0 {
                    self.error(
                        &c.port.referenced,
                        &format!("{field}.port"),
                        "`port` must be between 1 and 65535",
                    );
                }
                ProbeKind::Tcp {
                    host,
                    port: c.port.value,
                }
            }
            ProbeConfig::Http(c) => ProbeKind::Http(Box::new(self.http(c, field)?)),
            ProbeConfig::Process(c) => ProbeKind::Process(self.process(c, field, at)?),
            ProbeConfig::Connections(c) => {
                if c.ports.is_empty() {
                    self.error(&at, &format!("{field}.ports"), "`ports` lists no port");
                }
                for (i, port) in c.ports.iter().enumerate() {
                    if port.value == 0 {
                        self.error(
                            &port.referenced,
                            &format!("{field}.ports[{i}]"),
                            "a port is between 1 and 65535",
                        );
                    }
                }
                ProbeKind::Connections {
                    ports: c.ports.iter().map(|p| p.value).collect(),
                }
            }
            ProbeConfig::AccessLog(c) => ProbeKind::AccessLog(self.access_log(c, field)?),
            ProbeConfig::Command(c) => ProbeKind::Command(self.command(c, field, at)?),
        })
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

    fn http(&mut self, c: HttpProbeConfig, field: &str) -> Option<HttpSpec> {
        let url = self.string(&c.url, &format!("{field}.url"))?;
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            // The URL may carry a token: say what is wrong without echoing it.
            Ok(_) => self.error(
                &c.url.referenced,
                &format!("{field}.url"),
                "the URL's scheme must be http or https",
            ),
            Err(e) => self.error(
                &c.url.referenced,
                &format!("{field}.url"),
                format!("not a valid URL: {e}"),
            ),
        }
        let method = match &c.method {
            Some(m) => {
                let upper = m.value.to_ascii_uppercase();
                if !HTTP_METHODS.contains(&upper.as_str()) {
                    self.error(
                        &m.referenced,
                        &format!("{field}.method"),
                        format!(
                            "unknown method `{}` (expected one of: {})",
                            m.value,
                            HTTP_METHODS.join(", ")
                        ),
                    );
                }
                upper
            }
            None => "GET".to_string(),
        };
        let mut headers = Vec::new();
        for (name, value) in &c.headers {
            let value = self.string(value, &format!("{field}.headers.{name}"))?;
            headers.push((name.clone(), Secret::new(value)));
        }
        let body = match &c.body {
            Some(b) => Some(self.string(b, &format!("{field}.body"))?),
            None => None,
        };
        // Recorded problems refuse the config; carry on to find the rest of them.
        let body_regex = c
            .body_regex
            .as_ref()
            .and_then(|r| self.regex(r, &format!("{field}.body_regex")));
        let mut extract = Vec::new();
        for (metric, path) in &c.extract {
            let metric_field = format!("{field}.extract.{metric}");
            if !valid_probe_name(metric) {
                self.error(&path.referenced, &metric_field, format!("`{metric}` is not a metric field name: use ^[a-z][a-z0-9_]*$ (e.g. `response_time_ms`)"));
            }
            match json_pointer(&path.value) {
                Some(pointer) => extract.push((metric.clone(), pointer)),
                None => self.error_help(
                    &path.referenced,
                    &metric_field,
                    format!("`{}` is not a JSON path", path.value),
                    "write a JSON pointer (`/metrics/p95`) or a path (`metrics.p95`, `items[0].ms`)",
                ),
            }
        }
        let ca_file = match &c.ca_file {
            Some(f) => {
                let path = self.path(f, &format!("{field}.ca_file"))?;
                if let Err(e) = std::fs::metadata(&path) {
                    self.error(
                        &f.referenced,
                        &format!("{field}.ca_file"),
                        format!("cannot read `{}`: {e}", path.display()),
                    );
                }
                Some(path)
            }
            None => None,
        };
        Some(HttpSpec {
            url: Secret::new(url),
            method,
            headers,
            body,
            expect_status: c
                .expect_status
                .unwrap_or(StatusSpec(vec![StatusMatch::Class(2)])),
            body_contains: c.body_contains,
            body_regex,
            extract,
            ca_file,
            tls_verify: c.tls_verify.unwrap_or(true),
            follow_redirects: c.follow_redirects.unwrap_or(true),
        })
    }

    fn process(
        &mut self,
        c: ProcessProbeConfig,
        field: &str,
        at: Location,
    ) -> Option<ProcessMatch> {
        let given = [
            c.process_name.is_some(),
            c.cmdline.is_some(),
            c.pid_file.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            self.error_help(
                &at,
                field,
                "a process probe matches by exactly one of `process_name`, `cmdline` or `pid_file`",
                "e.g. `process_name: nginx`, `cmdline: \"java .*-jar app.jar\"`, or `pid_file: /run/nginx.pid`",
            );
            return None;
        }
        if let Some(name) = &c.process_name {
            let value = self.string(name, &format!("{field}.process_name"))?;
            if value.len() > 15 {
                self.error_help(
                    &name.referenced,
                    &format!("{field}.process_name"),
                    format!(
                        "`{value}` is longer than the 15 bytes the kernel keeps of a process name"
                    ),
                    "use the first 15 bytes, or match the command line with `cmdline:`",
                );
            }
            return Some(ProcessMatch::Name(value));
        }
        if let Some(cmdline) = &c.cmdline {
            return self
                .regex(cmdline, &format!("{field}.cmdline"))
                .map(ProcessMatch::Cmdline);
        }
        let pid_file = c.pid_file.as_ref()?;
        self.path(pid_file, &format!("{field}.pid_file"))
            .map(ProcessMatch::PidFile)
    }

    fn access_log(&mut self, c: AccessLogProbeConfig, field: &str) -> Option<AccessLogSpec> {
        let path = self.path(&c.path, &format!("{field}.path"))?;
        let format = match &c.regex {
            Some(text) => {
                if !c.extra_fields.is_empty() {
                    self.error(&text.referenced, &format!("{field}.extra_fields"), "`extra_fields` goes with the combined format; with `regex`, name groups instead");
                }
                let re = self.regex(text, &format!("{field}.regex"))?;
                if !re.capture_names().flatten().any(|n| n == "status") {
                    self.error_help(
                        &text.referenced,
                        &format!("{field}.regex"),
                        "the regex has no `status` group",
                        "name the groups: (?P<status>\\d{3}), and optionally client, request_time, session",
                    );
                }
                AccessLogFormat::Regex(re)
            }
            None => {
                let position = |name: &str| c.extra_fields.iter().position(|f| f.value == name);
                AccessLogFormat::Combined {
                    request_time: position("request_time"),
                    session: position("session"),
                }
            }
        };
        let window = self.optional_duration(
            c.window.as_ref(),
            &format!("{field}.window"),
            DEFAULT_LOG_WINDOW,
        )?;
        Some(AccessLogSpec {
            path,
            format,
            time_unit: c.request_time_unit.unwrap_or(TimeUnit::S),
            window,
        })
    }

    fn command(&mut self, c: CommandProbeConfig, field: &str, at: Location) -> Option<CommandSpec> {
        let argv = match (&c.command, &c.shell) {
            (Some(argv), None) if !argv.is_empty() => argv
                .iter()
                .enumerate()
                .map(|(i, a)| self.string(a, &format!("{field}.command[{i}]")))
                .collect::<Option<Vec<String>>>()?,
            (None, Some(line)) => vec![
                "/bin/sh".into(),
                "-c".into(),
                self.string(line, &format!("{field}.shell"))?,
            ],
            _ => {
                self.error_help(
                    &at,
                    field,
                    "a command probe needs exactly one of `command` (a program and its arguments) or `shell` (a shell line)",
                    "e.g. `command: [/usr/bin/redis-cli, info, stats]` or `shell: \"mysqladmin status | tr ' ' '\\n'\"`",
                );
                return None;
            }
        };
        let mut env = Vec::new();
        for (name, value) in &c.env {
            env.push((
                name.clone(),
                Secret::new(self.string(value, &format!("{field}.env.{name}"))?),
            ));
        }
        Some(CommandSpec {
            argv,
            parse: c.parse.unwrap_or(OutputFormat::Auto),
            env,
        })
    }
}
