//! `process`: processes matched by name, command line or pid file: how many, their CPU,
//! memory, threads, open files, and restarts.

use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

pub const TYPE: ProbeType = ProbeType {
    name: "process",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "count",
            help: "matched processes (0 when none; the rest is then absent)",
        },
        Field {
            name: "cpu_percent",
            help: "CPU of the matched processes since the last tick (100 = one core)",
        },
        Field {
            name: "rss_bytes",
            help: "resident memory of the matched processes",
        },
        Field {
            name: "threads",
            help: "threads of the matched processes",
        },
        Field {
            name: "open_fds",
            help: "open file descriptors of the matched processes",
        },
        Field {
            name: "restarts_count",
            help: "matched pids replaced since the last tick",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(2_000),
};

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

#[derive(Debug, Clone)]
pub enum ProcessMatch {
    Name(String),
    Cmdline(regex::Regex),
    PidFile(PathBuf),
}

impl Settings for ProcessMatch {}

impl Check for ProcessProbeConfig {
    type Spec = ProcessMatch;

    fn check(self, b: &mut Builder<'_>, field: &str, at: Location) -> Option<ProcessMatch> {
        let c = self;
        let given = [
            c.process_name.is_some(),
            c.cmdline.is_some(),
            c.pid_file.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            b.error_help(
                &at,
                field,
                "a process probe matches by exactly one of `process_name`, `cmdline` or `pid_file`",
                "e.g. `process_name: nginx`, `cmdline: \"java .*-jar app.jar\"`, or `pid_file: /run/nginx.pid`",
            );
            return None;
        }
        if let Some(name) = &c.process_name {
            let value = b.string(name, &format!("{field}.process_name"))?;
            if value.len() > 15 {
                b.error_help(
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
            return b
                .regex(cmdline, &format!("{field}.cmdline"))
                .map(ProcessMatch::Cmdline);
        }
        let pid_file = c.pid_file.as_ref()?;
        b.path(pid_file, &format!("{field}.pid_file"))
            .map(ProcessMatch::PidFile)
    }
}
