//! `/metrics` in the Prometheus text format (0.0.4), or OpenMetrics 1.0 when the scraper's
//! `Accept` prefers it: every value of each monitor's latest sample, and runner's own health
//! (job runs, rule evaluations, alerts, notifier delivery).
//!
//! Samples are named and labelled by `store::prometheus`, the one mapping remote write uses
//! too.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::alerts::lifecycle::Phase;
use crate::notify::{NotifierHealth, RuleStats};
use crate::scheduler::{JobStats, SchedulerState};
use crate::store::prometheus;
use crate::store::sample::Sample;

pub use crate::store::prometheus::series_of;

/// One series: its labels and value.
type Series = (Vec<(&'static str, String)>, f64);

/// The families of one exposition, by metric name: help, type and series.
#[derive(Default)]
struct Families {
    families: BTreeMap<String, (String, &'static str, Vec<Series>)>,
}

impl Families {
    fn add(&mut self, name: String, help: &str, kind: &'static str, series: Series) {
        self.families
            .entry(name)
            .or_insert_with(|| (help.to_string(), kind, Vec::new()))
            .2
            .push(series);
    }

    fn render(&self, format: Format) -> String {
        let mut out = String::with_capacity(64 * 1024);
        for (name, (help, kind, series)) in &self.families {
            // OpenMetrics names a counter's family without the `_total` its samples carry.
            let family = match (format, *kind) {
                (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
                _ => name,
            };
            let _ = writeln!(out, "# HELP {family} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for (labels, value) in series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (key, value)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{key}=\"{}\"", escape_label(value));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

/// The two exposition formats Prometheus scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when it is listed with a weight at
    /// least that of the plain text format (Prometheus asks for it first), else text.
    pub fn negotiate(accept: &str) -> Format {
        let (mut open_metrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let weight = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(weight),
                "text/plain" | "text/*" | "*/*" => text = text.max(weight),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One job as `/metrics` and the status page show it.
pub struct JobView {
    pub name: String,
    pub stats: Option<std::sync::Arc<JobStats>>,
    pub running: bool,
    pub next: Option<DateTime<Utc>>,
}

impl JobView {
    pub fn all<'a>(
        state: &SchedulerState,
        names: impl Iterator<Item = &'a String>,
    ) -> Vec<JobView> {
        let running: Vec<String> = state.running().into_iter().map(|(n, _)| n).collect();
        names
            .map(|name| JobView {
                name: name.clone(),
                stats: state.stats(name),
                running: running.contains(name),
                next: state.next_run(name),
            })
            .collect()
    }
}

/// What `/metrics` reads.
pub struct Snapshot<'a> {
    pub host: &'a str,
    pub now: DateTime<Utc>,
    pub started: DateTime<Utc>,
    /// Each monitor's latest sample.
    pub samples: &'a [Sample],
    pub jobs: Vec<JobView>,
    /// Each monitor's alerts: name, severity, phase.
    pub alerts: Vec<(String, String, String, Phase)>,
    pub notifiers: Vec<NotifierHealth>,
    /// Each monitor's rule files and their evaluations.
    pub rules: BTreeMap<String, RuleStats>,
    pub reloads: super::Reloads,
    /// What remote write did, when it is on.
    pub remote_write: Option<&'a crate::remote_write::Stats>,
    /// Each monitor of the running configuration and its probes' keys (`cpu`, `tcp.db`):
    /// their `runner_probe_failing` series are there from the start, 0 until one fails.
    pub probes: Vec<(String, Vec<String>)>,
    /// runner's own process, from `/proc/self`; `None` leaves the `process_*` series out.
    pub process: Option<super::process::Own>,
}

/// The whole exposition.
pub fn render(s: &Snapshot<'_>, format: Format) -> String {
    let mut f = Families::default();
    let host = || ("host", s.host.to_string());
    f.add(
        "runner_info".into(),
        "runner's version; always 1",
        "gauge",
        (
            vec![host(), ("version", env!("CARGO_PKG_VERSION").to_string())],
            1.0,
        ),
    );
    f.add(
        "runner_build_info".into(),
        "the version and the git commit runner was built from (`unknown` when the build had no git); always 1",
        "gauge",
        (
            vec![
                host(),
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("revision", env!("RUNNER_REVISION").to_string()),
            ],
            1.0,
        ),
    );
    if let Some(own) = &s.process {
        // Named and measured as the Prometheus client libraries do, `host` added as on
        // every series of runner's.
        for (name, help, kind, value) in [
            (
                "process_cpu_seconds_total",
                "user and system CPU time runner has spent, in seconds",
                "counter",
                Some(own.cpu_seconds),
            ),
            (
                "process_resident_memory_bytes",
                "runner's resident memory size, in bytes",
                "gauge",
                Some(own.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "runner's virtual memory size, in bytes",
                "gauge",
                Some(own.virtual_bytes),
            ),
            (
                "process_start_time_seconds",
                "when runner's process started, in seconds since the epoch",
                "gauge",
                Some(own.start_time),
            ),
            (
                "process_open_fds",
                "file descriptors runner has open",
                "gauge",
                own.open_fds,
            ),
            (
                "process_max_fds",
                "runner's limit on open file descriptors (the soft RLIMIT_NOFILE)",
                "gauge",
                own.max_fds,
            ),
        ] {
            if let Some(value) = value {
                f.add(name.into(), help, kind, (vec![host()], value));
            }
        }
    }
    f.add(
        "runner_start_time_seconds".into(),
        "when this runner started, in seconds since the epoch",
        "gauge",
        (vec![host()], s.started.timestamp_millis() as f64 / 1000.0),
    );
    f.add(
        "runner_log_lines_dropped_total".into(),
        "log lines stderr did not take (its reader gone, a full disk behind a redirect), dropped so the agent goes on",
        "counter",
        (vec![host()], crate::logging::dropped_lines() as f64),
    );
    let repairs = crate::store::daily::tail_repairs();
    for log in ["alerts", "metrics", "outbox", "rollups"] {
        f.add(
            "runner_log_tail_repairs_total".into(),
            "torn tails (a write cut short by a kill, a full disk or power loss) cut or fenced before the next append, by log",
            "counter",
            (
                vec![host(), ("log", log.into())],
                repairs.get(log).copied().unwrap_or(0) as f64,
            ),
        );
    }
    for (job, keys) in &s.probes {
        let sample = s.samples.iter().find(|sample| &sample.job == job);
        // A failing probe's 1 comes with its sample's errors below, keyed as remote write
        // keys it (an instance's error under its own key).
        for key in keys.iter().filter(|key| {
            !sample.is_some_and(|sample| sample.errors.iter().any(|(probe, _)| probe == *key))
        }) {
            f.add(
                prometheus::PROBE_FAILING.into(),
                prometheus::PROBE_FAILING_HELP,
                "gauge",
                (prometheus::probe_failing_labels(s.host, job, key), 0.0),
            );
        }
    }
    for sample in s.samples {
        let monitor = || ("runner_job", sample.job.clone());
        f.add(
            "runner_sample_timestamp_seconds".into(),
            "when the monitor's latest sample was taken: scrape this against time() for staleness",
            "gauge",
            (
                vec![host(), monitor()],
                sample.ts.timestamp_millis() as f64 / 1000.0,
            ),
        );
        for (name, value) in &sample.metrics {
            let Some(prom) = series_of(name.as_ref()) else {
                continue;
            };
            let labels = prometheus::monitor_labels(s.host, &sample.job, &prom.labels);
            f.add(
                prom.name,
                &prom.help,
                prom.kind,
                (labels, value * prom.factor),
            );
        }
        for (probe, _) in &sample.errors {
            f.add(
                prometheus::PROBE_FAILING.into(),
                prometheus::PROBE_FAILING_HELP,
                "gauge",
                (
                    prometheus::probe_failing_labels(s.host, &sample.job, probe),
                    1.0,
                ),
            );
        }
    }
    for job in &s.jobs {
        let label = || ("runner_job", job.name.clone());
        if let Some(stats) = &job.stats {
            for (result, counter) in [
                ("succeeded", &stats.succeeded),
                ("failed", &stats.failed),
                ("timed_out", &stats.timed_out),
                ("panicked", &stats.panicked),
            ] {
                f.add(
                    "runner_job_runs_total".into(),
                    "runs of each job since runner started, by result",
                    "counter",
                    (
                        vec![host(), label(), ("result", result.into())],
                        JobStats::get(counter) as f64,
                    ),
                );
            }
            let seconds =
                |counter: &std::sync::atomic::AtomicU64| JobStats::get(counter) as f64 / 1e6;
            f.add(
                "runner_job_run_seconds_total".into(),
                "time spent in the job's runs since runner started (divide by the runs for the mean)",
                "counter",
                (vec![host(), label()], seconds(&stats.run_micros_total)),
            );
            f.add(
                "runner_job_last_run_seconds".into(),
                "how long the job's last run took",
                "gauge",
                (vec![host(), label()], seconds(&stats.last_run_micros)),
            );
            f.add(
                "runner_job_last_lateness_seconds".into(),
                "how late the job's last run started after its scheduled time (scheduler lateness)",
                "gauge",
                (vec![host(), label()], seconds(&stats.last_lateness_micros)),
            );
            for (reason, counter) in [
                ("overlap", &stats.skipped_overlap),
                ("busy", &stats.skipped_busy),
                ("missed", &stats.missed),
            ] {
                f.add(
                    "runner_job_skipped_total".into(),
                    "runs not made: the previous still going (overlap), the job's lock held elsewhere (busy), or the machine asleep (missed)",
                    "counter",
                    (vec![host(), label(), ("reason", reason.into())], JobStats::get(counter) as f64),
                );
            }
        }
        f.add(
            "runner_job_running".into(),
            "1 while the job runs",
            "gauge",
            (vec![host(), label()], if job.running { 1.0 } else { 0.0 }),
        );
        if let Some(next) = job.next {
            f.add(
                "runner_job_next_run_timestamp_seconds".into(),
                "when the job runs next, in seconds since the epoch",
                "gauge",
                (
                    vec![host(), label()],
                    next.timestamp_millis() as f64 / 1000.0,
                ),
            );
        }
    }
    for (job, files) in &s.rules {
        for (file, stats) in files {
            let labels = || {
                vec![
                    host(),
                    ("runner_job", job.clone()),
                    ("rule_file", file.to_string()),
                ]
            };
            let get = |counter: &std::sync::atomic::AtomicU64| JobStats::get(counter) as f64;
            f.add(
                "runner_rule_evaluations_total".into(),
                "evaluations of each rule file since runner started (one per tick)",
                "counter",
                (labels(), get(&stats.evaluations)),
            );
            f.add(
                "runner_rule_failures_total".into(),
                "evaluations of each rule file that failed (an error, a limit, its deadline); the reason is logged",
                "counter",
                (labels(), get(&stats.failures)),
            );
            f.add(
                "runner_rule_evaluation_seconds_total".into(),
                "time spent evaluating each rule file since runner started (divide by the evaluations for the mean)",
                "counter",
                (labels(), get(&stats.micros_total) / 1e6),
            );
            f.add(
                "runner_rule_last_evaluation_seconds".into(),
                "how long the rule file's last evaluation took",
                "gauge",
                (labels(), get(&stats.last_micros) / 1e6),
            );
        }
    }
    for (result, count) in [
        ("succeeded", s.reloads.succeeded),
        ("failed", s.reloads.failed),
    ] {
        f.add(
            "runner_config_reloads_total".into(),
            "reloads of the jobs file since start (SIGHUP or runner reload), by result; a failed one keeps the running configuration",
            "counter",
            (vec![host(), ("result", result.into())], count as f64),
        );
    }
    // The configuration loaded at start is the first load that went in (as Prometheus counts
    // its own), so these series are there before any reload.
    {
        let (ok, at) = s.reloads.last.unwrap_or((true, s.started));
        f.add(
            "runner_config_last_reload_successful".into(),
            "1 if the last reload went in, 0 if it was refused (1 from start: the loaded configuration counts as the first)",
            "gauge",
            (vec![host()], if ok { 1.0 } else { 0.0 }),
        );
        f.add(
            "runner_config_last_reload_timestamp_seconds".into(),
            "when the last reload was tried (runner's start before any), in seconds since the epoch",
            "gauge",
            (vec![host()], at.timestamp_millis() as f64 / 1000.0),
        );
    }
    let mut alert_counts: BTreeMap<(String, String, String, &'static str), u64> = BTreeMap::new();
    for (job, name, severity, phase) in &s.alerts {
        let state = match phase {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            _ => continue,
        };
        *alert_counts
            .entry((job.clone(), name.clone(), severity.clone(), state))
            .or_default() += 1;
    }
    for ((job, name, severity, state), count) in alert_counts {
        f.add(
            "runner_alerts".into(),
            "alerts pending or firing now, by alert name, severity and state",
            "gauge",
            (
                vec![
                    host(),
                    ("runner_job", job),
                    ("alertname", name),
                    ("severity", severity),
                    ("state", state.into()),
                ],
                count as f64,
            ),
        );
    }
    if let Some(rw) = s.remote_write {
        use crate::remote_write::Stats;
        for (name, help, value) in [
            (
                "runner_remote_write_samples_sent_total",
                "samples the remote-write receiver acknowledged",
                Stats::get(&rw.sent),
            ),
            (
                "runner_remote_write_samples_retried_total",
                "samples in remote-write requests that failed (5xx, 429, no answer) and are sent again",
                Stats::get(&rw.retried),
            ),
        ] {
            f.add(name.into(), help, "counter", (vec![host()], value as f64));
        }
        for (reason, value) in [
            ("rejected", Stats::get(&rw.rejected)),
            ("too_old", Stats::get(&rw.too_old)),
        ] {
            f.add(
                "runner_remote_write_samples_dropped_total".into(),
                "samples not sent: refused by the receiver (a 4xx other than 429), or older than max_age when their turn came",
                "counter",
                (vec![host(), ("reason", reason.into())], value as f64),
            );
        }
        f.add(
            "runner_remote_write_backlog_age_seconds".into(),
            "how long the oldest sample not yet acknowledged by the remote-write receiver has waited; 0 when all is sent",
            "gauge",
            (vec![host()], rw.backlog_age(s.now).as_secs_f64()),
        );
    }
    for n in &s.notifiers {
        let label = || ("notifier", n.name.clone());
        f.add(
            "runner_notifier_delivered_events_total".into(),
            "events the notifier delivered since runner started",
            "counter",
            (vec![host(), label()], n.delivered as f64),
        );
        f.add(
            "runner_notifier_dead_events_total".into(),
            "events the notifier gave up on (kept in its dead letters)",
            "counter",
            (vec![host(), label()], n.dead as f64),
        );
        f.add(
            "runner_notifier_failed_attempts_total".into(),
            "delivery attempts that failed (each is retried)",
            "counter",
            (vec![host(), label()], n.failed_attempts as f64),
        );
        if let Some(bytes) = n.backlog_bytes {
            f.add(
                "runner_notifier_backlog_bytes".into(),
                "bytes queued in the notifier's outbox and not yet delivered",
                "gauge",
                (vec![host(), label()], bytes as f64),
            );
            let age = n.oldest_queued.map_or(0.0, |queued| {
                (s.now - queued).num_milliseconds().max(0) as f64 / 1000.0
            });
            f.add(
                "runner_notifier_oldest_queued_age_seconds".into(),
                "how long the oldest notice still in the notifier's outbox has waited; 0 when none waits",
                "gauge",
                (vec![host(), label()], age),
            );
        }
    }
    f.render(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Series that exist from the start with 0, so `increase()` and `absent()` work, and that
    /// count what the logs repaired and stderr dropped.
    #[test]
    fn log_repairs_and_dropped_lines_are_series_from_the_start() {
        let snapshot = |now| Snapshot {
            host: "h",
            now,
            started: now,
            samples: &[],
            jobs: Vec::new(),
            alerts: Vec::new(),
            notifiers: Vec::new(),
            rules: BTreeMap::new(),
            reloads: super::super::Reloads::default(),
            remote_write: None,
            probes: Vec::new(),
            process: None,
        };
        let value = |text: &str, series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        let now = Utc::now();
        let before = render(&snapshot(now), Format::Text);
        let series = "runner_log_tail_repairs_total{host=\"h\",log=\"rollups\"}";
        let repaired = value(&before, series);
        for log in ["alerts", "metrics", "outbox"] {
            value(
                &before,
                &format!("runner_log_tail_repairs_total{{host=\"h\",log=\"{log}\"}}"),
            );
        }
        value(&before, "runner_log_lines_dropped_total{host=\"h\"}");
        crate::store::daily::record_tail_repair(
            "rollups",
            std::path::Path::new("test"),
            3,
            "fenced",
        );
        let after = render(&snapshot(now), Format::Text);
        assert_eq!(value(&after, series), repaired + 1.0);
    }

    #[test]
    fn accept_chooses_openmetrics_only_when_preferred() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(prometheus), Format::OpenMetrics);
        assert_eq!(Format::negotiate(""), Format::Text);
        assert_eq!(Format::negotiate("*/*"), Format::Text);
        assert_eq!(
            Format::negotiate("text/plain;version=0.0.4, application/openmetrics-text;q=0.5"),
            Format::Text
        );
        assert_eq!(
            Format::negotiate("application/openmetrics-text; version=1.0.0; q=0"),
            Format::Text
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut f = Families::default();
        f.add("runner_runs_total".into(), "runs", "counter", (vec![], 3.0));
        f.add("runner_up".into(), "up", "gauge", (vec![], 1.0));
        assert_eq!(
            f.render(Format::OpenMetrics),
            "# HELP runner_runs runs\n# TYPE runner_runs counter\nrunner_runs_total 3\n# HELP runner_up up\n# TYPE runner_up gauge\nrunner_up 1\n# EOF\n"
        );
        assert!(
            f.render(Format::Text)
                .contains("# TYPE runner_runs_total counter\n")
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut f = Families::default();
        f.add(
            "runner_x".into(),
            "a \\ b\nc",
            "gauge",
            (vec![("name", "say \"hi\"\n".into())], 1.5),
        );
        assert_eq!(
            f.render(Format::Text),
            "# HELP runner_x a \\\\ b\\nc\n# TYPE runner_x gauge\nrunner_x{name=\"say \\\"hi\\\"\\n\"} 1.5\n"
        );
    }
}
