//! Access control over real sockets, on every port: the role table row by row (bookings and
//! the gate lines included), each error code, five wrong tokens closing the connection,
//! `auth_timeout`, reservation and booking ownership (and that it survives the state being
//! rebuilt from its changes, and for reservations a restart over PostgreSQL), and a server
//! without keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth::{AuthConfig, KeyConfig, KeyId, Role, token_hash};
use common::{DEADLINE, RawLines, RawRpc, error_code};
use server::{Config, PostgresConfig, RunningServer, Server, StoreConfig};
use shutdown::ShutdownHandle;
use state::{LotId, ParkingState, SystemClock};
use store::MemoryStore;
use testkit::pg::TempPostgres;

/// Every key of the tests: id, role, and for the sensor its lot. Each key's token is
/// `token-<id>`.
const KEYS: [(&str, Role, Option<&str>); 5] = [
    ("gate-A", Role::Sensor, Some("A")),
    ("kiosk-1", Role::Client, None),
    ("kiosk-2", Role::Client, None),
    ("signs", Role::Viewer, None),
    ("ops", Role::Operator, None),
];

fn token(id: &str) -> String {
    format!("token-{id}")
}

fn keys() -> AuthConfig {
    AuthConfig {
        jwt_secret_file: None,
        keys: KEYS
            .iter()
            .map(|&(id, role, lot)| KeyConfig {
                id: KeyId::new(id).unwrap(),
                role,
                lots: lot.map(|lot| vec![LotId::new(lot).unwrap()]),
                sha256: token_hash(&token(id)),
            })
            .collect(),
    }
}

fn start_keyed(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    common::start_with(|config| {
        config.thread_pool_size = 2;
        config.sensor_pool_size = 1;
        config.notifier_threads = 1;
        config.auth = keys();
        tweak(config);
    })
}

fn rpc_as(server: &RunningServer, id: &str) -> RawRpc {
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let role = KEYS.iter().find(|key| key.0 == id).unwrap().1;
    assert_eq!(
        rpc.text(&format!("AUTH {}", token(id))),
        format!("OK {id} {role}")
    );
    rpc
}

fn lines_as(addr: std::net::SocketAddr, id: &str) -> RawLines {
    let mut lines = RawLines::connect(addr);
    assert_eq!(
        lines.call(&format!("AUTH {}", token(id))),
        format!("OK {id}")
    );
    lines
}

#[test]
fn rpc_port_follows_the_role_table() {
    let server = start_keyed(|_| {});
    // (key, lots, avail, reserve, cancel): the reply, or the error code.
    let table = [
        ("signs", "ok", "ok", "FORBIDDEN", "FORBIDDEN"),
        ("kiosk-1", "ok", "ok", "OK", "OK"),
        ("gate-A", "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "FORBIDDEN"),
        ("ops", "ok", "ok", "OK", "OK"),
    ];
    for (id, lots, avail, reserve, cancel) in table {
        let mut rpc = rpc_as(&server, id);
        let outcome = |reply: String| match reply.strip_prefix("ERR ") {
            Some(error) => error.split(' ').next().unwrap().to_owned(),
            None => reply,
        };
        let read = |reply: String| {
            let reply = outcome(reply);
            if reply == "FORBIDDEN" {
                reply
            } else {
                "ok".into()
            }
        };
        assert_eq!(read(rpc.text("LOTS")), lots, "{id} LOTS");
        assert_eq!(read(rpc.text("AVAIL A")), avail, "{id} AVAIL");
        let plate = format!("P{}", id.len());
        assert_eq!(
            outcome(rpc.text(&format!("RESERVE A {plate}"))),
            reserve,
            "{id} RESERVE"
        );
        assert_eq!(
            outcome(rpc.text(&format!("CANCEL A {plate}"))),
            cancel,
            "{id} CANCEL"
        );
        assert_eq!(rpc.text("PING"), "PONG", "{id} PING");
    }
    let mut viewer = rpc_as(&server, "signs");
    let refused = viewer.json(r#"{"rpcId": 4, "method": "reserve", "args": ["A", "X1"]}"#);
    assert_eq!(error_code(&refused), "FORBIDDEN");
    assert_eq!(refused["rpcId"], 4);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("key signs (viewer) may not reserve"),
        "{refused}"
    );
}

/// Now, in Unix seconds, as the bookings' windows are written.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A text reply as one word: the error code, `json` for a JSON value, or the reply itself.
fn word(reply: &str) -> String {
    match reply.strip_prefix("ERR ") {
        Some(error) => error.split(' ').next().unwrap().to_owned(),
        None if reply.starts_with('{') || reply.starts_with('[') => "json".into(),
        None => reply.to_owned(),
    }
}

/// Books `plate` in lot A from `start` for an hour as `rpc`'s key; returns the booking.
fn book(rpc: &mut RawRpc, plate: &str, start: u64) -> serde_json::Value {
    let reply = rpc.text(&format!("BOOK A {plate} {start} {}", start + 3600));
    serde_json::from_str(&reply).unwrap_or_else(|_| panic!("BOOK answered {reply}"))
}

#[test]
fn rpc_booking_methods_follow_the_role_table() {
    let server = start_keyed(|_| {});
    let later = unix_now() + 86_400;
    let mut ops = rpc_as(&server, "ops");
    // (key, book, findLots, getBooking, checkIn, cancelBooking, listBookings). The key reads,
    // checks in and cancels a booking of its own when it may book, else one of the operator's.
    let table = [
        (
            "signs",
            [
                "FORBIDDEN",
                "json",
                "FORBIDDEN",
                "FORBIDDEN",
                "FORBIDDEN",
                "FORBIDDEN",
            ],
        ),
        (
            "kiosk-1",
            ["json", "json", "json", "NOT_DUE", "OK", "FORBIDDEN"],
        ),
        (
            "gate-A",
            [
                "FORBIDDEN",
                "FORBIDDEN",
                "FORBIDDEN",
                "FORBIDDEN",
                "FORBIDDEN",
                "FORBIDDEN",
            ],
        ),
        ("ops", ["json", "json", "json", "NOT_DUE", "OK", "json"]),
    ];
    for (n, (id, expected)) in table.into_iter().enumerate() {
        let mut rpc = rpc_as(&server, id);
        let plate = format!("RT{n}");
        let reply = rpc.text(&format!("BOOK A {plate} {later} {}", later + 3600));
        let booking = match serde_json::from_str::<serde_json::Value>(&reply) {
            Ok(mine) => mine,
            Err(_) => book(&mut ops, &plate, later),
        };
        let booking = booking["id"].as_str().unwrap().to_owned();
        let find = format!("FIND start={later}&end={}", later + 3600);
        let got = [
            word(&reply),
            word(&rpc.text(&find)),
            word(&rpc.text(&format!("BOOKING {booking}"))),
            word(&rpc.text(&format!("CHECKIN {booking}"))),
            word(&rpc.text(&format!("CANCELBOOKING {booking}"))),
            word(&rpc.text(&format!("BOOKINGS A {later} {}", later + 1))),
        ];
        assert_eq!(got, expected.map(String::from), "{id}");
    }
    let mut kiosk = rpc_as(&server, "kiosk-1");
    assert_eq!(
        kiosk.text(&format!("BOOKINGS A {later} {}", later + 1)),
        "ERR FORBIDDEN key kiosk-1 (client) may not list bookings"
    );
    let mut viewer = rpc_as(&server, "signs");
    let refused = viewer.json(&format!(
        r#"{{"rpcId": 9, "method": "book", "args": ["A", "V1", {later}, {}]}}"#,
        later + 60
    ));
    assert_eq!(error_code(&refused), "FORBIDDEN");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("key signs (viewer) may not book"),
        "{refused}"
    );
    // Unauthenticated, a booking method is refused before anything is looked at.
    let mut anonymous = RawRpc::connect(server.rpc_addr());
    assert!(
        anonymous
            .text("BOOKING A.1")
            .starts_with("ERR UNAUTHORIZED authenticate first")
    );
}

#[test]
fn a_booking_belongs_to_the_key_that_made_it() {
    let server = start_keyed(|_| {});
    let now = unix_now();
    let mut kiosk1 = rpc_as(&server, "kiosk-1");
    let mut kiosk2 = rpc_as(&server, "kiosk-2");
    let mut ops = rpc_as(&server, "ops");
    let mine = book(&mut kiosk1, "OWNB1", now);
    assert_eq!(mine["owner"], "kiosk-1");
    let id = mine["id"].as_str().unwrap().to_owned();
    // Another client cannot read, check in or cancel it, and is not told that it exists.
    let unknown = format!("ERR UNKNOWN_BOOKING no booking with id \"{id}\"");
    assert_eq!(kiosk2.text(&format!("BOOKING {id}")), unknown);
    assert_eq!(
        kiosk2.text(&format!("BOOKING {}.999", id.split('.').next().unwrap())),
        unknown.replace(&id, &format!("{}.999", id.split('.').next().unwrap()))
    );
    assert_eq!(kiosk2.text(&format!("CHECKIN {id}")), unknown);
    assert_eq!(kiosk2.text(&format!("CANCELBOOKING {id}")), "NOT_FOUND");
    let json = kiosk2.json(&format!(
        r#"{{"rpcId": 1, "method": "cancelBooking", "args": ["{id}"]}}"#
    ));
    assert_eq!(json["result"], false);
    // Its owner can; the operator sees it, with its owner, among the lot's bookings.
    assert_eq!(word(&kiosk1.text(&format!("BOOKING {id}"))), "json");
    let listed: serde_json::Value =
        serde_json::from_str(&ops.text(&format!("BOOKINGS A {now} {}", now + 3600))).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|booking| booking["id"] == id.as_str() && booking["owner"] == "kiosk-1"),
        "{listed}"
    );
    let checked: serde_json::Value =
        serde_json::from_str(&kiosk1.text(&format!("CHECKIN {id}"))).unwrap();
    assert_eq!(checked["status"], "CHECKED_IN");
    // An operator may cancel anyone's; then there is nothing left for its owner to cancel.
    let other = book(&mut kiosk1, "OWNB2", now + 7200);
    let other = other["id"].as_str().unwrap();
    assert_eq!(word(&ops.text(&format!("BOOKING {other}"))), "json");
    assert_eq!(ops.text(&format!("CANCELBOOKING {other}")), "OK");
    assert_eq!(kiosk1.text(&format!("CANCELBOOKING {other}")), "NOT_FOUND");
}

#[test]
fn gate_lines_follow_the_role_table() {
    let server = start_keyed(|_| {});
    let mut kiosk = rpc_as(&server, "kiosk-1");
    let booking = book(&mut kiosk, "GATE1", unix_now());
    let mut before = RawLines::connect(server.sensor_addr());
    assert!(
        before
            .call("ENTER A GATE1")
            .starts_with("ERR UNAUTHORIZED authenticate first")
    );
    for id in ["signs", "kiosk-1"] {
        let mut lines = lines_as(server.sensor_addr(), id);
        for line in ["ENTER A GATE1", "EXIT A GATE1"] {
            assert!(
                lines.call(line).starts_with("ERR FORBIDDEN"),
                "{id}: {line}"
            );
        }
    }
    let mut gate = lines_as(server.sensor_addr(), "gate-A");
    assert_eq!(
        gate.call("ENTER B GATE1"),
        "ERR FORBIDDEN key gate-A (sensor) may not pass the gate of lot \"B\""
    );
    // Refused before the plate is checked: a key learns nothing of another lot's gate.
    assert!(gate.call("ENTER B no/plate").starts_with("ERR FORBIDDEN"));
    assert!(gate.call("ENTER A no/plate").starts_with("ERR BAD_PLATE"));
    // The lot's own gate checks the booking in, whoever made it.
    let entered = gate.call("ENTER A GATE1");
    assert!(
        entered.ends_with(&format!(" BOOKING {}", booking["id"].as_str().unwrap())),
        "{entered}"
    );
    assert!(gate.call("EXIT A GATE1").starts_with("OK "));
    let mut ops = lines_as(server.sensor_addr(), "ops");
    assert!(ops.call("ENTER B DRIVEUP").starts_with("OK "));
    assert!(ops.call("EXIT B DRIVEUP").starts_with("OK "));
}

#[test]
fn rpc_json_auth_answers_the_key_and_unauthenticated_requests_are_refused() {
    let server = start_keyed(|_| {});
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("PING"), "PONG");
    assert!(
        rpc.text("LOTS")
            .starts_with("ERR UNAUTHORIZED authenticate first")
    );
    let refused = rpc.json(r#"{"rpcId": 1, "method": "getLots", "args": []}"#);
    assert_eq!(error_code(&refused), "UNAUTHORIZED");
    let wrong = rpc.json(r#"{"rpcId": 2, "method": "auth", "args": ["nope"]}"#);
    assert_eq!(error_code(&wrong), "UNAUTHORIZED");
    assert!(
        wrong["error"]
            .as_str()
            .unwrap()
            .contains("4 attempt(s) left")
    );
    let granted = rpc.json(r#"{"rpcId": 3, "method": "auth", "args": ["token-kiosk-1"]}"#);
    assert_eq!(granted["result"]["id"], "kiosk-1");
    assert_eq!(granted["result"]["role"], "client");
    assert_eq!(granted["error"], serde_json::Value::Null);
    let lots = rpc.json(r#"{"rpcId": 4, "method": "getLots", "args": []}"#);
    assert!(lots["result"].is_array(), "{lots}");
}

#[test]
fn sensor_port_follows_the_role_table() {
    let server = start_keyed(|_| {});
    let mut before = RawLines::connect(server.sensor_addr());
    assert_eq!(before.call("PING"), "PONG");
    assert!(
        before
            .call("UPDATE A 1")
            .starts_with("ERR UNAUTHORIZED authenticate first")
    );
    for (id, update_a, update_b) in [
        ("gate-A", "OK", "FORBIDDEN"),
        ("signs", "FORBIDDEN", "FORBIDDEN"),
        ("kiosk-1", "FORBIDDEN", "FORBIDDEN"),
        ("ops", "OK", "OK"),
    ] {
        let mut sensor = lines_as(server.sensor_addr(), id);
        // `OK <free>` or `ERR <CODE> ...`: the first word that is not ERR.
        let outcome = |reply: &str| {
            let mut words = reply.split(' ');
            match words.next() {
                Some("ERR") => words.next().unwrap_or_default().to_owned(),
                first => first.unwrap_or_default().to_owned(),
            }
        };
        let a = sensor.call("UPDATE A 3");
        assert_eq!(outcome(&a), update_a, "{id}: {a}");
        let b = sensor.call("UPDATE B +1");
        assert_eq!(outcome(&b), update_b, "{id}: {b}");
        assert_eq!(sensor.call("PING"), "PONG");
    }
    let mut gate = lines_as(server.sensor_addr(), "gate-A");
    assert_eq!(
        gate.call("UPDATE B 0"),
        "ERR FORBIDDEN key gate-A (sensor) may not update lot \"B\""
    );
}

#[test]
fn pubsub_port_follows_the_role_table() {
    let server = start_keyed(|_| {});
    let mut before = RawLines::connect(server.pubsub_addr());
    assert!(
        before
            .call("SUBSCRIBE A")
            .starts_with("ERR UNAUTHORIZED authenticate first")
    );
    for (id, allowed) in [
        ("signs", true),
        ("kiosk-1", true),
        ("ops", true),
        ("gate-A", false),
    ] {
        let mut subscriber = lines_as(server.pubsub_addr(), id);
        let reply = subscriber.call("SUBSCRIBE A");
        if allowed {
            assert!(reply.starts_with("OK "), "{id}: {reply}");
            assert!(subscriber.line().contains("\"SNAPSHOT\""), "{id}");
        } else {
            assert_eq!(
                reply, "ERR FORBIDDEN key gate-A (sensor) may not read",
                "{id}"
            );
        }
    }
}

#[test]
fn five_wrong_tokens_close_the_connection_on_every_port() {
    let server = start_keyed(|_| {});
    let mut rpc = RawRpc::connect(server.rpc_addr());
    for left in (1..5).rev() {
        assert_eq!(
            rpc.text("AUTH wrong"),
            format!("ERR UNAUTHORIZED wrong token; {left} attempt(s) left on this connection")
        );
    }
    assert_eq!(
        rpc.text("AUTH wrong"),
        "ERR UNAUTHORIZED wrong token; 5 failed attempts, closing"
    );
    rpc.expect_closed(DEADLINE);
    for addr in [server.sensor_addr(), server.pubsub_addr()] {
        let mut lines = RawLines::connect(addr);
        for _ in 0..4 {
            assert!(
                lines
                    .call("AUTH wrong")
                    .starts_with("ERR UNAUTHORIZED wrong token;")
            );
        }
        assert_eq!(
            lines.call("AUTH wrong"),
            "ERR UNAUTHORIZED wrong token; 5 failed attempts, closing"
        );
        lines.expect_closed(DEADLINE);
    }
    // A right token after failures works, on a fresh connection as on the same one.
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert!(rpc.text("AUTH wrong").starts_with("ERR UNAUTHORIZED"));
    assert_eq!(rpc.text("AUTH token-ops"), "OK ops operator");
}

#[test]
fn unauthenticated_connections_are_closed_after_auth_timeout() {
    // A second, not less: the PING below and the other client's AUTH must each be answered
    // within it of their connect, which a loaded machine can delay by hundreds of ms.
    let server = start_keyed(|config| config.auth_timeout = Duration::from_secs(1));
    let mut rpc = RawRpc::connect(server.rpc_addr());
    // PING is allowed, but does not count as authenticating.
    assert_eq!(rpc.text("PING"), "PONG");
    let sensor = RawLines::connect(server.sensor_addr());
    let subscriber = RawLines::connect(server.pubsub_addr());
    let mut authenticated = rpc_as(&server, "signs");
    rpc.expect_closed(DEADLINE);
    sensor.expect_closed(DEADLINE);
    subscriber.expect_closed(DEADLINE);
    assert_eq!(authenticated.text("PING"), "PONG");
}

#[test]
fn a_reservation_belongs_to_the_key_that_made_it() {
    let server = start_keyed(|_| {});
    let mut kiosk1 = rpc_as(&server, "kiosk-1");
    let mut kiosk2 = rpc_as(&server, "kiosk-2");
    let mut ops = rpc_as(&server, "ops");
    assert_eq!(kiosk1.text("RESERVE A OWN1"), "OK");
    // Another client cannot cancel it, and is not told whose it is.
    assert_eq!(kiosk2.text("CANCEL A OWN1"), "NOT_FOUND");
    let json = kiosk2.json(r#"{"rpcId": 1, "method": "cancel", "args": ["A", "OWN1"]}"#);
    assert_eq!(json["result"], false);
    assert_eq!(kiosk1.text("CANCEL A OWN1"), "OK");
    assert_eq!(kiosk1.text("RESERVE A OWN2"), "OK");
    assert_eq!(ops.text("CANCEL A OWN2"), "OK");
    assert_eq!(kiosk1.text("CANCEL A OWN2"), "NOT_FOUND");
}

/// The durable stores rebuild the state by replaying its `state::Change`s; a reservation's
/// change and a booking's carry their owner. Rebuilding a second server's state from the first one's changes
/// (what a restart on the embedded store does) keeps who may cancel what.
#[test]
fn ownership_survives_rebuilding_the_state_from_its_changes() {
    let first = start_keyed(|_| {});
    let mut kiosk1 = rpc_as(&first, "kiosk-1");
    assert_eq!(kiosk1.text("RESERVE B KEEP1"), "OK");
    let booking = book(&mut kiosk1, "KEEPB", unix_now() + 3600);
    let booking = booking["id"].as_str().unwrap().to_owned();
    let changes = first.state().image();
    assert!(changes.iter().any(|change| matches!(
        change,
        state::Change::Reservation { owner: Some(owner), .. } if owner == "kiosk-1"
    )));
    drop(kiosk1);
    drop(first);

    let mut config = Config::ephemeral();
    config.auth = keys();
    config.thread_pool_size = 2;
    config.sensor_pool_size = 1;
    config.notifier_threads = 1;
    let state = Arc::new(
        ParkingState::new(
            config.lot_specs(),
            config.reservation_ttl,
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    for change in &changes {
        state.apply(change).unwrap();
    }
    let second = Server::new(config)
        .with_store(Arc::new(MemoryStore::new(state)))
        .start(ShutdownHandle::new())
        .unwrap();
    let mut kiosk2 = rpc_as(&second, "kiosk-2");
    assert_eq!(kiosk2.text("CANCEL B KEEP1"), "NOT_FOUND");
    assert_eq!(
        kiosk2.text(&format!("CANCELBOOKING {booking}")),
        "NOT_FOUND"
    );
    let mut kiosk1 = rpc_as(&second, "kiosk-1");
    assert_eq!(kiosk1.text("CANCEL B KEEP1"), "OK");
    assert_eq!(kiosk1.text(&format!("CANCELBOOKING {booking}")), "OK");
}

/// Over PostgreSQL the owner is stored with the reservation: another node sees it, and so
/// does a node started after every node that was running has stopped (a restart).
#[test]
fn ownership_is_stored_in_postgres_across_nodes_and_a_restart() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let on_pg = |config: &mut Config| {
        config.store = StoreConfig::Postgres(PostgresConfig {
            url: pg.url(),
            pool_size: 2,
            timeout: Duration::from_secs(5),
        });
    };
    let first = start_keyed(on_pg);
    let second = start_keyed(on_pg);
    let mut kiosk1 = rpc_as(&first, "kiosk-1");
    assert_eq!(kiosk1.text("RESERVE A PG1"), "OK");
    assert_eq!(kiosk1.text("RESERVE A PG2"), "OK");
    let mut kiosk2 = rpc_as(&second, "kiosk-2");
    assert_eq!(kiosk2.text("CANCEL A PG1"), "NOT_FOUND");
    drop((kiosk1, kiosk2, first, second));

    let restarted = start_keyed(on_pg);
    let mut kiosk2 = rpc_as(&restarted, "kiosk-2");
    assert_eq!(kiosk2.text("CANCEL A PG1"), "NOT_FOUND");
    let mut kiosk1 = rpc_as(&restarted, "kiosk-1");
    assert_eq!(kiosk1.text("CANCEL A PG1"), "OK");
    let mut ops = rpc_as(&restarted, "ops");
    assert_eq!(ops.text("CANCEL A PG2"), "OK");
}

#[test]
fn without_keys_every_port_is_open_and_auth_says_so() {
    let server = common::start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE A OPEN1"), "OK");
    assert_eq!(rpc.text("CANCEL A OPEN1"), "OK");
    assert!(
        rpc.text("AUTH anything")
            .starts_with("ERR BAD_REQUEST this server has no keys configured")
    );
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert!(sensor.call("UPDATE A 1").starts_with("OK "));
    assert!(
        sensor
            .call("AUTH x")
            .starts_with("ERR UNKNOWN_COMMAND this server has no keys")
    );
    let mut subscriber = RawLines::connect(server.pubsub_addr());
    assert!(
        subscriber
            .call("AUTH x")
            .starts_with("ERR BAD_COMMAND this server has no keys")
    );
    assert!(subscriber.call("SUBSCRIBE A").starts_with("OK "));
}

#[test]
fn protected_mode_refuses_to_start_an_open_server_beyond_loopback() {
    let config = Config {
        host: "0.0.0.0".into(),
        ..Config::ephemeral()
    };
    match Server::new(config.clone()).start(ShutdownHandle::new()) {
        Err(server::StartError::Config(err)) => {
            assert!(err.to_string().contains("protected mode"), "{err}");
        }
        Err(other) => panic!("expected protected mode, got {other}"),
        Ok(_) => panic!("an open server started on 0.0.0.0"),
    }
}
