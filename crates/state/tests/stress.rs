//! Concurrent stress test of [`ParkingState`] (see `docs/robustness.md`).
//!
//! 16 threads run random reserves, cancels, sensor reports and reads on one 10-space lot while
//! a checker thread takes `getLots` snapshots throughout. The run is cut into rounds. Between
//! two rounds, with no other thread running, the test sets the lot's occupancy to a random
//! count; during a round the sensors only report cars leaving (`-1`), so occupancy only falls.
//! That makes the grant rule checkable at every observed instant: a reservation is granted only
//! while occupied + live reservations < capacity, so in every snapshot
//! `reserved <= max(reserved when the round started, capacity - occupied)`. (A reserve that
//! ignored occupancy would fill the lot to its capacity whatever the sensors say.) After each
//! round the books must balance against the threads' own tallies: reservations granted minus
//! cancelled, occupancy set minus cars reported leaving, and the free count those give.
//!
//! `STRESS_OPS` sets the operations per thread (default 20,000: under a second in a debug build);
//! the full-size run is `STRESS_OPS=100000 cargo test --release -p state --test stress`.
//! `STRESS_SEED` replays a run (the seed is printed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
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
/// Operations per thread and round.
const OPS_PER_ROUND: u64 = 200;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {value:?}")),
    )
}

/// What the threads share: the state, the tallies of what they were told, and the first
/// failure any of them saw (threads record failures instead of panicking, so that no thread
/// is left waiting at a barrier).
struct Shared {
    state: ParkingState,
    plates: Vec<Plate>,
    /// `reserved` when the current round started.
    round_floor: AtomicU32,
    granted: AtomicU64,
    cancelled: AtomicU64,
    full: AtomicU64,
    /// Cars reported leaving in the current round.
    departures: AtomicU32,
    reads: AtomicU64,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, failure: String) {
        self.failure.lock().unwrap().get_or_insert(failure);
    }

    /// The invariants of any snapshot taken during the run.
    fn check_snapshot(&self, lot: &LotSnapshot) {
        // Loaded after the snapshot was taken: a snapshot that saw a new round's occupancy also
        // sees that round's floor, which the coordinator stores before setting the occupancy.
        let floor = self.round_floor.load(Ordering::SeqCst);
        if lot.capacity != CAPACITY || lot.occupied > lot.capacity {
            self.fail(format!("impossible counts: {lot:?}"));
        }
        if lot.reserved > floor.max(lot.capacity - lot.occupied.min(lot.capacity)) {
            self.fail(format!(
                "granted past the free spaces (round started with {floor} reserved): {lot:?}"
            ));
        }
        if lot.free != lot.capacity.saturating_sub(lot.occupied + lot.reserved) {
            self.fail(format!(
                "free does not match the snapshot's counts: {lot:?}"
            ));
        }
    }

    fn snapshot_and_check(&self) {
        for lot in self.state.lots() {
            self.check_snapshot(&lot);
        }
    }

    /// One thread's share of a round: reserves, cancels and reads, and at most one car
    /// leaving, at a random point of the round.
    fn run_round(&self, rng: &mut SmallRng) {
        let departure_at = rng
            .random_bool(0.5)
            .then(|| rng.random_range(0..OPS_PER_ROUND));
        for op in 0..OPS_PER_ROUND {
            if departure_at == Some(op) {
                let update = self
                    .state
                    .update_occupancy("A", CountChange::Remove(1))
                    .unwrap();
                self.departures.fetch_add(1, Ordering::Relaxed);
                if update.free > CAPACITY - update.occupied {
                    self.fail(format!("a sensor update reported {update:?}"));
                }
                continue;
            }
            let plate = self.plates[rng.random_range(0..PLATES)];
            match rng.random_range(0..9) {
                0..=3 => match self.state.reserve("A", plate).unwrap() {
                    ReserveOutcome::Reserved => {
                        self.granted.fetch_add(1, Ordering::Relaxed);
                    }
                    ReserveOutcome::Full => {
                        self.full.fetch_add(1, Ordering::Relaxed);
                    }
                    ReserveOutcome::Exists => {}
                },
                4..=6 => {
                    if self.state.cancel("A", plate).unwrap() == CancelOutcome::Cancelled {
                        self.cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                }
                7 => {
                    if self.state.free("A").unwrap() > CAPACITY {
                        self.fail("free over capacity".to_owned());
                    }
                    self.reads.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    self.snapshot_and_check();
                    self.reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reservations granted and not cancelled, by the threads' own count.
    fn live_by_tally(&self) -> u32 {
        let live = self.granted.load(Ordering::Relaxed) - self.cancelled.load(Ordering::Relaxed);
        u32::try_from(live).unwrap()
    }
}

#[test]
fn sixteen_threads_never_overbook_and_the_books_balance() {
    let ops = env_u64("STRESS_OPS").unwrap_or(DEFAULT_OPS);
    let seed = env_u64("STRESS_SEED").unwrap_or(0x5EED_CAFE);
    let rounds = ops.div_ceil(OPS_PER_ROUND);
    println!(
        "stress: {THREADS} threads x {rounds} rounds x {OPS_PER_ROUND} operations, STRESS_SEED={seed}"
    );

    let lot = LotSpec::new(LotId::new("A").unwrap(), CAPACITY);
    let shared = Arc::new(Shared {
        state: ParkingState::new([lot], TTL, Arc::new(SystemClock)).unwrap(),
        plates: (0..PLATES)
            .map(|n| Plate::parse(&format!("S{n}")).unwrap())
            .collect(),
        round_floor: AtomicU32::new(0),
        granted: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        full: AtomicU64::new(0),
        departures: AtomicU32::new(0),
        reads: AtomicU64::new(0),
        failure: Mutex::new(None),
    });
    let heard = Arc::new(Mutex::new(Vec::new()));
    {
        let heard = Arc::clone(&heard);
        shared
            .state
            .add_listener(Arc::new(move |change: &LotChange| {
                heard.lock().unwrap().push(change.free);
            }));
    }
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let end = Arc::new(Barrier::new(THREADS + 1));

    let checker = {
        let (shared, done) = (Arc::clone(&shared), Arc::clone(&done));
        thread::spawn(move || {
            let mut snapshots = 0u64;
            while !done.load(Ordering::Acquire) {
                shared.snapshot_and_check();
                snapshots += 1;
                thread::yield_now();
            }
            snapshots
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|index| {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            let (start, end) = (Arc::clone(&start), Arc::clone(&end));
            thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(index as u64));
                loop {
                    start.wait();
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    shared.run_round(&mut rng);
                    end.wait();
                }
            })
        })
        .collect();

    let mut rng = SmallRng::seed_from_u64(seed ^ 0xC0FFEE);
    for _ in 0..rounds {
        // Between rounds: nobody else changes the lot.
        let reserved = shared.live_by_tally();
        shared.round_floor.store(reserved, Ordering::SeqCst);
        let set = rng.random_range(0..=CAPACITY + 2);
        let update = shared
            .state
            .update_occupancy("A", CountChange::Set(set))
            .unwrap();
        shared.departures.store(0, Ordering::Relaxed);
        start.wait();
        end.wait();
        // The books balance against the threads' own tallies.
        let lot = shared.state.lots().pop().unwrap();
        // The sensors' running count is kept past capacity; what counts is it clamped.
        let counted = update.counted - i64::from(shared.departures.load(Ordering::Relaxed));
        let occupied = u32::try_from(counted.clamp(0, i64::from(CAPACITY))).unwrap();
        let reserved = shared.live_by_tally();
        let free = CAPACITY.saturating_sub(occupied + reserved);
        if (lot.occupied, lot.reserved) != (occupied, reserved) {
            shared.fail(format!(
                "books do not balance: expected occupied {occupied}, reserved {reserved}; {lot:?}"
            ));
        }
        if shared.state.free("A").unwrap() != free {
            shared.fail(format!("getAvailability is not {free}: {lot:?}"));
        }
        if heard.lock().unwrap().last().copied().unwrap_or(CAPACITY) != free {
            shared.fail(format!("listeners last heard another count than {free}"));
        }
        if shared.failure.lock().unwrap().is_some() {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    start.wait();
    for worker in workers {
        worker.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let snapshots = checker.join().unwrap();
    if let Some(failure) = shared.failure.lock().unwrap().take() {
        panic!("{failure}; rerun with STRESS_SEED={seed}");
    }

    let full = shared.full.load(Ordering::Relaxed);
    println!(
        "stress: {} reserved, {} cancelled, {full} refused as full, {} reads; {snapshots} \
         checker snapshots",
        shared.granted.load(Ordering::Relaxed),
        shared.cancelled.load(Ordering::Relaxed),
        shared.reads.load(Ordering::Relaxed),
    );
    // Nothing expired (the TTL outlives the run), so no expiry explains the counts.
    assert_eq!(shared.state.purge_expired(), 0);
    // The run exercised both sides of the capacity check.
    assert!(shared.granted.load(Ordering::Relaxed) > 0 && full > 0);
    // Listeners heard every change once, in order: never the same count twice in a row.
    let heard = heard.lock().unwrap();
    assert!(
        heard.windows(2).all(|pair| pair[0] != pair[1]),
        "a change was published twice"
    );
    assert!(heard.iter().all(|&free| free <= CAPACITY));
}
