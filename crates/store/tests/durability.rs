//! What the embedded store keeps across a restart: acknowledged changes (after a graceful
//! close or a crash), expiry times, the configuration's authority over lots, and the
//! directory's lock; and that concurrent writers share syncs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::*;
use state::{CountChange, ManualClock, ReserveOutcome};
use store::disk::{FaultyDisk, Op};
use store::{EmbeddedStore, Fsync, Health, OpenErrorKind, Options, Store};

#[test]
fn acknowledged_changes_survive_a_graceful_restart_and_a_crash() {
    let dir = TempDir::new("store-restart");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let store = open(dir.path(), &clock, &disk);
    let state = store.state();
    for n in 0..5 {
        assert_eq!(
            state.reserve("A", plate(&format!("P{n}"))).unwrap(),
            ReserveOutcome::Reserved
        );
    }
    state.cancel("A", plate("P2")).unwrap();
    state.update_occupancy("A", CountChange::Set(7)).unwrap();
    state.update_occupancy("B", CountChange::Remove(3)).unwrap();
    let before = image(state);
    drop(store);

    let disk = FaultyDisk::new();
    let store = open(dir.path(), &clock, &disk);
    assert_eq!(image(store.state()), before);
    let lots = store.state().lots();
    assert_eq!(
        (lots[0].reserved, lots[0].counted, lots[1].counted),
        (4, 7, -3)
    );
    store.state().reserve("B", plate("AFTER")).unwrap();
    let before = image(store.state());
    crash(store, &disk);

    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(image(store.state()), before);
    assert_eq!(files(dir.path()), ["LOCK", "journal-1.log"]);
}

#[test]
fn concurrent_writers_share_syncs() {
    let dir = TempDir::new("store-group-commit");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let store = Arc::new(open(dir.path(), &clock, &disk));
    let syncs = count(&disk, Op::Sync);
    const WRITERS: usize = 16;
    const EACH: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for n in 0..EACH {
                    let plate = plate(&format!("W{writer}N{n}"));
                    let lot = if n % 2 == 0 { "A" } else { "B" };
                    store.state().reserve(lot, plate).unwrap();
                    store.state().cancel(lot, plate).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let changes = (WRITERS * EACH * 2) as u64;
    let syncs = syncs.load(Ordering::SeqCst);
    // One sync per change would be 1,280; writers that wait together share one.
    assert!(syncs * 2 <= changes, "{syncs} syncs for {changes} changes");
    let before = image(store.state());
    let store = Arc::into_inner(store).unwrap();
    crash(store, &disk);
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(image(store.state()), before);
}

#[test]
fn expiry_runs_on_across_a_restart_and_what_expired_while_down_is_dropped() {
    let dir = TempDir::new("store-expiry");
    let clock = Arc::new(ManualClock::new());
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    store.state().reserve("A", plate("EARLY")).unwrap();
    clock.advance(Duration::from_secs(100));
    store.state().reserve("A", plate("LATE")).unwrap();
    drop(store);

    // Restarted 100 s later by the wall clock, on a monotonic clock started afresh.
    let later = Arc::new(ManualClock::new());
    later.advance(Duration::from_secs(200));
    let store = open(dir.path(), &later, &FaultyDisk::new());
    assert_eq!(store.state().lots()[0].reserved, 2);
    // EARLY had 100 s left, LATE 200 s.
    later.advance(Duration::from_secs(100));
    assert_eq!(store.state().lots()[0].reserved, 1);
    later.advance(Duration::from_secs(100));
    assert_eq!(store.state().lots()[0].reserved, 0);
    drop(store);

    let much_later = Arc::new(ManualClock::new());
    much_later.advance(Duration::from_secs(1000));
    let store = open(dir.path(), &much_later, &FaultyDisk::new());
    assert_eq!(store.state().lots()[0].reserved, 0);
    assert_eq!(store.state().free("A").unwrap(), 100);
}

#[test]
fn the_configured_lots_are_the_authority() {
    let dir = TempDir::new("store-lots");
    let clock = Arc::new(ManualClock::new());
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    store.state().reserve("A", plate("KEEP")).unwrap();
    store.state().reserve("B", plate("GONE")).unwrap();
    store
        .state()
        .update_occupancy("B", CountChange::Set(9))
        .unwrap();
    drop(store);

    // B is no longer configured, and A shrank to 2 spaces.
    let state = state_with(&clock, &[("A", 2)]);
    let store = EmbeddedStore::open(state, Options::new(dir.path())).unwrap();
    let lots = store.state().lots();
    assert_eq!(lots.len(), 1);
    assert_eq!(
        (lots[0].capacity, lots[0].reserved, lots[0].free),
        (2, 1, 1)
    );
}

#[test]
fn one_store_per_directory() {
    let dir = TempDir::new("store-lock");
    let clock = Arc::new(ManualClock::new());
    let first = open(dir.path(), &clock, &FaultyDisk::new());
    let err = EmbeddedStore::open(new_state(&clock), Options::new(dir.path())).unwrap_err();
    assert!(matches!(err.kind, OpenErrorKind::Locked), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("another parking-server"), "{message}");
    drop(first);
    open(dir.path(), &clock, &FaultyDisk::new());
}

#[test]
fn everysec_and_no_acknowledge_a_change_once_it_is_in_the_file_before_any_sync() {
    for fsync in [Fsync::Everysec, Fsync::No] {
        let dir = TempDir::new("store-write-through");
        let clock = Arc::new(ManualClock::new());
        let disk = FaultyDisk::new();
        // Every sync is held back until the end: what the file holds meanwhile is what a
        // killed process leaves in the page cache.
        let release = Arc::new(AtomicBool::new(false));
        let held = Arc::clone(&release);
        disk.fail(store::disk::Fault::Io, move |operation| {
            while operation.op == Op::Sync && !held.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
            false
        });
        let options = Options {
            fsync,
            ..options(dir.path(), &disk)
        };
        let store = EmbeddedStore::open(new_state(&clock), options).unwrap();
        let state = store.state();
        for n in 0..20 {
            state.reserve("A", plate(&format!("P{n}"))).unwrap();
        }
        state.update_occupancy("B", CountChange::Set(4)).unwrap();
        let expected = image(state);

        let copy = TempDir::new("store-write-through-copy");
        for name in files(dir.path()) {
            if name != "LOCK" {
                std::fs::copy(dir.path().join(&name), copy.path().join(&name)).unwrap();
            }
        }
        let recovered = image(open(copy.path(), &clock, &FaultyDisk::new()).state());
        // Before asserting: a failed test must not hang in the close's held-back sync.
        release.store(true, Ordering::SeqCst);
        assert_eq!(recovered, expected, "fsync {fsync}");
    }
}

#[test]
fn under_everysec_writers_of_other_lots_go_on_during_a_write_and_share_the_next_one() {
    let dir = TempDir::new("store-combine");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let everysec = Options {
        fsync: Fsync::Everysec,
        ..options(dir.path(), &disk)
    };
    let lots = [("A", 10), ("B", 10), ("C", 10)];
    let store = Arc::new(EmbeddedStore::open(state_with(&clock, &lots), everysec).unwrap());
    // The first write is held back until the test lets it go; every write is counted.
    let writes = Arc::new(AtomicU64::new(0));
    let (held, is_held) = crossbeam_channel::bounded(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let seen = Arc::clone(&writes);
    disk.fail(store::disk::Fault::Io, move |operation| {
        if operation.op == Op::Write && seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = held.send(());
            let _ = released.recv();
        }
        false
    });
    let reserve = |lot: &'static str, text: &'static str| {
        let store = Arc::clone(&store);
        thread::spawn(move || store.state().reserve(lot, plate(text)).unwrap())
    };
    let first = reserve("A", "P1");
    is_held.recv().unwrap();
    let others = [reserve("B", "P2"), reserve("C", "P3")];
    // Their changes are made, and their lots can be read, while lot A's write is held: they
    // wait for their record's write outside their lot's lock. (Read on a thread of its own:
    // a lot lock held across the write would block the read, and the test must not hang.)
    let (read, was_read) = crossbeam_channel::bounded(1);
    let reader = Arc::clone(&store);
    thread::spawn(move || {
        eventually("B's and C's reservations to be made", || {
            reader.state().free("B").unwrap() == 9 && reader.state().free("C").unwrap() == 9
        });
        let _ = read.send(());
    });
    let outcome = was_read.recv_timeout(DEADLINE);
    release.send(()).unwrap();
    outcome.expect("lots B and C could not be read while lot A's write was held");
    assert_eq!(first.join().unwrap(), ReserveOutcome::Reserved);
    for other in others {
        assert_eq!(other.join().unwrap(), ReserveOutcome::Reserved);
    }
    // A's write, then one write for both changes that arrived during it.
    assert_eq!(writes.load(Ordering::SeqCst), 2);
    let expected = image(store.state());
    crash(Arc::into_inner(store).unwrap(), &disk);
    let store = EmbeddedStore::open(
        state_with(&clock, &lots),
        options(dir.path(), &FaultyDisk::new()),
    )
    .unwrap();
    assert_eq!(image(store.state()), expected);
}

#[test]
fn everysec_syncs_in_the_background_and_rewrites_after_a_failed_sync() {
    let dir = TempDir::new("store-everysec");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let options = Options {
        fsync: Fsync::Everysec,
        ..options(dir.path(), &disk)
    };
    let store = EmbeddedStore::open(new_state(&clock), options.clone()).unwrap();
    let syncs = count(&disk, Op::Sync);
    store.state().reserve("A", plate("P1")).unwrap();
    eventually("the background sync", || syncs.load(Ordering::SeqCst) >= 1);

    // A failed sync: acknowledged writes may not be on the disk, so writes stop...
    disk.fail_ops(store::disk::Fault::Io, &[Op::Sync]);
    store.state().reserve("A", plate("P2")).unwrap();
    eventually("the failed sync to be noticed", || {
        matches!(store.health(), Health::Unavailable(_))
    });
    assert!(store.state().reserve("A", plate("P3")).is_err());
    // ...until the disk takes the rewritten bytes and a sync again.
    disk.heal();
    eventually("writes to resume", || {
        store.state().reserve("A", plate("P4")).is_ok()
    });
    assert_eq!(store.health(), Health::Ok);
    let before = image(store.state());
    crash(store, &disk);
    let store = EmbeddedStore::open(new_state(&clock), Options::new(dir.path())).unwrap();
    assert_eq!(image(store.state()), before);
    assert_eq!(store.state().lots()[0].reserved, 3);
}
