//! An `actions:` entry as checked: the command an alert runs when it fires, its timeout, and
//! how often it may run for one alert. `alerts::action` runs it.

use std::time::Duration;

/// The timeout when the entry gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// When an alert runs its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOn {
    /// When it turns firing.
    Firing,
    /// When it turns firing and at each repeat notice.
    Repeat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    /// Program and arguments, never through a shell.
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Least time between two runs for one alert; zero: none.
    pub cooldown: Duration,
    /// Most runs for one alert in any hour; `None`: no cap.
    pub max_per_hour: Option<u32>,
    pub on: RunOn,
}
