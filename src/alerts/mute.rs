//! Whether an alert's notice is sent now, and if not, what keeps it back: a maintenance window
//! of the jobs file, a silence (`runner silence`, kept in `state/silences.json`), or a firing
//! alert that inhibits it. It sits between the lifecycle and the alert log: every event is
//! logged with what muted it, muted ones are not queued for notifiers, and when the hold ends
//! the receivers are told what changed meanwhile (still firing: a firing notice; fired and
//! resolved inside: nothing).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alerts::event::{AlertEvent, EventKind, Held, Muted, MutedBy};
use crate::alerts::lifecycle::{AlertState, Lifecycle, Origin, Phase};
use crate::config::mute::{Matcher, MuteSpec, field};
use crate::scheduler::schedule::Zone;
use crate::store::atomic;

/// A silence: alerts every matcher matches are muted from `starts_at` until `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// As written: `alertname=disk_full`, `mount=~/var.*`.
    pub matchers: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

impl Silence {
    pub fn active(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }

    /// What it is at `at`, as `runner silence list` and the silences API say it: `invalid`
    /// (the scheduler ignores it), `active`, `pending` (starts later) or `expired`.
    pub fn state(&self, at: DateTime<Utc>) -> &'static str {
        if self.parsed().is_err() {
            "invalid"
        } else if self.active(at) {
            "active"
        } else if self.starts_at > at {
            "pending"
        } else {
            "expired"
        }
    }

    /// Whether it is still kept in the file and listed: until a day after it ends, so one that
    /// just ended can still be seen.
    pub fn kept(&self, at: DateTime<Utc>) -> bool {
        self.ends_at + chrono::Duration::days(1) > at
    }

    /// Its matchers, or why it holds nothing. One without matchers (only a hand-edited file
    /// has one: `add` refuses it) would silence every alert; as Alertmanager, runner refuses
    /// it rather than go quiet.
    pub fn parsed(&self) -> Result<Vec<Matcher>, String> {
        if self.matchers.is_empty() {
            return Err("it has no matchers, so it would silence every alert".into());
        }
        self.matchers.iter().map(|m| Matcher::parse(m)).collect()
    }
}

/// Says once per file, silence and reason (each job of a scheduler keeps its own cache of the
/// file) that a silence is left out.
fn warn_left_out(data_dir: &Path, silence: &Silence, why: &str) {
    static SAID: Mutex<Vec<(PathBuf, String, String)>> = Mutex::new(Vec::new());
    let key = (silences_path(data_dir), silence.id.clone(), why.to_string());
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if said.contains(&key) {
        return;
    }
    tracing::warn!(
        file = %key.0.display(),
        silence = %silence.id,
        "silence ignored: {why}"
    );
    said.push(key);
}

pub fn silences_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("silences.json")
}

/// The silences saved in `data_dir`; none when there is no file yet.
pub fn read_silences(data_dir: &Path) -> std::io::Result<Vec<Silence>> {
    match std::fs::read(silences_path(data_dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn write_silences(data_dir: &Path, silences: &[Silence]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(silences).map_err(std::io::Error::other)?;
    atomic::write(&silences_path(data_dir), &bytes)
}

/// Why a silence could not be added or expired: what was asked (a caller's mistake, a 400 on
/// the listener) or the data_dir (runner's trouble, a 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SilenceError {
    Invalid(String),
    Storage(String),
}

impl std::fmt::Display for SilenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SilenceError::Invalid(message) | SilenceError::Storage(message) => f.write_str(message),
        }
    }
}

/// Holds `state/silences.lock` while the file is read, changed and written, so a silence
/// added by the command line and one posted to the listener at once are both kept.
fn locked<T>(
    data_dir: &Path,
    f: impl FnOnce() -> Result<T, SilenceError>,
) -> Result<T, SilenceError> {
    let path = data_dir.join("state").join("silences.lock");
    let mut tries = 0;
    let _lock = loop {
        match crate::lock::LockFile::try_acquire(&path, "the silences") {
            Ok(lock) => break lock,
            Err(crate::lock::LockError::Held { .. }) if tries < 500 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(SilenceError::Storage(e.to_string())),
        }
    };
    f()
}

fn read_for_change(data_dir: &Path) -> Result<Vec<Silence>, SilenceError> {
    read_silences(data_dir).map_err(|e| SilenceError::Storage(format!("cannot read silences: {e}")))
}

fn save(data_dir: &Path, silences: &[Silence]) -> Result<(), SilenceError> {
    write_silences(data_dir, silences)
        .map_err(|e| SilenceError::Storage(format!("cannot save silences: {e}")))
}

/// Adds a silence from `starts_at` (now when `None` or past) for `length`; its matchers are
/// checked first. Silences that ended more than a day ago are dropped from the file on the way.
pub fn add_silence(
    data_dir: &Path,
    matchers: &[String],
    starts_at: Option<DateTime<Utc>>,
    length: Duration,
    comment: &str,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<Silence, SilenceError> {
    if matchers.is_empty() {
        return Err(SilenceError::Invalid(
            "a silence needs at least one matcher (`--match alertname=disk_full`)".into(),
        ));
    }
    for m in matchers {
        Matcher::parse(m).map_err(SilenceError::Invalid)?;
    }
    // A silence of no length would be listed and hold nothing: that is a typo, not a wish.
    if length.is_zero() {
        return Err(SilenceError::Invalid(
            "a silence of no length holds nothing: give `for` a length (`2h`)".into(),
        ));
    }
    let length = chrono::Duration::from_std(length)
        .map_err(|e| SilenceError::Invalid(format!("its length: {e}")))?;
    // A start already past is now: what it silences from then on is the same.
    let starts_at = starts_at.map_or(now, |at| at.max(now));
    let ends_at = starts_at
        .checked_add_signed(length)
        .ok_or_else(|| SilenceError::Invalid("it would end past the year 262143".into()))?;
    locked(data_dir, || {
        let mut silences = read_for_change(data_dir)?;
        let digest = Sha256::digest(format!(
            "{}/{}/{}/{comment}",
            now.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id(),
            matchers.join(",")
        ));
        let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let silence = Silence {
            id,
            matchers: matchers.to_vec(),
            starts_at,
            ends_at,
            comment: comment.to_string(),
            created_by: created_by.to_string(),
        };
        silences.retain(|s| s.kept(now));
        silences.push(silence.clone());
        save(data_dir, &silences)?;
        Ok(silence)
    })
}

/// Ends the silence `id` now (one still to start ends before it does, its start now too);
/// `Ok(false)` when there is no such silence active or pending.
pub fn expire_silence(data_dir: &Path, id: &str, now: DateTime<Utc>) -> Result<bool, SilenceError> {
    locked(data_dir, || {
        let mut silences = read_for_change(data_dir)?;
        let Some(silence) = silences.iter_mut().find(|s| s.id == id && s.ends_at > now) else {
            return Ok(false);
        };
        // One still to start ends now too, as Alertmanager's does: ending at its start kept
        // it "pending" in the list and on the status page, and expirable again.
        silence.starts_at = silence.starts_at.min(now);
        silence.ends_at = now;
        save(data_dir, &silences)?;
        Ok(true)
    })
}

/// The silences file as last read, re-read when its stat changes: one `stat` per decision
/// is all a running scheduler pays to honour a silence the moment it is added.
struct SilenceCache {
    data_dir: PathBuf,
    stamp: Option<(SystemTime, u64, u64)>,
    silences: Vec<(Silence, Vec<Matcher>)>,
}

impl SilenceCache {
    fn refresh(&mut self) {
        let stamp = std::fs::metadata(silences_path(&self.data_dir))
            .ok()
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.len(),
                    m.ino(),
                )
            });
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match read_silences(&self.data_dir) {
            Ok(silences) => {
                self.silences = silences
                    .into_iter()
                    .filter_map(|s| {
                        let parsed = s.parsed();
                        match parsed {
                            Ok(matchers) => Some((s, matchers)),
                            Err(e) => {
                                warn_left_out(&self.data_dir, &s, &e);
                                None
                            }
                        }
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the silences; keeping the ones read before")
            }
        }
    }
}

/// The decision, for one job's alerts.
pub struct Mute {
    spec: MuteSpec,
    zone: Zone,
    silences: Option<Mutex<SilenceCache>>,
    /// The firing alerts of the other monitor jobs of the data_dir, for inhibition across
    /// jobs; `None` (dry runs, rule tests): this job's alerts only.
    board: Option<Arc<Board>>,
}

/// A firing alert as another job's inhibition rules see it.
#[derive(Debug, Clone)]
struct Firing {
    fingerprint: String,
    name: String,
    job: String,
    host: String,
    severity: &'static str,
    labels: std::collections::BTreeMap<String, String>,
}

impl Firing {
    fn subject(&self) -> Subject<'_> {
        Subject {
            fingerprint: &self.fingerprint,
            name: &self.name,
            job: &self.job,
            host: &self.host,
            severity: self.severity,
            labels: &self.labels,
        }
    }
}

/// The firing alerts of each monitor job of one data_dir, as of each job's latest step: an
/// alert of one job may inhibit another job's (the gateway's packet loss in the ping job over
/// the HTTP job's alerts). Each job posts its own and reads the others'; the board's lock is
/// never held while a job's alerts are locked by another, so jobs cannot deadlock on it.
#[derive(Debug, Default)]
pub struct Board {
    /// Job → the store that posted (a reload replaces a job's store) and its firing alerts.
    jobs: Mutex<std::collections::HashMap<String, (u64, Vec<Firing>)>>,
}

impl Board {
    /// The board of `data_dir`, shared by every job of this process that keeps its alerts
    /// there.
    pub fn of(data_dir: &Path) -> Arc<Board> {
        static BOARDS: Mutex<Vec<(PathBuf, Arc<Board>)>> = Mutex::new(Vec::new());
        let mut boards = BOARDS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, board)) = boards.iter().find(|(dir, _)| dir == data_dir) {
            return board.clone();
        }
        let board = Arc::new(Board::default());
        boards.push((data_dir.to_path_buf(), board.clone()));
        board
    }

    fn jobs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u64, Vec<Firing>)>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The firing alerts of every job but `job`.
    fn others(&self, job: &str) -> Vec<Firing> {
        self.jobs()
            .iter()
            .filter(|(name, _)| name.as_str() != job)
            .flat_map(|(_, (_, firing))| firing.iter().cloned())
            .collect()
    }
}

/// What a matcher looks at.
struct Subject<'a> {
    fingerprint: &'a str,
    name: &'a str,
    job: &'a str,
    host: &'a str,
    severity: &'static str,
    labels: &'a std::collections::BTreeMap<String, String>,
}

impl Subject<'_> {
    fn get(&self, name: &str) -> &str {
        field(
            name,
            self.name,
            self.job,
            self.host,
            self.severity,
            self.labels,
        )
    }

    fn all(&self, matchers: &[Matcher]) -> bool {
        matchers.iter().all(|m| m.matches(self.get(&m.name)))
    }
}

fn of_state<'a>(state: &'a AlertState, origin: &Origin<'a>) -> Subject<'a> {
    Subject {
        fingerprint: &state.fingerprint,
        name: &state.name,
        job: origin.job,
        host: origin.host,
        severity: state.severity.as_str(),
        labels: &state.labels,
    }
}

/// The alerts that fire now: this job's, from its lifecycle, and the other jobs' from the
/// board.
fn firing_subjects<'a>(
    lifecycle: &'a Lifecycle,
    origin: &Origin<'a>,
    others: &'a [Firing],
) -> Vec<Subject<'a>> {
    lifecycle
        .firing()
        .map(|s| of_state(s, origin))
        .chain(others.iter().map(Firing::subject))
        .collect()
}

fn of_event<'a>(event: &'a AlertEvent, origin: &Origin<'a>) -> Subject<'a> {
    Subject {
        fingerprint: &event.fingerprint,
        name: &event.name,
        job: origin.job,
        host: origin.host,
        severity: event.severity.as_str(),
        labels: &event.labels,
    }
}

impl Mute {
    /// The silences as they are now on disk, re-read only when the file changed; `None` when
    /// this decision has no silences file.
    fn silences(&self) -> Option<std::sync::MutexGuard<'_, SilenceCache>> {
        self.silences.as_ref().map(|cache| {
            let mut cache = cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.refresh();
            cache
        })
    }

    /// Windows and inhibition of the jobs file in its `zone`, and the silences of `data_dir`
    /// (`None`: none, as for dry runs that must not depend on the live file).
    pub fn new(spec: MuteSpec, zone: Zone, data_dir: Option<&Path>) -> Mute {
        Mute {
            spec,
            zone,
            board: None,
            silences: data_dir.map(|dir| {
                Mutex::new(SilenceCache {
                    data_dir: dir.to_path_buf(),
                    stamp: None,
                    silences: Vec::new(),
                })
            }),
        }
    }

    /// The running scheduler's: the jobs file's windows and rules, the data_dir's silences,
    /// and the other jobs' firing alerts for inhibition.
    pub fn for_config(config: &crate::config::Config) -> Mute {
        Mute::new(
            config.mute.clone(),
            config.zone.clone(),
            Some(&config.data_dir),
        )
        .with_board(Board::of(&config.data_dir))
    }

    /// Inhibition sees the firing alerts `board` holds of other jobs.
    pub fn with_board(mut self, board: Arc<Board>) -> Mute {
        self.board = Some(board);
        self
    }

    /// Posts the alerts of `origin.job` that fire now, for the other jobs' inhibition; `store`
    /// tells this job's store from one a reload replaced. Nothing when no rule inhibits.
    pub fn post(&self, store: u64, lifecycle: &Lifecycle, origin: &Origin<'_>) {
        let Some(board) = self
            .board
            .as_ref()
            .filter(|_| !self.spec.inhibit.is_empty())
        else {
            return;
        };
        let firing: Vec<Firing> = lifecycle
            .firing()
            .map(|s| Firing {
                fingerprint: s.fingerprint.clone(),
                name: s.name.clone(),
                job: origin.job.to_string(),
                host: origin.host.to_string(),
                severity: s.severity.as_str(),
                labels: s.labels.clone(),
            })
            .collect();
        board.jobs().insert(origin.job.to_string(), (store, firing));
    }

    /// Takes `job`'s alerts off the board, if `store` is the one that posted them: the job is
    /// gone (a reload removed it or turned it off).
    pub fn withdraw(&self, store: u64, job: &str) {
        if let Some(board) = &self.board {
            let mut jobs = board.jobs();
            if jobs.get(job).is_some_and(|(posted, _)| *posted == store) {
                jobs.remove(job);
            }
        }
    }

    /// The firing alerts of the other jobs, for [`firing_subjects`].
    fn others(&self, job: &str) -> Vec<Firing> {
        match &self.board {
            Some(board) if !self.spec.inhibit.is_empty() => board.others(job),
            _ => Vec::new(),
        }
    }

    /// What mutes `subject` at `at`, if anything, with the alerts that fire now.
    fn decide(
        &self,
        subject: &Subject<'_>,
        at: DateTime<Utc>,
        silences: &[(Silence, Vec<Matcher>)],
        firing: &[Subject<'_>],
    ) -> Option<Muted> {
        for window in &self.spec.maintenance {
            if subject.all(&window.matchers)
                && let Some(until) = window.active_until(at, &self.zone)
            {
                return Some(Muted {
                    by: MutedBy::Maintenance,
                    name: window.name.clone(),
                    until: Some(until),
                });
            }
        }
        for (silence, matchers) in silences {
            if silence.active(at) && subject.all(matchers) {
                return Some(Muted {
                    by: MutedBy::Silence,
                    name: silence.id.clone(),
                    until: Some(silence.ends_at),
                });
            }
        }
        for rule in &self.spec.inhibit {
            if !subject.all(&rule.target) {
                continue;
            }
            let source = firing.iter().find(|source| {
                source.fingerprint != subject.fingerprint
                    && source.all(&rule.source)
                    && rule
                        .equal
                        .iter()
                        .all(|label| source.get(label) == subject.get(label))
            });
            if let Some(source) = source {
                return Some(Muted {
                    by: MutedBy::Inhibited,
                    name: source.name.to_string(),
                    until: None,
                });
            }
        }
        None
    }

    /// Marks a tick's `events` with what mutes them and records in `lifecycle.held` what is
    /// kept back; adds the notices of holds that ended (an alert still firing that receivers
    /// have not heard of, or one they heard firing that has resolved).
    pub fn apply(
        &self,
        lifecycle: &mut Lifecycle,
        events: &mut Vec<AlertEvent>,
        at: DateTime<Utc>,
        origin: &Origin<'_>,
    ) {
        let guard = self.silences();
        let silences = guard.as_deref().map_or(&[][..], |c| c.silences.as_slice());
        let mut held = std::mem::take(&mut lifecycle.held);
        let others = self.others(origin.job);
        {
            let firing = firing_subjects(lifecycle, origin, &others);
            for event in events.iter_mut() {
                let muted = self.decide(&of_event(event, origin), at, silences, &firing);
                match muted {
                    Some(muted) => {
                        let told = event.kind != EventKind::Firing;
                        let entry = held.entry(event.fingerprint.clone()).or_insert(Held {
                            told,
                            muted: muted.clone(),
                            resolved: None,
                        });
                        entry.muted = muted.clone();
                        entry.resolved = (event.kind == EventKind::Resolved && entry.told)
                            .then(|| Box::new(event.clone()));
                        event.muted = Some(Box::new(muted));
                    }
                    None => match held.remove(&event.fingerprint) {
                        // Held firing, resolved the moment the hold ends: never heard of.
                        Some(h) if !h.told && event.kind == EventKind::Resolved => {
                            event.muted = Some(Box::new(h.muted));
                        }
                        // A repeat (one due, or a severity that rose out of the window's
                        // matchers) of an alert the receivers never heard fire is, to them,
                        // its firing notice, and runs an `on: firing` action as one.
                        Some(h) if !h.told && event.kind == EventKind::Repeat => {
                            event.kind = EventKind::Firing;
                            event.id = crate::alerts::event::event_id(
                                &event.fingerprint,
                                EventKind::Firing,
                                event.at,
                            );
                        }
                        _ => {}
                    },
                }
            }
            let seen: std::collections::HashSet<String> =
                events.iter().map(|e| e.fingerprint.clone()).collect();
            let mut released = Vec::new();
            for (fingerprint, h) in &held {
                if seen.contains(fingerprint) {
                    continue;
                }
                let Some(state) = lifecycle.states.get(fingerprint) else {
                    if let Some(e) = &h.resolved
                        && self
                            .decide(&of_event(e, origin), at, silences, &firing)
                            .is_some()
                    {
                        continue;
                    }
                    // Gone since it resolved: its kept resolved notice, restamped, if the
                    // receivers heard it firing.
                    let notice = h.resolved.as_deref().cloned().map(|mut e| {
                        e.id = crate::alerts::event::event_id(&e.fingerprint, e.kind, at);
                        e.at = at;
                        e.muted = None;
                        e
                    });
                    released.push((fingerprint.clone(), notice));
                    continue;
                };
                if self
                    .decide(&of_state(state, origin), at, silences, &firing)
                    .is_some()
                {
                    continue;
                }
                let firing_now = state.phase == Phase::Firing;
                let notice = match (firing_now, h.told) {
                    (true, false) => Some(state.event(EventKind::Firing, at, origin)),
                    (false, true) => Some(state.event(EventKind::Resolved, at, origin)),
                    _ => None,
                };
                released.push((fingerprint.clone(), notice));
            }
            for (fingerprint, notice) in released {
                held.remove(&fingerprint);
                events.extend(notice);
            }
        }
        lifecycle.held = held;
    }

    /// What mutes the alert `state` at `at`, if anything: for `runner dry-run`.
    pub fn why(
        &self,
        lifecycle: &Lifecycle,
        state: &AlertState,
        at: DateTime<Utc>,
        origin: &Origin<'_>,
    ) -> Option<Muted> {
        self.muted_alone(lifecycle, &of_state(state, origin), at, origin)
    }

    /// What mutes `event`'s alert at `at`, if anything: for an event made off the tick (an
    /// action that failed), which must be held back as the alert's own notices are.
    pub fn event_muted(
        &self,
        lifecycle: &Lifecycle,
        event: &AlertEvent,
        at: DateTime<Utc>,
        origin: &Origin<'_>,
    ) -> Option<Muted> {
        self.muted_alone(lifecycle, &of_event(event, origin), at, origin)
    }

    /// The decision for one subject outside a tick's pass, against the silences and the
    /// alerts firing now.
    fn muted_alone(
        &self,
        lifecycle: &Lifecycle,
        subject: &Subject<'_>,
        at: DateTime<Utc>,
        origin: &Origin<'_>,
    ) -> Option<Muted> {
        let guard = self.silences();
        let silences = guard.as_deref().map_or(&[][..], |c| c.silences.as_slice());
        let others = self.others(origin.job);
        let firing = firing_subjects(lifecycle, origin, &others);
        self.decide(subject, at, silences, &firing)
    }

    /// Whether anything could mute an alert: without windows, rules or a silences file, the
    /// decision is skipped.
    pub fn is_empty(&self) -> bool {
        self.spec.maintenance.is_empty() && self.spec.inhibit.is_empty() && self.silences.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::mute::{InhibitSpec, MaintenanceSpec};
    use crate::scheduler::schedule::Schedule;

    fn matchers(list: &[&str]) -> Vec<Matcher> {
        list.iter().map(|m| Matcher::parse(m).unwrap()).collect()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn inhibition_needs_equal_labels_and_never_inhibits_itself() {
        let mute = Mute::new(
            MuteSpec {
                maintenance: vec![],
                inhibit: vec![InhibitSpec {
                    source: matchers(&["alertname=gateway_loss"]),
                    target: matchers(&["alertname=~latency_high|http_down|gateway_loss"]),
                    equal: vec!["target".into()],
                }],
            },
            Zone::utc(),
            None,
        );
        let labels = |t: &str| -> std::collections::BTreeMap<String, String> {
            [("target".to_string(), t.to_string())].into()
        };
        let (gw, a, b) = (labels("gw"), labels("gw"), labels("other"));
        let subject =
            |fp: &'static str,
             name: &'static str,
             l: &'static std::collections::BTreeMap<String, String>| Subject {
                fingerprint: fp,
                name,
                job: "monitor",
                host: "web-1",
                severity: "warning",
                labels: l,
            };
        let gw: &'static _ = Box::leak(Box::new(gw));
        let a: &'static _ = Box::leak(Box::new(a));
        let b: &'static _ = Box::leak(Box::new(b));
        let firing = [subject("1", "gateway_loss", gw)];
        let now = at("2027-01-01T00:00:00Z");
        let muted = mute.decide(&subject("2", "latency_high", a), now, &[], &firing);
        assert_eq!(
            muted.map(|m| (m.by, m.name)),
            Some((MutedBy::Inhibited, "gateway_loss".to_string()))
        );
        // Another target value: not the same host behind the gateway.
        assert_eq!(
            mute.decide(&subject("3", "latency_high", b), now, &[], &firing),
            None
        );
        // The source matches the target matchers too, but does not inhibit itself.
        assert_eq!(
            mute.decide(&subject("1", "gateway_loss", gw), now, &[], &firing),
            None
        );
        // Without `equal`, any firing source inhibits.
        let mute = Mute::new(
            MuteSpec {
                maintenance: vec![],
                inhibit: vec![InhibitSpec {
                    source: matchers(&["alertname=gateway_loss"]),
                    target: matchers(&["alertname=latency_high"]),
                    equal: vec![],
                }],
            },
            Zone::utc(),
            None,
        );
        assert!(
            mute.decide(&subject("3", "latency_high", b), now, &[], &firing)
                .is_some()
        );
        assert_eq!(
            mute.decide(&subject("3", "latency_high", b), now, &[], &[]),
            None
        );
    }

    #[test]
    fn silences_are_saved_listed_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2027-01-01T00:00:00Z");
        let s = add_silence(
            dir.path(),
            &["alertname=disk_full".into()],
            None,
            Duration::from_secs(7200),
            "disk swap",
            "ops",
            now,
        )
        .unwrap();
        assert_eq!(s.ends_at, at("2027-01-01T02:00:00Z"));
        assert_eq!(read_silences(dir.path()).unwrap(), vec![s.clone()]);
        assert!(
            add_silence(
                dir.path(),
                &["mount=~(".into()],
                None,
                Duration::from_secs(1),
                "",
                "",
                now
            )
            .is_err()
        );
        assert!(expire_silence(dir.path(), &s.id, now + chrono::Duration::minutes(5)).unwrap());
        assert!(!expire_silence(dir.path(), &s.id, now + chrono::Duration::minutes(6)).unwrap());
        assert!(!read_silences(dir.path()).unwrap()[0].active(now + chrono::Duration::minutes(5)));
    }

    /// A silence expired before its start has ended: it is not to come any more (the status
    /// page and `list` showed it pending), and expiring it again finds nothing to end.
    #[test]
    fn a_pending_silence_expired_has_ended_and_cannot_be_expired_again() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2027-01-01T00:00:00Z");
        let s = add_silence(
            dir.path(),
            &["alertname=disk_full".into()],
            Some(at("2027-03-01T22:00:00Z")),
            Duration::from_secs(3600),
            "",
            "",
            now,
        )
        .unwrap();
        assert!(expire_silence(dir.path(), &s.id, now).unwrap());
        let ended = &read_silences(dir.path()).unwrap()[0];
        assert!(ended.ends_at <= now, "{ended:?}");
        assert!(ended.starts_at <= ended.ends_at, "{ended:?}");
        assert!(!expire_silence(dir.path(), &s.id, now + chrono::Duration::minutes(1)).unwrap());
        // Kept a day for `list`, then dropped.
        assert!(ended.kept(now) && !ended.kept(now + chrono::Duration::days(2)));
    }

    /// A silence with a start to come holds nothing until then, and its length from then.
    #[test]
    fn a_silence_holds_from_its_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2027-01-01T00:00:00Z");
        let s = add_silence(
            dir.path(),
            &["alertname=cpu_high".into()],
            Some(at("2027-01-01T22:00:00Z")),
            Duration::from_secs(3 * 3600),
            "patch night",
            "ops",
            now,
        )
        .unwrap();
        assert_eq!(s.starts_at, at("2027-01-01T22:00:00Z"));
        assert_eq!(s.ends_at, at("2027-01-02T01:00:00Z"));
        let mute = Mute::new(MuteSpec::default(), Zone::utc(), Some(dir.path()));
        let lifecycle = Lifecycle::default();
        let origin = Origin {
            host: "web-1",
            job: "monitor",
        };
        let event = AlertEvent::example(
            "cpu_high",
            EventKind::Firing,
            crate::vocab::Severity::Warning,
            now,
        );
        let muted_at = |t: &str| {
            mute.event_muted(&lifecycle, &event, at(t), &origin)
                .map(|m| (m.by, m.name))
        };
        assert_eq!(muted_at("2027-01-01T00:00:00Z"), None);
        assert_eq!(muted_at("2027-01-01T21:59:59Z"), None);
        assert_eq!(
            muted_at("2027-01-01T22:00:00Z"),
            Some((MutedBy::Silence, s.id.clone()))
        );
        assert_eq!(
            muted_at("2027-01-02T00:59:59Z"),
            Some((MutedBy::Silence, s.id.clone()))
        );
        assert_eq!(muted_at("2027-01-02T01:00:00Z"), None);
        // A start already past is now.
        let past = add_silence(
            dir.path(),
            &["alertname=cpu_high".into()],
            Some(at("2026-12-31T00:00:00Z")),
            Duration::from_secs(60),
            "",
            "",
            now,
        )
        .unwrap();
        assert_eq!(
            (past.starts_at, past.ends_at),
            (now, at("2027-01-01T00:01:00Z"))
        );
        // Expired before it starts, it never holds.
        assert!(expire_silence(dir.path(), &s.id, now).unwrap());
        assert_eq!(muted_at("2027-01-01T23:00:00Z"), None);
    }

    #[test]
    fn a_window_holds_a_subject_only_while_open() {
        let mute = Mute::new(
            MuteSpec {
                maintenance: vec![MaintenanceSpec {
                    name: "backup".into(),
                    schedule: Schedule::parse("0 2 * * *").unwrap(),
                    duration: Duration::from_secs(3600),
                    matchers: matchers(&["alertname=disk_io_busy"]),
                }],
                inhibit: vec![],
            },
            Zone::utc(),
            None,
        );
        let labels = std::collections::BTreeMap::new();
        let subject = |name| Subject {
            fingerprint: "x",
            name,
            job: "monitor",
            host: "web-1",
            severity: "warning",
            labels: &labels,
        };
        let inside = at("2027-01-01T02:10:00Z");
        assert_eq!(
            mute.decide(&subject("disk_io_busy"), inside, &[], &[]),
            Some(Muted {
                by: MutedBy::Maintenance,
                name: "backup".into(),
                until: Some(at("2027-01-01T03:00:00Z"))
            })
        );
        assert_eq!(mute.decide(&subject("cpu_high"), inside, &[], &[]), None);
        assert_eq!(
            mute.decide(
                &subject("disk_io_busy"),
                at("2027-01-01T03:00:00Z"),
                &[],
                &[]
            ),
            None
        );
    }

    /// A job's alerts in memory, muted by a window `0 2 * * *` for 1 h over `cpu_high`.
    fn store_in_window() -> crate::alerts::AlertStore {
        let mut store = crate::alerts::AlertStore::in_memory(
            "web-1",
            "monitor",
            crate::config::FlapPolicy::default(),
            Lifecycle::default(),
        );
        store.set_mute(std::sync::Arc::new(Mute::new(
            MuteSpec {
                maintenance: vec![MaintenanceSpec {
                    name: "backup".into(),
                    schedule: Schedule::parse("0 2 * * *").unwrap(),
                    duration: Duration::from_secs(3600),
                    matchers: matchers(&["alertname=cpu_high"]),
                }],
                inhibit: vec![],
            },
            Zone::utc(),
            None,
        )));
        store
    }

    /// An event as the alert log has it: when, what, and whether muted.
    type Logged = (String, EventKind, bool);
    /// An event a notifier is given.
    type Sent = (String, EventKind);

    /// Steps at each `(time, active)`; returns every event (as the alert log has it) and the
    /// ones a notifier would be given.
    fn run(
        store: &mut crate::alerts::AlertStore,
        ticks: &[(&str, bool)],
    ) -> (Vec<Logged>, Vec<Sent>) {
        run_repeating(store, ticks, None)
    }

    /// As `run`, with the alert's `repeat_interval` when given.
    fn run_repeating(
        store: &mut crate::alerts::AlertStore,
        ticks: &[(&str, bool)],
        repeat: Option<Duration>,
    ) -> (Vec<Logged>, Vec<Sent>) {
        use crate::rules::activation::Activation;
        use crate::rules::{Evaluation, RuleOutcome};
        let (mut logged, mut sent) = (Vec::new(), Vec::new());
        for (time, active) in ticks {
            let mut activations = Vec::new();
            if *active {
                let mut a =
                    Activation::from_map("cpu_high", "rules/cpu.rhai".into(), &rhai::Map::new())
                        .unwrap();
                a.active = true;
                a.value = Some(93.0);
                if let Some(repeat) = repeat {
                    a.repeat_interval = repeat;
                }
                activations.push(a);
            }
            let evaluation = Evaluation {
                activations,
                outcomes: vec![RuleOutcome {
                    rule_file: "rules/cpu.rhai".into(),
                    missing: Default::default(),
                    error: None,
                }],
            };
            let mut given = Vec::new();
            let events = store.step(
                at(time),
                &evaluation,
                |_| true,
                |events| {
                    given.extend(
                        events
                            .iter()
                            .filter(|e| e.muted.is_none())
                            .map(|e| (time.to_string(), e.kind)),
                    );
                },
            );
            sent.extend(given);
            logged.extend(
                events
                    .iter()
                    .map(|e| (time.to_string(), e.kind, e.muted.is_some())),
            );
        }
        (logged, sent)
    }

    #[test]
    fn a_window_holds_a_firing_alert_and_notifies_it_when_it_ends() {
        let mut store = store_in_window();
        let (logged, sent) = run(
            &mut store,
            &[
                ("2027-01-01T02:05:00Z", true),
                ("2027-01-01T02:30:00Z", true),
                ("2027-01-01T03:00:00Z", true),
                ("2027-01-01T03:10:00Z", false),
            ],
        );
        let firing_in_window = ("2027-01-01T02:05:00Z".to_string(), EventKind::Firing, true);
        assert_eq!(logged[0], firing_in_window);
        assert_eq!(
            sent,
            [
                ("2027-01-01T03:00:00Z".to_string(), EventKind::Firing),
                ("2027-01-01T03:10:00Z".to_string(), EventKind::Resolved)
            ]
        );
        assert!(store.lifecycle().held.is_empty());
    }

    /// A repeat falls due at the tick the window ends: the receivers never heard the alert
    /// fire, so what they get is its firing notice (which also runs an `on: firing` action),
    /// not a repeat of something they were never told.
    #[test]
    fn a_repeat_due_as_the_window_ends_reaches_the_receivers_as_the_firing_notice() {
        let mut store = store_in_window();
        let (_, sent) = run_repeating(
            &mut store,
            &[
                ("2027-01-01T02:05:00Z", true),
                ("2027-01-01T02:30:00Z", true),
                ("2027-01-01T03:00:00Z", true),
                ("2027-01-01T03:10:00Z", true),
            ],
            Some(Duration::from_secs(25 * 60)),
        );
        assert_eq!(
            sent,
            [("2027-01-01T03:00:00Z".to_string(), EventKind::Firing)]
        );
        assert!(store.lifecycle().held.is_empty());
    }

    #[test]
    fn an_alert_resolved_inside_the_window_sends_nothing() {
        let mut store = store_in_window();
        let (logged, sent) = run(
            &mut store,
            &[
                ("2027-01-01T02:05:00Z", true),
                ("2027-01-01T02:30:00Z", false),
                ("2027-01-01T03:00:00Z", false),
                ("2027-01-01T03:10:00Z", false),
            ],
        );
        assert_eq!(
            logged,
            [
                ("2027-01-01T02:05:00Z".to_string(), EventKind::Firing, true),
                (
                    "2027-01-01T02:30:00Z".to_string(),
                    EventKind::Resolved,
                    true
                )
            ]
        );
        assert!(sent.is_empty(), "{sent:?}");
        assert!(store.lifecycle().held.is_empty());
    }

    #[test]
    fn a_resolve_inside_the_window_of_an_alert_heard_firing_is_sent_when_it_ends() {
        let mut store = store_in_window();
        let (_, sent) = run(
            &mut store,
            &[
                ("2027-01-01T01:50:00Z", true),
                ("2027-01-01T02:30:00Z", false),
                ("2027-01-01T03:00:00Z", false),
            ],
        );
        assert_eq!(
            sent,
            [
                ("2027-01-01T01:50:00Z".to_string(), EventKind::Firing),
                ("2027-01-01T03:00:00Z".to_string(), EventKind::Resolved)
            ]
        );
    }

    #[test]
    fn an_alert_of_one_job_inhibits_another_jobs_with_equal_labels() {
        use crate::rules::activation::Activation;
        use crate::rules::{Evaluation, RuleOutcome};
        let board = Arc::new(Board::default());
        let spec = MuteSpec {
            maintenance: vec![],
            inhibit: vec![InhibitSpec {
                source: matchers(&["alertname=packet_loss"]),
                target: matchers(&["alertname=http_down"]),
                equal: vec!["target".into()],
            }],
        };
        let store = |job: &str| {
            let mut store = crate::alerts::AlertStore::in_memory(
                "web-1",
                job,
                crate::config::FlapPolicy::default(),
                Lifecycle::default(),
            );
            store.set_mute(Arc::new(
                Mute::new(spec.clone(), Zone::utc(), None).with_board(board.clone()),
            ));
            store
        };
        let (mut ping, mut http) = (store("ping"), store("http"));
        let step = |store: &mut crate::alerts::AlertStore, time: &str, up: &[(&str, &str)]| {
            let activations = up
                .iter()
                .map(|(name, target)| {
                    let mut a =
                        Activation::from_map(name, "rules/r.rhai".into(), &rhai::Map::new())
                            .unwrap();
                    a.active = true;
                    a.value = Some(1.0);
                    a.labels = [("target".to_string(), target.to_string())].into();
                    a
                })
                .collect();
            let evaluation = Evaluation {
                activations,
                outcomes: vec![RuleOutcome {
                    rule_file: "rules/r.rhai".into(),
                    missing: Default::default(),
                    error: None,
                }],
            };
            store
                .step(at(time), &evaluation, |_| true, |_| {})
                .into_iter()
                .map(|e| {
                    (
                        e.kind,
                        e.labels["target"].clone(),
                        e.muted.map(|m| (m.by, m.name)),
                    )
                })
                .collect::<Vec<_>>()
        };
        let inhibited = Some((MutedBy::Inhibited, "packet_loss".to_string()));
        let (t0, t1, t2) = (
            "2027-01-01T00:00:00Z",
            "2027-01-01T00:00:10Z",
            "2027-01-01T00:00:20Z",
        );
        assert_eq!(
            step(&mut ping, t0, &[("packet_loss", "gw")]),
            [(EventKind::Firing, "gw".to_string(), None)]
        );
        let mut events = step(&mut http, t0, &[("http_down", "gw"), ("http_down", "db")]);
        events.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            events,
            [
                (EventKind::Firing, "db".to_string(), None),
                (EventKind::Firing, "gw".to_string(), inhibited.clone()),
            ]
        );
        // The loss resolves in its job; the other job's next step lets the held notice out.
        step(&mut ping, t1, &[]);
        assert_eq!(
            step(&mut http, t1, &[("http_down", "gw"), ("http_down", "db")]),
            [(EventKind::Firing, "gw".to_string(), None)]
        );
        // A job that is gone inhibits nothing.
        step(&mut ping, t2, &[("packet_loss", "db")]);
        assert_eq!(board.others("http").len(), 1);
        drop(ping);
        assert!(board.others("http").is_empty());
    }

    #[test]
    fn an_inhibited_alert_is_notified_when_its_source_resolves_if_it_still_fires() {
        use crate::rules::activation::Activation;
        use crate::rules::{Evaluation, RuleOutcome};
        let mut store = crate::alerts::AlertStore::in_memory(
            "web-1",
            "monitor",
            crate::config::FlapPolicy::default(),
            Lifecycle::default(),
        );
        store.set_mute(std::sync::Arc::new(Mute::new(
            MuteSpec {
                maintenance: vec![],
                inhibit: vec![InhibitSpec {
                    source: matchers(&["alertname=packet_loss"]),
                    target: matchers(&["alertname=~latency_high|packet_loss"]),
                    equal: vec!["target".into()],
                }],
            },
            Zone::utc(),
            None,
        )));
        let activation = |name: &str, target: &str| {
            let mut a =
                Activation::from_map(name, "rules/latency.rhai".into(), &rhai::Map::new()).unwrap();
            a.active = true;
            a.value = Some(1.0);
            a.labels = [("target".to_string(), target.to_string())].into();
            a
        };
        let ticks = [
            (
                "2027-01-01T00:00:00Z",
                vec![
                    activation("packet_loss", "gw"),
                    activation("latency_high", "gw"),
                    activation("latency_high", "db"),
                ],
            ),
            (
                "2027-01-01T00:00:10Z",
                vec![
                    activation("latency_high", "gw"),
                    activation("latency_high", "db"),
                ],
            ),
        ];
        let mut sent = Vec::new();
        let mut muted = Vec::new();
        for (time, activations) in ticks {
            let evaluation = Evaluation {
                activations,
                outcomes: vec![RuleOutcome {
                    rule_file: "rules/latency.rhai".into(),
                    missing: Default::default(),
                    error: None,
                }],
            };
            let events = store.step(at(time), &evaluation, |_| true, |_| {});
            for e in events {
                let row = (time, e.kind, e.name.clone(), e.labels["target"].clone());
                match e.muted {
                    Some(m) => muted.push((row, m.by, m.name)),
                    None => sent.push(row),
                }
            }
        }
        let row = |time, kind, name: &str, target: &str| {
            (time, kind, name.to_string(), target.to_string())
        };
        let (t0, t1) = ("2027-01-01T00:00:00Z", "2027-01-01T00:00:10Z");
        // The gateway's loss holds back latency to the gateway, not to db, and not itself.
        assert_eq!(
            muted,
            [(
                row(t0, EventKind::Firing, "latency_high", "gw"),
                MutedBy::Inhibited,
                "packet_loss".to_string()
            )]
        );
        let mut sent_sorted = sent.clone();
        sent_sorted.sort_by_key(|r| format!("{r:?}"));
        let mut expected = vec![
            row(t0, EventKind::Firing, "packet_loss", "gw"),
            row(t0, EventKind::Firing, "latency_high", "db"),
            row(t1, EventKind::Resolved, "packet_loss", "gw"),
            row(t1, EventKind::Firing, "latency_high", "gw"),
        ];
        expected.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(sent_sorted, expected);
    }

    /// A hand-edited silence without matchers would match every alert; it is ignored, as
    /// Alertmanager refuses one, and the file's other silences still hold.
    #[test]
    fn a_silence_without_matchers_silences_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2027-01-01T00:00:00Z");
        let kept = add_silence(
            dir.path(),
            &["alertname=disk_full".into()],
            None,
            Duration::from_secs(3600),
            "",
            "",
            now,
        )
        .unwrap();
        let mut silences = read_silences(dir.path()).unwrap();
        silences.push(Silence {
            id: "everything".into(),
            matchers: vec![],
            ..kept.clone()
        });
        write_silences(dir.path(), &silences).unwrap();
        assert!(silences[1].parsed().unwrap_err().contains("no matchers"));
        let mute = Mute::new(MuteSpec::default(), Zone::utc(), Some(dir.path()));
        let lifecycle = Lifecycle::default();
        let origin = Origin {
            host: "web-1",
            job: "monitor",
        };
        let muted = |name: &str| {
            let event = AlertEvent::example(
                name,
                EventKind::Firing,
                crate::vocab::Severity::Warning,
                now,
            );
            mute.event_muted(&lifecycle, &event, now, &origin)
                .map(|m| (m.by, m.name))
        };
        assert_eq!(muted("cpu_high"), None);
        assert_eq!(
            muted("disk_full"),
            Some((MutedBy::Silence, kept.id.clone()))
        );
    }

    #[test]
    fn silences_added_at_once_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2027-01-01T00:00:00Z");
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let dir = dir.path();
                scope.spawn(move || {
                    for i in 0..10 {
                        add_silence(
                            dir,
                            &[format!("alertname=a{thread}_{i}")],
                            None,
                            Duration::from_secs(60),
                            "",
                            "",
                            now,
                        )
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(read_silences(dir.path()).unwrap().len(), 80);
    }
}
