//! Waitlists over real sockets, on a manual clock: `joinWaitlist`, `acceptOffer`,
//! `leaveWaitlist`, `myBookings` and `myWaitlist` with every error code of docs/protocol.md's
//! "Waitlist" section, an offer handed over when it runs out, and two drivers racing to
//! accept the same chain of offers.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use client::{ClientError, ParkingClient};
use common::{RawRpc, start_on_clock, unix_now};
use framing::rpc::{BookingStatus, ErrorCode};
use serde_json::json;
use server::{Config, RunningServer};
use state::{Clock, ManualClock};

/// A server on a manual clock with lot `L` (2 spaces, 1 bookable, spot S1) and lot `M`;
/// offers last 10 minutes.
fn waitlist_server(clock: &Arc<ManualClock>) -> RunningServer {
    start_on_clock(Arc::clone(clock), |config: &mut Config| {
        config.lots = serde_json::from_value(json!([
            {"id": "L", "capacity": 2, "bookable": 1, "spots": [{"id": "S1"}]},
            {"id": "M", "capacity": 5},
        ]))
        .unwrap();
        config.offer_minutes = 10;
    })
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server(err)) => err.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn a_full_window_is_waited_for_offered_passed_on_and_accepted() {
    let clock = Arc::new(ManualClock::new());
    let server = waitlist_server(&clock);
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);
    assert_eq!(
        code(rpc.join_waitlist("M", "P1", start, end, None)),
        ErrorCode::NotFull
    );
    let taken = rpc.book("L", "B1", start, end, None).unwrap();
    assert_eq!(code(rpc.book("L", "P1", start, end, None)), ErrorCode::Full);
    let first = rpc.join_waitlist("L", "p1", start, end, None).unwrap();
    assert_eq!(first.id.to_string(), "L.w1");
    assert_eq!(first.plate.as_str(), "P1");
    assert!(first.offer.is_none());
    assert_eq!(
        code(rpc.join_waitlist("L", "P1", start + 60, end, None)),
        ErrorCode::AlreadyWaiting
    );
    for (lot, spot, window, expected) in [
        ("Z", None, (start, end), ErrorCode::UnknownLot),
        ("L", Some("S9"), (start, end), ErrorCode::UnknownSpot),
        ("L", None, (end, start), ErrorCode::BadWindow),
    ] {
        assert_eq!(
            code(rpc.join_waitlist(lot, "P3", window.0, window.1, spot)),
            expected
        );
    }
    assert_eq!(
        code(rpc.join_waitlist("L", "P 3", start, end, None)),
        ErrorCode::BadPlate
    );
    let second = rpc.join_waitlist("L", "P2", start, end, None).unwrap();
    assert_eq!(code(rpc.accept_offer("L.w1")), ErrorCode::NoOffer);
    for junk in ["L.1", "nonsense", "L.w99", "Z.w1"] {
        assert_eq!(
            code(rpc.accept_offer(junk)),
            ErrorCode::UnknownEntry,
            "{junk}"
        );
    }

    // The booking goes: the space is offered to the oldest entry and held for it.
    assert!(rpc.cancel_booking(&taken.id.to_string()).unwrap());
    let waiting = rpc.my_waitlist("P1").unwrap();
    let offer = waiting[0].offer.clone().expect("offered");
    assert_eq!(offer.expires_at, now + 600);
    let mine = rpc.my_bookings("P1").unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].status, BookingStatus::Offered);
    assert_eq!(mine[0].id, offer.booking);
    assert_eq!(code(rpc.book("L", "P9", start, end, None)), ErrorCode::Full);

    // Not taken in ten minutes: the entry leaves and the space passes to the next one.
    clock.advance(Duration::from_secs(600));
    common::eventually("the offer passes to the next entry", || {
        rpc.my_waitlist("P2").unwrap()[0].offer.is_some()
    });
    assert!(rpc.my_waitlist("P1").unwrap().is_empty());
    assert!(rpc.my_bookings("P1").unwrap().is_empty());
    assert_eq!(code(rpc.accept_offer("L.w1")), ErrorCode::UnknownEntry);
    let booking = rpc.accept_offer(&second.id.to_string()).unwrap();
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.plate.as_str(), "P2");
    assert_eq!((booking.window.start, booking.window.end), (start, end));
    assert!(rpc.my_waitlist("P2").unwrap().is_empty());
    let mine = rpc.my_bookings("P2").unwrap();
    assert_eq!(mine[0].status, BookingStatus::Confirmed);
    assert_eq!(code(rpc.my_bookings("P 2")), ErrorCode::BadPlate);
}

#[test]
fn leaving_lets_the_offer_go_and_the_text_verbs_answer_json() {
    let clock = Arc::new(ManualClock::new());
    let server = waitlist_server(&clock);
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);
    let mut raw = RawRpc::connect(server.rpc_addr());
    let spot = raw.text(&format!("BOOK L B1 {start} {end} S1"));
    assert!(spot.contains(r#""status":"CONFIRMED""#), "{spot}");
    let entry = raw.text(&format!("WAIT L P1 {start} {end} S1"));
    assert!(
        entry.starts_with(r#"{"id":"L.w1","lot":"L","spot":"S1""#),
        "{entry}"
    );
    assert!(entry.contains(r#""status":"WAITING""#), "{entry}");
    assert!(
        raw.text(&format!("WAIT L P2 {start} {end} S1"))
            .contains("L.w2")
    );
    assert!(raw.text("ACCEPT L.w1").starts_with("ERR NO_OFFER "));
    assert!(raw.text("ACCEPT x").starts_with("ERR UNKNOWN_ENTRY "));
    assert!(raw.text("WAIT L P3").starts_with("ERR BAD_ARGS "));
    assert!(raw.text("CANCELBOOKING L.1") == "OK");
    let offered = raw.text("MYWAITLIST P1");
    assert!(offered.contains(r#""status":"OFFERED""#), "{offered}");
    assert!(raw.text("MYBOOKINGS P1").contains(r#""status":"OFFERED""#));
    assert_eq!(raw.text("LEAVE L.w1"), "OK");
    assert_eq!(raw.text("LEAVE L.w1"), "NOT_FOUND");
    assert_eq!(raw.text("LEAVE junk"), "NOT_FOUND");
    assert_eq!(raw.text("MYWAITLIST P1"), "[]");
    // The held spot went to the next entry with the one that left.
    assert!(raw.text("MYWAITLIST P2").contains(r#""status":"OFFERED""#));
    let booking = raw.text("ACCEPT L.w2");
    assert!(booking.contains(r#""spot":"S1""#), "{booking}");
    assert!(booking.contains(r#""status":"CONFIRMED""#), "{booking}");
}

/// Two drivers in line for one space race to accept over their own connections while the
/// first driver's offer runs out: at most one of them ever gets the space.
#[test]
fn two_drivers_racing_for_one_chain_of_offers_never_both_get_it() {
    let clock = Arc::new(ManualClock::new());
    let server = waitlist_server(&clock);
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    for round in 0..5u64 {
        let now = unix_now(&clock);
        let (start, end) = (now + 3600 + round * 10_000, now + 7200 + round * 10_000);
        let taken = rpc.book("L", "B1", start, end, None).unwrap();
        let entries: Vec<String> = ["P1", "P2"]
            .iter()
            .map(|plate| {
                let entry = rpc.join_waitlist("L", plate, start, end, None).unwrap();
                entry.id.to_string()
            })
            .collect();
        assert!(rpc.cancel_booking(&taken.id.to_string()).unwrap());
        let go = Arc::new(Barrier::new(3));
        let racers: Vec<_> = entries
            .into_iter()
            .map(|entry| {
                let go = Arc::clone(&go);
                let addr = server.rpc_addr();
                thread::spawn(move || {
                    let mut rpc = ParkingClient::connect(addr).unwrap();
                    go.wait();
                    for _ in 0..500 {
                        match rpc.accept_offer(&entry) {
                            Ok(booking) => return Some(booking),
                            Err(ClientError::Server(err)) if err.code == ErrorCode::NoOffer => {
                                thread::yield_now();
                            }
                            Err(ClientError::Server(err))
                                if err.code == ErrorCode::UnknownEntry =>
                            {
                                return None;
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                    None
                })
            })
            .collect();
        go.wait();
        clock.advance(Duration::from_secs(600));
        let won: Vec<_> = racers
            .into_iter()
            .filter_map(|racer| racer.join().unwrap())
            .collect();
        assert!(won.len() <= 1, "round {round}: {won:?}");
        let active = rpc
            .list_bookings("L", start, end)
            .unwrap()
            .into_iter()
            .filter(|booking| booking.status.is_active())
            .count();
        assert!(active <= 1, "round {round}");
        // Whoever is still in line leaves, for the next round.
        for plate in ["P1", "P2"] {
            for entry in rpc.my_waitlist(plate).unwrap() {
                rpc.leave_waitlist(&entry.id.to_string()).unwrap();
            }
        }
    }
}

/// With keys, an entry and its offer belong to the key that joined: another client cannot
/// accept or leave it, nor see it in `myBookings` / `myWaitlist`; a viewer may not join.
#[test]
fn with_access_control_entries_and_offers_are_their_owner_s() {
    use auth::Role;
    let keys = [
        ("kiosk-1", Role::Client),
        ("kiosk-2", Role::Client),
        ("signs", Role::Viewer),
        ("ops", Role::Operator),
    ];
    let clock = Arc::new(ManualClock::new());
    let server = start_on_clock(Arc::clone(&clock), |config: &mut Config| {
        config.lots =
            serde_json::from_value(json!([{"id": "L", "capacity": 2, "bookable": 1}])).unwrap();
        config.auth = testkit::keys(&keys);
    });
    let connect = |id: &str| {
        let mut raw = RawRpc::connect(server.rpc_addr());
        assert!(raw.text(&format!("AUTH token-{id}")).starts_with("OK "));
        raw
    };
    let (mut one, mut two, mut signs, mut ops) = (
        connect("kiosk-1"),
        connect("kiosk-2"),
        connect("signs"),
        connect("ops"),
    );
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);
    assert!(
        one.text(&format!("BOOK L B1 {start} {end}"))
            .contains("CONFIRMED")
    );
    let entry = one.text(&format!("WAIT L P1 {start} {end}"));
    assert!(entry.contains(r#""owner":"kiosk-1""#), "{entry}");
    assert!(
        signs
            .text(&format!("WAIT L P3 {start} {end}"))
            .starts_with("ERR FORBIDDEN ")
    );
    assert!(signs.text("MYBOOKINGS P1").starts_with("ERR FORBIDDEN "));
    assert_eq!(one.text("CANCELBOOKING L.1"), "OK");
    // The offer is kiosk-1's: kiosk-2 finds nothing there.
    assert!(two.text("ACCEPT L.w1").starts_with("ERR UNKNOWN_ENTRY "));
    assert_eq!(two.text("LEAVE L.w1"), "NOT_FOUND");
    assert_eq!(two.text("MYBOOKINGS P1"), "[]");
    assert_eq!(two.text("MYWAITLIST P1"), "[]");
    assert!(one.text("MYBOOKINGS P1").contains(r#""status":"OFFERED""#));
    assert!(ops.text("MYWAITLIST P1").contains(r#""id":"L.w1""#));
    let booking = one.text("ACCEPT L.w1");
    assert!(booking.contains(r#""owner":"kiosk-1""#), "{booking}");
    assert!(booking.contains(r#""status":"CONFIRMED""#), "{booking}");
}

/// A driver's login token is a bearer token with role `driver` on the `auth` seam: it
/// authenticates as `@<username>`, may book and wait in line (not reserve, not list a lot's
/// bookings), owns what it makes, and stops working when it runs out.
#[test]
fn a_driver_s_login_token_authenticates_as_the_driver_with_its_rights() {
    use auth::Role;
    let clock = Arc::new(ManualClock::new());
    let server = start_on_clock(Arc::clone(&clock), |config: &mut Config| {
        config.lots =
            serde_json::from_value(json!([{"id": "L", "capacity": 2, "bookable": 1}])).unwrap();
        config.jwt_ttl_hours = 1;
        config.auth = testkit::keys(&[("kiosk-1", Role::Client)]);
    });
    let drivers = server.drivers();
    let store = server.store().as_ref();
    drivers
        .register(store, "alice", "correct horse", clock.wall())
        .unwrap();
    let peer = "127.0.0.1".parse().unwrap();
    let token = drivers
        .login(
            store,
            "alice",
            "correct horse",
            peer,
            clock.now(),
            clock.wall(),
        )
        .unwrap()
        .token;
    let mut alice = RawRpc::connect(server.rpc_addr());
    assert_eq!(alice.text(&format!("AUTH {token}")), "OK @alice driver");
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);
    let booking = alice.text(&format!("BOOK L A1 {start} {end}"));
    assert!(booking.contains(r#""owner":"@alice""#), "{booking}");
    assert!(alice.text("RESERVE L A1").starts_with("ERR FORBIDDEN "));
    assert!(
        alice
            .text(&format!("BOOKINGS L {start} {end}"))
            .starts_with("ERR FORBIDDEN ")
    );
    let mut kiosk = RawRpc::connect(server.rpc_addr());
    assert_eq!(kiosk.text("AUTH token-kiosk-1"), "OK kiosk-1 client");
    assert!(
        kiosk
            .text(&format!("WAIT L K1 {start} {end}"))
            .contains("L.w1")
    );
    // Alice's booking is hers alone; the kiosk's entry is the kiosk's.
    assert_eq!(kiosk.text("CANCELBOOKING L.1"), "NOT_FOUND");
    assert_eq!(alice.text("MYWAITLIST K1"), "[]");
    assert_eq!(alice.text("CANCELBOOKING L.1"), "OK");
    assert!(kiosk.text("MYWAITLIST K1").contains("OFFERED"));
    // An hour later the token has run out: a new connection cannot authenticate with it.
    clock.advance(Duration::from_secs(3600));
    let mut late = RawRpc::connect(server.rpc_addr());
    assert!(
        late.text(&format!("AUTH {token}"))
            .starts_with("ERR UNAUTHORIZED ")
    );
}

/// Through the embedded store, a restart keeps the waitlist (an offer included, still
/// running out on time), drivers' accounts, and the secret their tokens are signed with.
#[test]
fn entries_offers_accounts_and_tokens_survive_a_restart_of_the_embedded_store() {
    let dir = testkit::TempDir::new("server-waitlist-restart");
    let clock = Arc::new(ManualClock::new());
    let start = || {
        start_on_clock(Arc::clone(&clock), |config: &mut Config| {
            config.data_dir = Some(dir.path().to_path_buf());
            config.lots =
                serde_json::from_value(json!([{"id": "L", "capacity": 2, "bookable": 1}])).unwrap();
        })
    };
    let server = start();
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    let now = unix_now(&clock);
    let (start_at, end) = (now + 3600, now + 7200);
    let taken = rpc.book("L", "B1", start_at, end, None).unwrap();
    rpc.join_waitlist("L", "P1", start_at, end, None).unwrap();
    rpc.join_waitlist("L", "P2", start_at, end, None).unwrap();
    assert!(rpc.cancel_booking(&taken.id.to_string()).unwrap());
    let offer = rpc.my_waitlist("P1").unwrap()[0].offer.clone().unwrap();
    let store = server.store().as_ref();
    server
        .drivers()
        .register(store, "alice", "correct horse", clock.wall())
        .unwrap();
    let peer = "127.0.0.1".parse().unwrap();
    let token = server
        .drivers()
        .login(
            store,
            "alice",
            "correct horse",
            peer,
            clock.now(),
            clock.wall(),
        )
        .unwrap()
        .token;
    drop(rpc);
    server.shutdown();

    let server = start();
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    assert_eq!(rpc.my_waitlist("P1").unwrap()[0].offer, Some(offer.clone()));
    assert_eq!(
        rpc.get_booking(&offer.booking.to_string()).unwrap().status,
        BookingStatus::Offered
    );
    assert!(rpc.my_waitlist("P2").unwrap()[0].offer.is_none());
    let wall = clock.wall();
    assert_eq!(
        server
            .drivers()
            .authenticate(&token, wall)
            .unwrap()
            .as_str(),
        "alice"
    );
    assert!(
        server
            .drivers()
            .login(
                server.store().as_ref(),
                "alice",
                "correct horse",
                peer,
                clock.now(),
                wall
            )
            .is_ok()
    );
    // The offer runs out on time after the restart, and passes on.
    clock.advance(Duration::from_secs(600));
    assert!(rpc.my_waitlist("P1").unwrap().is_empty());
    assert!(rpc.my_waitlist("P2").unwrap()[0].offer.is_some());
}

/// Two nodes over one PostgreSQL: a plate joins the waitlist through node one, a cancel
/// through node two frees the space, and the offer it made in the same transaction is seen
/// and accepted through node two; node one's copy follows.
#[test]
fn over_postgresql_an_offer_made_on_one_node_is_seen_and_accepted_on_another() {
    let Some(pg) = testkit::pg::TempPostgres::start() else {
        return;
    };
    // The database decides what time it is for offers; the nodes run on the system clock.
    let node = || {
        common::start_with(|config| {
            config.lots =
                serde_json::from_value(json!([{"id": "L", "capacity": 2, "bookable": 1}])).unwrap();
            config.offer_minutes = 10;
            config.store = server::StoreConfig::Postgres(server::PostgresConfig {
                url: pg.url(),
                pool_size: 2,
                timeout: Duration::from_secs(2),
            });
        })
    };
    let (one, two) = (node(), node());
    let mut rpc1 = ParkingClient::connect(one.rpc_addr()).unwrap();
    let mut rpc2 = ParkingClient::connect(two.rpc_addr()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = (now + 3600, now + 7200);
    let taken = rpc2.book("L", "B1", start, end, None).unwrap();
    let entry = rpc1.join_waitlist("L", "P1", start, end, None).unwrap();
    assert!(entry.offer.is_none());
    assert_eq!(
        code(rpc2.join_waitlist("L", "P1", start, end, None)),
        ErrorCode::AlreadyWaiting
    );
    common::eventually("node two's copy has the entry", || {
        rpc2.my_waitlist("P1").unwrap().len() == 1
    });
    assert_eq!(
        code(rpc2.accept_offer(&entry.id.to_string())),
        ErrorCode::NoOffer
    );

    assert!(rpc2.cancel_booking(&taken.id.to_string()).unwrap());
    common::eventually("node two sees the offer", || {
        rpc2.my_waitlist("P1").unwrap()[0].offer.is_some()
    });
    let offer = rpc2.my_waitlist("P1").unwrap()[0].offer.clone().unwrap();
    assert!(
        offer.expires_at > now && offer.expires_at <= now + 700,
        "{offer:?}"
    );
    // The offer holds the space: nobody else books the window through either node.
    assert_eq!(
        code(rpc1.book("L", "P9", start, end, None)),
        ErrorCode::Full
    );
    let booking = rpc2.accept_offer(&entry.id.to_string()).unwrap();
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.id, offer.booking);
    assert_eq!(booking.plate.as_str(), "P1");
    common::eventually("node one's copy follows", || {
        rpc1.my_waitlist("P1").unwrap().is_empty()
            && rpc1
                .my_bookings("P1")
                .unwrap()
                .first()
                .is_some_and(|b| b.status == BookingStatus::Confirmed)
    });
    assert_eq!(
        code(rpc1.accept_offer(&entry.id.to_string())),
        ErrorCode::UnknownEntry
    );
}
