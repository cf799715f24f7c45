//! A sample: one monitor tick, as kept in memory and as one JSON line of the metrics log.
//!
//! `{"ts":"2026-11-28T10:00:00.000Z","host":"web-1","job":"monitor","metrics":{...},"errors":{...}}`
//!
//! Writing is by hand (fixed key order, shortest round-trip floats, no NaN). Reading has a fast
//! path for that shape that borrows from the line and allocates nothing per metric, because
//! reports and warm-up read hundreds of megabytes of these; anything unexpected falls back to
//! serde_json, so a line edited by hand still reads.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
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

    /// The sample as one JSON line, without the newline. A name (or error key) that comes
    /// twice is written once, with its first value, the one `get` reads: a JSON object with a
    /// key twice is read differently by different readers.
    pub fn write_json(&self, out: &mut String) {
        let mut written: HashSet<&str> = HashSet::with_capacity(self.metrics.len());
        out.push_str("{\"ts\":\"");
        let _ = write!(out, "{}", self.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        out.push_str("\",\"host\":");
        push_json_str(out, &self.host);
        out.push_str(",\"job\":");
        push_json_str(out, &self.job);
        out.push_str(",\"metrics\":{");
        let mut first = true;
        for (name, value) in &self.metrics {
            if !value.is_finite() || !written.insert(name) {
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
        written.clear();
        for (key, message) in &self.errors {
            if !written.insert(key) {
                continue;
            }
            if written.len() > 1 {
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

/// A sample line in any JSON spelling of its shape: any whitespace, keys in any order, `ts`
/// with or without fractions or with an offset, `errors` (or `host`, `job`) left out, numbers
/// in any JSON form. `None` on what only serde_json handles (escapes in strings, keys runner
/// does not know, values of other types), which then takes the slow path.
fn parse_fast(line: &str, view: &mut LineParser) -> Option<()> {
    let bytes = line.as_bytes();
    let mut pos = 0;
    skip_space(bytes, &mut pos);
    expect(bytes, &mut pos, b'{')?;
    view.host = 0..0;
    view.job = 0..0;
    let mut ts = None;
    let mut first = true;
    loop {
        skip_space(bytes, &mut pos);
        if bytes.get(pos) == Some(&b'}') && first {
            pos += 1;
            break;
        }
        let key = plain_string(bytes, &mut pos)?;
        skip_space(bytes, &mut pos);
        expect(bytes, &mut pos, b':')?;
        skip_space(bytes, &mut pos);
        match &bytes[key] {
            b"ts" => {
                let text = plain_string(bytes, &mut pos)?;
                ts = Some(
                    parse_ts_ms(&line[text.clone()]).or_else(|| parse_rfc3339_ms(&line[text]))?,
                );
            }
            b"host" => view.host = plain_string(bytes, &mut pos)?,
            b"job" => view.job = plain_string(bytes, &mut pos)?,
            b"metrics" => object(bytes, &mut pos, |name, bytes, pos| {
                let value = number(line, bytes, pos)?;
                view.metrics.push((name, value));
                Some(())
            })?,
            b"errors" => object(bytes, &mut pos, |key, bytes, pos| {
                let message = plain_string(bytes, pos)?;
                view.errors.push((key, message));
                Some(())
            })?,
            _ => return None,
        }
        first = false;
        skip_space(bytes, &mut pos);
        match bytes.get(pos)? {
            b',' => pos += 1,
            b'}' => {
                pos += 1;
                break;
            }
            _ => return None,
        }
    }
    view.ts_ms = ts?;
    skip_space(bytes, &mut pos);
    (pos == bytes.len()).then_some(())
}

#[inline(always)]
fn skip_space(bytes: &[u8], pos: &mut usize) {
    // Runner's own lines have none: one comparison decides.
    while let Some(&b) = bytes.get(*pos)
        && b <= b' '
        && matches!(b, b' ' | b'\t' | b'\n' | b'\r')
    {
        *pos += 1;
    }
}

#[inline(always)]
fn expect(bytes: &[u8], pos: &mut usize, byte: u8) -> Option<()> {
    (bytes.get(*pos) == Some(&byte)).then(|| *pos += 1)
}

/// `{"key": value, ...}` at `pos`, each value read by `value`.
#[inline(always)]
fn object(
    bytes: &[u8],
    pos: &mut usize,
    mut value: impl FnMut(Range<usize>, &[u8], &mut usize) -> Option<()>,
) -> Option<()> {
    expect(bytes, pos, b'{')?;
    skip_space(bytes, pos);
    if bytes.get(*pos) == Some(&b'}') {
        *pos += 1;
        return Some(());
    }
    loop {
        skip_space(bytes, pos);
        let key = plain_string(bytes, pos)?;
        skip_space(bytes, pos);
        expect(bytes, pos, b':')?;
        skip_space(bytes, pos);
        value(key, bytes, pos)?;
        skip_space(bytes, pos);
        match bytes.get(*pos)? {
            b',' => *pos += 1,
            b'}' => {
                *pos += 1;
                return Some(());
            }
            _ => return None,
        }
    }
}

/// Powers of ten a double holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number at `pos` (`-12.5`, `3e-7`); `None` for anything else (`null`, a string).
/// Read in one pass: digits that fit a double exactly, scaled by an exact power of ten, are
/// one correctly rounded operation (Clinger's fast path); anything longer goes to the
/// standard parser.
#[inline(always)]
fn number(line: &str, bytes: &[u8], pos: &mut usize) -> Option<f64> {
    let start = *pos;
    let mut i = start;
    let negative = bytes.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut mantissa: u64 = 0;
    let mut exact = true;
    // Digits from `i` into the mantissa; how many there were.
    let mut digits = |i: &mut usize| {
        let start = *i;
        while let Some(&b) = bytes.get(*i)
            && b.is_ascii_digit()
        {
            match mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(b - b'0')))
            {
                Some(m) => mantissa = m,
                None => exact = false,
            }
            *i += 1;
        }
        *i - start
    };
    if digits(&mut i) == 0 {
        return None;
    }
    let mut scale = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        scale = digits(&mut i);
        if scale == 0 {
            return None;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        exact = false;
        i += 1;
        while matches!(bytes.get(i), Some(b'-' | b'+' | b'0'..=b'9')) {
            i += 1;
        }
    }
    *pos = i;
    if exact && mantissa <= 1 << 53 && scale <= 22 {
        let value = mantissa as f64 / POW10[scale];
        return Some(if negative { -value } else { value });
    }
    line[start..i].parse().ok()
}

/// A JSON string without escapes at `pos`; its content range.
fn plain_string(bytes: &[u8], pos: &mut usize) -> Option<Range<usize>> {
    if bytes.get(*pos) != Some(&b'"') {
        return None;
    }
    let start = *pos + 1;
    let len = memchr::memchr2(b'"', b'\\', bytes.get(start..)?)?;
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
    fn a_name_pushed_twice_is_written_once_with_the_value_get_reads() {
        let mut s = sample();
        let first = s.metrics[0].clone();
        s.metrics.push((first.0.clone(), 99.0));
        s.errors.push((s.errors[0].0.clone(), "again".to_string()));
        s.errors.push(("tcp.db".to_string(), "refused".to_string()));
        let line = s.to_json();
        let key = format!("\"{}\":", first.0);
        assert_eq!(line.matches(&key).count(), 1, "{line}");
        assert_eq!(line.matches("\"ping.gateway\":").count(), 1, "{line}");
        let parsed = parse_slow(&line).unwrap();
        assert_eq!(parsed.get(&first.0), Some(first.1));
        assert_eq!(parsed.get(&first.0), s.get(&first.0));
        assert_eq!(parsed.metrics.len(), 3, "four names, one of them NaN");
        assert_eq!(
            parsed.errors,
            [
                (
                    "ping.gateway".to_string(),
                    "timed out after 1000 ms".to_string()
                ),
                ("tcp.db".to_string(), "refused".to_string())
            ]
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
    fn other_spellings_of_the_same_sample_take_the_fast_path() {
        let spellings = [
            r#"{"ts": "2026-11-28T10:00:00Z", "host": "h", "job": "m", "metrics": {"a": 1.5, "b": -2e3}}"#,
            r#"{ "metrics" : { "a" : 1.5 , "b" : -2000 } , "job" : "m" , "host" : "h" , "ts" : "2026-11-28T11:00:00+01:00" , "errors" : { } }"#,
            "{\"ts\":\"2026-11-28T10:00:00.000Z\",\n\t\"host\":\"h\",\"job\":\"m\",\"metrics\":{\"a\":15e-1,\"b\":-2000.0},\"errors\":{}}",
        ];
        let mut parser = LineParser::default();
        for line in spellings {
            let view = parser.parse(line).unwrap();
            assert!(!view.was_slow(), "{line}");
            assert_eq!(view.ts_ms, 1_795_860_000_000, "{line}");
            assert_eq!((view.host(), view.job()), ("h", "m"));
            assert_eq!(view.metrics().collect::<Vec<_>>().len(), 2, "{line}");
            let mut got: Vec<(&str, f64)> = view.metrics().collect();
            got.sort_by(|a, b| a.0.cmp(b.0));
            assert_eq!(got, [("a", 1.5), ("b", -2000.0)], "{line}");
        }
        // What serde_json would refuse, the fast path refuses too.
        for bad in [
            r#"{"ts":"2026-11-28T10:00:00Z","metrics":{"a":1},}"#,
            r#"{"ts":"2026-11-28T10:00:00Z","metrics":{"a":+1}}"#,
            r#"{"ts":"2026-11-28T10:00:00Z"} x"#,
        ] {
            assert!(parser.parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_read_in_one_pass_equal_the_standard_parser_bit_for_bit() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "1",
            "42560000",
            "49.019999999999996",
            "0.1",
            "0.30000000000000004",
            "9007199254740993",
            "123456789012345678901234",
            "1e300",
            "-2.5E-7",
            "3.14159",
            "1844674407370955161.5",
            "0.0000000000000000000000001",
            "99.99",
            "-1234.5678",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let value = f64::from_bits(x);
            if value.is_finite() {
                texts.push(format!("{value}"));
            }
            texts.push(format!("{}.{}", x % 100_000, x % 1_000_000_007));
            texts.push(format!("{}", (x % 1_000_000) as f64 / 100.0));
        }
        for text in texts {
            let mut pos = 0;
            let got = number(&text, text.as_bytes(), &mut pos).unwrap();
            let want: f64 = text.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
            assert_eq!(pos, text.len(), "{text}");
        }
        for bad in ["-", ".5", "1.", "null", "\"1\""] {
            assert_eq!(number(bad, bad.as_bytes(), &mut 0), None, "{bad}");
        }
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
