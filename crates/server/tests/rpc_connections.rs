//! How the RPC port treats connections: pipelining, partial writes, oversized frames, races,
//! expiry, idle and stalled peers, the connection limit.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use common::{
    DEADLINE, Port, RawLines, RawRpc, error_code, eventually, start, start_with, start_with_clock,
};
use framing::frame;
use serde_json::json;
use state::ManualClock;

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let mut batch = Vec::new();
    for id in 0..50u32 {
        let request = match id % 3 {
            0 => format!(r#"{{"rpcId": {id}, "method": "PING", "args": []}}"#),
            1 => format!(r#"{{"rpcId": {id}, "method": "reserve", "args": ["A", "P{id}"]}}"#),
            _ => "AVAIL A".to_owned(),
        };
        frame::encode(&mut batch, request.as_bytes()).unwrap();
    }
    rpc.stream.write_all(&batch).unwrap();
    let mut reserved = 0;
    for id in 0..50u32 {
        let reply = rpc.recv();
        match id % 3 {
            0 => assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&reply).unwrap()["rpcId"],
                id
            ),
            1 => {
                let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
                assert_eq!(reply["rpcId"], id);
                assert_eq!(reply["result"], true);
                reserved += 1;
            }
            _ => assert_eq!(
                String::from_utf8(reply).unwrap(),
                (100 - reserved).to_string()
            ),
        }
    }
}

#[test]
fn a_request_split_across_writes_is_reassembled() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let mut bytes = Vec::new();
    frame::encode(
        &mut bytes,
        br#"{"rpcId": 77, "method": "getAvailability", "args": ["C"]}"#,
    )
    .unwrap();
    for piece in [&bytes[..2], &bytes[2..5], &bytes[5..20], &bytes[20..]] {
        rpc.stream.write_all(piece).unwrap();
        rpc.stream.flush().unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&rpc.recv()).unwrap(),
        json!({"rpcId": 77, "result": 200, "error": null})
    );
}

#[test]
fn oversized_frame_is_refused_and_closed_while_others_carry_on() {
    let server = start();
    let mut other = RawRpc::connect(server.rpc_addr());
    assert_eq!(other.text("PING"), "PONG");
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let len = (framing::MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    rpc.stream.write_all(&len).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&rpc.recv()).unwrap();
    assert_eq!(reply["rpcId"], json!(null));
    assert_eq!(reply["result"], json!(null));
    assert_eq!(error_code(&reply), "FRAME_TOO_LARGE");
    // Nothing after the fatal error is answered, not even the oversized frame again.
    rpc.expect_closed_with_nothing_more(DEADLINE);
    assert_eq!(other.text("AVAIL A"), "100");
}

/// Even on the smallest buffer budget allowed, which must hold one request of the largest
/// size.
#[test]
fn a_frame_at_the_limit_is_accepted() {
    let server = start_with(|config| config.max_buffered_bytes = 4 << 20);
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let mut request = br#"{"rpcId": 5, "method": "PING", "args": [], "pad": ""#.to_vec();
    request.resize(framing::MAX_FRAME_LEN - 2, b'x');
    request.extend_from_slice(b"\"}");
    assert_eq!(request.len(), framing::MAX_FRAME_LEN);
    rpc.send(&request);
    let reply: serde_json::Value = serde_json::from_slice(&rpc.recv()).unwrap();
    assert_eq!(reply["result"], "PONG");
}

#[test]
fn racing_reservations_never_overbook() {
    let server = start_with(|config| {
        config.lots = serde_json::from_value(json!([{"id": "R", "capacity": 50}])).unwrap();
    });
    let addr = server.rpc_addr();
    let barrier = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|thread| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut rpc = RawRpc::connect(addr);
                barrier.wait();
                let mut granted = 0;
                // 100 distinct plates, each tried by every thread, in a thread-specific order.
                for n in 0..100 {
                    let plate = (n + thread * 3) % 100;
                    let reply = rpc.json(&format!(
                        r#"{{"rpcId": {n}, "method": "reserve", "args": ["R", "PLATE{plate}"]}}"#
                    ));
                    if reply["result"] == true {
                        granted += 1;
                    }
                }
                granted
            })
        })
        .collect();
    let granted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(granted, 50);
    let mut rpc = RawRpc::connect(addr);
    assert_eq!(rpc.text("AVAIL R"), "0");
}

#[test]
fn reservations_stop_counting_exactly_at_the_ttl_without_the_purge() {
    let clock = Arc::new(ManualClock::new());
    let ttl = Duration::from_secs(10);
    let server = start_with_clock(clock.clone(), |config| {
        config.lots = serde_json::from_value(json!([{"id": "S", "capacity": 1}])).unwrap();
        config.reservation_ttl = ttl;
        // The purger sleeps min(purge_interval, reservation_ttl) of real time between purges,
        // so it never wakes during this test: only the requests can notice the expiry.
        config.purge_interval = Duration::from_secs(3600);
    });
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE S P1"), "OK");
    assert_eq!(rpc.text("RESERVE S P1"), "EXISTS");
    clock.advance(ttl - Duration::from_nanos(1));
    assert_eq!(rpc.text("AVAIL S"), "0");
    assert_eq!(rpc.text("RESERVE S P2"), "FULL");
    // At the TTL exactly, reserve purges the lot before checking its capacity.
    clock.advance(Duration::from_nanos(1));
    assert_eq!(rpc.text("RESERVE S P2"), "OK");
    assert_eq!(rpc.text("CANCEL S P1"), "NOT_FOUND");
    let lots: serde_json::Value = serde_json::from_str(&rpc.text("LOTS")).unwrap();
    assert_eq!(lots[0]["reserved"], 1);
    // And a read alone sees P2 expire.
    clock.advance(ttl);
    assert_eq!(rpc.text("AVAIL S"), "1");
    assert_eq!(rpc.text("RESERVE S P1"), "OK");
}

#[test]
fn idle_connections_do_not_lock_anyone_out() {
    let server = start();
    // More idle connections than workers (16), plus one that sent half a header.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server.rpc_addr()).unwrap())
        .collect();
    let mut stalled = TcpStream::connect(server.rpc_addr()).unwrap();
    stalled.write_all(&[0, 0]).unwrap();
    // Answered while all of them stay open: a worker that kept a connection until it closed
    // would leave this one waiting for `idle_timeout` (300 s), far past the read timeout.
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("PING"), "PONG");
    // And every idle connection is still served once it speaks.
    for stream in idle.iter().take(5) {
        let mut rpc = RawRpc {
            stream: stream.try_clone().unwrap(),
        };
        rpc.stream.set_read_timeout(Some(DEADLINE)).unwrap();
        assert_eq!(rpc.text("PING"), "PONG");
    }
}

#[test]
fn an_idle_connection_is_closed_after_idle_timeout() {
    common::check_idle_timeout(Port::Rpc);
}

#[test]
fn a_request_that_trickles_in_is_closed_after_frame_timeout() {
    common::check_frame_timeout(Port::Rpc);
}

#[test]
fn a_peer_that_stops_reading_replies_is_closed_while_others_are_served() {
    common::check_write_stall(Port::Rpc);
}

#[test]
fn connections_over_the_limit_get_busy_and_the_server_recovers() {
    const LIMIT: usize = 100;
    let server = start_with(|config| config.max_connections = LIMIT);
    let mut held: Vec<RawRpc> = (0..LIMIT)
        .map(|_| RawRpc::connect(server.rpc_addr()))
        .collect();
    for rpc in &mut held {
        assert_eq!(rpc.text("PING"), "PONG");
    }
    let mut extra: Vec<RawRpc> = (0..50)
        .map(|_| RawRpc::connect(server.rpc_addr()))
        .collect();
    for rpc in &mut extra {
        let reply: serde_json::Value = serde_json::from_slice(&rpc.recv()).unwrap();
        assert_eq!(reply["rpcId"], json!(null));
        assert_eq!(reply["result"], json!(null));
        assert_eq!(error_code(&reply), "BUSY");
        rpc.expect_closed(DEADLINE);
    }
    assert_eq!(server.summary().refused_busy, 50);
    drop(extra);
    drop(held);
    // Every slot is freed once the server has noticed the closes, and it serves again.
    eventually("the freed connection slots", || {
        let mut again: Vec<RawRpc> = (0..LIMIT)
            .map(|_| RawRpc::connect(server.rpc_addr()))
            .collect();
        again
            .iter_mut()
            .all(|rpc| rpc.try_text("PING").as_deref() == Some("PONG"))
    });
}

/// The summary counts every request the RPC port answered and every line the sensor port
/// answered, errors included.
#[test]
fn the_summary_counts_requests_and_sensor_lines_errors_included() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("PING"), "PONG");
    assert!(rpc.text("NO-SUCH-METHOD").starts_with("ERR "));
    assert_eq!(rpc.text("PING"), "PONG");
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert_eq!(sensor.call("PING"), "PONG");
    assert!(sensor.call("FLY A 1").starts_with("ERR "));
    let summary = server.summary();
    assert_eq!((summary.rpc_requests, summary.sensor_lines), (3, 2));
}

#[test]
fn shutdown_closes_open_connections_and_stops_in_bounded_time() {
    let server = start();
    let addr = server.rpc_addr();
    let mut rpc = RawRpc::connect(addr);
    assert_eq!(rpc.text("PING"), "PONG");
    let (stopped, summary) = mpsc::channel();
    thread::spawn(move || stopped.send(server.shutdown()));
    // The documented bound (design.md, Shutdown): `shutdown_grace` (2 s by default) plus a
    // slice. A worker that ignored the shutdown would hold this idle connection, and the
    // stop, until `idle_timeout` (300 s), so the test allows DEADLINE on top: a loaded 2-core
    // machine can take seconds to join the server's threads.
    let summary = summary
        .recv_timeout(Duration::from_secs(2) + DEADLINE)
        .expect("the shutdown did not finish");
    assert_eq!(summary.rpc_requests, 1);
    rpc.expect_closed(DEADLINE);
    assert!(TcpStream::connect(addr).is_err());
}
