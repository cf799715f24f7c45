//! Where alert events go. `log` is built in and always on: a new user sees alerts on the
//! terminal without configuring anything.

use tracing::{info, warn};

use crate::alerts::event::{AlertEvent, EventKind};
use crate::config::Severity;

/// The `log` notifier: one structured line per event.
pub fn log_event(event: &AlertEvent) {
    let value = event
        .value
        .map(crate::alerts::event::format_value)
        .unwrap_or_default();
    macro_rules! line {
        ($level:ident) => {
            $level!(
                alert = %event.name,
                kind = %event.kind,
                severity = event.severity.as_str(),
                fingerprint = %event.short_fingerprint(),
                value = %value,
                job = %event.job,
                rule = %event.rule_file,
                "{}: {}",
                event.summary,
                event.explanation
            )
        };
    }
    match (event.kind, event.severity) {
        (
            EventKind::Firing | EventKind::Repeat | EventKind::Flapping,
            Severity::Warning | Severity::Critical,
        ) => line!(warn),
        _ => line!(info),
    }
}
