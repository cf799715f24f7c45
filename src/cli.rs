//! The command line: parse arguments, load the jobs file, and hand over to the scheduler or to
//! one of the one-shot commands. Exit codes are documented in the README.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::diagnostic::Problems;
use crate::job::Job;
use crate::lock::{LockError, LockFile, scheduler_lock_path};
use crate::logging::{self, LogFormat};
use crate::notify::Notifiers;
use crate::scheduler::clock::{Clock, SharedClock, SystemClock};
use crate::scheduler::{Entry, Outcome, RunInfo, Scheduler, Shutdown};

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
    /// The jobs file; relative paths inside it resolve against its folder.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
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
        /// How far back the report looks, ending now (default: the job's window, or 7d).
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// Write the rendered report to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the summary the templates see, as JSON, instead of rendering.
        #[arg(long, conflicts_with_all = ["templates", "out"])]
        summary: bool,
    },
    /// Run rule tests (`*.test.yaml`) in the given files or folders (default: `rules`).
    Test {
        /// Test files, or folders searched for `*.test.yaml`.
        paths: Vec<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
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
    ExitCode::from(match &cli.command {
        None => serve(&cli.jobs),
        Some(Command::Check) => check(&cli.jobs),
        Some(Command::Run { job }) => run_job(&cli.jobs, job),
        Some(Command::Jobs) => list_jobs(&cli.jobs),
        Some(Command::DryRun { job, from_log }) => crate::dry_run::run(&cli.jobs, job, *from_log),
        Some(Command::Test { paths }) => test_rules(paths),
        Some(Command::Report {
            job,
            templates,
            window,
            out,
            summary,
        }) => report_now(
            &cli.jobs,
            job.as_deref(),
            templates,
            window.as_deref(),
            out.as_deref(),
            *summary,
        ),
    })
}

/// Loads the jobs file, printing every problem to stderr when it cannot be used.
fn load(file: &Path) -> Result<Config, u8> {
    Config::load(file).map_err(|problems| {
        eprint!("{}", problems.render());
        eprintln!("{}", summary_line(file, &problems));
        exit::FAILED
    })
}

fn summary_line(file: &Path, problems: &Problems) -> String {
    let errors = problems.errors().count();
    let warnings = problems.warnings().count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
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
pub(crate) fn block_on(work: impl std::future::Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("runner")
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(work),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::FAILED
        }
    }
}

/// Each notifier left off, said once, naming what to set.
fn log_warnings(config: &Config) {
    for warning in config.warnings.warnings() {
        warn!(
            at = %warning.location(),
            help = warning.help.as_deref().unwrap_or(""),
            "{}",
            warning.message
        );
    }
}

fn serve(file: &Path) -> u8 {
    let config = match load(file) {
        Ok(config) => Arc::new(config),
        Err(code) => return code,
    };
    let lock_path = scheduler_lock_path(&config.data_dir);
    let _lock = match LockFile::try_acquire(&lock_path, "the scheduler of this data_dir") {
        Ok(lock) => lock,
        Err(e) => {
            error!(data_dir = %config.data_dir.display(), "{e}");
            eprintln!(
                "error: another runner is already running on {}: {e}",
                config.data_dir.display()
            );
            return match e {
                LockError::Held { .. } => exit::BUSY,
                LockError::Io { .. } => exit::FAILED,
            };
        }
    };
    if let Some(pid) = _lock.took_over_from {
        info!(pid, lock = %lock_path.display(), "took over the lock left by a runner that is gone");
    }
    block_on(async move {
        // Listen for signals before saying anything is scheduled: a SIGTERM that arrives in
        // between must stop runner gracefully, not kill it.
        let signals = match Signals::listen() {
            Ok(signals) => signals,
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                return exit::FAILED;
            }
        };
        let clock: SharedClock = Arc::new(SystemClock);
        info!(
            host = %config.host,
            jobs_file = %config.file.display(),
            data_dir = %config.data_dir.display(),
            timezone = %config.zone.name(),
            "runner starting"
        );
        log_warnings(&config);
        let notifiers = Arc::new(Notifiers::new(&config, clock.clone()));
        // Delivery goes on through the shutdown grace, for what the last runs queue.
        let delivery_stop = CancellationToken::new();
        let deliverers = notifiers.start(delivery_stop.clone());
        let now = clock.now();
        let mut entries = Vec::new();
        for spec in config.jobs.values() {
            if let Some(reason) = spec.inactive_reason() {
                info!(job = %spec.name, "job is off: {reason}");
                continue;
            }
            let next = spec
                .schedule
                .next_after(now, &config.zone)
                .map(|t| config.zone.format(t))
                .unwrap_or_else(|| "never".into());
            info!(job = %spec.name, r#type = spec.type_name(), schedule = %spec.schedule, next = %next, "job scheduled");
            entries.push(Entry {
                name: spec.name.clone(),
                schedule: spec.schedule.clone(),
                timeout: spec.timeout,
                task: Arc::new(Job::new(
                    config.clone(),
                    &spec.name,
                    clock.clone(),
                    notifiers.clone(),
                )),
            });
        }
        if entries.is_empty() {
            warn!("no job is on; runner waits for a signal and does nothing");
        }
        let stop = CancellationToken::new();
        tokio::spawn(signals.watch(stop.clone()));
        let scheduler = Scheduler::new(clock, config.zone.clone(), entries);
        let shutdown = scheduler.run(stop, config.shutdown_grace).await;
        // What is still queued stays in the outbox and goes out after the next start.
        delivery_stop.cancel();
        futures_util::future::join_all(deliverers).await;
        match shutdown {
            Shutdown::Clean => {
                info!("runner stopped");
                exit::OK
            }
            Shutdown::Abandoned(jobs) => {
                warn!(?jobs, "runner stopped with jobs still running");
                exit::OK
            }
        }
    })
}

/// SIGTERM and SIGINT, listened for from the start.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// First signal: stop scheduling and let running jobs finish. Second: leave now.
    async fn watch(mut self, stop: CancellationToken) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        info!(
            signal = name,
            "stopping: no new runs; running jobs may finish"
        );
        stop.cancel();
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        warn!("second signal: leaving without waiting for running jobs");
        std::process::exit(i32::from(exit::INTERRUPTED));
    }
}

/// Everything that can be checked without running: the jobs file, then each monitor's rules.
fn check(file: &Path) -> u8 {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(problems) => {
            eprint!("{}", problems.render());
            println!("{}", summary_line(file, &problems));
            return exit::FAILED;
        }
    };
    let mut problems = config.warnings.clone();
    let mut rule_files = 0;
    for spec in config.jobs.values() {
        if let crate::config::JobKind::Monitor(monitor) = &spec.kind {
            let schema = crate::rules::values::Schema::for_probes(&monitor.probes);
            let (rules, found) =
                crate::rules::RuleSet::load(&monitor.rules, schema, monitor.rule_timeout);
            rule_files += rules.files().len();
            problems.extend(found);
            for pattern in &monitor.rules {
                if crate::glob::expand(pattern).is_ok_and(|m| m.is_empty()) {
                    problems.push(crate::diagnostic::Problem::warning(
                        &config.file,
                        format!(
                            "no rule file matches `{}` (job `{}`)",
                            pattern.display(),
                            spec.name
                        ),
                    ));
                }
            }
        }
    }
    for spec in config.notifiers.values() {
        if let crate::config::NotifierSettings::Slack {
            template: Some(path),
            ..
        } = &spec.settings
            && let Err(problem) = crate::notify::slack::load_template(path)
        {
            problems.push(problem.to_problem(
                &format!("notifiers.{}.template", spec.name),
                "fix the template; until then the built-in message is used",
            ));
        }
    }
    // Report templates render against an example summary, so a typo shows now, not on Monday.
    for spec in config.jobs.values() {
        if let crate::config::JobKind::Report(report) = &spec.kind {
            let (_, failed) = crate::report::render_all(
                &report.templates,
                &crate::report::summary::example(&config),
                &config.zone,
            );
            for problem in failed {
                problems.push(problem.to_problem(
                    &format!("jobs.{}.templates", spec.name),
                    "fix the template; `runner report --summary` prints every field a template can use",
                ));
            }
        }
    }
    let problems = problems.sorted();
    eprint!("{}", problems.render());
    println!(
        "{} ({} jobs, {} notifiers, {} rule files)",
        summary_line(file, &problems),
        config.jobs.len(),
        config.notifiers.len(),
        rule_files
    );
    if problems.has_errors() {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// `runner test`: every rule test file, a line per file, every failed check with its line.
fn test_rules(paths: &[PathBuf]) -> u8 {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("rules")]
    } else {
        paths.to_vec()
    };
    let files = crate::rules::testing::find_test_files(&paths);
    if files.is_empty() {
        eprintln!(
            "error: no rule tests (`*.test.yaml`) in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return exit::USAGE;
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let report = crate::rules::testing::run_file(file);
        if !report.problems.is_empty() {
            println!("FAIL {} (cannot run)", file.display());
            let problems: Problems =
                report
                    .problems
                    .into_iter()
                    .fold(Problems::default(), |mut all, p| {
                        all.push(p);
                        all
                    });
            print!("{}", problems.render());
            failed += 1;
            continue;
        }
        if report.failures.is_empty() {
            println!("ok   {} ({} checks)", file.display(), report.passed);
        } else {
            println!("FAIL {}", file.display());
            for f in &report.failures {
                println!("  {}:{}: {}", file.display(), f.line, f.message);
            }
        }
        passed += report.passed;
        failed += report.failures.len();
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 { exit::OK } else { exit::FAILED }
}

fn run_job(file: &Path, name: &str) -> u8 {
    let config = match load(file) {
        Ok(config) => Arc::new(config),
        Err(code) => return code,
    };
    if config.job(name).is_none() {
        let names: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        eprintln!(
            "error: no job named `{name}` in {} (jobs: {})",
            file.display(),
            names.join(", ")
        );
        return exit::USAGE;
    }
    log_warnings(&config);
    block_on(async move {
        let clock: SharedClock = Arc::new(SystemClock);
        let now = clock.now();
        let notifiers = Arc::new(Notifiers::new(&config, clock.clone()));
        let grace = config.shutdown_grace;
        let job = Job::new(config, name, clock.clone(), notifiers.clone());
        let outcome = job
            .run_once(RunInfo {
                scheduled: now,
                started: now,
            })
            .await;
        // Send what the run queued before leaving; what cannot go now stays queued.
        let deadline = clock.now() + chrono::Duration::from_std(grace).unwrap_or_default();
        notifiers.drain(deadline).await;
        match outcome {
            Ok(Outcome::Done(summary)) => {
                println!("{summary}");
                exit::OK
            }
            Ok(Outcome::Off(reason)) => {
                println!("{reason}; nothing to do");
                exit::OK
            }
            Ok(Outcome::Busy(reason)) => {
                eprintln!("error: {reason}");
                exit::BUSY
            }
            Err(e) => {
                eprintln!("error: job `{name}` failed: {e:#}");
                exit::FAILED
            }
        }
    })
}

/// `runner report`: the summary of the window ending now, rendered or as JSON.
fn report_now(
    file: &Path,
    job: Option<&str>,
    templates: &[PathBuf],
    window: Option<&str>,
    out: Option<&Path>,
    as_json: bool,
) -> u8 {
    use crate::config::JobKind;
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let reports: Vec<(&String, &crate::config::ReportSpec)> = config
        .jobs
        .iter()
        .filter_map(|(name, j)| match &j.kind {
            JobKind::Report(r) => Some((name, r)),
            _ => None,
        })
        .collect();
    let chosen = match job {
        Some(name) => match reports.iter().find(|(n, _)| n.as_str() == name) {
            Some(found) => Some(*found),
            None => {
                let names: Vec<&str> = reports.iter().map(|(n, _)| n.as_str()).collect();
                eprintln!(
                    "error: no report job named `{name}` in {} (report jobs: {})",
                    file.display(),
                    names.join(", ")
                );
                return exit::USAGE;
            }
        },
        None if reports.len() == 1 => Some(reports[0]),
        None => None,
    };
    let window = match window {
        Some(text) => match crate::vocab::duration::parse_duration(text) {
            Ok(w) if !w.is_zero() => w,
            Ok(_) => {
                eprintln!("error: --window must be above zero");
                return exit::USAGE;
            }
            Err(e) => {
                eprintln!("error: --window: {e}");
                return exit::USAGE;
            }
        },
        None => chosen.map_or(std::time::Duration::from_secs(7 * 86_400), |(_, r)| {
            r.window
        }),
    };
    let templates: Vec<PathBuf> = if templates.is_empty() {
        chosen.map(|(_, r)| r.templates.clone()).unwrap_or_default()
    } else {
        templates.to_vec()
    };
    if templates.is_empty() && !as_json {
        eprintln!(
            "error: no template: name a report job that has templates, or give --template FILE (or --summary for the JSON)"
        );
        return exit::USAGE;
    }
    if out.is_some() && templates.len() > 1 {
        eprintln!("error: --out takes one rendered report; give one --template");
        return exit::USAGE;
    }
    let name = chosen.map_or("report", |(n, _)| n.as_str());
    let title = chosen.map_or_else(
        || "Performance report".to_string(),
        |(_, r)| r.title.clone(),
    );
    let summary = crate::report::summary::build(&config, name, &title, window, chrono::Utc::now());
    if as_json {
        match serde_json::to_string_pretty(&summary) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        }
        return exit::OK;
    }
    let (outputs, problems) = crate::report::render_all(&templates, &summary, &config.zone);
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    for output in &outputs {
        match out {
            Some(path) => {
                if let Err(e) = crate::store::atomic::write(path, output.text.as_bytes()) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return exit::FAILED;
                }
                eprintln!("wrote {}", path.display());
            }
            None => print!("{}", output.text),
        }
    }
    if problems.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn list_jobs(file: &Path) -> u8 {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let now = SystemClock.now();
    println!(
        "jobs in {} (times in {})",
        file.display(),
        config.zone.name()
    );
    for spec in config.jobs.values() {
        println!();
        println!("{} ({})", spec.name, spec.type_name());
        if let Some(description) = &spec.description {
            println!("  {description}");
        }
        println!(
            "  schedule: {}  ({})",
            spec.schedule,
            spec.schedule.describe()
        );
        if let Some(timeout) = spec.timeout {
            println!(
                "  timeout:  {}",
                crate::vocab::duration::format_duration(timeout)
            );
        }
        match spec.inactive_reason() {
            Some(reason) => println!("  off:      {reason}"),
            None => {
                for (i, at) in spec
                    .schedule
                    .upcoming(now, &config.zone, 3)
                    .into_iter()
                    .enumerate()
                {
                    let label = if i == 0 { "next:" } else { "" };
                    println!("  {label:<9} {}", config.zone.format(at));
                }
            }
        }
    }
    let off: Vec<String> = config
        .notifiers
        .values()
        .filter_map(|n| n.off.as_ref().map(|r| format!("{} ({r})", n.name)))
        .collect();
    if !off.is_empty() {
        println!();
        println!("notifiers off: {}", off.join("; "));
    }
    exit::OK
}
