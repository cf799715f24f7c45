//! Checking each job: its schedule and timeout, and the settings of its type (a monitor's
//! rules, notifiers and probes; a report's window and templates; a fetch's ServiceNow
//! notifier; a rotation's paths, ages and sizes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use super::Builder;
use crate::config::raw::{self, GroupBy, JobConfig, Text};
use crate::config::{
    DEFAULT_RULE_TIMEOUT, FetchSpec, FlapPolicy, JobKind, JobSpec, MonitorSpec, NotifierSettings,
    NotifierSpec, ReportSpec, RotateSpec,
};
use crate::scheduler::schedule::Schedule;
use crate::vocab::size::parse_size;
use crate::vocab::suggest::closest;

const DEFAULT_REPORT_WINDOW: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_PAGE_SIZE: u32 = 100;
const DEFAULT_COMPRESSION: u32 = 6;
const SCHEDULE_HELP: &str = "examples: `*/5 * * * *` (every 5 minutes), `0 8 * * Mon` (Mondays 08:00), `30 2 * * *`, `@daily`, `@every 10s`";

/// Job and notifier names name files and locks: lowercase letters, digits, `-` and `_`.
pub(super) fn valid_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Builder<'_> {
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

    /// A setting that was wrong (and reported), replaced by `stand_in` when building for
    /// `load_partial`, so the rest of the job is still checked.
    fn stand_in<T>(&self, checked: Option<T>, stand_in: T) -> Option<T> {
        match checked {
            Some(value) => Some(value),
            None if self.partial => Some(stand_in),
            None => None,
        }
    }

    pub(super) fn job(
        &mut self,
        name_key: &Text,
        config: JobConfig,
        known_notifiers: &[String],
        notifiers: &IndexMap<String, NotifierSpec>,
        data_dir: Option<&Path>,
    ) -> Option<JobSpec> {
        let name = name_key.value.as_str();
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
        // Every setting is checked before any failure ends this job, so each is reported.
        let timeout = common
            .timeout
            .map(|t| self.duration(t, &format!("{field}.timeout")));
        let description = common.description.map(str::to_string);
        let enabled = common.enabled;
        let mut off = None;
        let kind = match config {
            JobConfig::Monitor(job) => {
                let flap_default = FlapPolicy::default();
                let rule_timeout = self.optional_duration(
                    job.rule_timeout.as_ref(),
                    &format!("{field}.rule_timeout"),
                    DEFAULT_RULE_TIMEOUT,
                );
                let flap_window = self.optional_duration(
                    job.flap_window.as_ref(),
                    &format!("{field}.flap_window"),
                    flap_default.window,
                );
                JobKind::Monitor(MonitorSpec {
                    rules: job
                        .rules
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| {
                            self.existing_path(r, &format!("{field}.rules[{i}]"), "rule file")
                        })
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
                    probes: {
                        let mut probes = self.probes(job.probes, &field, &name_key.referenced);
                        keep_statements_in(&mut probes, data_dir, name);
                        probes
                    },
                    rule_timeout: self.stand_in(rule_timeout, DEFAULT_RULE_TIMEOUT)?,
                    flap: FlapPolicy {
                        max_transitions: job
                            .flap_transitions
                            .map_or(flap_default.max_transitions, |n| n as usize),
                        window: self.stand_in(flap_window, flap_default.window)?,
                    },
                })
            }
            JobConfig::Report(job) => {
                let window = self.optional_duration(
                    job.window.as_ref(),
                    &format!("{field}.window"),
                    DEFAULT_REPORT_WINDOW,
                );
                // Stood in for, so the templates are still checked.
                let window = self.stand_in(window, DEFAULT_REPORT_WINDOW)?;
                let source = job.source.as_ref().and_then(|source| {
                    let source_field = format!("{field}.source");
                    let endpoint = self.endpoint(
                        &source_field,
                        &super::remote_write::EndpointConfig {
                            url: &source.prometheus,
                            bearer_token: source.bearer_token.as_ref(),
                            basic_auth: source.basic_auth.as_ref(),
                            ca_file: source.ca_file.as_ref(),
                            headers: &source.headers,
                            timeout: source.timeout.as_ref(),
                            url_key: "prometheus",
                            url_help: "the query API's base URL, e.g. `http://127.0.0.1:9090`",
                        },
                    )?;
                    let hosts = source
                        .hosts
                        .iter()
                        .enumerate()
                        .filter_map(|(i, h)| self.string(h, &format!("{source_field}.hosts[{i}]")))
                        .collect();
                    Some(crate::config::FleetSource {
                        endpoint,
                        hosts,
                        p95: source.p95.unwrap_or_default(),
                    })
                });
                JobKind::Report(ReportSpec {
                    source,
                    title: job.title.clone(),
                    window,
                    templates: job
                        .templates
                        .iter()
                        .enumerate()
                        .filter_map(|(i, t)| {
                            self.existing_path(t, &format!("{field}.templates[{i}]"), "template")
                        })
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
                let page_size = job
                    .page_size
                    .as_ref()
                    .map_or(DEFAULT_PAGE_SIZE, |p| p.value);
                // At the number itself: the job's `from` is another line.
                if let Some(written) = &job.page_size
                    && !(1..=10_000).contains(&page_size)
                {
                    self.error(
                        &written.referenced,
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
            schedule: self.stand_in(schedule, Schedule::parse("@hourly").ok()?)?,
            description,
            enabled,
            timeout: self.stand_in(super::optional(timeout), None)?,
            kind,
            off,
        })
    }

    /// `postrotate:` checked: a command, or a signal with one target.
    fn postrotate(
        &mut self,
        written: &serde_saphyr::Spanned<raw::PostrotateConfig>,
        field: &str,
    ) -> Option<crate::config::Postrotate> {
        use crate::config::{Postrotate, SignalTarget};
        let p = &written.value;
        let at = &written.referenced;
        match (&p.command, &p.signal) {
            (Some(argv), None) if p.pid_file.is_none() && p.process.is_none() => {
                let argv: Vec<String> = argv
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| self.string(a, &format!("{field}.command[{i}]")))
                    .collect();
                if argv.is_empty() {
                    self.error(at, field, "`command` needs at least the program");
                    return None;
                }
                Some(Postrotate::Command(argv))
            }
            (None, Some(signal)) => {
                let bare = signal.value.trim().trim_start_matches("SIG");
                let number = match bare {
                    "HUP" => libc::SIGHUP,
                    "USR1" => libc::SIGUSR1,
                    "USR2" => libc::SIGUSR2,
                    other => {
                        self.error(
                            &signal.referenced,
                            &format!("{field}.signal"),
                            format!("`{other}` is not a reopen signal runner sends (expected HUP, USR1 or USR2)"),
                        );
                        return None;
                    }
                };
                let target = match (&p.pid_file, &p.process) {
                    (Some(file), None) => {
                        SignalTarget::PidFile(self.path(file, &format!("{field}.pid_file"))?)
                    }
                    (None, Some(name)) => {
                        SignalTarget::Process(self.string(name, &format!("{field}.process"))?)
                    }
                    _ => {
                        self.error_help(
                            at,
                            field,
                            "a `signal` needs exactly one of `pid_file` and `process`",
                            "`pid_file: /run/nginx.pid`, or `process: nginx` for every process of that name",
                        );
                        return None;
                    }
                };
                Some(Postrotate::Signal {
                    signal: number,
                    name: format!("SIG{bare}"),
                    target,
                })
            }
            _ => {
                self.error_help(
                    at,
                    field,
                    "`postrotate` is either a `command` or a `signal` (with `pid_file` or `process`)",
                    "`postrotate: { command: [systemctl, reload, nginx] }` or `postrotate: { signal: USR1, pid_file: /run/app.pid }`",
                );
                None
            }
        }
    }

    /// A pattern in a `metrics` or `alerts` folder that is not runner's own (the shipped
    /// `../var/metrics/*.jsonl` once the service moved `data_dir` to `/var/lib/runner`)
    /// archives nothing while runner's logs grow for ever: a warning, with the spelling that
    /// follows `data_dir`.
    fn warn_if_beside_own_logs(
        &mut self,
        text: &Text,
        field: &str,
        path: &Path,
        data_dir: Option<&Path>,
    ) {
        let (Some(data_dir), Some(folder)) = (data_dir, path.parent()) else {
            return;
        };
        let Some(kind) = folder
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n == "metrics" || *n == "alerts")
        else {
            return;
        };
        let own = data_dir.join(kind);
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if same(folder, &own) {
            return;
        }
        let pattern = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.warn(
            &text.referenced,
            field,
            format!(
                "`{}` is not runner's own {kind} folder (`{}`): runner's {kind} logs are not archived by this pattern and grow for ever",
                folder.display(),
                own.display()
            ),
            format!("write `${{data_dir}}/{kind}/{pattern}` to follow data_dir wherever it is"),
        );
    }

    fn rotate(
        &mut self,
        job: raw::RotateJobConfig,
        field: &str,
        data_dir: Option<&Path>,
    ) -> Option<JobKind> {
        // `${data_dir}/…` names runner's own folder wherever the service keeps it
        // (`/var/lib/runner`), so the shipped rotate job follows its metrics and alert logs.
        let paths: Vec<PathBuf> = job
            .paths
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let field = format!("{field}.paths[{i}]");
                match (p.value.strip_prefix("${data_dir}/"), data_dir) {
                    (Some(rest), Some(dir)) => {
                        let mut rest_text = p.clone();
                        rest_text.value = rest.to_string();
                        self.string(&rest_text, &field).map(|r| dir.join(r))
                    }
                    _ => {
                        let path = self.path(p, &field)?;
                        self.warn_if_beside_own_logs(p, &field, &path, data_dir);
                        Some(path)
                    }
                }
            })
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
        let archive_max_age = job
            .archive_max_age
            .as_ref()
            .map(|t| self.duration(t, &format!("{field}.archive_max_age")));
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
        let keep_archives = match &job.keep_archives {
            Some(keep) if keep.value == 0 => {
                self.error_help(
                    &keep.referenced,
                    &format!("{field}.keep_archives"),
                    "`keep_archives: 0` would delete every archive, the ones this run writes too",
                    "give 1 or more, or leave it out to keep every archive (`archive_max_age` expires them by age)",
                );
                None
            }
            Some(keep) => Some(keep.value),
            None => None,
        };
        let settle = self.optional_duration(
            job.settle.as_ref(),
            &format!("{field}.settle"),
            std::time::Duration::from_secs(1),
        );
        let postrotate = job
            .postrotate
            .as_ref()
            .map(|p| self.postrotate(p, &format!("{field}.postrotate")));
        Some(JobKind::Rotate(RotateSpec {
            postrotate: super::optional(postrotate)?,
            settle: settle?,
            paths,
            max_age: max_age?,
            max_size,
            archive_dir: archive_dir?,
            archive_max_age: super::optional(archive_max_age)?,
            keep_archives,
            group_by: job.group_by.unwrap_or(GroupBy::Day),
            compression,
        }))
    }
}

/// Where each `postgres` probe writes its `pg_stat_statements` snapshots: a folder of its own
/// under `data_dir`, by job and probe.
fn keep_statements_in(
    probes: &mut [crate::config::probes::ProbeSpec],
    data_dir: Option<&Path>,
    job: &str,
) {
    let Some(data_dir) = data_dir else {
        return;
    };
    for probe in probes {
        if let crate::config::probes::ProbeKind::Postgres(spec) = &mut probe.kind {
            spec.statements_dir = Some(crate::config::probes::postgres::statements_dir(
                data_dir,
                job,
                probe.name.as_deref().unwrap_or_default(),
            ));
        }
    }
}
