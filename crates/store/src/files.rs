//! The data directory's file names, and listing what a directory holds.
//!
//! ```text
//! data/
//!   LOCK                          held (flock) by the one server using the directory
//!   snapshot-<N>.json             every key of the state when segment N began
//!   snapshot-<N>.json.tmp         a snapshot being written; never read
//!   journal-<N>.log               the records appended while segment N was current
//!   journal-<N>.log.torn-<T>      a torn tail cut off at start-up (T: Unix seconds)
//!   journal-<N>.log.corrupt-<T>   what `parking-server repair` cut off
//! ```
//!
//! The state is the newest snapshot K (if any) with every segment from K on replayed over
//! it, in order.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{OpenError, OpenErrorKind};
use crate::journal::DiskError;

/// The lock file's name.
pub(crate) const LOCK: &str = "LOCK";

/// Takes the directory's exclusive lock (`flock` on `LOCK`), which is held until the
/// returned file is closed; the OS releases it when the process dies, so a killed server
/// leaves no stale lock behind.
pub(crate) fn lock(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| OpenError::disk(dir, DiskError::new("open", &path, err)))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(OpenError::new(dir, OpenErrorKind::Locked)),
        Err(TryLockError::Error(err)) => {
            Err(OpenError::disk(dir, DiskError::new("lock", &path, err)))
        }
    }
}

/// The path of journal segment `number`.
pub(crate) fn segment(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("journal-{number}.log"))
}

/// The path of the snapshot taken when segment `number` began.
pub(crate) fn snapshot(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("snapshot-{number}.json"))
}

/// Where a snapshot is written before it is complete.
pub(crate) fn snapshot_tmp(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("snapshot-{number}.json.tmp"))
}

/// Where bytes cut from `file` are kept: next to it, named by why (`torn`, `corrupt`) and
/// when.
pub(crate) fn set_aside(file: &Path, why: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".{why}-{secs}"));
    PathBuf::from(name)
}

/// What a data directory holds, by segment number.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// `journal-<N>.log` files.
    pub(crate) segments: BTreeMap<u64, PathBuf>,
    /// `snapshot-<N>.json` files.
    pub(crate) snapshots: BTreeMap<u64, PathBuf>,
    /// `snapshot-<N>.json.tmp` files: snapshots a crash interrupted.
    pub(crate) unfinished: Vec<PathBuf>,
}

impl Listing {
    /// Lists `dir`; names it does not know are left alone.
    pub(crate) fn read(dir: &Path) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(number) = numbered(name, "journal-", ".log") {
                listing.segments.insert(number, path);
            } else if let Some(number) = numbered(name, "snapshot-", ".json") {
                listing.snapshots.insert(number, path);
            } else if numbered(name, "snapshot-", ".json.tmp").is_some() {
                listing.unfinished.push(path);
            }
        }
        Ok(listing)
    }
}

/// `N` if `name` is `<prefix><N><suffix>`.
fn numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_parse_back_and_strangers_are_ignored() {
        let dir = Path::new("d");
        let name = |path: PathBuf| path.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            numbered(&name(segment(dir, 12)), "journal-", ".log"),
            Some(12)
        );
        assert_eq!(
            numbered(&name(snapshot(dir, 3)), "snapshot-", ".json"),
            Some(3)
        );
        assert_eq!(
            numbered(&name(snapshot_tmp(dir, 3)), "snapshot-", ".json.tmp"),
            Some(3)
        );
        for stranger in [
            "journal-.log",
            "journal-1.log.torn-5",
            "journal-+1.log",
            "x.log",
        ] {
            assert_eq!(numbered(stranger, "journal-", ".log"), None, "{stranger}");
        }
        let aside = set_aside(&segment(dir, 2), "torn");
        assert!(name(aside).starts_with("journal-2.log.torn-"));
    }
}
