//! `runner replay JOB --from TIME --to TIME [--rules FILE…] [--compare [FILE…]]`: a monitor
//! job's rules over its recorded metrics log (`crate::replay`), printed as an alert timeline
//! and a summary per alert, or, with `--compare`, the job's rules and the changed ones side by
//! side, alert by alert; `--format json` for machines. Nothing is sent, nothing is written.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::output::{err, errln, outln};
use super::{exit, find_job, load};
use crate::config::{Config, JobKind, MonitorSpec};
use crate::replay::{AlertSummary, Difference, Progress, Replayed, Row, Source};
use crate::rules::RuleSet;
use crate::rules::values::Schema;
use crate::vocab::duration::format_duration;
use crate::vocab::words::{format_value, plural};

/// How the answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What the command line asked for.
pub struct Request<'a> {
    pub job: &'a str,
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub rules: &'a [PathBuf],
    /// `Some` with `--compare`: its files, or none to compare with `--rules`.
    pub compare: Option<&'a [PathBuf]>,
    pub format: Format,
}

pub fn run(file: &Path, request: &Request<'_>) -> u8 {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let spec = match find_job(&config, request.job) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let JobKind::Monitor(monitor) = &spec.kind else {
        super::fail(format_args!(
            "`{}` is not a monitor job: replay steps a monitor's rules over its metrics log",
            request.job
        ));
        return exit::USAGE;
    };
    let Some(from) = super::parse_time(&config.zone, "--from", request.from) else {
        return exit::USAGE;
    };
    let to = match request.to {
        Some(text) => match super::parse_time(&config.zone, "--to", text) {
            Some(to) => to,
            None => return exit::USAGE,
        },
        None => Utc::now(),
    };
    if to <= from {
        super::fail(format_args!(
            "--to ({}) is not after --from ({}): give a period forwards in time",
            config.zone.format(to),
            config.zone.format(from)
        ));
        return exit::USAGE;
    }
    // The current side: the job's rules, or `--rules` in place of theirs when comparing
    // against `--compare`'s files.
    let (current_files, proposed_files): (&[PathBuf], Option<&[PathBuf]>) = match request.compare {
        None => (request.rules, None),
        Some([]) if request.rules.is_empty() => {
            super::fail(format_args!(
                "--compare needs the changed rule files: `--compare FILE…`, or `--rules FILE… --compare`"
            ));
            return exit::USAGE;
        }
        Some([]) => (&[], Some(request.rules)),
        Some(files) => (request.rules, Some(files)),
    };
    let Some(current) = rule_set(request.job, monitor, current_files) else {
        return exit::FAILED;
    };
    let proposed = match proposed_files {
        Some(files) => match rule_set(request.job, monitor, files) {
            Some(set) => Some(set),
            None => return exit::FAILED,
        },
        None => None,
    };
    let reader = crate::store::MetricsReader::for_config(&config);
    let source = Source {
        reader: &reader,
        data_dir: &config.data_dir,
        host: &config.host,
        job: request.job,
        flap: monitor.flap,
        actions: Arc::new(crate::alerts::action::Actions::new(config.actions.clone())),
        mute: Arc::new(crate::alerts::mute::Mute::new(
            config.mute.clone(),
            config.zone.clone(),
            None,
        )),
    };
    let sides = if proposed.is_some() { 2 } else { 1 };
    let first = with_progress(from, to, 1, sides, |progress| {
        crate::replay::replay(&source, current.clone(), from, to, progress)
    });
    if first.ticks == 0 {
        super::fail(format_args!(
            "the metrics log has no sample of `{}` from {} to {}",
            request.job,
            config.zone.format(from),
            config.zone.format(to)
        ));
        return exit::FAILED;
    }
    warn_about(&first, "");
    let period = Period {
        config: &config,
        job: request.job,
        from,
        to,
    };
    match proposed {
        None => {
            print_replay(&period, &current, &first, request.format);
            exit::OK
        }
        Some(proposed) => {
            let second = with_progress(from, to, 2, sides, |progress| {
                crate::replay::replay(&source, proposed.clone(), from, to, progress)
            });
            warn_about(&second, " (proposed rules)");
            let rows = crate::replay::compare(&first, &second);
            print_comparison(
                &period,
                [(&current, &first), (&proposed, &second)],
                &rows,
                request.format,
            );
            if differs(&rows, &first, &second) {
                exit::FAILED
            } else {
                exit::OK
            }
        }
    }
}

/// The job's rules, each of `files` in place of the job's file of the same name (or added).
/// A problem in one of `files` is said at its line and refuses the replay; a job's own file
/// that does not compile is left out, as the scheduler leaves it out.
fn rule_set(job: &str, spec: &MonitorSpec, files: &[PathBuf]) -> Option<Arc<RuleSet>> {
    if files.is_empty() {
        return Some(Arc::new(crate::monitor::load_rules(job, spec)));
    }
    let schema = || Schema::for_probes(&spec.probes);
    let (_, problems) = RuleSet::load(files, schema(), spec.rule_timeout);
    if problems.has_errors() {
        super::print_problems(&problems);
        super::say(format_args!(
            "{}: not replayed",
            plural(problems.errors().count(), "error")
        ));
        return None;
    }
    let replaced: Vec<_> = files.iter().filter_map(|f| f.file_name()).collect();
    let mut paths: Vec<PathBuf> = spec
        .rules
        .iter()
        .flat_map(|pattern| crate::glob::expand(pattern).unwrap_or_default())
        .filter(|path| {
            path.file_name()
                .is_none_or(|name| !replaced.contains(&name))
        })
        .collect();
    paths.extend(files.iter().cloned());
    let (rules, problems) = RuleSet::load(&paths, schema(), spec.rule_timeout);
    // Only the job's own files can have problems here, and the scheduler leaves them out too.
    for problem in problems.iter() {
        tracing::error!(job, at = %problem.location(), "rule left out: {}", problem.message);
    }
    Some(Arc::new(rules))
}

/// Runs `work` with a progress line on stderr when it is a terminal: ticks, rate and the
/// share of the period done (side `side` of `sides`).
fn with_progress(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    side: usize,
    sides: usize,
    work: impl FnOnce(&mut dyn FnMut(Progress)) -> Replayed,
) -> Replayed {
    let shown = std::io::stderr().is_terminal() && !crate::logging::is_json();
    let started = Instant::now();
    let mut last_shown = started;
    let span = (to - from).num_milliseconds().max(1) as f64;
    let mut progress = |p: Progress| {
        if !shown || last_shown.elapsed().as_millis() < 200 {
            return;
        }
        last_shown = Instant::now();
        let done = ((p.at - from).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
        let secs = started.elapsed().as_secs_f64();
        let rate = p.ticks as f64 / secs.max(1e-3);
        let eta = if done > 0.0 { secs / done - secs } else { 0.0 };
        let side = if sides > 1 {
            format!(" [{side}/{sides}]")
        } else {
            String::new()
        };
        err!(
            "\rreplay{side}: {} ticks, {:.0} %, {:.0} ticks/s, about {:.0} s left   ",
            p.ticks,
            done * 100.0,
            rate,
            eta
        );
    };
    let found = work(&mut progress);
    if shown && last_shown != started {
        errln!("");
    }
    found
}

/// What the log could not give, on stderr.
fn warn_about(found: &Replayed, side: &str) {
    for problem in &found.unreadable {
        super::say(format_args!("warning{side}: not read: {problem}"));
    }
    if found.bad_lines > 0 {
        super::say(format_args!(
            "warning{side}: {} of the period skipped (not samples)",
            plural(found.bad_lines as usize, "line")
        ));
    }
    if found.out_of_order > 0 {
        super::say(format_args!(
            "warning{side}: {} older than the one before skipped (the clock stepped back)",
            plural(found.out_of_order as usize, "sample")
        ));
    }
}

struct Period<'a> {
    config: &'a Config,
    job: &'a str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Period<'_> {
    fn time(&self, at: DateTime<Utc>) -> String {
        self.config.zone.strftime(at, "%Y-%m-%d %H:%M:%S")
    }

    fn header(&self, found: &Replayed) -> String {
        format!(
            "replay of `{}` from {} to {} ({}): {}, {} before it warmed history; nothing was sent",
            self.job,
            self.time(self.from),
            self.time(self.to),
            self.config.zone.name(),
            plural(found.ticks as usize, "tick"),
            plural(found.warm_samples as usize, "sample")
        )
    }

    fn spells(&self, summary: Option<&AlertSummary>) -> String {
        let Some(summary) = summary.filter(|s| !s.spells.is_empty()) else {
            return "-".to_string();
        };
        summary
            .spells
            .iter()
            .map(|s| {
                let end = s
                    .end
                    .map_or_else(|| "(firing)".to_string(), |end| self.time(end));
                format!("{}–{} {}", self.time(s.start), end, s.severity.as_str())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn rule_names(rules: &RuleSet) -> Vec<String> {
    rules.files().iter().map(|f| f.name.to_string()).collect()
}

fn secs(secs: i64) -> String {
    format_duration(std::time::Duration::from_secs(secs.max(0) as u64))
}

fn print_replay(period: &Period<'_>, rules: &RuleSet, found: &Replayed, format: Format) {
    let alerts = found.alerts();
    if format == Format::Json {
        let json = serde_json::json!({
            "job": period.job,
            "from": period.from,
            "to": period.to,
            "rules": rule_names(rules),
            "ticks": found.ticks,
            "first_tick": found.first_tick,
            "last_tick": found.last_tick,
            "warm_samples": found.warm_samples,
            "timeline": found.changes,
            "alerts": alerts,
            "events": found.events,
            "actions": found.actions,
            "rule_failures": found.rule_failures,
        });
        outln!("{json:#}");
        return;
    }
    outln!("{}", period.header(found));
    outln!("rules: {}", rule_names(rules).join(", "));
    print_failures(found, "");
    outln!();
    if found.changes.is_empty() {
        outln!("timeline: no alert changed state");
    } else {
        outln!("timeline:");
        for c in &found.changes {
            let value = c.value.map(format_value).unwrap_or_else(|| "-".into());
            outln!(
                "  {}  {}  {} → {}  [{}] value {value}{}",
                period.time(c.at),
                c.alert,
                phase(c.from),
                phase(c.to),
                c.severity.as_str(),
                if c.explanation.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.explanation)
                }
            );
        }
    }
    for run in &found.actions {
        outln!(
            "  {}  {}: would run action `{}` ({}); not run by replay",
            period.time(run.at),
            run.alert,
            run.action,
            run.command.join(" ")
        );
    }
    if alerts.is_empty() {
        return;
    }
    outln!();
    let mut table = vec![[
        "alert".to_string(),
        "spells".into(),
        "firing".into(),
        "longest".into(),
        "flaps".into(),
        "notifications".into(),
    ]];
    for a in &alerts {
        table.push([
            a.alert.clone(),
            a.spells.len().to_string(),
            secs(a.firing_secs),
            secs(a.longest_secs),
            a.flaps.to_string(),
            a.notifications.to_string(),
        ]);
    }
    print_table(&table);
}

fn print_failures(found: &Replayed, side: &str) {
    for (file, failure) in &found.rule_failures {
        outln!(
            "rule failed{side}: {file}: {} from {} on: {}",
            plural(failure.ticks as usize, "tick"),
            failure.first_at.format("%Y-%m-%d %H:%M:%S UTC"),
            failure.error
        );
    }
}

fn phase(phase: crate::alerts::lifecycle::Phase) -> &'static str {
    use crate::alerts::lifecycle::Phase;
    match phase {
        Phase::Inactive => "inactive",
        Phase::Pending => "pending",
        Phase::Firing => "firing",
    }
}

/// Columns padded to their widest cell; the last is not padded.
fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        outln!("  {}", line.trim_end());
    }
}

/// Whether the proposed rules change anything: an alert's outcome or how many notices go
/// out (the exit status and the JSON's `differs` say the same).
fn differs(rows: &[Row], first: &Replayed, second: &Replayed) -> bool {
    rows.iter().any(|r| r.difference != Difference::Same)
        || first.notifications() != second.notifications()
}

fn print_comparison(
    period: &Period<'_>,
    sides: [(&RuleSet, &Replayed); 2],
    rows: &[Row],
    format: Format,
) {
    let [(current, first), (proposed, second)] = sides;
    if format == Format::Json {
        let json = serde_json::json!({
            "job": period.job,
            "from": period.from,
            "to": period.to,
            "ticks": first.ticks,
            "current": {
                "rules": rule_names(current),
                "notifications": first.notifications(),
                "rule_failures": first.rule_failures,
            },
            "proposed": {
                "rules": rule_names(proposed),
                "notifications": second.notifications(),
                "rule_failures": second.rule_failures,
            },
            "differs": differs(rows, first, second),
            "alerts": rows,
        });
        outln!("{json:#}");
        return;
    }
    outln!("{}", period.header(first));
    outln!("current rules:  {}", rule_names(current).join(", "));
    outln!("proposed rules: {}", rule_names(proposed).join(", "));
    print_failures(first, " (current)");
    print_failures(second, " (proposed)");
    outln!();
    let mut table = vec![[
        "alert".to_string(),
        "change".into(),
        "current".into(),
        "proposed".into(),
        "what differs".into(),
    ]];
    for row in rows {
        table.push([
            row.alert.clone(),
            row.difference.as_str().to_string(),
            period.spells(row.current.as_ref()),
            period.spells(row.proposed.as_ref()),
            row.notes.join(", "),
        ]);
    }
    if rows.is_empty() {
        outln!("alerts: neither side raised one");
    } else {
        print_table(&table);
    }
    outln!();
    let changed = rows
        .iter()
        .filter(|r| r.difference != Difference::Same)
        .count();
    outln!(
        "notifications: current {}, proposed {}; {} {}",
        first.notifications(),
        second.notifications(),
        plural(changed, "alert"),
        if changed == 1 { "differs" } else { "differ" }
    );
}
