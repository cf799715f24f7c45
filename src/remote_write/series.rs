//! One metrics log line as the samples remote write sends: every metric under its `/metrics`
//! name and labels (`store::prometheus`, the one mapping), `runner_probe_failing` for each
//! failed probe, and an `ALERTS` series for each alert pending or firing at the tick with its
//! `ALERTS_FOR_STATE` (when the spell became active), all at the tick's timestamp in
//! milliseconds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::alerts::Active;
use crate::store::prometheus;
use crate::store::sample::SampleView;

/// A series' labels, `__name__` included, sorted by name.
pub type Labels = Arc<[(String, String)]>;

/// A sample of one series.
pub type Point = (Labels, f64);

/// Turns lines into points, remembering each series' labels (a monitor sends the same ones
/// every tick), so a tick costs lookups, not allocations.
#[derive(Debug, Default)]
pub struct Converter {
    jobs: BTreeMap<String, JobSeries>,
}

/// One monitor's series, for the host it last wrote as.
#[derive(Debug, Default)]
struct JobSeries {
    host: String,
    /// By runner name; `None` for a name Prometheus has no series for.
    metrics: HashMap<String, Option<(Labels, f64)>>,
    /// By probe.
    failing: HashMap<String, Labels>,
    /// The `ALERTS` and `ALERTS_FOR_STATE` labels of the alerts at the last tick (an alert is
    /// active over many ticks), each marked when a tick has it: the rest are dropped.
    alerts: Vec<AlertSeries>,
}

#[derive(Debug)]
struct AlertSeries {
    alert: Active,
    labels: Labels,
    for_state: Labels,
    seen: bool,
}

impl AlertSeries {
    fn new(host: &str, job: &str, alert: &Active) -> AlertSeries {
        let labels = prometheus::alert_labels(
            host,
            job,
            &alert.name,
            &alert.severity,
            alert.state,
            &alert.labels,
        );
        AlertSeries {
            for_state: prometheus::alert_for_state_labels(&labels).into(),
            labels: labels.into(),
            alert: alert.clone(),
            seen: false,
        }
    }

    /// Whether `alert` has these series (its active-since time is a value, not a label).
    fn is_of(&self, alert: &Active) -> bool {
        let a = &self.alert;
        a.state == alert.state
            && a.name == alert.name
            && a.severity == alert.severity
            && a.labels == alert.labels
    }
}

fn sorted(name: String, labels: Vec<(&'static str, String)>) -> Labels {
    let mut all: Vec<(String, String)> = Vec::with_capacity(labels.len() + 1);
    all.push(("__name__".to_string(), name));
    all.extend(labels.into_iter().map(|(k, v)| (k.to_string(), v)));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.into()
}

impl Converter {
    /// The points of one tick, in a fixed order (metrics as logged, failed probes, alerts), so
    /// a batch that ends inside a tick resumes at the same point after a restart.
    pub fn points(&mut self, view: &SampleView<'_>, alerts: &[Active], out: &mut Vec<Point>) {
        let (host, job) = (view.host(), view.job());
        if !self.jobs.contains_key(job) {
            self.jobs.insert(job.to_string(), JobSeries::default());
        }
        let Some(series) = self.jobs.get_mut(job) else {
            return;
        };
        if series.host != host {
            *series = JobSeries {
                host: host.to_string(),
                ..JobSeries::default()
            };
        }
        for (name, value) in view.metrics() {
            if !series.metrics.contains_key(name) {
                let labels = prometheus::series_of(name).map(|prom| {
                    let labels = prometheus::monitor_labels(host, job, &prom.labels);
                    (sorted(prom.name, labels), prom.factor)
                });
                series.metrics.insert(name.to_string(), labels);
            }
            if let Some(Some((labels, factor))) = series.metrics.get(name) {
                out.push((labels.clone(), value * *factor));
            }
        }
        for (probe, _) in view.errors() {
            if !series.failing.contains_key(probe.as_ref()) {
                let labels = sorted(
                    prometheus::PROBE_FAILING.to_string(),
                    prometheus::probe_failing_labels(host, job, &probe),
                );
                series.failing.insert(probe.to_string(), labels);
            }
            if let Some(labels) = series.failing.get(probe.as_ref()) {
                out.push((labels.clone(), 1.0));
            }
        }
        for cached in &mut series.alerts {
            cached.seen = false;
        }
        for alert in alerts {
            let i = match series.alerts.iter().position(|c| c.is_of(alert)) {
                Some(i) => i,
                None => {
                    series.alerts.push(AlertSeries::new(host, job, alert));
                    series.alerts.len() - 1
                }
            };
            let cached = &mut series.alerts[i];
            cached.seen = true;
            out.push((cached.labels.clone(), 1.0));
            // Seconds with the milliseconds kept, as Prometheus writes it (a float).
            out.push((
                cached.for_state.clone(),
                alert.active_since_ms as f64 / 1000.0,
            ));
        }
        series.alerts.retain(|c| c.seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sample::LineParser;

    #[test]
    fn a_line_becomes_the_series_metrics_shows_plus_alerts_and_their_active_since() {
        let line = r#"{"ts":"2026-12-06T10:00:00.250Z","host":"web-1","job":"monitor","metrics":{"cpu.total.usage_percent":12.5,"ping.gw.rtt_avg_ms":3},"errors":{"disk":"gone"}}"#;
        let mut parser = LineParser::default();
        let view = parser.parse(line).unwrap();
        let alerts = [
            Active {
                name: "HighCpu".into(),
                severity: "warning".into(),
                labels: Default::default(),
                state: super::super::alerts::FIRING,
                active_since_ms: 1_796_551_140_500,
            },
            Active {
                name: "DiskFull".into(),
                severity: "critical".into(),
                labels: Default::default(),
                state: super::super::alerts::PENDING,
                active_since_ms: 1_796_551_195_000,
            },
        ];
        let mut out = Vec::new();
        Converter::default().points(&view, &alerts, &mut out);
        let text: Vec<String> = out
            .iter()
            .map(|(labels, v)| {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {v}", l.join(","))
            })
            .collect();
        assert_eq!(
            text,
            [
                "__name__=runner_cpu_usage_percent,cpu=total,host=web-1,runner_job=monitor 12.5",
                "__name__=runner_ping_rtt_avg_seconds,host=web-1,name=gw,runner_job=monitor 0.003",
                "__name__=runner_probe_failing,host=web-1,probe=disk,runner_job=monitor 1",
                "__name__=ALERTS,alertname=HighCpu,alertstate=firing,host=web-1,runner_job=monitor,severity=warning 1",
                "__name__=ALERTS_FOR_STATE,alertname=HighCpu,host=web-1,runner_job=monitor,severity=warning 1796551140.5",
                "__name__=ALERTS,alertname=DiskFull,alertstate=pending,host=web-1,runner_job=monitor,severity=critical 1",
                "__name__=ALERTS_FOR_STATE,alertname=DiskFull,host=web-1,runner_job=monitor,severity=critical 1796551195",
            ]
        );
    }

    /// An alert's series are built at its first tick and reused while it stays; one that
    /// turns from pending to firing gets its `ALERTS` series for the new state.
    #[test]
    fn an_alerts_labels_are_built_once_while_it_stays_active() {
        let line = r#"{"ts":"2026-12-06T10:00:00Z","host":"web-1","job":"monitor","metrics":{}}"#;
        let mut parser = LineParser::default();
        let view = parser.parse(line).unwrap();
        let mut alert = Active {
            name: "HighCpu".into(),
            severity: "warning".into(),
            labels: Default::default(),
            state: super::super::alerts::PENDING,
            active_since_ms: 1_796_551_140_500,
        };
        let mut converter = Converter::default();
        let mut tick = |alert: &Active| {
            let mut out = Vec::new();
            converter.points(&view, std::slice::from_ref(alert), &mut out);
            out
        };
        let first = tick(&alert);
        let second = tick(&alert);
        assert!(Arc::ptr_eq(&first[0].0, &second[0].0));
        assert!(Arc::ptr_eq(&first[1].0, &second[1].0));
        alert.state = super::super::alerts::FIRING;
        let fired = tick(&alert);
        assert!(
            fired[0]
                .0
                .contains(&("alertstate".to_string(), "firing".to_string()))
        );
        assert_eq!(fired[1].0, first[1].0);
        assert_eq!(fired[1].1, first[1].1);
    }
}
