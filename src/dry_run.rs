//! `runner dry-run JOB`: everything the job would do except its effects, shown. A monitor
//! measures (or takes its last logged sample), evaluates its rules against history, and prints
//! each active alert with its state and explanation and the events it would send. Nothing is
//! sent, no state is written, no metrics are logged.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::alerts::AlertStore;
use crate::alerts::lifecycle::Phase;
use crate::cli::exit;
use crate::config::{Config, FetchSpec, JobKind, MonitorSpec, ReportSpec, RotateSpec};
use crate::notify::Notifiers;
use crate::probes::{ProbeSet, ProcRoot};
use crate::rotate::Rotation;
use crate::scheduler::clock::SystemClock;
use crate::store::MetricsReader;
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::RollupStore;
use crate::store::sample::{LineParser, Sample, peek_ts_ms};
use crate::vocab::size::format_size;
use crate::vocab::words::format_value;
use crate::vocab::words::plural;

pub fn run(file: &Path, job: &str, from_log: bool) -> u8 {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(problems) => {
            eprint!("{}", problems.render());
            return exit::FAILED;
        }
    };
    let Some(spec) = config.job(job) else {
        let names: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        eprintln!(
            "error: no job named `{job}` in {} (jobs: {})",
            file.display(),
            names.join(", ")
        );
        return exit::USAGE;
    };
    match &spec.kind {
        JobKind::Monitor(monitor) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return exit::FAILED;
                }
            };
            rt.block_on(monitor_dry_run(&config, job, monitor, from_log))
        }
        JobKind::Rotate(rotate) => rotate_dry_run(&config, job, rotate),
        JobKind::ServicenowFetch(fetch) => crate::cli::block_on(fetch_dry_run(&config, job, fetch)),
        JobKind::Report(report) => report_dry_run(&config, job, report),
    }
}

/// Lists what the rotate job would archive and delete now, with the bytes; changes nothing.
fn rotate_dry_run(config: &Config, job: &str, spec: &RotateSpec) -> u8 {
    let rotation = Rotation {
        job,
        spec,
        data_dir: &config.data_dir,
    };
    let now = Utc::now();
    let plan = rotation.plan(now);
    println!(
        "{job}: dry run at {} (nothing is archived or deleted)",
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let bytes: u64 = plan.candidates.iter().map(|c| c.size).sum();
    println!(
        "would archive {}, {} ({bytes} bytes), into {} in {}",
        plural(plan.candidates.len(), "file"),
        format_size(bytes),
        plural(plan.archives, "archive"),
        spec.archive_dir.display()
    );
    for c in &plan.candidates {
        println!(
            "  {}  {}  {}  -> {}",
            c.path.display(),
            format_size(c.size),
            c.reason,
            c.entry
        );
    }
    let doomed: u64 = plan.expired.iter().map(|(_, size)| size).sum();
    println!(
        "would delete {}, {} ({doomed} bytes)",
        plural(plan.expired.len(), "expired archive"),
        format_size(doomed)
    );
    for (path, size) in &plan.expired {
        println!("  {}  {}", path.display(), format_size(*size));
    }
    for skipped in &plan.summary.skipped {
        println!("skipped: {skipped}");
    }
    for problem in &plan.summary.problems {
        println!("problem: {problem}");
    }
    if plan.summary.problems.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Renders the report to stdout and shows what its notifiers would get; writes and sends nothing.
fn report_dry_run(config: &Config, job: &str, spec: &ReportSpec) -> u8 {
    let prepared = match crate::report::prepare(config, job, spec, Utc::now()) {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::FAILED;
        }
    };
    for (output, path) in &prepared.outputs {
        println!(
            "===== {} (would be written to {}) =====",
            output.template.display(),
            path.display()
        );
        print!("{}", output.text);
        println!();
    }
    for problem in &prepared.problems {
        eprintln!("error: {problem}");
    }
    let paths: Vec<std::path::PathBuf> = prepared.outputs.iter().map(|(_, p)| p.clone()).collect();
    let (summary, problems) = (&prepared.summary, &prepared.problems);
    let notice = crate::report::notice(job, summary, &paths);
    let notifiers = Notifiers::render_only(config, Arc::new(SystemClock));
    println!(
        "===== notifications ({}) =====",
        if spec.notify.is_empty() {
            "none".to_string()
        } else {
            spec.notify.join(", ")
        }
    );
    print_requests(notifiers.render_report(&spec.notify, &notice));
    if problems.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Each request a notifier would make: method, redacted URL, then the body indented.
fn print_requests(requests: Vec<(String, Vec<crate::notify::destination::Rendered>)>) {
    for (notifier, requests) in requests {
        for request in requests {
            println!("\n{notifier}: {} {}", request.method, request.url);
            for line in request.body.lines() {
                println!("  {line}");
            }
        }
    }
}

/// Fetches as the job would, into a copy of the cache, and says what it found; writes nothing.
async fn fetch_dry_run(config: &Config, job: &str, spec: &FetchSpec) -> u8 {
    let Some(settings) = &spec.servicenow else {
        println!(
            "{job}: ServiceNow is not configured (notifier `{}` is off); nothing to fetch",
            spec.from
        );
        return exit::OK;
    };
    let client = match crate::servicenow::Client::new(settings) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    let path = crate::servicenow::cache::cache_path(&config.data_dir);
    let mut cache = crate::servicenow::cache::Cache::read(&path)
        .ok()
        .flatten()
        .unwrap_or_default();
    let fetch = crate::servicenow::fetch::Fetch {
        client: &client,
        spec,
        clock: Arc::new(SystemClock),
    };
    match fetch.run(&mut cache).await {
        Ok(fetched) => {
            println!("{job}: dry run: {}; nothing written", fetched.line());
            exit::OK
        }
        Err((_, e)) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
    }
}

/// The job's latest sample in the metrics log (today's and yesterday's files).
fn last_logged_sample(config: &Config, job: &str) -> Option<Sample> {
    let reader = MetricsReader::for_config(config);
    let today = Utc::now().date_naive();
    let mut parser = LineParser::default();
    let mut last: Option<Sample> = None;
    let mut last_ts = i64::MIN;
    reader
        .files()
        .for_each_line(today - chrono::Duration::days(1), today, |line| {
            if peek_ts_ms(line).is_some_and(|ts| ts < last_ts) {
                return ControlFlow::Continue(());
            }
            if let Ok(view) = parser.parse(line)
                && view.job() == job
                && view.ts_ms >= last_ts
            {
                last_ts = view.ts_ms;
                last = Some(view.to_sample());
            }
            ControlFlow::Continue(())
        });
    last
}

async fn monitor_dry_run(config: &Config, job: &str, spec: &MonitorSpec, from_log: bool) -> u8 {
    println!("dry run of job `{job}`: nothing is sent, no state or metrics are written\n");
    let sample = if from_log {
        match last_logged_sample(config, job) {
            Some(sample) => {
                println!(
                    "sample: the last one logged, {} ({} metrics)",
                    sample.ts.to_rfc3339(),
                    sample.metrics.len()
                );
                sample
            }
            None => {
                eprintln!(
                    "error: the metrics log has no sample of `{job}` from today or yesterday; run without --from-log to measure now"
                );
                return exit::FAILED;
            }
        }
    } else {
        let mut probes = ProbeSet::build(&spec.probes, &ProcRoot::default());
        // Rates need two readings: measure, wait a second, measure again.
        probes.collect().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let output = probes.collect().await;
        println!(
            "sample: measured now, twice a second apart so rates exist ({} metrics)",
            output.metrics.len()
        );
        Sample {
            ts: Utc::now(),
            host: config.host.clone(),
            job: job.to_string(),
            metrics: output.metrics,
            errors: output.errors,
        }
    };
    for (probe, error) in &sample.errors {
        println!("  probe error {probe}: {error}");
    }

    let mut history = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(&config.data_dir, job)),
    )
    .read_only();
    let warmed = history.warm(MetricsReader::for_config(config).files(), job, sample.ts);
    if !from_log {
        history.push(sample.ts, sample.metrics.iter().map(|(n, v)| (n, *v)));
    }
    println!(
        "history: {} samples of the last 48 h from the metrics log",
        warmed.samples
    );

    let rules = crate::monitor::load_rules(job, spec);
    let (history, evaluation) = rules.evaluate(
        history,
        sample.ts,
        sample.metrics.iter().map(|(n, v)| (n.as_ref(), *v)),
    );
    drop(history);
    println!(
        "rules: {}",
        crate::vocab::words::plural(rules.files().len(), "file")
    );
    for outcome in &evaluation.outcomes {
        match &outcome.error {
            Some(error) => println!("  {}: FAILED: {error}", outcome.rule_file),
            None if outcome.missing.is_empty() => println!("  {}: ok", outcome.rule_file),
            None => println!(
                "  {}: ok; no data for {}",
                outcome.rule_file,
                outcome
                    .missing
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    let saved = crate::alerts::read_state(&config.data_dir, job);
    let mut alerts = AlertStore::in_memory(&config.host, job, spec.flap, saved);
    let events = alerts.step(sample.ts, &evaluation, |m| sample.get(m).is_some());
    let active: Vec<_> = alerts
        .lifecycle()
        .states
        .values()
        .filter(|s| s.phase != Phase::Inactive)
        .collect();
    println!();
    if active.is_empty() {
        println!("alerts: none active");
    } else {
        println!("alerts:");
        for state in active {
            let phase = match state.phase {
                Phase::Pending => "PENDING",
                Phase::Firing => "FIRING ",
                Phase::Inactive => "       ",
            };
            let value = state
                .explained
                .value
                .map(format_value)
                .unwrap_or_else(|| "-".into());
            let labels = if state.labels.is_empty() {
                String::new()
            } else {
                format!(
                    "{{{}}}",
                    state
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            println!(
                "  {phase} {}{labels} [{}] value {value}{}  ({})",
                state.name,
                state.severity.as_str(),
                if state.flapping { " FLAPPING" } else { "" },
                state.rule_file
            );
        }
    }
    if events.is_empty() {
        println!("events: none would be sent now");
        return exit::OK;
    }
    let notifiers = Notifiers::render_only(config, Arc::new(SystemClock));
    println!("events that would be sent:");
    for event in &events {
        let targets = notifiers.targets(&spec.notify, event);
        println!(
            "  {} {} [{}]: {} — {}  -> {}",
            event.kind,
            event.name,
            event.severity.as_str(),
            event.summary,
            event.explanation,
            if targets.is_empty() {
                "nobody (no notifier takes it)".to_string()
            } else {
                targets.join(", ")
            }
        );
    }
    print_requests(notifiers.render(&spec.notify, &events));
    let off: Vec<String> = config
        .notifiers
        .values()
        .filter(|n| spec.notify.contains(&n.name))
        .filter_map(|n| n.off.as_ref().map(|why| format!("{} ({why})", n.name)))
        .collect();
    if !off.is_empty() {
        println!("\noff, so nothing goes to: {}", off.join(", "));
    }
    exit::OK
}
