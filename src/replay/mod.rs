//! Replay: a monitor job's rules stepped over its recorded metrics log in virtual time, through
//! the scheduler's own pipeline (`monitor::pipeline`), with history warmed from the log before
//! the period and fed tick by tick, so each tick's rules read only what came before it, as the
//! live engine did. Alert state lives in memory and events go to a collecting sink: nothing is
//! sent, and no state, rollup or log of the running agent is written. `compare` sets two
//! replays of one period side by side, alert by alert (issue 32).

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alerts::AlertStore;
use crate::alerts::event::{AlertEvent, EventKind};
use crate::alerts::lifecycle::{Lifecycle, Origin, Phase};
use crate::config::FlapPolicy;
use crate::monitor::pipeline::Pipeline;
use crate::rules::RuleSet;
use crate::store::MetricsReader;
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::RollupStore;
use crate::store::sample::{LineParser, peek_ts_ms};
use crate::vocab::{MetricName, Severity};

/// Where a replay reads from, and who the alerts are from.
pub struct Source<'a> {
    pub reader: &'a MetricsReader,
    /// Its `state/rollups/<job>` are read (past hours, for baselines), never written.
    pub data_dir: &'a Path,
    pub host: &'a str,
    pub job: &'a str,
    pub flap: FlapPolicy,
    /// The jobs file's `actions:`: which would run is decided as live (cooldown and hourly
    /// cap included) and listed; none is run.
    pub actions: Arc<crate::alerts::action::Actions>,
    /// The jobs file's maintenance windows and inhibition (of this job's alerts), as live: an
    /// event they hold back runs no action. Silences are not kept for the past: none.
    pub mute: Arc<crate::alerts::mute::Mute>,
}

/// An action the live scheduler would have started at a tick; replay runs none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WouldRun {
    pub at: DateTime<Utc>,
    /// `name` or `name{key=value,...}`.
    pub alert: String,
    pub action: String,
    /// The command, as the jobs file gives its argv.
    pub command: Vec<String>,
}

/// One alert changing phase at one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub at: DateTime<Utc>,
    /// `name` or `name{key=value,...}`.
    pub alert: String,
    pub fingerprint: String,
    pub from: Phase,
    pub to: Phase,
    pub severity: Severity,
    pub value: Option<f64>,
    pub explanation: String,
}

/// The first failure of one rule file in the period, and how many ticks it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFailure {
    pub first_at: DateTime<Utc>,
    pub error: String,
    pub ticks: u64,
}

/// What a replay found.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    pub ticks: u64,
    pub first_tick: Option<DateTime<Utc>>,
    pub last_tick: Option<DateTime<Utc>>,
    /// Samples read from the 48 h before the period to warm history.
    pub warm_samples: u64,
    pub changes: Vec<Change>,
    /// Every event the live engine would have logged and handed to the notifiers.
    pub events: Vec<AlertEvent>,
    /// The actions it would have run, in order; replay runs none.
    pub actions: Vec<WouldRun>,
    pub rule_failures: BTreeMap<String, RuleFailure>,
    /// Lines of the period that are not samples, and samples older than the one before them
    /// (a clock that stepped back), which are skipped.
    pub bad_lines: u64,
    pub out_of_order: u64,
    pub unreadable: Vec<String>,
}

/// Where a replay is, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub ticks: u64,
    pub at: DateTime<Utc>,
}

/// `name{a=b,c=d}`, as people see an alert.
fn alert_label(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Steps the job's pipeline over every logged sample of the job in `[from, to]`, in order.
/// `progress` hears each tick.
pub fn replay(
    source: &Source<'_>,
    rules: Arc<RuleSet>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    mut progress: impl FnMut(Progress),
) -> Replayed {
    let files = source.reader.files();
    let mut history = History::new(
        HistoryConfig::default(),
        Some(RollupStore::new(source.data_dir, source.job)),
    )
    .read_only();
    let mut found = Replayed::default();
    // The live engine warms up once from the log, then adds each tick: the same here, so the
    // first replayed tick sees the 48 h before it and nothing after.
    let warmed = history.warm(files, source.job, from - chrono::Duration::milliseconds(1));
    found.warm_samples = warmed.samples;
    found.unreadable.extend(warmed.unreadable);
    let mut alerts =
        AlertStore::in_memory(source.host, source.job, source.flap, Lifecycle::default());
    // The store only decides which runs the events call for; starting one is the caller's,
    // and this caller lists them.
    alerts.set_actions(source.actions.clone());
    alerts.set_mute(source.mute.clone());
    let mut pipeline = Pipeline::new(history, rules, alerts);
    let origin = Origin {
        host: source.host,
        job: source.job,
    };
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let mut parser = LineParser::default();
    // Metric names repeat every tick: one shared name each, not one allocation per sample.
    let mut names: HashMap<Box<str>, MetricName> = HashMap::new();
    let mut metrics: Vec<(MetricName, f64)> = Vec::new();
    let mut phases: HashMap<String, (Phase, String, Severity)> = HashMap::new();
    let mut last_ms = i64::MIN;
    // The log streams a day file (or archive entry) at a time: memory is one line, history
    // and the alerts, whatever the period's length.
    let read = files.for_each_line(from.date_naive(), to.date_naive(), |line| {
        if peek_ts_ms(line).is_some_and(|ts| ts < from_ms || ts > to_ms) {
            return ControlFlow::Continue(());
        }
        let view = match parser.parse(line) {
            Ok(view) => view,
            Err(_) => {
                found.bad_lines += 1;
                return ControlFlow::Continue(());
            }
        };
        if view.job() != source.job || view.ts_ms < from_ms || view.ts_ms > to_ms {
            return ControlFlow::Continue(());
        }
        if view.ts_ms <= last_ms {
            found.out_of_order += 1;
            return ControlFlow::Continue(());
        }
        last_ms = view.ts_ms;
        let Some(at) = DateTime::from_timestamp_millis(view.ts_ms) else {
            return ControlFlow::Continue(());
        };
        metrics.clear();
        for (name, value) in view.metrics() {
            let shared = match names.get(name) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = MetricName::from(name);
                    names.insert(name.into(), shared.clone());
                    shared
                }
            };
            metrics.push((shared, value));
        }
        let stepped = pipeline.step(at, &metrics, |_| {});
        for run in pipeline.lock_alerts().take_runs() {
            found.actions.push(WouldRun {
                at,
                alert: alert_label(&run.event.name, &run.event.labels),
                action: run.action,
                command: run.spec.argv,
            });
        }
        for outcome in stepped.evaluation.outcomes {
            if let Some(error) = outcome.error {
                found
                    .rule_failures
                    .entry(outcome.rule_file.to_string())
                    .or_insert_with(|| RuleFailure {
                        first_at: at,
                        error,
                        ticks: 0,
                    })
                    .ticks += 1;
            }
        }
        note_changes(
            &pipeline,
            at,
            &origin,
            &stepped.events,
            &mut phases,
            &mut found.changes,
        );
        found.events.extend(stepped.events);
        found.ticks += 1;
        found.first_tick.get_or_insert(at);
        found.last_tick = Some(at);
        progress(Progress {
            ticks: found.ticks,
            at,
        });
        ControlFlow::Continue(())
    });
    found.unreadable.extend(read.unreadable);
    found
}

/// Records each alert whose phase differs from the one `phases` holds, and updates it.
fn note_changes(
    pipeline: &Pipeline,
    at: DateTime<Utc>,
    origin: &Origin<'_>,
    events: &[AlertEvent],
    phases: &mut HashMap<String, (Phase, String, Severity)>,
    changes: &mut Vec<Change>,
) {
    let alerts = pipeline.lock_alerts();
    let states = &alerts.lifecycle().states;
    for (fp, state) in states {
        let before = phases.get(fp).map_or(Phase::Inactive, |(phase, ..)| *phase);
        if before == state.phase {
            continue;
        }
        let kind = if state.phase == Phase::Inactive {
            EventKind::Resolved
        } else {
            EventKind::Firing
        };
        let event = state.event(kind, at, origin);
        let alert = alert_label(&state.name, &state.labels);
        changes.push(Change {
            at,
            alert: alert.clone(),
            fingerprint: fp.clone(),
            from: before,
            to: state.phase,
            severity: event.severity,
            value: event.value,
            explanation: event.explanation,
        });
        phases.insert(fp.clone(), (state.phase, alert, event.severity));
    }
    // An alert the lifecycle forgot is inactive: a pending one that stopped holding, or one
    // that resolved with nothing left to remember.
    let gone: Vec<String> = phases
        .iter()
        .filter(|(fp, (phase, ..))| *phase != Phase::Inactive && !states.contains_key(*fp))
        .map(|(fp, _)| fp.clone())
        .collect();
    for fp in gone {
        let Some((before, alert, severity)) = phases.remove(&fp) else {
            continue;
        };
        let resolved = events
            .iter()
            .find(|e| e.fingerprint == fp && e.kind == EventKind::Resolved);
        changes.push(Change {
            at,
            alert,
            fingerprint: fp,
            from: before,
            to: Phase::Inactive,
            severity: resolved.map_or(severity, |e| e.severity),
            value: resolved.and_then(|e| e.value),
            explanation: resolved.map(|e| e.explanation.clone()).unwrap_or_default(),
        });
    }
}

/// One firing spell of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spell {
    pub start: DateTime<Utc>,
    /// `None`: still firing at the period's last tick.
    pub end: Option<DateTime<Utc>>,
    /// The highest severity it fired at.
    pub severity: Severity,
}

/// One alert over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertSummary {
    pub alert: String,
    pub fingerprint: String,
    pub spells: Vec<Spell>,
    /// Seconds firing, a spell still firing counted to the last tick.
    pub firing_secs: i64,
    pub longest_secs: i64,
    /// `flapping` events.
    pub flaps: usize,
    /// Events the notifiers would have been handed.
    pub notifications: usize,
}

impl Replayed {
    /// The notices receivers would have had: the events a window or inhibition held back
    /// are logged, not sent.
    pub fn notifications(&self) -> usize {
        self.events.iter().filter(|e| e.muted.is_none()).count()
    }

    /// Each alert that changed phase or had an event, by name.
    pub fn alerts(&self) -> Vec<AlertSummary> {
        let mut by_fp: BTreeMap<&str, AlertSummary> = BTreeMap::new();
        for change in &self.changes {
            let summary = by_fp
                .entry(change.fingerprint.as_str())
                .or_insert_with(|| empty_summary(&change.alert, &change.fingerprint));
            if change.to == Phase::Firing {
                summary.spells.push(Spell {
                    start: change.at,
                    end: None,
                    severity: change.severity,
                });
            } else if change.from == Phase::Firing
                && let Some(spell) = summary.spells.last_mut()
            {
                spell.end = Some(change.at);
                spell.severity = spell.severity.max(change.severity);
            }
        }
        for event in &self.events {
            let summary = by_fp.entry(event.fingerprint.as_str()).or_insert_with(|| {
                empty_summary(&alert_label(&event.name, &event.labels), &event.fingerprint)
            });
            if event.muted.is_none() {
                summary.notifications += 1;
            }
            if event.kind == EventKind::Flapping {
                summary.flaps += 1;
            }
            if matches!(event.kind, EventKind::Firing | EventKind::Repeat)
                && let Some(spell) = summary
                    .spells
                    .iter_mut()
                    .rev()
                    .find(|s| s.start <= event.at && s.end.is_none_or(|end| event.at < end))
            {
                spell.severity = spell.severity.max(event.severity);
            }
        }
        let last = self.last_tick;
        let mut out: Vec<AlertSummary> = by_fp.into_values().collect();
        for summary in &mut out {
            for spell in &summary.spells {
                let end = spell.end.or(last).unwrap_or(spell.start);
                let secs = (end - spell.start).num_seconds();
                summary.firing_secs += secs;
                summary.longest_secs = summary.longest_secs.max(secs);
            }
        }
        out.sort_by(|a, b| a.alert.cmp(&b.alert));
        out
    }
}

fn empty_summary(alert: &str, fingerprint: &str) -> AlertSummary {
    AlertSummary {
        alert: alert.to_string(),
        fingerprint: fingerprint.to_string(),
        spells: Vec::new(),
        firing_secs: 0,
        longest_secs: 0,
        flaps: 0,
        notifications: 0,
    }
}

/// How an alert differs between the current rules and the proposed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// Only the proposed rules raise it.
    Added,
    /// Only the current rules raise it.
    Removed,
    /// Both do, at other times, for other lengths, at another severity or with other notices.
    Changed,
    Same,
}

impl Difference {
    pub fn as_str(self) -> &'static str {
        match self {
            Difference::Added => "added",
            Difference::Removed => "removed",
            Difference::Changed => "changed",
            Difference::Same => "same",
        }
    }
}

/// One alert, side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub alert: String,
    pub difference: Difference,
    pub current: Option<AlertSummary>,
    pub proposed: Option<AlertSummary>,
    /// What changed, in words: `starts 2m earlier`, `fires 4m longer`, `severity warning → critical`.
    pub notes: Vec<String>,
}

/// Every alert either side raised (that fired or pended), by name.
pub fn compare(current: &Replayed, proposed: &Replayed) -> Vec<Row> {
    let mut sides: BTreeMap<String, (Option<AlertSummary>, Option<AlertSummary>)> = BTreeMap::new();
    for summary in current.alerts() {
        let key = summary.fingerprint.clone();
        sides.entry(key).or_default().0 = Some(summary);
    }
    for summary in proposed.alerts() {
        let key = summary.fingerprint.clone();
        sides.entry(key).or_default().1 = Some(summary);
    }
    let mut rows: Vec<Row> = sides
        .into_values()
        .map(|(current, proposed)| {
            let fired = |s: &Option<AlertSummary>| s.as_ref().is_some_and(|s| !s.spells.is_empty());
            let difference = match (fired(&current), fired(&proposed)) {
                (false, true) => Difference::Added,
                (true, false) => Difference::Removed,
                _ if differ(current.as_ref(), proposed.as_ref()) => Difference::Changed,
                _ => Difference::Same,
            };
            let notes = match (&current, &proposed) {
                (Some(a), Some(b)) if difference == Difference::Changed => notes(a, b),
                _ => Vec::new(),
            };
            let alert = current
                .as_ref()
                .or(proposed.as_ref())
                .map(|s| s.alert.clone())
                .unwrap_or_default();
            Row {
                alert,
                difference,
                current,
                proposed,
                notes,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.alert.cmp(&b.alert));
    rows
}

fn differ(a: Option<&AlertSummary>, b: Option<&AlertSummary>) -> bool {
    let spells = |s: Option<&AlertSummary>| s.map(|s| s.spells.clone()).unwrap_or_default();
    let notices = |s: Option<&AlertSummary>| s.map_or(0, |s| s.notifications);
    spells(a) != spells(b) || notices(a) != notices(b)
}

fn secs_words(secs: i64) -> String {
    crate::vocab::duration::format_duration(std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// The differences of one alert that fired on both sides, in words.
fn notes(a: &AlertSummary, b: &AlertSummary) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(x), Some(y)) = (a.spells.first(), b.spells.first()) {
        let by = (y.start - x.start).num_seconds();
        if by != 0 {
            let word = if by < 0 { "earlier" } else { "later" };
            out.push(format!("starts {} {word}", secs_words(by)));
        }
    }
    if a.spells.len() != b.spells.len() {
        out.push(format!("{} → {} spells", a.spells.len(), b.spells.len()));
    }
    let by = b.firing_secs - a.firing_secs;
    if by != 0 {
        let word = if by < 0 { "shorter" } else { "longer" };
        out.push(format!("fires {} {word}", secs_words(by)));
    }
    let peak = |s: &AlertSummary| s.spells.iter().map(|s| s.severity).max();
    if let (Some(x), Some(y)) = (peak(a), peak(b))
        && x != y
    {
        out.push(format!("severity {} → {}", x.as_str(), y.as_str()));
    }
    if a.flaps != b.flaps {
        out.push(format!("flapping {} → {}", a.flaps, b.flaps));
    }
    if a.notifications != b.notifications {
        out.push(format!(
            "notifications {} → {}",
            a.notifications, b.notifications
        ));
    }
    if out.is_empty() {
        // Same start, length and count: the spells moved within the period.
        out.push("other spells".to_string());
    }
    out
}
