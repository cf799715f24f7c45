//! `disk`: space and inodes of each mounted filesystem (`statvfs`), by mount point.
//!
//! `statvfs` on a network filesystem whose server is gone blocks for as long as the mount's
//! timeout says, possibly forever. So on network filesystems each call runs on a blocking
//! thread under the probe's timeout, and a mount whose call has not returned is not asked again
//! until it does: one hung NFS mount costs one thread, reports an error every tick, and leaves
//! the other mounts alone. Local filesystems answer from memory and are asked directly: the
//! thread handoff would cost four times the call.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::procfs::{ProcFile, ProcRoot, sanitize_instance};
use super::{Names, Output};
use crate::config::probes::disk::TYPE;

/// Filesystems that hold data; everything else (proc, tmpfs, overlay, cgroup, ...) is skipped
/// unless listed in `mounts:`.
const DATA_FILESYSTEMS: &[&str] = &[
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "btrfs",
    "zfs",
    "f2fs",
    "jfs",
    "reiserfs",
    "vfat",
    "exfat",
    "ntfs",
    "ntfs3",
    "fuseblk",
    "hfsplus",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "lustre",
    "gpfs",
    "ocfs2",
    "gfs2",
    "bcachefs",
];

/// Filesystems served over the network, whose `statvfs` may hang.
const NETWORK_FILESYSTEMS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "lustre",
    "gpfs",
    "fuse.sshfs",
    "9p",
    "afs",
];

fn may_hang(fs_type: &str) -> bool {
    NETWORK_FILESYSTEMS.contains(&fs_type) || fs_type.starts_with("fuse")
}

/// The mount that holds `path`: the one with the longest mount point above it.
fn mount_of<'a>(mounts: &'a [Mount], path: &std::path::Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            Some(Mount {
                device: pre.get(2)?.to_string(),
                mount_point: PathBuf::from(unescape(pre.get(4)?)),
                fs_type: post.next()?.to_string(),
                source: post.next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The data filesystems, each device once (a bind mount repeats its device: the shortest mount
/// point is kept).
pub fn data_mounts(mounts: &[Mount]) -> Vec<Mount> {
    let mut by_device: HashMap<&str, &Mount> = HashMap::new();
    for mount in mounts {
        if !DATA_FILESYSTEMS.contains(&mount.fs_type.as_str()) {
            continue;
        }
        let keep = match by_device.get(mount.device.as_str()) {
            Some(kept) => mount.mount_point.as_os_str().len() < kept.mount_point.as_os_str().len(),
            None => true,
        };
        if keep {
            by_device.insert(&mount.device, mount);
        }
    }
    let mut out: Vec<Mount> = by_device.into_values().cloned().collect();
    out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    out
}

/// Space and inodes of one filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub used_percent: f64,
    pub free_bytes: f64,
    pub inodes_used_percent: Option<f64>,
}

pub fn statvfs(path: &Path) -> std::io::Result<Usage> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to writable memory of
    // the right size; statvfs fills it completely when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: rc == 0, so the kernel initialised the struct.
    let stat = unsafe { stat.assume_init() };
    let frsize = stat.f_frsize as f64;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree) as f64;
    let avail = stat.f_bavail as f64;
    // As df computes it: used over what users can have (reserved blocks excluded).
    let used_percent = if used + avail > 0.0 {
        used / (used + avail) * 100.0
    } else {
        0.0
    };
    let inodes_used_percent = (stat.f_files > 0)
        .then(|| stat.f_files.saturating_sub(stat.f_ffree) as f64 / stat.f_files as f64 * 100.0);
    Ok(Usage {
        used_percent,
        free_bytes: avail * frsize,
        inodes_used_percent,
    })
}

pub struct DiskProbe {
    mountinfo: ProcFile,
    /// Mount points from the config; every data filesystem when `None`.
    mounts: Option<Vec<PathBuf>>,
    pending: HashMap<PathBuf, (JoinHandle<std::io::Result<Usage>>, Instant)>,
    names: Names,
    buf: String,
}

impl DiskProbe {
    pub fn new(root: ProcRoot, mounts: Option<Vec<PathBuf>>) -> Self {
        DiskProbe {
            mountinfo: ProcFile::new(root.proc.join("self/mountinfo")),
            mounts,
            pending: HashMap::new(),
            names: Names::new("disk"),
            buf: String::new(),
        }
    }

    /// The mount points to measure, each with whether its `statvfs` may hang.
    fn targets(&mut self) -> Result<Vec<(PathBuf, bool)>, String> {
        self.mountinfo.read_required(&mut self.buf)?;
        let mounts = parse_mountinfo(&self.buf);
        Ok(match &self.mounts {
            Some(configured) => configured
                .iter()
                .map(|path| {
                    // Unknown: be careful.
                    let hang = mount_of(&mounts, path).is_none_or(|m| may_hang(&m.fs_type));
                    (path.clone(), hang)
                })
                .collect(),
            None => data_mounts(&mounts)
                .into_iter()
                .map(|m| {
                    let hang = may_hang(&m.fs_type);
                    (m.mount_point, hang)
                })
                .collect(),
        })
    }

    pub async fn collect(&mut self, out: &mut Output, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        for (mount, may_hang) in self.targets()? {
            let instance = sanitize_instance(&mount.to_string_lossy());
            let key = format!("disk.{instance}");
            let result = if may_hang {
                self.statvfs_guarded(&mount, timeout.saturating_sub(started.elapsed()))
                    .await
            } else {
                statvfs(&mount).map_err(|e| format!("statvfs {}: {e}", mount.display()))
            };
            match result {
                Ok(usage) => {
                    let names = self.names.get(&instance, TYPE.fields);
                    out.push(&names[0], usage.used_percent);
                    out.push(&names[1], usage.free_bytes);
                    if let Some(inodes) = usage.inodes_used_percent {
                        out.push(&names[2], inodes);
                    }
                }
                Err(message) => out.error(key, message),
            }
        }
        Ok(())
    }

    /// `statvfs` on a blocking thread, given up on after `left` but never asked twice at once.
    async fn statvfs_guarded(
        &mut self,
        mount: &std::path::Path,
        left: Duration,
    ) -> Result<Usage, String> {
        let (mut handle, since) = match self.pending.remove(mount) {
            Some(pending) => pending,
            None => {
                let path = mount.to_path_buf();
                (
                    tokio::task::spawn_blocking(move || statvfs(&path)),
                    Instant::now(),
                )
            }
        };
        match tokio::time::timeout(left, &mut handle).await {
            Ok(Ok(Ok(usage))) => Ok(usage),
            Ok(Ok(Err(e))) => Err(format!("statvfs {}: {e}", mount.display())),
            Ok(Err(e)) => Err(format!("statvfs {}: {e}", mount.display())),
            Err(_) => {
                let message = format!(
                    "statvfs {} has not returned for {} ms (a hung network filesystem?)",
                    mount.display(),
                    since.elapsed().as_millis()
                );
                self.pending.insert(mount.to_path_buf(), (handle, since));
                Err(message)
            }
        }
    }
}

impl super::Wait for DiskProbe {
    fn wait<'a>(&'a mut self, out: &'a mut Output, timeout: Duration) -> super::Waiting<'a> {
        Box::pin(self.collect(out, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw
25 22 252:1 /srv/data /mnt/bind rw - ext4 /dev/vda1 rw
26 22 252:16 / /var/log\\040old rw - xfs /dev/vdb rw
27 22 0:45 / /run rw - tmpfs tmpfs rw
28 22 0:50 / /mnt/nfs rw - nfs4 server:/export rw
29 22 0:60 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw
";

    #[test]
    fn picks_data_filesystems_once_per_device() {
        let mounts = data_mounts(&parse_mountinfo(MOUNTINFO));
        let points: Vec<_> = mounts
            .iter()
            .map(|m| m.mount_point.display().to_string())
            .collect();
        assert_eq!(points, ["/", "/mnt/nfs", "/var/log old"]);
    }

    #[test]
    fn network_mounts_are_guarded() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert!(may_hang(
            &mount_of(&mounts, Path::new("/mnt/nfs/x")).unwrap().fs_type
        ));
        assert!(!may_hang(
            &mount_of(&mounts, Path::new("/home")).unwrap().fs_type
        ));
    }

    /// The root filesystem as `df` (coreutils, an independent reading) reports it. Files come
    /// and go while tests run, so the two readings may differ by a little.
    #[test]
    fn statvfs_agrees_with_df() {
        let usage = statvfs(Path::new("/")).unwrap();
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=used,avail,iused,iavail", "/"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let numbers: Vec<f64> = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let [used, avail, iused, iavail] = numbers[..] else {
            panic!("{text}")
        };
        let df_percent = used / (used + avail) * 100.0;
        assert!(
            (usage.used_percent - df_percent).abs() < 0.5,
            "{} against df {df_percent}",
            usage.used_percent
        );
        assert!(
            (usage.free_bytes - avail).abs() < 256.0 * 1024.0 * 1024.0,
            "{} against df {avail}",
            usage.free_bytes
        );
        match usage.inodes_used_percent {
            Some(p) => {
                let df_inodes = iused / (iused + iavail) * 100.0;
                assert!((p - df_inodes).abs() < 0.5, "{p} against df {df_inodes}");
            }
            None => assert_eq!(iused + iavail, 0.0, "df knows inodes: {text}"),
        }
    }
}
