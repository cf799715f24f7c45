//! One integration-test binary (every extra test crate would link everything again).

mod config_files;
mod http_server;
mod monitor;
mod probes;
mod process;
mod rotate;
mod rules;
mod scheduling;
mod service_probes;
mod store;
mod support;
