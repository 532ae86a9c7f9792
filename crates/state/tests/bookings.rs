//! Bookings made durable: every change goes through the `Recorder` with its old value, a
//! refused one is undone whole, and an image or a journal replayed into a new state gives the
//! same bookings, limits and held spaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;
use state::{
    Booking, BookingError, BookingId, BookingRequest, BookingRules, BookingStatus, CancelOutcome,
    Change, Clock, Commit, LotId, LotSpec, LotTerms, ManualClock, ParkingState, Passage, Plate,
    Recorder, SpotId, SpotSpec, StateError, Unavailable, Window,
};

/// Records every change; refuses them all while `refuse` is set.
#[derive(Default)]
struct Journal {
    changes: Mutex<Vec<(Change, Change)>>,
    refuse: AtomicBool,
}

impl Recorder for Journal {
    fn record(&self, undo: &Change, redo: &Change) -> Result<Commit, Unavailable> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(Unavailable("disk full".into()));
        }
        let mut changes = self.changes.lock();
        changes.push((undo.clone(), redo.clone()));
        Ok(Commit(changes.len() as u64))
    }

    fn wait(&self, _commit: Commit) -> Result<(), Unavailable> {
        Ok(())
    }
}

fn state(clock: Arc<ManualClock>) -> ParkingState {
    let lot = LotSpec::new(LotId::new("A").unwrap(), 5);
    let terms = LotTerms {
        id: LotId::new("A").unwrap(),
        zone: None,
        features: Vec::new(),
        bookable: 2,
        spots: vec![SpotSpec {
            id: SpotId::new("S1").unwrap(),
            features: Vec::new(),
        }],
    };
    ParkingState::new([lot], Duration::from_secs(300), clock)
        .unwrap()
        .with_bookings(BookingRules::default(), [terms])
        .unwrap()
}

fn now(clock: &ManualClock) -> u64 {
    clock.wall().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn plate(text: &str) -> Plate {
    Plate::parse(text).unwrap()
}

fn book(
    state: &ParkingState,
    plate_text: &str,
    start: u64,
    end: u64,
    spot: Option<&str>,
) -> Result<Booking, BookingError> {
    state.book(BookingRequest {
        lot: "A",
        spot,
        plate: plate(plate_text),
        window: Window { start, end },
    })
}

fn all_bookings(state: &ParkingState) -> Vec<Booking> {
    state
        .list_bookings(
            "A",
            Window {
                start: 0,
                end: u64::MAX,
            },
            0,
            usize::MAX,
        )
        .unwrap()
}

#[test]
fn every_booking_change_is_recorded_with_its_old_value() {
    let clock = Arc::new(ManualClock::new());
    let state = state(clock.clone());
    let journal = Arc::new(Journal::default());
    assert!(state.set_recorder(journal.clone()).is_ok());
    let t = now(&clock);
    let made = book(&state, "P1", t + 100, t + 200, None).unwrap();
    // Refusals record nothing.
    book(&state, "P2", t + 100, t + 200, Some("S9")).unwrap_err();
    let id = made.id.clone();
    assert_eq!(
        journal.changes.lock()[0],
        (
            Change::Booking {
                id: id.clone(),
                booking: None
            },
            Change::Booking {
                id: id.clone(),
                booking: Some(made.clone())
            },
        )
    );
    assert_eq!(
        state.cancel_booking_if(&id, |_| true).unwrap(),
        CancelOutcome::Cancelled
    );
    let (undo, redo) = journal.changes.lock()[1].clone();
    assert_eq!(
        undo,
        Change::Booking {
            id: id.clone(),
            booking: Some(made)
        }
    );
    let Change::Booking {
        booking: Some(cancelled),
        ..
    } = redo
    else {
        panic!("{redo:?}");
    };
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    assert_eq!(journal.changes.lock().len(), 2);

    // A car at the gate is one change of several keys: its count, its reservation, its booking.
    let gated = book(&state, "P3", t + 10, t + 200, None).unwrap();
    state.reserve("A", plate("P3")).unwrap();
    let outcome = state.pass_gate("A", plate("P3"), Passage::Enter).unwrap();
    assert_eq!(outcome.booking, Some(gated.id.clone()));
    assert!(outcome.consumed_reservation);
    let changes = journal.changes.lock();
    let (undo, redo) = changes.last().unwrap();
    let Change::Batch { changes: redos, .. } = redo else {
        panic!("{redo:?}");
    };
    assert!(matches!(redos[0], Change::Count { counted: 1, .. }));
    assert!(matches!(
        redos[1],
        Change::Reservation {
            expires_at_ms: None,
            ..
        }
    ));
    assert!(
        matches!(&redos[2], Change::Booking { booking: Some(b), .. } if b.status == BookingStatus::CheckedIn)
    );
    let Change::Batch { changes: undos, .. } = undo else {
        panic!("{undo:?}");
    };
    assert!(matches!(undos[0], Change::Booking { .. }));
    assert!(matches!(undos[2], Change::Count { counted: 0, .. }));
}

#[test]
fn a_refused_change_is_undone_whole() {
    let clock = Arc::new(ManualClock::new());
    let state = state(clock.clone());
    let journal = Arc::new(Journal::default());
    let _ = state.set_recorder(journal.clone());
    let t = now(&clock);
    let made = book(&state, "P1", t, t + 600, None).unwrap();
    state.reserve("A", plate("P2")).unwrap();
    journal.refuse.store(true, Ordering::SeqCst);
    assert!(matches!(
        book(&state, "P3", t + 100, t + 200, None),
        Err(BookingError::Unavailable(_))
    ));
    assert!(matches!(
        state.cancel_booking_if(&made.id, |_| true),
        Err(StateError::Unavailable(_))
    ));
    assert!(matches!(
        state.check_in_if(&made.id, |_| true),
        Err(BookingError::Unavailable(_))
    ));
    assert!(matches!(
        state.pass_gate("A", plate("P1"), Passage::Enter),
        Err(StateError::Unavailable(_))
    ));
    assert!(matches!(
        state.pass_gate("A", plate("P2"), Passage::Enter),
        Err(StateError::Unavailable(_))
    ));
    // Nothing moved: the count, the reservation, the booking and what it holds.
    let lot = &state.lots()[0];
    assert_eq!(
        (lot.counted, lot.reserved, lot.booked, lot.free),
        (0, 1, 1, 3)
    );
    assert_eq!(all_bookings(&state), vec![made.clone()]);
    journal.refuse.store(false, Ordering::SeqCst);
    // The refused booking left no trace in the limits: the lot still takes one more.
    book(&state, "P3", t + 100, t + 200, None).unwrap();
    assert!(matches!(
        book(&state, "P4", t + 100, t + 200, None),
        Err(BookingError::Full { .. })
    ));
}

/// A few bookings in every status.
fn busy_state(clock: &Arc<ManualClock>) -> ParkingState {
    let state = state(clock.clone());
    let t = now(clock);
    book(&state, "CONF", t + 1000, t + 2000, Some("S1")).unwrap();
    let cancelled = book(&state, "CANC", t + 1000, t + 2000, None).unwrap();
    state.cancel_booking_if(&cancelled.id, |_| true).unwrap();
    let held = book(&state, "HOLD", t, t + 5000, None).unwrap();
    let entered = book(&state, "GATE", t + 100, t + 900, None).unwrap();
    state.pass_gate("A", plate("GATE"), Passage::Enter).unwrap();
    let short = book(&state, "GONE", t, t + 10, Some("S1")).unwrap();
    clock.advance(Duration::from_secs(20));
    assert_eq!(
        state.booking(&short.id).unwrap().status,
        BookingStatus::NoShow
    );
    assert_eq!(
        state.booking(&held.id).unwrap().status,
        BookingStatus::Confirmed
    );
    assert_eq!(
        state.booking(&entered.id).unwrap().status,
        BookingStatus::CheckedIn
    );
    state
}

#[test]
fn an_image_replayed_into_a_new_state_is_the_same_state() {
    let clock = Arc::new(ManualClock::new());
    let state = busy_state(&clock);
    let image = state.image();
    let restored = self::state(clock.clone());
    for change in &image {
        restored.apply(change).unwrap();
    }
    assert_eq!(all_bookings(&restored), all_bookings(&state));
    assert_eq!(restored.lots(), state.lots());
    assert_eq!(restored.lots()[0].booked, 1);
    // The limits come back too: [t+1000, t+2000) has HOLD and CONF (bookable 2), S1 is free
    // after CONF.
    let t = now(&clock) - 20;
    for state in [&state, &restored] {
        assert!(matches!(
            book(state, "MORE", t + 1500, t + 1600, None),
            Err(BookingError::Full { .. })
        ));
        assert!(book(state, "MORE", t + 3500, t + 3600, Some("S1")).is_ok());
    }
}

#[test]
fn a_journal_replayed_in_order_gives_the_same_bookings() {
    let clock = Arc::new(ManualClock::new());
    let state = state(clock.clone());
    let journal = Arc::new(Journal::default());
    let _ = state.set_recorder(journal.clone());
    let t = now(&clock);
    book(&state, "P1", t + 5, t + 100, None).unwrap();
    let second = book(&state, "P2", t + 50, t + 150, Some("S1")).unwrap();
    state.check_in_if(&second.id, |_| true).unwrap();
    state.pass_gate("A", plate("P1"), Passage::Enter).unwrap();
    state.pass_gate("A", plate("P2"), Passage::Exit).unwrap();
    let replayed = self::state(clock.clone());
    for (_, redo) in journal.changes.lock().iter() {
        replayed.apply(redo).unwrap();
    }
    assert_eq!(all_bookings(&replayed), all_bookings(&state));
    assert_eq!(replayed.lots(), state.lots());
}

#[test]
fn a_forgotten_bookings_number_is_not_handed_out_again_after_a_restart() {
    let clock = Arc::new(ManualClock::new());
    let state = state(clock.clone());
    let t = now(&clock);
    let first = book(&state, "P1", t + 10, t + 20, None).unwrap();
    // Past its retention (7 days by default) it is forgotten.
    clock.advance(Duration::from_secs(20 + 7 * 86_400));
    assert!(matches!(
        state.booking(&first.id),
        Err(BookingError::UnknownBooking(_))
    ));
    let image = state.image();
    assert!(
        image
            .iter()
            .all(|change| !matches!(change, Change::Booking { .. }))
    );
    let restored = self::state(clock.clone());
    for change in &image {
        restored.apply(change).unwrap();
    }
    let t = now(&clock);
    let next = book(&restored, "P2", t + 10, t + 20, None).unwrap();
    assert_eq!(next.id, BookingId::new(LotId::new("A").unwrap(), 2));
}

#[test]
fn replays_bring_bookings_up_to_date_with_the_clock() {
    let clock = Arc::new(ManualClock::new());
    let state = state(clock.clone());
    let t = now(&clock);
    let made = book(&state, "P1", t + 10, t + 4000, None).unwrap();
    let image = state.image();
    // The server was down past the booking's check-in grace.
    clock.advance(Duration::from_secs(10 + 900));
    let restored = self::state(clock.clone());
    for change in &image {
        restored.apply(change).unwrap();
    }
    assert_eq!(
        restored.booking(&made.id).unwrap().status,
        BookingStatus::NoShow
    );
    assert_eq!(restored.lots()[0].booked, 0);
}
