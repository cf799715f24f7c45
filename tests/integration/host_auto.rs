//! `host: auto`: the instance's name from a stand-in for EC2's instance metadata service
//! (IMDSv2: a session token first, then the `Name` tag or the instance id) on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::support::{command, jobs_file, stderr};

/// Serves IMDSv2 until the test ends: `name` is the `Name` tag, or tags are off (404).
/// Requests without the token it handed out are refused with 401, as IMDSv2 enforced does.
/// Returns its endpoint and the request lines it saw.
fn imds(name: Option<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut token = None;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("X-aws-ec2-metadata-token: ") {
                    token = Some(v.trim().to_string());
                }
            }
            log.lock().unwrap().push(request.trim().to_string());
            let (status, body) = match request.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                ["PUT", "/latest/api/token"] => (200, "AQAEAtoken=="),
                [_, _] if token.as_deref() != Some("AQAEAtoken==") => (401, ""),
                ["GET", "/latest/meta-data/tags/instance/Name"] => match name {
                    Some(name) => (200, name),
                    None => (404, "Not Found"),
                },
                ["GET", "/latest/meta-data/instance-id"] => (200, "i-0abc1234def567890"),
                _ => (404, "Not Found"),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (endpoint, seen)
}

/// The host a one-off monitor run writes into its sample, with the metadata at `endpoint`.
fn host_written(endpoint: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "host: auto\njobs:\n  m: { type: monitor, schedule: \"@hourly\", probes: [{ type: load }] }\n",
    );
    let output = command(&["run", "m", "--jobs", file.to_str().unwrap()])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(stderr(&output));
    }
    let metrics = dir.path().join("var/metrics");
    let day = std::fs::read_dir(&metrics)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let line = std::fs::read_to_string(day).unwrap();
    let sample: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    Ok(sample["host"].as_str().unwrap().to_string())
}

#[test]
fn host_auto_is_the_instances_name_tag_asked_with_a_session_token() {
    let (endpoint, seen) = imds(Some("web-eu-1"));
    assert_eq!(host_written(&endpoint).unwrap(), "web-eu-1");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], "PUT /latest/api/token HTTP/1.1", "{seen:?}");
}

#[test]
fn host_auto_is_the_instance_id_where_metadata_shows_no_tags() {
    let (endpoint, _) = imds(None);
    assert_eq!(host_written(&endpoint).unwrap(), "i-0abc1234def567890");
}

#[test]
fn host_auto_without_instance_metadata_is_a_located_error_that_says_what_to_do() {
    // A loopback port nobody listens on: what a machine off EC2 gets.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = host_written(&format!("http://127.0.0.1:{port}")).unwrap_err();
    assert!(
        error.contains("`host: auto` asks EC2's instance metadata"),
        "{error}"
    );
    assert!(
        error.contains("jobs.yaml:") && error.contains("| host: auto"),
        "located at its line: {error}"
    );
    assert!(error.contains("write the host's name"), "{error}");
}
