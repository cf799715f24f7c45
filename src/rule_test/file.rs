//! The rule test file as written (`<rule>.test.yaml`): the rules under test, the jobs file
//! and monitor job whose metric scope, flap policy, rule timeout and notifiers they run with,
//! and scenarios of input series with assertions at times on a virtual clock.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::alerts::event::EventKind;
use crate::vocab::Severity;

/// A rule test file as written: the rules under test, their scope, and scenarios.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rule files to load, relative to the test file.
    pub rules: Vec<Spanned<String>>,
    /// A jobs file whose monitor job the rules run as: its metric scope, flap policy, rule
    /// timeout and notifiers (optional: without it the scope is the metrics the scenarios feed,
    /// with the default policy and each notifier type's built-in message).
    #[serde(default)]
    pub jobs: Option<Spanned<String>>,
    /// The monitor job in `jobs` (default: its only monitor job).
    #[serde(default)]
    pub job: Option<Spanned<String>>,
    pub scenarios: Vec<Scenario>,
}

/// One run of the rules on a virtual clock.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, for the report.
    pub name: String,
    /// Time between ticks (`10s`).
    pub interval: Spanned<String>,
    /// The first tick, RFC 3339 UTC; the hour of the week matters to `baseline()`.
    pub start: Spanned<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// Past weeks of hourly values per metric, for `baseline()`.
    #[serde(default)]
    pub seed: IndexMap<String, Seed>,
    /// Metric → series, one value per tick: `50x6 95x20`, `0+10x5`, `_` for missing.
    pub input: IndexMap<String, Spanned<String>>,
    /// Note → text a probe reports beside its metrics (`postgres.main.lock_head_blocker`), the
    /// same on every tick, for rules' `note()`.
    #[serde(default)]
    pub notes: IndexMap<String, String>,
    /// Assertions, in time order.
    pub tests: Vec<Spanned<Expectation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// How many weeks before `start`.
    pub weeks: Spanned<u32>,
    /// Hourly values, from the hour-of-week of `start` minus `weeks`; repeated as needed.
    pub series: Spanned<String>,
}

/// What must hold at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// An offset from `start` (`15m`) or an RFC 3339 time.
    pub at: String,
    /// Exactly these alerts are pending (`name` or `name{label=value}`).
    #[serde(default)]
    pub pending: Option<Vec<String>>,
    /// Exactly these alerts are firing.
    #[serde(default)]
    pub firing: Option<Vec<String>>,
    /// Exactly these alerts were resolved since the previous assertion.
    #[serde(default)]
    pub resolved: Option<Vec<String>>,
    /// Exactly these alerts are flapping.
    #[serde(default)]
    pub flapping: Option<Vec<String>>,
    /// Exactly these events were sent since the previous assertion, in order.
    #[serde(default)]
    pub events: Option<Vec<ExpectedEvent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedEvent {
    pub alert: String,
    pub kind: EventKind,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub summary_contains: Option<String>,
    #[serde(default)]
    pub explanation_contains: Option<String>,
    /// The action this event would run (the rule's `action`, an `actions:` entry of the jobs
    /// file), or `none`; the test never runs it.
    #[serde(default)]
    pub action: Option<String>,
    /// Notifier → text its message must contain, rendered by that notifier as configured in
    /// the job (a Slack `template` included). A key is a notifier of the job's jobs file, or a
    /// notifier type (`slack`, `webhook`, `servicenow`, `alertmanager`, `log`) for its built-in
    /// message.
    #[serde(default)]
    pub messages: IndexMap<String, String>,
}
