//! Lock files under `data_dir/state/`: one scheduler per data folder, one run of a job at a time.
//!
//! Locks are `flock`s on a file that also holds the holder's pid (for the error message). The
//! kernel drops a lock when its process dies, so a lock left by a crashed runner is simply taken
//! over; no pid guessing, no stale-lock races.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is already held by {holder} (lock file {path})")]
    Held {
        what: String,
        holder: String,
        pid: Option<u32>,
        path: PathBuf,
    },
    /// The cause is in the message and not also a `source`, or `{:#}` would say it twice.
    #[error("cannot open lock file {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
    /// The pid written by a previous holder that is gone (a crash left the file behind).
    pub took_over_from: Option<u32>,
}

impl LockFile {
    /// Takes the lock without waiting. `what` names the thing locked, for the error.
    pub fn try_acquire(path: &Path, what: &str) -> Result<LockFile, LockError> {
        let io_err = |cause| LockError::Io {
            path: path.to_path_buf(),
            cause,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut file);
                return Err(LockError::Held {
                    what: what.to_string(),
                    holder: match pid {
                        Some(pid) => format!("pid {pid}"),
                        None => "another process".to_string(),
                    },
                    pid,
                    path: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let took_over_from = read_pid(&mut file).filter(|&pid| pid != std::process::id());
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        file.flush().map_err(io_err)?;
        Ok(LockFile {
            _file: file,
            path: path.to_path_buf(),
            took_over_from,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    /// A clean release empties the file: the pid left in it means its holder died holding it.
    fn drop(&mut self) {
        let _ = self._file.set_len(0);
    }
}

/// A lock taken for every run of a job: the file stays open between runs, and each run only
/// locks it, writes its pid in place and unlocks it. A 1 s monitor would otherwise open,
/// truncate and close a file every second (truncation is a journal write on ext4).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    what: String,
    file: std::sync::Mutex<Option<std::sync::Arc<File>>>,
}

/// A run's hold on a `RunLock`; unlocks when dropped.
#[derive(Debug)]
pub struct RunLockGuard {
    file: std::sync::Arc<File>,
}

impl Drop for RunLockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl RunLock {
    pub fn new(path: PathBuf, what: &str) -> Self {
        RunLock {
            path,
            what: what.to_string(),
            file: std::sync::Mutex::new(None),
        }
    }

    pub fn try_acquire(&self) -> Result<RunLockGuard, LockError> {
        let io_err = |cause| LockError::Io {
            path: self.path.clone(),
            cause,
        };
        let file = {
            let mut slot = self
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*slot {
                Some(file) => file.clone(),
                None => {
                    if let Some(parent) = self.path.parent() {
                        std::fs::create_dir_all(parent).map_err(io_err)?;
                    }
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&self.path)
                        .map_err(io_err)?;
                    let file = std::sync::Arc::new(file);
                    *slot = Some(file.clone());
                    file
                }
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut &*file);
                return Err(LockError::Held {
                    what: self.what.clone(),
                    holder: pid
                        .map_or_else(|| "another process".to_string(), |p| format!("pid {p}")),
                    pid,
                    path: self.path.clone(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        // Fixed width, written in place: no truncation needed between runs.
        use std::os::unix::fs::FileExt;
        file.write_all_at(format!("{:>10}\n", std::process::id()).as_bytes(), 0)
            .map_err(io_err)?;
        Ok(RunLockGuard { file })
    }
}

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

fn read_pid(file: &mut impl ReadSeek) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// `state/runner.lock`: one scheduler per data folder.
pub fn scheduler_lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("runner.lock")
}

/// `state/locks/<job>.lock`: shared by the scheduler and `runner run JOB`.
pub fn job_lock_path(data_dir: &Path, job: &str) -> PathBuf {
    data_dir
        .join("state")
        .join("locks")
        .join(format!("{job}.lock"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unusable_lock_path_says_its_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = LockFile::try_acquire(&file.join("x.lock"), "test").unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(text.matches("(os error").count(), 1, "{text}");
    }

    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/runner.lock");
        let first = LockFile::try_acquire(&path, "the scheduler").unwrap();
        let err = LockFile::try_acquire(&path, "the scheduler").unwrap_err();
        match err {
            LockError::Held { pid, .. } => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other}"),
        }
        drop(first);
        LockFile::try_acquire(&path, "the scheduler").unwrap();
    }

    #[test]
    fn a_run_lock_is_reused_and_refused_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/locks/monitor.lock");
        let lock = RunLock::new(path.clone(), "job `monitor`");
        for _ in 0..3 {
            let held = lock.try_acquire().unwrap();
            match LockFile::try_acquire(&path, "job `monitor`") {
                Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
                other => panic!("{other:?}"),
            }
            drop(held);
        }
        let other = LockFile::try_acquire(&path, "job `monitor`").unwrap();
        assert!(matches!(lock.try_acquire(), Err(LockError::Held { .. })));
        drop(other);
        lock.try_acquire().unwrap();
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "4000000\n").unwrap();
        let lock = LockFile::try_acquire(&path, "x").unwrap();
        assert_eq!(lock.took_over_from, Some(4_000_000));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
    }
}
