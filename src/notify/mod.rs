//! Where alert events go. `log` is built in and always on (a new user sees alerts on the
//! terminal without configuring anything); every other notifier goes through the outbox
//! (`outbox`): written and fsynced before it is sent, delivered in order per notifier by its
//! own loop (`deliver`) with backoff, rate limits and a breaker (`policy`).
//!
//! Routing: a job's `notify` list, narrowed by a rule's own `notify`, then each notifier's
//! `min_severity`. A resolved event carries the highest severity its firing spell was told
//! with, so it goes wherever the firing went.

pub mod alertmanager;
pub mod dead_alert;
pub mod deliver;
pub mod destination;
pub mod gdrive;
pub mod notice;
pub mod outbox;
pub mod policy;
pub mod servicenow;
pub mod slack;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::alerts::event::{AlertEvent, EventKind, Incident};
use crate::alerts::{AlertStore, SharedAlerts};
use crate::config::{Config, DeliverySpec, NotifierSettings, NotifierSpec, Secret};
use crate::lock::LockFile;
use crate::scheduler::clock::SharedClock;
use crate::vocab::Severity;
use dead_alert::DeadLetterWatch;
use deliver::{Deliverer, Mode, Stats};
use destination::{Delivery, Destination, Rendered};
use notice::{Message, ReportNotice};
use outbox::{Entry, Queue};

/// The built-in notifier's name.
pub const LOG: &str = "log";

/// The `log` notifier: one structured line per event.
pub fn log_event(event: &AlertEvent) {
    let value = event
        .value
        .map(crate::vocab::words::format_value)
        .unwrap_or_default();
    let incident = event
        .incident
        .as_ref()
        .map(|i| i.number.as_str())
        .unwrap_or("");
    macro_rules! line {
        ($level:ident) => {
            $level!(
                alert = %event.name,
                kind = %event.kind,
                severity = event.severity.as_str(),
                fingerprint = %event.short_fingerprint(),
                value = %value,
                job = %event.job,
                rule = %event.rule_file,
                incident,
                "{}: {}",
                event.summary,
                event.explanation
            )
        };
    }
    match (event.kind, event.severity) {
        (
            EventKind::Firing | EventKind::Repeat | EventKind::Flapping | EventKind::ActionFailed,
            Severity::Warning | Severity::Critical,
        ) => line!(warn),
        _ => line!(info),
    }
}

/// One notifier of each type with its defaults, as a jobs file would declare it: what the
/// built-in messages are rendered with when no jobs file says otherwise.
const BUILTIN_NOTIFIERS: &str = r#"data_dir: .
notifiers:
  slack: { type: slack, webhook_url: "https://hooks.slack.com/services/T0/B0/stand-in" }
  webhook: { type: webhook, url: "https://webhook.invalid/" }
  servicenow: { type: servicenow, instance: stand-in, token: stand-in }
  alertmanager: { type: alertmanager, urls: ["http://alertmanager.invalid:9093"] }
jobs:
  monitor: { type: monitor, schedule: "@hourly" }
"#;

/// Where an off notifier's empty address would be, so it can still render what it would send.
const STAND_IN_URL: &str = "https://stand-in.invalid/";

/// A notifier that is on, with its queue.
struct Route {
    min_severity: Severity,
    /// Takes reports only (Google Drive).
    reports_only: bool,
    dest: Arc<dyn Destination>,
    /// `None` for notifiers built only to render (dry runs, rule tests).
    queue: Option<Arc<Queue>>,
    delivery: DeliverySpec,
    wake: Arc<Notify>,
    stats: Arc<Stats>,
}

impl Route {
    fn accepts(&self, event: &AlertEvent) -> bool {
        event.severity >= self.min_severity
    }

    /// Puts entries on disk and wakes the delivery loop; a queue that cannot be written is
    /// reported loudly (alert events are still in the alert log, reports in their files).
    fn enqueue(&self, name: &str, entries: &[Entry]) {
        let Some(queue) = &self.queue else { return };
        match queue.append(entries) {
            Ok(()) => self.wake.notify_one(),
            Err(e) => error!(
                notifier = name,
                notifications = entries.len(),
                outbox = %queue.path().display(),
                "cannot queue notifications: {e}; they will not be sent"
            ),
        }
    }
}

/// One notifier's delivery figures, for `/metrics`.
#[derive(Debug, Clone)]
pub struct NotifierHealth {
    pub name: String,
    pub delivered: u64,
    pub dead: u64,
    pub failed_attempts: u64,
    pub backlog_bytes: Option<u64>,
    /// When the oldest notice still queued was queued (`None`: nothing queued, or no queue).
    pub oldest_queued: Option<DateTime<Utc>>,
}

/// Every notifier of a jobs file, shared by the jobs of one process.
pub struct Notifiers {
    routes: BTreeMap<String, Route>,
    clock: SharedClock,
    data_dir: std::path::PathBuf,
    /// Each monitor's alerts, so the ServiceNow notifier can attach incidents to them.
    alerts: Arc<Mutex<HashMap<String, SharedAlerts>>>,
    /// Each monitor's rule files and their evaluation counters, for `/metrics`.
    rule_stats: Mutex<BTreeMap<String, RuleStats>>,
    /// What the delivery loops report for the `notification_dead_letter` alert.
    watch: Arc<DeadLetterWatch>,
    /// That alert's own alert job (`None` without outboxes: nothing is delivered).
    dead_alerts: Option<SharedAlerts>,
    /// Where that alert goes: the notifiers the monitor jobs list.
    alert_routes: Vec<String>,
}

/// A monitor's rule files, by name, with how their evaluations went.
pub type RuleStats = Vec<(Arc<str>, Arc<crate::rules::RuleFileStats>)>;

/// What `Notifiers::drain` left.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Notifiers whose queue is still not empty, with the reason.
    pub waiting: Vec<String>,
}

impl Notifiers {
    /// Builds every notifier that is on and opens its queue. A notifier that cannot be built
    /// (its outbox folder is not writable, a signing secret is malformed) is reported and left
    /// out; the others work.
    pub fn new(config: &Config, clock: SharedClock) -> Notifiers {
        let mut notifiers = Notifiers::build(config, clock, true);
        notifiers.open_dead_letter_alerts(config);
        notifiers
    }

    /// Opens the `notification_dead_letter` alert's state like a monitor's: a spell still
    /// firing goes on until its notifier delivers, and a step a crash interrupted is finished.
    fn open_dead_letter_alerts(&mut self, config: &Config) {
        let mut store = AlertStore::open(
            &config.data_dir,
            dead_alert::JOB,
            &config.host,
            crate::config::FlapPolicy::default(),
        );
        // runner's own alert is held back by the same windows, silences and inhibition.
        store.set_mute(Arc::new(crate::alerts::mute::Mute::for_config(config)));
        self.alert_routes = dead_alert::routes(config);
        let names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        let dead_dir = outbox::outbox_dir(&config.data_dir).join("dead");
        self.watch.restore(store.lifecycle(), &names, &dead_dir);
        let unfinished = store.take_unfinished();
        if !unfinished.is_empty() {
            self.redispatch(&self.alert_routes, &unfinished);
            store.finish_tick();
        }
        let store = Arc::new(Mutex::new(store));
        self.register_alerts(dead_alert::JOB, store.clone());
        self.dead_alerts = Some(store);
    }

    /// Steps the `notification_dead_letter` alert from what the delivery loops reported and
    /// queues its events for the notifiers it goes to, as a monitor's tick does; `true` if it
    /// raised any.
    pub fn step_dead_letter_alerts(&self) -> bool {
        let Some(store) = &self.dead_alerts else {
            return false;
        };
        let evaluation = self.watch.evaluation(&self.alert_routes);
        // As a monitor's tick: what it queues goes on the wire once its state is saved.
        let hold = std::sync::OnceLock::new();
        let events = store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .step(
                self.clock.now(),
                &evaluation,
                |_| true,
                |events| {
                    if !events.is_empty() {
                        let _ = hold.set(outbox::hold_delivery());
                    }
                    self.dispatch(&self.alert_routes, events);
                },
            );
        drop(hold);
        !events.is_empty()
    }

    /// Notifiers that are on but could not be built (a CA file that cannot be read, a client
    /// that cannot be set up), with why: `runner check` reports them, so no notifier is left
    /// out at run time without having been called an error first.
    pub fn problems(config: &Config) -> Vec<(String, String)> {
        let clock: SharedClock = Arc::new(crate::scheduler::clock::SystemClock);
        let nowhere: servicenow::AttachIncident = Arc::new(|_, _| {});
        let outbox = outbox::outbox_dir(&config.data_dir);
        // Checked once for all: every queue lives in the same folder.
        let outbox_problem = creatable_dir(&outbox.join("dead")).err();
        config
            .notifiers
            .values()
            .filter(|spec| spec.off.is_none())
            .filter_map(|spec| {
                build(spec, clock.clone(), nowhere.clone())
                    .err()
                    .or_else(|| {
                        outbox_problem.as_ref().map(|e| {
                            format!("its outbox {} cannot be created: {e}", outbox.display())
                        })
                    })
                    .map(|e| (spec.name.clone(), e))
            })
            .collect()
    }

    /// Notifiers that only render what they would send: no outbox is opened or written.
    pub fn render_only(config: &Config, clock: SharedClock) -> Notifiers {
        Notifiers::build(config, clock, false)
    }

    /// Every notifier of the jobs file, on or off, built only to render: an off notifier
    /// renders with a stand-in address, so a rule test checks the message it will send once its
    /// secret is set.
    pub fn renderers(config: &Config, clock: SharedClock) -> Notifiers {
        let mut on = Vec::new();
        for spec in config.notifiers.values() {
            let settings = match &spec.off {
                None => spec.settings.clone(),
                Some(_) => stand_in(&spec.settings),
            };
            on.push(NotifierSpec {
                name: spec.name.clone(),
                min_severity: spec.min_severity,
                settings,
                delivery: spec.delivery.clone(),
                off: None,
            });
        }
        Notifiers::from_specs(on.iter(), &config.data_dir, clock, false)
    }

    /// One notifier per type, named after its type, with the defaults a jobs file gets: the
    /// built-in messages.
    pub fn builtin(clock: SharedClock) -> Notifiers {
        match crate::config::build::parse(
            Path::new("built-in notifiers"),
            BUILTIN_NOTIFIERS,
            &|_| None,
        ) {
            Ok(config) => Notifiers::renderers(&config, clock),
            Err(problems) => {
                error!("the built-in notifiers do not load: {}", problems.render());
                Notifiers::from_specs([].iter(), Path::new("."), clock, false)
            }
        }
    }

    /// The words `name`'s message makes of `event`, as a person reads them (`log` is the log
    /// line); `None` when there is no such notifier or it does not take the event's kind.
    pub fn message(&self, name: &str, event: &AlertEvent) -> Option<String> {
        if name == LOG {
            return Some(format!("{}: {}", event.summary, event.explanation));
        }
        let rendered = self
            .routes
            .get(name)?
            .dest
            .render(std::slice::from_ref(event));
        (!rendered.is_empty()).then(|| {
            rendered
                .into_iter()
                .map(|r| r.text)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// The names of the notifiers that render, `log` first.
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(LOG)
            .chain(self.routes.keys().map(String::as_str))
            .collect()
    }

    fn build(config: &Config, clock: SharedClock, with_outbox: bool) -> Notifiers {
        let on = config.notifiers.values().filter(|spec| spec.off.is_none());
        Notifiers::from_specs(on, &config.data_dir, clock, with_outbox)
    }

    fn from_specs<'a>(
        specs: impl Iterator<Item = &'a NotifierSpec>,
        data_dir: &Path,
        clock: SharedClock,
        with_outbox: bool,
    ) -> Notifiers {
        let alerts: Arc<Mutex<HashMap<String, SharedAlerts>>> = Arc::default();
        let dir = outbox::outbox_dir(data_dir);
        let mut routes = BTreeMap::new();
        for spec in specs {
            let dest = match build(spec, clock.clone(), attach_incident(alerts.clone())) {
                Ok(dest) => dest,
                Err(e) => {
                    error!(notifier = %spec.name, "notifier left out: {e}");
                    continue;
                }
            };
            let stats = Arc::new(Stats::default());
            let queue = if with_outbox {
                match Queue::open(&dir, &spec.name) {
                    Ok(queue) => {
                        // The dead letters kept so far: the counter goes on from them after a
                        // restart instead of starting again at zero.
                        stats.dead_events.store(
                            dead_letters(queue.dead_path()),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        Some(Arc::new(queue))
                    }
                    Err(e) => {
                        error!(notifier = %spec.name, outbox = %dir.display(), "notifier left out: cannot open its outbox: {e}");
                        continue;
                    }
                }
            } else {
                None
            };
            routes.insert(
                spec.name.clone(),
                Route {
                    min_severity: spec.min_severity,
                    reports_only: matches!(spec.settings, NotifierSettings::Gdrive(_)),
                    dest,
                    queue,
                    delivery: spec.delivery.clone(),
                    wake: Arc::new(Notify::new()),
                    stats,
                },
            );
        }
        Notifiers {
            routes,
            clock,
            data_dir: data_dir.to_path_buf(),
            alerts,
            rule_stats: Mutex::default(),
            watch: Arc::default(),
            dead_alerts: None,
            alert_routes: Vec::new(),
        }
    }

    /// The monitor's alerts, for incidents to be attached to.
    /// Each monitor job's alerts, as the monitors registered them.
    pub fn alert_stores(&self) -> Vec<(String, SharedAlerts)> {
        let mut stores: Vec<(String, SharedAlerts)> = self
            .alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(job, alerts)| (job.clone(), alerts.clone()))
            .collect();
        stores.sort_by(|a, b| a.0.cmp(&b.0));
        stores
    }

    /// Each notifier's delivery figures: delivered and dead events, failed attempts, and the
    /// bytes still queued (`None` for one without a queue or whose queue cannot be read).
    pub fn health(&self) -> Vec<NotifierHealth> {
        self.routes
            .iter()
            .map(|(name, route)| NotifierHealth {
                name: name.clone(),
                delivered: route.stats.delivered(),
                dead: route.stats.dead(),
                failed_attempts: route
                    .stats
                    .failed_attempts
                    .load(std::sync::atomic::Ordering::Relaxed),
                backlog_bytes: route.queue.as_ref().and_then(|q| q.backlog_bytes().ok()),
                oldest_queued: route
                    .queue
                    .as_ref()
                    .and_then(|q| q.oldest_queued().ok().flatten()),
            })
            .collect()
    }

    /// A monitor's rule files as it loaded them (at start and at each reload).
    pub fn register_rules(&self, job: &str, rules: &crate::rules::RuleSet) {
        let files = rules
            .files()
            .iter()
            .map(|f| (f.name.clone(), f.stats.clone()))
            .collect();
        self.rule_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job.to_string(), files);
    }

    /// Each monitor's rule files and their counters, by job.
    pub fn rule_stats(&self) -> BTreeMap<String, RuleStats> {
        self.rule_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn register_alerts(&self, job: &str, alerts: SharedAlerts) {
        self.alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job.to_string(), alerts);
    }

    /// The notifiers `event` goes to, from the job's list.
    pub fn targets<'a>(&self, job_notify: &'a [String], event: &AlertEvent) -> Vec<&'a str> {
        job_notify
            .iter()
            .filter(|name| event.notify.as_ref().is_none_or(|rule| rule.contains(name)))
            .filter(|name| match self.routes.get(name.as_str()) {
                Some(route) => !route.reports_only && route.accepts(event),
                None => name.as_str() == LOG,
            })
            .map(String::as_str)
            .collect()
    }

    /// Logs the events and queues them for every other notifier they go to; returns once they
    /// are on disk. A queue that cannot be written is reported loudly (the event is still in
    /// the alert log).
    pub fn dispatch(&self, job_notify: &[String], events: &[AlertEvent]) {
        let events = &unmuted(events);
        for event in events {
            if self.targets(job_notify, event).contains(&LOG) {
                log_event(event);
            }
        }
        self.queue_events(job_notify, events, |_, _| true);
    }

    /// Queues the events of an alert tick a crash interrupted, for every notifier that has not
    /// taken them yet (by event id): nothing is lost, nothing sent twice.
    pub fn redispatch(&self, job_notify: &[String], events: &[AlertEvent]) {
        let events = &unmuted(events);
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let mut taken: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
        self.queue_events(job_notify, events, |queue, event| {
            !taken
                .entry(queue.name().to_string())
                .or_insert_with(|| queue.has_events(&ids).unwrap_or_default())
                .contains(&event.id)
        });
    }

    /// Queues each event for every notifier (other than `log`) it goes to and `wanted` lets
    /// through, one append per notifier.
    fn queue_events(
        &self,
        job_notify: &[String],
        events: &[AlertEvent],
        mut wanted: impl FnMut(&Queue, &AlertEvent) -> bool,
    ) {
        let now = self.clock.now();
        let mut queued: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
        for event in events {
            for target in self.targets(job_notify, event) {
                let Some(route) = self.routes.get(target) else {
                    continue;
                };
                if route
                    .queue
                    .as_deref()
                    .is_none_or(|queue| wanted(queue, event))
                {
                    queued.entry(target).or_default().push(Entry {
                        queued_at: now,
                        message: Message::Event(event.clone()),
                    });
                }
            }
        }
        for (name, entries) in queued {
            if let Some(route) = self.routes.get(name) {
                route.enqueue(name, &entries);
            }
        }
    }

    /// Logs a report notice and queues it for every other notifier of the report job that
    /// takes reports.
    pub fn dispatch_report(&self, job_notify: &[String], notice: &ReportNotice) {
        let now = self.clock.now();
        for name in job_notify {
            if name == LOG {
                info!(job = %notice.job, files = ?notice.files, "report: {}; {}", notice.headline(), notice.highlights.join(" "));
                continue;
            }
            if let Some(route) = self.routes.get(name)
                && route.dest.takes_reports()
            {
                let entry = Entry {
                    queued_at: now,
                    message: Message::Report(notice.clone()),
                };
                route.enqueue(name, std::slice::from_ref(&entry));
            }
        }
    }

    /// The requests each notifier of a report job would make for a notice.
    pub fn render_report(
        &self,
        job_notify: &[String],
        notice: &ReportNotice,
    ) -> Vec<(String, Vec<Rendered>)> {
        job_notify
            .iter()
            .filter_map(|name| {
                let route = self.routes.get(name)?;
                route
                    .dest
                    .takes_reports()
                    .then(|| (name.clone(), route.dest.render_report(notice)))
            })
            .collect()
    }

    /// Sends `events` through one notifier now, in order, outside the outbox, and says how each
    /// went (`runner notify-test`). `None` when there is no such notifier with a queue.
    pub async fn send_now(&self, name: &str, events: &[AlertEvent]) -> Option<Vec<Delivery>> {
        let route = self.routes.get(name).filter(|r| !r.reports_only)?;
        let secrets = crate::http::Secrets::new(route.dest.secrets());
        let mut outcomes = Vec::new();
        for event in events {
            let outcome = route
                .dest
                .deliver(std::slice::from_ref(event))
                .await
                .scrubbed(&secrets);
            let stop = !matches!(outcome, Delivery::Delivered { .. });
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        Some(outcomes)
    }

    /// Sends a report notice through one report-only notifier now, outside the outbox
    /// (`runner notify-test` of Google Drive). `None` when there is no such notifier.
    pub async fn send_report_now(&self, name: &str, notice: &ReportNotice) -> Option<Delivery> {
        let route = self.routes.get(name).filter(|r| r.reports_only)?;
        let secrets = crate::http::Secrets::new(route.dest.secrets());
        Some(route.dest.deliver_report(notice).await.scrubbed(&secrets))
    }

    /// The requests each notifier would make for `events` (dry runs, rule tests).
    pub fn render(
        &self,
        job_notify: &[String],
        events: &[AlertEvent],
    ) -> Vec<(String, Vec<Rendered>)> {
        let mut out = Vec::new();
        for event in events {
            for target in self.targets(job_notify, event) {
                if let Some(route) = self.routes.get(target) {
                    out.push((
                        target.to_string(),
                        route.dest.render(std::slice::from_ref(event)),
                    ));
                }
            }
        }
        out
    }

    /// Tells keepalive destinations which alerts are firing at start.
    pub fn restore(&self, job_notify: &[String], firing: &[AlertEvent]) {
        for (name, route) in &self.routes {
            if route.dest.keepalive_interval().is_none() || !job_notify.contains(name) {
                continue;
            }
            let mine: Vec<AlertEvent> = firing
                .iter()
                .filter(|e| self.targets(job_notify, e).contains(&name.as_str()))
                .cloned()
                .collect();
            route.dest.restore(&mine);
        }
    }

    /// Delivery counters of a notifier.
    pub fn stats(&self, name: &str) -> Option<Arc<Stats>> {
        self.routes.get(name).map(|r| r.stats.clone())
    }

    fn deliverer(&self, route: &Route, queue: &Arc<Queue>) -> Deliverer {
        Deliverer::new(
            route.dest.clone(),
            queue.clone(),
            route.delivery.clone(),
            self.clock.clone(),
            route.wake.clone(),
            route.stats.clone(),
        )
        .watched(self.watch.clone())
    }

    fn delivery_lock(&self, name: &str) -> Result<LockFile, crate::lock::LockError> {
        let path = outbox::outbox_dir(&self.data_dir).join(format!("{name}.lock"));
        LockFile::try_acquire(&path, &format!("delivery of notifier `{name}`"))
    }

    /// Starts a delivery loop per notifier (and its keepalive), each once it holds the
    /// notifier's delivery lock (a `runner run` in another process may hold it a moment).
    pub fn start(self: &Arc<Self>, stop: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        for (name, route) in &self.routes {
            let Some(queue) = &route.queue else { continue };
            let this = self.clone();
            let name = name.clone();
            let stop_loop = stop.clone();
            let mut deliverer = self.deliverer(route, queue);
            handles.push(tokio::spawn(async move {
                let _lock = loop {
                    match this.delivery_lock(&name) {
                        Ok(lock) => break lock,
                        Err(e) => {
                            info!(notifier = %name, "waiting to deliver: {e}");
                            tokio::select! {
                                _ = this.clock.sleep(std::time::Duration::from_secs(5)) => {}
                                _ = stop_loop.cancelled() => return,
                            }
                        }
                    }
                };
                if let Err(e) = deliverer.run(Mode::Serve, &stop_loop).await {
                    error!(notifier = %name, "delivery stopped: outbox error: {e}; queued notifications stay on disk for the next start");
                }
            }));
            if route.dest.keepalive_interval().is_some() {
                handles.push(tokio::spawn(Deliverer::keepalive(
                    route.dest.clone(),
                    self.clock.clone(),
                    stop.clone(),
                )));
            }
        }
        if self.dead_alerts.is_some() {
            let this = self.clone();
            handles.push(tokio::spawn(async move {
                loop {
                    this.step_dead_letter_alerts();
                    tokio::select! {
                        _ = this.watch.changed() => {}
                        _ = this.clock.sleep(dead_alert::STEP_EVERY) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }));
        }
        handles
    }

    /// Sends what is queued, until every queue is empty or `deadline` passes (a `runner run`
    /// before it exits). A notifier whose delivery lock another process holds is left to it.
    /// Dead letters meanwhile raise their alert, which is then sent too while time is left.
    pub async fn drain(&self, deadline: DateTime<Utc>) -> Drained {
        loop {
            let drained = self.drain_queues(deadline).await;
            if !self.step_dead_letter_alerts() || self.clock.now() >= deadline {
                return drained;
            }
        }
    }

    async fn drain_queues(&self, deadline: DateTime<Utc>) -> Drained {
        let mut drained = Drained::default();
        let stop = CancellationToken::new();
        let mut runs = Vec::new();
        for (name, route) in &self.routes {
            let Some(queue) = &route.queue else { continue };
            if queue.backlog_bytes().unwrap_or(0) == 0 {
                continue;
            }
            let lock = match self.delivery_lock(name) {
                Ok(lock) => lock,
                Err(e) => {
                    drained
                        .waiting
                        .push(format!("{name}: queued; {e} and delivers it"));
                    continue;
                }
            };
            let mut deliverer = self.deliverer(route, queue);
            let stop = stop.clone();
            let name = name.clone();
            let queue = queue.clone();
            runs.push(async move {
                let _lock = lock;
                let result = deliverer.run(Mode::Drain { deadline }, &stop).await;
                let left = queue.backlog_bytes().unwrap_or(0);
                match result {
                    Err(e) => Some(format!("{name}: outbox error: {e}")),
                    Ok(()) if left > 0 => Some(format!(
                        "{name}: not delivered yet; stays queued for the next run"
                    )),
                    Ok(()) => None,
                }
            });
        }
        for waiting in futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
        {
            warn!("{waiting}");
            drained.waiting.push(waiting);
        }
        drained
    }
}

/// How many notices a dead-letter file holds (one a line; an unreadable outbox line kept
/// there is not a notice): 0 when there is no file yet.
fn dead_letters(path: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v.get("entry").is_some_and(|e| e.is_object()))
        })
        .count() as u64
}

/// Whether `dir` exists as a folder or could be made: each part of it that exists must be a
/// folder (a file in the way is an error `create_dir_all` would only meet at run time), and
/// the deepest one that exists must not be read-only.
fn creatable_dir(dir: &Path) -> Result<(), String> {
    let mut path = dir;
    loop {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                if path != dir && meta.permissions().readonly() {
                    return Err(format!("{} is read-only", path.display()));
                }
                return Ok(());
            }
            Ok(_) => {
                return Err(format!(
                    "{} is in the way and is not a folder",
                    path.display()
                ));
            }
            // A file higher up answers "not a directory": walk up to it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match path.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => path = parent,
                    _ => return Ok(()),
                }
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

fn attach_incident(
    alerts: Arc<Mutex<HashMap<String, SharedAlerts>>>,
) -> servicenow::AttachIncident {
    Arc::new(move |event: &AlertEvent, incident: &Incident| {
        let store = alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&event.job)
            .cloned();
        if let Some(store) = store {
            let value = serde_json::to_value(incident).unwrap_or_default();
            store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .attach(&event.fingerprint, event.active_since, "incident", value);
        }
    })
}

/// Settings whose empty addresses are replaced by a stand-in, to render an off notifier.
fn stand_in(settings: &NotifierSettings) -> NotifierSettings {
    let url = |secret: &Secret| {
        if secret.is_empty() {
            Secret::new(STAND_IN_URL.to_string())
        } else {
            secret.clone()
        }
    };
    let mut settings = settings.clone();
    match &mut settings {
        NotifierSettings::Slack { webhook_url, .. } => *webhook_url = url(webhook_url),
        NotifierSettings::Webhook { url: target, .. } => *target = url(target),
        NotifierSettings::Servicenow(s) if s.base_url.is_empty() => {
            s.base_url = STAND_IN_URL.trim_end_matches('/').to_string()
        }
        NotifierSettings::Alertmanager { urls, .. } if urls.is_empty() => {
            urls.push(STAND_IN_URL.trim_end_matches('/').to_string())
        }
        _ => {}
    }
    settings
}

/// The destination for a notifier's settings.
fn build(
    spec: &NotifierSpec,
    clock: SharedClock,
    attach: servicenow::AttachIncident,
) -> Result<Arc<dyn Destination>, String> {
    Ok(match &spec.settings {
        NotifierSettings::Slack {
            webhook_url,
            template,
        } => Arc::new(slack::Slack::new(
            &spec.name,
            webhook_url,
            template.as_deref(),
            &spec.delivery,
        )?),
        NotifierSettings::Webhook {
            url,
            headers,
            signing_secret,
        } => Arc::new(webhook::Webhook::new(
            &spec.name,
            url,
            headers,
            signing_secret.as_ref(),
            &spec.delivery,
        )?),
        NotifierSettings::Servicenow(settings) => Arc::new(servicenow::ServicenowNotifier::new(
            &spec.name, settings, attach,
        )?),
        NotifierSettings::Alertmanager {
            urls,
            resend_interval,
        } => Arc::new(alertmanager::Alertmanager::new(
            &spec.name,
            urls,
            *resend_interval,
            &spec.delivery,
            clock,
        )?),
        NotifierSettings::Gdrive(settings) => {
            Arc::new(gdrive::Gdrive::new(&spec.name, settings, &spec.delivery)?)
        }
    })
}

/// The events that are sent: a muted one (maintenance, silence, inhibition) is in the alert
/// log with what muted it, and goes to no notifier.
fn unmuted(events: &[AlertEvent]) -> Vec<AlertEvent> {
    events
        .iter()
        .filter(|event| match &event.muted {
            Some(muted) => {
                info!(job = %event.job, alert = %event.name, kind = %event.kind, "notice held back: {muted}");
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}
