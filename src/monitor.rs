//! The monitor job's tick: run the probes, make the sample, append it to the metrics log, add
//! it to history, evaluate the rules, step the alerts and send their events. One `Monitor`
//! lives as long as the scheduler, so rates, history and alert timers carry over from tick to
//! tick.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use crate::alerts::event::AlertEvent;
use crate::alerts::{AlertStore, SharedAlerts};
use crate::config::{Config, MonitorSpec};
use crate::notify::Notifiers;
use crate::probes::{ProbeSet, ProcRoot};
use crate::rules::values::Schema;
use crate::rules::{Evaluation, RuleSet};
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::RollupStore;
use crate::store::sample::Sample;
use crate::store::{MetricsLog, MetricsReader};

/// What one tick did, for the log and for `runner run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickSummary {
    pub metrics: usize,
    pub errors: usize,
    pub events: usize,
    pub firing: usize,
}

pub struct Monitor {
    job: String,
    host: String,
    probes: ProbeSet,
    log: MetricsLog,
    history: History,
    reader: MetricsReader,
    rules: RuleSet,
    alerts: SharedAlerts,
    notifiers: Arc<Notifiers>,
    /// The job's `notify` list.
    notify: Vec<String>,
    warmed: bool,
    /// Probe errors of the previous tick, to log each once when it starts and when it clears.
    failing: BTreeMap<String, String>,
    /// Rule failures of the previous tick, likewise.
    failing_rules: BTreeMap<String, String>,
}

/// Loads a monitor's rules, saying each problem once: a bad rule file is left out, the good
/// ones run.
pub fn load_rules(job: &str, spec: &MonitorSpec) -> RuleSet {
    let (rules, problems) = RuleSet::load(
        &spec.rules,
        Schema::for_probes(&spec.probes),
        spec.rule_timeout,
    );
    for problem in problems.iter() {
        error!(job, at = %problem.location(), "rule left out: {}", problem.message);
    }
    if rules.files().is_empty() && !spec.rules.is_empty() {
        warn!(job, "no rule file to run: alerts will not be raised");
    }
    rules
}

impl Monitor {
    pub fn new(
        config: &Config,
        job: &str,
        spec: &MonitorSpec,
        notifiers: Arc<Notifiers>,
    ) -> Monitor {
        let alerts: SharedAlerts = Arc::new(Mutex::new(AlertStore::open(
            &config.data_dir,
            job,
            &config.host,
            spec.flap,
        )));
        notifiers.register_alerts(job, alerts.clone());
        Monitor {
            job: job.to_string(),
            host: config.host.clone(),
            probes: ProbeSet::build(&spec.probes, &ProcRoot::default()),
            log: MetricsLog::new(&config.data_dir),
            history: History::new(
                HistoryConfig::default(),
                Some(RollupStore::new(&config.data_dir, job)),
            ),
            reader: MetricsReader::for_config(config),
            rules: load_rules(job, spec),
            alerts,
            notifiers,
            notify: spec.notify.clone(),
            warmed: false,
            failing: BTreeMap::new(),
            failing_rules: BTreeMap::new(),
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// The job's alerts, for notifiers that attach facts to them.
    pub fn alerts(&self) -> SharedAlerts {
        self.alerts.clone()
    }

    /// Fills history from the metrics log, once, before the first tick.
    fn warm(&mut self, now: DateTime<Utc>) {
        let started = Instant::now();
        let stats = self.history.warm(self.reader.files(), &self.job, now);
        info!(
            job = %self.job,
            samples = stats.samples,
            metrics = self.history.metric_count(),
            bad_lines = stats.bad_lines,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "history warmed from the metrics log"
        );
        for problem in stats.unreadable {
            warn!(job = %self.job, source = %problem, "part of the metrics log could not be read");
        }
        self.warmed = true;
    }

    /// Measures once, records the sample, evaluates the rules and steps the alerts; returns
    /// the sample and the alert events (already logged and sent).
    pub async fn tick(
        &mut self,
        at: DateTime<Utc>,
    ) -> anyhow::Result<(Sample, Vec<AlertEvent>, TickSummary)> {
        if !self.warmed {
            self.warm(at);
            let firing = self
                .alerts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .firing_events(at);
            self.notifiers.restore(&self.notify, &firing);
        }
        let output = self.probes.collect().await;
        let sample = Sample {
            ts: at,
            host: self.host.clone(),
            job: self.job.clone(),
            metrics: output.metrics,
            errors: output.errors,
        };
        self.report_probe_errors(&sample);
        if let Err(e) = self.log.append(&sample) {
            // The tick still counts for rules; the log's trouble is said every tick it lasts.
            warn!(job = %self.job, error = %e, "cannot append to the metrics log");
        }
        self.history
            .push(sample.ts, sample.metrics.iter().map(|(n, v)| (n, *v)));
        let history = std::mem::take(&mut self.history);
        let (history, evaluation) = self.rules.evaluate(
            history,
            at,
            sample.metrics.iter().map(|(n, v)| (n.as_ref(), *v)),
        );
        self.history = history;
        self.report_rule_errors(&evaluation);
        let (events, firing) = {
            let mut alerts = self
                .alerts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let events = alerts.step(at, &evaluation, |m| sample.get(m).is_some());
            (events, alerts.firing_count())
        };
        self.notifiers.dispatch(&self.notify, &events);
        let summary = TickSummary {
            metrics: sample.metrics.len(),
            errors: sample.errors.len(),
            events: events.len(),
            firing,
        };
        Ok((sample, events, summary))
    }

    fn report_probe_errors(&mut self, sample: &Sample) {
        let now: BTreeMap<String, String> = sample.errors.iter().cloned().collect();
        report_changes(&self.job, "probe", &mut self.failing, now);
    }

    fn report_rule_errors(&mut self, evaluation: &Evaluation) {
        let now: BTreeMap<String, String> = evaluation
            .outcomes
            .iter()
            .filter_map(|o| o.error.clone().map(|e| (o.rule_file.to_string(), e)))
            .collect();
        report_changes(&self.job, "rule", &mut self.failing_rules, now);
    }
}

/// Logs each failure when it starts (or its message changes) and when it clears, not every
/// tick: the sample records probe errors every tick anyway.
fn report_changes(
    job: &str,
    what: &str,
    before: &mut BTreeMap<String, String>,
    now: BTreeMap<String, String>,
) {
    for (key, message) in &now {
        if before.get(key) != Some(message) {
            warn!(job, what, source = %key, error = %message, "{what} failing");
        }
    }
    for key in before.keys().filter(|k| !now.contains_key(*k)) {
        info!(job, what, source = %key, "{what} recovered");
    }
    *before = now;
}
