//! ServiceNow: the Table API client, and the incident operations the notifier uses (find an
//! open incident by correlation id, create one, resolve one).

pub mod cache;
pub mod client;
pub mod fetch;

pub use client::{Client, Error};

use reqwest::Method;
use serde_json::{Value, json};

/// Incident states that are over: Resolved, Closed, Canceled.
pub const ENDED_STATES: &str = "6,7,8";
/// The state a resolve sets.
pub const RESOLVED_STATE: &str = "6";
/// The state of a duplicate runner closes.
pub const CANCELED_STATE: &str = "8";

/// Enough of an incident to show and to update it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRef {
    pub sys_id: String,
    pub number: String,
}

fn incident_ref(value: &Value) -> Option<IncidentRef> {
    Some(IncidentRef {
        sys_id: value.get("sys_id")?.as_str()?.to_string(),
        number: value.get("number")?.as_str()?.to_string(),
    })
}

fn missing_result(what: &str) -> Error {
    Error::Permanent {
        status: None,
        message: format!("{what}: the answer has no `result` with `sys_id` and `number`"),
    }
}

impl Client {
    /// Every incident with this correlation id that is not resolved, closed or canceled, the
    /// earliest first (by creation, then number): the order every runner sees alike, so two
    /// runners that created one each at the same moment agree which one stays.
    pub async fn open_incidents(&self, correlation_id: &str) -> Result<Vec<IncidentRef>, Error> {
        let query = format!(
            "correlation_id={correlation_id}^stateNOT IN{ENDED_STATES}^ORDERBYsys_created_on^ORDERBYnumber"
        );
        let url = self.table_url(
            "incident",
            None,
            &[
                ("sysparm_query", &query),
                ("sysparm_fields", "sys_id,number,state"),
                ("sysparm_limit", "20"),
                ("sysparm_exclude_reference_link", "true"),
            ],
        );
        let answer = self.call(Method::GET, url, None).await?;
        let rows = answer
            .json
            .get("result")
            .and_then(Value::as_array)
            .ok_or_else(|| missing_result("incident lookup"))?;
        Ok(rows.iter().filter_map(incident_ref).collect())
    }

    /// Cancels an incident opened for a problem that already had one, saying which.
    pub async fn cancel_duplicate(&self, sys_id: &str, of: &IncidentRef) -> Result<(), Error> {
        let url = self.table_url(
            "incident",
            Some(sys_id),
            &[("sysparm_fields", "sys_id,number,state")],
        );
        let note = format!(
            "Duplicate of {}: opened for the same problem at the same moment by another runner.",
            of.number
        );
        let body = json!({
            "state": CANCELED_STATE,
            "close_notes": note,
            "work_notes": note,
        });
        match self.call(Method::PATCH, url, Some(&body)).await {
            Ok(_)
            | Err(Error::Permanent {
                status: Some(404), ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates an incident from `fields` (a JSON object).
    pub async fn create_incident(&self, fields: &Value) -> Result<IncidentRef, Error> {
        let url = self.table_url("incident", None, &[("sysparm_fields", "sys_id,number")]);
        let answer = self.call(Method::POST, url, Some(fields)).await?;
        answer
            .json
            .get("result")
            .and_then(incident_ref)
            .ok_or_else(|| missing_result("incident create"))
    }

    /// Resolves an incident with the close fields; `false` when it no longer exists.
    pub async fn resolve_incident(
        &self,
        sys_id: &str,
        close_code: &str,
        close_notes: &str,
    ) -> Result<bool, Error> {
        let url = self.table_url(
            "incident",
            Some(sys_id),
            &[("sysparm_fields", "sys_id,number,state")],
        );
        let body = json!({
            "state": RESOLVED_STATE,
            "close_code": close_code,
            "close_notes": close_notes,
        });
        match self.call(Method::PATCH, url, Some(&body)).await {
            Ok(_) => Ok(true),
            Err(Error::Permanent {
                status: Some(404), ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
