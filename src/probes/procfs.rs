//! Reads of `/proc` and `/sys` into reusable buffers, and the parsers the probes share.
//!
//! runner reads these files itself rather than through sysinfo: every figure it reports comes
//! from them (sysinfo reads the same files), several are not exposed by sysinfo at all (iowait
//! and steal, diskstats busy time, PSI, inodes), and a read costs 10-30 µs.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where the kernel's files are; tests and containers may point elsewhere.
#[derive(Debug, Clone)]
pub struct ProcRoot {
    pub proc: PathBuf,
    pub sys: PathBuf,
}

/// The roots `--proc-root` and `--sys-root` gave, for every probe of this process.
static GIVEN_ROOTS: std::sync::OnceLock<(Option<PathBuf>, Option<PathBuf>)> =
    std::sync::OnceLock::new();

/// Sets where the host's `/proc` and `/sys` are, once, at start (a containerised runner
/// watching its host mounts them elsewhere).
pub fn set_roots(proc: Option<PathBuf>, sys: Option<PathBuf>) {
    let _ = GIVEN_ROOTS.set((proc, sys));
}

impl Default for ProcRoot {
    /// `--proc-root`/`--sys-root`, else `HOST_PROC`/`HOST_SYS` (as Telegraf and gopsutil read
    /// them), else `/proc` and `/sys`.
    fn default() -> Self {
        let (given_proc, given_sys) = GIVEN_ROOTS.get().cloned().unwrap_or_default();
        let from_env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        ProcRoot {
            proc: given_proc
                .or_else(|| from_env("HOST_PROC"))
                .unwrap_or_else(|| PathBuf::from("/proc")),
            sys: given_sys
                .or_else(|| from_env("HOST_SYS"))
                .unwrap_or_else(|| PathBuf::from("/sys")),
        }
    }
}

/// A file of the proc or sys tree that some probe types cannot do without, and what their
/// metrics become without it.
struct Needed {
    in_sys: bool,
    path: &'static str,
    probes: &'static [&'static str],
    without: &'static str,
}

const NEEDED: &[Needed] = &[
    Needed {
        in_sys: false,
        path: "stat",
        probes: &["cpu"],
        without: "the cpu probe fails every tick",
    },
    Needed {
        in_sys: false,
        path: "meminfo",
        probes: &["memory"],
        without: "the memory probe fails every tick",
    },
    Needed {
        in_sys: false,
        path: "loadavg",
        probes: &["load"],
        without: "the load probe fails every tick",
    },
    Needed {
        in_sys: false,
        path: "diskstats",
        probes: &["disk_io"],
        without: "the disk_io probe fails every tick",
    },
    Needed {
        in_sys: true,
        path: "devices/system/cpu/online",
        probes: &["load"],
        without: "load1_per_core divides by the CPUs of this process's view",
    },
    Needed {
        in_sys: true,
        path: "block",
        probes: &["disk_io"],
        without: "disk_io cannot tell whole disks from partitions and fails every tick (unless it lists its `devices`)",
    },
];

/// Paths already said to be missing: each is said once per process, however many jobs, probes
/// and reloads come to it.
static SAID: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether `path` is said for the first time in this process (and marks it said).
pub fn first_time(path: &Path) -> bool {
    // A poisoned set only risks saying a thing twice.
    SAID.lock()
        .map(|mut said| said.insert(path.to_path_buf()))
        .unwrap_or(true)
}

/// Checks, at start, that the roots hold what probes of the given types read, and warns once
/// per missing path with what it means and what to do: a root pointed at the wrong tree
/// otherwise shows only as absent metrics, or as a load per core divided by the wrong number.
/// Returns every missing path's message, said now or before.
pub fn check_roots<'a>(root: &ProcRoot, types: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let types: Vec<&str> = types.into_iter().collect();
    let mut missing = Vec::new();
    for need in NEEDED {
        if !need.probes.iter().any(|p| types.contains(p)) {
            continue;
        }
        let (base, flag) = if need.in_sys {
            (&root.sys, "--sys-root or HOST_SYS at the host's /sys")
        } else {
            (&root.proc, "--proc-root or HOST_PROC at the host's /proc")
        };
        let path = base.join(need.path);
        if path.exists() {
            continue;
        }
        let mut without = need.without.to_string();
        if need.path == "devices/system/cpu/online" {
            without = format!("{without} ({}), not the host's", online_cpus());
        }
        let message = format!("{} is missing: {without}; point {flag}", path.display());
        if first_time(&path) {
            tracing::warn!(path = %path.display(), "{message}");
        }
        missing.push(message);
    }
    missing
}

/// Reads a whole file into `buf`, reusing its allocation tick after tick.
pub fn read_into(path: &Path, buf: &mut String) -> io::Result<()> {
    buf.clear();
    std::fs::File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// A `/proc` file read every tick: opened once and read again from the start, which makes
/// the kernel generate it afresh. Saves an open and a close per file per tick.
#[derive(Debug)]
pub struct ProcFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl ProcFile {
    pub fn new(path: PathBuf) -> Self {
        ProcFile { path, file: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&mut self, buf: &mut String) -> io::Result<()> {
        use std::io::Seek;
        buf.clear();
        if let Some(file) = &mut self.file
            && file.rewind().is_ok()
            && file.read_to_string(buf).is_ok()
        {
            return Ok(());
        }
        // First read, or the kept file went bad: open it again.
        buf.clear();
        let mut file = std::fs::File::open(&self.path)?;
        file.read_to_string(buf)?;
        self.file = Some(file);
        Ok(())
    }

    /// Reads a file the probe cannot work without, with the path in the error.
    pub fn read_required(&mut self, buf: &mut String) -> Result<(), String> {
        self.read(buf)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))
    }
}

/// A PSI file (`/proc/pressure/cpu`). Where the kernel has no PSI (older kernels, or booted
/// with `psi=0`, where reading fails with EOPNOTSUPP) it is given up after the first try.
#[derive(Debug)]
pub struct PressureFile {
    file: ProcFile,
    unavailable: bool,
}

impl PressureFile {
    pub fn new(root: &ProcRoot, resource: &str) -> Self {
        PressureFile {
            file: ProcFile::new(root.proc.join("pressure").join(resource)),
            unavailable: false,
        }
    }

    /// `some avg10`, in percent.
    pub fn some_avg10(&mut self, buf: &mut String) -> Option<f64> {
        if self.unavailable {
            return None;
        }
        if self.file.read(buf).is_err() {
            self.unavailable = true;
            return None;
        }
        parse_pressure_some_avg10(buf)
    }
}

pub fn parse_pressure_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
}

/// The value of `key` in a `Key: value [kB]` file such as `/proc/meminfo`, in the file's unit.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix(' '))?;
        rest.split_whitespace().next()
    })
}

pub fn field_u64(text: &str, key: &str) -> Option<u64> {
    field(text, key)?.parse().ok()
}

/// This process's peak resident memory (`VmHWM`) in bytes, for the benchmark scripts.
pub fn own_peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    field_u64(&status, "VmHWM").map(|kib| kib * 1024)
}

/// Online CPUs, for load per core.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// An instance name that a rule can write after a dot: `/` → `root`, `/var/log` → `var_log`,
/// `eth0.100` → `eth0_100`, `dm-0` → `dm_0`; a leading digit gets a `_`.
pub fn sanitize_instance(raw: &str) -> String {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return "root".to_string();
    }
    let mut out: String = trimmed
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '_' }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_without_what_the_probes_read_is_said_with_its_meaning() {
        let dir = tempfile::tempdir().unwrap();
        let (proc, sys) = (dir.path().join("proc"), dir.path().join("sys"));
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::write(proc.join("loadavg"), "1 1 1 1/1 1\n").unwrap();
        let root = ProcRoot { proc, sys };
        let missing = check_roots(&root, ["load", "disk_io", "tcp"]);
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(
            missing[0].contains("/proc/diskstats is missing"),
            "{missing:?}"
        );
        assert!(
            missing[1].contains("/sys/devices/system/cpu/online is missing")
                && missing[1].contains("load1_per_core divides by the CPUs of this process's view")
                && missing[1].contains("point --sys-root or HOST_SYS at the host's /sys"),
            "{missing:?}"
        );
        assert!(missing[2].contains("/sys/block is missing"), "{missing:?}");
        // Said once: the second check finds the same, and says nothing new.
        assert!(!first_time(&root.sys.join("block")));
        assert_eq!(check_roots(&root, ["load", "disk_io"]), missing);
        // Only what the job's probes read.
        assert!(check_roots(&root, ["tcp", "http"]).is_empty());
    }

    #[test]
    fn parses_psi() {
        let text = "some avg10=1.53 avg60=0.87 avg300=0.25 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_pressure_some_avg10(text), Some(1.53));
        assert_eq!(parse_pressure_some_avg10("garbage"), None);
    }

    #[test]
    fn reads_meminfo_style_fields() {
        let text =
            "MemTotal:       16318712 kB\nMemFree:         1234 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(field_u64(text, "MemTotal"), Some(16_318_712));
        assert_eq!(field_u64(text, "MemAvailable"), Some(8_000_000));
        assert_eq!(field_u64(text, "Mem"), None);
        assert_eq!(field_u64("pswpin 42\npswpout 7\n", "pswpout"), Some(7));
    }

    #[test]
    fn sanitizes_instances() {
        for (raw, want) in [
            ("/", "root"),
            ("/var/log", "var_log"),
            ("eth0.100", "eth0_100"),
            ("nvme0n1", "nvme0n1"),
            ("dm-0", "dm_0"),
            ("/2tb", "_2tb"),
            ("/mnt/Data Disk", "mnt_data_disk"),
        ] {
            assert_eq!(sanitize_instance(raw), want, "{raw}");
        }
    }
}
