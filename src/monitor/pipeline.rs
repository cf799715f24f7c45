//! The monitor's sequence, written once: a tick's metrics go into history, every rule file
//! evaluates them, the alert lifecycle steps, and the events it makes are handed to a sink
//! before the state that says they were sent is saved. The scheduler's tick, `runner
//! dry-run` and `runner test` all step this one pipeline; they differ only in where history
//! and alert state live (disk or memory) and in what the sink does with the events (queue
//! them, print them, collect them).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::alerts::event::AlertEvent;
use crate::alerts::{AlertStore, SharedAlerts};
use crate::rules::{Evaluation, RuleSet};
use crate::store::history::History;
use crate::vocab::MetricName;

/// What one step did.
#[derive(Debug)]
pub struct Stepped {
    pub evaluation: Evaluation,
    pub events: Vec<AlertEvent>,
}

/// History, rules and alerts of one monitor job.
pub struct Pipeline {
    history: History,
    rules: Arc<RuleSet>,
    alerts: SharedAlerts,
}

impl Pipeline {
    pub fn new(history: History, rules: Arc<RuleSet>, alerts: AlertStore) -> Pipeline {
        Pipeline {
            history,
            rules,
            alerts: Arc::new(Mutex::new(alerts)),
        }
    }

    /// One tick at `at`: `metrics` are what was measured. `sink` receives the tick's events
    /// after they are in the alert log and before the alert state that says they were sent is
    /// saved, so what the state claims was sent is always on its way.
    pub fn step(
        &mut self,
        at: DateTime<Utc>,
        metrics: &[(MetricName, f64)],
        sink: impl FnOnce(&[AlertEvent]),
    ) -> Stepped {
        self.step_noted(at, metrics, &[], sink)
    }

    /// `step` with the text probes reported beside the metrics (`Output::notes`), for rules'
    /// `note()`. Notes are not history: only this tick's rules see them.
    pub fn step_noted(
        &mut self,
        at: DateTime<Utc>,
        metrics: &[(MetricName, f64)],
        notes: &[(MetricName, String)],
        sink: impl FnOnce(&[AlertEvent]),
    ) -> Stepped {
        self.history
            .push(at, metrics.iter().map(|(name, value)| (name, *value)));
        let (history, evaluation) = self.rules.evaluate_noted(
            std::mem::take(&mut self.history),
            at,
            metrics.iter().map(|(name, value)| (name.as_ref(), *value)),
            notes
                .iter()
                .map(|(name, text)| (name.as_ref(), text.as_str())),
        );
        self.history = history;
        let present = |metric: &str| metrics.iter().any(|(name, _)| name.as_ref() == metric);
        let events = self.lock_alerts().step(at, &evaluation, present, sink);
        Stepped { evaluation, events }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Rules loaded again (a reload): history and alert state stay; the next step uses them.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// The alerts, shared with notifiers that attach facts to them (a ServiceNow incident).
    pub fn alerts(&self) -> SharedAlerts {
        self.alerts.clone()
    }

    pub fn lock_alerts(&self) -> MutexGuard<'_, AlertStore> {
        // A panic while holding the alerts leaves at worst an unsaved step; keep going.
        self.alerts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
