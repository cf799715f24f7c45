//! `cargo fuzz run jobs_file`: see `fuzz/targets.rs`.
#![no_main]

// Each binary uses one target of the shared file.
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::jobs_file(data));
