//! The incidents cache, `data_dir/incidents/incidents.json`: every incident the fetch job saw,
//! by sys_id, with dates as UTC times and state and priority codes named; and the watermark
//! (the newest `sys_updated_on` seen) from which the next fetch goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SCHEMA_VERSION: u32 = 1;

/// Bytes of one text field kept (`short_description`, `category`, a job's own `fields`): a
/// stock `short_description` holds 160 characters and a `description` 4,000 (mostly one byte
/// each); a longer value is cut at a character boundary and ends in [`CUT_MARK`], so a server
/// cannot make the cache (and the report) carry megabytes per incident.
pub const FIELD_MAX: usize = 4096;

/// Ends a cut field.
pub const CUT_MARK: &str = "…";

/// Bytes of `sys_id`, `number` and `sys_updated_on` at most (32, about 10 and 19 on a real
/// instance). These identify a row and place it in the keyset, so they are never cut: a row
/// with a longer one is not an incident and is skipped.
pub const KEY_MAX: usize = 256;

/// `text` cut to at most `max` bytes at a character boundary, ending in [`CUT_MARK`] when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(CUT_MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARK}", &text[..end])
}

/// Fields every fetch asks for (a job's `fields` add to them).
pub const DEFAULT_FIELDS: &[&str] = &[
    "sys_id",
    "number",
    "short_description",
    "state",
    "priority",
    "impact",
    "urgency",
    "category",
    "assignment_group",
    "correlation_id",
    "opened_at",
    "resolved_at",
    "closed_at",
    "sys_updated_on",
];

/// Fields the fetch needs whatever the job lists.
pub const REQUIRED_FIELDS: &[&str] = &[
    "sys_id",
    "number",
    "state",
    "opened_at",
    "resolved_at",
    "sys_updated_on",
];

/// Incident states of a stock instance; unknown codes are kept as they are.
pub fn state_name(code: &str) -> String {
    match code {
        "1" => "New",
        "2" => "In Progress",
        "3" => "On Hold",
        "6" => "Resolved",
        "7" => "Closed",
        "8" => "Canceled",
        other => return other.to_string(),
    }
    .to_string()
}

pub fn priority_name(code: &str) -> String {
    match code {
        "1" => "Critical",
        "2" => "High",
        "3" => "Moderate",
        "4" => "Low",
        "5" => "Planning",
        other => return other.to_string(),
    }
    .to_string()
}

/// Whether a state code means the incident is over.
pub fn is_ended(code: &str) -> bool {
    matches!(code, "6" | "7" | "8")
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as the Table API gives dates with `sysparm_display_value=false`.
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub sys_id: String,
    pub number: String,
    #[serde(default)]
    pub short_description: String,
    /// The state code as stored (`6`).
    pub state: String,
    /// Its name (`Resolved`), or the code when the instance has its own states.
    pub state_name: String,
    #[serde(default)]
    pub priority: String,
    #[serde(default)]
    pub priority_name: String,
    pub opened_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// `sys_updated_on` exactly as the instance wrote it, for the watermark.
    pub sys_updated_on: String,
    /// Every other field fetched, as the instance gave it.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl Incident {
    /// An incident from one row of the Table API; `None` without `sys_id` or `number`, or with
    /// one of them or `sys_updated_on` longer than [`KEY_MAX`]. Other fields are cut to
    /// [`FIELD_MAX`].
    pub fn from_row(row: &Map<String, Value>) -> Option<Incident> {
        let whole = |key: &str| -> String {
            match row.get(key) {
                Some(Value::String(s)) => s.clone(),
                // A reference field when links were not excluded: `{"value": sys_id, "link": ...}`.
                Some(Value::Object(o)) => o
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        };
        let text = |key: &str| -> String {
            let value = whole(key);
            if value.len() > FIELD_MAX {
                cut(&value, FIELD_MAX)
            } else {
                value
            }
        };
        let sys_id = whole("sys_id");
        let number = whole("number");
        let sys_updated_on = whole("sys_updated_on");
        if sys_id.is_empty()
            || number.is_empty()
            || [&sys_id, &number, &sys_updated_on]
                .iter()
                .any(|key| key.len() > KEY_MAX)
        {
            return None;
        }
        let state = text("state");
        let priority = text("priority");
        const NAMED: &[&str] = &[
            "sys_id",
            "number",
            "short_description",
            "state",
            "priority",
            "opened_at",
            "resolved_at",
            "closed_at",
            "sys_updated_on",
        ];
        let fields = row
            .keys()
            .filter(|k| !NAMED.contains(&k.as_str()))
            .map(|k| (k.clone(), text(k)))
            .collect();
        Some(Incident {
            short_description: text("short_description"),
            state_name: state_name(&state),
            priority_name: priority_name(&priority),
            opened_at: parse_date(&text("opened_at")),
            resolved_at: parse_date(&text("resolved_at")),
            closed_at: parse_date(&text("closed_at")),
            updated_at: parse_date(&sys_updated_on),
            sys_updated_on,
            sys_id,
            number,
            state,
            priority,
            fields,
        })
    }

    pub fn is_open(&self) -> bool {
        !is_ended(&self.state)
    }

    /// Bytes of text the incident holds (its strings, field names included): what a fetch
    /// counts against its budget.
    pub fn text_bytes(&self) -> usize {
        [
            &self.sys_id,
            &self.number,
            &self.short_description,
            &self.state,
            &self.state_name,
            &self.priority,
            &self.priority_name,
            &self.sys_updated_on,
        ]
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
            + self
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cache {
    pub schema_version: u32,
    /// The instance (scheme and host) the incidents came from.
    pub instance: String,
    /// The job's query: a different query starts a new cache.
    pub query: String,
    pub fetched_at: Option<DateTime<Utc>>,
    /// The newest `sys_updated_on` of a completed fetch; the next one asks from there.
    pub watermark: Option<String>,
    pub incidents: BTreeMap<String, Incident>,
}

pub fn cache_path(data_dir: &Path) -> PathBuf {
    data_dir.join("incidents").join("incidents.json")
}

impl Cache {
    /// The cache on disk; `Ok(None)` when there is none yet.
    pub fn read(path: &Path) -> Result<Option<Cache>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the whole cache atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::store::atomic::write(path, &bytes)
    }

    /// Inserts or replaces by sys_id; returns whether it was new.
    pub fn upsert(&mut self, incident: Incident) -> bool {
        self.incidents
            .insert(incident.sys_id.clone(), incident)
            .is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_incidents_with_utc_dates_and_named_codes() {
        let row = serde_json::json!({
            "sys_id": "a1", "number": "INC0010001", "short_description": "slow checkout",
            "state": "2", "priority": "1", "opened_at": "2026-11-23 09:14:00", "resolved_at": "",
            "sys_updated_on": "2026-11-24 10:00:00", "category": "performance",
            "assignment_group": {"value": "g1", "link": "https://x/api/now/table/sys_user_group/g1"}
        });
        let i = Incident::from_row(row.as_object().unwrap()).unwrap();
        assert_eq!(i.state_name, "In Progress");
        assert_eq!(i.priority_name, "Critical");
        assert_eq!(
            i.opened_at.unwrap().to_rfc3339(),
            "2026-11-23T09:14:00+00:00"
        );
        assert_eq!(i.resolved_at, None);
        assert_eq!(i.fields["category"], "performance");
        assert_eq!(i.fields["assignment_group"], "g1");
        assert!(i.is_open());
        assert_eq!(state_name("42"), "42", "a custom state keeps its code");
        assert!(
            Incident::from_row(serde_json::json!({"number": "x"}).as_object().unwrap()).is_none()
        );
    }

    #[test]
    fn long_fields_are_cut_at_a_character_boundary_and_long_keys_refuse_the_row() {
        let long = format!("x{}", "é".repeat(600_000));
        let row = serde_json::json!({
            "sys_id": "a1", "number": "INC0010001", "short_description": long,
            "state": "2", "sys_updated_on": "2026-11-24 10:00:00", "description": long,
        });
        let i = Incident::from_row(row.as_object().unwrap()).unwrap();
        for value in [&i.short_description, &i.fields["description"]] {
            assert!(value.len() <= FIELD_MAX, "{}", value.len());
            assert!(value.len() > FIELD_MAX - 8, "{}", value.len());
            assert!(value.ends_with(CUT_MARK));
            assert!(long.starts_with(value.trim_end_matches(CUT_MARK)));
        }
        assert!(i.text_bytes() < 3 * FIELD_MAX);
        assert_eq!(cut("short", FIELD_MAX), "short");
        assert_eq!(cut("abcdef", 5), "ab…");
        let row = serde_json::json!({"sys_id": "a".repeat(KEY_MAX + 1), "number": "INC1"});
        assert!(Incident::from_row(row.as_object().unwrap()).is_none());
    }
}
