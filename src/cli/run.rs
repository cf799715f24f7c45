//! `runner run JOB`: one run now, under the job's lock, then what it queued is sent before
//! the process leaves.

use std::path::Path;
use std::sync::Arc;

use super::output::outln;
use super::{block_on, exit, find_job, load, log_warnings};
use crate::job::Job;
use crate::notify::Notifiers;
use crate::scheduler::clock::{SharedClock, SystemClock};
use crate::scheduler::{Outcome, RunEnd, RunInfo, run_within};

pub fn run(file: &Path, name: &str) -> u8 {
    let config = match load(file) {
        Ok(config) => Arc::new(config),
        Err(code) => return code,
    };
    let timeout = match find_job(&config, name) {
        Ok(spec) => spec.timeout,
        Err(code) => return code,
    };
    log_warnings(&config);
    block_on(async move {
        let clock: SharedClock = Arc::new(SystemClock);
        let now = clock.now();
        let notifiers = Arc::new(Notifiers::new(&config, clock.clone()));
        let grace = config.shutdown_grace;
        let job = Arc::new(Job::new(config, name, clock.clone(), notifiers.clone()));
        let info = RunInfo {
            scheduled: now,
            started: now,
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        let ended = run_within(name, job, info, timeout, &clock).await;
        // Send what the run queued before leaving; what cannot go now stays queued.
        let deadline = clock.now() + chrono::Duration::from_std(grace).unwrap_or_default();
        notifiers.drain(deadline).await;
        match ended {
            RunEnd::Finished(Ok(Outcome::Done(summary))) => {
                outln!("{summary}");
                exit::OK
            }
            RunEnd::Finished(Ok(Outcome::Off(reason))) => {
                outln!("{reason}; nothing to do");
                exit::OK
            }
            RunEnd::Finished(Ok(Outcome::Busy(reason))) => {
                super::fail(format_args!("{reason}"));
                exit::BUSY
            }
            RunEnd::Finished(Err(e)) => {
                super::fail(format_args!("job `{name}` failed: {e:#}"));
                exit::FAILED
            }
            RunEnd::TimedOut { limit } => {
                super::fail(format_args!(
                    "job `{name}` ran past its timeout of {} and was cancelled",
                    crate::vocab::duration::format_duration(limit)
                ));
                exit::FAILED
            }
            RunEnd::Panicked(reason) => {
                super::fail(format_args!("job `{name}` panicked: {reason}"));
                exit::FAILED
            }
        }
    })
}
