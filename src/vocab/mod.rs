//! The bottom layer: words every other module shares and none of them owns. Severities,
//! durations and sizes as ops write them, "did you mean", retry pacing, metric names, and the
//! wording of numbers and counts. Nothing here imports another module of runner.

pub mod backoff;
pub mod duration;
pub mod rank;
pub mod severity;
pub mod size;
pub mod suggest;
pub mod unit;
pub mod words;

use std::sync::Arc;

pub use backoff::Backoff;
pub use severity::Severity;

/// A metric's full name, `cpu.total.usage_percent`; shared, since it repeats every tick.
pub type MetricName = Arc<str>;
