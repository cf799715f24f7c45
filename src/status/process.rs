//! runner's own `process_*` series, as the Prometheus client libraries define them, so the
//! dashboards and alerts written for any exporter's process work on runner unchanged.
//!
//! Read from `/proc/self` at each scrape (a few small files), never from `HOST_PROC`: that root
//! may be another machine's or a container's, and these series are this process's.

use std::path::Path;

/// What `/proc/self` says of this process, in base units.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Own {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    /// Seconds since the epoch.
    pub start_time: f64,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

/// The page size and clock tick the kernel counts `stat` in.
fn units() -> (f64, f64) {
    // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
    let (page, hz) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    (
        if page > 0 { page as f64 } else { 4096.0 },
        if hz > 0 { hz as f64 } else { 100.0 },
    )
}

/// Reads `proc`'s `self/stat`, `self/fd`, `self/limits` and `stat`'s boot time; `None` when
/// `stat` cannot be read or parsed (no `/proc`), so no series lies with a 0.
pub fn read(proc: &Path) -> Option<Own> {
    let stat = std::fs::read_to_string(proc.join("self/stat")).ok()?;
    let boot = std::fs::read_to_string(proc.join("stat")).ok()?;
    let limits = std::fs::read_to_string(proc.join("self/limits")).unwrap_or_default();
    let open_fds = std::fs::read_dir(proc.join("self/fd"))
        .ok()
        // The directory's own descriptor, open while it is listed, is one of them.
        .map(|entries| entries.count().saturating_sub(1) as f64);
    let (page, hz) = units();
    let mut own = parse(&stat, &boot, &limits, page, hz)?;
    own.open_fds = open_fds;
    Some(own)
}

/// The figures of `stat` (`/proc/self/stat`), the boot time of `boot` (`/proc/stat`) and the
/// soft open-files limit of `limits`.
pub fn parse(stat: &str, boot: &str, limits: &str, page: f64, hz: f64) -> Option<Own> {
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3 of proc(5), so field N is fields[N - 3].
    let get = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let btime = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let max_fds = limits.lines().find_map(|l| {
        let rest = l.strip_prefix("Max open files")?;
        rest.split_whitespace().next()?.parse::<f64>().ok()
    });
    Some(Own {
        cpu_seconds: (get(14)? + get(15)?) / hz,
        start_time: btime + get(22)? / hz,
        virtual_bytes: get(23)?,
        resident_bytes: get(24)? * page,
        open_fds: None,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_limits_and_boot_time_become_base_units() {
        let stat = "4242 (run (ner) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let own = parse(stat, boot, limits, 4096.0, 100.0).unwrap();
        assert!((own.start_time - 1_700_000_123.45).abs() < 1e-6, "{own:?}");
        assert_eq!(
            own,
            Own {
                cpu_seconds: 3.0,
                resident_bytes: 2560.0 * 4096.0,
                virtual_bytes: 104_857_600.0,
                start_time: own.start_time,
                open_fds: None,
                max_fds: Some(1024.0),
            }
        );
        assert!(parse("garbage", boot, limits, 4096.0, 100.0).is_none());
    }

    #[test]
    fn this_process_is_read() {
        let own = read(Path::new("/proc")).unwrap();
        assert!(own.resident_bytes > 0.0 && own.virtual_bytes >= own.resident_bytes);
        assert!(own.open_fds.unwrap() >= 3.0);
        assert!(own.max_fds.unwrap() >= own.open_fds.unwrap());
        let now = chrono::Utc::now().timestamp() as f64;
        assert!(own.start_time <= now + 1.0 && own.start_time > now - 86_400.0 * 365.0);
    }
}
