//! `runner check`: everything that can be checked without running, all at once: the jobs
//! file, each monitor's rules against its metrics, Slack templates, and report templates
//! rendered against an example summary.

use std::path::Path;

use super::output::outln;
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

/// Where a report template's author finds every field, said with a path the summary lacks.
const SUMMARY_FIELDS: &str = "`runner report --summary` prints every field a template can use";
/// What a Slack template's data holds, said with a path it lacks.
const SLACK_FIELDS: &str = "a message's data is `events` (each an alert event, as docs/rules.md shows one), `count`, `firing`, `resolved`, `flapping` and `severity`";

pub fn run(file: &Path) -> u8 {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(problems) => {
            let problems = with_file_checks(file, problems);
            super::print_problems(&problems);
            outln!("{}", summary_line(file, &problems));
            return exit::FAILED;
        }
    };
    let (problems, rule_files) = problems(&config);
    super::print_problems(&problems);
    outln!(
        "{} ({} jobs, {} notifiers, {} rule files)",
        summary_line(file, &problems),
        config.jobs.len(),
        config.notifiers.len(),
        rule_files
    );
    note_changed_rules(file, &config);
    note_ignored_silences(&config);
    if problems.has_errors() {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// Each rule file edited since the running scheduler loaded it, with the replay that shows what
/// the edit would have done over the last day (the loaded content against the file's), to run
/// before `runner reload` makes it live.
fn note_changed_rules(file: &Path, config: &Config) {
    let from = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:00Z");
    for changed in super::loaded::changed(&config.data_dir) {
        let word = |path: &Path| super::loaded::shell_word(&path.to_string_lossy());
        outln!(
            "note: {} changed since the running scheduler loaded it; before `runner reload`, see what the change would have done over the last day:",
            changed.path.display()
        );
        for job in &changed.jobs {
            outln!(
                "  runner --jobs {} replay {} --from {from} --rules {} --compare {}",
                word(file),
                super::loaded::shell_word(job),
                word(&changed.copy),
                word(&changed.path)
            );
        }
    }
}

/// The silences of the data_dir the scheduler ignores (no matchers, or one that does not
/// parse), and a silences file it cannot read: not the jobs file's problems, so they do not
/// change the exit status, but an operator who thinks an alert silenced should hear of them.
fn note_ignored_silences(config: &Config) {
    let path = crate::alerts::mute::silences_path(&config.data_dir);
    match crate::alerts::mute::read_silences(&config.data_dir) {
        Ok(silences) => {
            let now = chrono::Utc::now();
            for s in silences.iter().filter(|s| s.kept(now)) {
                if let Err(why) = s.parsed() {
                    outln!(
                        "warning: silence {} in {} is ignored: {why}",
                        s.id,
                        path.display()
                    );
                }
            }
        }
        Err(e) => outln!(
            "warning: cannot read the silences in {}: {e}",
            path.display()
        ),
    }
}

/// A jobs file's problems and those of the files it names (missing rule files and templates,
/// rules that do not compile, templates that do not render), from what can be built of it: a
/// mistake in the jobs file does not hide them, so one round shows every problem.
fn with_file_checks(
    file: &Path,
    mut found: crate::diagnostic::Problems,
) -> crate::diagnostic::Problems {
    let (Some(mut partial), _) = Config::load_partial(file) else {
        return found;
    };
    // A monitor with a probe that did not build would hold its rules to fewer metrics than it
    // has: their "unknown metric" would not be theirs.
    let broken = |name: &str| {
        let job = format!("jobs.{name}");
        let probes = format!("{job}.probes");
        found
            .errors()
            .any(|p| p.field == job || p.field.starts_with(&probes))
    };
    // Its rule and template files were looked for while building: they are in
    // `missing_files` whether or not the job stays.
    partial
        .jobs
        .retain(|name, spec| !matches!(spec.kind, JobKind::Monitor(_)) || !broken(name));
    // A notifier with an error was said at its setting; "cannot work" would say it again.
    partial.notifiers.retain(|name, _| {
        let notifier = format!("notifiers.{name}");
        !found
            .errors()
            .any(|p| p.field == notifier || p.field.starts_with(&format!("{notifier}.")))
    });
    // An action with an error was said at its setting: a rule naming it is not naming an
    // unknown one ("the jobs file has no `actions:`" was said of a file that has it).
    let broken_actions: Vec<String> = found
        .errors()
        .filter_map(|p| p.field.strip_prefix("actions."))
        .map(|rest| rest.split('.').next().unwrap_or(rest).to_string())
        .collect();
    for name in broken_actions {
        partial
            .actions
            .entry(name)
            .or_insert_with(|| crate::config::action::ActionSpec {
                argv: Vec::new(),
                timeout: crate::config::action::DEFAULT_TIMEOUT,
                cooldown: std::time::Duration::ZERO,
                max_per_hour: None,
                on: crate::config::action::RunOn::Firing,
            });
    }
    let (more, _) = problems(&partial);
    found.extend(more);
    found.sorted()
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
            // An action a rule names with a literal is one of `actions:`.
            let known: Vec<&str> = config.actions.keys().map(String::as_str).collect();
            for file in rules.files() {
                for p in crate::rules::check::unknown_actions(file, &known) {
                    problems.push(crate::diagnostic::Problem::error(&file.path, p.message).at(
                        p.line as u64,
                        p.column as u64,
                        p.width as u64,
                    ));
                }
            }
        }
    }
    // Slack templates load, have every path in the alerts' data (in every branch), and render
    // against example alerts: one that fails would fall back to the built-in message.
    for spec in config.notifiers.values() {
        if let NotifierSettings::Slack {
            template: Some(path),
            ..
        } = &spec.settings
            && path.is_file()
        {
            let field = format!("notifiers.{}.template", spec.name);
            let misses = crate::notify::slack::check_template_paths(path);
            for miss in &misses {
                problems.push(miss.to_problem(&field, SLACK_FIELDS));
            }
            // A miss the render would meet too is said once.
            if misses.is_empty()
                && let Err(problem) = crate::notify::slack::check_template(path)
            {
                problems.push(problem.to_problem(
                    &field,
                    "fix the template; until then the built-in message is used",
                ));
            }
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
    // Report templates have every path in the summary, in branches the example does not take
    // too, and render against an example summary: a typo shows now, not on Monday.
    let schema = crate::report::summary::schema(config);
    let fleet_schema = crate::report::fleet::schema(config);
    for spec in config.jobs.values() {
        if let JobKind::Report(report) = &spec.kind {
            // A fleet report's templates see the fleet summary.
            let (schema, what) = match report.source {
                Some(_) => (&fleet_schema, "the fleet summary"),
                None => (&schema, "the summary"),
            };
            let mut templates: Vec<_> = report.templates.iter().filter(present).cloned().collect();
            let field = format!("jobs.{}.templates", spec.name);
            // A template with a path the summary lacks is not rendered too: its first miss
            // would be said twice.
            templates.retain(|template| {
                let misses = crate::template::paths::check_file(template, schema, what);
                for miss in &misses {
                    problems.push(miss.to_problem(&field, SUMMARY_FIELDS));
                }
                misses.is_empty()
            });
            let (_, failed) = match report.source {
                Some(_) => crate::report::render_all(
                    &templates,
                    &crate::report::fleet::example(config),
                    &config.zone,
                    &check_limits(),
                ),
                None => crate::report::render_all(
                    &templates,
                    &crate::report::summary::example(config),
                    &config.zone,
                    &check_limits(),
                ),
            };
            for problem in failed {
                problems.push(problem.to_problem(
                    &field,
                    "fix the template; `runner report --summary` prints every field a template can use",
                ));
            }
        }
    }
    (problems.sorted(), rule_files)
}
