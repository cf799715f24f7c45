//! A ServiceNow instance on 127.0.0.1 that behaves like the Table API for `incident`: basic,
//! bearer and OAuth auth, encoded queries (`=`, `!=`, `IN`, `NOT IN`, `>=`, `<=`, `>`, `<`,
//! `ORDERBY`, `ORDERBYDESC`), `sysparm_fields`, paging with `Link` and `X-Total-Count`,
//! create and update, and its error bodies. Tests queue answers ahead of it (429, HTML, 500).
//!
//! Hostile modes stand in for a broken or malicious instance: one that ignores the keyset
//! condition (and so repeats a page), one that ignores `sysparm_limit`, one whose rows never
//! end, and a server whose answer body never ends ([`EndlessBody`]).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::http_server::{Request, Response, TestServer, percent_decode};

/// Something that happens between two page requests.
pub enum Between {
    /// A user edits this incident: its `sys_updated_on` becomes the newest.
    Edit(String),
    /// The next request gets this answer.
    Answer(Response),
}

#[derive(Default)]
pub struct State {
    pub incidents: Vec<Map<String, Value>>,
    /// Answers given instead of the real one, in order.
    pub ahead: VecDeque<Response>,
    /// Tokens the OAuth endpoint issued and that are still valid.
    pub tokens: Vec<String>,
    pub issued: u32,
    /// Seconds a token lives.
    pub token_lifetime: u64,
    /// `user:password` accepted with basic auth.
    pub basic: Option<String>,
    /// A fixed bearer token accepted.
    pub bearer: Option<String>,
    pub clock_ms: i64,
    /// List requests served so far.
    pub lists: usize,
    /// What happens after the n-th list request, as things happen between two pages.
    pub after_list: Vec<(usize, Between)>,
    /// Hostile: conditions on `sys_updated_on` and `sys_id` are dropped, so every page asked
    /// for after the first is the first again.
    pub ignore_keyset: bool,
    /// Hostile: from this many list requests on, `sysparm_limit` is ignored and every
    /// matching row comes in one page.
    pub ignore_limit_from: Option<usize>,
    /// Instead of `incidents`, this many made-up rows ([`synthetic_row`]), one a second in
    /// `sys_updated_on` order, paged by the keyset as a real instance does; `u64::MAX` is a
    /// table whose new rows never end.
    pub synthetic: Option<u64>,
    /// After this many list requests every further one is refused (HTTP 400): a bound for a
    /// client that would otherwise page for ever, so a test fails instead of hanging.
    pub max_lists: Option<usize>,
}

pub struct FakeServiceNow {
    pub server: TestServer,
    pub state: Arc<Mutex<State>>,
    gate: Arc<Gate>,
}

/// Where lookups meet in pairs when `on`.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    met: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    on: bool,
    waiting: bool,
    generation: u64,
}

impl Gate {
    fn meet(&self) {
        let mut s = self.state.lock().unwrap();
        if !s.on {
            return;
        }
        if s.waiting {
            s.waiting = false;
            s.generation += 1;
            self.met.notify_all();
            return;
        }
        s.waiting = true;
        let generation = s.generation;
        // A lookup with no partner goes on alone after a while.
        let (mut s, _) = self
            .met
            .wait_timeout_while(s, std::time::Duration::from_millis(300), |s| {
                s.generation == generation
            })
            .unwrap();
        if s.generation == generation {
            s.waiting = false;
        }
    }
}

pub fn error_body(status: u16, message: &str, detail: &str) -> Response {
    Response::json(
        status,
        json!({"error": {"message": message, "detail": detail}, "status": "failure"}).to_string(),
    )
}

impl FakeServiceNow {
    pub fn start(basic: Option<&str>, bearer: Option<&str>) -> FakeServiceNow {
        let state = Arc::new(Mutex::new(State {
            basic: basic.map(str::to_string),
            bearer: bearer.map(str::to_string),
            token_lifetime: 1800,
            clock_ms: 1_796_000_000_000,
            ..State::default()
        }));
        let handler_state = state.clone();
        let gate = Arc::new(Gate::default());
        let handler_gate = gate.clone();
        let server = TestServer::start(move |r| {
            if r.method == "GET" && r.target.contains("correlation_id") {
                handler_gate.meet();
            }
            handle(&handler_state, r)
        });
        FakeServiceNow {
            server,
            state,
            gate,
        }
    }

    /// From now on an incident lookup waits (a little) for a second one and both are answered
    /// together: two runners that look up at the same moment, as an HA pair's aligned ticks do.
    pub fn pair_lookups(&self) {
        self.gate.state.lock().unwrap().on = true;
    }

    pub fn url(&self) -> String {
        self.server.url("")
    }

    pub fn incidents(&self) -> Vec<Map<String, Value>> {
        self.state.lock().unwrap().incidents.clone()
    }

    /// Adds an incident as the instance would store it.
    pub fn insert(&self, fields: Value) {
        let Value::Object(map) = fields else {
            panic!("an object")
        };
        self.state.lock().unwrap().incidents.push(map);
    }

    pub fn answer_next(&self, response: Response) {
        self.state.lock().unwrap().ahead.push_back(response);
    }

    /// Expires every issued OAuth token, as a real instance does after `expires_in`.
    pub fn expire_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }
}

fn handle(state: &Mutex<State>, r: &Request) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(response) = s.ahead.pop_front() {
        return response;
    }
    if r.path() == "/oauth_token.do" {
        return oauth(&mut s, r);
    }
    if !authorized(&s, r) {
        return error_body(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
        );
    }
    let Some(rest) = r.path().strip_prefix("/api/now/table/incident") else {
        return error_body(400, "Invalid table", "");
    };
    let sys_id = rest.strip_prefix('/').filter(|s| !s.is_empty());
    s.clock_ms += 1000;
    match (r.method.as_str(), sys_id) {
        ("GET", None) => {
            if s.max_lists.is_some_and(|max| s.lists >= max) {
                return error_body(
                    400,
                    "stand-in: too many list requests",
                    "the client paged past the test's bound",
                );
            }
            let response = match s.synthetic {
                Some(total) => synthetic_list(total, r),
                None => list(&s, r),
            };
            s.lists += 1;
            let n = s.lists;
            let due: Vec<Between> = {
                let (now, later) = std::mem::take(&mut s.after_list)
                    .into_iter()
                    .partition(|(k, _)| *k == n);
                s.after_list = later;
                now.into_iter().map(|(_, b)| b).collect()
            };
            for between in due {
                match between {
                    Between::Edit(id) => {
                        s.clock_ms += 1000;
                        let now = stamp(s.clock_ms);
                        if let Some(i) = s.incidents.iter_mut().find(|i| i["sys_id"] == id.as_str())
                        {
                            i.insert("sys_updated_on".into(), json!(now));
                            i.insert("short_description".into(), json!("edited between pages"));
                        }
                    }
                    Between::Answer(response) => s.ahead.push_back(response),
                }
            }
            response
        }
        ("POST", None) => create(&mut s, r),
        ("PATCH", Some(id)) | ("PUT", Some(id)) => update(&mut s, r, id),
        ("GET", Some(id)) => match s.incidents.iter().find(|i| i["sys_id"] == id) {
            Some(found) => Response::json(200, json!({"result": found}).to_string()),
            None => error_body(
                404,
                "No Record found",
                "Record doesn't exist or ACL restricts the record retrieval",
            ),
        },
        _ => error_body(405, "Method not supported", ""),
    }
}

fn authorized(s: &State, r: &Request) -> bool {
    use base64::Engine;
    let Some(auth) = r.header("authorization") else {
        return false;
    };
    if let Some(encoded) = auth.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default();
        return s.basic.as_deref() == Some(String::from_utf8_lossy(&decoded).as_ref());
    }
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return s.bearer.as_deref() == Some(token) || s.tokens.iter().any(|t| t == token);
    }
    false
}

fn oauth(s: &mut State, r: &Request) -> Response {
    let form = r.text();
    let field = |name: &str| {
        form.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    };
    if field("client_id").as_deref() != Some("runner")
        || field("client_secret").as_deref() != Some("s3cret")
    {
        return Response::json(
            401,
            r#"{"error":"access_denied","error_description":"access_denied"}"#,
        );
    }
    s.issued += 1;
    let token = format!("tok-{}", s.issued);
    s.tokens.push(token.clone());
    Response::json(
        200,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": s.token_lifetime, "scope": "useraccount"}).to_string(),
    )
}

fn stamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn create(s: &mut State, r: &Request) -> Response {
    let Value::Object(fields) = r.json() else {
        return error_body(400, "Invalid payload", "a JSON object is expected");
    };
    let n = s.incidents.len() + 1;
    let mut incident = Map::new();
    incident.insert("sys_id".into(), json!(format!("{:032x}", 0xabc000 + n)));
    incident.insert("number".into(), json!(format!("INC{:07}", 10_000 + n)));
    incident.insert("state".into(), json!("1"));
    incident.insert("opened_at".into(), json!(stamp(s.clock_ms)));
    incident.insert("sys_created_on".into(), json!(stamp(s.clock_ms)));
    incident.insert("sys_updated_on".into(), json!(stamp(s.clock_ms)));
    set_fields(&mut incident, fields);
    s.incidents.push(incident.clone());
    Response::json(201, json!({"result": project(&incident, r)}).to_string()).header(
        "Location",
        &format!(
            "/api/now/table/incident/{}",
            incident["sys_id"].as_str().unwrap()
        ),
    )
}

/// Stores values as ServiceNow does: every one a string.
fn set_fields(incident: &mut Map<String, Value>, fields: Map<String, Value>) {
    for (k, v) in fields {
        incident.insert(
            k,
            json!(
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            ),
        );
    }
}

fn update(s: &mut State, r: &Request, id: &str) -> Response {
    let Value::Object(fields) = r.json() else {
        return error_body(400, "Invalid payload", "");
    };
    let now = stamp(s.clock_ms);
    let Some(incident) = s.incidents.iter_mut().find(|i| i["sys_id"] == id) else {
        return error_body(
            404,
            "No Record found",
            "Record doesn't exist or ACL restricts the record retrieval",
        );
    };
    set_fields(incident, fields);
    if incident.get("state").and_then(Value::as_str) == Some("6") {
        incident.insert("resolved_at".into(), json!(now.clone()));
    }
    incident.insert("sys_updated_on".into(), json!(now));
    let incident = incident.clone();
    Response::json(200, json!({"result": project(&incident, r)}).to_string())
}

fn project(incident: &Map<String, Value>, r: &Request) -> Value {
    match r.query("sysparm_fields") {
        Some(fields) => Value::Object(
            fields
                .split(',')
                .filter_map(|f| incident.get(f).map(|v| (f.to_string(), v.clone())))
                .collect(),
        ),
        None => Value::Object(incident.clone()),
    }
}

/// One condition of an encoded query.
fn matches(incident: &Map<String, Value>, cond: &str) -> bool {
    let get = |field: &str| {
        incident
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for op in ["NOT IN", "IN", ">=", "<=", "!=", ">", "<", "="] {
        if let Some((field, value)) = cond.split_once(op) {
            let have = get(field);
            return match op {
                "NOT IN" => !value.split(',').any(|v| v == have),
                "IN" => value.split(',').any(|v| v == have),
                ">=" => have.as_str() >= value,
                "<=" => have.as_str() <= value,
                ">" => have.as_str() > value,
                "<" => have.as_str() < value,
                "!=" => have != value,
                _ => have == value,
            };
        }
    }
    // Unknown parts are ignored, as ServiceNow does by default.
    true
}

fn list(s: &State, r: &Request) -> Response {
    let query = r.query("sysparm_query").unwrap_or_default();
    // `^NQ` separates alternatives; `ORDERBY` parts order the whole answer.
    let mut order: Vec<(String, bool)> = Vec::new();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for group in query.split("^NQ") {
        let mut conditions = Vec::new();
        for part in group.split('^').filter(|p| !p.is_empty()) {
            if s.ignore_keyset && (part.starts_with("sys_updated_on") || part.starts_with("sys_id"))
            {
                continue;
            }
            if let Some(field) = part.strip_prefix("ORDERBYDESC") {
                order.push((field.to_string(), true));
            } else if let Some(field) = part.strip_prefix("ORDERBY") {
                order.push((field.to_string(), false));
            } else {
                conditions.push(part.to_string());
            }
        }
        groups.push(conditions);
    }
    let mut rows: Vec<&Map<String, Value>> = s
        .incidents
        .iter()
        .filter(|i| groups.iter().any(|g| g.iter().all(|c| matches(i, c))))
        .collect();
    for (field, desc) in order.iter().rev() {
        rows.sort_by(|a, b| {
            let (x, y) = (
                a.get(field).and_then(Value::as_str).unwrap_or(""),
                b.get(field).and_then(Value::as_str).unwrap_or(""),
            );
            if *desc { y.cmp(x) } else { x.cmp(y) }
        });
    }
    let total = rows.len();
    let limit: usize = if s.ignore_limit_from.is_some_and(|from| s.lists >= from) {
        usize::MAX / 2
    } else {
        r.query("sysparm_limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000)
    };
    let offset: usize = r
        .query("sysparm_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|i| project(i, r))
        .collect();
    let mut response = Response::json(200, json!({"result": page}).to_string())
        .header("X-Total-Count", &total.to_string());
    if offset + limit < total {
        let next = r
            .target
            .replace(&format!("sysparm_offset={offset}"), "")
            .replace("&&", "&");
        let sep = if next.contains('?') { "&" } else { "?" };
        response = response.header(
            "Link",
            &format!(
                "<{}{}{sep}sysparm_offset={}>;rel=\"next\"",
                "http://127.0.0.1",
                next.trim_end_matches('&'),
                offset + limit
            ),
        );
    }
    response
}

/// `sys_updated_on` of made-up row 0; row `i` is `i` seconds later.
const SYNTHETIC_BASE: i64 = 1_795_000_000;

/// Made-up row `i`: sys_id and time both grow with `i`, so keyset order is `i` order.
pub fn synthetic_row(i: u64) -> Map<String, Value> {
    let updated = stamp((SYNTHETIC_BASE + i as i64) * 1000);
    let Value::Object(row) = json!({
        "sys_id": format!("{i:032x}"),
        "number": format!("INC{i:09}"),
        "short_description": format!("made-up row {i}"),
        "state": "1",
        "priority": "3",
        "category": "performance",
        "opened_at": updated,
        "sys_updated_on": updated,
    }) else {
        unreachable!()
    };
    row
}

/// The made-up row stamped `t` (`YYYY-MM-DD HH:MM:SS`).
pub fn synthetic_index(t: &str) -> u64 {
    let at = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp();
    (at - SYNTHETIC_BASE) as u64
}

/// A page of made-up rows: the keyset start read from the query's first group (stamps are
/// unique, so `sys_updated_on>t` alone places it), `sysparm_limit` rows, `Link` when more.
fn synthetic_list(total: u64, r: &Request) -> Response {
    let query = r.query("sysparm_query").unwrap_or_default();
    let mut start = 0;
    for part in query.split("^NQ").next().unwrap_or("").split('^') {
        if let Some(t) = part.strip_prefix("sys_updated_on>=") {
            start = synthetic_index(t);
        } else if let Some(t) = part.strip_prefix("sys_updated_on>") {
            start = synthetic_index(t) + 1;
        }
    }
    let limit: u64 = r
        .query("sysparm_limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let end = start.saturating_add(limit).min(total);
    let page: Vec<Value> = (start..end)
        .map(|i| project(&synthetic_row(i), r))
        .collect();
    let mut response = Response::json(200, json!({"result": page}).to_string());
    if end < total {
        response = response.header("Link", "<http://127.0.0.1/next>;rel=\"next\"");
    }
    response
}

/// A server whose answer never ends: 200, JSON, no `Content-Length` (the body lasts until the
/// connection closes) and rows for ever, up to `GIVE_UP` bytes a connection. `sent` counts
/// the bytes it got out, which is how a test sees whether the client stopped reading.
pub struct EndlessBody {
    pub addr: SocketAddr,
    pub sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl EndlessBody {
    /// Bytes after which one connection stops on its own, so a client that reads everything
    /// still ends (with JSON that does not parse).
    pub const GIVE_UP: u64 = 64 << 20;

    pub fn start() -> EndlessBody {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_sent, thread_stop) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let sent = thread_sent.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 {
                        if line == "\r\n" {
                            break;
                        }
                        line.clear();
                    }
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"result\":[";
                    if conn.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let row = format!(
                        "{{\"sys_id\":\"{}\",\"number\":\"INC0000001\",\"short_description\":\"{}\"}},",
                        "a".repeat(32),
                        "x".repeat(1000)
                    );
                    let chunk = row.repeat(64);
                    let mut here = 0u64;
                    while here < Self::GIVE_UP {
                        if conn.write_all(chunk.as_bytes()).is_err() {
                            return;
                        }
                        here += chunk.len() as u64;
                        sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    }
                });
            }
        });
        EndlessBody { addr, sent, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EndlessBody {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
