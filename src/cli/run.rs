//! `runner run JOB`: one run now, under the job's lock, then what it queued is sent before
//! the process leaves.

use std::path::Path;
use std::sync::Arc;

use super::{block_on, exit, find_job, load, log_warnings};
use crate::job::Job;
use crate::notify::Notifiers;
use crate::scheduler::clock::{SharedClock, SystemClock};
use crate::scheduler::{Outcome, RunInfo};

pub fn run(file: &Path, name: &str) -> u8 {
    let config = match load(file) {
        Ok(config) => Arc::new(config),
        Err(code) => return code,
    };
    if let Err(code) = find_job(&config, name) {
        return code;
    }
    log_warnings(&config);
    block_on(async move {
        let clock: SharedClock = Arc::new(SystemClock);
        let now = clock.now();
        let notifiers = Arc::new(Notifiers::new(&config, clock.clone()));
        let grace = config.shutdown_grace;
        let job = Job::new(config, name, clock.clone(), notifiers.clone());
        let outcome = job
            .run_once(RunInfo {
                scheduled: now,
                started: now,
                cancel: tokio_util::sync::CancellationToken::new(),
            })
            .await;
        // Send what the run queued before leaving; what cannot go now stays queued.
        let deadline = clock.now() + chrono::Duration::from_std(grace).unwrap_or_default();
        notifiers.drain(deadline).await;
        match outcome {
            Ok(Outcome::Done(summary)) => {
                println!("{summary}");
                exit::OK
            }
            Ok(Outcome::Off(reason)) => {
                println!("{reason}; nothing to do");
                exit::OK
            }
            Ok(Outcome::Busy(reason)) => {
                super::fail(format_args!("{reason}"));
                exit::BUSY
            }
            Err(e) => {
                super::fail(format_args!("job `{name}` failed: {e:#}"));
                exit::FAILED
            }
        }
    })
}
