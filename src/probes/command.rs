//! `command`: runs a program (without a shell, unless `shell:` asks for one) under the probe's
//! timeout and reads numbers from its standard output: one number, `key value` lines, or a JSON
//! object of numbers. A non-zero exit or output that is not numbers is an error that quotes the
//! first line of standard error (or of the output). A key that cannot be a metric of its own
//! (one that collides with another once lowercased, one that is not UTF-8) is left out and
//! said; the others are reported.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// Numbers read from a command's output, and the keys left out of them.
#[derive(Debug, Default, PartialEq)]
pub struct Numbers {
    /// Field name and value, in the output's order.
    pub values: Vec<(String, f64)>,
    /// Keys that cannot be a metric of their own: left out, so that no metric is two keys'
    /// values in turn and none has an empty name.
    pub left_out: usize,
    /// Why the first of them was.
    pub first_reason: Option<String>,
}

impl Numbers {
    fn of(values: Vec<(String, f64)>) -> Numbers {
        Numbers {
            values,
            ..Numbers::default()
        }
    }

    fn leave_out(&mut self, count: usize, reason: String) {
        self.left_out += count;
        self.first_reason.get_or_insert(reason);
    }

    /// The probe's error when keys were left out: how many, and why the first was.
    pub fn note(&self) -> Option<String> {
        let reason = self.first_reason.as_deref()?;
        Some(match self.left_out {
            1 => format!("1 key left out: {reason}"),
            n => format!("{n} keys left out; the first: {reason}"),
        })
    }
}

/// One `key value` of the output before its key is made a field name.
struct Entry<'a> {
    key: &'a str,
    /// 1-based, in the lines format; a JSON key has none.
    line: Option<usize>,
    value: f64,
}

impl Entry<'_> {
    fn shown(&self) -> String {
        match self.line {
            Some(line) => format!("`{}` (line {line})", quote(self.key)),
            None => format!("`{}`", quote(self.key)),
        }
    }
}

/// A key's field name, or why it cannot have one.
fn key_field(entry: &Entry<'_>) -> Result<String, String> {
    // The output is decoded leniently, so bytes that are not UTF-8 arrive as U+FFFD.
    if entry.key.contains('\u{FFFD}') {
        return Err(format!(
            "the key {} is not UTF-8 text (shown as �); write keys in UTF-8",
            entry.shown()
        ));
    }
    let field = field_name(entry.key);
    if field.is_empty() {
        return Err(format!(
            "the key {} has no letter or digit to name a metric with",
            entry.shown()
        ));
    }
    Ok(field)
}

/// `a`, `b` and `c`.
fn listed(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The entries as fields. Keys that become the same field (`a`, `A` and `a!` are all `a`; a
/// key given twice) are all left out: keeping one would be a guess at which the author meant,
/// and the metric would change meaning with the output's order.
fn name_keys(entries: &[Entry<'_>]) -> Numbers {
    let fields: Vec<Result<String, String>> = entries.iter().map(key_field).collect();
    let mut by_field: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, field) in fields.iter().enumerate() {
        if let Ok(field) = field {
            by_field.entry(field.as_str()).or_default().push(i);
        }
    }
    let mut numbers = Numbers::default();
    for (i, (entry, field)) in entries.iter().zip(&fields).enumerate() {
        let field = match field {
            Ok(field) => field,
            Err(reason) => {
                numbers.leave_out(1, reason.clone());
                continue;
            }
        };
        let group = by_field.get(field.as_str()).map_or(&[][..], Vec::as_slice);
        match group {
            [_] => numbers.values.push((field.clone(), entry.value)),
            [first, ..] if *first == i => {
                let same: Vec<&Entry<'_>> = group.iter().map(|&j| &entries[j]).collect();
                let shown: Vec<String> = same.iter().map(|e| e.shown()).collect();
                let reason = if same.iter().all(|e| e.key == entry.key) {
                    format!(
                        "the key `{}` is given {} times ({}); give it once",
                        quote(entry.key),
                        same.len(),
                        listed(&shown)
                    )
                } else {
                    format!(
                        "{} all name the field `{field}` (keys are lowercased to \
                         `[a-z0-9_]`); give each its own letters or digits",
                        listed(&shown)
                    )
                };
                numbers.leave_out(group.len(), reason);
            }
            _ => {}
        }
    }
    numbers
}

/// Numbers in a command's output, named; `Err` says what is wrong with the output as a whole.
pub fn parse_output(text: &str, format: OutputFormat) -> Result<Numbers, String> {
    let trimmed = text.trim();
    let number = || match trimmed.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Numbers::of(vec![("value".to_string(), v)])),
        Ok(_) => Err(format!(
            "the output is not a finite number: `{}`",
            first_line(trimmed)
        )),
        Err(_) => Err(format!(
            "the output is not a number: `{}`",
            first_line(trimmed)
        )),
    };
    let json = || -> Result<Numbers, String> {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| format!("the output is not JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or("the JSON output is not an object")?;
        if object.len() > MAX_KEYS {
            return Err(too_many_keys(object.len()));
        }
        let mut entries = Vec::with_capacity(object.len());
        for (key, value) in object {
            match value.as_f64().filter(|v| v.is_finite()) {
                Some(value) => entries.push(Entry {
                    key,
                    line: None,
                    value,
                }),
                None => {
                    return Err(format!(
                        "`{}` in the JSON output is not a number",
                        quote(key)
                    ));
                }
            }
        }
        Ok(name_keys(&entries))
    };
    let lines = || -> Result<Numbers, String> {
        let mut entries = Vec::new();
        let numbered = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        for (at, line) in numbered.filter(|(_, l)| !l.is_empty()) {
            // The number is the last word; the key is everything before it (`Used Memory: 12`).
            let (key, value) = line
                .rsplit_once(['=', ':', ' ', '\t'])
                .map(|(k, v)| (k.trim().trim_end_matches(['=', ':']).trim(), v.trim()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("not a `key value` line: `{}`", quote(line)))?;
            let value = finite(value)
                .ok_or_else(|| format!("not a `key value` line: `{}`", quote(line)))?;
            if entries.len() == MAX_KEYS {
                return Err(too_many_keys(trimmed.lines().count()));
            }
            entries.push(Entry {
                key,
                line: Some(at),
                value,
            });
        }
        if entries.is_empty() {
            return Err("the output is empty".into());
        }
        Ok(name_keys(&entries))
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

/// `text` cut to what an error quotes, its backticks made quotes: the quotation then ends at
/// its closing backtick, and the monitor can leave it (output that may change every tick) out
/// of the failure's kind.
fn quote(text: &str) -> String {
    let text = match text.char_indices().nth(MAX_QUOTE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    };
    text.replace('`', "'")
}

fn first_line(text: &str) -> String {
    quote(
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim(),
    )
}

/// Kills every command's process group still running: called on the way out.
pub use crate::child::kill_running_commands;

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
        command.args(&self.spec.argv[1..]);
        for (name, value) in &self.spec.env {
            command.env(name, value.expose());
        }
        let started = Instant::now();
        let ran = crate::child::run(
            &mut command,
            timeout,
            MAX_STDOUT,
            MAX_STDERR,
            crate::child::OnExcess::Kill,
        )
        .await
        .map_err(|failed| match failed {
            crate::child::Failed::Start(e) => format!("cannot run `{program}`: {e}"),
            crate::child::Failed::TimedOut { .. } => format!(
                "`{program}` did not finish within {} ms and was killed",
                timeout.as_millis()
            ),
        })?;
        let status = ran.status.map_err(|e| format!("`{program}` failed: {e}"))?;
        let stdout = match ran.stdout {
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
            stderr: ran.stderr,
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
        let numbers = parse_output(&stdout, self.spec.parse)?;
        out.push(&self.duration_name, elapsed.as_secs_f64() * 1000.0);
        if let Some(note) = numbers.note() {
            out.error(format!("command.{}", self.instance), note);
        }
        for (field, value) in numbers.values {
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

    fn values(pairs: &[(&str, f64)]) -> Result<Numbers, String> {
        Ok(Numbers::of(
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ))
    }

    #[test]
    fn reads_the_three_shapes() {
        assert_eq!(
            parse_output("42.5\n", OutputFormat::Auto),
            values(&[("value", 42.5)])
        );
        assert_eq!(
            parse_output(
                "connected_clients: 12\nUsed Memory=1024\n",
                OutputFormat::Auto
            ),
            values(&[("connected_clients", 12.0), ("used_memory", 1024.0)])
        );
        assert_eq!(
            parse_output(r#"{"queue.depth": 3, "lag": 0.5}"#, OutputFormat::Auto),
            values(&[("lag", 0.5), ("queue_depth", 3.0)])
        );
    }

    #[test]
    fn keys_that_become_one_field_are_all_left_out_and_said() {
        let numbers = parse_output("a 1\nA 2\nb 3\n\na! 4\n", OutputFormat::Lines).unwrap();
        assert_eq!(numbers.values, [("b".to_string(), 3.0)]);
        assert_eq!(numbers.left_out, 3);
        assert_eq!(
            numbers.note().unwrap(),
            "3 keys left out; the first: `a` (line 1), `A` (line 2) and `a!` (line 5) all name \
             the field `a` (keys are lowercased to `[a-z0-9_]`); give each its own letters or digits"
        );
        let twice = parse_output("a 1\nb 2\na 3", OutputFormat::Lines).unwrap();
        assert_eq!(twice.values, [("b".to_string(), 2.0)]);
        assert_eq!(
            twice.note().unwrap(),
            "2 keys left out; the first: the key `a` is given 2 times (`a` (line 1) and `a` \
             (line 3)); give it once"
        );
        let json = parse_output(r#"{"Lag": 1, "lag": 2, "x": 3}"#, OutputFormat::Json).unwrap();
        assert_eq!(json.values, [("x".to_string(), 3.0)]);
        assert_eq!(
            json.note().unwrap(),
            "2 keys left out; the first: `Lag` and `lag` all name the field `lag` (keys are \
             lowercased to `[a-z0-9_]`); give each its own letters or digits"
        );
        // Distinct fields stay apart, and nothing is said.
        let apart = parse_output("a 1\na2 2\nb_a 3", OutputFormat::Lines).unwrap();
        assert_eq!(apart.values.len(), 3);
        assert_eq!(apart.note(), None);
    }

    #[test]
    fn a_key_without_a_name_is_left_out_never_an_empty_field() {
        // As the probe decodes standard output: bytes that are not UTF-8 become U+FFFD.
        let raw = b"\xff\xfe 1\nok 2\n";
        let text = String::from_utf8_lossy(raw);
        let numbers = parse_output(&text, OutputFormat::Lines).unwrap();
        assert_eq!(numbers.values, [("ok".to_string(), 2.0)]);
        assert_eq!(
            numbers.note().unwrap(),
            "1 key left out: the key `\u{FFFD}\u{FFFD}` (line 1) is not UTF-8 text (shown as \
             \u{FFFD}); write keys in UTF-8"
        );
        let json = String::from_utf8_lossy(b"{\"\xc3\": 1, \"!!\": 2, \"y\": 3}").into_owned();
        let numbers = parse_output(&json, OutputFormat::Json).unwrap();
        assert_eq!(numbers.values, [("y".to_string(), 3.0)]);
        assert_eq!(numbers.left_out, 2);
        assert!(numbers.values.iter().all(|(field, _)| !field.is_empty()));
        assert_eq!(
            numbers.note().unwrap(),
            "2 keys left out; the first: the key `!!` has no letter or digit to name a metric with"
        );
    }

    #[tokio::test]
    async fn the_probe_reports_the_good_keys_and_says_which_were_left_out() {
        let spec = CommandSpec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                r"printf 'a 1\nA 2\n\377 3\nok 4\n'".into(),
            ],
            parse: OutputFormat::Auto,
            env: Vec::new(),
        };
        let mut probe = CommandProbe::new(spec, "t");
        let mut out = Output::default();
        probe
            .collect(&mut out, Duration::from_secs(10))
            .await
            .unwrap();
        let names: Vec<&str> = out.metrics.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["command.t.duration_ms", "command.t.ok"]);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].0, "command.t");
        assert!(
            out.errors[0].1.starts_with("3 keys left out"),
            "{:?}",
            out.errors
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
