//! Regression tests for what an attacker and a new user found (issue 15): each fails against
//! the server as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{RawLines, RawRpc, start};

/// Longest error reply any of these tests accepts: a code, a sentence and an echo of at
/// most 64 characters, each escaped to at most 10 bytes.
const SHORT: usize = 1024;

#[test]
fn errors_echo_only_a_short_escaped_prefix_of_what_the_peer_sent() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    // A 4 MiB text frame of control bytes was answered with all of it, escaped (20 MB).
    let garbage = vec![1u8; 4 * 1024 * 1024];
    rpc.send(&garbage);
    let reply = String::from_utf8(rpc.recv()).unwrap();
    assert!(
        reply.len() < SHORT,
        "{} bytes: {:?}",
        reply.len(),
        &reply[..SHORT]
    );
    assert!(reply.starts_with("ERR UNKNOWN_METHOD "), "{reply}");
    assert!(reply.contains("... (4194304 bytes)"), "{reply}");
    assert!(
        !reply.contains('\u{1}'),
        "raw control bytes echoed: {reply:?}"
    );

    let huge = "x".repeat(1 << 20);
    for request in [
        format!(r#"{{"rpcId": 1, "method": "{huge}", "args": []}}"#),
        format!(r#"{{"rpcId": 2, "method": "getAvailability", "args": ["{huge}"]}}"#),
        format!(r#"{{"rpcId": 3, "method": "reserve", "args": ["A", "{huge}"]}}"#),
        format!(r#"{{"rpcId": 4, "method": "reserve", "args": ["A", {{"x": "{huge}"}}]}}"#),
        format!(r#"{{"rpcId": "{huge}", "method": "PING", "args": []}}"#),
    ] {
        let reply = rpc.json(&request);
        let error = reply["error"].as_str().unwrap();
        assert!(
            error.len() < SHORT,
            "{} bytes: {:?}",
            error.len(),
            &error[..SHORT]
        );
    }
    assert!(rpc.text(&format!("AVAIL {huge}")).len() < SHORT);
    assert!(rpc.text(&format!("RESERVE A {huge}")).len() < SHORT);
    assert!(rpc.text(&format!("{huge} A")).len() < SHORT);

    let mut sensor = RawLines::connect(server.sensor_addr());
    let long_lot = "L".repeat(1000);
    let reply = sensor.call(&format!("UPDATE {long_lot} 1"));
    assert!(
        reply.starts_with("ERR UNKNOWN_LOT ") && reply.len() < SHORT,
        "{reply}"
    );
    let reply = sensor.call("UPDATE A \u{1}\u{2}");
    assert!(
        reply.starts_with("ERR BAD_COUNT ") && !reply.contains('\u{1}'),
        "{reply:?}"
    );

    let mut subscriber = RawLines::connect(server.pubsub_addr());
    let reply = subscriber.call("SUBSCRIBE \u{1}\u{7}");
    assert!(reply.starts_with("ERR UNKNOWN_LOT "), "{reply:?}");
    assert!(
        !reply.contains('\u{1}') && !reply.contains('\u{7}'),
        "{reply:?}"
    );
    let reply = subscriber.call(&format!("\u{1b}[2J{}", "y".repeat(900)));
    assert!(
        reply.starts_with("ERR BAD_COMMAND ") && reply.len() < SHORT,
        "{reply:?}"
    );
    assert!(!reply.contains('\u{1b}'), "{reply:?}");
    // A well-formed unknown lot is echoed as it is.
    assert_eq!(subscriber.call("SUBSCRIBE Z"), "ERR UNKNOWN_LOT Z");
}
