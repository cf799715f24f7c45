//! A small HTTP/1.1 server for what runner shows: GET (and HEAD) only, one request per
//! connection, headers at most 16 KiB, ten seconds per connection. Enough for Prometheus,
//! a browser and curl, with nothing to configure and no framework in the agent.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::ListenAuth;

const MAX_HEAD: usize = 16 * 1024;
/// A silence is a few hundred bytes; nothing else takes a body.
const MAX_BODY: usize = 64 * 1024;
const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// What the server needs to know of a request.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub accept: String,
    pub authorization: String,
    /// `Content-Length`: the body that follows the head (the silences API's POST).
    pub content_length: usize,
    /// A `Transfer-Encoding` was given: a chunked body, which is not read (a 411).
    pub chunked: bool,
    pub body: Vec<u8>,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// Parses a request head (request line and headers, up to the blank line).
pub fn parse(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") || first.next().is_some() {
        return None;
    }
    let mut request = Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or(target).to_string(),
        ..Request::default()
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "accept" => request.accept = value.trim().to_string(),
            "authorization" => request.authorization = value.trim().to_string(),
            "content-length" => request.content_length = value.trim().parse().ok()?,
            "transfer-encoding" => request.chunked = true,
            _ => {}
        }
    }
    Some(request)
}

/// Compares without stopping at the first difference, so timing tells nothing of a secret.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials of an `Authorization` value if its scheme is `scheme`. The scheme is
/// case-insensitive (RFC 7235 section 2.1: `bearer` and `BASIC` are what some clients send),
/// and one or more spaces may follow it.
fn credentials<'a>(authorization: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = authorization.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim_start_matches(' '))
}

/// Whether the request may read; `None` auth lets everyone (loopback only, by the config).
pub fn authorized(auth: Option<&ListenAuth>, authorization: &str) -> bool {
    match auth {
        None => true,
        Some(ListenAuth::Bearer(token)) => credentials(authorization, "Bearer")
            .is_some_and(|given| same(given.trim().as_bytes(), token.expose().as_bytes())),
        Some(ListenAuth::Basic { username, password }) => credentials(authorization, "Basic")
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .is_some_and(|decoded| {
                let expected = format!("{username}:{}", password.expose());
                same(&decoded, expected.as_bytes())
            }),
    }
}

/// Accepts connections until `stop`; each is answered by `respond` on a task of its own,
/// over TLS when `tls` is set (the handshake counts in the connection's ten seconds).
pub async fn serve<F>(
    listener: TcpListener,
    respond: Arc<F>,
    tls: Option<Arc<super::tls::Reloading>>,
    stop: CancellationToken,
) where
    F: Fn(Request) -> futures_util::future::BoxFuture<'static, Response> + Send + Sync + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let respond = respond.clone();
                // Looked at before the task: a renewed certificate is in use from the next
                // connection on.
                let tls = tls.as_ref().map(|t| t.current());
                tokio::spawn(async move {
                    let answered = async {
                        match tls {
                            Some(config) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                handle(acceptor.accept(stream).await?, respond).await
                            }
                            None => handle(stream, respond).await,
                        }
                    };
                    match tokio::time::timeout(CONNECTION_TIME, answered).await {
                        Ok(Err(e)) => debug!(error = %e, "status connection"),
                        Err(_) => debug!("status connection timed out"),
                        Ok(Ok(())) => {}
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, say: the listener goes on after a breath.
                warn!(error = %e, "cannot accept a status connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle<S, F>(mut stream: S, respond: Arc<F>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request) -> futures_util::future::BoxFuture<'static, Response>,
{
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let response = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end + 2]).into_owned();
            break match parse(&text) {
                Some(request) if request.content_length > MAX_BODY => {
                    Response::text(413, "request body too large")
                }
                // Read as no body, a chunked POST was answered "EOF while parsing".
                Some(request) if request.chunked => Response::text(
                    411,
                    "send the body with Content-Length; chunked bodies are not read",
                ),
                Some(mut request) => {
                    let mut body = head[end + 4..].to_vec();
                    while body.len() < request.content_length {
                        let n = stream.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&buf[..n]);
                    }
                    body.truncate(request.content_length);
                    request.body = body;
                    let head_only = request.method == "HEAD";
                    let mut response = respond(request).await;
                    if head_only {
                        response
                            .headers
                            .push(("Content-Length", response.body.len().to_string()));
                        response.body.clear();
                    }
                    response
                }
                None => Response::text(400, "not an HTTP/1.x request"),
            };
        }
        if head.len() > MAX_HEAD {
            break Response::text(431, "request headers too large");
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        response.status,
        reason(response.status),
        response.content_type
    );
    let has_length = response.headers.iter().any(|(k, _)| *k == "Content-Length");
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn requests_are_parsed_and_odd_ones_refused() {
        let r = parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\nAuthorization: Bearer t\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(
            (r.accept.as_str(), r.authorization.as_str()),
            ("text/plain", "Bearer t")
        );
        assert!(parse("GET /metrics\r\n").is_none());
        assert!(parse("GET / SPDY/3\r\n").is_none());
        assert!(parse("GET / HTTP/1.1\r\nno colon\r\n").is_none());
    }

    #[test]
    fn bearer_and_basic_credentials_are_checked() {
        let bearer = ListenAuth::Bearer(Secret::new("s3cret".into()));
        assert!(authorized(Some(&bearer), "Bearer s3cret"));
        assert!(!authorized(Some(&bearer), "Bearer s3cre"));
        assert!(!authorized(Some(&bearer), ""));
        let basic = ListenAuth::Basic {
            username: "prom".into(),
            password: Secret::new("pw".into()),
        };
        // "prom:pw"
        assert!(authorized(Some(&basic), "Basic cHJvbTpwdw=="));
        assert!(!authorized(Some(&basic), "Basic cHJvbTpwdg=="));
        assert!(authorized(None, ""));
    }

    #[test]
    fn the_auth_scheme_is_case_insensitive() {
        let bearer = ListenAuth::Bearer(Secret::new("s3cret".into()));
        for header in ["bearer s3cret", "BEARER s3cret", "bEaReR  s3cret"] {
            assert!(authorized(Some(&bearer), header), "{header}");
        }
        // The token itself is compared exactly, and the scheme must be the whole first word.
        assert!(!authorized(Some(&bearer), "bearer S3CRET"));
        assert!(!authorized(Some(&bearer), "Bearers3cret"));
        assert!(!authorized(Some(&bearer), "Bearerx s3cret"));
        assert!(!authorized(Some(&bearer), "Basic s3cret"));
        let basic = ListenAuth::Basic {
            username: "prom".into(),
            password: Secret::new("pw".into()),
        };
        assert!(authorized(Some(&basic), "basic cHJvbTpwdw=="));
        assert!(authorized(Some(&basic), "BASIC cHJvbTpwdw=="));
        assert!(!authorized(Some(&basic), "bearer cHJvbTpwdw=="));
    }
}
