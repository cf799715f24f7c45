//! The rule files a running scheduler loaded (at start and at each reload that went in), with
//! a copy of each in `state/loaded-rules/`: `runner check` compares them with the files on disk
//! and names the `runner replay … --rules COPY --compare FILE` that shows what an edit would
//! change, before `runner reload` makes it live.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::config::{Config, JobKind};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The scheduler's pid: a record a stopped scheduler left describes nothing running.
    pid: u32,
    files: Vec<Loaded>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Loaded {
    path: PathBuf,
    sha256: String,
    /// The content loaded, under the file's own name: `replay --rules` puts a file in place
    /// of the job's file of the same name.
    copy: PathBuf,
    jobs: Vec<String>,
}

/// A rule file whose content is not what the running scheduler loaded.
#[derive(Debug)]
pub struct Changed {
    pub path: PathBuf,
    pub copy: PathBuf,
    pub jobs: Vec<String>,
}

fn record_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("loaded-rules.json")
}

fn copies_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("loaded-rules")
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Each monitor's rule files (patterns expanded), with the jobs that read each.
fn rule_files(config: &Config) -> BTreeMap<PathBuf, Vec<String>> {
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for spec in config.jobs.values() {
        if let JobKind::Monitor(monitor) = &spec.kind {
            for pattern in &monitor.rules {
                for path in crate::glob::expand(pattern).unwrap_or_default() {
                    files.entry(path).or_default().push(spec.name.clone());
                }
            }
        }
    }
    files
}

/// Records the rule files `config` names as the ones this process runs. A failure is logged
/// and costs only `runner check`'s note.
pub fn record(config: &Config) {
    if let Err(e) = write(config) {
        warn!(data_dir = %config.data_dir.display(), error = %e, "cannot record the rule files loaded; `runner check` will not say when one changed");
    }
}

fn write(config: &Config) -> std::io::Result<()> {
    let copies = copies_dir(&config.data_dir);
    let mut files = Vec::new();
    let mut kept = BTreeSet::new();
    for (path, jobs) in rule_files(config) {
        // A file that cannot be read was not loaded either; check says so on its own.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Some(name) = path.file_name() else {
            continue;
        };
        let sha256 = digest(&bytes);
        let folder = copies.join(&sha256[..16]);
        let copy = folder.join(name);
        if !copy.exists() {
            crate::store::atomic::write(&copy, &bytes)?;
        }
        kept.insert(folder);
        files.push(Loaded {
            path,
            sha256,
            copy,
            jobs,
        });
    }
    let record = Record {
        pid: std::process::id(),
        files,
    };
    let text = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    crate::store::atomic::write(&record_path(&config.data_dir), &text)?;
    // Copies no record names any more go: a rule file edited daily would pile them up.
    if let Ok(entries) = std::fs::read_dir(&copies) {
        for entry in entries.flatten() {
            if !kept.contains(&entry.path()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}

/// The rule files that differ from what the scheduler running on `data_dir` loaded; none when
/// no scheduler runs there.
pub fn changed(data_dir: &Path) -> Vec<Changed> {
    let Some(record) = std::fs::read(record_path(data_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
    else {
        return Vec::new();
    };
    if !super::reload::alive(record.pid) {
        return Vec::new();
    }
    record
        .files
        .into_iter()
        // A file gone since has nothing to replay; check says it is missing on its own.
        .filter(|loaded| {
            std::fs::read(&loaded.path).is_ok_and(|bytes| digest(&bytes) != loaded.sha256)
        })
        .map(|loaded| Changed {
            path: loaded.path,
            copy: loaded.copy,
            jobs: loaded.jobs,
        })
        .collect()
}

/// A word the shell takes as one: quoted when it holds anything but the plain characters of
/// paths and names.
pub fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:+=@,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("rules/cpu.yaml"), "rules/cpu.yaml");
        assert_eq!(shell_word("2026-11-30 08:00"), "'2026-11-30 08:00'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
