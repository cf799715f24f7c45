//! `command`: a program whose standard output is numbers.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config};
use crate::config::Secret;
use crate::config::build::Builder;
use crate::config::raw::Text;

pub const TYPE: ProbeType = ProbeType {
    name: "command",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "value",
            help: "the output's number, when it is one",
        },
        Field {
            name: "duration_ms",
            help: "how long the command ran",
        },
    ],
    // `key value` lines and JSON objects name their own fields.
    open_fields: true,
    nested_fields: &[],
    default_timeout: Duration::from_millis(10_000),
};

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

#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program and arguments; `/bin/sh -c LINE` for `shell:`.
    pub argv: Vec<String>,
    pub parse: OutputFormat,
    pub env: Vec<(String, Secret)>,
}

impl Settings for CommandSpec {}

impl Check for CommandProbeConfig {
    type Spec = CommandSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, at: Location) -> Option<CommandSpec> {
        let c = self;
        let argv = match (&c.command, &c.shell) {
            (Some(argv), None) if !argv.is_empty() => argv
                .iter()
                .enumerate()
                .map(|(i, a)| b.string(a, &format!("{field}.command[{i}]")))
                .collect::<Option<Vec<String>>>()?,
            (None, Some(line)) => vec![
                "/bin/sh".into(),
                "-c".into(),
                b.string(line, &format!("{field}.shell"))?,
            ],
            _ => {
                b.error_help(
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
                Secret::new(b.string(value, &format!("{field}.env.{name}"))?),
            ));
        }
        Some(CommandSpec {
            argv,
            parse: c.parse.unwrap_or(OutputFormat::Auto),
            env,
        })
    }
}
