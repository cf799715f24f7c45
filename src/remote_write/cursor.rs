//! What the receiver acknowledged, kept in `data_dir/state/remote_write.json`: for each day's
//! metrics file, the byte offset of the first line not wholly sent, and how many of that
//! line's samples were. Written atomically after each acknowledged batch, so a restart sends
//! the rest and nothing twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Where a day's metrics file stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The first line not wholly acknowledged.
    pub offset: u64,
    /// Samples of that line already acknowledged (a batch may end inside a tick).
    #[serde(default)]
    pub done: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub files: BTreeMap<NaiveDate, Position>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("remote_write.json")
}

impl Cursor {
    /// The saved cursor; `None` when there is none (the first start with `remote_write`) or it
    /// cannot be read (then everything within `max_age` is sent again, which receivers take
    /// as duplicates).
    pub fn load(data_dir: &Path) -> Option<Cursor> {
        let bytes = std::fs::read(path(data_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::store::atomic::write(&path(data_dir), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Cursor::load(dir.path()), None);
        let mut cursor = Cursor::default();
        cursor.files.insert(
            NaiveDate::from_ymd_opt(2026, 12, 6).unwrap(),
            Position {
                offset: 42,
                done: 3,
            },
        );
        cursor.save(dir.path()).unwrap();
        assert_eq!(Cursor::load(dir.path()), Some(cursor));
    }
}
