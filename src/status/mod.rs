//! What runner serves over HTTP when `listen` is set: Prometheus `/metrics`, `/-/healthy`,
//! `/-/ready`, `/api/v1/alerts` (the alerts pending and firing, with their explanation) and a
//! status page at `/` (plain HTML, no external assets). Loopback by default; any other
//! address needs `listen_auth`. Nothing served holds a secret.

pub mod exposition;
pub mod http;
pub mod process;
mod silences;
pub mod tls;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::alerts::event::EventKind;
use crate::alerts::lifecycle::{Origin, Phase};
use crate::config::{Config, JobKind, ListenSpec};
use crate::notify::Notifiers;
use crate::scheduler::SchedulerState;
use crate::scheduler::clock::SharedClock;
use crate::store::sample::{LineParser, Sample};
use http::{Request, Response};

/// How much of the end of a day's metrics file is read for the latest samples: enough for
/// dozens of monitor jobs' last lines.
const TAIL_BYTES: u64 = 512 * 1024;

/// What the pages are made from.
pub struct Context {
    /// The running configuration: a reload replaces it (shared with the file watcher).
    pub config: Arc<std::sync::RwLock<Arc<Config>>>,
    pub scheduler: Arc<SchedulerState>,
    pub notifiers: Arc<Notifiers>,
    pub clock: SharedClock,
    pub started: DateTime<Utc>,
    pub reloads: std::sync::Mutex<Reloads>,
    /// What remote write did, when `remote_write` is set.
    pub remote_write: Option<Arc<crate::remote_write::Stats>>,
}

/// How the reloads since start went.
#[derive(Debug, Clone, Default)]
pub struct Reloads {
    pub succeeded: u64,
    pub failed: u64,
    /// The last one: whether it went in, and when.
    pub last: Option<(bool, DateTime<Utc>)>,
}

impl Context {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn reloads(&self) -> Reloads {
        self.reloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Serves `spec` until `stop`; the listener is bound before, so a port in use is said at start.
pub async fn serve(
    listener: tokio::net::TcpListener,
    spec: ListenSpec,
    context: Arc<Context>,
    stop: CancellationToken,
) {
    let context_tls = context.config().listen_tls.clone();
    let respond = Arc::new(move |request: Request| {
        let context = context.clone();
        let auth = spec.auth.clone();
        async move {
            let silences_api = silences::is_route(&request.path);
            if !silences_api && !matches!(request.method.as_str(), "GET" | "HEAD") {
                let mut r = Response::text(405, "only GET and HEAD");
                r.headers.push(("Allow", "GET, HEAD".into()));
                return r;
            }
            if request.path == "/-/healthy" {
                return Response::text(200, "runner is healthy");
            }
            if !http::authorized(auth.as_ref(), &request.authorization) {
                let mut r = Response::text(401, "credentials needed (listen_auth)");
                r.headers.push((
                    "WWW-Authenticate",
                    match auth {
                        Some(crate::config::ListenAuth::Basic { .. }) => "Basic realm=\"runner\"",
                        _ => "Bearer realm=\"runner\"",
                    }
                    .into(),
                ));
                return r;
            }
            if silences_api {
                let (data_dir, now) = (context.config().data_dir.clone(), context.clock.now());
                return tokio::task::spawn_blocking(move || {
                    silences::respond(&data_dir, now, &request)
                })
                .await
                .unwrap_or_else(|_| Response::text(500, "the page failed (a bug)"));
            }
            let (path, accept) = (request.path.clone(), request.accept.clone());
            // Pages read files (the metrics log's tail, alert state): off the runtime.
            tokio::task::spawn_blocking(move || page(&context, &path, &accept))
                .await
                .unwrap_or_else(|_| Response::text(500, "the page failed (a bug)"))
        }
        .boxed()
    });
    // The pair was loaded when the configuration was, so this fails only if the files
    // changed in between.
    let tls = match context_tls {
        Some(files) => match tls::Reloading::new(files) {
            Ok(reloading) => Some(Arc::new(reloading)),
            Err(e) => {
                tracing::error!(error = %e, "listen_tls: nothing is served");
                return;
            }
        },
        None => None,
    };
    http::serve(listener, respond, tls, stop).await;
}

fn page(context: &Context, path: &str, accept: &str) -> Response {
    let now = context.clock.now();
    let config = context.config();
    match path {
        "/-/ready" => Response::text(200, "runner is ready"),
        "/metrics" => {
            // Only jobs of the running configuration: a removed job's last sample is history.
            let mut samples = latest_samples(&config.data_dir, now);
            samples.retain(|s| {
                matches!(
                    config.job(&s.job).map(|j| &j.kind),
                    Some(JobKind::Monitor(_))
                )
            });
            let snapshot = exposition::Snapshot {
                host: &config.host,
                now,
                started: context.started,
                samples: &samples,
                jobs: exposition::JobView::all(&context.scheduler, config.jobs.keys()),
                reloads: context.reloads(),
                remote_write: context.remote_write.as_deref(),
                probes: config
                    .jobs
                    .iter()
                    .filter(|(_, job)| job.off.is_none())
                    .filter_map(|(name, job)| match &job.kind {
                        JobKind::Monitor(m) => {
                            Some((name.clone(), m.probes.iter().map(|p| p.key()).collect()))
                        }
                        _ => None,
                    })
                    .collect(),
                process: process::read(Path::new("/proc")),
                alerts: alert_phases(context),
                notifiers: context.notifiers.health(),
                rules: context
                    .notifiers
                    .rule_stats()
                    .into_iter()
                    .filter(|(job, _)| config.job(job).is_some())
                    .collect(),
            };
            let format = exposition::Format::negotiate(accept);
            Response::new(
                200,
                format.content_type(),
                exposition::render(&snapshot, format),
            )
        }
        "/api/v1/alerts" => Response::new(
            200,
            "application/json",
            serde_json::json!({"status": "success", "data": {"alerts": alerts_json(context, now)}})
                .to_string(),
        ),
        "/" => Response::new(200, "text/html; charset=utf-8", status_page(context, now)),
        _ => Response::text(
            404,
            "not here: try /metrics, /api/v1/alerts, /-/healthy, /-/ready or /",
        ),
    }
}

fn alert_phases(context: &Context) -> Vec<(String, String, String, Phase)> {
    let mut out = Vec::new();
    for (job, store) in context.notifiers.alert_stores() {
        let store = store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for state in store.lifecycle().states.values() {
            out.push((
                job.clone(),
                state.name.clone(),
                state.severity.as_str().to_string(),
                state.phase,
            ));
        }
    }
    out
}

/// The pending and firing alerts in the shape of Prometheus' `/api/v1/alerts`.
fn alerts_json(context: &Context, now: DateTime<Utc>) -> Vec<serde_json::Value> {
    let config = context.config();
    let mut out = Vec::new();
    for (job, store) in context.notifiers.alert_stores() {
        let store = store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let origin = Origin {
            host: &config.host,
            job: &job,
        };
        for state in store.lifecycle().states.values() {
            let phase = match state.phase {
                Phase::Pending => "pending",
                Phase::Firing => "firing",
                _ => continue,
            };
            let event = state.event(EventKind::Repeat, now, &origin);
            let mut labels: BTreeMap<String, String> = event.labels.clone();
            labels.insert("alertname".into(), event.name.clone());
            labels.insert("severity".into(), event.severity.as_str().into());
            labels.insert("runner_job".into(), job.clone());
            labels.insert("host".into(), config.host.clone());
            out.push(serde_json::json!({
                "labels": labels,
                "annotations": {
                    "summary": event.summary,
                    "description": event.description,
                    "explanation": event.explanation,
                },
                "state": phase,
                "activeAt": event.active_since,
                "value": event.value.map(|v| v.to_string()),
            }));
        }
    }
    out
}

/// Each monitor job's newest sample in the metrics log (today's file, and yesterday's for a
/// job that has not written today).
pub fn latest_samples(data_dir: &Path, now: DateTime<Utc>) -> Vec<Sample> {
    let mut latest: BTreeMap<String, Sample> = BTreeMap::new();
    let mut parser = LineParser::default();
    for day in [
        now.date_naive(),
        now.date_naive() - chrono::Duration::days(1),
    ] {
        let path = data_dir.join("metrics").join(format!("{day}.jsonl"));
        let Ok(text) = tail_of(&path, TAIL_BYTES) else {
            continue;
        };
        for line in text.lines() {
            let Ok(view) = parser.parse(line) else {
                continue;
            };
            let newer = latest
                .get(view.job())
                .is_none_or(|s| s.ts.timestamp_millis() < view.ts_ms);
            if newer {
                latest.insert(view.job().to_string(), view.to_sample());
            }
        }
    }
    latest.into_values().collect()
}

/// Most of today's metrics file read for the status page's sparklines: an hour of 1 s ticks
/// with a hundred metrics fits many times over.
const HOUR_TAIL_MAX: u64 = 64 * 1024 * 1024;

/// Each monitor metric's last hour in one-minute means (`None` for minutes without samples),
/// by job and name: read from the end of the metrics log, as far back as the hour goes.
fn last_hour(data_dir: &Path, now: DateTime<Utc>) -> BTreeMap<(String, String), Vec<Option<f64>>> {
    let from_ms = now.timestamp_millis() - 3_600_000;
    let mut sums: BTreeMap<(String, String), Vec<(f64, u32)>> = BTreeMap::new();
    let mut parser = LineParser::default();
    for day in [
        now.date_naive() - chrono::Duration::days(1),
        now.date_naive(),
    ] {
        let path = data_dir.join("metrics").join(format!("{day}.jsonl"));
        // Start with the last megabyte and go back until the hour is covered.
        let mut size = 1024 * 1024;
        let text = loop {
            let Ok(text) = tail_of(&path, size) else {
                break String::new();
            };
            let whole_file = std::fs::metadata(&path).map_or(true, |m| m.len() <= size);
            let covered = text
                .lines()
                .next()
                .and_then(crate::store::sample::peek_ts_ms)
                .is_some_and(|ts| ts <= from_ms);
            if covered || whole_file || size >= HOUR_TAIL_MAX {
                break text;
            }
            size *= 4;
        };
        for line in text.lines() {
            let Ok(view) = parser.parse(line) else {
                continue;
            };
            if view.ts_ms < from_ms || view.ts_ms > now.timestamp_millis() {
                continue;
            }
            let minute = (((view.ts_ms - from_ms) / 60_000) as usize).min(59);
            for (name, value) in view.metrics() {
                let slots = sums
                    .entry((view.job().to_string(), name.to_string()))
                    .or_insert_with(|| vec![(0.0, 0); 60]);
                slots[minute].0 += value;
                slots[minute].1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(key, slots)| {
            let means = slots
                .into_iter()
                .map(|(sum, n)| (n > 0).then(|| sum / f64::from(n)))
                .collect();
            (key, means)
        })
        .collect()
}

/// The last `bytes` of a file, from its first whole line.
fn tail_of(path: &Path, bytes: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(if start > 0 {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    })
}

/// What the page prints, as the HTML report templates escape it.
fn escape(text: &str) -> String {
    handlebars::html_escape(text)
}

/// One page, plain HTML and CSS: jobs, alerts, current values, notifiers.
/// A value as people read it, in the unit its name gives: `23.1 GiB`, `2.02 %`, `up`.
fn readable(name: &str, value: f64) -> String {
    let field = name.rsplit('.').next().unwrap_or(name);
    match crate::vocab::unit::unit_of(field) {
        "bool" if value >= 0.5 => "up".to_string(),
        "bool" => "down".to_string(),
        // A count or an id (`version_num` 160004, `processes`, a `_total`): digits as they
        // are, a separator would read as a decimal point in half of the world.
        "" if value.fract() == 0.0 && value.abs() < 1e15 => format!("{}", value as i64),
        unit => crate::template::measure(value, unit),
    }
}

/// One monitor's latest values, a collapsible group per family (`cpu`, `disk`, `postgres`),
/// so a monitor with many probes is a few lines until opened: a family with a probe error is
/// open. Each value has its last hour as a sparkline with the lowest and highest minute.
fn monitor_section(
    sample: &Sample,
    hour: &BTreeMap<(String, String), Vec<Option<f64>>>,
    zone: &crate::scheduler::schedule::Zone,
) -> String {
    let family = |name: &str| name.split('.').next().unwrap_or(name).to_string();
    let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (name, value) in &sample.metrics {
        let (low, high, spark) = match hour.get(&(sample.job.clone(), name.to_string())) {
            Some(minutes) => {
                let values = minutes.iter().flatten().copied();
                let low = values.clone().reduce(f64::min);
                let high = values.reduce(f64::max);
                // A count's minute means are fractions: said as whole as the count is.
                let field = name.rsplit('.').next().unwrap_or(name);
                let whole = crate::vocab::unit::unit_of(field).is_empty() && value.fract() == 0.0;
                let say = |v: f64| readable(name, if whole { v.round() } else { v });
                (
                    low.map(say).unwrap_or_default(),
                    high.map(say).unwrap_or_default(),
                    crate::template::svg_chart(minutes, 120, 24, false, ""),
                )
            }
            None => Default::default(),
        };
        families.entry(family(name)).or_default().0.push(format!(
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{spark}</td><td class=\"n meta\">{low}</td><td class=\"n meta\">{high}</td></tr>",
            escape(name.as_ref()),
            readable(name.as_ref(), *value)
        ));
    }
    for (probe, message) in &sample.errors {
        families.entry(family(probe)).or_default().1.push(format!(
            "<tr><td>{}</td><td class=\"n firing\" colspan=\"4\">{}</td></tr>",
            escape(probe),
            escape(message)
        ));
    }
    let mut html = format!(
        "<h2>{} <span class=\"meta\">at {}</span></h2>",
        escape(&sample.job),
        zone.format(sample.ts)
    );
    for (name, (rows, errors)) in &families {
        let failing = if errors.is_empty() {
            String::new()
        } else {
            format!(", <span class=\"firing\">{} failing</span>", errors.len())
        };
        html.push_str(&format!(
            "<details{}><summary><b>{}</b> <span class=\"meta\">{} value{}{failing}</span></summary>\
<table><tr><th>metric</th><th class=\"n\">value</th><th>last hour</th><th class=\"n\">min</th><th class=\"n\">max</th></tr>{}{}</table></details>",
            if errors.is_empty() { "" } else { " open" },
            escape(name),
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            rows.concat(),
            errors.concat(),
        ));
    }
    html
}

fn status_page(context: &Context, now: DateTime<Utc>) -> String {
    let config = &context.config();
    let zone = &config.zone;
    let mut html = String::with_capacity(32 * 1024);
    html.push_str(&format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"15\"><title>runner: {host}</title>\
<style>body{{font:14px/1.45 system-ui,sans-serif;color:#222;max-width:1100px;margin:2em auto;padding:0 1em}}\
table{{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}}th,td{{padding:.25em .5em;border-bottom:1px solid #eee;text-align:left}}\
td.n,th.n{{text-align:right;font-variant-numeric:tabular-nums}}.firing{{color:#b3261e;font-weight:600}}.pending{{color:#a86b00}}.ok{{color:#1e7b34}}\
h2{{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.5em}}.meta{{color:#666}}\
details{{margin:.2em 0}}summary{{cursor:pointer;padding:.15em 0}}details table{{margin:.2em 0 .6em}}</style></head><body>\
<h1>runner on {host}</h1><p class=\"meta\">{now} · up since {started} · jobs file {file}</p>",
        host = escape(&config.host),
        now = zone.format(now),
        started = zone.format(context.started),
        file = escape(&config.file.display().to_string()),
    ));
    html.push_str("<h2>Alerts</h2>");
    let alerts = alerts_json(context, now);
    if alerts.is_empty() {
        html.push_str("<p class=\"ok\">No alert is pending or firing.</p>");
    } else {
        html.push_str("<table><tr><th>state</th><th>alert</th><th>severity</th><th>since</th><th>explanation</th></tr>");
        for a in &alerts {
            let state = a["state"].as_str().unwrap_or_default();
            let since = a["activeAt"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| zone.format(t.to_utc()))
                .unwrap_or_default();
            html.push_str(&format!(
                "<tr><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td><td>{since}</td><td>{}</td></tr>",
                escape(a["annotations"]["summary"].as_str().unwrap_or_default()),
                escape(a["labels"]["severity"].as_str().unwrap_or_default()),
                escape(a["annotations"]["explanation"].as_str().unwrap_or_default()),
            ));
        }
        html.push_str("</table>");
    }
    let silences = silences::in_force(&config.data_dir, now);
    if !silences.is_empty() {
        html.push_str("<h2>Silences</h2><table><tr><th>id</th><th>matchers</th><th>from</th><th>until</th><th>comment</th></tr>");
        for s in &silences {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.id),
                escape(&s.matchers.join(" ")),
                escape(&config.zone.format(s.starts_at)),
                escape(&config.zone.format(s.ends_at)),
                escape(&s.comment),
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Jobs</h2><table><tr><th>job</th><th>type</th><th>schedule</th><th>now</th><th>next run</th><th class=\"n\">runs ok</th><th class=\"n\">failed</th></tr>");
    for job in exposition::JobView::all(&context.scheduler, config.jobs.keys()) {
        let (name, running, next) = (job.name, job.running, job.next);
        let Some(spec) = config.job(&name) else {
            continue;
        };
        let (ok, failed) = job.stats.as_ref().map_or((0, 0), |s| {
            (
                crate::scheduler::JobStats::get(&s.succeeded),
                crate::scheduler::JobStats::get(&s.failed),
            )
        });
        let now_text = match (running, spec.inactive_reason()) {
            (true, _) => "running".to_string(),
            (false, Some(reason)) => format!("off: {reason}"),
            (false, None) => "waiting".to_string(),
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{ok}</td><td class=\"n{}\">{failed}</td></tr>",
            escape(&name),
            spec.type_name(),
            escape(&spec.schedule.to_string()),
            escape(&now_text),
            next.map(|t| zone.format(t)).unwrap_or_else(|| "–".into()),
            if failed > 0 { " firing" } else { "" },
        ));
    }
    html.push_str("</table>");
    let hour = last_hour(&config.data_dir, now);
    for sample in latest_samples(&config.data_dir, now) {
        if !matches!(
            config.job(&sample.job).map(|j| &j.kind),
            Some(JobKind::Monitor(_))
        ) {
            continue;
        }
        html.push_str(&monitor_section(&sample, &hour, zone));
    }
    html.push_str("<h2>Notifiers</h2><table><tr><th>notifier</th><th class=\"n\">delivered</th><th class=\"n\">failed attempts</th><th class=\"n\">dead</th><th class=\"n\">queued</th></tr>");
    for n in context.notifiers.health() {
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&n.name),
            n.delivered,
            n.failed_attempts,
            n.dead,
            n.backlog_bytes
                .map(crate::vocab::size::format_size)
                .unwrap_or_else(|| "–".into()),
        ));
    }
    html.push_str("</table>");
    if let Some(rw) = &context.remote_write {
        use crate::remote_write::Stats;
        html.push_str(&format!(
            "<h2>Remote write</h2><table><tr><th class=\"n\">samples sent</th><th class=\"n\">retried</th><th class=\"n\">dropped (refused)</th><th class=\"n\">dropped (older than max_age)</th><th class=\"n\">backlog age</th></tr>\
<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} s</td></tr></table>",
            Stats::get(&rw.sent),
            Stats::get(&rw.retried),
            Stats::get(&rw.rejected),
            Stats::get(&rw.too_old),
            rw.backlog_age(now).as_secs(),
        ));
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_in_their_units() {
        assert_eq!(readable("memory.total_bytes", 25_276_059_648.0), "23.5 GiB");
        assert_eq!(
            readable("disk_io.vda.read_bytes_per_sec", 3_145_728.0),
            "3.00 MiB/s"
        );
        assert_eq!(readable("cpu.total.usage_percent", 5.25), "5.25 %");
        assert_eq!(readable("ping.db.rtt_avg_ms", 0.042), "0.042 ms");
        assert_eq!(readable("tcp.redis.up", 0.0), "down");
        assert_eq!(readable("http.shop.up", 1.0), "up");
        assert_eq!(readable("load.load1", 0.47), "0.47");
    }

    #[test]
    fn counts_and_ids_have_no_thousands_separator() {
        assert_eq!(readable("postgres.main.version_num", 160_004.0), "160004");
        assert_eq!(readable("processes.all.count", 12_345.0), "12345");
        assert_eq!(
            readable("net_io.eth0.rx_packets_total", 1_234_567.0),
            "1234567"
        );
        // Units keep their own spelling.
        assert_eq!(readable("memory.total_bytes", 1024.0), "1.00 KiB");
    }

    #[test]
    fn families_are_collapsible_groups_with_the_hour_s_min_and_max() {
        let ts = DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
            .unwrap()
            .to_utc();
        let sample = Sample {
            ts,
            host: "h".into(),
            job: "m".into(),
            metrics: vec![
                ("cpu.total.usage_percent".into(), 12.5),
                ("postgres.main.version_num".into(), 160_004.0),
                ("tcp.redis.up".into(), 0.0),
            ],
            errors: vec![("tcp.redis".into(), "connection refused".into())],
        };
        let mut hour = BTreeMap::new();
        hour.insert(
            ("m".to_string(), "cpu.total.usage_percent".to_string()),
            vec![Some(3.0), None, Some(42.5), Some(12.5)],
        );
        let html = monitor_section(&sample, &hour, &crate::scheduler::schedule::Zone::utc());
        assert_eq!(html.matches("<details").count(), 3, "{html}");
        assert!(
            html.contains(
                "<details><summary><b>cpu</b> <span class=\"meta\">1 value</span></summary>"
            ),
            "{html}"
        );
        assert!(html.contains("<details open><summary><b>tcp</b>"), "{html}");
        assert!(html.contains("1 failing"), "{html}");
        assert!(
            html.contains("<td class=\"n meta\">3 %</td><td class=\"n meta\">42.5 %</td>"),
            "{html}"
        );
        assert!(html.contains(">160004<"), "{html}");
        // A counter's minute means are fractions; its min and max are whole like it.
        let counter = Sample {
            metrics: vec![("memory.major_faults_total".into(), 94_611.0)],
            errors: vec![],
            ..sample.clone()
        };
        hour.insert(
            ("m".to_string(), "memory.major_faults_total".to_string()),
            vec![Some(94_042.0), Some(94_384.8)],
        );
        let html = monitor_section(&counter, &hour, &crate::scheduler::schedule::Zone::utc());
        assert!(
            html.contains("<td class=\"n\">94611</td><td><svg")
                && html.contains("<td class=\"n meta\">94042</td><td class=\"n meta\">94385</td>"),
            "{html}"
        );
        assert!(!html.contains("160,004"), "{html}");
    }
}
