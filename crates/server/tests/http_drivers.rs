//! Drivers and waitlists on the HTTP port (docs/http.md, "Drivers", "Waitlist", "Access
//! control"), over real sockets on a manual clock: registration and login with their limits,
//! the token as a bearer key with role `driver`, `/v1/me`, and the waitlist routes from
//! joining to an accepted offer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use auth::{AuthConfig, KeyConfig, KeyId, Role, token_hash};
use common::{start_on_clock, unix_now};
use serde_json::{Value, json};
use server::{Config, RunningServer};
use state::ManualClock;
use testkit::http::{Http, Response, request};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const PASSWORD: &str = "correct horse";

fn at(unix: u64) -> String {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// Lot `L` with one bookable space (capacity 3) and lot `M`; keys when `keyed`.
fn server(clock: &Arc<ManualClock>, keyed: bool, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    start_on_clock(Arc::clone(clock), |config: &mut Config| {
        config.lots = serde_json::from_value(json!([
            {"id": "L", "capacity": 3, "bookable": 1},
            {"id": "M", "capacity": 5},
        ]))
        .unwrap();
        if keyed {
            config.auth = AuthConfig {
                jwt_secret_file: None,
                keys: [
                    ("kiosk", Role::Client),
                    ("signs", Role::Viewer),
                    ("ops", Role::Operator),
                ]
                .into_iter()
                .map(|(id, role)| KeyConfig {
                    id: KeyId::new(id).unwrap(),
                    role,
                    lots: None,
                    sha256: token_hash(&format!("token-{id}")),
                })
                .collect(),
            };
        }
        tweak(config);
    })
}

fn http(server: &RunningServer) -> Http {
    Http::connect(server.http_addr().unwrap())
}

/// `method path` with `body`, as `token` (none: anonymous).
fn call(
    http: &mut Http,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Response {
    let header = token.map(|token| format!("Authorization: Bearer {token}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    let body = body.map(Value::to_string);
    http.send(request(method, path, body.as_deref(), &headers).as_bytes());
    http.response()
}

fn credentials(username: &str) -> Value {
    json!({"username": username, "password": PASSWORD})
}

/// Registers `username` and logs in: its token.
fn driver(http: &mut Http, username: &str) -> String {
    let made = call(
        http,
        "POST",
        "/v1/auth/register",
        Some(&credentials(username)),
        None,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let login = call(
        http,
        "POST",
        "/v1/auth/login",
        Some(&credentials(username)),
        None,
    );
    assert_eq!(login.status, 200, "{}", login.text());
    login.json()["token"].as_str().unwrap().to_owned()
}

fn booking(lot: &str, plate: &str, start: u64, end: u64) -> Value {
    json!({"lot": lot, "plate": plate, "start": at(start), "end": at(end)})
}

#[test]
fn a_driver_registers_logs_in_and_sees_only_its_own_bookings() {
    let clock = Arc::new(ManualClock::new());
    let server = server(&clock, false, |_| {});
    let mut http = http(&server);
    let now = unix_now(&clock);

    let made = call(
        &mut http,
        "POST",
        "/v1/auth/register",
        Some(&credentials("alice")),
        None,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(
        made.json(),
        json!({"username": "alice", "role": "driver", "createdAt": at(now)})
    );
    assert!(!made.text().contains("argon2"), "the hash is shown");
    for (body, status, code) in [
        (credentials("alice"), 409, "USERNAME_TAKEN"),
        (credentials("Al"), 400, "BAD_USERNAME"),
        (
            json!({"username": "bob", "password": "short"}),
            400,
            "BAD_PASSWORD",
        ),
        (json!({"username": "bob"}), 400, "BAD_ARGS"),
    ] {
        let refused = call(&mut http, "POST", "/v1/auth/register", Some(&body), None);
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{body}"
        );
    }

    let login = call(
        &mut http,
        "POST",
        "/v1/auth/login",
        Some(&credentials("alice")),
        None,
    );
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(login.header("cache-control"), Some("no-store"));
    assert_eq!(login.json()["expiresAt"], at(now + 24 * 3600));
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let wrong = call(
        &mut http,
        "POST",
        "/v1/auth/login",
        Some(&json!({"username": "alice", "password": "not the password"})),
        None,
    );
    assert_eq!((wrong.status, wrong.error()), (401, "UNAUTHORIZED".into()));

    let me = call(&mut http, "GET", "/v1/me", None, Some(&token));
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["username"], "alice");
    let anonymous = call(&mut http, "GET", "/v1/me", None, None);
    assert_eq!(
        (anonymous.status, anonymous.error()),
        (401, "UNAUTHORIZED".into())
    );

    // Alice's bookings are hers; one made without a token is nobody's.
    for (plate, start, token) in [
        ("A1", now + 3600, Some(token.as_str())),
        ("A2", now + 7200, Some(token.as_str())),
        ("X1", now + 3600, None),
    ] {
        let made = call(
            &mut http,
            "POST",
            "/v1/bookings",
            Some(&booking("M", plate, start, start + 600)),
            token,
        );
        assert_eq!(made.status, 201, "{}", made.text());
    }
    assert_eq!(
        call(&mut http, "GET", "/v1/bookings/M.1", None, Some(&token)).json()["owner"],
        "@alice"
    );
    // Another's booking is unknown to her (the owner of M.3 is nobody).
    let other = call(&mut http, "GET", "/v1/bookings/M.3", None, Some(&token));
    assert_eq!(
        (other.status, other.error()),
        (404, "UNKNOWN_BOOKING".into())
    );
    let cancel_other = call(&mut http, "DELETE", "/v1/bookings/M.3", None, Some(&token));
    assert_eq!(cancel_other.status, 404);

    let mine = call(&mut http, "GET", "/v1/me/bookings", None, Some(&token)).json();
    let ids: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    // The latest start first.
    assert_eq!(ids, ["M.2", "M.1"]);
    assert_eq!(
        call(&mut http, "DELETE", "/v1/bookings/M.2", None, Some(&token)).status,
        204
    );
    let upcoming = call(
        &mut http,
        "GET",
        "/v1/me/bookings?upcoming=true",
        None,
        Some(&token),
    )
    .json();
    assert_eq!(upcoming.as_array().unwrap().len(), 1, "{upcoming}");
    assert_eq!(upcoming[0]["id"], "M.1");
    let all = call(
        &mut http,
        "GET",
        "/v1/me/bookings?upcoming=false",
        None,
        Some(&token),
    )
    .json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    // The cancelled one is gone from its path but stays in her list.
    assert_eq!(
        (&all[0]["id"], &all[0]["status"]),
        (&json!("M.2"), &json!("CANCELLED"))
    );
    let gone = call(&mut http, "GET", "/v1/bookings/M.2", None, Some(&token));
    assert_eq!((gone.status, gone.error()), (410, "CANCELLED".into()));
    let bad = call(
        &mut http,
        "GET",
        "/v1/me/bookings?upcoming=soon",
        None,
        Some(&token),
    );
    assert_eq!((bad.status, bad.error()), (400, "BAD_ARGS".into()));
}

#[test]
fn a_token_that_ran_out_or_was_tampered_with_is_refused() {
    let clock = Arc::new(ManualClock::new());
    let server = server(&clock, false, |config| config.jwt_ttl_hours = 1);
    let mut http = http(&server);
    let token = driver(&mut http, "alice");
    assert_eq!(
        call(&mut http, "GET", "/v1/me", None, Some(&token)).status,
        200
    );

    let mut tampered = token.clone().into_bytes();
    let middle = token.find('.').unwrap() + 3;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for token in [tampered.as_str(), "not-a-jwt", "a.b.c"] {
        let refused = call(&mut http, "GET", "/v1/me", None, Some(token));
        assert_eq!(
            (refused.status, refused.error()),
            (401, "UNAUTHORIZED".into()),
            "{token}"
        );
        assert!(!refused.text().contains(token), "the token is echoed");
    }
    // With access control off, a bad driver's token is refused rather than ignored: a
    // booking must not silently become nobody's.
    let now = unix_now(&clock);
    let booked = call(
        &mut http,
        "POST",
        "/v1/bookings",
        Some(&booking("M", "P1", now + 3600, now + 7200)),
        Some(&tampered),
    );
    assert_eq!(booked.status, 401);

    clock.advance(Duration::from_secs(3600));
    let expired = call(&mut http, "GET", "/v1/me", None, Some(&token));
    assert_eq!(
        (expired.status, expired.error()),
        (401, "UNAUTHORIZED".into())
    );
}

#[test]
fn registrations_and_failed_logins_are_limited_per_address() {
    let clock = Arc::new(ManualClock::new());
    let server = server(&clock, false, |_| {});
    let addr = server.http_addr().unwrap();
    let from = |last: u8| Http::over(testkit::connect_from(IpAddr::from([127, 0, 0, last]), addr));
    let mut first = from(2);
    for n in 0..accounts::REGISTRATIONS_PER_ADDRESS {
        let made = call(
            &mut first,
            "POST",
            "/v1/auth/register",
            Some(&credentials(&format!("d{n:02}"))),
            None,
        );
        assert_eq!(made.status, 201, "{}", made.text());
    }
    let refused = call(
        &mut first,
        "POST",
        "/v1/auth/register",
        Some(&credentials("one-more")),
        None,
    );
    assert_eq!(
        (refused.status, refused.error()),
        (429, "RATE_LIMITED".into())
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    // A refused name does not count, and another address is not affected.
    let mut second = from(3);
    assert_eq!(
        call(
            &mut second,
            "POST",
            "/v1/auth/register",
            Some(&credentials("X")),
            None
        )
        .status,
        400
    );
    assert_eq!(
        call(
            &mut second,
            "POST",
            "/v1/auth/register",
            Some(&credentials("one-more")),
            None
        )
        .status,
        201
    );

    // Logins: five failures lock the username out, even with the right password.
    let wrong = json!({"username": "one-more", "password": "not the password"});
    for _ in 0..accounts::FAILURES_PER_USERNAME {
        assert_eq!(
            call(&mut second, "POST", "/v1/auth/login", Some(&wrong), None).status,
            401
        );
    }
    let locked = call(
        &mut second,
        "POST",
        "/v1/auth/login",
        Some(&credentials("one-more")),
        None,
    );
    assert_eq!(
        (locked.status, locked.error()),
        (429, "RATE_LIMITED".into())
    );
    assert!(locked.header("retry-after").is_some());
}

#[test]
fn with_keys_a_driver_has_the_driver_s_rights_and_the_me_routes_are_drivers_only() {
    let clock = Arc::new(ManualClock::new());
    let server = server(&clock, true, |_| {});
    let mut http = http(&server);
    // The account routes need no key.
    let alice = driver(&mut http, "alice");
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);

    let made = call(
        &mut http,
        "POST",
        "/v1/bookings",
        Some(&booking("M", "A1", start, end)),
        Some(&alice),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.json()["owner"], "@alice");
    let kiosk = call(
        &mut http,
        "POST",
        "/v1/bookings",
        Some(&booking("M", "K1", start, end)),
        Some("token-kiosk"),
    );
    assert_eq!(kiosk.json()["owner"], "kiosk");

    for (method, path, body, token, status, code) in [
        ("GET", "/v1/me", None, None, 401, "UNAUTHORIZED"),
        ("GET", "/v1/me", None, Some("token-kiosk"), 403, "FORBIDDEN"),
        (
            "GET",
            "/v1/me/bookings",
            None,
            Some("token-ops"),
            403,
            "FORBIDDEN",
        ),
        (
            "GET",
            "/v1/me/waitlist",
            None,
            Some("token-signs"),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            "/v1/bookings",
            Some(booking("M", "X", start, end)),
            None,
            401,
            "UNAUTHORIZED",
        ),
        (
            "POST",
            "/v1/bookings",
            Some(booking("M", "X", start, end)),
            Some("token-signs"),
            403,
            "FORBIDDEN",
        ),
        (
            "GET",
            "/v1/bookings/M.1",
            None,
            Some("token-signs"),
            403,
            "FORBIDDEN",
        ),
        (
            "GET",
            "/v1/bookings/M.2",
            None,
            Some(&alice),
            404,
            "UNKNOWN_BOOKING",
        ),
        (
            "GET",
            "/v1/bookings/M.1",
            None,
            Some("token-kiosk"),
            404,
            "UNKNOWN_BOOKING",
        ),
        (
            "DELETE",
            "/v1/bookings/M.2",
            None,
            Some(&alice),
            404,
            "NOT_FOUND",
        ),
        (
            "POST",
            "/v1/bookings/M.2/checkin",
            None,
            Some(&alice),
            404,
            "UNKNOWN_BOOKING",
        ),
        (
            "GET",
            "/v1/lots/M/bookings?start=2026-01-01T00:00:00Z&end=2099-01-01T00:00:00Z",
            None,
            Some(&alice),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            "/v1/lots/M/reservations",
            Some(json!({"plate": "A1"})),
            Some(&alice),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            "/v1/waitlist",
            Some(booking("L", "X", start, end)),
            Some("token-signs"),
            403,
            "FORBIDDEN",
        ),
        (
            "DELETE",
            "/v1/waitlist/L.w1",
            None,
            None,
            401,
            "UNAUTHORIZED",
        ),
    ] {
        let refused = call(&mut http, method, path, body.as_ref(), token);
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{method} {path} as {token:?}: {}",
            refused.text()
        );
    }
    // What she may: read like a viewer, her own bookings, and the operator reads anyone's.
    assert_eq!(
        call(&mut http, "GET", "/v1/lots", None, Some(&alice)).status,
        200
    );
    assert_eq!(
        call(&mut http, "GET", "/v1/bookings/M.1", None, Some(&alice)).status,
        200
    );
    assert_eq!(
        call(
            &mut http,
            "GET",
            "/v1/bookings/M.1",
            None,
            Some("token-ops")
        )
        .status,
        200
    );
    let mine = call(&mut http, "GET", "/v1/me/bookings", None, Some(&alice)).json();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(
        call(&mut http, "DELETE", "/v1/bookings/M.1", None, Some(&alice)).status,
        204
    );
}

#[test]
fn a_driver_waits_is_offered_the_freed_space_and_accepts_it() {
    let clock = Arc::new(ManualClock::new());
    let server = server(&clock, false, |_| {});
    let mut http = http(&server);
    let (alice, bob) = (driver(&mut http, "alice"), driver(&mut http, "bob"));
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);

    // Bob holds L's one bookable space; alice's booking is refused as full, so she may wait.
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/bookings",
            Some(&booking("L", "B1", start, end)),
            Some(&bob)
        )
        .status,
        201
    );
    let full = call(
        &mut http,
        "POST",
        "/v1/bookings",
        Some(&booking("L", "A1", start, end)),
        Some(&alice),
    );
    assert_eq!((full.status, full.error()), (409, "FULL".into()));
    let joined = call(
        &mut http,
        "POST",
        "/v1/waitlist",
        Some(&booking("L", "A1", start, end)),
        Some(&alice),
    );
    assert_eq!(joined.status, 201, "{}", joined.text());
    let entry = joined.json();
    assert_eq!(entry["id"], "L.w1");
    assert_eq!(entry["status"], "WAITING");
    assert_eq!(entry["owner"], "@alice");
    assert_eq!(entry["joinedAt"], at(now));
    assert_eq!(joined.header("location"), Some("/v1/waitlist/L.w1"));

    for (body, status, code) in [
        (booking("L", "A1", start, end), 409, "ALREADY_WAITING"),
        (booking("M", "A1", start, end), 409, "NOT_FULL"),
        (booking("L", "A1", end, start), 422, "BAD_WINDOW"),
        (booking("Z", "A1", start, end), 404, "UNKNOWN_LOT"),
    ] {
        let refused = call(&mut http, "POST", "/v1/waitlist", Some(&body), Some(&alice));
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{body}"
        );
    }
    let early = call(
        &mut http,
        "POST",
        "/v1/waitlist/L.w1/accept",
        None,
        Some(&alice),
    );
    assert_eq!((early.status, early.error()), (409, "NO_OFFER".into()));
    // The entry is hers: bob neither sees, accepts nor removes it.
    for (method, path, status, code) in [
        ("GET", "/v1/waitlist/L.w1", 404, "UNKNOWN_ENTRY"),
        ("POST", "/v1/waitlist/L.w1/accept", 404, "UNKNOWN_ENTRY"),
        ("DELETE", "/v1/waitlist/L.w1", 404, "NOT_FOUND"),
        ("GET", "/v1/waitlist/nonsense", 404, "UNKNOWN_ENTRY"),
    ] {
        let refused = call(&mut http, method, path, None, Some(&bob));
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{method} {path}"
        );
    }
    assert_eq!(
        call(&mut http, "GET", "/v1/me/waitlist", None, Some(&bob)).json(),
        json!([])
    );

    // Bob cancels: the space is offered to alice, held for offer_minutes.
    assert_eq!(
        call(&mut http, "DELETE", "/v1/bookings/L.1", None, Some(&bob)).status,
        204
    );
    let mine = call(&mut http, "GET", "/v1/me/waitlist", None, Some(&alice)).json();
    assert_eq!(mine[0]["status"], "OFFERED", "{mine}");
    assert_eq!(mine[0]["offer"]["expiresAt"], at(now + 600));
    let offered = mine[0]["offer"]["booking"].as_str().unwrap().to_owned();
    let held = call(
        &mut http,
        "GET",
        &format!("/v1/bookings/{offered}"),
        None,
        Some(&alice),
    )
    .json();
    assert_eq!(held["status"], "OFFERED");
    assert_eq!(held["offeredUntil"], at(now + 600));

    let accepted = call(
        &mut http,
        "POST",
        "/v1/waitlist/L.w1/accept",
        None,
        Some(&alice),
    );
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(accepted.json()["status"], "CONFIRMED");
    assert_eq!(accepted.json()["id"], offered.as_str());
    assert_eq!(
        accepted.header("location"),
        Some(format!("/v1/bookings/{offered}").as_str())
    );
    let upcoming = call(
        &mut http,
        "GET",
        "/v1/me/bookings?upcoming=true",
        None,
        Some(&alice),
    )
    .json();
    assert_eq!(upcoming[0]["id"], offered.as_str());
}

#[test]
fn an_offer_not_accepted_in_time_passes_to_the_next_entry_and_leaving_releases_it() {
    let clock = Arc::new(ManualClock::new());
    let server = server(&clock, false, |_| {});
    let mut http = http(&server);
    let (alice, bob, carol) = (
        driver(&mut http, "alice"),
        driver(&mut http, "bob"),
        driver(&mut http, "carol"),
    );
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/bookings",
            Some(&booking("L", "C1", start, end)),
            Some(&carol)
        )
        .status,
        201
    );
    for (token, plate) in [(&alice, "A1"), (&bob, "B1")] {
        assert_eq!(
            call(
                &mut http,
                "POST",
                "/v1/waitlist",
                Some(&booking("L", plate, start, end)),
                Some(token)
            )
            .status,
            201
        );
    }
    assert_eq!(
        call(&mut http, "DELETE", "/v1/bookings/L.1", None, Some(&carol)).status,
        204
    );
    let status = |http: &mut Http, token: &str| {
        call(http, "GET", "/v1/me/waitlist", None, Some(token)).json()[0]["status"].clone()
    };
    assert_eq!(status(&mut http, &alice), "OFFERED");
    assert_eq!(status(&mut http, &bob), "WAITING");

    // Ten minutes on, alice's offer has run out and she has left the line; bob has it.
    clock.advance(Duration::from_secs(600));
    testkit::eventually("the offer passes to bob", || {
        status(&mut http, &bob) == "OFFERED"
    });
    assert_eq!(
        call(&mut http, "GET", "/v1/me/waitlist", None, Some(&alice)).json(),
        json!([])
    );
    let late = call(
        &mut http,
        "POST",
        "/v1/waitlist/L.w1/accept",
        None,
        Some(&alice),
    );
    assert_eq!(late.status, 404, "{}", late.text());

    // Bob leaves instead of accepting: the space is free again.
    assert_eq!(
        call(&mut http, "DELETE", "/v1/waitlist/L.w2", None, Some(&bob)).status,
        204
    );
    assert_eq!(
        call(&mut http, "DELETE", "/v1/waitlist/L.w2", None, Some(&bob)).status,
        404
    );
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/bookings",
            Some(&booking("L", "C2", start, end)),
            Some(&carol)
        )
        .status,
        201
    );
}

#[test]
fn a_driver_s_event_stream_carries_its_own_notices_live() {
    let clock = Arc::new(ManualClock::new());
    let server = server(&clock, true, |_| {});
    let mut http = http(&server);
    let (alice, bob) = (driver(&mut http, "alice"), driver(&mut http, "bob"));
    let now = unix_now(&clock);
    let (start, end) = (now + 3600, now + 7200);

    // Only a driver has a notice stream.
    let keyed = call(&mut http, "GET", "/v1/me/events", None, Some("token-ops"));
    assert_eq!((keyed.status, keyed.error()), (403, "FORBIDDEN".into()));
    let anonymous = call(&mut http, "GET", "/v1/me/events", None, None);
    assert_eq!(anonymous.status, 401);

    // Alice's stream, with the token as EventSource sends it.
    let mut stream = Http::connect(server.http_addr().unwrap());
    stream.send(
        request(
            "GET",
            &format!("/v1/me/events?access_token={alice}"),
            None,
            &[],
        )
        .as_bytes(),
    );
    let head = stream.stream_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));

    // Bob's booking and its cancellation are his: alice hears only her offer.
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/bookings",
            Some(&booking("L", "B1", start, end)),
            Some(&bob)
        )
        .status,
        201
    );
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/waitlist",
            Some(&booking("L", "A1", start, end)),
            Some(&alice)
        )
        .status,
        201
    );
    assert_eq!(
        call(&mut http, "DELETE", "/v1/bookings/L.1", None, Some(&bob)).status,
        204
    );
    let offer = stream.event();
    assert_eq!(offer.event, "waitlist_offer", "{offer:?}");
    let entry = offer.json();
    assert_eq!(entry["id"], "L.w1");
    assert_eq!(entry["owner"], "@alice");
    assert_eq!(entry["offer"]["expiresAt"], at(now + 600));

    // Accepting confirms the booking: its notice follows on the stream.
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/waitlist/L.w1/accept",
            None,
            Some(&alice)
        )
        .status,
        200
    );
    let confirmed = stream.event();
    assert_eq!(confirmed.event, "booking", "{confirmed:?}");
    assert_eq!(confirmed.json()["status"], "CONFIRMED");
    assert_eq!(confirmed.json()["owner"], "@alice");
}
