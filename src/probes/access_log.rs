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

use super::rate::{Clock, Monotonic, secs_between};
use super::{Names, Output};
use crate::config::probes::TimeUnit;
use crate::config::probes::access_log::TYPE;
use crate::config::probes::{AccessLogFormat, AccessLogSpec};

const CHUNK: usize = 256 * 1024;

/// The longest line read; a longer one (a binary file, a log line gone wrong) is skipped and
/// counted, so a line never holds more memory than this.
pub const MAX_LINE: usize = 64 * 1024;

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

pub fn parse_regex<'a>(re: &regex::Regex, line: &'a str) -> Option<Line<'a>> {
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
    /// Lines longer than `MAX_LINE`, skipped.
    too_long: u64,
    /// Reading stopped at the probe's timeout; the rest is read next tick.
    out_of_time: bool,
}

/// Lines read since the last read that reached the end of the log, not yet in a rate: a read
/// cut short at the timeout ends at no known instant, so its lines wait for the next full read.
#[derive(Debug, Default)]
struct Unrated {
    requests: u64,
    client_errors: u64,
    server_errors: u64,
}

impl Unrated {
    fn add(&mut self, tally: &Tally) {
        self.requests += tally.requests;
        self.client_errors += tally.client_errors;
        self.server_errors += tally.server_errors;
    }
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
    /// The start of a line whose end has not been read yet (at most `MAX_LINE` bytes).
    partial: Vec<u8>,
    /// The line being read is longer than `MAX_LINE`: drop bytes up to its newline.
    skipping: bool,
    chunk: Vec<u8>,
    clients: Distinct,
    sessions: Distinct,
    started: Instant,
    /// When the last read that reached the end of the log returned: the lines counted since
    /// then were written between it and the next such read, so rates are over those instants.
    last_read: Option<Instant>,
    unrated: Unrated,
    /// Every line counted in a rate so far (or waiting for one): the `_total` counters.
    counted: Unrated,
    clock: Box<dyn Clock>,
}

impl AccessLogProbe {
    pub fn new(spec: AccessLogSpec, instance: &str) -> Self {
        AccessLogProbe {
            spec,
            instance: instance.to_string(),
            names: Names::new("access_log"),
            open: None,
            partial: Vec::new(),
            skipping: false,
            chunk: vec![0; CHUNK],
            clients: Distinct::default(),
            sessions: Distinct::default(),
            started: Instant::now(),
            last_read: None,
            unrated: Unrated::default(),
            counted: Unrated::default(),
            clock: Box::new(Monotonic),
        }
    }

    /// The same probe taking its reads' instants from `clock` (tests give explicit ones).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
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

    /// Reads what was appended to the open file, in chunks, tallying whole lines, until the
    /// end or `deadline` (the rest is read next tick). Returns when the read that found the
    /// end returned, or `None` when reading stopped at the deadline.
    fn drain(
        &mut self,
        tally: &mut Tally,
        now_ms: u64,
        deadline: Instant,
    ) -> Result<Option<Instant>, String> {
        loop {
            if Instant::now() > deadline {
                tally.out_of_time = true;
                return Ok(None);
            }
            let Some(open) = &mut self.open else {
                return Ok(Some(self.clock.now()));
            };
            let n = open
                .file
                .read(&mut self.chunk)
                .map_err(|e| format!("reading {}: {e}", self.spec.path.display()))?;
            if n == 0 {
                // Everything written before this read is counted, nothing after it: this
                // instant, not the tick's, is where the interval of the counted lines ends.
                return Ok(Some(self.clock.now()));
            }
            open.offset += n as u64;
            let chunk = std::mem::take(&mut self.chunk);
            self.feed(&chunk[..n], tally, now_ms);
            self.chunk = chunk;
        }
    }

    /// Tallies the whole lines in `bytes`, the next bytes of the file. Each byte is looked at
    /// once: a line is taken from the chunk where it lies, and only the unfinished one at a
    /// chunk's end is kept, up to `MAX_LINE`. The length rule is the same wherever the read
    /// boundaries fall (a line is its bytes before the newline): a line within one chunk,
    /// across two or across many is tallied when it is at most `MAX_LINE` long, else skipped
    /// and counted once in `too_long`, so what is counted never depends on how reads split
    /// the file.
    fn feed(&mut self, bytes: &[u8], tally: &mut Tally, now_ms: u64) {
        let mut start = 0;
        while let Some(newline) = bytes[start..].iter().position(|&b| b == b'\n') {
            let end = start + newline;
            if self.skipping {
                self.skipping = false;
            } else if self.partial.len() + (end - start) > MAX_LINE {
                tally.too_long += 1;
                self.partial.clear();
            } else if self.partial.is_empty() {
                self.tally_nonempty(&bytes[start..end], tally, now_ms);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&bytes[start..end]);
                self.tally_nonempty(&line, tally, now_ms);
                line.clear();
                self.partial = line;
            }
            start = end + 1;
        }
        let rest = &bytes[start..];
        if !self.skipping && !rest.is_empty() {
            if self.partial.len() + rest.len() > MAX_LINE {
                tally.too_long += 1;
                self.partial.clear();
                self.skipping = true;
            } else {
                self.partial.extend_from_slice(rest);
            }
        }
    }

    fn tally_nonempty(&mut self, line: &[u8], tally: &mut Tally, now_ms: u64) {
        if !line.is_empty() {
            self.tally_line(line, tally, now_ms);
        }
    }

    /// Forgets a line in progress: the file it came from is gone.
    fn restart_line(&mut self) {
        self.partial.clear();
        self.skipping = false;
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
                // No backtick inside the quote: the quote ends where the message's does, and the
                // monitor leaves the quoted line (which changes every tick) out of the kind.
                let quoted = line
                    .chars()
                    .take(120)
                    .map(|c| if c == '`' { '\'' } else { c });
                tally.first_unparsed = Some(quoted.collect());
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

    /// Reads the lines written since the last read, following a rotation or a truncation, and
    /// returns when the read that found the end of the log returned (`None`: stopped at
    /// `deadline`, the rest is read next tick).
    fn read_new(
        &mut self,
        tally: &mut Tally,
        now_ms: u64,
        deadline: Instant,
    ) -> Result<Option<Instant>, String> {
        if self.open.is_none() {
            // First tick, or the file did not exist before: start at its end the first time,
            // at its start when it appeared later (those lines are new).
            let from_end = self.last_read.is_none();
            self.open = Some(self.open_at(from_end)?);
            self.restart_line();
        }
        let mut end = self.drain(tally, now_ms, deadline)?;
        match std::fs::metadata(self.path()) {
            Ok(meta) => {
                let open = self.open.as_ref().map(|o| (o.inode, o.offset));
                if let Some((inode, offset)) = open {
                    if end.is_none() {
                        // The old file is not read to its end yet: switch next tick.
                    } else if meta.ino() != inode {
                        // Rotated: the old file is read to its end above; go on with the new one.
                        self.open = Some(self.open_at(false)?);
                        self.restart_line();
                        end = self.drain(tally, now_ms, deadline)?;
                    } else if meta.len() < offset {
                        // Truncated in place: read it again from the start.
                        self.open = Some(self.open_at(false)?);
                        self.restart_line();
                        end = self.drain(tally, now_ms, deadline)?;
                    }
                }
            }
            // Between a rename and the new file's creation: keep the old one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot stat {}: {e}", self.path().display())),
        }
        Ok(end)
    }

    pub fn collect(&mut self, out: &mut Output, deadline: Instant) -> Result<(), String> {
        let now_ms = Instant::now().duration_since(self.started).as_millis() as u64;
        let mut tally = Tally::default();
        let read = self.read_new(&mut tally, now_ms, deadline);
        // Lines read before a failure were read all the same: they count in the next rate.
        self.unrated.add(&tally);
        // Lines before the first read reached the end are history, in no rate and no counter.
        if self.last_read.is_some() {
            self.counted.add(&tally);
        }
        let end = read?;

        let names = self.names.get(&self.instance, TYPE.fields);
        // From the first tick, 0 until a request comes, so `rate()` has its start.
        for (name, count) in names[9..12].iter().zip([
            self.counted.requests,
            self.counted.client_errors,
            self.counted.server_errors,
        ]) {
            out.push(name, count as f64);
        }
        let first = self.last_read.is_none();
        match (self.last_read, end) {
            // The first read to reach the end: what came before it is history, not a rate.
            (None, Some(at)) => {
                self.last_read = Some(at);
                self.unrated = Unrated::default();
            }
            (Some(last), Some(at)) => {
                // Two reads at one instant leave the lines for the next rate, not a rate over
                // no time.
                if let Some(secs) = secs_between(last, at) {
                    let lines = std::mem::take(&mut self.unrated);
                    out.push(&names[0], lines.requests as f64 / secs);
                    out.push(&names[1], lines.client_errors as f64 / secs);
                    out.push(&names[2], lines.server_errors as f64 / secs);
                    if lines.requests > 0 {
                        out.push(
                            &names[3],
                            lines.server_errors as f64 / lines.requests as f64,
                        );
                    }
                    self.last_read = Some(at);
                }
            }
            // Stopped at the timeout: the lines read so far end at no known instant, so there
            // is no rate this tick (absent, not 0) and they count in the next.
            (_, None) => {}
        }
        if !first {
            // The request times of this tick's lines: not a rate, so a cut-short read has them.
            for (name, q) in names[4..7].iter().zip([0.50, 0.95, 0.99]) {
                if let Some(v) = percentile(&mut tally.times_ms, q) {
                    out.push(name, v);
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
        let mut notes = Vec::new();
        if tally.unparsed > 0 {
            notes.push(format!(
                "{} lines did not match the format; the first: `{}`",
                tally.unparsed,
                tally.first_unparsed.unwrap_or_default()
            ));
        }
        if tally.too_long > 0 {
            notes.push(format!(
                "{} lines longer than {} KiB were skipped",
                tally.too_long,
                MAX_LINE >> 10
            ));
        }
        if tally.out_of_time {
            notes.push("reading stopped at the probe's timeout; the rest is read next tick".into());
        }
        if !notes.is_empty() {
            out.error(format!("access_log.{}", self.instance), notes.join("; "));
        }
        Ok(())
    }
}

/// The value at quantile `q` (nearest rank, exact) of `values`; reorders them.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = crate::vocab::rank::nearest_rank(values.len() as u64, q) as usize;
    let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    Some(*v)
}

impl super::Read for AccessLogProbe {
    fn read(&mut self, out: &mut Output, deadline: Instant) -> Result<(), String> {
        // Stop reading a little before the deadline, so what was read is still reported.
        let budget = deadline.saturating_duration_since(Instant::now());
        self.collect(out, Instant::now() + budget * 4 / 5)
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

    fn probe(path: &std::path::Path) -> AccessLogProbe {
        AccessLogProbe::new(
            AccessLogSpec {
                path: path.to_path_buf(),
                format: AccessLogFormat::Combined {
                    request_time: Some(0),
                    session: None,
                },
                time_unit: TimeUnit::S,
                window: Duration::from_secs(900),
            },
            "web",
        )
    }

    fn append(path: &std::path::Path, bytes: &[u8]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn a_huge_line_is_skipped_and_counted_with_memory_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, b"");
        let mut p = probe(&path);
        p.collect(&mut Output::default(), later()).unwrap();
        let line = format!("{LINE}\n");
        append(&path, line.as_bytes());
        append(&path, &vec![b'x'; 10 << 20]);
        append(&path, b"\n");
        append(&path, line.as_bytes());
        // 40 MiB more without a newline: the line in progress, never held whole.
        append(&path, &vec![b'y'; 40 << 20]);
        let before = crate::alloc::held_by_this_thread();
        let mut out = Output::default();
        p.collect(&mut out, later()).unwrap();
        let grew = crate::alloc::held_by_this_thread() - before;
        assert!(grew < 2 << 20, "reading 50 MiB held {grew} more bytes");
        let requests = out
            .metrics
            .iter()
            .find(|(n, _)| n.ends_with("requests_per_sec"))
            .map(|(_, v)| *v)
            .unwrap();
        assert!(requests > 0.0);
        assert_eq!(
            out.errors,
            [(
                "access_log.web".to_string(),
                "2 lines longer than 64 KiB were skipped".to_string()
            )]
        );
        // The skipped line's end arrives, then a good line: it counts again.
        append(&path, b"\n");
        append(&path, line.as_bytes());
        let mut out = Output::default();
        p.collect(&mut out, later()).unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(p.partial.len(), 0);
    }

    /// A combined-format line that parses, exactly `len` bytes long (at least 80).
    fn line_of(len: usize) -> Vec<u8> {
        let head = r#"10.0.0.1 - - [28/Nov/2026:10:00:00 +0000] "GET /"#;
        let tail = r#" HTTP/1.1" 200 5 "-" "curl/8" 0.1"#;
        let pad = len - head.len() - tail.len();
        let line = format!("{head}{}{tail}", "a".repeat(pad));
        assert_eq!(line.len(), len);
        line.into_bytes()
    }

    /// The lengths at the edge and the lengths seen in the field (66 and 140 KB).
    const EDGES: [usize; 6] = [MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 66_000, 140_000, 200];

    /// `lengths` as a log, each line followed by a short one, and the (kept, skipped) counts.
    fn log_of(lengths: &[usize]) -> (Vec<u8>, u64, u64) {
        let mut log = Vec::new();
        let (mut kept, mut skipped) = (0, 0);
        for &len in lengths {
            for len in [len, 120] {
                log.extend_from_slice(&line_of(len));
                log.push(b'\n');
                if len > MAX_LINE {
                    skipped += 1;
                } else {
                    kept += 1;
                }
            }
        }
        (log, kept, skipped)
    }

    /// Feeds `log` in pieces of the sizes `sizes` yields, as reads of the file would.
    fn feed_split(log: &[u8], mut sizes: impl FnMut() -> usize) -> (u64, u64, u64) {
        let mut p = probe(std::path::Path::new("/nonexistent/access.log"));
        let mut tally = Tally::default();
        let mut at = 0;
        while at < log.len() {
            let end = (at + sizes().max(1)).min(log.len());
            p.feed(&log[at..end], &mut tally, 0);
            at = end;
        }
        assert!(p.partial.is_empty() && !p.skipping);
        (tally.requests, tally.too_long, tally.unparsed)
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_wherever_the_reads_split_it() {
        // Every order of the edge lengths is not needed: each rotation puts every length first,
        // last and in between, and the shifts move each one across read boundaries.
        for rotation in 0..EDGES.len() {
            let mut lengths = EDGES;
            lengths.rotate_left(rotation);
            let (log, kept, skipped) = log_of(&lengths);
            let want = (kept, skipped, 0);
            // The whole log at once: every line lies inside the one chunk.
            assert_eq!(feed_split(&log, || log.len()), want, "one chunk");
            for size in [
                1000,
                MAX_LINE - 1,
                MAX_LINE,
                MAX_LINE + 1,
                MAX_LINE + 2,
                66_001,
                140_001,
                CHUNK,
            ] {
                for shift in [0, 1, 119, 121, MAX_LINE / 2] {
                    let mut first = true;
                    let sizes = || {
                        if std::mem::take(&mut first) && shift > 0 {
                            shift
                        } else {
                            size
                        }
                    };
                    assert_eq!(
                        feed_split(&log, sizes),
                        want,
                        "rotation {rotation}, reads of {size} after {shift}"
                    );
                }
            }
            // Uneven reads, as a pipe or a busy disk give them.
            for seed in 1..=8u64 {
                let mut state = seed;
                let sizes = || {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33) as usize % 150_000 + 1
                };
                assert_eq!(
                    feed_split(&log, sizes),
                    want,
                    "rotation {rotation}, seed {seed}"
                );
            }
        }
    }

    #[test]
    fn long_lines_inside_one_read_are_skipped_too() {
        // 66 and 140 KB lines written together lie inside one 256 KiB read: they were counted.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, b"");
        let mut p = probe(&path);
        p.collect(&mut Output::default(), later()).unwrap();
        let (log, kept, skipped) = log_of(&[66_000, 140_000, MAX_LINE, MAX_LINE + 1]);
        assert!(log.len() > CHUNK, "the last lines cross into a second read");
        append(&path, &log);
        let mut tally = Tally::default();
        p.drain(&mut tally, 0, later()).unwrap();
        assert_eq!((tally.requests, tally.too_long), (kept, skipped));
        assert_eq!((kept, skipped), (5, 3));
    }

    #[test]
    fn reading_stops_at_the_deadline_and_goes_on_next_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, b"");
        let mut p = probe(&path);
        p.collect(&mut Output::default(), later()).unwrap();
        let text = format!("{LINE}\n").repeat(1000);
        append(&path, text.as_bytes());
        let mut out = Output::default();
        // A deadline already past: nothing is read this tick, and that is said.
        p.collect(&mut out, Instant::now()).unwrap();
        assert_eq!(
            out.errors[0].1,
            "reading stopped at the probe's timeout; the rest is read next tick"
        );
        let mut out = Output::default();
        p.collect(&mut out, later()).unwrap();
        assert!(out.errors.is_empty());
        assert_eq!(p.open.as_ref().unwrap().offset, text.len() as u64);
    }

    /// The log's writer and the probe's clock in one. The k-th time the probe asks the time
    /// (right after a read found the end of the log), the read happened `reads[k].0` ms after
    /// `base`, and the writer then appends `reads[k].1` lines: the lines written after that
    /// read and before the next. A probe that took the time before reading would count them
    /// in the wrong interval.
    struct WriterClock {
        path: std::path::PathBuf,
        base: Instant,
        reads: std::collections::VecDeque<(u64, usize)>,
    }

    impl Clock for WriterClock {
        fn now(&mut self) -> Instant {
            let (ms, lines) = self
                .reads
                .pop_front()
                .expect("the test scripted fewer reads");
            append(&self.path, format!("{LINE}\n").repeat(lines).as_bytes());
            self.base + Duration::from_millis(ms)
        }
    }

    /// A probe of an empty log at `path` whose clock and writer follow `reads` (see
    /// [`WriterClock`]).
    fn probe_with_writer(path: &std::path::Path, reads: &[(u64, usize)]) -> AccessLogProbe {
        append(path, b"");
        let clock = WriterClock {
            path: path.to_path_buf(),
            base: Instant::now(),
            reads: reads.iter().copied().collect(),
        };
        probe(path).with_clock(clock)
    }

    fn value(out: &Output, field: &str) -> Option<f64> {
        out.metrics
            .iter()
            .find(|(n, _)| n.as_ref() == format!("access_log.web.{field}"))
            .map(|(_, v)| *v)
    }

    #[test]
    fn rates_are_over_the_reads_of_the_file_not_the_ticks() {
        // A steady 50 lines/s; ticks nominally 1 s apart, but the reads happen at 0, 0.7 s
        // and 2.0 s (a loaded host): 35 lines, then 65, each over its own reads' interval.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut p = probe_with_writer(&path, &[(0, 35), (700, 65), (2_000, 0)]);
        let mut outputs = Vec::new();
        for _ in 0..3 {
            let mut out = Output::default();
            p.collect(&mut out, later()).unwrap();
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            outputs.push(out);
        }
        // The first read only finds where the log ends: no rate, as ever.
        assert_eq!(value(&outputs[0], "requests_per_sec"), None);
        let secs = |ms| Duration::from_millis(ms).as_secs_f64();
        for (out, lines, ms) in [(&outputs[1], 35.0, 700), (&outputs[2], 65.0, 1_300)] {
            assert_eq!(value(out, "requests_per_sec"), Some(lines / secs(ms)));
            // LINE is a 503: every request is a server error.
            assert_eq!(value(out, "server_errors_per_sec"), Some(lines / secs(ms)));
            assert_eq!(value(out, "client_errors_per_sec"), Some(0.0));
            assert_eq!(value(out, "error_ratio"), Some(1.0));
            assert_eq!(value(out, "requests_per_sec"), Some(50.0));
        }
        // The counters: 0 from the first tick, then every line since.
        for (out, requests) in outputs.iter().zip([0.0, 35.0, 100.0]) {
            assert_eq!(value(out, "requests_total"), Some(requests));
            assert_eq!(value(out, "server_errors_total"), Some(requests));
            assert_eq!(value(out, "client_errors_total"), Some(0.0));
        }
    }

    #[test]
    fn a_read_cut_short_gives_no_rate_and_its_lines_count_in_the_next() {
        // Reads at 0 and 2.0 s reach the end of the log; the one between stops at its
        // timeout, at no known instant: it reports no rate (was 0/s), and the next rate holds
        // all 100 lines over the 2 s between the two full reads (was 100 lines over the last
        // interval alone).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut p = probe_with_writer(&path, &[(0, 35), (2_000, 0)]);
        p.collect(&mut Output::default(), later()).unwrap();
        let mut cut = Output::default();
        // A deadline already past: the read stops before the end.
        p.collect(&mut cut, Instant::now()).unwrap();
        assert_eq!(value(&cut, "requests_per_sec"), None, "{:?}", cut.metrics);
        assert_eq!(value(&cut, "server_errors_per_sec"), None);
        assert_eq!(value(&cut, "error_ratio"), None);
        append(&path, format!("{LINE}\n").repeat(65).as_bytes());
        let mut out = Output::default();
        p.collect(&mut out, later()).unwrap();
        assert_eq!(
            value(&out, "requests_per_sec"),
            Some(100.0 / Duration::from_millis(2_000).as_secs_f64())
        );
        assert_eq!(value(&out, "requests_per_sec"), Some(50.0));
        assert_eq!(value(&out, "error_ratio"), Some(1.0));
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
