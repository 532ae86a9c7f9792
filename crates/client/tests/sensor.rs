//! `SensorClient` against scripted fake sensor ports.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use client::{GatePass, Passage, SensorClient, SensorClientError};
use common::{Fake, Lines, closed_port};
use framing::sensor::{CountChange, SensorErrorCode};

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn updates_and_pings_round_trip() {
    let fake = Fake::start(|stream| {
        let mut lines = Lines::new(stream);
        assert_eq!(lines.read().unwrap(), "UPDATE A +3");
        lines.write(b"OK 97\n");
        assert_eq!(lines.read().unwrap(), "UPDATE A 40");
        lines.write(b"OK 60\r\n");
        assert_eq!(lines.read().unwrap(), "PING");
        lines.write(b"PONG\n");
    });
    let mut client = SensorClient::connect(fake.addr, TIMEOUT).unwrap();
    assert_eq!(client.update("A", CountChange::Add(3)).unwrap(), 97);
    assert_eq!(client.update("A", CountChange::Set(40)).unwrap(), 60);
    client.ping().unwrap();
    fake.join();
}

#[test]
fn gate_lines_report_free_spaces_and_the_booking() {
    let fake = Fake::start(|stream| {
        let mut lines = Lines::new(stream);
        assert_eq!(lines.read().unwrap(), "ENTER A 7ABC");
        lines.write(b"OK 41 BOOKING A.3\n");
        assert_eq!(lines.read().unwrap(), "EXIT A XYZ");
        lines.write(b"OK 42\n");
    });
    let mut client = SensorClient::connect(fake.addr, TIMEOUT).unwrap();
    assert_eq!(
        client.pass("A", "7ABC", Passage::Enter).unwrap(),
        GatePass {
            free: 41,
            booking: Some("A.3".into())
        }
    );
    assert_eq!(
        client.pass("A", "XYZ", Passage::Exit).unwrap(),
        GatePass {
            free: 42,
            booking: None
        }
    );
    for (lot, plate) in [("A", "7 ABC"), ("A B", "P"), ("A", "")] {
        assert!(matches!(
            client.pass(lot, plate, Passage::Enter),
            Err(SensorClientError::Io(_))
        ));
    }
    drop(client);
    fake.join();
}

#[test]
fn refusals_and_garbage_are_typed() {
    let fake = Fake::start(|stream| {
        let mut lines = Lines::new(stream);
        lines.read().unwrap();
        lines.write(b"ERR UNKNOWN_LOT no lot \"Z\"\n");
        lines.read().unwrap();
        lines.write(b"WHAT\n");
    });
    let mut client = SensorClient::connect(fake.addr, TIMEOUT).unwrap();
    match client.update("Z", CountChange::Remove(1)) {
        Err(SensorClientError::Server(error)) => {
            assert_eq!(error.code, SensorErrorCode::UnknownLot);
            assert_eq!(error.detail, "no lot \"Z\"");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(client.ping(), Err(SensorClientError::Protocol(_))));
    fake.join();
}

#[test]
fn timeout_closed_and_connect_errors() {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let fake = Fake::start(move |stream| {
        let mut lines = Lines::new(stream);
        lines.read().unwrap();
        let _ = done_rx.recv();
    });
    let mut client = SensorClient::connect(fake.addr, Duration::from_millis(100)).unwrap();
    assert!(matches!(client.ping(), Err(SensorClientError::Timeout)));
    done_tx.send(()).unwrap();
    fake.join();

    let fake = Fake::start(|stream| {
        let mut lines = Lines::new(stream);
        lines.read().unwrap();
        // Half a reply, then the connection ends.
        lines.write(b"OK 1");
    });
    let mut client = SensorClient::connect(fake.addr, TIMEOUT).unwrap();
    assert!(matches!(
        client.update("A", CountChange::Add(1)),
        Err(SensorClientError::Closed)
    ));
    fake.join();

    assert!(matches!(
        SensorClient::connect(closed_port(), TIMEOUT),
        Err(SensorClientError::Connect { .. })
    ));
}

#[test]
fn lot_ids_that_would_split_are_refused_locally() {
    let fake = Fake::start(|stream| {
        // Nothing may arrive: the first line read must be the end of the stream.
        assert_eq!(Lines::new(stream).read(), None);
    });
    let mut client = SensorClient::connect(fake.addr, TIMEOUT).unwrap();
    for bad in ["", "A 1", "A\nPING"] {
        assert!(matches!(
            client.update(bad, CountChange::Set(1)),
            Err(SensorClientError::Io(_))
        ));
    }
    drop(client);
    fake.join();
}
