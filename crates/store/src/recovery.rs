//! Loading a data directory into the state at start-up, and [`repair`], which cuts a
//! corrupt journal where `recover` refuses to.
//!
//! Recovery reads the newest snapshot K (if any) and replays every segment from K on, in
//! order, through `ParkingState::apply`. A torn tail of the last segment (what a crash in
//! the middle of a write leaves) is cut off and kept aside, and the server starts; a bad
//! record anywhere else is corruption, and the server refuses to start until
//! `parking-server repair` has cut it, as Redis refuses a damaged AOF until
//! `redis-check-aof --fix` (Redis's `aof-load-truncated` is the torn-tail case).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use state::{Change, ParkingState, UnknownLot};

use crate::disk::{Create, Disk};
use crate::error::{OpenError, OpenErrorKind};
use crate::files::{self, Listing};
use crate::journal::DiskError;
use crate::record::{self, End};
use crate::snapshot;

/// What recovery found, and where the journal goes on.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The segment to append to.
    pub(crate) segment: u64,
    /// Its valid length, where the next record goes.
    pub(crate) len: u64,
    /// The snapshot the state was loaded from.
    pub(crate) snapshot: Option<u64>,
    /// What was recovered, for the start-up log.
    pub(crate) summary: String,
}

/// Loads the state saved in `dir` into `state`, which has no recorder yet (nothing is
/// recorded again) and no listeners (nothing stale is published). Cuts a torn tail.
pub(crate) fn recover(
    dir: &Path,
    state: &ParkingState,
    disk: &dyn Disk,
) -> Result<Recovered, OpenError> {
    let listing = Listing::read(dir).map_err(|err| OpenError::disk(dir, read_error(dir, err)))?;
    for unfinished in &listing.unfinished {
        // A snapshot a crash interrupted; the journal still holds what it would have.
        let _ = disk.remove(unfinished);
    }
    let mut replay = Replay::new(state);
    let base = listing.snapshots.last_key_value();
    if let Some((&number, path)) = base {
        let changes = snapshot::read(path, number).map_err(|bad| {
            OpenError::new(
                dir,
                OpenErrorKind::BadSnapshot {
                    file: path.clone(),
                    reason: bad.to_string(),
                },
            )
        })?;
        for change in &changes {
            replay.apply(change);
        }
    }
    let segments = segments_from(dir, &listing)?;
    let mut end = (base.map_or(1, |(&number, _)| number), 0);
    let last = segments.last().map(|(number, _)| *number);
    for (number, path) in &segments {
        let bytes =
            std::fs::read(path).map_err(|err| OpenError::disk(dir, read_error(path, err)))?;
        let scan = record::scan(&bytes);
        for (_, change) in &scan.records {
            replay.apply(change);
        }
        replay.segments += 1;
        let valid_len = scan.valid_len(bytes.len() as u64);
        match scan.end {
            End::Clean => {}
            End::Torn { offset, bad } if Some(*number) == last => {
                let aside = set_aside(disk, path, &bytes, offset, "torn")
                    .map_err(|err| OpenError::disk(dir, err))?;
                log::warn!(
                    "{}: cut off a torn tail of {} byte(s) at byte {offset} ({bad}), what a crash \
                     in the middle of a write leaves; the bytes are kept in {}",
                    path.display(),
                    bytes.len() as u64 - offset,
                    aside.display()
                );
            }
            End::Torn { offset, bad } | End::Corrupt { offset, bad } => {
                return Err(OpenError::new(
                    dir,
                    OpenErrorKind::Corrupt {
                        file: path.clone(),
                        offset,
                        reason: bad.to_string(),
                    },
                ));
            }
        }
        end = (*number, valid_len);
    }
    let expired = state.purge_expired();
    replay.warn_unknown();
    let from = describe_sources(dir, base.map(|(&number, _)| number), &segments);
    Ok(Recovered {
        segment: end.0,
        len: end.1,
        snapshot: base.map(|(&number, _)| number),
        summary: replay.summary(&from, expired),
    })
}

/// What [`repair`] cut from one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment.
    pub file: PathBuf,
    /// Where it now ends: the first bad record.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
    /// How many bytes were cut.
    pub bytes: u64,
    /// How many records in them still read as valid: changes lost from the state.
    pub records: usize,
    /// Where the cut bytes are kept.
    pub kept: PathBuf,
}

/// What [`repair`] did: the cuts, none if the journal was sound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    /// One per segment that was cut.
    pub cuts: Vec<Cut>,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cuts.is_empty() {
            return write!(f, "nothing to repair: every journal segment reads cleanly");
        }
        for (n, cut) in self.cuts.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}: cut at byte {} ({}); {} byte(s) removed, holding {} readable record(s) that \
                 are lost from the state; kept in {}",
                cut.file.display(),
                cut.offset,
                cut.reason,
                cut.bytes,
                cut.records,
                cut.kept.display()
            )?;
        }
        Ok(())
    }
}

/// Cuts every journal segment of `dir` at its first bad record, keeping what follows in a
/// file next to it (`journal-<N>.log.corrupt-<time>`), so that the server starts again. What
/// the cut bytes held is lost; every other record, in later segments too, is kept. Takes
/// the directory's lock: the server must not be running.
pub fn repair(dir: &Path, disk: &dyn Disk) -> Result<Repair, OpenError> {
    let _lock = files::lock(dir)?;
    let listing = Listing::read(dir).map_err(|err| OpenError::disk(dir, read_error(dir, err)))?;
    let mut repair = Repair::default();
    for (_, path) in segments_from(dir, &listing)? {
        let bytes =
            std::fs::read(&path).map_err(|err| OpenError::disk(dir, read_error(&path, err)))?;
        let (offset, bad) = match record::scan(&bytes).end {
            End::Clean => continue,
            End::Torn { offset, bad } | End::Corrupt { offset, bad } => (offset, bad),
        };
        let cut_off = bytes.get(offset as usize..).unwrap_or_default();
        let kept = set_aside(disk, &path, &bytes, offset, "corrupt")
            .map_err(|err| OpenError::disk(dir, err))?;
        repair.cuts.push(Cut {
            file: path,
            offset,
            reason: bad.to_string(),
            bytes: cut_off.len() as u64,
            records: record::readable_records(cut_off),
            kept,
        });
    }
    Ok(repair)
}

/// The segments recovery replays: from the newest snapshot's on (all of them without one),
/// which must run on without a gap.
fn segments_from(dir: &Path, listing: &Listing) -> Result<Vec<(u64, PathBuf)>, OpenError> {
    let base = listing.snapshots.keys().next_back();
    let Some(&first) = base.or_else(|| listing.segments.keys().next()) else {
        return Ok(Vec::new());
    };
    let mut segments = Vec::new();
    for (expected, (&number, path)) in (first..).zip(listing.segments.range(first..)) {
        if number != expected {
            return Err(OpenError::new(
                dir,
                OpenErrorKind::MissingSegment(files::segment(dir, expected)),
            ));
        }
        segments.push((number, path.clone()));
    }
    Ok(segments)
}

/// Moves `bytes[offset..]` of `path` aside into a file next to it, then cuts `path` at
/// `offset`, both durably. Returns where the bytes went.
fn set_aside(
    disk: &dyn Disk,
    path: &Path,
    bytes: &[u8],
    offset: u64,
    why: &str,
) -> Result<PathBuf, DiskError> {
    let aside = files::set_aside(path, why);
    let tail = bytes.get(offset as usize..).unwrap_or_default();
    disk.write_file(&aside, tail)
        .map_err(|err| DiskError::new("write", &aside, err))?;
    let file = disk
        .open(path, Create::Keep)
        .map_err(|err| DiskError::new("open", path, err))?;
    file.truncate(offset)
        .and_then(|()| file.sync())
        .map_err(|err| DiskError::new("truncate", path, err))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    disk.sync_dir(dir)
        .map_err(|err| DiskError::new("sync", dir, err))?;
    Ok(aside)
}

fn read_error(path: &Path, err: std::io::Error) -> DiskError {
    DiskError::new("read", path, err)
}

/// "snapshot-3.json and journal-3.log to journal-5.log" and the like.
fn describe_sources(dir: &Path, snapshot: Option<u64>, segments: &[(u64, PathBuf)]) -> String {
    let name = |path: &Path| {
        path.file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
    };
    let journal = match (segments.first(), segments.last()) {
        (Some((first, a)), Some((last, b))) if first != last => {
            format!("{} to {}", name(a), name(b))
        }
        (Some((_, only)), _) => name(only),
        _ => String::new(),
    };
    let snapshot = snapshot.map(|number| name(&files::snapshot(dir, number)));
    match (snapshot, journal.is_empty()) {
        (Some(snapshot), true) => snapshot,
        (Some(snapshot), false) => format!("{snapshot} and {journal}"),
        (None, _) => journal,
    }
}

/// Applies saved changes to the state, counting them, and the lots no longer configured.
struct Replay<'a> {
    state: &'a ParkingState,
    records: u64,
    segments: usize,
    unknown: BTreeMap<String, u64>,
}

impl<'a> Replay<'a> {
    fn new(state: &'a ParkingState) -> Self {
        Replay {
            state,
            records: 0,
            segments: 0,
            unknown: BTreeMap::new(),
        }
    }

    fn apply(&mut self, change: &Change) {
        self.records += 1;
        if let Err(UnknownLot(lot)) = self.state.apply(change) {
            *self.unknown.entry(lot).or_default() += 1;
        }
    }

    /// One warning naming every lot whose saved state was dropped.
    fn warn_unknown(&self) {
        if self.unknown.is_empty() {
            return;
        }
        let lots: Vec<String> = self
            .unknown
            .iter()
            .map(|(lot, changes)| format!("{lot} ({changes} change(s))"))
            .collect();
        log::warn!(
            "dropped the saved state of lot(s) no longer configured: {}",
            lots.join(", ")
        );
    }

    fn summary(&self, from: &str, expired: usize) -> String {
        if self.records == 0 && self.segments == 0 {
            return "no saved state: starting empty".into();
        }
        let lots = self.state.lots();
        let reservations: u32 = lots.iter().map(|lot| lot.reserved).sum();
        let counts: Vec<String> = lots
            .iter()
            .map(|lot| {
                format!(
                    "{} {} reserved, count {}",
                    lot.id, lot.reserved, lot.counted
                )
            })
            .collect();
        format!(
            "recovered {reservations} reservation(s) and the counts of {} lot(s) ({}) from {from} \
             ({} change(s)); {expired} reservation(s) had expired and were dropped",
            lots.len(),
            counts.join("; "),
            self.records
        )
    }
}
