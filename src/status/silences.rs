//! `/api/v1/silences` on the listener, behind `listen_auth` like every page but the health
//! check: GET lists the silences, POST adds one (`{"matchers": ["alertname=disk_full"],
//! "for": "2h", "comment": "…"}`), DELETE `/api/v1/silences/ID` ends one; the same file
//! `runner silence` writes, so the scheduler honours either at its next tick. Also the status
//! page's list of silences in force.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::http::{Request, Response};
use crate::alerts::mute::{Silence, add_silence, expire_silence, read_silences};

const PATH: &str = "/api/v1/silences";

/// Whether a request is for this API (any method).
pub fn is_route(path: &str) -> bool {
    path == PATH || path.starts_with("/api/v1/silences/")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<String>,
    #[serde(rename = "for")]
    length: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    created_by: String,
}

fn json(status: u16, value: serde_json::Value) -> Response {
    Response::new(status, "application/json", value.to_string())
}

fn error(status: u16, message: &str) -> Response {
    json(
        status,
        serde_json::json!({"status": "error", "error": message}),
    )
}

/// Answers a request for this API, already authorized.
pub fn respond(data_dir: &Path, now: DateTime<Utc>, request: &Request) -> Response {
    let id = request.path.strip_prefix("/api/v1/silences/");
    match (request.method.as_str(), id) {
        ("GET" | "HEAD", None) => match read_silences(data_dir) {
            Ok(silences) => json(
                200,
                serde_json::json!({"status": "success", "data": silences}),
            ),
            Err(e) => error(500, &format!("cannot read the silences: {e}")),
        },
        ("POST", None) => {
            let new: NewSilence = match serde_json::from_slice(&request.body) {
                Ok(new) => new,
                Err(e) => return error(400, &format!("not a silence: {e}")),
            };
            let length = match crate::vocab::duration::parse_duration(&new.length) {
                Ok(length) => length,
                Err(e) => return error(400, &format!("`for`: {e}")),
            };
            match add_silence(
                data_dir,
                &new.matchers,
                length,
                &new.comment,
                &new.created_by,
                now,
            ) {
                Ok(silence) => json(
                    200,
                    serde_json::json!({"status": "success", "data": {"silenceId": silence.id}}),
                ),
                Err(message) => error(400, &message),
            }
        }
        ("DELETE", Some(id)) => match expire_silence(data_dir, id, now) {
            Ok(true) => json(200, serde_json::json!({"status": "success"})),
            Ok(false) => error(404, &format!("no active silence with id `{id}`")),
            Err(message) => error(500, &message),
        },
        _ => {
            let mut r = Response::text(
                405,
                "GET or POST /api/v1/silences, DELETE /api/v1/silences/ID",
            );
            r.headers.push(("Allow", "GET, HEAD, POST, DELETE".into()));
            r
        }
    }
}

/// The silences in force or still to come, for the status page.
pub fn in_force(data_dir: &Path, now: DateTime<Utc>) -> Vec<Silence> {
    read_silences(data_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.ends_at > now)
        .collect()
}
