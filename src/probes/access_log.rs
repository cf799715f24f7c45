//! `access_log`: a web server's access log, read incrementally between ticks: requests, client
//! and server errors per second, the server error ratio, request-time percentiles, and distinct
//! clients and sessions over a sliding window. This is the application's real load and the
//! real session count, measured where users meet it.
//!
//! The file is followed like `tail -F`: the probe keeps the file it reads open, so lines
//! written just before a rename are still read, then switches to the new file at the path
//! (rotation by inode), and starts over when the file shrank (copytruncate). The first tick
//! starts at the end of the file: history before runner started is not this tick's load.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Names, Output};
use crate::config::probes::TimeUnit;
use crate::config::probes::access_log::TYPE;
use crate::config::probes::{AccessLogFormat, AccessLogSpec};

const CHUNK: usize = 256 * 1024;

/// The parts of one log line the probe uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub client: &'a str,
    pub status: u16,
    pub request_time: Option<&'a str>,
    pub session: Option<&'a str>,
}

/// Index just past the quoted string that starts at `start` (which holds `"`).
fn skip_quoted(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// One field after the user agent: quoted or a plain token; returns it and the index after it.
fn next_field(line: &str, mut i: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i >= b.len() {
        return None;
    }
    if b[i] == b'"' {
        let end = skip_quoted(b, i)?;
        Some((&line[i + 1..end - 1], end))
    } else {
        let end = line[i..].find(' ').map_or(b.len(), |e| i + e);
        Some((&line[i..end], end))
    }
}

/// Parses the nginx/Apache combined format:
/// `client ident user [time] "request" status bytes "referer" "agent" [extra fields...]`.
/// Extra fields are read only when asked for; `-` means absent.
pub fn parse_combined(
    line: &str,
    request_time: Option<usize>,
    session: Option<usize>,
) -> Option<Line<'_>> {
    let b = line.as_bytes();
    let client_end = line.find(' ')?;
    let close = client_end + line[client_end..].find("] \"")?;
    let request_end = skip_quoted(b, close + 2)?;
    let rest = line.get(request_end + 1..)?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let mut parsed = Line {
        client: &line[..client_end],
        status,
        request_time: None,
        session: None,
    };
    let wanted = request_time.max(session);
    if let Some(last) = wanted {
        // status, bytes, "referer", "agent", then the extra fields.
        let mut i = request_end + 1;
        for _ in 0..4 {
            i = next_field(line, i)?.1;
        }
        for index in 0..=last {
            let Some((value, end)) = next_field(line, i) else {
                break;
            };
            i = end;
            let value = (value != "-").then_some(value);
            if Some(index) == request_time {
                parsed.request_time = value;
            }
            if Some(index) == session {
                parsed.session = value;
            }
        }
    }
    Some(parsed)
}

fn parse_regex<'a>(re: &regex::Regex, line: &'a str) -> Option<Line<'a>> {
    let caps = re.captures(line)?;
    let group = |name: &str| caps.name(name).map(|m| m.as_str()).filter(|s| *s != "-");
    Some(Line {
        status: group("status")?.parse().ok()?,
        client: group("client").unwrap_or(""),
        request_time: group("request_time"),
        session: group("session"),
    })
}

/// Totals of the lines read in one tick.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    times_ms: Vec<f64>,
    unparsed: u64,
    first_unparsed: Option<String>,
}

/// Distinct keys (clients, sessions) seen within a sliding window.
#[derive(Debug, Default)]
struct Distinct {
    hasher: RandomState,
    last_seen: HashMap<u64, u64>,
}

impl Distinct {
    fn see(&mut self, key: &str, now_ms: u64) {
        self.last_seen.insert(self.hasher.hash_one(key), now_ms);
    }

    fn count(&mut self, now_ms: u64, window: Duration) -> usize {
        let oldest = now_ms.saturating_sub(window.as_millis() as u64);
        self.last_seen.retain(|_, seen| *seen >= oldest);
        self.last_seen.len()
    }
}

struct OpenLog {
    file: File,
    inode: u64,
    offset: u64,
}

pub struct AccessLogProbe {
    spec: AccessLogSpec,
    instance: String,
    names: Names,
    open: Option<OpenLog>,
    partial: Vec<u8>,
    chunk: Vec<u8>,
    clients: Distinct,
    sessions: Distinct,
    started: Instant,
    last_read: Option<Instant>,
}

impl AccessLogProbe {
    pub fn new(spec: AccessLogSpec, instance: &str) -> Self {
        AccessLogProbe {
            spec,
            instance: instance.to_string(),
            names: Names::new("access_log"),
            open: None,
            partial: Vec::new(),
            chunk: vec![0; CHUNK],
            clients: Distinct::default(),
            sessions: Distinct::default(),
            started: Instant::now(),
            last_read: None,
        }
    }

    fn path(&self) -> &PathBuf {
        &self.spec.path
    }

    fn open_at(&self, from_end: bool) -> Result<OpenLog, String> {
        let mut file = File::open(self.path())
            .map_err(|e| format!("cannot open {}: {e}", self.path().display()))?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        let offset = if from_end { meta.len() } else { 0 };
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| e.to_string())?;
        Ok(OpenLog {
            file,
            inode: meta.ino(),
            offset,
        })
    }

    /// Reads what was appended to the open file, in chunks, tallying whole lines.
    fn drain(&mut self, tally: &mut Tally, now_ms: u64) -> Result<(), String> {
        loop {
            let Some(open) = &mut self.open else {
                return Ok(());
            };
            let n = open
                .file
                .read(&mut self.chunk)
                .map_err(|e| format!("reading {}: {e}", self.spec.path.display()))?;
            if n == 0 {
                return Ok(());
            }
            open.offset += n as u64;
            let mut data = std::mem::take(&mut self.partial);
            data.extend_from_slice(&self.chunk[..n]);
            let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in data[..complete].split(|&b| b == b'\n') {
                if !line.is_empty() {
                    self.tally_line(line, tally, now_ms);
                }
            }
            self.partial = data[complete..].to_vec();
        }
    }

    fn tally_line(&mut self, raw: &[u8], tally: &mut Tally, now_ms: u64) {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim_end_matches('\r');
        let parsed = match &self.spec.format {
            AccessLogFormat::Combined {
                request_time,
                session,
            } => parse_combined(line, *request_time, *session),
            AccessLogFormat::Regex(re) => parse_regex(re, line),
        };
        let Some(parsed) = parsed else {
            tally.unparsed += 1;
            if tally.first_unparsed.is_none() {
                tally.first_unparsed = Some(line.chars().take(120).collect());
            }
            return;
        };
        tally.requests += 1;
        match parsed.status {
            400..=499 => tally.client_errors += 1,
            500..=599 => tally.server_errors += 1,
            _ => {}
        }
        if let Some(time) = parsed.request_time.and_then(|t| t.parse::<f64>().ok()) {
            let factor = match self.spec.time_unit {
                TimeUnit::S => 1000.0,
                TimeUnit::Ms => 1.0,
                TimeUnit::Us => 0.001,
            };
            tally.times_ms.push(time * factor);
        }
        if !parsed.client.is_empty() {
            self.clients.see(parsed.client, now_ms);
        }
        if let Some(session) = parsed.session {
            self.sessions.see(session, now_ms);
        }
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        let now = Instant::now();
        let now_ms = now.duration_since(self.started).as_millis() as u64;
        let mut tally = Tally::default();
        if self.open.is_none() {
            // First tick, or the file did not exist before: start at its end the first time,
            // at its start when it appeared later (those lines are new).
            let from_end = self.last_read.is_none();
            self.open = Some(self.open_at(from_end)?);
            self.partial.clear();
        }
        self.drain(&mut tally, now_ms)?;
        match std::fs::metadata(self.path()) {
            Ok(meta) => {
                let open = self.open.as_ref().map(|o| (o.inode, o.offset));
                if let Some((inode, offset)) = open {
                    if meta.ino() != inode {
                        // Rotated: the old file is read to its end above; go on with the new one.
                        self.open = Some(self.open_at(false)?);
                        self.partial.clear();
                        self.drain(&mut tally, now_ms)?;
                    } else if meta.len() < offset {
                        // Truncated in place: read it again from the start.
                        self.open = Some(self.open_at(false)?);
                        self.partial.clear();
                        self.drain(&mut tally, now_ms)?;
                    }
                }
            }
            // Between a rename and the new file's creation: keep the old one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot stat {}: {e}", self.path().display())),
        }

        let names = self.names.get(&self.instance, TYPE.fields);
        if let Some(last) = self.last_read {
            let secs = now.duration_since(last).as_secs_f64();
            if secs > 0.0 {
                out.push(&names[0], tally.requests as f64 / secs);
                out.push(&names[1], tally.client_errors as f64 / secs);
                out.push(&names[2], tally.server_errors as f64 / secs);
                if tally.requests > 0 {
                    out.push(
                        &names[3],
                        tally.server_errors as f64 / tally.requests as f64,
                    );
                }
                for (name, q) in names[4..7].iter().zip([0.50, 0.95, 0.99]) {
                    if let Some(v) = percentile(&mut tally.times_ms, q) {
                        out.push(name, v);
                    }
                }
            }
        }
        out.push(
            &names[7],
            self.clients.count(now_ms, self.spec.window) as f64,
        );
        if matches!(
            self.spec.format,
            AccessLogFormat::Combined {
                session: Some(_),
                ..
            }
        ) || matches!(&self.spec.format, AccessLogFormat::Regex(re) if re.capture_names().flatten().any(|n| n == "session"))
        {
            out.push(
                &names[8],
                self.sessions.count(now_ms, self.spec.window) as f64,
            );
        }
        if tally.unparsed > 0 {
            out.error(
                format!("access_log.{}", self.instance),
                format!(
                    "{} lines did not match the format; the first: `{}`",
                    tally.unparsed,
                    tally.first_unparsed.unwrap_or_default()
                ),
            );
        }
        self.last_read = Some(now);
        Ok(())
    }
}

/// The value at quantile `q` (nearest rank, exact) of `values`; reorders them.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    Some(*v)
}

impl super::Read for AccessLogProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"203.0.113.7 - alice [28/Nov/2026:10:00:00 +0000] "GET /cart?item=\"x\" HTTP/1.1" 503 1234 "https://shop.example/" "Mozilla/5.0 (X11; Linux)" 0.250 sess-42"#;

    #[test]
    fn parses_combined_with_extra_fields() {
        assert_eq!(
            parse_combined(LINE, Some(0), Some(1)),
            Some(Line {
                client: "203.0.113.7",
                status: 503,
                request_time: Some("0.250"),
                session: Some("sess-42"),
            })
        );
        let plain = parse_combined(LINE, None, None).unwrap();
        assert_eq!(
            (plain.client, plain.status, plain.request_time),
            ("203.0.113.7", 503, None)
        );
        assert_eq!(parse_combined("garbage", None, None), None);
        let dash =
            r#"10.0.0.1 - - [28/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8" -"#;
        assert_eq!(
            parse_combined(dash, Some(0), None).unwrap().request_time,
            None
        );
    }

    #[test]
    fn parses_with_a_regex() {
        let re = regex::Regex::new(r"^(?P<client>\S+) (?P<status>\d{3}) (?P<request_time>\d+)us$")
            .unwrap();
        assert_eq!(
            parse_regex(&re, "10.1.1.1 404 1500us"),
            Some(Line {
                client: "10.1.1.1",
                status: 404,
                request_time: Some("1500"),
                session: None
            })
        );
        assert_eq!(parse_regex(&re, "nope"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile(&mut v, 0.95), Some(95.0));
        assert_eq!(percentile(&mut v, 0.99), Some(99.0));
        assert_eq!(percentile(&mut [7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }
}
