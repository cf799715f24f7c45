//! Named points where a test can stop the process as `kill -9` would, to prove that a crash
//! at that step loses and repeats nothing. Only in debug builds: `RUNNER_FAILPOINT=<name>`
//! makes the process kill itself with SIGKILL when it reaches that point. Release builds
//! compile every point to nothing. Several points can be named at once, separated by commas
//! (a `pause` point to widen a window, then a kill point inside it).

use std::io;

/// Whether `RUNNER_FAILPOINT` names this point (debug builds only; always `false` in release).
#[inline]
pub fn armed(name: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var("RUNNER_FAILPOINT").is_ok_and(|wanted| wanted.split(',').any(|w| w == name))
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}

/// Stops the process here if `RUNNER_FAILPOINT` names this point (debug builds only).
#[inline]
pub fn hit(name: &str) {
    if armed(name) {
        kill_self();
    }
}

/// Sleeps half a second here if `RUNNER_FAILPOINT` names this point: a slow disk, so a test can
/// see what else happens meanwhile.
#[inline]
pub fn pause(name: &str) {
    if armed(name) {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A write cut short, as a `kill -9` during a multi-page write, a full disk or a power loss
/// leaves it: if `RUNNER_FAILPOINT` names this point, writes only the first half of `bytes`
/// with `write` and then kills the process. Otherwise does nothing; the caller then writes
/// everything as usual.
#[inline]
pub fn torn_write(name: &str, bytes: &[u8], write: impl FnOnce(&[u8]) -> io::Result<()>) {
    if armed(name) {
        // Whatever the half write says, the point is to die right after it.
        let _ = write(&bytes[..bytes.len() / 2]);
        kill_self();
    }
}

fn kill_self() {
    // SAFETY: kill(2) with our own pid and a valid signal has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}
