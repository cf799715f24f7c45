//! runner: a declarative rules-engine job runner for system performance monitoring.
//!
//! The modules follow the pipeline: `config` reads the jobs file, `scheduler` fires jobs,
//! `job` runs one, and `cli` is the command line on top.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod diagnostic;

pub mod glob;
pub mod http;
pub mod job;
pub mod lock;
pub mod logging;
pub mod monitor;
pub mod notify;
pub mod probes;
pub mod report;
pub mod rotate;
pub mod rule_test;
pub mod rules;
pub mod scheduler;
pub mod servicenow;
pub mod store;
pub mod template;
pub mod vocab;
