//! Logs kept as one JSON-lines file per UTC day under `data_dir/<kind>/` (`metrics`, `alerts`):
//! appending to today's file, and reading days back across plain files and the zip archives
//! the rotate job makes.
//!
//! A day may be split: rotation by size renames the file being written to
//! `<day>.<UTC time>.jsonl` (still matched by a `*.jsonl` glob) and archives that part; the
//! writer then starts a new `<day>.jsonl`.
//! The reader orders a day's parts by that suffix, with the live file last, and reads an entry
//! only once when a crash left both the original and its verified archive behind.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

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
    open: Option<OpenFile>,
}

#[derive(Debug)]
struct OpenFile {
    day: NaiveDate,
    path: PathBuf,
    file: File,
    inode: u64,
}

impl DailyWriter {
    pub fn new(dir: PathBuf) -> Self {
        DailyWriter { dir, open: None }
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
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
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
        match &mut self.open {
            Some(open) => open.file.write_all(&bytes),
            None => Err(io::Error::other("no file open")),
        }
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
        let mut line = String::with_capacity(4096);
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
    line: &mut String,
    stats: &mut ReadStats,
    visit: &mut impl FnMut(&str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    loop {
        line.clear();
        match reader.read_line(line) {
            Ok(0) => return ControlFlow::Continue(()),
            Ok(n) => {
                stats.bytes += n as u64;
                stats.lines += 1;
                visit(line.trim_end_matches(['\n', '\r']))?;
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
}
