//! Model-based test of [`ParkingState`] (see `docs/robustness.md`).
//!
//! Random sequences of operations run both against a `ParkingState` on a [`ManualClock`] and
//! against a deliberately naive model written here (per lot: the sensors' running count and a map from
//! plate to expiry). After every step the two must agree on the operation's result, on every
//! change of a lot's free count that listeners heard about, and, where the case asks for it,
//! on a full `getLots`/`getAvailability` read.
//!
//! A note on the invariant: occupied plus live reservations may exceed capacity, because a
//! sensor can report cars after reservations were granted. What the state guarantees is that
//! a reservation is only granted while occupied plus live reservations are below capacity,
//! that live reservations never exceed capacity, and that `free` is
//! `max(0, capacity - occupied - reserved)`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use proptest::sample::select;
use state::{
    Availability, CancelOutcome, Clock, CountChange, LotChange, LotId, LotSnapshot, LotSpec,
    ManualClock, OccupancyUpdate, ParkingState, Plate, ReserveOutcome, StateError, UnknownLot,
};

const TTL: Duration = Duration::from_secs(10);
const LOT_IDS: [&str; 3] = ["A", "B", "C"];
/// Not a lot: operations on it must fail without side effects.
const UNKNOWN_LOT: &str = "Z";
/// A small pool, so plates collide; pairs differing only in case are the same plate.
const PLATES: [&str; 6] = ["P1", "p1", "P2", "Q-9", "q-9", "XYZ"];

#[derive(Debug, Clone)]
enum Op {
    Reserve { lot: usize, plate: &'static str },
    Cancel { lot: usize, plate: &'static str },
    Sensor { lot: usize, change: CountChange },
    Advance(Duration),
    GetLots,
    GetAvailability { lot: usize },
    Purge,
}

/// A lot index: mostly a configured lot, sometimes one past the end (the unknown lot).
fn lot_index(lots: usize) -> impl Strategy<Value = usize> {
    prop_oneof![9 => 0..lots, 1 => Just(lots)]
}

fn op(lots: usize) -> impl Strategy<Value = Op> {
    // Counts reach past the largest capacity (6) so that clamping happens.
    let count = prop_oneof![4 => 0u32..9, 1 => any::<u32>()];
    let change = prop_oneof![
        count.clone().prop_map(CountChange::Set),
        count.clone().prop_map(CountChange::Add),
        count.prop_map(CountChange::Remove),
    ];
    let advance = prop_oneof![
        // Whole seconds hit expiry instants exactly; milliseconds land in between.
        (0u64..=20).prop_map(Duration::from_secs),
        (0u64..=20_000).prop_map(Duration::from_millis),
    ];
    prop_oneof![
        6 => (lot_index(lots), select(PLATES.to_vec())).prop_map(|(lot, plate)| Op::Reserve { lot, plate }),
        3 => (lot_index(lots), select(PLATES.to_vec())).prop_map(|(lot, plate)| Op::Cancel { lot, plate }),
        4 => (lot_index(lots), change).prop_map(|(lot, change)| Op::Sensor { lot, change }),
        3 => advance.prop_map(Op::Advance),
        2 => Just(Op::GetLots),
        2 => lot_index(lots).prop_map(|lot| Op::GetAvailability { lot }),
        1 => Just(Op::Purge),
    ]
}

/// A case: the lots' capacities, the operations, and whether to read everything after each.
fn case() -> impl Strategy<Value = (Vec<u32>, Vec<Op>, bool)> {
    proptest::collection::vec(1u32..=6, 2..=3).prop_flat_map(|capacities| {
        let ops = proptest::collection::vec(op(capacities.len()), 1..60);
        (Just(capacities), ops, any::<bool>())
    })
}

/// One lot, the obvious way.
#[derive(Debug)]
struct ModelLot {
    id: &'static str,
    capacity: u32,
    /// The sensors' running count; what is reported as occupied is it clamped to
    /// `[0, capacity]`, and it never leaves `[-2^40, 2^40]`.
    counted: i64,
    /// Plate (uppercase) to expiry, for every plate granted a reservation and not cancelled
    /// since. Entries are never dropped when they expire: past its expiry, an entry simply no
    /// longer counts.
    reservations: BTreeMap<String, Instant>,
    /// The expiry of every reservation ever granted here, cancelled ones included.
    granted: Vec<Instant>,
    /// When an operation last looked at this lot. Expiries up to then have been noticed:
    /// counted by a purge and heard by listeners.
    seen_until: Instant,
    /// The free count listeners last heard of.
    published: u32,
}

impl ModelLot {
    fn occupied(&self) -> u32 {
        if self.counted <= 0 {
            0
        } else {
            u32::try_from(self.counted).map_or(self.capacity, |n| n.min(self.capacity))
        }
    }

    fn live(&self, now: Instant) -> u32 {
        self.reservations
            .values()
            .filter(|&&expiry| expiry > now)
            .count() as u32
    }

    fn holds(&self, plate: &str, now: Instant) -> bool {
        self.reservations
            .get(plate)
            .is_some_and(|&expiry| expiry > now)
    }

    fn free(&self, now: Instant) -> u32 {
        self.capacity
            .saturating_sub(self.occupied() + self.live(now))
    }
}

#[derive(Debug)]
struct Model {
    now: Instant,
    wall: SystemTime,
    lots: Vec<ModelLot>,
    /// Every `(lot, free, at)` listeners must have heard, in order.
    events: Vec<(String, u32, SystemTime)>,
}

impl Model {
    /// What the protocol says an operation on lot `index` at `now` does, around `op`: it
    /// notices every reservation whose TTL ran out since the lot was last looked at (the count
    /// a purge reports), and listeners hear the lot's free count whenever it differs from the
    /// last one they heard. Returns `op`'s result and that count.
    fn touch<R>(
        &mut self,
        index: usize,
        op: impl FnOnce(&mut ModelLot, Instant) -> R,
    ) -> (R, usize) {
        let now = self.now;
        let lot = &mut self.lots[index];
        let since = lot.seen_until;
        let expired = lot
            .reservations
            .values()
            .filter(|&&expiry| since < expiry && expiry <= now)
            .count();
        let result = op(lot, now);
        lot.seen_until = now;
        let free = lot.free(now);
        if free != lot.published {
            lot.published = free;
            self.events.push((lot.id.to_owned(), free, self.wall));
        }
        (result, expired)
    }

    fn snapshot(&mut self, index: usize) -> (&'static str, u32, u32, i64, u32, u32) {
        self.touch(index, |lot, now| {
            (
                lot.id,
                lot.capacity,
                lot.occupied(),
                lot.counted,
                lot.live(now),
                lot.free(now),
            )
        })
        .0
    }

    fn reserve(&mut self, index: usize, plate: &str) -> ReserveOutcome {
        let plate = plate.to_ascii_uppercase();
        self.touch(index, |lot, now| {
            if lot.holds(&plate, now) {
                ReserveOutcome::Exists
            } else if lot.occupied() + lot.live(now) >= lot.capacity {
                ReserveOutcome::Full
            } else {
                lot.reservations.insert(plate, now + TTL);
                lot.granted.push(now + TTL);
                ReserveOutcome::Reserved
            }
        })
        .0
    }

    fn cancel(&mut self, index: usize, plate: &str) -> CancelOutcome {
        let plate = plate.to_ascii_uppercase();
        self.touch(index, |lot, now| {
            if lot.holds(&plate, now) {
                lot.reservations.remove(&plate);
                CancelOutcome::Cancelled
            } else {
                CancelOutcome::NotFound
            }
        })
        .0
    }

    /// As the protocol table says: `n`, `+k` and `-k` move the running count (kept within
    /// `[-2^40, 2^40]`), the report is it clamped to `[0, capacity]`, and clamped when the
    /// count is outside that range.
    fn sensor(&mut self, index: usize, change: CountChange) -> OccupancyUpdate {
        self.touch(index, |lot, now| {
            let wanted = match change {
                CountChange::Set(n) => i64::from(n),
                CountChange::Add(k) => lot.counted + i64::from(k),
                CountChange::Remove(k) => lot.counted - i64::from(k),
            };
            lot.counted = wanted.clamp(-(1 << 40), 1 << 40);
            OccupancyUpdate {
                occupied: lot.occupied(),
                counted: lot.counted,
                free: lot.free(now),
                clamped: lot.counted < 0 || lot.counted > i64::from(lot.capacity),
            }
        })
        .0
    }

    /// The earliest expiry of a reservation that still counts, if any.
    fn next_live_expiry(&self) -> Option<Instant> {
        self.lots
            .iter()
            .flat_map(|lot| lot.reservations.values())
            .copied()
            .filter(|&expiry| expiry > self.now)
            .min()
    }

    /// Whether `at` is the expiry of a reservation granted in some lot (cancelled or not) that
    /// the lot has not yet seen pass: the only instants `next_expiry` may report.
    fn is_pending_expiry(&self, at: Instant) -> bool {
        self.lots
            .iter()
            .any(|lot| lot.granted.contains(&at) && at > lot.seen_until)
    }
}

struct Harness {
    clock: Arc<ManualClock>,
    state: ParkingState,
    heard: Arc<Mutex<Vec<(String, u32, SystemTime)>>>,
    model: Model,
    /// The lot the last operation granted a reservation in, for the next `getLots` to check.
    granted_in: Option<usize>,
}

impl Harness {
    fn new(capacities: &[u32]) -> Self {
        let clock = Arc::new(ManualClock::new());
        let specs = capacities
            .iter()
            .zip(LOT_IDS)
            .map(|(&capacity, id)| LotSpec::new(LotId::new(id).unwrap(), capacity));
        let state = ParkingState::new(specs, TTL, clock.clone()).unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        state.add_listener(Arc::new(move |change: &LotChange| {
            sink.lock()
                .unwrap()
                .push((change.lot.to_string(), change.free, change.at));
        }));
        let now = clock.now();
        let model = Model {
            now,
            wall: clock.wall(),
            lots: capacities
                .iter()
                .zip(LOT_IDS)
                .map(|(&capacity, id)| ModelLot {
                    id,
                    capacity,
                    counted: 0,
                    reservations: BTreeMap::new(),
                    granted: Vec::new(),
                    seen_until: now,
                    published: capacity,
                })
                .collect(),
            events: Vec::new(),
        };
        Harness {
            clock,
            state,
            heard,
            model,
            granted_in: None,
        }
    }

    fn lot_name(&self, index: usize) -> &'static str {
        self.model.lots.get(index).map_or(UNKNOWN_LOT, |lot| lot.id)
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.granted_in = None;
        let lots = self.model.lots.len();
        let known = |index: usize| index < lots;
        match *op {
            Op::Reserve { lot, plate } => {
                let got = self
                    .state
                    .reserve(self.lot_name(lot), Plate::parse(plate).unwrap());
                if known(lot) {
                    prop_assert_eq!(got.clone(), Ok(self.model.reserve(lot, plate)));
                    if got == Ok(ReserveOutcome::Reserved) {
                        self.granted_in = Some(lot);
                    }
                } else {
                    prop_assert_eq!(
                        got,
                        Err(StateError::UnknownLot(UnknownLot(UNKNOWN_LOT.into())))
                    );
                }
            }
            Op::Cancel { lot, plate } => {
                let got = self
                    .state
                    .cancel(self.lot_name(lot), Plate::parse(plate).unwrap());
                if known(lot) {
                    prop_assert_eq!(got, Ok(self.model.cancel(lot, plate)));
                } else {
                    prop_assert_eq!(
                        got,
                        Err(StateError::UnknownLot(UnknownLot(UNKNOWN_LOT.into())))
                    );
                }
            }
            Op::Sensor { lot, change } => {
                let got = self.state.update_occupancy(self.lot_name(lot), change);
                if known(lot) {
                    prop_assert_eq!(got, Ok(self.model.sensor(lot, change)));
                } else {
                    prop_assert_eq!(
                        got,
                        Err(StateError::UnknownLot(UnknownLot(UNKNOWN_LOT.into())))
                    );
                }
            }
            Op::Advance(by) => {
                self.clock.advance(by);
                self.model.now += by;
                self.model.wall += by;
            }
            Op::GetLots => self.check_lots()?,
            Op::GetAvailability { lot } => {
                let got = self.state.free(self.lot_name(lot));
                if known(lot) {
                    prop_assert_eq!(got, Ok(self.model.snapshot(lot).5));
                } else {
                    prop_assert_eq!(got, Err(UnknownLot(UNKNOWN_LOT.into())));
                }
            }
            Op::Purge => {
                let got = self.state.purge_expired();
                let expected: usize = (0..self.model.lots.len())
                    .map(|index| self.model.touch(index, |_, _| ()).1)
                    .sum();
                prop_assert_eq!(got, expected);
            }
        }
        Ok(())
    }

    /// `getLots` against the model, and the invariants every snapshot must satisfy.
    fn check_lots(&mut self) -> Result<(), TestCaseError> {
        let got = self.state.lots();
        let expected: Vec<LotSnapshot> = (0..self.model.lots.len())
            .map(|index| {
                let (id, capacity, occupied, counted, reserved, free) = self.model.snapshot(index);
                LotSnapshot {
                    id: LotId::new(id).unwrap(),
                    capacity,
                    occupied,
                    counted,
                    reserved,
                    booked: 0,
                    free,
                    // The model's own statement of the rule: full at 0, almost full at or
                    // below the default threshold of a tenth of the capacity.
                    status: match free {
                        0 => Availability::Full,
                        free if free <= capacity / 10 => Availability::AlmostFull,
                        _ => Availability::Open,
                    },
                }
            })
            .collect();
        // A reservation is granted only while occupied + live reservations < capacity, so right
        // after a grant the lot holds at most its capacity. Checked on the state's own counts,
        // independently of the model's rule.
        if let Some(index) = self.granted_in.take() {
            let lot = &got[index];
            prop_assert!(
                lot.occupied + lot.reserved <= lot.capacity,
                "granted past capacity: {:?}",
                lot
            );
        }
        for lot in &got {
            prop_assert!(lot.occupied <= lot.capacity, "{:?}", lot);
            prop_assert!(lot.reserved <= lot.capacity, "{:?}", lot);
            prop_assert!(lot.free <= lot.capacity, "{:?}", lot);
            prop_assert_eq!(
                lot.free,
                lot.capacity.saturating_sub(lot.occupied + lot.reserved),
                "{:?}",
                lot
            );
        }
        prop_assert_eq!(got, expected);
        Ok(())
    }

    /// Checks that change nothing: what listeners heard, and what `next_expiry` reports.
    fn check_quietly(&self) -> Result<(), TestCaseError> {
        let heard = self.heard.lock().unwrap().clone();
        prop_assert_eq!(&heard, &self.model.events);
        // A change is only published when the count really moved.
        let mut last: BTreeMap<&str, u32> = self
            .model
            .lots
            .iter()
            .map(|lot| (lot.id, lot.capacity))
            .collect();
        for (lot, free, _) in &heard {
            let previous = last.insert(lot.as_str(), *free);
            prop_assert_ne!(previous, Some(*free), "a repeated free count for {}", lot);
        }
        // `next_expiry` may be early (a cancelled reservation's expiry, or one that passed
        // while nobody looked at its lot) but never invented, and never later than the first
        // reservation that still counts.
        let next = self.state.next_expiry();
        if let Some(next) = next {
            prop_assert!(
                self.model.is_pending_expiry(next),
                "next_expiry {:?} is no pending reservation's expiry",
                next
            );
        }
        if let Some(next_live) = self.model.next_live_expiry() {
            prop_assert!(next.is_some_and(|next| next <= next_live), "{:?}", next);
        }
        Ok(())
    }
}

// Proptest's default of 256 cases per property is sized for CI; `PROPTEST_CASES` sets another
// number for longer runs.
proptest! {
    #[test]
    fn state_agrees_with_the_model((capacities, ops, read_after_each) in case()) {
        let mut harness = Harness::new(&capacities);
        for op in &ops {
            harness.apply(op)?;
            harness.check_quietly()?;
            if read_after_each {
                // Reads publish what expired, so the model reads too; cases without this
                // keep purges inside reserve, cancel and sensor updates reachable.
                harness.check_lots()?;
                for index in 0..capacities.len() {
                    harness.apply(&Op::GetAvailability { lot: index })?;
                }
                harness.check_quietly()?;
            }
        }
        harness.check_lots()?;
        harness.check_quietly()?;
    }
}
