//! Compaction: the journal stays bounded, the state is kept, a crash at any step leaves a
//! loadable directory, and a snapshot that a rollback overlapped is discarded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use crossbeam_channel::bounded;
use state::{CountChange, ManualClock};
use store::disk::{Fault, FaultyDisk, Op};
use store::{EmbeddedStore, Options, Store};

/// Options that compact once a segment holds `bytes`.
fn compacting(dir: &std::path::Path, disk: &Arc<FaultyDisk>, bytes: u64) -> Options {
    Options {
        segment_bytes: bytes,
        ..options(dir, disk)
    }
}

#[test]
fn compaction_bounds_the_journal_and_keeps_the_state() {
    let dir = TempDir::new("store-compact");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let store =
        EmbeddedStore::open(new_state(&clock), compacting(dir.path(), &disk, 4096)).unwrap();
    let state = store.state();
    for n in 0..600 {
        let name = plate(&format!("C{}", n % 50));
        if state.cancel("A", name).unwrap() == state::CancelOutcome::NotFound {
            state.reserve("A", name).unwrap();
        }
        state
            .update_occupancy("B", CountChange::Set(n % 40))
            .unwrap();
    }
    // Roughly 100 KB of records went through 4 KB segments.
    eventually("compaction to catch up", || {
        let names = files(dir.path());
        let segments = names.iter().filter(|name| name.ends_with(".log")).count();
        let snapshots = names.iter().filter(|name| name.ends_with(".json")).count();
        segments <= 2 && snapshots == 1
    });
    let expected = image(state);
    drop(store);
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(image(store.state()), expected);
}

#[test]
fn a_crash_at_any_step_of_a_compaction_leaves_a_loadable_directory() {
    let clock = Arc::new(ManualClock::new());
    let mut completed = false;
    for step in 0..20 {
        let dir = TempDir::new("store-compact-crash");
        let disk = FaultyDisk::new();
        let store =
            EmbeddedStore::open(new_state(&clock), compacting(dir.path(), &disk, 250)).unwrap();
        let state = store.state();
        // Below the size: no compaction yet.
        for n in 0..2 {
            state.reserve("A", plate(&format!("P{n}"))).unwrap();
        }
        state.update_occupancy("B", CountChange::Set(3)).unwrap();
        // This write (its write and sync) fills the segment and starts a compaction, which
        // gets `step` operations before the simulated crash.
        let segment = dir.path().join("journal-1.log");
        assert!(std::fs::metadata(&segment).unwrap().len() < 250);
        let start = disk.operations();
        disk.crash_after(2 + step);
        state.reserve("A", plate("FULL")).unwrap();
        let expected = image(state);
        let compacted = || {
            let names = files(dir.path());
            names.contains(&"snapshot-2.json".to_owned())
                && !names.contains(&"journal-1.log".to_owned())
        };
        assert!(std::fs::metadata(&segment).unwrap().len() >= 250);
        eventually("the compaction to stop at the crash or finish", || {
            disk.operations() > start + 2 + step || compacted()
        });
        let finished = disk.operations() <= start + 2 + step;
        drop(store);
        let store = open(dir.path(), &clock, &FaultyDisk::new());
        assert_eq!(image(store.state()), expected, "crash after step {step}");
        drop(store);
        if finished {
            completed = true;
            break;
        }
    }
    assert!(completed, "compaction never finished within 20 operations");
}

#[test]
fn a_snapshot_overlapped_by_a_rollback_is_discarded_and_taken_again() {
    let dir = TempDir::new("store-compact-rollback");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let (started, hold) = (bounded(1), bounded::<()>(1));
    let (tell_started, wait_started) = started;
    let (release, held) = hold;
    let fail_writes = Arc::new(AtomicBool::new(false));
    let snapshots = Arc::new(AtomicU64::new(0));
    {
        let (fail_writes, snapshots) = (Arc::clone(&fail_writes), Arc::clone(&snapshots));
        disk.fail(Fault::Io, move |operation| match operation.op {
            Op::WriteFile if operation.path.to_string_lossy().ends_with(".json.tmp") => {
                // Hold the first snapshot back until the test has made a write fail.
                if snapshots.fetch_add(1, Ordering::SeqCst) == 0 {
                    let _ = tell_started.send(());
                    let _ = held.recv();
                }
                false
            }
            Op::Write => fail_writes.load(Ordering::SeqCst),
            _ => false,
        });
    }
    let store = EmbeddedStore::open(new_state(&clock), compacting(dir.path(), &disk, 1)).unwrap();
    store.state().reserve("A", plate("P1")).unwrap();
    wait_started.recv_timeout(DEADLINE).unwrap();
    fail_writes.store(true, Ordering::SeqCst);
    assert!(store.state().reserve("A", plate("P2")).is_err());
    fail_writes.store(false, Ordering::SeqCst);
    release.send(()).unwrap();
    eventually("a second snapshot to be published", || {
        files(dir.path()).contains(&"snapshot-2.json".to_owned())
    });
    assert_eq!(
        snapshots.load(Ordering::SeqCst),
        2,
        "the first snapshot was not discarded"
    );
    let expected = image(store.state());
    drop(store);
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(image(store.state()), expected);
}

#[test]
fn a_full_disk_during_compaction_keeps_writes_going_and_compaction_retries() {
    let dir = TempDir::new("store-compact-full");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let store =
        EmbeddedStore::open(new_state(&clock), compacting(dir.path(), &disk, 2048)).unwrap();
    let state = store.state();
    // The journal's own appends and syncs still reach the disk; a new segment, a snapshot
    // and its publication do not.
    let refused = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&refused);
    disk.fail(Fault::Full, move |operation| {
        let fails = matches!(operation.op, Op::Open | Op::WriteFile | Op::Rename);
        if fails {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        fails
    });
    for n in 0..300 {
        state
            .update_occupancy("B", CountChange::Set(n % 40))
            .unwrap();
    }
    eventually("compaction to have tried", || {
        refused.load(Ordering::SeqCst) > 0
    });
    assert_eq!(store.health(), store::Health::Ok);
    assert!(!files(dir.path()).iter().any(|name| name.ends_with(".json")));

    disk.heal();
    // The next full segment rings the compactor again, which also retries on its own.
    for n in 0..300 {
        state
            .update_occupancy("B", CountChange::Set(n % 40))
            .unwrap();
    }
    eventually("compaction to complete after the disk recovers", || {
        let names = files(dir.path());
        names.iter().any(|name| name.ends_with(".json"))
            && names.iter().filter(|name| name.ends_with(".log")).count() <= 2
    });
    let expected = image(state);
    crash(store, &disk);
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(image(store.state()), expected);
}
