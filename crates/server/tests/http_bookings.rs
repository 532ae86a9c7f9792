//! Bookings on the HTTP port (docs/http.md, "Bookings"), over real sockets on a manual
//! clock: every route, its statuses and error codes, RFC 3339 times, and that a booking made
//! here is the RPC port's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RawRpc, start_on_clock, unix_now};
use serde_json::{Value, json};
use server::{Config, RunningServer};
use state::ManualClock;
use testkit::http::{Http, Response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Unix seconds as RFC 3339 (UTC).
fn at(unix: u64) -> String {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// Lot `L` (capacity 10, bookable 2, zone north, covered, spots S1 (ev) and S2), lot `M`.
fn booking_server(clock: &Arc<ManualClock>) -> RunningServer {
    start_on_clock(Arc::clone(clock), |config: &mut Config| {
        config.lots = serde_json::from_value(json!([
            {"id": "L", "capacity": 10, "bookable": 2, "zone": "north",
             "features": ["covered"],
             "spots": [{"id": "S1", "features": ["ev"]}, {"id": "S2"}]},
            {"id": "M", "capacity": 5, "zone": "south"},
        ]))
        .unwrap();
    })
}

fn http(server: &RunningServer) -> Http {
    Http::connect(server.http_addr().unwrap())
}

fn post(http: &mut Http, path: &str, body: &Value) -> Response {
    http.request("POST", path, Some(&body.to_string()))
}

fn book(lot: &str, plate: &str, start: u64, end: u64) -> Value {
    json!({"lot": lot, "plate": plate, "start": at(start), "end": at(end)})
}

#[test]
fn a_booking_is_made_read_checked_in_and_seen_by_the_rpc_port() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock);
    let mut http = http(&server);
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);

    let made = post(&mut http, "/v1/bookings", &book("L", "7abc", start, end));
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(
        made.json(),
        json!({"id": "L.1", "lot": "L", "spot": null, "plate": "7ABC", "start": at(start),
               "end": at(end), "status": "CONFIRMED", "owner": null, "overstay": false,
               "inside": false})
    );
    assert_eq!(made.header("location"), Some("/v1/bookings/L.1"));
    assert_eq!(http.get("/v1/bookings/L.1").json(), made.json());

    // The RPC port's booking, in Unix seconds.
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let seen = rpc.json(r#"{"rpcId":1,"method":"getBooking","args":["L.1"]}"#);
    assert_eq!(seen["result"]["start"], json!(start), "{seen}");

    // Check-in opens early_checkin_minutes (15) before the start.
    let early = http.request("POST", "/v1/bookings/L.1/checkin", None);
    assert_eq!((early.status, early.error()), (409, "NOT_DUE".into()));
    clock.advance(Duration::from_secs(3600 - 10 * 60));
    let checked = http.request("POST", "/v1/bookings/L.1/checkin", None);
    assert_eq!(checked.status, 200, "{}", checked.text());
    assert_eq!(checked.json()["status"], "CHECKED_IN");
    let again = http.request("POST", "/v1/bookings/L.1/checkin", None);
    assert_eq!((again.status, again.error()), (409, "BAD_STATE".into()));
    // Only a confirmed booking is cancelled.
    let cancel = http.request("DELETE", "/v1/bookings/L.1", None);
    assert_eq!((cancel.status, cancel.error()), (404, "NOT_FOUND".into()));
}

#[test]
fn a_cancelled_booking_frees_its_window_and_its_path_answers_gone() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock);
    let mut http = http(&server);
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);
    for plate in ["P1", "P2"] {
        assert_eq!(
            post(&mut http, "/v1/bookings", &book("L", plate, start, end)).status,
            201
        );
    }
    let full = post(&mut http, "/v1/bookings", &book("L", "P3", start, end));
    assert_eq!((full.status, full.error()), (409, "FULL".into()));

    let cancelled = http.request("DELETE", "/v1/bookings/L.1", None);
    assert_eq!(cancelled.status, 204);
    // DELETE removed it from its path: 410, not the booking (and not 404: the id was real).
    let gone = http.get("/v1/bookings/L.1");
    assert_eq!((gone.status, gone.error()), (410, "CANCELLED".into()));
    assert_eq!(http.get("/v1/bookings/L.2").json()["status"], "CONFIRMED");
    assert_eq!(http.request("DELETE", "/v1/bookings/L.1", None).status, 404);
    assert_eq!(
        post(&mut http, "/v1/bookings", &book("L", "P3", start, end)).status,
        201
    );
}

#[test]
fn a_named_spot_is_booked_once_per_window() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock);
    let mut http = http(&server);
    let now = unix_now(&clock);
    let mut spot = book("L", "P1", now + 3600, now + 7200);
    spot["spot"] = json!("S1");
    let made = post(&mut http, "/v1/bookings", &spot);
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.json()["spot"], "S1");
    spot["plate"] = json!("P2");
    let taken = post(&mut http, "/v1/bookings", &spot);
    assert_eq!((taken.status, taken.error()), (409, "SPOT_TAKEN".into()));
    spot["spot"] = json!("S9");
    let unknown = post(&mut http, "/v1/bookings", &spot);
    assert_eq!(
        (unknown.status, unknown.error()),
        (404, "UNKNOWN_SPOT".into())
    );
}

#[test]
fn times_are_rfc_3339_and_windows_the_rules_refuse_are_422() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock);
    let mut http = http(&server);
    let now = unix_now(&clock);

    // Any offset is taken; the answer is in UTC. A zero fraction (toISOString) is taken.
    let start = OffsetDateTime::from_unix_timestamp((now + 3600) as i64)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap())
        .format(&Rfc3339)
        .unwrap();
    let end = at(now + 7200).replace('Z', ".000Z");
    let made = post(
        &mut http,
        "/v1/bookings",
        &json!({"lot": "M", "plate": "P1", "start": start, "end": end}),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.json()["start"], at(now + 3600));
    assert_eq!(made.json()["end"], at(now + 7200));

    for (start, end, status, code) in [
        (at(now + 7200), at(now + 3600), 422, "BAD_WINDOW"),
        (at(now - 3600), at(now + 3600), 422, "BAD_WINDOW"),
        (
            at(now + 3600),
            at(now + 3600 + 25 * 3600),
            422,
            "BAD_WINDOW",
        ),
        (
            at(now + 31 * 86_400),
            at(now + 31 * 86_400 + 60),
            422,
            "BAD_WINDOW",
        ),
        ((now + 3600).to_string(), at(now + 7200), 400, "BAD_ARGS"),
        (
            at(now + 3600).replace('Z', ".5Z"),
            at(now + 7200),
            400,
            "BAD_ARGS",
        ),
        ("tomorrow".into(), at(now + 7200), 400, "BAD_ARGS"),
    ] {
        let refused = post(
            &mut http,
            "/v1/bookings",
            &json!({"lot": "M", "plate": "P2", "start": start, "end": end}),
        );
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{start} {end}: {}",
            refused.text()
        );
    }
}

#[test]
fn malformed_bodies_and_unknown_ids_get_their_codes() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock);
    let mut http = http(&server);
    let now = unix_now(&clock);
    let good = book("L", "P1", now + 3600, now + 7200);

    let mut unknown_field = good.clone();
    unknown_field["spotId"] = json!("S1");
    let mut no_plate = good.clone();
    no_plate.as_object_mut().unwrap().remove("plate");
    let mut bad_plate = good.clone();
    bad_plate["plate"] = json!("no spaces");
    let mut no_lot = good.clone();
    no_lot["lot"] = json!("Z");
    for (body, status, code) in [
        (unknown_field.to_string(), 400, "BAD_ARGS"),
        (no_plate.to_string(), 400, "BAD_ARGS"),
        (bad_plate.to_string(), 400, "BAD_PLATE"),
        (no_lot.to_string(), 404, "UNKNOWN_LOT"),
        ("[1, 2]".into(), 400, "BAD_ARGS"),
        ("{\"lot\":".into(), 400, "BAD_REQUEST"),
    ] {
        let refused = http.request("POST", "/v1/bookings", Some(&body));
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{body}: {}",
            refused.text()
        );
    }
    for (method, path, status, code) in [
        ("GET", "/v1/bookings/L.99", 404, "UNKNOWN_BOOKING"),
        ("GET", "/v1/bookings/nonsense", 404, "UNKNOWN_BOOKING"),
        ("GET", "/v1/bookings/Z.1", 404, "UNKNOWN_BOOKING"),
        ("POST", "/v1/bookings/L.99/checkin", 404, "UNKNOWN_BOOKING"),
        ("DELETE", "/v1/bookings/L.99", 404, "NOT_FOUND"),
        ("DELETE", "/v1/bookings/nonsense", 404, "NOT_FOUND"),
        ("PUT", "/v1/bookings/L.1", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/v1/bookings", 405, "METHOD_NOT_ALLOWED"),
    ] {
        let refused = http.request(method, path, None);
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{method} {path}"
        );
    }
}

#[test]
fn lots_are_searched_by_window_zone_and_feature() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock);
    let mut http = http(&server);
    let now = unix_now(&clock);
    let (start, end) = (at(now + 3600), at(now + 7200));
    assert_eq!(
        post(
            &mut http,
            "/v1/bookings",
            &book("L", "P1", now + 3600, now + 7200)
        )
        .status,
        201
    );

    let found = http.get(&format!("/v1/lots?start={start}&end={end}"));
    assert_eq!(found.status, 200, "{}", found.text());
    let found = found.json();
    assert_eq!(found.as_array().unwrap().len(), 2, "{found}");
    assert_eq!(found[0]["id"], "L");
    assert_eq!(found[0]["remaining"], 1);
    assert_eq!(found[0]["start"], start.as_str());
    assert_eq!(found[1]["id"], "M");

    let north = http
        .get(&format!("/v1/lots?zone=north&start={start}&end={end}"))
        .json();
    assert_eq!(north.as_array().unwrap().len(), 1, "{north}");
    let ev = http
        .get(&format!("/v1/lots?feature=ev&start={start}&end={end}"))
        .json();
    assert_eq!(
        ev[0]["spots"],
        json!([{"id": "S1", "features": ["covered", "ev"]}])
    );

    // Without the window's ends: 400; a window the rules refuse: 422; none: the lot list.
    let no_end = http.get(&format!("/v1/lots?zone=north&start={start}"));
    assert_eq!((no_end.status, no_end.error()), (400, "BAD_ARGS".into()));
    let backwards = http.get(&format!("/v1/lots?start={end}&end={start}"));
    assert_eq!(
        (backwards.status, backwards.error()),
        (422, "BAD_WINDOW".into())
    );
    assert_eq!(http.get("/v1/lots").json()[0]["capacity"], 10);
}

#[test]
fn a_lots_bookings_are_listed_a_page_at_a_time() {
    let clock = Arc::new(ManualClock::new());
    let server = booking_server(&clock);
    let mut http = http(&server);
    let now = unix_now(&clock);
    for (n, plate) in ["P1", "P2", "P3"].iter().enumerate() {
        let start = now + 3600 * (n as u64 + 1);
        assert_eq!(
            post(
                &mut http,
                "/v1/bookings",
                &book("M", plate, start, start + 600)
            )
            .status,
            201
        );
    }
    let (start, end) = (at(now), at(now + 86_400));
    let page = http.get(&format!(
        "/v1/lots/M/bookings?start={start}&end={end}&limit=2"
    ));
    assert_eq!(page.status, 200, "{}", page.text());
    let ids: Vec<Value> = page
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    assert_eq!(ids, [json!("M.1"), json!("M.2")]);
    let rest = http
        .get(&format!(
            "/v1/lots/M/bookings?start={start}&end={end}&after=M.2"
        ))
        .json();
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["id"], "M.3");

    for (query, status, code) in [
        (format!("start={start}&end={end}&limit=0"), 400, "BAD_ARGS"),
        (
            format!("start={start}&end={end}&after=L.1"),
            400,
            "BAD_ARGS",
        ),
        (format!("start={start}"), 400, "BAD_ARGS"),
        (format!("start={end}&end={start}"), 422, "BAD_WINDOW"),
    ] {
        let refused = http.get(&format!("/v1/lots/M/bookings?{query}"));
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{query}"
        );
    }
    let unknown = http.get(&format!("/v1/lots/Z/bookings?start={start}&end={end}"));
    assert_eq!(
        (unknown.status, unknown.error()),
        (404, "UNKNOWN_LOT".into())
    );
}
