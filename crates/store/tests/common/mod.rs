//! Shared helpers for the store's tests: states on a manual clock, stores in temporary
//! directories, crashing a store, and comparing states.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use state::{LotId, LotSpec, ManualClock, ParkingState, Plate};
use store::disk::{FaultyDisk, Op};
use store::{EmbeddedStore, Options};

pub use testkit::{DEADLINE, TempDir, eventually};

/// How long reservations live in these tests.
pub const TTL: Duration = Duration::from_secs(300);

/// A state with lots A (100 spaces) and B (50), on `clock`.
pub fn new_state(clock: &Arc<ManualClock>) -> Arc<ParkingState> {
    state_with(clock, &[("A", 100), ("B", 50)])
}

/// A state with `lots`, on `clock`.
pub fn state_with(clock: &Arc<ManualClock>, lots: &[(&str, u32)]) -> Arc<ParkingState> {
    let lots = lots
        .iter()
        .map(|&(id, capacity)| LotSpec::new(LotId::new(id).unwrap(), capacity));
    Arc::new(ParkingState::new(lots, TTL, clock.clone()).unwrap())
}

/// Options for `dir` writing through `disk`, with a short retry backoff.
pub fn options(dir: &Path, disk: &Arc<FaultyDisk>) -> Options {
    Options {
        retry_after: Duration::from_millis(20),
        disk: disk.clone(),
        ..Options::new(dir)
    }
}

/// Opens a store over a new state on `clock`.
pub fn open(dir: &Path, clock: &Arc<ManualClock>, disk: &Arc<FaultyDisk>) -> EmbeddedStore {
    let _ = env_logger::builder().is_test(true).try_init();
    EmbeddedStore::open(new_state(clock), options(dir, disk)).unwrap()
}

/// Stops `store` as `kill -9` would: nothing more reaches the disk, not even the final
/// flush and sync of a graceful close.
pub fn crash(store: EmbeddedStore, disk: &FaultyDisk) {
    disk.crash_after(0);
    drop(store);
}

/// Every key of the state, as sorted JSON lines: equal images mean equal states.
pub fn image(state: &ParkingState) -> Vec<String> {
    let mut lines: Vec<String> = state
        .image()
        .iter()
        .map(|change| serde_json::to_string(change).unwrap())
        .collect();
    lines.sort();
    lines
}

pub fn plate(text: &str) -> Plate {
    Plate::parse(text).unwrap()
}

/// Counts the disk's operations of kind `op` from now on (without failing any).
pub fn count(disk: &FaultyDisk, op: Op) -> Arc<AtomicU64> {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    disk.fail(store::disk::Fault::Io, move |operation| {
        if operation.op == op {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        false
    });
    seen
}

/// The names of the files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
