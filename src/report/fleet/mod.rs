//! The fleet report: a report job with `source: { prometheus: URL }` reads its window from a
//! Prometheus-compatible query API holding what runners pushed by remote write, instead of
//! the local metrics log, and summarizes every host that pushed (or those `hosts:` names).
//!
//! Per host and series: count, min, mean, max (`count_over_time`, `min_over_time`,
//! `avg_over_time`, `max_over_time`) and p95 (`quantile_over_time(0.95, …)`), each evaluated
//! at the window's last millisecond over a range of the window less a millisecond, so the
//! range is `[from, to)` as the local report's. Queries go one per series name and function
//! per group of `HOST_GROUP` hosts; one the server refuses as too big is asked again day by
//! day and the days combined (counts summed, extremes of extremes, the mean from
//! `sum_over_time`; the p95 then the days' p95 weighted by their counts, an approximation).
//! Availability (`tcp`/`http`/`postgres` `up`, `ping` loss) and alerts (the `ALERTS` series)
//! come from the raw samples, read day by day.

pub mod query;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::incidents::{self, IncidentsSummary};
use super::metrics::{Availability, Check};
use crate::config::{Config, FleetSource};
use crate::store::prometheus::{ALERTS, HOST};
use query::{Labels, PromClient, QueryError};

pub const SCHEMA_VERSION: u32 = 1;
/// Hosts in one query's `host=~` matcher: enough to keep the query count low at 500 hosts,
/// few enough that one answer stays small.
pub const HOST_GROUP: usize = 50;
/// Hosts shown per series name among the worst.
const WORST: usize = 5;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Serialize)]
pub struct FleetPeriod {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub days: f64,
    pub label: String,
}

/// One series of one host over the window, in Prometheus' base units.
#[derive(Debug, Clone, Serialize)]
pub struct FleetMetric {
    /// The Prometheus name (`runner_cpu_usage_percent`).
    pub name: String,
    /// The series' labels besides `host` and `runner_job`, as `cpu=total`.
    pub labels: String,
    pub job: String,
    /// `percent`, `seconds`, `bytes`, `bytes_per_sec`, `per_sec` or `` (as the `measure` helper takes them).
    pub unit: String,
    pub samples: u64,
    pub min: f64,
    pub avg: f64,
    pub p95: Option<f64>,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetFamily {
    pub name: String,
    pub metrics: Vec<FleetMetric>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetAvailability {
    pub metric: String,
    pub labels: String,
    pub checks: u64,
    pub failed: u64,
    pub availability_percent: f64,
    pub downtime_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetAlert {
    pub host: String,
    pub alertname: String,
    pub severity: String,
    /// Firing spells in the window: runs of the series' samples at consecutive ticks of its
    /// monitor job (a tick without a sample ends one).
    pub fired: u64,
    /// The spells' lengths, each from its first sample to one step after its last, at most to
    /// the window's end.
    pub firing_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub samples: u64,
    pub families: Vec<FleetFamily>,
    pub availability: Vec<FleetAvailability>,
    pub alerts_fired: u64,
    pub firing_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorstHost {
    pub host: String,
    pub labels: String,
    pub avg: f64,
    pub p95: Option<f64>,
    pub max: f64,
}

/// The hosts with the highest p95 of one series name.
#[derive(Debug, Clone, Serialize)]
pub struct Worst {
    pub family: String,
    pub name: String,
    pub unit: String,
    pub hosts: Vec<WorstHost>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub hosts: usize,
    pub series: usize,
    pub samples: u64,
    pub checks: u64,
    pub failed_checks: u64,
    pub alerts_fired: u64,
    pub firing_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetSummary {
    pub schema_version: u32,
    pub title: String,
    pub job: String,
    /// The query API, as it may be shown.
    pub source: String,
    pub generated_at: DateTime<Utc>,
    pub timezone: String,
    pub period: FleetPeriod,
    pub hosts: Vec<HostReport>,
    pub worst: Vec<Worst>,
    pub totals: Totals,
    pub alerts: Vec<FleetAlert>,
    pub incidents: IncidentsSummary,
    pub highlights: Vec<String>,
    /// Queries sent, and those refused as too big and asked again day by day.
    pub queries: u64,
    pub split_queries: u64,
}

/// What the five functions found for one series, merged across day pieces.
#[derive(Debug, Clone)]
struct Acc {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// p95 times count per piece, and the count it covers.
    p95_weighted: f64,
    p95_count: f64,
}

impl Default for Acc {
    fn default() -> Acc {
        Acc {
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            p95_weighted: 0.0,
            p95_count: 0.0,
        }
    }
}

/// `host=~"^(a|b)$"`'s alternatives with the regex's special characters escaped.
fn host_matcher(hosts: &[String]) -> String {
    let escaped: Vec<String> = hosts
        .iter()
        .map(|h| {
            let mut out = String::new();
            for c in h.chars() {
                if "\\.+*?()|[]{}^$".contains(c) {
                    // Once for the regex, once for the PromQL string.
                    out.push_str("\\\\");
                } else if c == '"' {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        })
        .collect();
    format!("{HOST}=~\"{}\"", escaped.join("|"))
}

/// `300000ms`: a range to the millisecond, as PromQL writes it.
fn range(ms: i64) -> String {
    format!("{}ms", ms.max(1))
}

/// The pieces `[a, b)` of `[from, to)` a refused query is asked again over: whole days back
/// from `to`.
fn day_pieces(from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
    let mut pieces = Vec::new();
    let mut end = to_ms;
    while end > from_ms {
        let start = (end - DAY_MS).max(from_ms);
        pieces.push((start, end));
        end = start;
    }
    pieces.reverse();
    pieces
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The family a Prometheus name belongs to: the longest probe type after `runner_`.
fn family_of(name: &str) -> String {
    let rest = name.strip_prefix("runner_").unwrap_or(name);
    crate::config::probes::PROBE_TYPES
        .iter()
        .map(|t| t.name)
        .filter(|f| rest.starts_with(&format!("{f}_")))
        .max_by_key(|f| f.len())
        .map_or_else(
            || rest.split('_').next().unwrap_or(rest).to_string(),
            str::to_string,
        )
}

fn unit_of(name: &str) -> &'static str {
    for (suffix, unit) in [
        ("_bytes_per_second", "bytes_per_sec"),
        ("_per_second", "per_sec"),
        ("_percent", "percent"),
        ("_seconds", "seconds"),
        ("_seconds_total", "seconds"),
        ("_bytes", "bytes"),
        ("_bytes_total", "bytes"),
    ] {
        if name.ends_with(suffix) {
            return unit;
        }
    }
    ""
}

/// The check a series is, as the local report's availability counts it.
fn check_of(name: &str) -> Option<Check> {
    match name {
        "runner_tcp_up" | "runner_http_up" | "runner_postgres_up" => Some(Check::Up),
        "runner_ping_loss_percent" => Some(Check::Loss),
        _ => None,
    }
}

/// The labels that tell a host's series apart: all but the name, `host` and `runner_job`.
fn labels_text(labels: &Labels) -> String {
    labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "__name__" | HOST | "runner_job"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A series' key within a name: host, job, other labels.
type Key = (String, String, String);

fn key(labels: &Labels) -> Key {
    (
        labels.get(HOST).cloned().unwrap_or_default(),
        labels.get("runner_job").cloned().unwrap_or_default(),
        labels_text(labels),
    )
}

struct Reader<'a> {
    client: &'a PromClient,
    from_ms: i64,
    to_ms: i64,
    queries: u64,
    split: u64,
}

impl Reader<'_> {
    /// The five figures of every series of `name` on `hosts`.
    async fn figures(&mut self, name: &str, hosts: &str) -> anyhow::Result<BTreeMap<Key, Acc>> {
        let mut out: BTreeMap<Key, Acc> = BTreeMap::new();
        match self
            .figures_over(name, hosts, self.from_ms, self.to_ms, &mut out)
            .await
        {
            Ok(()) => Ok(out),
            Err(QueryError::TooBig(why)) => {
                self.split += 1;
                tracing::info!(name, "refused as too big, asked day by day: {why}");
                let mut out = BTreeMap::new();
                for (a, b) in day_pieces(self.from_ms, self.to_ms) {
                    self.figures_over(name, hosts, a, b, &mut out)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                Ok(out)
            }
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    async fn figures_over(
        &mut self,
        name: &str,
        hosts: &str,
        a: i64,
        b: i64,
        out: &mut BTreeMap<Key, Acc>,
    ) -> Result<(), QueryError> {
        let selector = format!("{name}{{{hosts}}}[{}]", range(b - a - 1));
        let when = at(b - 1);
        let mut piece: BTreeMap<Key, Acc> = BTreeMap::new();
        for function in ["count", "sum", "min", "max", "p95"] {
            let query = match function {
                "p95" => format!("quantile_over_time(0.95, {selector})"),
                f => format!("{f}_over_time({selector})"),
            };
            self.queries += 1;
            for (labels, value) in self.client.vector(&query, when).await? {
                let acc = piece.entry(key(&labels)).or_default();
                match function {
                    "count" => acc.count = value,
                    "sum" => acc.sum = value,
                    "min" => acc.min = value,
                    "max" => acc.max = value,
                    _ => acc.p95_weighted = value,
                }
            }
        }
        for (k, p) in piece {
            let acc = out.entry(k).or_default();
            acc.count += p.count;
            acc.sum += p.sum;
            acc.min = acc.min.min(p.min);
            acc.max = acc.max.max(p.max);
            if p.p95_weighted.is_finite() {
                acc.p95_weighted += p.p95_weighted * p.count;
                acc.p95_count += p.count;
            }
        }
        Ok(())
    }

    /// The raw samples of every series `query_of(range)` selects, day by day, in time order.
    async fn samples(
        &mut self,
        selector: &str,
    ) -> anyhow::Result<BTreeMap<Key, (Labels, Vec<(i64, f64)>)>> {
        let mut out: BTreeMap<Key, (Labels, Vec<(i64, f64)>)> = BTreeMap::new();
        for (a, b) in day_pieces(self.from_ms, self.to_ms) {
            self.queries += 1;
            let query = format!("{selector}[{}]", range(b - a - 1));
            let answer = self
                .client
                .matrix(&query, at(b - 1))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (labels, values) in answer {
                let entry = out
                    .entry(key(&labels))
                    .or_insert_with(|| (labels.clone(), Vec::new()));
                entry
                    .1
                    .extend(values.into_iter().filter(|(t, _)| *t >= a && *t < b));
            }
        }
        Ok(out)
    }
}

/// A series' key and labels, and its spells: `(fired, firing_seconds)`.
type SeriesSpells = (Key, (Labels, (u64, i64)));

/// The spells of every firing `ALERTS` series.
/// All the alerts of a host's monitor job are sampled at its ticks, so the job's step is the
/// smallest spacing between the times any of them has a sample at: one alert's own samples do
/// not show it when its spells are single ticks far apart.
fn alert_spells(series: BTreeMap<Key, (Labels, Vec<(i64, f64)>)>, to_ms: i64) -> Vec<SeriesSpells> {
    let mut times: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for ((host, job, _), (_, samples)) in &series {
        times
            .entry((host, job))
            .or_default()
            .extend(samples.iter().map(|(t, _)| *t));
    }
    let steps: BTreeMap<(String, String), i64> = times
        .into_iter()
        .map(|((host, job), mut t)| {
            t.sort_unstable();
            let step = t
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|d| *d > 0)
                .min()
                .unwrap_or(0);
            ((host.to_string(), job.to_string()), step)
        })
        .collect();
    series
        .into_iter()
        .map(|(key, (labels, samples))| {
            let step = steps
                .get(&(key.0.clone(), key.1.clone()))
                .copied()
                .unwrap_or(0);
            let found = spells(&samples, step, to_ms);
            (key, (labels, found))
        })
        .collect()
}

/// Spells of one alert series sampled every `step` ms: a run of samples ends where the next
/// one is more than one and a half steps later (the tick between had no sample: the alert
/// was resolved there), as the alert log's `resolved` event ends it. Each spell lasts from its
/// first sample to one step after its last (the tick it resolved), at most to the window's
/// end `to_ms`, in whole seconds as the host's own report counts a spell.
fn spells(samples: &[(i64, f64)], step: i64, to_ms: i64) -> (u64, i64) {
    let mut fired = 0;
    let mut firing_seconds = 0;
    let mut spell: Option<(i64, i64)> = None;
    let mut end = |(first, last): (i64, i64)| {
        fired += 1;
        firing_seconds += ((last + step).min(to_ms) - first).max(0) / 1000;
    };
    for (t, _) in samples {
        spell = match spell {
            Some((first, last)) if 2 * (*t - last) <= 3 * step => Some((first, *t)),
            Some(done) => {
                end(done);
                Some((*t, *t))
            }
            None => Some((*t, *t)),
        };
    }
    if let Some(done) = spell {
        end(done);
    }
    (fired, firing_seconds)
}

impl FleetSummary {
    /// The fleet as the report notice and file names see a report: no host, every host's
    /// samples and alerts, the incidents.
    pub fn notice_summary(&self, nominal: chrono::Duration) -> super::summary::Summary {
        let (from, to) = (self.period.from, self.period.to);
        let previous = to - nominal;
        super::summary::Summary {
            schema_version: super::summary::SCHEMA_VERSION,
            title: self.title.clone(),
            job: self.job.clone(),
            host: "fleet".to_string(),
            hosts: self.hosts.iter().map(|h| h.host.clone()).collect(),
            generated_at: self.generated_at,
            timezone: self.timezone.clone(),
            period: super::summary::Period {
                from,
                to,
                days: self.period.days,
                label: self.period.label.clone(),
                previous_from: previous.min(from) - nominal,
                previous_to: from,
                chart_step_s: 0,
                chart_from: from,
            },
            samples: self.totals.samples,
            probe_errors: Vec::new(),
            probe_error_total: 0,
            families: Vec::new(),
            availability: Vec::new(),
            database: Vec::new(),
            cloud: Vec::new(),
            alerts: super::alerts::AlertsSummary {
                fired: self.totals.alerts_fired,
                ..Default::default()
            },
            incidents: self.incidents.clone(),
            muted: Default::default(),
            highlights: self.highlights.clone(),
            quantile_error_percent: 0.0,
            sources: super::summary::Sources::default(),
        }
    }
}

/// A fleet summary with every section filled, for `runner check` to render fleet templates
/// against and to know their paths by.
pub fn example(config: &Config) -> FleetSummary {
    let to = Utc::now();
    let from = to - chrono::Duration::days(7);
    let metric = |name: &str, labels: &str, avg: f64| FleetMetric {
        name: name.to_string(),
        labels: labels.to_string(),
        job: "system".to_string(),
        unit: unit_of(name).to_string(),
        samples: 60_480,
        min: avg / 4.0,
        avg,
        p95: Some(avg * 1.8),
        max: avg * 2.5,
    };
    let host = |name: &str, cpu: f64| HostReport {
        host: name.to_string(),
        samples: 120_960,
        families: vec![
            FleetFamily {
                name: "cpu".into(),
                metrics: vec![metric("runner_cpu_usage_percent", "cpu=total", cpu)],
            },
            FleetFamily {
                name: "tcp".into(),
                metrics: vec![metric("runner_tcp_connect_seconds", "name=db", 0.002)],
            },
        ],
        availability: vec![FleetAvailability {
            metric: "runner_tcp_up".into(),
            labels: "name=db".into(),
            checks: 60_480,
            failed: 12,
            availability_percent: 99.98,
            downtime_seconds: 120,
        }],
        alerts_fired: 2,
        firing_seconds: 900,
    };
    let hosts = vec![host("web-1", 41.5), host("web-2", 23.0)];
    let alert = FleetAlert {
        host: "web-1".into(),
        alertname: "high_cpu".into(),
        severity: "warning".into(),
        fired: 2,
        firing_seconds: 900,
    };
    FleetSummary {
        schema_version: SCHEMA_VERSION,
        title: "Weekly fleet report".into(),
        job: "fleet".into(),
        source: "http://prometheus:9090/".into(),
        generated_at: to,
        timezone: config.zone.name().to_string(),
        period: FleetPeriod {
            from,
            to,
            days: 7.0,
            label: "week".into(),
        },
        worst: vec![Worst {
            family: "cpu".into(),
            name: "runner_cpu_usage_percent".into(),
            unit: "percent".into(),
            hosts: hosts
                .iter()
                .map(|h| WorstHost {
                    host: h.host.clone(),
                    labels: "cpu=total".into(),
                    avg: 41.5,
                    p95: Some(74.7),
                    max: 100.0,
                })
                .collect(),
        }],
        totals: Totals {
            hosts: 2,
            series: 4,
            samples: 241_920,
            checks: 120_960,
            failed_checks: 24,
            alerts_fired: 4,
            firing_seconds: 1_800,
        },
        hosts,
        alerts: vec![alert],
        incidents: super::summary::example(config).incidents,
        highlights: vec!["2 hosts, 4 alerts fired across them".into()],
        queries: 14,
        split_queries: 0,
    }
}

/// The paths a fleet template may use.
pub fn schema(config: &Config) -> crate::template::paths::Schema {
    let example = serde_json::to_value(example(config)).unwrap_or_default();
    crate::template::paths::Schema::from_example(&example, &[])
}

/// Reads the window `[from, to)` from the source and builds the fleet summary.
pub fn build(
    config: &Config,
    job: &str,
    title: &str,
    source: &FleetSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    label: String,
) -> anyhow::Result<FleetSummary> {
    let client = PromClient::new(&source.endpoint).map_err(|e| anyhow::anyhow!(e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut summary = runtime.block_on(read(&client, source, from, to))?;
    summary.title = title.to_string();
    summary.job = job.to_string();
    summary.timezone = config.zone.name().to_string();
    summary.period.label = label;
    summary.incidents = incidents::summarize(config, &config.data_dir, from, to);
    Ok(summary)
}

async fn read(
    client: &PromClient,
    source: &FleetSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<FleetSummary> {
    let runner_series = "{__name__=~\"runner_.+\"}";
    let mut hosts = client
        .label_values(HOST, runner_series, from, to)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !source.hosts.is_empty() {
        hosts.retain(|h| source.hosts.iter().any(|p| crate::glob::matches(p, h)));
    }
    hosts.sort();
    let mut names = client
        .label_values("__name__", runner_series, from, to)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    names.sort();
    let mut reader = Reader {
        client,
        from_ms: from.timestamp_millis(),
        to_ms: to.timestamp_millis(),
        queries: 2,
        split: 0,
    };
    let mut reports: BTreeMap<String, HostReport> = hosts
        .iter()
        .map(|h| {
            (
                h.clone(),
                HostReport {
                    host: h.clone(),
                    samples: 0,
                    families: Vec::new(),
                    availability: Vec::new(),
                    alerts_fired: 0,
                    firing_seconds: 0,
                },
            )
        })
        .collect();
    let mut worst = Vec::new();
    let mut alerts = Vec::new();
    for group in hosts.chunks(HOST_GROUP) {
        let matcher = host_matcher(group);
        for name in &names {
            let family = family_of(name);
            for ((host, job, labels), acc) in reader.figures(name, &matcher).await? {
                let Some(report) = reports.get_mut(&host) else {
                    continue;
                };
                if acc.count <= 0.0 {
                    continue;
                }
                let samples = acc.count.round() as u64;
                report.samples += samples;
                let metric = FleetMetric {
                    name: name.clone(),
                    labels,
                    job,
                    unit: unit_of(name).to_string(),
                    samples,
                    min: acc.min,
                    avg: acc.sum / acc.count,
                    p95: (acc.p95_count > 0.0).then(|| acc.p95_weighted / acc.p95_count),
                    max: acc.max,
                };
                match report.families.iter_mut().find(|f| f.name == family) {
                    Some(f) => f.metrics.push(metric),
                    None => report.families.push(FleetFamily {
                        name: family.clone(),
                        metrics: vec![metric],
                    }),
                }
            }
            if let Some(check) = check_of(name) {
                for ((host, _, labels), (_, samples)) in
                    reader.samples(&format!("{name}{{{matcher}}}")).await?
                {
                    let Some(report) = reports.get_mut(&host) else {
                        continue;
                    };
                    let mut a = Availability::new(check);
                    for (t, v) in &samples {
                        a.add(*t, *v);
                    }
                    report.availability.push(FleetAvailability {
                        metric: name.clone(),
                        labels,
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
            }
        }
        let firing = format!("{ALERTS}{{alertstate=\"firing\",{matcher}}}");
        for ((host, _, _), (labels, (fired, firing_seconds))) in
            alert_spells(reader.samples(&firing).await?, to.timestamp_millis())
        {
            if let Some(report) = reports.get_mut(&host) {
                report.alerts_fired += fired;
                report.firing_seconds += firing_seconds;
            }
            alerts.push(FleetAlert {
                host,
                alertname: labels.get("alertname").cloned().unwrap_or_default(),
                severity: labels.get("severity").cloned().unwrap_or_default(),
                fired,
                firing_seconds,
            });
        }
    }
    let hosts: Vec<HostReport> = reports.into_values().collect();
    for name in &names {
        let mut rows: Vec<WorstHost> = hosts
            .iter()
            .flat_map(|h| {
                h.families
                    .iter()
                    .flat_map(|f| &f.metrics)
                    .filter(|m| &m.name == name)
                    .map(|m| WorstHost {
                        host: h.host.clone(),
                        labels: m.labels.clone(),
                        avg: m.avg,
                        p95: m.p95,
                        max: m.max,
                    })
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by(|a, b| {
            b.p95
                .unwrap_or(b.avg)
                .total_cmp(&a.p95.unwrap_or(a.avg))
                .then(a.host.cmp(&b.host))
        });
        rows.truncate(WORST);
        worst.push(Worst {
            family: family_of(name),
            name: name.clone(),
            unit: unit_of(name).to_string(),
            hosts: rows,
        });
    }
    alerts.sort_by(|a, b| {
        b.firing_seconds
            .cmp(&a.firing_seconds)
            .then(a.host.cmp(&b.host))
            .then(a.alertname.cmp(&b.alertname))
    });
    let totals = Totals {
        hosts: hosts.len(),
        series: hosts
            .iter()
            .flat_map(|h| &h.families)
            .map(|f| f.metrics.len())
            .sum(),
        samples: hosts.iter().map(|h| h.samples).sum(),
        checks: hosts
            .iter()
            .flat_map(|h| &h.availability)
            .map(|a| a.checks)
            .sum(),
        failed_checks: hosts
            .iter()
            .flat_map(|h| &h.availability)
            .map(|a| a.failed)
            .sum(),
        alerts_fired: hosts.iter().map(|h| h.alerts_fired).sum(),
        firing_seconds: hosts.iter().map(|h| h.firing_seconds).sum(),
    };
    let mut highlights = vec![format!(
        "{} hosts, {} alerts fired across them",
        totals.hosts, totals.alerts_fired
    )];
    if let Some(a) = hosts
        .iter()
        .flat_map(|h| h.availability.iter().map(move |a| (h, a)))
        .min_by(|x, y| {
            x.1.availability_percent
                .total_cmp(&y.1.availability_percent)
        })
        .filter(|(_, a)| a.failed > 0)
    {
        highlights.push(format!(
            "lowest availability: {} {} on {} ({:.2} %)",
            a.1.metric, a.1.labels, a.0.host, a.1.availability_percent
        ));
    }
    Ok(FleetSummary {
        schema_version: SCHEMA_VERSION,
        title: String::new(),
        job: String::new(),
        source: client.shown().to_string(),
        generated_at: Utc::now(),
        timezone: String::new(),
        period: FleetPeriod {
            from,
            to,
            days: (to - from).num_seconds() as f64 / 86_400.0,
            label: String::new(),
        },
        hosts,
        worst,
        totals,
        alerts,
        incidents: IncidentsSummary::default(),
        highlights,
        queries: reader.queries,
        split_queries: reader.split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_windows_split_into_days_that_tile_it() {
        let pieces = day_pieces(0, 2 * DAY_MS + 5);
        assert_eq!(
            pieces,
            [(0, 5), (5, DAY_MS + 5), (DAY_MS + 5, 2 * DAY_MS + 5)]
        );
    }

    #[test]
    fn host_names_are_matched_literally() {
        assert_eq!(
            host_matcher(&["web-1".into(), "a.b".into()]),
            "host=~\"web-1|a\\\\.b\""
        );
    }

    #[test]
    fn alert_spells_end_where_a_tick_has_no_sample() {
        let s = |ts: &[i64]| ts.iter().map(|t| (t * 1000, 1.0)).collect::<Vec<_>>();
        // The tick at 30 s had no sample: resolved there, fired again at 40 s.
        assert_eq!(
            spells(&s(&[0, 10, 20, 40, 50]), 10_000, i64::MAX),
            (2, 30 + 20)
        );
        // Still firing when the window ends at 15 s.
        assert_eq!(spells(&s(&[0, 10]), 10_000, 15_000), (1, 15));
        // The step is the job's, from all its alerts: single ticks 30 s apart are two spells.
        let key = |a: &str| ("h".to_string(), "m".to_string(), a.to_string());
        let series = BTreeMap::from([
            (key("a"), (Labels::default(), s(&[0, 10, 20]))),
            (key("c"), (Labels::default(), s(&[100, 130]))),
        ]);
        let found: Vec<(u64, i64)> = alert_spells(series, i64::MAX)
            .into_iter()
            .map(|(_, (_, f))| f)
            .collect();
        assert_eq!(found, [(1, 30), (2, 20)]);
    }

    #[test]
    fn families_are_the_longest_probe_type() {
        assert_eq!(family_of("runner_disk_io_read_bytes_per_second"), "disk_io");
        assert_eq!(family_of("runner_disk_used_percent"), "disk");
    }
}
