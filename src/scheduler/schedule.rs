//! When a job runs: cron expressions in the jobs file's timezone (`cron.rs` says how DST is
//! handled), or `@every` intervals that follow real elapsed time. `@every` is computed on UTC
//! instants, aligned to multiples of the interval since the epoch, so a 10 s monitor ticks at
//! :00, :10, :20 on every host and never notices a DST switch. croner only describes a cron
//! expression in words for `runner jobs`.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};

use super::cron::CronSpec;

use crate::vocab::duration::{format_duration, parse_duration};

const SHORTCUTS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// A parsed `schedule:`.
#[derive(Clone)]
pub enum Schedule {
    Cron {
        text: String,
        spec: CronSpec,
        /// In words, for `runner jobs`.
        words: String,
    },
    Every(Duration),
}

/// Two schedules are the same when written the same (`@every 10s`, or the cron text).
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Cron { text: a, .. }, Schedule::Cron { text: b, .. }) => a == b,
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron { text, .. } => f.write_str(text),
            Schedule::Every(every) => write!(f, "@every {}", format_duration(*every)),
        }
    }
}

/// Why a schedule did not parse, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ScheduleError {
    pub reason: String,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = text.trim();
        let fail = |reason: String| ScheduleError { reason };
        if let Some(rest) = trimmed.strip_prefix("@every") {
            let every = parse_duration(rest).map_err(|e| {
                fail(format!(
                    "`@every` needs a duration such as `@every 10s` ({})",
                    e.reason
                ))
            })?;
            if every.is_zero() {
                return Err(fail("`@every` needs a duration above zero".into()));
            }
            return Ok(Schedule::Every(every));
        }
        if trimmed.starts_with('@') && !SHORTCUTS.contains(&trimmed.to_lowercase().as_str()) {
            return Err(fail(format!(
                "unknown shortcut `{trimmed}` (expected one of: @hourly, @daily, @weekly, @monthly, @yearly, or @every <duration>)"
            )));
        }
        let spec = CronSpec::parse(trimmed).map_err(fail)?;
        // A pattern that never matches (`0 0 30 2 *`) is refused here rather than never run.
        if spec
            .next_after(jiff::Timestamp::now(), &jiff::tz::TimeZone::UTC)
            .is_none()
        {
            return Err(fail(
                "this cron expression never matches a real date".into(),
            ));
        }
        let words = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(trimmed)
            .map(|cron| cron.describe())
            .unwrap_or_else(|_| trimmed.to_string());
        Ok(Schedule::Cron {
            text: trimmed.to_string(),
            spec,
            words,
        })
    }

    /// The first run strictly after `after`, computed in `zone` for cron schedules.
    pub fn next_after(&self, after: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(every) => {
                let step = every.as_millis() as i64;
                let now = after.timestamp_millis();
                let next = (now.div_euclid(step) + 1) * step;
                DateTime::from_timestamp_millis(next)
            }
            Schedule::Cron { spec, .. } => {
                let after = jiff::Timestamp::from_millisecond(after.timestamp_millis()).ok()?;
                let next = spec.next_after(after, &zone.tz)?;
                DateTime::from_timestamp_millis(next.as_millisecond())
            }
        }
    }

    /// The next `n` runs after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, zone: &Zone, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(cursor, zone) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    /// A sentence for `runner jobs`: "At 08:00 AM, only on Monday".
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron { words, .. } => words.clone(),
            Schedule::Every(every) => format!("Every {}", format_duration(*every)),
        }
    }
}

/// What a wall-clock time stands for in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WallTime {
    One(DateTime<Utc>),
    /// The clocks skipped it (spring forward); they jumped at `gap_end`, the first instant
    /// after the skipped ones (where a cron schedule runs such a time).
    Skipped {
        gap_end: DateTime<Utc>,
    },
    /// The clocks passed it twice (fall back): `first` with the summer offset.
    Twice {
        first: DateTime<Utc>,
        second: DateTime<Utc>,
    },
}

/// The timezone schedules and reports are read in: the machine's (`Local`: `TZ`, else
/// `/etc/localtime`) or a named IANA zone from the system's tz database.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Zone {
    /// The machine's zone, named as the system names it (`Europe/Berlin`), or `Local`.
    pub fn local() -> Zone {
        let tz = jiff::tz::TimeZone::system();
        Zone {
            name: tz.iana_name().unwrap_or("Local").to_string(),
            tz,
        }
    }

    /// Why the zone `TZ` names cannot be used, in which case [`Zone::local`] is UTC. (Without
    /// `TZ` and `/etc/localtime`, UTC is the machine's zone, not a mistake.)
    pub fn local_problem() -> Option<String> {
        std::env::var_os("TZ")?;
        jiff::tz::TimeZone::try_system()
            .err()
            .map(|e| e.to_string())
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_string(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    pub fn parse(name: &str) -> Result<Zone, String> {
        if name.eq_ignore_ascii_case("local") {
            return Ok(Zone::local());
        }
        jiff::tz::TimeZone::get(name)
            .map(|tz| Zone {
                name: name.to_string(),
                tz,
            })
            .map_err(|_| {
                format!("unknown timezone `{name}` (expected `Local` or an IANA name such as `Europe/Berlin` or `UTC`)")
            })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `at` as a wall-clock time in this zone.
    pub fn zoned(&self, at: DateTime<Utc>) -> Option<jiff::Zoned> {
        jiff::Timestamp::from_millisecond(at.timestamp_millis())
            .ok()
            .map(|ts| ts.to_zoned(self.tz.clone()))
    }

    /// `at` in this zone with `strftime` codes (`%Y-%m-%d %H:%M`); UTC when out of range.
    pub fn strftime(&self, at: DateTime<Utc>, format: &str) -> String {
        match self.zoned(at) {
            Some(zoned) => zoned.strftime(format).to_string(),
            None => at.format(format).to_string(),
        }
    }

    /// A time as people type it: RFC 3339 with its offset (`2026-11-30T08:00:00Z`), or a wall
    /// time in this zone (`2026-11-30 08:00`, `2026-11-30T08:00:00`, `2026-11-30` for
    /// midnight), with a note to show when the wall time was passed twice (the clocks went
    /// back): it takes the first, and the note names the instant taken and how to ask for the
    /// second. A wall time the clocks skipped is refused, naming where they jumped to: which
    /// instant was meant is a guess (GNU `date` refuses it too).
    pub fn parse_time(&self, text: &str) -> Result<(DateTime<Utc>, Option<String>), String> {
        let text = text.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok((at.to_utc(), None));
        }
        let civil: jiff::civil::DateTime = text
            .replacen(' ', "T", 1)
            .parse()
            .or_else(|_| text.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
            .map_err(|_| {
                format!("`{text}` is not a time: give `2026-11-30 08:00` (in {}) or RFC 3339 `2026-11-30T08:00:00Z`", self.name)
            })?;
        let utc = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        match self.wall_time(civil) {
            Some(WallTime::One(at)) => Ok((at, None)),
            Some(WallTime::Twice { first, second }) => {
                let note = format!(
                    "`{text}` happened twice in {} (the clocks went back); took the first, {} ({}); for the second give `{}`",
                    self.name,
                    self.format(first),
                    utc(first),
                    self.rfc3339(second)
                );
                Ok((first, Some(note)))
            }
            Some(WallTime::Skipped { gap_end }) => Err(format!(
                "`{text}` does not exist in {}: the clocks jumped ahead to {} ({}); give a time that exists, or one with its offset such as `{}`",
                self.name,
                self.format(gap_end),
                utc(gap_end),
                self.rfc3339(gap_end)
            )),
            None => Err(format!("`{text}` is out of range")),
        }
    }

    /// What a wall-clock time in this zone stands for; `None` out of range.
    pub fn wall_time(&self, civil: jiff::civil::DateTime) -> Option<WallTime> {
        use jiff::tz::AmbiguousOffset;
        let instant = |offset: jiff::tz::Offset| {
            offset
                .to_timestamp(civil)
                .ok()
                .and_then(|ts| DateTime::from_timestamp_millis(ts.as_millisecond()))
        };
        match self.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => instant(offset).map(WallTime::One),
            AmbiguousOffset::Gap { before, .. } => {
                // Read with the offset before the jump, the time lands at or past the jump:
                // the jump is the last transition up to there.
                let past = before.to_timestamp(civil).ok()?;
                let probe = past.checked_add(jiff::SignedDuration::from_secs(1)).ok()?;
                let jump = self.tz.preceding(probe).next()?.timestamp();
                DateTime::from_timestamp_millis(jump.as_millisecond())
                    .map(|gap_end| WallTime::Skipped { gap_end })
            }
            AmbiguousOffset::Fold { before, after } => Some(WallTime::Twice {
                first: instant(before)?,
                second: instant(after)?,
            }),
        }
    }

    /// `2026-10-25T02:30:00+01:00`: an instant as RFC 3339 with this zone's offset, which
    /// `parse_time` reads back as exactly that instant.
    pub fn rfc3339(&self, at: DateTime<Utc>) -> String {
        self.strftime(at, "%Y-%m-%dT%H:%M:%S%:z")
    }

    /// `2026-11-30 08:00:00 +01:00`: local wall time with its offset, for people.
    pub fn format(&self, at: DateTime<Utc>) -> String {
        self.strftime(at, "%Y-%m-%d %H:%M:%S %:z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }

    /// The next `n` runs after `start`, written as local times with offsets.
    #[track_caller]
    fn runs(schedule: &str, tz: &str, start: &str, n: usize) -> Vec<String> {
        let z = zone(tz);
        Schedule::parse(schedule)
            .unwrap()
            .upcoming(utc(start), &z, n)
            .into_iter()
            .map(|t| z.format(t))
            .collect()
    }

    #[test]
    fn five_and_six_fields_and_shortcuts() {
        assert_eq!(
            runs("30 2 * * *", "UTC", "2026-11-28T00:00:00Z", 2),
            ["2026-11-28 02:30:00 +00:00", "2026-11-29 02:30:00 +00:00"]
        );
        assert_eq!(
            runs("*/15 * * * * *", "UTC", "2026-11-28T00:00:07Z", 3),
            [
                "2026-11-28 00:00:15 +00:00",
                "2026-11-28 00:00:30 +00:00",
                "2026-11-28 00:00:45 +00:00"
            ]
        );
        assert_eq!(
            runs("@hourly", "UTC", "2026-11-28T10:20:00Z", 1),
            ["2026-11-28 11:00:00 +00:00"]
        );
        assert_eq!(
            runs("@daily", "UTC", "2026-11-28T10:20:00Z", 1),
            ["2026-11-29 00:00:00 +00:00"]
        );
        // 2026-11-28 is a Saturday: @weekly is Sunday midnight.
        assert_eq!(
            runs("@weekly", "UTC", "2026-11-28T10:20:00Z", 1),
            ["2026-11-29 00:00:00 +00:00"]
        );
        assert_eq!(
            runs("@monthly", "UTC", "2026-11-28T10:20:00Z", 1),
            ["2026-12-01 00:00:00 +00:00"]
        );
        assert_eq!(
            runs("0 8 * * Mon", "UTC", "2026-11-28T10:20:00Z", 1),
            ["2026-11-30 08:00:00 +00:00"]
        );
    }

    #[test]
    fn every_is_aligned_to_the_epoch() {
        assert_eq!(
            runs("@every 10s", "UTC", "2026-11-28T10:00:03.500Z", 3),
            [
                "2026-11-28 10:00:10 +00:00",
                "2026-11-28 10:00:20 +00:00",
                "2026-11-28 10:00:30 +00:00"
            ]
        );
        let every = Schedule::parse("@every 250ms").unwrap();
        let next = every.next_after(utc("2026-11-28T10:00:00.100Z"), &Zone::local());
        assert_eq!(next, Some(utc("2026-11-28T10:00:00.250Z")));
    }

    #[test]
    fn fixed_time_keeps_local_time_across_dst_in_berlin() {
        // Summer time ends 2026-10-25 03:00 CEST -> 02:00 CET.
        assert_eq!(
            runs("0 9 * * *", "Europe/Berlin", "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24 09:00:00 +02:00",
                "2026-10-25 09:00:00 +01:00",
                "2026-10-26 09:00:00 +01:00"
            ]
        );
        // Summer time starts 2026-03-29 02:00 CET -> 03:00 CEST.
        assert_eq!(
            runs("0 9 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28 09:00:00 +01:00",
                "2026-03-29 09:00:00 +02:00",
                "2026-03-30 09:00:00 +02:00"
            ]
        );
    }

    #[test]
    fn skipped_time_runs_once_after_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29: run at 03:00 CEST, once.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29 03:00:00 +02:00",
                "2026-03-30 02:30:00 +02:00",
                "2026-03-31 02:30:00 +02:00"
            ]
        );
        // New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT.
        assert_eq!(
            runs("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
            ["2026-03-08 03:00:00 -04:00", "2026-03-09 02:30:00 -04:00"]
        );
    }

    #[test]
    fn repeated_hour_runs_a_fixed_time_once() {
        // 02:30 happens twice in Berlin on 2026-10-25: run at the first one only.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25 02:30:00 +02:00", "2026-10-26 02:30:00 +01:00"]
        );
        // New York falls back 2026-11-01 02:00 EDT -> 01:00 EST; 01:30 happens twice.
        assert_eq!(
            runs("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01 01:30:00 -04:00", "2026-11-02 01:30:00 -05:00"]
        );
    }

    #[test]
    fn steps_follow_elapsed_time_through_the_repeated_hour() {
        // Every 20 minutes through New York's fall-back: both passes of 01:xx run.
        let z = zone("America/New_York");
        let times =
            Schedule::parse("*/20 * * * *")
                .unwrap()
                .upcoming(utc("2026-11-01T05:10:00Z"), &z, 7);
        let gaps: Vec<i64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).num_minutes())
            .collect();
        assert_eq!(gaps, vec![20; 6], "{times:?}");
        assert_eq!(z.format(times[0]), "2026-11-01 01:20:00 -04:00");
        assert_eq!(z.format(times[3]), "2026-11-01 01:20:00 -05:00");
    }

    #[test]
    fn every_keeps_its_cadence_through_dst() {
        let z = zone("Europe/Berlin");
        let start = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 40).unwrap();
        let times = Schedule::parse("@every 10s")
            .unwrap()
            .upcoming(start, &z, 5);
        let gaps: Vec<i64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).num_seconds())
            .collect();
        assert_eq!(gaps, vec![10; 4]);
        assert_eq!(z.format(times[1]), "2026-03-29 03:00:00 +02:00");
    }

    #[test]
    fn explains_bad_schedules() {
        let err = |s: &str| Schedule::parse(s).unwrap_err().reason;
        assert_eq!(
            err("* * *"),
            "a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first); this one has 3"
        );
        assert_eq!(
            err("61 * * * *"),
            "the minute field `61` is out of range (0-59)"
        );
        assert_eq!(
            err("0 0 25 * * *"),
            "the hour field `25` is out of range (0-23)"
        );
        assert_eq!(
            err("0 9 * 1-13 *"),
            "the month field `1-13` is out of range (1-12)"
        );
        assert_eq!(
            err("0 9 * * Mox"),
            "the day-of-week field `Mox` is not a number (names: sun, mon, tue, wed, thu, fri, sat)"
        );
        assert_eq!(
            err("0 8 * * Mon,"),
            "the day-of-week field `Mon,` has an empty item (a stray comma?)"
        );
        assert_eq!(
            err("0 8 L * *"),
            "the day-of-month field `L` is not a number (`L`, `W` and `#` are not supported)"
        );
        assert!(err("@sometimes").starts_with("unknown shortcut `@sometimes`"));
        assert!(err("@every soon").starts_with("`@every` needs a duration"));
        assert_eq!(
            err("0 0 30 2 *"),
            "this cron expression never matches a real date"
        );
    }

    #[test]
    fn zones() {
        assert_eq!(Zone::parse("local"), Ok(Zone::local()));
        assert_eq!(Zone::parse("UTC"), Ok(Zone::utc()));
        assert!(
            Zone::parse("Mars/Olympus")
                .unwrap_err()
                .contains("unknown timezone")
        );
        assert_eq!(zone("Europe/Berlin").name(), "Europe/Berlin");
    }
}
