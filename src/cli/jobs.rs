//! `runner jobs`: each job, its schedule in words and its next three run times.

use std::path::Path;

use super::output::outln;
use super::{exit, load};
use crate::scheduler::clock::{Clock, SystemClock};
use crate::vocab::duration::format_duration;

pub fn run(file: &Path) -> u8 {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let now = SystemClock.now();
    outln!(
        "jobs in {} (times in {})",
        file.display(),
        config.zone.name()
    );
    for spec in config.jobs.values() {
        outln!();
        outln!("{} ({})", spec.name, spec.type_name());
        if let Some(description) = &spec.description {
            outln!("  {description}");
        }
        outln!(
            "  schedule: {}  ({})",
            spec.schedule,
            spec.schedule.describe()
        );
        if let Some(timeout) = spec.timeout {
            outln!("  timeout:  {}", format_duration(timeout));
        }
        match spec.inactive_reason() {
            Some(reason) => outln!("  off:      {reason}"),
            None => {
                // `@every 500ms` runs twice a second: whole seconds would print equal times.
                let format = match spec.schedule {
                    crate::scheduler::schedule::Schedule::Every(every)
                        if every.subsec_nanos() != 0 =>
                    {
                        "%Y-%m-%d %H:%M:%S%.3f %:z"
                    }
                    _ => "%Y-%m-%d %H:%M:%S %:z",
                };
                for (i, at) in spec
                    .schedule
                    .upcoming(now, &config.zone, 3)
                    .into_iter()
                    .enumerate()
                {
                    let label = if i == 0 { "next:" } else { "" };
                    outln!("  {label:<9} {}", config.zone.strftime(at, format));
                }
            }
        }
    }
    let off: Vec<String> = config
        .notifiers
        .values()
        .filter_map(|n| n.off.as_ref().map(|r| format!("{} ({r})", n.name)))
        .collect();
    if !off.is_empty() {
        outln!();
        outln!("notifiers off: {}", off.join("; "));
    }
    exit::OK
}
