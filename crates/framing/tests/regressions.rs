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
