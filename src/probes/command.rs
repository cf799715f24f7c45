//! `command`: runs a program (without a shell, unless `shell:` asks for one) under the probe's
//! timeout and reads numbers from its standard output: one number, `key value` lines, or a JSON
//! object of numbers. A non-zero exit or output that is not numbers is an error that quotes the
//! first line of standard error (or of the output).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{MetricName, Output};
use crate::config::probes::CommandSpec;
use crate::config::probes::OutputFormat;

/// The most standard output read: numbers for a monitor fit in far less.
pub const MAX_STDOUT: usize = 1 << 20;

/// The most standard error read, to quote its first line.
const MAX_STDERR: usize = 64 << 10;

/// How much of a line is quoted in an error.
const MAX_QUOTE: usize = 200;

/// The most metrics one command may report per tick.
pub const MAX_KEYS: usize = 500;

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
    let number = || match trimmed.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(vec![("value".to_string(), v)]),
        Ok(_) => Err(format!(
            "the output is not a finite number: `{}`",
            first_line(trimmed)
        )),
        Err(_) => Err(format!(
            "the output is not a number: `{}`",
            first_line(trimmed)
        )),
    };
    let json = || -> Result<Vec<(String, f64)>, String> {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| format!("the output is not JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or("the JSON output is not an object")?;
        let mut out = Vec::new();
        if object.len() > MAX_KEYS {
            return Err(too_many_keys(object.len()));
        }
        for (key, value) in object {
            match value.as_f64().filter(|v| v.is_finite()) {
                Some(v) => out.push((field_name(key), v)),
                None => {
                    return Err(format!(
                        "`{}` in the JSON output is not a number",
                        quote(key)
                    ));
                }
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
                .ok_or_else(|| format!("not a `key value` line: `{}`", quote(line)))?;
            let value = finite(value)
                .ok_or_else(|| format!("not a `key value` line: `{}`", quote(line)))?;
            if out.len() == MAX_KEYS {
                return Err(too_many_keys(trimmed.lines().count()));
            }
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

/// A number that is one: `inf`, `NaN` and digits beyond `f64`'s range are not measurements.
fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn too_many_keys(count: usize) -> String {
    format!("the output has {count} keys; a command may report at most {MAX_KEYS}")
}

/// `text` cut to what an error quotes.
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn first_line(text: &str) -> String {
    quote(
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim(),
    )
}

/// What to do when a child writes more than is kept.
enum Excess {
    /// Stop it: what it writes is its answer, and too much of it is an error.
    Kill(i32),
    /// Read on and drop the rest, so the child is not blocked on a full pipe.
    Drain,
}

/// Reads at most `max` bytes; `Err` with what was kept when there was more.
async fn read_capped(
    source: Option<impl AsyncRead + Unpin>,
    max: usize,
    excess: Excess,
) -> Result<Vec<u8>, Vec<u8>> {
    let Some(mut source) = source else {
        return Ok(Vec::new());
    };
    let mut bytes = Vec::new();
    let read = (&mut source)
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .await;
    if read.is_err() || bytes.len() <= max {
        return Ok(bytes);
    }
    bytes.truncate(max);
    match excess {
        // SAFETY: killpg only sends a signal; a group that is gone is an error we ignore.
        Excess::Kill(pgid) => unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        },
        Excess::Drain => {
            let _ = tokio::io::copy(&mut source, &mut tokio::io::sink()).await;
        }
    }
    Err(bytes)
}

/// The child's process group, killed whole when the probe is done with it: a `shell:` line's
/// own children go with it, whatever happens to the probe (a timeout, a runner that stops).
struct Group(Option<i32>);

/// Process groups of commands running now, so that runner leaves none behind when it exits,
/// whatever its tasks were doing then ([`kill_running_commands`]).
static RUNNING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kills every command probe's process group still running: called on the way out.
pub fn kill_running_commands() {
    for pgid in running().drain(..) {
        // SAFETY: killpg only sends a signal; a group that is gone is an error we ignore.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

impl Group {
    fn new(pgid: Option<i32>) -> Group {
        running().extend(pgid);
        Group(pgid)
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            running().retain(|g| *g != pgid);
            // SAFETY: killpg only sends a signal; a group that is gone is an error we ignore.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
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
            .process_group(0)
            .kill_on_drop(true);
        for (name, value) in &self.spec.env {
            command.env(name, value.expose());
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        // Its pid is its process group's id (`process_group(0)`).
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
        let mut group = Group::new(pgid);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let on_too_much = match pgid {
            Some(pgid) => Excess::Kill(pgid),
            None => Excess::Drain,
        };
        let run = async {
            let (stdout, stderr, status) = tokio::join!(
                read_capped(stdout, MAX_STDOUT, on_too_much),
                read_capped(stderr, MAX_STDERR, Excess::Drain),
                child.wait()
            );
            (stdout, stderr.unwrap_or_else(|cut| cut), status)
        };
        let (stdout, stderr, status) = match tokio::time::timeout(timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                group.kill();
                return Err(format!(
                    "`{program}` did not finish within {} ms and was killed",
                    timeout.as_millis()
                ));
            }
        };
        // Whatever it started in the background goes with it.
        group.kill();
        let status = status.map_err(|e| format!("`{program}` failed: {e}"))?;
        let stdout = match stdout {
            Ok(bytes) => bytes,
            Err(_) => {
                return Err(format!(
                    "`{program}` wrote more than {} KiB to standard output; a monitor command writes numbers",
                    MAX_STDOUT >> 10
                ));
            }
        };
        let output = std::process::Output {
            status,
            stdout,
            stderr,
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
