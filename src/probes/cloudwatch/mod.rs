//! `cloudwatch`: metrics Amazon CloudWatch keeps of cloud resources, one GetMetricData call per
//! period and 500 metrics each tick, signed with Signature V4 (`sign`), with keys found as the
//! AWS tools find them (`credentials`). Each metric reports the newest period that has ended
//! and has a value (`window`); one without is an error of its own, the others still report.

pub mod api;
pub mod credentials;
pub mod sign;
pub mod window;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::{Names, Output, Wait, Waiting};
use crate::config::probes::cloudwatch::{CloudwatchSpec, MetricQuery, TYPE};
use crate::vocab::MetricName;
use api::{CallError, Client, Counts, MAX_QUERIES};
use credentials::Provider;

pub struct CloudwatchProbe {
    spec: CloudwatchSpec,
    instance: String,
    names: Names,
    labels: Vec<MetricName>,
    /// Query indexes by period, at most `MAX_QUERIES` a batch: one StartTime and EndTime a
    /// call, so metrics of one period go together. Fixed by the spec, so made once.
    batches: Vec<(Duration, Vec<usize>)>,
    provider: Provider,
    client: Option<Client>,
    counts: Counts,
}

impl CloudwatchProbe {
    pub fn new(spec: CloudwatchSpec, instance: &str) -> Self {
        let labels = spec
            .queries
            .iter()
            .map(|q| MetricName::from(format!("cloudwatch.{instance}.{}", q.label)))
            .collect();
        let mut by_period: BTreeMap<Duration, Vec<usize>> = BTreeMap::new();
        for (i, q) in spec.queries.iter().enumerate() {
            by_period.entry(q.period).or_default().push(i);
        }
        let batches = by_period
            .into_iter()
            .flat_map(|(period, indexes)| {
                indexes
                    .chunks(MAX_QUERIES)
                    .map(|batch| (period, batch.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        CloudwatchProbe {
            provider: Provider::new(spec.credentials.clone(), &spec.region),
            spec,
            instance: instance.to_string(),
            names: Names::new("cloudwatch"),
            labels,
            batches,
            client: None,
            counts: Counts::default(),
        }
    }

    pub async fn collect(&mut self, out: &mut Output, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        let deadline = started + timeout;
        let result = self.read(out, deadline, timeout).await;
        let names = self.names.get(&self.instance, TYPE.fields);
        out.push(&names[0], if result.is_ok() { 1.0 } else { 0.0 });
        out.push(&names[1], self.counts.requests as f64);
        out.push(&names[2], self.counts.metrics as f64);
        if let Err(e) = result {
            if matches!(e, CallError::Denied(_)) {
                self.provider.forget();
            }
            out.error(
                format!("cloudwatch.{}", self.instance),
                e.message().to_string(),
            );
        }
        Ok(())
    }

    async fn read(
        &mut self,
        out: &mut Output,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), CallError> {
        if self.client.is_none() {
            self.client = Some(
                Client::new(&self.spec.endpoint, &self.spec.region, timeout)
                    .map_err(CallError::Other)?,
            );
        }
        let Some(client) = self.client.as_ref() else {
            return Err(CallError::Other("no client".to_string()));
        };
        let now_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let mut found: Vec<Option<(i64, f64)>> = vec![None; self.spec.queries.len()];
        let mut status: Vec<Option<String>> = vec![None; self.spec.queries.len()];
        for (period, batch) in &self.batches {
            let (start, end) = window::window(now_s, *period);
            let queries: Vec<&MetricQuery> = batch.iter().map(|&i| &self.spec.queries[i]).collect();
            let series = client
                .get_metric_data(
                    &mut self.provider,
                    &queries,
                    start,
                    end,
                    deadline,
                    &mut self.counts,
                )
                .await?;
            for (&i, s) in batch.iter().zip(series) {
                found[i] = window::newest(&s.points, end);
                status[i] = s.status;
            }
        }
        for (i, q) in self.spec.queries.iter().enumerate() {
            match (&found[i], &status[i]) {
                (Some((_, value)), _) => out.push(&self.labels[i], *value),
                (None, None) if q.absent_is_zero => out.push(&self.labels[i], 0.0),
                (None, Some(code)) if code == "Forbidden" => out.error(
                    format!("cloudwatch.{}.{}", self.instance, q.label),
                    format!("access denied to {} {} ({})", q.namespace, q.metric, describe(q)),
                ),
                (None, code) => out.error(
                    format!("cloudwatch.{}.{}", self.instance, q.label),
                    format!(
                        "no data for {} {} ({}) in the last {}: an unknown metric or dimension, or nothing reported it{}",
                        q.namespace,
                        q.metric,
                        describe(q),
                        crate::vocab::duration::format_duration(window::lookback(q.period)),
                        code.as_ref().map(|c| format!(" (CloudWatch: {c})")).unwrap_or_default()
                    ),
                ),
            }
        }
        Ok(())
    }
}

/// `InstanceId=i-0abc, Average per 5m`: a query's dimensions and statistic, for messages.
fn describe(q: &MetricQuery) -> String {
    let dims: Vec<String> = q
        .dimensions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let period = crate::vocab::duration::format_duration(q.period);
    if dims.is_empty() {
        format!("{} per {period}", q.stat)
    } else {
        format!("{}, {} per {period}", dims.join(", "), q.stat)
    }
}

impl Wait for CloudwatchProbe {
    fn wait<'a>(&'a mut self, out: &'a mut Output, timeout: Duration) -> Waiting<'a> {
        Box::pin(self.collect(out, timeout))
    }
}
