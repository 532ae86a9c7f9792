//! Compaction: keeps the journal from growing without bound.
//!
//! When the current segment N has grown past `segment_bytes`, the compactor thread:
//! 1. makes the journal continue in segment N+1, between two batches;
//! 2. writes `snapshot-(N+1).json.tmp` from `ParkingState::image` (taken lot by lot, so it
//!    never stops the whole state; every change is an assignment, so replaying segment N+1
//!    over it is exact), waits until every change the image may hold is durable, renames
//!    it to `snapshot-(N+1).json` and syncs the directory;
//! 3. removes the segments and snapshots before N+1.
//!
//! A crash at any point leaves a loadable directory: before the rename, the old snapshot
//! and segments are all there (a `.tmp` is ignored); after it, the new snapshot and segment
//! N+1 are. If a change was rolled back while the image was taken, the image may hold it,
//! so the snapshot is discarded and taken again later.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use state::ParkingState;

use crate::disk::Disk;
use crate::files::{self, Listing};
use crate::journal::{Journal, MAX_RETRY_AFTER};
use crate::snapshot;

/// What the compactor needs.
pub(crate) struct Compactor {
    pub(crate) journal: Arc<Journal>,
    pub(crate) state: Arc<ParkingState>,
    pub(crate) dir: PathBuf,
    pub(crate) disk: Arc<dyn Disk>,
    pub(crate) segment_bytes: u64,
    /// The first wait after a failed compaction; it doubles up to [`MAX_RETRY_AFTER`].
    pub(crate) retry_after: Duration,
    /// The newest durable snapshot's segment number (0 for none).
    pub(crate) newest: u64,
}

impl Compactor {
    /// Starts the thread; it compacts each time `rings` rings (the journal rings it when the
    /// segment is full) and stops once the journal is closed.
    pub(crate) fn spawn(mut self, rings: Receiver<()>) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("compactor".into())
            .spawn(move || self.run(&rings))
    }

    fn run(&mut self, rings: &Receiver<()>) {
        let mut retry: Option<Duration> = None;
        loop {
            let woken = match retry {
                Some(wait) => match rings.recv_timeout(wait) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => true,
                    Err(RecvTimeoutError::Disconnected) => false,
                },
                None => rings.recv().is_ok(),
            };
            if !woken || self.journal.is_closed() {
                return;
            }
            retry = match self.compact() {
                Ok(()) => None,
                Err(why) => {
                    let wait =
                        retry.map_or(self.retry_after, |wait| (wait * 2).min(MAX_RETRY_AFTER));
                    log::warn!("compaction did not complete: {why}; trying again in {wait:?}");
                    Some(wait)
                }
            };
        }
    }

    /// One compaction, if one is due.
    fn compact(&mut self) -> Result<(), String> {
        let (current, len) = self.journal.current_segment();
        let number = if len >= self.segment_bytes {
            self.journal.start_segment()?
        } else if current > self.newest {
            // An earlier attempt switched segments but did not finish its snapshot.
            current
        } else {
            return Ok(());
        };
        // Read before the image: a rollback before it is already in what the image sees.
        let rollbacks = self
            .journal
            .rollbacks()
            .ok_or("a rollback was in progress")?;
        let image = self.state.image();
        // Every change the image may hold has been recorded by now.
        let upto = self.journal.last_recorded();
        let tmp = files::snapshot_tmp(&self.dir, number);
        snapshot::write_tmp(&*self.disk, &self.dir, number, &image)
            .map_err(|err| format!("cannot write {}: {err}", tmp.display()))?;
        if !self.journal.settle(upto, rollbacks) {
            let _ = self.disk.remove(&tmp);
            return Err(format!(
                "a change was rolled back while {} was taken, so it may hold that change; \
                 discarded",
                tmp.display()
            ));
        }
        snapshot::publish(&*self.disk, &self.dir, number)
            .map_err(|err| format!("cannot publish {}: {err}", tmp.display()))?;
        self.newest = number;
        let removed = remove_before(&*self.disk, &self.dir, number);
        log::info!(
            "compacted the journal: {} holds {} key(s); removed {removed} older file(s)",
            files::snapshot(&self.dir, number).display(),
            image.len()
        );
        Ok(())
    }
}

/// Removes the segments and snapshots that snapshot `number` supersedes; returns how many.
/// Also finishes, at start-up, what a crash during compaction left undone.
pub(crate) fn remove_before(disk: &dyn Disk, dir: &Path, number: u64) -> usize {
    let Ok(listing) = Listing::read(dir) else {
        return 0;
    };
    let stale = listing
        .segments
        .range(..number)
        .chain(listing.snapshots.range(..number));
    let mut removed = 0;
    for (_, path) in stale {
        match disk.remove(path) {
            Ok(()) => removed += 1,
            // Harmless: recovery ignores what is older than the newest snapshot.
            Err(err) => log::warn!("cannot remove {}: {err}", path.display()),
        }
    }
    removed
}
