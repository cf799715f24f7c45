//! `runner healthcheck URL` (hidden): one GET, exit 0 on a 2xx answer. The container image's
//! HEALTHCHECK runs it against `/-/healthy`, since the image has no curl or wget. An
//! `https://` URL (`listen_tls`) is checked as curl checks one: the certificate must chain to
//! the system's roots or to `--ca-file`, and name the URL's host; `--insecure` (curl's `-k`)
//! skips that, for a loopback address only, where the answer can only come from this machine.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::exit;
use super::output::outln;

/// Docker's default healthcheck timeout is 30 s; an answer from a local listener takes
/// milliseconds, so a few seconds tell a hung runner from a busy one.
const WAIT: Duration = Duration::from_secs(5);

/// How an `https://` URL's certificate is checked.
#[derive(Debug, Default)]
pub struct Trust<'a> {
    /// Certificates (PEM) trusted beside the system's roots.
    pub ca_file: Option<&'a std::path::Path>,
    /// No check at all; loopback URLs only.
    pub insecure: bool,
}

pub fn run(url: &str, trust: &Trust) -> u8 {
    let answer = match url.strip_prefix("https://") {
        Some(rest) => get_tls(url, rest, trust),
        None => get(url),
    };
    match answer {
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
        .ok_or("only http:// and https:// URLs (`http://127.0.0.1:9464/-/healthy`)")?;
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

/// Whether `authority` (`host:port`, `[v6]:port` or a bare host) names a loopback address.
fn loopback(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The status line of `GET url` over TLS, the certificate checked as `trust` says.
fn get_tls(url: &str, rest: &str, trust: &Trust) -> Result<String, String> {
    let authority = rest.split('/').next().unwrap_or(rest);
    if trust.insecure && !loopback(authority) {
        return Err(format!(
            "--insecure is for a loopback address only (`https://127.0.0.1:9464/-/healthy`), not `{authority}`: give the CA with --ca-file"
        ));
    }
    let mut builder = crate::http::client_builder()
        .timeout(WAIT)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(trust.insecure);
    if let Some(path) = trust.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {}: no PEM certificate", path.display()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // The client's connector needs the runtime about it when built.
    let response = runtime
        .block_on(async {
            let client = builder.build()?;
            client.get(url).send().await
        })
        .map_err(crate::http::describe_error)?;
    Ok(format!("{:?} {}", response.version(), response.status()))
}

#[cfg(test)]
mod tests {
    use super::{Trust, get, get_tls, loopback};

    #[test]
    fn other_schemes_are_refused_before_connecting() {
        assert!(get("ftp://127.0.0.1:9464/-/healthy").is_err());
        assert!(get("127.0.0.1:9464").is_err());
    }

    #[test]
    fn insecure_is_refused_off_loopback() {
        for authority in [
            "127.0.0.1:9464",
            "[::1]:9464",
            "localhost:9464",
            "127.0.0.2",
        ] {
            assert!(loopback(authority), "{authority}");
        }
        for authority in [
            "10.0.0.1:9464",
            "[2001:db8::1]:9464",
            "example.org",
            "example.org:1",
        ] {
            assert!(!loopback(authority), "{authority}");
        }
        let trust = Trust {
            ca_file: None,
            insecure: true,
        };
        let e = get_tls(
            "https://example.org:9464/-/healthy",
            "example.org:9464/-/healthy",
            &trust,
        )
        .unwrap_err();
        assert!(
            e.contains("--insecure is for a loopback address only"),
            "{e}"
        );
    }
}
