//! Regression tests for what an attacker and a new user found (issue 15): each fails against
//! the server as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::{DEADLINE, RawLines, RawRpc, error_code, eventually, start, start_with};
use server::LotConfig;

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

/// A frame header announcing `len` payload bytes.
fn header(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap().to_be_bytes()
}

#[test]
fn a_large_request_past_the_buffer_budget_is_refused_and_others_are_served() {
    let server = start_with(|config| config.max_buffered_bytes = 4 << 20);
    // The first peer holds most of the budget with the start of a 3.5 MiB request.
    let mut holder = RawRpc::connect(server.rpc_addr());
    let big = 3_500_000;
    holder.stream.write_all(&header(big)).unwrap();
    holder.stream.write_all(&vec![b' '; 3_000_000]).unwrap();
    eventually("the first request buffered", || {
        server.buffered_bytes() >= 3_000_000
    });
    // The second needs more than what is left: exactly 8 KiB arrive, so the server has
    // read all of it (a clean close, not a reset) when it asks for a bigger buffer.
    let mut greedy = RawRpc::connect(server.rpc_addr());
    greedy.stream.write_all(&header(big)).unwrap();
    greedy.stream.write_all(&vec![b' '; 8 * 1024 - 4]).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&greedy.recv()).unwrap();
    assert_eq!(error_code(&reply), "BUSY");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("max_buffered_bytes"),
        "{reply}"
    );
    greedy.expect_closed(DEADLINE);
    // Small requests need no budget and are served meanwhile.
    let mut small = RawRpc::connect(server.rpc_addr());
    assert_eq!(small.text("PING"), "PONG");
    // The first request completes and is answered, and its buffer is given back.
    holder
        .stream
        .write_all(&vec![b' '; big - 3_000_000])
        .unwrap();
    let answered = String::from_utf8(holder.recv()).unwrap();
    assert!(answered.starts_with("ERR "), "{answered}");
    assert_eq!(holder.text("PING"), "PONG");
    eventually("the budget given back", || server.buffered_bytes() == 0);
}

#[test]
fn pipelined_requests_with_large_replies_are_all_answered_in_order() {
    // 400 lots make each getLots reply about 40 KB: a few fill the output high-water mark,
    // so answering pauses and resumes many times within one read.
    let server = start_with(|config| {
        config.lots = (0..400)
            .map(|i| LotConfig::new(state::LotId::new(&format!("L{i}")).unwrap(), 10))
            .collect();
    });
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let mut burst = Vec::new();
    for id in 0..200u32 {
        let request = if id % 2 == 0 {
            format!(r#"{{"rpcId":{id},"method":"getLots","args":[]}}"#)
        } else {
            format!(r#"{{"rpcId":{id},"method":"getAvailability","args":["L{id}"]}}"#)
        };
        framing::frame::encode(&mut burst, request.as_bytes()).unwrap();
    }
    // Everything is sent before anything is read.
    rpc.stream.write_all(&burst).unwrap();
    for id in 0..200u32 {
        let reply: serde_json::Value = serde_json::from_slice(&rpc.recv()).unwrap();
        assert_eq!(reply["rpcId"], id, "replies out of order");
        if id % 2 == 0 {
            assert_eq!(reply["result"].as_array().map(Vec::len), Some(400));
        } else {
            assert_eq!(reply["result"], 10);
        }
    }
    eventually("the reply buffers given back", || {
        server.buffered_bytes() == 0
    });
}

#[test]
fn an_rpc_frame_on_a_line_port_is_answered_at_once_and_closed() {
    let server = start();
    let mut frame = Vec::new();
    framing::frame::encode(&mut frame, br#"{"rpcId":1,"method":"ping","args":[]}"#).unwrap();
    for (addr, expected) in [
        (
            server.sensor_addr(),
            "ERR UNKNOWN_COMMAND this is the sensor port",
        ),
        (
            server.pubsub_addr(),
            "ERR BAD_COMMAND this is the pub/sub port",
        ),
    ] {
        let mut port = RawLines::connect(addr);
        // No newline follows: the port must not wait for one.
        port.send(&frame);
        let line = port.line();
        assert!(line.starts_with(expected), "{line}");
        assert!(line.contains("RPC frame"), "{line}");
        port.expect_closed(DEADLINE);
    }
}

#[test]
fn the_summary_counts_changes_published_apart_from_lines_queued() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    // Nobody subscribes: the changes are published, and no line is queued.
    assert_eq!(rpc.text("RESERVE A P1"), "OK");
    assert_eq!(rpc.text("RESERVE B P1"), "OK");
    let summary = server.summary();
    assert_eq!(
        (summary.changes_published, summary.events_published),
        (2, 0)
    );
    assert!(
        summary
            .to_string()
            .contains("2 change(s) published, 0 event line(s) queued"),
        "{summary}"
    );
}
