//! The command line: parse arguments, then hand over to one command, each in a file of its own.
//! Every command loads the jobs file through `load` (which prints every problem when it cannot
//! be used) and runs its async part on the one runtime `block_on` builds. Exit codes are
//! documented in docs/operations.md.

mod check;
mod completions;
mod dry_run;
mod healthcheck;
mod jobs;
mod loaded;
mod notify_test;
pub mod output;
mod reload;
mod replay;
mod report;
mod run;
mod sd_notify;
mod serve;
mod silence;
mod test;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::{error, warn};

use self::output::{err, errln};
use crate::config::Config;
use crate::diagnostic::Problems;
use crate::logging::{self, LogFormat};
use crate::vocab::words::plural;

/// Exit codes, stable for scripts and systemd.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The jobs file has problems, a job failed, or rule tests failed.
    pub const FAILED: u8 = 1;
    /// The command line is wrong (unknown flag, unknown job name).
    pub const USAGE: u8 = 2;
    /// Someone else holds the lock: a scheduler on this data_dir, or a run of this job.
    pub const BUSY: u8 = 3;
    /// A second SIGINT/SIGTERM cut the grace period short.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "A declarative rules-engine job runner for system performance monitoring",
    long_about = "Runs the jobs of a YAML jobs file on an embedded cron scheduler: monitors that \
                  measure the machine and evaluate alert rules, reports, ServiceNow syncs and log \
                  rotation. Without a command, runs the scheduler in the foreground."
)]
pub struct Cli {
    /// The jobs file; relative paths inside it resolve against its folder. Default
    /// RUNNER_JOBS, else jobs/jobs.yaml.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "RUNNER_JOBS",
        default_value = "jobs/jobs.yaml"
    )]
    pub jobs: PathBuf,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log detail (-q warnings, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Where the host's /proc is (a containerised runner watching its host: `/host/proc`);
    /// default HOST_PROC, else /proc.
    #[arg(long, global = true, value_name = "DIR")]
    pub proc_root: Option<PathBuf>,
    /// Where the host's /sys is; default HOST_SYS, else /sys.
    #[arg(long, global = true, value_name = "DIR")]
    pub sys_root: Option<PathBuf>,
    /// Serve /metrics, /api/v1/alerts, health and a status page here (`127.0.0.1:9464`);
    /// overrides `listen:` in the jobs file and the RUNNER_LISTEN variable.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the jobs file and everything it names; exit 0 when clean, 1 with every problem.
    Check,
    /// Run one job now, under its lock, and exit with its status.
    Run {
        /// The job's name in the jobs file.
        job: String,
    },
    /// List the jobs, their schedules and their next three run times.
    Jobs,
    /// Do everything a job would do except its effects, and show them (a monitor measures,
    /// evaluates its rules and prints the alerts; nothing is sent or written).
    DryRun {
        /// The job's name in the jobs file.
        job: String,
        /// Use the job's last logged sample instead of measuring now.
        #[arg(long)]
        from_log: bool,
    },
    /// Render a report now from the history on disk, e.g. to try a template; writes nothing
    /// but `--out`, sends nothing.
    Report {
        /// The report job whose window and templates to use (default: the only report job).
        job: Option<String>,
        /// A template to render instead of the job's (repeatable).
        #[arg(long = "template", value_name = "FILE")]
        templates: Vec<PathBuf>,
        /// How far back the report looks (default: the job's window, or 7d).
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// When the window ends (default: now): `2026-11-30 08:00` in the jobs file's
        /// timezone, or RFC 3339.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Write the one rendered report to this file instead of stdout.
        #[arg(long, value_name = "FILE", conflicts_with = "out_dir")]
        out: Option<PathBuf>,
        /// Write each template's report into this folder, named as the job names them.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Print the summary the templates see, as JSON, instead of rendering.
        #[arg(long, conflicts_with_all = ["templates", "out", "out_dir"])]
        summary: bool,
    },
    /// Replay a monitor job's rules over its metrics log from --from to --to and print the
    /// alert timeline and a summary per alert; with --compare, the job's rules and changed ones
    /// side by side, alert by alert (exit 1 when anything differs). Nothing is sent or written.
    Replay {
        /// The monitor job's name in the jobs file.
        job: String,
        /// Where the replay starts: `2026-11-30 08:00` in the jobs file's timezone, or RFC 3339.
        #[arg(long, value_name = "TIME")]
        from: String,
        /// Where it ends, likewise (default: now).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Rule files to run in place of the job's file of the same name (or besides them).
        #[arg(long = "rules", value_name = "FILE", num_args = 1..)]
        rules: Vec<PathBuf>,
        /// Compare the job's rules with these changed files (or, without files, with --rules).
        #[arg(long, value_name = "FILE", num_args = 0..)]
        compare: Option<Vec<PathBuf>>,
        /// `text` for people, `json` for machines.
        #[arg(long, value_enum, default_value = "text")]
        format: replay::Format,
        /// The same as `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Run rule tests (`*.test.yaml`) in the given files or folders (default: `rules`).
    Test {
        /// Test files, or folders searched for `*.test.yaml`.
        paths: Vec<PathBuf>,
    },
    /// Print shell completions: `runner completions bash > /etc/bash_completion.d/runner`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `runner man > /usr/local/share/man/man1/runner.1`.
    Man,
    /// Ask the scheduler running on this jobs file's data_dir to reload it (as SIGHUP does),
    /// wait for its answer and print it: exit 1 when the change was refused, with why.
    Reload {
        /// How long to wait for the scheduler's answer (`90s`, `2m`).
        #[arg(long, default_value = "60s", value_parser = parse_wait)]
        wait: std::time::Duration,
    },
    /// Send a clearly marked test alert through one notifier now (it fires, then resolves),
    /// to see a Slack, webhook or ServiceNow set-up work before the first real alert.
    NotifyTest {
        /// The notifier's name in the jobs file.
        notifier: String,
    },
    /// Silences in the data_dir: alerts they match are logged, not sent, until they end; a
    /// running scheduler honours a change at its next notice.
    Silence {
        #[command(subcommand)]
        action: silence::Action,
    },
    /// The job, report job or notifier names of the jobs file, one a line: what the shell
    /// completions offer for a JOB or NOTIFIER.
    #[command(name = "__complete", hide = true)]
    Complete {
        #[arg(value_enum)]
        what: completions::Names,
    },
    /// GET an http:// or https:// URL and exit 0 on a 2xx answer: the container image's
    /// HEALTHCHECK on `/-/healthy` (the image has no curl).
    #[command(hide = true)]
    Healthcheck {
        /// `http://127.0.0.1:9464/-/healthy`, or `https://` with `listen_tls`.
        url: String,
        /// Trust the certificates in this PEM file beside the system's roots (https://).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Do not check the certificate (https:// on a loopback address only).
        #[arg(long)]
        insecure: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && json_requested(std::env::args_os()) => {
            // A script reading JSON lines from stderr gets the usage error as one of them, not
            // clap's text. The rendered text has no colours: clap's `color` feature is off.
            logging::init(LogFormat::Json, logging::level(0, 0));
            let text = e.render().to_string();
            error!(exit_code = exit::USAGE, "{}", text.trim_end());
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    logging::init(cli.log_format, logging::level(cli.verbose, cli.quiet));
    crate::probes::procfs::set_roots(cli.proc_root.clone(), cli.sys_root.clone());
    let code = match &cli.command {
        None => serve::run(&cli.jobs, cli.listen.as_deref()),
        Some(Command::Check) => check::run(&cli.jobs),
        Some(Command::Run { job }) => run::run(&cli.jobs, job),
        Some(Command::Jobs) => jobs::run(&cli.jobs),
        Some(Command::DryRun { job, from_log }) => dry_run::run(&cli.jobs, job, *from_log),
        Some(Command::Test { paths }) => test::run(paths),
        Some(Command::Replay {
            job,
            from,
            to,
            rules,
            compare,
            format,
            json,
        }) => replay::run(
            &cli.jobs,
            &replay::Request {
                job,
                from,
                to: to.as_deref(),
                rules,
                compare: compare.as_deref(),
                format: if *json { replay::Format::Json } else { *format },
            },
        ),
        Some(Command::Completions { shell }) => completions::completions(*shell),
        Some(Command::Man) => completions::man(),
        Some(Command::Reload { wait }) => reload::signal_running(&cli.jobs, *wait),
        Some(Command::NotifyTest { notifier }) => notify_test::run(&cli.jobs, notifier),
        Some(Command::Complete { what }) => completions::names(&cli.jobs, *what),
        Some(Command::Healthcheck {
            url,
            ca_file,
            insecure,
        }) => healthcheck::run(
            url,
            &healthcheck::Trust {
                ca_file: ca_file.as_deref(),
                insecure: *insecure,
            },
        ),
        Some(Command::Silence { action }) => silence::run(&cli.jobs, action),
        Some(Command::Report {
            job,
            templates,
            window,
            at,
            out,
            out_dir,
            summary,
        }) => report::run(
            &cli.jobs,
            &report::Request {
                job: job.as_deref(),
                templates,
                window: window.as_deref(),
                at: at.as_deref(),
                out: out.as_deref(),
                out_dir: out_dir.as_deref(),
                as_json: *summary,
            },
        ),
    };
    ExitCode::from(if output::failed() { exit::FAILED } else { code })
}

fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    crate::vocab::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// Whether the command line asks for JSON logs (`--log-format json` or `--log-format=json`),
/// read before clap does: when clap refuses the command line, there is no parsed `Cli` to ask.
fn json_requested(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--") => return false,
            Some("--log-format=json") => return true,
            Some("--log-format") if args.next().is_some_and(|v| v == "json") => return true,
            _ => {}
        }
    }
    false
}

/// A command's own error on stderr: `error: …`, or with `--log-format json` one JSON object
/// like every other line there.
fn fail(message: impl std::fmt::Display) {
    if crate::logging::is_json() {
        tracing::error!("{message}");
    } else {
        let priority = crate::logging::journal_prefix(tracing::Level::ERROR);
        errln!("{priority}error: {message}");
    }
}

/// A line for the person at the terminal on stderr, or one JSON object in JSON mode.
fn say(message: impl std::fmt::Display) {
    if crate::logging::is_json() {
        tracing::info!("{message}");
    } else {
        errln!("{message}");
    }
}

/// A time given to `flag` (`report --at`, `replay --from`), saying its note; `None` after
/// saying why not.
fn parse_time(
    zone: &crate::scheduler::schedule::Zone,
    flag: &str,
    text: &str,
) -> Option<chrono::DateTime<chrono::Utc>> {
    match zone.parse_time(text) {
        Ok((at, note)) => {
            if let Some(note) = note {
                say(format_args!("note: {flag} {note}"));
            }
            Some(at)
        }
        Err(e) => {
            fail(format_args!("{flag}: {e}"));
            None
        }
    }
}

/// Problems on stderr: rendered with source lines and carets, or with `--log-format json` one
/// object per problem with its file, line, column and field.
fn print_problems(problems: &crate::diagnostic::Problems) {
    if !crate::logging::is_json() {
        err!("{}", problems.render());
        return;
    }
    for p in problems.iter() {
        let (file, help) = (p.file.display(), p.help.as_deref().unwrap_or_default());
        if p.is_error() {
            tracing::error!(file = %file, line = p.line, column = p.column, field = %p.field, help, "{}", p.message);
        } else {
            tracing::warn!(file = %file, line = p.line, column = p.column, field = %p.field, help, "{}", p.message);
        }
    }
}

/// Loads the jobs file, printing every problem to stderr when it cannot be used.
fn load(file: &Path) -> Result<Config, u8> {
    Config::load(file).map_err(|problems| {
        print_problems(&problems);
        say(summary_line(file, &problems));
        exit::FAILED
    })
}

/// The job named on the command line, or a usage error that lists the jobs there are.
fn find_job<'a>(config: &'a Config, name: &str) -> Result<&'a crate::config::JobSpec, u8> {
    config.job(name).ok_or_else(|| {
        let names: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        fail(format_args!(
            "no job named `{name}` in {} (jobs: {})",
            config.file.display(),
            names.join(", ")
        ));
        exit::USAGE
    })
}

/// `jobs.yaml: 2 errors and 1 warning`, or `jobs.yaml: ok (0 warnings)`.
fn summary_line(file: &Path, problems: &Problems) -> String {
    let errors = problems.errors().count();
    let warnings = problems.warnings().count();
    if errors == 0 {
        format!("{}: ok ({})", file.display(), plural(warnings, "warning"))
    } else {
        format!(
            "{}: {} and {}",
            file.display(),
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

/// Runs a command's async part on the one runtime of the process.
fn block_on(work: impl std::future::Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("runner")
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = rt.block_on(work);
            // Work abandoned after the grace (a render, a rotation on a blocking thread) must
            // not hold the exit, and no command a probe started outlives runner.
            rt.shutdown_background();
            crate::probes::command::kill_running_commands();
            code
        }
        Err(e) => {
            fail(format_args!("cannot start the async runtime: {e}"));
            exit::FAILED
        }
    }
}

/// Each notifier left off, said once, naming what to set; and each rule or template file the
/// jobs file names that is not there (the jobs that need it run without it or fail, the others
/// run as usual).
fn log_warnings(config: &Config) {
    for warning in config.warnings.warnings() {
        warn!(
            at = %warning.location(),
            help = warning.help.as_deref().unwrap_or(""),
            "{}",
            warning.message
        );
    }
    for missing in config.missing_files.iter() {
        error!(
            at = %missing.location(),
            help = missing.help.as_deref().unwrap_or(""),
            "{}",
            missing.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::json_requested;

    #[test]
    fn json_logs_are_seen_before_clap_parses() {
        let args = |line: &str| {
            line.split(' ')
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
        };
        assert!(json_requested(args("runner --log-format json chek")));
        assert!(json_requested(args(
            "runner check --bogus --log-format=json"
        )));
        assert!(!json_requested(args("runner --log-format human chek")));
        assert!(!json_requested(args("runner test -- --log-format=json")));
    }
}
