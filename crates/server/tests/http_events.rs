//! The HTTP port's event stream, `GET /v1/events` (docs/http.md): the current value of each
//! lot first, then each change in order, keep-alive comments, and the pub/sub port's
//! back-pressure, over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use client::ParkingClient;
use server::RunningServer;
use state::CountChange;
use testkit::http::{Event, Http, request};

fn stream(server: &RunningServer, path: &str) -> Http {
    let mut http = Http::connect(server.http_addr().unwrap());
    http.send(request("GET", path, None, &["Accept: text/event-stream"]).as_bytes());
    let head = http.stream_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("content-length"), None);
    http
}

fn lot_and_free(event: &Event) -> (String, u64) {
    assert_eq!(event.event, "availability");
    let data = event.json();
    assert!(data["timestamp"].as_f64().unwrap() > 1.7e9, "{data}");
    assert!(data["status"].is_string(), "{data}");
    (
        data["lotId"].as_str().unwrap().to_owned(),
        data["free"].as_u64().unwrap(),
    )
}

fn wait_for_streams(server: &RunningServer, n: usize) {
    let mut http = Http::connect(server.http_addr().unwrap());
    testkit::eventually("the streams to subscribe", || {
        http.get("/metrics").text().contains(&format!(
            "parking_subscribers{{kind=\"event_stream\"}} {n}\n"
        ))
    });
}

#[test]
fn every_lot_first_then_each_change_in_order_with_per_lot_ids() {
    let server = testkit::start_server(|_| {});
    let mut events = stream(&server, "/v1/events");
    let mut snapshot: Vec<(String, u64)> = (0..3).map(|_| lot_and_free(&events.event())).collect();
    snapshot.sort();
    assert_eq!(
        snapshot,
        [("A".into(), 100), ("B".into(), 50), ("C".into(), 200)]
    );
    wait_for_streams(&server, 1);

    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    let mut sensor =
        client::SensorClient::connect(server.sensor_addr(), Duration::from_secs(5)).unwrap();
    assert!(rpc.reserve("A", "E1").unwrap());
    sensor.update("B", CountChange::Add(5)).unwrap();
    assert!(rpc.reserve("A", "E2").unwrap());
    let first = events.event();
    let second = events.event();
    let third = events.event();
    assert_eq!(lot_and_free(&first), ("A".into(), 99));
    assert_eq!(lot_and_free(&second), ("B".into(), 45));
    assert_eq!(lot_and_free(&third), ("A".into(), 98));
    // Ids count each lot's changes.
    let id = |event: &Event| event.id.parse::<u64>().unwrap();
    assert_eq!(id(&third), id(&first) + 1);
}

#[test]
fn only_the_lots_asked_for_and_an_unknown_lot_is_refused_before_streaming() {
    let server = testkit::start_server(|_| {});
    let mut events = stream(&server, "/v1/events?lot=B&lot=C");
    let mut snapshot: Vec<String> = (0..2).map(|_| lot_and_free(&events.event()).0).collect();
    snapshot.sort();
    assert_eq!(snapshot, ["B", "C"]);
    wait_for_streams(&server, 1);
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    assert!(rpc.reserve("A", "F1").unwrap());
    assert!(rpc.reserve("C", "F1").unwrap());
    assert_eq!(lot_and_free(&events.event()), ("C".into(), 199));

    let mut http = Http::connect(server.http_addr().unwrap());
    let refused = http.get("/v1/events?lot=A&lot=Z");
    assert_eq!(
        (refused.status, refused.error()),
        (404, "UNKNOWN_LOT".into())
    );
}

#[test]
fn a_quiet_stream_gets_keep_alive_comments() {
    let server = testkit::start_server(|config| {
        config.event_stream_keep_alive = Duration::from_millis(100);
    });
    let mut events = stream(&server, "/v1/events?lot=A");
    events.event();
    assert_eq!(events.block(), ": keep-alive\n\n");
}

#[test]
fn a_stream_that_stops_reading_is_disconnected_like_a_slow_subscriber() {
    let server = testkit::start_server(|config| {
        config.subscriber_queue_size = 4;
        config.subscriber_send_buffer = 4096;
    });
    // A small receive buffer, so that the socket fills after a few events, not megabytes.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.http_addr().unwrap().into()).unwrap();
    let mut slow = Http::over(socket.into());
    slow.send(request("GET", "/v1/events?lot=A", None, &[]).as_bytes());
    let mut fast = stream(&server, "/v1/events?lot=A");
    fast.event();
    wait_for_streams(&server, 2);
    let mut sensor =
        client::SensorClient::connect(server.sensor_addr(), Duration::from_secs(5)).unwrap();
    let mut http = Http::connect(server.http_addr().unwrap());
    // The slow one never reads; the changes fill its socket, then its queue. The fast one
    // reads each change before the next is made, so that its own queue of 4 never fills (on a
    // loaded machine a burst of changes outran its notifier and cut it off as well).
    let mut n = 0;
    testkit::eventually("the slow stream to be disconnected", || {
        for _ in 0..50 {
            n += 1;
            sensor
                .update("A", CountChange::Set(n % 100))
                .expect("the sensor port answers");
            let free = u64::from(100 - n % 100);
            while lot_and_free(&fast.event()).1 != free {}
        }
        http.get("/metrics")
            .text()
            .contains("parking_slow_subscriber_disconnects_total 1\n")
    });
    assert!(slow.is_closed());
    // The fast one is still served after the slow one is gone.
    n += 1;
    sensor
        .update("A", CountChange::Set(n % 100))
        .expect("the sensor port answers");
    let last = u64::from(100 - n % 100);
    while lot_and_free(&fast.event()).1 != last {}
}
