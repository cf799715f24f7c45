//! What a report job tells its notifiers: where the report is and what stands out. It goes
//! through the outbox like an alert event.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportNotice {
    /// Stable for a job and period: a retried delivery carries the same id.
    pub id: String,
    pub job: String,
    pub title: String,
    pub host: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The few sentences worth a glance.
    pub highlights: Vec<String>,
    /// The rendered files.
    pub files: Vec<PathBuf>,
    pub alerts_fired: u64,
    pub incidents_open: usize,
    pub samples: u64,
}

impl ReportNotice {
    /// `Weekly performance report, web-1, 2026-11-23 to 2026-11-30`.
    pub fn headline(&self) -> String {
        format!(
            "{}, {}, {} to {}",
            self.title,
            self.host,
            self.from.format("%Y-%m-%d"),
            self.to.format("%Y-%m-%d")
        )
    }
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Event(crate::alerts::event::AlertEvent),
    Report(ReportNotice),
}
