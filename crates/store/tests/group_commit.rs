//! Group commit under `fsync: always`: no reply goes out before the fdatasync that makes its
//! change durable, writers that wait together share one flush, the writers a flush released
//! are gathered into the next one, and a lone writer never waits for anyone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use state::{ManualClock, ReserveOutcome};
use store::disk::{Create, Disk, DiskFile, Fault, FaultyDisk, Op, RealDisk};
use store::{EmbeddedStore, Options, Store};

/// The real disk, keeping for each file the length its last completed sync made durable:
/// what a power cut at this moment would leave of it.
#[derive(Debug, Default)]
struct SyncedDisk {
    real: RealDisk,
    synced: Arc<Mutex<Vec<(PathBuf, u64)>>>,
}

impl SyncedDisk {
    /// The bytes of `path` that a completed sync has made durable.
    fn durable(&self, path: &Path) -> Vec<u8> {
        let len = self
            .synced
            .lock()
            .iter()
            .find(|(synced, _)| synced == path)
            .map_or(0, |&(_, len)| len);
        let mut bytes = std::fs::read(path).unwrap();
        bytes.truncate(usize::try_from(len).unwrap());
        bytes
    }
}

impl Disk for SyncedDisk {
    fn open(&self, path: &Path, create: Create) -> io::Result<Arc<dyn DiskFile>> {
        let len = if create == Create::Keep {
            std::fs::metadata(path).map_or(0, |meta| meta.len())
        } else {
            0
        };
        Ok(Arc::new(SyncedFile {
            real: self.real.open(path, create)?,
            path: path.to_path_buf(),
            len: AtomicU64::new(len),
            synced: Arc::clone(&self.synced),
        }))
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.real.write_file(path, bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.real.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.real.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.real.sync_dir(dir)
    }
}

struct SyncedFile {
    real: Arc<dyn DiskFile>,
    path: PathBuf,
    /// The file's length as written so far.
    len: AtomicU64,
    synced: Arc<Mutex<Vec<(PathBuf, u64)>>>,
}

impl DiskFile for SyncedFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.real.write_at(bytes, offset)?;
        self.len
            .fetch_max(offset + bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let len = self.len.load(Ordering::SeqCst);
        // A slow disk, so that a reply sent before the sync ends has time to be seen.
        thread::sleep(Duration::from_millis(1));
        self.real.sync()?;
        let mut synced = self.synced.lock();
        synced.retain(|(path, _)| *path != self.path);
        synced.push((self.path.clone(), len));
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.real.truncate(len)?;
        self.len.store(len, Ordering::SeqCst);
        Ok(())
    }
}

/// Holds `disk`'s first sync until the test sends on the returned sender (the receiver hears
/// when it is held), then lets it take `after` more before it completes.
fn hold_first_sync(
    disk: &FaultyDisk,
    after: Duration,
) -> (
    crossbeam_channel::Receiver<()>,
    crossbeam_channel::Sender<()>,
) {
    let (held, is_held) = crossbeam_channel::bounded(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let first = AtomicBool::new(true);
    disk.fail(Fault::Io, move |operation| {
        if operation.op == Op::Sync && first.swap(false, Ordering::SeqCst) {
            let _ = held.send(());
            let _ = released.recv();
            thread::sleep(after);
        }
        false
    });
    (is_held, release)
}

#[test]
fn no_reply_goes_out_before_the_fdatasync_of_its_change_has_returned() {
    let dir = TempDir::new("store-synced-first");
    let clock = Arc::new(ManualClock::new());
    let disk = Arc::new(SyncedDisk::default());
    let options = Options {
        disk: disk.clone(),
        ..Options::new(dir.path())
    };
    let store =
        Arc::new(EmbeddedStore::open(state_with(&clock, &[("A", 10_000)]), options).unwrap());
    let segment = dir.path().join("journal-1.log");
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, disk, segment) = (Arc::clone(&store), Arc::clone(&disk), segment.clone());
            thread::spawn(move || {
                for n in 0..EACH {
                    let text = format!("W{writer}N{n}");
                    assert_eq!(
                        store.state().reserve("A", plate(&text)).unwrap(),
                        ReserveOutcome::Reserved
                    );
                    // Acknowledged: a power cut now must keep it.
                    let durable = disk.durable(&segment);
                    let quoted = format!("\"{text}\"");
                    assert!(
                        durable
                            .windows(quoted.len())
                            .any(|window| window == quoted.as_bytes()),
                        "{text} was acknowledged before a sync made it durable"
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(store.state().lots()[0].reserved, (WRITERS * EACH) as u32);
}

#[test]
fn writers_that_wait_during_a_flush_share_the_next_one() {
    let dir = TempDir::new("store-shared-flush");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let (is_held, release) = hold_first_sync(&disk, Duration::ZERO);
    let store =
        Arc::new(EmbeddedStore::open(new_state(&clock), options(dir.path(), &disk)).unwrap());
    let reserve = |text: String| {
        let store = Arc::clone(&store);
        thread::spawn(move || store.state().reserve("A", plate(&text)).unwrap())
    };
    let first_writer = reserve("FIRST".into());
    is_held.recv().unwrap();
    const WRITERS: usize = 6;
    let others: Vec<_> = (0..WRITERS).map(|n| reserve(format!("P{n}"))).collect();
    // Every one of them has made its change and waits for it to be durable.
    eventually("the writers to record their changes", || {
        store.state().free("A").unwrap() == 100 - 1 - WRITERS as u32
    });
    release.send(()).unwrap();
    assert_eq!(first_writer.join().unwrap(), ReserveOutcome::Reserved);
    for other in others {
        assert_eq!(other.join().unwrap(), ReserveOutcome::Reserved);
    }
    let stats = store.journal_stats();
    // The first writer's flush, then one for all six.
    assert_eq!(
        (stats.flushes, stats.records),
        (2, 1 + WRITERS as u64),
        "{stats:?}"
    );
}

#[test]
fn the_writers_a_flush_released_are_gathered_into_the_next_one() {
    let dir = TempDir::new("store-gathered");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    // Slow after its release: half of it is how long the next flush may wait for the first
    // writer to come back.
    let (is_held, release) = hold_first_sync(&disk, Duration::from_secs(2));
    let options = Options {
        max_gather: Duration::from_secs(60),
        ..options(dir.path(), &disk)
    };
    let store = Arc::new(EmbeddedStore::open(new_state(&clock), options).unwrap());
    // The first writer writes twice: once in the held flush, and again as soon as it is told.
    let returning = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            store.state().reserve("A", plate("FIRST")).unwrap();
            store.state().reserve("A", plate("AGAIN")).unwrap();
        })
    };
    is_held.recv().unwrap();
    let pending = {
        let store = Arc::clone(&store);
        thread::spawn(move || store.state().reserve("A", plate("PENDING")).unwrap())
    };
    eventually("the second writer to record its change", || {
        store.state().free("A").unwrap() == 98
    });
    release.send(()).unwrap();
    returning.join().unwrap();
    pending.join().unwrap();
    let stats = store.journal_stats();
    // PENDING's flush waited for the writer that FIRST's flush released: AGAIN shared it.
    assert_eq!(
        (stats.flushes, stats.records, stats.gather_timeouts),
        (2, 3, 0),
        "{stats:?}"
    );
}

#[test]
fn a_lone_writer_never_waits_for_others() {
    let dir = TempDir::new("store-lone");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let options = Options {
        // Were it to wait, it would wait up to half a flush, and count it in the stats.
        max_gather: Duration::from_secs(60),
        ..options(dir.path(), &disk)
    };
    let store = EmbeddedStore::open(new_state(&clock), options).unwrap();
    for n in 0..20 {
        let text = format!("P{n}");
        store.state().reserve("A", plate(&text)).unwrap();
        store.state().cancel("A", plate(&text)).unwrap();
    }
    let stats = store.journal_stats();
    assert_eq!(
        (stats.flushes, stats.records, stats.gathers),
        (40, 40, 0),
        "{stats:?}"
    );
}
