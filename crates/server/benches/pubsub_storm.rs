//! Issue 5's measured guarantee: a storm of reserve/cancel RPCs while 50 subscribers never
//! read and one reads normally, compared with the same storm and no subscribers.
//!
//! Run with `cargo bench -p server --bench pubsub_storm`; results go in `docs/benchmarks.md`.
//! `STUCK=N` changes the number of stuck subscribers (default 50) and `SNDBUF=BYTES` the
//! server's `subscriber_send_buffer`, to see what each costs.
//! Everything runs in one process on 127.0.0.1: the server on ephemeral ports, 8 RPC client
//! threads, the subscribers.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use client::{ParkingClient, Subscription};
use framing::pubsub::Topic;
use hdrhistogram::Histogram;
use server::Config;
use socket2::{Domain, Socket, Type};

const RPC_CONNECTIONS: usize = 8;
const STORM_RPCS: usize = 10_000;
const STUCK_SUBSCRIBERS: usize = 50;

struct StormResult {
    latency: Histogram<u64>,
    last_reply: Instant,
}

/// 10,000 RPCs from 8 connections: each connection alternates reserve and cancel of its own
/// plate on lot A, so every RPC changes A's free count and publishes one event.
fn storm(rpc: SocketAddr) -> StormResult {
    let barrier = Arc::new(Barrier::new(RPC_CONNECTIONS));
    let threads: Vec<_> = (0..RPC_CONNECTIONS)
        .map(|n| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut client = ParkingClient::connect(rpc).unwrap();
                let plate = format!("STORM{n}");
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                barrier.wait();
                for i in 0..STORM_RPCS / RPC_CONNECTIONS {
                    let sent = Instant::now();
                    let changed = if i % 2 == 0 {
                        client.reserve("A", &plate).unwrap()
                    } else {
                        client.cancel("A", &plate).unwrap()
                    };
                    assert!(changed);
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                }
                (latency, Instant::now())
            })
        })
        .collect();
    let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut last_reply = Instant::now();
    for thread in threads {
        let (latency, finished) = thread.join().unwrap();
        merged.add(&latency).unwrap();
        last_reply = finished.max(last_reply);
    }
    // `last_reply` above is when the last thread noticed; good enough at ms resolution.
    StormResult {
        latency: merged,
        last_reply,
    }
}

/// A subscriber that never reads, with a small receive buffer so it fills up quickly.
fn stuck_subscriber(pubsub: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&pubsub.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    std::io::Write::write_all(&mut stream, b"SUBSCRIBE A\n").unwrap();
    stream
}

fn row(label: &str, latency: &Histogram<u64>) {
    println!(
        "{label:<24} p50 {:>6} us   p99 {:>6} us   p99.9 {:>6} us   max {:>6} us",
        latency.value_at_quantile(0.50),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max()
    );
}

fn main() {
    println!(
        "cores: {}; {STORM_RPCS} reserve/cancel RPCs from {RPC_CONNECTIONS} connections",
        thread::available_parallelism().map_or(0, usize::from)
    );

    let quiet = testkit::start(Config::ephemeral());
    let baseline = storm(quiet.rpc_addr());
    drop(quiet);
    row("no subscribers", &baseline.latency);

    let mut config = Config::ephemeral();
    if let Some(bytes) = std::env::var("SNDBUF").ok().and_then(|n| n.parse().ok()) {
        config.subscriber_send_buffer = bytes;
    }
    let server = testkit::start(config);
    let stuck_count: usize = std::env::var("STUCK")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(STUCK_SUBSCRIBERS);
    let stuck: Vec<TcpStream> = (0..stuck_count)
        .map(|_| stuck_subscriber(server.pubsub_addr()))
        .collect();
    let mut normal = Subscription::connect(
        server.pubsub_addr(),
        &[Topic::Lot("A")],
        Duration::from_secs(5),
    )
    .unwrap();
    // Wait until every stuck subscriber is registered, so the storm meets all of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.broker().stats().subscribers < stuck_count + 1 {
        assert!(Instant::now() < deadline, "subscribers did not register");
        thread::sleep(Duration::from_millis(5));
    }
    let reader = thread::spawn(move || {
        let mut received = 0usize;
        let mut last_event = None;
        loop {
            match normal.next_event_timeout(Duration::from_secs(1)) {
                Ok(Some(_)) => {
                    received += 1;
                    last_event = Some(Instant::now());
                }
                Ok(None) => break,
                Err(err) => {
                    println!("normal subscriber: {err}");
                    break;
                }
            }
        }
        (received, last_event)
    });
    let loaded = storm(server.rpc_addr());
    let (received, last_event) = reader.join().unwrap();
    row("50 stuck + 1 subscriber", &loaded.latency);
    let stats = server.broker().stats();
    let lag = last_event.map(|at| at.saturating_duration_since(loaded.last_reply));
    println!(
        "normal subscriber: {received} of {STORM_RPCS} events; last event {} ms after the last RPC reply",
        lag.map_or("n/a".into(), |lag| format!(
            "{:.1}",
            lag.as_secs_f64() * 1000.0
        ))
    );
    println!(
        "broker: {} event lines queued, {} dropped, {} slow subscribers disconnected (of {STUCK_SUBSCRIBERS} stuck)",
        stats.events_published, stats.events_dropped, stats.slow_disconnects
    );
    println!(
        "p99 ratio with/without subscribers: {:.2}",
        loaded.latency.value_at_quantile(0.99) as f64
            / baseline.latency.value_at_quantile(0.99).max(1) as f64
    );
    drop(stuck);
}
