//! Zip archives of rotated files: writing them streaming, reading every entry back to check it
//! against what was written, and finding which originals an existing archive already holds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use chrono::{Datelike, Local, TimeZone, Timelike};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ExtraField, ZipArchive, ZipWriter};

use super::Candidate;

/// Files at least this big get ZIP64 headers (readers need them past 4 GiB).
const ZIP64_FROM: u64 = 0xFFFF_FFFF - 64 * 1024;

/// One original inside one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub archive: PathBuf,
    /// The original file (for members just written); empty for members found by a scan.
    pub path: PathBuf,
    pub entry: String,
    pub size: u64,
    pub crc: u32,
    /// Seconds since the epoch, from the entry's extended timestamp.
    pub mtime: Option<i64>,
}

/// What writing an archive produced.
#[derive(Debug, Default)]
pub struct Written {
    pub members: Vec<Member>,
    /// Originals left out, with the reason (they stay where they are).
    pub unreadable: Vec<String>,
}

/// Why an archive could not be written; `out_of_space` when the filesystem is full, so the
/// caller can try fewer files at once.
#[derive(Debug)]
pub struct WriteFailure {
    pub message: String,
    pub out_of_space: bool,
    /// Bytes of originals that went into the archive before it failed: with the free space
    /// the disk had, how much room the rest would need.
    pub input_bytes: u64,
}

impl WriteFailure {
    fn new(message: String) -> WriteFailure {
        WriteFailure {
            message,
            out_of_space: false,
            input_bytes: 0,
        }
    }
}

fn is_out_of_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

/// The archive file, which stops writing after its first failure and keeps that failure: the
/// zip writer, dropped after an error, would try to finish the archive into the same full
/// disk and print its own line to stderr.
struct Sink<W> {
    inner: W,
    failed: Rc<RefCell<Option<io::Error>>>,
    /// Where writes would be once failed (the zip writer still seeks while it gives up).
    position: u64,
}

impl<W> Sink<W> {
    fn fail(&mut self, e: io::Error) -> io::Error {
        let copy = io::Error::new(e.kind(), e.to_string());
        self.failed.borrow_mut().get_or_insert(e);
        copy
    }

    fn has_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.has_failed() {
            self.position += buf.len() as u64;
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.position += n as u64;
                Ok(n)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.has_failed() {
            return Ok(());
        }
        self.inner.flush().map_err(|e| self.fail(e))
    }
}

impl<W: Seek> Seek for Sink<W> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        if self.has_failed() {
            self.position = match to {
                SeekFrom::Start(n) => n,
                SeekFrom::Current(d) => self.position.saturating_add_signed(d),
                SeekFrom::End(_) => self.position,
            };
            return Ok(self.position);
        }
        match self.inner.seek(to) {
            Ok(n) => {
                self.position = n;
                Ok(n)
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// Counts and checksums bytes as they stream through.
struct Tally<R> {
    inner: R,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R> Tally<R> {
    fn new(inner: R) -> Self {
        Tally {
            inner,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }
}

/// Opens an original without following a symlink swapped in since it was selected, and
/// without waiting: a FIFO swapped in would block `open` for a writer forever. Only a regular
/// file is read.
fn open_original(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(
            "not a regular file any more (swapped since it was selected)",
        ));
    }
    Ok(file)
}

/// The DOS time of an entry, in local time as unzip tools expect (the exact UTC time is in
/// the extended timestamp next to it).
fn dos_time(mtime: i64) -> zip::DateTime {
    let Some(local) = Local.timestamp_opt(mtime, 0).earliest() else {
        return zip::DateTime::default();
    };
    zip::DateTime::from_date_and_time(
        u16::try_from(local.year()).unwrap_or(1980),
        local.month() as u8,
        local.day() as u8,
        local.hour() as u8,
        local.minute() as u8,
        local.second() as u8,
    )
    .unwrap_or_default()
}

/// Writes the candidates into a new archive at `tmp`, streaming each file (memory does not
/// grow with file size), then finishes and fsyncs it. An original that cannot be read, or that
/// changed while it was copied, is left out and reported.
pub fn write(tmp: &Path, candidates: &[Candidate], level: u32) -> Result<Written, WriteFailure> {
    let failed = Rc::new(RefCell::new(None));
    let input = std::cell::Cell::new(0);
    let written = write_into(tmp, candidates, level, &failed, &input);
    // A failed write of the archive, whatever the zip writer made of it, says what happened.
    match (written, failed.borrow_mut().take()) {
        (_, Some(e)) => Err(WriteFailure {
            message: format!("cannot write {}: {e}", tmp.display()),
            out_of_space: is_out_of_space(&e),
            input_bytes: input.get(),
        }),
        (Err(mut failure), None) => {
            failure.input_bytes = input.get();
            Err(failure)
        }
        (written, None) => written,
    }
}

fn write_into(
    tmp: &Path,
    candidates: &[Candidate],
    level: u32,
    failed: &Rc<RefCell<Option<io::Error>>>,
    input: &std::cell::Cell<u64>,
) -> Result<Written, WriteFailure> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| WriteFailure {
            out_of_space: is_out_of_space(&e),
            ..WriteFailure::new(format!("cannot create {}: {e}", tmp.display()))
        })?;
    let sink = Sink {
        inner: file,
        failed: failed.clone(),
        position: 0,
    };
    let mut zip = ZipWriter::new(BufWriter::with_capacity(256 * 1024, sink));
    let mut written = Written::default();
    let archive = tmp.with_extension("");
    let mut entries = std::collections::HashSet::new();
    for candidate in candidates {
        let original = match open_original(&candidate.path) {
            Ok(file) => file,
            Err(e) => {
                written
                    .unreadable
                    .push(format!("{}: {e}; left in place", candidate.path.display()));
                continue;
            }
        };
        let before = original
            .metadata()
            .map_err(|e| WriteFailure::new(format!("{}: {e}", candidate.path.display())))?;
        let mtime = before.mtime();
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(i64::from(level)))
            .last_modified_time(dos_time(mtime))
            // The whole mode: `unix_permissions` would keep only 0o777 and drop setuid, setgid
            // and sticky.
            .external_attributes((libc::S_IFREG | (candidate.mode & 0o7777)) << 16)
            .large_file(before.len() >= ZIP64_FROM)
            // The extended timestamp is a signed 32-bit time_t as Info-ZIP reads it, so a
            // time before 1970 keeps its value (and crash recovery can match the file).
            .with_extended_timestamp(i32::try_from(mtime).ok().map(|t| t as u32), None, None)
            .map_err(|e| WriteFailure::new(format!("{}: {e}", candidate.path.display())))?;
        // Two files with one entry name would fail the whole archive: the second waits.
        if !entries.insert(candidate.entry.as_str()) {
            written.unreadable.push(format!(
                "{}: another file in this archive has its entry name {}; left in place",
                candidate.path.display(),
                candidate.entry
            ));
            continue;
        }
        zip.start_file(candidate.entry.as_str(), options)
            .map_err(|e| WriteFailure::new(format!("cannot write {}: {e}", tmp.display())))?;
        let mut tally = Tally::new(BufReader::with_capacity(256 * 1024, original));
        let copied = io::copy(&mut tally, &mut zip);
        input.set(input.get() + tally.bytes);
        let after = tally.inner.get_ref().metadata();
        let changed = match &after {
            Ok(after) => {
                after.len() != tally.bytes
                    || after.mtime() != mtime
                    || after.mtime_nsec() != before.mtime_nsec()
            }
            Err(_) => true,
        };
        if failed.borrow().is_some() {
            // The archive's own disk failed, not the original: `write` says so.
            return Err(WriteFailure::new(String::new()));
        }
        if let Err(e) = &copied {
            // A read error leaves the entry half written: take it out again.
            zip.abort_file()
                .map_err(|e| WriteFailure::new(format!("cannot write {}: {e}", tmp.display())))?;
            written
                .unreadable
                .push(format!("{}: {e}; left in place", candidate.path.display()));
            continue;
        }
        if changed {
            zip.abort_file()
                .map_err(|e| WriteFailure::new(format!("cannot write {}: {e}", tmp.display())))?;
            written.unreadable.push(format!(
                "{} changed while it was archived (is a program still writing it?); left in place",
                candidate.path.display()
            ));
            continue;
        }
        written.members.push(Member {
            archive: archive.clone(),
            path: candidate.path.clone(),
            entry: candidate.entry.clone(),
            size: tally.bytes,
            crc: tally.crc.finalize(),
            mtime: Some(mtime),
        });
    }
    let buffered = zip
        .finish()
        .map_err(|e| WriteFailure::new(format!("cannot finish {}: {e}", tmp.display())))?;
    let sink = buffered
        .into_inner()
        .map_err(|e| WriteFailure::new(format!("cannot write {}: {}", tmp.display(), e.error())))?;
    if let Err(e) = sink.inner.sync_all() {
        return Err(WriteFailure {
            out_of_space: is_out_of_space(&e),
            ..WriteFailure::new(format!("cannot sync {}: {e}", tmp.display()))
        });
    }
    Ok(written)
}

/// Reads every entry of the archive at `path` to its end (the zip reader checks each CRC
/// there) and compares names, sizes and CRCs with `members`: a failure here means the
/// archive's bytes are wrong. An original written to since it was copied is not the archive's
/// fault; it is found at deletion ([`deletable`]) and kept.
pub fn verify(path: &Path, members: &[Member]) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut zip = ZipArchive::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    if zip.len() != members.len() {
        return Err(format!("{} entries, {} expected", zip.len(), members.len()));
    }
    let mut sink = vec![0u8; 256 * 1024];
    for member in members {
        let entry = zip
            .by_name(&member.entry)
            .map_err(|e| format!("{}: {e}", member.entry))?;
        let mut tally = Tally::new(entry);
        loop {
            match tally.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("{}: {e}", member.entry)),
            }
        }
        if tally.bytes != member.size {
            return Err(format!(
                "{}: {} bytes, {} expected",
                member.entry, tally.bytes, member.size
            ));
        }
        if tally.crc.finalize() != member.crc {
            return Err(format!(
                "{}: content differs from the original",
                member.entry
            ));
        }
    }
    Ok(())
}

/// Checks that `found` holds exactly the bytes of the candidate's file: reads both to the end.
pub fn verify_member(found: &Member, candidate: &Candidate) -> Result<(), String> {
    let mut original = Tally::new(BufReader::new(
        open_original(&candidate.path).map_err(|e| e.to_string())?,
    ));
    io::copy(&mut original, &mut io::sink()).map_err(|e| e.to_string())?;
    if original.bytes != found.size || original.crc.finalize() != found.crc {
        return Err("the archived copy differs from the file".into());
    }
    let file = File::open(&found.archive).map_err(|e| e.to_string())?;
    let mut zip = ZipArchive::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    let entry = zip.by_name(&found.entry).map_err(|e| e.to_string())?;
    let mut archived = Tally::new(entry);
    io::copy(&mut archived, &mut io::sink()).map_err(|e| e.to_string())?;
    if archived.bytes != found.size || archived.crc.finalize() != found.crc {
        return Err("the archive entry does not read back".into());
    }
    Ok(())
}

/// The entries of a job's archives, to recognise originals that were archived by a run that
/// stopped before deleting them.
#[derive(Debug, Default)]
pub struct ArchiveIndex {
    by_entry: HashMap<String, Vec<Member>>,
}

impl ArchiveIndex {
    /// Reads the central directory of every `<prefix>*.zip` in `dir` (not the data).
    pub fn scan(dir: &Path, job: &str, problems: &mut Vec<String>) -> ArchiveIndex {
        let mut index = ArchiveIndex::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return index;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if archive_stamp(&name, job, ".zip").is_none() {
                continue;
            }
            let path = entry.path();
            let mut zip = match File::open(&path).map(BufReader::new).map(ZipArchive::new) {
                Ok(Ok(zip)) => zip,
                Ok(Err(e)) => {
                    problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
                Err(e) => {
                    problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            for i in 0..zip.len() {
                let Ok(file) = zip.by_index_raw(i) else {
                    continue;
                };
                let Ok(entry_name) = file.name().map(|n| n.into_owned()) else {
                    continue;
                };
                let mtime = file.extra_data_fields().find_map(|field| match field {
                    ExtraField::ExtendedTimestamp(ts) => ts.mod_time().map(|t| i64::from(t as i32)),
                    _ => None,
                });
                index
                    .by_entry
                    .entry(entry_name.clone())
                    .or_default()
                    .push(Member {
                        archive: path.clone(),
                        path: PathBuf::new(),
                        entry: entry_name,
                        size: file.size(),
                        crc: file.crc32(),
                        mtime,
                    });
            }
        }
        index
    }

    /// The archived copy of a file with this entry name, size and modification time.
    pub fn find(&self, entry: &str, size: u64, mtime: i64) -> Option<&Member> {
        self.by_entry
            .get(entry)?
            .iter()
            .find(|m| m.size == size && m.mtime == Some(mtime))
    }
}

/// Renames `from` to `to` only if nothing is at `to`: a file a program created there meanwhile
/// is never replaced.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths for the length of the call; the result is
    // checked.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes a rename or delete in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// When a file of `job` named `<job>-<YYYYMMDDTHHMMSS>-<n><suffix>` was written; `None` for
/// any other name. Only a name runner itself writes, byte for byte, is accepted (the time and
/// counter are parsed, rendered again and compared), so job `rot` never takes job `rot-x`'s
/// files, a user's `rot-mine.zip.tmp`, or a look-alike with a space or a leading zero (which
/// the parsers alone let through) for its own, and never deletes them.
pub fn archive_stamp(name: &str, job: &str, suffix: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let stamp = name
        .strip_prefix(job)?
        .strip_prefix('-')?
        .strip_suffix(suffix)?;
    let (time, n) = stamp.split_once('-')?;
    let parsed = chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S").ok()?;
    let counter: u64 = n.parse().ok()?;
    if counter == 0
        || parsed.format("%Y%m%dT%H%M%S").to_string() != time
        || counter.to_string() != n
    {
        return None;
    }
    Some(parsed.and_utc())
}

/// For each of `files` (device and inode), the processes that have it open for writing, from
/// one pass over `/proc/*/fd` and the `flags` of `/proc/*/fdinfo`: all processes as root, this
/// user's otherwise (the others' folders cannot be read, and are passed over). runner itself is
/// not counted: its own writers check the file's identity before every append and never write
/// to a renamed file.
pub fn writers_of(files: &[(u64, u64)]) -> HashMap<(u64, u64), Vec<u32>> {
    let me = std::process::id();
    // Looked up for every fd of every process: a group holds thousands of files.
    let files: std::collections::HashSet<(u64, u64)> = files.iter().copied().collect();
    let mut found: HashMap<(u64, u64), Vec<u32>> = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for process in procs.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|pid| *pid != me)
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // `metadata` follows the fd's link to the open file itself.
            let Ok(open) = std::fs::metadata(fd.path()) else {
                continue;
            };
            let id = (open.dev(), open.ino());
            if !files.contains(&id) {
                continue;
            }
            let info = process.path().join("fdinfo").join(fd.file_name());
            let writes = std::fs::read_to_string(info).is_ok_and(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
                    .is_some_and(|flags| flags & libc::O_ACCMODE != libc::O_RDONLY)
            });
            let pids = found.entry(id).or_default();
            if writes && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    found.retain(|_, pids| !pids.is_empty());
    found
}

/// Why an archived original is not deleted now.
#[derive(Debug)]
pub enum Keep {
    /// It is no longer what the archive holds: written to since it was copied.
    Changed,
    /// These processes have it open for writing.
    Held(Vec<u32>),
    /// It cannot be looked at.
    Unreadable(String),
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Changed => write!(f, "it changed after it was archived"),
            Keep::Held(pids) => write!(
                f,
                "process {} has it open for writing",
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Keep::Unreadable(e) => write!(f, "{e}"),
        }
    }
}

/// Whether an archived original may be deleted now: it is still exactly what the archive
/// holds (size and time) and no process has it open for writing (`held`, from one
/// [`writers_of`] pass over the group just before); else why not.
pub fn deletable(member: &Member, held: &HashMap<(u64, u64), Vec<u32>>) -> Result<(), Keep> {
    let meta =
        std::fs::symlink_metadata(&member.path).map_err(|e| Keep::Unreadable(e.to_string()))?;
    if meta.len() != member.size || Some(meta.mtime()) != member.mtime {
        return Err(Keep::Changed);
    }
    match held.get(&(meta.dev(), meta.ino())) {
        // `writers_of` keeps no file without a writer.
        None => Ok(()),
        Some(pids) => Err(Keep::Held(pids.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name runner writes for this time and counter.
    fn canonical(job: &str, time: chrono::DateTime<chrono::Utc>, n: u64, suffix: &str) -> String {
        format!("{job}-{}-{n}{suffix}", time.format("%Y%m%dT%H%M%S"))
    }

    #[test]
    fn only_names_runner_writes_are_taken_for_the_jobs_own() {
        // A small xorshift, so the property runs the same everywhere without a dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "0123456789T-. +zipmtcoru\u{e9}".chars().collect();
        let suffixes = [".zip", ".zip.tmp", ".zip.corrupt"];
        let mut accepted = 0;
        for _ in 0..200_000 {
            let suffix = suffixes[(next() % 3) as usize];
            let seconds = (next() % 4_000_000_000) as i64;
            let time = chrono::DateTime::from_timestamp(seconds, 0).unwrap_or_default();
            let mut name: Vec<char> = canonical("rot", time, 1 + next() % 30, suffix)
                .chars()
                .collect();
            // Up to three edits: insert, replace or remove a character anywhere.
            for _ in 0..next() % 4 {
                let at = (next() as usize) % (name.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => name.insert(at, c),
                    1 if at < name.len() => name[at] = c,
                    _ if at < name.len() => {
                        name.remove(at);
                    }
                    _ => {}
                }
            }
            let name: String = name.into_iter().collect();
            for suffix in suffixes {
                if let Some(time) = archive_stamp(&name, "rot", suffix) {
                    accepted += 1;
                    let n = name
                        .strip_suffix(suffix)
                        .and_then(|s| s.rsplit_once('-'))
                        .and_then(|(_, n)| n.parse::<u64>().ok())
                        .unwrap_or(0);
                    assert_eq!(name, canonical("rot", time, n, suffix), "{name:?}");
                }
            }
        }
        assert!(accepted > 1000, "the unedited names are still accepted");
        for name in [
            "rot- 2024101T000000-1.zip",
            "rot-20240101T000000-01.zip",
            "rot-20240101T000000-0.zip",
            "rot-20240101T000000-+1.zip",
        ] {
            assert_eq!(archive_stamp(name, "rot", ".zip"), None, "{name}");
        }
    }
}
