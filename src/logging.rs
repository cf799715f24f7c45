//! Log output: human lines on a terminal, JSON lines for log shippers; `-v`/`-q` pick the level.
//! When stderr is the journal's stream, each line starts with its syslog priority (`<3>`), which
//! journald takes off and keeps as the entry's priority, so `journalctl -p err` finds errors.

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
struct Stderr {
    /// The line's syslog priority, when journald reads stderr.
    prefix: &'static str,
}

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole line per event: prefix and line go out in one
        // write, so another thread's line cannot come between them.
        let mut line = Vec::with_capacity(self.prefix.len() + buf.len());
        line.extend_from_slice(self.prefix.as_bytes());
        line.extend_from_slice(buf);
        if std::io::stderr().lock().write_all(&line).is_err() {
            count_dropped();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes a [`Stderr`] for each event, with the event's priority when journald reads stderr.
struct Writers;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writers {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        Stderr { prefix: "" }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Stderr {
        Stderr {
            prefix: journal_prefix(*meta.level()),
        }
    }
}

/// sd-daemon(3)'s prefixes: journald reads them off the start of a line as its priority.
fn priority(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "<3>",
        tracing::Level::WARN => "<4>",
        tracing::Level::INFO => "<6>",
        _ => "<7>",
    }
}

static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Whether stderr is connected to journald: systemd sets `JOURNAL_STREAM` to the stream's
/// `device:inode`, and a child whose stderr was redirected elsewhere inherits the variable, so
/// it counts only when stderr is that very stream (as systemd.exec(5) says to check).
pub fn stderr_is_journal() -> bool {
    *JOURNAL.get_or_init(|| {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        match std::fs::File::from(stderr).metadata() {
            Ok(meta) => names_stream(&stream.to_string_lossy(), meta.dev(), meta.ino()),
            Err(_) => false,
        }
    })
}

/// Whether `JOURNAL_STREAM`'s `device:inode` is `dev` and `ino`.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .trim()
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The prefix a line of `level` written to stderr outside the log (a command's `error: …`)
/// needs for journald to file it at that priority; empty when stderr is not the journal.
pub fn journal_prefix(level: tracing::Level) -> &'static str {
    if stderr_is_journal() {
        priority(level)
    } else {
        ""
    }
}

/// Installs the global subscriber, writing to stderr so stdout stays for command output.
pub fn init(format: LogFormat, level: LevelFilter) {
    let _ = FORMAT.set(format);
    let builder = tracing_subscriber::fmt()
        .with_writer(Writers)
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
    fn journal_stream_must_name_this_very_stream() {
        assert!(names_stream("8:1234", 8, 1234));
        assert!(names_stream("8:1234\n", 8, 1234));
        assert!(!names_stream("8:1235", 8, 1234));
        assert!(!names_stream("9:1234", 8, 1234));
        assert!(!names_stream("8", 8, 1234));
        assert!(!names_stream("", 8, 1234));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert_eq!(
            escape_controls("a\n2026-12-01T00:00:00Z ERROR forged\r\u{1b}[31m"),
            "a\\n2026-12-01T00:00:00Z ERROR forged\\r\\u{1b}[31m"
        );
    }
}
