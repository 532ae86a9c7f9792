//! HTTP event streams handed to the broker: what they are sent, in which order, and the
//! same back-pressure as pub/sub subscribers, over real sockets.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use broker::BrokerConfig;
use common::{DEADLINE, Harness, change, expect_closed};
use serde_json::Value;

/// The free count published last, after the stuck stream is gone: above any count before it.
const LAST: u32 = u32::MAX;

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";

fn harness() -> Harness {
    let harness = Harness::start(BrokerConfig::default());
    harness
        .broker
        .seed(&[change("A", 10), change("B", 20), change("C", 30)]);
    harness
}

fn data(json: &str) -> (String, u64, String) {
    let value: Value = serde_json::from_str(json).unwrap();
    assert!(value["timestamp"].as_f64().unwrap() > 1.7e9, "{json}");
    (
        value["lotId"].as_str().unwrap().to_owned(),
        value["free"].as_u64().unwrap(),
        value["status"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_preamble_then_the_current_values_then_each_change() {
    let harness = harness();
    let mut stream = harness.connect_stream(&["A", "C"], HEAD);
    assert_eq!(stream.line(), "HTTP/1.1 200 OK\r");
    assert_eq!(stream.line(), "content-type: text/event-stream\r");
    assert_eq!(stream.line(), "\r");
    let mut snapshots: Vec<_> = (0..2)
        .map(|_| {
            let (event, _, json) = stream.sse_event();
            assert_eq!(event, "availability");
            data(&json)
        })
        .collect();
    snapshots.sort();
    assert_eq!(
        snapshots,
        [
            ("A".into(), 10, "open".into()),
            ("C".into(), 30, "open".into())
        ]
    );
    harness.wait_for_stats("the stream to subscribe", |stats| stats.streams == 1);
    let published = change("A", 0);
    harness.broker.on_lot_change(&change("B", 19));
    harness.broker.on_lot_change(&published);
    harness.broker.on_lot_change(&change("C", 29));
    let (event, id, json) = stream.sse_event();
    assert_eq!((event.as_str(), id), ("availability", published.seq));
    assert_eq!(data(&json), ("A".into(), 0, "full".into()));
    assert_eq!(data(&stream.sse_event().2).0, "C", "B is not followed");
}

#[test]
fn no_lots_means_every_lot_and_streams_are_counted_apart_from_the_port() {
    let harness = harness();
    let mut stream = harness.connect_stream(&[], b"");
    let mut lots: Vec<String> = (0..3).map(|_| data(&stream.sse_event().2).0).collect();
    lots.sort();
    assert_eq!(lots, ["A", "B", "C"]);
    harness.wait_for_stats("one stream", |stats| {
        (stats.streams, stats.subscribers, stats.connections) == (1, 0, 0)
    });
    // What the peer sends is ignored; closing its side ends the stream.
    stream.send(b"GET / HTTP/1.1\r\n\r\n");
    harness.publish("B", 7);
    assert_eq!(data(&stream.sse_event().2), ("B".into(), 7, "open".into()));
    drop(stream);
    harness.wait_for_stats("the stream to end", |stats| stats.streams == 0);
}

#[test]
fn a_quiet_stream_gets_keep_alive_comments() {
    let harness = Harness::start(BrokerConfig {
        stream_keep_alive: Duration::from_millis(50),
        ..BrokerConfig::default()
    });
    let mut stream = harness.connect_stream(&["A"], b"");
    for _ in 0..2 {
        assert_eq!(stream.line(), ": keep-alive");
        assert_eq!(stream.line(), "");
    }
    harness.publish("A", 5);
    assert_eq!(data(&stream.sse_event().2).1, 5);
}

#[test]
fn a_stream_that_stops_reading_is_disconnected_like_a_subscriber() {
    // The broker's default send buffer (32 KiB): a reader that keeps up never has a full
    // socket, even when the loaded machine is slow to acknowledge what it has read. A line
    // timeout far past the test's deadline: only the overflow rule can cut a stream off.
    let harness = Harness::start(BrokerConfig {
        queue_size: 4,
        max_overflow_drops: 3,
        line_timeout: Duration::from_secs(60),
        ..BrokerConfig::default()
    });
    let mut stuck = harness.connect_stream_raw(&["A"], b"", Some(4096));
    let mut reading = harness.connect_stream(&["A"], b"");
    harness.wait_for_stats("two streams", |stats| stats.streams == 2);
    // The reading stream is read all along and reports the latest free count it saw; it may
    // lose its oldest events to a full queue, never their order or the latest one.
    let seen = Arc::new(AtomicU32::new(0));
    let reader = {
        let seen = Arc::clone(&seen);
        thread::spawn(move || {
            loop {
                let free = data(&reading.sse_event().2).1;
                let last = seen.swap(free.try_into().unwrap(), Ordering::SeqCst);
                assert!(u64::from(last) < free, "{free} came after {last}");
                if free == u64::from(LAST) {
                    return reading;
                }
            }
        })
    };
    // Published at most 100 events (about 11 KB) ahead of the reader, as a peer that keeps
    // up is: only the stuck stream (4 KiB receive buffer, a few hundred events behind) can
    // fill its socket.
    let deadline = Instant::now() + 4 * DEADLINE;
    let mut free = 0;
    while harness.broker.stats().slow_disconnects == 0 {
        assert!(
            Instant::now() < deadline,
            "the stuck stream was not cut off after {free} events: {:?}",
            harness.broker.stats()
        );
        if free < seen.load(Ordering::SeqCst) + 100 {
            free += 1;
            harness.publish("A", free);
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
    harness.wait_for_stats("one stream left", |stats| stats.streams == 1);
    expect_closed(&mut stuck);
    let _ = stuck.write_all(b"x");
    // The reading one is still subscribed, and hears the latest.
    harness.publish("A", LAST);
    let _reading = reader.join().unwrap();
    let stats = harness.broker.stats();
    assert_eq!((stats.slow_disconnects, stats.streams), (1, 1), "{stats:?}");
}
