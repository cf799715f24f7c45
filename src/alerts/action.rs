//! Alerts' actions (`actions:` in the jobs file, named by `alert(…, #{ action: "…" })`): which
//! of a tick's events run one (firing, or each repeat when asked; never a muted one; within
//! the action's cooldown and hourly cap for that alert), and running it off the tick as an
//! argv command with the alert in its environment, in its own process group killed at the
//! timeout ([`crate::child`]). The outcome goes to the log and onto the alert's spell, so
//! its next notice and the alert log carry it.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::SharedAlerts;
use super::event::{AlertEvent, EventKind};
use super::lifecycle::Lifecycle;
use crate::config::action::{ActionSpec, RunOn};

/// The most of an action's standard output and error kept, for its first line.
const MAX_OUTPUT: usize = 64 << 10;

/// How much of the first line of output is kept.
const MAX_LINE: usize = 200;

/// The `actions:` of the jobs file, for one monitor job.
#[derive(Debug, Default)]
pub struct Actions {
    specs: IndexMap<String, ActionSpec>,
    /// Action names a rule gave that `actions:` lacks, said once each.
    unknown: Mutex<BTreeSet<String>>,
}

/// One action to run for one alert event.
#[derive(Debug, Clone)]
pub struct Run {
    pub action: String,
    pub spec: ActionSpec,
    pub job: String,
    pub alert: String,
    pub fingerprint: String,
    /// The firing spell, to put the outcome on ([`super::AlertStore::attach`]).
    pub spell: DateTime<Utc>,
    pub env: Vec<(String, String)>,
    /// The event that called for the run: a failure's own event is made of it.
    pub event: Box<AlertEvent>,
}

/// What a run did, in the alert log and the alert's next notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub action: String,
    /// The exit code; `None` when it did not start, timed out or died of a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    pub duration_ms: u64,
    /// Why it failed when there is no exit code to say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The first non-empty line of standard output (else of standard error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_line: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.exit == Some(0)
    }
}

impl std::fmt::Display for Outcome {
    /// `restart_web: exit 0 in 1.2 s`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.duration_ms as f64 / 1000.0;
        match (&self.exit, &self.failure) {
            (Some(code), _) => write!(f, "{}: exit {code} in {secs:.1} s", self.action)?,
            (None, Some(why)) => write!(f, "{}: {why} after {secs:.1} s", self.action)?,
            (None, None) => write!(f, "{}: failed after {secs:.1} s", self.action)?,
        }
        if !self.first_line.is_empty() {
            write!(f, " ({})", self.first_line)?;
        }
        Ok(())
    }
}

/// The key of the ledger of runs: one per alert and action.
fn ledger_key(fingerprint: &str, action: &str) -> String {
    format!("{fingerprint} {action}")
}

/// Counts a run of `action` for the alert `fingerprint` at `now` against its cooldown and
/// hourly cap; `runner test` keeps such a ledger too, so it asserts what the scheduler runs.
pub fn note_run(lifecycle: &mut Lifecycle, fingerprint: &str, action: &str, now: DateTime<Utc>) {
    let ran = lifecycle
        .action_runs
        .entry(ledger_key(fingerprint, action))
        .or_default();
    ran.push(now);
}

impl Actions {
    pub fn new(specs: IndexMap<String, ActionSpec>) -> Actions {
        Actions {
            specs,
            unknown: Mutex::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The action `event` calls for, if any, cooldown and cap aside. Muted events and kinds
    /// the action is not run on call for none; an action `actions:` lacks is said once.
    pub fn wanted<'a>(
        &'a self,
        lifecycle: &Lifecycle,
        event: &AlertEvent,
    ) -> Option<(&'a str, &'a ActionSpec)> {
        if event.muted.is_some() {
            return None;
        }
        let state = lifecycle.states.get(&event.fingerprint)?;
        let name = state.options.action.as_deref()?;
        let Some((name, spec)) = self.specs.get_key_value(name) else {
            let mut unknown = self
                .unknown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if unknown.insert(name.to_string()) {
                error!(job = %event.job, alert = %event.name, action = name, "alert names an action that `actions:` does not have; nothing is run");
            }
            return None;
        };
        let runs = match event.kind {
            EventKind::Firing => true,
            EventKind::Repeat => spec.on == RunOn::Repeat,
            _ => false,
        };
        runs.then_some((name.as_str(), spec))
    }

    /// The runs this tick's events call for, within each action's cooldown and hourly cap for
    /// its alert; each is noted in `lifecycle` (saved with it, so a restart keeps the count).
    pub fn decide(
        &self,
        lifecycle: &mut Lifecycle,
        events: &[AlertEvent],
        now: DateTime<Utc>,
    ) -> Vec<Run> {
        let hour_ago = now - chrono::Duration::hours(1);
        let mut runs = Vec::new();
        for event in events {
            let Some((name, spec)) = self.wanted(lifecycle, event) else {
                continue;
            };
            if let Err(why) = held_back(lifecycle, &event.fingerprint, name, spec, now) {
                info!(job = %event.job, alert = %event.name, action = name, "action not run: {why}");
                continue;
            }
            note_run(lifecycle, &event.fingerprint, name, now);
            runs.push(Run {
                action: name.to_string(),
                spec: spec.clone(),
                job: event.job.clone(),
                alert: event.name.clone(),
                fingerprint: event.fingerprint.clone(),
                spell: event.active_since,
                env: environment(event),
                event: Box::new(event.clone()),
            });
        }
        lifecycle.action_runs.retain(|_, ran| {
            ran.retain(|at| *at > hour_ago);
            !ran.is_empty()
        });
        runs
    }
}

/// Why the cooldown or the hourly cap of `action` keeps it from running for the alert
/// `fingerprint` at `now`, by the runs `lifecycle` notes.
pub fn held_back(
    lifecycle: &Lifecycle,
    fingerprint: &str,
    action: &str,
    spec: &ActionSpec,
    now: DateTime<Utc>,
) -> Result<(), &'static str> {
    let hour_ago = now - chrono::Duration::hours(1);
    let Some(ran) = lifecycle.action_runs.get(&ledger_key(fingerprint, action)) else {
        return Ok(());
    };
    let cooling = ran.last().is_some_and(|last| {
        let since = (now - *last).to_std().unwrap_or(Duration::ZERO);
        since < spec.cooldown
    });
    if cooling {
        return Err("in its cooldown");
    }
    let in_hour = ran.iter().filter(|at| **at > hour_ago).count();
    if spec.max_per_hour.is_some_and(|cap| in_hour >= cap as usize) {
        return Err("its hourly cap is reached");
    }
    Ok(())
}

/// The alert as the action's environment: `ALERT_NAME`, `ALERT_SEVERITY`, `ALERT_VALUE`,
/// `ALERT_EXPLANATION`, `ALERT_LABELS` (every label, its exact key, as one JSON object) and
/// `ALERT_LABEL_<KEY>` (the key upper-cased, other than letters and digits as `_`). Two keys
/// that give one name (`a-b`, `a_b`) leave it unset, with a warning: it would hold one of them
/// as if it were the other; both are in `ALERT_LABELS`.
pub fn environment(event: &AlertEvent) -> Vec<(String, String)> {
    let labels = serde_json::to_string(&event.labels).unwrap_or_default();
    let mut env = vec![
        ("ALERT_NAME".to_string(), event.name.clone()),
        (
            "ALERT_SEVERITY".to_string(),
            event.severity.as_str().to_string(),
        ),
        (
            "ALERT_VALUE".to_string(),
            event.value.map(|v| v.to_string()).unwrap_or_default(),
        ),
        ("ALERT_EXPLANATION".to_string(), event.explanation.clone()),
        ("ALERT_LABELS".to_string(), labels),
    ];
    let mut named: std::collections::BTreeMap<String, Vec<(&String, &String)>> =
        std::collections::BTreeMap::new();
    for (key, value) in &event.labels {
        named
            .entry(label_variable(key))
            .or_default()
            .push((key, value));
    }
    for (variable, keys) in named {
        match keys.as_slice() {
            [(_, value)] => env.push((variable, (*value).clone())),
            _ => {
                let keys: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
                warn!(
                    alert = %event.name,
                    labels = ?keys,
                    "labels give one environment variable name; {variable} is left unset (ALERT_LABELS has each)"
                );
            }
        }
    }
    env
}

/// `ALERT_LABEL_<KEY>`: the key upper-cased, anything other than a letter or digit as `_`.
fn label_variable(key: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ALERT_LABEL_{key}")
}

/// Runs one action to its end or its timeout.
pub async fn execute(run: &Run) -> Outcome {
    let program = &run.spec.argv[0];
    let mut command = tokio::process::Command::new(program);
    command
        .args(&run.spec.argv[1..])
        .envs(run.env.iter().cloned());
    let started = Instant::now();
    let ran = crate::child::run(
        &mut command,
        run.spec.timeout,
        MAX_OUTPUT,
        MAX_OUTPUT,
        crate::child::OnExcess::Drain,
    )
    .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let mut outcome = Outcome {
        action: run.action.clone(),
        exit: None,
        duration_ms,
        failure: None,
        first_line: String::new(),
    };
    match ran {
        Err(crate::child::Failed::Start(e)) => {
            outcome.failure = Some(format!("cannot run `{program}`: {e}"));
        }
        Err(crate::child::Failed::TimedOut { stdout, stderr }) => {
            outcome.failure = Some(format!(
                "killed at its timeout of {} s",
                run.spec.timeout.as_secs_f64()
            ));
            outcome.first_line = first_line(&stdout);
            if outcome.first_line.is_empty() {
                outcome.first_line = first_line(&stderr);
            }
        }
        Ok(ran) => {
            let stdout = ran.stdout.unwrap_or_else(|cut| cut);
            outcome.first_line = first_line(&stdout);
            if outcome.first_line.is_empty() {
                outcome.first_line = first_line(&ran.stderr);
            }
            match ran.status {
                Ok(status) => {
                    outcome.exit = status.code();
                    if status.code().is_none() {
                        outcome.failure = Some("killed by a signal".to_string());
                    }
                }
                Err(e) => outcome.failure = Some(format!("`{program}` failed: {e}")),
            }
        }
    }
    outcome
}

fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.unwrap_or("").chars().take(MAX_LINE).collect()
}

/// The event of its own a failed run is: the alert as the run's event had it, of kind
/// `action_failed`, with the outcome, at the moment the run ended (the run's event's time
/// plus how long it ran, so a virtual clock's ticks date it too).
pub fn failed_event(run: &Run, outcome: &Outcome) -> AlertEvent {
    let mut event = (*run.event).clone();
    let ran = chrono::Duration::milliseconds(outcome.duration_ms.min(i64::MAX as u64) as i64);
    event.at += ran;
    event.kind = EventKind::ActionFailed;
    event.id = super::event::event_id(&event.fingerprint, event.kind, event.at);
    event.explanation = format!(
        "action failed: {outcome}; the alert: {}",
        run.event.explanation
    );
    event.muted = None;
    event.action = Some(Box::new(outcome.clone()));
    event
}

/// Runs `run` on the runtime, off the tick: a slow action never delays one. Its outcome is
/// logged (an error when it failed) and put on the alert's spell for its next notice; a
/// failure is also an event of its own in the alert log, handed to `on_failed` (the
/// notifiers) unless a window, a silence or inhibition mutes the alert by then.
pub fn spawn(
    run: Run,
    alerts: SharedAlerts,
    on_failed: impl FnOnce(&AlertEvent) + Send + 'static,
) -> tokio::task::JoinHandle<Outcome> {
    tokio::spawn(async move {
        let outcome = execute(&run).await;
        if outcome.ok() {
            info!(job = %run.job, alert = %run.alert, action = %run.action, "action ran: {outcome}");
        } else {
            error!(job = %run.job, alert = %run.alert, action = %run.action, "action failed: {outcome}");
        }
        let failed = {
            let mut alerts = alerts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Ok(value) = serde_json::to_value(&outcome) {
                alerts.attach(&run.fingerprint, run.spell, "action", value);
            }
            (!outcome.ok()).then(|| alerts.record(failed_event(&run, &outcome)))
        };
        if let Some(event) = failed {
            on_failed(&event);
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;
    use crate::alerts::lifecycle::Lifecycle;
    use crate::config::FlapPolicy;
    use crate::rules::activation::Activation;
    use crate::rules::{Evaluation, RuleOutcome};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + secs, 0).unwrap()
    }

    fn spec(argv: &[&str], cooldown: u64, cap: Option<u32>, on: RunOn) -> ActionSpec {
        ActionSpec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            timeout: Duration::from_secs(30),
            cooldown: Duration::from_secs(cooldown),
            max_per_hour: cap,
            on,
        }
    }

    /// Spells close together would be flapping under the default policy.
    fn calm() -> FlapPolicy {
        FlapPolicy {
            max_transitions: 100,
            window: Duration::from_secs(60),
        }
    }

    fn store(action: ActionSpec) -> AlertStore {
        let mut store = AlertStore::in_memory("web-1", "monitor", calm(), Lifecycle::default());
        store.set_actions(std::sync::Arc::new(Actions::new(
            [("restart_web".to_string(), action)].into(),
        )));
        store
    }

    fn eval(active: bool, action: &str) -> Evaluation {
        let mut a =
            Activation::from_map("web_down", "rules/web.rhai".into(), &rhai::Map::new()).unwrap();
        a.value = Some(0.0);
        a.labels.insert("host".into(), "web-1".into());
        a.repeat_interval = Duration::from_secs(60);
        a.action = Some(action.to_string());
        Evaluation {
            activations: if active { vec![a] } else { vec![] },
            outcomes: vec![RuleOutcome {
                rule_file: "rules/web.rhai".into(),
                missing: Default::default(),
                error: None,
            }],
        }
    }

    /// Steps every 10 s from `start` with the alert raised at each `true`; returns the time
    /// of each run the steps called for.
    fn runs(store: &mut AlertStore, start: i64, pattern: &[bool]) -> Vec<i64> {
        let mut out = Vec::new();
        for (i, active) in pattern.iter().enumerate() {
            let at = start + i as i64 * 10;
            store.step(t(at), &eval(*active, "restart_web"), |_| true, |_| {});
            out.extend(store.take_runs().iter().map(|_| at));
        }
        out
    }

    #[test]
    fn runs_once_per_spell_within_its_cooldown_and_hourly_cap() {
        let mut s = store(spec(&["true"], 600, Some(2), RunOn::Firing));
        // Firing for 3 minutes (repeats at each minute run nothing), then resolved.
        let mut pattern = vec![true; 19];
        pattern.push(false);
        assert_eq!(runs(&mut s, 0, &pattern), [0]);
        // A second spell 5 minutes after the first run: in the cooldown.
        assert_eq!(runs(&mut s, 300, &[true, false]), Vec::<i64>::new());
        // 11 minutes after: out of it.
        assert_eq!(runs(&mut s, 660, &[true, false]), [660]);
        // The third spell of the hour is over the cap of 2 even past the cooldown.
        assert_eq!(runs(&mut s, 1300, &[true, false]), Vec::<i64>::new());
        // An hour after the first run, one of the two is out of the hour.
        assert_eq!(runs(&mut s, 3610, &[true, false]), [3610]);
    }

    #[test]
    fn on_repeat_runs_at_each_repeat_notice() {
        let mut s = store(spec(&["true"], 0, None, RunOn::Repeat));
        assert_eq!(runs(&mut s, 0, &[true; 13]), [0, 60, 120]);
    }

    #[test]
    fn the_ledger_is_in_the_saved_state() {
        let mut s = store(spec(&["true"], 600, None, RunOn::Firing));
        assert_eq!(runs(&mut s, 0, &[true, false]), [0]);
        // A restart: the state as saved, with the same actions.
        let saved = serde_json::to_string(s.lifecycle()).unwrap();
        let lifecycle: Lifecycle = serde_json::from_str(&saved).unwrap();
        let mut s = AlertStore::in_memory("web-1", "monitor", calm(), lifecycle);
        s.set_actions(std::sync::Arc::new(Actions::new(
            [(
                "restart_web".to_string(),
                spec(&["true"], 600, None, RunOn::Firing),
            )]
            .into(),
        )));
        assert_eq!(runs(&mut s, 100, &[true, false]), Vec::<i64>::new());
    }

    #[test]
    fn a_muted_alert_runs_nothing() {
        use crate::config::mute::{MaintenanceSpec, Matcher, MuteSpec};
        use crate::scheduler::schedule::{Schedule, Zone};
        let mut s = store(spec(&["true"], 0, None, RunOn::Repeat));
        s.set_mute(std::sync::Arc::new(crate::alerts::mute::Mute::new(
            MuteSpec {
                maintenance: vec![MaintenanceSpec {
                    name: "deploy".into(),
                    schedule: Schedule::parse("* * * * *").unwrap(),
                    duration: Duration::from_secs(3600),
                    matchers: vec![Matcher::parse("alertname=web_down").unwrap()],
                }],
                inhibit: vec![],
            },
            Zone::utc(),
            None,
        )));
        assert_eq!(runs(&mut s, 0, &[true; 13]), Vec::<i64>::new());
    }

    /// The window holds the firing notice back; when it ends the alert, still firing, is
    /// notified then, and its action runs with that notice.
    #[test]
    fn an_alert_still_firing_when_its_hold_ends_runs_its_action_then() {
        use crate::config::mute::{MaintenanceSpec, Matcher, MuteSpec};
        use crate::scheduler::schedule::{Schedule, Zone};
        let mut s = store(spec(&["true"], 0, None, RunOn::Firing));
        // t(0) is 11:06:40 UTC; the window is open 11:06:00-11:08:00, to t(80).
        s.set_mute(std::sync::Arc::new(crate::alerts::mute::Mute::new(
            MuteSpec {
                maintenance: vec![MaintenanceSpec {
                    name: "deploy".into(),
                    schedule: Schedule::parse("6 11 * * *").unwrap(),
                    duration: Duration::from_secs(120),
                    matchers: vec![Matcher::parse("alertname=web_down").unwrap()],
                }],
                inhibit: vec![],
            },
            Zone::utc(),
            None,
        )));
        assert_eq!(runs(&mut s, 0, &[true; 15]), [80]);
    }

    /// A failure is dated when the run ended and muted as the alert's notices are: a window
    /// that opened while the action ran keeps its notice back.
    #[test]
    fn a_failure_is_an_event_muted_as_its_alert_is() {
        use crate::config::mute::{MaintenanceSpec, Matcher, MuteSpec};
        use crate::scheduler::schedule::{Schedule, Zone};
        let mut s = store(spec(&["false"], 0, None, RunOn::Firing));
        s.step(t(0), &eval(true, "restart_web"), |_| true, |_| {});
        let run = s.take_runs().pop().expect("a run");
        let outcome = Outcome {
            action: "restart_web".into(),
            exit: Some(1),
            duration_ms: 2500,
            failure: None,
            first_line: "no such unit".into(),
        };
        let event = s.record(failed_event(&run, &outcome));
        assert_eq!(event.kind, EventKind::ActionFailed);
        assert_eq!(event.at, t(0) + chrono::Duration::milliseconds(2500));
        assert_eq!(event.name, "web_down");
        assert_eq!(event.action.as_deref(), Some(&outcome));
        assert!(
            event.explanation.starts_with(
                "action failed: restart_web: exit 1 in 2.5 s (no such unit); the alert: "
            ),
            "{}",
            event.explanation
        );
        assert_eq!(event.muted, None);
        // t(0) is 11:06:40 UTC: a window from 11:06 for an hour.
        s.set_mute(std::sync::Arc::new(crate::alerts::mute::Mute::new(
            MuteSpec {
                maintenance: vec![MaintenanceSpec {
                    name: "deploy".into(),
                    schedule: Schedule::parse("6 11 * * *").unwrap(),
                    duration: Duration::from_secs(3600),
                    matchers: vec![Matcher::parse("alertname=web_down").unwrap()],
                }],
                inhibit: vec![],
            },
            Zone::utc(),
            None,
        )));
        let event = s.record(failed_event(&run, &outcome));
        assert_eq!(event.muted.map(|m| m.name), Some("deploy".to_string()));
    }

    #[test]
    fn an_unknown_action_runs_nothing() {
        let mut s = store(spec(&["true"], 0, None, RunOn::Firing));
        s.step(t(0), &eval(true, "restart_db"), |_| true, |_| {});
        assert!(s.take_runs().is_empty());
    }

    fn run_of(argv: &[&str], timeout: Duration, env: Vec<(String, String)>) -> Run {
        let mut spec = spec(argv, 0, None, RunOn::Firing);
        spec.timeout = timeout;
        Run {
            action: "restart_web".into(),
            spec,
            job: "monitor".into(),
            alert: "web_down".into(),
            fingerprint: "fp".into(),
            spell: t(0),
            env,
            event: Box::new(AlertEvent::example(
                "web_down",
                EventKind::Firing,
                crate::vocab::Severity::Critical,
                t(0),
            )),
        }
    }

    #[tokio::test]
    async fn the_alert_reaches_the_command_in_its_environment() {
        let mut event = AlertEvent::example(
            "web_down",
            EventKind::Firing,
            crate::vocab::Severity::Critical,
            t(0),
        );
        event.labels.insert("probe.name".into(), "web 1".into());
        event.value = Some(97.5);
        let env = environment(&event);
        let run = run_of(
            &[
                "sh",
                "-c",
                "echo \"$ALERT_NAME|$ALERT_SEVERITY|$ALERT_VALUE|$ALERT_LABEL_PROBE_NAME|$ALERT_EXPLANATION\"",
            ],
            Duration::from_secs(30),
            env,
        );
        let outcome = execute(&run).await;
        assert_eq!(outcome.exit, Some(0), "{outcome:?}");
        assert_eq!(
            outcome.first_line,
            format!(
                "{}|{}|97.5|web 1|{}",
                event.name,
                event.severity.as_str(),
                event.explanation
            )
        );
        assert!(outcome.to_string().starts_with("restart_web: exit 0 in "));
    }

    /// Keys that differ only in punctuation (`a-b`, `a_b`) would both be `ALERT_LABEL_A_B`:
    /// it is left unset rather than holding one as if it were the other, and both reach the
    /// command by their exact keys in `ALERT_LABELS`.
    #[tokio::test]
    async fn labels_whose_names_collide_both_reach_the_command() {
        let mut event = AlertEvent::example(
            "web_down",
            EventKind::Firing,
            crate::vocab::Severity::Critical,
            t(0),
        );
        event.labels.insert("a-b".into(), "dash".into());
        event.labels.insert("a_b".into(), "underscore".into());
        event.labels.insert("svc".into(), "nginx".into());
        let run = run_of(
            &[
                "sh",
                "-c",
                "echo \"${ALERT_LABEL_A_B-unset}|$ALERT_LABEL_SVC|$ALERT_LABELS\"",
            ],
            Duration::from_secs(30),
            environment(&event),
        );
        let outcome = execute(&run).await;
        assert_eq!(outcome.exit, Some(0), "{outcome:?}");
        let (a_b, rest) = outcome.first_line.split_once('|').unwrap();
        let (svc, labels) = rest.split_once('|').unwrap();
        assert_eq!((a_b, svc), ("unset", "nginx"), "{}", outcome.first_line);
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_str(labels).unwrap();
        assert_eq!(labels["a-b"], "dash");
        assert_eq!(labels["a_b"], "underscore");
        assert_eq!(labels.len(), event.labels.len());
    }

    #[tokio::test]
    async fn a_failure_says_why() {
        let outcome = execute(&run_of(
            &["sh", "-c", "echo no such unit >&2; exit 5"],
            Duration::from_secs(30),
            vec![],
        ))
        .await;
        assert_eq!(outcome.exit, Some(5));
        assert_eq!(outcome.first_line, "no such unit");
        let outcome = execute(&run_of(
            &["/nonexistent/restart"],
            Duration::from_secs(30),
            vec![],
        ))
        .await;
        assert_eq!(outcome.exit, None);
        assert!(
            outcome
                .failure
                .unwrap()
                .starts_with("cannot run `/nonexistent/restart`")
        );
    }

    /// Real time: the command must outlive its timeout.
    #[tokio::test]
    async fn a_hung_action_is_killed_at_its_timeout_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 100 & echo $! > {}; sleep 100", pid_file.display());
        let outcome = execute(&run_of(
            &["sh", "-c", &script],
            Duration::from_millis(500),
            vec![],
        ))
        .await;
        assert_eq!(outcome.exit, None);
        assert_eq!(
            outcome.failure.as_deref(),
            Some("killed at its timeout of 0.5 s")
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The orphaned child is reaped by init once killed; a zombie still answers kill(0).
        let gone = |pid: i32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
        };
        let mut waited = 0;
        while !gone(pid) && waited < 100 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        }
        assert!(gone(pid), "the background sleep {pid} outlived its action");
    }
}
