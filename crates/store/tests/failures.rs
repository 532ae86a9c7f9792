//! A failing disk: nothing is acknowledged that is not on it, what was refused is undone in
//! memory, reads go on, and writes resume when the disk recovers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::*;
use state::{CancelOutcome, CountChange, ManualClock, ReserveOutcome, StateError};
use store::disk::{Fault, FaultyDisk, Op};
use store::{Fsync, Health, Store};

#[test]
fn a_failed_write_is_undone_refused_until_the_disk_recovers_and_never_on_disk() {
    failed_write(Fsync::Always);
}

#[test]
fn a_failed_write_under_everysec_is_undone_and_never_on_disk() {
    failed_write(Fsync::Everysec);
}

#[test]
fn a_failed_write_under_fsync_no_is_undone_and_never_on_disk() {
    failed_write(Fsync::No);
}

fn failed_write(fsync: Fsync) {
    let dir = TempDir::new("store-full");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let options = store::Options {
        fsync,
        retry_after: Duration::from_millis(500),
        ..options(dir.path(), &disk)
    };
    let store = store::EmbeddedStore::open(new_state(&clock), options).unwrap();
    let state = store.state();
    state.reserve("A", plate("P1")).unwrap();

    disk.fail_ops(Fault::Full, &[Op::Write]);
    match state.reserve("A", plate("P2")) {
        Err(StateError::Unavailable(why)) => {
            assert!(why.to_string().contains("no space left"), "{why}");
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    // Undone in memory, reads go on, and the store says why.
    assert_eq!(state.free("A").unwrap(), 99);
    assert!(matches!(store.health(), Health::Unavailable(why) if why.contains("no space")));
    // Within the backoff, a change is refused without touching the disk.
    let before = disk.operations();
    assert!(state.update_occupancy("B", CountChange::Set(5)).is_err());
    assert_eq!(state.lots()[1].counted, 0);
    assert_eq!(disk.operations(), before, "a refusal went to the disk");

    disk.heal();
    eventually("writes to resume", || {
        state.reserve("A", plate("P3")).is_ok()
    });
    assert_eq!(store.health(), Health::Ok);
    let expected = image(state);
    crash(store, &disk);

    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(image(store.state()), expected);
    let lots = store.state().lots();
    assert_eq!((lots[0].reserved, lots[1].counted), (2, 0));
    // The half-written batch was cut off, not left as a torn tail to find at start-up.
    assert_eq!(files(dir.path()), ["LOCK", "journal-1.log"]);
}

#[test]
fn a_failed_sync_rolls_the_batch_back() {
    let dir = TempDir::new("store-eio");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let store = open(dir.path(), &clock, &disk);
    store.state().reserve("A", plate("KEEP")).unwrap();
    disk.fail_ops(Fault::Io, &[Op::Sync]);
    assert!(store.state().cancel("A", plate("KEEP")).is_err());
    assert_eq!(store.state().lots()[0].reserved, 1);
    // The write reached the file before the sync failed; it must not be replayed.
    crash(store, &disk);
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(store.state().lots()[0].reserved, 1);
}

/// What one writer was told about each of its plates, and how many changes were refused.
#[derive(Debug, Default)]
struct Told {
    held: BTreeMap<String, bool>,
    refused: u64,
}

#[test]
fn under_concurrent_writers_and_a_flapping_disk_exactly_the_acknowledged_changes_remain() {
    flapping_disk(Fsync::Always);
}

#[test]
fn under_everysec_concurrent_writers_and_a_flapping_disk_keep_exactly_the_acknowledged() {
    flapping_disk(Fsync::Everysec);
}

#[test]
fn under_fsync_no_concurrent_writers_and_a_flapping_disk_keep_exactly_the_acknowledged() {
    flapping_disk(Fsync::No);
}

/// `kill -9` after a flapping disk: under every policy a killed process loses nothing
/// acknowledged, as even `no` writes to the OS before replying.
fn flapping_disk(fsync: Fsync) {
    let dir = TempDir::new("store-flapping");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let options = store::Options {
        fsync,
        ..options(dir.path(), &disk)
    };
    let store = Arc::new(store::EmbeddedStore::open(new_state(&clock), options).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    // Acknowledged changes per writer: every one of them must get writes through again after
    // the last heal (a few hundred changes overall can be one writer's burst alone).
    let acknowledged: Arc<Vec<AtomicU64>> =
        Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    const WRITERS: usize = 6;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, stop, progress, acknowledged) = (
                Arc::clone(&store),
                Arc::clone(&stop),
                Arc::clone(&progress),
                Arc::clone(&acknowledged),
            );
            thread::spawn(move || {
                let mut told = Told::default();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("W{writer}P{}", n % 12);
                    let state = store.state();
                    let held = told.held.get(&name).copied().unwrap_or(false);
                    let outcome = if held {
                        state
                            .cancel("A", plate(&name))
                            .map(|outcome| assert_eq!(outcome, CancelOutcome::Cancelled))
                    } else {
                        state
                            .reserve("A", plate(&name))
                            .map(|outcome| assert_eq!(outcome, ReserveOutcome::Reserved))
                    };
                    match outcome {
                        Ok(()) => {
                            told.held.insert(name, !held);
                            acknowledged[writer].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(StateError::Unavailable(_)) => told.refused += 1,
                        Err(other) => panic!("{other}"),
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                told
            })
        })
        .collect();
    // Fail and heal the disk a few times while the writers run, each phase a few hundred
    // changes long.
    for round in 0..6 {
        let until = progress.load(Ordering::Relaxed) + 300;
        eventually("the writers to make progress", || {
            progress.load(Ordering::Relaxed) >= until
        });
        if round % 2 == 0 {
            let fault = if round == 2 { Fault::Full } else { Fault::Io };
            disk.fail_ops(fault, &[Op::Write, Op::Sync]);
        } else {
            disk.heal();
        }
    }
    disk.heal();
    let healed: Vec<u64> = acknowledged
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect();
    eventually(
        "every writer to get writes through after the last heal",
        || {
            acknowledged
                .iter()
                .zip(&healed)
                .all(|(count, at_heal)| count.load(Ordering::Relaxed) > *at_heal)
        },
    );
    stop.store(true, Ordering::Relaxed);
    let told: Vec<Told> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        told.iter().map(|t| t.refused).sum::<u64>() > 0,
        "the disk never failed a write"
    );

    let expected: Vec<String> = told
        .iter()
        .flat_map(|t| {
            t.held
                .iter()
                .filter(|(_, held)| **held)
                .map(|(name, _)| name.clone())
        })
        .collect();
    let held = |state: &state::ParkingState| {
        let mut names: Vec<String> = state
            .image()
            .into_iter()
            .filter_map(|change| match change {
                state::Change::Reservation { plate, .. } => Some(plate.as_str().to_owned()),
                _ => None,
            })
            .collect();
        names.sort();
        names
    };
    let mut expected = expected;
    expected.sort();
    // In memory, every refused change was undone...
    assert_eq!(held(store.state()), expected);
    let store = Arc::into_inner(store).unwrap();
    crash(store, &disk);
    // ...and on disk there is exactly what was acknowledged.
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(held(store.state()), expected);
}
