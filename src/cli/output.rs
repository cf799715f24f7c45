//! What commands print on stdout and stderr, and what happens when nobody reads it: once the
//! reader of stdout goes away (`runner jobs | head -1`) the command prints nothing more and
//! ends quietly with its own exit status, and a line that stderr cannot take is dropped and
//! counted, never a panic.
//!
//! std's `print!` panics on a closed pipe, and restoring SIGPIPE's default would end with 141
//! (and would kill the command for a pipe it writes to a child, not only for its stdout). So
//! SIGPIPE stays ignored, as Rust leaves it, and every write here looks at its own error. The
//! command's status stays its own: `set -o pipefail; runner check | head` must still fail on a
//! jobs file with errors.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// stdout's reader went away: nothing more is written.
static READER_GONE: AtomicBool = AtomicBool::new(false);
/// stdout failed otherwise (a full disk behind `>`): the command's output is incomplete.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout, until its reader goes away.
pub fn stdout(args: std::fmt::Arguments<'_>) {
    write_stdout(|out| out.write_fmt(args));
}

/// Writes bytes made elsewhere (a manual page, completions) to stdout, as `stdout` does.
pub fn stdout_bytes(bytes: &[u8]) {
    write_stdout(|out| out.write_all(bytes));
}

fn write_stdout(write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let Err(error) = write(&mut out).and_then(|()| out.flush()) else {
        return;
    };
    READER_GONE.store(true, Ordering::Relaxed);
    if error.kind() != std::io::ErrorKind::BrokenPipe {
        FAILED.store(true, Ordering::Relaxed);
        stderr(format_args!("error: cannot write the output: {error}\n"));
    }
}

/// Whether stdout failed for a reason other than its reader leaving: the command then fails.
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// Writes to stderr; what cannot be written is dropped and counted with the log lines.
pub fn stderr(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    if err.write_fmt(args).is_err() {
        crate::logging::count_dropped();
    }
}

/// `print!` that ends quietly on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::stdout(format_args!($($arg)*)) };
}

/// `println!` that ends quietly on a closed pipe.
macro_rules! outln {
    () => { $crate::cli::output::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => { $crate::cli::output::stderr(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::output::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {err, errln, out, outln};
