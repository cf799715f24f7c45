//! Cron expressions, evaluated by runner itself: which wall-clock times match, and which
//! instants those are around DST switches.
//!
//! Fields follow Vixie cron: numbers, names (`jan`, `mon`), `*` (or `?`), ranges, steps
//! (`*/10`, `1-30/5`, `5/15`) and lists; day-of-week 0 and 7 are Sunday. Day-of-month and
//! day-of-week combine with OR when both are restricted, and with AND when either starts with
//! `*` (`0 0 */2 * Mon` is Mondays on odd dates), as Vixie cron does.
//!
//! DST: a schedule whose hour field names hours (a number, list or range: `0 2,14 * * *`) is a
//! fixed time. A fixed time that does not exist on spring-forward day runs once, at the first
//! valid instant after the gap; one that happens twice on fall-back day runs once, at the first.
//! A schedule whose hour field is `*` or `*/n` is an interval: it follows elapsed time, so it
//! matches in both passes of a repeated hour and not at all in a skipped one.

use jiff::civil::{self, Date, DateTime as Civil};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

/// How far ahead a schedule is searched: past this it never matches (`0 0 30 2 *`).
const SEARCH_YEARS: i16 = 8;
/// More than any DST shift: candidates further than this past the best found cannot beat it.
const SHIFT_MARGIN: SignedDuration = SignedDuration::from_hours(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// The day-of-month or day-of-week field starts with `*`: the two combine with AND.
    day_and: bool,
    /// The hour field names hours (not `*`, `*/n`): DST treats it as a fixed time.
    fixed: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Where the first name counts from (`jan` is 1, `sun` is 0).
    first_name: u32,
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    first_name: 1,
};
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &WEEKDAYS,
    first_name: 0,
};

impl CronSpec {
    /// Parses 5 fields (minute first) or 6 (seconds first), or a shortcut (`@daily`).
    pub fn parse(text: &str) -> Result<CronSpec, String> {
        let expanded = match text.trim().to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *".to_string(),
            "@monthly" => "0 0 0 1 * *".to_string(),
            "@weekly" => "0 0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 0 * * *".to_string(),
            "@hourly" => "0 0 * * * *".to_string(),
            _ => text.trim().to_string(),
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let parts: Vec<&str> = match parts.len() {
            5 => std::iter::once("0").chain(parts).collect(),
            6 => parts,
            n => {
                return Err(format!(
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first); this one has {n}"
                ));
            }
        };
        let mut weekdays = field(parts[5], &WEEKDAY)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let starts_wild = |p: &str| p.starts_with('*') || p.starts_with('?');
        Ok(CronSpec {
            seconds: field(parts[0], &SECOND)?,
            minutes: field(parts[1], &MINUTE)?,
            hours: field(parts[2], &HOUR)?,
            days: field(parts[3], &DAY)?,
            months: field(parts[4], &MONTH)?,
            weekdays,
            day_and: starts_wild(parts[3]) || starts_wild(parts[5]),
            fixed: !starts_wild(parts[2]),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = has(self.days, date.day() as u32);
        let weekday = has(self.weekdays, date.weekday().to_sunday_zero_offset() as u32);
        if self.day_and {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The first wall-clock time at or after `from` that matches, within the search horizon.
    fn next_civil(&self, from: Civil) -> Option<Civil> {
        let limit = from.year().saturating_add(SEARCH_YEARS);
        let mut t = from;
        loop {
            if t.year() > limit {
                return None;
            }
            let date = t.date();
            if !has(self.months, date.month() as u32) {
                t = date
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .to_datetime(civil::time(0, 0, 0, 0));
                continue;
            }
            if !self.day_matches(date) {
                t = date.tomorrow().ok()?.to_datetime(civil::time(0, 0, 0, 0));
                continue;
            }
            let Some(hour) = next_set(self.hours, t.hour() as u32) else {
                t = date.tomorrow().ok()?.to_datetime(civil::time(0, 0, 0, 0));
                continue;
            };
            if hour != t.hour() as u32 {
                t = date.to_datetime(civil::time(hour as i8, 0, 0, 0));
                continue;
            }
            let Some(minute) = next_set(self.minutes, t.minute() as u32) else {
                t = t
                    .with()
                    .minute(0)
                    .second(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            };
            if minute != t.minute() as u32 {
                t = t.with().minute(minute as i8).second(0).build().ok()?;
                continue;
            }
            let Some(second) = next_set(self.seconds, t.second() as u32) else {
                t = t
                    .with()
                    .second(0)
                    .build()
                    .ok()?
                    .checked_add(1.minute())
                    .ok()?;
                continue;
            };
            return t.with().second(second as i8).build().ok();
        }
    }

    /// The instants a matching wall-clock time stands for in `tz`: none, one, or (an interval
    /// schedule in a repeated hour) two.
    fn instants(&self, at: Civil, tz: &TimeZone) -> Vec<Timestamp> {
        let ambiguous = tz.to_ambiguous_timestamp(at);
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                offset.to_timestamp(at).ok().into_iter().collect()
            }
            AmbiguousOffset::Gap { before, after } if self.fixed => {
                // The first valid instant after the gap: where the offset changes.
                let (Ok(mut low), Ok(mut high)) = (after.to_timestamp(at), before.to_timestamp(at))
                else {
                    return Vec::new();
                };
                while high.as_second() - low.as_second() > 1 {
                    let middle = Timestamp::from_second((low.as_second() + high.as_second()) / 2);
                    match middle {
                        Ok(middle) if tz.to_offset(middle) == after => high = middle,
                        Ok(middle) => low = middle,
                        Err(_) => break,
                    }
                }
                vec![high]
            }
            AmbiguousOffset::Gap { .. } => Vec::new(),
            AmbiguousOffset::Fold { before, after } => {
                let first = before.to_timestamp(at).ok();
                let second = if self.fixed {
                    None
                } else {
                    after.to_timestamp(at).ok()
                };
                first.into_iter().chain(second).collect()
            }
        }
    }

    /// The first instant strictly after `after` this schedule runs at in `tz`.
    /// Cron has whole seconds: from `…:34.717` the next `*/2` second is `…:36.000`, not
    /// `…:36.717` (matching from the fraction would fire every run that much late and measure
    /// its lateness from there).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let after = after
            .round(
                jiff::TimestampRound::new()
                    .smallest(jiff::Unit::Second)
                    .mode(jiff::RoundMode::Floor),
            )
            .ok()?;
        let offset = tz.to_offset(after);
        // Far from a switch, wall time and instants move together, and the first match wins.
        let steady = [after - SHIFT_MARGIN, after + SHIFT_MARGIN * 2]
            .iter()
            .all(|t| tz.to_offset(*t) == offset);
        let local = tz.to_datetime(after);
        let mut cursor = if steady {
            local
        } else {
            local.checked_sub(SHIFT_MARGIN).ok()?
        };
        let mut best: Option<Timestamp> = None;
        loop {
            let Some(candidate) = self.next_civil(cursor) else {
                return best;
            };
            if let Some(best) = best
                && candidate > tz.to_datetime(best).checked_add(SHIFT_MARGIN).ok()?
            {
                return Some(best);
            }
            for instant in self.instants(candidate, tz) {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            if steady && best.is_some() {
                return best;
            }
            cursor = candidate.checked_add(1.second()).ok()?;
        }
    }
}

fn has(mask: u64, n: u32) -> bool {
    n < 64 && mask & (1 << n) != 0
}

/// The smallest member of `mask` at or above `from`.
fn next_set(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

/// One field as a bit mask; errors name the field and the item.
fn field(text: &str, f: &Field) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "the {} field `{text}` has an empty item (a stray comma?)",
                f.name
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!(
                        "the {} field `{item}` needs a step above zero after `/`",
                        f.name
                    )
                })?;
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" || range == "?" {
            (f.min, f.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, f, item)?, value(b, f, item)?)
        } else {
            let start = value(range, f, item)?;
            // `5/15` runs from 5 to the end in steps of 15.
            (start, if item.contains('/') { f.max } else { start })
        };
        if low > high {
            return Err(format!(
                "the {} field `{item}` is a range that runs backwards",
                f.name
            ));
        }
        let mut n = low;
        while n <= high {
            mask |= 1 << n;
            n += step;
        }
    }
    Ok(mask)
}

fn value(text: &str, f: &Field, item: &str) -> Result<u32, String> {
    let n = match text.parse::<u32>() {
        Ok(n) => n,
        Err(_) => f
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
            .map(|i| i as u32 + f.first_name)
            .ok_or_else(|| {
                let hint = if ["l", "w"].iter().any(|x| text.eq_ignore_ascii_case(x))
                    || text.contains('#')
                {
                    " (`L`, `W` and `#` are not supported)".to_string()
                } else if f.names.is_empty() {
                    String::new()
                } else {
                    format!(" (names: {})", f.names.join(", "))
                };
                format!("the {} field `{item}` is not a number{hint}", f.name)
            })?,
    };
    if n < f.min || n > f.max {
        return Err(format!(
            "the {} field `{item}` is out of range ({}-{})",
            f.name, f.min, f.max
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next `n` runs after `start` (UTC, RFC 3339), as local times with offsets.
    fn runs(schedule: &str, zone: &str, start: &str, n: usize) -> Vec<String> {
        let spec = CronSpec::parse(schedule).unwrap();
        let tz = TimeZone::get(zone).unwrap();
        let mut at: Timestamp = start.parse().unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            at = spec.next_after(at, &tz).unwrap();
            out.push(
                at.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %:z")
                    .to_string(),
            );
        }
        out
    }

    #[test]
    fn runs_on_the_whole_second_whatever_the_fraction_it_is_asked_from() {
        let next = |schedule: &str, after: &str| {
            let spec = CronSpec::parse(schedule).unwrap();
            spec.next_after(after.parse().unwrap(), &TimeZone::UTC)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            next("*/2 * * * * *", "2026-11-28T10:00:34.717Z"),
            "2026-11-28T10:00:36Z"
        );
        assert_eq!(
            next("* * * * * *", "2026-11-28T10:00:34.717Z"),
            "2026-11-28T10:00:35Z"
        );
        assert_eq!(
            next("*/5 * * * *", "2026-11-28T10:04:59.999Z"),
            "2026-11-28T10:05:00Z"
        );
    }

    #[test]
    fn lists_and_ranges_of_hours_are_fixed_times_across_dst() {
        // Berlin springs forward 2026-03-29 02:00 -> 03:00 and falls back 2026-10-25 03:00 -> 02:00.
        assert_eq!(
            runs("0 2,14 * * *", "Europe/Berlin", "2026-03-28T14:00:00Z", 3),
            [
                "2026-03-29 03:00:00 +02:00",
                "2026-03-29 14:00:00 +02:00",
                "2026-03-30 02:00:00 +02:00"
            ]
        );
        assert_eq!(
            runs("0 2,14 * * *", "Europe/Berlin", "2026-10-24T13:00:00Z", 3),
            [
                "2026-10-25 02:00:00 +02:00",
                "2026-10-25 14:00:00 +01:00",
                "2026-10-26 02:00:00 +01:00"
            ]
        );
        // Two missing times run once, at the end of the gap.
        assert_eq!(
            runs("0,30 2 * * *", "Europe/Berlin", "2026-03-28T14:00:00Z", 2),
            ["2026-03-29 03:00:00 +02:00", "2026-03-30 02:00:00 +02:00"]
        );
        assert_eq!(
            runs("0,30 2 * * *", "Europe/Berlin", "2026-10-24T13:00:00Z", 3),
            [
                "2026-10-25 02:00:00 +02:00",
                "2026-10-25 02:30:00 +02:00",
                "2026-10-26 02:00:00 +01:00"
            ]
        );
        // New York: spring 2026-03-08 02:00 -> 03:00, fall 2026-11-01 02:00 -> 01:00.
        assert_eq!(
            runs(
                "30 2,3 * * *",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                3
            ),
            [
                "2026-03-08 03:00:00 -04:00",
                "2026-03-08 03:30:00 -04:00",
                "2026-03-09 02:30:00 -04:00"
            ]
        );
        assert_eq!(
            runs("0 1-3 * * *", "America/New_York", "2026-10-31T12:00:00Z", 4),
            [
                "2026-11-01 01:00:00 -04:00",
                "2026-11-01 02:00:00 -05:00",
                "2026-11-01 03:00:00 -05:00",
                "2026-11-02 01:00:00 -05:00"
            ]
        );
        // Lord Howe shifts by 30 minutes: 2026-04-05 02:00 -> 01:30, 2026-10-04 02:00 -> 02:30.
        assert_eq!(
            runs(
                "0 0,30 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-04T00:00:00Z",
                3
            ),
            [
                "2026-04-05 01:00:00 +11:00",
                "2026-04-05 01:30:00 +11:00",
                "2026-04-06 01:00:00 +10:30"
            ]
        );
        assert_eq!(
            runs(
                "0,30 2 * * *",
                "Australia/Lord_Howe",
                "2026-10-03T00:00:00Z",
                2
            ),
            ["2026-10-04 02:30:00 +11:00", "2026-10-05 02:00:00 +11:00"]
        );
    }

    #[test]
    fn intervals_follow_elapsed_time() {
        // Hourly through Berlin's repeated hour: 02:00 twice, an hour apart.
        assert_eq!(
            runs("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 4),
            [
                "2026-10-25 02:00:00 +02:00",
                "2026-10-25 02:00:00 +01:00",
                "2026-10-25 03:00:00 +01:00",
                "2026-10-25 04:00:00 +01:00"
            ]
        );
        // ... and through the skipped one: 01:00 then 03:00, an hour apart.
        assert_eq!(
            runs("0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z", 2),
            ["2026-03-29 01:00:00 +01:00", "2026-03-29 03:00:00 +02:00"]
        );
    }

    #[test]
    fn day_of_month_and_weekday_combine_as_vixie_cron() {
        // `*/2` in day-of-month starts with `*`: Mondays on odd dates (AND).
        assert_eq!(
            runs("0 0 */2 * Mon", "UTC", "2026-11-01T00:00:00Z", 3),
            [
                "2026-11-09 00:00:00 +00:00",
                "2026-11-23 00:00:00 +00:00",
                "2026-12-07 00:00:00 +00:00"
            ]
        );
        // Both restricted: the 1st and 15th, and Fridays (OR).
        assert_eq!(
            runs("0 0 1,15 * Fri", "UTC", "2026-11-01T00:00:00Z", 4),
            [
                "2026-11-06 00:00:00 +00:00",
                "2026-11-13 00:00:00 +00:00",
                "2026-11-15 00:00:00 +00:00",
                "2026-11-20 00:00:00 +00:00"
            ]
        );
        assert_eq!(
            runs("@midnight", "UTC", "2026-11-01T10:00:00Z", 1),
            ["2026-11-02 00:00:00 +00:00"]
        );
        assert_eq!(
            runs("0 12 * * 7", "UTC", "2026-11-01T13:00:00Z", 1),
            ["2026-11-08 12:00:00 +00:00"]
        );
        assert_eq!(
            runs("0 12 * * sun-tue/2", "UTC", "2026-11-02T13:00:00Z", 1),
            ["2026-11-03 12:00:00 +00:00"]
        );
    }

    #[test]
    fn a_day_the_zone_skips_still_has_a_next_run() {
        // Samoa skipped 2011-12-30 entirely: 09:00 that day runs at the first instant after it.
        assert_eq!(
            runs("0 9 * * *", "Pacific/Apia", "2011-12-29T00:00:00Z", 3),
            [
                "2011-12-29 09:00:00 -10:00",
                "2011-12-31 00:00:00 +14:00",
                "2011-12-31 09:00:00 +14:00"
            ]
        );
    }

    #[test]
    fn bad_fields_say_which_and_why() {
        let err = |s: &str| CronSpec::parse(s).unwrap_err();
        assert_eq!(
            err("0 8 * * Mon,"),
            "the day-of-week field `Mon,` has an empty item (a stray comma?)"
        );
        assert_eq!(
            err("0 8 * * 5-1"),
            "the day-of-week field `5-1` is a range that runs backwards"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "the minute field `*/0` needs a step above zero after `/`"
        );
        assert_eq!(
            err("0 8 * 13 *"),
            "the month field `13` is out of range (1-12)"
        );
        assert!(CronSpec::parse("0 8 * jan-mar MON-fri").is_ok());
    }
}
