//! Model-based test of bookings (as `model.rs` is for reservations): random sequences of
//! book, cancel, check-in, gate and sensor operations and clock moves run against a
//! `ParkingState` on a [`ManualClock`] and against a deliberately naive model written here
//! (a list of bookings, every rule checked by counting). After every step:
//!
//! - **no instant is ever overbooked**: from what the state itself lists, the active bookings
//!   covering any instant never exceed `bookable`, and no two active bookings of one spot
//!   overlap;
//! - the state and the model agree on every outcome (booked or the error), on every booking's
//!   status, and on the lot's free and booked counts.
//!
//! Times are small (windows of up to two minutes within five) so that the windows collide
//! often and every due time (start, no-show, end, overstay, forgetting) is crossed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::sample::Index;
use state::{
    Booking, BookingError, BookingRequest, BookingRules, BookingStatus, Clock, CountChange, LotId,
    LotSpec, LotTerms, ManualClock, ParkingState, Passage, Plate, SpotId, SpotSpec, Window,
};

const MAX_LENGTH: u64 = 120;
const HORIZON: u64 = 300;
const EARLY: u64 = 10;
const GRACE: u64 = 20;
const RETENTION: u64 = 50;
const SLACK: u64 = state::START_SLACK_SECS;
const PLATES: [&str; 4] = ["P1", "P2", "P3", "P4"];
const SPOTS: [&str; 2] = ["S1", "S2"];

fn rules() -> BookingRules {
    BookingRules {
        max_length: Duration::from_secs(MAX_LENGTH),
        horizon: Duration::from_secs(HORIZON),
        early_checkin: Duration::from_secs(EARLY),
        checkin_grace: Duration::from_secs(GRACE),
        retention: Duration::from_secs(RETENTION),
        // Above anything a run reaches: the model forgets by time only.
        max_finished: u32::MAX,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Book {
        plate: usize,
        spot: Option<usize>,
        /// From now; below zero is in the past.
        start: i64,
        length: u64,
    },
    Cancel(Index),
    CheckIn(Index),
    Gate {
        plate: usize,
        passage: Passage,
    },
    Sensor(u32),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let book = (
        0..PLATES.len(),
        proptest::option::weighted(0.4, 0..SPOTS.len()),
        -(SLACK as i64) - 5..(HORIZON as i64) + 5,
        0..MAX_LENGTH + 5,
    )
        .prop_map(|(plate, spot, start, length)| Op::Book {
            plate,
            spot,
            start,
            length,
        });
    let passage = prop_oneof![Just(Passage::Enter), Just(Passage::Exit)];
    prop_oneof![
        8 => book,
        2 => any::<Index>().prop_map(Op::Cancel),
        2 => any::<Index>().prop_map(Op::CheckIn),
        3 => (0..PLATES.len(), passage).prop_map(|(plate, passage)| Op::Gate { plate, passage }),
        1 => (0u32..6).prop_map(Op::Sensor),
        4 => prop_oneof![0u64..30, 0u64..200].prop_map(Op::Advance),
    ]
}

/// A booking, the obvious way.
#[derive(Debug, Clone)]
struct ModelBooking {
    seq: u64,
    plate: usize,
    spot: Option<usize>,
    window: Window,
    status: BookingStatus,
    inside: bool,
    overstay: bool,
    forgotten: bool,
}

impl ModelBooking {
    fn active(&self) -> bool {
        !self.forgotten
            && matches!(
                self.status,
                BookingStatus::Confirmed | BookingStatus::CheckedIn
            )
    }

    fn no_show_at(&self) -> u64 {
        (self.window.start + GRACE).min(self.window.end)
    }

    fn holding(&self, now: u64) -> bool {
        !self.forgotten
            && self.status == BookingStatus::Confirmed
            && self.window.start <= now
            && now < self.no_show_at()
    }

    /// What time has made of it by `now`.
    fn settle(&mut self, now: u64) {
        if self.forgotten {
            return;
        }
        if self.status == BookingStatus::Confirmed && now >= self.no_show_at() {
            self.status = BookingStatus::NoShow;
        }
        if self.status == BookingStatus::CheckedIn && now >= self.window.end {
            self.status = BookingStatus::Completed;
        }
        if self.inside && now >= self.window.end + GRACE {
            self.overstay = true;
        }
        if !self.active() && now >= self.window.end + RETENTION {
            self.forgotten = true;
        }
    }
}

struct Model {
    capacity: u32,
    bookable: u32,
    now: u64,
    counted: i64,
    bookings: Vec<ModelBooking>,
    next_seq: u64,
}

impl Model {
    fn settle(&mut self) {
        let now = self.now;
        for booking in &mut self.bookings {
            booking.settle(now);
        }
    }

    fn holding(&self) -> u32 {
        self.bookings.iter().filter(|b| b.holding(self.now)).count() as u32
    }

    fn free(&self) -> u32 {
        let occupied = self.counted.clamp(0, i64::from(self.capacity)) as u32;
        self.capacity.saturating_sub(occupied + self.holding())
    }

    /// Active bookings covering instant `at`.
    fn covering(&self, at: u64) -> u32 {
        self.bookings
            .iter()
            .filter(|b| b.active() && b.window.contains(at))
            .count() as u32
    }

    /// Whether the book should succeed, and if not, which error (by name).
    fn book(
        &mut self,
        plate: usize,
        spot: Option<usize>,
        window: Window,
    ) -> Result<u64, &'static str> {
        let now = self.now;
        if window.end <= window.start
            || window.start + SLACK < now
            || window.end - window.start > MAX_LENGTH
            || window.start > now + HORIZON
        {
            return Err("BadWindow");
        }
        if let Some(spot) = spot
            && self
                .bookings
                .iter()
                .any(|b| b.active() && b.spot == Some(spot) && b.window.overlaps(&window))
        {
            return Err("SpotTaken");
        }
        // The count only changes at a start: the window's own, or one inside it.
        let peak = std::iter::once(window.start)
            .chain(
                self.bookings
                    .iter()
                    .map(|b| b.window.start)
                    .filter(|s| window.contains(*s)),
            )
            .map(|at| self.covering(at))
            .max()
            .unwrap_or(0);
        if peak >= self.bookable {
            return Err("Full");
        }
        if window.contains(now) && self.free() == 0 {
            return Err("NoSpaceNow");
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bookings.push(ModelBooking {
            seq,
            plate,
            spot,
            window,
            status: BookingStatus::Confirmed,
            inside: false,
            overstay: false,
            forgotten: false,
        });
        Ok(seq)
    }

    fn gate(&mut self, plate: usize, passage: Passage) -> Option<u64> {
        let now = self.now;
        self.counted += match passage {
            Passage::Enter => 1,
            Passage::Exit => -1,
        };
        let candidate = self
            .bookings
            .iter_mut()
            .filter(|b| !b.forgotten && b.plate == plate)
            .filter(|b| match passage {
                Passage::Enter => {
                    b.status == BookingStatus::Confirmed
                        && b.window.start.saturating_sub(EARLY) <= now
                }
                Passage::Exit => b.inside,
            })
            .min_by_key(|b| (b.window.start, b.seq))?;
        match passage {
            Passage::Enter => {
                candidate.status = BookingStatus::CheckedIn;
                candidate.inside = true;
            }
            Passage::Exit => {
                candidate.inside = false;
                if candidate.status == BookingStatus::CheckedIn {
                    candidate.status = BookingStatus::Completed;
                }
            }
        }
        Some(candidate.seq)
    }
}

fn error_name(err: &BookingError) -> &'static str {
    match err {
        BookingError::BadWindow(_) => "BadWindow",
        BookingError::SpotTaken => "SpotTaken",
        BookingError::Full { .. } => "Full",
        BookingError::NoSpaceNow => "NoSpaceNow",
        BookingError::NotDue { .. } => "NotDue",
        BookingError::BadState(_) => "BadState",
        BookingError::UnknownBooking(_) => "UnknownBooking",
        other => panic!("unexpected {other:?}"),
    }
}

fn booking_id(seq: u64) -> state::BookingId {
    state::BookingId::new(LotId::new("A").unwrap(), seq)
}

struct Harness {
    clock: Arc<ManualClock>,
    state: ParkingState,
    model: Model,
}

impl Harness {
    fn new(capacity: u32, bookable: u32) -> Self {
        let clock = Arc::new(ManualClock::new());
        let id = LotId::new("A").unwrap();
        let state = ParkingState::new(
            [LotSpec::new(id.clone(), capacity)],
            Duration::from_secs(300),
            clock.clone(),
        )
        .unwrap()
        .with_bookings(
            rules(),
            [LotTerms {
                id,
                zone: None,
                features: Vec::new(),
                bookable,
                spots: SPOTS
                    .iter()
                    .take(capacity as usize)
                    .map(|spot| SpotSpec {
                        id: SpotId::new(spot).unwrap(),
                        features: Vec::new(),
                    })
                    .collect(),
            }],
        )
        .unwrap();
        let now = clock.wall().duration_since(UNIX_EPOCH).unwrap().as_secs();
        Harness {
            clock,
            state,
            model: Model {
                capacity,
                bookable,
                now,
                counted: 0,
                bookings: Vec::new(),
                next_seq: 1,
            },
        }
    }

    fn spots(&self) -> usize {
        SPOTS.len().min(self.model.capacity as usize)
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.model.now;
        match *op {
            Op::Book {
                plate,
                spot,
                start,
                length,
            } => {
                let spot = spot.filter(|&spot| spot < self.spots());
                let start = now.saturating_add_signed(start);
                let window = Window {
                    start,
                    end: start + length,
                };
                let got = self.state.book(BookingRequest {
                    lot: "A",
                    spot: spot.map(|spot| SPOTS[spot]),
                    plate: Plate::parse(PLATES[plate]).unwrap(),
                    window,
                });
                let expected = self.model.book(plate, spot, window);
                prop_assert_eq!(
                    got.as_ref().map(|b| b.id.seq()).map_err(error_name),
                    expected,
                    "book {:?} spot {:?}",
                    window,
                    spot
                );
            }
            Op::Cancel(index) | Op::CheckIn(index) if self.model.bookings.is_empty() => {
                let _ = index;
            }
            Op::Cancel(index) => {
                let at = index.index(self.model.bookings.len());
                let id = booking_id(self.model.bookings[at].seq);
                let booking = &mut self.model.bookings[at];
                let got = self.state.cancel_booking_if(&id, |_| true);
                let cancellable = !booking.forgotten && booking.status == BookingStatus::Confirmed;
                if cancellable {
                    booking.status = BookingStatus::Cancelled;
                }
                prop_assert_eq!(got.unwrap() == state::CancelOutcome::Cancelled, cancellable);
            }
            Op::CheckIn(index) => {
                let at = index.index(self.model.bookings.len());
                let booking = &mut self.model.bookings[at];
                let id = booking_id(booking.seq);
                let got = self.state.check_in_if(&id, |_| true);
                let expected = if booking.forgotten {
                    Err("UnknownBooking")
                } else if booking.status != BookingStatus::Confirmed {
                    Err("BadState")
                } else if now < booking.window.start.saturating_sub(EARLY) {
                    Err("NotDue")
                } else {
                    booking.status = BookingStatus::CheckedIn;
                    booking.inside = true;
                    Ok(booking.seq)
                };
                prop_assert_eq!(
                    got.as_ref().map(|b| b.id.seq()).map_err(error_name),
                    expected
                );
            }
            Op::Gate { plate, passage } => {
                let got = self
                    .state
                    .pass_gate("A", Plate::parse(PLATES[plate]).unwrap(), passage)
                    .unwrap();
                let expected = self.model.gate(plate, passage);
                prop_assert_eq!(got.booking.map(|id| id.seq()), expected);
            }
            Op::Sensor(count) => {
                self.state
                    .update_occupancy("A", CountChange::Set(count))
                    .unwrap();
                self.model.counted = i64::from(count);
            }
            Op::Advance(secs) => {
                self.clock.advance(Duration::from_secs(secs));
                self.model.now += secs;
            }
        }
        self.model.settle();
        Ok(())
    }

    /// The invariants, from what the state lists, and agreement with the model.
    fn check(&self) -> Result<(), TestCaseError> {
        let listed: Vec<Booking> = self
            .state
            .list_bookings(
                "A",
                Window {
                    start: 0,
                    end: u64::MAX,
                },
                0,
                usize::MAX,
            )
            .unwrap();
        let active: Vec<&Booking> = listed.iter().filter(|b| b.status.is_active()).collect();
        // No instant overbooked: the count of a step function peaks at some start.
        for at in active.iter().map(|b| b.window.start) {
            let covering = active.iter().filter(|b| b.window.contains(at)).count() as u32;
            prop_assert!(
                covering <= self.model.bookable,
                "{} active bookings at {} (bookable {}): {:?}",
                covering,
                at,
                self.model.bookable,
                active
            );
        }
        for (i, a) in active.iter().enumerate() {
            for b in &active[i + 1..] {
                prop_assert!(
                    a.spot.is_none() || a.spot != b.spot || !a.window.overlaps(&b.window),
                    "spot booked twice: {:?} {:?}",
                    a,
                    b
                );
            }
        }
        // The same bookings, in the same states.
        let mut expected: Vec<&ModelBooking> = self
            .model
            .bookings
            .iter()
            .filter(|b| !b.forgotten)
            .collect();
        expected.sort_by_key(|b| b.seq);
        prop_assert_eq!(listed.len(), expected.len());
        for (got, want) in listed.iter().zip(expected) {
            prop_assert_eq!(got.id.seq(), want.seq);
            prop_assert_eq!(got.window, want.window);
            prop_assert_eq!(got.status, want.status, "booking {}", want.seq);
            prop_assert_eq!((got.inside, got.overstay), (want.inside, want.overstay));
            prop_assert_eq!(
                got.spot.as_ref().map(SpotId::as_str),
                want.spot.map(|spot| SPOTS[spot])
            );
        }
        let lot = &self.state.lots()[0];
        prop_assert_eq!(lot.booked, self.model.holding());
        prop_assert_eq!(lot.free, self.model.free());
        Ok(())
    }
}

fn case() -> impl Strategy<Value = (u32, u32, Vec<Op>)> {
    (1u32..=4)
        .prop_flat_map(|capacity| (Just(capacity), 0..=capacity))
        .prop_flat_map(|(capacity, bookable)| {
            (
                Just(capacity),
                Just(bookable),
                proptest::collection::vec(op(), 1..60),
            )
        })
}

proptest! {
    #[test]
    fn no_instant_is_ever_overbooked_and_the_state_agrees_with_the_model(
        (capacity, bookable, ops) in case()
    ) {
        let mut harness = Harness::new(capacity, bookable);
        for op in &ops {
            harness.apply(op)?;
            harness.check()?;
        }
    }
}
