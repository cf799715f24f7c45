//! The alert runner raises about its own delivery: `notification_dead_letter{notifier}`, firing
//! once notices to a notifier go to its dead letters (refused for good, given up after
//! `give_up_after`, an outbox line that cannot be read), resolved once that notifier delivers
//! a notice again. Delivery loops report what happened to a [`DeadLetterWatch`]; the
//! notifiers step a built-in alert job (`runner.delivery`) from it with the same lifecycle,
//! journal, alert log and state file as a monitor's, and route its events to the notifiers the
//! monitor jobs list, never to the notifier the alert is about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::alerts::lifecycle::{Lifecycle, Phase};
use crate::rules::activation::{Activation, DEFAULT_REPEAT, OnMissing};
use crate::rules::{Evaluation, RuleOutcome};
use crate::vocab::Severity;

/// The alert's name.
pub const ALERT: &str = "notification_dead_letter";
/// The job its events carry and its state is saved under: not a name a jobs file can give a
/// job (those have no `.`), so it never shares a state file with one.
pub const JOB: &str = "runner.delivery";
/// What its events name as their rule file.
pub const RULE: &str = "built-in: notifier delivery";
/// How often the alert is stepped when no delivery loop reported anything: for its repeats
/// (every 4 h while firing, as a rule's default) and for a flapping spell to settle.
pub const STEP_EVERY: Duration = Duration::from_secs(60);

/// Dead letters of one notifier since it last delivered.
#[derive(Debug, Clone, PartialEq)]
struct Spell {
    notices: u64,
    reason: String,
    dead_letters: PathBuf,
    since: DateTime<Utc>,
}

/// What the delivery loops report, for the alert's next step.
#[derive(Debug, Default)]
pub struct DeadLetterWatch {
    spells: Mutex<BTreeMap<String, Spell>>,
    changed: Notify,
}

impl DeadLetterWatch {
    fn spells(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Spell>> {
        self.spells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `notices` of `notifier` went to its dead letters at `now`, for `reason`.
    pub fn dead(
        &self,
        notifier: &str,
        notices: u64,
        reason: &str,
        dead_letters: &Path,
        now: DateTime<Utc>,
    ) {
        let mut spells = self.spells();
        let spell = spells.entry(notifier.to_string()).or_insert_with(|| Spell {
            notices: 0,
            reason: String::new(),
            dead_letters: dead_letters.to_path_buf(),
            since: now,
        });
        spell.notices += notices;
        spell.reason = reason.to_string();
        drop(spells);
        self.changed.notify_one();
    }

    /// `notifier` delivered a notice: its dead letters are no longer news.
    pub fn delivered(&self, notifier: &str) {
        if self.spells().remove(notifier).is_some() {
            self.changed.notify_one();
        }
    }

    /// Returns once a delivery loop reported a change (at once if one did since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Takes over the spells an earlier process left firing (from the saved alert state), so a
    /// restart does not resolve an alert whose notifier has not delivered since.
    pub fn restore(&self, lifecycle: &Lifecycle, notifiers: &[&str], dead_dir: &Path) {
        let mut spells = self.spells();
        for state in lifecycle.states.values() {
            let Some(notifier) = state.labels.get("notifier") else {
                continue;
            };
            if state.name != ALERT
                || state.phase == Phase::Inactive
                || !notifiers.contains(&notifier.as_str())
            {
                continue;
            }
            spells.entry(notifier.clone()).or_insert_with(|| Spell {
                notices: state.explained.value.map_or(1, |v| v.max(1.0) as u64),
                reason: state.description.clone().unwrap_or_default(),
                dead_letters: dead_dir.join(format!("{notifier}.jsonl")),
                since: state
                    .pending_since
                    .or(state.firing_since)
                    .unwrap_or_default(),
            });
        }
    }

    /// The alert's rule results now: one active alert per notifier with dead letters since it
    /// last delivered, each sent to `routes` other than that notifier.
    pub fn evaluation(&self, routes: &[String]) -> Evaluation {
        let activations = self
            .spells()
            .iter()
            .map(|(notifier, spell)| activation(notifier, spell, routes))
            .collect();
        Evaluation {
            activations,
            outcomes: vec![RuleOutcome {
                rule_file: RULE.into(),
                missing: Default::default(),
                error: None,
            }],
        }
    }
}

fn activation(notifier: &str, spell: &Spell, routes: &[String]) -> Activation {
    let notices = match spell.notices {
        1 => "1 notification".to_string(),
        n => format!("{n} notifications"),
    };
    Activation {
        name: ALERT.to_string(),
        rule_file: RULE.into(),
        labels: [("notifier".to_string(), notifier.to_string())].into(),
        severity: Severity::Warning,
        summary: Some(format!(
            "notifier `{notifier}`: {notices} kept as dead letters in {} ({})",
            spell.dead_letters.display(),
            spell.reason
        )),
        description: Some(spell.reason.clone()),
        active: true,
        clear_when: None,
        pending_for: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        repeat_interval: DEFAULT_REPEAT,
        on_missing: OnMissing::Keep,
        // Never the notifier that is failing: it would be asked to deliver the news of itself.
        notify: Some(
            routes
                .iter()
                .filter(|name| name.as_str() != notifier)
                .cloned()
                .collect(),
        ),
        action: None,
        value_missing: false,
        value: Some(spell.notices as f64),
        threshold: Some(0.0),
        op: ">".to_string(),
        metric: None,
        window: None,
        baseline: None,
        explanation: Some(format!(
            "{notices} to `{notifier}` dead since {}; resolved once it delivers again",
            spell.since.format("%Y-%m-%d %H:%M:%S UTC"),
        )),
    }
}

/// The notifiers the monitor jobs that are on send their alerts to, in the order the jobs
/// file first names them: where the alert goes.
pub fn routes(config: &crate::config::Config) -> Vec<String> {
    let mut routes: Vec<String> = Vec::new();
    for job in config.jobs.values().filter(|job| job.off.is_none()) {
        if let crate::config::JobKind::Monitor(spec) = &job.kind {
            for name in &spec.notify {
                if !routes.contains(name) {
                    routes.push(name.clone());
                }
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_alert_goes_to_every_route_but_the_failing_notifier() {
        let watch = DeadLetterWatch::default();
        let dead = Path::new("/data/outbox/dead/hook.jsonl");
        watch.dead("hook", 1, "HTTP 503", dead, t(0));
        watch.dead("hook", 2, "gave up after 1d: HTTP 503", dead, t(5));
        let routes = ["log", "hook", "slack"].map(String::from);
        let evaluation = watch.evaluation(&routes);
        let [a] = evaluation.activations.as_slice() else {
            panic!("{:?}", evaluation.activations)
        };
        assert_eq!(a.labels["notifier"], "hook");
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(
            a.notify.as_deref(),
            Some(["log", "slack"].map(String::from).as_slice())
        );
        assert_eq!(a.value, Some(3.0));
        assert_eq!(
            a.summary.as_deref(),
            Some(
                "notifier `hook`: 3 notifications kept as dead letters in /data/outbox/dead/hook.jsonl (gave up after 1d: HTTP 503)"
            )
        );
        watch.delivered("hook");
        assert!(watch.evaluation(&routes).activations.is_empty());
    }
}
