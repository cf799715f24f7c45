//! Alerts of a monitor job: their lifecycle, their state on disk (`state/alerts/<job>.json`,
//! restored on start so a restart neither loses a firing alert nor sends it again), the alert
//! log (`alerts/<UTC day>.jsonl`, every event), and the small API through which a notifier
//! attaches facts (a ServiceNow incident) that later events carry.
//!
//! A tick with events is a transaction with a write-ahead record: its events and the state
//! after them go to `state/alerts/<job>.journal` (fsynced) before anything else; then the
//! alert log, the outbox and the state file are written, and the journal is removed. A crash
//! anywhere in between leaves the journal, and the next start finishes the tick from it:
//! events the alert log or an outbox already has (by event id) are not written again. So each
//! transition is logged and queued exactly once, whatever step a `kill -9` interrupts.

pub mod action;
pub mod event;
pub mod lifecycle;
pub mod mute;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::config::FlapPolicy;
use crate::rules::Evaluation;
use crate::store::atomic;
use crate::store::daily::DailyWriter;
use event::AlertEvent;
use lifecycle::{Lifecycle, Origin, Phase};

/// One job's alerts, shared by its monitor (each tick) and the notifiers (attaching facts).
pub type SharedAlerts = Arc<Mutex<AlertStore>>;

pub struct AlertStore {
    host: String,
    job: String,
    flap: FlapPolicy,
    lifecycle: Lifecycle,
    /// Where state is saved and events logged; `None` for dry runs and rule tests.
    disk: Option<Disk>,
    saved: Option<String>,
    /// Events of a tick a crash interrupted, found in its journal at start: to be logged and
    /// queued where they are not yet ([`AlertStore::take_unfinished`]).
    unfinished: Vec<AlertEvent>,
    /// What keeps notices back (maintenance, silences, inhibition); `None`: nothing does.
    mute: Option<Arc<mute::Mute>>,
    /// The `actions:` an alert may run; `None` for dry runs and rule tests. Replay sets them to
    /// list the runs its events call for; only the scheduler starts one.
    actions: Option<Arc<action::Actions>>,
    /// Runs the last steps called for, for the caller to start ([`AlertStore::take_runs`]).
    runs: Vec<action::Run>,
    /// Tells this store's firing alerts on the inhibition board from those of a store a
    /// reload replaced ([`mute::Mute::post`]).
    id: u64,
}

/// Ids of stores, one each.
fn next_store_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Drop for AlertStore {
    /// A job that is gone inhibits nothing any more.
    fn drop(&mut self) {
        if let Some(mute) = &self.mute {
            mute.withdraw(self.id, &self.job);
        }
    }
}

struct Disk {
    state: PathBuf,
    log: DailyWriter,
}

impl Disk {
    /// Appends `event` to the alert log; a failure is warned of, not the tick's.
    fn append(&mut self, job: &str, event: &AlertEvent) {
        match serde_json::to_string(event) {
            Ok(line) => {
                if let Err(e) = self.log.append(event.at, &line) {
                    warn!(job = %job, error = %e, "cannot append to the alert log");
                }
            }
            Err(e) => warn!(job = %job, error = %e, "cannot encode an alert event"),
        }
    }
}

/// A tick's events and the state after them, written before either is acted on.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Journal {
    events: Vec<AlertEvent>,
    state: Lifecycle,
}

fn journal_path(state: &Path) -> PathBuf {
    state.with_extension("journal")
}

pub fn state_path(data_dir: &Path, job: &str) -> PathBuf {
    data_dir
        .join("state")
        .join("alerts")
        .join(format!("{job}.json"))
}

/// A job's saved alert state, for a dry run to start from; empty when there is none.
pub fn read_state(data_dir: &Path, job: &str) -> Lifecycle {
    std::fs::read(state_path(data_dir, job))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

impl AlertStore {
    /// Opens a job's alerts, restoring saved state. A state file that cannot be read is kept
    /// aside (`.corrupt`) and said loudly; alerts start afresh rather than not at all.
    pub fn open(data_dir: &Path, job: &str, host: &str, flap: FlapPolicy) -> AlertStore {
        let state = state_path(data_dir, job);
        let lifecycle = match std::fs::read(&state) {
            Ok(bytes) => match serde_json::from_slice::<Lifecycle>(&bytes) {
                Ok(lifecycle) => lifecycle,
                Err(e) => {
                    let aside = state.with_extension("json.corrupt");
                    let _ = std::fs::rename(&state, &aside);
                    warn!(job, file = %state.display(), kept_as = %aside.display(), error = %e, "alert state could not be read; starting afresh");
                    Lifecycle::default()
                }
            },
            Err(_) => Lifecycle::default(),
        };
        let saved = serde_json::to_string(&significant(&lifecycle)).ok();
        let mut store = AlertStore {
            host: host.to_string(),
            job: job.to_string(),
            flap,
            lifecycle,
            disk: Some(Disk {
                state,
                log: DailyWriter::new(data_dir.join("alerts")),
            }),
            saved,
            unfinished: Vec::new(),
            mute: None,
            actions: None,
            runs: Vec::new(),
            id: next_store_id(),
        };
        store.recover(data_dir);
        store
    }

    /// Takes over a tick a crash interrupted: its state is the newest, and its events go to
    /// the alert log now unless already there; the outbox is the caller's (it has the
    /// notifiers), through [`AlertStore::take_unfinished`].
    fn recover(&mut self, data_dir: &Path) {
        let Some(disk) = &mut self.disk else { return };
        let path = journal_path(&disk.state);
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let journal = match serde_json::from_slice::<Journal>(&bytes) {
            Ok(journal) => journal,
            Err(e) => {
                // Torn while being written: the tick it began had not acted yet.
                warn!(job = %self.job, file = %path.display(), error = %e, "an unfinished alert journal could not be read; its tick had not been acted on");
                let _ = std::fs::remove_file(&path);
                return;
            }
        };
        let logged = logged_ids(&data_dir.join("alerts"), &journal.events);
        for event in journal.events.iter().filter(|e| !logged.contains(&e.id)) {
            disk.append(&self.job, event);
        }
        warn!(job = %self.job, events = journal.events.len(), "finishing the alert tick a stop interrupted");
        self.lifecycle = journal.state;
        self.saved = None;
        self.unfinished = journal.events;
        if self.unfinished.is_empty() {
            self.finish_tick();
        }
    }

    /// Events of an interrupted tick, for the outbox (which skips those it has); the tick is
    /// finished once the caller has queued them: [`AlertStore::finish_tick`].
    pub fn take_unfinished(&mut self) -> Vec<AlertEvent> {
        std::mem::take(&mut self.unfinished)
    }

    /// Saves the state and removes the journal: the tick is done.
    pub fn finish_tick(&mut self) {
        let saved = self.save();
        crate::failpoint::hit("after-state");
        // Until the state is saved, the journal is what a restart must start from.
        if let Some(disk) = &self.disk
            && saved
        {
            let _ = std::fs::remove_file(journal_path(&disk.state));
        }
    }

    /// Alerts that live in memory only: dry runs and rule tests.
    pub fn in_memory(host: &str, job: &str, flap: FlapPolicy, lifecycle: Lifecycle) -> AlertStore {
        AlertStore {
            host: host.to_string(),
            job: job.to_string(),
            flap,
            lifecycle,
            disk: None,
            saved: None,
            unfinished: Vec::new(),
            mute: None,
            actions: None,
            runs: Vec::new(),
            id: next_store_id(),
        }
    }

    /// Sets what keeps this job's notices back; each step marks its events with it.
    pub fn set_mute(&mut self, mute: Arc<mute::Mute>) {
        self.mute = (!mute.is_empty()).then_some(mute);
        // The alerts restored at start inhibit other jobs' before this job's first tick.
        if let Some(mute) = &self.mute {
            let origin = Origin {
                host: &self.host,
                job: &self.job,
            };
            mute.post(self.id, &self.lifecycle, &origin);
        }
    }

    /// Sets the actions this job's alerts may run: each step picks the runs its events call
    /// for ([`AlertStore::take_runs`]).
    pub fn set_actions(&mut self, actions: Arc<action::Actions>) {
        self.actions = (!actions.is_empty()).then_some(actions);
    }

    /// The actions the steps so far called for and nobody started yet.
    pub fn take_runs(&mut self) -> Vec<action::Run> {
        std::mem::take(&mut self.runs)
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Applies one tick: appends every event to the alert log, hands them to `sink` (the
    /// outbox), then saves the state when it changed.
    pub fn step(
        &mut self,
        now: DateTime<Utc>,
        evaluation: &Evaluation,
        present: impl Fn(&str) -> bool,
        sink: impl FnOnce(&[AlertEvent]),
    ) -> Vec<AlertEvent> {
        let origin = Origin {
            host: &self.host,
            job: &self.job,
        };
        let mut events = self
            .lifecycle
            .step(now, evaluation, present, &origin, self.flap);
        if let Some(mute) = &self.mute {
            if !events.is_empty() || !self.lifecycle.held.is_empty() {
                mute.apply(&mut self.lifecycle, &mut events, now, &origin);
            }
            // Every step: a flapping alert changes phase without an event.
            mute.post(self.id, &self.lifecycle, &origin);
        }
        if let Some(actions) = &self.actions
            && !events.is_empty()
        {
            let runs = actions.decide(&mut self.lifecycle, &events, now);
            self.runs.extend(runs);
        }
        if let Some(disk) = &mut self.disk {
            if !events.is_empty() {
                let journal = Journal {
                    events,
                    state: self.lifecycle.clone(),
                };
                let written = serde_json::to_vec(&journal)
                    .map_err(std::io::Error::other)
                    .and_then(|bytes| atomic::write(&journal_path(&disk.state), &bytes));
                if let Err(e) = written {
                    warn!(job = %self.job, error = %e, "cannot write the alert journal; a crash in this tick could repeat or lose its notices");
                }
                events = journal.events;
                crate::failpoint::hit("after-journal");
            }
            for event in &events {
                disk.append(&self.job, event);
            }
        }
        crate::failpoint::hit("after-alert-log");
        sink(&events);
        crate::failpoint::hit("after-outbox");
        if events.is_empty() {
            self.save();
        } else {
            self.finish_tick();
        }
        events
    }

    /// Logs an event that comes off the tick (an action that failed), marked with what mutes
    /// its alert now, if anything; returns it as logged, for the notifiers.
    pub fn record(&mut self, mut event: AlertEvent) -> AlertEvent {
        let origin = Origin {
            host: &self.host,
            job: &self.job,
        };
        if let Some(mute) = &self.mute {
            event.muted = mute
                .event_muted(&self.lifecycle, &event, event.at, &origin)
                .map(Box::new);
        }
        if let Some(disk) = &mut self.disk {
            disk.append(&self.job, &event);
        }
        event
    }

    /// Attaches a fact to an alert's firing spell (`spell` = the event's `active_since`) for
    /// its later events, saved at once; `false` if that spell is over.
    pub fn attach(
        &mut self,
        fingerprint: &str,
        spell: DateTime<Utc>,
        key: &str,
        value: serde_json::Value,
    ) -> bool {
        let known = self.lifecycle.attach(fingerprint, spell, key, value);
        if known {
            self.saved = None;
            self.save();
        }
        known
    }

    /// Writes the state if something that matters after a restart changed (not every tick's
    /// latest value); `false` if it could not.
    fn save(&mut self) -> bool {
        let Some(disk) = &self.disk else { return true };
        let Ok(now) = serde_json::to_string(&significant(&self.lifecycle)) else {
            return false;
        };
        if self.saved.as_deref() == Some(now.as_str()) {
            return true;
        }
        let result = serde_json::to_vec_pretty(&self.lifecycle)
            .map_err(std::io::Error::other)
            .and_then(|bytes| atomic::write(&disk.state, &bytes));
        match result {
            Ok(()) => {
                self.saved = Some(now);
                true
            }
            Err(e) => {
                warn!(job = %self.job, file = %disk.state.display(), error = %e, "cannot save alert state; will retry next tick");
                false
            }
        }
    }

    /// Every firing alert the receivers were told of, as it stands now (a `repeat`), for
    /// destinations that must be told again after a restart (Alertmanager's keepalive). One a
    /// window, a silence or inhibition holds before they heard of it is left out: its firing
    /// notice goes when the hold ends, not at the restart.
    pub fn firing_events(&self, now: DateTime<Utc>) -> Vec<AlertEvent> {
        let origin = Origin {
            host: &self.host,
            job: &self.job,
        };
        let held = &self.lifecycle.held;
        self.lifecycle
            .firing()
            .filter(|state| held.get(&state.fingerprint).is_none_or(|h| h.told))
            .map(|state| state.event(crate::alerts::event::EventKind::Repeat, now, &origin))
            .collect()
    }

    pub fn firing_count(&self) -> usize {
        self.lifecycle
            .states
            .values()
            .filter(|s| s.phase == Phase::Firing)
            .count()
    }
}

/// Which of `events` the alert log already has: their day files (and the next day's, for a
/// tick at midnight) searched for whole entries with their ids.
fn logged_ids(dir: &Path, events: &[AlertEvent]) -> std::collections::HashSet<String> {
    let mut days: Vec<_> = events
        .iter()
        .flat_map(|e| [e.at.date_naive(), e.at.date_naive() + chrono::Days::new(1)])
        .collect();
    days.sort();
    days.dedup();
    let mut found = std::collections::HashSet::new();
    for day in days {
        // Lossy: a torn line may end inside a multi-byte character, which must not hide the
        // whole day's entries.
        let Ok(bytes) = std::fs::read(dir.join(format!("{day}.jsonl"))) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        // Only whole entries count: a torn line (a write cut short, fenced off by the next
        // append) may still hold an event's id, and that event must be written again.
        for line in text.lines() {
            for event in events.iter().filter(|e| event::holds_event(line, &e.id)) {
                if serde_json::from_str::<AlertEvent>(line)
                    .is_ok_and(|logged| logged.id == event.id)
                {
                    found.insert(event.id.clone());
                }
            }
        }
    }
    found
}

/// The parts of the state a restart must not lose.
fn significant(lifecycle: &Lifecycle) -> serde_json::Value {
    let held = serde_json::to_value(&lifecycle.held).unwrap_or_default();
    let action_runs = serde_json::to_value(&lifecycle.action_runs).unwrap_or_default();
    serde_json::Value::Array(
        [held, action_runs]
            .into_iter()
            .chain(lifecycle.states.values().map(|s| {
                serde_json::json!([
                    s.fingerprint,
                    s.phase,
                    s.pending_since,
                    s.firing_since,
                    s.notified,
                    s.last_notified,
                    s.flapping,
                    s.transitions,
                    s.facts
                ])
            }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleOutcome;
    use crate::rules::activation::{Activation, OnMissing};
    use event::EventKind;
    use std::collections::BTreeSet;
    use std::time::Duration;

    const RULE: &str = "rules/cpu.rhai";

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + secs, 0).unwrap()
    }

    fn activation(active: bool, value: Option<f64>) -> Activation {
        let mut a = Activation::from_map("cpu_high", RULE.into(), &rhai::Map::new()).unwrap();
        a.active = active;
        a.value = value;
        a.threshold = Some(85.0);
        a.metric = Some("cpu.total.usage_percent".into());
        a
    }

    fn eval(activations: Vec<Activation>, missing: &[&str], error: bool) -> Evaluation {
        Evaluation {
            activations,
            outcomes: vec![RuleOutcome {
                rule_file: RULE.into(),
                missing: missing
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<BTreeSet<_>>(),
                error: error.then(|| "boom".to_string()),
            }],
        }
    }

    fn store() -> AlertStore {
        AlertStore::in_memory(
            "web-1",
            "monitor",
            FlapPolicy::default(),
            Lifecycle::default(),
        )
    }

    /// Runs ticks every 10 s; `active[i]` says whether tick i raises the alert.
    fn run(
        store: &mut AlertStore,
        start: i64,
        pattern: &[bool],
        tweak: impl Fn(&mut Activation),
    ) -> Vec<(i64, EventKind)> {
        let mut out = Vec::new();
        for (i, active) in pattern.iter().enumerate() {
            let at = start + i as i64 * 10;
            let acts = if *active {
                let mut a = activation(true, Some(93.0));
                tweak(&mut a);
                vec![a]
            } else {
                vec![]
            };
            for e in store.step(t(at), &eval(acts, &[], false), |_| true, |_| {}) {
                out.push((at, e.kind));
            }
        }
        out
    }

    #[test]
    fn fires_once_repeats_on_interval_and_resolves_once() {
        let mut s = store();
        let events = run(&mut s, 0, &[true; 8], |a| {
            a.pending_for = Duration::from_secs(20);
            a.repeat_interval = Duration::from_secs(30);
        });
        // Pending at 0, firing at 20, repeats at 50 (30 s later).
        assert_eq!(events, [(20, EventKind::Firing), (50, EventKind::Repeat)]);
        let events = run(&mut s, 80, &[false, false], |_| {});
        assert_eq!(events, [(80, EventKind::Resolved)]);
        assert!(
            s.lifecycle()
                .states
                .values()
                .all(|st| st.phase == Phase::Inactive)
        );
    }

    #[test]
    fn pending_that_does_not_hold_sends_nothing() {
        let mut s = store();
        let events = run(&mut s, 0, &[true, false, true, false], |a| {
            a.pending_for = Duration::from_secs(60)
        });
        assert!(events.is_empty());
    }

    #[test]
    fn keep_firing_for_bridges_short_gaps() {
        let mut s = store();
        let events = run(
            &mut s,
            0,
            &[true, false, false, true, false, false, false, false],
            |a| a.keep_firing_for = Duration::from_secs(30),
        );
        // Last active at 30; quiet for 30 s at 60.
        assert_eq!(events, [(0, EventKind::Firing), (60, EventKind::Resolved)]);
    }

    #[test]
    fn clear_when_holds_until_the_value_is_low_enough() {
        let mut s = store();
        let mut events = Vec::new();
        // Fires at 90, stays through 80 (not active, but not clear either), clears at 70.
        for (i, v) in [90.0, 80.0, 80.0, 70.0].iter().enumerate() {
            let mut a = activation(*v > 85.0, Some(*v));
            a.clear_when = Some(*v < 75.0);
            for e in s.step(
                t(i as i64 * 10),
                &eval(vec![a], &[], false),
                |_| true,
                |_| {},
            ) {
                events.push((i as i64 * 10, e.kind, e.explanation));
            }
        }
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].0, events[0].1), (0, EventKind::Firing));
        assert_eq!(events[0].2, "cpu.total.usage_percent 90 > 85 for 0s");
        assert_eq!((events[1].0, events[1].1), (30, EventKind::Resolved));
        assert_eq!(
            events[1].2,
            "resolved after firing for 30s; last seen: cpu.total.usage_percent 70 > 85"
        );
    }

    #[test]
    fn a_failing_rule_changes_nothing() {
        let mut s = store();
        run(&mut s, 0, &[true], |_| {});
        let events = s.step(t(10), &eval(vec![], &[], true), |_| true, |_| {});
        assert!(events.is_empty());
        assert_eq!(s.firing_count(), 1);
    }

    #[test]
    fn missing_data_follows_on_missing() {
        // keep (default): a firing alert stays firing while its metric is gone.
        let mut s = store();
        run(&mut s, 0, &[true], |_| {});
        assert!(
            s.step(t(10), &eval(vec![], &[], false), |_| false, |_| {})
                .is_empty()
        );
        assert_eq!(s.firing_count(), 1);
        // resolve: it resolves at once.
        let mut s = store();
        run(&mut s, 0, &[true], |a| a.on_missing = OnMissing::Resolve);
        let events = s.step(t(10), &eval(vec![], &[], false), |_| false, |_| {});
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventKind::Resolved]
        );
        // alert: data that stops coming is itself the problem.
        let mut s = store();
        let mut a = activation(false, None);
        a.value_missing = true;
        a.on_missing = OnMissing::Alert;
        let events = s.step(
            t(0),
            &eval(vec![a], &["cpu.total.usage_percent"], false),
            |_| false,
            |_| {},
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Firing);
        assert!(
            events[0]
                .explanation
                .starts_with("no data for cpu.total.usage_percent since "),
            "{}",
            events[0].explanation
        );
    }

    #[test]
    fn flapping_is_said_once_and_held_until_stable() {
        let mut s = store();
        let pattern: Vec<bool> = (0..12).map(|i| i % 2 == 0).collect();
        let events = run(&mut s, 0, &pattern, |_| {});
        let kinds: Vec<EventKind> = events.iter().map(|e| e.1).collect();
        // Firing, resolved, firing, resolved, then the fifth change makes it flap.
        assert_eq!(
            kinds,
            [
                EventKind::Firing,
                EventKind::Resolved,
                EventKind::Firing,
                EventKind::Resolved,
                EventKind::Flapping
            ]
        );
        // Quiet (inactive) for a whole window: it settled where the last notice left it.
        let events = run(&mut s, 200, &[false; 200], |_| {});
        assert!(events.is_empty(), "{events:?}");
        assert!(s.lifecycle().states.is_empty());
    }

    #[test]
    fn flapping_that_settles_firing_says_so() {
        let mut s = store();
        let mut pattern: Vec<bool> = (0..11).map(|i| i % 2 == 0).collect();
        pattern.extend([true; 190]);
        let events = run(&mut s, 0, &pattern, |_| {});
        let kinds: Vec<EventKind> = events.iter().map(|e| e.1).collect();
        assert_eq!(kinds.last(), Some(&EventKind::Firing), "{kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| **k == EventKind::Flapping).count(),
            1
        );
        // 30 minutes after the last change, not before.
        let settled = events.last().unwrap().0;
        assert!((1900..=1910).contains(&settled), "{settled}");
    }

    #[test]
    fn state_survives_a_restart_without_resending() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = AlertStore::open(dir.path(), "monitor", "web-1", FlapPolicy::default());
        assert_eq!(run(&mut s, 0, &[true], |_| {}).len(), 1);
        drop(s);
        let mut again = AlertStore::open(dir.path(), "monitor", "web-1", FlapPolicy::default());
        assert_eq!(again.firing_count(), 1);
        assert!(run(&mut again, 10, &[true, true], |_| {}).is_empty());
        let log = std::fs::read_to_string(
            dir.path()
                .join(format!("alerts/{}.jsonl", t(0).date_naive())),
        )
        .unwrap();
        assert_eq!(log.lines().count(), 1);
        let event: AlertEvent = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        assert_eq!(
            (event.kind, event.name.as_str(), event.host.as_str()),
            (EventKind::Firing, "cpu_high", "web-1")
        );
    }

    #[test]
    fn attached_facts_ride_on_later_events() {
        let mut s = store();
        run(&mut s, 0, &[true], |_| {});
        let fp = s.lifecycle().states.keys().next().unwrap().clone();
        assert!(s.attach(
            &fp,
            t(0),
            "incident",
            serde_json::json!({"number": "INC0010001", "sys_id": "abc"})
        ));
        let events = s.step(t(10), &eval(vec![], &[], false), |_| true, |_| {});
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Resolved);
        assert_eq!(
            events[0].incident,
            Some(event::Incident {
                number: "INC0010001".into(),
                sys_id: "abc".into()
            })
        );
        assert!(!s.attach("unknown", t(0), "incident", serde_json::json!({})));
    }

    #[test]
    fn each_firing_spell_has_its_own_facts() {
        let mut s = store();
        let incident = |n: &str| serde_json::json!({"number": n, "sys_id": n});
        let first = s.step(
            t(0),
            &eval(vec![activation(true, Some(93.0))], &[], false),
            |_| true,
            |_| {},
        );
        assert_eq!(first[0].kind, EventKind::Firing);
        let fp = first[0].fingerprint.clone();
        assert!(s.attach(&fp, first[0].active_since, "incident", incident("INC0")));
        let resolved = s.step(t(10), &eval(vec![], &[], false), |_| true, |_| {});
        assert_eq!(
            resolved[0].incident.as_ref().map(|i| i.number.as_str()),
            Some("INC0")
        );
        // The second spell's notices do not show the first spell's incident...
        let second = s.step(
            t(20),
            &eval(vec![activation(true, Some(93.0))], &[], false),
            |_| true,
            |_| {},
        );
        assert_eq!(second[0].kind, EventKind::Firing);
        assert_eq!(second[0].incident, None);
        // ... a late answer about the first spell is not taken for the second's ...
        assert!(!s.attach(&fp, first[0].active_since, "incident", incident("INC0")));
        // ... and its resolve carries its own incident, or none to look up by correlation.
        assert!(s.attach(&fp, second[0].active_since, "incident", incident("INC2")));
        let resolved = s.step(t(30), &eval(vec![], &[], false), |_| true, |_| {});
        assert_eq!(
            resolved[0].incident.as_ref().map(|i| i.number.as_str()),
            Some("INC2")
        );
        // Nothing attaches to a spell that is over.
        assert!(!s.attach(&fp, second[0].active_since, "incident", incident("INC3")));
    }
}
