//! Log output: human lines on a terminal, JSON lines for log shippers; `-v`/`-q` pick the level.

use clap::ValueEnum;
use tracing::level_filters::LevelFilter;

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

/// Installs the global subscriber, writing to stderr so stdout stays for command output.
pub fn init(format: LogFormat, level: LevelFilter) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
