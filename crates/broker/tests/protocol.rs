//! The pub/sub protocol over real sockets: replies, errors and which events arrive in which
//! order.

// A test fails loudly on any setup error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broker::BrokerConfig;
use common::{Client, Harness, next_seq};
use framing::pubsub::{self, ServerLine};
use state::{Availability, LotChange, LotId};

fn harness() -> Harness {
    Harness::start(BrokerConfig::default())
}

#[test]
fn lot_subscriber_gets_only_its_lot() {
    let harness = harness();
    let mut client = harness.connect();
    client.subscribe("A");
    harness.publish("B", 1);
    harness.publish("A", 2);
    harness.publish("C", 3);
    harness.publish("A", 4);
    assert_eq!(client.event(), ("A".into(), 2));
    assert_eq!(client.event(), ("A".into(), 4));
}

#[test]
fn all_subscriber_gets_every_lot() {
    let harness = harness();
    let mut client = harness.connect();
    client.send(b"subscribe all\r\n");
    assert!(client.line().starts_with("OK "));
    for (free, lot) in ["A", "B", "C", "Z"].into_iter().enumerate() {
        harness.publish(lot, free as u32);
    }
    for (free, lot) in ["A", "B", "C", "Z"].into_iter().enumerate() {
        assert_eq!(client.event(), (lot.into(), free as u32));
    }
}

#[test]
fn unknown_lot_is_refused_and_the_connection_stays() {
    let harness = harness();
    let mut client = harness.connect();
    client.send(b"SUBSCRIBE Q\n");
    assert_eq!(client.line(), "ERR UNKNOWN_LOT Q");
    // Ids compare exactly.
    client.send(b"SUBSCRIBE a\n");
    assert_eq!(client.line(), "ERR UNKNOWN_LOT a");
    client.subscribe("A");
    harness.publish("A", 7);
    assert_eq!(client.event(), ("A".into(), 7));
}

#[test]
fn bad_command_is_refused_and_the_connection_stays() {
    let harness = harness();
    let mut client = harness.connect();
    for bad in [
        &b"LISTEN A\n"[..],
        b"SUBSCRIBE\n",
        b"SUBSCRIBE A B\n",
        b"\n",
    ] {
        client.send(bad);
        assert!(client.line().starts_with("ERR BAD_COMMAND "), "{bad:?}");
    }
    client.send(b"subscribe A\r\n");
    assert!(client.line().starts_with("OK "));
}

#[test]
fn later_subscriptions_share_the_id_and_never_duplicate_events() {
    let harness = harness();
    let mut first = harness.connect();
    let mut second = harness.connect();
    let id = first.subscribe("A");
    let other = second.subscribe("A");
    assert_ne!(id, other);
    // Pipelined in one write, answered in order.
    first.send(b"SUBSCRIBE A\nSUBSCRIBE B\n");
    assert_eq!(first.line(), format!("OK {id}"));
    assert_eq!(first.line(), format!("OK {id}"));
    assert_eq!(first.subscribe("ALL"), id);
    assert_eq!(first.subscribe("all"), id);
    assert_eq!(first.subscribe("C"), id);
    harness.publish("A", 1);
    harness.publish("B", 2);
    harness.publish("C", 3);
    harness.publish("A", 4);
    for expected in [("A", 1), ("B", 2), ("C", 3), ("A", 4)] {
        assert_eq!(first.event(), (expected.0.into(), expected.1));
    }
    assert_eq!(second.event(), ("A".into(), 1));
    assert_eq!(second.event(), ("A".into(), 4));
}

#[test]
fn a_line_sent_in_pieces_is_reassembled_within_the_line_timeout() {
    let harness = Harness::start(BrokerConfig {
        // Far longer than the pauses, however loaded the machine.
        line_timeout: Duration::from_secs(5),
        ..BrokerConfig::default()
    });
    let mut client = harness.connect();
    // Pauses longer than the notifier's polls, so that it sees each piece on its own.
    for piece in [&b"SUBSC"[..], b"RIBE ", b"B\n"] {
        client.send(piece);
        thread::sleep(Duration::from_millis(50));
    }
    assert!(client.line().starts_with("OK "));
}

#[test]
fn an_over_long_line_is_refused_and_closes() {
    let harness = harness();
    let mut client = harness.connect();
    let mut line = b"SUBSCRIBE ".to_vec();
    line.resize(pubsub::MAX_LINE_LEN + 500, b'x');
    line.push(b'\n');
    client.send(&line);
    assert!(client.line().starts_with("ERR LINE_TOO_LONG "));
    client.expect_closed();
    // The server lingers until the client has closed too (for CLOSE_LINGER, 1 s, at most), so
    // its reply cannot be reset away; it notices the close at its next poll.
    let closed = Instant::now();
    drop(client);
    harness.wait_for_stats("the connection to be counted out", |s| s.connections == 0);
    assert!(
        closed.elapsed() < Duration::from_secs(1),
        "{:?}",
        closed.elapsed()
    );
}

/// More input behind an over-long line does not cost the client its reply, even when the
/// reply waits in the broker's send buffer behind a backlog of events the client has not read
/// yet: the broker shuts its side after the reply and reads on until the client closes (or
/// `CLOSE_LINGER` passes). Closing with input unread would make the kernel reset the
/// connection and throw away everything it had not sent yet, reply and all.
#[test]
fn an_over_long_line_is_answered_even_when_more_input_follows() {
    let harness = Harness::start(BrokerConfig {
        queue_size: 1024,
        // Room in the broker's send buffer for the whole backlog and the reply, so that both
        // wait in the kernel behind the client's small, full receive buffer.
        send_buffer: 1 << 20,
        ..BrokerConfig::default()
    });
    let mut client = Client::new(harness.connect_raw(Some(2048)));
    client.subscribe("A");
    for free in 0..500 {
        harness.publish("A", free);
    }
    // Queued before the line is sent, so the broker sends them before it reads the line.
    let mut input = vec![b'x'; 3 * pubsub::MAX_LINE_LEN];
    input.extend_from_slice(&[b'y'; 16 * 1024]);
    client.send(&input);
    // The refusal ends the subscription; a broker that closed at once has now done so, with
    // the client's input unread. Only then does the client read.
    harness.wait_for_stats("the refusal", |stats| stats.subscribers == 0);
    let reply = reply_behind_backlog(&mut client);
    assert!(reply.starts_with("ERR LINE_TOO_LONG "), "{reply:?}");
}

/// Reads a refused subscriber's connection to its end, which must be a clean EOF, and gives
/// the last line (the refusal). The premise of the tests that call it is checked too: the
/// reply came behind more events than the client's receive buffer holds.
fn reply_behind_backlog(client: &mut Client) -> String {
    let (bytes, end) = client.read_to_end();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        end.is_ok(),
        "the connection ended with {end:?} after {} bytes, last line {:?}",
        bytes.len(),
        lines.last()
    );
    let (reply, backlog) = lines.split_last().expect("nothing arrived");
    let events = backlog
        .iter()
        .filter(|line| line.contains("\"EVENT\""))
        .count();
    assert!(events >= 100, "only {events} events before the reply");
    (*reply).to_owned()
}

/// The same after the last wrong `AUTH` a connection may send: a subscriber with a backlog
/// that then sends wrong tokens (and more input) gets its events and the refusal, then EOF.
#[test]
fn the_last_wrong_token_is_answered_even_when_more_input_follows() {
    use auth::{AuthConfig, Authenticator, KeyConfig, KeyId, MAX_FAILURES, Role, token_hash};
    let keys = AuthConfig {
        keys: vec![KeyConfig {
            id: KeyId::new("sign-1").unwrap(),
            role: Role::Viewer,
            lots: None,
            sha256: token_hash("token-sign-1"),
        }],
        jwt_secret_file: None,
    };
    let harness = Harness::start(BrokerConfig {
        queue_size: 1024,
        send_buffer: 1 << 20,
        auth: Authenticator::new(&keys).unwrap().map(Arc::new),
        ..BrokerConfig::default()
    });
    let mut client = Client::new(harness.connect_raw(Some(2048)));
    client.send(b"AUTH token-sign-1\n");
    assert!(client.line().starts_with("OK "));
    client.subscribe("A");
    for free in 0..500 {
        harness.publish("A", free);
    }
    let mut input = b"AUTH wrong\n".repeat(MAX_FAILURES as usize);
    input.extend_from_slice(&[b'y'; 16 * 1024]);
    client.send(&input);
    harness.wait_for_stats("the refusal", |stats| stats.subscribers == 0);
    let reply = reply_behind_backlog(&mut client);
    assert!(
        reply.starts_with("ERR UNAUTHORIZED ") && reply.ends_with("closing"),
        "{reply:?}"
    );
}

#[test]
fn a_hundred_changes_arrive_in_order_with_their_timestamps() {
    // Published in a tight loop, faster than any socket: the queue must hold the burst.
    let harness = Harness::start(BrokerConfig {
        queue_size: 128,
        ..BrokerConfig::default()
    });
    let mut client = harness.connect();
    client.subscribe("B");
    let start = UNIX_EPOCH + Duration::from_secs(1_712_345_678);
    for n in 0..100 {
        harness.broker.on_lot_change(&LotChange {
            lot: LotId::new("B").unwrap(),
            free: 1000 - n,
            status: Availability::of(1000 - n, 0),
            seq: next_seq(),
            at: start + Duration::from_millis(100 * u64::from(n)),
        });
    }
    for n in 0..100 {
        let line = client.line();
        let Ok(ServerLine::Event(event)) = pubsub::parse_server_line(line.as_bytes()) else {
            panic!("not an event: {line}");
        };
        assert_eq!((event.lot_id.as_ref(), event.free), ("B", 1000 - n));
        let expected = 1_712_345_678.0 + f64::from(n) / 10.0;
        assert!((event.timestamp - expected).abs() < 1e-6, "{line}");
    }
    assert_eq!(
        harness.broker.stats().events_published,
        100,
        "one line per change per subscriber"
    );
}

#[test]
fn the_listener_publishes_like_on_lot_change() {
    let harness = harness();
    let mut client = harness.connect();
    client.subscribe("C");
    let listener = harness.broker.listener();
    listener(&LotChange {
        lot: LotId::new("C").unwrap(),
        free: 5,
        status: Availability::of(5, 0),
        seq: next_seq(),
        at: SystemTime::now(),
    });
    assert_eq!(client.event(), ("C".into(), 5));
}
