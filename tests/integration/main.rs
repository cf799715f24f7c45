//! One integration-test binary (every extra test crate would link everything again).

mod config_files;
mod process;
mod scheduling;
mod support;
