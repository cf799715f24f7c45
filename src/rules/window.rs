//! The durations rules pass to history functions, checked one way whether they are literals
//! (`runner check` refuses them at load time) or computed (the function refuses them at run
//! time): above zero, and no longer than the history runner keeps, so no function can walk an
//! unbounded span.

use std::time::Duration;

use crate::store::rollups::RETENTION_DAYS;
use crate::vocab::duration::parse_duration;

/// The longest window: the hourly rollups are kept this long.
pub const MAX_WINDOW: Duration = Duration::from_secs(RETENTION_DAYS as u64 * 86_400);

/// `ewma` reads ten half-lives back.
pub const MAX_HALF_LIFE: Duration = Duration::from_secs(RETENTION_DAYS as u64 * 86_400 / 10);

/// How far `predict` may look ahead: a trend read a year out is no longer a forecast.
pub const MAX_AHEAD: Duration = Duration::from_secs(366 * 86_400);

/// What a duration argument is for, which bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// A window of history ending now.
    Window,
    /// `ewma`'s half-life.
    HalfLife,
    /// `predict`'s reach into the future.
    Ahead,
}

impl Span {
    fn limit(self) -> (Duration, &'static str) {
        match self {
            Span::Window => (MAX_WINDOW, "a window"),
            Span::HalfLife => (MAX_HALF_LIFE, "a half-life"),
            Span::Ahead => (MAX_AHEAD, "how far ahead"),
        }
    }
}

/// The duration `text` names, if it is a valid `span`; else why not, for people.
pub fn parse(text: &str, span: Span) -> Result<Duration, String> {
    let duration = parse_duration(text).map_err(|e| e.to_string())?;
    let (limit, what) = span.limit();
    if duration.is_zero() {
        return Err(format!("{what} must be longer than zero, not `{text}`"));
    }
    if duration > limit {
        let days = limit.as_secs() / 86_400;
        return Err(format!(
            "{what} may be at most {days}d (runner keeps {RETENTION_DAYS} days of history), not `{text}`"
        ));
    }
    Ok(duration)
}

/// A percentile's rank: from 0 to 100.
pub fn percent(p: f64) -> Result<f64, String> {
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("percentile takes a percent from 0 to 100, not {p}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_above_zero_and_within_history() {
        assert_eq!(parse("15m", Span::Window), Ok(Duration::from_secs(900)));
        assert_eq!(parse("5w", Span::Window), Ok(MAX_WINDOW));
        assert_eq!(
            parse("0s", Span::Window),
            Err("a window must be longer than zero, not `0s`".into())
        );
        assert_eq!(
            parse("1000w", Span::Window),
            Err(
                "a window may be at most 35d (runner keeps 35 days of history), not `1000w`".into()
            )
        );
        assert!(parse("4d", Span::HalfLife).is_err());
        assert!(parse("3d", Span::HalfLife).is_ok());
        assert!(parse("30d", Span::Ahead).is_ok());
        assert!(parse("2y", Span::Ahead).is_err());
        assert!(percent(150.0).is_err());
        assert_eq!(percent(95.0), Ok(95.0));
    }
}
