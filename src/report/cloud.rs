//! The report's Cloud section: for each `cloudwatch` probe, the week's figures of what it reads
//! from CloudWatch (mean, p95, peak, last), how often CloudWatch answered, and the API requests
//! it made in the window, read from the window's metric summaries (nothing when no
//! `cloudwatch` probe ran). Laid out as the Database section is (issue 31 section 2).

use serde::Serialize;

use super::summary::Family;

/// The probe's own fields; every other field is a CloudWatch metric.
const OWN_FIELDS: &[&str] = &["up", "api_requests_total", "api_metrics_total"];

#[derive(Debug, Clone, Serialize)]
pub struct CloudProbe {
    /// The probe's name (`web`).
    pub name: String,
    /// The share of ticks CloudWatch answered, in percent.
    pub answered_percent: Option<f64>,
    /// GetMetricData calls and metrics asked for (what CloudWatch bills) after the window's
    /// first tick: the growth of the probe's counters, last minus lowest (a restart sets them
    /// back to 0, so a window with one counts from the restart).
    pub api_requests: Option<f64>,
    pub api_metrics: Option<f64>,
    pub metrics: Vec<CloudMetric>,
}

/// One CloudWatch metric of a probe over the window.
#[derive(Debug, Clone, Serialize)]
pub struct CloudMetric {
    /// The field (`cpu_utilization_percent`).
    pub field: String,
    pub unit: String,
    pub avg: f64,
    pub p95: Option<f64>,
    pub max: f64,
    pub last: f64,
}

/// The section for the families of a window, one entry per `cloudwatch` probe.
pub fn summarize(families: &[Family]) -> Vec<CloudProbe> {
    let Some(family) = families.iter().find(|f| f.name == "cloudwatch") else {
        return Vec::new();
    };
    let mut probes: Vec<String> = family.metrics.iter().map(|m| m.instance.clone()).collect();
    probes.sort_unstable();
    probes.dedup();
    probes
        .into_iter()
        .map(|probe| {
            let get = |field: &str| {
                family
                    .metrics
                    .iter()
                    .find(|m| m.instance == probe && m.field == field)
            };
            // A counter that only grows: its growth is last minus first, which the summary
            // does not keep; last minus min is the same unless runner restarted.
            let growth = |field: &str| get(field).map(|m| (m.last - m.min).max(0.0));
            let mut metrics: Vec<CloudMetric> = family
                .metrics
                .iter()
                .filter(|m| m.instance == probe && !OWN_FIELDS.contains(&m.field.as_str()))
                .map(|m| CloudMetric {
                    field: m.field.clone(),
                    unit: m.unit.clone(),
                    avg: m.avg,
                    p95: m.p95,
                    max: m.max,
                    last: m.last,
                })
                .collect();
            metrics.sort_by(|a, b| a.field.cmp(&b.field));
            CloudProbe {
                answered_percent: get("up").map(|m| m.avg * 100.0),
                api_requests: growth("api_requests_total"),
                api_metrics: growth("api_metrics_total"),
                metrics,
                name: probe,
            }
        })
        .collect()
}
