//! One change, many subscribers: how long a reserve takes to reach every one of `SUBSCRIBERS`
//! (default 5,000) connections subscribed to `ALL`.
//!
//! Run with `cargo bench -p server --bench fanout`; results go in `docs/benchmarks.md`.
//! Everything runs in one process on 127.0.0.1: the server on ephemeral ports, one RPC client,
//! and the subscribers, read by one thread through a readiness poll (as the server's own
//! notifiers do), so the measurement needs no thread per subscriber. Each of `ROUNDS`
//! (default 50) rounds reserves or cancels one plate and records, for every subscriber, the
//! time from the RPC's send to the moment its event line was read.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use client::ParkingClient;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use server::Config;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Reads what is there; returns the number of complete lines it finished.
fn read_lines(stream: &mut TcpStream, partial: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    let mut lines = 0;
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => panic!("the server closed a subscriber"),
            Ok(n) => {
                for &byte in &chunk[..n] {
                    if byte == b'\n' {
                        lines += 1;
                        partial.clear();
                    } else {
                        partial.push(byte);
                    }
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return lines,
            Err(err) => panic!("subscriber read failed: {err}"),
        }
    }
}

fn main() {
    let subscribers = env("SUBSCRIBERS", 5000);
    let rounds = env("ROUNDS", 50);
    // Every subscriber connects from 127.0.0.1, so the per-address limit is lifted.
    let server = testkit::start(Config {
        max_connections: subscribers + 100,
        max_connections_per_address: 0,
        ..Config::ephemeral()
    });
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut streams = Vec::with_capacity(subscribers);
    let mut partial = vec![Vec::new(); subscribers];
    let started = Instant::now();
    for n in 0..subscribers {
        let std = std::net::TcpStream::connect(server.pubsub_addr()).unwrap();
        std.set_nodelay(true).unwrap();
        (&std).write_all(b"SUBSCRIBE ALL\n").unwrap();
        std.set_nonblocking(true).unwrap();
        let mut stream = TcpStream::from_std(std);
        poll.registry()
            .register(&mut stream, Token(n), Interest::READABLE)
            .unwrap();
        streams.push(stream);
    }
    // Every subscriber's OK line.
    let mut acked = 0;
    while acked < subscribers {
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(!events.is_empty(), "subscribers not acknowledged");
        for event in events.iter() {
            let n = event.token().0;
            acked += read_lines(&mut streams[n], &mut partial[n]);
        }
    }
    println!(
        "{subscribers} subscribers on ALL, subscribed in {} ms",
        started.elapsed().as_millis()
    );
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut slowest_round = Duration::ZERO;
    for round in 0..rounds {
        let sent = Instant::now();
        let changed = if round % 2 == 0 {
            rpc.reserve("A", "FANOUT").unwrap()
        } else {
            rpc.cancel("A", "FANOUT").unwrap()
        };
        assert!(changed);
        let mut received = 0;
        while received < subscribers {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(
                !events.is_empty(),
                "round {round}: {received} of {subscribers} got it"
            );
            let now = Instant::now();
            for event in events.iter() {
                let n = event.token().0;
                let lines = read_lines(&mut streams[n], &mut partial[n]);
                for _ in 0..lines {
                    latency.saturating_record(now.duration_since(sent).as_micros() as u64);
                }
                received += lines;
            }
        }
        slowest_round = slowest_round.max(sent.elapsed());
    }
    let ms = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{rounds} changes x {subscribers} subscribers: reserve-to-event p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; slowest round complete in {:.2} ms",
        ms(0.5),
        ms(0.99),
        ms(1.0),
        slowest_round.as_secs_f64() * 1000.0
    );
    let stats = server.broker().stats();
    println!(
        "broker: {} event lines queued, {} dropped, {} slow disconnects",
        stats.events_published, stats.events_dropped, stats.slow_disconnects
    );
}
