//! The report's alerts of the window, from the alert log (daily files and archives): counts by
//! rule and severity, the noisiest alerts, the longest firing spells, time to resolve, flapping,
//! and what is still firing when the window ends.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alerts::event::{AlertEvent, EventKind};
use crate::store::daily::DailyFiles;
use crate::vocab::Severity;

/// Alerts that fired in the window, each counted once at the highest severity it reached.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SeverityCounts {
    pub critical: u64,
    pub warning: u64,
    pub info: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleCount {
    pub name: String,
    pub rule_file: String,
    pub severity: Severity,
    pub fired: u64,
    pub resolved: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Noisy {
    pub name: String,
    /// `mount=/var, device=sda`; empty without labels.
    pub labels: String,
    pub host: String,
    pub fired: u64,
    pub flapping: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Spell {
    pub name: String,
    pub labels: String,
    pub host: String,
    /// The highest severity the alert reached in the window (the one it had when the window
    /// began counts), so the counts, the rules and the spells agree (issue 28).
    pub severity: Severity,
    /// For an alert still firing, its severity at the window's end where that is lower than
    /// `severity` ("critical (now warning)"); `None` otherwise.
    pub severity_now: Option<Severity>,
    pub from: DateTime<Utc>,
    /// `None`: still firing when the window ended.
    pub to: Option<DateTime<Utc>>,
    pub seconds: i64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct AlertsSummary {
    /// Firing notices (a new problem each).
    pub fired: u64,
    pub resolved: u64,
    pub by_severity: SeverityCounts,
    pub by_rule: Vec<RuleCount>,
    /// Up to ten alerts that fired or flapped most.
    pub noisiest: Vec<Noisy>,
    /// Up to ten longest firing spells.
    pub longest: Vec<Spell>,
    pub still_firing: Vec<Spell>,
    pub flapping: Vec<Noisy>,
    /// Mean and median time from active to resolved, for alerts resolved in the window.
    pub mean_time_to_resolve_seconds: Option<i64>,
    pub median_time_to_resolve_seconds: Option<i64>,
    /// Lines of the alert log that could not be read.
    pub bad_lines: u64,
}

fn labels_text(event: &AlertEvent) -> String {
    event
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How far before a window the alert log is read for alerts still firing when it starts. A
/// firing alert repeats its notice every `repeat_interval` (4 h by default), so its latest
/// event lies well within this even when it began months ago.
const LOOKBACK_DAYS: i64 = 35;

/// Reads the alert events of `[from, to)` and sums them up. Alerts firing when the window
/// begins count from when they began: from the alert log before the window, and from
/// `firing_now` (the monitors' saved alert state, for a window ending now) for those the log
/// no longer holds.
pub fn summarize(
    files: &DailyFiles,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    firing_now: &[AlertEvent],
) -> AlertsSummary {
    let mut events = Vec::new();
    // Fingerprint → its latest event before the window, and when its firing spell began.
    let mut before: HashMap<String, (AlertEvent, Option<DateTime<Utc>>)> = HashMap::new();
    let mut bad_lines = 0;
    let last_day = (to - chrono::Duration::milliseconds(1)).date_naive();
    let first_day = (from - chrono::Duration::days(LOOKBACK_DAYS)).date_naive();
    files.for_each_line(first_day, last_day, |line| {
        match serde_json::from_str::<AlertEvent>(line) {
            // A failed action says nothing about whether its alert fires.
            Ok(event) if !event.kind.is_lifecycle() => {}
            Ok(event) if event.at >= from && event.at < to => events.push(event),
            Ok(event) if event.at < from => match before.get_mut(&event.fingerprint) {
                Some((latest, began)) if latest.at <= event.at => {
                    if event.kind == EventKind::Firing {
                        *began = Some(event.at);
                    }
                    *latest = event;
                }
                Some(_) => {}
                None => {
                    let began = (event.kind == EventKind::Firing).then_some(event.at);
                    before.insert(event.fingerprint.clone(), (event, began));
                }
            },
            Ok(_) => {}
            Err(_) => bad_lines += 1,
        }
        ControlFlow::Continue(())
    });
    events.sort_by_key(|e| e.at);
    let mut open_at_start: Vec<(DateTime<Utc>, AlertEvent)> = before
        .into_values()
        .filter(|(latest, _)| matches!(latest.kind, EventKind::Firing | EventKind::Repeat))
        .map(|(latest, began)| (began.unwrap_or(latest.active_since), latest))
        .collect();
    for event in firing_now {
        let known = open_at_start
            .iter()
            .any(|(_, e)| e.fingerprint == event.fingerprint)
            || events.iter().any(|e| e.fingerprint == event.fingerprint);
        if !known && event.active_since < from {
            open_at_start.push((event.active_since, event.clone()));
        }
    }
    let mut summary = from_events(&events, &open_at_start, firing_now, to);
    summary.bad_lines = bad_lines;
    summary
}

/// A firing spell in progress while the events are read.
struct OpenSpell<'a> {
    began: DateTime<Utc>,
    /// The event that opened it: name, labels and host.
    event: &'a AlertEvent,
    /// The highest severity in the window so far, and the latest.
    peak: Severity,
    now: Severity,
    /// Opened by a firing notice in the window: counted in `by_severity` when it ends.
    fired_here: bool,
}

impl OpenSpell<'_> {
    fn heard(&mut self, severity: Severity) {
        self.peak = self.peak.max(severity);
        self.now = severity;
    }
}

fn count(counts: &mut SeverityCounts, severity: Severity) {
    match severity {
        Severity::Critical => counts.critical += 1,
        Severity::Warning => counts.warning += 1,
        Severity::Info => counts.info += 1,
    }
}

/// The summary of events already in time order, with the alerts firing when the window began
/// (each with the start of its spell). `firing_now`, the monitors' saved alert state for a
/// window ending now, gives the severity each alert has at the end: a drop is logged only
/// with the next repeat, and a rise not at all while the alert flaps.
///
/// One severity rule for every part (issue 28 item 4): an alert's severity is the highest it
/// reached in the window, with the one it has at the end where that is lower.
pub fn from_events(
    events: &[AlertEvent],
    open_at_start: &[(DateTime<Utc>, AlertEvent)],
    firing_now: &[AlertEvent],
    to: DateTime<Utc>,
) -> AlertsSummary {
    let mut s = AlertsSummary::default();
    let mut rules: BTreeMap<String, RuleCount> = BTreeMap::new();
    let mut noisy: HashMap<String, Noisy> = HashMap::new();
    let mut open: HashMap<String, OpenSpell<'_>> = open_at_start
        .iter()
        .map(|(began, e)| {
            let spell = OpenSpell {
                began: *began,
                event: e,
                peak: e.severity,
                now: e.severity,
                fired_here: false,
            };
            (e.fingerprint.clone(), spell)
        })
        .collect();
    let mut spells: Vec<Spell> = Vec::new();
    let mut resolve_times: Vec<i64> = Vec::new();
    for e in events {
        // What this event says the alert's severity in the window was: a resolved notice
        // carries the highest of its whole spell, which may lie before the window.
        let severity = match e.kind {
            EventKind::Firing => {
                let spell = OpenSpell {
                    began: e.at,
                    event: e,
                    peak: e.severity,
                    now: e.severity,
                    fired_here: true,
                };
                // A second firing notice without a resolved one between: the first spell
                // still counts once.
                if let Some(lost) = open.insert(e.fingerprint.clone(), spell)
                    && lost.fired_here
                {
                    count(&mut s.by_severity, lost.peak);
                }
                e.severity
            }
            EventKind::Repeat => {
                // A repeat of an alert whose start the log no longer holds: it fired when it
                // became active.
                open.entry(e.fingerprint.clone())
                    .or_insert_with(|| OpenSpell {
                        began: e.active_since,
                        event: e,
                        peak: e.severity,
                        now: e.severity,
                        fired_here: false,
                    })
                    .heard(e.severity);
                e.severity
            }
            // Flapping holds notices back whichever way the alert goes, so it says nothing
            // about whether a spell is open; only about the severity of one that is.
            EventKind::Flapping => {
                if let Some(spell) = open.get_mut(&e.fingerprint) {
                    spell.heard(e.severity);
                }
                e.severity
            }
            // Within a spell the window holds whole, the notice's own peak counts too (a rise
            // while flapping is not logged).
            EventKind::Resolved => match open.get(&e.fingerprint) {
                Some(spell) if spell.fired_here => spell.peak.max(e.severity),
                Some(spell) => spell.peak,
                None => e.severity,
            },
            // A failed action is no step of the alert's life: the report lists it with the
            // actions taken.
            EventKind::ActionFailed => continue,
        };
        let rule = rules.entry(e.name.clone()).or_insert_with(|| RuleCount {
            name: e.name.clone(),
            rule_file: e.rule_file.clone(),
            severity,
            fired: 0,
            resolved: 0,
        });
        rule.severity = rule.severity.max(severity);
        let n = noisy.entry(e.fingerprint.clone()).or_insert_with(|| Noisy {
            name: e.name.clone(),
            labels: labels_text(e),
            host: e.host.clone(),
            fired: 0,
            flapping: 0,
        });
        match e.kind {
            EventKind::Firing => {
                s.fired += 1;
                rule.fired += 1;
                n.fired += 1;
            }
            EventKind::Resolved => {
                s.resolved += 1;
                rule.resolved += 1;
                resolve_times.push((e.at - e.active_since).num_seconds().max(0));
                // Fired before the window and not found there: its spell starts when it became
                // active.
                let start = match open.remove(&e.fingerprint) {
                    Some(spell) => {
                        if spell.fired_here {
                            count(&mut s.by_severity, severity);
                        }
                        spell.began
                    }
                    None => e.active_since,
                };
                spells.push(Spell {
                    name: e.name.clone(),
                    labels: labels_text(e),
                    host: e.host.clone(),
                    severity,
                    severity_now: None,
                    from: start,
                    to: Some(e.at),
                    seconds: (e.at - start).num_seconds().max(0),
                });
            }
            EventKind::Flapping => n.flapping += 1,
            EventKind::Repeat | EventKind::ActionFailed => {}
        }
    }
    for state in firing_now {
        if let Some(spell) = open.get_mut(&state.fingerprint) {
            spell.heard(state.severity);
            if let Some(rule) = rules.get_mut(&state.name) {
                rule.severity = rule.severity.max(state.severity);
            }
        }
    }
    for (_, spell) in open {
        if spell.fired_here {
            count(&mut s.by_severity, spell.peak);
        }
        let e = spell.event;
        let still = Spell {
            name: e.name.clone(),
            labels: labels_text(e),
            host: e.host.clone(),
            severity: spell.peak,
            severity_now: (spell.now != spell.peak).then_some(spell.now),
            from: spell.began,
            to: None,
            seconds: (to - spell.began).num_seconds().max(0),
        };
        s.still_firing.push(still.clone());
        spells.push(still);
    }
    s.still_firing
        .sort_by(|a, b| b.seconds.cmp(&a.seconds).then(a.name.cmp(&b.name)));
    spells.sort_by(|a, b| b.seconds.cmp(&a.seconds).then(a.name.cmp(&b.name)));
    spells.truncate(10);
    s.longest = spells;
    let mut by_rule: Vec<RuleCount> = rules.into_values().collect();
    by_rule.sort_by(|a, b| b.fired.cmp(&a.fired).then(a.name.cmp(&b.name)));
    s.by_rule = by_rule;
    let mut noisy: Vec<Noisy> = noisy
        .into_values()
        .filter(|n| n.fired + n.flapping > 0)
        .collect();
    noisy.sort_by(|a, b| {
        (b.fired + b.flapping)
            .cmp(&(a.fired + a.flapping))
            .then(a.name.cmp(&b.name))
            .then(a.labels.cmp(&b.labels))
    });
    s.flapping = noisy.iter().filter(|n| n.flapping > 0).cloned().collect();
    noisy.truncate(10);
    s.noisiest = noisy;
    if !resolve_times.is_empty() {
        s.mean_time_to_resolve_seconds =
            Some(resolve_times.iter().sum::<i64>() / resolve_times.len() as i64);
        resolve_times.sort_unstable();
        s.median_time_to_resolve_seconds = crate::vocab::rank::median(&resolve_times);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + minutes * 60, 0).unwrap()
    }

    fn event(
        name: &str,
        kind: EventKind,
        severity: Severity,
        minute: i64,
        active_since: i64,
    ) -> AlertEvent {
        let mut e = AlertEvent::example(name, kind, severity, at(minute));
        e.active_since = at(active_since);
        e
    }

    #[test]
    fn counts_spells_and_time_to_resolve() {
        let events = vec![
            // Firing before the window, resolved in it.
            event(
                "disk_full",
                EventKind::Resolved,
                Severity::Critical,
                30,
                -100,
            ),
            event("cpu_high", EventKind::Firing, Severity::Warning, 10, 5),
            event("cpu_high", EventKind::Resolved, Severity::Warning, 40, 5),
            event("cpu_high", EventKind::Firing, Severity::Critical, 50, 50),
            event("cpu_high", EventKind::Flapping, Severity::Critical, 55, 50),
        ];
        let s = from_events(&events, &[], &[], at(120));
        assert_eq!((s.fired, s.resolved), (2, 2));
        assert_eq!((s.by_severity.critical, s.by_severity.warning), (1, 1));
        assert_eq!(s.by_rule[0].name, "cpu_high");
        assert_eq!(s.by_rule[0].fired, 2);
        assert_eq!(s.by_rule[0].severity, Severity::Critical);
        // disk_full from its true start (-100) to 30, cpu_high from 50 to the window's end
        // (70 min), cpu_high 10-40.
        let longest: Vec<(&str, i64, bool)> = s
            .longest
            .iter()
            .map(|sp| (sp.name.as_str(), sp.seconds / 60, sp.to.is_none()))
            .collect();
        assert_eq!(
            longest,
            [
                ("disk_full", 130, false),
                ("cpu_high", 70, true),
                ("cpu_high", 30, false),
            ]
        );
        assert_eq!(s.still_firing.len(), 1);
        // Resolved after 35 min (active at 5) and 130 min (active at -100).
        assert_eq!(s.mean_time_to_resolve_seconds, Some((35 + 130) * 60 / 2));
        assert_eq!(
            s.median_time_to_resolve_seconds,
            Some((35 + 130) * 60 / 2),
            "an even count's median is the mean of its two middles"
        );
        assert_eq!(s.flapping.len(), 1);
        assert_eq!(s.noisiest[0].name, "cpu_high");
        assert_eq!(s.noisiest[0].fired, 2);
    }

    /// An alert that rose from warning to critical (`cpu_high`) and one that fell from
    /// critical to warning (`disk_full`), both still firing, as the lifecycle logs them: a
    /// rise at once as a repeat, a fall with the next repeat.
    fn rise_and_fall() -> Vec<AlertEvent> {
        vec![
            event("cpu_high", EventKind::Firing, Severity::Warning, 10, 5),
            event("cpu_high", EventKind::Repeat, Severity::Critical, 30, 5),
            event("disk_full", EventKind::Firing, Severity::Critical, 20, 15),
            event("disk_full", EventKind::Repeat, Severity::Warning, 80, 15),
        ]
    }

    fn severities(s: &AlertsSummary) -> Vec<(String, Severity, Option<Severity>)> {
        let mut still: Vec<_> = s
            .still_firing
            .iter()
            .map(|sp| (sp.name.clone(), sp.severity, sp.severity_now))
            .collect();
        still.sort();
        still
    }

    #[test]
    fn counts_rules_and_spells_agree_on_the_highest_severity_reached() {
        let s = from_events(&rise_and_fall(), &[], &[], at(120));
        let counts = &s.by_severity;
        assert_eq!(
            (counts.critical, counts.warning, counts.info),
            (2, 0, 0),
            "both reached critical"
        );
        let rules: Vec<(&str, Severity)> = s
            .by_rule
            .iter()
            .map(|r| (r.name.as_str(), r.severity))
            .collect();
        assert_eq!(
            rules,
            [
                ("cpu_high", Severity::Critical),
                ("disk_full", Severity::Critical)
            ]
        );
        assert_eq!(
            severities(&s),
            [
                ("cpu_high".into(), Severity::Critical, None),
                (
                    "disk_full".into(),
                    Severity::Critical,
                    Some(Severity::Warning)
                ),
            ],
            "the highest, and the one at the end where lower"
        );
        assert!(s.longest.iter().all(|sp| sp.severity == Severity::Critical));
    }

    #[test]
    fn a_resolved_spell_counts_at_its_highest_in_the_window_and_info_counts_too() {
        let mut events = rise_and_fall();
        events.push(event(
            "cpu_high",
            EventKind::Resolved,
            Severity::Critical,
            90,
            5,
        ));
        events.push(event(
            "backup_late",
            EventKind::Firing,
            Severity::Info,
            40,
            40,
        ));
        // Critical before the window and warning since: the resolved notice carries the
        // critical of before the window, which is not this window's.
        let mut before = event("swap_high", EventKind::Repeat, Severity::Warning, -30, -200);
        before.fingerprint = "swap".into();
        let mut resolved = event(
            "swap_high",
            EventKind::Resolved,
            Severity::Critical,
            50,
            -200,
        );
        resolved.fingerprint = "swap".into();
        events.push(resolved);
        events.sort_by_key(|e| e.at);
        let s = from_events(&events, &[(at(-200), before)], &[], at(120));
        let counts = &s.by_severity;
        assert_eq!((counts.critical, counts.warning, counts.info), (2, 0, 1));
        let spell = |name: &str| s.longest.iter().find(|sp| sp.name == name).unwrap();
        assert_eq!(spell("cpu_high").severity, Severity::Critical);
        assert_eq!(spell("swap_high").severity, Severity::Warning);
        assert_eq!(spell("swap_high").severity_now, None);
        let swap = s.by_rule.iter().find(|r| r.name == "swap_high").unwrap();
        assert_eq!(swap.severity, Severity::Warning);
    }

    #[test]
    fn a_flapping_notice_after_the_resolved_one_reopens_nothing() {
        let events = vec![
            event("cpu_high", EventKind::Firing, Severity::Warning, 10, 5),
            event("cpu_high", EventKind::Resolved, Severity::Warning, 20, 5),
            event("cpu_high", EventKind::Flapping, Severity::Critical, 30, 5),
        ];
        let s = from_events(&events, &[], &[], at(120));
        assert!(s.still_firing.is_empty(), "{:?}", s.still_firing);
        assert_eq!(s.flapping.len(), 1);
    }

    #[test]
    fn the_saved_state_gives_the_severity_at_the_end() {
        // cpu_high fell back to warning after its last repeat: only the saved state knows.
        let mut now = event("cpu_high", EventKind::Repeat, Severity::Warning, 120, 5);
        now.active_since = at(5);
        let s = from_events(&rise_and_fall(), &[], &[now], at(120));
        assert_eq!(
            severities(&s)[0],
            (
                "cpu_high".into(),
                Severity::Critical,
                Some(Severity::Warning)
            )
        );
    }

    #[test]
    fn an_alert_the_saved_state_has_firing_counts_when_the_log_no_longer_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = DailyFiles {
            data_dir: dir.path().to_path_buf(),
            kind: "alerts".into(),
            archive_dirs: Vec::new(),
        };
        let began = at(-60 * 24 * 60);
        let mut firing =
            AlertEvent::example("disk_full", EventKind::Repeat, Severity::Critical, at(120));
        firing.active_since = began;
        let s = summarize(&files, at(0), at(120), std::slice::from_ref(&firing));
        assert_eq!(s.still_firing.len(), 1);
        assert_eq!(s.still_firing[0].from, began);
        assert_eq!(s.fired, 0, "it fired before the window");
        // Began inside the window without a firing event in the log: not invented.
        firing.active_since = at(10);
        assert!(
            summarize(&files, at(0), at(120), &[firing])
                .still_firing
                .is_empty()
        );
    }
}
