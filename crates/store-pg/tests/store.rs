//! The PostgreSQL store against a throwaway cluster: writes decided by the database, every
//! node's copy following it in order, expiry run by several nodes at once, migrations on
//! nodes starting together, a lost announcement, an outage, bookings, gate lines and
//! waitlists raced from two nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use state::{
    Account, AccountError, Booking, BookingError, BookingRequest, BookingRules, BookingStatus,
    CancelOutcome, CountChange, GateOutcome, LotChange, LotId, LotSpec, LotTerms, Passage, Plate,
    ReserveOutcome, SpotId, SpotSpec, StateError, SystemClock, Username, WaitId, WaitlistError,
    Window,
};
use store::{Feature, Health, Store};
use store_pg::{PgOptions, PgStore};
use testkit::eventually;
use testkit::pg::TempPostgres;

const TTL: Duration = Duration::from_secs(300);

fn lots(capacity: u32) -> Vec<LotSpec> {
    vec![
        LotSpec::new(LotId::new("A").unwrap(), capacity),
        LotSpec::new(LotId::new("B").unwrap(), 5),
    ]
}

fn options(pg: &TempPostgres) -> PgOptions {
    PgOptions {
        url: pg.url(),
        pool_size: 4,
        timeout: Duration::from_secs(1),
    }
}

fn node(pg: &TempPostgres, capacity: u32) -> PgStore {
    let _ = env_logger::builder().is_test(true).try_init();
    PgStore::open(&options(pg), lots(capacity), TTL, Arc::new(SystemClock), Ok).expect("opens")
}

/// A node whose lot A (capacity 10) may have `bookable` spaces booked at once and has
/// the named spots S1 and S2.
fn booking_node(pg: &TempPostgres, bookable: u32) -> PgStore {
    let _ = env_logger::builder().is_test(true).try_init();
    let terms = LotTerms {
        id: LotId::new("A").unwrap(),
        zone: None,
        features: Vec::new(),
        bookable,
        spots: ["S1", "S2"]
            .into_iter()
            .map(|id| SpotSpec {
                id: SpotId::new(id).unwrap(),
                features: Vec::new(),
            })
            .collect(),
    };
    PgStore::open(
        &options(pg),
        lots(10),
        TTL,
        Arc::new(SystemClock),
        |state| state.with_bookings(BookingRules::default(), [terms]),
    )
    .expect("opens")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn request<'a>(
    plate_text: &str,
    spot: Option<&'a str>,
    start: u64,
    end: u64,
) -> BookingRequest<'a> {
    BookingRequest {
        lot: "A",
        spot,
        plate: plate(plate_text),
        window: Window { start, end },
    }
}

/// The active bookings of lot A as the database holds them: (start, end, spot).
fn active_rows(pg: &TempPostgres) -> Vec<(i64, i64, Option<String>)> {
    pg.client()
        .query(
            "SELECT lower(during), upper(during), spot FROM parking_bookings \
             WHERE lot = 'A' AND status IN ('CONFIRMED', 'CHECKED_IN')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

fn plate(text: &str) -> Plate {
    Plate::parse(text).unwrap()
}

/// Every free count `store`'s subscribers would hear for lot A.
fn heard(store: &PgStore) -> Arc<Mutex<Vec<u32>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    store
        .state()
        .add_listener(Arc::new(move |change: &LotChange| {
            if change.lot.as_str() == "A" {
                sink.lock().push(change.free);
            }
        }));
    seen
}

fn free(store: &PgStore) -> u32 {
    store.state().free("A").unwrap()
}

#[test]
fn the_database_decides_and_every_node_hears_each_change_once_in_order() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 3), node(&pg, 3));
    let (heard_one, heard_two) = (heard(&one), heard(&two));
    let anyone = |_: Option<&str>| true;

    assert_eq!(
        one.reserve("A", plate("P1"), None),
        Ok(ReserveOutcome::Reserved)
    );
    // The other node's lock is not what refuses it: the database is.
    assert_eq!(
        two.reserve("A", plate("p1"), None),
        Ok(ReserveOutcome::Exists)
    );
    assert_eq!(
        two.reserve("A", plate("P2"), Some("kiosk")),
        Ok(ReserveOutcome::Reserved)
    );
    // Only the owner cancels, asked of the database even before the copy has heard.
    assert_eq!(
        one.cancel("A", plate("P2"), &|owner| owner == Some("other")),
        Ok(CancelOutcome::NotFound)
    );
    assert_eq!(
        one.cancel("A", plate("P2"), &|owner| owner == Some("kiosk")),
        Ok(CancelOutcome::Cancelled)
    );
    assert_eq!(
        one.cancel("A", plate("P2"), &anyone),
        Ok(CancelOutcome::NotFound)
    );
    let update = two.update_occupancy("A", CountChange::Add(5)).unwrap();
    assert_eq!(
        (update.occupied, update.counted, update.free, update.clamped),
        (3, 5, 0, true)
    );
    assert_eq!(
        one.reserve("A", plate("P3"), None),
        Ok(ReserveOutcome::Full)
    );
    two.update_occupancy("A", CountChange::Remove(4)).unwrap();
    // A report that changes nothing is no change.
    two.update_occupancy("A", CountChange::Set(1)).unwrap();
    assert!(matches!(
        one.reserve("Z", plate("P1"), None),
        Err(StateError::UnknownLot(_))
    ));

    // Capacity 3: P1 (2), P2 (1), P2 gone (2), five counted (0), one left (1).
    let expected = vec![2, 1, 2, 0, 1];
    eventually("both nodes hear every change", || {
        *heard_one.lock() == expected && *heard_two.lock() == expected
    });
    for store in [&one, &two] {
        let a = &store.state().lots()[0];
        assert_eq!((a.counted, a.occupied, a.reserved, a.free), (1, 1, 1, 1));
        assert_eq!(store.health(), Health::Ok);
    }
}

#[test]
fn expiry_run_by_two_nodes_at_once_removes_each_reservation_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 100), node(&pg, 100));
    let heard_two = heard(&two);
    for n in 0..60 {
        let store = if n % 2 == 0 { &one } else { &two };
        assert_eq!(
            store.reserve("A", plate(&format!("P{n}")), None),
            Ok(ReserveOutcome::Reserved)
        );
    }
    eventually("both copies hold 60", || {
        free(&one) == 40 && free(&two) == 40
    });
    // Time passes in the database, where expiry is decided: every reservation is due.
    pg.client()
        .execute(
            "UPDATE parking_reservations SET expires_at = now() - interval '1 second'",
            &[],
        )
        .unwrap();
    let (one, two) = (Arc::new(one), Arc::new(two));
    let sweepers: Vec<_> = (0..4)
        .map(|n| {
            let store = Arc::clone(if n % 2 == 0 { &one } else { &two });
            thread::spawn(move || {
                let mut removed = 0;
                for _ in 0..5 {
                    removed += store.expire_due().unwrap();
                }
                removed
            })
        })
        .collect();
    let removed: usize = sweepers.into_iter().map(|s| s.join().unwrap()).sum();
    assert_eq!(removed, 60);
    let row = pg
        .client()
        .query_one(
            "SELECT reserved, (SELECT count(*) FROM parking_reservations) FROM parking_lots \
             WHERE id = 'A'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (0, 0));
    eventually("both copies are empty again", || {
        free(&one) == 100 && free(&two) == 100
    });
    // Node two heard 60 reserves one by one, then the expiries in batches, never past 100.
    let heard = heard_two.lock().clone();
    assert_eq!(heard[..60], (40..100).rev().collect::<Vec<u32>>()[..]);
    assert!(heard[60..].windows(2).all(|w| w[0] < w[1]), "{heard:?}");
    assert_eq!(heard.last(), Some(&100));
}

#[test]
fn nodes_starting_together_apply_each_migration_once_and_agree_on_capacity() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.url();
    let starters: Vec<_> = (0..3)
        .map(|n| {
            let options = PgOptions {
                url: url.clone(),
                pool_size: 2,
                timeout: Duration::from_secs(5),
            };
            thread::spawn(move || {
                // Each node brings a different capacity for A; one of them wins for all.
                PgStore::open(&options, lots(10 + n), TTL, Arc::new(SystemClock), Ok).unwrap()
            })
        })
        .collect();
    let stores: Vec<PgStore> = starters.into_iter().map(|s| s.join().unwrap()).collect();
    let capacities: Vec<u32> = stores
        .iter()
        .map(|s| s.state().lots()[0].capacity)
        .collect();
    assert!(
        capacities.iter().all(|&c| c == capacities[0]),
        "{capacities:?}"
    );
    let applied: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM parking_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, store_pg::MIGRATIONS.len() as i64);
}

#[test]
fn a_change_too_large_to_announce_is_read_afresh_by_the_other_nodes() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 3), node(&pg, 3));
    let owner = "k".repeat(9000);
    assert_eq!(
        one.reserve("A", plate("BIG"), Some(&owner)),
        Ok(ReserveOutcome::Reserved)
    );
    eventually("the other node reads the lot afresh", || free(&two) == 2);
    assert_eq!(
        two.cancel("A", plate("BIG"), &|held| held == Some(owner.as_str())),
        Ok(CancelOutcome::Cancelled)
    );
    eventually("and hears the cancel", || free(&one) == 3);
}

#[test]
fn a_change_whose_announcement_was_lost_still_reaches_every_node_in_order() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 10), node(&pg, 10));
    let heard_two = heard(&two);
    // A node that dies between its commits and their announcements: the write functions
    // run in a session that leaves announcing to its node, which never announces.
    let mut dead = pg.client();
    dead.batch_execute("SET parking.announce = 'after_commit'")
        .unwrap();
    let reserve = "SELECT outcome FROM parking_reserve('A', $1, 300000, NULL)";

    // A lot that goes quiet after it: only the comparison of versions finds it.
    let lost = Instant::now();
    let outcome: String = dead.query_one(reserve, &[&"LOST1"]).unwrap().get(0);
    assert_eq!(outcome, "reserved");
    eventually("both nodes read the quiet lot afresh", || {
        free(&one) == 9 && free(&two) == 9
    });
    eprintln!(
        "lost announcement, quiet lot: on both nodes after {} ms",
        lost.elapsed().as_millis()
    );

    // A busy lot: the next change, announced, shows the gap before it.
    let lost = Instant::now();
    dead.query_one(reserve, &[&"LOST2"]).unwrap();
    assert_eq!(
        one.reserve("A", plate("AFTER"), None),
        Ok(ReserveOutcome::Reserved)
    );
    eventually("both nodes read the busy lot afresh", || {
        free(&one) == 7 && free(&two) == 7
    });
    eprintln!(
        "lost announcement, then another change: on both nodes after {} ms",
        lost.elapsed().as_millis()
    );
    // Node two's subscribers heard every step once, in order (the re-read may join the
    // lost change and the one after it into one event).
    let heard = heard_two.lock().clone();
    assert_eq!(
        (heard.first(), heard.last()),
        (Some(&9), Some(&7)),
        "{heard:?}"
    );
    assert!(heard.windows(2).all(|w| w[0] > w[1]), "{heard:?}");
    for store in [&one, &two] {
        let plates: Vec<String> = store
            .state()
            .image()
            .into_iter()
            .filter_map(|change| match change {
                state::Change::Reservation { plate, .. } => Some(plate.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(plates.len(), 3, "{plates:?}");
    }
}

#[test]
fn the_store_keeps_every_feature() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let node = node(&pg, 3);
    for feature in [
        Feature::Bookings,
        Feature::Accounts,
        Feature::Gates,
        Feature::Waitlists,
    ] {
        assert!(node.supports(feature), "{feature}");
        assert_eq!(node.require(feature), Ok(()), "{feature}");
    }
}

/// The offer a waitlist entry holds in the database (its booking's number), if any.
fn offer_in_db(pg: &TempPostgres, id: &WaitId) -> Option<i64> {
    pg.client()
        .query_opt(
            "SELECT offer_booking FROM parking_waitlist WHERE lot = 'A' AND seq = $1",
            &[&(id.seq() as i64)],
        )
        .unwrap()
        .and_then(|row| row.get(0))
}

/// How many OFFERED bookings lot A has in the database.
fn offers_in_db(pg: &TempPostgres) -> i64 {
    pg.client()
        .query_one(
            "SELECT count(*) FROM parking_bookings WHERE lot = 'A' AND status = 'OFFERED'",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_waitlist_kept_by_the_database_offers_once_and_one_accept_of_many_wins() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    // One bookable space: a booking fills every window overlapping it.
    let (one, two) = (
        Arc::new(booking_node(&pg, 1)),
        Arc::new(booking_node(&pg, 1)),
    );
    let anyone = |_: Option<&str>| true;
    // What node two would send its drivers' event streams.
    let told = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&told);
    two.state()
        .add_notice_listener(Arc::new(move |notice: &state::Notice| {
            sink.lock()
                .push((notice.event(), notice.owner().map(str::to_owned)));
        }));
    let (start, end) = (unix_now() + 3600, unix_now() + 7200);
    let taken = one.book(request("P0", None, start, end), None).unwrap();
    // Joined through either node, in the order the database numbers them.
    let alice = two
        .join_waitlist(request("P1", None, start, end), Some("@alice"))
        .unwrap();
    assert_eq!(alice.offer, None);
    assert!(matches!(
        one.join_waitlist(request("P1", None, start + 60, end), Some("@alice")),
        Err(WaitlistError::AlreadyWaiting(id)) if id == alice.id
    ));
    assert_eq!(
        one.join_waitlist(request("P9", None, end, end + 600), None),
        Err(WaitlistError::NotFull)
    );
    let bob = one
        .join_waitlist(request("P2", None, start, end), Some("@bob"))
        .unwrap();
    assert!(bob.id.seq() > alice.id.seq());
    for node in [&one, &two] {
        eventually("every copy holds both entries", || {
            node.state().waitlist_entry(&alice.id).is_some()
                && node.state().waitlist_entry(&bob.id).is_some()
        });
    }
    assert!(matches!(
        two.accept_offer(&alice.id, &anyone),
        Err(WaitlistError::NoOffer)
    ));

    // The cancel frees the space and offers it to the oldest entry in the same
    // transaction: the offer is there when the cancel answers.
    assert_eq!(
        one.cancel_booking(&taken.id, &anyone),
        Ok(CancelOutcome::Cancelled)
    );
    assert!(offer_in_db(&pg, &alice.id).is_some());
    assert_eq!(offer_in_db(&pg, &bob.id), None);
    assert_eq!(offers_in_db(&pg), 1);
    eventually("node two's copy shows alice's offer", || {
        two.state()
            .waitlist_entry(&alice.id)
            .is_some_and(|entry| entry.offer.is_some())
    });
    // And tells alice, once, though another node made the offer.
    eventually("node two tells alice of her offer", || {
        told.lock()
            .contains(&("waitlist_offer", Some("@alice".to_owned())))
    });
    // Bob's offer does not exist; another driver may not take alice's.
    assert!(matches!(
        two.accept_offer(&bob.id, &anyone),
        Err(WaitlistError::NoOffer)
    ));
    assert!(matches!(
        two.accept_offer(&alice.id, &|owner| owner == Some("@bob")),
        Err(WaitlistError::UnknownEntry(_))
    ));

    // Eight accepts of alice's offer at once through two nodes: exactly one booking.
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let node = Arc::clone(if n % 2 == 0 { &one } else { &two });
            let id = alice.id.clone();
            thread::spawn(move || node.accept_offer(&id, &|owner| owner == Some("@alice")))
        })
        .collect();
    let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let won: Vec<&Booking> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Ok(_) | Err(WaitlistError::UnknownEntry(_) | WaitlistError::NoOffer)
        )),
        "{outcomes:?}"
    );
    let accepted = won[0].clone();
    assert_eq!(accepted.status, BookingStatus::Confirmed);
    assert_eq!(accepted.owner.as_deref(), Some("@alice"));
    let offers_told = told
        .lock()
        .iter()
        .filter(|(event, _)| *event == "waitlist_offer")
        .count();
    assert_eq!(offers_told, 1, "{:?}", told.lock());
    for node in [&one, &two] {
        eventually("every copy has the booking and not the entry", || {
            node.state().booking(&accepted.id) == Ok(accepted.clone())
                && node.state().waitlist_entry(&alice.id).is_none()
        });
    }
    assert_eq!(offers_in_db(&pg), 0);
    assert_eq!(offer_in_db(&pg, &bob.id), None);

    // Leaving lets an offer go to the next in line, in the same transaction.
    assert_eq!(
        two.cancel_booking(&accepted.id, &anyone),
        Ok(CancelOutcome::Cancelled)
    );
    assert!(offer_in_db(&pg, &bob.id).is_some());
    let carol = two
        .join_waitlist(request("P3", None, start, end), Some("@carol"))
        .unwrap();
    assert_eq!(
        one.leave_waitlist(&bob.id, &|owner| owner == Some("@alice")),
        Ok(CancelOutcome::NotFound)
    );
    assert_eq!(
        one.leave_waitlist(&bob.id, &|owner| owner == Some("@bob")),
        Ok(CancelOutcome::Cancelled)
    );
    assert!(offer_in_db(&pg, &carol.id).is_some());
    assert_eq!(offers_in_db(&pg), 1);
    for node in [&one, &two] {
        eventually("every copy shows carol's offer and no bob", || {
            node.state().waitlist_entry(&bob.id).is_none()
                && node
                    .state()
                    .waitlist_entry(&carol.id)
                    .is_some_and(|entry| entry.offer.is_some())
        });
    }
}

#[test]
fn an_offer_run_out_passes_to_the_next_entry_once_whoever_settles() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (
        Arc::new(booking_node(&pg, 1)),
        Arc::new(booking_node(&pg, 1)),
    );
    let anyone = |_: Option<&str>| true;
    let (start, end) = (unix_now() + 3600, unix_now() + 7200);
    let taken = one.book(request("P0", None, start, end), None).unwrap();
    let first = two
        .join_waitlist(request("P1", None, start, end), None)
        .unwrap();
    let second = one
        .join_waitlist(request("P2", None, start, end), None)
        .unwrap();
    assert_eq!(
        two.cancel_booking(&taken.id, &anyone),
        Ok(CancelOutcome::Cancelled)
    );
    let offered = offer_in_db(&pg, &first.id).expect("the first entry is offered the space");
    // Time passes in the database: the offer has run out.
    pg.client()
        .execute(
            "UPDATE parking_bookings SET offered_until = parking_unix_now() - 1, due = 0 \
             WHERE status = 'OFFERED'",
            &[],
        )
        .unwrap();
    let settlers: Vec<_> = [&one, &two, &one, &two]
        .into_iter()
        .map(|node| {
            let node = Arc::clone(node);
            thread::spawn(move || node.settle_due().unwrap())
        })
        .collect();
    let moved: usize = settlers.into_iter().map(|s| s.join().unwrap()).sum();
    // The offer ran out once; its entry left; the space went to the next entry once.
    assert_eq!(moved, 1);
    assert_eq!(offers_in_db(&pg), 1);
    let next = offer_in_db(&pg, &second.id).expect("the second entry is offered the space");
    assert_ne!(next, offered);
    let gone: i64 = pg
        .client()
        .query_one(
            "SELECT count(*) FROM parking_waitlist WHERE lot = 'A' AND seq = $1",
            &[&(first.id.seq() as i64)],
        )
        .unwrap()
        .get(0);
    assert_eq!(gone, 0);
    for node in [&one, &two] {
        eventually("every copy follows: first gone, second offered", || {
            node.state().waitlist_entry(&first.id).is_none()
                && node
                    .state()
                    .waitlist_entry(&second.id)
                    .is_some_and(|entry| entry.offer.is_some())
        });
    }
    assert_eq!(one.settle_due(), Ok(0));
    assert!(matches!(
        one.accept_offer(&first.id, &anyone),
        Err(WaitlistError::UnknownEntry(_))
    ));
    let booking = two.accept_offer(&second.id, &anyone).unwrap();
    assert_eq!(booking.status, BookingStatus::Confirmed);
}

/// `nodes` threads per node, each passing `per_thread` cars through lot A's gate one way;
/// the free counts the replies gave.
fn gate_race(nodes: &[Arc<PgStore>; 2], passage: Passage, per_thread: usize) -> Vec<u32> {
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            thread::spawn(move || {
                (0..per_thread)
                    .map(|k| {
                        let car = plate(&format!("G{n}X{k}"));
                        node.pass_gate("A", car, passage).unwrap().free
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut replies: Vec<u32> = racers.into_iter().flat_map(|r| r.join().unwrap()).collect();
    replies.sort_unstable();
    replies
}

/// What a free count of lot A (capacity 10) is with `counted` cars counted.
fn free_with(counted: i64) -> u32 {
    10 - counted.clamp(0, 10) as u32
}

#[test]
fn gate_lines_from_two_nodes_are_counted_once_each_and_heard_in_order() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let nodes = [Arc::new(node(&pg, 10)), Arc::new(node(&pg, 10))];
    let heard_two = heard(&nodes[1]);
    // 24 cars in through 8 gates on two nodes at once, for 10 spaces: every one counted
    // (none lost to a race), the reported occupancy clamped at the capacity.
    let mut expected: Vec<u32> = (1..=24).map(free_with).collect();
    expected.sort_unstable();
    assert_eq!(gate_race(&nodes, Passage::Enter, 3), expected);
    let counted = |pg: &TempPostgres| -> i64 {
        pg.client()
            .query_one("SELECT counted FROM parking_lots WHERE id = 'A'", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(counted(&pg), 24);
    eventually("both copies count 24, occupied 10", || {
        nodes.iter().all(|node| {
            let a = &node.state().lots()[0];
            (a.counted, a.occupied, a.free) == (24, 10, 0)
        })
    });
    // 32 out: the running count goes below zero, the occupancy never does.
    let mut expected: Vec<u32> = (-8..=23).map(free_with).collect();
    expected.sort_unstable();
    assert_eq!(gate_race(&nodes, Passage::Exit, 4), expected);
    assert_eq!(counted(&pg), -8);
    eventually("both copies count -8, occupied 0", || {
        nodes.iter().all(|node| {
            let a = &node.state().lots()[0];
            (a.counted, a.occupied, a.free) == (-8, 0, 10)
        })
    });
    // Node two heard every free count once, in the order the database decided them,
    // whichever node passed the car.
    let order: Vec<u32> = (0..10).rev().chain(1..=10).collect();
    eventually("node two heard each change once, in order", || {
        *heard_two.lock() == order
    });
}

#[test]
fn a_car_at_the_gate_consumes_its_reservation_and_checks_its_booking_in_and_out() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (booking_node(&pg, 10), booking_node(&pg, 10));
    let now = unix_now();
    // A reservation made through node two, consumed by the car entering through node one:
    // the car is counted now instead, so the free count does not move.
    assert_eq!(
        two.reserve("A", plate("RES1"), None),
        Ok(ReserveOutcome::Reserved)
    );
    let entered = one.pass_gate("A", plate("RES1"), Passage::Enter).unwrap();
    assert_eq!(
        entered,
        GateOutcome {
            free: 9,
            booking: None,
            consumed_reservation: true
        }
    );
    assert_eq!(
        two.reserve("A", plate("RES1"), None),
        Ok(ReserveOutcome::Reserved),
        "the reservation is gone from the database"
    );
    // A booking made through node two that holds a space now: checked in by the gate of
    // node one, completed by the gate of node two; every copy follows.
    let made = two
        .book(request("BOOK1", None, now, now + 3600), None)
        .unwrap();
    eventually("node one holds the booked space", || free(&one) == 7);
    let entered = one.pass_gate("A", plate("BOOK1"), Passage::Enter).unwrap();
    assert_eq!(entered.booking.as_ref(), Some(&made.id));
    assert!(!entered.consumed_reservation);
    // Counted now (two cars), no longer held: 10 - 2 - 1 reserved.
    assert_eq!(entered.free, 7);
    for node in [&one, &two] {
        eventually("every copy sees it checked in", || {
            node.state()
                .booking(&made.id)
                .is_ok_and(|b| b.status == BookingStatus::CheckedIn && b.inside)
        });
    }
    // A plate with nothing to check in is only counted.
    let passer = two.pass_gate("A", plate("NONE1"), Passage::Enter).unwrap();
    assert_eq!((passer.free, passer.booking), (6, None));
    let left = two.pass_gate("A", plate("BOOK1"), Passage::Exit).unwrap();
    assert_eq!((left.free, left.booking.as_ref()), (7, Some(&made.id)));
    for node in [&one, &two] {
        eventually("every copy sees it completed", || {
            node.state()
                .booking(&made.id)
                .is_ok_and(|b| b.status == BookingStatus::Completed && !b.inside)
        });
        eventually("every copy counts two cars and one reservation", || {
            let a = &node.state().lots()[0];
            (a.counted, a.reserved, a.free) == (2, 1, 7)
        });
    }
    assert!(matches!(
        one.pass_gate("Z", plate("RES1"), Passage::Enter),
        Err(StateError::UnknownLot(_))
    ));
}

#[test]
fn two_nodes_racing_for_one_spot_get_exactly_one_booking() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let nodes = [
        Arc::new(booking_node(&pg, 10)),
        Arc::new(booking_node(&pg, 10)),
    ];
    let start = unix_now() + 3600;
    let racers: Vec<_> = (0..16)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            thread::spawn(move || {
                // Overlapping windows, each a little different: one instant in common.
                let window = (start + n as u64 * 10, start + 1000 + n as u64 * 10);
                node.book(
                    request(&format!("R{n}"), Some("S1"), window.0, window.1),
                    None,
                )
            })
        })
        .collect();
    let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let won: Vec<&Booking> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|err| *err == BookingError::SpotTaken),
        "{outcomes:?}"
    );
    assert_eq!(active_rows(&pg).len(), 1);
    // The other spot, and the same spot after the window, are still free.
    assert!(
        nodes[0]
            .book(request("S2CAR", Some("S2"), start, start + 600), None)
            .is_ok()
    );
    assert!(
        nodes[1]
            .book(
                request("LATER", Some("S1"), start + 5000, start + 6000),
                None
            )
            .is_ok()
    );
    // A cancelled booking frees its spot (the constraint counts active ones only).
    let winner = won[0].clone();
    let anyone = |_: Option<&str>| true;
    assert_eq!(
        nodes[1].cancel_booking(&winner.id, &anyone),
        Ok(CancelOutcome::Cancelled)
    );
    assert!(
        nodes[0]
            .book(
                request("AGAIN", Some("S1"), winner.window.start, winner.window.end),
                None
            )
            .is_ok()
    );
    // A spot the lot does not have is refused on the node, before the database.
    assert!(matches!(
        nodes[0].book(request("NOPE", Some("S9"), start, start + 60), None),
        Err(BookingError::UnknownSpot { .. })
    ));
}

#[test]
fn concurrent_bookings_from_two_nodes_never_exceed_bookable_at_any_instant() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    const BOOKABLE: u32 = 4;
    let nodes = [
        Arc::new(booking_node(&pg, BOOKABLE)),
        Arc::new(booking_node(&pg, BOOKABLE)),
    ];
    let start = unix_now() + 3600;
    // Staggered windows of different lengths: their peaks fall at different instants.
    let racers: Vec<_> = (0..32)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            thread::spawn(move || {
                let from = start + (n as u64 % 8) * 300;
                let to = from + 600 + (n as u64 % 3) * 400;
                node.book(request(&format!("L{n}"), None, from, to), None)
            })
        })
        .collect();
    let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    for outcome in &outcomes {
        assert!(
            matches!(
                outcome,
                Ok(_) | Err(BookingError::Full { bookable: BOOKABLE })
            ),
            "{outcome:?}"
        );
    }
    let rows = active_rows(&pg);
    let made = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(rows.len(), made);
    assert!(made >= BOOKABLE as usize, "{outcomes:?}");
    // At every instant (every start is where a peak can begin) at most BOOKABLE overlap.
    for &(at, ..) in &rows {
        let overlapping = rows.iter().filter(|&&(s, e, _)| s <= at && at < e).count();
        assert!(
            overlapping <= BOOKABLE as usize,
            "{overlapping} at {at}: {rows:?}"
        );
    }
    // Thirty-two racers for one window: exactly what is left of BOOKABLE.
    let late = start + 100_000;
    let racers: Vec<_> = (0..32)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            thread::spawn(move || {
                node.book(request(&format!("W{n}"), None, late, late + 600), None)
            })
        })
        .collect();
    let won = racers
        .into_iter()
        .map(|r| r.join().unwrap())
        .filter(Result::is_ok)
        .count();
    assert_eq!(won, BOOKABLE as usize);
}

#[test]
fn a_booking_made_on_one_node_is_read_moved_and_settled_on_every_node() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (booking_node(&pg, 10), booking_node(&pg, 10));
    let anyone = |_: Option<&str>| true;
    let now = unix_now();
    // A window that includes now: it holds a space at once, on both nodes.
    let made = one
        .book(request("NOW1", None, now, now + 3600), Some("key-1"))
        .unwrap();
    assert_eq!(made.status, BookingStatus::Confirmed);
    assert_eq!(made.owner.as_deref(), Some("key-1"));
    eventually("node two reads it", || {
        two.state().booking(&made.id) == Ok(made.clone())
    });
    eventually("both nodes count its space", || {
        free(&one) == 9 && free(&two) == 9
    });
    // A reservation on node two sees the held space: 10 - 1 booked - 9 reserved = 0 left.
    for n in 0..9 {
        assert_eq!(
            two.reserve("A", plate(&format!("Q{n}")), None),
            Ok(ReserveOutcome::Reserved)
        );
    }
    assert_eq!(
        two.reserve("A", plate("Q9"), None),
        Ok(ReserveOutcome::Full)
    );
    // And a booking of a window that includes now finds no space now.
    assert_eq!(
        one.book(request("NOW2", None, now, now + 60), None),
        Err(BookingError::NoSpaceNow)
    );
    for n in 0..9 {
        assert_eq!(
            one.cancel("A", plate(&format!("Q{n}")), &anyone),
            Ok(CancelOutcome::Cancelled)
        );
    }
    // Another key may not check it in; its owner may, through the other node.
    let other_key = |owner: Option<&str>| owner == Some("key-2");
    assert!(matches!(
        two.check_in(&made.id, &other_key),
        Err(BookingError::UnknownBooking(_))
    ));
    let checked = two
        .check_in(&made.id, &|owner| owner == Some("key-1"))
        .unwrap();
    assert_eq!(checked.status, BookingStatus::CheckedIn);
    eventually("node one sees the check-in", || {
        one.state()
            .booking(&made.id)
            .is_ok_and(|b| b.status == BookingStatus::CheckedIn)
    });
    assert!(matches!(
        one.check_in(&made.id, &anyone),
        Err(BookingError::BadState(BookingStatus::CheckedIn))
    ));
    assert_eq!(
        one.cancel_booking(&made.id, &anyone),
        Ok(CancelOutcome::NotFound)
    );

    // A future booking: check-in has not opened; then time passes in the database past its
    // grace, and two nodes settling at once make it a no-show once.
    let later = one
        .book(request("LATE", None, now + 7200, now + 9000), None)
        .unwrap();
    assert!(matches!(
        two.check_in(&later.id, &anyone),
        Err(BookingError::NotDue { .. })
    ));
    pg.client()
        .execute(
            "UPDATE parking_bookings SET during = int8range(lower(during) - 8500, \
             upper(during) - 8500), due = 0 WHERE seq = $1",
            &[&(later.id.seq() as i64)],
        )
        .unwrap();
    let (one, two) = (Arc::new(one), Arc::new(two));
    let settlers: Vec<_> = [&one, &two, &one, &two]
        .into_iter()
        .map(|node| {
            let node = Arc::clone(node);
            thread::spawn(move || node.settle_due().unwrap())
        })
        .collect();
    let moved: usize = settlers.into_iter().map(|s| s.join().unwrap()).sum();
    // The no-show, and the checked-in booking, whose window (an hour) is not over: nothing.
    assert_eq!(moved, 1);
    for node in [&one, &two] {
        eventually("every node sees the no-show", || {
            node.state()
                .booking(&later.id)
                .is_ok_and(|b| b.status == BookingStatus::NoShow)
        });
    }
    assert_eq!(one.settle_due(), Ok(0));
}

#[test]
fn accounts_are_unique_across_nodes_and_read_from_the_database() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (Arc::new(node(&pg, 3)), Arc::new(node(&pg, 3)));
    let account = |name: &str| Account {
        username: Username::new(name).unwrap(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        created_at: 1_700_000_000,
    };
    // Eight registrations of one name through two nodes at once: one account.
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let node = Arc::clone(if n % 2 == 0 { &one } else { &two });
            let account = account("alice");
            thread::spawn(move || node.create_account(account))
        })
        .collect();
    let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|err| matches!(err, AccountError::Exists(_))),
        "{outcomes:?}"
    );
    let alice = Username::new("alice").unwrap();
    assert_eq!(two.account(&alice), Ok(Some(account("alice"))));
    assert_eq!(one.account(&Username::new("bob").unwrap()), Ok(None));
    // Only an Argon2id hash is stored.
    let mut plain = account("carol");
    plain.password_hash = "hunter2".into();
    assert!(matches!(
        one.create_account(plain),
        Err(AccountError::Unavailable(_))
    ));
}

#[test]
fn an_outage_refuses_writes_in_bounded_time_serves_reads_and_heals_itself() {
    let Some(mut pg) = TempPostgres::start() else {
        return;
    };
    let one = node(&pg, 10);
    assert_eq!(
        one.reserve("A", plate("KEEP"), None),
        Ok(ReserveOutcome::Reserved)
    );
    pg.stop();

    let started = Instant::now();
    let refused = one.reserve("A", plate("P1"), None);
    assert!(
        matches!(refused, Err(StateError::Unavailable(_))),
        "{refused:?}"
    );
    // The bound the configuration promises (timeout 1 s), with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    eventually("health says why", || {
        matches!(one.health(), Health::Unavailable(_))
    });
    assert!(matches!(
        one.update_occupancy("A", CountChange::Add(1)),
        Err(StateError::Unavailable(_))
    ));
    assert!(matches!(
        one.pass_gate("A", plate("CAR"), Passage::Enter),
        Err(StateError::Unavailable(_))
    ));
    // Reads go on from the copy.
    assert_eq!(free(&one), 9);

    pg.start_again();
    // A change made through another node while the first was away.
    let two = node(&pg, 10);
    assert_eq!(
        two.reserve("A", plate("P2"), None),
        Ok(ReserveOutcome::Reserved)
    );
    eventually("the node reconnects and resynchronises", || {
        one.health() == Health::Ok && free(&one) == 8
    });
    eventually("writes are taken again", || {
        one.reserve("A", plate("P3"), None) == Ok(ReserveOutcome::Reserved)
    });
    eventually("and heard everywhere", || {
        free(&two) == 7 && free(&one) == 7
    });
}

/// Lot A's `reserved` and version, and the count of its reservation rows, in the database.
fn lot_row(pg: &TempPostgres) -> (i32, i64, i64) {
    let row = pg
        .client()
        .query_one(
            "SELECT reserved, version, (SELECT count(*) FROM parking_reservations WHERE lot = 'A') \
             FROM parking_lots WHERE id = 'A'",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Runs `sql` in a transaction left open on a connection of its own, then the same `sql` on
/// another connection, which waits for the first one's lock on lot A; commits the first once
/// the second waits, and returns the second's answer (column 0).
fn second_of_two_at_once(pg: &TempPostgres, sql: &'static str) -> Option<String> {
    let mut first = pg.client();
    let mut open = first.transaction().unwrap();
    let answer: Option<String> = open.query_one(sql, &[]).unwrap().get(0);
    assert!(answer.is_some(), "the first one changes the lot");
    let mut second = pg.client();
    let waiting = thread::spawn(move || second.query_one(sql, &[]).unwrap().get(0));
    eventually("the second waits for the lot's lock", || {
        let waits: i64 = pg
            .client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        waits == 1
    });
    open.commit().unwrap();
    waiting.join().unwrap()
}

#[test]
fn a_reserve_or_cancel_that_waited_behind_the_same_one_changes_nothing() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let one = node(&pg, 10);
    assert_eq!(
        one.reserve("A", plate("OTHER"), None),
        Ok(ReserveOutcome::Reserved)
    );
    let before = lot_row(&pg);
    assert_eq!(before.0, 1);
    // Both checked that P is not held before either took the lot's lock; the second one
    // finds it held once it has the lock, and takes back its count and version.
    let second = second_of_two_at_once(
        &pg,
        "SELECT outcome || coalesce(version::text, '') \
         FROM parking_reserve_quietly('A', 'P', 300000, NULL)",
    );
    assert_eq!(second.as_deref(), Some("exists"));
    assert_eq!(lot_row(&pg), (2, before.1 + 1, 2));
    // Both saw P held; the second finds it gone once it has the lock. OTHER keeps the count
    // above zero, so the second's count-down happens and is taken back.
    let second = second_of_two_at_once(
        &pg,
        "SELECT version::text FROM parking_cancel_quietly('A', 'P', NULL)",
    );
    assert_eq!(second, None);
    assert_eq!(lot_row(&pg), (1, before.1 + 2, 1));
    // With nothing else held, the second finds nothing to count down.
    let second = second_of_two_at_once(
        &pg,
        "SELECT version::text FROM parking_cancel_quietly('A', 'OTHER', NULL)",
    );
    assert_eq!(second, None);
    assert_eq!(lot_row(&pg), (0, before.1 + 3, 0));
    // The node reads what it did not write afresh: its copy agrees.
    eventually("the copy agrees", || free(&one) == 10);
}

#[test]
fn a_cancel_decided_from_the_copy_still_asks_the_database_whose_it_is() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 10), node(&pg, 10));
    assert_eq!(
        one.reserve("A", plate("P1"), Some("kiosk")),
        Ok(ReserveOutcome::Reserved)
    );
    // Someone else's plate, as the copy knows: refused.
    assert_eq!(
        one.cancel("A", plate("P1"), &|owner| owner == Some("other")),
        Ok(CancelOutcome::NotFound)
    );
    // The reservation changed hands behind the copy's back (nothing announced): the copy
    // still says kiosk, the database says other, and the database is right.
    pg.client()
        .execute(
            "UPDATE parking_reservations SET owner = 'other' WHERE plate = 'P1'",
            &[],
        )
        .unwrap();
    assert_eq!(
        one.cancel("A", plate("P1"), &|owner| owner == Some("kiosk")),
        Ok(CancelOutcome::NotFound)
    );
    assert_eq!(lot_row(&pg).2, 1);
    assert_eq!(
        one.cancel("A", plate("P1"), &|owner| owner == Some("other")),
        Ok(CancelOutcome::Cancelled)
    );
    assert_eq!(lot_row(&pg).2, 0);
    eventually("the other node hears it", || free(&two) == 10);
}

/// Replaces `parking_holder` (the exact path's look-up of a reservation's owner) by one
/// that answers the same and counts its calls in `holder_calls`.
const COUNT_HOLDER_CALLS: &str = "
    CREATE TABLE holder_calls (at timestamptz NOT NULL DEFAULT now());
    CREATE OR REPLACE FUNCTION parking_holder(p_lot text, p_plate text,
                                              OUT held boolean, OUT owner text)
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO holder_calls DEFAULT VALUES;
        SELECT count(*) > 0, min(r.owner) INTO held, owner FROM parking_reservations r
            WHERE r.lot = p_lot AND r.plate = p_plate;
    END $$;";

fn holder_calls(pg: &TempPostgres) -> i64 {
    pg.client()
        .query_one("SELECT count(*) FROM holder_calls", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_cancel_right_after_a_reserve_the_copy_holds_back_is_one_statement_and_still_checked() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let one = node(&pg, 10);
    pg.client().batch_execute(COUNT_HOLDER_CALLS).unwrap();
    // Another node's change whose announcement has not come (here: never comes), so this
    // node's own commits of lot A wait in its copy behind it until the lot is read afresh.
    let mut other = pg.client();
    other
        .batch_execute("SET parking.announce = 'after_commit'")
        .unwrap();
    let outcome: String = other
        .query_one(
            "SELECT outcome FROM parking_reserve('A', 'GAP', 300000, NULL)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(outcome, "reserved");
    assert_eq!(
        one.reserve("A", plate("P1"), Some("kiosk")),
        Ok(ReserveOutcome::Reserved)
    );
    // The owner is known from the held-back commit: one statement, no look-up.
    assert_eq!(
        one.cancel("A", plate("P1"), &|owner| owner == Some("kiosk")),
        Ok(CancelOutcome::Cancelled)
    );
    assert_eq!(holder_calls(&pg), 0);
    assert_eq!(lot_row(&pg).2, 1, "GAP alone is left");

    // A known owner the database no longer has: the database decides, through the exact
    // path, once the one statement removed nothing.
    assert_eq!(
        one.reserve("A", plate("P2"), Some("kiosk")),
        Ok(ReserveOutcome::Reserved)
    );
    pg.client()
        .execute(
            "UPDATE parking_reservations SET owner = 'other' WHERE plate = 'P2'",
            &[],
        )
        .unwrap();
    assert_eq!(
        one.cancel("A", plate("P2"), &|owner| owner == Some("kiosk")),
        Ok(CancelOutcome::NotFound)
    );
    // Asked once, whichever owner the node guessed (the old one, or the new one if the
    // copy has read the lot afresh meanwhile).
    assert_eq!(holder_calls(&pg), 1);
    assert_eq!(lot_row(&pg).2, 2);
    // (Through the exact path again, or in one statement if the copy has meanwhile read
    // the lot afresh and learnt the new owner: either way the database's owner decides.)
    assert_eq!(
        one.cancel("A", plate("P2"), &|owner| owner == Some("other")),
        Ok(CancelOutcome::Cancelled)
    );
    assert_eq!(lot_row(&pg).2, 1);
    // The copy catches up with the lost change and holds what the database holds.
    eventually("the copy reads the lot afresh", || {
        free(&one) == 9 && one.state().holder("A", &plate("GAP")).unwrap().is_some()
    });
    assert_eq!(one.state().holder("A", &plate("P1")).unwrap(), None);
    assert_eq!(one.state().holder("A", &plate("P2")).unwrap(), None);
}

#[test]
fn racing_reserves_and_cancels_over_two_nodes_keep_the_count_exact() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let nodes = [Arc::new(node(&pg, 10)), Arc::new(node(&pg, 10))];
    // 16 writers over two nodes: 40 plates for 10 spaces, each plate tried by two writers
    // at once, then every writer cancels every plate.
    let writers: Vec<_> = (0..16)
        .map(|n| {
            let store = Arc::clone(&nodes[n % 2]);
            thread::spawn(move || {
                let plates: Vec<String> = (0..40).map(|p| format!("R{p}")).collect();
                let mine = plates.iter().skip(n / 2 * 5).take(5);
                let reserved = mine
                    .filter(|p| store.reserve("A", plate(p), None) == Ok(ReserveOutcome::Reserved))
                    .count();
                (store, reserved)
            })
        })
        .collect();
    let (stores, reserved): (Vec<_>, Vec<usize>) =
        writers.into_iter().map(|w| w.join().unwrap()).unzip();
    assert_eq!(reserved.iter().sum::<usize>(), 10);
    assert_eq!(lot_row(&pg).0, 10);
    assert_eq!(lot_row(&pg).2, 10);
    let cancellers: Vec<_> = stores
        .into_iter()
        .map(|store| {
            thread::spawn(move || {
                (0..40)
                    .filter(|p| {
                        store.cancel("A", plate(&format!("R{p}")), &|_| true)
                            == Ok(CancelOutcome::Cancelled)
                    })
                    .count()
            })
        })
        .collect();
    let cancelled: usize = cancellers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(cancelled, 10);
    let (count, version, rows) = lot_row(&pg);
    assert_eq!((count, rows), (0, 0));
    // One version per change that happened: ten reserves and ten cancels.
    assert_eq!(version, 20);
    for store in &nodes {
        eventually("each copy is empty at the last version", || {
            free(store) == 10
        });
    }
}

#[test]
fn a_database_of_the_previous_release_upgrades_and_keeps_its_reservations() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    // The schema as the previous release left it (migrations 1-4), with a reservation its
    // parking_reserve made.
    let mut old = pg.client();
    old.batch_execute(
        "CREATE TABLE parking_schema (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    for migration in store_pg::MIGRATIONS.iter().filter(|m| m.version <= 4) {
        old.batch_execute(migration.sql).unwrap();
        old.execute(
            "INSERT INTO parking_schema (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .unwrap();
    }
    old.batch_execute(
        "INSERT INTO parking_lots (id, capacity) VALUES ('A', 10), ('B', 5); \
         SELECT parking_reserve('A', 'OLD', 300000, 'kiosk')",
    )
    .unwrap();
    let one = node(&pg, 10);
    let applied: Vec<i32> = pg
        .client()
        .query("SELECT version FROM parking_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known: Vec<i32> = store_pg::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, known);
    assert_eq!(free(&one), 9);
    assert_eq!(
        one.cancel("A", plate("OLD"), &|owner| owner == Some("kiosk")),
        Ok(CancelOutcome::Cancelled)
    );
    assert_eq!(
        one.reserve("A", plate("NEW"), None),
        Ok(ReserveOutcome::Reserved)
    );
    // A node of the previous release, mid-upgrade, still writes with its functions.
    let outcome: String = old
        .query_one(
            "SELECT outcome FROM parking_reserve('A', 'NEW', 300000, NULL)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(outcome, "exists");
    assert_eq!(lot_row(&pg), (1, 3, 1));
}

#[test]
fn a_driver_holds_one_offer_per_lot_and_the_next_driver_gets_the_room() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (booking_node(&pg, 1), booking_node(&pg, 1));
    let anyone = |_: Option<&str>| true;
    let first = (unix_now() + 3600, unix_now() + 5400);
    let second = (first.1, first.1 + 1800);
    let taken = [
        one.book(request("P0", None, first.0, first.1), None)
            .unwrap(),
        one.book(request("Q0", None, second.0, second.1), None)
            .unwrap(),
    ];
    let alice_first = two
        .join_waitlist(request("A1", None, first.0, first.1), Some("@alice"))
        .unwrap();
    let alice_second = two
        .join_waitlist(request("A1", None, second.0, second.1), Some("@alice"))
        .unwrap();
    let bob = one
        .join_waitlist(request("B1", None, second.0, second.1), Some("@bob"))
        .unwrap();
    for booking in &taken {
        assert_eq!(
            two.cancel_booking(&booking.id, &anyone),
            Ok(CancelOutcome::Cancelled)
        );
    }
    // Alice holds the first window's offer, so her younger entry waits; bob is offered the
    // second window although he joined after her.
    assert!(offer_in_db(&pg, &alice_first.id).is_some());
    assert_eq!(offer_in_db(&pg, &alice_second.id), None);
    assert!(offer_in_db(&pg, &bob.id).is_some());
    assert_eq!(offers_in_db(&pg), 2);
}

#[test]
fn two_accepts_of_one_offer_queued_on_the_lots_lock_make_one_booking() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (
        Arc::new(booking_node(&pg, 1)),
        Arc::new(booking_node(&pg, 1)),
    );
    let anyone = |_: Option<&str>| true;
    let (start, end) = (unix_now() + 3600, unix_now() + 7200);
    let taken = one.book(request("P0", None, start, end), None).unwrap();
    let alice = two
        .join_waitlist(request("P1", None, start, end), Some("@alice"))
        .unwrap();
    assert_eq!(
        one.cancel_booking(&taken.id, &anyone),
        Ok(CancelOutcome::Cancelled)
    );
    assert!(offer_in_db(&pg, &alice.id).is_some());
    let version = |pg: &TempPostgres| -> i64 {
        pg.client()
            .query_one("SELECT version FROM parking_lots WHERE id = 'A'", &[])
            .unwrap()
            .get(0)
    };
    let before = version(&pg);

    // Holding the lot's row lock parks both accepts at it, each having found the offer live
    // (the owner is asked before the lock): the lock is then all that keeps the second from
    // accepting what the first has just taken. Without it both would answer accepted.
    let mut holder = pg.client();
    let mut held = holder.transaction().unwrap();
    held.execute("SELECT 1 FROM parking_lots WHERE id = 'A' FOR UPDATE", &[])
        .unwrap();
    let racers: Vec<_> = [&one, &two]
        .into_iter()
        .map(|node| {
            let node = Arc::clone(node);
            let id = alice.id.clone();
            thread::spawn(move || node.accept_offer(&id, &|owner| owner == Some("@alice")))
        })
        .collect();
    eventually("both accepts wait for the lot's lock", || {
        let waiting: i64 = pg
            .client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE '%parking_accept(%'",
                &[],
            )
            .unwrap()
            .get(0);
        waiting == 2
    });
    held.commit().unwrap();
    let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let won: Vec<&Booking> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Ok(_) | Err(WaitlistError::UnknownEntry(_) | WaitlistError::NoOffer)
        )),
        "{outcomes:?}"
    );
    // One change of the lot, one confirmed booking, no offer and no entry left.
    assert_eq!(version(&pg), before + 1);
    let confirmed: i64 = pg
        .client()
        .query_one(
            "SELECT count(*) FROM parking_bookings WHERE lot = 'A' AND status = 'CONFIRMED'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(confirmed, 1);
    assert_eq!(offers_in_db(&pg), 0);
    assert_eq!(offer_in_db(&pg, &alice.id), None);
    for node in [&one, &two] {
        eventually("every copy has the booking and not the entry", || {
            node.state().booking(&won[0].id) == Ok(won[0].clone())
                && node.state().waitlist_entry(&alice.id).is_none()
        });
    }
}
