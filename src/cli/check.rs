//! `runner check`: everything that can be checked without running, all at once: the jobs
//! file, each monitor's rules against its metrics, Slack templates, and report templates
//! rendered against an example summary.

use std::path::Path;

use super::{exit, summary_line};
use crate::config::{Config, JobKind, NotifierSettings};
use crate::rules::RuleSet;
use crate::rules::values::Schema;
use crate::template::bounds::Limits;

/// A report template renders against the example summary in well under a second; one that
/// takes ten is looping over loops, and `check` says so rather than run on.
fn check_limits() -> Limits {
    Limits {
        time: std::time::Duration::from_secs(10),
        ..Limits::report()
    }
}

pub fn run(file: &Path) -> u8 {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(problems) => {
            super::print_problems(&problems);
            println!("{}", summary_line(file, &problems));
            return exit::FAILED;
        }
    };
    let (problems, rule_files) = problems(&config);
    super::print_problems(&problems);
    println!(
        "{} ({} jobs, {} notifiers, {} rule files)",
        summary_line(file, &problems),
        config.jobs.len(),
        config.notifiers.len(),
        rule_files
    );
    if problems.has_errors() {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// Every problem `runner check` finds in a loaded config (its warnings included), sorted, and
/// how many rule files load: the scheduler's reload holds a changed config to the same.
pub fn problems(config: &Config) -> (crate::diagnostic::Problems, usize) {
    let mut problems = config.warnings.clone();
    // Rule and template files that are not there, at the line of the jobs file naming them.
    problems.extend(config.missing_files.clone());
    let present = |path: &&std::path::PathBuf| {
        crate::glob::has_wildcards(&path.to_string_lossy()) || path.is_file()
    };
    let mut rule_files = 0;
    for spec in config.jobs.values() {
        if let JobKind::Monitor(monitor) = &spec.kind {
            let schema = Schema::for_probes(&monitor.probes);
            let patterns: Vec<_> = monitor.rules.iter().filter(present).cloned().collect();
            let (rules, found) = RuleSet::load(&patterns, schema, monitor.rule_timeout);
            rule_files += rules.files().len();
            problems.extend(found);
        }
    }
    // Slack templates load and render against example alerts: one that fails would fall back
    // to the built-in message at every alert.
    for spec in config.notifiers.values() {
        if let NotifierSettings::Slack {
            template: Some(path),
            ..
        } = &spec.settings
            && path.is_file()
            && let Err(problem) = crate::notify::slack::check_template(path)
        {
            problems.push(problem.to_problem(
                &format!("notifiers.{}.template", spec.name),
                "fix the template; until then the built-in message is used",
            ));
        }
    }
    // Every notifier that is on can be built: one that cannot would be left out at run time.
    for (name, why) in crate::notify::Notifiers::problems(config) {
        problems.push(
            crate::diagnostic::Problem::error(
                &config.file,
                format!("notifier `{name}` cannot work: {why}"),
            )
            .field(format!("notifiers.{name}"))
            .help("fix its settings; until then runner starts without it and says so"),
        );
    }
    // Report templates render against an example summary, so a typo shows now, not on Monday.
    for spec in config.jobs.values() {
        if let JobKind::Report(report) = &spec.kind {
            let templates: Vec<_> = report.templates.iter().filter(present).cloned().collect();
            let (_, failed) = crate::report::render_all(
                &templates,
                &crate::report::summary::example(config),
                &config.zone,
                &check_limits(),
            );
            for problem in failed {
                problems.push(problem.to_problem(
                    &format!("jobs.{}.templates", spec.name),
                    "fix the template; `runner report --summary` prints every field a template can use",
                ));
            }
        }
    }
    (problems.sorted(), rule_files)
}
