//! `watch: true`: the files a reload reads (the jobs file, every monitor's rule files, every
//! report's templates) are looked at every second, and a change, once the files have been
//! still for half a second, reloads as SIGHUP does.
//!
//! Polled rather than watched with inotify: editors and config management replace a file by
//! renaming a new one over it, and Kubernetes swaps a ConfigMap's symlink; an inotify watch on
//! the old file sees neither, while a `stat` of the path sees both. A second's poll of a dozen
//! paths costs microseconds and no dependency.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Config, JobKind};

const POLL: Duration = Duration::from_secs(1);
/// How long the files must stay unchanged before the reload: an editor's or a deploy's several
/// writes make one reload.
const SETTLE: Duration = Duration::from_millis(500);

/// What a path looked like: `None` when it is missing.
type Seen = Vec<(PathBuf, Option<(i64, i64, u64, u64)>)>;

/// The files a reload of `config` reads: the jobs file, the rule files each monitor's patterns
/// match now (a new file matching a pattern is a change), and each report's templates.
pub fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config.file.clone()];
    for job in config.jobs.values() {
        match &job.kind {
            JobKind::Monitor(monitor) => {
                for pattern in &monitor.rules {
                    match crate::glob::expand(pattern) {
                        Ok(paths) => files.extend(paths),
                        Err(_) => files.push(pattern.clone()),
                    }
                }
            }
            JobKind::Report(report) => files.extend(report.templates.iter().cloned()),
            _ => {}
        }
    }
    files.sort();
    files.dedup();
    files
}

fn look(files: Vec<PathBuf>) -> Seen {
    files
        .into_iter()
        .map(|path| {
            let stamp = std::fs::metadata(&path).ok().map(|m| {
                (
                    m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                    m.size(),
                    m.ino(),
                )
            });
            (path, stamp)
        })
        .collect()
}

/// The first path whose look differs between `before` and `after`.
fn changed(before: &Seen, after: &Seen) -> Option<PathBuf> {
    for (path, stamp) in after {
        match before.iter().find(|(p, _)| p == path) {
            Some((_, old)) if old == stamp => {}
            _ => return Some(path.clone()),
        }
    }
    before
        .iter()
        .find(|(p, _)| !after.iter().any(|(q, _)| q == p))
        .map(|(p, _)| p.clone())
}

/// Until `stop`: while the running configuration says `watch: true`, sends a reload request
/// on `reload` when one of its files changes. `running` is replaced by each reload that goes
/// in, so the files of a new rule or template are watched from then on.
pub async fn watch(
    running: Arc<RwLock<Arc<Config>>>,
    reload: UnboundedSender<()>,
    stop: CancellationToken,
) {
    let current = || {
        running
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    // Taken at once: the files as they were when the running configuration was read.
    let mut last: Option<Seen> = Some(&current())
        .filter(|c| c.watch)
        .map(|c| look(watched_files(c)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let config = current();
        if !config.watch {
            last = None;
            continue;
        }
        let seen = look(watched_files(&config));
        let Some(before) = last.replace(seen.clone()) else {
            continue;
        };
        let Some(path) = changed(&before, &seen) else {
            continue;
        };
        // Let the writes settle: the files must look the same twice, SETTLE apart.
        let mut settled = seen;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => {}
            }
            let again = look(watched_files(&current()));
            if again == settled {
                break;
            }
            settled = again;
        }
        info!(file = %path.display(), "a watched file changed: reloading");
        if reload.send(()).is_err() {
            return;
        }
        // What the reload reads now is what the next change is measured against; a reload
        // that is refused keeps the running files watched, and the next edit tries again.
        last = Some(settled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_a_rewritten_a_new_and_a_removed_file_are_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.rhai"), dir.path().join("b.rhai"));
        std::fs::write(&a, "1").unwrap();
        let first = look(vec![a.clone()]);
        assert_eq!(changed(&first, &look(vec![a.clone()])), None);
        // Replaced by rename, as editors save: same size, same content, another inode.
        std::fs::write(&b, "1").unwrap();
        std::fs::rename(&b, &a).unwrap();
        let renamed = look(vec![a.clone()]);
        assert_eq!(changed(&first, &renamed), Some(a.clone()));
        // Rewritten in place with the same size.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&a, "2").unwrap();
        let rewritten = look(vec![a.clone()]);
        assert_eq!(changed(&renamed, &rewritten), Some(a.clone()));
        // A file that a pattern now matches, and one that went.
        std::fs::write(&b, "x").unwrap();
        let both = look(vec![a.clone(), b.clone()]);
        assert_eq!(changed(&rewritten, &both), Some(b.clone()));
        assert_eq!(changed(&both, &rewritten), Some(b));
    }
}
