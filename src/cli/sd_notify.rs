//! systemd's notification protocol for `Type=notify` units: a datagram to `$NOTIFY_SOCKET` saying
//! runner is ready (its jobs are scheduled), reloading, stopping, or alive (the watchdog).
//! Without the variable, nothing.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=...`) to the service manager, if any.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket: systemd's usual choice.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &address)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot tell the service manager `{state}`");
    }
}

/// CLOCK_MONOTONIC in microseconds: the clock systemd compares `MONOTONIC_USEC` with, and one
/// every process of the host shares, so `runner reload` can tell a reload that began after its
/// signal from one that was already under way.
pub fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec.max(0) as u64) * 1_000_000 + (now.tv_nsec.max(0) as u64) / 1_000
}

/// Says a reload begins. systemd wants the time with it (since 253) to tell this reload from a
/// stale message; `READY=1` ends it.
pub fn reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the jobs file",
        monotonic_usec()
    ));
}

/// The watchdog interval systemd asks for (`WatchdogSec=`), when it is meant for this process.
pub fn watchdog() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// `WATCHDOG_USEC` applies when `WATCHDOG_PID` is unset or names `own`: a runner started by a
/// process systemd watches inherits the variables, and only the process they name may ping.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, own: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own)
    {
        return None;
    }
    match usec?.trim().parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(usec) => Some(Duration::from_micros(usec)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_ours_only_when_the_pid_matches_or_is_unset() {
        let five = Some(Duration::from_secs(5));
        assert_eq!(watchdog_from(Some("5000000"), None, 42), five);
        assert_eq!(watchdog_from(Some("5000000"), Some("42"), 42), five);
        assert_eq!(watchdog_from(Some("5000000"), Some("41"), 42), None);
        assert_eq!(watchdog_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_from(Some("soon"), None, 42), None);
        assert_eq!(watchdog_from(None, Some("42"), 42), None);
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
