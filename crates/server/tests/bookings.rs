//! Bookings over real sockets, on a manual clock: every rule, every error code and every
//! transition of docs/protocol.md's "Bookings" section.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RawLines, RawRpc, error_code, start_on_clock, unix_now};
use serde_json::{Value, json};
use server::{Config, RunningServer};
use state::{Clock, ManualClock};

/// A JSON-RPC conversation with numbered requests.
struct Rpc {
    raw: RawRpc,
    next: u32,
}

impl Rpc {
    fn connect(server: &RunningServer) -> Rpc {
        Rpc {
            raw: RawRpc::connect(server.rpc_addr()),
            next: 1,
        }
    }

    /// The whole reply to `method` with `args`.
    fn reply(&mut self, method: &str, args: Value) -> Value {
        self.next += 1;
        let request = json!({"rpcId": self.next, "method": method, "args": args});
        let reply = self.raw.json(&request.to_string());
        assert_eq!(reply["rpcId"], json!(self.next), "{reply}");
        reply
    }

    /// The result of a call that must succeed.
    fn ok(&mut self, method: &str, args: Value) -> Value {
        let reply = self.reply(method, args);
        assert_eq!(reply["error"], Value::Null, "{method}: {reply}");
        reply["result"].clone()
    }

    /// The error code of a call that must fail.
    fn refused(&mut self, method: &str, args: Value) -> String {
        let reply = self.reply(method, args);
        assert_eq!(reply["result"], Value::Null, "{method}: {reply}");
        error_code(&reply)
    }

    fn status(&mut self, id: &Value) -> String {
        self.ok("getBooking", json!([id]))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn lot(&mut self, lot: &str) -> Value {
        let lots = self.ok("getLots", json!([]));
        lots.as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["id"] == lot)
            .unwrap()
            .clone()
    }
}

/// A server on a manual clock with lot `L` (capacity, bookable, spots S1 and S2) and the
/// default rules but `checkin_grace` 900 s and `early_checkin_minutes` 15.
fn booking_server(clock: &Arc<ManualClock>, capacity: u32, bookable: u32) -> RunningServer {
    start_on_clock(Arc::clone(clock), |config: &mut Config| {
        config.lots = serde_json::from_value(json!([
            {"id": "L", "capacity": capacity, "bookable": bookable, "zone": "north",
             "features": ["covered"],
             "spots": [{"id": "S1", "features": ["ev"]}, {"id": "S2"}]},
            {"id": "M", "capacity": 5, "zone": "south"},
        ]))
        .unwrap();
    })
}

fn advance(clock: &ManualClock, secs: u64) {
    clock.advance(Duration::from_secs(secs));
}

#[test]
fn a_booking_is_answered_whole_and_read_back_on_both_syntaxes() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 10);
    let mut rpc = Rpc::connect(&server);
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);
    let booking = rpc.ok("book", json!(["L", "7abc", start, end]));
    assert_eq!(
        booking,
        json!({"id": "L.1", "lot": "L", "spot": null, "plate": "7ABC", "start": start,
               "end": end, "status": "CONFIRMED", "owner": null, "overstay": false,
               "inside": false})
    );
    assert_eq!(rpc.ok("getBooking", json!(["L.1"])), booking);
    // A spot, and the text aliases.
    let text = rpc.raw.text(&format!("BOOK L P2 {start} {end} S1"));
    let spot: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (spot["id"].clone(), spot["spot"].clone()),
        (json!("L.2"), json!("S1"))
    );
    let read: Value = serde_json::from_str(&rpc.raw.text("booking L.2")).unwrap();
    assert_eq!(read, spot);
    assert_eq!(
        rpc.ok("book", json!(["L", "P3", start, end, null]))["spot"],
        Value::Null
    );
    // Booked ahead, nothing is held yet.
    assert_eq!(rpc.ok("getAvailability", json!(["L"])), 10);
}

#[test]
fn windows_must_keep_the_rules() {
    let clock = Arc::new(ManualClock::new());
    let server = start_on_clock(Arc::clone(&clock), |config| {
        config.max_booking_hours = 2;
        config.booking_horizon_days = 1;
    });
    let mut rpc = Rpc::connect(&server);
    let now = unix_now(&clock);
    let book = |rpc: &mut Rpc, start: u64, end: u64| {
        let reply = rpc.reply("book", json!(["A", "P", start, end]));
        if reply["error"].is_null() {
            "OK".to_owned()
        } else {
            error_code(&reply)
        }
    };
    assert_eq!(book(&mut rpc, now + 100, now + 100), "BAD_WINDOW");
    assert_eq!(book(&mut rpc, now + 100, now + 50), "BAD_WINDOW");
    // 60 s of slack for a start in the past.
    assert_eq!(book(&mut rpc, now - 61, now + 100), "BAD_WINDOW");
    assert_eq!(book(&mut rpc, now - 60, now + 100), "OK");
    assert_eq!(book(&mut rpc, now + 10, now + 10 + 7200), "OK");
    assert_eq!(book(&mut rpc, now + 10, now + 10 + 7201), "BAD_WINDOW");
    assert_eq!(book(&mut rpc, now + 86_400, now + 86_401), "OK");
    assert_eq!(book(&mut rpc, now + 86_401, now + 86_402), "BAD_WINDOW");
    let reply = rpc.reply("book", json!(["A", "P", now + 86_401, now + 86_402]));
    assert_eq!(
        reply["error"],
        "BAD_WINDOW: the window starts more than 1 days ahead"
    );
}

#[test]
fn every_refusal_has_its_code() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 10);
    let mut rpc = Rpc::connect(&server);
    let now = unix_now(&clock);
    let (start, end) = (now + 100, now + 200);
    assert_eq!(
        rpc.refused("book", json!(["Z", "P", start, end])),
        "UNKNOWN_LOT"
    );
    assert_eq!(
        rpc.refused("book", json!(["L", "P", start, end, "S9"])),
        "UNKNOWN_SPOT"
    );
    assert_eq!(
        rpc.refused("book", json!(["L", "P 1", start, end])),
        "BAD_PLATE"
    );
    assert_eq!(
        rpc.refused("book", json!(["L", "P", start.to_string(), end])),
        "BAD_ARGS"
    );
    assert_eq!(rpc.refused("book", json!(["L", "P", start])), "BAD_ARGS");
    assert_eq!(
        rpc.refused("getBooking", json!(["L.99"])),
        "UNKNOWN_BOOKING"
    );
    assert_eq!(rpc.refused("getBooking", json!(["Z.1"])), "UNKNOWN_BOOKING");
    assert_eq!(
        rpc.refused("getBooking", json!(["nonsense"])),
        "UNKNOWN_BOOKING"
    );
    assert_eq!(rpc.refused("checkIn", json!(["L.99"])), "UNKNOWN_BOOKING");
    assert_eq!(rpc.ok("cancelBooking", json!(["L.99"])), false);
    assert_eq!(rpc.ok("cancelBooking", json!(["nonsense"])), false);
    assert_eq!(rpc.raw.text("CANCELBOOKING Z.1"), "NOT_FOUND");
    assert!(rpc.raw.text("BOOK L P x 5").starts_with("ERR BAD_ARGS "));
    assert!(
        rpc.raw
            .text("CHECKIN L.7")
            .starts_with("ERR UNKNOWN_BOOKING ")
    );
    // The connection serves on.
    assert_eq!(rpc.raw.text("PING"), "PONG");
}

#[test]
fn a_lot_never_has_more_than_bookable_at_any_instant() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 2);
    let mut rpc = Rpc::connect(&server);
    let t = unix_now(&clock) + 1000;
    rpc.ok("book", json!(["L", "P1", t, t + 100]));
    rpc.ok("book", json!(["L", "P2", t + 50, t + 300]));
    // [t+99, t+101) meets both at t+99.
    assert_eq!(
        rpc.refused("book", json!(["L", "P3", t + 99, t + 101])),
        "FULL"
    );
    let reply = rpc.reply("book", json!(["L", "P3", t + 99, t + 101]));
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("bookable space(s) booked"),
        "{reply}"
    );
    // [t+100, t+150) shares no instant with [t, t+100): one booking covers it.
    rpc.ok("book", json!(["L", "P3", t + 100, t + 150]));
    assert_eq!(
        rpc.refused("book", json!(["L", "P4", t + 120, t + 130])),
        "FULL"
    );
    rpc.ok("book", json!(["L", "P4", t + 300, t + 400]));
    rpc.ok("book", json!(["L", "P5", t - 500, t]));
    // Another lot is not affected.
    rpc.ok("book", json!(["M", "P1", t, t + 100]));
}

#[test]
fn a_spot_takes_one_booking_at_a_time_and_counts_against_its_lot() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 2);
    let mut rpc = Rpc::connect(&server);
    let t = unix_now(&clock) + 1000;
    rpc.ok("book", json!(["L", "P1", t, t + 100, "S1"]));
    assert_eq!(
        rpc.refused("book", json!(["L", "P2", t + 99, t + 200, "S1"])),
        "SPOT_TAKEN"
    );
    rpc.ok("book", json!(["L", "P2", t + 100, t + 200, "S1"]));
    rpc.ok("book", json!(["L", "P3", t, t + 100, "S2"]));
    // Two spots booked over [t, t+100): the lot's bookable 2 is used up.
    assert_eq!(
        rpc.refused("book", json!(["L", "P4", t + 10, t + 20])),
        "FULL"
    );
}

#[test]
fn a_window_that_includes_now_needs_a_free_space_and_holds_it() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 2, 2);
    let mut rpc = Rpc::connect(&server);
    let mut sensor = RawLines::connect(server.sensor_addr());
    let now = unix_now(&clock);
    assert_eq!(sensor.call("UPDATE L 2"), "OK 0");
    assert_eq!(
        rpc.refused("book", json!(["L", "P1", now, now + 600])),
        "FULL"
    );
    let reply = rpc.reply("book", json!(["L", "P1", now, now + 600]));
    assert_eq!(
        reply["error"],
        "FULL: the window includes now and the lot has no free space"
    );
    // A booking ahead only needs bookable space.
    rpc.ok("book", json!(["L", "P1", now + 600, now + 900]));
    assert_eq!(sensor.call("UPDATE L 1"), "OK 1");
    rpc.ok("book", json!(["L", "P2", now - 30, now + 600]));
    // It holds the space as a reservation does.
    let lot = rpc.lot("L");
    assert_eq!(
        (lot["booked"].clone(), lot["free"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(rpc.ok("reserve", json!(["L", "X"])), false);
}

#[test]
fn a_booking_holds_its_space_from_its_start_and_a_no_show_releases_it() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 3, 1);
    let mut rpc = Rpc::connect(&server);
    let mut events = RawLines::connect(server.pubsub_addr());
    assert!(events.call("SUBSCRIBE L").starts_with("OK "));
    assert!(events.line().contains("\"SNAPSHOT\""));
    let start = unix_now(&clock) + 100;
    let id = rpc.ok("book", json!(["L", "P1", start, start + 3600]))["id"].clone();
    advance(&clock, 99);
    assert_eq!(rpc.ok("getAvailability", json!(["L"])), 3);
    // At its start the due-time thread publishes the held space, with no read needed.
    advance(&clock, 1);
    let event: Value = serde_json::from_str(&events.line()).unwrap();
    assert_eq!(
        (event["type"].clone(), event["free"].clone()),
        (json!("EVENT"), json!(2))
    );
    assert_eq!(rpc.lot("L")["booked"], 1);
    assert_eq!(rpc.status(&id), "CONFIRMED");
    // Not checked in by start + checkin_grace (900 s): a no-show, the space released then.
    advance(&clock, 899);
    assert_eq!(rpc.status(&id), "CONFIRMED");
    advance(&clock, 1);
    let event: Value = serde_json::from_str(&events.line()).unwrap();
    assert_eq!(event["free"], 3);
    assert_eq!(rpc.status(&id), "NO_SHOW");
    assert_eq!(rpc.refused("checkIn", json!([id])), "BAD_STATE");
    assert_eq!(rpc.ok("cancelBooking", json!([id])), false);
    // The rest of its window is bookable again (bookable is 1). Made for now, it holds a
    // space at once, and cancelling it gives the space back: both are published.
    let now = unix_now(&clock);
    let id = rpc.ok("book", json!(["L", "P2", now, start + 3600]))["id"].clone();
    let event: Value = serde_json::from_str(&events.line()).unwrap();
    assert_eq!(event["free"], 2);
    assert_eq!(rpc.ok("cancelBooking", json!([id])), true);
    let event: Value = serde_json::from_str(&events.line()).unwrap();
    assert_eq!(event["free"], 3);
}

#[test]
fn check_in_opens_early_and_a_stay_completes_at_the_end_or_is_flagged() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 3, 3);
    let mut rpc = Rpc::connect(&server);
    let start = unix_now(&clock) + 3600;
    let end = start + 1800;
    let id = rpc.ok("book", json!(["L", "P1", start, end]))["id"].clone();
    // early_checkin_minutes is 15.
    advance(&clock, 3600 - 901);
    assert_eq!(rpc.refused("checkIn", json!([id])), "NOT_DUE");
    let reply = rpc.reply("checkIn", json!([id]));
    assert_eq!(
        reply["error"],
        format!("NOT_DUE: check-in opens at {}", start - 900)
    );
    advance(&clock, 1);
    let checked = rpc.ok("checkIn", json!([id]));
    assert_eq!(
        (checked["status"].clone(), checked["inside"].clone()),
        (json!("CHECKED_IN"), json!(true))
    );
    assert_eq!(rpc.refused("checkIn", json!([id])), "BAD_STATE");
    assert_eq!(rpc.ok("cancelBooking", json!([id])), false);
    // A checked-in booking holds nothing in `free`: the car is counted by the sensors.
    advance(&clock, 900);
    assert_eq!(rpc.lot("L")["booked"], 0);
    advance(&clock, 1799);
    assert_eq!(rpc.status(&id), "CHECKED_IN");
    advance(&clock, 1);
    assert_eq!(rpc.status(&id), "COMPLETED");
    // Still inside checkin_grace after the end: flagged.
    advance(&clock, 899);
    assert_eq!(rpc.ok("getBooking", json!([id]))["overstay"], false);
    advance(&clock, 1);
    assert_eq!(rpc.ok("getBooking", json!([id]))["overstay"], true);
}

#[test]
fn the_gate_checks_plates_in_and_out_and_consumes_reservations() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 10);
    let mut rpc = Rpc::connect(&server);
    let mut gate = RawLines::connect(server.sensor_addr());
    let start = unix_now(&clock) + 2000;
    let id = rpc.ok("book", json!(["L", "BK1", start, start + 3600]))["id"].clone();
    // Before check-in opens (15 min before the start), the car is a drive-up.
    assert_eq!(gate.call("ENTER L bk1"), "OK 9");
    assert_eq!(gate.call("EXIT L BK1"), "OK 10");
    assert_eq!(rpc.status(&id), "CONFIRMED");
    advance(&clock, 2000 - 900);
    assert_eq!(gate.call("ENTER L BK1"), "OK 9 BOOKING L.1");
    assert_eq!(rpc.status(&id), "CHECKED_IN");
    let lot = rpc.lot("L");
    assert_eq!(
        (lot["counted"].clone(), lot["booked"].clone()),
        (json!(1), json!(0))
    );
    // Its start: nothing more is held, the car is already counted.
    advance(&clock, 900);
    assert_eq!(rpc.ok("getAvailability", json!(["L"])), 9);
    assert_eq!(gate.call("EXIT L BK1"), "OK 10 BOOKING L.1");
    let done = rpc.ok("getBooking", json!([id]));
    assert_eq!(
        (
            done["status"].clone(),
            done["inside"].clone(),
            done["overstay"].clone()
        ),
        (json!("COMPLETED"), json!(false), json!(false))
    );
    // Leaving early releases the rest of the window.
    assert_eq!(rpc.lot("L")["free"], 10);

    // A live reservation is consumed by the car it was for: not counted twice.
    assert_eq!(rpc.ok("reserve", json!(["L", "Q1"])), true);
    assert_eq!(rpc.ok("getAvailability", json!(["L"])), 9);
    assert_eq!(gate.call("ENTER L Q1"), "OK 9");
    let lot = rpc.lot("L");
    assert_eq!(
        (lot["reserved"].clone(), lot["occupied"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(rpc.ok("cancel", json!(["L", "Q1"])), false);

    assert!(gate.call("ENTER L").starts_with("ERR BAD_PLATE "));
    assert!(gate.call("ENTER L A_B").starts_with("ERR BAD_PLATE "));
    assert!(gate.call("EXIT Z P").starts_with("ERR UNKNOWN_LOT "));
    assert!(gate.call("ENTER L P Q").starts_with("ERR UNKNOWN_COMMAND "));
    assert_eq!(gate.call("PING"), "PONG");
}

#[test]
fn a_car_still_in_after_the_grace_is_flagged_and_its_exit_recorded() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 10);
    let mut rpc = Rpc::connect(&server);
    let mut gate = RawLines::connect(server.sensor_addr());
    let start = unix_now(&clock) + 10;
    let id = rpc.ok("book", json!(["L", "OS1", start, start + 600]))["id"].clone();
    assert_eq!(gate.call("ENTER L OS1"), "OK 9 BOOKING L.1");
    advance(&clock, 10 + 600 + 900);
    let stayed = rpc.ok("getBooking", json!([id]));
    assert_eq!(
        (
            stayed["status"].clone(),
            stayed["overstay"].clone(),
            stayed["inside"].clone()
        ),
        (json!("COMPLETED"), json!(true), json!(true))
    );
    assert_eq!(gate.call("EXIT L OS1"), "OK 10 BOOKING L.1");
    let left = rpc.ok("getBooking", json!([id]));
    assert_eq!(
        (left["overstay"].clone(), left["inside"].clone()),
        (json!(true), json!(false))
    );
}

#[test]
fn cancelled_bookings_free_their_window_and_finished_ones_are_forgotten_in_time() {
    let clock = Arc::new(ManualClock::new());
    let server = start_on_clock(Arc::clone(&clock), |config| {
        config.lots =
            serde_json::from_value(json!([{"id": "L", "capacity": 5, "bookable": 1}])).unwrap();
        config.booking_retention_days = 1;
    });
    let mut rpc = Rpc::connect(&server);
    let start = unix_now(&clock) + 100;
    let id = rpc.ok("book", json!(["L", "P1", start, start + 100]))["id"].clone();
    assert_eq!(
        rpc.refused("book", json!(["L", "P2", start, start + 100])),
        "FULL"
    );
    assert_eq!(rpc.ok("cancelBooking", json!([id])), true);
    assert_eq!(rpc.ok("cancelBooking", json!([id])), false);
    assert_eq!(rpc.status(&id), "CANCELLED");
    rpc.ok("book", json!(["L", "P2", start, start + 100]));
    // Kept a day after its window, then forgotten; its id is never handed out again.
    advance(&clock, 100 + 100 + 86_399);
    assert_eq!(rpc.status(&id), "CANCELLED");
    advance(&clock, 1);
    assert_eq!(rpc.refused("getBooking", json!([id])), "UNKNOWN_BOOKING");
    let now = unix_now(&clock);
    assert_eq!(
        rpc.ok("book", json!(["L", "P3", now + 10, now + 20]))["id"],
        "L.3"
    );
}

#[test]
fn operators_list_a_lots_bookings_over_a_window() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 10);
    let mut rpc = Rpc::connect(&server);
    let t = unix_now(&clock) + 1000;
    for (plate, start, end) in [("P1", 300, 400), ("P2", 0, 100), ("P3", 100, 200)] {
        rpc.ok("book", json!(["L", plate, t + start, t + end]));
    }
    rpc.ok("book", json!(["M", "P4", t, t + 100]));
    let listed = rpc.ok("listBookings", json!(["L", t + 50, t + 350]));
    let plates: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|booking| booking["plate"].as_str().unwrap())
        .collect();
    // By id, the order they were made in.
    assert_eq!(plates, ["P1", "P2", "P3"]);
    assert_eq!(
        rpc.ok("listBookings", json!(["L", t + 200, t + 300])),
        json!([])
    );
    assert_eq!(
        rpc.refused("listBookings", json!(["L", t, t])),
        "BAD_WINDOW"
    );
    assert_eq!(
        rpc.refused("listBookings", json!(["Z", t, t + 1])),
        "UNKNOWN_LOT"
    );
    let text: Value =
        serde_json::from_str(&rpc.raw.text(&format!("BOOKINGS M {t} {}", t + 1))).unwrap();
    assert_eq!(text[0]["plate"], "P4");
}

#[test]
fn list_bookings_answers_pages_of_at_most_limit_that_continue_after_the_last_id() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 1000, 1000);
    let mut rpc = Rpc::connect(&server);
    let t = unix_now(&clock) + 1000;
    for n in 0..250 {
        rpc.ok("book", json!(["L", format!("PG{n}"), t + n, t + n + 3600]));
    }
    let ids = |page: &Value| -> Vec<String> {
        page.as_array()
            .unwrap()
            .iter()
            .map(|booking| booking["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let window = (t, t + 7200);
    // Without a limit: the first 100.
    let first = ids(&rpc.ok("listBookings", json!(["L", window.0, window.1])));
    assert_eq!(first.len(), 100);
    assert_eq!((first[0].as_str(), first[99].as_str()), ("L.1", "L.100"));
    // Paging with `after` the last id meets every booking once, in order.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = ids(&rpc.ok("listBookings", json!(["L", window.0, window.1, 60, after])));
        seen.extend(page.iter().cloned());
        if page.len() < 60 {
            break;
        }
        after = json!(page.last().unwrap());
    }
    let expected: Vec<String> = (1..=250).map(|n| format!("L.{n}")).collect();
    assert_eq!(seen, expected);
    // A cancelled booking between pages does not shift the next one.
    rpc.ok("cancelBooking", json!(["L.101"]));
    let page = ids(&rpc.ok("listBookings", json!(["L", window.0, window.1, 2, "L.100"])));
    assert_eq!(page, ["L.101", "L.102"]);
    // A limit in the middle of the arguments may be null; the text form pages too.
    let page = ids(&rpc.ok(
        "listBookings",
        json!(["L", window.0, window.1, null, "L.249"]),
    ));
    assert_eq!(page, ["L.250"]);
    let text: Value = serde_json::from_str(
        &rpc.raw
            .text(&format!("BOOKINGS L {} {} 1 L.7", window.0, window.1)),
    )
    .unwrap();
    assert_eq!(text[0]["id"], "L.8");
    for bad in [
        json!(["L", window.0, window.1, 0]),
        json!(["L", window.0, window.1, 1001]),
        json!(["L", window.0, window.1, 10, "M.3"]),
        json!(["L", window.0, window.1, 10, "nonsense"]),
        json!(["L", window.0, window.1, "ten"]),
    ] {
        assert_eq!(
            rpc.refused("listBookings", bad.clone()),
            "BAD_ARGS",
            "{bad}"
        );
    }
    let detail = rpc.reply("listBookings", json!(["L", window.0, window.1, 5000]));
    assert!(
        detail["error"]
            .as_str()
            .unwrap()
            .contains("limit must be from 1 to 1000"),
        "{detail}"
    );
    // The largest page fits a frame with room to spare.
    let largest = rpc.ok("listBookings", json!(["L", window.0, window.1, 1000]));
    assert_eq!(largest.as_array().unwrap().len(), 250);
}

#[test]
fn a_lot_keeps_at_most_max_finished_bookings_forgetting_the_soonest_due_first() {
    let clock = Arc::new(ManualClock::new());
    let server = start_on_clock(Arc::clone(&clock), |config| {
        config.lots = serde_json::from_value(json!([{"id": "L", "capacity": 5}])).unwrap();
        config.max_finished_bookings = 3;
    });
    let mut rpc = Rpc::connect(&server);
    let t = unix_now(&clock) + 1000;
    // Booking and cancelling in a loop: windows later and later, so that each cancelled one
    // is due to be forgotten after the ones before it.
    let mut ids = Vec::new();
    for n in 0..10 {
        let id = rpc.ok(
            "book",
            json!(["L", format!("LOOP{n}"), t + n * 10, t + n * 10 + 5]),
        )["id"]
            .clone();
        assert_eq!(rpc.ok("cancelBooking", json!([id])), true);
        ids.push(id);
    }
    let active = rpc.ok("book", json!(["L", "STAYS", t, t + 100]))["id"].clone();
    let listed = rpc.ok("listBookings", json!(["L", t, t + 1000]));
    let kept: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|booking| booking["id"].as_str().unwrap())
        .collect();
    // The three cancelled ones due to be forgotten last, and the active one: never evicted.
    assert_eq!(kept, ["L.8", "L.9", "L.10", "L.11"]);
    assert_eq!(
        rpc.refused("getBooking", json!([ids[0]])),
        "UNKNOWN_BOOKING"
    );
    assert_eq!(rpc.status(&ids[9]), "CANCELLED");
    assert_eq!(rpc.status(&active), "CONFIRMED");
    // A forgotten booking's id is never handed out again.
    assert_eq!(rpc.ok("book", json!(["L", "NEXT", t, t + 5]))["id"], "L.12");
}

#[test]
fn find_lots_answers_what_can_take_a_booking_over_the_window() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock, 10, 3);
    let mut rpc = Rpc::connect(&server);
    let t = unix_now(&clock) + 1000;
    let window = json!({"start": t, "end": t + 100});
    let found = rpc.ok("findLots", json!([window]));
    assert_eq!(
        found,
        json!([
            {"id": "L", "zone": "north", "features": ["covered"], "remaining": 3,
             "spots": [{"id": "S1", "features": ["covered", "ev"]},
                       {"id": "S2", "features": ["covered"]}]},
            {"id": "M", "zone": "south", "features": [], "remaining": 5, "spots": []},
        ])
    );
    rpc.ok("book", json!(["L", "P1", t + 50, t + 60, "S1"]));
    let find = |rpc: &mut Rpc, query: Value| rpc.ok("findLots", json!([query]));
    let found = find(
        &mut rpc,
        json!({"zone": "north", "start": t, "end": t + 100}),
    );
    assert_eq!(found[0]["remaining"], 2);
    assert_eq!(
        found[0]["spots"],
        json!([{"id": "S2", "features": ["covered"]}])
    );
    // Only S1 has ev, and it is taken over the window; later it is free.
    assert_eq!(
        find(
            &mut rpc,
            json!({"feature": "ev", "start": t, "end": t + 100})
        ),
        json!([])
    );
    let later = find(
        &mut rpc,
        json!({"feature": "ev", "start": t + 60, "end": t + 100}),
    );
    assert_eq!(
        (later[0]["id"].clone(), later[0]["remaining"].clone()),
        (json!("L"), json!(1))
    );
    assert_eq!(
        find(
            &mut rpc,
            json!({"feature": "covered", "start": t, "end": t + 100})
        )[0]["remaining"],
        2
    );
    assert_eq!(
        find(
            &mut rpc,
            json!({"zone": "east", "start": t, "end": t + 100})
        ),
        json!([])
    );
    // A full lot is not offered.
    rpc.ok("book", json!(["L", "P2", t, t + 100]));
    rpc.ok("book", json!(["L", "P3", t, t + 100]));
    let found = find(&mut rpc, json!({"start": t, "end": t + 100}));
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], "M");
    let text: Value = serde_json::from_str(
        &rpc.raw
            .text(&format!("FIND zone=south&start={t}&end={}", t + 100)),
    )
    .unwrap();
    assert_eq!(text[0]["id"], "M");
    assert_eq!(
        rpc.refused("findLots", json!([{"start": t + 100, "end": t}])),
        "BAD_WINDOW"
    );
    assert_eq!(rpc.refused("findLots", json!([{"start": t}])), "BAD_ARGS");
    assert!(rpc.raw.text("FIND zone=south").starts_with("ERR BAD_ARGS "));
}

/// A journal whose disk has failed: it refuses every change.
struct FailedDisk;

impl state::Recorder for FailedDisk {
    fn record(
        &self,
        _undo: &state::Change,
        _redo: &state::Change,
    ) -> Result<state::Commit, state::Unavailable> {
        Err(state::Unavailable("disk failed".into()))
    }

    fn wait(&self, _commit: state::Commit) -> Result<(), state::Unavailable> {
        Ok(())
    }
}

#[test]
fn booking_changes_that_cannot_be_made_durable_are_not_made() {
    let clock = Arc::new(ManualClock::new());
    let mut config = testkit::small_config();
    config.lots = serde_json::from_value(json!([{"id": "L", "capacity": 4}])).unwrap();
    let state = Arc::new(config.state(clock.clone()).unwrap());
    let now = unix_now(&clock);
    // Made before the disk failed.
    let made = state
        .book(state::BookingRequest {
            lot: "L",
            spot: None,
            plate: state::Plate::parse("P1").unwrap(),
            window: state::Window {
                start: now + 10,
                end: now + 600,
            },
        })
        .unwrap();
    assert!(state.set_recorder(Arc::new(FailedDisk)).is_ok());
    let server = server::Server::new(config)
        .with_clock(clock.clone())
        .with_store(Arc::new(store::MemoryStore::new(state)))
        .start(shutdown::ShutdownHandle::new())
        .unwrap();
    let mut rpc = Rpc::connect(&server);
    let mut gate = RawLines::connect(server.sensor_addr());
    assert_eq!(
        rpc.refused("book", json!(["L", "P2", now + 10, now + 20])),
        "UNAVAILABLE"
    );
    assert_eq!(
        rpc.refused("checkIn", json!([made.id.to_string()])),
        "UNAVAILABLE"
    );
    assert_eq!(
        rpc.refused("cancelBooking", json!([made.id.to_string()])),
        "UNAVAILABLE"
    );
    assert!(gate.call("ENTER L P1").starts_with("ERR UNAVAILABLE "));
    // Nothing moved: the count, the booking.
    assert_eq!(rpc.lot("L")["counted"], 0);
    assert_eq!(rpc.status(&json!(made.id.to_string())), "CONFIRMED");
    assert_eq!(
        rpc.ok("listBookings", json!(["L", now, now + 600]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Two nodes over one PostgreSQL: a booking made through one is read, checked in and
/// counted through the other, and the gate of one checks in and completes the other's
/// bookings; a driver registered through one logs in through the other; a waitlist entry
/// made through one is read through the other.
#[test]
fn two_nodes_over_postgresql_share_bookings_gates_waitlists_and_accounts() {
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    let Some(pg) = testkit::pg::TempPostgres::start() else {
        return;
    };
    // The database decides what time it is for the lot-wide rule and the moves in time;
    // the nodes' clocks only check the window's rules, so they run on the system clock.
    let node = || {
        common::start_with(|config| {
            config.lots = serde_json::from_value(json!([
                {"id": "A", "capacity": 100, "bookable": 2, "spots": [{"id": "S1"}]}
            ]))
            .unwrap();
            config.store = server::StoreConfig::Postgres(server::PostgresConfig {
                url: pg.url(),
                pool_size: 2,
                timeout: Duration::from_secs(1),
            });
        })
    };
    let (one, two) = (node(), node());
    let (mut rpc1, mut rpc2) = (Rpc::connect(&one), Rpc::connect(&two));
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let made = rpc1.ok("book", json!(["A", "P1", start, start + 3600, "S1"]));
    let id = made["id"].clone();
    assert_eq!(made["status"], "CONFIRMED");
    // The spot is taken whichever node asks; the lot's second bookable space is not.
    assert_eq!(
        rpc2.refused("book", json!(["A", "P2", start + 60, start + 600, "S1"])),
        "SPOT_TAKEN"
    );
    rpc2.ok("book", json!(["A", "P2", start + 60, start + 600]));
    assert_eq!(
        rpc1.refused("book", json!(["A", "P3", start + 120, start + 300])),
        "FULL"
    );
    testkit::eventually("node two reads node one's booking", || {
        rpc2.reply("getBooking", json!([id]))["result"]["status"] == "CONFIRMED"
    });
    // Held from its start, on both nodes: 100 - 1.
    testkit::eventually("both nodes count the held space", || {
        rpc1.lot("A")["free"] == 99 && rpc2.lot("A")["free"] == 99
    });
    assert_eq!(rpc2.ok("checkIn", json!([id]))["status"], "CHECKED_IN");
    testkit::eventually("node one sees the check-in", || {
        rpc1.reply("getBooking", json!([id]))["result"]["status"] == "CHECKED_IN"
    });
    assert_eq!(rpc1.ok("cancelBooking", json!([id])), json!(false));

    // Drivers: registered through one node, logged in through the other.
    one.drivers()
        .register(
            one.store().as_ref(),
            "alice",
            "correct horse",
            SystemTime::now(),
        )
        .unwrap();
    assert!(matches!(
        two.drivers().register(
            two.store().as_ref(),
            "alice",
            "other horse",
            SystemTime::now()
        ),
        Err(accounts::RegisterError::Account(
            state::AccountError::Exists(_)
        ))
    ));
    let issued = two
        .drivers()
        .login(
            two.store().as_ref(),
            "alice",
            "correct horse",
            std::net::IpAddr::from([127, 0, 0, 1]),
            Instant::now(),
            SystemTime::now(),
        )
        .unwrap();
    assert!(!issued.token.is_empty());

    // Gate lines are decided by the database too: the car checked in by `checkIn` is
    // counted, its exit completes the booking on every node; a booking made through node
    // one is checked in by node two's gate.
    let mut gate = RawLines::connect(two.sensor_addr());
    assert_eq!(gate.call("ENTER A P1"), "OK 99");
    assert_eq!(
        gate.call("EXIT A P1"),
        format!("OK 100 BOOKING {}", id.as_str().unwrap())
    );
    testkit::eventually("node one sees the booking completed", || {
        rpc1.reply("getBooking", json!([id]))["result"]["status"] == "COMPLETED"
    });
    let walk_in = rpc1.ok("book", json!(["A", "P4", start, start + 600]));
    testkit::eventually("node two counts P4's held space", || {
        rpc2.lot("A")["free"] == 99
    });
    assert_eq!(
        gate.call("ENTER A P4"),
        format!("OK 99 BOOKING {}", walk_in["id"].as_str().unwrap())
    );
    testkit::eventually("node one sees P4 checked in", || {
        rpc1.reply("getBooking", json!([walk_in["id"]]))["result"]["status"] == "CHECKED_IN"
    });
    // Waitlists are kept too: the window P2 and P4 fill is waited for.
    let entry = rpc1.ok("joinWaitlist", json!(["A", "P9", start + 60, start + 600]));
    assert_eq!(entry["status"], "WAITING", "{entry}");
    testkit::eventually("node two reads the entry", || {
        rpc2.ok("myWaitlist", json!(["P9"]))
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    // Count lines and reservations go on as ever (the checked-in car holds no space: the
    // sensors count it now).
    assert_eq!(gate.call("UPDATE A +1"), "OK 98");
    assert_eq!(rpc1.ok("reserve", json!(["A", "P7"])), json!(true));
}

/// A store that keeps every feature but those it is told it lacks.
struct Lacking {
    inner: store::MemoryStore,
    lacks: Vec<store::Feature>,
}

impl store::Store for Lacking {
    fn state(&self) -> &Arc<state::ParkingState> {
        self.inner.state()
    }

    fn health(&self) -> store::Health {
        self.inner.health()
    }

    fn close(&self) {}

    fn supports(&self, feature: store::Feature) -> bool {
        !self.lacks.contains(&feature)
    }
}

/// A store that lacks a feature answers each of its requests, reads included, with one
/// `UNAVAILABLE` naming the feature, and decides nothing in its copy.
#[test]
fn a_store_without_a_feature_refuses_its_requests_reads_included() {
    use store::Feature;
    let clock = Arc::new(ManualClock::new());
    let mut config = testkit::small_config();
    config.lots = serde_json::from_value(json!([{"id": "L", "capacity": 4}])).unwrap();
    let state = Arc::new(config.state(clock.clone()).unwrap());
    let now = unix_now(&clock);
    // In the copy already: a read must not answer it.
    let made = state
        .book(state::BookingRequest {
            lot: "L",
            spot: None,
            plate: state::Plate::parse("P1").unwrap(),
            window: state::Window {
                start: now + 10,
                end: now + 600,
            },
        })
        .unwrap();
    let store = Lacking {
        inner: store::MemoryStore::new(state),
        lacks: Feature::ALL.to_vec(),
    };
    let server = server::Server::new(config)
        .with_clock(clock.clone())
        .with_store(Arc::new(store))
        .start(shutdown::ShutdownHandle::new())
        .unwrap();
    let mut rpc = Rpc::connect(&server);
    let id = json!(made.id.to_string());
    let window = json!(["L", "P2", now + 10, now + 20]);
    for (method, args, feature) in [
        ("book", window.clone(), "bookings"),
        ("getBooking", json!([id]), "bookings"),
        ("cancelBooking", json!([id]), "bookings"),
        ("checkIn", json!([id]), "bookings"),
        ("listBookings", json!(["L", now, now + 600]), "bookings"),
        ("myBookings", json!(["P1"]), "bookings"),
        (
            "findLots",
            json!([{"start": now + 10, "end": now + 20}]),
            "bookings",
        ),
        ("joinWaitlist", window, "waitlists"),
        ("acceptOffer", json!(["L.w1"]), "waitlists"),
        ("leaveWaitlist", json!(["L.w1"]), "waitlists"),
        ("myWaitlist", json!(["P1"]), "waitlists"),
    ] {
        let reply = rpc.reply(method, args);
        assert_eq!(error_code(&reply), "UNAVAILABLE", "{method}: {reply}");
        let text = reply["error"].as_str().unwrap();
        assert!(
            text.contains(&format!("unsupported: {feature} are not kept")),
            "{method}: {reply}"
        );
    }
    let mut gate = RawLines::connect(server.sensor_addr());
    for line in ["ENTER L P1", "EXIT L P1"] {
        let refused = gate.call(line);
        assert!(
            refused.starts_with("ERR UNAVAILABLE unsupported: gate lines (ENTER/EXIT) are not"),
            "{refused}"
        );
    }
    // The HTTP port asks the store once per route, as the RPC port does per method.
    let mut http = testkit::http::Http::connect(server.http_addr().unwrap());
    let booking = format!("/v1/bookings/{}", made.id);
    let search = format!(
        "/v1/lots?start={}&end={}",
        "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"
    );
    for (method, path, feature) in [
        ("GET", booking.as_str(), "bookings"),
        ("DELETE", booking.as_str(), "bookings"),
        ("GET", "/v1/lots/L/bookings", "bookings"),
        ("GET", search.as_str(), "bookings"),
        ("GET", "/v1/waitlist/L.w1", "waitlists"),
        ("DELETE", "/v1/waitlist/L.w1", "waitlists"),
    ] {
        let refused = http.request(method, path, None);
        assert_eq!(
            (refused.status, refused.error()),
            (503, "UNAVAILABLE".into()),
            "{method} {path}: {}",
            refused.text()
        );
        assert!(
            refused
                .text()
                .contains(&format!("unsupported: {feature} are not kept")),
            "{method} {path}: {}",
            refused.text()
        );
    }
    let drivers = server.drivers();
    assert!(matches!(
        drivers.register(
            server.store().as_ref(),
            "alice",
            "correct horse",
            clock.wall()
        ),
        Err(accounts::RegisterError::Unsupported(store::Unsupported(
            Feature::Accounts
        )))
    ));
    assert!(matches!(
        drivers.login(
            server.store().as_ref(),
            "alice",
            "correct horse",
            std::net::IpAddr::from([127, 0, 0, 1]),
            std::time::Instant::now(),
            clock.wall()
        ),
        Err(accounts::LoginError::Unsupported(_))
    ));
    // What every store keeps goes on; nothing else moved.
    assert_eq!(gate.call("UPDATE L +1"), "OK 3");
    assert_eq!(rpc.ok("reserve", json!(["L", "P9"])), json!(true));
    let lot = rpc.lot("L");
    assert_eq!(
        (lot["counted"].clone(), lot["booked"].clone()),
        (json!(1), json!(0))
    );
}
