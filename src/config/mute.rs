//! What may keep an alert's notices back, as the jobs file and `runner silence` write it:
//! matchers in Alertmanager's four operators, recurring maintenance windows and inhibition
//! rules. Checked here once; `alerts::mute` decides with them at each notice.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::scheduler::schedule::{Schedule, Zone};

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One `name op value` test on an alert. `alertname`, `job`, `host` and `severity` are the
/// alert's own fields; any other name is a label. As in Alertmanager, a label the alert does
/// not have reads as the empty string, and a regex must match the whole value.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), self.value)
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!(
                "`{name}` is not a label name (letters, digits, `_`, `.`; or alertname, job, host, severity)"
            ));
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                // Anchored as Alertmanager anchors its matchers: the whole value must match.
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("`{value}` is not a regular expression: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// `alertname=disk_full`, `severity!=info`, `mount=~/var.*`, `host!~web-[0-9]+`.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let at = text.find(['=', '!']).ok_or_else(|| {
            format!("`{text}` is not a matcher (`name=value`, `name!=value`, `name=~regex` or `name!~regex`)")
        })?;
        let (name, rest) = text.split_at(at);
        let (op, value) = split_op(rest).ok_or_else(|| {
            format!("`{text}` is not a matcher (`name=value`, `name!=value`, `name=~regex` or `name!~regex`)")
        })?;
        Matcher::new(name, op, value.trim())
    }

    /// A `match:` entry of the jobs file: the key is the name, the value an optional operator
    /// then the value (`disk_full`, `!=info`, `=~/var.*`).
    pub fn from_entry(name: &str, value: &str) -> Result<Matcher, String> {
        match split_op(value) {
            Some((op, rest)) => Matcher::new(name, op, rest),
            None => Matcher::new(name, MatchOp::Equal, value),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }
}

fn split_op(text: &str) -> Option<(MatchOp, &str)> {
    for (prefix, op) in [
        ("=~", MatchOp::Regex),
        ("!~", MatchOp::NotRegex),
        ("!=", MatchOp::NotEqual),
        ("=", MatchOp::Equal),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return Some((op, rest));
        }
    }
    None
}

/// A `maintenance:` entry: from each start of `schedule` (in the jobs file's timezone, as
/// jobs run) for `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceSpec {
    pub name: String,
    pub schedule: Schedule,
    pub duration: Duration,
    pub matchers: Vec<Matcher>,
}

impl MaintenanceSpec {
    /// When the window that holds `at` ends, if one does. The starts that can hold `at` are
    /// those after `at - duration`; the scheduler's own `next_after` finds them, so a window
    /// opens exactly when a job with that schedule would run, DST included.
    pub fn active_until(&self, at: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        let span = chrono::Duration::from_std(self.duration).ok()?;
        // The latest start at or before `at` ends last. A few starts are walked one by one
        // (a nightly window has one or two in its span)...
        let mut cursor = at - span;
        let mut latest = None;
        for _ in 0..8 {
            match self.schedule.next_after(cursor, zone) {
                Some(start) if start <= at => {
                    latest = Some(start);
                    cursor = start;
                }
                _ => return latest.map(|start| start + span).filter(|end| *end > at),
            }
        }
        // ...more are searched: whether a start lies in `(at - d, at]` only grows with `d`,
        // so the least such `d` (to the millisecond; starts are whole seconds apart) takes
        // about 40 looks. A `* * * * * *` window open for 7 days walked 604,800 starts at
        // every decision.
        let starts_within = |d_ms: i64| {
            self.schedule
                .next_after(at - chrono::Duration::milliseconds(d_ms), zone)
                .filter(|start| *start <= at)
        };
        let (mut none, mut some) = (0, (at - cursor).num_milliseconds());
        while some - none > 1 {
            let mid = none + (some - none) / 2;
            if starts_within(mid).is_some() {
                some = mid;
            } else {
                none = mid;
            }
        }
        let start = starts_within(some).or(latest)?;
        Some(start + span).filter(|end| *end > at)
    }
}

/// An `inhibit:` entry: while an alert matching `source` fires, alerts matching `target` that
/// have the same values of the `equal` labels are not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct InhibitSpec {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

/// Maintenance windows and inhibition rules of the jobs file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MuteSpec {
    pub maintenance: Vec<MaintenanceSpec>,
    pub inhibit: Vec<InhibitSpec>,
}

/// What a matcher reads of an alert: its name, job, host, severity and labels.
pub fn field<'a>(
    name: &str,
    alertname: &'a str,
    job: &'a str,
    host: &'a str,
    severity: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> &'a str {
    match name {
        "alertname" => alertname,
        "job" => job,
        "host" => host,
        "severity" => severity,
        _ => labels.get(name).map_or("", String::as_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[track_caller]
    fn case(matcher: &str, value: &str, expected: bool) {
        let m = Matcher::parse(matcher).unwrap();
        assert_eq!(m.matches(value), expected, "{matcher} on {value}");
    }

    #[test]
    fn each_operator_as_alertmanager_has_it() {
        case("alertname=disk_full", "disk_full", true);
        case("alertname=disk_full", "disk_full_2", false);
        case("severity!=info", "critical", true);
        case("severity!=info", "info", false);
        // Anchored: a part of the value is not a match.
        case("mount=~/var.*", "/var/log", true);
        case("mount=~var", "/var/log", false);
        case("host!~web-[0-9]+", "db-1", true);
        case("host!~web-[0-9]+", "web-12", false);
        case("mount=", "", true);
        assert_eq!(
            Matcher::from_entry("mount", "=~/var|/srv")
                .unwrap()
                .to_string(),
            "mount=~/var|/srv"
        );
        assert_eq!(
            Matcher::from_entry("alertname", "disk_full").unwrap().op,
            MatchOp::Equal
        );
    }

    #[test]
    fn bad_matchers_say_why() {
        let e = Matcher::parse("mount=~(").unwrap_err();
        assert!(e.starts_with("`(` is not a regular expression"), "{e}");
        assert!(Matcher::parse("disk_full").is_err());
        assert!(Matcher::parse("=x").is_err());
        // The message names every character a label name may have.
        assert!(Matcher::parse("ping.gw=x").is_ok());
        let e = Matcher::parse("a-b=x").unwrap_err();
        assert!(e.contains("letters, digits, `_`, `.`"), "{e}");
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_nightly_window_follows_the_scheduler_across_the_spring_change() {
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let window = MaintenanceSpec {
            name: "nightly".into(),
            schedule: Schedule::parse("30 2 * * *").unwrap(),
            duration: Duration::from_secs(3600),
            matchers: vec![],
        };
        // 2027-03-27 02:30 CET is 01:30 UTC.
        assert_eq!(
            window.active_until(at("2027-03-27T01:45:00Z"), &zone),
            Some(at("2027-03-27T02:30:00Z"))
        );
        assert_eq!(window.active_until(at("2027-03-27T02:30:00Z"), &zone), None);
        // On 2027-03-28 02:30 does not exist in Berlin: the window opens when the scheduler
        // would run a job of that schedule, whatever instant that is.
        let run = window
            .schedule
            .next_after(at("2027-03-27T12:00:00Z"), &zone)
            .unwrap();
        assert_eq!(
            window.active_until(run, &zone),
            Some(run + chrono::Duration::hours(1))
        );
        assert_eq!(
            window.active_until(run - chrono::Duration::seconds(1), &zone),
            None
        );
        // After the change 02:30 CEST is 00:30 UTC.
        assert_eq!(
            window.active_until(at("2027-03-29T00:30:00Z"), &zone),
            Some(at("2027-03-29T01:30:00Z"))
        );
        assert_eq!(
            window.active_until(at("2027-03-29T01:29:00Z"), &zone),
            Some(at("2027-03-29T01:30:00Z"))
        );
        assert_eq!(window.active_until(at("2027-03-29T00:29:59Z"), &zone), None);
    }

    /// The window as the definition has it: every start in `(at - duration, at]`, the last
    /// one's end. The search must agree with it.
    fn linear_until(w: &MaintenanceSpec, at: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        let span = chrono::Duration::from_std(w.duration).unwrap();
        let (mut cursor, mut until) = (at - span, None);
        while let Some(start) = w.schedule.next_after(cursor, zone) {
            if start > at {
                break;
            }
            until = Some(start + span);
            cursor = start;
        }
        until.filter(|end| *end > at)
    }

    #[test]
    fn the_search_for_a_windows_end_agrees_with_walking_every_start() {
        let zone = Zone::parse("Europe/Berlin").unwrap();
        for (schedule, seconds) in [
            ("30 2 * * *", 3600),
            ("0 * * * *", 600),
            ("*/7 * * * * *", 20),
            ("*/7 * * * * *", 3),
            ("0 0 * * Sun", 86400 * 3),
            ("15 1-3 * * *", 5400),
        ] {
            let w = MaintenanceSpec {
                name: "w".into(),
                schedule: Schedule::parse(schedule).unwrap(),
                duration: Duration::from_secs(seconds),
                matchers: vec![],
            };
            // Across both changes of 2027, a look every 58 min 27 s, on and off the starts.
            for day in ["2027-03-27T22:00:00Z", "2027-10-30T22:00:00Z"] {
                let mut t = at(day);
                for _ in 0..50 {
                    for probe in [t, t.with_nanosecond(0).unwrap()] {
                        assert_eq!(
                            w.active_until(probe, &zone),
                            linear_until(&w, probe, &zone),
                            "{schedule} for {seconds}s at {probe}"
                        );
                    }
                    t += chrono::Duration::milliseconds(3_507_000);
                }
            }
        }
        // Every second for 7 days: open, until the latest second's start plus 7 days.
        let every_second = MaintenanceSpec {
            name: "w".into(),
            schedule: Schedule::parse("* * * * * *").unwrap(),
            duration: Duration::from_secs(7 * 86400),
            matchers: vec![],
        };
        assert_eq!(
            every_second.active_until(at("2027-01-01T00:00:00.250Z"), &zone),
            Some(at("2027-01-08T00:00:00Z"))
        );
    }

    /// On 2027-10-31 02:30 happens twice in Berlin: a fixed-time window opens at the first
    /// (00:30 UTC, CEST) only, as the job would run, and stays open its hour of real time; an
    /// interval window (`0 * * * *`) opens in both passes of the repeated hour.
    #[test]
    fn a_window_follows_the_scheduler_across_the_autumn_change() {
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let window = |schedule: &str, minutes: u64| MaintenanceSpec {
            name: "w".into(),
            schedule: Schedule::parse(schedule).unwrap(),
            duration: Duration::from_secs(minutes * 60),
            matchers: vec![],
        };
        let nightly = window("30 2 * * *", 60);
        assert_eq!(
            nightly.active_until(at("2027-10-31T00:29:59Z"), &zone),
            None
        );
        assert_eq!(
            nightly.active_until(at("2027-10-31T00:30:00Z"), &zone),
            Some(at("2027-10-31T01:30:00Z"))
        );
        // 02:30 CET, the second 02:30: the window has closed and does not open again.
        assert_eq!(
            nightly.active_until(at("2027-10-31T01:30:00Z"), &zone),
            None
        );
        assert_eq!(
            nightly.active_until(at("2027-10-31T02:00:00Z"), &zone),
            None
        );
        let hourly = window("0 * * * *", 10);
        // 02:00 CEST is 00:00 UTC, 02:00 CET is 01:00 UTC: both open.
        assert_eq!(
            hourly.active_until(at("2027-10-31T00:05:00Z"), &zone),
            Some(at("2027-10-31T00:10:00Z"))
        );
        assert_eq!(
            hourly.active_until(at("2027-10-31T01:05:00Z"), &zone),
            Some(at("2027-10-31T01:10:00Z"))
        );
        assert_eq!(hourly.active_until(at("2027-10-31T00:30:00Z"), &zone), None);
    }
}
