//! `cloudwatch`: what the cloud provider measures of an instance, a database or a load balancer
//! from outside (status checks, CPU credits, RDS latency, ALB 5xx), read from Amazon CloudWatch
//! with GetMetricData (issue 31). Metrics are written out one by one or come from a preset
//! (`ec2`, `rds`, `alb`) whose fields are listed here once for the docs and the rules' schema.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, named_probe_config, valid_probe_name};
use crate::config::build::Builder;
use crate::config::raw::Text;

pub const TYPE: ProbeType = ProbeType {
    name: "cloudwatch",
    instances: Instances::Named,
    fields: &[
        Field {
            name: "up",
            help: "1 if CloudWatch answered the tick's GetMetricData calls, else 0",
        },
        Field {
            name: "api_requests_total",
            help: "GetMetricData calls made since runner started, retries after throttling included",
        },
        Field {
            name: "api_metrics_total",
            help: "metrics requested from CloudWatch since runner started: what CloudWatch bills",
        },
    ],
    // Each metric's field is its label: the settings add them (`extra_fields`).
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(10_000),
};

/// One metric a preset reads: its namespace, name, statistic and the field it becomes.
#[derive(Debug, Clone, Copy)]
pub struct PresetMetric {
    pub metric: &'static str,
    pub stat: &'static str,
    pub label: &'static str,
    /// Dimensions beyond the preset's own first one (an ALB's target group).
    pub per_target_group: bool,
    /// CloudWatch writes no point for a period without any (an ALB's 5xx counts): no data is
    /// 0 here, not an error.
    pub absent_is_zero: bool,
    pub help: &'static str,
}

const fn pm(
    metric: &'static str,
    stat: &'static str,
    label: &'static str,
    help: &'static str,
) -> PresetMetric {
    PresetMetric {
        metric,
        stat,
        label,
        per_target_group: false,
        absent_is_zero: false,
        help,
    }
}

/// `ec2: <instance id>`: namespace AWS/EC2, dimension InstanceId.
pub const EC2: &[PresetMetric] = &[
    pm(
        "CPUUtilization",
        "Average",
        "cpu_utilization_percent",
        "CPU in use as the hypervisor sees it",
    ),
    pm(
        "StatusCheckFailed",
        "Maximum",
        "status_check_failed",
        "1 if the instance or system status check failed in the period",
    ),
    pm(
        "StatusCheckFailed_System",
        "Maximum",
        "status_check_failed_system",
        "1 if the system (host hardware) status check failed",
    ),
    pm(
        "CPUCreditBalance",
        "Average",
        "cpu_credit_balance",
        "CPU credits left (burstable T instances only; no data elsewhere)",
    ),
];

/// `rds: <db instance identifier>`: namespace AWS/RDS, dimension DBInstanceIdentifier.
pub const RDS: &[PresetMetric] = &[
    pm(
        "CPUUtilization",
        "Average",
        "cpu_utilization_percent",
        "CPU in use on the database instance",
    ),
    pm(
        "DatabaseConnections",
        "Average",
        "database_connections",
        "client connections open",
    ),
    pm(
        "ReadLatency",
        "Average",
        "read_latency_s",
        "average time one disk read took",
    ),
    pm(
        "WriteLatency",
        "Average",
        "write_latency_s",
        "average time one disk write took",
    ),
    pm(
        "FreeStorageSpace",
        "Minimum",
        "free_storage_bytes",
        "storage left",
    ),
];

/// `alb: { load_balancer, target_group }`: namespace AWS/ApplicationELB.
pub const ALB: &[PresetMetric] = &[
    pm(
        "RequestCount",
        "Sum",
        "requests",
        "requests the load balancer handled in the period",
    ),
    PresetMetric {
        metric: "HTTPCode_Target_5XX_Count",
        stat: "Sum",
        label: "target_5xx",
        per_target_group: false,
        absent_is_zero: true,
        help: "5xx answers from the targets in the period (0 when CloudWatch has none)",
    },
    PresetMetric {
        metric: "HTTPCode_ELB_5XX_Count",
        stat: "Sum",
        label: "elb_5xx",
        per_target_group: false,
        absent_is_zero: true,
        help: "5xx answers made by the load balancer itself (no target, timeouts; 0 when CloudWatch has none)",
    },
    pm(
        "TargetResponseTime",
        "Average",
        "target_response_time_s",
        "time from the request leaving the load balancer to the target's answer",
    ),
    PresetMetric {
        metric: "UnHealthyHostCount",
        stat: "Maximum",
        label: "unhealthy_targets",
        per_target_group: true,
        absent_is_zero: false,
        help: "targets of the target group failing their health checks",
    },
    PresetMetric {
        metric: "HealthyHostCount",
        stat: "Minimum",
        label: "healthy_targets",
        per_target_group: true,
        absent_is_zero: false,
        help: "targets of the target group passing their health checks",
    },
];

/// The load balancer and target group an `alb` preset reads, as CloudWatch names them.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlbConfig {
    /// `app/<name>/<id>`: the end of the load balancer's ARN.
    pub load_balancer: Text,
    /// `targetgroup/<name>/<id>`: the end of the target group's ARN.
    pub target_group: Text,
}

/// One metric as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// `AWS/EC2`, `AWS/RDS`, or your own.
    pub namespace: Text,
    /// `CPUUtilization`.
    pub metric: Text,
    /// Name to value (`InstanceId: i-0abc`).
    #[serde(default)]
    pub dimensions: BTreeMap<String, Text>,
    /// `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount` or a percentile `p99`.
    #[serde(default)]
    pub stat: Option<Text>,
    /// The period the statistic covers (`5m`); the probe's `period` when not given.
    #[serde(default)]
    pub period: Option<Text>,
    /// The field's name (`cloudwatch.<name>.<label>`); the metric's name in snake case when
    /// not given (`CPUUtilization` is `cpu_utilization`).
    #[serde(default)]
    pub label: Option<Text>,
}

named_probe_config! {
    /// Metrics of one cloud resource (or several), read from CloudWatch each tick.
    pub struct CloudwatchProbeConfig {
        /// `eu-west-1`.
        pub region: Text,
        /// Where the API is (`http://127.0.0.1:4566` for a stand-in, a VPC endpoint); the
        /// region's public endpoint when not given.
        #[serde(default)]
        pub endpoint: Option<Text>,
        /// The shared credentials file's profile; `AWS_PROFILE`, else `default`, when not given.
        #[serde(default)]
        pub profile: Option<Text>,
        /// The period of metrics that do not give their own (default 5m).
        #[serde(default)]
        pub period: Option<Text>,
        /// Metrics written out.
        #[serde(default)]
        pub metrics: Vec<MetricConfig>,
        /// An EC2 instance's id: the `ec2` preset's metrics.
        #[serde(default)]
        pub ec2: Option<Text>,
        /// An RDS instance's identifier: the `rds` preset's metrics.
        #[serde(default)]
        pub rds: Option<Text>,
        /// An application load balancer and one target group: the `alb` preset's metrics.
        #[serde(default)]
        pub alb: Option<AlbConfig>,
    }
}

/// One metric to ask for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    pub stat: String,
    pub period: Duration,
    pub label: String,
    /// No data in the window reads 0 (a preset's counts CloudWatch only writes when non-zero).
    pub absent_is_zero: bool,
}

/// Where the AWS tools look for credentials, read from the environment when the config loads.
#[derive(Debug, Clone, Default)]
pub struct CredentialEnv {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub profile: Option<String>,
    pub shared_credentials_file: Option<String>,
    pub config_file: Option<String>,
    pub home: Option<String>,
    pub web_identity_token_file: Option<String>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub sts_endpoint: Option<String>,
    pub imds_endpoint: Option<String>,
    pub imds_disabled: bool,
}

#[derive(Debug, Clone)]
pub struct CloudwatchSpec {
    pub region: String,
    /// `https://monitoring.<region>.amazonaws.com` unless the probe says otherwise.
    pub endpoint: String,
    pub queries: Vec<MetricQuery>,
    pub credentials: CredentialEnv,
}

impl Settings for CloudwatchSpec {
    fn extra_fields(&self) -> Vec<String> {
        self.queries.iter().map(|q| q.label.clone()).collect()
    }
}

/// `CPUUtilization` is `cpu_utilization`, `HTTPCode_Target_5XX_Count` `http_code_target_5xx_count`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) => {
                    p.is_ascii_lowercase()
                        || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
                }
                None => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(*c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// CloudWatch's statistics: the five plain ones and percentiles `p0`..`p100`.
fn valid_stat(stat: &str) -> bool {
    matches!(
        stat,
        "Average" | "Sum" | "Minimum" | "Maximum" | "SampleCount"
    ) || stat
        .strip_prefix('p')
        .and_then(|p| p.parse::<f64>().ok())
        .is_some_and(|p| (0.0..=100.0).contains(&p))
}

/// CloudWatch keeps standard metrics per minute; 1, 5, 10 and 30 s only for high-resolution
/// ones.
fn valid_period(period: Duration) -> bool {
    let s = period.as_secs();
    period.subsec_nanos() == 0
        && (matches!(s, 1 | 5 | 10 | 30) || (s >= 60 && s.is_multiple_of(60)))
}

const DEFAULT_PERIOD: Duration = Duration::from_secs(300);

impl Check for CloudwatchProbeConfig {
    type Spec = CloudwatchSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, at: Location) -> Option<CloudwatchSpec> {
        let region = b.string(&self.region, &format!("{field}.region"))?;
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            b.error(
                &self.region.referenced,
                &format!("{field}.region"),
                format!("`{region}` is not an AWS region (e.g. `eu-west-1`)"),
            );
        }
        let endpoint = match &self.endpoint {
            Some(e) => {
                let value = b.string(e, &format!("{field}.endpoint"))?;
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    b.error(
                        &e.referenced,
                        &format!("{field}.endpoint"),
                        format!("`{value}` is not an http:// or https:// URL"),
                    );
                }
                value.trim_end_matches('/').to_string()
            }
            None => format!("https://monitoring.{region}.amazonaws.com"),
        };
        let period = b.optional_duration(
            self.period.as_ref(),
            &format!("{field}.period"),
            DEFAULT_PERIOD,
        )?;
        let mut queries = Vec::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let mf = format!("{field}.metrics[{i}]");
            let namespace = b.string(&m.namespace, &format!("{mf}.namespace"))?;
            let metric = b.string(&m.metric, &format!("{mf}.metric"))?;
            let mut dimensions = Vec::new();
            for (name, value) in &m.dimensions {
                dimensions.push((
                    name.clone(),
                    b.string(value, &format!("{mf}.dimensions.{name}"))?,
                ));
            }
            let stat = match &m.stat {
                Some(s) => {
                    let stat = b.string(s, &format!("{mf}.stat"))?;
                    if !valid_stat(&stat) {
                        b.error_help(
                            &s.referenced,
                            &format!("{mf}.stat"),
                            format!("unknown statistic `{stat}`"),
                            "use Average, Sum, Minimum, Maximum, SampleCount or a percentile (`p99`)",
                        );
                    }
                    stat
                }
                None => "Average".to_string(),
            };
            let own_period = match &m.period {
                Some(p) => {
                    let d = b.duration(p, &format!("{mf}.period"))?;
                    if !valid_period(d) {
                        b.error_help(
                            &p.referenced,
                            &format!("{mf}.period"),
                            format!("CloudWatch has no period of `{}`", p.value),
                            "use a whole number of minutes (`1m`, `5m`), or 1s, 5s, 10s, 30s for high-resolution metrics",
                        );
                    }
                    d
                }
                None => period,
            };
            let label = match &m.label {
                Some(l) => {
                    let label = b.string(l, &format!("{mf}.label"))?;
                    if !valid_probe_name(&label) {
                        b.error(
                            &l.referenced,
                            &format!("{mf}.label"),
                            format!("`{label}` is not a metric field name: use ^[a-z][a-z0-9_]*$ (e.g. `cpu_percent`)"),
                        );
                    }
                    label
                }
                None => snake_case(&metric),
            };
            queries.push(MetricQuery {
                namespace,
                metric,
                dimensions,
                stat,
                period: own_period,
                label,
                absent_is_zero: false,
            });
        }
        let preset = |namespace: &str, list: &[PresetMetric], dims: &[(&str, &str)]| {
            list.iter()
                .map(|p| MetricQuery {
                    namespace: namespace.to_string(),
                    metric: p.metric.to_string(),
                    dimensions: dims
                        .iter()
                        .take(if p.per_target_group { 2 } else { 1 })
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    stat: p.stat.to_string(),
                    period,
                    label: p.label.to_string(),
                    absent_is_zero: p.absent_is_zero,
                })
                .collect::<Vec<_>>()
        };
        if let Some(id) = &self.ec2 {
            let id = b.string(id, &format!("{field}.ec2"))?;
            queries.extend(preset("AWS/EC2", EC2, &[("InstanceId", &id)]));
        }
        if let Some(id) = &self.rds {
            let id = b.string(id, &format!("{field}.rds"))?;
            queries.extend(preset("AWS/RDS", RDS, &[("DBInstanceIdentifier", &id)]));
        }
        if let Some(alb) = &self.alb {
            let lb = b.string(&alb.load_balancer, &format!("{field}.alb.load_balancer"))?;
            let tg = b.string(&alb.target_group, &format!("{field}.alb.target_group"))?;
            queries.extend(preset(
                "AWS/ApplicationELB",
                ALB,
                &[("LoadBalancer", &lb), ("TargetGroup", &tg)],
            ));
        }
        if queries.is_empty() {
            b.error_help(
                &at,
                field,
                "a cloudwatch probe reads no metric",
                "list `metrics`, or name a resource for a preset: `ec2: i-0abc`, `rds: shop-db`, `alb: { load_balancer, target_group }`",
            );
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        for q in &queries {
            if !valid_probe_name(&q.label) {
                b.error_help(
                    &at,
                    field,
                    format!(
                        "the metric `{}` makes no field name (`{}`)",
                        q.metric, q.label
                    ),
                    "give it a `label` matching ^[a-z][a-z0-9_]*$",
                );
            }
            let reserved = TYPE.fields.iter().any(|f| f.name == q.label);
            if !seen.insert(q.label.clone()) || reserved {
                b.error_help(
                    &at,
                    field,
                    format!("two metrics of this probe are named `{}`", q.label),
                    "give one of them its own `label`",
                );
            }
        }
        if !valid_period(period) {
            b.error(
                &at,
                &format!("{field}.period"),
                "CloudWatch periods are whole minutes, or 1s, 5s, 10s, 30s for high-resolution metrics",
            );
        }
        let var = |key: &str| b.env_var(key).filter(|v| !v.is_empty());
        let mut credentials = CredentialEnv {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            profile: var("AWS_PROFILE"),
            shared_credentials_file: var("AWS_SHARED_CREDENTIALS_FILE"),
            config_file: var("AWS_CONFIG_FILE"),
            home: var("HOME"),
            web_identity_token_file: var("AWS_WEB_IDENTITY_TOKEN_FILE"),
            role_arn: var("AWS_ROLE_ARN"),
            role_session_name: var("AWS_ROLE_SESSION_NAME"),
            sts_endpoint: var("AWS_ENDPOINT_URL_STS").or_else(|| var("AWS_ENDPOINT_URL")),
            imds_endpoint: var("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
            imds_disabled: var("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        };
        if let Some(profile) = &self.profile {
            credentials.profile = Some(b.string(profile, &format!("{field}.profile"))?);
        }
        Some(CloudwatchSpec {
            region,
            endpoint,
            queries,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(name: &str, expected: &str) {
        assert_eq!(snake_case(name), expected);
    }

    #[test]
    fn metric_names_become_snake_case_fields() {
        case("CPUUtilization", "cpu_utilization");
        case("DatabaseConnections", "database_connections");
        case("HTTPCode_Target_5XX_Count", "http_code_target_5xx_count");
        case("StatusCheckFailed_System", "status_check_failed_system");
        case("UnHealthyHostCount", "un_healthy_host_count");
        case("5xx Rate", "5xx_rate");
    }

    #[test]
    fn statistics_and_periods_are_those_cloudwatch_knows() {
        assert!(
            valid_stat("p99.9") && valid_stat("Sum") && !valid_stat("avg") && !valid_stat("p101")
        );
        assert!(valid_period(Duration::from_secs(300)) && valid_period(Duration::from_secs(10)));
        assert!(!valid_period(Duration::from_secs(90)) && !valid_period(Duration::from_secs(7)));
    }
}
