//! Giving back what a tick does not need: the code pages of start-up (parsing the config,
//! compiling rules, warming history) and of one-off work since, and the heap left free.
//!
//! An agent's resident memory is mostly code pages, and the kernel keeps every page a process
//! ever touched mapped until memory runs short. After start-up, and then once a minute, runner
//! drops its mappings of read-only file pages (its own code and its libraries'); the pages
//! stay in the page cache, and those a tick uses come back on first touch at the cost of a
//! minor fault. What stays resident is what the last minute used. And the process brings its
//! own `pow`, so a tick never touches libm.

use std::fs;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the scheduler gives pages back: often enough that a report or rotation run's
/// code does not stay resident for long, rare enough that refaulting a tick's pages costs
/// nothing measurable (a few hundred minor faults a minute).
pub const RELEASE_EVERY: Duration = Duration::from_secs(60);

/// When the first periodic release comes: the first ticks after the warm-up run one-off code
/// (first readings, alerts turning pending, their log lines) that need not wait a minute.
pub const FIRST_RELEASE_AFTER: Duration = Duration::from_secs(15);

/// Releases pages [`FIRST_RELEASE_AFTER`] start, then every [`RELEASE_EVERY`], until `stop`.
pub async fn release_periodically(stop: CancellationToken) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + FIRST_RELEASE_AFTER,
        RELEASE_EVERY,
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {
                // /proc reads and madvise are system calls: off the runtime's threads.
                let _ = tokio::task::spawn_blocking(release_unused_pages).await;
            }
        }
    }
}

/// Bytes given back, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub mapped_bytes: u64,
}

/// Drops this process's mappings of unmodified read-only file pages and returns free heap to
/// the system. Safe at any time: only pages identical to their file are dropped, and a dropped
/// page is read back from the page cache when touched.
pub fn release_unused_pages() -> Released {
    let mut released = Released::default();
    // A debugger's breakpoints are private copies of code pages: leave them alone.
    if traced() {
        return released;
    }
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return released;
    };
    for mapping in droppable(&smaps) {
        // SAFETY: the range is a whole mapping of this process that is not writable and holds
        // no private (anonymous) page, so dropping it loses nothing: every page reads back
        // from its file, unchanged. madvise does not move or unmap the range.
        let done = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.len,
                libc::MADV_DONTNEED,
            )
        };
        if done == 0 {
            released.mapped_bytes += mapping.resident_bytes;
        }
    }
    trim_heap();
    released
}

/// The C library's `pow`, for every caller in this process.
///
/// tokio's multi-threaded scheduler keeps an average of task poll times and updates it with
/// `f64::powf` each time a worker finishes a batch of tasks, that is every tick. glibc's `pow`
/// runs code in three places of libm and reads three tables, and the kernel maps 64 KiB around
/// each page touched: 384 KiB resident for one call a tick, a sixteenth of the agent's memory.
/// An executable's definition of a symbol comes before its libraries' (ELF lookup order), so
/// this one serves all of them and sits with the tick's other code (build/hot-functions.txt).
/// It is rust-lang's port of musl's, which is correctly rounded for integer results and within
/// an ulp otherwise, as glibc's is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(target_env = "gnu")]
fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own arenas; any argument is valid.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim_heap() {}

fn traced() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|pid| pid.trim() != "0")
    })
}

#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    len: usize,
    resident_bytes: u64,
}

/// Mappings of files that are private, not writable and hold no anonymous (copied-on-write)
/// page, from `/proc/self/smaps`.
fn droppable(smaps: &str) -> Vec<Mapping> {
    let mut found = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    let mut finish = |current: &mut Option<(Mapping, bool)>| {
        if let Some((mapping, true)) = current.take() {
            found.push(mapping);
        }
    };
    for line in smaps.lines() {
        if let Some((start, len, candidate)) = header(line) {
            finish(&mut current);
            current = Some((
                Mapping {
                    start,
                    len,
                    resident_bytes: 0,
                },
                candidate,
            ));
            continue;
        }
        let Some((mapping, candidate)) = current.as_mut() else {
            continue;
        };
        let mut field = line.split_whitespace();
        let (Some(key), Some(kib)) = (
            field.next(),
            field.next().and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        match key {
            "Rss:" => mapping.resident_bytes = kib * 1024,
            "Anonymous:" if kib > 0 => *candidate = false,
            _ => {}
        }
    }
    finish(&mut current);
    found
}

/// A mapping's header line: its range and whether its kind may be dropped (a private,
/// read-only mapping of a file); `None` for the field lines in between.
fn header(line: &str) -> Option<(usize, usize, bool)> {
    let mut parts = line.split_whitespace();
    let range = parts.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = parts.next()?;
    let _offset = parts.next()?;
    let _device = parts.next()?;
    let inode: u64 = parts.next()?.parse().ok()?;
    let path = parts.next().unwrap_or("");
    let perms = perms.as_bytes();
    let candidate = perms.len() == 4
        && perms[0] == b'r'
        && perms[1] == b'-'
        && perms[3] == b'p'
        && inode != 0
        && path.starts_with('/');
    Some((start, end.checked_sub(start)?, candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5604c35e1000-5604c38b6000 r--p 00000000 fd:01 123 /usr/bin/runner
Size:               2900 kB
Rss:                1084 kB
Anonymous:             0 kB
5604c38b6000-5604c43e6000 r-xp 002d5000 fd:01 123 /usr/bin/runner
Size:              11456 kB
Rss:                8140 kB
Anonymous:             0 kB
5604c43e6000-5604c443c000 r--p 00e05000 fd:01 123 /usr/bin/runner
Size:                344 kB
Rss:                 344 kB
Anonymous:           344 kB
5604c443c000-5604c443e000 rw-p 00e5b000 fd:01 123 /usr/bin/runner
Size:                  8 kB
Rss:                   8 kB
Anonymous:             8 kB
7fac64000000-7fac643bd000 rw-p 00000000 00:00 0
Size:               3828 kB
Rss:                3828 kB
Anonymous:          3828 kB
7ffd086ff000-7ffd08720000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
";

    #[test]
    fn only_unmodified_read_only_file_pages_are_dropped() {
        let found = droppable(SMAPS);
        assert_eq!(
            found,
            [
                Mapping {
                    start: 0x5604c35e1000,
                    len: 0x5604c38b6000 - 0x5604c35e1000,
                    resident_bytes: 1084 * 1024
                },
                Mapping {
                    start: 0x5604c38b6000,
                    len: 0x5604c43e6000 - 0x5604c38b6000,
                    resident_bytes: 8140 * 1024
                },
            ]
        );
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_process_pow_is_this_one_and_agrees_with_the_c_librarys_answers() {
        // What glibc's pow answers, correctly rounded.
        assert_eq!(pow(0.9, 3.0), 0.7290000000000001);
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert_eq!(pow(10.0, -2.0), 0.01);
        assert_eq!(pow(1.0001, 10_000.0), 2.7181459268249255);
        assert_eq!(pow(f64::NAN, 0.0), 1.0);
        assert_eq!(pow(0.0, -1.0), f64::INFINITY);
        assert!(pow(-8.0, 1.0 / 3.0).is_nan());
        let symbol = c"pow";
        // SAFETY: dlsym reads a NUL-terminated name; RTLD_DEFAULT searches in ELF lookup order.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr()) };
        assert!(!found.is_null());
        assert_eq!(
            found as usize, pow as extern "C" fn(f64, f64) -> f64 as usize,
            "the executable's pow comes first"
        );
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let code_before = resident_code_kib();
        let released = release_unused_pages();
        // The code that runs next (this test, the formatter, the allocator) reads back.
        let text = format!("{:?}", vec![1u8; 1000]);
        assert!(text.len() > 1000);
        if !traced() {
            assert!(released.mapped_bytes > 0, "{released:?}");
            assert!(resident_code_kib() < code_before, "{code_before}");
        }
    }

    fn resident_code_kib() -> u64 {
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        droppable(&smaps)
            .iter()
            .map(|m| m.resident_bytes / 1024)
            .sum()
    }
}
