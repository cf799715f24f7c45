//! Reading the jobs file's YAML: one pass for the top level, then passes over every job and
//! notifier that skip the broken ones (so one broken section does not hide problems in the
//! others), and serde's terse errors reworded for people, with the caret on the offending value
//! and the field path named.

use std::cell::RefCell;
use std::path::Path;

use serde_saphyr::MessageFormatter;

use crate::config::raw::{JobConfig, NotifierConfig, RawConfig, Text};
use crate::config::{scan, sections, tagged};
use crate::diagnostic::{Problem, Problems};
use crate::vocab::suggest::closest;

/// Most entries skipped one by one before broken sections are skipped whole: each costs a
/// pass over the file, and a file this broken has more to fix than anyone reads at once.
const MAX_BROKEN_KEYS: usize = 200;

/// How far below a mapping's start its `type:` line is looked for, to point at a bad type.
const TYPE_SEARCH_LINES: usize = 64;

pub(super) struct ParsedSections {
    pub top: RawConfig,
    pub notifiers: Vec<(Text, Option<NotifierConfig>)>,
    pub jobs: Vec<(Text, Option<JobConfig>)>,
    pub problems: Problems,
    /// `(line, column)` of each `probes` item skipped because it was broken, in document order:
    /// the probes after one keep their index in what the build reports.
    pub skipped_probes: Vec<(u64, u64)>,
}

/// Parses the top level once, then every job and notifier, skipping each broken one in the
/// next pass, so one broken section does not hide problems in the others.
pub(super) fn parse_sections(file: &Path, source: &str) -> Result<ParsedSections, Problems> {
    if is_blank(source) {
        return Err(Problem::error(file, "the jobs file is empty")
            .at(1, 1, 1)
            .help(
                "it needs at least `data_dir:` and `jobs:`; jobs/jobs.yaml is a commented example",
            )
            .into());
    }
    // One walk over the events, for every pass: where `type` is not a mapping's first key, and
    // every duplicate key (the parse keeps the first and goes on, so they hide nothing).
    let scan = scan::scan(source);
    let mut problems = Problems::default();
    for d in &scan.duplicates {
        problems.push(
            Problem::error(file, format!("duplicate key `{}`", d.key))
                .at(d.line, d.column, d.key.chars().count().max(1) as u64)
                .field(d.path.clone())
                .help("a key may appear once per mapping; keep the one you mean"),
        );
    }
    let late_tags = scan.late_tags;
    let parse = || tagged::with_late_tags(&late_tags, || parse_raw(source));
    // The top level alone, each entry serde cannot read (a `listen_auth` of the wrong shape)
    // reported and skipped in the next pass, so the jobs and notifiers are still read.
    let mut broken_keys = std::collections::HashSet::new();
    let (top, section_count) = loop {
        let (top, failed_key, _) = tagged::with_broken_keys(&broken_keys, || {
            sections::pass(sections::Focus::Nothing, parse)
        });
        match top.result {
            Ok(parsed) => break (parsed, top.sections),
            Err(e) => {
                let problem = yaml_problem(file, source, e);
                // The same error again: the YAML itself is broken there (an unclosed quote),
                // which skipping the entry cannot get past.
                if problems.iter().any(|p| {
                    (p.line, p.column, &p.message)
                        == (problem.line, problem.column, &problem.message)
                }) {
                    return Err(problems);
                }
                problems.push(problem);
                // Not in an entry (the file is not a mapping), or no progress: the load ends
                // here.
                let progressed = broken_keys.len() < MAX_BROKEN_KEYS
                    && failed_key.is_some_and(|at| broken_keys.insert(at));
                if !progressed {
                    return Err(problems);
                }
            }
        }
    };
    unknown_top_level_keys(file, source, &mut problems);
    let mut notifiers: Vec<(Text, Option<NotifierConfig>)> =
        top.notifiers.keys().map(|k| (k.clone(), None)).collect();
    let mut jobs: Vec<(Text, Option<JobConfig>)> =
        top.jobs.keys().map(|k| (k.clone(), None)).collect();
    // Sections are counted in document order; their keys' positions give that order, and so
    // the name of the section each pass reads (serde_path_to_error cannot name `Spanned` keys).
    let mut order: Vec<(&str, &Text)> = top
        .notifiers
        .keys()
        .map(|k| ("notifiers", k))
        .chain(top.jobs.keys().map(|k| ("jobs", k)))
        .collect();
    order.sort_by_key(|(_, k)| (k.referenced.line(), k.referenced.column()));
    // Every section at once; a broken entry of a job, probe or notifier is reported and skipped
    // in the next pass (so the section's other settings are still read and checked), as is a
    // list item broken as a whole (a probe with an unknown type: the list's other items are
    // still read), and a section broken otherwise (a missing field, an unknown type) is
    // skipped whole.
    let mut broken = std::collections::BTreeSet::new();
    let mut skipped_probes = Vec::new();
    while broken.len() + broken_keys.len() <= section_count + MAX_BROKEN_KEYS {
        let (attempt, failed_key, skipped) = tagged::with_broken_keys(&broken_keys, || {
            sections::pass(sections::Focus::AllBut(broken.clone()), parse)
        });
        match attempt.result {
            Ok(parsed) => {
                for (slot, section) in notifiers.iter_mut().zip(parsed.notifiers.into_values()) {
                    slot.1 = section.into_parsed();
                }
                for (slot, section) in jobs.iter_mut().zip(parsed.jobs.into_values()) {
                    slot.1 = section.into_parsed();
                }
                skipped_probes = skipped
                    .into_iter()
                    .filter(|(key, _)| key == "probes")
                    .map(|(_, place)| place)
                    .collect();
                skipped_probes.sort_unstable();
                break;
            }
            Err(mut e) => {
                let Some(index) = attempt.failed else {
                    // Not inside a section (the top pass would have said so): report it once.
                    problems.push(yaml_problem(file, source, e));
                    break;
                };
                if let Some((kind, name)) = order.get(index) {
                    e.path = name_section(&e.path, kind, &name.value);
                }
                // A section that failed as a whole fails its top-level entry (`jobs`) too:
                // skipping that would hide every other section.
                let progressed = match failed_key {
                    Some(at)
                        if !tagged::is_top_level(&at) && broken_keys.len() < MAX_BROKEN_KEYS =>
                    {
                        broken_keys.insert(at)
                    }
                    _ => broken.insert(index),
                };
                let problem = yaml_problem(file, source, e);
                if !said_already(&problems, &problem) {
                    problems.push(problem);
                }
                if !progressed {
                    break;
                }
            }
        }
    }
    Ok(ParsedSections {
        top,
        notifiers,
        jobs,
        problems,
        skipped_probes,
    })
}

/// `missing field `max_age`` of a mapping whose `max_age` was reported and skipped, or whose
/// unknown `max_ag` was said with "did you mean `max_age`?": the same mistake, said once.
fn said_already(problems: &Problems, problem: &Problem) -> bool {
    let Some(name) = problem
        .message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    else {
        return false;
    };
    let field = if problem.field.is_empty() {
        name.to_string()
    } else {
        format!("{}.{name}", problem.field)
    };
    let misspelt = format!("did you mean `{name}`?");
    let parent = problem.field.as_str();
    problems.iter().any(|p| {
        p.field == field
            || (p.help.as_deref() == Some(misspelt.as_str())
                && p.field.rsplit_once('.').map_or("", |(head, _)| head) == parent)
    })
}

/// Top-level keys the jobs file does not know, each an error at the key with the nearest known
/// one suggested. Found here rather than by serde so they do not hide the jobs' problems.
fn unknown_top_level_keys(file: &Path, source: &str, problems: &mut Problems) {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::FirstWins,
    };
    let Ok(keys) = serde_saphyr::from_str_with_options::<
        indexmap::IndexMap<Text, serde::de::IgnoredAny>,
    >(source, options) else {
        return;
    };
    let known = crate::config::raw::TOP_LEVEL_KEYS;
    for key in keys.keys().filter(|k| !known.contains(&k.value.as_str())) {
        let mut problem = Problem::error(
            file,
            format!(
                "unknown field `{}`, expected one of {}",
                key.value,
                known.join(", ")
            ),
        )
        .at(
            key.referenced.line(),
            key.referenced.column(),
            key.value.chars().count().max(1) as u64,
        )
        .field(key.value.clone());
        if let Some(near) = closest(&key.value, known.iter().copied()) {
            problem = problem.help(format!("did you mean `{near}`?"));
        }
        problems.push(problem);
    }
}

/// A YAML or shape error with the field path where it happened.
struct YamlError {
    error: Box<serde_saphyr::Error>,
    path: String,
}

/// The top-level struct, its entries skippable one by one (`tagged::with_skippable_entries`).
struct Top(RawConfig);

impl<'de> serde::Deserialize<'de> for Top {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        tagged::with_skippable_entries(deserializer).map(Top)
    }
}

fn parse_raw(source: &str) -> Result<RawConfig, YamlError> {
    let path = RefCell::new(String::new());
    // Duplicate keys are all reported from the scan; the parse keeps the first and goes on, so
    // they do not hide other problems.
    let options = serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::FirstWins,
    };
    serde_saphyr::with_deserializer_from_str_with_options(source, options, |de| {
        serde_path_to_error::deserialize(de)
            .map(|Top(raw)| raw)
            .map_err(|e| {
                *path.borrow_mut() = e.path().to_string();
                e.into_inner()
            })
    })
    .map_err(|error| YamlError {
        error: Box::new(error),
        path: path.into_inner(),
    })
}

fn yaml_problem(file: &Path, source: &str, e: YamlError) -> Problem {
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(e.error.without_snippet())
        .into_owned();
    let mut problem = Problem::error(file, message).field(clean_field_path(&e.path));
    if let Some(loc) = e.error.location() {
        problem = problem.at(loc.line(), loc.column(), loc.span().len());
    }
    refine(problem, source)
}

/// Rewords serde's terse messages for people and points the caret at the offending value.
fn refine(mut problem: Problem, source: &str) -> Problem {
    let line_text = source
        .lines()
        .nth(problem.line.saturating_sub(1) as usize)
        .unwrap_or_default();
    let at_caret: String = line_text
        .chars()
        .skip(problem.column.saturating_sub(1) as usize)
        .take(problem.width as usize)
        .collect();
    let expected = match problem.message.as_str() {
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" => {
            Some("a whole number of zero or more")
        }
        "invalid i8" | "invalid i16" | "invalid i32" | "invalid i64" => Some("a whole number"),
        "invalid f32" | "invalid f64" => Some("a number"),
        "invalid bool" | "invalid boolean" => Some("`true` or `false`"),
        _ => None,
    };
    if let Some(expected) = expected {
        problem.message = format!("expected {expected}, found `{at_caret}`");
        return problem;
    }
    // A count that must not be 0 (`tables_top`): serde says `expected a nonzero u32` and
    // points at the key; the caret goes to the value after its colon.
    if problem
        .message
        .starts_with("invalid value: integer `0`, expected a nonzero")
    {
        problem.message = "expected a whole number of one or more, found `0`".to_string();
        let from = problem.column.saturating_sub(1) as usize;
        let rest: String = line_text.chars().skip(from).collect();
        if let Some(colon) = rest.find(':') {
            let after = &rest[colon + 1..];
            let value = after.trim_start();
            let skipped = rest[..colon + 1].chars().count() + (after.len() - value.len());
            let value = value.split([' ', ',', '}', '#']).next().unwrap_or_default();
            problem.column += skipped as u64;
            problem.width = (value.chars().count() as u64).max(1);
        }
        return problem;
    }
    if let Some(rest) = problem.message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set ").next().unwrap_or(rest).to_string();
        problem.message = format!("duplicate key `{key}`");
        return problem.help("a key may appear once per mapping; keep the one you mean");
    }
    // `unknown job type `monitr` (...)`: serde points at the mapping; point at the value.
    if let Some(rest) = problem.message.strip_prefix("unknown ")
        && let Some(start) = rest.find(" type `")
        && rest.contains(" (expected")
    {
        let value = rest[start + 7..].split('`').next().unwrap_or_default();
        let from = problem.line.saturating_sub(1) as usize;
        // `type:` is usually the mapping's first line, but may come anywhere in it.
        for (offset, text) in source
            .lines()
            .skip(from)
            .take(TYPE_SEARCH_LINES)
            .enumerate()
        {
            if let Some(col) = find_type_value(text, value) {
                problem.line = (from + offset + 1) as u64;
                problem.column = col as u64 + 1;
                problem.width = value.chars().count().max(1) as u64;
                break;
            }
        }
    }
    // `unknown field `probe`, expected one of schedule, ..., probes`: suggest the near miss.
    let suggestion = problem
        .message
        .strip_prefix("unknown field `")
        .and_then(|rest| {
            let (field, expected) = rest.split_once("`, expected one of ")?;
            closest(field, expected.split(", ")).map(|best| format!("did you mean `{best}`?"))
        });
    match suggestion {
        Some(help) => problem.help(help),
        None => problem,
    }
}

/// Column (0-based, in chars) of `value` after `type:` on this line, if it is there.
fn find_type_value(line: &str, value: &str) -> Option<usize> {
    let key = line.find("type:")?;
    let after = &line[key + 5..];
    let offset = after.find(value)?;
    Some(line[..key + 5 + offset].chars().count())
}

/// `jobs.?.bogus` → `jobs.monitor.bogus`: puts the section's name where the path has none.
fn name_section(path: &str, kind: &str, name: &str) -> String {
    let path = path.trim_start_matches('.');
    match path.strip_prefix(kind) {
        Some("") | Some(".?") => format!("{kind}.{name}"),
        Some(rest) => match rest.strip_prefix(".?.") {
            Some(tail) => format!("{kind}.{name}.{tail}"),
            None => path.to_string(),
        },
        None => path.to_string(),
    }
}

/// serde_path_to_error's path without the parts only our wrappers add: `.` for the root, `?`
/// for a key it could not name, and the `value` field of a `Spanned` list item or setting
/// (`max_age: [15]` fails inside the `Spanned`; no setting of the file is called `value`).
fn clean_field_path(path: &str) -> String {
    let path = path.trim_matches('.');
    path.strip_suffix(".value")
        .unwrap_or(path)
        .replace("].value", "]")
        .split('.')
        .filter(|part| *part != "?")
        .collect::<Vec<_>>()
        .join(".")
}

fn is_blank(source: &str) -> bool {
    source
        .lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#') || line == "---")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_are_clean() {
        assert_eq!(clean_field_path("."), "");
        assert_eq!(
            clean_field_path("jobs.a.probes[1].value.count"),
            "jobs.a.probes[1].count"
        );
        assert_eq!(clean_field_path("jobs.a.?"), "jobs.a");
        assert_eq!(clean_field_path("jobs.r.max_age.value"), "jobs.r.max_age");
        assert_eq!(clean_field_path("jobs.?"), "jobs");
        assert_eq!(name_section("jobs.?.bogus", "jobs", "c"), "jobs.c.bogus");
        assert_eq!(
            name_section("notifiers.?", "notifiers", "chat"),
            "notifiers.chat"
        );
        assert_eq!(name_section("jobs", "jobs", "c"), "jobs.c");
        assert_eq!(name_section("data_dir", "jobs", "c"), "data_dir");
    }
}
