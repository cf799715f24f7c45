//! The rotate job: old (or large) logs into verified zip archives, then the originals deleted;
//! archives past their age (or count) deleted. A crash at any moment leaves every byte either in
//! its original file or in a verified archive.
//!
//! One run: recover from an earlier crash (remove `*.zip.tmp`; for an original that an
//! archive already holds, verify that entry and delete the original), select files, and for
//! each group write `<name>.zip.tmp`, `finish()`, fsync, rename to `<name>.zip`, fsync the
//! folder, read every entry back to its end (the CRC is checked there) comparing size and CRC
//! with what was read from the original, check the original did not change meanwhile, and only
//! then delete the originals. Archive names never collide: `<job>-<UTC yyyymmddThhmmss>-<n>.zip`.
//!
//! Learned from logrotate: a second run on the same day makes a new archive (its `dateext`
//! made it silently stop rotating); nothing is copied and truncated (which loses the lines
//! written in between); symlinks are never followed.

pub mod archive;
mod postrotate;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RotateSpec;
use crate::config::raw::GroupBy;
use crate::vocab::size::format_size;
use crate::vocab::words::plural;
use archive::ArchiveIndex;

/// Points where a run can be stopped, to prove that a crash there loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Files are selected; nothing is written yet.
    Selected,
    /// The temporary archive is complete on disk, not yet renamed.
    TmpWritten,
    /// The archive has its final name, not yet verified.
    Renamed,
    /// The archive is verified; no original deleted yet.
    Verified,
    /// Some originals of the archive are deleted, not all.
    MidDelete,
    /// Waiting for renamed files to go quiet (`settle`); asked again while it waits, so a
    /// cancelled run stops waiting.
    Settling,
}

/// Whether the run goes on after a step; tests return `Stop` to simulate a crash there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Why a group of files was not archived.
#[derive(Debug)]
enum GroupFailure {
    /// The archive filesystem is full; `input_bytes` of originals had gone in.
    OutOfSpace {
        message: String,
        input_bytes: u64,
    },
    Other(String),
}

/// What a full archive disk taught a run: how many bytes of archive a byte of original
/// takes, and the files left because they were not expected to fit.
struct OutOfSpace {
    message: String,
    ratio: f64,
    /// Path, size and the free space it was weighed against.
    left: Vec<(PathBuf, u64, u64)>,
}

impl OutOfSpace {
    /// Room for `bytes` of originals in `files` entries, with a tenth to spare and the zip
    /// headers and central directory each entry brings.
    fn need_bytes(&self, bytes: u64, files: usize) -> u64 {
        (bytes as f64 * self.ratio * 1.1) as u64 + 512 * files as u64
    }

    fn need(&self, group: &[Candidate]) -> u64 {
        self.need_bytes(group.iter().map(|c| c.size).sum(), group.len())
    }
}

impl From<String> for GroupFailure {
    fn from(message: String) -> Self {
        GroupFailure::Other(message)
    }
}

/// What became of an archived original at deletion.
#[derive(Debug)]
enum Deleted {
    Yes,
    /// Kept in place for a later run, and why.
    Kept(String),
    /// Kept in place: written to since it was copied, so the archive's copy is stale.
    Changed(String),
    Failed(String),
}

/// A file chosen for archiving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    /// Its name inside the archive.
    pub entry: String,
    pub size: u64,
    pub mtime: i64,
    pub mode: u32,
    /// Why: too old, or too big.
    pub reason: String,
    /// The folder its name is relative to (groups never mix folders, so names never clash).
    pub base: PathBuf,
    /// Selected for its size alone: it may still be written, so it is renamed first.
    pub too_big_only: bool,
}

/// What a run did (or, for a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub archived_files: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub archives_written: Vec<PathBuf>,
    pub archives_deleted: Vec<PathBuf>,
    /// Originals deleted because an earlier run had already archived them (it was interrupted,
    /// or kept them for a writer that has gone since).
    pub recovered: usize,
    /// Files copied into a new archive but kept in place (written to since, or held open).
    pub kept_in_archive: usize,
    /// The archive being written when the run stopped: its files' count, bytes, and the
    /// largest of them (a job timeout shorter than compressing them never lets a run finish).
    pub stopped_in: Option<(usize, u64, PathBuf)>,
    /// Files that could not be rotated, with the reason; the rest went ahead.
    pub problems: Vec<String>,
    /// Symlinks and the files runner is writing, left alone.
    pub skipped: Vec<String>,
}

impl Summary {
    pub fn line(&self) -> String {
        let mut line = if self.archived_files == 0 && self.kept_in_archive > 0 {
            // "0 B into 146 B" read as a loss; say the files are copied and still in place.
            format!(
                "0 files archived; {} copied into {} ({}) and kept in place",
                plural(self.kept_in_archive, "file"),
                plural(self.archives_written.len(), "new archive"),
                format_size(self.bytes_after),
            )
        } else {
            format!(
                "{} archived ({} into {} in {})",
                plural(self.archived_files, "file"),
                format_size(self.bytes_before),
                format_size(self.bytes_after),
                plural(self.archives_written.len(), "new archive"),
            )
        };
        line += &format!(
            ", {} deleted",
            plural(self.archives_deleted.len(), "expired archive")
        );
        if self.kept_in_archive > 0 && self.archived_files > 0 {
            line += &format!(
                ", {} copied but kept in place",
                plural(self.kept_in_archive, "file")
            );
        }
        if self.recovered > 0 {
            // Not always an interrupted run: also an original kept earlier for its writer.
            line += &format!(
                ", {} already in an archive deleted",
                plural(self.recovered, "original")
            );
        }
        if !self.skipped.is_empty() {
            line += &format!(", {} skipped", plural(self.skipped.len(), "file"));
        }
        if !self.problems.is_empty() {
            line += &format!(", {}", plural(self.problems.len(), "problem"));
        }
        line
    }
}

/// Everything a rotate job needs to know.
pub struct Rotation<'a> {
    pub job: &'a str,
    pub spec: &'a RotateSpec,
    pub data_dir: &'a Path,
}

/// A path as an archive entry name, without losing any byte: zip names are text, so bytes
/// that are not UTF-8 become `%XX`, and `%` itself always becomes `%25` (in every name, not
/// only the ones that are not UTF-8: else `bad%FF.log` and `bad\xff.log` would get one entry
/// name). Distinct paths always get distinct names; a name without `%` that is UTF-8 stays as
/// it is.
fn lossless(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if let Ok(text) = std::str::from_utf8(bytes)
        && !text.contains('%')
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The name a file gets inside an archive: relative to `data_dir` for runner's own files (so
/// the history reader finds `metrics/2026-11-20.jsonl`), relative to its pattern's folder
/// otherwise.
fn entry_name(path: &Path, data_dir: &Path, base: &Path) -> (String, PathBuf) {
    // Compared as the file system resolves them: `/srv/var` and `../var` (or a symlinked
    // folder) are the same data_dir, and its files must keep their `metrics/…` names.
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let path_resolved = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => path.to_path_buf(),
    };
    let data_resolved = canonical(data_dir);
    if let Ok(rel) = path_resolved.strip_prefix(&data_resolved) {
        return (lossless(rel), data_dir.to_path_buf());
    }
    match path.strip_prefix(data_dir) {
        Ok(rel) => (lossless(rel), data_dir.to_path_buf()),
        Err(_) => (
            lossless(path.strip_prefix(base).unwrap_or(path)),
            base.to_path_buf(),
        ),
    }
}

/// Where a young file past `max_size` at `path` (file name `name`) is renamed at `now`, and
/// the stamp in that name: the run's time, or the next free second when a rename within the
/// same second took it (a fast writer, frequent runs), so names stay unique and in order. The
/// run and its dry run both ask this.
fn rename_target(path: &Path, name: &str, now: DateTime<Utc>) -> (String, PathBuf) {
    let at = |ahead: i64| {
        let stamp = (now + chrono::Duration::seconds(ahead))
            .format("%Y%m%dT%H%M%S")
            .to_string();
        let renamed = path.with_file_name(stamped_name(name, &stamp));
        (stamp, renamed)
    };
    (0..60)
        .map(at)
        .find(|(_, renamed)| !renamed.exists())
        .unwrap_or_else(|| at(0))
}

/// `name` with `.stamp` before its last extension: `app.log` becomes `app.<stamp>.log`, and
/// `2026-11-20.jsonl` becomes `2026-11-20.<stamp>.jsonl`, a later part of that day.
fn stamped_name(name: &str, stamp: &str) -> String {
    let (dir, file) = match name.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file),
        None => (String::new(), name),
    };
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem}.{stamp}.{ext}"),
        _ => format!("{dir}{file}.{stamp}"),
    }
}

/// Whether a file name carries the stamp of an earlier rename (`.20261128T081500.`).
fn has_rotation_stamp(name: &str) -> bool {
    name.split('.').any(|part| {
        part.len() == 15
            && part.as_bytes()[8] == b'T'
            && part
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 8 || b.is_ascii_digit())
    })
}

impl Rotation<'_> {
    fn archive_prefix(&self) -> String {
        format!("{}-", self.job)
    }

    /// The files to archive now, and what is left alone and why.
    pub fn candidates(&self, now: DateTime<Utc>, summary: &mut Summary) -> Vec<Candidate> {
        let max_age = chrono::Duration::from_std(self.spec.max_age).unwrap_or_default();
        let oldest = (now - max_age).timestamp();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for pattern in &self.spec.paths {
            let base = pattern.parent().unwrap_or(Path::new(".")).to_path_buf();
            let paths = match crate::glob::expand(pattern) {
                Ok(paths) => paths,
                Err(e) => {
                    summary.problems.push(e.to_string());
                    continue;
                }
            };
            for path in paths {
                if !seen.insert(path.clone()) {
                    continue;
                }
                // Never follow a symlink: its target may be anywhere.
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        summary.problems.push(format!("{}: {e}", path.display()));
                        continue;
                    }
                };
                if meta.file_type().is_symlink() {
                    summary
                        .skipped
                        .push(format!("{} is a symlink; not followed", path.display()));
                    continue;
                }
                // A job's staging folder holds originals on their way to deletion.
                if meta.is_dir()
                    && path.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with('.') && n.ends_with(".rotating")
                    })
                {
                    continue;
                }
                if !meta.is_file() {
                    let what = if meta.is_dir() {
                        "a folder"
                    } else {
                        "not a regular file (a FIFO, socket or device)"
                    };
                    summary
                        .skipped
                        .push(format!("{} is {what}; not archived", path.display()));
                    continue;
                }
                let too_old = meta.mtime() < oldest;
                let too_big = self.spec.max_size.is_some_and(|max| meta.len() > max);
                if !too_old && !too_big {
                    continue;
                }
                if path.parent() == Some(self.spec.archive_dir.as_path()) {
                    continue;
                }
                if crate::store::daily::is_being_written(&path) && !too_big {
                    summary
                        .skipped
                        .push(format!("{} is being written by runner", path.display()));
                    continue;
                }
                let (entry, base) = entry_name(&path, self.data_dir, &base);
                out.push(Candidate {
                    path,
                    entry,
                    size: meta.len(),
                    mtime: meta.mtime(),
                    mode: meta.permissions().mode() & 0o7777,
                    reason: if too_old {
                        "older than max_age".into()
                    } else {
                        "larger than max_size".into()
                    },
                    base,
                    too_big_only: !too_old,
                });
            }
        }
        out
    }

    /// Groups candidates into archives: by day of last change (UTC) or one per file, and never
    /// mixing folders, so entry names in one archive never clash.
    fn groups(&self, candidates: Vec<Candidate>) -> Vec<Vec<Candidate>> {
        let mut by_key: BTreeMap<(String, PathBuf), Vec<Candidate>> = BTreeMap::new();
        for (i, c) in candidates.into_iter().enumerate() {
            let key = match self.spec.group_by {
                GroupBy::Day => DateTime::from_timestamp(c.mtime, 0)
                    .unwrap_or_default()
                    .format("%Y-%m-%d")
                    .to_string(),
                GroupBy::File => format!("{i:08}"),
            };
            by_key.entry((key, c.base.clone())).or_default().push(c);
        }
        by_key.into_values().collect()
    }

    /// A name no archive has: `<job>-<UTC yyyymmddThhmmss>-<n>.zip`.
    fn fresh_name(&self, now: DateTime<Utc>, taken: &BTreeSet<String>) -> PathBuf {
        let stamp = now.format("%Y%m%dT%H%M%S");
        let mut n = 1;
        loop {
            let name = format!("{}{stamp}-{n}.zip", self.archive_prefix());
            if !taken.contains(&name) && !self.spec.archive_dir.join(&name).exists() {
                return self.spec.archive_dir.join(name);
            }
            n += 1;
        }
    }

    /// Runs once at `now`; `hook` may stop the run at a step (tests simulate crashes with it).
    pub fn run(&self, now: DateTime<Utc>, hook: &mut dyn FnMut(Step) -> Flow) -> Summary {
        let mut summary = Summary::default();
        if let Err(e) = std::fs::create_dir_all(&self.spec.archive_dir) {
            summary.problems.push(format!(
                "cannot create {}: {e}",
                self.spec.archive_dir.display()
            ));
            return summary;
        }
        self.remove_leftover_tmp(&mut summary);
        self.restore_staged(now, &mut summary);
        let mut candidates = self.candidates(now, &mut summary);
        if hook(Step::Selected) == Flow::Stop {
            return summary;
        }
        let renamed = self.rename_large(&mut candidates, now, &mut summary);
        if !renamed.is_empty() {
            // Writers reopen their logs, then what they wrote to the renamed files settles.
            if let Some(postrotate) = &self.spec.postrotate {
                postrotate::run(self.job, postrotate, &mut summary);
            }
            if self.settle(&mut candidates, &renamed, hook, &mut summary) == Flow::Stop {
                return summary;
            }
        }
        self.drop_still_written(&mut candidates, &mut summary);
        let archived_before = self.split_archived(&mut candidates, &mut summary);
        let mut outcomes = Vec::new();
        self.delete_originals(
            &archived_before,
            now,
            &mut |_| Flow::Continue,
            &mut outcomes,
        );
        for (member, outcome) in archived_before.iter().zip(outcomes) {
            match outcome {
                Deleted::Yes => summary.recovered += 1,
                Deleted::Kept(why) | Deleted::Changed(why) => summary.skipped.push(format!(
                    "{} is archived but kept: {why}",
                    member.path.display()
                )),
                Deleted::Failed(why) => summary
                    .problems
                    .push(format!("cannot delete {}: {why}", member.path.display())),
            }
        }
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let mut pending: std::collections::VecDeque<Vec<Candidate>> =
            self.groups(candidates).into_iter().collect();
        // Once the archive disk has filled, a group is tried only where it is expected to fit
        // in what is left, so the disk is not filled again and again (each time, every program
        // writing there fails): a group expected not to fit is split, a file alone is left.
        let mut full: Option<OutOfSpace> = None;
        while let Some(group) = pending.pop_front() {
            if let Some(full) = &mut full {
                let free = self.archive_free();
                if full.need(&group) > free {
                    if let [alone] = group.as_slice() {
                        full.left.push((alone.path.clone(), alone.size, free));
                    } else {
                        let (first, second) = group.split_at(group.len() / 2);
                        pending.push_front(second.to_vec());
                        pending.push_front(first.to_vec());
                    }
                    continue;
                }
            }
            let target = self.fresh_name(now, &taken);
            taken.insert(
                target
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            match self.archive_group(&group, &target, now, hook, &mut summary) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => {
                    let largest = group.iter().max_by_key(|c| c.size).map(|c| c.path.clone());
                    summary.stopped_in = largest
                        .map(|largest| (group.len(), group.iter().map(|c| c.size).sum(), largest));
                    return summary;
                }
                Err(GroupFailure::OutOfSpace {
                    message,
                    input_bytes,
                }) => {
                    // The partial archive is gone again: the disk filled when `input_bytes` of
                    // originals had gone into about the space that is free now.
                    let free = self.archive_free();
                    let ratio = if input_bytes == 0 {
                        1.0
                    } else {
                        (free as f64 / input_bytes as f64).clamp(0.001, 1.01)
                    };
                    warn!(job = self.job, error = %message, files = group.len(), "archive_dir is full; what is left is tried only where it is expected to fit");
                    match &mut full {
                        Some(full) => full.ratio = full.ratio.max(ratio),
                        None => {
                            full = Some(OutOfSpace {
                                message,
                                ratio,
                                left: Vec::new(),
                            })
                        }
                    }
                    pending.push_front(group);
                }
                Err(GroupFailure::Other(e)) => summary.problems.push(e),
            }
        }
        if let Some(full) = full
            && let Some((largest, size, free)) = full.left.iter().max_by_key(|(_, size, _)| *size)
        {
            let dir = self.spec.archive_dir.display();
            summary.problems.push(format!(
                "{}: {dir} is full, and {} file(s) ({}) were not tried: {} alone would need about {} where {} is free. Nothing of them was deleted; they stay for the next run. Free space in {dir} or point archive_dir elsewhere",
                full.message,
                full.left.len(),
                format_size(full.left.iter().map(|(_, size, _)| size).sum()),
                largest.display(),
                format_size(full.need_bytes(*size, 1)),
                format_size(*free),
            ));
        }
        self.expire(now, &mut summary);
        summary
    }

    /// Bytes the archive folder's filesystem has free for this user (none when it cannot say).
    fn archive_free(&self) -> u64 {
        crate::probes::disk::statvfs(&self.spec.archive_dir)
            .map(|usage| usage.free_bytes as u64)
            .unwrap_or(0)
    }

    /// The hidden folder beside originals where each waits, out of its name, for the last
    /// check before it is deleted. Private to the job, so job `rot` never takes `rot-x`'s.
    fn staging_dir(&self, dir: &Path) -> PathBuf {
        dir.join(format!(".{}.rotating", self.job))
    }

    /// Deletes archived originals leaving no moment in which a program could open one and
    /// write into a deleted file. A check for writers followed by an unlink has such a moment
    /// (a daemon opening its log between them writes every later line into nothing), so each
    /// original is first renamed into the staging folder beside it: from then on, a program
    /// opening its name creates a new file. One pass over `/proc` then finds whoever opened
    /// it before; each staged file still unchanged and held by nobody is unlinked, and the
    /// others are put back under their name (or, if a program made a new file there
    /// meanwhile, a stamped name the pattern still matches) for a later run. A run stopped in
    /// between leaves files in the staging folder, which the next run puts back first.
    /// `outcomes` gets one entry per member, in order, up to where `hook` stopped the run.
    fn delete_originals(
        &self,
        members: &[archive::Member],
        now: DateTime<Utc>,
        hook: &mut dyn FnMut(Step) -> Flow,
        outcomes: &mut Vec<Deleted>,
    ) -> Flow {
        let mut staged: Vec<Result<PathBuf, String>> = Vec::with_capacity(members.len());
        let mut folders = BTreeSet::new();
        for member in members {
            let (Some(dir), Some(name)) = (member.path.parent(), member.path.file_name()) else {
                staged.push(Err("it has no file name".into()));
                continue;
            };
            let staging = self.staging_dir(dir);
            if folders.insert(staging.clone())
                && let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&staging)
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                folders.remove(&staging);
            }
            let to = staging.join(name);
            staged.push(
                archive::rename_noreplace(&member.path, &to)
                    .map(|()| to.clone())
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound if !member.path.exists() => e.to_string(),
                        _ => format!("cannot move it to {}: {e}", to.display()),
                    }),
            );
        }
        let identities: Vec<(u64, u64)> = staged
            .iter()
            .flatten()
            .filter_map(|p| std::fs::symlink_metadata(p).ok())
            .map(|meta| (meta.dev(), meta.ino()))
            .collect();
        let held = archive::writers_of(&identities);
        let mut flow = Flow::Continue;
        for (i, (member, staged)) in members.iter().zip(&staged).enumerate() {
            if i == 1 && hook(Step::MidDelete) == Flow::Stop {
                flow = Flow::Stop;
                break;
            }
            let staged = match staged {
                Ok(staged) => staged,
                Err(why) => {
                    outcomes.push(Deleted::Failed(why.clone()));
                    continue;
                }
            };
            let at_staged = archive::Member {
                path: staged.clone(),
                ..member.clone()
            };
            // Checked at the moment of deletion: a line appended since the archive was
            // verified, or a writer that still holds the file, keeps it. The next run finds
            // it unchanged in this archive and deletes it, or archives what it has become.
            outcomes.push(match archive::deletable(&at_staged, &held) {
                Ok(()) => match std::fs::remove_file(staged) {
                    Ok(()) => Deleted::Yes,
                    Err(e) => {
                        let _ = self.put_back(staged, &member.path, now);
                        Deleted::Failed(e.to_string())
                    }
                },
                Err(keep) => match self.put_back(staged, &member.path, now) {
                    Ok(None) if matches!(keep, archive::Keep::Changed) => {
                        Deleted::Changed(keep.to_string())
                    }
                    Ok(None) => Deleted::Kept(keep.to_string()),
                    Ok(Some(other)) => Deleted::Kept(format!(
                        "{keep}; a new file took its name meanwhile, so it is back as {}",
                        other.display()
                    )),
                    Err(e) => Deleted::Failed(format!(
                        "{keep}, and it cannot be put back from {}: {e}",
                        staged.display()
                    )),
                },
            });
        }
        if flow == Flow::Continue {
            for staging in &folders {
                // Empty unless a file could not be put back: then it stays for the next run.
                let _ = std::fs::remove_dir(staging);
            }
        }
        for dir in members
            .iter()
            .filter_map(|m| m.path.parent())
            .collect::<BTreeSet<_>>()
        {
            let _ = archive::sync_dir(dir);
        }
        flow
    }

    /// Puts a staged file back under `original`; if a program created a new file there
    /// meanwhile, under the next free stamped name beside it (still matched by the pattern,
    /// so a later run archives it). Returns that other name, if used.
    fn put_back(
        &self,
        staged: &Path,
        original: &Path,
        now: DateTime<Utc>,
    ) -> std::io::Result<Option<PathBuf>> {
        match archive::rename_noreplace(staged, original) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let name = original
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (_, other) = rename_target(original, &name, now);
                archive::rename_noreplace(staged, &other)?;
                Ok(Some(other))
            }
            Err(e) => Err(e),
        }
    }

    /// Puts back what a stopped run left in the staging folders beside the patterns: those
    /// files were archived and verified but not yet deleted, and once back under their name
    /// they are found in their archive and deleted as any original of an interrupted run.
    fn restore_staged(&self, now: DateTime<Utc>, summary: &mut Summary) {
        let dirs: BTreeSet<PathBuf> = self
            .spec
            .paths
            .iter()
            .map(|p| p.parent().unwrap_or(Path::new(".")).to_path_buf())
            .collect();
        for dir in dirs {
            let staging = self.staging_dir(&dir);
            let Ok(entries) = std::fs::read_dir(&staging) else {
                continue;
            };
            for entry in entries.flatten() {
                let original = dir.join(entry.file_name());
                match self.put_back(&entry.path(), &original, now) {
                    Ok(None) => {}
                    Ok(Some(other)) => summary.skipped.push(format!(
                        "{} was left aside by a stopped run and a new file took its name; it is back as {}",
                        original.display(),
                        other.display()
                    )),
                    Err(e) => summary.problems.push(format!(
                        "cannot put {} back from {}: {e}",
                        original.display(),
                        staging.display()
                    )),
                }
            }
            let _ = std::fs::remove_dir(&staging);
        }
    }

    fn remove_leftover_tmp(&self, summary: &mut Summary) {
        // Never renamed, so never verified, so their originals were never deleted.
        for (_, path) in self.own_files(".zip.tmp") {
            if let Err(e) = std::fs::remove_file(&path) {
                summary
                    .problems
                    .push(format!("cannot remove {}: {e}", path.display()));
            }
        }
    }

    /// A young file past `max_size` may still be written: it is renamed first, with the
    /// run's time before its extension (`app.20261128T081500.log`, still matched by the glob),
    /// and the renamed file is archived. runner's own writers open a new file on their next
    /// line; another program keeps writing the renamed file until it reopens its log, and until
    /// then the file changes while it is copied and is left in place, reported.
    /// Waits until every renamed file has gone unmodified for `settle` (a writer that reopens
    /// its log on the postrotate signal, or on its own, writes its last lines to the renamed
    /// file first), at most ten times `settle`; a file still written then is left for the next
    /// run. The files' sizes and times are taken afresh.
    fn settle(
        &self,
        candidates: &mut Vec<Candidate>,
        renamed: &[PathBuf],
        hook: &mut dyn FnMut(Step) -> Flow,
        summary: &mut Summary,
    ) -> Flow {
        let settle = self.spec.settle;
        let quiet = |path: &Path| {
            std::fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= settle))
        };
        let give_up = std::time::Instant::now() + settle * 10;
        while !settle.is_zero() && !renamed.iter().all(|p| quiet(p)) {
            if hook(Step::Settling) == Flow::Stop {
                return Flow::Stop;
            }
            if std::time::Instant::now() >= give_up {
                candidates.retain(|c| {
                    let busy = renamed.contains(&c.path) && !quiet(&c.path);
                    if busy {
                        summary.skipped.push(format!(
                            "{} is still written {} after it was renamed; archived by a later run",
                            c.path.display(),
                            crate::vocab::duration::format_duration(settle * 10)
                        ));
                    }
                    !busy
                });
                break;
            }
            std::thread::sleep((settle / 4).min(std::time::Duration::from_millis(50)));
        }
        for c in candidates.iter_mut().filter(|c| renamed.contains(&c.path)) {
            if let Ok(meta) = std::fs::symlink_metadata(&c.path) {
                c.size = meta.len();
                c.mtime = meta.mtime();
            }
        }
        Flow::Continue
    }

    /// Takes out of `candidates` the originals an archive already holds (the last run stopped
    /// before deleting them), each checked against that archive by reading both: they are
    /// deleted, not archived twice. The run and its dry run both ask this, so they agree.
    fn split_archived(
        &self,
        candidates: &mut Vec<Candidate>,
        summary: &mut Summary,
    ) -> Vec<archive::Member> {
        // Only a run with files to archive needs to know what the archives already hold.
        if candidates.is_empty() {
            return Vec::new();
        }
        let index = ArchiveIndex::scan(&self.spec.archive_dir, self.job, &mut summary.problems);
        let mut archived_before = Vec::new();
        candidates.retain(|c| match index.find(&c.entry, c.size, c.mtime) {
            Some(found) => match archive::verify_member(found, c) {
                Ok(()) => {
                    archived_before.push(archive::Member {
                        archive: found.archive.clone(),
                        path: c.path.clone(),
                        entry: c.entry.clone(),
                        size: c.size,
                        crc: found.crc,
                        mtime: Some(c.mtime),
                    });
                    false
                }
                Err(e) => {
                    warn!(job = self.job, file = %c.path.display(), archive = %found.archive.display(), error = %e, "an earlier archive of this file does not verify; archiving it again");
                    true
                }
            },
            None => true,
        });
        archived_before
    }

    /// Leaves out a file selected for its size (renamed now or by an earlier run) that a
    /// process still has open for writing: that writer did not reopen its log, so what it
    /// writes next lands in this file, and an archive made now would soon be stale (each run a
    /// further full copy). It waits for a later run, with the writer's pid named and the way
    /// out (a `postrotate` that makes it reopen).
    fn drop_still_written(&self, candidates: &mut Vec<Candidate>, summary: &mut Summary) {
        let identities: Vec<(u64, u64)> = candidates
            .iter()
            .filter(|c| c.too_big_only)
            .filter_map(|c| std::fs::symlink_metadata(&c.path).ok())
            .map(|meta| (meta.dev(), meta.ino()))
            .collect();
        if identities.is_empty() {
            return;
        }
        let held = archive::writers_of(&identities);
        if held.is_empty() {
            return;
        }
        let advice = if self.spec.postrotate.is_some() {
            "the job's postrotate did not make it reopen its log"
        } else {
            "give the job a `postrotate` (a command or a signal) that makes it reopen its log"
        };
        candidates.retain(|c| {
            let pids = std::fs::symlink_metadata(&c.path)
                .ok()
                .filter(|_| c.too_big_only)
                .and_then(|meta| held.get(&(meta.dev(), meta.ino())));
            let Some(pids) = pids else {
                return true;
            };
            let pids = pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            summary.skipped.push(format!(
                "{} is still written by process {pids} after it was renamed; kept for a later run: {advice}",
                c.path.display()
            ));
            false
        });
    }

    /// Renames young files past `max_size` (see below); returns their new paths.
    fn rename_large(
        &self,
        candidates: &mut [Candidate],
        now: DateTime<Utc>,
        summary: &mut Summary,
    ) -> Vec<PathBuf> {
        let mut renamed_paths = Vec::new();
        for c in candidates.iter_mut().filter(|c| c.too_big_only) {
            let Some(name) = c.path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if has_rotation_stamp(&name) {
                continue;
            }
            let (stamp, renamed) = rename_target(&c.path, &name, now);
            if renamed.exists() {
                summary.problems.push(format!(
                    "cannot rename {}: {} exists",
                    c.path.display(),
                    renamed.display()
                ));
                continue;
            }
            match std::fs::rename(&c.path, &renamed) {
                Ok(()) => {
                    // Its size and time are taken afresh once it has settled.
                    c.entry = stamped_name(&c.entry, &stamp);
                    renamed_paths.push(renamed.clone());
                    c.path = renamed;
                }
                Err(e) => summary
                    .problems
                    .push(format!("cannot rename {}: {e}", c.path.display())),
            }
        }
        renamed_paths
    }

    fn archive_group(
        &self,
        group: &[Candidate],
        target: &Path,
        now: DateTime<Utc>,
        hook: &mut dyn FnMut(Step) -> Flow,
        summary: &mut Summary,
    ) -> Result<Flow, GroupFailure> {
        let tmp = PathBuf::from(format!("{}.tmp", target.display()));
        let written = match archive::write(&tmp, group, self.spec.compression) {
            Ok(written) => written,
            Err(e) => {
                // A partial archive (a full disk) is removed at once, not left to fill it.
                let _ = std::fs::remove_file(&tmp);
                return Err(if e.out_of_space {
                    GroupFailure::OutOfSpace {
                        message: e.message,
                        input_bytes: e.input_bytes,
                    }
                } else {
                    GroupFailure::Other(e.message)
                });
            }
        };
        // Files that could not be read were reported and left out; the rest go ahead.
        summary.problems.extend(written.unreadable.iter().cloned());
        if written.members.is_empty() {
            let _ = std::fs::remove_file(&tmp);
            return Ok(Flow::Continue);
        }
        if hook(Step::TmpWritten) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        std::fs::rename(&tmp, target)
            .map_err(|e| format!("cannot rename {}: {e}", tmp.display()))?;
        archive::sync_dir(&self.spec.archive_dir)
            .map_err(|e| format!("cannot sync {}: {e}", self.spec.archive_dir.display()))?;
        if hook(Step::Renamed) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        if let Err(e) = archive::verify(target, &written.members) {
            // Keep every original; keep the archive aside where readers do not look.
            let aside = PathBuf::from(format!("{}.corrupt", target.display()));
            let _ = std::fs::rename(target, &aside);
            warn!(job = self.job, archive = %aside.display(), error = %e, "archive does not verify; originals kept");
            return Err(GroupFailure::Other(format!(
                "{} does not verify ({e}); originals kept, archive moved to {}",
                target.display(),
                aside.display()
            )));
        }
        if hook(Step::Verified) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        let archive_bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
        let mut outcomes = Vec::new();
        let flow = self.delete_originals(&written.members, now, hook, &mut outcomes);
        // Every original was written to since it was copied and is still in place: the
        // archive holds only stale copies, and keeping it would pile up a copy per run.
        let all_changed = flow == Flow::Continue
            && !outcomes.is_empty()
            && outcomes.iter().all(|o| matches!(o, Deleted::Changed(_)));
        for (member, outcome) in written.members.iter().zip(outcomes) {
            match outcome {
                Deleted::Yes => {
                    summary.archived_files += 1;
                    summary.bytes_before += member.size;
                }
                Deleted::Changed(_) if all_changed => summary.skipped.push(format!(
                    "{} changed after it was copied (is a program still writing it?); kept for a later run",
                    member.path.display()
                )),
                Deleted::Kept(why) | Deleted::Changed(why) => {
                    summary.kept_in_archive += 1;
                    summary.skipped.push(format!(
                        "{} is archived but kept: {why}",
                        member.path.display()
                    ));
                }
                Deleted::Failed(why) => summary.problems.push(format!(
                    "archived but cannot delete {}: {why}",
                    member.path.display()
                )),
            }
        }
        if flow == Flow::Stop {
            return Ok(Flow::Stop);
        }
        if all_changed {
            let _ = std::fs::remove_file(target);
            let _ = archive::sync_dir(&self.spec.archive_dir);
            return Ok(Flow::Continue);
        }
        summary.bytes_after += archive_bytes;
        summary.archives_written.push(target.to_path_buf());
        Ok(Flow::Continue)
    }

    /// This job's archives, oldest first, with the time in their name.
    fn own_archives(&self) -> Vec<(DateTime<Utc>, PathBuf)> {
        self.own_files(".zip")
    }

    /// This job's files in `archive_dir` ending in `suffix` (`.zip`, `.zip.tmp`,
    /// `.zip.corrupt`), oldest first, with the time in their name.
    fn own_files(&self, suffix: &str) -> Vec<(DateTime<Utc>, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.spec.archive_dir) else {
            return Vec::new();
        };
        let mut out: Vec<(DateTime<Utc>, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let time = archive::archive_stamp(&name, self.job, suffix)?;
                Some((time, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    /// The archives to delete at `now`: older than `archive_max_age`, then the oldest beyond
    /// `keep_archives`, counting the archives this run wrote (`written`, never deleted by the
    /// run that made them) and those it has still to write (`unwritten`). The run and its dry
    /// run both ask this, so they agree.
    fn expired(&self, now: DateTime<Utc>, written: &[PathBuf], unwritten: usize) -> Vec<PathBuf> {
        let mut kept: Vec<_> = self
            .own_archives()
            .into_iter()
            .filter(|(_, p)| !written.contains(p))
            .collect();
        let mut doomed = Vec::new();
        if let Some(max_age) = self.spec.archive_max_age {
            let oldest = now - chrono::Duration::from_std(max_age).unwrap_or_default();
            // Archives set aside as corrupt (their originals were kept) expire by age too.
            doomed.extend(
                self.own_files(".zip.corrupt")
                    .into_iter()
                    .filter(|(t, _)| *t < oldest)
                    .map(|(_, p)| p),
            );
            let (old, young): (Vec<_>, Vec<_>) = kept.into_iter().partition(|(t, _)| *t < oldest);
            doomed.extend(old.into_iter().map(|(_, p)| p));
            kept = young;
        }
        if let Some(keep) = self.spec.keep_archives {
            let excess = (kept.len() + written.len() + unwritten)
                .saturating_sub(keep as usize)
                .min(kept.len());
            doomed.extend(kept.drain(..excess).map(|(_, p)| p));
        }
        doomed
    }

    /// Deletes archives older than `archive_max_age`, then all but the newest `keep_archives`.
    fn expire(&self, now: DateTime<Utc>, summary: &mut Summary) {
        for path in self.expired(now, &summary.archives_written, 0) {
            match std::fs::remove_file(&path) {
                Ok(()) => summary.archives_deleted.push(path),
                Err(e) => summary
                    .problems
                    .push(format!("cannot delete {}: {e}", path.display())),
            }
        }
    }

    /// What a run would do now, changing nothing.
    pub fn plan(&self, now: DateTime<Utc>) -> Plan {
        let mut summary = Summary::default();
        let mut candidates = self.candidates(now, &mut summary);
        // A young file past max_size is archived under the name the run renames it to.
        for c in candidates.iter_mut().filter(|c| c.too_big_only) {
            let name = c.path.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = name.filter(|n| !has_rotation_stamp(n)) {
                let (stamp, renamed) = rename_target(&c.path, &name, now);
                c.path = renamed;
                c.entry = stamped_name(&c.entry, &stamp);
            }
        }
        // Originals left in a staging folder by a stopped run are put back first by the run,
        // then found in their archive like any other.
        for dir in self
            .spec
            .paths
            .iter()
            .map(|p| p.parent().unwrap_or(Path::new(".")).to_path_buf())
            .collect::<BTreeSet<_>>()
        {
            let Ok(entries) = std::fs::read_dir(self.staging_dir(&dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let original = dir.join(entry.file_name());
                let base = dir.clone();
                let (name, base) = entry_name(&original, self.data_dir, &base);
                candidates.push(Candidate {
                    path: entry.path(),
                    entry: name,
                    size: meta.len(),
                    mtime: meta.mtime(),
                    mode: meta.permissions().mode() & 0o7777,
                    reason: "left aside by a stopped run".into(),
                    base,
                    too_big_only: false,
                });
            }
        }
        // The run's question of a file renamed earlier whose writer never reopened it: the
        // names this run would rename do not exist yet, so only those are asked about.
        self.drop_still_written(&mut candidates, &mut summary);
        let recovered: Vec<PathBuf> = self
            .split_archived(&mut candidates, &mut summary)
            .into_iter()
            .map(|m| m.path)
            .collect();
        for path in &recovered {
            summary.skipped.push(format!(
                "{} is already in a verified archive (a run stopped before deleting it): would be deleted, not archived again",
                path.display()
            ));
        }
        let leftover_tmp = self
            .own_files(".zip.tmp")
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let archives = self.groups(candidates.clone()).len();
        // The archives this run would write count towards `keep_archives` too.
        let doomed = self.expired(now, &[], archives);
        let expired = doomed
            .into_iter()
            .map(|p| {
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, size)
            })
            .collect();
        Plan {
            candidates,
            recovered,
            archives,
            expired,
            leftover_tmp,
            summary,
        }
    }
}

/// What a rotate run would do (`runner dry-run`).
#[derive(Debug)]
pub struct Plan {
    pub candidates: Vec<Candidate>,
    /// Originals an archive already holds (a run stopped before deleting them): deleted, not
    /// archived again.
    pub recovered: Vec<PathBuf>,
    /// How many archives the candidates would go into.
    pub archives: usize,
    /// Unfinished archives a stopped run left, which the run removes first.
    pub leftover_tmp: Vec<PathBuf>,
    /// Archives that would be deleted, with their size.
    pub expired: Vec<(PathBuf, u64)>,
    /// Files skipped and problems met while selecting.
    pub summary: Summary,
}

/// Runs a rotate job and logs its summary line (and the same as structured fields). A
/// cancelled run stops at its next step, which is as safe as a crash there: the next run
/// finishes or undoes what it left.
pub fn run_job(
    job: &str,
    spec: &RotateSpec,
    data_dir: &Path,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Summary {
    let rotation = Rotation {
        job,
        spec,
        data_dir,
    };
    let mut summary = rotation.run(now, &mut |_| {
        if cancel.is_cancelled() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    if cancel.is_cancelled() {
        // A cancelled run (unlike a crash) can tidy up at once: its unfinished archive and
        // any originals it set aside would otherwise wait for the next run.
        rotation.remove_leftover_tmp(&mut summary);
        rotation.restore_staged(now, &mut summary);
        // Each run starts this archive again from the beginning, so a timeout that cuts it
        // off once cuts it off every time: say which files, so the timeout can be raised.
        if let Some((files, bytes, largest)) = &summary.stopped_in {
            let line = format!(
                "cancelled while archiving {} ({}, the largest {}); if the job's timeout stopped it, no run can finish this archive: raise `timeout` or lower `compression`",
                plural(*files, "file"),
                format_size(*bytes),
                largest.display()
            );
            summary.skipped.push(line);
        }
    }
    for problem in &summary.problems {
        warn!(job, problem = %problem, "rotation problem");
    }
    for skipped in &summary.skipped {
        warn!(job, "{skipped}");
    }
    info!(
        job,
        archived_files = summary.archived_files,
        bytes_before = summary.bytes_before,
        bytes_after = summary.bytes_after,
        archives_written = summary.archives_written.len(),
        archives_deleted = summary.archives_deleted.len(),
        recovered = summary.recovered,
        kept_in_archive = summary.kept_in_archive,
        problems = summary.problems.len(),
        "rotation: {}",
        summary.line()
    );
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_file_keeps_its_extension_and_day() {
        assert_eq!(
            stamped_name("app.log", "20261128T023000"),
            "app.20261128T023000.log"
        );
        assert_eq!(
            stamped_name("metrics/2026-11-28.jsonl", "20261128T023000"),
            "metrics/2026-11-28.20261128T023000.jsonl"
        );
        assert_eq!(
            stamped_name("syslog", "20261128T023000"),
            "syslog.20261128T023000"
        );
        assert_eq!(
            stamped_name(".hidden", "20261128T023000"),
            ".hidden.20261128T023000"
        );
    }

    #[test]
    fn a_stamp_of_an_earlier_rename_is_recognised() {
        assert!(has_rotation_stamp("app.20261128T023000.log"));
        assert!(has_rotation_stamp("2026-11-28.20261128T023000.jsonl"));
        assert!(!has_rotation_stamp("app.log"));
        assert!(!has_rotation_stamp("2026-11-28.jsonl"));
        assert!(!has_rotation_stamp("app.2026112XT023000.log"));
    }
}
