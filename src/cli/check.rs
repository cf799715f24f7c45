//! `runner check`: everything that can be checked without running, all at once: the jobs
//! file, each monitor's rules against its metrics, Slack templates, and report templates
//! rendered against an example summary.

use std::path::Path;

use super::{exit, summary_line};
use crate::config::{Config, JobKind, NotifierSettings};
use crate::diagnostic::Problem;
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
            eprint!("{}", problems.render());
            println!("{}", summary_line(file, &problems));
            return exit::FAILED;
        }
    };
    let mut problems = config.warnings.clone();
    let mut rule_files = 0;
    for spec in config.jobs.values() {
        if let JobKind::Monitor(monitor) = &spec.kind {
            let schema = Schema::for_probes(&monitor.probes);
            let (rules, found) = RuleSet::load(&monitor.rules, schema, monitor.rule_timeout);
            rule_files += rules.files().len();
            problems.extend(found);
            for pattern in &monitor.rules {
                if crate::glob::expand(pattern).is_ok_and(|m| m.is_empty()) {
                    problems.push(Problem::warning(
                        &config.file,
                        format!(
                            "no rule file matches `{}` (job `{}`)",
                            pattern.display(),
                            spec.name
                        ),
                    ));
                }
            }
        }
    }
    // Slack templates load and render against example alerts: one that fails would fall back
    // to the built-in message at every alert.
    for spec in config.notifiers.values() {
        if let NotifierSettings::Slack {
            template: Some(path),
            ..
        } = &spec.settings
            && let Err(problem) = crate::notify::slack::check_template(path)
        {
            problems.push(problem.to_problem(
                &format!("notifiers.{}.template", spec.name),
                "fix the template; until then the built-in message is used",
            ));
        }
    }
    // Report templates render against an example summary, so a typo shows now, not on Monday.
    for spec in config.jobs.values() {
        if let JobKind::Report(report) = &spec.kind {
            let (_, failed) = crate::report::render_all(
                &report.templates,
                &crate::report::summary::example(&config),
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
    let problems = problems.sorted();
    eprint!("{}", problems.render());
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
