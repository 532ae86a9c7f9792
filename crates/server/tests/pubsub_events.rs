//! Pub/sub through the whole server: every kind of change publishes, and only real changes do.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{RawLines, RawRpc, expect_snapshots, next_event, start, start_with, subscribe};
use serde_json::Value;

#[test]
fn a_new_subscriber_hears_the_current_value_first_then_the_changes() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE A P1"), "OK");
    assert_eq!(rpc.text("RESERVE C P1"), "OK");
    // A sign that reconnects after the change is right at once, not at the next change.
    let mut subscriber = RawLines::connect(server.pubsub_addr());
    assert!(subscriber.call("SUBSCRIBE C").starts_with("OK "));
    let snapshot: Value = serde_json::from_str(&subscriber.line()).unwrap();
    assert_eq!(snapshot["type"], "SNAPSHOT");
    assert_eq!(
        (snapshot["lotId"].as_str(), snapshot["free"].as_u64()),
        (Some("C"), Some(199))
    );
    // Adding ALL snapshots the lots newly covered (A and B), not C again.
    assert!(subscriber.call("SUBSCRIBE ALL").starts_with("OK "));
    let mut more: Vec<(String, u64)> = (0..2)
        .map(|_| {
            let line: Value = serde_json::from_str(&subscriber.line()).unwrap();
            assert_eq!(line["type"], "SNAPSHOT");
            (
                line["lotId"].as_str().unwrap().to_owned(),
                line["free"].as_u64().unwrap(),
            )
        })
        .collect();
    more.sort();
    assert_eq!(more, [("A".to_owned(), 99), ("B".to_owned(), 50)]);
    assert_eq!(rpc.text("CANCEL C P1"), "OK");
    assert_eq!(next_event(&mut subscriber), ("C".into(), 200));
}

#[test]
fn reserve_cancel_and_sensor_updates_publish() {
    let server = start();
    let mut subscriber = subscribe(&server, "A");
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert_eq!(rpc.text("RESERVE A P1"), "OK");
    assert_eq!(next_event(&mut subscriber), ("A".into(), 99));
    // Refused and no-op operations publish nothing; the next event proves it.
    assert_eq!(rpc.text("RESERVE A P1"), "EXISTS");
    assert_eq!(rpc.text("CANCEL A P9"), "NOT_FOUND");
    assert_eq!(sensor.call("UPDATE A 0"), "OK 99");
    assert_eq!(rpc.text("RESERVE B P1"), "OK");
    assert_eq!(rpc.text("CANCEL A P1"), "OK");
    assert_eq!(next_event(&mut subscriber), ("A".into(), 100));
    assert_eq!(sensor.call("UPDATE A +10"), "OK 90");
    assert_eq!(next_event(&mut subscriber), ("A".into(), 90));
    assert_eq!(sensor.call("UPDATE A 10"), "OK 90");
    assert_eq!(sensor.call("UPDATE A -10"), "OK 100");
    assert_eq!(next_event(&mut subscriber), ("A".into(), 100));
}

#[test]
fn expiry_publishes_without_any_request() {
    let server = start_with(|config| config.reservation_ttl = Duration::from_millis(200));
    let mut subscriber = subscribe(&server, "ALL");
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE C P1"), "OK");
    assert_eq!(next_event(&mut subscriber), ("C".into(), 199));
    // Nobody reads: the purger publishes the expiry on its own.
    assert_eq!(next_event(&mut subscriber), ("C".into(), 200));
}

#[test]
fn subscribers_see_their_lots_only_and_all_sees_everything() {
    let server = start();
    let mut a = subscribe(&server, "A");
    let mut all = subscribe(&server, "all");
    let mut rpc = RawRpc::connect(server.rpc_addr());
    for lot in ["B", "C", "A"] {
        assert_eq!(rpc.text(&format!("RESERVE {lot} P1")), "OK");
    }
    assert_eq!(next_event(&mut a), ("A".into(), 99));
    assert_eq!(next_event(&mut all), ("B".into(), 49));
    assert_eq!(next_event(&mut all), ("C".into(), 199));
    assert_eq!(next_event(&mut all), ("A".into(), 99));
}

#[test]
fn a_hundred_changes_on_one_lot_arrive_in_order() {
    let server = start_with(|config| config.subscriber_queue_size = 256);
    let mut subscriber = subscribe(&server, "C");
    let mut sensor = RawLines::connect(server.sensor_addr());
    for occupied in 1..=100 {
        assert_eq!(
            sensor.call(&format!("UPDATE C {occupied}")),
            format!("OK {}", 200 - occupied)
        );
    }
    for occupied in 1..=100 {
        assert_eq!(next_event(&mut subscriber), ("C".into(), 200 - occupied));
    }
}

#[test]
fn unknown_lot_then_a_good_subscribe_on_the_same_connection() {
    let server = start();
    let mut subscriber = RawLines::connect(server.pubsub_addr());
    assert!(
        subscriber
            .call("SUBSCRIBE Z")
            .starts_with("ERR UNKNOWN_LOT ")
    );
    assert!(subscriber.call("HELLO").starts_with("ERR BAD_COMMAND "));
    assert!(subscriber.call("subscribe B").starts_with("OK "));
    expect_snapshots(&server, &mut subscriber, "B");
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE B P1"), "OK");
    assert_eq!(next_event(&mut subscriber), ("B".into(), 49));
}

#[test]
fn status_follows_the_lots_threshold_on_rpc_and_pubsub_alike() {
    let server = start_with(|config| {
        config.lots = serde_json::from_str(
            r#"[{"id": "S", "capacity": 10, "almost_full_free": 3}, {"id": "T", "capacity": 100}]"#,
        )
        .unwrap();
    });
    let mut subscriber = RawLines::connect(server.pubsub_addr());
    assert!(subscriber.call("SUBSCRIBE S").starts_with("OK "));
    let snapshot: Value = serde_json::from_str(&subscriber.line()).unwrap();
    assert_eq!(
        (&snapshot["free"], &snapshot["status"]),
        (&10.into(), &"open".into())
    );
    let mut sensor = RawLines::connect(server.sensor_addr());
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let status_of = |rpc: &mut RawRpc, lot: usize| {
        let lots = rpc.json(r#"{"rpcId": 1, "method": "getLots", "args": []}"#);
        lots["result"][lot]["status"].as_str().unwrap().to_owned()
    };
    for (count, free, status) in [
        (6, 4, "open"),
        (7, 3, "almostFull"),
        (9, 1, "almostFull"),
        (10, 0, "full"),
    ] {
        assert_eq!(
            sensor.call(&format!("UPDATE S {count}")),
            format!("OK {free}")
        );
        let event: Value = serde_json::from_str(&subscriber.line()).unwrap();
        assert_eq!(event["type"], "EVENT");
        assert_eq!(
            (&event["free"], &event["status"]),
            (&free.into(), &status.into()),
            "{event}"
        );
        assert_eq!(status_of(&mut rpc, 0), status);
    }
    // Without a threshold configured, a tenth of the capacity: 10 free of 100 is almost full.
    assert_eq!(sensor.call("UPDATE T 90"), "OK 10");
    assert_eq!(status_of(&mut rpc, 1), "almostFull");
    assert_eq!(sensor.call("UPDATE T 89"), "OK 11");
    assert_eq!(status_of(&mut rpc, 1), "open");
}
