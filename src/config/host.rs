//! The name of this machine, written into samples and alerts: the jobs file's `host`, the
//! kernel's host name when it gives none, or on EC2 (`host: auto`) the instance's name.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The kernel's host name; `localhost` if even that cannot be read.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Where the instance metadata service answers on EC2 (the AWS tools' default).
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// The metadata service answers within milliseconds on an instance; off EC2 nothing answers:
/// give up soon, as the SDKs do.
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// The instance's `Name` tag when instance metadata shows tags, else its instance id, asked of
/// IMDSv2 (a session token first, as the AWS tools do) at `endpoint`
/// (`AWS_EC2_METADATA_SERVICE_ENDPOINT` when set). Blocking, with a one-second timeout per
/// request: it runs once per load of the jobs file.
pub fn ec2_host(endpoint: &str) -> Result<String, String> {
    let token = imds_request(
        endpoint,
        "PUT",
        "/latest/api/token",
        "X-aws-ec2-metadata-token-ttl-seconds: 60",
    )?;
    let token = match token {
        (200, body) => body.trim().to_string(),
        (status, _) => return Err(format!("the session token was refused (HTTP {status})")),
    };
    let header = format!("X-aws-ec2-metadata-token: {token}");
    // Tags are in the metadata only where the instance allows it; a 404 says they are not.
    if let (200, name) = imds_request(
        endpoint,
        "GET",
        "/latest/meta-data/tags/instance/Name",
        &header,
    )? {
        let name = name.trim();
        if !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Ok(name.to_string());
        }
    }
    match imds_request(endpoint, "GET", "/latest/meta-data/instance-id", &header)? {
        (200, id) if id.trim().starts_with("i-") => Ok(id.trim().to_string()),
        (200, id) => Err(format!("`{}` is not an instance id", id.trim())),
        (status, _) => Err(format!("no instance id (HTTP {status})")),
    }
}

/// One HTTP/1.1 request with `Connection: close`, answered by status and body (at most
/// 64 KiB: metadata values are short).
fn imds_request(
    endpoint: &str,
    method: &str,
    path: &str,
    header: &str,
) -> Result<(u16, String), String> {
    let authority = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("{endpoint} is not an http:// address"))?
        .trim_end_matches('/');
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let no_answer = |e: std::io::Error| format!("no answer from {endpoint}: {e}");
    let socket = address
        .to_socket_addrs()
        .map_err(no_answer)?
        .next()
        .ok_or_else(|| format!("{endpoint} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket, IMDS_TIMEOUT).map_err(no_answer)?;
    stream
        .set_read_timeout(Some(IMDS_TIMEOUT))
        .map_err(no_answer)?;
    stream
        .set_write_timeout(Some(IMDS_TIMEOUT))
        .map_err(no_answer)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{header}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(no_answer)?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(no_answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{endpoint} answered no HTTP"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{endpoint} answered no HTTP status"))?;
    Ok((status, body.to_string()))
}
