//! Who may connect: `max_connections_per_address` keeps one client from taking every place
//! of a port, on every port, and a refusal says which limit it hit. Other 127.0.0.0/8
//! addresses stand for other client machines.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{DEADLINE, RawLines, RawRpc, error_code, eventually, start_with};

const GREEDY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[test]
fn one_address_holds_at_most_its_share_of_the_rpc_port() {
    let server = start_with(|config| config.max_connections_per_address = 2);
    let mut held: Vec<RawRpc> = (0..2)
        .map(|_| RawRpc::connect_from(GREEDY, server.rpc_addr()))
        .collect();
    for rpc in &mut held {
        assert_eq!(rpc.text("PING"), "PONG");
    }
    let mut refused = RawRpc::connect_from(GREEDY, server.rpc_addr());
    let reply: serde_json::Value = serde_json::from_slice(&refused.recv()).unwrap();
    assert_eq!(error_code(&reply), "BUSY");
    let message = reply["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("127.0.0.1") && message.contains("2 connections"),
        "{message}"
    );
    refused.expect_closed(DEADLINE);
    // Another client is not held to the first one's count.
    let mut other = RawRpc::connect_from(OTHER, server.rpc_addr());
    assert_eq!(other.text("PING"), "PONG");
    assert_eq!(server.summary().refused_busy, 1);
    // Once one of its connections closes, the first address may connect again.
    drop(held.pop());
    eventually("the address's freed place", || {
        RawRpc::connect_from(GREEDY, server.rpc_addr())
            .try_text("PING")
            .is_some_and(|reply| reply == "PONG")
    });
}

#[test]
fn the_sensor_and_pubsub_ports_have_the_same_limit() {
    let server = start_with(|config| config.max_connections_per_address = 1);
    let mut sensor = RawLines::connect_from(GREEDY, server.sensor_addr());
    assert_eq!(sensor.call("PING"), "PONG");
    let mut refused = RawLines::connect_from(GREEDY, server.sensor_addr());
    let line = refused.line();
    assert!(
        line.starts_with("ERR BUSY ") && line.contains("127.0.0.1"),
        "{line}"
    );
    refused.expect_closed(DEADLINE);
    let mut elsewhere = RawLines::connect_from(OTHER, server.sensor_addr());
    assert_eq!(elsewhere.call("PING"), "PONG");

    let mut subscriber = RawLines::connect_from(GREEDY, server.pubsub_addr());
    assert!(subscriber.call("SUBSCRIBE A").starts_with("OK"));
    let mut refused = RawLines::connect_from(GREEDY, server.pubsub_addr());
    let line = refused.line();
    assert!(
        line.starts_with("ERR BUSY ") && line.contains("127.0.0.1"),
        "{line}"
    );
    refused.expect_closed(DEADLINE);
    let mut elsewhere = RawLines::connect_from(OTHER, server.pubsub_addr());
    assert!(elsewhere.call("SUBSCRIBE A").starts_with("OK"));
    assert_eq!(server.summary().refused_busy, 2);
    // A closed subscriber gives its place back.
    drop(subscriber);
    eventually("the subscriber's freed place", || {
        let mut again = RawLines::connect_from(GREEDY, server.pubsub_addr());
        again.send(b"SUBSCRIBE A\n");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut again.reader, &mut line).is_ok() && line.starts_with("OK")
    });
}

#[test]
fn zero_means_no_limit_per_address() {
    let server = start_with(|config| {
        config.max_connections_per_address = 0;
        config.max_connections = 3;
    });
    let mut held: Vec<RawRpc> = (0..3)
        .map(|_| RawRpc::connect_from(GREEDY, server.rpc_addr()))
        .collect();
    for rpc in &mut held {
        assert_eq!(rpc.text("PING"), "PONG");
    }
    // Only the port's own limit applies, and the refusal names it.
    let mut refused = RawRpc::connect_from(OTHER, server.rpc_addr());
    let reply: serde_json::Value = serde_json::from_slice(&refused.recv()).unwrap();
    let message = reply["error"].as_str().unwrap_or_default();
    assert!(message.contains("limit of 3 connections"), "{message}");
}
