//! How the metrics log's names show in Prometheus: one mapping, used by `/metrics`
//! (`status::exposition`), by remote write, and by whatever reads a Prometheus store back, so a
//! series has one name wherever it is seen.
//!
//! Names follow Prometheus conventions: `runner_<family>_<field>`, base units (`_ms` becomes
//! `_seconds`, `_days` `_seconds`, `_per_sec` `_per_second`; `_percent` stays 0-100), the
//! instance as a label named for what it is (`cpu`, `mount`, `device`, `interface`, or `name`
//! for probes of other things; `part` for a database or standby inside one), and `host` and
//! `runner_job` (the monitor) on every series. `runner_job` because Prometheus sets `job`.
//!
//! A field ending in `_total` is one of the kernel's cumulative counters as the probe read it
//! (`net_io.eth0.rx_bytes_total`): a `counter`, for `rate()`, beside the per-tick rate gauges
//! the rules use. CPU time by mode is one family with a `mode` label, as node_exporter has it:
//! `cpu.total.user_seconds_total` is `runner_cpu_seconds_total{cpu="total",mode="user"}`.

use std::collections::BTreeMap;

use crate::config::probes::{Instances, PROBE_TYPES};

/// The label naming the machine, on every series.
pub const HOST: &str = "host";
/// The label naming the monitor job (`job` is Prometheus' own).
pub const JOB: &str = "runner_job";
/// 1 for each probe whose reading of a tick failed.
pub const PROBE_FAILING: &str = "runner_probe_failing";
pub const PROBE_FAILING_HELP: &str = "1 for each probe whose latest reading failed (the reason is in the metrics log's `errors`); on /metrics, 0 for each configured probe that did not, from the start";
/// Alerts in the shape Prometheus' rule evaluation writes them: 1 while the alert is active.
pub const ALERTS: &str = "ALERTS";
/// Beside each `ALERTS` sample, as Prometheus' rule manager writes it to restore `for` state:
/// the Unix time in seconds the alert became active (pending, or firing without `pending_for`),
/// the same for every tick of one spell, so a reader tells spells apart by it.
pub const ALERTS_FOR_STATE: &str = "ALERTS_FOR_STATE";

/// A monitor's labels for one series: `host` and `runner_job` first, then the instance's.
pub fn monitor_labels(
    host: &str,
    job: &str,
    instance: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut labels = Vec::with_capacity(2 + instance.len());
    labels.push((HOST, host.to_string()));
    labels.push((JOB, job.to_string()));
    labels.extend(instance.iter().cloned());
    labels
}

/// The labels of `runner_probe_failing` for one probe of a monitor.
pub fn probe_failing_labels(host: &str, job: &str, probe: &str) -> Vec<(&'static str, String)> {
    monitor_labels(host, job, &[("probe", probe.to_string())])
}

/// The labels of an `ALERTS` series, sorted by name as remote write wants them: the alert's
/// own labels (sanitized; those that would hide one of runner's are left out), `alertname`,
/// `alertstate`, `severity`, `host` and `runner_job`.
pub fn alert_labels(
    host: &str,
    job: &str,
    alertname: &str,
    severity: &str,
    alertstate: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (sanitize(k), v.clone()))
        .filter(|(k, _)| !k.starts_with("__"))
        .collect();
    for (key, value) in [
        ("__name__", ALERTS),
        ("alertname", alertname),
        ("alertstate", alertstate),
        ("severity", severity),
        (HOST, host),
        (JOB, job),
    ] {
        out.insert(key.to_string(), value.to_string());
    }
    out.into_iter().collect()
}

/// The labels of an `ALERTS_FOR_STATE` series, from those of its `ALERTS` series: all but
/// `alertstate`, which a spell changes from pending to firing while its active-since time stays.
pub fn alert_for_state_labels(alerts: &[(String, String)]) -> Vec<(String, String)> {
    alerts
        .iter()
        .filter(|(k, _)| k != "alertstate")
        .map(|(k, v)| match k.as_str() {
            "__name__" => (k.clone(), ALERTS_FOR_STATE.to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

/// `[a-zA-Z0-9_]` only: the rest becomes `_`.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The label an instance of `family` gets.
pub fn instance_label(family: &str) -> &'static str {
    match family {
        "cpu" => "cpu",
        "disk" => "mount",
        "disk_io" => "device",
        "net_io" => "interface",
        _ => "name",
    }
}

/// A runner field's Prometheus name and the factor that brings its value to the base unit.
pub fn prometheus_field(field: &str) -> (String, f64) {
    let field = sanitize(field);
    if let Some(stem) = field.strip_suffix("_ms") {
        (format!("{stem}_seconds"), 0.001)
    } else if let Some(stem) = field.strip_suffix("_days") {
        (format!("{stem}_seconds"), 86_400.0)
    } else if let Some(stem) = field.strip_suffix("_s") {
        (format!("{stem}_seconds"), 1.0)
    } else if let Some(stem) = field.strip_suffix("_per_sec") {
        (format!("{stem}_per_second"), 1.0)
    } else {
        (field, 1.0)
    }
}

/// How one of runner's metric names shows in Prometheus.
#[derive(Debug)]
pub struct PromName {
    pub name: String,
    pub labels: Vec<(&'static str, String)>,
    /// What the value is multiplied by to be in the base unit.
    pub factor: f64,
    pub help: String,
    /// `counter` for a cumulative count (`_total`), else `gauge`.
    pub kind: &'static str,
}

/// `cpu.total.usage_percent` → `runner_cpu_usage_percent{cpu="total"}`.
pub fn series_of(name: &str) -> Option<PromName> {
    let parts: Vec<&str> = name.split('.').collect();
    let family = *parts.first()?;
    let described = PROBE_TYPES.iter().find(|t| t.name == family);
    let flat = described.is_some_and(|t| matches!(t.instances, Instances::None));
    let (labels, field): (Vec<(&'static str, String)>, &str) = match (flat, parts.as_slice()) {
        (true, [_, field]) => (Vec::new(), field),
        (false, [_, instance, field]) => {
            (vec![(instance_label(family), instance.to_string())], field)
        }
        (false, [_, instance, part, field]) => (
            vec![
                (instance_label(family), instance.to_string()),
                ("part", part.to_string()),
            ],
            field,
        ),
        _ => return None,
    };
    let help = described
        .and_then(|t| {
            t.fields
                .iter()
                .chain(t.nested_fields)
                .find(|f| f.name == field)
        })
        .map_or_else(
            || format!("`{field}` of the {family} probe"),
            |f| f.help.to_string(),
        );
    let (prom_field, factor) = prometheus_field(field);
    let kind = if prom_field.ends_with("_total") {
        "counter"
    } else {
        "gauge"
    };
    let mut labels = labels;
    let prom_field = match (family, prom_field.strip_suffix("_seconds_total")) {
        ("cpu", Some(mode)) => {
            labels.push(("mode", mode.to_string()));
            "seconds_total".to_string()
        }
        _ => prom_field,
    };
    let help = if family == "cpu" && prom_field == "seconds_total" {
        "CPU time spent in each mode since boot, in seconds (`/proc/stat`)".to_string()
    } else {
        help
    };
    Some(PromName {
        name: format!("runner_{}_{prom_field}", sanitize(family)),
        labels,
        factor,
        help,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_names_become_prometheus_series_in_base_units() {
        let p = series_of("cpu.total.usage_percent").unwrap();
        assert_eq!(p.name, "runner_cpu_usage_percent");
        assert_eq!(p.labels, [("cpu", "total".to_string())]);
        assert_eq!(p.factor, 1.0);
        let p = series_of("ping.gateway.rtt_avg_ms").unwrap();
        assert_eq!(p.name, "runner_ping_rtt_avg_seconds");
        assert_eq!(p.labels, [("name", "gateway".to_string())]);
        assert_eq!(p.factor, 0.001);
        assert!(!p.help.is_empty());
        let p = series_of("memory.used_percent").unwrap();
        assert_eq!(
            (p.name.as_str(), p.labels.len()),
            ("runner_memory_used_percent", 0)
        );
        let p = series_of("http.shop.cert_expiry_days").unwrap();
        assert_eq!(
            (p.name.as_str(), p.factor),
            ("runner_http_cert_expiry_seconds", 86_400.0)
        );
        assert_eq!(p.labels[0].0, "name");
        let p = series_of("postgres.main.shop.commits_per_sec").unwrap();
        assert_eq!(p.name, "runner_postgres_commits_per_second");
        assert_eq!(p.labels[1], ("part", "shop".to_string()));
        let p = series_of("postgres.main.oldest_transaction_s").unwrap();
        assert_eq!(p.name, "runner_postgres_oldest_transaction_seconds");
        assert_eq!(
            series_of("disk_io.dm_0.await_ms").unwrap().labels[0].0,
            "device"
        );
    }

    #[test]
    fn cumulative_fields_are_counters_and_cpu_modes_a_label() {
        let p = series_of("net_io.eth0.rx_bytes_total").unwrap();
        assert_eq!(
            (p.name.as_str(), p.kind, p.factor),
            ("runner_net_io_rx_bytes_total", "counter", 1.0)
        );
        assert_eq!(p.labels, [("interface", "eth0".to_string())]);
        let p = series_of("cpu.total.iowait_seconds_total").unwrap();
        assert_eq!(
            (p.name.as_str(), p.kind),
            ("runner_cpu_seconds_total", "counter")
        );
        assert_eq!(
            p.labels,
            [("cpu", "total".to_string()), ("mode", "iowait".to_string())]
        );
        assert_eq!(series_of("cpu.total.usage_percent").unwrap().kind, "gauge");
    }

    #[test]
    fn alert_labels_are_sorted_and_keep_runners_own() {
        let own = BTreeMap::from([
            ("host".to_string(), "spoof".to_string()),
            ("mount-point".to_string(), "/".to_string()),
        ]);
        let labels = alert_labels("h", "m", "DiskFull", "critical", "firing", &own);
        let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "__name__",
                "alertname",
                "alertstate",
                "host",
                "mount_point",
                "runner_job",
                "severity"
            ]
        );
        assert_eq!(labels[3].1, "h");
    }
}
