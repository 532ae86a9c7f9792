//! The pub/sub port's limits through the server's own port and configuration: subscribers that
//! fall behind, subscribers that stop reading, the connection limit, the timeouts and the line
//! length.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::mem::ManuallyDrop;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use client::{ParkingClient, SensorClient};
use common::{
    CLOSE_BOUND, DEADLINE, OTHER_TIMEOUT, Port, RawLines, check_still_served, connect_small_buffer,
    eventually, expect_closed, expect_snapshots, next_event, start_with, subscribe,
};
use framing::sensor::CountChange;
use serde_json::json;
use server::RunningServer;

/// A subscriber to `lot` that reads nothing at all, not even its `OK`, with a small receive
/// buffer so that it fills quickly.
fn stuck_subscriber(server: &RunningServer, lot: &str) -> TcpStream {
    let mut stream = connect_small_buffer(server.pubsub_addr());
    stream
        .write_all(format!("SUBSCRIBE {lot}\n").as_bytes())
        .unwrap();
    stream
}

#[test]
fn the_broker_runs_with_the_configured_pubsub_limits() {
    let server = start_with(|config| {
        config.subscriber_queue_size = 7;
        config.max_overflow_drops = 5;
        config.notifier_threads = 3;
        config.idle_timeout = Duration::from_millis(12_500);
        config.frame_timeout = Duration::from_millis(3_500);
        config.max_connections = 99;
        config.subscriber_send_buffer = 12_345;
    });
    let broker = server.broker().config();
    assert_eq!(
        (
            broker.queue_size,
            broker.max_overflow_drops,
            broker.notifier_threads,
            broker.idle_timeout,
            broker.line_timeout,
            broker.max_connections,
            broker.send_buffer,
        ),
        (
            7,
            5,
            3,
            Duration::from_millis(12_500),
            Duration::from_millis(3_500),
            99,
            12_345,
        )
    );
    // No keys configured: no authentication, no TLS.
    assert!(broker.auth.is_none() && broker.tls.is_none());
}

/// Bursts of pipelined sensor lines publish far faster than the notifier delivers (it writes
/// at most every 250 us), so the subscriber's queue of 4 overflows and its oldest events are
/// dropped; but its socket keeps taking bytes, so even with `max_overflow_drops = 1` it stays
/// connected, and each burst ends with the latest count.
#[test]
fn a_subscriber_that_falls_behind_in_a_burst_stays_connected_and_ends_with_the_latest_count() {
    const CAPACITY: u32 = 1000;
    const BURST: u32 = 200;
    let server = start_with(|config| {
        config.lots = serde_json::from_value(json!([{"id": "L", "capacity": CAPACITY}])).unwrap();
        config.subscriber_queue_size = 4;
        config.max_overflow_drops = 1;
    });
    let mut subscriber = subscribe(&server, "L");
    let mut sensor = RawLines::connect(server.sensor_addr());
    let mut received = 0u64;
    let mut last_free = u64::from(CAPACITY);
    for burst in 0..CAPACITY / BURST {
        let first = burst * BURST + 1;
        let lines: String = (first..first + BURST)
            .map(|occupied| format!("UPDATE L {occupied}\n"))
            .collect();
        sensor.send(lines.as_bytes());
        for occupied in first..first + BURST {
            assert_eq!(sensor.line(), format!("OK {}", CAPACITY - occupied));
        }
        // What arrives is an ordered selection of the burst's counts, ending with its last.
        let latest = u64::from(CAPACITY - (first + BURST - 1));
        loop {
            let (lot, free) = next_event(&mut subscriber);
            assert_eq!(lot, "L");
            assert!(free < last_free, "{free} after {last_free}");
            last_free = free;
            received += 1;
            if free == latest {
                break;
            }
        }
    }
    let stats = server.broker().stats();
    assert!(
        stats.events_dropped > 0,
        "the bursts never outran the queue: {stats:?}"
    );
    assert_eq!(stats.slow_disconnects, 0, "{stats:?}");
    // Every event was either received or counted as dropped.
    assert_eq!(received + stats.events_dropped, stats.events_published);
    // Still subscribed.
    assert_eq!(sensor.call("UPDATE L 0"), format!("OK {CAPACITY}"));
    assert_eq!(
        next_event(&mut subscriber),
        ("L".into(), u64::from(CAPACITY))
    );
}

/// Issue 5's storm with a generous bound: while subscribers that never read fill their
/// buffers and queues, every RPC reply and sensor ack arrives within the clients' timeout (a
/// publisher that waited for a stuck subscriber would stall them for good), every stuck
/// subscriber is cut off, and a subscriber that reads stays connected and hears the last
/// change.
#[test]
fn stuck_subscribers_never_delay_replies_acks_or_other_subscribers() {
    const STUCK: usize = 5;
    const PAIRS: usize = 300;
    // Leaked if the test fails: a server whose workers are stuck publishing cannot be stopped,
    // and dropping it would hang the test instead of failing it.
    let server = ManuallyDrop::new(start_with(|config| config.subscriber_send_buffer = 4096));
    let stuck: Vec<TcpStream> = (0..STUCK).map(|_| stuck_subscriber(&server, "A")).collect();
    let mut healthy = subscribe(&server, "A");
    eventually("every subscriber to be registered", || {
        server.broker().stats().subscribers == STUCK + 1
    });
    let reader = thread::spawn(move || {
        // Ends at the marker below: free 50, which the storm itself never produces.
        while next_event(&mut healthy).1 != 50 {}
        // Still connected: it must be counted below as the subscriber that stayed.
        healthy
    });
    let rpc = server.rpc_addr();
    let storm: Vec<_> = (0..4)
        .map(|n| {
            thread::spawn(move || {
                let mut client = ParkingClient::connect(rpc).unwrap();
                let plate = format!("STORM{n}");
                for _ in 0..PAIRS {
                    assert!(client.reserve("A", &plate).unwrap());
                    assert!(client.cancel("A", &plate).unwrap());
                }
            })
        })
        .collect();
    let mut sensor = SensorClient::connect(server.sensor_addr(), DEADLINE).unwrap();
    for n in 0..PAIRS {
        let occupied = u32::try_from(n % 2).unwrap();
        sensor.update("A", CountChange::Set(occupied)).unwrap();
    }
    for client in storm {
        client.join().unwrap();
    }
    assert_eq!(sensor.update("A", CountChange::Set(50)).unwrap(), 50);
    let _healthy = reader.join().unwrap();
    eventually("every stuck subscriber to be cut off", || {
        server.broker().stats().slow_disconnects == STUCK as u64
    });
    for stream in &stuck {
        expect_closed(stream, DEADLINE);
    }
    let stats = server.broker().stats();
    assert_eq!(
        (stats.subscribers, stats.slow_disconnects),
        (1, STUCK as u64)
    );
    ManuallyDrop::into_inner(server).shutdown();
}

/// A subscriber that reads nothing is disconnected after exactly `max_overflow_drops` drops.
/// Changes are made one at a time, each only after a reading subscriber on the same notifier
/// got the previous one, so the notifier has taken every earlier event from the stuck
/// subscriber's queue that it could: the first drop comes once its socket and pending output
/// are full, and so is its queue of 4. From then on three more changes go out in one burst
/// (which the reading subscriber's queue holds): the second and third drops must end it there
/// and then, so the last change is no longer even offered to it.
#[test]
fn a_stuck_subscriber_is_cut_off_after_exactly_max_overflow_drops() {
    let server = start_with(|config| {
        config.subscriber_queue_size = 4;
        config.max_overflow_drops = 3;
        config.subscriber_send_buffer = 4096;
        config.notifier_threads = 1;
    });
    let stuck = stuck_subscriber(&server, "A");
    let mut reading = subscribe(&server, "A");
    eventually("both subscribers to be registered", || {
        server.broker().stats().subscribers == 2
    });
    let mut sensor = RawLines::connect(server.sensor_addr());
    let mut changes = 0;
    while server.broker().stats().events_dropped == 0 {
        assert!(changes < 10_000, "no drop after {changes} events");
        let occupied = changes % 2 + 1;
        assert_eq!(
            sensor.call(&format!("UPDATE A {occupied}")),
            format!("OK {}", 100 - occupied)
        );
        assert_eq!(next_event(&mut reading), ("A".into(), 100 - occupied));
        changes += 1;
    }
    sensor.send(b"UPDATE A 10\nUPDATE A 11\nUPDATE A 12\n");
    for occupied in 10..=12 {
        assert_eq!(sensor.line(), format!("OK {}", 100 - occupied));
        assert_eq!(next_event(&mut reading), ("A".into(), 100 - occupied));
    }
    eventually("the stuck subscriber to be cut off", || {
        server.broker().stats().slow_disconnects == 1
    });
    let stats = server.broker().stats();
    assert_eq!(stats.events_dropped, 3, "{stats:?}");
    // Offered: every change to the reading subscriber, all but the last to the stuck one.
    assert_eq!(stats.events_published, 2 * (changes + 3) - 1, "{stats:?}");
    expect_closed(&stuck, DEADLINE);
    assert_eq!(sensor.call("UPDATE A 0"), "OK 100");
    assert_eq!(next_event(&mut reading), ("A".into(), 100));
}

#[test]
fn the_pubsub_port_refuses_connections_over_max_connections() {
    let server = start_with(|config| config.max_connections = 1);
    let mut first = subscribe(&server, "A");
    let mut extra = RawLines::connect(server.pubsub_addr());
    assert!(extra.line().starts_with("ERR BUSY "));
    extra.expect_closed(DEADLINE);
    check_still_served(&server, &mut first);
}

#[test]
fn idle_timeout_applies_only_until_a_successful_subscribe() {
    let server = start_with(|config| {
        config.idle_timeout = Duration::from_millis(300);
        config.frame_timeout = OTHER_TIMEOUT;
    });
    let mut subscribed = subscribe(&server, "A");
    // A refused SUBSCRIBE is not a subscription: the connection is still closed once it has
    // been silent for the idle timeout.
    let mut refused = RawLines::connect(server.pubsub_addr());
    let started = Instant::now();
    assert!(refused.call("SUBSCRIBE Z").starts_with("ERR UNKNOWN_LOT "));
    refused.expect_closed(CLOSE_BOUND);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The subscriber has been silent for longer still, and is served.
    check_still_served(&server, &mut subscribed);
}

#[test]
fn a_subscribe_line_that_trickles_in_is_closed_after_frame_timeout() {
    common::check_frame_timeout(Port::Pubsub);
}

#[test]
fn a_subscribe_line_of_1024_bytes_is_accepted_and_a_longer_one_closes() {
    let server = start_with(|_| {});
    let padded = |len: usize| {
        let mut line = b"SUBSCRIBE".to_vec();
        line.resize(len - 1, b' ');
        line.extend_from_slice(b"A\n");
        line
    };
    let mut at_limit = RawLines::connect(server.pubsub_addr());
    at_limit.send(&padded(1024));
    assert!(at_limit.line().starts_with("OK "));
    expect_snapshots(&server, &mut at_limit, "A");
    let mut over = RawLines::connect(server.pubsub_addr());
    over.send(&padded(1025));
    assert!(over.line().starts_with("ERR LINE_TOO_LONG "));
    over.expect_closed(DEADLINE);
    check_still_served(&server, &mut at_limit);
}
