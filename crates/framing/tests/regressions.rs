//! Regression tests for bugs the property tests found (see `docs/robustness.md`).

use framing::pubsub::{self, Event, ServerLine};

/// `Event` carries `#[serde(tag = "type", rename = "EVENT")]`, but serde only writes a struct's
/// tag: it never checked it when reading. A JSON line with no `type`, or with another `type`,
/// was taken for an event.
#[test]
fn pushed_json_lines_must_be_typed_events() {
    for line in [
        &br#"{"lotId":"A","free":1,"timestamp":2.5}"#[..],
        br#"{"type":"OTHER","lotId":"A","free":1,"timestamp":2.5}"#,
        br#"{"type":"event","lotId":"A","free":1,"timestamp":2.5}"#,
        br#"{"type":5,"lotId":"A","free":1,"timestamp":2.5}"#,
        br#"{"type":null,"lotId":"A","free":1,"timestamp":2.5}"#,
    ] {
        assert!(
            pubsub::parse_server_line(line).is_err(),
            "{} passed for an event",
            String::from_utf8_lossy(line)
        );
    }
    // The tag may sit anywhere in the object, and unknown members are still ignored.
    assert_eq!(
        pubsub::parse_server_line(
            br#"{"lotId":"A\n","free":1,"extra":[1],"type":"EVENT","timestamp":2.5}"#
        ),
        Ok(ServerLine::Event(Event {
            lot_id: "A\n".into(),
            free: 1,
            status: None,
            timestamp: 2.5,
        }))
    );
}

/// serde_json's default float parser is not correctly rounded: about 12 % of realistic Unix
/// timestamps with nanoseconds read back as a neighbouring f64, this one among them. `framing`
/// enables serde_json's `float_roundtrip` feature, so every timestamp comes back bit for bit.
#[test]
fn event_timestamps_come_back_bit_for_bit() {
    let timestamp = 2048899982.4084914_f64;
    let mut line = Vec::new();
    pubsub::encode_event(
        &mut line,
        &Event {
            lot_id: "A".into(),
            free: 1,
            status: None,
            timestamp,
        },
    );
    assert_eq!(line.pop(), Some(b'\n'));
    let Ok(ServerLine::Event(event)) = pubsub::parse_server_line(&line) else {
        panic!("not an event: {}", String::from_utf8_lossy(&line));
    };
    assert_eq!(
        event.timestamp.to_bits(),
        timestamp.to_bits(),
        "{} came back as {}",
        timestamp,
        event.timestamp
    );
}
