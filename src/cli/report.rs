//! `runner report`: the summary of a window (ending now, or `--at`), rendered through
//! templates or printed as JSON; which report job, which templates and which window, from the
//! arguments; one report to stdout or `--out`, or each into `--out-dir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::output::{out, outln};
use super::{exit, load};
use crate::config::{Config, JobKind, ReportSpec};
use crate::template::bounds::Limits;
use crate::vocab::duration::parse_duration;

/// The window a report looks back over when neither the job nor `--window` says.
const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// What the command line asked for.
pub struct Request<'a> {
    pub job: Option<&'a str>,
    pub templates: &'a [PathBuf],
    pub window: Option<&'a str>,
    pub at: Option<&'a str>,
    pub out: Option<&'a Path>,
    pub out_dir: Option<&'a Path>,
    pub as_json: bool,
}

pub fn run(file: &Path, request: &Request<'_>) -> u8 {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let chosen = match choose_job(&config, request.job) {
        Ok(chosen) => chosen,
        Err(code) => return code,
    };
    let window = match request.window {
        Some(text) => match parse_window(text) {
            Ok(window) => window,
            Err(code) => return code,
        },
        None => chosen.map_or(DEFAULT_WINDOW, |(_, r)| r.window),
    };
    let templates: Vec<PathBuf> = if request.templates.is_empty() {
        chosen.map(|(_, r)| r.templates.clone()).unwrap_or_default()
    } else {
        request.templates.to_vec()
    };
    if templates.is_empty() && !request.as_json {
        super::fail(format_args!(
            "no template: name a report job that has templates, or give --template FILE (or --summary for the JSON)"
        ));
        return exit::USAGE;
    }
    if request.out.is_some() && templates.len() > 1 {
        super::fail(format_args!(
            "--out takes one rendered report; give one --template, or --out-dir DIR for each"
        ));
        return exit::USAGE;
    }
    let to = match request.at {
        Some(text) => match super::parse_time(&config.zone, "--at", text) {
            Some(at) => at,
            None => return exit::USAGE,
        },
        None => chrono::Utc::now(),
    };
    let name = chosen.map_or("report", |(n, _)| n);
    let title = chosen.map_or_else(
        || "Performance report".to_string(),
        |(_, r)| r.title_for(window),
    );
    let summary = crate::report::summary::build(&config, name, &title, window, to);
    if request.as_json {
        return match serde_json::to_string_pretty(&summary) {
            Ok(text) => {
                outln!("{text}");
                exit::OK
            }
            Err(e) => {
                super::fail(format_args!("{e}"));
                exit::FAILED
            }
        };
    }
    let (outputs, problems) =
        crate::report::render_all(&templates, &summary, &config.zone, &Limits::report());
    for problem in &problems {
        super::fail(format_args!("{problem}"));
    }
    let written = match (request.out_dir, request.out) {
        (Some(dir), _) => write_each(dir, name, &summary, &config, &templates, &outputs),
        (None, Some(path)) => outputs
            .first()
            .map_or(Ok(()), |output| write_one(path, &output.text)),
        (None, None) => {
            print_one(&outputs);
            Ok(())
        }
    };
    match written {
        Err(code) => code,
        Ok(()) if problems.is_empty() => exit::OK,
        Ok(()) => exit::FAILED,
    }
}

fn write_one(path: &Path, text: &str) -> Result<(), u8> {
    if let Err(e) = crate::store::atomic::write(path, text.as_bytes()) {
        super::fail(format_args!("cannot write {}: {e}", path.display()));
        return Err(exit::FAILED);
    }
    super::say(format_args!("wrote {}", path.display()));
    Ok(())
}

/// Each rendered template into `dir`, under the name the job gives its files.
fn write_each(
    dir: &Path,
    job: &str,
    summary: &crate::report::summary::Summary,
    config: &Config,
    templates: &[PathBuf],
    outputs: &[crate::report::render::Output],
) -> Result<(), u8> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        super::fail(format_args!("cannot create {}: {e}", dir.display()));
        return Err(exit::FAILED);
    }
    for output in outputs {
        let path =
            crate::report::render::output_path(dir, job, summary, &config.zone, templates, output);
        write_one(&path, &output.text)?;
    }
    Ok(())
}

/// One report on stdout: with several templates, the first that is not a web page (a terminal
/// shows Markdown and text well), and a line saying how to get the others.
fn print_one(outputs: &[crate::report::render::Output]) {
    let Some(shown) = outputs
        .iter()
        .find(|o| !matches!(o.extension.as_str(), "html" | "htm"))
        .or(outputs.first())
    else {
        return;
    };
    out!("{}", shown.text);
    let others: Vec<String> = outputs
        .iter()
        .filter(|o| !std::ptr::eq(*o, shown))
        .map(|o| o.template.display().to_string())
        .collect();
    if !others.is_empty() {
        super::say(format_args!(
            "printed {}; not printed: {} (--out-dir DIR writes each, --template FILE picks one)",
            shown.template.display(),
            others.join(", ")
        ));
    }
}

/// The report job named on the command line, or the only one; `None` when there are several
/// and none is named (the command's arguments must then say what to render).
fn choose_job<'a>(
    config: &'a Config,
    name: Option<&str>,
) -> Result<Option<(&'a str, &'a ReportSpec)>, u8> {
    let reports: Vec<(&str, &ReportSpec)> = config
        .jobs
        .iter()
        .filter_map(|(name, j)| match &j.kind {
            JobKind::Report(r) => Some((name.as_str(), r)),
            _ => None,
        })
        .collect();
    match name {
        Some(name) => match reports.iter().find(|(n, _)| *n == name) {
            Some(found) => Ok(Some(*found)),
            None => {
                let names: Vec<&str> = reports.iter().map(|(n, _)| *n).collect();
                super::fail(format_args!(
                    "no report job named `{name}` in {} (report jobs: {})",
                    config.file.display(),
                    names.join(", ")
                ));
                Err(exit::USAGE)
            }
        },
        None if reports.len() == 1 => Ok(Some(reports[0])),
        None => Ok(None),
    }
}

/// `--window`: a duration above zero.
fn parse_window(text: &str) -> Result<Duration, u8> {
    match parse_duration(text) {
        Ok(w) if !w.is_zero() => Ok(w),
        Ok(_) => {
            super::fail(format_args!("--window must be above zero"));
            Err(exit::USAGE)
        }
        Err(e) => {
            super::fail(format_args!("--window: {e}"));
            Err(exit::USAGE)
        }
    }
}
