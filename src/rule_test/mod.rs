//! `runner test`: rule tests in `<rule>.test.yaml` files. A test names its rule files and,
//! optionally, the monitor job they run as; gives input series per metric in promtool's
//! notation; and asserts, at times on a virtual clock, which alerts are pending, firing,
//! resolved or flapping, which events were sent, and what each notifier's message says. The
//! rules run through the same pipeline as the scheduler's tick. Nothing is sent and nothing
//! outside a temporary folder is written.

pub mod file;
pub mod notation;
mod run;

use std::path::{Path, PathBuf};

use crate::diagnostic::Problem;
pub use run::run_file;

/// One failed check, at the line of its assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub line: u64,
    pub message: String,
}

/// What one test file found.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failures: Vec<Failure>,
    /// The file could not be run at all (bad YAML, a rule that does not compile, ...).
    pub problems: Vec<Problem>,
}

/// Every `*.test.yaml` under the given files and folders, sorted.
pub fn find_test_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.to_string_lossy().ends_with(".test.yaml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out);
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}
