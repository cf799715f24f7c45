//! `/api/v1/silences` on the listener, behind `listen_auth` like every page but the health
//! check: GET lists the silences, POST adds one (`{"matchers": ["alertname=disk_full"],
//! "for": "2h", "comment": "…"}`, with `startsAt` as Alertmanager's, RFC 3339, for one that
//! starts later), DELETE `/api/v1/silences/ID` ends one; the same file
//! `runner silence` writes, so the scheduler honours either at its next tick. Also the status
//! page's list of silences in force.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::http::{Request, Response};
use crate::alerts::mute::{Silence, SilenceError, add_silence, expire_silence, read_silences};

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
    /// RFC 3339; now when left out.
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
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
            Ok(silences) => {
                let data: Vec<serde_json::Value> =
                    silences.iter().map(|s| described(s, now)).collect();
                json(200, serde_json::json!({"status": "success", "data": data}))
            }
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
            let starts_at = match new.starts_at.as_deref().map(DateTime::parse_from_rfc3339) {
                None => None,
                Some(Ok(at)) => Some(at.to_utc()),
                Some(Err(e)) => {
                    return error(
                        400,
                        &format!("`startsAt`: not an RFC 3339 time (2026-12-01T22:00:00Z): {e}"),
                    );
                }
            };
            match add_silence(
                data_dir,
                &new.matchers,
                starts_at,
                length,
                &new.comment,
                &new.created_by,
                now,
            ) {
                Ok(silence) => json(
                    200,
                    serde_json::json!({"status": "success", "data": {"silenceId": silence.id}}),
                ),
                Err(SilenceError::Invalid(message)) => error(400, &message),
                // Nothing wrong with the request: runner could not keep it.
                Err(SilenceError::Storage(message)) => error(500, &message),
            }
        }
        ("DELETE", Some(id)) => match expire_silence(data_dir, id, now) {
            Ok(true) => json(200, serde_json::json!({"status": "success"})),
            Ok(false) => error(404, &format!("no active silence with id `{id}`")),
            Err(e) => error(500, &e.to_string()),
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

/// A silence as the API lists it: its fields, its `state` (`invalid`, `active`, `pending`,
/// `expired`) and, for one the scheduler ignores, `problem` saying why, so a hand-edited entry
/// that holds nothing is not shown as if it held.
fn described(silence: &Silence, now: DateTime<Utc>) -> serde_json::Value {
    let mut value = serde_json::to_value(silence).unwrap_or(serde_json::Value::Null);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("state".into(), silence.state(now).into());
        if let Err(problem) = silence.parsed() {
            fields.insert("problem".into(), problem.into());
        }
    }
    value
}

/// The silences in force or still to come, for the status page; one the scheduler ignores
/// (no matchers, or one that does not parse) is not in force.
pub fn in_force(data_dir: &Path, now: DateTime<Utc>) -> Vec<Silence> {
    read_silences(data_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.ends_at > now && s.parsed().is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: &str) -> Request {
        Request {
            method: "POST".into(),
            path: PATH.into(),
            accept: String::new(),
            authorization: String::new(),
            content_length: body.len(),
            chunked: false,
            body: body.as_bytes().to_vec(),
        }
    }

    fn answer(response: &Response) -> (u16, serde_json::Value) {
        let body = serde_json::from_slice(&response.body).unwrap();
        (response.status, body)
    }

    /// A hand-edited entry the scheduler ignores is listed as such, with why.
    #[test]
    fn the_list_says_each_silences_state_and_why_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let now = at("2027-01-01T12:00:00Z");
        let silence = |id: &str, matchers: &[&str], from: &str, to: &str| Silence {
            id: id.into(),
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: at(from),
            ends_at: at(to),
            comment: String::new(),
            created_by: String::new(),
        };
        let file = crate::alerts::mute::silences_path(dir.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let written = [
            silence("all", &[], "2027-01-01T11:00:00Z", "2027-01-01T13:00:00Z"),
            silence(
                "now",
                &["alertname=a"],
                "2027-01-01T11:00:00Z",
                "2027-01-01T13:00:00Z",
            ),
            silence(
                "later",
                &["alertname=a"],
                "2027-01-01T14:00:00Z",
                "2027-01-01T15:00:00Z",
            ),
            silence(
                "done",
                &["alertname=a"],
                "2027-01-01T10:00:00Z",
                "2027-01-01T11:00:00Z",
            ),
        ];
        std::fs::write(&file, serde_json::to_vec(&written).unwrap()).unwrap();
        let get = Request {
            method: "GET".into(),
            ..post("")
        };
        let (status, body) = answer(&respond(dir.path(), now, &get));
        assert_eq!(status, 200, "{body}");
        let listed: Vec<(&str, &str)> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap(), s["state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            listed,
            [
                ("all", "invalid"),
                ("now", "active"),
                ("later", "pending"),
                ("done", "expired")
            ]
        );
        let problem = body["data"][0]["problem"].as_str().unwrap();
        assert!(problem.contains("no matchers"), "{problem}");
        assert!(body["data"][1].get("problem").is_none());
    }

    /// Bad input is the caller's 400; a data_dir that cannot keep the silence is runner's 500.
    #[test]
    fn a_silence_that_cannot_be_saved_is_a_500_and_bad_input_a_400() {
        let dir = tempfile::tempdir().unwrap();
        let now = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let bad = answer(&respond(
            dir.path(),
            now,
            &post(r#"{"matchers": ["v=~("], "for": "1h"}"#),
        ));
        assert_eq!(bad.0, 400, "{}", bad.1);
        let bad = answer(&respond(
            dir.path(),
            now,
            &post(r#"{"matchers": ["v=1"], "for": "1h", "startsAt": "tonight"}"#),
        ));
        assert_eq!(bad.0, 400, "{}", bad.1);
        assert!(bad.1["error"].as_str().unwrap().starts_with("`startsAt`"));
        // The temporary file the save writes first is a folder: reading and locking work,
        // saving does not (whoever runs the test, root included).
        let tmp =
            crate::alerts::mute::silences_path(dir.path()).with_file_name(".silences.json.tmp");
        std::fs::create_dir_all(tmp.join("in-the-way")).unwrap();
        let failed = answer(&respond(
            dir.path(),
            now,
            &post(r#"{"matchers": ["alertname=disk_full"], "for": "1h"}"#),
        ));
        assert_eq!(failed.0, 500, "{}", failed.1);
        let message = failed.1["error"].as_str().unwrap();
        assert!(message.starts_with("cannot save silences: "), "{message}");
        assert!(read_silences(dir.path()).unwrap().is_empty());
        std::fs::remove_dir_all(&tmp).unwrap();
        let added = answer(&respond(
            dir.path(),
            now,
            &post(
                r#"{"matchers": ["alertname=disk_full"], "for": "1h", "startsAt": "2027-01-01T22:00:00+01:00"}"#,
            ),
        ));
        assert_eq!(added.0, 200, "{}", added.1);
        let saved = read_silences(dir.path()).unwrap();
        assert_eq!(saved[0].starts_at.to_rfc3339(), "2027-01-01T21:00:00+00:00");
        assert_eq!(saved[0].ends_at.to_rfc3339(), "2027-01-01T22:00:00+00:00");
    }
}
