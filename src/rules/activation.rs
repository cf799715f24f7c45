//! `alert(name, #{...})`: what a rule says about one alert in one tick, read from the options
//! map with every key checked, so a misspelt option is an error, not a silent default.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::vocab::Severity;
use crate::vocab::duration::parse_duration;

/// Every option `alert()` takes, for checks and messages.
pub const OPTIONS: &[&str] = &[
    "severity",
    "summary",
    "description",
    "labels",
    "active",
    "pending_for",
    "keep_firing_for",
    "repeat_interval",
    "clear_when",
    "on_missing",
    "notify",
    "action",
    "value",
    "threshold",
    "op",
    "metric",
    "window",
    "baseline",
    "explanation",
];

pub const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

/// What to do when the data an alert watches stops coming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Leave the alert as it is (firing stays firing, pending stays pending).
    Keep,
    /// Resolve it.
    Resolve,
    /// Treat missing data as the problem itself: the alert becomes active.
    Alert,
}

/// One `alert()` call.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub name: String,
    pub rule_file: Arc<str>,
    pub labels: BTreeMap<String, String>,
    pub severity: Severity,
    pub summary: Option<String>,
    pub description: Option<String>,
    /// The problem holds now (default true: `if x > 85 { alert(...) }`).
    pub active: bool,
    /// While firing and not active: `Some(false)` holds the alert (hysteresis), `Some(true)`
    /// or `None` lets it resolve.
    pub clear_when: Option<bool>,
    pub pending_for: Duration,
    pub keep_firing_for: Duration,
    pub repeat_interval: Duration,
    pub on_missing: OnMissing,
    pub notify: Option<Vec<String>>,
    /// The `actions:` entry to run when it fires.
    pub action: Option<String>,
    /// `value` was given but is `()`: the data is missing this tick.
    pub value_missing: bool,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub op: String,
    pub metric: Option<String>,
    pub window: Option<String>,
    pub baseline: Option<String>,
    pub explanation: Option<String>,
}

fn number(value: &Dynamic) -> Option<f64> {
    value
        .as_float()
        .ok()
        .or_else(|| value.as_int().ok().map(|i| i as f64))
}

fn text(key: &str, value: &Dynamic) -> Result<String, String> {
    if value.is_string() {
        Ok(value.clone().into_string().unwrap_or_default())
    } else {
        Err(format!(
            "alert option `{key}` must be a string, not {}",
            value.type_name()
        ))
    }
}

fn duration(key: &str, value: &Dynamic) -> Result<Duration, String> {
    parse_duration(&text(key, value)?).map_err(|e| format!("alert option `{key}`: {e}"))
}

impl Activation {
    pub fn from_map(name: &str, rule_file: Arc<str>, opts: &Map) -> Result<Activation, String> {
        if name.is_empty() {
            return Err("an alert needs a name".into());
        }
        let mut a = Activation {
            name: name.to_string(),
            rule_file,
            labels: BTreeMap::new(),
            severity: Severity::Warning,
            summary: None,
            description: None,
            active: true,
            clear_when: None,
            pending_for: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            repeat_interval: DEFAULT_REPEAT,
            on_missing: OnMissing::Keep,
            notify: None,
            action: None,
            value_missing: false,
            value: None,
            threshold: None,
            op: ">".to_string(),
            metric: None,
            window: None,
            baseline: None,
            explanation: None,
        };
        for (key, value) in opts {
            let key = key.as_str();
            match key {
                "severity" => {
                    a.severity = match text(key, value)?.as_str() {
                        "info" => Severity::Info,
                        "warning" => Severity::Warning,
                        "critical" => Severity::Critical,
                        other => {
                            return Err(format!(
                                "unknown severity `{other}` (expected info, warning or critical)"
                            ));
                        }
                    }
                }
                "summary" | "description" if value.is_unit() => {}
                "summary" => a.summary = Some(text(key, value)?),
                "description" => a.description = Some(text(key, value)?),
                "labels" => {
                    let map = value.read_lock::<Map>().ok_or_else(|| {
                        format!(
                            "alert option `labels` must be a map, not {}",
                            value.type_name()
                        )
                    })?;
                    for (k, v) in map.iter() {
                        a.labels.insert(k.to_string(), v.to_string());
                    }
                }
                "active" => {
                    a.active = value.as_bool().map_err(|_| {
                        format!(
                            "alert option `active` must be true or false, not {}",
                            value.type_name()
                        )
                    })?
                }
                // A comparison with missing data is false; `()` itself reads as "not yet".
                "clear_when" => a.clear_when = Some(value.as_bool().unwrap_or(false)),
                "pending_for" => a.pending_for = duration(key, value)?,
                "keep_firing_for" => a.keep_firing_for = duration(key, value)?,
                "repeat_interval" => a.repeat_interval = duration(key, value)?,
                "on_missing" => {
                    a.on_missing = match text(key, value)?.as_str() {
                        "keep" => OnMissing::Keep,
                        "resolve" => OnMissing::Resolve,
                        "alert" => OnMissing::Alert,
                        other => {
                            return Err(format!(
                                "unknown on_missing `{other}` (expected keep, resolve or alert)"
                            ));
                        }
                    }
                }
                "notify" => {
                    let list = value
                        .read_lock::<rhai::Array>()
                        .ok_or("alert option `notify` must be an array of notifier names")?;
                    a.notify = Some(list.iter().map(|v| v.to_string()).collect());
                }
                "action" => {
                    let name = value.read_lock::<rhai::ImmutableString>().ok_or(
                        "alert option `action` must be the name of an entry of `actions:`",
                    )?;
                    a.action = Some(name.to_string());
                }
                "value" => {
                    a.value = number(value);
                    a.value_missing = value.is_unit();
                }
                "threshold" => a.threshold = number(value),
                "op" => a.op = text(key, value)?,
                // `()` for an optional text means "none", so rules can compute it or not.
                _ if value.is_unit()
                    && [
                        "metric",
                        "window",
                        "baseline",
                        "explanation",
                        "summary",
                        "description",
                    ]
                    .contains(&key) => {}
                "metric" => a.metric = Some(text(key, value)?),
                "window" => a.window = Some(text(key, value)?),
                "baseline" => a.baseline = Some(value.to_string()),
                "explanation" => a.explanation = Some(text(key, value)?),
                other => {
                    let hint = crate::vocab::suggest::closest(other, OPTIONS.iter().copied())
                        .map(|b| format!("; did you mean `{b}`?"))
                        .unwrap_or_default();
                    return Err(format!("unknown alert option `{other}`{hint}"));
                }
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Dynamic)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    #[test]
    fn reads_options() {
        let mut labels = Map::new();
        labels.insert("mount".into(), "/var".into());
        let a = Activation::from_map(
            "disk_full",
            "rules/disk.rhai".into(),
            &map(&[
                ("severity", "critical".into()),
                ("pending_for", "5m".into()),
                ("value", Dynamic::from_float(93.5)),
                ("threshold", Dynamic::from_int(90)),
                ("labels", Dynamic::from_map(labels)),
                ("on_missing", "alert".into()),
            ]),
        )
        .unwrap();
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.pending_for, Duration::from_secs(300));
        assert_eq!((a.value, a.threshold), (Some(93.5), Some(90.0)));
        assert_eq!(a.labels["mount"], "/var");
        assert_eq!(a.on_missing, OnMissing::Alert);
        assert!(a.active && !a.value_missing);
    }

    #[test]
    fn refuses_what_is_wrong() {
        let err = |pairs: &[(&str, Dynamic)]| {
            Activation::from_map("x", "r".into(), &map(pairs)).unwrap_err()
        };
        assert_eq!(
            err(&[("pending", "5m".into())]),
            "unknown alert option `pending`; did you mean `pending_for`?"
        );
        assert_eq!(
            err(&[("severity", "high".into())]),
            "unknown severity `high` (expected info, warning or critical)"
        );
        assert!(
            err(&[("pending_for", "5 minutes".into())])
                .starts_with("alert option `pending_for`: invalid duration")
        );
        let missing =
            Activation::from_map("x", "r".into(), &map(&[("value", Dynamic::UNIT)])).unwrap();
        assert!(missing.value_missing);
    }
}
