//! `http`: a request to a service or an external dependency: `up` (status and body as
//! expected), `status`, `latency_ms` (to the full body), `ttfb_ms`, `cert_expiry_days` for
//! https, and numbers extracted from a JSON body (an application's own metrics endpoint).
//!
//! Every tick makes a new connection (no pooling), so latency includes connecting and the TLS
//! handshake, as a user's first request does. Probes do not use proxies: they measure the path
//! from this host. Errors never include the URL, which may carry a token.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::{MetricName, Names, Output, x509};
use crate::config::probes::HttpSpec;
use crate::config::probes::http::TYPE;
use crate::http::{client_builder, describe_error};

/// Body bytes kept for matching and extraction; the rest is read (to time it) and dropped.
const KEEP_BODY: usize = 1 << 20;

pub struct HttpProbe {
    spec: HttpSpec,
    instance: String,
    /// Built with the probe, not in a tick: building reads CA files and sets up TLS, which
    /// must not count against the first tick's timeout. A client that cannot be built (an
    /// unreadable `ca_file`) is that probe's error every tick.
    client: Result<reqwest::Client, String>,
    names: Names,
    extract_names: Vec<MetricName>,
}

impl HttpProbe {
    /// A probe whose request, from connecting to the last byte of the body, takes at most
    /// `timeout`: a server that does not answer in time reads as down.
    pub fn new(spec: HttpSpec, instance: &str, timeout: Duration) -> Self {
        let extract_names = spec
            .extract
            .iter()
            .map(|(field, _)| MetricName::from(format!("http.{instance}.{field}")))
            .collect();
        HttpProbe {
            client: client(&spec, timeout),
            spec,
            instance: instance.to_string(),
            names: Names::new("http"),
            extract_names,
        }
    }

    pub async fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        let client = self.client.clone()?;
        let names = self.names.get(&self.instance, TYPE.fields);
        let key = format!("http.{}", self.instance);
        let method =
            reqwest::Method::from_bytes(self.spec.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = client.request(method, self.spec.url.expose());
        for (name, value) in &self.spec.headers {
            request = request.header(name, value.expose());
        }
        if let Some(body) = &self.spec.body {
            request = request.body(body.clone());
        }
        let started = Instant::now();
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                out.push(&names[0], 0.0);
                out.error(key, describe_error(e));
                return Ok(());
            }
        };
        let ttfb = started.elapsed();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let expiry = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .and_then(x509::not_after);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() < KEEP_BODY {
                        let room = KEEP_BODY - body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(&names[0], 0.0);
                    out.push(&names[1], f64::from(status));
                    out.error(key, format!("reading the body: {}", describe_error(e)));
                    return Ok(());
                }
            }
        }
        let latency = started.elapsed();
        let text = String::from_utf8_lossy(&body);
        let mut failures = Vec::new();
        if !self.spec.expect_status.0.iter().any(|m| m.matches(status)) {
            failures.push(format!("status {status} is not an expected one"));
        }
        if let Some(needle) = &self.spec.body_contains
            && !text.contains(needle.as_str())
        {
            failures.push(format!("the body does not contain `{needle}`"));
        }
        if let Some(re) = &self.spec.body_regex
            && !re.is_match(&text)
        {
            failures.push(format!("the body does not match `{}`", re.as_str()));
        }
        out.push(&names[0], if failures.is_empty() { 1.0 } else { 0.0 });
        out.push(&names[1], f64::from(status));
        out.push(&names[2], latency.as_secs_f64() * 1000.0);
        out.push(&names[3], ttfb.as_secs_f64() * 1000.0);
        if let Some(expiry) = expiry {
            out.push(
                &names[4],
                (expiry - Utc::now()).num_seconds() as f64 / 86_400.0,
            );
        }
        if !failures.is_empty() {
            out.error(key.clone(), failures.join("; "));
        }
        if !self.spec.extract.is_empty() {
            self.extract(&body, &content_type, &key, out);
        }
        Ok(())
    }

    /// Numbers from a JSON body; each field that cannot be read is an error of its own. What
    /// an error quotes of the body is between backticks, which the monitor leaves out of the
    /// failure's kind: a body that changes every tick (an error page with a request id) is one
    /// failure going on, not a new one each tick (the status is in the probe's own error).
    fn extract(&self, body: &[u8], content_type: &str, key: &str, out: &mut Output) {
        let json: Result<serde_json::Value, _> = serde_json::from_slice(body);
        for ((field, pointer), name) in self.spec.extract.iter().zip(&self.extract_names) {
            let field_key = format!("{key}.{field}");
            let value = match &json {
                Err(_) => {
                    let kind = if content_type.is_empty() {
                        "no content type".to_string()
                    } else {
                        content_type.to_string()
                    };
                    out.error(
                        field_key,
                        format!(
                            "the body is not JSON ({kind}): `{}`",
                            // 60 characters are 240 bytes at most; the rest is not looked at.
                            quoted(&String::from_utf8_lossy(&body[..body.len().min(1024)]))
                        ),
                    );
                    continue;
                }
                Ok(json) => json.pointer(pointer),
            };
            match value {
                Some(serde_json::Value::Number(n)) => match n.as_f64() {
                    Some(v) => out.push(name, v),
                    None => out.error(
                        field_key,
                        format!("the number at {pointer} is out of range"),
                    ),
                },
                Some(serde_json::Value::String(s)) => match s.trim().parse::<f64>() {
                    Ok(v) => out.push(name, v),
                    Err(_) => out.error(
                        field_key,
                        format!(
                            "the value at {pointer} is a string, not a number: `{}`",
                            quoted(s)
                        ),
                    ),
                },
                Some(other) => out.error(
                    field_key,
                    format!(
                        "the value at {pointer} is {}, not a number",
                        json_kind(other)
                    ),
                ),
                None => out.error(field_key, format!("no value at {pointer}")),
            }
        }
    }
}

/// The start of `text` as an error quotes it: 60 characters at most, on one line, without
/// backticks, so the quotation ends where its closing backtick is.
fn quoted(text: &str) -> String {
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(60)
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if text.chars().nth(60).is_some() {
        out.push('…');
    }
    out
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The probe's HTTP client: no pooling (every tick connects anew, as a user's first request
/// does), no proxy (it measures the path from this host), the probe's timeout for the whole
/// request, and the probe's TLS and redirect settings.
fn client(spec: &HttpSpec, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = client_builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .tls_info(true)
        .redirect(if spec.follow_redirects {
            reqwest::redirect::Policy::limited(5)
        } else {
            reqwest::redirect::Policy::none()
        })
        .tls_danger_accept_invalid_certs(!spec.tls_verify);
    if let Some(path) = &spec.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {}", path.display(), describe_error(e)))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(describe_error)
}

impl super::Wait for HttpProbe {
    fn wait<'a>(&'a mut self, out: &'a mut Output, _timeout: Duration) -> super::Waiting<'a> {
        Box::pin(self.collect(out))
    }
}
