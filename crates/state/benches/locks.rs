//! Lock choice for `ParkingState`: the reference design's single re-entrant lock around all
//! lots versus one `parking_lot::Mutex` per lot (what the crate uses).
//!
//! Run with `cargo bench -p state --bench locks`. Each configuration runs the same operation
//! mix (70% availability reads, 20% reserves, 10% cancels, over three lots and a plate pool)
//! on N threads and prints operations per second:
//! - `reference`: all lots in one `ReentrantMutex<RefCell<..>>`, as the reference design does;
//! - `per-lot`: the same lot logic, one `parking_lot::Mutex` per lot: the lock is the only
//!   difference;
//! - `ParkingState`: the real thing, which also keeps the expiry queue and publishes changes.
//!
//! Results are recorded in `docs/design.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::ReentrantMutex;
use state::{LotId, LotSpec, ParkingState, Plate, SystemClock};

const LOTS: [&str; 3] = ["A", "B", "C"];
const OPS_PER_THREAD: usize = 400_000;
const TTL: Duration = Duration::from_secs(300);

/// The reference design: every lot behind one re-entrant lock, interior in a `RefCell`.
struct ReferenceState {
    lots: ReentrantMutex<RefCell<HashMap<String, ReferenceLot>>>,
}

struct ReferenceLot {
    capacity: usize,
    occupied: usize,
    reservations: HashMap<Plate, Instant>,
}

impl ReferenceState {
    fn new() -> Self {
        let lots = LOTS
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    ReferenceLot {
                        capacity: 1000,
                        occupied: 0,
                        reservations: HashMap::new(),
                    },
                )
            })
            .collect();
        ReferenceState {
            lots: ReentrantMutex::new(RefCell::new(lots)),
        }
    }

    fn with_lot<R>(&self, id: &str, op: impl FnOnce(&mut ReferenceLot, Instant) -> R) -> R {
        let guard = self.lots.lock();
        let mut lots = guard.borrow_mut();
        let lot = lots.get_mut(id).unwrap();
        // Nothing expires within a run (TTL 300 s), so skipping the purge here keeps the
        // comparison about the lock alone.
        op(lot, Instant::now())
    }

    fn free(&self, id: &str) -> usize {
        self.with_lot(id, |lot, _| {
            lot.capacity
                .saturating_sub(lot.occupied + lot.reservations.len())
        })
    }

    fn reserve(&self, id: &str, plate: Plate) -> bool {
        self.with_lot(id, |lot, now| {
            if lot.reservations.contains_key(&plate)
                || lot.occupied + lot.reservations.len() >= lot.capacity
            {
                return false;
            }
            lot.reservations.insert(plate, now + TTL);
            true
        })
    }

    fn cancel(&self, id: &str, plate: Plate) -> bool {
        self.with_lot(id, |lot, _| lot.reservations.remove(&plate).is_some())
    }
}

/// The same lots and logic as [`ReferenceState`], one `parking_lot::Mutex` per lot.
struct PerLotState {
    lots: Vec<(String, parking_lot::Mutex<ReferenceLot>)>,
}

impl PerLotState {
    fn new() -> Self {
        let lots = LOTS
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    parking_lot::Mutex::new(ReferenceLot {
                        capacity: 1000,
                        occupied: 0,
                        reservations: HashMap::new(),
                    }),
                )
            })
            .collect();
        PerLotState { lots }
    }
}

impl Target for PerLotState {
    fn op(&self, step: usize, plates: &[Plate]) {
        let id = LOTS[step % 3];
        let plate = plates[step % plates.len()];
        let (_, lot) = self.lots.iter().find(|(name, _)| name == id).unwrap();
        let mut lot = lot.lock();
        let now = Instant::now();
        match step % 10 {
            0..=6 => {
                std::hint::black_box(
                    lot.capacity
                        .saturating_sub(lot.occupied + lot.reservations.len()),
                );
            }
            7 | 8 => {
                if !lot.reservations.contains_key(&plate)
                    && lot.occupied + lot.reservations.len() < lot.capacity
                {
                    lot.reservations.insert(plate, now + TTL);
                }
            }
            _ => {
                lot.reservations.remove(&plate);
            }
        }
    }
}

trait Target: Send + Sync + 'static {
    fn op(&self, step: usize, plates: &[Plate]);
}

impl Target for ReferenceState {
    fn op(&self, step: usize, plates: &[Plate]) {
        let lot = LOTS[step % 3];
        let plate = plates[step % plates.len()];
        match step % 10 {
            0..=6 => {
                self.free(lot);
            }
            7 | 8 => {
                self.reserve(lot, plate);
            }
            _ => {
                self.cancel(lot, plate);
            }
        }
    }
}

impl Target for ParkingState {
    fn op(&self, step: usize, plates: &[Plate]) {
        let lot = LOTS[step % 3];
        let plate = plates[step % plates.len()];
        match step % 10 {
            0..=6 => {
                self.free(lot).unwrap();
            }
            7 | 8 => {
                self.reserve(lot, plate).unwrap();
            }
            _ => {
                self.cancel(lot, plate).unwrap();
            }
        }
    }
}

fn run(target: Arc<dyn Target>, threads: usize) -> f64 {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let target = Arc::clone(&target);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let plates: Vec<Plate> = (0..64)
                    .map(|n| Plate::parse(&format!("T{thread}P{n}")).unwrap())
                    .collect();
                barrier.wait();
                for step in 0..OPS_PER_THREAD {
                    // Spread threads over lots so that per-lot locking can show.
                    target.op(step * 7 + thread, &plates);
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for worker in workers {
        worker.join().unwrap();
    }
    (threads * OPS_PER_THREAD) as f64 / started.elapsed().as_secs_f64()
}

fn per_lot_state() -> Arc<ParkingState> {
    let specs = LOTS
        .iter()
        .map(|id| LotSpec::new(LotId::new(id).unwrap(), 1000));
    Arc::new(ParkingState::new(specs, TTL, Arc::new(SystemClock)).unwrap())
}

fn main() {
    println!(
        "cores: {}",
        thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:>8} {:>18} {:>18} {:>12} {:>20}",
        "threads", "reference ops/s", "per-lot ops/s", "per-lot/ref", "ParkingState ops/s"
    );
    for threads in [1, 2, 4, 16] {
        let reference = run(Arc::new(ReferenceState::new()), threads);
        let per_lot = run(Arc::new(PerLotState::new()), threads);
        let state = run(per_lot_state(), threads);
        println!(
            "{threads:>8} {reference:>18.0} {per_lot:>18.0} {:>12.2} {state:>20.0}",
            per_lot / reference
        );
    }
}
