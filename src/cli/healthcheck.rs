//! `runner healthcheck URL` (hidden): one plain-HTTP GET, exit 0 on a 2xx answer. The container
//! image's HEALTHCHECK runs it against `/-/healthy`, since the image has no curl or wget.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::exit;
use super::output::outln;

/// Docker's default healthcheck timeout is 30 s; an answer from a local listener takes
/// milliseconds, so a few seconds tell a hung runner from a busy one.
const WAIT: Duration = Duration::from_secs(5);

pub fn run(url: &str) -> u8 {
    match get(url) {
        Ok(status) if status.split(' ').nth(1).is_some_and(|c| c.starts_with('2')) => {
            outln!("{url}: {status}");
            exit::OK
        }
        Ok(status) => {
            super::fail(format_args!("{url}: {status}"));
            exit::FAILED
        }
        Err(e) => {
            super::fail(format_args!("{url}: {e}"));
            exit::FAILED
        }
    }
}

/// The status line of `GET url`.
fn get(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs (`http://127.0.0.1:9464/-/healthy`)")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_string()
    };
    let address = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{authority}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{authority}` has no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, WAIT).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(WAIT))
        .and_then(|()| stream.set_write_timeout(Some(WAIT)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    // The status line is all that is needed; it comes first and is short.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default().trim();
    if !line.starts_with("HTTP/") {
        return Err("no HTTP answer".to_string());
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::get;

    #[test]
    fn other_schemes_are_refused_before_connecting() {
        assert!(get("https://127.0.0.1:9464/-/healthy").is_err());
        assert!(get("127.0.0.1:9464").is_err());
    }
}
