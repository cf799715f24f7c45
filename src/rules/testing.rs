//! `runner test`: rule tests in `<rule>.test.yaml` files. A test names its rule files, a tick
//! interval and an absolute start time, may seed past weeks of hourly history (for
//! `baseline()`), gives input series per metric in promtool's notation, and asserts, at times on
//! a virtual clock, which alerts are pending, firing, resolved or flapping, which events were
//! sent, and what their text says. Nothing is sent and nothing outside a temporary folder is
//! written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::RuleSet;
use super::values::{FamilySchema, Schema};
use crate::alerts::AlertStore;
use crate::alerts::event::{AlertEvent, EventKind};
use crate::alerts::lifecycle::{Lifecycle, Phase};
use crate::config::FlapPolicy;
use crate::config::{Config, JobKind, resolve_path};
use crate::diagnostic::Problem;
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::{HourRollup, Rollup, RollupStore};
use crate::vocab::MetricName;
use crate::vocab::duration::parse_duration;

/// A rule test file as written: the rules under test, their scope, and scenarios.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rule files to load, relative to the test file.
    pub rules: Vec<Spanned<String>>,
    /// A jobs file whose monitor job gives the rules their metric scope (optional: without it
    /// the scope is the metrics the scenarios feed).
    #[serde(default)]
    pub jobs: Option<Spanned<String>>,
    /// The monitor job in `jobs` (default: its only monitor job).
    #[serde(default)]
    pub job: Option<Spanned<String>>,
    pub scenarios: Vec<Scenario>,
}

/// One run of the rules on a virtual clock.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, for the report.
    pub name: String,
    /// Time between ticks (`10s`).
    pub interval: Spanned<String>,
    /// The first tick, RFC 3339 UTC; the hour of the week matters to `baseline()`.
    pub start: Spanned<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// Past weeks of hourly values per metric, for `baseline()`.
    #[serde(default)]
    pub seed: IndexMap<String, Seed>,
    /// Metric → series, one value per tick: `50x6 95x20`, `0+10x5`, `_` for missing.
    pub input: IndexMap<String, Spanned<String>>,
    /// Assertions, in time order.
    pub tests: Vec<Spanned<Expectation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// How many weeks before `start`.
    pub weeks: u32,
    /// Hourly values, from the hour-of-week of `start` minus `weeks`; repeated as needed.
    pub series: String,
}

/// What must hold at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// An offset from `start` (`15m`) or an RFC 3339 time.
    pub at: String,
    /// Exactly these alerts are pending (`name` or `name{label=value}`).
    #[serde(default)]
    pub pending: Option<Vec<String>>,
    /// Exactly these alerts are firing.
    #[serde(default)]
    pub firing: Option<Vec<String>>,
    /// Exactly these alerts were resolved since the previous assertion.
    #[serde(default)]
    pub resolved: Option<Vec<String>>,
    /// Exactly these alerts are flapping.
    #[serde(default)]
    pub flapping: Option<Vec<String>>,
    /// Exactly these events were sent since the previous assertion, in order.
    #[serde(default)]
    pub events: Option<Vec<ExpectedEvent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedEvent {
    pub alert: String,
    pub kind: EventKind,
    #[serde(default)]
    pub severity: Option<crate::vocab::Severity>,
    #[serde(default)]
    pub summary_contains: Option<String>,
    #[serde(default)]
    pub explanation_contains: Option<String>,
    /// Notifier type → text its built-in message must contain (`slack`, `webhook`,
    /// `servicenow`, `alertmanager`, `log`).
    #[serde(default)]
    pub messages: IndexMap<String, String>,
}

/// One failed check, at the line of its assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub line: u64,
    pub message: String,
}

/// What one test file found.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failures: Vec<Failure>,
    /// The file could not be run at all (bad YAML, a rule that does not compile, ...).
    pub problems: Vec<Problem>,
}

/// Expands promtool's series notation: `a+bxn` is n+1 values from a in steps of b, `axn` is
/// a n+1 times, `_` a missing sample, `_xn` n missing samples.
pub fn expand_series(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        if token == "_" {
            out.push(None);
            continue;
        }
        let Some((start, times)) = token.split_once('x') else {
            out.push(Some(parse_number(token)?));
            continue;
        };
        let n: usize = times
            .parse()
            .map_err(|_| format!("`{token}`: the count after `x` must be a whole number"))?;
        if start == "_" {
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        // The step's sign separates it from the start, which may itself be negative.
        let split = start
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '+' || *c == '-')
            .map(|(i, _)| i);
        let (first, step) = match split {
            Some(i) => (parse_number(&start[..i])?, parse_number(&start[i..])?),
            None => (parse_number(start)?, 0.0),
        };
        out.extend((0..=n).map(|k| Some(first + step * k as f64)));
    }
    Ok(out)
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.trim_start_matches('+').parse().map_err(|_| {
        format!("`{text}` is not a number (series look like `50x6 95x20`, `0+10x5`, `_`)")
    })
}

/// `disk_full{mount=/var}` → (`disk_full`, {mount: /var}).
fn parse_alert_ref(text: &str) -> (String, BTreeMap<String, String>) {
    let text = text.trim();
    match text.split_once('{') {
        Some((name, rest)) => {
            let labels = rest
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                .collect();
            (name.to_string(), labels)
        }
        None => (text.to_string(), BTreeMap::new()),
    }
}

fn matches_ref(reference: &str, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let (want_name, want_labels) = parse_alert_ref(reference);
    want_name == name && want_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Compares a list of references with what is there; `None` when they match exactly.
fn compare_set(
    what: &str,
    expected: &[String],
    got: &[(String, BTreeMap<String, String>)],
) -> Option<String> {
    let mut unmatched: Vec<&(String, BTreeMap<String, String>)> = got.iter().collect();
    let mut missing = Vec::new();
    for reference in expected {
        match unmatched
            .iter()
            .position(|(n, l)| matches_ref(reference, n, l))
        {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(reference.clone()),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return None;
    }
    let show = |items: &[(String, BTreeMap<String, String>)]| {
        items
            .iter()
            .map(|(n, l)| {
                if l.is_empty() {
                    n.clone()
                } else {
                    format!(
                        "{n}{{{}}}",
                        l.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "{what}: expected [{}], got [{}]",
        expected.join(", "),
        show(got)
    ))
}

/// The schema a test's rules are checked against when it names no jobs file: the metrics it
/// feeds, with their instances.
fn schema_from_input(names: impl Iterator<Item = String>) -> Schema {
    let mut schema = Schema::default();
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        let family = schema
            .families
            .entry(parts[0].to_string())
            .or_insert_with(|| FamilySchema {
                flat: parts.len() == 2,
                instances: Some(BTreeSet::new()),
                fields: Some(BTreeSet::new()),
            });
        if let (Some(instances), Some(fields)) = (&mut family.instances, &mut family.fields) {
            if parts.len() >= 3 {
                instances.insert(parts[1].to_string());
            }
            if let Some(field) = parts.last() {
                fields.insert(field.to_string());
            }
        }
    }
    schema
}

fn at_position(file: &Path, spanned_line: u64, spanned_col: u64, message: String) -> Problem {
    Problem::error(file, message).at(spanned_line, spanned_col, 1)
}

/// Runs one test file. `Report::problems` say why a file could not run; failures are checks
/// that did not hold.
pub fn run_file(path: &Path) -> Report {
    let mut report = Report::default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            report.problems.push(Problem::error(
                path,
                format!("cannot read the test file: {e}"),
            ));
            return report;
        }
    };
    let file: TestFile = match serde_saphyr::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            let mut problem = Problem::error(
                path,
                format!("not a rule test file: {}", e.without_snippet()),
            );
            if let Some(loc) = e.location() {
                problem = problem.at(loc.line(), loc.column(), 1);
            }
            report.problems.push(problem);
            return report;
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let (rules, problems) = load_rules(path, base, &file);
    if !problems.is_empty() {
        report.problems.extend(problems);
        return report;
    }
    for scenario in &file.scenarios {
        match prepare(path, scenario) {
            Ok(prepared) => simulate(prepared, &rules, scenario, &mut report),
            Err(problems) => report.problems.extend(problems),
        }
    }
    report
}

/// The rules under test, checked against the job's scope (or the metrics the scenarios feed).
fn load_rules(path: &Path, base: &Path, file: &TestFile) -> (RuleSet, Vec<Problem>) {
    let mut problems = Vec::new();
    let schema = match &file.jobs {
        Some(jobs) => match job_schema(
            &resolve_path(base, &jobs.value),
            file.job.as_ref().map(|j| j.value.as_str()),
        ) {
            Ok(schema) => schema,
            Err(message) => {
                problems.push(at_position(
                    path,
                    jobs.referenced.line(),
                    jobs.referenced.column(),
                    message,
                ));
                Schema::default()
            }
        },
        None => schema_from_input(
            file.scenarios
                .iter()
                .flat_map(|s| s.input.keys().chain(s.seed.keys()))
                .cloned(),
        ),
    };
    if file.jobs.is_some() {
        for scenario in &file.scenarios {
            for (metric, series) in &scenario.input {
                if let Err(message) = schema.check_name(metric) {
                    problems.push(at_position(
                        path,
                        series.referenced.line(),
                        series.referenced.column(),
                        format!("input `{metric}`: {message}"),
                    ));
                }
            }
        }
    }
    let patterns: Vec<PathBuf> = file
        .rules
        .iter()
        .map(|r| resolve_path(base, &r.value))
        .collect();
    for (pattern, spanned) in patterns.iter().zip(&file.rules) {
        if !crate::glob::has_wildcards(&pattern.to_string_lossy()) && !pattern.exists() {
            problems.push(at_position(
                path,
                spanned.referenced.line(),
                spanned.referenced.column(),
                format!("no rule file {}", pattern.display()),
            ));
        }
    }
    let (rules, rule_problems) =
        RuleSet::load(&patterns, schema, crate::config::DEFAULT_RULE_TIMEOUT);
    problems.extend(rule_problems);
    (rules, problems)
}

struct Prepared {
    interval: Duration,
    start: DateTime<Utc>,
    inputs: Vec<(MetricName, Vec<Option<f64>>)>,
    seeds: Vec<(String, u32, Vec<f64>)>,
}

fn prepare(path: &Path, scenario: &Scenario) -> Result<Prepared, Vec<Problem>> {
    let mut problems = Vec::new();
    let interval = match parse_duration(&scenario.interval.value) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            problems.push(at_position(
                path,
                scenario.interval.referenced.line(),
                scenario.interval.referenced.column(),
                "`interval` must be above zero".into(),
            ));
            None
        }
        Err(e) => {
            problems.push(at_position(
                path,
                scenario.interval.referenced.line(),
                scenario.interval.referenced.column(),
                e.to_string(),
            ));
            None
        }
    };
    let start = match DateTime::parse_from_rfc3339(&scenario.start.value) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            problems.push(at_position(
                path,
                scenario.start.referenced.line(),
                scenario.start.referenced.column(),
                format!("`start` is not an RFC 3339 time ({e}), e.g. `2026-11-23T09:00:00Z`"),
            ));
            None
        }
    };
    let mut inputs = Vec::new();
    for (metric, series) in &scenario.input {
        match expand_series(&series.value) {
            Ok(values) => inputs.push((MetricName::from(metric.as_str()), values)),
            Err(e) => problems.push(at_position(
                path,
                series.referenced.line(),
                series.referenced.column(),
                format!("input `{metric}`: {e}"),
            )),
        }
    }
    let mut seeds = Vec::new();
    for (metric, seed) in &scenario.seed {
        match expand_series(&seed.series) {
            Ok(values) if values.iter().all(Option::is_some) && !values.is_empty() => seeds.push((
                metric.clone(),
                seed.weeks,
                values.into_iter().flatten().collect(),
            )),
            Ok(_) => problems.push(Problem::error(
                path,
                format!("seed `{metric}`: a seed series needs values, not `_`"),
            )),
            Err(e) => problems.push(Problem::error(path, format!("seed `{metric}`: {e}"))),
        }
    }
    match (interval, start, problems.is_empty()) {
        (Some(interval), Some(start), true) => Ok(Prepared {
            interval,
            start,
            inputs,
            seeds,
        }),
        _ => Err(problems),
    }
}

/// The metric scope of a monitor job in a jobs file.
fn job_schema(jobs_file: &Path, job: Option<&str>) -> Result<Schema, String> {
    let config = Config::load(jobs_file).map_err(|p| {
        format!(
            "the jobs file {} has problems:\n{}",
            jobs_file.display(),
            p.render()
        )
    })?;
    let monitors: Vec<(&String, &crate::config::MonitorSpec)> = config
        .jobs
        .iter()
        .filter_map(|(name, spec)| match &spec.kind {
            JobKind::Monitor(m) => Some((name, m)),
            _ => None,
        })
        .collect();
    let chosen = match job {
        Some(job) => monitors.iter().find(|(n, _)| n.as_str() == job),
        None if monitors.len() == 1 => monitors.first(),
        None => None,
    };
    match chosen {
        Some((_, m)) => Ok(Schema::for_probes(&m.probes)),
        None => Err(format!(
            "name the monitor job with `job:` (monitor jobs in {}: {})",
            jobs_file.display(),
            monitors
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Writes seeded hourly rollups: `weeks` weeks before `start`, one rollup per hour.
fn write_seeds(
    store: &mut RollupStore,
    start: DateTime<Utc>,
    interval: Duration,
    seeds: &[(String, u32, Vec<f64>)],
) {
    let hour = |t: DateTime<Utc>| {
        DateTime::from_timestamp(t.timestamp().div_euclid(3600) * 3600, 0).unwrap_or(t)
    };
    let weeks = seeds.iter().map(|(_, w, _)| *w).max().unwrap_or(0);
    let first = hour(start) - chrono::Duration::weeks(i64::from(weeks));
    let per_hour = (3600 / interval.as_secs().max(1)).max(1);
    let mut t = first;
    let mut index = 0usize;
    while t < hour(start) {
        let mut metrics = BTreeMap::new();
        for (metric, seed_weeks, values) in seeds {
            if t < hour(start) - chrono::Duration::weeks(i64::from(*seed_weeks)) {
                continue;
            }
            let v = values[index % values.len()];
            let mut rollup = Rollup::default();
            for _ in 0..per_hour {
                rollup.add(v);
            }
            metrics.insert(metric.clone(), rollup);
        }
        if !metrics.is_empty() {
            let _ = store.append(&HourRollup { hour: t, metrics });
        }
        t += chrono::Duration::hours(1);
        index += 1;
    }
}

fn simulate(prepared: Prepared, rules: &RuleSet, scenario: &Scenario, report: &mut Report) {
    let Prepared {
        interval,
        start,
        inputs,
        seeds,
    } = prepared;
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            report.failures.push(Failure {
                line: 0,
                message: format!("cannot make a scratch folder: {e}"),
            });
            return;
        }
    };
    let mut seed_store = RollupStore::new(scratch.path(), "test");
    write_seeds(&mut seed_store, start, interval, &seeds);
    let mut history = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(scratch.path(), "test")),
    );
    let host = scenario
        .host
        .clone()
        .unwrap_or_else(|| "test-host".to_string());
    let mut alerts =
        AlertStore::in_memory(&host, "test", FlapPolicy::default(), Lifecycle::default());
    let ticks = inputs.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let step = chrono::Duration::from_std(interval).unwrap_or_default();

    let mut checks: Vec<(DateTime<Utc>, &Spanned<Expectation>)> = Vec::new();
    for expectation in &scenario.tests {
        let at = &expectation.value.at;
        let when = parse_duration(at)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| start + d)
            .or_else(|| {
                DateTime::parse_from_rfc3339(at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            });
        match when {
            Some(when) => checks.push((when, expectation)),
            None => report.failures.push(Failure {
                line: expectation.referenced.line(),
                message: format!("`at: {at}` is neither an offset like `15m` nor an RFC 3339 time"),
            }),
        }
    }
    checks.sort_by_key(|(t, _)| *t);

    let mut sent: Vec<AlertEvent> = Vec::new();
    let mut next_check = 0;
    let mut tick = 0usize;
    loop {
        let now = start + step * tick as i32;
        // Assertions due before this tick see the state after the previous one.
        while next_check < checks.len() && checks[next_check].0 < now {
            let (when, expectation) = checks[next_check];
            verify(
                &scenario.name,
                when,
                expectation,
                alerts.lifecycle(),
                &mut sent,
                report,
            );
            next_check += 1;
        }
        if tick >= ticks && next_check >= checks.len() {
            break;
        }
        if tick >= ticks {
            // Past the input: time goes on without data, until the last assertion.
            if checks.get(next_check).is_some_and(|(t, _)| *t >= now) {
                let metrics: Vec<(MetricName, f64)> = Vec::new();
                run_tick(rules, &mut history, &mut alerts, now, &metrics, &mut sent);
                tick += 1;
                continue;
            }
            break;
        }
        let metrics: Vec<(MetricName, f64)> = inputs
            .iter()
            .filter_map(|(name, values)| {
                values
                    .get(tick)
                    .copied()
                    .flatten()
                    .map(|v| (name.clone(), v))
            })
            .collect();
        run_tick(rules, &mut history, &mut alerts, now, &metrics, &mut sent);
        tick += 1;
    }
}

fn run_tick(
    rules: &RuleSet,
    history: &mut History,
    alerts: &mut AlertStore,
    now: DateTime<Utc>,
    metrics: &[(MetricName, f64)],
    sent: &mut Vec<AlertEvent>,
) {
    history.push(now, metrics.iter().map(|(n, v)| (n, *v)));
    let (back, evaluation) = rules.evaluate(
        std::mem::take(history),
        now,
        metrics.iter().map(|(n, v)| (n.as_ref(), *v)),
    );
    *history = back;
    sent.extend(alerts.step(now, &evaluation, |m| {
        metrics.iter().any(|(n, _)| n.as_ref() == m)
    }));
}

fn verify(
    scenario: &str,
    when: DateTime<Utc>,
    spanned: &Spanned<Expectation>,
    lifecycle: &Lifecycle,
    sent: &mut Vec<AlertEvent>,
    report: &mut Report,
) {
    let e = &spanned.value;
    let line = spanned.referenced.line();
    let label = format!(
        "{scenario}: at {} ({})",
        e.at,
        when.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let in_phase = |phase: Phase| -> Vec<(String, BTreeMap<String, String>)> {
        lifecycle
            .states
            .values()
            .filter(|s| s.phase == phase)
            .map(|s| (s.name.clone(), s.labels.clone()))
            .collect()
    };
    let mut failures = Vec::new();
    if let Some(expected) = &e.pending {
        failures.extend(compare_set("pending", expected, &in_phase(Phase::Pending)));
    }
    if let Some(expected) = &e.firing {
        failures.extend(compare_set("firing", expected, &in_phase(Phase::Firing)));
    }
    if let Some(expected) = &e.flapping {
        let flapping: Vec<(String, BTreeMap<String, String>)> = lifecycle
            .states
            .values()
            .filter(|s| s.flapping)
            .map(|s| (s.name.clone(), s.labels.clone()))
            .collect();
        failures.extend(compare_set("flapping", expected, &flapping));
    }
    if let Some(expected) = &e.resolved {
        let resolved: Vec<(String, BTreeMap<String, String>)> = sent
            .iter()
            .filter(|ev| ev.kind == EventKind::Resolved)
            .map(|ev| (ev.name.clone(), ev.labels.clone()))
            .collect();
        failures.extend(compare_set("resolved", expected, &resolved));
    }
    if let Some(expected) = &e.events {
        let got: Vec<String> = sent
            .iter()
            .map(|ev| format!("{} {}", ev.name, ev.kind))
            .collect();
        let want: Vec<String> = expected
            .iter()
            .map(|ev| format!("{} {}", ev.alert, ev.kind))
            .collect();
        if got != want {
            failures.push(format!(
                "events: expected [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        } else {
            for (ev, want) in sent.iter().zip(expected) {
                if let Some(severity) = want.severity
                    && ev.severity != severity
                {
                    failures.push(format!(
                        "{} {}: severity: expected {}, got {}",
                        ev.name,
                        ev.kind,
                        severity.as_str(),
                        ev.severity.as_str()
                    ));
                }
                if let Some(text) = &want.summary_contains
                    && !ev.summary.contains(text.as_str())
                {
                    failures.push(format!(
                        "{} {}: summary: expected it to contain `{text}`, got `{}`",
                        ev.name, ev.kind, ev.summary
                    ));
                }
                if let Some(text) = &want.explanation_contains
                    && !ev.explanation.contains(text.as_str())
                {
                    failures.push(format!(
                        "{} {}: explanation: expected it to contain `{text}`, got `{}`",
                        ev.name, ev.kind, ev.explanation
                    ));
                }
                for (kind, text) in &want.messages {
                    match crate::notify::message_text(kind, ev) {
                        Some(message) if message.contains(text.as_str()) => {}
                        Some(message) => failures.push(format!(
                            "{} {}: {kind} message: expected it to contain `{text}`, got:\n{}",
                            ev.name,
                            ev.kind,
                            message
                                .lines()
                                .map(|l| format!("      {l}"))
                                .collect::<Vec<_>>()
                                .join("\n")
                        )),
                        None => failures.push(format!(
                            "{} {}: unknown notifier type `{kind}` in `messages` (types: {})",
                            ev.name,
                            ev.kind,
                            crate::notify::MESSAGE_TYPES.join(", ")
                        )),
                    }
                }
            }
        }
    }
    sent.clear();
    if failures.is_empty() {
        report.passed += 1;
    } else {
        for message in failures {
            report.failures.push(Failure {
                line,
                message: format!("{label}: {message}"),
            });
        }
    }
}

/// Every `*.test.yaml` under the given files and folders, sorted.
pub fn find_test_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.to_string_lossy().ends_with(".test.yaml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out);
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_promtool_series() {
        let v = |s: &str| expand_series(s).unwrap();
        assert_eq!(v("0+10x5"), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0].map(Some));
        assert_eq!(v("-2+4x3"), [-2.0, 2.0, 6.0, 10.0].map(Some));
        assert_eq!(v("1-2x4"), [1.0, -1.0, -3.0, -5.0, -7.0].map(Some));
        assert_eq!(v("1x4"), [1.0; 5].map(Some));
        assert_eq!(v("1 _x3 2"), [Some(1.0), None, None, None, Some(2.0)]);
        assert_eq!(v("50x1 95x2").len(), 5);
        assert!(expand_series("5xz").is_err());
        assert!(expand_series("abc").is_err());
    }

    #[test]
    fn alert_references_with_labels() {
        let labels: BTreeMap<String, String> = [("mount".to_string(), "/var".to_string())].into();
        assert!(matches_ref("disk_full", "disk_full", &labels));
        assert!(matches_ref("disk_full{mount=/var}", "disk_full", &labels));
        assert!(!matches_ref("disk_full{mount=/}", "disk_full", &labels));
        assert_eq!(
            compare_set("firing", &["a".into()], &[("a".into(), BTreeMap::new())]),
            None
        );
        assert_eq!(
            compare_set("firing", &["a".into()], &[]),
            Some("firing: expected [a], got []".into())
        );
    }
}
