//! From the jobs file's text to a checked `Config`: parse (one pass per section), expand
//! `${VAR}`, resolve paths, check every value, and collect every problem on the way.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::{Location, MessageFormatter};

use super::env::{EnvError, Expanded, expand_with};
use super::raw::{
    self, GroupBy, JobConfig, NotifierConfig, RawConfig, ServicenowNotifierConfig, Text,
};
use super::sections;
use super::{
    Config, DeliverySpec, FetchSpec, FlapPolicy, GdriveSettings, JobKind, JobSpec, MonitorSpec,
    NotifierSettings, NotifierSpec, ReportSpec, RotateSpec, Secret, ServicenowAuth,
    ServicenowSettings, resolve_path,
};
use crate::diagnostic::{Problem, Problems};
use crate::scheduler::schedule::{Schedule, Zone};
use crate::vocab::Severity;
use crate::vocab::duration::parse_duration;
use crate::vocab::size::parse_size;
use crate::vocab::suggest::closest;

mod probes;

/// Reads an environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_REPORT_WINDOW: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
const DEFAULT_BURST: u32 = 3;
/// Slack asks for about one message a second per webhook.
const SLACK_MAX_PER_SECOND: f64 = 1.0;
const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_UPLOAD_URL: &str = "https://www.googleapis.com/upload/drive/v3/files";
const DEFAULT_PAGE_SIZE: u32 = 100;
const DEFAULT_COMPRESSION: u32 = 6;
const SCHEDULE_HELP: &str = "examples: `*/5 * * * *` (every 5 minutes), `0 8 * * Mon` (Mondays 08:00), `30 2 * * *`, `@daily`, `@every 10s`";

/// Reads `file` and builds the config, or returns every problem found.
/// On success, warnings (a notifier left off) are in `Config::warnings`.
pub fn load(file: &Path, env: EnvLookup<'_>) -> Result<Config, Problems> {
    let source = std::fs::read_to_string(file).map_err(|e| {
        Problem::error(file, format!("cannot read the jobs file: {e}"))
            .help("pass the jobs file with `--jobs FILE` (default: jobs/jobs.yaml)")
    })?;
    parse(file, &source, env)
}

/// Builds the config from a jobs file's text; `file` names it in problems and anchors
/// relative paths.
pub fn parse(file: &Path, source: &str, env: EnvLookup<'_>) -> Result<Config, Problems> {
    let raw = parse_sections(file, source)?;
    let mut builder = Builder {
        file,
        base_dir: file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        env,
        problems: raw.problems,
    };
    let config = builder.config(raw.top, raw.notifiers, raw.jobs);
    if builder.problems.has_errors() {
        return Err(builder.problems.sorted());
    }
    config.ok_or_else(|| builder.problems.sorted())
}

struct ParsedSections {
    top: RawConfig,
    notifiers: Vec<(Text, Option<NotifierConfig>)>,
    jobs: Vec<(Text, Option<JobConfig>)>,
    problems: Problems,
}

/// Parses the top level once, then each job and notifier in a pass of its own, so one broken
/// section does not hide problems in the others.
fn parse_sections(file: &Path, source: &str) -> Result<ParsedSections, Problems> {
    if is_blank(source) {
        return Err(Problem::error(file, "the jobs file is empty")
            .at(1, 1, 1)
            .help(
                "it needs at least `data_dir:` and `jobs:`; jobs/jobs.yaml is a commented example",
            )
            .into());
    }
    let (top, section_count) = sections::pass(None, || parse_raw(source));
    let top = top.map_err(|e| Problems::from(yaml_problem(file, source, e)))?;
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
    let mut problems = Problems::default();
    for index in 0..section_count {
        match sections::pass(Some(index), || parse_raw(source)).0 {
            Err(mut e) => {
                if let Some((kind, name)) = order.get(index) {
                    e.path = name_section(&e.path, kind, &name.value);
                }
                problems.push(yaml_problem(file, source, e));
            }
            Ok(parsed) => {
                for (slot, section) in notifiers.iter_mut().zip(parsed.notifiers.into_values()) {
                    if let Some(value) = section.into_parsed() {
                        slot.1 = Some(value);
                    }
                }
                for (slot, section) in jobs.iter_mut().zip(parsed.jobs.into_values()) {
                    if let Some(value) = section.into_parsed() {
                        slot.1 = Some(value);
                    }
                }
            }
        }
    }
    Ok(ParsedSections {
        top,
        notifiers,
        jobs,
        problems,
    })
}

/// A YAML or shape error with the field path where it happened.
struct YamlError {
    error: Box<serde_saphyr::Error>,
    path: String,
}

fn parse_raw(source: &str) -> Result<RawConfig, YamlError> {
    let path = RefCell::new(String::new());
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::with_deserializer_from_str_with_options(source, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
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
        for (offset, text) in source.lines().skip(from).take(3).enumerate() {
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
/// for a key it could not name, and the `value` field of a `Spanned` list item.
fn clean_field_path(path: &str) -> String {
    path.trim_matches('.')
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

fn valid_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(super) struct Builder<'a> {
    file: &'a Path,
    base_dir: PathBuf,
    env: EnvLookup<'a>,
    problems: Problems,
}

impl Builder<'_> {
    pub(super) fn problem(
        &self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
    ) -> Problem {
        Problem::error(self.file, message)
            .at(at.line(), at.column(), at.span().len())
            .field(field)
    }

    pub(super) fn error(&mut self, at: &Location, field: &str, message: impl Into<String>) {
        let problem = self.problem(at, field, message);
        self.problems.push(problem);
    }

    pub(super) fn error_help(
        &mut self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
        help: &str,
    ) {
        let problem = self.problem(at, field, message).help(help);
        self.problems.push(problem);
    }

    pub(super) fn warn(
        &mut self,
        at: &Location,
        field: &str,
        message: impl Into<String>,
        help: String,
    ) {
        let mut problem = self.problem(at, field, message).help(help);
        problem.severity = crate::diagnostic::Severity::Warning;
        self.problems.push(problem);
    }

    /// `${VAR}` expanded, or a problem recorded at the string's position.
    pub(super) fn expand(&mut self, text: &Text, field: &str) -> Option<Expanded> {
        match expand_with(&text.value, self.env) {
            Ok(expanded) => Some(expanded),
            Err(e) => {
                let help = e.help();
                let message = match &e {
                    EnvError::Unset(_) => format!("{e} (used in `{field}`)"),
                    _ => format!("{e} in `{}`", text.value),
                };
                self.error_help(&text.referenced, field, message, help);
                None
            }
        }
    }

    pub(super) fn string(&mut self, text: &Text, field: &str) -> Option<String> {
        self.expand(text, field).map(|e| e.value)
    }

    pub(super) fn path(&mut self, text: &Text, field: &str) -> Option<PathBuf> {
        self.string(text, field)
            .map(|p| resolve_path(&self.base_dir, &p))
    }

    pub(super) fn duration(&mut self, text: &Text, field: &str) -> Option<Duration> {
        let value = self.string(text, field)?;
        match parse_duration(&value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(&text.referenced, field, e.to_string());
                None
            }
        }
    }

    pub(super) fn optional_duration(
        &mut self,
        text: Option<&Text>,
        field: &str,
        default: Duration,
    ) -> Option<Duration> {
        match text {
            Some(text) => self.duration(text, field),
            None => Some(default),
        }
    }

    fn config(
        &mut self,
        top: RawConfig,
        notifiers: Vec<(Text, Option<NotifierConfig>)>,
        jobs: Vec<(Text, Option<JobConfig>)>,
    ) -> Option<Config> {
        let data_dir = self.path(&top.data_dir, "data_dir");
        let zone = match &top.timezone {
            None => Some(Zone::local()),
            Some(tz) => match Zone::parse(tz.value.trim()) {
                Ok(zone) => Some(zone),
                Err(message) => {
                    self.error(&tz.referenced, "timezone", message);
                    None
                }
            },
        };
        let host = match &top.host {
            Some(host) => self.string(host, "host"),
            None => Some(local_hostname()),
        };
        let shutdown_grace = self.optional_duration(
            top.shutdown_grace.as_ref(),
            "shutdown_grace",
            DEFAULT_SHUTDOWN_GRACE,
        );
        if top.jobs.is_empty() {
            let at = top.data_dir.referenced;
            self.error_help(
                &at,
                "jobs",
                "the jobs file has no jobs",
                "add at least one job under `jobs:`; jobs/jobs.yaml is a commented example",
            );
        }

        let mut built_notifiers = IndexMap::new();
        for (name, config) in notifiers {
            if !valid_job_name(&name.value) || name.value == "log" {
                let message = if name.value == "log" {
                    "`log` is built in and cannot be redefined; pick another name".to_string()
                } else {
                    format!(
                        "invalid notifier name `{}`: use lowercase letters, digits, `-` and `_`",
                        name.value
                    )
                };
                self.error(
                    &name.referenced,
                    &format!("notifiers.{}", name.value),
                    message,
                );
                continue;
            }
            if let Some(spec) = config.and_then(|c| self.notifier(&name, c)) {
                built_notifiers.insert(name.value.clone(), spec);
            }
        }
        let known_notifiers: Vec<String> = std::iter::once("log".to_string())
            .chain(built_notifiers.keys().cloned())
            .collect();

        let mut built_jobs = IndexMap::new();
        for (name, config) in jobs {
            let field = format!("jobs.{}", name.value);
            if !valid_job_name(&name.value) {
                self.error(
                    &name.referenced,
                    &field,
                    format!(
                        "invalid job name `{}`: use lowercase letters, digits, `-` and `_` (it names files and locks)",
                        name.value
                    ),
                );
                continue;
            }
            let Some(config) = config else { continue };
            if let Some(spec) = self.job(
                &name.value,
                config,
                &known_notifiers,
                &built_notifiers,
                data_dir.as_deref(),
            ) {
                built_jobs.insert(name.value.clone(), spec);
            }
        }

        Some(Config {
            file: self.file.to_path_buf(),
            base_dir: self.base_dir.clone(),
            data_dir: data_dir?,
            zone: zone?,
            host: host?,
            shutdown_grace: shutdown_grace?,
            notifiers: built_notifiers,
            jobs: built_jobs,
            warnings: self.problems.clone(),
        })
    }

    fn notify_list(
        &mut self,
        list: Option<&Vec<Text>>,
        field: &str,
        known: &[String],
        default: &[&str],
        refuse: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        let Some(list) = list else {
            return default.iter().map(|s| s.to_string()).collect();
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            if let Some(why) = refuse(&item.value) {
                self.error_help(
                    &item.referenced,
                    &format!("{field}.notify[{i}]"),
                    why,
                    "reports go to slack, webhook, gdrive or log; alerts to every type but gdrive",
                );
            } else if known.contains(&item.value) {
                out.push(item.value.clone());
            } else {
                let help = match closest(&item.value, known.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "define it under `notifiers:` or use one of the defined names".into(),
                };
                self.error_help(
                    &item.referenced,
                    &format!("{field}.notify[{i}]"),
                    format!(
                        "unknown notifier `{}` (defined: {})",
                        item.value,
                        known.join(", ")
                    ),
                    &help,
                );
            }
        }
        out
    }

    fn job(
        &mut self,
        name: &str,
        config: JobConfig,
        known_notifiers: &[String],
        notifiers: &IndexMap<String, NotifierSpec>,
        data_dir: Option<&Path>,
    ) -> Option<JobSpec> {
        let field = format!("jobs.{name}");
        let common = config.common();
        let schedule = match Schedule::parse(&common.schedule.value) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error_help(
                    &common.schedule.referenced,
                    &format!("{field}.schedule"),
                    format!("invalid schedule `{}`: {}", common.schedule.value, e.reason),
                    SCHEDULE_HELP,
                );
                None
            }
        };
        let timeout = match common.timeout {
            Some(t) => Some(self.duration(t, &format!("{field}.timeout"))?),
            None => None,
        };
        let description = common.description.map(str::to_string);
        let enabled = common.enabled;
        let mut off = None;
        let kind = match config {
            JobConfig::Monitor(job) => {
                let flap_default = FlapPolicy::default();
                JobKind::Monitor(MonitorSpec {
                    rules: job
                        .rules
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| self.path(r, &format!("{field}.rules[{i}]")))
                        .collect(),
                    notify: self.notify_list(
                        job.notify.as_ref(),
                        &field,
                        known_notifiers,
                        &["log"],
                        &|name| match notifiers.get(name).map(|n| &n.settings) {
                            Some(NotifierSettings::Gdrive(_)) => Some(format!(
                                "`{name}` is a gdrive notifier: it takes reports, not alerts"
                            )),
                            _ => None,
                        },
                    ),
                    rule_timeout: self.optional_duration(
                        job.rule_timeout.as_ref(),
                        &format!("{field}.rule_timeout"),
                        super::DEFAULT_RULE_TIMEOUT,
                    )?,
                    flap: FlapPolicy {
                        max_transitions: job
                            .flap_transitions
                            .map_or(flap_default.max_transitions, |n| n as usize),
                        window: self.optional_duration(
                            job.flap_window.as_ref(),
                            &format!("{field}.flap_window"),
                            flap_default.window,
                        )?,
                    },
                    probes: self.probes(job.probes, &field),
                })
            }
            JobConfig::Report(job) => {
                let window = self.optional_duration(
                    job.window.as_ref(),
                    &format!("{field}.window"),
                    DEFAULT_REPORT_WINDOW,
                )?;
                JobKind::Report(ReportSpec {
                    title: job.title.clone().unwrap_or_else(|| {
                        if window == DEFAULT_REPORT_WINDOW {
                            "Weekly performance report"
                        } else {
                            "Performance report"
                        }
                        .to_string()
                    }),
                    window,
                    templates: job
                        .templates
                        .iter()
                        .enumerate()
                        .filter_map(|(i, t)| self.path(t, &format!("{field}.templates[{i}]")))
                        .collect(),
                    notify: self.notify_list(
                        job.notify.as_ref(),
                        &field,
                        known_notifiers,
                        &[],
                        &|name| match notifiers.get(name).map(|n| &n.settings) {
                            Some(
                                s @ (NotifierSettings::Servicenow(_)
                                | NotifierSettings::Alertmanager { .. }),
                            ) => Some(format!(
                                "`{name}` is a {} notifier: it takes alerts, not reports",
                                s.type_name()
                            )),
                            _ => None,
                        },
                    ),
                })
            }
            JobConfig::ServicenowFetch(job) => {
                let from = &job.from;
                let servicenow = match notifiers.get(&from.value) {
                    Some(NotifierSpec {
                        settings: NotifierSettings::Servicenow(settings),
                        off: notifier_off,
                        ..
                    }) => {
                        if let Some(reason) = notifier_off {
                            off = Some(format!(
                                "its ServiceNow notifier `{}` is off: {reason}",
                                from.value
                            ));
                        }
                        Some(settings.clone())
                    }
                    Some(other) => {
                        self.error(
                            &from.referenced,
                            &format!("{field}.from"),
                            format!(
                                "`from` must name a notifier of type `servicenow`; `{}` is a {} notifier",
                                from.value,
                                other.settings.type_name()
                            ),
                        );
                        None
                    }
                    None => {
                        let servicenow_names: Vec<&str> = notifiers
                            .values()
                            .filter(|n| matches!(n.settings, NotifierSettings::Servicenow(_)))
                            .map(|n| n.name.as_str())
                            .collect();
                        self.error_help(
                            &from.referenced,
                            &format!("{field}.from"),
                            format!("unknown notifier `{}` in `from`", from.value),
                            &if servicenow_names.is_empty() {
                                "define a notifier with `type: servicenow` under `notifiers:`"
                                    .to_string()
                            } else {
                                format!("servicenow notifiers: {}", servicenow_names.join(", "))
                            },
                        );
                        None
                    }
                };
                let page_size = job.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
                if !(1..=10_000).contains(&page_size) {
                    let at = from.referenced;
                    self.error(
                        &at,
                        &format!("{field}.page_size"),
                        format!("`page_size` must be between 1 and 10000, not {page_size}"),
                    );
                }
                JobKind::ServicenowFetch(Box::new(FetchSpec {
                    from: from.value.clone(),
                    delivery: notifiers.get(&from.value).map(|n| n.delivery.clone()),
                    servicenow: if off.is_some() { None } else { servicenow },
                    query: job.query,
                    fields: job.fields,
                    page_size,
                }))
            }
            JobConfig::Rotate(job) => self.rotate(job, &field, data_dir)?,
        };
        Some(JobSpec {
            name: name.to_string(),
            schedule: schedule?,
            description,
            enabled,
            timeout,
            kind,
            off,
        })
    }

    fn rotate(
        &mut self,
        job: raw::RotateJobConfig,
        field: &str,
        data_dir: Option<&Path>,
    ) -> Option<JobKind> {
        let paths: Vec<PathBuf> = job
            .paths
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.path(p, &format!("{field}.paths[{i}]")))
            .collect();
        let max_age = self.duration(&job.max_age, &format!("{field}.max_age"));
        let max_size = match &job.max_size {
            None => None,
            Some(text) => match parse_size(&text.value) {
                Ok(size) => Some(size),
                Err(e) => {
                    self.error(
                        &text.referenced,
                        &format!("{field}.max_size"),
                        e.to_string(),
                    );
                    None
                }
            },
        };
        let archive_dir = match &job.archive_dir {
            Some(dir) => self.path(dir, &format!("{field}.archive_dir")),
            None => data_dir.map(|d| d.join("archive")),
        };
        let archive_max_age = match &job.archive_max_age {
            Some(t) => Some(self.duration(t, &format!("{field}.archive_max_age"))?),
            None => None,
        };
        let compression = match &job.compression {
            Some(level) if level.value > 9 => {
                self.error(
                    &level.referenced,
                    &format!("{field}.compression"),
                    format!(
                        "`compression` is a deflate level from 0 to 9, not {}",
                        level.value
                    ),
                );
                DEFAULT_COMPRESSION
            }
            Some(level) => level.value,
            None => DEFAULT_COMPRESSION,
        };
        Some(JobKind::Rotate(RotateSpec {
            paths,
            max_age: max_age?,
            max_size,
            archive_dir: archive_dir?,
            archive_max_age,
            keep_archives: job.keep_archives,
            group_by: job.group_by.unwrap_or(GroupBy::Day),
            compression,
        }))
    }

    fn notifier(&mut self, name: &Text, config: NotifierConfig) -> Option<NotifierSpec> {
        let field = format!("notifiers.{}", name.value);
        let delivery = self.delivery(&config, &field)?;
        let min_severity = config.common().min_severity;
        let mut off: Option<(String, Location, String)> = None;
        let mut switch_off = |reason: String, at: Location, vars: &[String]| {
            if off.is_none() {
                let help = if vars.is_empty() {
                    "fill it in to turn the notifier on".to_string()
                } else {
                    format!("set {} to turn the notifier on", vars.join(" and "))
                };
                off = Some((reason, at, help));
            }
        };
        let settings = match config {
            NotifierConfig::Slack(n) => {
                let url = self.expand(&n.webhook_url, &format!("{field}.webhook_url"))?;
                if url.value.is_empty() {
                    switch_off(
                        "`webhook_url` is empty".into(),
                        n.webhook_url.referenced,
                        &url.vars,
                    );
                } else {
                    self.check_url(&url.value, &n.webhook_url, &format!("{field}.webhook_url"));
                }
                NotifierSettings::Slack {
                    webhook_url: Secret::new(url.value),
                    template: match &n.template {
                        Some(t) => Some(self.path(t, &format!("{field}.template"))?),
                        None => None,
                    },
                }
            }
            NotifierConfig::Webhook(n) => {
                let url = self.expand(&n.url, &format!("{field}.url"))?;
                if url.value.is_empty() {
                    switch_off("`url` is empty".into(), n.url.referenced, &url.vars);
                } else {
                    self.check_url(&url.value, &n.url, &format!("{field}.url"));
                }
                let mut headers = Vec::new();
                for (key, value) in &n.headers {
                    let value = self.string(value, &format!("{field}.headers.{key}"))?;
                    headers.push((key.clone(), Secret::new(value)));
                }
                let signing_secret = match &n.signing_secret {
                    Some(s) => Some(
                        self.string(s, &format!("{field}.signing_secret"))
                            .map(Secret::new)?,
                    )
                    .filter(|s| !s.is_empty()),
                    None => None,
                };
                NotifierSettings::Webhook {
                    url: Secret::new(url.value),
                    headers,
                    signing_secret,
                }
            }
            NotifierConfig::Servicenow(n) => {
                let settings = self.servicenow(&n, &field, &mut switch_off)?;
                NotifierSettings::Servicenow(settings)
            }
            NotifierConfig::Alertmanager(n) => {
                let mut urls = Vec::new();
                let mut vars = Vec::new();
                for (i, u) in n.urls.iter().enumerate() {
                    let url_field = format!("{field}.urls[{i}]");
                    let expanded = self.expand(u, &url_field)?;
                    vars.extend(expanded.vars);
                    if !expanded.value.is_empty() {
                        self.check_url(&expanded.value, u, &url_field);
                        urls.push(expanded.value.trim_end_matches('/').to_string());
                    }
                }
                if urls.is_empty() {
                    switch_off("no Alertmanager URL is set".into(), name.referenced, &vars);
                }
                NotifierSettings::Alertmanager {
                    urls,
                    resend_interval: self.optional_duration(
                        n.resend_interval.as_ref(),
                        &format!("{field}.resend_interval"),
                        DEFAULT_RESEND_INTERVAL,
                    )?,
                }
            }
            NotifierConfig::Gdrive(n) => {
                let mut values = Vec::new();
                for (key, text) in [
                    ("folder_id", &n.folder_id),
                    ("client_id", &n.client_id),
                    ("client_secret", &n.client_secret),
                    ("refresh_token", &n.refresh_token),
                ] {
                    let expanded = self.expand(text, &format!("{field}.{key}"))?;
                    if expanded.value.is_empty() {
                        switch_off(format!("`{key}` is empty"), text.referenced, &expanded.vars);
                    }
                    values.push(expanded.value);
                }
                let mut values = values.into_iter();
                let mut next = || values.next().unwrap_or_default();
                let mut endpoint =
                    |text: &Option<Text>, key: &str, default: &str| -> Option<String> {
                        match text {
                            Some(t) => {
                                let url = self.string(t, &format!("{field}.{key}"))?;
                                self.check_url(&url, t, &format!("{field}.{key}"));
                                Some(url)
                            }
                            None => Some(default.to_string()),
                        }
                    };
                let token_url = endpoint(&n.token_url, "token_url", GOOGLE_TOKEN_URL)?;
                let upload_url = endpoint(&n.upload_url, "upload_url", GOOGLE_UPLOAD_URL)?;
                NotifierSettings::Gdrive(GdriveSettings {
                    folder_id: next(),
                    client_id: next(),
                    client_secret: Secret::new(next()),
                    refresh_token: Secret::new(next()),
                    token_url,
                    upload_url,
                })
            }
        };
        let default_severity = match settings {
            NotifierSettings::Servicenow(_) => Severity::Critical,
            _ => Severity::Info,
        };
        let off = off.map(|(reason, at, help)| {
            self.warn(
                &at,
                &field,
                format!("notifier `{}` is off: {reason}", name.value),
                help,
            );
            reason
        });
        Some(NotifierSpec {
            name: name.value.clone(),
            min_severity: min_severity.unwrap_or(default_severity),
            settings,
            delivery,
            off,
        })
    }

    /// The delivery settings every notifier has, with each type's defaults.
    fn delivery(&mut self, config: &NotifierConfig, field: &str) -> Option<DeliverySpec> {
        let common = config.common();
        let slack = matches!(config, NotifierConfig::Slack(_));
        let timeout = self.optional_duration(
            common.timeout,
            &format!("{field}.timeout"),
            DEFAULT_REQUEST_TIMEOUT,
        );
        let retry_initial = self.optional_duration(
            common.retry_initial,
            &format!("{field}.retry_initial"),
            DEFAULT_RETRY_INITIAL,
        );
        let retry_max = self.optional_duration(
            common.retry_max,
            &format!("{field}.retry_max"),
            DEFAULT_RETRY_MAX,
        );
        let group_wait = match config {
            NotifierConfig::Slack(n) => self.optional_duration(
                n.group_wait.as_ref(),
                &format!("{field}.group_wait"),
                DEFAULT_GROUP_WAIT,
            ),
            _ => Some(Duration::ZERO),
        };
        let max_per_second = match common.max_per_second {
            Some(rate) if !(rate.value > 0.0 && rate.value.is_finite()) => {
                self.error_help(
                    &rate.referenced,
                    &format!("{field}.max_per_second"),
                    format!("`max_per_second` must be above 0, not {}", rate.value),
                    "leave it out for no limit",
                );
                None
            }
            Some(rate) => Some(rate.value),
            None if slack => Some(SLACK_MAX_PER_SECOND),
            None => None,
        };
        let (timeout, retry_initial, retry_max, group_wait) =
            (timeout?, retry_initial?, retry_max?, group_wait?);
        if retry_initial > retry_max
            && let Some(text) = common.retry_initial
        {
            self.error(
                &text.referenced,
                &format!("{field}.retry_initial"),
                "`retry_initial` is longer than `retry_max`",
            );
        }
        Some(DeliverySpec {
            timeout,
            retry_initial,
            retry_max,
            max_per_second,
            burst: common.burst.unwrap_or(DEFAULT_BURST).max(1),
            group_wait,
        })
    }

    fn servicenow(
        &mut self,
        n: &ServicenowNotifierConfig,
        field: &str,
        switch_off: &mut impl FnMut(String, Location, &[String]),
    ) -> Option<ServicenowSettings> {
        let instance = self.expand(&n.instance, &format!("{field}.instance"))?;
        let mut opt = |text: &Option<Text>, key: &str| -> Option<Expanded> {
            match text {
                Some(t) => self.expand(t, &format!("{field}.{key}")),
                None => Some(Expanded {
                    value: String::new(),
                    vars: Vec::new(),
                }),
            }
        };
        let username = opt(&n.username, "username")?;
        let password = opt(&n.password, "password")?;
        let token = opt(&n.token, "token")?;
        let client_id = opt(&n.client_id, "client_id")?;
        let client_secret = opt(&n.client_secret, "client_secret")?;
        let timeout = self.optional_duration(
            n.timeout.as_ref(),
            &format!("{field}.timeout"),
            DEFAULT_REQUEST_TIMEOUT,
        )?;

        let base_url = instance_url(instance.value.trim());
        if instance.value.trim().is_empty() {
            switch_off(
                "`instance` is empty".into(),
                n.instance.referenced,
                &instance.vars,
            );
        } else if base_url.is_none() {
            self.error_help(
                &n.instance.referenced,
                &format!("{field}.instance"),
                format!("invalid ServiceNow instance `{}`", instance.value),
                "give the instance name (`dev12345`) or its full URL (`https://dev12345.service-now.com`)",
            );
        }
        let has = |e: &Expanded| !e.value.is_empty();
        let auth = if has(&token) {
            Some(ServicenowAuth::Bearer(Secret::new(token.value)))
        } else if has(&client_id) && has(&client_secret) {
            Some(if has(&username) && has(&password) {
                ServicenowAuth::OAuthPassword {
                    client_id: client_id.value,
                    client_secret: Secret::new(client_secret.value),
                    username: username.value,
                    password: Secret::new(password.value),
                }
            } else {
                ServicenowAuth::OAuthClientCredentials {
                    client_id: client_id.value,
                    client_secret: Secret::new(client_secret.value),
                }
            })
        } else if has(&username) && has(&password) {
            Some(ServicenowAuth::Basic {
                username: username.value,
                password: Secret::new(password.value),
            })
        } else {
            let vars: Vec<String> = [&username, &password, &token, &client_id, &client_secret]
                .iter()
                .flat_map(|e| e.vars.iter().cloned())
                .collect();
            switch_off(
                "no credentials: set `username` and `password`, `token`, or `client_id` and `client_secret`".into(),
                n.instance.referenced,
                &vars,
            );
            None
        };
        Some(ServicenowSettings {
            base_url: base_url.unwrap_or_default(),
            auth: auth.unwrap_or(ServicenowAuth::Bearer(Secret::default())),
            category: n.category.clone().unwrap_or_else(|| "performance".into()),
            close_code: n
                .close_code
                .clone()
                .unwrap_or_else(|| "Solved (Permanently)".into()),
            close_notes: n.close_notes.clone().unwrap_or_else(|| {
                "Resolved by runner: the alert that opened this incident has cleared.".into()
            }),
            timeout,
        })
    }

    /// Checks that a URL has an http(s) scheme without ever echoing it: URLs can be secrets.
    fn check_url(&mut self, url: &str, text: &Text, field: &str) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.error_help(
                &text.referenced,
                field,
                "this is not an http:// or https:// URL",
                "check the value (or the environment variable it comes from)",
            );
        }
    }
}

/// `https://<name>.service-now.com` for an instance name, the URL itself for a URL.
pub fn instance_url(instance: &str) -> Option<String> {
    if instance.starts_with("http://") || instance.starts_with("https://") {
        return Some(instance.trim_end_matches('/').to_string());
    }
    let is_name = !instance.is_empty()
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    is_name.then(|| format!("https://{instance}.service-now.com"))
}

/// The kernel's host name; `localhost` if even that cannot be read.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(yaml: &str, env: &[(&str, &str)]) -> Result<Config, Problems> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jobs.yaml");
        std::fs::write(&file, yaml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        load(&file, &lookup)
    }

    fn messages(result: Result<Config, Problems>) -> Vec<String> {
        result
            .unwrap_err()
            .iter()
            .map(|p| format!("{}:{} {} [{}]", p.line, p.column, p.message, p.field))
            .collect()
    }

    #[test]
    fn alerts_and_reports_go_only_where_they_can() {
        let yaml = "data_dir: var\nnotifiers:\n  drive: { type: gdrive, folder_id: f, client_id: c, client_secret: s, refresh_token: r }\n  sn: { type: servicenow, instance: dev1, username: u, password: p }\njobs:\n  m: { type: monitor, schedule: \"@every 10s\", notify: [log, drive] }\n  w: { type: report, schedule: \"@weekly\", notify: [drive, sn] }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(
            got,
            [
                "6:61 `drive` is a gdrive notifier: it takes reports, not alerts [jobs.m.notify[1]]",
                "7:59 `sn` is a servicenow notifier: it takes alerts, not reports [jobs.w.notify[1]]",
            ]
        );
    }

    const MINIMAL: &str =
        "data_dir: var\njobs:\n  monitor:\n    type: monitor\n    schedule: \"@every 10s\"\n";

    #[test]
    fn minimal_file_builds_with_defaults() {
        let config = load_str(MINIMAL, &[]).unwrap();
        assert_eq!(config.zone, Zone::local());
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        let job = config.job("monitor").unwrap();
        assert_eq!(job.type_name(), "monitor");
        match &job.kind {
            JobKind::Monitor(m) => assert_eq!(m.notify, vec!["log".to_string()]),
            other => panic!("{other:?}"),
        }
        assert!(config.data_dir.ends_with("var"));
    }

    #[test]
    fn reports_problems_of_every_section_at_once() {
        let yaml = "data_dir: var\nnotifiers:\n  chat: { type: slak, url: x }\njobs:\n  a:\n    type: monitor\n    schedule: \"61 * * * *\"\n  b:\n    type: rotate\n    schedule: \"@daily\"\n    paths: [x]\n    max_age: 15x\n  c:\n    type: monitor\n    schedule: \"@hourly\"\n    bogus: 1\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got[0].starts_with("3:17 unknown notifier type `slak`"),
            "{got:#?}"
        );
        assert!(got[0].ends_with("[notifiers.chat]"), "{got:#?}");
        assert!(
            got[1].starts_with(
                "7:15 invalid schedule `61 * * * *`: the minute field `61` is out of range (0-59)"
            ),
            "{got:#?}"
        );
        assert!(got[1].ends_with("[jobs.a.schedule]"), "{got:#?}");
        assert!(
            got[2].starts_with("12:14 invalid duration `15x`"),
            "{got:#?}"
        );
        assert!(got[3].starts_with("16:5 unknown field `bogus`"), "{got:#?}");
        assert!(got[3].ends_with("[jobs.c.bogus]"), "{got:#?}");
    }

    #[test]
    fn empty_secret_turns_a_notifier_off_with_a_warning() {
        let yaml = "data_dir: var\nnotifiers:\n  slack: { type: slack, webhook_url: \"${SLACK_WEBHOOK_URL:-}\" }\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    notify: [log, slack]\n";
        let config = load_str(yaml, &[]).unwrap();
        let slack = &config.notifiers["slack"];
        assert_eq!(slack.off.as_deref(), Some("`webhook_url` is empty"));
        let warnings: Vec<_> = config.warnings.warnings().collect();
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].message,
            "notifier `slack` is off: `webhook_url` is empty"
        );
        assert_eq!(
            warnings[0].help.as_deref(),
            Some("set SLACK_WEBHOOK_URL to turn the notifier on")
        );
        let on = load_str(
            yaml,
            &[("SLACK_WEBHOOK_URL", "https://hooks.example/T/B/X")],
        )
        .unwrap();
        assert!(on.notifiers["slack"].off.is_none());
        assert!(on.warnings.is_empty());
    }

    #[test]
    fn fetch_job_is_off_without_servicenow() {
        let yaml = "data_dir: var\nnotifiers:\n  sn: { type: servicenow, instance: \"${SN:-}\" }\njobs:\n  sync:\n    type: servicenow_fetch\n    schedule: \"@hourly\"\n    from: sn\n";
        let config = load_str(yaml, &[]).unwrap();
        let job = config.job("sync").unwrap();
        assert_eq!(
            job.inactive_reason().as_deref(),
            Some("its ServiceNow notifier `sn` is off: `instance` is empty")
        );
        let config = load_str(yaml, &[("SN", "dev123")]).unwrap();
        assert!(
            config.notifiers["sn"]
                .off
                .as_deref()
                .unwrap()
                .starts_with("no credentials")
        );
    }

    #[test]
    fn servicenow_instance_and_auth() {
        assert_eq!(
            instance_url("dev12345").as_deref(),
            Some("https://dev12345.service-now.com")
        );
        assert_eq!(
            instance_url("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(instance_url("not a name"), None);
        let yaml = "data_dir: var\nnotifiers:\n  sn: { type: servicenow, instance: dev1, username: u, password: \"${PW}\" }\njobs:\n  sync: { type: servicenow_fetch, schedule: \"@hourly\", from: sn }\n";
        let config = load_str(yaml, &[("PW", "secret")]).unwrap();
        match &config.notifiers["sn"].settings {
            NotifierSettings::Servicenow(s) => {
                assert!(
                    matches!(&s.auth, ServicenowAuth::Basic { username, password } if username == "u" && password.expose() == "secret")
                );
                assert_eq!(config.notifiers["sn"].min_severity, Severity::Critical);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unset_variable_is_an_error_at_its_place() {
        let yaml =
            "data_dir: \"${RUNNER_DATA}\"\njobs:\n  m: { type: monitor, schedule: \"@hourly\" }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(
            got,
            ["1:11 environment variable `RUNNER_DATA` is not set (used in `data_dir`) [data_dir]"]
        );
        let config = load_str(yaml, &[("RUNNER_DATA", "/srv/runner")]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/runner"));
    }

    #[test]
    fn probe_names_are_checked() {
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@hourly\"\n    probes:\n      - { type: cpu }\n      - { type: cpu }\n      - { type: ping, name: Gateway, host: 127.0.0.1 }\n      - { type: ping, name: gw, host: 127.0.0.1 }\n      - { type: ping, name: gw, host: ::1 }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].contains("the `cpu` probe is listed twice"),
            "{got:#?}"
        );
        assert!(got[1].contains("invalid probe name `Gateway`"), "{got:#?}");
        assert!(
            got[2].contains("two `ping` probes are named `gw`"),
            "{got:#?}"
        );
    }

    #[test]
    fn probe_settings_are_checked() {
        let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@hourly\"\n    probes:\n      - { type: disk, mounts: [/, var/log] }\n      - { type: cpu, timeout_ms: 0 }\n";
        let got = messages(load_str(yaml, &[]));
        assert_eq!(
            got,
            [
                "7:35 `var/log` is not an absolute path; mount points start with `/` [jobs.m.probes[0].mounts[1]]",
                "8:34 `timeout_ms` must be above 0 [jobs.m.probes[1].timeout_ms]",
            ]
        );
    }

    #[test]
    fn service_probe_settings_are_checked() {
        let yaml = r#"data_dir: var
jobs:
  m:
    type: monitor
    schedule: "@hourly"
    probes:
      - { type: http, name: a, url: "ftp://x/y" }
      - { type: http, name: b, url: "http://x/", extract: { p95: "items[x]" }, body_regex: "(" }
      - { type: process, name: c }
      - { type: process, name: d, process_name: a-very-long-process-name }
      - { type: command, name: e, command: [a], shell: "b" }
      - { type: access_log, name: f, path: x.log, regex: '(?P<client>\S+)' }
      - { type: tcp, name: g, host: "http://db", port: 5432 }
"#;
        let got: Vec<String> = messages(load_str(yaml, &[]))
            .into_iter()
            .map(|m| m.split_once(' ').unwrap().1.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "the URL's scheme must be http or https [jobs.m.probes[0].url]",
                "`items[x]` is not a JSON path [jobs.m.probes[1].extract.p95]",
                "invalid regex `(`: error: unclosed group [jobs.m.probes[1].body_regex]",
                "a process probe matches by exactly one of `process_name`, `cmdline` or `pid_file` [jobs.m.probes[2]]",
                "`a-very-long-process-name` is longer than the 15 bytes the kernel keeps of a process name [jobs.m.probes[3].process_name]",
                "a command probe needs exactly one of `command` (a program and its arguments) or `shell` (a shell line) [jobs.m.probes[4]]",
                "the regex has no `status` group [jobs.m.probes[5].regex]",
                "`http://db` is not a host name or address [jobs.m.probes[6].host]",
            ]
        );
    }

    #[test]
    fn field_paths_are_clean() {
        assert_eq!(clean_field_path("."), "");
        assert_eq!(
            clean_field_path("jobs.a.probes[1].value.count"),
            "jobs.a.probes[1].count"
        );
        assert_eq!(clean_field_path("jobs.a.?"), "jobs.a");
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
