//! `Subscription` against scripted fake pub/sub ports.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use client::{SubscribeError, Subscription};
use common::{Fake, Lines, closed_port};
use framing::pubsub::{PubsubErrorCode, Topic};

const TIMEOUT: Duration = Duration::from_secs(5);
const EVENT_A: &[u8] =
    b"{\"type\":\"EVENT\",\"lotId\":\"A\",\"free\":12,\"timestamp\":1712345678.5}";

#[test]
fn subscribes_to_every_topic_and_keeps_early_events() {
    let fake = Fake::start(|stream| {
        let mut lines = Lines::new(stream);
        assert_eq!(lines.read().unwrap(), "SUBSCRIBE A");
        assert_eq!(lines.read().unwrap(), "SUBSCRIBE B");
        // An event for A may overtake the acknowledgement of B.
        lines.write(b"OK 7\n");
        lines.write(&[EVENT_A, b"\n"].concat());
        lines.write(b"OK 7\n");
        lines.write(b"{\"type\":\"EVENT\",\"lotId\":\"B\",\"free\":0,\"timestamp\":1.0}\r\n");
    });
    let mut sub =
        Subscription::connect(fake.addr, &[Topic::Lot("A"), Topic::Lot("B")], TIMEOUT).unwrap();
    assert_eq!(sub.id(), 7);
    let first = sub.next_event().unwrap();
    assert_eq!(
        (&*first.lot_id, first.free, first.timestamp),
        ("A", 12, 1712345678.5)
    );
    assert_eq!(sub.raw_line(), EVENT_A);
    let second = sub.next_event().unwrap();
    assert_eq!((&*second.lot_id, second.free), ("B", 0));
    assert!(matches!(sub.next_event(), Err(SubscribeError::Closed)));
    fake.join();
}

#[test]
fn refused_topic_fails_the_subscription() {
    let fake = Fake::start(|stream| {
        let mut lines = Lines::new(stream);
        assert_eq!(lines.read().unwrap(), "SUBSCRIBE ALL");
        assert_eq!(lines.read().unwrap(), "SUBSCRIBE Z");
        lines.write(b"OK 1\nERR UNKNOWN_LOT no lot \"Z\"\n");
    });
    match Subscription::connect(fake.addr, &[Topic::All, Topic::Lot("Z")], TIMEOUT) {
        Err(SubscribeError::Server(error)) => {
            assert_eq!(error.code, PubsubErrorCode::UnknownLot);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    fake.join();
}

#[test]
fn timeout_keeps_a_partly_received_line() {
    let (half_tx, half_rx) = mpsc::channel::<()>();
    let (written_tx, written_rx) = mpsc::channel::<()>();
    let (rest_tx, rest_rx) = mpsc::channel::<()>();
    let fake = Fake::start(move |stream| {
        let mut lines = Lines::new(stream);
        lines.read().unwrap();
        lines.write(b"OK 3\n");
        let _ = half_rx.recv();
        lines.write(&EVENT_A[..20]);
        written_tx.send(()).unwrap();
        let _ = rest_rx.recv();
        lines.write(&[&EVENT_A[20..], b"\n"].concat());
    });
    let mut sub = Subscription::connect(fake.addr, &[Topic::All], TIMEOUT).unwrap();
    let wait = Duration::from_millis(50);
    assert!(sub.next_event_timeout(wait).unwrap().is_none());
    // The first 20 bytes are on their way before the next wait starts (over loopback they are
    // in our socket when the write returns), so this call reads them and then times out in
    // the middle of the line.
    half_tx.send(()).unwrap();
    written_rx.recv().unwrap();
    assert!(sub.next_event_timeout(wait).unwrap().is_none());
    rest_tx.send(()).unwrap();
    let event = sub.next_event_timeout(TIMEOUT).unwrap().unwrap();
    assert_eq!(event.free, 12);
    assert_eq!(sub.raw_line(), EVENT_A);
    fake.join();
}

#[test]
fn unacknowledged_subscription_times_out_and_closed_port_fails() {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let fake = Fake::start(move |stream| {
        let mut lines = Lines::new(stream);
        lines.read().unwrap();
        let _ = done_rx.recv();
    });
    assert!(matches!(
        Subscription::connect(fake.addr, &[Topic::All], Duration::from_millis(100)),
        Err(SubscribeError::Timeout)
    ));
    done_tx.send(()).unwrap();
    fake.join();
    assert!(matches!(
        Subscription::connect(closed_port(), &[Topic::All], TIMEOUT),
        Err(SubscribeError::Connect { .. })
    ));
    assert!(matches!(
        Subscription::connect(closed_port(), &[], TIMEOUT),
        Err(SubscribeError::Io(_))
    ));
}
