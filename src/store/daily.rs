//! Logs kept as one JSON-lines file per UTC day under `data_dir/<kind>/` (`metrics`, `alerts`):
//! appending to today's file, and reading days back across plain files and the zip archives
//! the rotate job makes.
//!
//! A day may be split: rotation by size renames the file being written to
//! `<day>.<UTC time>.jsonl` (still matched by a `*.jsonl` glob) and archives that part; the
//! writer then starts a new `<day>.jsonl`.
//! The reader orders a day's parts by that suffix, with the live file last, and reads an entry
//! only once when a crash left both the original and its verified archive behind.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use tracing::warn;

/// Torn tails repaired since start, by log (`outbox`, `alerts`, `metrics`, `rollups`).
static TAIL_REPAIRS: std::sync::Mutex<BTreeMap<String, u64>> =
    std::sync::Mutex::new(BTreeMap::new());

/// How many torn tails each log had repaired since runner started.
pub fn tail_repairs() -> BTreeMap<String, u64> {
    TAIL_REPAIRS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Counts one repaired torn tail of `log` and says it: a torn tail means a write was cut short
/// (a kill during a multi-page write, a full disk, a power loss), which an operator may want to
/// know about even though nothing is lost by it.
pub fn record_tail_repair(log: &str, path: &Path, torn_bytes: u64, how: &str) {
    *TAIL_REPAIRS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(log.to_string())
        .or_default() += 1;
    warn!(
        log,
        file = %path.display(),
        torn_bytes,
        "the file ended in a torn line (a write cut short); {how}"
    );
}

/// Where the last complete line of `file` ends, given its length `len`: `len` itself when the
/// file is empty or ends with a newline. Bytes after it are a torn line: a write that was cut
/// short.
pub fn complete_len(file: &File, len: u64) -> io::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    // Entries are small, so the newline is almost always in the first chunk looked at.
    let mut chunk = vec![0u8; 64 * 1024];
    let mut end = len - 1;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Closes off a torn last line of `file` with a newline, so the next line starts on its own
/// instead of being glued to the torn bytes (which would make both unreadable). A fence, not a
/// cut: other processes may append to the same day file without a lock, and readers may be
/// reading it, so bytes are never taken away; readers skip the fenced line as unreadable.
/// Returns how many torn bytes were fenced off (0 when the tail was whole).
fn fence_torn_tail(file: &mut File, path: &Path, log: &str) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let whole = complete_len(file, len)?;
    if whole == len {
        return Ok(0);
    }
    file.write_all(b"\n")?;
    record_tail_repair(
        log,
        path,
        len - whole,
        "closed it off with a newline; readers skip it as unreadable",
    );
    Ok(len - whole)
}

/// Files runner is appending to right now, so rotation leaves them alone (or renames them
/// first: the writer reopens on its next line).
static WRITING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Whether runner is appending to `path` right now.
pub fn is_being_written(path: &Path) -> bool {
    WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|p| p == path)
}

fn set_writing(old: Option<&Path>, new: Option<&Path>) {
    let mut writing = WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(old) = old
        && let Some(i) = writing.iter().position(|p| p == old)
    {
        writing.swap_remove(i);
    }
    if let Some(new) = new {
        writing.push(new.to_path_buf());
    }
}

/// Appends lines to `<dir>/<UTC day>.jsonl`, switching files at midnight UTC and reopening when
/// rotation moved the file away.
#[derive(Debug)]
pub struct DailyWriter {
    dir: PathBuf,
    /// Which log this is (`metrics`, `alerts`, `rollups`): for repair counts and fault points.
    log: String,
    open: Option<OpenFile>,
    /// A write failed: the file may end in part of a line, so look before the next append.
    suspect: bool,
}

#[derive(Debug)]
struct OpenFile {
    day: NaiveDate,
    path: PathBuf,
    file: File,
    inode: u64,
}

impl DailyWriter {
    /// A writer for the log named after its folder (`metrics`, `alerts`).
    pub fn new(dir: PathBuf) -> Self {
        let log = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        Self::named(dir, &log)
    }

    /// A writer whose log name is not its folder's (rollups live in a folder per job).
    pub fn named(dir: PathBuf, log: &str) -> Self {
        DailyWriter {
            dir,
            log: log.to_string(),
            open: None,
            suspect: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!("{day}.jsonl"))
    }

    /// Appends `line` and a newline to the file of `at`'s UTC day, in one write.
    pub fn append(&mut self, at: DateTime<Utc>, line: &str) -> io::Result<()> {
        let day = at.date_naive();
        let reopen = match &self.open {
            Some(open) if open.day == day => match std::fs::metadata(&open.path) {
                Ok(meta) => meta.ino() != open.inode,
                Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                Err(e) => return Err(e),
            },
            _ => true,
        };
        if reopen {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.path_for(day);
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)?;
            // A process killed in the middle of a write left part of a line at the end.
            fence_torn_tail(&mut file, &path, &self.log)?;
            self.suspect = false;
            let inode = file.metadata()?.ino();
            set_writing(self.open.as_ref().map(|o| o.path.as_path()), Some(&path));
            self.open = Some(OpenFile {
                day,
                path,
                file,
                inode,
            });
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let Some(open) = &mut self.open else {
            return Err(io::Error::other("no file open"));
        };
        if self.suspect {
            fence_torn_tail(&mut open.file, &open.path, &self.log)?;
            self.suspect = false;
        }
        // Fault points exist in test builds only; a release append builds no name for one.
        if cfg!(debug_assertions) {
            crate::failpoint::torn_write(&format!("torn-{}", self.log), &bytes, |half| {
                open.file.write_all(half)
            });
        }
        let written = open.file.write_all(&bytes);
        // A write that failed part way (a full disk) may have left part of the line.
        self.suspect = written.is_err();
        written
    }
}

impl Drop for DailyWriter {
    fn drop(&mut self) {
        set_writing(self.open.as_ref().map(|o| o.path.as_path()), None);
    }
}

/// Where the days of one kind of log are: the live folder and every archive folder.
#[derive(Debug, Clone)]
pub struct DailyFiles {
    pub data_dir: PathBuf,
    /// `metrics` or `alerts`: the folder under `data_dir` and the entry prefix in archives.
    pub kind: String,
    pub archive_dirs: Vec<PathBuf>,
}

/// One part of a day's log: a plain file or an entry of a zip archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    ZipEntry { archive: PathBuf, name: String },
}

#[derive(Debug, Clone)]
struct Part {
    day: NaiveDate,
    /// The name relative to `data_dir`: `metrics/2026-11-20[.suffix].jsonl`.
    name: String,
    /// What orders the parts of one day; empty for the live file.
    suffix: String,
    size: u64,
    source: Source,
}

/// What a read went through.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadStats {
    pub files: usize,
    pub archive_entries: usize,
    pub lines: u64,
    pub bytes: u64,
    /// Sources that could not be opened or read (reported, not fatal).
    pub unreadable: Vec<String>,
}

impl DailyFiles {
    /// Parses `<day>.jsonl` or `<day>.<suffix>.jsonl`; the suffix orders parts of one day.
    fn day_of(file_name: &str) -> Option<(NaiveDate, &str)> {
        let day = NaiveDate::parse_from_str(file_name.get(..10)?, "%Y-%m-%d").ok()?;
        let rest = file_name[10..].strip_suffix(".jsonl")?;
        if rest.is_empty() {
            Some((day, ""))
        } else {
            rest.strip_prefix('.')
                .filter(|s| !s.is_empty() && !s.contains('.'))
                .map(|s| (day, s))
        }
    }

    /// Every part of the days `first..=last`, in reading order.
    fn parts(&self, first: NaiveDate, last: NaiveDate, stats: &mut ReadStats) -> Vec<Part> {
        let mut parts = Vec::new();
        let live = self.data_dir.join(&self.kind);
        if let Ok(entries) = std::fs::read_dir(&live) {
            for entry in entries.flatten() {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                let Some((day, suffix)) = Self::day_of(&file_name) else {
                    continue;
                };
                let suffix = suffix.to_string();
                if day < first || day > last {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                parts.push(Part {
                    day,
                    suffix,
                    name: format!("{}/{file_name}", self.kind),
                    size: meta.len(),
                    source: Source::File(entry.path()),
                });
            }
        }
        let prefix = format!("{}/", self.kind);
        for dir in &self.archive_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut zips: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "zip"))
                .collect();
            zips.sort();
            for zip_path in zips {
                let archive = match File::open(&zip_path)
                    .map(BufReader::new)
                    .map(zip::ZipArchive::new)
                {
                    Ok(Ok(archive)) => archive,
                    Ok(Err(e)) => {
                        stats
                            .unreadable
                            .push(format!("{}: {e}", zip_path.display()));
                        continue;
                    }
                    Err(e) => {
                        stats
                            .unreadable
                            .push(format!("{}: {e}", zip_path.display()));
                        continue;
                    }
                };
                for i in 0..archive.len() {
                    let Ok(entry) = archive.by_index_data(i) else {
                        continue;
                    };
                    let Ok(name) = entry.name() else { continue };
                    let Some(file_name) = name.strip_prefix(&prefix) else {
                        continue;
                    };
                    let Some((day, suffix)) = Self::day_of(file_name) else {
                        continue;
                    };
                    let suffix = suffix.to_string();
                    if day < first || day > last {
                        continue;
                    }
                    let size = entry.size();
                    parts.push(Part {
                        day,
                        suffix,
                        name: name.to_string(),
                        size,
                        source: Source::ZipEntry {
                            archive: zip_path.clone(),
                            name: name.to_string(),
                        },
                    });
                }
            }
        }
        // A crash between verifying an archive and deleting the original leaves both: the
        // same name and size is the same data, read once.
        parts.sort_by(|a, b| {
            // The live `<day>.jsonl` (empty suffix) holds the newest lines of its day.
            fn order(p: &Part) -> (NaiveDate, bool, &str) {
                (p.day, p.suffix.is_empty(), &p.suffix)
            }
            order(a).cmp(&order(b)).then_with(|| {
                matches!(a.source, Source::File(_)).cmp(&matches!(b.source, Source::File(_)))
            })
        });
        parts.dedup_by(|later, earlier| later.name == earlier.name && later.size == earlier.size);
        parts
    }

    /// Streams every line of the days `first..=last` in order; `visit` may stop early.
    /// Archive entries are decompressed as they are read: memory stays at the read buffer.
    pub fn for_each_line(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        mut visit: impl FnMut(&str) -> ControlFlow<()>,
    ) -> ReadStats {
        let mut stats = ReadStats::default();
        let parts = self.parts(first, last, &mut stats);
        let mut line = Vec::with_capacity(4096);
        for part in parts {
            let flow = match &part.source {
                Source::File(path) => match File::open(path) {
                    Ok(file) => {
                        stats.files += 1;
                        read_lines(file, &part.source, &mut line, &mut stats, &mut visit)
                    }
                    Err(e) => {
                        stats
                            .unreadable
                            .push(format!("{}: {e}", describe(&part.source)));
                        ControlFlow::Continue(())
                    }
                },
                Source::ZipEntry { archive, name } => {
                    let opened = File::open(archive)
                        .map_err(|e| e.to_string())
                        .and_then(|f| {
                            zip::ZipArchive::new(BufReader::new(f)).map_err(|e| e.to_string())
                        });
                    match opened {
                        Ok(mut zip) => match zip.by_name(name) {
                            Ok(entry) => {
                                stats.archive_entries += 1;
                                read_lines(entry, &part.source, &mut line, &mut stats, &mut visit)
                            }
                            Err(e) => {
                                stats
                                    .unreadable
                                    .push(format!("{}: {e}", describe(&part.source)));
                                ControlFlow::Continue(())
                            }
                        },
                        Err(e) => {
                            stats
                                .unreadable
                                .push(format!("{}: {e}", describe(&part.source)));
                            ControlFlow::Continue(())
                        }
                    }
                }
            };
            if flow.is_break() {
                break;
            }
        }
        stats
    }
}

fn read_lines(
    reader: impl Read,
    source: &Source,
    line: &mut Vec<u8>,
    stats: &mut ReadStats,
    visit: &mut impl FnMut(&str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    loop {
        line.clear();
        match reader.read_until(b'\n', line) {
            Ok(0) => return ControlFlow::Continue(()),
            Ok(n) => {
                stats.bytes += n as u64;
                stats.lines += 1;
                // A torn line can end inside a multi-byte character: it is one bad line (the
                // visitor cannot parse it), not the end of the file.
                let text = String::from_utf8_lossy(line);
                visit(text.trim_end_matches(['\n', '\r']))?;
            }
            Err(e) => {
                stats.unreadable.push(format!("{}: {e}", describe(source)));
                return ControlFlow::Continue(());
            }
        }
    }
}

fn describe(source: &Source) -> String {
    match source {
        Source::File(path) => path.display().to_string(),
        Source::ZipEntry { archive, name } => format!("{}!{name}", archive.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_and_parts() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        assert_eq!(DailyFiles::day_of("2026-11-20.jsonl"), Some((d, "")));
        assert_eq!(
            DailyFiles::day_of("2026-11-20.20261120T150000.jsonl"),
            Some((d, "20261120T150000"))
        );
        assert_eq!(DailyFiles::day_of("2026-11-20.jsonl.tmp"), None);
        assert_eq!(DailyFiles::day_of("2026-11-20.a.b.jsonl"), None);
        assert_eq!(DailyFiles::day_of("notes.txt"), None);
    }

    #[test]
    fn writer_reopens_after_the_file_is_moved() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DailyWriter::new(dir.path().join("metrics"));
        let t = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        w.append(t, "one").unwrap();
        let path = w.path_for(t.date_naive());
        std::fs::rename(
            &path,
            dir.path().join("metrics/2026-11-20.20261120T100001.jsonl"),
        )
        .unwrap();
        w.append(t, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }

    /// A process killed in the middle of a write left half a line (cut inside a multi-byte
    /// character): the next writer closes it off, so its own line stays readable, and every
    /// line after the torn one is read.
    #[test]
    fn a_torn_last_line_is_fenced_off_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("alerts");
        std::fs::create_dir_all(&logs).unwrap();
        let t = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let path = logs.join("2026-11-20.jsonl");
        let torn = "{\"id\":\"torn\",\"summary\":\"caf\u{e9}\"}";
        let cut = torn.find('\u{e9}').unwrap() + 1;
        let mut bytes = b"{\"id\":\"whole\"}\n".to_vec();
        bytes.extend_from_slice(&torn.as_bytes()[..cut]);
        std::fs::write(&path, &bytes).unwrap();
        let before = tail_repairs().get("alerts").copied().unwrap_or(0);

        let mut w = DailyWriter::new(logs.clone());
        w.append(t, "{\"id\":\"next\"}").unwrap();
        w.append(t, "{\"id\":\"after\"}").unwrap();
        let text = std::fs::read(&path).unwrap();
        assert!(text.ends_with(b"\n{\"id\":\"next\"}\n{\"id\":\"after\"}\n"));
        assert!(tail_repairs().get("alerts").copied().unwrap_or(0) > before);

        let files = DailyFiles {
            data_dir: dir.path().to_path_buf(),
            kind: "alerts".to_string(),
            archive_dirs: Vec::new(),
        };
        let mut good = Vec::new();
        let mut bad = 0;
        files.for_each_line(t.date_naive(), t.date_naive(), |line| {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => good.push(v["id"].as_str().unwrap_or_default().to_string()),
                Err(_) => bad += 1,
            }
            ControlFlow::Continue(())
        });
        assert_eq!(good, ["whole", "next", "after"]);
        assert_eq!(bad, 1, "the torn line is one unreadable line");
    }

    #[test]
    fn complete_len_finds_the_end_of_the_last_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        for (content, whole) in [("", 0), ("a\n", 2), ("a\nbc", 2), ("abc", 0), ("a\nb\n", 4)] {
            std::fs::write(&path, content).unwrap();
            let f = File::open(&path).unwrap();
            assert_eq!(
                complete_len(&f, content.len() as u64).unwrap(),
                whole,
                "{content:?}"
            );
        }
        let long = format!("a\n{}", "x".repeat(200_000));
        std::fs::write(&path, &long).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(complete_len(&f, long.len() as u64).unwrap(), 2);
    }
}
