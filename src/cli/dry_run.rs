//! `runner dry-run JOB`: everything the job would do except its effects, shown. A monitor
//! measures (or takes its last logged sample) and steps the same pipeline as its tick, against
//! history from the metrics log and its saved alert state, then prints each active alert with
//! its state and explanation, the events it would send and each notifier's exact request. A
//! rotate job lists its plan, a report job renders to stdout, a fetch job fetches and counts.
//! Nothing is sent, no state is written, no metrics are logged.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::output::{out, outln};
use super::{block_on, exit, find_job, load};
use crate::alerts::AlertStore;
use crate::alerts::lifecycle::Phase;
use crate::config::{Config, FetchSpec, JobKind, MonitorSpec, ReportSpec, RotateSpec};
use crate::monitor::pipeline::Pipeline;
use crate::notify::Notifiers;
use crate::probes::{ProbeSet, ProcRoot};
use crate::rotate::Rotation;
use crate::scheduler::clock::SystemClock;
use crate::store::MetricsReader;
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::RollupStore;
use crate::store::sample::{LineParser, Sample, peek_ts_ms};
use crate::vocab::size::format_size;
use crate::vocab::words::{format_value, plural};

pub fn run(file: &Path, job: &str, from_log: bool) -> u8 {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let spec = match find_job(&config, job) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    match &spec.kind {
        JobKind::Monitor(monitor) => block_on(monitor_dry_run(&config, job, monitor, from_log)),
        JobKind::Rotate(rotate) => rotate_dry_run(&config, job, rotate),
        JobKind::ServicenowFetch(fetch) => block_on(fetch_dry_run(&config, job, fetch)),
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
    outln!(
        "{job}: dry run at {} (nothing is archived or deleted)",
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let bytes: u64 = plan.candidates.iter().map(|c| c.size).sum();
    outln!(
        "would archive {}, {} ({bytes} bytes), into {} in {}",
        plural(plan.candidates.len(), "file"),
        format_size(bytes),
        plural(plan.archives, "archive"),
        spec.archive_dir.display()
    );
    for c in &plan.candidates {
        outln!(
            "  {}  {}  {}  -> {}",
            c.path.display(),
            format_size(c.size),
            c.reason,
            c.entry
        );
    }
    let doomed: u64 = plan.expired.iter().map(|(_, size)| size).sum();
    outln!(
        "would delete {}, {} ({doomed} bytes)",
        plural(plan.expired.len(), "expired archive"),
        format_size(doomed)
    );
    for (path, size) in &plan.expired {
        outln!("  {}  {}", path.display(), format_size(*size));
    }
    if !plan.leftover_tmp.is_empty() {
        outln!(
            "would remove {} a stopped run left (never verified; their originals are in place)",
            plural(plan.leftover_tmp.len(), "unfinished archive")
        );
        for path in &plan.leftover_tmp {
            outln!("  {}", path.display());
        }
    }
    for skipped in &plan.summary.skipped {
        outln!("skipped: {skipped}");
    }
    for problem in &plan.summary.problems {
        outln!("problem: {problem}");
    }
    if plan.summary.problems.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Renders the report to stdout and shows what its notifiers would get; writes and sends nothing.
fn report_dry_run(config: &Config, job: &str, spec: &ReportSpec) -> u8 {
    let limits = crate::template::bounds::Limits::report();
    let prepared = match crate::report::prepare(config, job, spec, Utc::now(), &limits) {
        Ok(prepared) => prepared,
        Err(e) => {
            super::fail(format_args!("{e:#}"));
            return exit::FAILED;
        }
    };
    for (output, path) in &prepared.outputs {
        outln!(
            "===== {} (would be written to {}) =====",
            output.template.display(),
            path.display()
        );
        out!("{}", output.text);
        outln!();
    }
    for problem in &prepared.problems {
        super::fail(format_args!("{problem}"));
    }
    let paths: Vec<std::path::PathBuf> = prepared.outputs.iter().map(|(_, p)| p.clone()).collect();
    let (summary, problems) = (&prepared.summary, &prepared.problems);
    let notice = crate::report::notice(job, summary, &paths);
    let notifiers = Notifiers::render_only(config, Arc::new(SystemClock));
    outln!(
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

/// Each metric the rules read, with its value this tick and what each function over history
/// computed from it, a table per rule file.
fn print_reads(pipeline: &Pipeline, sample: &Sample) {
    let now: std::collections::HashMap<&str, f64> =
        sample.metrics.iter().map(|(n, v)| (&**n, *v)).collect();
    let now_ms = sample.ts.timestamp_millis();
    outln!("\nvalues the rules read this tick:");
    for file in pipeline.rules().files() {
        let reads = crate::rules::check::reads(file, pipeline.rules().schema());
        outln!("  {}", file.name);
        if reads.is_empty() {
            outln!("    (no metric by name)");
            continue;
        }
        let rows: Vec<(String, String)> = reads
            .iter()
            .map(|read| {
                let value = match &read.function {
                    None => Some(now.get(read.metric.as_str()).copied()),
                    Some(function) => computed(pipeline.history(), function, read, now_ms, &now),
                };
                let shown = match value {
                    Some(Some(v)) => format_value(v),
                    Some(None) => "no data".to_string(),
                    None => "(not computed here)".to_string(),
                };
                (written(read), shown)
            })
            .collect();
        let width = rows
            .iter()
            .map(|(w, _)| w.chars().count())
            .max()
            .unwrap_or(0);
        for (what, value) in rows {
            outln!("    {what:<width$}  {value}");
        }
    }
}

/// A read as the rule writes it: `cpu.total.usage_percent`, `avg(cpu.total.usage_percent, 5m)`.
fn written(read: &crate::rules::check::Read) -> String {
    use crate::rules::check::Literal;
    let Some(function) = &read.function else {
        return read.metric.clone();
    };
    let mut args = vec![read.metric.clone()];
    args.extend(read.args.iter().map(|arg| match arg {
        Literal::Text(text) => text.clone(),
        Literal::Number(number) => format_value(*number),
        Literal::Other => "…".to_string(),
    }));
    format!("{function}({})", args.join(", "))
}

/// What a function over history gives now, as the rule's call computes it: `Some(None)` for
/// no data, `None` for a function or argument this table does not compute (`baseline`, an
/// argument that is not a literal).
fn computed(
    history: &History,
    function: &str,
    read: &crate::rules::check::Read,
    now_ms: i64,
    now: &std::collections::HashMap<&str, f64>,
) -> Option<Option<f64>> {
    use crate::rules::check::Literal;
    use crate::rules::functions as f;
    use crate::rules::window::{Span, parse, percent};
    let text = |i: usize| match read.args.get(i) {
        Some(Literal::Text(text)) => Some(text.as_str()),
        _ => None,
    };
    let number = |i: usize| match read.args.get(i) {
        Some(Literal::Number(number)) => Some(*number),
        _ => None,
    };
    let span = |i: usize, span: Span| {
        text(i).and_then(|t| parse(t, span).ok().map(|d| d.as_millis() as i64))
    };
    let m = read.metric.as_str();
    Some(match function {
        "avg" | "min" | "max" | "sum" | "count" => {
            let agg = f::aggregate(history, m, now_ms, span(0, Span::Window)?);
            match function {
                "avg" => agg.mean(),
                "min" => agg.min(),
                "max" => agg.max(),
                "sum" => (agg.count > 0.0).then_some(agg.sum),
                _ => Some(agg.count),
            }
        }
        "stddev" => f::stddev(history, m, now_ms, span(0, Span::Window)?),
        "rate" => f::rate(history, m, now_ms, span(0, Span::Window)?),
        "delta" => f::delta(history, m, now_ms, span(0, Span::Window)?),
        "ewma" => f::ewma(history, m, now_ms, span(0, Span::HalfLife)?),
        "zscore" => {
            let window = span(0, Span::Window)?;
            now.get(m)
                .and_then(|v| f::zscore(history, m, *v, now_ms, window))
        }
        "percentile" => {
            let p = percent(number(0)?).ok()?;
            f::percentile(history, m, p, now_ms, span(1, Span::Window)?)
        }
        "predict" => f::predict(
            history,
            m,
            now_ms,
            span(0, Span::Window)?,
            span(1, Span::Ahead)?,
        ),
        "ticks_above" | "ticks_below" => {
            let (threshold, n) = (number(0)?, number(1)?.max(0.0) as usize);
            let ticks = if function == "ticks_above" {
                f::ticks_above(history, m, threshold, n)
            } else {
                f::ticks_below(history, m, threshold, n)
            };
            Some(ticks as f64)
        }
        _ => return None,
    })
}

/// Each request a notifier would make: method, redacted URL, then the body indented.
fn print_requests(requests: Vec<(String, Vec<crate::notify::destination::Rendered>)>) {
    for (notifier, requests) in requests {
        for request in requests {
            outln!("\n{notifier}: {} {}", request.method, request.url);
            for line in request.body.lines() {
                outln!("  {line}");
            }
        }
    }
}

/// Fetches as the job would, into a copy of the cache, and says what it found; writes nothing.
async fn fetch_dry_run(config: &Config, job: &str, spec: &FetchSpec) -> u8 {
    let Some(settings) = &spec.servicenow else {
        outln!(
            "{job}: ServiceNow is not configured (notifier `{}` is off); nothing to fetch",
            spec.from
        );
        return exit::OK;
    };
    let client = match crate::servicenow::Client::new(settings) {
        Ok(client) => client,
        Err(e) => {
            super::fail(format_args!("{e}"));
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
            outln!("{job}: dry run: {}; nothing written", fetched.line());
            exit::OK
        }
        Err((_, e)) => {
            super::fail(format_args!("{e}"));
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
    outln!("dry run of job `{job}`: nothing is sent, no state or metrics are written\n");
    // Text the probes noted beside their metrics (the metrics log keeps none).
    let mut notes = Vec::new();
    let sample = if from_log {
        match last_logged_sample(config, job) {
            Some(sample) => {
                outln!(
                    "sample: the last one logged, {} ({} metrics)",
                    sample.ts.to_rfc3339(),
                    sample.metrics.len()
                );
                sample
            }
            None => {
                super::fail(format_args!(
                    "the metrics log has no sample of `{job}` from today or yesterday; run without --from-log to measure now"
                ));
                return exit::FAILED;
            }
        }
    } else {
        // A dry run keeps nothing: a `postgres` probe writes no `pg_stat_statements` snapshot.
        let specs: Vec<_> = spec
            .probes
            .iter()
            .cloned()
            .map(|mut probe| {
                if let crate::config::probes::ProbeKind::Postgres(s) = &mut probe.kind {
                    s.statements_dir = None;
                }
                probe
            })
            .collect();
        let mut probes = ProbeSet::build(&specs, &ProcRoot::default());
        // Rates need two readings: measure, wait a second, measure again.
        probes.collect().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut output = probes.collect().await;
        notes = std::mem::take(&mut output.notes);
        outln!(
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
        outln!("  probe error {probe}: {error}");
    }

    // History up to just before the sample: the pipeline adds the sample itself, as a tick.
    let mut history = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(&config.data_dir, job)),
    )
    .read_only();
    let before = sample.ts - chrono::Duration::milliseconds(1);
    let warmed = history.warm(MetricsReader::for_config(config).files(), job, before);
    outln!(
        "history: {} samples of the last 48 h from the metrics log",
        warmed.samples
    );

    let saved = crate::alerts::read_state(&config.data_dir, job);
    let mut alerts = AlertStore::in_memory(&config.host, job, spec.flap, saved);
    let mute = Arc::new(crate::alerts::mute::Mute::for_config(config));
    alerts.set_mute(mute.clone());
    let rules = Arc::new(crate::monitor::load_rules(job, spec));
    let mut pipeline = Pipeline::new(history, rules, alerts);
    let stepped = pipeline.step_noted(sample.ts, &sample.metrics, &notes, |_| {});
    let (evaluation, events) = (stepped.evaluation, stepped.events);
    outln!("rules: {}", plural(pipeline.rules().files().len(), "file"));
    for outcome in &evaluation.outcomes {
        match &outcome.error {
            Some(error) => outln!("  {}: FAILED: {error}", outcome.rule_file),
            None if outcome.missing.is_empty() => outln!("  {}: ok", outcome.rule_file),
            None => outln!(
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
    print_reads(&pipeline, &sample);

    let alerts = pipeline.lock_alerts();
    let active: Vec<_> = alerts
        .lifecycle()
        .states
        .values()
        .filter(|s| s.phase != Phase::Inactive)
        .collect();
    outln!();
    if active.is_empty() {
        outln!("alerts: none active");
    } else {
        outln!("alerts:");
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
            let origin = crate::alerts::lifecycle::Origin {
                host: &config.host,
                job,
            };
            let muted = mute
                .why(alerts.lifecycle(), state, sample.ts, &origin)
                .map(|m| format!(" MUTED: {m}"))
                .unwrap_or_default();
            outln!(
                "  {phase} {}{labels} [{}] value {value}{}{muted}  ({})",
                state.name,
                state.severity.as_str(),
                if state.flapping { " FLAPPING" } else { "" },
                state.rule_file
            );
        }
    }
    if events.is_empty() {
        outln!("events: none would be sent now");
        return exit::OK;
    }
    let notifiers = Notifiers::render_only(config, Arc::new(SystemClock));
    outln!("events that would be sent:");
    for event in &events {
        if let Some(muted) = &event.muted {
            outln!(
                "  {} {} [{}]: {} — {}  -> held back: {muted}",
                event.kind,
                event.name,
                event.severity.as_str(),
                event.summary,
                event.explanation,
            );
            continue;
        }
        let targets = notifiers.targets(&spec.notify, event);
        outln!(
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
    // Which action each event would run; dry-run never runs one.
    let actions = crate::alerts::action::Actions::new(config.actions.clone());
    for event in &events {
        if let Some((name, spec)) = actions.wanted(alerts.lifecycle(), event) {
            let why = crate::alerts::action::held_back(
                alerts.lifecycle(),
                &event.fingerprint,
                name,
                spec,
                sample.ts,
            );
            match why {
                Ok(()) => outln!(
                    "  {} {}: would run action `{name}` ({}); not run by dry-run",
                    event.kind,
                    event.name,
                    spec.argv.join(" ")
                ),
                Err(why) => outln!(
                    "  {} {}: action `{name}` would not run: {why}",
                    event.kind,
                    event.name
                ),
            }
        }
    }
    let sent: Vec<_> = events
        .iter()
        .filter(|e| e.muted.is_none())
        .cloned()
        .collect();
    print_requests(notifiers.render(&spec.notify, &sent));
    let off: Vec<String> = config
        .notifiers
        .values()
        .filter(|n| spec.notify.contains(&n.name))
        .filter_map(|n| n.off.as_ref().map(|why| format!("{} ({why})", n.name)))
        .collect();
    if !off.is_empty() {
        outln!("\noff, so nothing goes to: {}", off.join(", "));
    }
    exit::OK
}
