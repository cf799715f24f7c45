//! Report templates into text: HTML templates (`*.html.hbs`) escape what they print for HTML,
//! Markdown ones (`*.md.hbs`) for Markdown text and table cells (backslashes, never entities;
//! `{{code x}}` for code spans), others print as is; strict mode turns a misspelt field into
//! an error with the template's name, line and column.
//! Files go to `data_dir/reports/<job>-<date>.<ext>` (with the time for windows that
//! are not whole days), written atomically.

use std::path::{Path, PathBuf};

use super::summary::Summary;
use crate::scheduler::schedule::Zone;
use crate::template::bounds::Limits;
use crate::template::{Escape, TemplateProblem, register_file, registry_in};

/// One rendered template.
#[derive(Debug, Clone)]
pub struct Output {
    pub template: PathBuf,
    /// `md`, `html`, `txt`: what the template's name says before `.hbs`.
    pub extension: String,
    pub text: String,
}

/// `weekly.html.hbs` → `html`; `weekly.md.hbs` → `md`; `x.hbs` → `txt`.
pub fn extension_of(template: &Path) -> String {
    let name = template
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".hbs").unwrap_or(&name);
    match stem.rsplit_once('.') {
        Some((_, ext)) if !ext.is_empty() => ext.to_ascii_lowercase(),
        _ => "txt".to_string(),
    }
}

fn escape_for(template: &Path) -> Escape {
    match extension_of(template).as_str() {
        "html" | "htm" => Escape::Html,
        "md" | "markdown" => Escape::Markdown,
        _ => Escape::None,
    }
}

/// Renders one template against a summary (or any JSON).
pub fn render(
    template: &Path,
    data: &impl serde::Serialize,
    zone: &Zone,
    limits: &Limits,
) -> Result<Output, TemplateProblem> {
    let mut hb = registry_in(escape_for(template), zone.clone());
    let name = register_file(&mut hb, template)?;
    let text = crate::template::render(&hb, &name, template, data, limits)?;
    Ok(Output {
        template: template.to_path_buf(),
        extension: extension_of(template),
        text,
    })
}

/// What tells a report's files from another window's: the local date its window ends on for
/// whole calendar days (a daily or weekly report: both ends at one wall time, a day or more
/// apart); for other windows the local time of the end too (`2026-11-30-0900`, with seconds
/// when the window is not whole minutes), and its UTC offset when that wall time happened
/// twice (the hour the clocks went back), so hourly reports of one day do not overwrite each
/// other.
fn file_stamp(summary: &Summary, zone: &Zone) -> String {
    let (from, to) = (summary.period.from, summary.period.to);
    let date = zone.strftime(to, "%Y-%m-%d");
    let same_wall_time = zone
        .zoned(from)
        .zip(zone.zoned(to))
        .is_some_and(|(from, to)| from.time() == to.time());
    if same_wall_time && to - from >= chrono::Duration::hours(23) {
        return date;
    }
    let whole_minutes = (to - from).num_milliseconds() % 60_000 == 0;
    let mut stamp = zone.strftime(
        to,
        if whole_minutes {
            "%Y-%m-%d-%H%M"
        } else {
            "%Y-%m-%d-%H%M%S"
        },
    );
    let repeated = zone
        .zoned(to)
        .and_then(|end| zone.wall_time(end.datetime()));
    if matches!(
        repeated,
        Some(crate::scheduler::schedule::WallTime::Twice { .. })
    ) {
        stamp.push_str(&zone.strftime(to, "%z"));
    }
    stamp
}

/// `<dir>/<job>-<stamp>.<ext>` (see `file_stamp`: the local date for daily and weekly
/// reports) for one of a job's `templates`; when two of them share an
/// extension, each adds its name: `<job>-<stamp>-<template>.<ext>`. Names come from the job's
/// list, not from what rendered, so one template failing never renames another's file.
pub fn output_path(
    dir: &Path,
    job: &str,
    summary: &Summary,
    zone: &Zone,
    templates: &[PathBuf],
    output: &Output,
) -> PathBuf {
    let date = file_stamp(summary, zone);
    let shared = templates
        .iter()
        .filter(|t| extension_of(t) == output.extension)
        .count()
        > 1;
    if shared {
        let stem = output
            .template
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = stem.split('.').next().unwrap_or("report").to_string();
        dir.join(format!("{job}-{date}-{stem}.{}", output.extension))
    } else {
        dir.join(format!("{job}-{date}.{}", output.extension))
    }
}
