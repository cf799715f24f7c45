//! The life of an alert: inactive → pending (until `pending_for` has held) → firing →
//! resolved (after `keep_firing_for` without activation, once `clear_when` allows it). Each
//! step emits events, never one per tick: `firing` once, `repeat` every `repeat_interval`,
//! `resolved` once, and `flapping` once when an alert changes state too often, after which
//! its notices are held until it has been stable for the flapping window.
//!
//! Per tick, an alert's condition is one of: active (the rule raised it), clear (the rule ran
//! and did not), hold (nothing is known: the rule failed, or `on_missing: keep`, or value
//! hysteresis keeps it), or missing (its data is gone: `on_missing` decides).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{AlertEvent, EventKind, Incident, SCHEMA_VERSION, event_id, fingerprint};
use crate::config::FlapPolicy;
use crate::rules::activation::{Activation, OnMissing};
use crate::rules::{Evaluation, RuleOutcome};
use crate::vocab::Severity;
use crate::vocab::words::{format_for, format_value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
}

/// What the receivers were last told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notified {
    Nothing,
    Firing,
    Resolved,
}

/// The alert's options as of its last activation: they still apply on ticks without one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub pending_for_ms: u64,
    pub keep_firing_for_ms: u64,
    pub repeat_interval_ms: u64,
    pub on_missing: OnMissing,
    pub notify: Option<Vec<String>>,
    pub metric: Option<String>,
    /// The `actions:` entry it runs when it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The numbers and words that explain it, as of its last activation with a value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Explained {
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub op: String,
    pub window: Option<String>,
    pub baseline: Option<String>,
    pub explanation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub fingerprint: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub rule_file: String,
    pub severity: Severity,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub phase: Phase,
    /// When its condition began to hold (kept while firing: the "for 5m" of explanations).
    pub pending_since: Option<DateTime<Utc>>,
    pub firing_since: Option<DateTime<Utc>>,
    pub last_active: Option<DateTime<Utc>>,
    pub last_notified: Option<DateTime<Utc>>,
    pub notified: Notified,
    /// The severity the receivers last heard; a rise while firing is sent at once.
    #[serde(default)]
    pub notified_severity: Option<Severity>,
    /// The highest severity the receivers heard in this firing spell. A resolved notice goes
    /// at it, so it reaches every notifier the firing reached, whatever the severity became.
    #[serde(default)]
    pub peak_severity: Option<Severity>,
    /// Times of state changes within the flapping window.
    pub transitions: Vec<DateTime<Utc>>,
    pub flapping: bool,
    /// Since when its data has been missing, if it is.
    pub missing_since: Option<DateTime<Utc>>,
    pub options: Options,
    pub explained: Explained,
    /// Facts notifiers attached (the ServiceNow incident), carried by later events.
    #[serde(default)]
    pub facts: BTreeMap<String, serde_json::Value>,
}

/// The condition of one alert in one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Active,
    /// Active because its data is missing (`on_missing: alert`).
    ActiveMissing,
    Clear,
    /// Resolve now, whatever `keep_firing_for` says (`on_missing: resolve`, rule gone).
    ClearNow,
    Hold,
}

/// Every alert of one monitor job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub states: BTreeMap<String, AlertState>,
    /// Alerts whose notices are being kept back (`alerts::mute`), by fingerprint: `true` when
    /// the receivers last heard it firing. Saved, so a restart inside a window still lets the
    /// held notice out when it ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, crate::alerts::event::Held>,
    /// When each alert's action ran in the last hour, by `fingerprint action`: its cooldown
    /// and hourly cap (`alerts::action`). Saved, so a restart does not reset them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub action_runs: BTreeMap<String, Vec<DateTime<Utc>>>,
}

/// Who the events are from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub host: &'a str,
    pub job: &'a str,
}

impl Lifecycle {
    /// Applies one tick's rule results at `now`; `present` says whether a metric has a value
    /// this tick. Returns the events to log and send, in order.
    pub fn step(
        &mut self,
        now: DateTime<Utc>,
        evaluation: &Evaluation,
        present: impl Fn(&str) -> bool,
        origin: &Origin<'_>,
        flap: FlapPolicy,
    ) -> Vec<AlertEvent> {
        let outcomes: HashMap<&str, &RuleOutcome> = evaluation
            .outcomes
            .iter()
            .map(|o| (o.rule_file.as_ref(), o))
            .collect();
        // Several calls for one alert in a tick: one is enough to make it active.
        let mut activations: BTreeMap<String, Activation> = BTreeMap::new();
        for a in &evaluation.activations {
            let fp = fingerprint(origin.host, &a.name, &a.labels);
            match activations.get_mut(&fp) {
                Some(seen) => {
                    seen.active |= a.active;
                    if a.value.is_some() {
                        seen.value = a.value;
                    }
                }
                None => {
                    activations.insert(fp, a.clone());
                }
            }
        }
        let mut events = Vec::new();
        let fingerprints: BTreeSet<String> = activations
            .keys()
            .chain(self.states.keys())
            .cloned()
            .collect();
        for fp in fingerprints {
            let activation = activations.get(&fp);
            let state = match (self.states.entry(fp.clone()), activation) {
                (Entry::Occupied(known), _) => known.into_mut(),
                (Entry::Vacant(new), Some(a)) => new.insert(new_state(&fp, a)),
                // Every fingerprint here has a state or an activation.
                (Entry::Vacant(_), None) => continue,
            };
            if let Some(a) = activation {
                state.absorb(a);
            }
            let outcome = outcomes.get(state.rule_file.as_str());
            let (condition, data_missing) = match (activation, outcome) {
                (Some(a), _) if a.active => (Condition::Active, false),
                // `value: ()`: the rule ran, but what it watches has no data this tick.
                (Some(a), _) if a.value_missing => (state.missing(now), true),
                (Some(a), _) if a.clear_when == Some(false) && state.phase == Phase::Firing => {
                    (Condition::Hold, false)
                }
                (Some(_), _) => (Condition::Clear, false),
                (None, None) => (Condition::ClearNow, false),
                // The rule failed: nothing is known about its alerts this tick.
                (None, Some(o)) if o.error.is_some() => (Condition::Hold, false),
                (None, Some(o)) => {
                    let gone = match &state.options.metric {
                        Some(metric) => !present(metric),
                        None => !o.missing.is_empty(),
                    };
                    if gone {
                        (state.missing(now), true)
                    } else {
                        (Condition::Clear, false)
                    }
                }
            };
            if !data_missing {
                state.missing_since = None;
            }
            let rule_gone = activation.is_none() && outcome.is_none();
            state.advance(condition, now, rule_gone, origin, flap, &mut events);
        }
        // Forget alerts with nothing left to remember.
        self.states
            .retain(|_, s| s.phase != Phase::Inactive || s.flapping || !s.transitions.is_empty());
        events
    }

    /// Attaches a fact (e.g. `incident`) to the firing spell of an alert that became active at
    /// `spell` (an event's `active_since`); `false` if that spell is over. A fact learned late,
    /// after its spell resolved or while a later spell fires, belongs to no later event.
    pub fn attach(
        &mut self,
        fingerprint: &str,
        spell: DateTime<Utc>,
        key: &str,
        value: serde_json::Value,
    ) -> bool {
        match self.states.get_mut(fingerprint) {
            Some(state)
                if state.phase == Phase::Firing
                    && state.pending_since.or(state.firing_since) == Some(spell) =>
            {
                state.facts.insert(key.to_string(), value);
                true
            }
            _ => false,
        }
    }

    pub fn firing(&self) -> impl Iterator<Item = &AlertState> {
        self.states.values().filter(|s| s.phase == Phase::Firing)
    }
}

fn new_state(fp: &str, a: &Activation) -> AlertState {
    AlertState {
        fingerprint: fp.to_string(),
        name: a.name.clone(),
        labels: a.labels.clone(),
        rule_file: a.rule_file.to_string(),
        severity: a.severity,
        summary: None,
        description: None,
        phase: Phase::Inactive,
        pending_since: None,
        firing_since: None,
        last_active: None,
        last_notified: None,
        notified: Notified::Nothing,
        notified_severity: None,
        peak_severity: None,
        transitions: Vec::new(),
        flapping: false,
        missing_since: None,
        options: options_of(a),
        explained: Explained::default(),
        facts: BTreeMap::new(),
    }
}

fn options_of(a: &Activation) -> Options {
    Options {
        pending_for_ms: a.pending_for.as_millis() as u64,
        keep_firing_for_ms: a.keep_firing_for.as_millis() as u64,
        repeat_interval_ms: a.repeat_interval.as_millis() as u64,
        on_missing: a.on_missing,
        notify: a.notify.clone(),
        metric: a.metric.clone(),
        action: a.action.clone(),
    }
}

fn ms(d: chrono::Duration) -> i64 {
    d.num_milliseconds()
}

impl AlertState {
    /// Takes what the rule said this tick: options, words, and numbers when it has them.
    fn absorb(&mut self, a: &Activation) {
        self.severity = a.severity;
        self.summary = a.summary.clone();
        self.description = a.description.clone();
        self.options = options_of(a);
        if a.value.is_some() || a.explanation.is_some() {
            self.explained = Explained {
                value: a.value,
                threshold: a.threshold,
                op: a.op.clone(),
                window: a.window.clone(),
                baseline: a.baseline.clone(),
                explanation: a.explanation.clone(),
            };
        }
    }

    fn missing(&mut self, now: DateTime<Utc>) -> Condition {
        self.missing_since.get_or_insert(now);
        match self.options.on_missing {
            OnMissing::Keep => Condition::Hold,
            OnMissing::Resolve => Condition::ClearNow,
            OnMissing::Alert => Condition::ActiveMissing,
        }
    }

    fn advance(
        &mut self,
        condition: Condition,
        now: DateTime<Utc>,
        rule_gone: bool,
        origin: &Origin<'_>,
        flap: FlapPolicy,
        events: &mut Vec<AlertEvent>,
    ) {
        match condition {
            Condition::Active | Condition::ActiveMissing => {
                self.last_active = Some(now);
                match self.phase {
                    Phase::Inactive => {
                        self.pending_since = Some(now);
                        self.phase = Phase::Pending;
                        if self.options.pending_for_ms == 0 {
                            self.fire(now, origin, flap, events);
                        }
                    }
                    Phase::Pending => {
                        let since = self.pending_since.unwrap_or(now);
                        if ms(now - since) >= self.options.pending_for_ms as i64 {
                            self.fire(now, origin, flap, events);
                        }
                    }
                    Phase::Firing => self.maybe_repeat(now, origin, events),
                }
            }
            Condition::Clear | Condition::ClearNow => match self.phase {
                Phase::Pending => {
                    self.phase = Phase::Inactive;
                    self.pending_since = None;
                }
                Phase::Firing => {
                    let quiet = self.last_active.map_or(i64::MAX, |t| ms(now - t));
                    if condition == Condition::ClearNow
                        || quiet >= self.options.keep_firing_for_ms as i64
                    {
                        let why = rule_gone.then_some("the rule that raised it is gone");
                        self.resolve(now, why, origin, flap, events);
                    } else {
                        self.maybe_repeat(now, origin, events);
                    }
                }
                Phase::Inactive => {}
            },
            Condition::Hold => {
                if self.phase == Phase::Firing {
                    self.maybe_repeat(now, origin, events);
                }
            }
        }
        self.check_settled(now, origin, flap, events);
    }

    fn fire(
        &mut self,
        now: DateTime<Utc>,
        origin: &Origin<'_>,
        flap: FlapPolicy,
        events: &mut Vec<AlertEvent>,
    ) {
        self.phase = Phase::Firing;
        self.firing_since = Some(now);
        // A new spell: what notifiers attached to the last one (its incident) is not this one's.
        self.facts.clear();
        self.transition(now, origin, flap, events);
        if !self.flapping {
            events.push(self.event(EventKind::Firing, now, origin));
            self.notified = Notified::Firing;
            self.last_notified = Some(now);
            self.notified_severity = Some(self.severity);
            self.peak_severity = Some(self.severity);
        }
    }

    fn resolve(
        &mut self,
        now: DateTime<Utc>,
        why: Option<&str>,
        origin: &Origin<'_>,
        flap: FlapPolicy,
        events: &mut Vec<AlertEvent>,
    ) {
        self.phase = Phase::Inactive;
        self.pending_since = None;
        self.transition(now, origin, flap, events);
        if !self.flapping && self.notified == Notified::Firing {
            let mut event = self.event(EventKind::Resolved, now, origin);
            if let Some(why) = why {
                event.explanation = format!("{why}; {}", event.explanation);
            }
            events.push(event);
            self.notified = Notified::Resolved;
            self.last_notified = Some(now);
        }
        // The spell is over; its resolved notice carried its facts.
        self.facts.clear();
    }

    /// While firing: again every `repeat_interval`, and at once when the severity rose.
    fn maybe_repeat(
        &mut self,
        now: DateTime<Utc>,
        origin: &Origin<'_>,
        events: &mut Vec<AlertEvent>,
    ) {
        if self.flapping || self.notified != Notified::Firing {
            return;
        }
        let escalated = self.notified_severity.is_some_and(|s| self.severity > s);
        let since = self.last_notified.map_or(i64::MAX, |t| ms(now - t));
        let due =
            self.options.repeat_interval_ms > 0 && since >= self.options.repeat_interval_ms as i64;
        if escalated || due {
            events.push(self.event(EventKind::Repeat, now, origin));
            self.last_notified = Some(now);
            self.notified_severity = Some(self.severity);
            self.peak_severity = self.peak_severity.max(Some(self.severity));
        }
    }

    /// Counts a state change; the one that makes it too many starts flapping, and its own
    /// notice is held like the ones after it.
    fn transition(
        &mut self,
        now: DateTime<Utc>,
        origin: &Origin<'_>,
        flap: FlapPolicy,
        events: &mut Vec<AlertEvent>,
    ) {
        self.transitions.push(now);
        self.prune_transitions(now, flap);
        if !self.flapping && self.transitions.len() > flap.max_transitions {
            self.flapping = true;
            events.push(self.event(EventKind::Flapping, now, origin));
            self.last_notified = Some(now);
        }
    }

    fn prune_transitions(&mut self, now: DateTime<Utc>, flap: FlapPolicy) {
        let oldest = now - chrono::Duration::from_std(flap.window).unwrap_or_default();
        self.transitions.retain(|t| *t > oldest);
    }

    /// Once a flapping alert has not changed for a whole window, say where it settled, if
    /// that is news to the receivers.
    fn check_settled(
        &mut self,
        now: DateTime<Utc>,
        origin: &Origin<'_>,
        flap: FlapPolicy,
        events: &mut Vec<AlertEvent>,
    ) {
        self.prune_transitions(now, flap);
        if !self.flapping || !self.transitions.is_empty() {
            return;
        }
        self.flapping = false;
        match (self.phase, self.notified) {
            (Phase::Firing, n) if n != Notified::Firing => {
                events.push(self.event(EventKind::Firing, now, origin));
                self.notified = Notified::Firing;
                self.last_notified = Some(now);
                self.notified_severity = Some(self.severity);
                self.peak_severity = Some(self.severity);
            }
            (Phase::Inactive | Phase::Pending, Notified::Firing) => {
                events.push(self.event(EventKind::Resolved, now, origin));
                self.notified = Notified::Resolved;
                self.last_notified = Some(now);
            }
            _ => {}
        }
    }

    fn explanation(&self, kind: EventKind, now: DateTime<Utc>, flap_transitions: usize) -> String {
        let since = self.pending_since.or(self.firing_since).unwrap_or(now);
        let lasted = format_for((now - since).num_seconds());
        let e = &self.explained;
        let subject = self
            .options
            .metric
            .clone()
            .unwrap_or_else(|| self.name.clone());
        if kind == EventKind::Flapping {
            return format!(
                "{} changed state {flap_transitions} times recently; notices are held until it is stable",
                self.name
            );
        }
        if let Some(missing) = self.missing_since
            && self.options.on_missing == OnMissing::Alert
            && kind != EventKind::Resolved
        {
            return format!(
                "no data for {subject} since {}",
                missing.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        let mut text = match (&e.explanation, e.value, e.threshold) {
            (Some(custom), _, _) => custom.clone(),
            (None, Some(v), Some(t)) => {
                format!("{subject} {} {} {}", format_value(v), e.op, format_value(t))
            }
            (None, Some(v), None) => format!("{subject} is {}", format_value(v)),
            (None, None, _) => subject.clone(),
        };
        if let Some(baseline) = &e.baseline {
            text.push_str(&format!(" ({baseline})"));
        }
        if let Some(window) = &e.window {
            text.push_str(&format!(" over {window}"));
        }
        match kind {
            EventKind::Resolved => format!("resolved after firing for {lasted}; last seen: {text}"),
            _ => format!("{text} for {lasted}"),
        }
    }

    pub fn event(&self, kind: EventKind, now: DateTime<Utc>, origin: &Origin<'_>) -> AlertEvent {
        let incident = self
            .facts
            .get("incident")
            .and_then(|v| serde_json::from_value::<Incident>(v.clone()).ok());
        let action = self
            .facts
            .get("action")
            .and_then(|v| serde_json::from_value::<crate::alerts::action::Outcome>(v.clone()).ok());
        let mut explanation = self.explanation(kind, now, self.transitions.len());
        if let Some(action) = &action {
            explanation = format!("{explanation}; {action}");
        }
        AlertEvent {
            schema_version: SCHEMA_VERSION,
            id: event_id(&self.fingerprint, kind, now),
            kind,
            fingerprint: self.fingerprint.clone(),
            name: self.name.clone(),
            labels: self.labels.clone(),
            severity: match kind {
                EventKind::Resolved => self
                    .peak_severity
                    .max(Some(self.severity))
                    .unwrap_or(self.severity),
                _ => self.severity,
            },
            summary: self
                .summary
                .clone()
                .unwrap_or_else(|| format!("{} on {}", self.name, origin.host)),
            description: self.description.clone().unwrap_or_default(),
            value: self.explained.value,
            threshold: self.explained.threshold,
            explanation,
            active_since: self.pending_since.or(self.firing_since).unwrap_or(now),
            at: now,
            host: origin.host.to_string(),
            job: origin.job.to_string(),
            rule_file: self.rule_file.clone(),
            incident,
            notify: self.options.notify.clone(),
            muted: None,
            action: action.map(Box::new),
        }
    }
}
