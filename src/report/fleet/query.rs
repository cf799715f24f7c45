//! The Prometheus HTTP API as a fleet report reads it: label values over a window, and instant
//! queries (`/api/v1/query`, POSTed as a form so long host matchers fit) answered with a vector
//! or a matrix. The client, its TLS, timeout and auth headers are `remote_write`'s
//! (`config::Endpoint::client`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::Endpoint;
use crate::http::{EndpointClient, describe_error, snippet};

/// A series' labels (`__name__` included).
pub type Labels = BTreeMap<String, String>;

/// Why a query failed: refused as too big for the server (worth splitting), or otherwise.
#[derive(Debug)]
pub enum QueryError {
    /// The server's limits (samples, points, series or time): a smaller query may pass.
    TooBig(String),
    Failed(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::TooBig(why) | QueryError::Failed(why) => f.write_str(why),
        }
    }
}

/// An answer as the API writes it, read straight into `T` (no JSON tree in between: a
/// matrix answer can be megabytes).
#[derive(Deserialize)]
struct Answer<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data<T> {
    result: Vec<T>,
}

#[derive(Deserialize)]
struct Vector {
    metric: Labels,
    value: Point,
}

#[derive(Deserialize)]
struct Matrix {
    metric: Labels,
    values: Vec<Point>,
}

/// `[1733533200.123, "42.5"]`, read without keeping the value's text.
#[derive(Deserialize)]
struct Point(f64, Value);

struct Value(f64);

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sample value as a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<f64, E> {
                Ok(value(text))
            }
        }
        deserializer.deserialize_str(Text).map(Value)
    }
}

impl Point {
    fn ms(&self) -> i64 {
        (self.0 * 1000.0).round() as i64
    }
}

/// Words Prometheus and VictoriaMetrics use when a query is over their limits.
const TOO_BIG: &[&str] = &[
    "too many samples",
    "query processing would load too many samples",
    "exceeded",
    "too many",
    "maxSamplesPerQuery",
    "maxPointsPerTimeseries",
    "maxSamplesPerSeries",
    "timeout",
    "timed out",
];

fn value(text: &str) -> f64 {
    // Prometheus writes `NaN`, `+Inf` and `-Inf`.
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => text.parse().unwrap_or(f64::NAN),
    }
}

/// A Prometheus-compatible query API.
#[derive(Debug)]
pub struct PromClient {
    endpoint: EndpointClient,
}

impl PromClient {
    pub fn new(endpoint: &Endpoint) -> Result<PromClient, String> {
        Ok(PromClient {
            endpoint: endpoint.client()?,
        })
    }

    /// The URL as it may be shown.
    pub fn shown(&self) -> &str {
        &self.endpoint.shown
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.endpoint.url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// A POSTed form, or with `get` the same pairs in the URL (Prometheus 2.42 takes label
    /// values by GET only); the answer's `data` read as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        get: bool,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<T, QueryError> {
        let scrub = |text: String| self.endpoint.secrets.scrub(&text);
        let request = if get {
            let mut url = self.url(path);
            url.query_pairs_mut().extend_pairs(form);
            self.endpoint.client.get(url)
        } else {
            self.endpoint
                .client
                .post(self.url(path))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(crate::http::form_body(form))
        };
        let response = request
            .headers(self.endpoint.headers.clone())
            .send()
            .await
            .map_err(|e| {
                let timeout = e.is_timeout();
                let why = scrub(describe_error(e));
                if timeout {
                    QueryError::TooBig(why)
                } else {
                    QueryError::Failed(why)
                }
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| QueryError::Failed(scrub(describe_error(e))))?;
        if status.is_success() {
            let mut answers = serde_json::Deserializer::from_slice(&body).into_iter::<Answer<T>>();
            let first = answers.next();
            // VictoriaMetrics streams raw samples: a limit hit on the way is written after the
            // answer it began, with the status already 200.
            let rest = String::from_utf8_lossy(&body[answers.byte_offset()..]);
            let rest = rest.trim();
            match first {
                Some(Ok(Answer {
                    status: ok,
                    data: Some(data),
                    ..
                })) if ok == "success" && rest.is_empty() => return Ok(data),
                Some(Ok(_)) if !rest.is_empty() => {
                    let why = scrub(format!("{path}: {}", snippet(rest)));
                    return Err(if TOO_BIG.iter().any(|w| rest.contains(w)) {
                        QueryError::TooBig(why)
                    } else {
                        QueryError::Failed(why)
                    });
                }
                Some(Err(e)) => {
                    return Err(QueryError::Failed(scrub(format!(
                        "{path}: an answer not as expected: {e}"
                    ))));
                }
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&body);
        let said = serde_json::from_slice::<Answer<serde::de::IgnoredAny>>(&body)
            .ok()
            .and_then(|a| a.error)
            .unwrap_or_else(|| snippet(&text));
        let why = scrub(format!("{path}: HTTP {}: {said}", status.as_u16()));
        let big = status.as_u16() == 422
            || status.as_u16() == 503
            || TOO_BIG.iter().any(|w| said.contains(w));
        if big && !status.is_success() {
            Err(QueryError::TooBig(why))
        } else {
            Err(QueryError::Failed(why))
        }
    }

    /// The values of `label` on series matching `selector` with samples in `[from, to]`.
    pub async fn label_values(
        &self,
        label: &str,
        selector: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, QueryError> {
        let (start, end) = (seconds(from), seconds(to));
        self.call(
            true,
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", selector), ("start", &start), ("end", &end)],
        )
        .await
    }

    /// An instant query answered with a vector: each series' labels and value.
    pub async fn vector(
        &self,
        query: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<(Labels, f64)>, QueryError> {
        let data: Data<Vector> = self.query(query, at).await?;
        Ok(data
            .result
            .into_iter()
            .map(|v| (v.metric, v.value.1.0))
            .collect())
    }

    /// An instant query of a range selector: each series' raw samples (ms, value).
    pub async fn matrix(
        &self,
        query: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<(Labels, Vec<(i64, f64)>)>, QueryError> {
        let data: Data<Matrix> = self.query(query, at).await?;
        Ok(data
            .result
            .into_iter()
            .map(|m| {
                let samples = m.values.iter().map(|p| (p.ms(), p.1.0)).collect();
                (m.metric, samples)
            })
            .collect())
    }

    async fn query<T: DeserializeOwned>(
        &self,
        query: &str,
        at: DateTime<Utc>,
    ) -> Result<T, QueryError> {
        let time = seconds(at);
        let started = std::time::Instant::now();
        let answer = self
            .call(false, "/api/v1/query", &[("query", query), ("time", &time)])
            .await;
        // Where a report's time goes, per query: `runner -v`.
        tracing::debug!(
            query,
            ms = started.elapsed().as_millis() as u64,
            "fleet query"
        );
        answer
    }
}

/// `1733533200.123`: a time as the API takes it, to the millisecond.
fn seconds(at: DateTime<Utc>) -> String {
    let ms = at.timestamp_millis();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}
