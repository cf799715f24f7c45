//! A sample: one monitor tick, as kept in memory and as one JSON line of the metrics log.
//!
//! `{"ts":"2026-11-28T10:00:00.000Z","host":"web-1","job":"monitor","metrics":{...},"errors":{...}}`
//!
//! Writing is by hand (fixed key order, shortest round-trip floats, no NaN). Reading has a fast
//! path for that shape that borrows from the line and allocates nothing per metric, because
//! reports and warm-up read hundreds of megabytes of these; anything unexpected falls back to
//! serde_json, so a line edited by hand still reads.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::vocab::MetricName;

/// One tick of one monitor job.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub ts: DateTime<Utc>,
    pub host: String,
    pub job: String,
    pub metrics: Vec<(MetricName, f64)>,
    pub errors: Vec<(String, String)>,
}

impl Sample {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| *v)
    }

    /// The sample as one JSON line, without the newline.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"ts\":\"");
        let _ = write!(out, "{}", self.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        out.push_str("\",\"host\":");
        push_json_str(out, &self.host);
        out.push_str(",\"job\":");
        push_json_str(out, &self.job);
        out.push_str(",\"metrics\":{");
        let mut first = true;
        for (name, value) in &self.metrics {
            if !value.is_finite() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            push_json_str(out, name);
            out.push(':');
            let _ = write!(out, "{value}");
        }
        out.push_str("},\"errors\":{");
        for (i, (key, message)) in self.errors.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(out, key);
            out.push(':');
            push_json_str(out, message);
        }
        out.push_str("}}");
    }

    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.metrics.len() * 40);
        self.write_json(&mut out);
        out
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses lines into `SampleView`s, reusing its buffers from line to line.
#[derive(Debug, Default)]
pub struct LineParser {
    ts_ms: i64,
    host: Range<usize>,
    job: Range<usize>,
    metrics: Vec<(Range<usize>, f64)>,
    errors: Vec<(Range<usize>, Range<usize>)>,
    /// Set when the line went through serde_json (escapes or an unusual shape).
    owned: Option<Box<Sample>>,
}

/// A parsed line that borrows from it: what the reader hands out without allocating.
#[derive(Debug, Clone, Copy)]
pub struct SampleView<'a> {
    pub line: &'a str,
    pub ts_ms: i64,
    p: &'a LineParser,
}

impl<'a> SampleView<'a> {
    pub fn ts(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.ts_ms).unwrap_or_default()
    }

    pub fn host(&self) -> &'a str {
        match &self.p.owned {
            Some(s) => &s.host,
            None => &self.line[self.p.host.clone()],
        }
    }

    pub fn job(&self) -> &'a str {
        match &self.p.owned {
            Some(s) => &s.job,
            None => &self.line[self.p.job.clone()],
        }
    }

    pub fn metric_count(&self) -> usize {
        match &self.p.owned {
            Some(s) => s.metrics.len(),
            None => self.p.metrics.len(),
        }
    }

    /// Every metric of the line, in line order.
    pub fn metrics(&self) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        let line = self.line;
        let (fast, slow) = match &self.p.owned {
            Some(s) => (None, Some(s.metrics.iter().map(|(n, v)| (n.as_ref(), *v)))),
            None => (
                Some(
                    self.p
                        .metrics
                        .iter()
                        .map(move |(r, v)| (&line[r.clone()], *v)),
                ),
                None,
            ),
        };
        fast.into_iter().flatten().chain(slow.into_iter().flatten())
    }

    pub fn errors(&self) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
        match &self.p.owned {
            Some(s) => s
                .errors
                .iter()
                .map(|(k, m)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(m.as_str())))
                .collect(),
            None => self
                .p
                .errors
                .iter()
                .map(|(k, m)| {
                    (
                        Cow::Borrowed(&self.line[k.clone()]),
                        Cow::Borrowed(&self.line[m.clone()]),
                    )
                })
                .collect(),
        }
    }

    pub fn error_count(&self) -> usize {
        match &self.p.owned {
            Some(s) => s.errors.len(),
            None => self.p.errors.len(),
        }
    }

    /// Whether the line took the serde_json path.
    pub fn was_slow(&self) -> bool {
        self.p.owned.is_some()
    }

    pub fn to_sample(&self) -> Sample {
        if let Some(s) = &self.p.owned {
            return (**s).clone();
        }
        Sample {
            ts: self.ts(),
            host: self.host().to_string(),
            job: self.job().to_string(),
            metrics: self
                .metrics()
                .map(|(n, v)| (MetricName::from(n), v))
                .collect(),
            errors: self
                .errors()
                .into_iter()
                .map(|(k, m)| (k.into_owned(), m.into_owned()))
                .collect(),
        }
    }
}

/// Why a line is not a sample.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub String);

/// Reads the line's timestamp only: enough to skip lines outside a window cheaply.
pub fn peek_ts_ms(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("{\"ts\":\"")?;
    parse_ts_ms(rest.get(..24)?).or_else(|| {
        let end = rest.find('"')?;
        parse_rfc3339_ms(&rest[..end])
    })
}

impl LineParser {
    /// Parses one line, reusing the buffers of the previous one.
    pub fn parse<'a>(&'a mut self, line: &'a str) -> Result<SampleView<'a>, LineError> {
        self.metrics.clear();
        self.errors.clear();
        self.owned = None;
        if parse_fast(line, self).is_none() {
            self.metrics.clear();
            self.errors.clear();
            let sample = parse_slow(line)?;
            self.ts_ms = sample.ts.timestamp_millis();
            self.owned = Some(Box::new(sample));
        }
        Ok(SampleView {
            line,
            ts_ms: self.ts_ms,
            p: self,
        })
    }
}

/// The exact shape runner writes; `None` on anything else (escapes, reordering, other types).
fn parse_fast(line: &str, view: &mut LineParser) -> Option<()> {
    let bytes = line.as_bytes();
    let mut pos = 0;
    let expect = |lit: &str, pos: &mut usize| -> Option<()> {
        if bytes.get(*pos..*pos + lit.len())? == lit.as_bytes() {
            *pos += lit.len();
            Some(())
        } else {
            None
        }
    };
    expect("{\"ts\":", &mut pos)?;
    let ts = plain_string(bytes, &mut pos)?;
    view.ts_ms = parse_ts_ms(&line[ts.clone()]).or_else(|| parse_rfc3339_ms(&line[ts]))?;
    expect(",\"host\":", &mut pos)?;
    view.host = plain_string(bytes, &mut pos)?;
    expect(",\"job\":", &mut pos)?;
    view.job = plain_string(bytes, &mut pos)?;
    expect(",\"metrics\":{", &mut pos)?;
    if bytes.get(pos) == Some(&b'}') {
        pos += 1;
    } else {
        loop {
            let name = plain_string(bytes, &mut pos)?;
            expect(":", &mut pos)?;
            let start = pos;
            while pos < bytes.len() && !matches!(bytes[pos], b',' | b'}') {
                pos += 1;
            }
            let value: f64 = line[start..pos].parse().ok()?;
            view.metrics.push((name, value));
            match bytes.get(pos)? {
                b',' => pos += 1,
                _ => {
                    pos += 1;
                    break;
                }
            }
        }
    }
    expect(",\"errors\":{", &mut pos)?;
    if bytes.get(pos) == Some(&b'}') {
        pos += 1;
    } else {
        loop {
            let key = plain_string(bytes, &mut pos)?;
            expect(":", &mut pos)?;
            let message = plain_string(bytes, &mut pos)?;
            view.errors.push((key, message));
            match bytes.get(pos)? {
                b',' => pos += 1,
                _ => {
                    pos += 1;
                    break;
                }
            }
        }
    }
    expect("}", &mut pos)?;
    line[pos..].trim().is_empty().then_some(())
}

/// A JSON string without escapes at `pos`; its content range.
fn plain_string(bytes: &[u8], pos: &mut usize) -> Option<Range<usize>> {
    if bytes.get(*pos) != Some(&b'"') {
        return None;
    }
    let start = *pos + 1;
    let len = bytes
        .get(start..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\')?;
    let end = start + len;
    if bytes[end] == b'\\' {
        return None;
    }
    *pos = end + 1;
    Some(start..end)
}

#[derive(Deserialize)]
struct SampleJson {
    ts: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    job: String,
    #[serde(default)]
    metrics: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    errors: BTreeMap<String, serde_json::Value>,
}

fn parse_slow(line: &str) -> Result<Sample, LineError> {
    let raw: SampleJson =
        serde_json::from_str(line).map_err(|e| LineError(format!("not a sample: {e}")))?;
    let ts_ms = parse_rfc3339_ms(&raw.ts)
        .ok_or_else(|| LineError(format!("`ts` is not an RFC 3339 time: `{}`", raw.ts)))?;
    Ok(Sample {
        ts: DateTime::from_timestamp_millis(ts_ms).unwrap_or_default(),
        host: raw.host,
        job: raw.job,
        metrics: raw
            .metrics
            .into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|v| (MetricName::from(k), v)))
            .collect(),
        errors: raw
            .errors
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
    })
}

/// `2026-11-28T10:00:00.000Z` exactly (what runner writes) to epoch milliseconds.
pub fn parse_ts_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000 + milli)
}

/// Any RFC 3339 time, for lines not written by runner.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            ts: DateTime::parse_from_rfc3339("2026-11-28T10:00:00.250Z")
                .unwrap()
                .with_timezone(&Utc),
            host: "web-1".into(),
            job: "monitor".into(),
            metrics: vec![
                ("cpu.total.usage_percent".into(), 12.5),
                ("memory.available_bytes".into(), 8_123_456_789.0),
                ("bad.nan".into(), f64::NAN),
                ("load.load1".into(), 0.1 + 0.2),
            ],
            errors: vec![("ping.gateway".into(), "timed out after 1000 ms".into())],
        }
    }

    #[test]
    fn writes_the_documented_shape() {
        assert_eq!(
            sample().to_json(),
            r#"{"ts":"2026-11-28T10:00:00.250Z","host":"web-1","job":"monitor","metrics":{"cpu.total.usage_percent":12.5,"memory.available_bytes":8123456789,"load.load1":0.30000000000000004},"errors":{"ping.gateway":"timed out after 1000 ms"}}"#
        );
    }

    #[test]
    fn round_trips_through_the_fast_path() {
        let line = sample().to_json();
        let mut parser = LineParser::default();
        let view = parser.parse(&line).unwrap();
        assert!(!view.was_slow(), "fast path expected");
        let back = view.to_sample();
        let mut want = sample();
        want.metrics.retain(|(_, v)| v.is_finite());
        assert_eq!(back, want);
        assert_eq!(peek_ts_ms(&line), Some(want.ts.timestamp_millis()));
    }

    #[test]
    fn escapes_and_odd_shapes_fall_back_to_serde() {
        let mut s = sample();
        s.errors = vec![("http.app".into(), "got \"HTML\"\nnot JSON".into())];
        let line = s.to_json();
        let mut parser = LineParser::default();
        let view = parser.parse(&line).unwrap();
        assert!(view.was_slow());
        assert_eq!(view.errors()[0].1, "got \"HTML\"\nnot JSON");
        let reordered =
            r#"{"job":"m","ts":"2026-11-28T10:00:00+01:00","metrics":{"a":1},"host":"h"}"#;
        let view = parser.parse(reordered).unwrap();
        assert_eq!(view.ts().to_rfc3339(), "2026-11-28T09:00:00+00:00");
        assert_eq!(view.metrics().collect::<Vec<_>>(), [("a", 1.0)]);
        assert!(parser.parse("not json").is_err());
    }

    #[test]
    fn fixed_format_timestamps_match_chrono() {
        for s in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-11-28T10:00:00.250Z",
            "2099-12-31T00:00:00.001Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
            assert_eq!(parse_ts_ms(s), Some(want), "{s}");
        }
        assert_eq!(parse_ts_ms("2026-13-28T10:00:00.250Z"), None);
    }
}
