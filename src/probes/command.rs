//! `command`: runs a program (without a shell, unless `shell:` asks for one) under the probe's
//! timeout and reads numbers from its standard output: one number, `key value` lines, or a JSON
//! object of numbers. A non-zero exit or output that is not numbers is an error that quotes the
//! first line of standard error (or of the output).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{MetricName, Output};
use crate::config::probes::CommandSpec;
use crate::config::probes::OutputFormat;

/// A key from the output as a metric field: lowercase, `[a-z0-9_]`.
pub fn field_name(key: &str) -> String {
    let mut out: String = key
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    let out = out.trim_matches('_').to_string();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{out}")
    } else {
        out
    }
}

/// Numbers in a command's output, named; `Err` says what is wrong with it.
pub fn parse_output(text: &str, format: OutputFormat) -> Result<Vec<(String, f64)>, String> {
    let trimmed = text.trim();
    let number = || {
        trimmed
            .parse::<f64>()
            .map(|v| vec![("value".to_string(), v)])
            .map_err(|_| format!("the output is not a number: `{}`", first_line(trimmed)))
    };
    let json = || -> Result<Vec<(String, f64)>, String> {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| format!("the output is not JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or("the JSON output is not an object")?;
        let mut out = Vec::new();
        for (key, value) in object {
            match value.as_f64() {
                Some(v) => out.push((field_name(key), v)),
                None => return Err(format!("`{key}` in the JSON output is not a number")),
            }
        }
        Ok(out)
    };
    let lines = || -> Result<Vec<(String, f64)>, String> {
        let mut out = Vec::new();
        for line in trimmed.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // The number is the last word; the key is everything before it (`Used Memory: 12`).
            let (key, value) = line
                .rsplit_once(['=', ':', ' ', '\t'])
                .map(|(k, v)| (k.trim().trim_end_matches(['=', ':']).trim(), v.trim()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("not a `key value` line: `{line}`"))?;
            let value: f64 = value
                .parse()
                .map_err(|_| format!("not a `key value` line: `{line}`"))?;
            out.push((field_name(key), value));
        }
        if out.is_empty() {
            return Err("the output is empty".into());
        }
        Ok(out)
    };
    match format {
        OutputFormat::Number => number(),
        OutputFormat::Json => json(),
        OutputFormat::Lines => lines(),
        OutputFormat::Auto if trimmed.starts_with('{') => json(),
        OutputFormat::Auto if trimmed.parse::<f64>().is_ok() => number(),
        OutputFormat::Auto => lines(),
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

pub struct CommandProbe {
    spec: CommandSpec,
    instance: String,
    /// Field → metric name; the fields are whatever the output holds.
    names: HashMap<String, MetricName>,
    duration_name: MetricName,
}

impl CommandProbe {
    pub fn new(spec: CommandSpec, instance: &str) -> Self {
        CommandProbe {
            spec,
            instance: instance.to_string(),
            names: HashMap::new(),
            duration_name: MetricName::from(format!("command.{instance}.duration_ms")),
        }
    }

    pub async fn collect(&mut self, out: &mut Output, timeout: Duration) -> Result<(), String> {
        let program = &self.spec.argv[0];
        let mut command = tokio::process::Command::new(program);
        command
            .args(&self.spec.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in &self.spec.env {
            command.env(name, value.expose());
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        // Our limit comes first, so the child is killed and the timeout is reported here.
        let limit = timeout.saturating_sub(Duration::from_millis(20));
        let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(format!("`{program}` failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "`{program}` did not finish within {} ms and was killed",
                    limit.as_millis()
                ));
            }
        };
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let reason = match output.status.code() {
                Some(code) => format!("exited with {code}"),
                None => "was killed by a signal".to_string(),
            };
            let detail = first_line(&stderr);
            let detail = if detail.is_empty() {
                first_line(&stdout)
            } else {
                detail
            };
            return Err(if detail.is_empty() {
                format!("`{program}` {reason}")
            } else {
                format!("`{program}` {reason}: {detail}")
            });
        }
        let values = parse_output(&stdout, self.spec.parse)?;
        out.push(&self.duration_name, elapsed.as_secs_f64() * 1000.0);
        for (field, value) in values {
            let instance = &self.instance;
            let name = self
                .names
                .entry(field)
                .or_insert_with_key(|f| MetricName::from(format!("command.{instance}.{f}")));
            out.push(name, value);
        }
        Ok(())
    }
}

impl super::Wait for CommandProbe {
    fn wait<'a>(&'a mut self, out: &'a mut Output, timeout: Duration) -> super::Waiting<'a> {
        Box::pin(self.collect(out, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_shapes() {
        assert_eq!(
            parse_output("42.5\n", OutputFormat::Auto),
            Ok(vec![("value".into(), 42.5)])
        );
        assert_eq!(
            parse_output(
                "connected_clients: 12\nUsed Memory=1024\n",
                OutputFormat::Auto
            ),
            Ok(vec![
                ("connected_clients".into(), 12.0),
                ("used_memory".into(), 1024.0)
            ])
        );
        assert_eq!(
            parse_output(r#"{"queue.depth": 3, "lag": 0.5}"#, OutputFormat::Auto),
            Ok(vec![("lag".into(), 0.5), ("queue_depth".into(), 3.0)])
        );
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(
            parse_output("hello world\n", OutputFormat::Auto),
            Err("not a `key value` line: `hello world`".into())
        );
        assert_eq!(
            parse_output("abc", OutputFormat::Number),
            Err("the output is not a number: `abc`".into())
        );
        assert_eq!(
            parse_output(r#"{"a": "x"}"#, OutputFormat::Json),
            Err("`a` in the JSON output is not a number".into())
        );
        assert_eq!(
            parse_output("  ", OutputFormat::Lines),
            Err("the output is empty".into())
        );
    }

    #[test]
    fn keys_become_field_names() {
        assert_eq!(field_name("Queue Depth (msgs)"), "queue_depth_msgs");
        assert_eq!(field_name("95th"), "_95th");
    }
}
