//! runner: a declarative rules-engine job runner for system performance monitoring.
//!
//! Modules import downwards only: `vocab` and the plumbing below everything, then `config`
//! (the jobs file), `probes` and `store` (measuring, the metrics log and history), `rules`,
//! `alerts`, `servicenow` and `notify`, then the jobs (`monitor`, `report`, `rotate`,
//! `rule_test`, `replay`, `job`), and `cli` on top. `tests/integration/layers.rs` holds that order.

pub mod alerts;
pub mod alloc;
pub mod child;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod failpoint;
pub mod footprint;

pub mod glob;
pub mod http;
pub mod job;
pub mod lock;
pub mod logging;
pub mod monitor;
pub mod notify;
pub mod probes;
pub mod remote_write;
pub mod replay;
pub mod report;
pub mod rotate;
pub mod rule_test;
pub mod rules;
pub mod scheduler;
pub mod servicenow;
pub mod status;
pub mod store;
pub mod template;
pub mod tls;
pub mod vocab;

/// Counts memory per thread, so a rule that grows memory without bound is stopped.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
