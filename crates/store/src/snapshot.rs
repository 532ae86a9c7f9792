//! Snapshots: every key of the state as a list of changes, with a header, in one JSON file.
//!
//! A snapshot is written to `snapshot-<N>.json.tmp`, synced, and only then renamed to
//! `snapshot-<N>.json` (and the directory synced), so a file with the final name is always
//! complete: a crash leaves either no snapshot N or a whole one.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use state::Change;

use crate::disk::Disk;
use crate::files;

/// The version of the data directory's formats (this file and the journal's records). A
/// server refuses a snapshot of another version rather than guess at it.
pub(crate) const FORMAT: u32 = 1;

/// A snapshot's content; `C` is a borrowed slice when writing, a vector when reading.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snapshot<C> {
    /// [`FORMAT`] when written.
    pub(crate) format: u32,
    /// The segment that began when it was taken: replay segments from this one on.
    pub(crate) segment: u64,
    /// When it was taken, Unix milliseconds (for people reading the file).
    pub(crate) taken_at_ms: u64,
    /// Every key of the state.
    pub(crate) changes: C,
}

/// Why a snapshot file cannot be used.
#[derive(Debug)]
pub(crate) enum BadSnapshot {
    /// It could not be read.
    Read(io::Error),
    /// It is not a snapshot (not JSON of the right shape: damaged, or not ours).
    Parse(serde_json::Error),
    /// It was written by a version with another format.
    Format(u32),
    /// Its header names another segment than its file name does.
    Segment(u64),
}

impl fmt::Display for BadSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadSnapshot::Read(err) => write!(f, "cannot read it: {err}"),
            BadSnapshot::Parse(err) => write!(f, "it is damaged: {err}"),
            BadSnapshot::Format(format) => write!(
                f,
                "it has format {format}, and this version reads format {FORMAT}"
            ),
            BadSnapshot::Segment(segment) => {
                write!(f, "its header says segment {segment}, not its file name's")
            }
        }
    }
}

/// Writes `changes` as snapshot `number` to its temporary name, synced. It is not part of
/// the state until [`publish`] renames it.
pub(crate) fn write_tmp(
    disk: &dyn Disk,
    dir: &Path,
    number: u64,
    changes: &[Change],
) -> io::Result<()> {
    let taken_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let snapshot = Snapshot {
        format: FORMAT,
        segment: number,
        taken_at_ms,
        changes,
    };
    let bytes = serde_json::to_vec(&snapshot).map_err(io::Error::other)?;
    disk.write_file(&files::snapshot_tmp(dir, number), &bytes)
}

/// Gives snapshot `number`, written by [`write_tmp`], its final name, durably.
pub(crate) fn publish(disk: &dyn Disk, dir: &Path, number: u64) -> io::Result<()> {
    disk.rename(
        &files::snapshot_tmp(dir, number),
        &files::snapshot(dir, number),
    )?;
    disk.sync_dir(dir)
}

/// Reads snapshot `number` from `path`.
pub(crate) fn read(path: &Path, number: u64) -> Result<Vec<Change>, BadSnapshot> {
    let bytes = std::fs::read(path).map_err(BadSnapshot::Read)?;
    let snapshot: Snapshot<Vec<Change>> =
        serde_json::from_slice(&bytes).map_err(BadSnapshot::Parse)?;
    if snapshot.format != FORMAT {
        return Err(BadSnapshot::Format(snapshot.format));
    }
    if snapshot.segment != number {
        return Err(BadSnapshot::Segment(snapshot.segment));
    }
    Ok(snapshot.changes)
}
