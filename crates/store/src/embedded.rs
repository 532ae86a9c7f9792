//! [`EmbeddedStore`]: the state, made durable in a data directory of its own (a journal
//! with group commit, and snapshots), with nothing to install.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use state::ParkingState;

use crate::compactor::{self, Compactor};
use crate::disk::{Create, Disk, RealDisk};
use crate::error::{OpenError, OpenErrorKind};
use crate::files;
use crate::journal::{DiskError, Fsync, Journal, JournalStats, Settings};
use crate::recovery;
use crate::{Health, Store};

/// Default size past which a journal segment is compacted: large enough that compaction is
/// rare (a few hundred thousand changes), small enough that replaying a segment at start-up
/// takes about a second.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Default bound on how long a flush under `fsync: always` waits for the writers the previous
/// flush released to come back and share its sync (it also waits at most half of the
/// previous flush's write and sync time): long enough for a reply, the client's next request
/// and its change on a busy machine, short next to a slow disk's fsync.
pub const DEFAULT_MAX_GATHER: Duration = Duration::from_millis(1);

/// Default wait before writing again to a disk that failed; it doubles with each failure in
/// a row, up to 30 s.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How an [`EmbeddedStore`] is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory; created if missing.
    pub dir: PathBuf,
    /// When a change counts as durable.
    pub fsync: Fsync,
    /// A segment larger than this is compacted into a snapshot.
    pub segment_bytes: u64,
    /// The first wait before writing again after the disk failed.
    pub retry_after: Duration,
    /// The longest a flush under `always` waits for the writers it expects back
    /// ([`DEFAULT_MAX_GATHER`]); zero never waits.
    pub max_gather: Duration,
    /// Where writes go: the real disk, or a test's [`crate::disk::FaultyDisk`].
    pub disk: Arc<dyn Disk>,
}

impl Options {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            fsync: Fsync::Always,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retry_after: DEFAULT_RETRY_AFTER,
            max_gather: DEFAULT_MAX_GATHER,
            disk: Arc::new(RealDisk),
        }
    }
}

/// The state, made durable in a data directory: every change goes to the journal before it
/// is acknowledged; reads are served from memory.
pub struct EmbeddedStore {
    state: Arc<ParkingState>,
    journal: Arc<Journal>,
    dir: PathBuf,
    /// The compactor and, under `everysec`, the syncer; joined at close.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Holds the directory's lock for as long as the store lives.
    _lock: File,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.dir)
            .field("health", &self.journal.health())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Takes `options.dir` (refusing if another process holds it), loads what it holds into
    /// `state`, and from then on records every change of `state` there. `state` must be new:
    /// no recorder, and no listeners yet, so that recovery publishes nothing stale.
    pub fn open(state: Arc<ParkingState>, options: Options) -> Result<EmbeddedStore, OpenError> {
        let started = Instant::now();
        let Options {
            dir,
            fsync,
            segment_bytes,
            retry_after,
            max_gather,
            disk,
        } = options;
        std::fs::create_dir_all(&dir)
            .map_err(|err| OpenError::disk(&dir, DiskError::new("create", &dir, err)))?;
        let lock = files::lock(&dir)?;
        let recovered = recovery::recover(&dir, &state, &*disk)?;
        let path = files::segment(&dir, recovered.segment);
        let is_new = !path.exists();
        let file = disk
            .open(&path, Create::Keep)
            .map_err(|err| OpenError::disk(&dir, DiskError::new("open", &path, err)))?;
        if is_new {
            disk.sync_dir(&dir)
                .map_err(|err| OpenError::disk(&dir, DiskError::new("sync", &dir, err)))?;
        }
        if let Some(number) = recovered.snapshot {
            // What a crash in the middle of a compaction left behind.
            compactor::remove_before(&*disk, &dir, number);
        }
        let (rings, rung) = crossbeam_channel::bounded(1);
        let journal = Arc::new(Journal::new(
            Settings {
                dir: dir.clone(),
                disk: Arc::clone(&disk),
                fsync,
                retry_after,
                max_gather,
                segment_bytes,
            },
            &state,
            (recovered.segment, file, recovered.len),
            rings,
        ));
        state
            .set_recorder(Arc::clone(&journal) as _)
            .map_err(|_| OpenError::new(&dir, OpenErrorKind::AlreadyRecording))?;
        let spawn_error = |err| OpenError::new(&dir, OpenErrorKind::Spawn(err));
        let mut threads = vec![
            Compactor {
                journal: Arc::clone(&journal),
                state: Arc::clone(&state),
                dir: dir.clone(),
                disk,
                segment_bytes,
                retry_after,
                newest: recovered.snapshot.unwrap_or(0),
            }
            .spawn(rung)
            .map_err(spawn_error)?,
        ];
        if fsync == Fsync::Everysec {
            let syncer = Arc::clone(&journal);
            threads.push(
                std::thread::Builder::new()
                    .name("journal-sync".into())
                    .spawn(move || syncer.sync_every_second())
                    .map_err(spawn_error)?,
            );
        }
        log::info!(
            "{} in {} ms; data_dir {}, fsync {fsync}",
            recovered.summary,
            started.elapsed().as_millis(),
            dir.display()
        );
        Ok(EmbeddedStore {
            state,
            journal,
            dir,
            threads: Mutex::new(threads),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the journal has done so far: flushes, the records they carried (their ratio is
    /// how many writers shared each sync), and gatherings that ran out of time.
    pub fn journal_stats(&self) -> JournalStats {
        self.journal.stats()
    }
}

impl Store for EmbeddedStore {
    fn state(&self) -> &Arc<ParkingState> {
        &self.state
    }

    fn health(&self) -> Health {
        self.journal.health()
    }

    fn close(&self) {
        let closed_now = self.journal.close();
        let stats = self.journal.stats();
        if closed_now && stats.flushes > 0 {
            // How well writers shared syncs, for whoever tunes or benchmarks the disk.
            log::info!(
                "journal: {} records in {} flushes ({:.2} per flush); {} flushes waited for \
                 writers to come back, {} of them until their bound",
                stats.records,
                stats.flushes,
                stats.records as f64 / stats.flushes as f64,
                stats.gathers,
                stats.gather_timeouts
            );
        }
        for thread in self.threads.lock().drain(..) {
            if thread.join().is_err() {
                log::error!("a store thread panicked");
            }
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}
