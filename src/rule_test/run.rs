//! Running a rule test file: load the rules as the named monitor job would (its metric scope,
//! flap policy, rule timeout and notifiers), seed hourly history, step the monitor pipeline
//! over the input series on a virtual clock, and check each assertion.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_saphyr::Spanned;

use super::file::{Expectation, Scenario, TestFile};
use super::notation::{SeriesError, compare_set, expand_series};
use super::{Failure, Report};
use crate::alerts::AlertStore;
use crate::alerts::event::{AlertEvent, EventKind};
use crate::alerts::lifecycle::{Lifecycle, Phase};
use crate::config::{Config, DEFAULT_RULE_TIMEOUT, FlapPolicy, JobKind, resolve_path};
use crate::diagnostic::Problem;
use crate::monitor::pipeline::Pipeline;
use crate::notify::Notifiers;
use crate::rules::RuleSet;
use crate::rules::values::{FamilySchema, Schema};
use crate::scheduler::clock::SystemClock;
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::{HourRollup, Rollup, RollupStore};
use crate::vocab::MetricName;
use crate::vocab::duration::parse_duration;

/// The most ticks one scenario runs: a million ticks is a week at 1 s or 115 days at 10 s. More
/// is a typo (`at: 9999-12-31T00:00:00Z`, a tiny interval) that would run for hours.
const MAX_TICKS: i64 = 1_000_000;

/// Weeks of seeded history: what the hourly rollups keep.
const MAX_SEED_WEEKS: u32 = 5;

/// The most values a seed series may have: one an hour for `MAX_SEED_WEEKS`. A seed is cycled
/// over its weeks, so values past the hours it covers would never be read.
const MAX_SEED_VALUES: usize = MAX_SEED_WEEKS as usize * 168;

/// The most values one scenario holds: its input series expanded plus its seeds' hours. One
/// series is bounded by `MAX_TICKS`; this bounds many of them (four metrics for a million ticks,
/// or forty for a day at 1 s), so that a test run's memory is bounded whatever the file holds.
const MAX_SCENARIO_VALUES: u64 = 4_000_000;

/// The largest rule test file read: a million ticks written out value by value (`12.5 `) fit,
/// and the notation is the way to write more. Read before parsing, so that a huge or endless
/// file (a device, a pipe) is refused rather than read into memory.
const MAX_TEST_FILE_BYTES: u64 = 8 << 20;

/// How the rules under test run: as a monitor job of a jobs file, or with the defaults.
struct Setup {
    schema: Schema,
    flap: FlapPolicy,
    rule_timeout: Duration,
    /// The job's `notify` list, for which notifiers receive which events.
    notify: Vec<String>,
    /// The jobs file's notifiers, as configured; `None` without a jobs file.
    notifiers: Option<Notifiers>,
    /// One notifier per type with its defaults, for `messages:` keyed by type.
    builtin: Notifiers,
    /// The jobs file's `actions:`; `None` without a jobs file, when a firing event is taken to
    /// run whatever action its rule names.
    actions: Option<crate::alerts::action::Actions>,
}

/// Runs one test file. `Report::problems` say why a file could not run; failures are checks
/// that did not hold.
pub fn run_file(path: &Path) -> Report {
    let mut report = Report::default();
    if let Some(problem) = too_large(path) {
        report.problems.push(problem);
        return report;
    }
    let text = match crate::diagnostic::read_text(path, "test file") {
        Ok(text) => text,
        Err(problem) => {
            report.problems.push(*problem);
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
    let (setup, mut problems) = setup(path, base, &file);
    let rules = match load_rules(path, base, &file, &setup) {
        Ok(rules) => rules,
        Err(found) => {
            problems.extend(found);
            report.problems.extend(problems);
            return report;
        }
    };
    if !problems.is_empty() {
        report.problems.extend(problems);
        return report;
    }
    let rules = Arc::new(rules);
    for scenario in &file.scenarios {
        match prepare(path, scenario) {
            Ok(prepared) => simulate(prepared, rules.clone(), &setup, scenario, &mut report),
            Err(problems) => report.problems.extend(problems),
        }
    }
    report
}

/// Why a test file is not read: larger than `MAX_TEST_FILE_BYTES`, or not a regular file (a
/// device or a pipe, whose length says nothing and which may never end). `None` when it may be
/// read, or when it cannot be (`read_text` says why).
fn too_large(path: &Path) -> Option<Problem> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return Some(Problem::error(
            path,
            "the test file is not a regular file (a device or a pipe): give a file",
        ));
    }
    (meta.len() > MAX_TEST_FILE_BYTES).then(|| {
        Problem::error(
            path,
            format!(
                "the test file is {} bytes, and a test file may be at most {}: write long series in promtool's notation (`50x6 95x20`, `0+10x5`), or split the scenarios over files",
                meta.len(),
                crate::vocab::size::format_size(MAX_TEST_FILE_BYTES)
            ),
        )
    })
}

fn at_position(file: &Path, spanned_line: u64, spanned_col: u64, message: String) -> Problem {
    Problem::error(file, message).at(spanned_line, spanned_col, 1)
}

/// The job the rules run as, or the defaults when the test names no jobs file.
fn setup(path: &Path, base: &Path, file: &TestFile) -> (Setup, Vec<Problem>) {
    let builtin = Notifiers::builtin(Arc::new(SystemClock));
    let mut setup = Setup {
        schema: Schema::default(),
        flap: FlapPolicy::default(),
        rule_timeout: DEFAULT_RULE_TIMEOUT,
        notify: Vec::new(),
        notifiers: None,
        builtin,
        actions: None,
    };
    let mut problems = Vec::new();
    let Some(jobs) = &file.jobs else {
        setup.schema = schema_from_input(
            file.scenarios
                .iter()
                .flat_map(|s| s.input.keys().chain(s.seed.keys()))
                .cloned(),
        );
        return (setup, problems);
    };
    let jobs_file = resolve_path(base, &jobs.value);
    match load_job(&jobs_file, file.job.as_ref().map(|j| j.value.as_str())) {
        Ok((config, job)) => {
            if let Some(JobKind::Monitor(spec)) = config.job(&job).map(|j| &j.kind) {
                setup.schema = Schema::for_probes(&spec.probes);
                setup.flap = spec.flap;
                setup.rule_timeout = spec.rule_timeout;
                setup.notify = spec.notify.clone();
            }
            setup.notifiers = Some(Notifiers::renderers(&config, Arc::new(SystemClock)));
            setup.actions = Some(crate::alerts::action::Actions::new(config.actions.clone()));
        }
        Err(message) => problems.push(at_position(
            path,
            jobs.referenced.line(),
            jobs.referenced.column(),
            message,
        )),
    }
    for scenario in &file.scenarios {
        for (metric, series) in &scenario.input {
            if let Err(message) = setup.schema.check_name(metric) {
                problems.push(at_position(
                    path,
                    series.referenced.line(),
                    series.referenced.column(),
                    format!("input `{metric}`: {message}"),
                ));
            }
        }
    }
    (setup, problems)
}

/// The jobs file and the name of the monitor job the test runs as.
fn load_job(jobs_file: &Path, job: Option<&str>) -> Result<(Config, String), String> {
    let config = Config::load(jobs_file).map_err(|p| {
        format!(
            "the jobs file {} has problems:\n{}",
            jobs_file.display(),
            p.render()
        )
    })?;
    let monitors: Vec<&String> = config
        .jobs
        .iter()
        .filter(|(_, spec)| matches!(spec.kind, JobKind::Monitor(_)))
        .map(|(name, _)| name)
        .collect();
    let chosen = match job {
        Some(job) => monitors.iter().find(|n| n.as_str() == job),
        None if monitors.len() == 1 => monitors.first(),
        None => None,
    };
    match chosen {
        Some(name) => {
            let name = name.to_string();
            Ok((config, name))
        }
        None => Err(format!(
            "name the monitor job with `job:` (monitor jobs in {}: {})",
            jobs_file.display(),
            monitors
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
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
                nested_fields: BTreeSet::new(),
            });
        if parts.len() == 4 {
            family.nested_fields.insert(parts[3].to_string());
        }
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

/// The rules under test, checked against the job's scope (or the metrics the scenarios feed).
fn load_rules(
    path: &Path,
    base: &Path,
    file: &TestFile,
    setup: &Setup,
) -> Result<RuleSet, Vec<Problem>> {
    let mut problems = Vec::new();
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
    let (rules, rule_problems) = RuleSet::load(&patterns, setup.schema.clone(), setup.rule_timeout);
    problems.extend(rule_problems);
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// A series' length as said in a problem; `None` is one beyond counting.
fn values_in(length: Option<u64>) -> String {
    match length {
        Some(1) => "1 value".into(),
        Some(n) => format!("{n} values"),
        None => format!("more than {} values", u64::MAX),
    }
}

fn too_many(total: u64) -> String {
    format!(
        "with this series the scenario holds {total} values (its inputs, and an hour each of its seeds' weeks), and a scenario may hold at most {MAX_SCENARIO_VALUES}: split its metrics over scenarios, or shorten the series"
    )
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
    // What the scenario holds so far, in values: each series is measured before it is
    // expanded, against what is left of `MAX_SCENARIO_VALUES` as well as its own bound.
    let mut total = 0u64;
    let left = |total: u64| {
        usize::try_from(MAX_SCENARIO_VALUES.saturating_sub(total)).unwrap_or(usize::MAX)
    };
    let mut inputs = Vec::new();
    for (metric, series) in &scenario.input {
        let at = |message: String| {
            at_position(
                path,
                series.referenced.line(),
                series.referenced.column(),
                format!("input `{metric}`: {message}"),
            )
        };
        let max_ticks = usize::try_from(MAX_TICKS).unwrap_or(usize::MAX);
        match expand_series(&series.value, max_ticks.min(left(total))) {
            Ok(values) => {
                total += values.len() as u64;
                inputs.push((MetricName::from(metric.as_str()), values));
            }
            Err(SeriesError::Notation(e)) => problems.push(at(e)),
            Err(SeriesError::TooLong(length)) if length.is_none_or(|n| n > MAX_TICKS as u64) => {
                problems.push(at(format!(
                    "this series is {}, and a scenario runs at most {MAX_TICKS} ticks, one value each: shorten it (`axn` is n+1 values, `_xn` n), or use a longer interval",
                    values_in(length)
                )));
            }
            Err(SeriesError::TooLong(length)) => {
                problems.push(at(too_many(
                    total.saturating_add(length.unwrap_or(u64::MAX)),
                )));
                // Past the total, every further series would say the same.
                return Err(problems);
            }
        }
    }
    let mut seeds = Vec::new();
    for (metric, seed) in &scenario.seed {
        let weeks = seed.weeks.value;
        if weeks > MAX_SEED_WEEKS {
            problems.push(at_position(
                path,
                seed.weeks.referenced.line(),
                seed.weeks.referenced.column(),
                format!(
                    "seed `{metric}`: `weeks` may be at most {MAX_SEED_WEEKS}: history keeps five weeks of hours, and baseline() reads no further"
                ),
            ));
            continue;
        }
        let at = |message: String| {
            at_position(
                path,
                seed.series.referenced.line(),
                seed.series.referenced.column(),
                format!("seed `{metric}`: {message}"),
            )
        };
        // A seed is written as one rollup an hour over its weeks, however short its series:
        // it counts as those hours, or as its values when there are more.
        let hours = u64::from(weeks) * 168;
        if total + hours > MAX_SCENARIO_VALUES {
            problems.push(at(too_many(total + hours)));
            return Err(problems);
        }
        match expand_series(&seed.series.value, MAX_SEED_VALUES.min(left(total))) {
            Ok(values) if values.iter().all(Option::is_some) && !values.is_empty() => {
                total += hours.max(values.len() as u64);
                seeds.push((
                    metric.clone(),
                    weeks,
                    values.into_iter().flatten().collect(),
                ));
            }
            Ok(_) => problems.push(at("a seed series needs values, not `_`".into())),
            Err(SeriesError::Notation(e)) => problems.push(at(e)),
            Err(SeriesError::TooLong(length))
                if length.is_none_or(|n| n > MAX_SEED_VALUES as u64) =>
            {
                problems.push(at(format!(
                    "this series is {}, and a seed may have at most {MAX_SEED_VALUES}: one value an hour for the {MAX_SEED_WEEKS} weeks history keeps, cycled over `weeks`, so values past those hours are never read: shorten it to one week (168 values) or to at most {MAX_SEED_VALUES}",
                    values_in(length)
                )));
            }
            Err(SeriesError::TooLong(length)) => {
                problems.push(at(too_many(
                    total.saturating_add(length.unwrap_or(u64::MAX)),
                )));
                return Err(problems);
            }
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

fn simulate(
    prepared: Prepared,
    rules: Arc<RuleSet>,
    setup: &Setup,
    scenario: &Scenario,
    report: &mut Report,
) {
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
    let history = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(scratch.path(), "test")),
    );
    let host = scenario
        .host
        .clone()
        .unwrap_or_else(|| "test-host".to_string());
    let alerts = AlertStore::in_memory(&host, "test", setup.flap, Lifecycle::default());
    let mut pipeline = Pipeline::new(history, rules, alerts);
    let ticks = inputs.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let step = chrono::Duration::from_std(interval).unwrap_or_default();
    let at_tick = |tick: i64| {
        step.checked_mul(i32::try_from(tick).ok()?)
            .and_then(|offset| start.checked_add_signed(offset))
    };

    let mut checks: Vec<(DateTime<Utc>, &Spanned<Expectation>)> = Vec::new();
    for expectation in &scenario.tests {
        let at = &expectation.value.at;
        let when = parse_duration(at)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .and_then(|d| start.checked_add_signed(d))
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
    // The scenario runs until its input ends and its last check is due: not beyond a bound.
    let last_check_tick = checks.last().map_or(0, |(when, _)| {
        let span = (*when - start).num_milliseconds();
        span.checked_div(step.num_milliseconds())
            .unwrap_or(i64::MAX)
            .saturating_add(1)
    });
    let needed = last_check_tick.max(ticks as i64);
    if needed > MAX_TICKS {
        report.failures.push(Failure {
            line: checks
                .last()
                .map_or(scenario.interval.referenced.line(), |(_, e)| e.referenced.line()),
            message: format!(
                "{}: this scenario would run {needed} ticks of {} (to its last check); a scenario may run at most {MAX_TICKS}: use a longer interval or an earlier `at`",
                scenario.name, scenario.interval.value
            ),
        });
        return;
    }

    let mut sent = Sent::default();
    // Rule files that failed at run time, said once each: a rule that fails keeps its alerts
    // as they were, which would otherwise pass assertions about them by accident.
    let mut failed_rules: BTreeSet<Arc<str>> = BTreeSet::new();
    let mut next_check = 0;
    let notes: Vec<(MetricName, String)> = scenario
        .notes
        .iter()
        .map(|(name, text)| (MetricName::from(name.as_str()), text.clone()))
        .collect();
    let mut tick = 0usize;
    while let Some(now) = at_tick(tick as i64) {
        // Assertions due before this tick see the state after the previous one.
        while next_check < checks.len() && checks[next_check].0 < now {
            let (when, expectation) = checks[next_check];
            verify(
                setup,
                &scenario.name,
                when,
                expectation,
                pipeline.lock_alerts().lifecycle(),
                &mut sent,
                report,
            );
            next_check += 1;
        }
        if tick >= ticks && next_check >= checks.len() {
            break;
        }
        // Past the input, time goes on without data until the last assertion.
        if tick >= ticks && checks.get(next_check).is_none_or(|(t, _)| *t < now) {
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
        let stepped = pipeline.step_noted(now, &metrics, &notes, |events| {
            sent.events.extend_from_slice(events)
        });
        {
            let alerts = pipeline.lock_alerts();
            for event in &stepped.events {
                if let Some(action) =
                    action_of(setup, alerts.lifecycle(), &mut sent.ledger, event, now)
                {
                    sent.would_run.insert(event.id.clone(), action);
                }
            }
        }
        for outcome in stepped.evaluation.outcomes {
            if let Some(error) = outcome.error
                && failed_rules.insert(outcome.rule_file.clone())
            {
                report.failures.push(Failure {
                    line: scenario.interval.referenced.line(),
                    message: format!(
                        "{}: at {}: {} failed: {error}",
                        scenario.name,
                        now.format("%Y-%m-%d %H:%M:%S UTC"),
                        outcome.rule_file
                    ),
                });
            }
        }
        tick += 1;
    }
}

/// The events sent since the last check, and the action each would run, by event id: shown,
/// never run.
#[derive(Default)]
struct Sent {
    events: Vec<AlertEvent>,
    would_run: BTreeMap<String, String>,
    /// The runs counted so far, for the actions' cooldown and hourly cap as the scheduler
    /// keeps them (the scenario's clock is the scheduler's).
    ledger: Lifecycle,
}

fn verify(
    setup: &Setup,
    scenario: &str,
    when: DateTime<Utc>,
    spanned: &Spanned<Expectation>,
    lifecycle: &Lifecycle,
    sent: &mut Sent,
    report: &mut Report,
) {
    let Sent {
        events: sent,
        would_run,
        ..
    } = sent;
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
                if let Some(want) = &want.action {
                    let got = would_run.get(&ev.id).map_or("none", String::as_str);
                    if got != want {
                        failures.push(format!(
                            "{} {}: action: expected {want}, got {got}",
                            ev.name, ev.kind
                        ));
                    }
                }
                for (notifier, text) in &want.messages {
                    if let Err(failure) = check_message(setup, notifier, ev, text) {
                        failures.push(format!("{} {}: {failure}", ev.name, ev.kind));
                    }
                }
            }
        }
    }
    sent.clear();
    would_run.clear();
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

/// The action `event` would run: by the jobs file's `actions:` (muted events, repeats
/// without `on: repeat` and runs its cooldown or hourly cap holds back run none; a run is
/// counted in `ledger`), or without one, the action a firing event's rule names.
fn action_of(
    setup: &Setup,
    lifecycle: &Lifecycle,
    ledger: &mut Lifecycle,
    event: &AlertEvent,
    now: DateTime<Utc>,
) -> Option<String> {
    use crate::alerts::action::{held_back, note_run};
    match &setup.actions {
        Some(actions) => {
            let (name, spec) = actions.wanted(lifecycle, event)?;
            held_back(ledger, &event.fingerprint, name, spec, now).ok()?;
            note_run(ledger, &event.fingerprint, name, now);
            Some(name.to_string())
        }
        None if event.kind == EventKind::Firing && event.muted.is_none() => lifecycle
            .states
            .get(&event.fingerprint)
            .and_then(|state| state.options.action.clone()),
        None => None,
    }
}

/// Renders `event` through `notifier` (a notifier of the job's jobs file, as configured, or a
/// type's built-in message) and checks that it contains `text`.
fn check_message(
    setup: &Setup,
    notifier: &str,
    event: &AlertEvent,
    text: &str,
) -> Result<(), String> {
    let configured = setup
        .notifiers
        .as_ref()
        .filter(|n| n.names().contains(&notifier));
    let message = match configured {
        Some(notifiers) => {
            if !notifiers.targets(&setup.notify, event).contains(&notifier) {
                return Err(format!(
                    "`{notifier}` message: the job does not send this event to `{notifier}` (its `notify` list or the notifier's `min_severity` leaves it out)"
                ));
            }
            notifiers.message(notifier, event)
        }
        None if setup.builtin.names().contains(&notifier) => setup.builtin.message(notifier, event),
        None => {
            let mut known: Vec<&str> = setup
                .notifiers
                .as_ref()
                .map(Notifiers::names)
                .unwrap_or_default();
            known.extend(setup.builtin.names());
            known.sort_unstable();
            known.dedup();
            return Err(format!(
                "unknown notifier `{notifier}` in `messages` (notifiers and types: {})",
                known.join(", ")
            ));
        }
    };
    match message {
        Some(message) if message.contains(text) => Ok(()),
        Some(message) => Err(format!(
            "{notifier} message: expected it to contain `{text}`, got:\n{}",
            message
                .lines()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
        None => Err(format!(
            "`{notifier}` sends nothing for a {} event",
            event.kind
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "if m.v > 1 { alert(\"x\") }\n";

    /// A test file of one scenario whose `seed:` and `input:` lines are these (each a YAML
    /// line at the scenario's indent, or empty), in a folder with its rule.
    fn file(seed: &str, input: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.rhai"), RULE).unwrap();
        let path = dir.path().join("r.test.yaml");
        std::fs::write(
            &path,
            format!(
                "rules: [r.rhai]\nscenarios:\n  - name: s\n    interval: 1m\n    start: \"2026-11-23T09:00:00Z\"\n{seed}{input}    tests:\n      - {{ at: 1m, firing: [] }}\n"
            ),
        )
        .unwrap();
        (dir, path)
    }

    fn problems(seed: &str, input: &str) -> Vec<(u64, String)> {
        let (_dir, path) = file(seed, input);
        run_file(&path)
            .problems
            .into_iter()
            .map(|p| (p.line, p.message))
            .collect()
    }

    /// `prepare` on the file's only scenario: what a run would hold, without running it.
    fn prepared(seed: &str, input: &str) -> Result<Prepared, Vec<(u64, String)>> {
        let (_dir, path) = file(seed, input);
        let text = std::fs::read_to_string(&path).unwrap();
        let test: TestFile = serde_saphyr::from_str(&text).unwrap();
        prepare(&path, &test.scenarios[0])
            .map_err(|found| found.into_iter().map(|p| (p.line, p.message)).collect())
    }

    #[test]
    fn series_past_their_bounds_are_refused_where_they_are_before_they_are_expanded() {
        // The inputs: each aborted, or took a gigabyte or more, before it was refused.
        for (seed, input, message) in [
            (
                "",
                "    input: { m.v: \"_x2000000000\" }\n",
                "input `m.v`: this series is 2000000000 values, and a scenario runs at most 1000000 ticks, one value each: shorten it (`axn` is n+1 values, `_xn` n), or use a longer interval",
            ),
            (
                "",
                "    input: { m.v: \"30x60000000\" }\n",
                "input `m.v`: this series is 60000001 values, and a scenario runs at most 1000000 ticks",
            ),
            (
                "",
                "    input: { m.v: \"_x18446744073709551615\" }\n",
                "input `m.v`: this series is 18446744073709551615 values",
            ),
            (
                "",
                "    input: { m.v: \"1x18446744073709551615\" }\n",
                "input `m.v`: this series is more than 18446744073709551615 values",
            ),
            (
                "    seed: { m.v: { weeks: 1, series: \"10x4294967296\" } }\n",
                "    input: { m.v: \"5x3\" }\n",
                "seed `m.v`: this series is 4294967297 values, and a seed may have at most 840: one value an hour for the 5 weeks history keeps, cycled over `weeks`, so values past those hours are never read: shorten it to one week (168 values) or to at most 840",
            ),
            (
                "    seed: { m.v: { weeks: 5, series: \"10x60000000\" } }\n",
                "    input: { m.v: \"5x3\" }\n",
                "seed `m.v`: this series is 60000001 values, and a seed may have at most 840",
            ),
        ] {
            let found = problems(seed, input);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, 6, "{found:?}");
            assert!(found[0].1.starts_with(message), "{found:?}");
        }
    }

    #[test]
    fn series_at_their_bounds_are_kept() {
        let ready = prepared(
            "    seed: { m.v: { weeks: 5, series: \"10x839\" } }\n",
            "    input: { m.v: \"0+1x999999\" }\n",
        )
        .unwrap_or_else(|found| panic!("{found:?}"));
        assert_eq!(ready.inputs[0].1.len(), 1_000_000);
        assert_eq!(ready.inputs[0].1[999_999], Some(999_999.0));
        assert_eq!(ready.seeds[0].2.len(), 840);
        assert_eq!(
            problems(
                "    seed: { m.v: { weeks: 5, series: \"10x840\" } }\n",
                "    input: { m.v: \"5x3\" }\n"
            )[0]
            .1,
            "seed `m.v`: this series is 841 values, and a seed may have at most 840: one value an hour for the 5 weeks history keeps, cycled over `weeks`, so values past those hours are never read: shorten it to one week (168 values) or to at most 840"
        );
        assert!(
            problems("", "    input: { m.v: \"0+1x1000000\" }\n")[0]
                .1
                .starts_with("input `m.v`: this series is 1000001 values")
        );
    }

    #[test]
    fn a_scenario_holds_at_most_four_million_values() {
        let four = "    input:\n      a: \"1x999999\"\n      b: \"1x999999\"\n      c: \"1x999999\"\n      d: \"_x1000000\"\n";
        let ready = prepared("", four).unwrap_or_else(|found| panic!("{found:?}"));
        assert_eq!(ready.inputs.len(), 4);
        // One value more, in a fifth series or in a seed's hours, is refused where it is.
        let found = prepared("", &format!("{four}      e: \"1\"\n"))
            .err()
            .unwrap();
        assert_eq!(
            found,
            [(
                11,
                "input `e`: with this series the scenario holds 4000001 values (its inputs, and an hour each of its seeds' weeks), and a scenario may hold at most 4000000: split its metrics over scenarios, or shorten the series".to_string()
            )]
        );
        let found = prepared("    seed: { a: { weeks: 1, series: \"1\" } }\n", four)
            .err()
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 6);
        assert!(
            found[0]
                .1
                .starts_with("seed `a`: with this series the scenario holds 4000168 values"),
            "{found:?}"
        );
    }

    #[test]
    fn test_files_that_are_huge_or_not_files_are_not_read() {
        let (dir, path) = file("", "    input: { m.v: \"5x3\" }\n");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&"#".repeat(MAX_TEST_FILE_BYTES as usize - text.len()));
        std::fs::write(&path, &text).unwrap();
        assert!(run_file(&path).problems.is_empty());
        text.push('#');
        std::fs::write(&path, &text).unwrap();
        let found = run_file(&path).problems;
        assert_eq!(
            found[0].message,
            "the test file is 8388609 bytes, and a test file may be at most 8.00 MiB: write long series in promtool's notation (`50x6 95x20`, `0+10x5`), or split the scenarios over files"
        );
        let found = run_file(Path::new("/dev/zero")).problems;
        assert_eq!(
            found[0].message,
            "the test file is not a regular file (a device or a pipe): give a file"
        );
        drop(dir);
    }
}
