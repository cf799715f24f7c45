//! Durations as ops write them (`500ms`, `15m`, `7d`, `1h30m`) and as runner prints them back.

use std::time::Duration;

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

/// The longest duration runner reads: a century. Longer values are typos or attempts to
/// overflow the arithmetic on times (`18446744073709551615ms`), and nothing runner does needs
/// them.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Why a duration did not parse; the message is shown after the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason}")]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

/// Parses `500ms`, `10s`, `15m`, `6h`, `7d`, `2w` and sums like `1h30m`.
/// A bare number is refused: `30` could mean seconds or minutes, so the unit is required.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(fail("it is empty; write a number and a unit, e.g. `15m`"));
    }
    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(fail(
                "expected a number followed by ms, s, m, h, d or w (e.g. `500ms`, `15m`, `7d`)",
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| fail("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(fail(if unit.is_empty() {
                "a unit is required after the number: ms, s, m, h, d or w"
            } else {
                "unknown unit; use ms, s, m, h, d or w (e.g. `500ms`, `15m`, `7d`)"
            }));
        };
        total_ms = number
            .checked_mul(factor)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| fail("the duration is too large"))?;
        rest = &rest[unit_len..];
    }
    let duration = Duration::from_millis(total_ms);
    if duration > MAX_DURATION {
        return Err(fail(
            "it is longer than 100 years; write a shorter duration",
        ));
    }
    Ok(duration)
}

/// The shortest exact spelling that `parse_duration` reads back: `90s` → `1m30s`.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for &(unit, factor) in UNITS.iter().rev() {
        if ms >= factor {
            out.push_str(&format!("{}{unit}", ms / factor));
            ms %= factor;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(text: &str, ms: u64) {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(ms)),
            "{text}"
        );
    }

    #[test]
    fn parses_each_unit_and_sums() {
        case("500ms", 500);
        case("10s", 10_000);
        case("15m", 900_000);
        case("6h", 21_600_000);
        case("7d", 604_800_000);
        case("2w", 1_209_600_000);
        case("1h30m", 5_400_000);
        case(" 1m30s ", 90_000);
    }

    #[test]
    fn refuses_what_is_ambiguous_or_wrong() {
        let reason = |t: &str| parse_duration(t).map_err(|e| e.reason).err();
        assert_eq!(
            reason("30"),
            Some("a unit is required after the number: ms, s, m, h, d or w")
        );
        assert_eq!(
            reason("15x"),
            Some("unknown unit; use ms, s, m, h, d or w (e.g. `500ms`, `15m`, `7d`)")
        );
        assert!(reason("m").is_some());
        assert!(reason("").is_some());
        assert!(reason("-5s").is_some());
        assert!(reason("99999999999999999999s").is_some());
        // Beyond a century: refused before any arithmetic on times can overflow.
        assert_eq!(
            reason("18446744073709551615ms"),
            Some("it is longer than 100 years; write a shorter duration")
        );
        assert_eq!(
            reason("9999999999w"),
            Some("it is longer than 100 years; write a shorter duration")
        );
        assert!(parse_duration("5200w").is_ok());
    }

    #[test]
    fn formats_back_to_what_parses() {
        for ms in [1, 999, 1_000, 90_000, 5_400_000, 604_800_000, 694_861_001] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
