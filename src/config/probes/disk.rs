//! `disk`: space and inodes per mounted filesystem, as `df` reports them.

use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Location;

use super::{Check, Field, Instances, ProbeType, Settings, system_probe_config};
use crate::config::build::Builder;
use crate::config::raw::Text;

pub const TYPE: ProbeType = ProbeType {
    name: "disk",
    instances: Instances::Discovered {
        well_known: &["root"],
        numbered: None,
    },
    fields: &[
        Field {
            name: "used_percent",
            help: "space used / (used + available to users), as df",
        },
        Field {
            name: "free_bytes",
            help: "space available to users",
        },
        Field {
            name: "inodes_used_percent",
            help: "inodes in use; absent where the filesystem has no inode limit",
        },
    ],
    open_fields: false,
    nested_fields: &[],
    default_timeout: Duration::from_millis(2_000),
};

system_probe_config! {
    /// Space and inodes per mounted filesystem.
    pub struct DiskProbeConfig {
        /// Mount points to watch; every real filesystem when absent.
        #[serde(default)]
        pub mounts: Option<Vec<Text>>,
    }
}

#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// `None`: every data filesystem, once per device.
    pub mounts: Option<Vec<PathBuf>>,
}

impl Settings for DiskSpec {}

impl Check for DiskProbeConfig {
    type Spec = DiskSpec;

    fn check(self, b: &mut Builder<'_>, field: &str, _: Location) -> Option<DiskSpec> {
        let Some(list) = self.mounts else {
            return Some(DiskSpec { mounts: None });
        };
        let mut paths = Vec::new();
        for (i, mount) in list.iter().enumerate() {
            let value = b.string(mount, &format!("{field}.mounts[{i}]"))?;
            if !value.starts_with('/') {
                b.error(
                    &mount.referenced,
                    &format!("{field}.mounts[{i}]"),
                    format!("`{value}` is not an absolute path; mount points start with `/`"),
                );
            }
            paths.push(PathBuf::from(value));
        }
        Some(DiskSpec {
            mounts: Some(paths),
        })
    }
}
