//! The `cloudwatch` probe against moto's CloudWatch server (seeded with signed PutMetricData:
//! the probe reads back what was put, for the same period and statistic), against a scripted
//! stand-in for throttling and errors moto does not make, and with keys from each place the
//! AWS tools look: the environment, a profile, a web-identity token (a scripted STS) and the
//! instance profile through IMDSv2 (a scripted metadata service). Network only on loopback.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use runner::config::JobKind;
use runner::probes::cloudwatch::credentials::Keys;
use runner::probes::cloudwatch::sign::signed_headers;
use runner::probes::{ProbeSet, ProcRoot};

use crate::http_server::{Response, TestServer};

/// The probe as a jobs file declares it, through the real loader, with `env` as its
/// environment.
fn probe(dir: &Path, settings: &str, env: &[(&str, &str)]) -> ProbeSet {
    let file = dir.join("jobs.yaml");
    let yaml = format!(
        "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1m\"\n    probes:\n      - {{ type: cloudwatch, name: web, region: eu-west-1, {settings} }}\n"
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let config = runner::config::build::parse(&file, &yaml, &lookup)
        .unwrap_or_else(|p| panic!("{}", p.render()));
    let JobKind::Monitor(monitor) = &config.job("m").unwrap().kind else {
        panic!("monitor")
    };
    ProbeSet::build(&monitor.probes, &ProcRoot::default())
}

const KEYS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
    ("AWS_SECRET_ACCESS_KEY", "secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

#[derive(Debug)]
struct Tick {
    metrics: BTreeMap<String, f64>,
    errors: BTreeMap<String, String>,
}

async fn tick(set: &mut ProbeSet) -> Tick {
    let out = set.collect().await;
    Tick {
        metrics: out
            .metrics
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect(),
        errors: out.errors.into_iter().collect(),
    }
}

impl Tick {
    #[track_caller]
    fn get(&self, field: &str) -> f64 {
        let name = format!("cloudwatch.web.{field}");
        *self
            .metrics
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
    }

    #[track_caller]
    fn error(&self, key: &str) -> &str {
        self.errors
            .get(key)
            .unwrap_or_else(|| panic!("no error for {key} in {self:?}"))
    }
}

/// moto's server on a free loopback port, stopped with the test.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_s = port.to_string();
    let spawn = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let child = spawn("moto_server", &["-H", "127.0.0.1", "-p", &port_s])
        .or_else(|_| {
            spawn(
                "python3",
                &["-m", "moto.server", "-H", "127.0.0.1", "-p", &port_s],
            )
        })
        .expect("moto's server (pip install 'moto[server]'; .ci/run installs it)");
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// PutMetricData, signed as the probe signs.
async fn put(url: &str, namespace: &str, data: serde_json::Value) {
    let body = serde_json::json!({ "Namespace": namespace, "MetricData": data }).to_string();
    let host = url.trim_start_matches("http://").to_string();
    let target = "GraniteServiceVersion20100801.PutMetricData";
    let headers = [
        ("content-type", "application/x-amz-json-1.0"),
        ("host", host.as_str()),
        ("x-amz-target", target),
    ];
    let keys = Keys {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "secret".into(),
        session_token: None,
        expires: None,
    };
    let url = format!("{url}/");
    let signed = signed_headers(
        &keys,
        "eu-west-1",
        "monitoring",
        &url,
        &headers,
        body.as_bytes(),
        SystemTime::now(),
    )
    .unwrap();
    let mut request = runner::http::client_builder()
        .build()
        .unwrap()
        .post(&url)
        .body(body);
    for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
        request = request.header(*k, *v);
    }
    for (k, v) in signed {
        request = request.header(k, v);
    }
    let answer = request.send().await.unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn moto_values_read_back_as_put_for_the_newest_ended_period() {
    let moto = moto();
    let dir = tempfile::tempdir().unwrap();
    // The periods of the probe's window: the running one must not be read.
    let now = now_s();
    let end = now - now.rem_euclid(300);
    let instance = |v: f64, t: i64, metric: &str| {
        serde_json::json!({
            "MetricName": metric,
            "Dimensions": [{ "Name": "InstanceId", "Value": "i-0abc" }],
            "Timestamp": t,
            "Value": v,
        })
    };
    let mut data = vec![
        instance(10.0, end - 600, "CPUUtilization"),
        instance(20.25, end - 300, "CPUUtilization"),
        instance(30.0, end - 299, "CPUUtilization"),
        instance(0.0, end - 600, "StatusCheckFailed"),
        instance(1.0, end - 300, "StatusCheckFailed"),
        instance(0.0, end - 200, "StatusCheckFailed"),
        instance(0.0, end - 300, "StatusCheckFailed_System"),
    ];
    if now > end {
        data.push(instance(99.0, now - 1, "CPUUtilization"));
    }
    put(&moto.url, "AWS/EC2", serde_json::Value::Array(data)).await;
    put(
        &moto.url,
        "Shop",
        serde_json::json!([
            { "MetricName": "Orders", "Timestamp": end - 60, "Value": 3.0 },
            { "MetricName": "Orders", "Timestamp": end - 30, "Value": 4.5 },
        ]),
    )
    .await;
    let settings = format!(
        "endpoint: \"{}\", ec2: i-0abc, metrics: [ {{ namespace: Shop, metric: Orders, stat: Sum, period: 1m }} ]",
        moto.url
    );
    let mut set = probe(dir.path(), &settings, KEYS);
    let t = tick(&mut set).await;
    assert_eq!(
        t.get("cpu_utilization_percent"),
        (20.25 + 30.0) / 2.0,
        "{t:?}"
    );
    assert_eq!(t.get("status_check_failed"), 1.0);
    assert_eq!(t.get("status_check_failed_system"), 0.0);
    assert_eq!(t.get("orders"), 7.5);
    assert_eq!(t.get("up"), 1.0);
    // Two periods, two calls; the five metrics asked for are what CloudWatch bills.
    assert_eq!(t.get("api_requests_total"), 2.0);
    assert_eq!(t.get("api_metrics_total"), 5.0);
    // Nothing was put for the credit balance: its own error, the rest still reported.
    assert!(
        t.error("cloudwatch.web.cpu_credit_balance")
            .starts_with("no data for AWS/EC2 CPUCreditBalance (InstanceId=i-0abc, Average per 5m) in the last 15m"),
        "{t:?}"
    );
    assert_eq!(t.errors.len(), 1, "{t:?}");
    let t = tick(&mut set).await;
    assert_eq!(t.get("api_requests_total"), 4.0);
    assert_eq!(t.get("api_metrics_total"), 10.0);
}

/// A stand-in that answers `script` in turn (its last answer from then on) and keeps what it
/// was asked.
fn scripted(script: Vec<Response>) -> TestServer {
    let next = AtomicUsize::new(0);
    TestServer::start(move |_| {
        let i = next.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
        script[i].clone()
    })
}

fn answer(values: &[f64]) -> Response {
    let end = now_s() - now_s().rem_euclid(300);
    let timestamps: Vec<i64> = (0..values.len() as i64)
        .map(|i| end - 300 * (i + 1))
        .collect();
    Response::json(
        200,
        serde_json::json!({ "MetricDataResults": [
            { "Id": "m0", "Label": "x", "Timestamps": timestamps, "Values": values, "StatusCode": "Complete" }
        ]})
        .to_string(),
    )
    .header("Content-Type", "application/x-amz-json-1.0")
}

const ONE_METRIC: &str = "metrics: [ { namespace: AWS/RDS, metric: DatabaseConnections, dimensions: { DBInstanceIdentifier: shop }, label: connections } ]";

#[tokio::test]
async fn throttling_backs_off_and_every_call_is_counted() {
    let server = scripted(vec![
        Response::json(
            400,
            r#"{"__type":"com.amazonaws.cloudwatch#Throttling","message":"Rate exceeded"}"#,
        ),
        Response::json(429, "{}"),
        answer(&[12.0, 9.0]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("endpoint: \"{}\", {ONE_METRIC}", server.url(""));
    let mut set = probe(dir.path(), &settings, KEYS);
    let t = tick(&mut set).await;
    assert_eq!(t.get("connections"), 12.0, "{t:?}");
    assert_eq!(t.get("api_requests_total"), 3.0);
    assert_eq!(t.get("api_metrics_total"), 3.0);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let r = &requests[2];
    assert_eq!(
        r.header("x-amz-target"),
        Some("GraniteServiceVersion20100801.GetMetricData")
    );
    assert!(
        r.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
            && r.header("authorization")
                .unwrap()
                .contains("/eu-west-1/monitoring/aws4_request"),
        "{r:?}"
    );
    let q = &r.json()["MetricDataQueries"][0]["MetricStat"];
    assert_eq!(q["Metric"]["Dimensions"][0]["Value"], "shop");
    assert_eq!(q["Stat"], "Average");
    assert_eq!(q["Period"], 300);
}

#[tokio::test]
async fn denied_unreadable_and_endless_throttling_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            Response::json(
                400,
                r#"{"__type":"com.amazon.coral.service#AccessDeniedException","Message":"User is not authorized to perform: cloudwatch:GetMetricData"}"#,
            ),
            "access denied by CloudWatch (AccessDeniedException: User is not authorized to perform: cloudwatch:GetMetricData): the keys of `AKIDTEST` need cloudwatch:GetMetricData",
        ),
        (
            Response::new(200, "<html>maintenance</html>"),
            "CloudWatch answered something that is not a GetMetricData result (expected value at line 1 column 1): `<html>maintenance</html>`",
        ),
        (
            Response::json(
                400,
                r#"{"__type":"InvalidParameterValueException","message":"The value p1000 for parameter Stat is not valid."}"#,
            ),
            "CloudWatch refused the request (HTTP 400, InvalidParameterValueException: The value p1000 for parameter Stat is not valid.)",
        ),
        (
            Response::json(429, ""),
            "CloudWatch is throttling or failing (HTTP 429, an empty answer) after 4 tries",
        ),
    ];
    for (response, expected) in cases {
        let server = scripted(vec![response]);
        let settings = format!("endpoint: \"{}\", {ONE_METRIC}", server.url(""));
        let mut set = probe(dir.path(), &settings, KEYS);
        let t = tick(&mut set).await;
        assert_eq!(t.error("cloudwatch.web"), expected);
        assert_eq!(t.get("up"), 0.0);
        assert!(!t.metrics.contains_key("cloudwatch.web.connections"));
    }
}

/// The CloudWatch stand-in's key and token of its first request.
fn signed_by(server: &TestServer) -> (String, Option<String>) {
    let r = &server.requests()[0];
    let auth = r.header("authorization").unwrap();
    let key = auth
        .split("Credential=")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    (key, r.header("x-amz-security-token").map(str::to_string))
}

#[tokio::test]
async fn keys_come_from_a_profile_in_the_shared_credentials_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n\n[prod]\naws_access_key_id = AKIDPROD\naws_secret_access_key = p\naws_session_token = tok\n",
    )
    .unwrap();
    let server = scripted(vec![answer(&[1.0])]);
    let settings = format!(
        "endpoint: \"{}\", profile: prod, {ONE_METRIC}",
        server.url("")
    );
    let file = file.display().to_string();
    let env = [
        ("AWS_SHARED_CREDENTIALS_FILE", file.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut set = probe(dir.path(), &settings, &env);
    let t = tick(&mut set).await;
    assert_eq!(t.get("connections"), 1.0, "{t:?}");
    assert_eq!(
        signed_by(&server),
        ("AKIDPROD".to_string(), Some("tok".to_string()))
    );
    // A profile that is not there is said, not replaced by another.
    let settings = format!(
        "endpoint: \"{}\", profile: staging, {ONE_METRIC}",
        server.url("")
    );
    let mut set = probe(dir.path(), &settings, &env);
    let t = tick(&mut set).await;
    assert!(
        t.error("cloudwatch.web")
            .starts_with("profile `staging` has no aws_access_key_id"),
        "{t:?}"
    );
}

#[tokio::test]
async fn a_web_identity_token_is_exchanged_with_sts_for_the_role_keys() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ.web.token\n").unwrap();
    let sts = TestServer::start(|r| {
        if r.text().contains("WebIdentityToken=eyJ.web.token&")
            || r.text().ends_with("WebIdentityToken=eyJ.web.token")
        {
            Response::new(
                200,
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAWEB</AccessKeyId><SecretAccessKey>w</SecretAccessKey><SessionToken>webtok</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            )
        } else {
            Response::new(
                400,
                "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad token</Message></Error></ErrorResponse>",
            )
        }
    });
    let server = scripted(vec![answer(&[2.0])]);
    let settings = format!("endpoint: \"{}\", {ONE_METRIC}", server.url(""));
    let token = token.display().to_string();
    let sts_url = sts.url("");
    let env = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_str()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/runner"),
        ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
        ("HOME", "/nonexistent"),
    ];
    let mut set = probe(dir.path(), &settings, &env);
    let t = tick(&mut set).await;
    assert_eq!(t.get("connections"), 2.0, "{t:?}");
    assert_eq!(
        signed_by(&server),
        ("ASIAWEB".to_string(), Some("webtok".to_string()))
    );
    let asked = sts.requests()[0].text();
    assert!(
        asked.contains("Action=AssumeRoleWithWebIdentity"),
        "{asked}"
    );
    assert!(
        asked.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Frunner"),
        "{asked}"
    );
}

#[tokio::test]
async fn on_ec2_the_instance_profile_keys_come_from_imdsv2_with_a_token_first() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let imds = TestServer::start(move |r| {
        log.lock()
            .unwrap()
            .push(format!("{} {}", r.method, r.path()));
        let token_ok = r.header("x-aws-ec2-metadata-token") == Some("imds-token");
        match (r.method.as_str(), r.path()) {
            ("PUT", "/latest/api/token")
                if r.header("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
            {
                Response::new(200, "imds-token")
            }
            // IMDSv2 only: without the session token the service answers 401.
            _ if !token_ok => Response::new(401, ""),
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                Response::new(200, "web-role")
            }
            ("GET", "/latest/meta-data/iam/security-credentials/web-role") => Response::json(
                200,
                r#"{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"i","Token":"imdstok","Expiration":"2099-01-01T00:00:00Z"}"#,
            ),
            _ => Response::new(404, ""),
        }
    });
    let server = scripted(vec![answer(&[3.0])]);
    let settings = format!("endpoint: \"{}\", {ONE_METRIC}", server.url(""));
    let imds_url = imds.url("");
    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url.as_str()),
        ("HOME", "/nonexistent"),
    ];
    let mut set = probe(dir.path(), &settings, &env);
    let t = tick(&mut set).await;
    assert_eq!(t.get("connections"), 3.0, "{t:?}");
    assert_eq!(
        signed_by(&server),
        ("ASIAIMDS".to_string(), Some("imdstok".to_string()))
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/web-role"
        ]
    );
    // The keys are kept until they near their expiry: the next tick asks nobody.
    tick(&mut set).await;
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn the_api_request_counts_show_on_metrics_as_counters() {
    for (field, series) in [
        ("api_requests_total", "runner_cloudwatch_api_requests_total"),
        ("api_metrics_total", "runner_cloudwatch_api_metrics_total"),
    ] {
        let s = runner::store::prometheus::series_of(&format!("cloudwatch.web.{field}")).unwrap();
        assert_eq!(s.name, series);
        assert_eq!(s.kind, "counter");
        assert_eq!(s.labels, [("name", "web".to_string())]);
    }
}

#[tokio::test]
async fn a_paged_answer_is_read_to_its_last_page_with_the_same_queries() {
    let server = scripted(vec![
        Response::json(
            200,
            serde_json::json!({ "MetricDataResults": [
                { "Id": "m0", "Timestamps": [], "Values": [], "StatusCode": "PartialData" }
            ], "NextToken": "page-2" })
            .to_string(),
        ),
        answer(&[7.0]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("endpoint: \"{}\", {ONE_METRIC}", server.url(""));
    let mut set = probe(dir.path(), &settings, KEYS);
    let t = tick(&mut set).await;
    assert_eq!(t.get("connections"), 7.0, "{t:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let (first, second) = (requests[0].json(), requests[1].json());
    assert_eq!(first.get("NextToken"), None);
    assert_eq!(second["NextToken"], "page-2");
    for key in ["MetricDataQueries", "StartTime", "EndTime"] {
        assert_eq!(first[key], second[key], "{key}");
    }
}

#[tokio::test]
async fn more_than_500_metrics_go_in_calls_of_at_most_500() {
    let end = now_s() - now_s().rem_euclid(300);
    let server = TestServer::start(move |r| {
        let results: Vec<serde_json::Value> = r.json()["MetricDataQueries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                let value: f64 = q["MetricStat"]["Metric"]["MetricName"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('M')
                    .parse()
                    .unwrap();
                serde_json::json!({ "Id": q["Id"], "Timestamps": [end - 300], "Values": [value], "StatusCode": "Complete" })
            })
            .collect();
        Response::json(
            200,
            serde_json::json!({ "MetricDataResults": results }).to_string(),
        )
    });
    let metrics: Vec<String> = (0..1001)
        .map(|i| format!("{{ namespace: Shop, metric: M{i}, label: m{i} }}"))
        .collect();
    let settings = format!(
        "endpoint: \"{}\", metrics: [ {} ]",
        server.url(""),
        metrics.join(", ")
    );
    let dir = tempfile::tempdir().unwrap();
    let mut set = probe(dir.path(), &settings, KEYS);
    let t = tick(&mut set).await;
    for i in [0, 499, 500, 1000] {
        assert_eq!(t.get(&format!("m{i}")), i as f64);
    }
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.json()["MetricDataQueries"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [500, 500, 1]);
    assert_eq!(t.get("api_requests_total"), 3.0);
    assert_eq!(t.get("api_metrics_total"), 1001.0);
}

#[tokio::test]
async fn the_alb_preset_reads_5xx_counts_cloudwatch_never_wrote_as_zero() {
    let moto = moto();
    let dir = tempfile::tempdir().unwrap();
    let now = now_s();
    let end = now - now.rem_euclid(300);
    let lb = "app/shop/50dc6c495c0c9188";
    let tg = "targetgroup/shop-web/73e2d6bc24d8a067";
    let point = |metric: &str, v: f64, with_group: bool| {
        let mut dims = vec![serde_json::json!({ "Name": "LoadBalancer", "Value": lb })];
        if with_group {
            dims.push(serde_json::json!({ "Name": "TargetGroup", "Value": tg }));
        }
        serde_json::json!({ "MetricName": metric, "Dimensions": dims, "Timestamp": end - 300, "Value": v })
    };
    put(
        &moto.url,
        "AWS/ApplicationELB",
        serde_json::json!([
            point("RequestCount", 1200.0, false),
            point("HTTPCode_Target_5XX_Count", 30.0, false),
            point("TargetResponseTime", 0.125, false),
            point("UnHealthyHostCount", 1.0, true),
            point("HealthyHostCount", 2.0, true),
        ]),
    )
    .await;
    let settings = format!(
        "endpoint: \"{}\", alb: {{ load_balancer: \"{lb}\", target_group: \"{tg}\" }}",
        moto.url
    );
    let mut set = probe(dir.path(), &settings, KEYS);
    let t = tick(&mut set).await;
    assert_eq!(t.get("requests"), 1200.0, "{t:?}");
    assert_eq!(t.get("target_5xx"), 30.0);
    assert_eq!(t.get("elb_5xx"), 0.0);
    assert_eq!(t.get("target_response_time_s"), 0.125);
    assert_eq!(t.get("unhealthy_targets"), 1.0);
    assert_eq!(t.get("healthy_targets"), 2.0);
    assert!(t.errors.is_empty(), "{t:?}");
}

/// Values of `cloudwatch.web.<field>` the scheduler wrote to the metrics log.
fn written(dir: &Path, field: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for entry in std::fs::read_dir(dir.join("var/metrics"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(sample) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(v) = sample["metrics"][format!("cloudwatch.web.{field}")].as_f64()
            {
                values.push(v);
            }
        }
    }
    values
}

#[tokio::test]
async fn the_scheduled_monitor_reads_moto_its_rule_fires_and_the_report_has_a_cloud_section() {
    let moto = moto();
    let now = now_s();
    let end = now - now.rem_euclid(300);
    let point = |metric: &str, v: f64| {
        serde_json::json!({
            "MetricName": metric,
            "Dimensions": [{ "Name": "InstanceId", "Value": "i-0abc" }],
            "Timestamp": end - 300,
            "Value": v,
        })
    };
    put(
        &moto.url,
        "AWS/EC2",
        serde_json::json!([
            point("CPUUtilization", 41.5),
            point("StatusCheckFailed", 1.0),
            point("StatusCheckFailed_System", 0.0),
            point("CPUCreditBalance", 250.0),
        ]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        &format!(
            "jobs:\n  cloud:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes:\n      - {{ type: cloudwatch, name: web, region: eu-west-1, endpoint: \"{}\", ec2: i-0abc }}\n    rules: [\"{}\"]\n    notify: [log]\n  weekly:\n    type: report\n    schedule: \"0 8 * * Mon\"\n    window: 1h\n    templates: [\"{}\"]\n",
            moto.url,
            crate::support::root()
                .join("rules/cloud/ec2.rhai")
                .display(),
            crate::support::root()
                .join("templates/weekly.md.hbs")
                .display(),
        ),
    );
    let mut command = crate::support::command(&["--jobs", file.to_str().unwrap()]);
    for (k, v) in KEYS {
        command.env(k, v);
    }
    let mut running = crate::support::Running::spawn(command);
    running.wait_for_line("ec2_status_check_failed", crate::support::PATIENCE);
    let patience = Instant::now() + crate::support::PATIENCE;
    while written(dir.path(), "up").len() < 2 {
        assert!(Instant::now() < patience, "no samples: {:?}", running.seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.signal("TERM");
    assert_eq!(running.wait_exit(crate::support::PATIENCE).0, Some(0));
    assert!(
        written(dir.path(), "cpu_utilization_percent")
            .iter()
            .all(|v| *v == 41.5)
    );
    let requests = written(dir.path(), "api_requests_total");
    assert_eq!(requests[..2], [1.0, 2.0]);

    let output = crate::support::command(&["report", "--jobs", file.to_str().unwrap()])
        .output()
        .unwrap();
    let report = crate::support::stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    assert!(
        report.contains("## Cloud\n\n### CloudWatch web\n\nCloudWatch answered 100.0 % of the ticks; API requests after the hour's first tick: 1, for 4 metrics."),
        "{report}"
    );
    assert!(
        report.contains("| `cpu_utilization_percent` | 41.5 % | 41.5 % | 41.5 % | 41.5 % |"),
        "{report}"
    );
    assert!(
        report.contains("| `cpu_credit_balance` | 250 |"),
        "{report}"
    );
}

#[test]
fn the_cloud_section_shows_only_when_cloudwatch_metrics_exist() {
    use runner::report::summary;
    use runner::template::bounds::Limits;
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::jobs_file(
        dir.path(),
        "jobs:\n  weekly: { type: report, schedule: \"0 8 * * Mon\" }\n",
    );
    let config = runner::config::Config::load(&file).unwrap();
    let s = summary::example(&config);
    for template in ["templates/weekly.md.hbs", "templates/weekly.html.hbs"] {
        let render = |s: &summary::Summary| {
            runner::report::render::render(
                &crate::support::root().join(template),
                s,
                &config.zone,
                &Limits::report(),
            )
            .unwrap()
            .text
        };
        let with = render(&s);
        assert!(
            with.contains("## Cloud\n\n### CloudWatch web\n")
                || with.contains("<h2>Cloud</h2>\n<h3>CloudWatch web</h3>"),
            "{with}"
        );
        assert!(with.contains("1,008") || with.contains("1008"), "{with}");
        let mut without = s.clone();
        without.families.retain(|f| f.name != "cloudwatch");
        without.cloud = runner::report::cloud::summarize(&without.families);
        let text = render(&without);
        assert!(!text.contains("Cloud"), "{text}");
    }
}

#[test]
fn the_documented_example_loads_and_every_preset_field_and_count_is_documented() {
    use runner::config::probes::cloudwatch::{ALB, EC2, RDS};
    let docs =
        std::fs::read_to_string(crate::support::root().join("docs/configuration.md")).unwrap();
    let section = &docs[docs.find("- **cloudwatch**").unwrap()..];
    let section = &section[..section.find("\n- **command**").unwrap()];
    let block = section.split("```yaml\n").nth(1).unwrap();
    let block = &block[..block.find("```").unwrap()];
    let probe: String = block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("      {}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    let yaml = format!(
        "data_dir: var\njobs:\n  cloud:\n    type: monitor\n    schedule: \"@every 5m\"\n    probes:\n{probe}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = runner::config::build::parse(&dir.path().join("jobs.yaml"), &yaml, &|_| None)
        .unwrap_or_else(|p| panic!("{}\n{yaml}", p.render()));
    let JobKind::Monitor(monitor) = &config.job("cloud").unwrap().kind else {
        panic!("monitor")
    };
    let fields: Vec<String> = monitor.probes[0].fields().collect();
    assert!(fields.contains(&"orders".to_string()), "{fields:?}");
    for (preset, list) in [("ec2", EC2), ("rds", RDS), ("alb", ALB)] {
        for m in list {
            assert!(
                section.contains(&format!("`{}`", m.label)),
                "{preset}: {}",
                m.label
            );
            assert!(
                section.contains(&format!("`{}`", m.metric)),
                "{preset}: {}",
                m.metric
            );
            assert!(
                fields.contains(&m.label.to_string()) || preset != "ec2",
                "{fields:?}"
            );
        }
        // The cost table's row: the count of metrics a tick asks for, and a 30-day month of
        // ticks at each schedule.
        let n = list.len();
        let row = format!(
            "| `{preset}` | {n} | {}, ${:.2} | {}, ${:.2} | {}, ${:.2} |",
            thousands(n * 43_200),
            (n * 43_200) as f64 / 100_000.0,
            thousands(n * 8_640),
            (n * 8_640) as f64 / 100_000.0,
            thousands(n * 2_880),
            (n * 2_880) as f64 / 100_000.0,
        );
        assert!(section.contains(&row), "{row}");
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn wrong_statistics_periods_labels_and_an_empty_probe_are_located_check_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.yaml");
    let yaml = "data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 5m\"\n    probes:\n      - { type: cloudwatch, name: a, region: eu-west-1, metrics: [ { namespace: X, metric: Y, stat: avg, period: 90s }, { namespace: X, metric: 5xx, label: Bad-Label } ] }\n      - { type: cloudwatch, name: b, region: eu-west-1 }\n      - { type: cloudwatch, name: c, region: eu-west-1, metrics: [ { namespace: X, metric: Orders }, { namespace: Y, metric: Orders } ] }\n";
    let problems = match runner::config::build::parse(&file, yaml, &|_| None) {
        Ok(_) => panic!("refused"),
        Err(problems) => problems.render(),
    };
    for expected in [
        "unknown statistic `avg`",
        "CloudWatch has no period of `90s`",
        "`Bad-Label` is not a metric field name",
        "a cloudwatch probe reads no metric",
        "two metrics of this probe are named `orders`",
        "jobs.m.probes[0].metrics[0].stat",
    ] {
        assert!(problems.contains(expected), "{expected}: {problems}");
    }
}
