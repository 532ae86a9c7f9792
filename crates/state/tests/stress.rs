//! Concurrent stress test of [`ParkingState`] (see `docs/robustness.md`).
//!
//! 16 threads run random reserves, cancels, sensor updates and reads on one 10-space lot while
//! a checker thread takes `getLots` snapshots throughout. Nothing may be overbooked at any
//! observed instant, and the books must balance at the end.
//!
//! `STRESS_OPS` sets the operations per thread (default 20,000: under a second in a debug build);
//! the full-size run is `STRESS_OPS=100000 cargo test --release -p state --test stress`.
//! `STRESS_SEED` replays a run (the seed is printed on failure).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use state::{
    CancelOutcome, CountChange, LotChange, LotId, LotSnapshot, LotSpec, ParkingState, Plate,
    ReserveOutcome, SystemClock,
};

const THREADS: usize = 16;
const CAPACITY: u32 = 10;
/// Far longer than any run, so nothing expires and the books balance without expiries.
const TTL: Duration = Duration::from_secs(3600);
/// Four plates per space: plates collide across threads, and cancels often find a reservation.
const PLATES: usize = 40;
const DEFAULT_OPS: u64 = 20_000;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {value:?}")),
    )
}

/// The invariants of any snapshot, at any instant.
fn check_snapshot(lot: &LotSnapshot) {
    assert_eq!(lot.capacity, CAPACITY, "{lot:?}");
    assert!(
        lot.occupied <= lot.capacity,
        "occupancy past capacity: {lot:?}"
    );
    assert!(lot.reserved <= lot.capacity, "overbooked: {lot:?}");
    assert_eq!(
        lot.free,
        lot.capacity.saturating_sub(lot.occupied + lot.reserved),
        "free is not max(0, capacity - occupied - reserved): {lot:?}"
    );
}

#[derive(Debug, Default)]
struct Tally {
    reserved: AtomicU64,
    cancelled: AtomicU64,
    full: AtomicU64,
    updates: AtomicU64,
    reads: AtomicU64,
}

#[test]
fn sixteen_threads_never_overbook_and_the_books_balance() {
    let ops = env_u64("STRESS_OPS").unwrap_or(DEFAULT_OPS);
    let seed = env_u64("STRESS_SEED").unwrap_or(0x5EED_CAFE);
    println!("stress: {THREADS} threads x {ops} operations, STRESS_SEED={seed}");

    let lot = LotSpec::new(LotId::new("A").unwrap(), CAPACITY);
    let state = Arc::new(ParkingState::new([lot], TTL, Arc::new(SystemClock)).unwrap());
    let heard = Arc::new(Mutex::new(Vec::new()));
    {
        let heard = Arc::clone(&heard);
        state.add_listener(Arc::new(move |change: &LotChange| {
            heard.lock().unwrap().push(change.free);
        }));
    }
    let plates: Arc<Vec<Plate>> = Arc::new(
        (0..PLATES)
            .map(|n| Plate::parse(&format!("S{n}")).unwrap())
            .collect(),
    );
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));

    let checker = {
        let state = Arc::clone(&state);
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut snapshots = 0u64;
            // At least one snapshot after the workers finish, whatever the scheduling.
            loop {
                let finished = done.load(Ordering::Acquire);
                for lot in state.lots() {
                    check_snapshot(&lot);
                }
                snapshots += 1;
                if finished {
                    return snapshots;
                }
                thread::yield_now();
            }
        })
    };

    let workers: Vec<_> = (0..THREADS)
        .map(|index| {
            let state = Arc::clone(&state);
            let plates = Arc::clone(&plates);
            let tally = Arc::clone(&tally);
            thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(index as u64));
                for _ in 0..ops {
                    let plate = plates[rng.random_range(0..PLATES)];
                    match rng.random_range(0..10) {
                        0..=3 => match state.reserve("A", plate).unwrap() {
                            ReserveOutcome::Reserved => {
                                tally.reserved.fetch_add(1, Ordering::Relaxed);
                            }
                            ReserveOutcome::Full => {
                                tally.full.fetch_add(1, Ordering::Relaxed);
                            }
                            ReserveOutcome::Exists => {}
                        },
                        4..=6 => {
                            if state.cancel("A", plate).unwrap() == CancelOutcome::Cancelled {
                                tally.cancelled.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        7 => {
                            // Occupancy mostly low enough to leave room for reservations, at
                            // times past capacity (clamped) or emptied.
                            let change = match rng.random_range(0..4) {
                                0 => CountChange::Set(rng.random_range(0..=CAPACITY + 2)),
                                1 => CountChange::Add(rng.random_range(0..3)),
                                _ => CountChange::Remove(rng.random_range(0..4)),
                            };
                            let update = state.update_occupancy("A", change).unwrap();
                            assert!(update.occupied <= CAPACITY, "{update:?}");
                            assert!(update.free <= CAPACITY - update.occupied, "{update:?}");
                            tally.updates.fetch_add(1, Ordering::Relaxed);
                        }
                        8 => {
                            assert!(state.free("A").unwrap() <= CAPACITY);
                            tally.reads.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            for lot in state.lots() {
                                check_snapshot(&lot);
                            }
                            tally.reads.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    // Join every worker before judging any.
    let joined: Vec<bool> = workers
        .into_iter()
        .map(|worker| worker.join().is_ok())
        .collect();
    let workers_ok = joined.iter().all(|&ok| ok);
    // Stop the checker before failing, so that a failed run ends.
    done.store(true, Ordering::Release);
    assert!(
        workers_ok,
        "a worker failed; rerun with the STRESS_SEED printed above"
    );
    let snapshots = checker
        .join()
        .expect("a snapshot broke an invariant; rerun with the STRESS_SEED printed above");

    let reserved = tally.reserved.load(Ordering::Relaxed);
    let cancelled = tally.cancelled.load(Ordering::Relaxed);
    println!(
        "stress: {reserved} reserved, {cancelled} cancelled, {} refused as full, {} sensor \
         updates, {} reads; {snapshots} checker snapshots",
        tally.full.load(Ordering::Relaxed),
        tally.updates.load(Ordering::Relaxed),
        tally.reads.load(Ordering::Relaxed),
    );

    let lot = state.lots().pop().unwrap();
    check_snapshot(&lot);
    // Nothing expired (the TTL outlives the run), so every live reservation is one granted and
    // not cancelled.
    assert_eq!(state.purge_expired(), 0);
    assert_eq!(u64::from(lot.reserved), reserved - cancelled, "{lot:?}");
    // The run exercised both sides of the capacity check.
    assert!(reserved > 0 && tally.full.load(Ordering::Relaxed) > 0);

    // Listeners heard every change once, in order: never the same count twice in a row, and
    // the last one heard is the count now.
    let heard = heard.lock().unwrap();
    assert!(
        heard.windows(2).all(|pair| pair[0] != pair[1]),
        "a change was published twice"
    );
    assert!(heard.iter().all(|&free| free <= CAPACITY));
    assert_eq!(heard.last().copied().unwrap_or(CAPACITY), lot.free);
}
