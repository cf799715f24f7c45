//! The monitor job: each tick runs the probes, appends the sample to the metrics log, and
//! steps the job's pipeline (history, rules, alert lifecycle), whose events go to the
//! notifiers' outboxes. One `Monitor` lives as long as the scheduler, so rates, history and
//! alert timers carry over from tick to tick.

pub mod pipeline;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{debug, error, info, warn};

use crate::alerts::AlertStore;
use crate::alerts::event::AlertEvent;
use crate::alerts::lifecycle::Phase;
use crate::config::{Config, MonitorSpec};
use crate::notify::Notifiers;
use crate::probes::{ProbeSet, ProcRoot};
use crate::rules::values::Schema;
use crate::rules::{Evaluation, RuleSet};
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::RollupStore;
use crate::store::sample::Sample;
use crate::store::{MetricsLog, MetricsReader};
use pipeline::Pipeline;

/// What one tick did, for the log and for `runner run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickSummary {
    pub metrics: usize,
    pub errors: usize,
    pub events: usize,
    pub firing: usize,
    /// Set when every probe of the job failed and measured nothing: which, and the first
    /// error. Such a tick is a failed run (the scheduler counts it, `runner run` exits 1).
    pub all_failed: Option<String>,
}

pub struct Monitor {
    job: String,
    host: String,
    probes: ProbeSet,
    /// The probes' keys (`cpu`, `ping.gateway`), to tell a tick where all of them failed.
    probe_keys: Vec<String>,
    log: MetricsLog,
    reader: MetricsReader,
    pipeline: Pipeline,
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
        let mut alerts = AlertStore::open(&config.data_dir, job, &config.host, spec.flap);
        alerts.set_mute(Arc::new(crate::alerts::mute::Mute::for_config(config)));
        alerts.set_actions(Arc::new(crate::alerts::action::Actions::new(
            config.actions.clone(),
        )));
        let history = History::new(
            HistoryConfig::default(),
            Some(RollupStore::new(&config.data_dir, job)),
        );
        let rules = load_rules(job, spec);
        notifiers.register_rules(job, &rules);
        let pipeline = Pipeline::new(history, Arc::new(rules), alerts);
        notifiers.register_alerts(job, pipeline.alerts());
        let root = ProcRoot::default();
        Monitor {
            job: job.to_string(),
            host: config.host.clone(),
            probes: ProbeSet::build(&spec.probes, &root),
            probe_keys: spec.probes.iter().map(|p| p.key()).collect(),
            log: MetricsLog::new(&config.data_dir),
            reader: MetricsReader::for_config(config),
            pipeline,
            notifiers,
            notify: spec.notify.clone(),
            warmed: false,
            failing: BTreeMap::new(),
            failing_rules: BTreeMap::new(),
        }
    }

    /// Loads the job's rule files again (a reload), keeping history, alert state and probes.
    pub fn reload_rules(&mut self, spec: &MonitorSpec) {
        let mut rules = load_rules(&self.job, spec);
        rules.keep_stats_of(self.pipeline.rules());
        self.notifiers.register_rules(&self.job, &rules);
        self.pipeline.set_rules(Arc::new(rules));
    }

    pub fn history(&self) -> &History {
        self.pipeline.history()
    }

    /// Fills history from the metrics log, once, before the first tick, and tells keepalive
    /// destinations what is firing.
    fn warm(&mut self, now: DateTime<Utc>) {
        let started = Instant::now();
        let stats = self
            .pipeline
            .history_mut()
            .warm(self.reader.files(), &self.job, now);
        info!(
            job = %self.job,
            samples = stats.samples,
            metrics = self.pipeline.history().metric_count(),
            memory_kib = self.pipeline.history().bytes() / 1024,
            bad_lines = stats.bad_lines,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "history warmed from the metrics log"
        );
        for problem in stats.unreadable {
            warn!(job = %self.job, source = %problem, "part of the metrics log could not be read");
        }
        // A tick a crash interrupted: queue what the outboxes do not have yet, then finish it.
        let unfinished = self.pipeline.lock_alerts().take_unfinished();
        if !unfinished.is_empty() {
            let _hold = crate::notify::outbox::hold_delivery();
            self.notifiers.redispatch(&self.notify, &unfinished);
            self.pipeline.lock_alerts().finish_tick();
        }
        let firing = self.pipeline.lock_alerts().firing_events(now);
        self.notifiers.restore(&self.notify, &firing);
        self.warmed = true;
        // The warm-up was the last of start-up's one-off work (config, rules, history).
        let released = crate::footprint::release_unused_pages();
        debug!(
            job = %self.job,
            mapped_kib = released.mapped_bytes / 1024,
            "start-up code pages released"
        );
    }

    /// Measures once, records the sample and steps the pipeline; returns the sample and the
    /// alert events (already logged and queued).
    pub async fn tick(
        &mut self,
        at: DateTime<Utc>,
    ) -> anyhow::Result<(Sample, Vec<AlertEvent>, TickSummary)> {
        if !self.warmed {
            self.warm(at);
        }
        let mut output = self.probes.collect().await;
        let notes = std::mem::take(&mut output.notes);
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
        let (notifiers, notify) = (&self.notifiers, &self.notify);
        let before = self.phases();
        // Delivery of what this tick queues waits until the step has saved its state.
        let hold = std::sync::OnceLock::new();
        let stepped = self
            .pipeline
            .step_noted(at, &sample.metrics, &notes, |events| {
                if !events.is_empty() {
                    let _ = hold.set(crate::notify::outbox::hold_delivery());
                }
                notifiers.dispatch(notify, events);
                // A slow rest of the tick (the state save on a slow disk), for tests.
                crate::failpoint::pause("slow-tick");
            });
        drop(hold);
        // Off the tick: a slow action never delays the next one.
        let runs = self.pipeline.lock_alerts().take_runs();
        for run in runs {
            let (notifiers, notify) = (self.notifiers.clone(), self.notify.clone());
            crate::alerts::action::spawn(run, self.pipeline.alerts(), move |failed| {
                notifiers.dispatch(&notify, std::slice::from_ref(failed));
            });
        }
        self.report_alert_changes(&before);
        self.report_rule_errors(&stepped.evaluation);
        let summary = TickSummary {
            metrics: sample.metrics.len(),
            errors: sample.errors.len(),
            events: stepped.events.len(),
            firing: self.pipeline.lock_alerts().firing_count(),
            all_failed: all_failed(&self.probe_keys, &sample),
        };
        Ok((sample, stepped.events, summary))
    }

    /// The phase of each alert that is pending or firing, by fingerprint (one not listed is
    /// inactive): taken every tick, so it holds only the few that are not.
    fn phases(&self) -> BTreeMap<String, (String, Phase)> {
        self.pipeline
            .lock_alerts()
            .lifecycle()
            .states
            .iter()
            .filter(|(_, s)| s.phase != Phase::Inactive)
            .map(|(fp, s)| (fp.clone(), (s.name.clone(), s.phase)))
            .collect()
    }

    /// Says at info level every alert that changed phase this tick (pending, firing, back to
    /// inactive), whether or not the job notifies `log`.
    fn report_alert_changes(&self, before: &BTreeMap<String, (String, Phase)>) {
        let alerts = self.pipeline.lock_alerts();
        for (fp, state) in &alerts.lifecycle().states {
            let was = before.get(fp).map_or(Phase::Inactive, |(_, p)| *p);
            if was != state.phase {
                let labels: Vec<String> = state
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                info!(
                    job = %self.job,
                    alert = %state.name,
                    labels = %labels.join(","),
                    severity = state.severity.as_str(),
                    from = ?was,
                    to = ?state.phase,
                    "alert {}",
                    match state.phase {
                        Phase::Pending => "pending",
                        Phase::Firing => "firing",
                        Phase::Inactive => "inactive",
                    }
                );
            }
        }
        // An alert that was pending or firing and is gone (its rule file went away).
        for (fp, (name, was)) in before {
            if !alerts.lifecycle().states.contains_key(fp) {
                info!(job = %self.job, alert = %name, from = ?was, to = ?Phase::Inactive, "alert inactive");
            }
        }
    }

    fn report_probe_errors(&mut self, sample: &Sample) {
        let now: BTreeMap<String, String> = sample.errors.iter().cloned().collect();
        report_changes(&self.job, "probe", &mut self.failing, now, probe_kind);
    }

    fn report_rule_errors(&mut self, evaluation: &Evaluation) {
        let now: BTreeMap<String, String> = evaluation
            .outcomes
            .iter()
            .filter_map(|o| o.error.clone().map(|e| (o.rule_file.to_string(), e)))
            .collect();
        report_changes(&self.job, "rule", &mut self.failing_rules, now, kind_of);
    }
}

/// Says at start, once per missing path, what the probes of every monitor job need from the
/// proc and sys roots and do not find there: the scheduler calls it before its first tick.
pub fn check_roots(config: &Config) {
    let on = config.jobs.values().filter(|job| job.off.is_none());
    let types = on.flat_map(|job| match &job.kind {
        crate::config::JobKind::Monitor(m) => m.probes.iter().map(|p| p.type_name()).collect(),
        _ => Vec::new(),
    });
    crate::probes::procfs::check_roots(&ProcRoot::default(), types);
}

/// Whether every probe failed this tick, each with an error and not one metric: a run that
/// measured nothing at all (a wrong `HOST_PROC`, no network), not a target that is down, which
/// a probe measures (`up 0`, `loss_percent 100`). Says which probes, and the first error.
fn all_failed(keys: &[String], sample: &Sample) -> Option<String> {
    let under = |name: &str, key: &str| {
        name.strip_prefix(key)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    let failed = |key: &String| {
        sample.errors.iter().any(|(k, _)| under(k, key))
            && !sample.metrics.iter().any(|(name, _)| under(name, key))
    };
    if keys.is_empty() || !keys.iter().all(failed) {
        return None;
    }
    let (key, first) = sample.errors.first()?;
    Some(format!(
        "every probe failed ({}); the first: {key}: {first}",
        keys.join(", ")
    ))
}

/// Logs each failure when it starts (or its kind changes) and when it clears, not every
/// tick: the sample records probe errors every tick anyway. The message said is the whole
/// one; only the decision to say it goes by `kind`.
fn report_changes(
    job: &str,
    what: &str,
    before: &mut BTreeMap<String, String>,
    now: BTreeMap<String, String>,
    kind: fn(&str) -> String,
) {
    let (started, recovered) = changes(before, &now, kind);
    for (key, message) in started {
        warn!(job, what, source = %key, error = %message, "{what} failing");
    }
    for key in recovered {
        info!(job, what, source = %key, "{what} recovered");
    }
    *before = now;
}

/// What started failing (or fails differently, by `kind`) and what recovered, between two
/// ticks.
fn changes<'a>(
    before: &BTreeMap<String, String>,
    now: &'a BTreeMap<String, String>,
    kind: fn(&str) -> String,
) -> (Vec<(&'a String, &'a String)>, Vec<String>) {
    let started = now
        .iter()
        .filter(|(key, message)| before.get(*key).map(|m| kind(m)) != Some(kind(message)))
        .collect();
    let recovered = before
        .keys()
        .filter(|k| !now.contains_key(*k))
        .cloned()
        .collect();
    (started, recovered)
}

/// A failure's text with every number replaced: its kind. A failure whose text only differs
/// in its numbers (a column, a count, a size, a time) is the same failure going on.
fn kind_of(message: &str) -> String {
    kind_with(message, false)
}

/// A probe failure's kind: as [`kind_of`], and what it quotes between backticks is left out
/// too. Probes quote what they read (a response body, an output line, a log line, a value),
/// which may change every tick while the failure stays the same; an HTTP status is kept, as a
/// 500 that becomes a 404 is another failure.
///
/// Then a failure that says the target did not answer is of one kind whatever its words: a
/// silent host reads "no reply within 980 ms" one tick, "host unreachable" the next (the
/// kernel's own, when its neighbour lookup gives up), "timed out after 2000 ms" when the probe
/// runs out of time, and a tcp connect says "timeout" or "No route to host"; all of them are
/// the same failure going on. Refused connections and names that do not resolve are kinds of
/// their own. An HTTP status decides alone.
fn probe_kind(message: &str) -> String {
    let text = kind_with(message, true);
    category(&text).map_or(text, str::to_string)
}

/// The category of a probe failure (its quotes already left out), if its words name one.
fn category(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    // "status 503 is not an expected one": the status is the failure; a timeout reading the
    // body of a 200 is a timeout.
    let status = lower
        .match_indices("status ")
        .any(|(at, w)| lower[at + w.len()..].starts_with(|c: char| c.is_ascii_digit()));
    if status {
        return None;
    }
    if has(&[
        "cannot resolve",
        "resolves to no address",
        "failed to lookup",
    ]) {
        Some("the name does not resolve")
    } else if has(&["refused"]) {
        Some("refused")
    } else if has(&[
        "timed out",
        "timeout",
        "no reply",
        "no answer",
        "unreachable",
        "no route to host",
        "time to live exceeded",
        "hop limit exceeded",
    ]) {
        Some("no answer: timed out or unreachable")
    } else {
        None
    }
}

fn kind_with(message: &str, quotes: bool) -> String {
    let mut kind = String::with_capacity(message.len());
    let mut in_quote = false;
    // Within a number: whether it is kept.
    let mut number: Option<bool> = None;
    for (at, c) in message.char_indices() {
        if in_quote {
            in_quote = c != '`';
            continue;
        }
        if quotes && c == '`' {
            // An unclosed quote was cut short: the rest is quoted text too.
            kind.push_str("`…`");
            in_quote = true;
            number = None;
        } else if c.is_ascii_digit() {
            let kept = number.unwrap_or_else(|| quotes && message[..at].ends_with("status "));
            if kept {
                kind.push(c);
            } else if number.is_none() {
                kind.push('#');
            }
            number = Some(kept);
        } else {
            kind.push(c);
            number = None;
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::MetricName;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_failure_that_only_changes_its_numbers_is_said_once() {
        let tick1 = map(&[(
            "rules/x.rhai",
            "line 2, column 21: took longer than its deadline and was stopped",
        )]);
        let tick2 = map(&[(
            "rules/x.rhai",
            "line 2, column 23: took longer than its deadline and was stopped",
        )]);
        let (started, _) = changes(&BTreeMap::new(), &tick1, kind_of);
        assert_eq!(started.len(), 1);
        let (started, recovered) = changes(&tick1, &tick2, kind_of);
        assert!(started.is_empty() && recovered.is_empty());
        let counted = map(&[("access_log.web", "3 lines did not match the format")]);
        let more = map(&[("access_log.web", "17 lines did not match the format")]);
        assert!(changes(&counted, &more, probe_kind).0.is_empty());
        // Another kind of failure is said, and so is the recovery.
        let other = map(&[("access_log.web", "cannot open the log: permission denied")]);
        assert_eq!(changes(&more, &other, probe_kind).0.len(), 1);
        assert_eq!(
            changes(&other, &BTreeMap::new(), probe_kind).1,
            ["access_log.web"]
        );
    }

    #[test]
    fn a_silent_host_is_one_failure_whatever_its_words_each_tick() {
        // What the ping, tcp and http probes, and the probe set's own timeout, say about one
        // host that does not answer, tick after tick (the texts of `report` in ping.rs, `collect`
        // in tcp.rs, `timed_out` in probes/mod.rs and icmp.rs's reasons).
        let silent_ping = [
            "5 of 5 echoes lost: no reply within 1000 ms",
            "5 of 5 echoes lost: host unreachable (from 10.0.0.2)",
            "3 of 5 echoes lost: no reply within 1000 ms",
            "5 of 5 echoes lost: address unreachable (from fe80::1)",
            "timed out after 2000 ms",
            "2 of 2 echoes lost: time to live exceeded (from 192.168.1.1)",
        ];
        let silent_tcp = [
            "timeout: no answer from 10.0.0.5:22 within 3000 ms",
            "unreachable: connecting to 10.0.0.5:22: No route to host (os error 113)",
            "timed out after 3000 ms",
        ];
        let silent_http = [
            "error sending request for url (http://10.0.0.5/health): operation timed out",
            "timed out after 10000 ms",
        ];
        for texts in [&silent_ping[..], &silent_tcp[..], &silent_http[..]] {
            let mut before = BTreeMap::new();
            let mut said = 0;
            for _ in 0..7 {
                for text in texts {
                    let now = map(&[("probe.x", text)]);
                    said += changes(&before, &now, probe_kind).0.len();
                    before = now;
                }
            }
            assert_eq!(said, 1, "{texts:?}");
        }
        // Other kinds stay other kinds.
        let kinds: std::collections::BTreeSet<String> = [
            "timeout: no answer from 10.0.0.5:22 within 3000 ms",
            "refused: connecting to 10.0.0.5:22: Connection refused (os error 111)",
            "cannot resolve `db.example`: failed to lookup address information",
            "status 503 is not an expected one",
            "status 404 is not an expected one",
            "cannot read /host/proc/meminfo: No such file or directory (os error 2)",
        ]
        .iter()
        .map(|t| probe_kind(t))
        .collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        // A body that quotes "timeout" is not a timeout.
        assert_ne!(
            probe_kind("the body does not contain `ok`: `gateway timeout`"),
            probe_kind("timed out after 10000 ms")
        );
    }

    #[test]
    fn a_tick_where_every_probe_failed_and_measured_nothing_is_a_failed_run() {
        let sample = |metrics: &[&str], errors: &[(&str, &str)]| Sample {
            ts: Utc::now(),
            host: "h".into(),
            job: "m".into(),
            metrics: metrics
                .iter()
                .map(|m| (MetricName::from(*m), 1.0))
                .collect(),
            errors: errors
                .iter()
                .map(|(k, e)| (k.to_string(), e.to_string()))
                .collect(),
        };
        let keys = ["memory".to_string(), "ping.gw".to_string()];
        let all = sample(
            &[],
            &[
                ("memory", "cannot read /x/meminfo: No such file"),
                ("ping.gw", "cannot open an ICMP socket: denied"),
            ],
        );
        assert_eq!(
            all_failed(&keys, &all).as_deref(),
            Some(
                "every probe failed (memory, ping.gw); the first: memory: cannot read /x/meminfo: No such file"
            )
        );
        // A host that is down is measured (`loss_percent 100`): not a failed run.
        let down = sample(
            &["ping.gw.loss_percent"],
            &[
                ("memory", "cannot read"),
                ("ping.gw", "5 of 5 echoes lost: no reply within 1000 ms"),
            ],
        );
        assert_eq!(all_failed(&keys, &down), None);
        // A probe with nothing yet and no error (cpu's first tick) did not fail.
        let one = sample(&[], &[("memory", "cannot read")]);
        assert_eq!(all_failed(&keys, &one), None);
        // `memory_x` is not under `memory`.
        let other = sample(&["memory_x.a"], &[("memory", "e"), ("ping.gw", "e")]);
        assert!(all_failed(&keys, &other).is_some());
        assert_eq!(all_failed(&[], &sample(&[], &[])), None);
    }

    #[test]
    fn a_probe_failure_that_only_changes_what_it_quotes_is_said_once() {
        let kind = probe_kind;
        assert_eq!(
            kind("the body is not JSON (text/html): `<html>req 7f3a at 10:00</html>`"),
            "the body is not JSON (text/html): `…`"
        );
        // Cut short, the quotation runs to the end.
        assert_eq!(kind("the first: `GET /a"), "the first: `…`");
        // The status is the failure; the latency and the size are not.
        assert_eq!(
            kind("status 503 is not an expected one; took 1234 ms for 5678 bytes"),
            "status 503 is not an expected one; took # ms for # bytes"
        );
        assert_ne!(
            kind("status 500 is not an expected one"),
            kind("status 404 is not an expected one")
        );
        // Rules keep their quotes: a rule's error changes only when its file does.
        assert_eq!(kind_of("unknown variable `cpu`"), "unknown variable `cpu`");
    }

    /// A server on 127.0.0.1 that answers every request with a 500 and a page that is new each
    /// time, as a proxy's error page with a request id and a time is.
    fn changing_error_pages() -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let id: String = (0..8)
                    .map(|i| char::from(b'a' + ((n * 7 + i * 3) % 26) as u8))
                    .collect();
                let body = format!(
                    "<html><title>Error</title>request {id} at {n} ms `{id}` {}</html>",
                    "x".repeat(n * 13)
                );
                let response = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_http_probe_whose_error_page_changes_every_tick_warns_once() {
        use crate::config::Secret;
        use crate::config::probes::HttpSpec;
        use crate::config::probes::{StatusMatch, StatusSpec};
        use crate::probes::Output;
        use crate::probes::http::HttpProbe;

        let addr = changing_error_pages();
        let spec = HttpSpec {
            url: Secret::new(format!("http://{addr}/health")),
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            expect_status: StatusSpec(vec![StatusMatch::Class(2)]),
            body_contains: Some("ok".into()),
            body_regex: None,
            extract: vec![
                ("p95".into(), "/p95".into()),
                ("queue".into(), "/queue".into()),
            ],
            ca_file: None,
            tls_verify: true,
            follow_redirects: false,
        };
        let mut probe = HttpProbe::new(spec, "app", std::time::Duration::from_secs(10));
        let mut before = BTreeMap::new();
        let mut said = Vec::new();
        let mut messages = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let mut out = Output::default();
            probe.collect(&mut out).await.unwrap();
            let now: BTreeMap<String, String> = out.errors.into_iter().collect();
            messages.extend(now.values().cloned());
            let (started, _) = changes(&before, &now, probe_kind);
            said.extend(started.into_iter().map(|(key, _)| key.clone()));
            before = now;
        }
        assert_eq!(said, ["http.app", "http.app.p95", "http.app.queue"]);
        // The bodies did change, and each message still quotes its own.
        assert!(messages.len() > 3, "{messages:?}");
        assert!(
            messages.contains("status 500 is not an expected one; the body does not contain `ok`"),
            "{messages:?}"
        );
    }
}
