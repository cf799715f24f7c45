//! Log output: human lines on a terminal, JSON lines for log shippers; `-v`/`-q` pick the level.

use clap::ValueEnum;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::field::MakeExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-11-28T10:00:00.000Z  INFO message key=value`
    Human,
    /// One JSON object per line, fields flattened.
    Json,
}

/// `-q` twice: errors only; `-q`: warnings; default: info; `-v`: debug; `-vv`: trace.
pub fn level(verbose: u8, quiet: u8) -> LevelFilter {
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => LevelFilter::ERROR,
        -1 => LevelFilter::WARN,
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// `text` with control characters written as escapes (`\n`, `\u{1b}`), so a value that holds
/// a newline (a rule's `print`, an alert summary, a server's answer) cannot start a line of its
/// own that reads like another log line.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// The human format's fields: the message first as it is, the others as `name=value`, and
/// every control character escaped in both.
fn human_fields(
    writer: &mut tracing_subscriber::fmt::format::Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn std::fmt::Debug,
) -> std::fmt::Result {
    let text = format!("{value:?}");
    if field.name() == "message" {
        write!(writer, "{}", escape_controls(&text))
    } else {
        write!(writer, "{}={}", field.name(), escape_controls(&text))
    }
}

static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Whether stderr carries JSON lines: then everything runner says there must be one.
pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a line that stderr did not take.
pub fn count_dropped() {
    DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Log lines dropped since start because stderr did not take them (a closed pipe, a full disk
/// behind a redirect).
pub fn dropped_lines() -> u64 {
    DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// stderr for log lines. A line it cannot take is dropped and counted: the monitor goes on
/// when journald restarts or a log pipe's reader exits. tracing's own fallback would print
/// the failure with `eprintln!`, which panics on the same closed stderr.
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().lock().write_all(buf).is_err() {
            count_dropped();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber, writing to stderr so stdout stays for command output.
pub fn init(format: LogFormat, level: LevelFilter) {
    let _ = FORMAT.set(format);
    let builder = tracing_subscriber::fmt()
        .with_writer(|| Stderr)
        .log_internal_errors(false)
        .with_max_level(level)
        .with_target(false);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(human_fields).delimited(" "))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // A second init (tests calling the CLI in-process) keeps the first subscriber.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert_eq!(
            escape_controls("a\n2026-12-01T00:00:00Z ERROR forged\r\u{1b}[31m"),
            "a\\n2026-12-01T00:00:00Z ERROR forged\\r\\u{1b}[31m"
        );
    }
}
