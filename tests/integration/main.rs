//! One integration-test binary (every extra test crate would link everything again).

mod config_files;
mod monitor;
mod probes;
mod process;
mod scheduling;
mod store;
mod support;
