//! The summary a report template sees: the window's metrics by family (exact min, mean, max and
//! last; p50 and p95 from a sketch within 1 %; the change against the previous window from the
//! hourly rollups; means per chart step, at most 168 points), availability of every check, the alerts and the
//! incidents of the window, and a few highlights for short messages.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::alerts::{self, AlertsSummary};
use super::cloud::{self, CloudProbe};
use super::database::{self, DatabaseServer};
use super::incidents::{self, IncidentsSummary};
use super::metrics::{MetricStats, MetricsPass};
use crate::config::{Config, JobKind};
use crate::store::MetricsReader;
use crate::store::daily::DailyFiles;
use crate::store::rollups::{HourRollup, Rollup, RollupStore};
use crate::store::sketch::RELATIVE_ERROR;

pub const SCHEMA_VERSION: u32 = 1;

/// Threads that read a window's days at once; beyond a few the disk decides.
const MAX_THREADS: usize = 4;

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub days: f64,
    /// The window in words for sentences: `week`, `day`, `hour`, `30 days`, `12 hours`
    /// ("over the {{period.label}}", "the {{period.label}} before").
    pub label: String,
    pub previous_from: DateTime<Utc>,
    pub previous_to: DateTime<Utc>,
    /// The step between two points of `series`, in seconds: an hour for a week, ten minutes
    /// for a day, a minute for an hour (at most 168 points).
    pub chart_step_s: i64,
    /// Where the charts start: `from`, or, when samples cover less than a quarter of the
    /// window, the step in which the first sample fell (a week's report over an hour of
    /// history charts that hour by the minute).
    pub chart_from: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    pub name: String,
    /// The middle of the name (`total`, `/var`, `gateway`); empty for two-part names.
    pub instance: String,
    pub field: String,
    /// `percent`, `bytes`, `bytes_per_sec`, `per_sec`, `ms`, `seconds`, `days`, `bool` or ``.
    pub unit: String,
    pub samples: u64,
    pub min: f64,
    pub avg: f64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: f64,
    pub last: f64,
    /// The previous window's mean, from hourly rollups, when they cover it.
    pub previous_avg: Option<f64>,
    /// `(avg - previous_avg) / |previous_avg|` in percent.
    pub change_percent: Option<f64>,
    /// Means over each chart step of the window (`period.chart_step_s`; `null` where there
    /// were no samples).
    pub series: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Family {
    pub name: String,
    pub title: String,
    pub metrics: Vec<MetricSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    /// `ping`, `tcp` or `http`.
    pub probe: String,
    pub target: String,
    pub metric: String,
    pub checks: u64,
    pub failed: u64,
    pub availability_percent: f64,
    pub downtime_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeErrors {
    pub probe: String,
    pub count: u64,
    pub last: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Sources {
    pub files: usize,
    pub archive_entries: usize,
    pub bytes: u64,
    pub bad_lines: u64,
    pub unreadable: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub title: String,
    pub job: String,
    /// This runner's host name; `hosts` lists every host seen in the metrics log.
    pub host: String,
    pub hosts: Vec<String>,
    pub generated_at: DateTime<Utc>,
    pub timezone: String,
    pub period: Period,
    pub samples: u64,
    pub probe_errors: Vec<ProbeErrors>,
    pub probe_error_total: u64,
    pub families: Vec<Family>,
    pub availability: Vec<Availability>,
    /// One entry per `postgres` probe that reported in the window.
    pub database: Vec<DatabaseServer>,
    /// One entry per `cloudwatch` probe that reported in the window.
    pub cloud: Vec<CloudProbe>,
    pub alerts: AlertsSummary,
    pub incidents: IncidentsSummary,
    /// Maintenance time and the alerts held back in the window.
    pub muted: super::muted::MutedSummary,
    /// The few things worth a glance, in sentences.
    pub highlights: Vec<String>,
    /// The relative error of p50 and p95, in percent.
    pub quantile_error_percent: f64,
    pub sources: Sources,
}

/// Families in the order a report shows them, with their titles.
const FAMILIES: &[(&str, &str)] = &[
    ("cpu", "CPU"),
    ("memory", "Memory and swap"),
    ("load", "Load"),
    ("disk", "Disk usage"),
    ("disk_io", "Disk I/O"),
    ("net_io", "Network"),
    ("ping", "Latency (ping)"),
    ("tcp", "TCP services"),
    ("http", "HTTP endpoints and app metrics"),
    ("process", "Processes"),
    ("connections", "Connections and sessions"),
    ("access_log", "Web server traffic and sessions"),
    ("command", "Commands"),
    ("postgres", "PostgreSQL"),
    ("cloudwatch", "CloudWatch"),
];

/// `week`, `day`, `hour`, or a count of the largest unit that divides the window.
pub fn window_label(span: chrono::Duration) -> String {
    let secs = span.num_seconds();
    for (unit_secs, one, many) in [
        (7 * 86_400, "week", "weeks"),
        (86_400, "day", "days"),
        (3_600, "hour", "hours"),
        (60, "minute", "minutes"),
    ] {
        if secs > 0 && secs % unit_secs == 0 {
            let n = secs / unit_secs;
            // "2 weeks" reads worse than "14 days" in a report's sentences.
            if one == "week" && n > 1 {
                continue;
            }
            return if n == 1 {
                one.to_string()
            } else {
                format!("{n} {many}")
            };
        }
    }
    format!("{secs} seconds")
}

fn split_name(name: &str) -> (&str, &str, &str) {
    let family = name.split('.').next().unwrap_or(name);
    let field = name.rsplit('.').next().unwrap_or(name);
    let instance = name
        .strip_prefix(family)
        .and_then(|r| r.strip_suffix(field))
        .map(|m| m.trim_matches('.'))
        .unwrap_or("");
    (family, instance, field)
}

/// The previous window's rollups of every monitor job, merged per metric: the hours wholly
/// inside it, so no hour that reaches into the current window counts.
fn previous(config: &Config, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<String, Rollup> {
    let mut merged: BTreeMap<String, Rollup> = BTreeMap::new();
    for job in config.jobs.values() {
        if !matches!(job.kind, JobKind::Monitor(_)) {
            continue;
        }
        let whole = |hour: &HourRollup| hour.hour + chrono::Duration::hours(1) <= to;
        for hour in RollupStore::new(&config.data_dir, &job.name)
            .hours(from, to)
            .into_iter()
            .filter(whole)
        {
            for (name, rollup) in hour.metrics {
                merged.entry(name).or_default().merge(&rollup);
            }
        }
    }
    merged
}

fn metric_summary(name: &str, s: &MetricStats, previous: Option<&Rollup>) -> MetricSummary {
    let (_, instance, field) = split_name(name);
    let avg = s.mean().unwrap_or(f64::NAN);
    let previous_avg = previous.and_then(Rollup::mean);
    MetricSummary {
        name: name.to_string(),
        instance: instance.to_string(),
        field: field.to_string(),
        unit: crate::vocab::unit::unit_of(field).to_string(),
        samples: s.count,
        min: s.min,
        avg,
        p50: s.sketch.quantile_between(0.5, s.extremes()),
        p95: s.sketch.quantile_between(0.95, s.extremes()),
        max: s.max,
        last: s.last,
        change_percent: previous_avg
            .filter(|p| *p != 0.0)
            .map(|p| (avg - p) / p.abs() * 100.0),
        previous_avg,
        series: s.series(),
    }
}

/// Builds the summary of `[window_start(window, to), to)` (calendar days for whole days).
pub fn build(
    config: &Config,
    job: &str,
    title: &str,
    window: std::time::Duration,
    to: DateTime<Utc>,
) -> Summary {
    let nominal = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(7));
    let from = super::window_start(&config.zone, window, to);
    let span = to - from;
    let mut step_ms = super::metrics::chart_step_ms(nominal.num_milliseconds());
    let reader = MetricsReader::for_config(config);
    // Runs of days on every core, merged in time order: a week of 1 s samples is a gigabyte.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let read = |chart_from: DateTime<Utc>, step_ms: i64| {
        let (chart_from_ms, to_ms) = (chart_from.timestamp_millis(), to.timestamp_millis());
        let (passes, stats) = reader.read_split(
            chart_from,
            to,
            threads,
            || MetricsPass::with_step(chart_from_ms, to_ms, step_ms),
            |pass, view| pass.visit(view),
        );
        let mut passes = passes.into_iter();
        let mut pass = passes
            .next()
            .unwrap_or_else(|| MetricsPass::with_step(chart_from_ms, to_ms, step_ms));
        for later in passes {
            pass.merge(later);
        }
        (pass, stats)
    };
    let (mut pass, mut stats) = read(from, step_ms);
    // A history shorter than a quarter of the window (a weekly report on a runner started an
    // hour ago) would be a chart of a few dots: chart the part that has samples, by a step
    // that fits it. The figures are the same; only the charts' span and step change.
    let mut chart_from = from;
    let (first_ms, to_ms) = (pass.first_ms, to.timestamp_millis());
    if first_ms < to_ms && (to_ms - first_ms) * 4 < (to_ms - from.timestamp_millis()) {
        step_ms = super::metrics::chart_step_ms(to_ms - first_ms);
        let start_ms = first_ms - first_ms.rem_euclid(step_ms);
        chart_from = DateTime::from_timestamp_millis(start_ms)
            .unwrap_or(from)
            .max(from);
        (pass, stats) = read(chart_from, step_ms);
    }
    let samples = pass.samples;
    let hosts: Vec<String> = pass.hosts.iter().cloned().collect();
    let errors = std::mem::take(&mut pass.errors);
    let metrics = pass.finish();
    let previous_from = super::window_start(&config.zone, window, from);
    let previous = previous(config, previous_from, from);

    let mut families: Vec<Family> = Vec::new();
    let mut availability = Vec::new();
    for (name, s) in &metrics {
        if s.count == 0 {
            continue;
        }
        let (family, instance, _) = split_name(name);
        let summary = metric_summary(name, s, previous.get(name));
        if let Some(a) = &s.availability {
            availability.push(Availability {
                probe: family.to_string(),
                target: instance.to_string(),
                metric: name.clone(),
                checks: a.checks,
                failed: a.failed,
                availability_percent: if a.checks > 0 {
                    (a.checks - a.failed) as f64 / a.checks as f64 * 100.0
                } else {
                    100.0
                },
                downtime_seconds: a.downtime_ms / 1000,
            });
        }
        match families.iter_mut().find(|f| f.name == family) {
            Some(f) => f.metrics.push(summary),
            None => families.push(Family {
                name: family.to_string(),
                title: FAMILIES
                    .iter()
                    .find(|(n, _)| *n == family)
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_else(|| family.to_string()),
                metrics: vec![summary],
            }),
        }
    }
    let order = |name: &str| {
        FAMILIES
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or(FAMILIES.len())
    };
    families.sort_by(|a, b| {
        order(&a.name)
            .cmp(&order(&b.name))
            .then(a.name.cmp(&b.name))
    });

    let alert_files = DailyFiles {
        data_dir: config.data_dir.clone(),
        kind: "alerts".into(),
        archive_dirs: crate::store::archive_dirs(config),
    };
    let alerts = alerts::summarize(&alert_files, from, to, &firing_now(config, to));
    let incidents = incidents::summarize(config, &config.data_dir, from, to);
    let probe_errors: Vec<ProbeErrors> = errors
        .into_iter()
        .map(|(probe, (count, last))| ProbeErrors { probe, count, last })
        .collect();
    let mut summary = Summary {
        schema_version: SCHEMA_VERSION,
        title: title.to_string(),
        job: job.to_string(),
        // The host the samples are from; this runner's own name when there are several or none.
        host: match hosts.as_slice() {
            [only] => only.clone(),
            _ => config.host.clone(),
        },
        hosts,
        generated_at: Utc::now(),
        timezone: config.zone.name().to_string(),
        period: Period {
            from,
            to,
            days: span.num_seconds() as f64 / 86_400.0,
            label: window_label(nominal),
            previous_from,
            previous_to: from,
            chart_step_s: step_ms / 1000,
            chart_from,
        },
        samples,
        probe_error_total: probe_errors.iter().map(|p| p.count).sum(),
        probe_errors,
        database: super::slowest::attach(
            database::summarize(&families),
            super::slowest::summarize(config, from, to),
        ),
        cloud: cloud::summarize(&families),
        families,
        availability,
        alerts,
        incidents,
        muted: super::muted::summarize(config, &alert_files, from, to),
        highlights: Vec::new(),
        quantile_error_percent: RELATIVE_ERROR * 100.0,
        sources: Sources {
            files: stats.read.files,
            archive_entries: stats.read.archive_entries,
            bytes: stats.read.bytes,
            bad_lines: stats.bad_lines,
            unreadable: stats.read.unreadable.clone(),
        },
    };
    summary.highlights = highlights(&summary);
    summary
}

/// The alerts the monitors' saved state has firing, when the window ends now (a past window's
/// end is not what the state describes).
fn firing_now(config: &Config, to: DateTime<Utc>) -> Vec<crate::alerts::event::AlertEvent> {
    if (Utc::now() - to).num_seconds().abs() > 60 {
        return Vec::new();
    }
    let mut firing = Vec::new();
    for job in config.jobs.values() {
        if !matches!(job.kind, JobKind::Monitor(_)) {
            continue;
        }
        let origin = crate::alerts::lifecycle::Origin {
            host: &config.host,
            job: &job.name,
        };
        for state in crate::alerts::read_state(&config.data_dir, &job.name).firing() {
            let mut event = state.event(crate::alerts::event::EventKind::Repeat, to, &origin);
            event.active_since = state.firing_since.unwrap_or(event.active_since);
            firing.push(event);
        }
    }
    firing
}

/// The metric of a summary by name.
pub fn metric<'a>(summary: &'a Summary, name: &str) -> Option<&'a MetricSummary> {
    summary
        .families
        .iter()
        .flat_map(|f| &f.metrics)
        .find(|m| m.name == name)
}

/// A few sentences: alerts, the worst availability, the biggest rises, open incidents.
fn highlights(s: &Summary) -> Vec<String> {
    use crate::vocab::words::{format_for, format_value};
    let mut out = Vec::new();
    // Without samples the alerts still count: those the saved state has firing did not stop
    // because the monitor did (issue 28 item 6).
    if s.samples == 0 {
        out.push("No samples in this window: was the monitor running?".to_string());
    }
    if s.alerts.fired == 0 {
        if s.samples > 0 {
            out.push("No alert fired.".into());
        }
    } else {
        let top = s
            .alerts
            .by_rule
            .first()
            .map(|r| format!(", most often {} ({}×)", r.name, r.fired))
            .unwrap_or_default();
        out.push(format!(
            "{} fired ({} critical, {} warning, {} info){top}.",
            crate::vocab::words::plural(s.alerts.fired as usize, "alert"),
            s.alerts.by_severity.critical,
            s.alerts.by_severity.warning,
            s.alerts.by_severity.info
        ));
    }
    if !s.alerts.still_firing.is_empty() {
        out.push(still_firing_sentence(&s.alerts.still_firing));
    }
    if let Some(worst) = s
        .availability
        .iter()
        .filter(|a| a.failed > 0)
        .min_by(|a, b| a.availability_percent.total_cmp(&b.availability_percent))
    {
        out.push(format!(
            "{} {} was available {:.2} % of the time (down {}).",
            worst.probe,
            worst.target,
            worst.availability_percent,
            format_for(worst.downtime_seconds)
        ));
    }
    let mut rises: Vec<&MetricSummary> = s
        .families
        .iter()
        .flat_map(|f| &f.metrics)
        .filter(|m| {
            matches!(m.unit.as_str(), "percent" | "ms")
                && m.change_percent.is_some_and(|c| c >= 20.0)
                && m.avg >= 1.0
        })
        .collect();
    rises.sort_by(|a, b| {
        b.change_percent
            .unwrap_or(0.0)
            .total_cmp(&a.change_percent.unwrap_or(0.0))
    });
    for m in rises.iter().take(3) {
        out.push(format!(
            "{} averaged {} (+{:.0} % on the previous window), p95 {}.",
            m.name,
            format_value(m.avg),
            m.change_percent.unwrap_or(0.0),
            m.p95.map(format_value).unwrap_or_else(|| "-".into())
        ));
    }
    for server in &s.database {
        let mut said = Vec::new();
        if server.deadlocks > 0 {
            said.push(crate::vocab::words::plural(
                server.deadlocks as usize,
                "deadlock",
            ));
        }
        if let Some(longest) = server.longest_transaction_seconds.filter(|s| *s >= 300.0) {
            said.push(format!("a transaction open {}", format_for(longest as i64)));
        }
        if let Some(waiting) = server.lock_waiting_max.filter(|w| *w >= 1.0) {
            said.push(format!(
                "up to {} sessions waiting on locks",
                format_value(waiting)
            ));
        }
        if !said.is_empty() {
            out.push(format!("PostgreSQL {}: {}.", server.name, said.join(", ")));
        }
    }
    if !s.incidents.open.is_empty() {
        out.push(format!(
            "{} ServiceNow incidents open.",
            s.incidents.open.len()
        ));
    }
    out
}

/// How many alerts are still firing and the first few of them, each with its severity as the
/// report states it everywhere: `disk_full (critical)`, `cpu_high (critical, now warning)`.
fn still_firing_sentence(still: &[alerts::Spell]) -> String {
    const NAMED: usize = 3;
    let mut named: Vec<String> = still
        .iter()
        .take(NAMED)
        .map(|spell| {
            let labels = if spell.labels.is_empty() {
                String::new()
            } else {
                format!(" {{{}}}", spell.labels)
            };
            let now = spell
                .severity_now
                .map(|now| format!(", now {}", now.as_str()))
                .unwrap_or_default();
            format!("{}{labels} ({}{now})", spell.name, spell.severity.as_str())
        })
        .collect();
    if still.len() > NAMED {
        named.push(format!("{} more", still.len() - NAMED));
    }
    format!(
        "{} still firing at the end of the window: {}.",
        still.len(),
        named.join(", ")
    )
}

/// A summary with plausible numbers in every section, for checking templates without history:
/// every list has an item and every optional field a value (but where a value would say
/// something false: see `ALWAYS_NULL`), so that its render reaches every branch and the
/// schema built from it knows every field.
pub fn example(config: &Config) -> Summary {
    let to = DateTime::parse_from_rfc3339("2026-11-30T08:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_else(|_| Utc::now());
    let from = to - chrono::Duration::days(7);
    let series: Vec<Option<f64>> = (0..168)
        .map(|h| Some(30.0 + 20.0 * ((h as f64) / 24.0 * std::f64::consts::TAU).sin()))
        .collect();
    let metric = |name: &str, avg: f64| {
        let (_, instance, field) = split_name(name);
        MetricSummary {
            name: name.into(),
            instance: instance.into(),
            field: field.into(),
            unit: crate::vocab::unit::unit_of(field).into(),
            samples: 60_480,
            min: avg / 3.0,
            avg,
            p50: Some(avg * 0.95),
            p95: Some(avg * 1.6),
            max: avg * 2.0,
            last: avg,
            previous_avg: Some(avg * 0.9),
            change_percent: Some(11.1),
            series: series.clone(),
        }
    };
    let event = |kind, severity, minutes: i64| {
        crate::alerts::event::AlertEvent::example(
            "cpu_high",
            kind,
            severity,
            from + chrono::Duration::minutes(minutes),
        )
    };
    use crate::alerts::event::EventKind;
    use crate::vocab::Severity;
    // The second spell rises to critical and drops back, so that a spell still firing shows
    // both severities.
    let events = vec![
        event(EventKind::Firing, Severity::Critical, 600),
        event(EventKind::Flapping, Severity::Critical, 620),
        event(EventKind::Resolved, Severity::Critical, 640),
        event(EventKind::Firing, Severity::Warning, 9_000),
        event(EventKind::Repeat, Severity::Critical, 9_100),
        event(EventKind::Repeat, Severity::Warning, 9_500),
    ];
    let mut summary = Summary {
        schema_version: SCHEMA_VERSION,
        title: "Weekly performance report".into(),
        job: "weekly-report".into(),
        host: config.host.clone(),
        hosts: vec![config.host.clone()],
        generated_at: to,
        timezone: config.zone.name().to_string(),
        period: Period {
            from,
            to,
            days: 7.0,
            label: "week".into(),
            previous_from: from - chrono::Duration::days(7),
            previous_to: from,
            chart_step_s: 3600,
            chart_from: from,
        },
        samples: 60_480,
        probe_errors: vec![ProbeErrors {
            probe: "ping.gateway".into(),
            count: 3,
            last: "timed out".into(),
        }],
        probe_error_total: 3,
        families: vec![
            Family {
                name: "cpu".into(),
                title: "CPU".into(),
                metrics: vec![metric("cpu.total.usage_percent", 35.0)],
            },
            Family {
                name: "net_io".into(),
                title: "Network".into(),
                metrics: vec![metric("net_io.eth0.rx_bytes_per_sec", 1_250_000.0)],
            },
            Family {
                name: "ping".into(),
                title: "Latency (ping)".into(),
                metrics: vec![metric("ping.gateway.rtt_avg_ms", 0.4)],
            },
            Family {
                name: "postgres".into(),
                title: "PostgreSQL".into(),
                // Every metric the Database section reads, so that each of its optional
                // figures is there for the templates' check.
                metrics: vec![
                    metric("postgres.main.cache_hit_percent", 99.2),
                    metric("postgres.main.commits_per_sec", 90.0),
                    metric("postgres.main.connections", 42.0),
                    metric("postgres.main.connections_used_percent", 45.0),
                    metric("postgres.main.deadlocks", 0.001),
                    metric("postgres.main.lock_wait_max_ms", 250.0),
                    metric("postgres.main.lock_waiting", 0.5),
                    metric("postgres.main.longest_statement_s", 30.0),
                    metric("postgres.main.oldest_transaction_s", 120.0),
                    metric("postgres.main.replication_lag_s", 0.2),
                    metric("postgres.main.rollbacks_per_sec", 0.4),
                    metric("postgres.main.shop.cache_hit_percent", 99.5),
                    metric("postgres.main.shop.commits_per_sec", 85.0),
                    metric("postgres.main.shop.connections", 30.0),
                    metric("postgres.main.shop.temp_bytes_per_sec", 4096.0),
                ],
            },
            Family {
                name: "cloudwatch".into(),
                title: "CloudWatch".into(),
                // What the Cloud section reads: the probe's own fields and one metric.
                metrics: vec![
                    metric("cloudwatch.web.api_metrics_total", 4032.0),
                    metric("cloudwatch.web.api_requests_total", 1008.0),
                    metric("cloudwatch.web.cpu_utilization_percent", 23.5),
                    metric("cloudwatch.web.up", 1.0),
                ],
            },
        ],
        availability: vec![Availability {
            probe: "ping".into(),
            target: "gateway".into(),
            metric: "ping.gateway.loss_percent".into(),
            checks: 60_480,
            failed: 12,
            availability_percent: 99.98,
            downtime_seconds: 120,
        }],
        database: Vec::new(),
        cloud: Vec::new(),
        alerts: alerts::from_events(&events, &[], &[], to),
        incidents: IncidentsSummary {
            configured: true,
            note: String::new(),
            fetched_at: Some(to),
            opened: vec![super::incidents::IncidentRow {
                number: "INC0010001".into(),
                short_description: "Checkout slow".into(),
                state: "Resolved".into(),
                priority: "High".into(),
                opened_at: Some(from + chrono::Duration::hours(10)),
                resolved_at: Some(from + chrono::Duration::hours(12)),
                closed_at: Some(from + chrono::Duration::hours(13)),
                age_seconds: Some(7200),
            }],
            resolved: Vec::new(),
            open: vec![super::incidents::IncidentRow {
                number: "INC0010002".into(),
                short_description: "Disk filling on db-1".into(),
                state: "In Progress".into(),
                priority: "Moderate".into(),
                opened_at: Some(to - chrono::Duration::hours(20)),
                resolved_at: None,
                closed_at: None,
                age_seconds: Some(72_000),
            }],
        },
        muted: super::muted::MutedSummary {
            windows: vec![super::muted::WindowTime {
                name: "nightly-backup".into(),
                opened: 7,
                open_seconds: 7 * 3600,
                open: "7 h 0 min".into(),
            }],
            held: vec![super::muted::HeldAlert {
                name: "disk_io_saturated".into(),
                by: "maintenance".into(),
                reason: "nightly-backup".into(),
                fired: 3,
            }],
            actions: vec![super::muted::ActionTaken {
                alert: "web_down".into(),
                action: "restart_web".into(),
                spell: DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default(),
                ok: true,
                outcome: "restart_web: exit 0 in 1.2 s".into(),
            }],
        },
        highlights: Vec::new(),
        quantile_error_percent: RELATIVE_ERROR * 100.0,
        sources: Sources {
            files: 7,
            archive_entries: 0,
            bytes: 52_428_800,
            bad_lines: 1,
            unreadable: vec!["var/metrics/2026-11-24.jsonl: permission denied".into()],
        },
    };
    summary.incidents.resolved = summary.incidents.opened.clone();
    summary.database = super::slowest::attach(
        database::summarize(&summary.families),
        vec![super::slowest::of_window(
            "main".into(),
            "db-monitor".into(),
            &crate::probes::postgres::statements::Window {
                since: Some(from),
                until: Some(to),
                note: None,
                statements: vec![crate::probes::postgres::statements::Statement {
                    key: "16384:10:42:1".into(),
                    database: "shop".into(),
                    user: "app".into(),
                    query: "SELECT * FROM orders WHERE customer_id = $1".into(),
                    calls: 120_000,
                    rows: 360_000,
                    total_ms: 95_000.0,
                    shared_blks_hit: 2_400_000,
                    shared_blks_read: 1_200,
                }],
            },
            10,
        )],
    );
    summary.cloud = cloud::summarize(&summary.families);
    summary.highlights = highlights(&summary);
    summary
}

/// Optional fields the example leaves `null` because a value would contradict its item: a
/// spell still firing has no end, an open incident is neither resolved nor closed.
pub const ALWAYS_NULL: &[&str] = &[
    "alerts.still_firing[].to",
    "incidents.open[].closed_at",
    "incidents.open[].resolved_at",
];

/// Fields of the summary that are maps keyed by data (a metric's or a host's name) rather than
/// structs with fixed fields, as `paths::Schema::from_example` writes them: none today (the
/// summary's collections are lists). A template may use any key of a map.
pub const MAP_FIELDS: &[&str] = &[];

/// The shape of what a report template sees, from the example, which fills every optional
/// field and every list so that it knows them all.
pub fn schema(config: &Config) -> crate::template::paths::Schema {
    // A summary always serializes; were it not to, `null` would make every path pass rather
    // than refuse good templates.
    let example = serde_json::to_value(example(config)).unwrap_or_default();
    crate::template::paths::Schema::from_example(&example, MAP_FIELDS)
}

/// Where the report's files go.
pub fn reports_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("reports")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sample::{LineParser, Sample};

    /// The summary of one metric fed `values`, a minute apart.
    fn summarized(values: &[f64]) -> MetricSummary {
        let mut pass = MetricsPass::new(0, 86_400_000);
        let mut parser = LineParser::default();
        for (i, v) in values.iter().enumerate() {
            let line = Sample {
                ts: DateTime::from_timestamp_millis(i as i64 * 60_000).unwrap(),
                host: "h".into(),
                job: "m".into(),
                metrics: vec![("cpu.total.usage_percent".into(), *v)],
                errors: vec![],
            }
            .to_json();
            pass.visit(&parser.parse(&line).unwrap());
        }
        let (name, stats) = pass.finish().remove(0);
        metric_summary(&name, &stats, None)
    }

    #[test]
    fn the_example_fills_every_list_and_every_optional_field() {
        // The template check knows only the fields the example has: a new optional field or
        // list left empty here would let a misspelt use of it through.
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs.yaml");
        std::fs::write(
            &jobs,
            "data_dir: var\njobs:\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n",
        )
        .unwrap();
        let config = Config::load(&jobs).unwrap();
        assert_eq!(schema(&config).unknown(), ALWAYS_NULL);
    }

    fn config() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs.yaml");
        std::fs::write(
            &jobs,
            "data_dir: var\njobs:\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n",
        )
        .unwrap();
        let config = Config::load(&jobs).unwrap();
        (dir, config)
    }

    #[test]
    fn highlights_give_each_alert_the_severity_the_report_gives_it() {
        let (_dir, config) = config();
        let s = example(&config);
        // The example's cpu_high fired as a warning, rose to critical and fell back.
        let still = &s.alerts.still_firing[0];
        assert_eq!(
            (still.severity, still.severity_now),
            (
                crate::vocab::Severity::Critical,
                Some(crate::vocab::Severity::Warning)
            )
        );
        assert_eq!(
            s.alerts.by_rule[0].severity,
            crate::vocab::Severity::Critical
        );
        assert!(
            s.highlights.contains(
                &"2 alerts fired (2 critical, 0 warning, 0 info), most often cpu_high (2×)."
                    .to_string()
            ),
            "{:?}",
            s.highlights
        );
        assert!(
            s.highlights.contains(
                &"1 still firing at the end of the window: cpu_high (critical, now warning)."
                    .to_string()
            ),
            "{:?}",
            s.highlights
        );
    }

    #[test]
    fn without_samples_the_highlights_still_name_alerts_still_firing() {
        let (_dir, config) = config();
        let mut s = example(&config);
        s.samples = 0;
        s.families.clear();
        s.availability.clear();
        s.database.clear();
        let mut firing = alerts::from_events(
            &[],
            &[(
                s.period.from - chrono::Duration::days(3),
                crate::alerts::event::AlertEvent::example(
                    "disk_full",
                    crate::alerts::event::EventKind::Repeat,
                    crate::vocab::Severity::Critical,
                    s.period.to,
                ),
            )],
            &[],
            s.period.to,
        );
        firing.bad_lines = 0;
        s.alerts = firing;
        assert_eq!(
            highlights(&s),
            [
                "No samples in this window: was the monitor running?",
                "1 still firing at the end of the window: disk_full (critical).",
                "1 ServiceNow incidents open.",
            ]
        );
    }

    #[test]
    fn windows_are_named_for_sentences() {
        let label = |secs: i64| window_label(chrono::Duration::seconds(secs));
        assert_eq!(label(7 * 86_400), "week");
        assert_eq!(label(14 * 86_400), "14 days");
        assert_eq!(label(86_400), "day");
        assert_eq!(label(3_600), "hour");
        assert_eq!(label(12 * 3_600), "12 hours");
        assert_eq!(label(90 * 60), "90 minutes");
    }

    #[test]
    fn percentiles_are_nearest_rank_and_exact_at_the_extremes() {
        // Nearest rank: p95 of nine values is the ninth, p50 the fifth.
        let s = summarized(&[0.5, 1.2, 1.9, 2.4, 2.8, 3.1, 3.3, 3.49, 5.46]);
        assert_eq!(s.p95, Some(5.46));
        assert!((s.p50.unwrap() - 2.8).abs() <= 2.8 * RELATIVE_ERROR);
        // A 0/1 series that is mostly 1: p95 is 1, not 0.99...
        let mut up = vec![1.0; 97];
        up.extend([0.0; 3]);
        let s = summarized(&up);
        assert_eq!((s.p50, s.p95), (Some(1.0), Some(1.0)));
    }
}
