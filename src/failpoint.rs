//! Named points where a test can stop the process as `kill -9` would, to prove that a crash
//! at that step loses and repeats nothing. Only in debug builds: `RUNNER_FAILPOINT=<name>`
//! makes the process kill itself with SIGKILL when it reaches that point. Release builds
//! compile every point to nothing.

/// Stops the process here if `RUNNER_FAILPOINT` names this point (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("RUNNER_FAILPOINT").is_ok_and(|wanted| wanted == name) {
        // SAFETY: kill(2) with our own pid and a valid signal has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
