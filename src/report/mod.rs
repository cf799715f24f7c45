//! The report job: a summary of the window from the metrics log, the alert log and the
//! incidents cache (`summary`), rendered by handlebars templates into files (`render`), and a
//! notice of it through the report job's notifiers.

pub mod alerts;
pub mod database;
pub mod incidents;
pub mod metrics;
pub mod render;
pub mod summary;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::{error, info};

use crate::config::{Config, ReportSpec};
use crate::notify::notice::ReportNotice;
use crate::scheduler::schedule::Zone;
use crate::template::TemplateProblem;
use crate::template::bounds::Limits;
use render::Output;
use summary::Summary;

/// Every template rendered against a summary: the outputs, and the problems of those that
/// failed (one bad template does not stop the others).
pub fn render_all(
    templates: &[PathBuf],
    summary: &Summary,
    zone: &Zone,
    limits: &Limits,
) -> (Vec<Output>, Vec<TemplateProblem>) {
    let mut outputs = Vec::new();
    let mut problems = Vec::new();
    for template in templates {
        match render::render(template, summary, zone, limits) {
            Ok(output) => outputs.push(output),
            Err(problem) => problems.push(problem),
        }
    }
    (outputs, problems)
}

/// A report ready to be written: the summary, each rendered file and where it goes, and the
/// templates that failed.
#[derive(Debug)]
pub struct Prepared {
    pub summary: Summary,
    pub outputs: Vec<(Output, PathBuf)>,
    pub problems: Vec<TemplateProblem>,
}

/// Builds the summary of the window ending at `now` and renders every template; without
/// templates, the summary itself is the output, as JSON. Writes nothing (dry runs stop here).
pub fn prepare(
    config: &Config,
    job: &str,
    spec: &ReportSpec,
    now: DateTime<Utc>,
    limits: &Limits,
) -> anyhow::Result<Prepared> {
    let summary = summary::build(config, job, &spec.title_for(spec.window), spec.window, now);
    let (mut outputs, problems) = render_all(&spec.templates, &summary, &config.zone, limits);
    if spec.templates.is_empty() {
        outputs.push(Output {
            template: PathBuf::from("summary.json"),
            extension: "json".into(),
            text: serde_json::to_string_pretty(&summary)?,
        });
    }
    let dir = summary::reports_dir(&config.data_dir);
    let outputs = outputs
        .into_iter()
        .map(|output| {
            let path =
                render::output_path(&dir, job, &summary, &config.zone, &spec.templates, &output);
            (output, path)
        })
        .collect();
    Ok(Prepared {
        summary,
        outputs,
        problems,
    })
}

/// What a report run did.
#[derive(Debug)]
pub struct Written {
    pub summary: Summary,
    pub files: Vec<PathBuf>,
    pub problems: Vec<TemplateProblem>,
}

/// Prepares the report and writes its files (atomically) into `data_dir/reports/`.
pub fn write(
    config: &Config,
    job: &str,
    spec: &ReportSpec,
    now: DateTime<Utc>,
    limits: &Limits,
) -> anyhow::Result<Written> {
    let prepared = prepare(config, job, spec, now, limits)?;
    let mut files = Vec::new();
    for (output, path) in &prepared.outputs {
        crate::store::atomic::write(path, output.text.as_bytes())?;
        files.push(path.clone());
    }
    Ok(Written {
        summary: prepared.summary,
        files,
        problems: prepared.problems,
    })
}

/// The notice a report's notifiers get.
pub fn notice(job: &str, summary: &Summary, files: &[PathBuf]) -> ReportNotice {
    let digest = Sha256::digest(format!("{job}/{}", summary.period.to.timestamp_millis()));
    let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    ReportNotice {
        id,
        job: job.to_string(),
        title: summary.title.clone(),
        host: summary.host.clone(),
        from: summary.period.from,
        to: summary.period.to,
        highlights: summary.highlights.clone(),
        files: files.to_vec(),
        alerts_fired: summary.alerts.fired,
        incidents_open: summary.incidents.open.len(),
        samples: summary.samples,
    }
}

/// Runs the report job: write the files, then queue the notice. A template that fails is
/// reported with its place; the run fails only when no file could be written.
pub fn run_job(
    config: &Config,
    job: &str,
    spec: &ReportSpec,
    now: DateTime<Utc>,
    notifiers: &crate::notify::Notifiers,
    limits: &Limits,
) -> anyhow::Result<String> {
    let started = std::time::Instant::now();
    let written = write(config, job, spec, now, limits)?;
    for problem in &written.problems {
        error!(job, template = %problem.path.display(), "template failed, its file was not written: {problem}");
    }
    if written.files.is_empty() {
        anyhow::bail!("no report written: every template failed");
    }
    let notice = notice(job, &written.summary, &written.files);
    notifiers.dispatch_report(&spec.notify, &notice);
    let line = format!(
        "report of {} samples from {} to {}: {}{}",
        written.summary.samples,
        config
            .zone
            .strftime(written.summary.period.from, "%Y-%m-%d %H:%M"),
        config
            .zone
            .strftime(written.summary.period.to, "%Y-%m-%d %H:%M"),
        written
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if written.problems.is_empty() {
            String::new()
        } else {
            format!(" ({} templates failed)", written.problems.len())
        }
    );
    info!(
        job,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "{line}"
    );
    Ok(line)
}
