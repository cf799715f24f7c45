//! `runner test`: every rule test file, a line per file, every failed check with its line.

use std::path::PathBuf;

use super::exit;
use super::output::{out, outln};
use crate::diagnostic::Problems;
use crate::rule_test::{find_test_files, run_file};

pub fn run(paths: &[PathBuf]) -> u8 {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("rules")]
    } else {
        paths.to_vec()
    };
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        super::fail(format_args!(
            "no such file or folder: {} (give rule test files or folders holding them)",
            missing.display()
        ));
        return exit::USAGE;
    }
    let files = find_test_files(&paths);
    if files.is_empty() {
        super::fail(format_args!(
            "no rule tests (`*.test.yaml`) in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return exit::USAGE;
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let report = run_file(file);
        if !report.problems.is_empty() {
            outln!("FAIL {} (cannot run)", file.display());
            let problems: Problems =
                report
                    .problems
                    .into_iter()
                    .fold(Problems::default(), |mut all, p| {
                        all.push(p);
                        all
                    });
            out!("{}", problems.render());
            failed += 1;
            continue;
        }
        if report.failures.is_empty() {
            outln!("ok   {} ({} checks)", file.display(), report.passed);
        } else {
            outln!("FAIL {}", file.display());
            for f in &report.failures {
                outln!("  {}:{}: {}", file.display(), f.line, f.message);
            }
        }
        passed += report.passed;
        failed += report.failures.len();
    }
    outln!("{passed} passed, {failed} failed");
    if failed == 0 { exit::OK } else { exit::FAILED }
}
