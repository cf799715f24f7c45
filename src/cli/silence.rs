//! `runner silence add|list|expire`: silences in the jobs file's data_dir
//! (`state/silences.json`), which a running scheduler reads again at its next notice decision
//! (it stats the file each time), so a silence holds from the moment the command returns.
//! Of the jobs file it reads only `data_dir` and `timezone`: an operator silencing an alert
//! needs none of the notifiers' secrets the rest of the file names with `${VAR}`.

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Subcommand;

use super::output::outln;
use super::{exit, load};
use crate::alerts::mute::{
    Silence, SilenceError, add_silence, expire_silence, read_silences, silences_path,
};

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Silence the alerts every matcher matches, from now (or --start) for --for; prints its id.
    Add {
        /// `name=value`, `name!=value`, `name=~regex` or `name!~regex` on alertname, job, host,
        /// severity or a label (repeatable; all must match).
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// When it starts (`2026-12-01 22:00` in the jobs file's time zone, or RFC 3339);
        /// default now. A time already past is now.
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
        /// How long it holds (`2h`, `30m`).
        #[arg(long = "for", value_name = "DURATION", value_parser = super::parse_wait)]
        length: std::time::Duration,
        /// Why, for whoever reads the list.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List the silences that are active or pending, and those that ended within a day.
    List {
        /// `text` for people, `json` for machines.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// End a silence now.
    Expire {
        /// The id `silence add` printed.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What `runner silence` needs of the jobs file.
struct Needed {
    data_dir: PathBuf,
    zone: crate::scheduler::schedule::Zone,
}

/// The two top-level keys `runner silence` reads; every other key is passed over unread (not
/// `deny_unknown_fields`: the full load checks the file).
#[derive(Debug, serde::Deserialize)]
struct Top {
    /// As `RawConfig::data_dir`: where the silences file is, relative to the jobs file.
    #[serde(default)]
    data_dir: Option<String>,
    /// As `RawConfig::timezone`: of `--start` and of the list's times.
    #[serde(default)]
    timezone: Option<String>,
}

/// `data_dir` (its own `${VAR}`s expanded, relative to the jobs file's folder) and `timezone`,
/// read alone; `None` when either cannot be, so the full load can say why with the rest.
fn read_needed(file: &Path) -> Option<Needed> {
    let text = std::fs::read_to_string(file).ok()?;
    let top: Top = serde_saphyr::from_str(&text).ok()?;
    let data_dir = crate::config::env::expand(&top.data_dir?).ok()?.value;
    let zone = match top.timezone {
        None => crate::scheduler::schedule::Zone::local(),
        Some(name) => crate::scheduler::schedule::Zone::parse(name.trim()).ok()?,
    };
    let base = file.parent().unwrap_or(Path::new("."));
    Some(Needed {
        data_dir: crate::config::resolve_path(base, &data_dir),
        zone,
    })
}

pub fn run(file: &Path, action: &Action) -> u8 {
    let config = match read_needed(file) {
        Some(needed) => needed,
        // The file cannot be read, or its data_dir or timezone is wrong or missing: the full
        // load points at what, with the file's line and column.
        None => match load(file) {
            Ok(config) => Needed {
                data_dir: config.data_dir,
                zone: config.zone,
            },
            Err(code) => return code,
        },
    };
    let now = Utc::now();
    match action {
        Action::Add {
            matchers,
            start,
            length,
            comment,
        } => {
            let starts_at = match start {
                Some(text) => match super::parse_time(&config.zone, "--start", text) {
                    Some(at) => Some(at),
                    None => return exit::USAGE,
                },
                None => None,
            };
            let user = std::env::var("USER").unwrap_or_default();
            match add_silence(
                &config.data_dir,
                matchers,
                starts_at,
                *length,
                comment,
                &user,
                now,
            ) {
                Ok(silence) => {
                    outln!("{}", silence.id);
                    exit::OK
                }
                // A matcher or length that does not parse is a usage error, as a bad --start.
                Err(SilenceError::Invalid(message)) => {
                    super::fail(format_args!("{message}"));
                    exit::USAGE
                }
                Err(SilenceError::Storage(message)) => {
                    super::fail(format_args!("{message}"));
                    exit::FAILED
                }
            }
        }
        Action::List { format } => match read_silences(&config.data_dir) {
            Ok(silences) => {
                let listed: Vec<&Silence> = silences.iter().filter(|s| s.kept(now)).collect();
                for s in &listed {
                    if let Err(why) = s.parsed() {
                        super::say(format_args!(
                            "warning: silence {} in {} is ignored: {why}",
                            s.id,
                            silences_path(&config.data_dir).display()
                        ));
                    }
                }
                match format {
                    Format::Json => match serde_json::to_string_pretty(&listed) {
                        Ok(text) => outln!("{text}"),
                        Err(e) => {
                            super::fail(format_args!("cannot encode the silences: {e}"));
                            return exit::FAILED;
                        }
                    },
                    Format::Text => print_table(&listed, now, &config.zone),
                }
                exit::OK
            }
            Err(e) => {
                super::fail(format_args!("cannot read the silences: {e}"));
                exit::FAILED
            }
        },
        Action::Expire { id } => match expire_silence(&config.data_dir, id, now) {
            Ok(true) => {
                outln!("silence {id} expired");
                exit::OK
            }
            Ok(false) => {
                super::fail(format_args!("no active silence with id `{id}`"));
                exit::FAILED
            }
            Err(message) => {
                super::fail(format_args!("{message}"));
                exit::FAILED
            }
        },
    }
}

fn print_table(
    silences: &[&Silence],
    now: chrono::DateTime<Utc>,
    zone: &crate::scheduler::schedule::Zone,
) {
    if silences.is_empty() {
        outln!("no silences");
        return;
    }
    let rows: Vec<[String; 6]> = silences
        .iter()
        .map(|s| {
            let state = s.state(now);
            [
                s.id.clone(),
                state.to_string(),
                zone.strftime(s.starts_at, "%Y-%m-%d %H:%M"),
                zone.strftime(s.ends_at, "%Y-%m-%d %H:%M"),
                // One row a silence: a value with a space is quoted, a comment's line
                // breaks are spaces.
                s.matchers
                    .iter()
                    .map(|m| quoted(m))
                    .collect::<Vec<_>>()
                    .join(" "),
                s.comment.split_whitespace().collect::<Vec<_>>().join(" "),
            ]
        })
        .collect();
    let header = ["ID", "STATE", "STARTS", "ENDS", "MATCHERS", "COMMENT"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        outln!("{}", text.trim_end());
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}

/// `name=value` as written, or `name="a value"` when the value has a space or a quote, so the
/// list's matchers column reads as its matchers.
fn quoted(matcher: &str) -> String {
    match crate::config::mute::Matcher::parse(matcher) {
        Ok(m)
            if m.value.contains(|c: char| c.is_whitespace() || c == '"') || m.value.is_empty() =>
        {
            format!("{}{}{:?}", m.name, m.op.as_str(), m.value)
        }
        _ => matcher.to_string(),
    }
}
