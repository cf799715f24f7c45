//! One integration-test binary (every extra test crate would link everything again).

// A harness, not the product: a panic here is the failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod actions;
mod changing_rules;
mod cloudwatch;
mod config_files;
mod docs;
mod fake_servicenow;
mod fleet;
mod fuzz_inputs;
mod host_auto;
mod hostile;
mod http_server;
mod layers;
mod listener_tls;
mod monitor;
mod mute;
mod newcomer;
mod notify;
mod notify_dead_letter;
mod notify_process;
mod percentiles;
mod pg_server;
mod ping;
mod postgres;
mod postgres_activity;
mod postgres_slow;
mod probes;
mod process;
mod prometheus_habits;
mod reload;
mod remote_write;
mod replay;
mod report;
mod report_markup;
mod report_windows;
mod roots;
mod rotate;
mod rules;
mod scheduling;
mod service;
mod service_probes;
mod servicenow_fetch;
mod servicenow_notify;
mod status;
mod store;
mod support;
