//! `tcp`: whether a host's port accepts connections (`up`), and how long connecting takes.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::ping::resolve;
use super::{Names, Output};
use crate::config::probes::tcp::TYPE;

/// The kind of failure, in the words an operator searches for.
pub fn failure_kind(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "unreachable",
        io::ErrorKind::PermissionDenied => "blocked",
        _ => match error.raw_os_error() {
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => "unreachable",
            _ => "error",
        },
    }
}

pub struct TcpProbe {
    host: String,
    port: u16,
    instance: String,
    names: Names,
}

impl TcpProbe {
    pub fn new(host: String, port: u16, instance: &str) -> Self {
        TcpProbe {
            host,
            port,
            instance: instance.to_string(),
            names: Names::new("tcp"),
        }
    }

    pub async fn collect(&mut self, out: &mut Output, timeout: Duration) -> Result<(), String> {
        let addr = SocketAddr::new(resolve(&self.host).await?, self.port);
        let names = self.names.get(&self.instance, TYPE.fields);
        let key = format!("tcp.{}", self.instance);
        // On a thread of its own, timed right around the system calls: `connect`, then `poll`
        // until the handshake is done. Nothing else runs between the two readings of the clock.
        let connecting = tokio::task::spawn_blocking(move || connect_timed(addr, timeout));
        match connecting.await {
            Ok(Ok(took)) => {
                out.push(&names[0], 1.0);
                out.push(&names[1], took.as_secs_f64() * 1000.0);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                out.push(&names[0], 0.0);
                out.error(
                    key,
                    format!(
                        "timeout: no answer from {addr} within {} ms",
                        timeout.as_millis()
                    ),
                );
            }
            Ok(Err(e)) => {
                out.push(&names[0], 0.0);
                out.error(
                    key,
                    format!("{}: connecting to {addr}: {e}", failure_kind(&e)),
                );
            }
            Err(e) => return Err(format!("the connect thread failed: {e}")),
        }
        Ok(())
    }
}

/// Connects to `addr`, timing the handshake from right before `connect` to right after the
/// `poll` that sees it done; the connection is closed at once.
fn connect_timed(addr: SocketAddr, timeout: Duration) -> io::Result<Duration> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    let started = Instant::now();
    socket.connect_timeout(&addr.into(), timeout)?;
    let took = started.elapsed();
    drop(socket);
    Ok(took)
}

impl super::Wait for TcpProbe {
    fn wait<'a>(&'a mut self, out: &'a mut Output, timeout: Duration) -> super::Waiting<'a> {
        Box::pin(self.collect(out, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds() {
        assert_eq!(
            failure_kind(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            "refused"
        );
        assert_eq!(
            failure_kind(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            "unreachable"
        );
        assert_eq!(
            failure_kind(&io::Error::from_raw_os_error(libc::ENETUNREACH)),
            "unreachable"
        );
        assert_eq!(
            failure_kind(&io::Error::from(io::ErrorKind::TimedOut)),
            "timeout"
        );
    }
}
