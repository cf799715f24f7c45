//! The monitor job's tick: run the probes, make the sample, append it to the metrics log, add
//! it to history. One `Monitor` lives as long as the scheduler, so rates and history carry over
//! from tick to tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::config::{Config, MonitorSpec};
use crate::probes::{ProbeSet, ProcRoot};
use crate::store::history::{History, HistoryConfig};
use crate::store::rollups::RollupStore;
use crate::store::sample::Sample;
use crate::store::{MetricsLog, MetricsReader};

/// What one tick did, for the log and for `runner run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickSummary {
    pub metrics: usize,
    pub errors: usize,
}

pub struct Monitor {
    job: String,
    host: String,
    probes: ProbeSet,
    log: MetricsLog,
    history: History,
    reader: MetricsReader,
    warmed: bool,
    /// Probe errors of the previous tick, to log each once when it starts and when it clears.
    failing: BTreeMap<String, String>,
}

impl Monitor {
    pub fn new(config: &Config, job: &str, spec: &MonitorSpec) -> Monitor {
        Monitor {
            job: job.to_string(),
            host: config.host.clone(),
            probes: ProbeSet::build(&spec.probes, &ProcRoot::default()),
            log: MetricsLog::new(&config.data_dir),
            history: History::new(
                HistoryConfig::default(),
                Some(RollupStore::new(&config.data_dir, job)),
            ),
            reader: MetricsReader::for_config(config),
            warmed: false,
            failing: BTreeMap::new(),
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Fills history from the metrics log, once, before the first tick.
    fn warm(&mut self, now: DateTime<Utc>) {
        let started = Instant::now();
        let stats = self.history.warm(self.reader.files(), &self.job, now);
        info!(
            job = %self.job,
            samples = stats.samples,
            metrics = self.history.metric_count(),
            bad_lines = stats.bad_lines,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "history warmed from the metrics log"
        );
        for problem in stats.unreadable {
            warn!(job = %self.job, source = %problem, "part of the metrics log could not be read");
        }
        self.warmed = true;
    }

    /// Measures once and records the sample.
    pub async fn tick(&mut self, at: DateTime<Utc>) -> anyhow::Result<(Sample, TickSummary)> {
        if !self.warmed {
            self.warm(at);
        }
        let output = self.probes.collect().await;
        let sample = Sample {
            ts: at,
            host: self.host.clone(),
            job: self.job.clone(),
            metrics: output.metrics,
            errors: output.errors,
        };
        self.report_error_changes(&sample);
        if let Err(e) = self.log.append(&sample) {
            // The tick still counts for rules; the log's trouble is said every tick it lasts.
            warn!(job = %self.job, error = %e, "cannot append to the metrics log");
        }
        self.history
            .push(sample.ts, sample.metrics.iter().map(|(n, v)| (n, *v)));
        let summary = TickSummary {
            metrics: sample.metrics.len(),
            errors: sample.errors.len(),
        };
        Ok((sample, summary))
    }

    fn report_error_changes(&mut self, sample: &Sample) {
        let now: BTreeMap<String, String> = sample.errors.iter().cloned().collect();
        for (key, message) in &now {
            if self.failing.get(key) != Some(message) {
                warn!(job = %self.job, probe = %key, error = %message, "probe failing");
            }
        }
        for key in self.failing.keys().filter(|k| !now.contains_key(*k)) {
            info!(job = %self.job, probe = %key, "probe recovered");
        }
        self.failing = now;
    }
}

/// A monitor shared between the scheduler's runs of one job.
pub type SharedMonitor = Arc<tokio::sync::Mutex<Option<Monitor>>>;
