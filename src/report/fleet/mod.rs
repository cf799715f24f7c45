//! The fleet report: a report job with `source: { prometheus: URL }` reads its window from a
//! Prometheus-compatible query API holding what runners pushed by remote write, instead of
//! the local metrics log, and summarizes every host that pushed (or those `hosts:` names).
//!
//! Per host and series: count, sum (the mean is their ratio), min, max and p95
//! (`quantile_over_time(0.95, …)`, or with `p95: buckets` on VictoriaMetrics
//! `histogram_quantile(0.95, histogram_over_time(…))`), each evaluated at the window's last
//! millisecond over a range that holds `[from, to)` as the local report's. Queries go per
//! series name and group of `HOST_GROUP` hosts, `IN_FLIGHT` at once: the server does the work
//! (a week of 20,000 series is over a billion samples to scan), runner only waits and reads
//! small answers. On VictoriaMetrics one `aggr_over_time` pass gives count, sum, min and max;
//! elsewhere one query each. A query the server refuses as too big is asked again for half the
//! hosts (the figures stay exact), then for one host day by day and in halves of a day
//! (counts summed, extremes of extremes; the p95 the pieces' p95 weighted by their counts, an
//! approximation). With `p95: buckets`, a series with a negative sample (left out of the
//! buckets) gets the exact p95 by one more query for its group.
//! Availability (`tcp`/`http`/`postgres` `up`, `ping` loss) and alerts (the firing `ALERTS`
//! series, its spells told apart by `ALERTS_FOR_STATE`) come from the raw samples, read a day
//! per query and split the same way.

pub mod query;

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;

use super::incidents::{self, IncidentsSummary};
use super::metrics::{Availability, Check};
use crate::config::{Config, FleetSource};
use crate::store::prometheus::{ALERTS, ALERTS_FOR_STATE, HOST};
use query::{Labels, PromClient, QueryError};

pub const SCHEMA_VERSION: u32 = 1;
/// Hosts in one query's `host=~` matcher: enough to keep the query count low at 500 hosts,
/// few enough that one answer stays small.
pub const HOST_GROUP: usize = 50;
/// Hosts shown per series name among the worst.
const WORST: usize = 5;
const DAY_MS: i64 = 86_400_000;
/// The shortest piece of the window a refused query is split into.
const MIN_PIECE_MS: i64 = 60_000;
/// Queries in flight at once: enough to keep a server's cores busy while runner reads an
/// answer, few enough not to crowd a shared server.
pub const IN_FLIGHT: usize = 4;
/// The figures MetricsQL's `aggr_over_time` computes in one pass over the samples.
const ROLLUPS: &str =
    "(\"count_over_time\", \"sum_over_time\", \"min_over_time\", \"max_over_time\")";

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

impl Acc {
    /// Adds a piece of the window, or other hosts.
    fn merge(&mut self, p: &Acc) {
        self.count += p.count;
        self.sum += p.sum;
        self.min = self.min.min(p.min);
        self.max = self.max.max(p.max);
        self.p95_weighted += p.p95_weighted;
        self.p95_count += p.p95_count;
    }
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

fn merge(out: &mut BTreeMap<Key, Acc>, piece: BTreeMap<Key, Acc>) {
    for (k, p) in piece {
        out.entry(k).or_default().merge(&p);
    }
}

struct Reader<'a> {
    client: &'a PromClient,
    from_ms: i64,
    to_ms: i64,
    /// Bounds the queries in flight: the server's cores do the work, more would only queue.
    permits: tokio::sync::Semaphore,
    /// The server takes MetricsQL (VictoriaMetrics): `aggr_over_time`, and a range `[d]` at
    /// `t` that is `(t-d, t]`, where Prometheus 2's is `[t-d, t]`.
    metricsql: bool,
    /// The p95 from VictoriaMetrics' log buckets (`p95: buckets` on a MetricsQL server).
    buckets: bool,
    queries: AtomicU64,
    split: AtomicU64,
}

/// What one unit of the fleet's reading asks for, in the order the report takes the answers.
enum Task<'a> {
    Figures(&'a str, &'a [String]),
    Checks(&'a str, Check, &'a [String]),
    Alerts(&'a [String]),
}

enum Found {
    Figures(BTreeMap<Key, Acc>),
    Checks(BTreeMap<Key, Availability>),
    Alerts(Vec<SeriesSpells>),
}

/// Raw samples per series: its labels and (ms, value) in time order.
type Series = BTreeMap<Key, (Labels, Vec<(i64, f64)>)>;

/// Adds `values` after those the series `k` has: pieces are read in time order.
fn append(out: &mut Series, k: Key, labels: Labels, values: Vec<(i64, f64)>) {
    out.entry(k)
        .or_insert_with(|| (labels, Vec::new()))
        .1
        .extend(values);
}

/// `append` for every series of a later piece.
fn append_all(out: &mut Series, later: Series) {
    for (k, (labels, values)) in later {
        append(out, k, labels, values);
    }
}

impl Reader<'_> {
    /// The range that, evaluated at `b - 1`, holds the samples in `[a, b)`, so pieces of the
    /// window meet without a sample on their boundary read twice or not at all.
    fn range(&self, a: i64, b: i64) -> String {
        range(if self.metricsql { b - a } else { b - a - 1 })
    }

    async fn vector(
        &self,
        query: &str,
        when: DateTime<Utc>,
    ) -> Result<Vec<(Labels, f64)>, QueryError> {
        let _permit = self.permits.acquire().await;
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.client.vector(query, when).await
    }

    async fn matrix(
        &self,
        query: &str,
        when: DateTime<Utc>,
    ) -> Result<Vec<(Labels, Vec<(i64, f64)>)>, QueryError> {
        let _permit = self.permits.acquire().await;
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.client.matrix(query, when).await
    }

    /// The five figures of every series of `name` on `hosts` over `[a, b)`. A query the server
    /// refuses as too big is asked again for half the hosts (the figures stay exact), and for
    /// one host over days, then halves of the piece (counts, extremes and sums stay exact; the
    /// p95 becomes the pieces' p95 weighted by their counts).
    fn figures<'s>(
        &'s self,
        name: &'s str,
        hosts: &'s [String],
        a: i64,
        b: i64,
    ) -> futures_util::future::BoxFuture<'s, anyhow::Result<BTreeMap<Key, Acc>>> {
        Box::pin(async move {
            let why = match self.figures_over(name, hosts, a, b).await {
                Ok(piece) => return Ok(piece),
                Err(QueryError::TooBig(why)) => why,
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            };
            let pieces = self.pieces(name, hosts, a, b, why)?;
            let mut out = BTreeMap::new();
            for (hosts, x, y) in pieces {
                merge(&mut out, self.figures(name, hosts, x, y).await?);
            }
            Ok(out)
        })
    }

    async fn figures_over(
        &self,
        name: &str,
        hosts: &[String],
        a: i64,
        b: i64,
    ) -> Result<BTreeMap<Key, Acc>, QueryError> {
        let selector = format!("{name}{{{}}}[{}]", host_matcher(hosts), self.range(a, b));
        let when = at(b - 1);
        // With MetricsQL, one pass over the samples for four of the figures (the server's
        // `rollup` label says which); with PromQL, one query each.
        let functions: &[&str] = if self.metricsql {
            &["rollup", "p95"]
        } else {
            &["count", "sum", "min", "max", "p95"]
        };
        let queries: Vec<String> = functions
            .iter()
            .map(|f| match *f {
                // Interpolated inside the log bucket (10^(1/18) wide) where rank 0.95·n
                // falls: no sort of the samples, which is most of an exact p95's time.
                "p95" if self.buckets => {
                    format!("histogram_quantile(0.95, histogram_over_time({selector}))")
                }
                "p95" => format!("quantile_over_time(0.95, {selector})"),
                "rollup" => format!("aggr_over_time({ROLLUPS}, {selector})"),
                f => format!("{f}_over_time({selector})"),
            })
            .collect();
        let answers =
            futures_util::future::try_join_all(queries.iter().map(|q| self.vector(q, when)))
                .await?;
        let mut piece: BTreeMap<Key, Acc> = BTreeMap::new();
        let mut bucketed = std::collections::BTreeSet::new();
        for (function, answer) in functions.iter().zip(answers) {
            for (mut labels, value) in answer {
                let function = match *function {
                    "rollup" => match labels.remove("rollup").as_deref() {
                        Some("count_over_time") => "count",
                        Some("sum_over_time") => "sum",
                        Some("min_over_time") => "min",
                        Some("max_over_time") => "max",
                        _ => continue,
                    },
                    f => f,
                };
                let acc = piece.entry(key(&labels)).or_default();
                match function {
                    "count" => acc.count = value,
                    "sum" => acc.sum = value,
                    "min" => acc.min = value,
                    "max" => acc.max = value,
                    _ => acc.p95_weighted = value,
                }
                if function == "p95" {
                    bucketed.insert(key(&labels));
                }
            }
        }
        // `histogram_over_time` leaves negative samples out (and a series of only those out
        // of its answer): such series get the exact p95, one more query for this group.
        if self.buckets
            && piece
                .iter()
                .any(|(k, acc)| acc.min < 0.0 || !bucketed.contains(k))
        {
            let exact = self
                .vector(&format!("quantile_over_time(0.95, {selector})"), when)
                .await?;
            for (labels, value) in exact {
                if let Some(acc) = piece.get_mut(&key(&labels))
                    && (acc.min < 0.0 || !bucketed.contains(&key(&labels)))
                {
                    acc.p95_weighted = value;
                }
            }
        }
        for acc in piece.values_mut() {
            // Weighted by its count, so pieces of the window combine.
            if acc.p95_weighted.is_finite() {
                acc.p95_weighted *= acc.count;
                acc.p95_count = acc.count;
            } else {
                acc.p95_weighted = 0.0;
            }
        }
        Ok(piece)
    }

    /// The pieces a query refused as too big over `hosts` and `[a, b)` is asked again in:
    /// halves of the hosts, then for one host days, then halves of the piece down to
    /// `MIN_PIECE_MS`; an error when it cannot be split further.
    fn pieces<'h>(
        &self,
        name: &str,
        hosts: &'h [String],
        a: i64,
        b: i64,
        why: String,
    ) -> anyhow::Result<Vec<(&'h [String], i64, i64)>> {
        let pieces: Vec<(&[String], i64, i64)> = if hosts.len() > 1 {
            let (left, right) = hosts.split_at(hosts.len() / 2);
            vec![(left, a, b), (right, a, b)]
        } else if b - a > DAY_MS {
            day_pieces(a, b)
                .into_iter()
                .map(|(x, y)| (hosts, x, y))
                .collect()
        } else if b - a >= 2 * MIN_PIECE_MS {
            let middle = a + (b - a) / 2;
            vec![(hosts, a, middle), (hosts, middle, b)]
        } else {
            anyhow::bail!("{why}");
        };
        self.split.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            name,
            hosts = hosts.len(),
            pieces = pieces.len(),
            "refused as too big, asked again in pieces: {why}"
        );
        Ok(pieces)
    }

    /// The raw samples in `[a, b)` of `name` (the firing `ALERTS` without it) on `hosts`, in
    /// time order; split as `pieces` says when refused.
    fn raw<'s>(
        &'s self,
        name: Option<&'s str>,
        hosts: &'s [String],
        a: i64,
        b: i64,
    ) -> futures_util::future::BoxFuture<'s, anyhow::Result<Series>> {
        Box::pin(async move {
            let selector = match name {
                Some(name) => format!("{name}{{{}}}", host_matcher(hosts)),
                None => format!("{ALERTS}{{alertstate=\"firing\",{}}}", host_matcher(hosts)),
            };
            let query = format!("{selector}[{}]", self.range(a, b));
            let why = match self.matrix(&query, at(b - 1)).await {
                Ok(answer) => {
                    let mut out = Series::new();
                    for (labels, mut values) in answer {
                        values.retain(|(t, _)| *t >= a && *t < b);
                        append(&mut out, key(&labels), labels, values);
                    }
                    return Ok(out);
                }
                Err(QueryError::TooBig(why)) => why,
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            };
            let mut out = Series::new();
            for (hosts, x, y) in self.pieces(name.unwrap_or(ALERTS), hosts, a, b, why)? {
                append_all(&mut out, self.raw(name, hosts, x, y).await?);
            }
            Ok(out)
        })
    }

    /// Each check series' availability, its raw samples read a day per query and counted as
    /// they come (a week of them is not kept).
    async fn checks(
        &self,
        name: &str,
        check: Check,
        hosts: &[String],
    ) -> anyhow::Result<BTreeMap<Key, Availability>> {
        let mut out: BTreeMap<Key, Availability> = BTreeMap::new();
        for (a, b) in day_pieces(self.from_ms, self.to_ms) {
            for (k, (_, values)) in self.raw(Some(name), hosts, a, b).await? {
                let availability = out.entry(k).or_insert_with(|| Availability::new(check));
                for (t, v) in values {
                    availability.add(t, v);
                }
            }
        }
        Ok(out)
    }

    /// Each firing `ALERTS` series of `hosts` and its spells in the window: fired in it, and
    /// seconds firing in it. The raw samples of `ALERTS{alertstate="firing"}` and of
    /// `ALERTS_FOR_STATE` (when each spell became active) are read a day per query.
    async fn alerts(&self, hosts: &[String]) -> anyhow::Result<Vec<SeriesSpells>> {
        let mut firing = Series::new();
        let mut for_state = Series::new();
        for (a, b) in day_pieces(self.from_ms, self.to_ms) {
            for (name, out) in [
                (None, &mut firing),
                (Some(ALERTS_FOR_STATE), &mut for_state),
            ] {
                append_all(out, self.raw(name, hosts, a, b).await?);
            }
        }
        let mut out = Vec::new();
        for found in alert_spells(&firing, &for_state) {
            let mut fired = 0;
            let mut firing_seconds = 0;
            for spell in &found.spells {
                // Active before the window: firing before it too (not fired in it) if the
                // series has a firing sample between the spell's start and the window's.
                let before = match spell.since_ms {
                    Some(since) if since < self.from_ms => {
                        self.fired_before(&found.labels, since).await?
                    }
                    _ => false,
                };
                let end = match found.step {
                    0 => self.next_tick(&found.key, spell.last).await?,
                    step => spell.last + step,
                };
                fired += u64::from(!before);
                let start = if before { self.from_ms } else { spell.first };
                firing_seconds += (end.min(self.to_ms) - start).max(0) / 1000;
            }
            out.push((found.key, (found.labels, (fired, firing_seconds))));
        }
        Ok(out)
    }

    /// Whether the `ALERTS` series of `labels` (a firing one) has a sample in
    /// `[since_ms, from_ms)`.
    async fn fired_before(&self, labels: &Labels, since_ms: i64) -> anyhow::Result<bool> {
        let query = format!(
            "count_over_time({}[{}])",
            exact_selector(labels),
            self.range(since_ms, self.from_ms)
        );
        let answer = self
            .vector(&query, at(self.from_ms - 1))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(answer.iter().any(|(_, n)| *n > 0.0))
    }

    /// The first tick of a monitor job after `after_ms` (within `NEXT_TICK_MS`), from any of
    /// its series: where a spell whose job's step the alerts do not show ended. `after_ms`
    /// itself when there is none (the host stopped pushing).
    async fn next_tick(&self, (host, job, _): &Key, after_ms: i64) -> anyhow::Result<i64> {
        let query = format!(
            "{{__name__=~\"runner_.+\",{HOST}=\"{}\",runner_job=\"{}\"}}[{}]",
            escape(host),
            escape(job),
            range(NEXT_TICK_MS)
        );
        let answer = self
            .matrix(&query, at(after_ms + NEXT_TICK_MS))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(answer
            .iter()
            .flat_map(|(_, values)| values.iter().map(|(t, _)| *t))
            .filter(|t| *t > after_ms)
            .min()
            .unwrap_or(after_ms))
    }

    async fn run(&self, task: &Task<'_>) -> anyhow::Result<Found> {
        Ok(match *task {
            Task::Figures(name, hosts) => {
                Found::Figures(self.figures(name, hosts, self.from_ms, self.to_ms).await?)
            }
            Task::Checks(name, check, hosts) => {
                Found::Checks(self.checks(name, check, hosts).await?)
            }
            Task::Alerts(hosts) => Found::Alerts(self.alerts(hosts).await?),
        })
    }
}

/// A series' key and labels, and its spells: `(fired, firing_seconds)`.
type SeriesSpells = (Key, (Labels, (u64, i64)));

/// How far after a spell's last sample its job's next tick is looked for when the alerts do
/// not show the job's step.
const NEXT_TICK_MS: i64 = 600_000;

/// A spell of one firing `ALERTS` series in the window.
#[derive(Debug, PartialEq)]
struct AlertSpell {
    /// Its `ALERTS_FOR_STATE` in ms; `None` where none was pushed (a runner before it).
    since_ms: Option<i64>,
    /// Its first and last firing samples in the window.
    first: i64,
    last: i64,
}

/// One firing `ALERTS` series, its spells, and its job's step (0: not shown).
#[derive(Debug)]
struct SeriesFound {
    key: Key,
    labels: Labels,
    step: i64,
    spells: Vec<AlertSpell>,
}

/// The spells of every firing `ALERTS` series, told apart by their `ALERTS_FOR_STATE` at the
/// same instant: one value per spell, so a tick the monitor skipped does not split one, and
/// two spells at consecutive ticks are two. Where it is missing, a gap of more than one and a
/// half steps ends a spell (the tick between had no sample: the alert resolved there).
/// All the alerts of a host's monitor job are sampled at its ticks, so the job's step is the
/// smallest spacing between the times any of them (pending included) has a sample at.
fn alert_spells(firing: &Series, for_state: &Series) -> Vec<SeriesFound> {
    let mut times: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for ((host, job, _), (_, samples)) in firing.iter().chain(for_state) {
        times
            .entry((host, job))
            .or_default()
            .extend(samples.iter().map(|(t, _)| *t));
    }
    let steps: BTreeMap<(&str, &str), i64> = times
        .into_iter()
        .map(|(job, mut t)| {
            t.sort_unstable();
            let step = t
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|d| *d > 0)
                .min()
                .unwrap_or(0);
            (job, step)
        })
        .collect();
    firing
        .iter()
        .map(|(key, (labels, samples))| {
            let step = steps
                .get(&(key.0.as_str(), key.1.as_str()))
                .copied()
                .unwrap_or(0);
            let mut state_key = labels.clone();
            state_key.remove("alertstate");
            let since: BTreeMap<i64, i64> = for_state
                .get(&(key.0.clone(), key.1.clone(), labels_text(&state_key)))
                .map(|(_, values)| {
                    values
                        .iter()
                        .map(|(t, v)| (*t, (v * 1000.0).round() as i64))
                        .collect()
                })
                .unwrap_or_default();
            SeriesFound {
                key: key.clone(),
                labels: labels.clone(),
                step,
                spells: spells(samples, &since, step),
            }
        })
        .collect()
}

/// The spells of one series' firing samples, `since` its `ALERTS_FOR_STATE` by instant.
fn spells(samples: &[(i64, f64)], since: &BTreeMap<i64, i64>, step: i64) -> Vec<AlertSpell> {
    let mut out: Vec<AlertSpell> = Vec::new();
    for (t, _) in samples {
        let since_ms = since.get(t).copied();
        match out.last_mut() {
            Some(spell)
                if match (spell.since_ms, since_ms) {
                    (Some(a), Some(b)) => a == b,
                    _ => 2 * (*t - spell.last) <= 3 * step,
                } =>
            {
                spell.last = *t;
            }
            _ => out.push(AlertSpell {
                since_ms,
                first: *t,
                last: *t,
            }),
        }
    }
    out
}

/// `ALERTS{…}` with every label of `labels` matched exactly.
fn exact_selector(labels: &Labels) -> String {
    let matchers: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{ALERTS}{{{}}}", matchers.join(","))
}

/// A label value inside a PromQL double-quoted string.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
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
    // A server that answers this takes MetricsQL; Prometheus refuses it as a parse error.
    let probe = format!("aggr_over_time({ROLLUPS}, {HOST}_absent_probe[1s])");
    let metricsql = client.vector(&probe, to).await.is_ok();
    let buckets = source.p95 == crate::config::raw::P95Mode::Buckets;
    if buckets && !metricsql {
        tracing::warn!(
            server = client.shown(),
            "`p95: buckets` needs VictoriaMetrics (MetricsQL), which this server is not: \
             each p95 is computed exactly (`quantile_over_time`)"
        );
    }
    let reader = Reader {
        client,
        metricsql,
        buckets: buckets && metricsql,
        from_ms: from.timestamp_millis(),
        to_ms: to.timestamp_millis(),
        permits: tokio::sync::Semaphore::new(IN_FLIGHT),
        queries: AtomicU64::new(3),
        split: AtomicU64::new(0),
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
    let groups: Vec<&[String]> = hosts.chunks(HOST_GROUP).collect();
    let mut tasks = Vec::new();
    for group in &groups {
        for name in &names {
            tasks.push(Task::Figures(name, group));
            if let Some(check) = check_of(name) {
                tasks.push(Task::Checks(name, check, group));
            }
        }
        tasks.push(Task::Alerts(group));
    }
    // In order, so the report is the same whatever answers first; a few tasks ahead keep
    // every permit busy.
    let mut answers = futures_util::stream::iter(&tasks)
        .map(|task| reader.run(task))
        .buffered(IN_FLIGHT);
    let mut done = 0;
    while let Some(found) = answers.next().await {
        let task = &tasks[done];
        done += 1;
        match (task, found?) {
            (Task::Figures(name, _), Found::Figures(figures)) => {
                let name = name.to_string();
                let family = family_of(&name);
                for ((host, job, labels), acc) in figures {
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
                        unit: unit_of(&name).to_string(),
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
            }
            (Task::Checks(name, _, _), Found::Checks(series)) => {
                for ((host, _, labels), a) in series {
                    let Some(report) = reports.get_mut(&host) else {
                        continue;
                    };
                    report.availability.push(FleetAvailability {
                        metric: name.to_string(),
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
            (Task::Alerts(_), Found::Alerts(series)) => {
                for ((host, _, _), (labels, (fired, firing_seconds))) in series {
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
            _ => anyhow::bail!("a fleet query's answer of another kind than asked"),
        }
    }
    drop(answers);
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
        queries: reader.queries.load(Ordering::Relaxed),
        split_queries: reader.split.load(Ordering::Relaxed),
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
    fn alert_spells_are_told_apart_by_their_active_since() {
        let s = |ts: &[i64]| ts.iter().map(|t| (t * 1000, 1.0)).collect::<Vec<_>>();
        let spell = |since: Option<i64>, first: i64, last: i64| AlertSpell {
            since_ms: since.map(|s| s * 1000),
            first: first * 1000,
            last: last * 1000,
        };
        // No `ALERTS_FOR_STATE`: the tick at 30 s had no sample, so resolved there.
        assert_eq!(
            spells(&s(&[0, 10, 20, 40, 50]), &BTreeMap::new(), 10_000),
            [spell(None, 0, 20), spell(None, 40, 50)]
        );
        // With it: a skipped tick (30 s) inside one spell, then a new spell at the next tick.
        let since = BTreeMap::from([
            (0, -5_000),
            (10_000, -5_000),
            (20_000, -5_000),
            (40_000, -5_000),
            (50_000, 50_000),
        ]);
        assert_eq!(
            spells(&s(&[0, 10, 20, 40, 50]), &since, 10_000),
            [spell(Some(-5), 0, 40), spell(Some(50), 50, 50)]
        );
        // The step is the job's, from all its alerts, pending ones (`ALERTS_FOR_STATE` only)
        // included: single ticks 30 s apart are two spells.
        let key = |a: &str| ("h".to_string(), "m".to_string(), a.to_string());
        let firing = BTreeMap::from([
            (key("a"), (Labels::default(), s(&[100]))),
            (key("c"), (Labels::default(), s(&[100, 130]))),
        ]);
        let pending = BTreeMap::from([(key("b"), (Labels::default(), s(&[0, 10])))]);
        let found: Vec<(i64, usize)> = alert_spells(&firing, &pending)
            .into_iter()
            .map(|f| (f.step, f.spells.len()))
            .collect();
        assert_eq!(found, [(10_000, 1), (10_000, 2)]);
        let alone: Vec<i64> = alert_spells(&firing, &BTreeMap::new())
            .into_iter()
            .map(|f| f.step)
            .collect();
        assert_eq!(alone, [30_000, 30_000]);
    }

    #[test]
    fn exact_selectors_escape_label_values() {
        let labels = Labels::from([
            ("__name__".to_string(), "ALERTS".to_string()),
            ("alertstate".to_string(), "firing".to_string()),
            ("path".to_string(), "C:\\a \"b\"".to_string()),
        ]);
        assert_eq!(
            exact_selector(&labels),
            "ALERTS{alertstate=\"firing\",path=\"C:\\\\a \\\"b\\\"\"}"
        );
    }

    #[test]
    fn families_are_the_longest_probe_type() {
        assert_eq!(family_of("runner_disk_io_read_bytes_per_second"), "disk_io");
        assert_eq!(family_of("runner_disk_used_percent"), "disk");
    }
}
