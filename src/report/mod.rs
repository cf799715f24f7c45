//! The report job: a summary of the window from the metrics log, the alert log and the
//! incidents cache (`summary`), rendered by handlebars templates into files (`render`), and a
//! notice of it through the report job's notifiers.

pub mod alerts;
pub mod cloud;
pub mod database;
pub mod fleet;
pub mod incidents;
pub mod metrics;
pub mod muted;
pub mod render;
pub mod slowest;
pub mod summary;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::{error, info};

use crate::config::{Config, ReportSpec};
use crate::notify::notice::ReportNotice;
use crate::scheduler::schedule::{WallTime, Zone};
use crate::template::TemplateProblem;
use crate::template::bounds::Limits;
use render::Output;
use summary::Summary;

/// The start of the window of length `window` that ends at `to`. A whole number of days
/// counts calendar days in `zone`: the same wall-clock time that many days before, so across
/// a DST change a day is 23 or 25 hours and a week 167 or 169, the header shows one hour at
/// both ends, and each report starts where the one before it (a day or a week earlier, at
/// the same local time) ended. A start the clocks skipped is where they jumped ahead, and
/// one they passed twice is the first: the instants a cron schedule runs such a time at, so
/// reports still meet. Other windows are fixed lengths of time.
pub fn window_start(zone: &Zone, window: std::time::Duration, to: DateTime<Utc>) -> DateTime<Utc> {
    let fixed = || to - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(7));
    let days = window.as_secs() / 86_400;
    if days == 0 || window != std::time::Duration::from_secs(days * 86_400) {
        return fixed();
    }
    let start = zone.zoned(to).and_then(|end| {
        let span = jiff::Span::new().try_days(i64::try_from(days).ok()?).ok()?;
        let civil = end.datetime().checked_sub(span).ok()?;
        match zone.wall_time(civil)? {
            WallTime::One(at) => Some(at),
            WallTime::Skipped { gap_end } => Some(gap_end),
            WallTime::Twice { first, .. } => Some(first),
        }
    });
    // Out of the calendar's range (year 9999): the fixed length is all there is.
    start.unwrap_or_else(fixed)
}

/// Every template rendered against a summary: the outputs, and the problems of those that
/// failed (one bad template does not stop the others).
pub fn render_all(
    templates: &[PathBuf],
    summary: &impl serde::Serialize,
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
    if let Some(source) = &spec.source {
        return prepare_fleet(config, job, spec, source, now, limits);
    }
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

/// A fleet report (`source:`): the fleet summary read from the query API, rendered by the
/// same templates machinery; the notice and file names come from a host-less `Summary` of it.
fn prepare_fleet(
    config: &Config,
    job: &str,
    spec: &ReportSpec,
    source: &crate::config::FleetSource,
    now: DateTime<Utc>,
    limits: &Limits,
) -> anyhow::Result<Prepared> {
    let from = window_start(&config.zone, spec.window, now);
    let nominal = chrono::Duration::from_std(spec.window).unwrap_or(chrono::Duration::days(7));
    let fleet = fleet::build(
        config,
        job,
        &spec.title_for(spec.window),
        source,
        from,
        now,
        summary::window_label(nominal),
    )?;
    let (mut outputs, problems) = render_all(&spec.templates, &fleet, &config.zone, limits);
    if spec.templates.is_empty() {
        outputs.push(Output {
            template: PathBuf::from("summary.json"),
            extension: "json".into(),
            text: serde_json::to_string_pretty(&fleet)?,
        });
    }
    let summary = fleet.notice_summary(nominal);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn berlin() -> Zone {
        Zone::parse("Europe/Berlin").unwrap()
    }

    fn local(zone: &Zone, text: &str) -> DateTime<Utc> {
        zone.parse_time(text).unwrap().0
    }

    const DAY: Duration = Duration::from_secs(86_400);
    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    /// Consecutive reports ending at `ends`: each starts where the one before ended, and its
    /// length in hours.
    #[track_caller]
    fn tiled_hours(zone: &Zone, window: Duration, ends: &[&str]) -> Vec<i64> {
        let ends: Vec<DateTime<Utc>> = ends.iter().map(|e| local(zone, e)).collect();
        for pair in ends.windows(2) {
            assert_eq!(window_start(zone, window, pair[1]), pair[0], "{pair:?}");
        }
        ends.iter()
            .map(|end| {
                let from = window_start(zone, window, *end);
                // The same local hour at both ends, as the report's header shows them.
                assert_eq!(zone.strftime(from, "%H:%M"), zone.strftime(*end, "%H:%M"));
                (*end - from).num_hours()
            })
            .collect()
    }

    #[test]
    fn weekly_windows_are_calendar_weeks_that_tile_across_dst() {
        let zone = berlin();
        // Summer time ends 2026-10-25 (03:00 CEST -> 02:00 CET): that week has 169 hours.
        let autumn = [
            "2026-10-12 09:00",
            "2026-10-19 09:00",
            "2026-10-26 09:00",
            "2026-11-02 09:00",
        ];
        assert_eq!(tiled_hours(&zone, WEEK, &autumn), [168, 168, 169, 168]);
        // It starts 2026-03-29 (02:00 CET -> 03:00 CEST): that week has 167 hours.
        let spring = [
            "2026-03-16 09:00",
            "2026-03-23 09:00",
            "2026-03-30 09:00",
            "2026-04-06 09:00",
        ];
        assert_eq!(tiled_hours(&zone, WEEK, &spring), [168, 168, 167, 168]);
    }

    #[test]
    fn daily_windows_are_calendar_days_and_hours_stay_fixed() {
        let zone = berlin();
        let days = [
            "2026-10-24 00:00",
            "2026-10-25 00:00",
            "2026-10-26 00:00",
            "2026-10-27 00:00",
        ];
        assert_eq!(tiled_hours(&zone, DAY, &days), [24, 24, 25, 24]);
        let days = ["2026-03-29 00:00", "2026-03-30 00:00"];
        assert_eq!(tiled_hours(&zone, DAY, &days), [24, 23]);
        // Three calendar days across the change.
        let to = local(&zone, "2026-03-30 12:00");
        assert_eq!((to - window_start(&zone, 3 * DAY, to)).num_hours(), 71);
        // A window that is not whole days is a fixed length of time.
        for window in [Duration::from_secs(3_600), Duration::from_secs(36 * 3_600)] {
            assert_eq!(
                (to - window_start(&zone, window, to)).to_std().unwrap(),
                window
            );
        }
        assert_eq!(
            window_start(&Zone::utc(), WEEK, to),
            to - chrono::Duration::days(7)
        );
    }

    #[test]
    fn a_start_the_clocks_skipped_or_repeated_is_where_cron_runs_that_time() {
        let zone = berlin();
        let schedule = crate::scheduler::schedule::Schedule::parse("30 2 * * *").unwrap();
        // Daily at 02:30 through both changes: each report starts where the last one ended
        // (the run of 2026-03-29 is at 03:00 CEST, the end of the skipped hour; that of
        // 2026-10-25 at the first 02:30).
        for start in ["2026-03-26T12:00:00Z", "2026-10-22T12:00:00Z"] {
            let start = DateTime::parse_from_rfc3339(start).unwrap().to_utc();
            let runs = schedule.upcoming(start, &zone, 6);
            for pair in runs.windows(2).skip(1) {
                if zone.strftime(pair[1], "%H:%M") != "02:30" {
                    // The run the clocks moved: its window starts at its own wall time.
                    continue;
                }
                assert_eq!(window_start(&zone, DAY, pair[1]), pair[0], "{runs:?}");
            }
        }
        let to = local(&zone, "2026-03-30 02:30");
        assert_eq!(
            zone.format(window_start(&zone, DAY, to)),
            "2026-03-29 03:00:00 +02:00"
        );
        let to = local(&zone, "2026-10-26 02:30");
        assert_eq!(
            zone.format(window_start(&zone, DAY, to)),
            "2026-10-25 02:30:00 +02:00"
        );
    }
}
