//! GetMetricData over CloudWatch's JSON protocol (`awsJson1_0`, as the current SDKs speak it):
//! the request for up to 500 metrics, its answer, and what its errors mean. Throttling (the
//! `Throttling` error, HTTP 429) and server errors are retried after a growing wait within the
//! probe's time; anything else is said in CloudWatch's own words.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::json;

use super::credentials::{Keys, Provider};
use super::sign::signed_headers;
use crate::config::probes::cloudwatch::MetricQuery;
use crate::vocab::backoff::Backoff;

/// GetMetricData takes at most this many queries a call.
pub const MAX_QUERIES: usize = 500;
const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
/// Tries of one call: the first and three after throttling or a server error.
const ATTEMPTS: u32 = 4;

/// One metric's answer: `(timestamp, value)` pairs and whether CloudWatch had all of them.
#[derive(Debug, Default, Clone)]
pub struct Series {
    pub points: Vec<(i64, f64)>,
    /// CloudWatch's `StatusCode` when not `Complete` (`Forbidden`, `InternalError`).
    pub status: Option<String>,
}

/// How a call ended when it did not answer.
#[derive(Debug)]
pub enum CallError {
    /// The keys were refused or expired: find them again next tick.
    Denied(String),
    Other(String),
}

impl CallError {
    pub fn message(&self) -> &str {
        match self {
            CallError::Denied(m) | CallError::Other(m) => m,
        }
    }
}

/// Requests made, for `/metrics`: every HTTP call and every metric asked for (what is billed).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub requests: u64,
    pub metrics: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(default)]
    metric_data_results: Vec<Result_>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Result_ {
    id: String,
    #[serde(default)]
    timestamps: Vec<f64>,
    #[serde(default)]
    values: Vec<f64>,
    #[serde(default)]
    status_code: Option<String>,
}

/// The API's answer to one batch.
pub struct Client {
    http: reqwest::Client,
    url: String,
    host: String,
    region: String,
}

impl Client {
    pub fn new(endpoint: &str, region: &str, timeout: Duration) -> Result<Client, String> {
        let url = format!("{}/", endpoint.trim_end_matches('/'));
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(format!("endpoint `{endpoint}` has no host")),
        };
        Ok(Client {
            http: crate::http::client(timeout)?,
            url,
            host,
            region: region.to_string(),
        })
    }

    /// The values of `queries` (at most 500, one period) between `start` and `end` (epoch
    /// seconds), by query index; every page of the answer.
    pub async fn get_metric_data(
        &self,
        provider: &mut Provider,
        queries: &[&MetricQuery],
        start: i64,
        end: i64,
        deadline: Instant,
        counts: &mut Counts,
    ) -> Result<Vec<Series>, CallError> {
        let mut series = vec![Series::default(); queries.len()];
        let mut next_token: Option<String> = None;
        // The same queries on every page; only the token changes.
        let mut body = json!({
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampDescending",
            "MetricDataQueries": queries.iter().enumerate().map(|(i, q)| json!({
                "Id": format!("m{i}"),
                "ReturnData": true,
                "MetricStat": {
                    "Metric": {
                        "Namespace": q.namespace,
                        "MetricName": q.metric,
                        "Dimensions": q.dimensions.iter().map(|(k, v)| json!({"Name": k, "Value": v})).collect::<Vec<_>>(),
                    },
                    "Period": q.period.as_secs(),
                    "Stat": q.stat,
                },
            })).collect::<Vec<_>>(),
        });
        let by_id: HashMap<String, usize> =
            (0..queries.len()).map(|i| (format!("m{i}"), i)).collect();
        loop {
            if let Some(token) = &next_token {
                body["NextToken"] = json!(token);
            }
            let text = self
                .call(provider, &body.to_string(), queries.len(), deadline, counts)
                .await?;
            let answer: Answer = serde_json::from_str(&text).map_err(|e| {
                CallError::Other(format!(
                    "CloudWatch answered something that is not a GetMetricData result ({e}): {}",
                    excerpt(&text)
                ))
            })?;
            for r in answer.metric_data_results {
                let Some(&i) = by_id.get(&r.id) else { continue };
                if r.timestamps.len() != r.values.len() {
                    return Err(CallError::Other(format!(
                        "CloudWatch answered {} timestamps for {} values",
                        r.timestamps.len(),
                        r.values.len()
                    )));
                }
                let s = &mut series[i];
                s.points.extend(
                    r.timestamps
                        .iter()
                        .map(|t| *t as i64)
                        .zip(r.values.iter().copied()),
                );
                if let Some(code) = r
                    .status_code
                    .filter(|c| c != "Complete" && c != "PartialData")
                {
                    s.status = Some(code);
                }
            }
            match answer.next_token {
                Some(token) if !token.is_empty() && Some(&token) != next_token.as_ref() => {
                    next_token = Some(token)
                }
                _ => return Ok(series),
            }
        }
    }

    /// One signed POST, tried again after throttling or a server error while time is left.
    async fn call(
        &self,
        provider: &mut Provider,
        body: &str,
        metrics: usize,
        deadline: Instant,
        counts: &mut Counts,
    ) -> Result<String, CallError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let keys = provider
                .keys(SystemTime::now())
                .await
                .map_err(CallError::Other)?;
            counts.requests += 1;
            counts.metrics += metrics as u64;
            let (status, text) = self.send(&keys, body).await.map_err(CallError::Other)?;
            if status.is_success() {
                return Ok(text);
            }
            let (code, message) = error_of(&text);
            let retry = status.as_u16() == 429
                || status.is_server_error()
                || matches!(
                    code.as_str(),
                    "Throttling"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "TooManyRequestsException"
                );
            let said = match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{code}: {message}"),
                (false, true) => code.clone(),
                (true, false) => message.clone(),
                (true, true) => excerpt(&text),
            };
            if retry {
                let wait = backoff.next_wait();
                if attempt < ATTEMPTS && Instant::now() + wait < deadline {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(CallError::Other(format!(
                    "CloudWatch is throttling or failing (HTTP {}, {said}) after {attempt} tries",
                    status.as_u16()
                )));
            }
            if status.as_u16() == 403
                || matches!(
                    code.as_str(),
                    "AccessDenied"
                        | "AccessDeniedException"
                        | "UnrecognizedClientException"
                        | "InvalidClientTokenId"
                        | "SignatureDoesNotMatch"
                        | "ExpiredToken"
                        | "ExpiredTokenException"
                        | "MissingAuthenticationToken"
                )
            {
                return Err(CallError::Denied(format!(
                    "access denied by CloudWatch ({said}): the keys of `{}` need cloudwatch:GetMetricData",
                    keys.access_key_id
                )));
            }
            return Err(CallError::Other(format!(
                "CloudWatch refused the request (HTTP {}, {said})",
                status.as_u16()
            )));
        }
    }

    async fn send(&self, keys: &Keys, body: &str) -> Result<(reqwest::StatusCode, String), String> {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("host", self.host.as_str()),
            ("x-amz-target", TARGET),
        ];
        let signed = signed_headers(
            keys,
            &self.region,
            "monitoring",
            &self.url,
            &headers,
            body.as_bytes(),
            SystemTime::now(),
        )?;
        let mut request = self.http.post(&self.url).body(body.to_string());
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            request = request.header(*k, *v);
        }
        for (k, v) in &signed {
            request = request.header(k.as_str(), v.as_str());
        }
        let answer = request.send().await.map_err(|e| {
            format!(
                "CloudWatch at {}: {}",
                self.url,
                crate::http::describe_error(e)
            )
        })?;
        let status = answer.status();
        let text = answer.text().await.map_err(|e| {
            format!(
                "CloudWatch at {}: {}",
                self.url,
                crate::http::describe_error(e)
            )
        })?;
        Ok((status, text))
    }
}

/// The error code (`Throttling`, without the `com.amazonaws...#` prefix) and message of an
/// error answer, as the JSON protocol gives them; empty when it gave none.
fn error_of(text: &str) -> (String, String) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return (String::new(), String::new());
    };
    let code = value
        .get("__type")
        .or_else(|| value.get("code"))
        .and_then(|v| v.as_str())
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        .unwrap_or_default();
    let message = value
        .get("message")
        .or_else(|| value.get("Message"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    (code, message)
}

/// The start of an answer, for an error message.
fn excerpt(text: &str) -> String {
    let line: String = text.chars().take(120).collect();
    let line = line.replace(['\n', '\r'], " ");
    if line.trim().is_empty() {
        "an empty answer".to_string()
    } else {
        format!("`{}`", line.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_lose_their_namespace() {
        assert_eq!(
            error_of(
                r#"{"__type":"com.amazonaws.cloudwatch#Throttling","message":"Rate exceeded"}"#
            ),
            ("Throttling".to_string(), "Rate exceeded".to_string())
        );
        assert_eq!(error_of("<html>"), (String::new(), String::new()));
    }
}
