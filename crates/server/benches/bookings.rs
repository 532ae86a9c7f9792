//! What bookings cost: `book` throughput at `CONNECTIONS` (default 16) connections with
//! `BOOKINGS` (default 10,000) future bookings in the lot, and `getAvailability` with and
//! without them.
//!
//! Run with `cargo bench -p server --bench bookings`; results go in `docs/benchmarks.md`.
//! Everything runs in one process on 127.0.0.1: two servers with the same configuration
//! (production pool sizes, lot `A` with 1,000 spaces, all bookable), one of them with
//! `BOOKINGS` bookings of 1 to 4 hours spread over the next 30 days in lot `A`, and
//! `CONNECTIONS` client threads, one blocking connection each. Every phase runs for
//! `DURATION` seconds (default 5), `ROUNDS` times (default 3), alternating the servers (or the
//! operations) so that drift in the machine's load hits both sides of a ratio alike:
//!
//! - `avail`: `getAvailability A` against the server without bookings, then the one with them;
//! - `book`: on the server with bookings, `book` of a random future window then
//!   `cancelBooking` of it (so the lot stays at `BOOKINGS`), against `reserve` then `cancel`
//!   of one plate per connection on the same server as the yardstick.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::ParkingClient;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use server::{Config, RunningServer};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn start_server() -> RunningServer {
    let mut config = Config::ephemeral();
    config.max_connections_per_address = 0;
    config.lots = serde_json::from_value(json!([
        {"id": "A", "capacity": 1000},
        {"id": "B", "capacity": 50},
        {"id": "C", "capacity": 200},
    ]))
    .unwrap();
    testkit::start(config)
}

/// A random window of 1 to 4 hours starting between 10 minutes and 29 days from now.
fn future_window(rng: &mut SmallRng, now: u64) -> (u64, u64) {
    let start = now + rng.random_range(600..29 * 86_400);
    (start, start + rng.random_range(3600..4 * 3600))
}

/// What one phase measured over every connection.
struct Measured {
    /// Operations (an `op` call) per second.
    per_second: f64,
    latency_us: Histogram<u64>,
}

impl Measured {
    fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Runs `op` in a loop on `connections` connections to `addr` for `duration`.
fn measure(
    addr: SocketAddr,
    connections: u64,
    duration: Duration,
    op: impl Fn(&mut ParkingClient, &mut SmallRng, u64) + Sync,
) -> Measured {
    let stop = AtomicBool::new(false);
    let mut clients: Vec<ParkingClient> = (0..connections)
        .map(|_| ParkingClient::connect(addr).unwrap())
        .collect();
    let started = Instant::now();
    let per_thread: Vec<(u64, Histogram<u64>)> = thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(n, client)| {
                let (stop, op) = (&stop, &op);
                scope.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(n as u64);
                    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                    let mut done = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        op(client, &mut rng, n as u64);
                        latency.saturating_record(sent.elapsed().as_micros() as u64);
                        done += 1;
                    }
                    (done, latency)
                })
            })
            .collect();
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut total = 0;
    for (done, histogram) in per_thread {
        total += done;
        latency_us.add(histogram).unwrap();
    }
    Measured {
        per_second: total as f64 / elapsed,
        latency_us,
    }
}

fn main() {
    let bookings = env("BOOKINGS", 10_000);
    let connections = env("CONNECTIONS", 16);
    let duration = Duration::from_secs(env("DURATION", 5));
    let rounds = env("ROUNDS", 3);
    let empty = start_server();
    let booked = start_server();

    let started = Instant::now();
    let mut rpc = ParkingClient::connect(booked.rpc_addr()).unwrap();
    let mut rng = SmallRng::seed_from_u64(18);
    let now = unix_now();
    for n in 0..bookings {
        let (start, end) = future_window(&mut rng, now);
        rpc.book("A", &format!("PRE{n}"), start, end, None).unwrap();
    }
    println!(
        "{bookings} future bookings made in lot A in {:.2} s; {connections} connections, {} s per phase, {rounds} rounds",
        started.elapsed().as_secs_f64(),
        duration.as_secs()
    );

    let avail = |client: &mut ParkingClient, _: &mut SmallRng, _: u64| {
        client.get_availability("A").unwrap();
    };
    let book = |client: &mut ParkingClient, rng: &mut SmallRng, n: u64| {
        let (start, end) = future_window(rng, unix_now());
        let booking = client
            .book("A", &format!("BENCH{n}"), start, end, None)
            .unwrap();
        assert!(client.cancel_booking(&booking.id.to_string()).unwrap());
    };
    let reserve = |client: &mut ParkingClient, _: &mut SmallRng, n: u64| {
        let plate = format!("BENCH{n}");
        assert!(client.reserve("A", &plate).unwrap());
        assert!(client.cancel("A", &plate).unwrap());
    };

    println!("\navail: getAvailability A, req/s (p50 / p99 ms)");
    println!("round |      no bookings |  {bookings} bookings | ratio");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let without = measure(empty.rpc_addr(), connections, duration, avail);
        let with = measure(booked.rpc_addr(), connections, duration, avail);
        let ratio = with.per_second / without.per_second;
        ratios.push(ratio);
        println!(
            "{round:>5} | {:>7.0} ({:.3} / {:.3}) | {:>7.0} ({:.3} / {:.3}) | {ratio:.2}",
            without.per_second,
            without.ms(0.5),
            without.ms(0.99),
            with.per_second,
            with.ms(0.5),
            with.ms(0.99),
        );
    }

    println!("\nbook: pairs/s (p50 / p99 ms per pair), on the server with {bookings} bookings");
    println!("round |     book + cancelBooking |        reserve + cancel | ratio");
    for round in 1..=rounds {
        let booking = measure(booked.rpc_addr(), connections, duration, book);
        let reserving = measure(booked.rpc_addr(), connections, duration, reserve);
        println!(
            "{round:>5} | {:>7.0} ({:.3} / {:.3}) | {:>7.0} ({:.3} / {:.3}) | {:.2}",
            booking.per_second,
            booking.ms(0.5),
            booking.ms(0.99),
            reserving.per_second,
            reserving.ms(0.5),
            reserving.ms(0.99),
            booking.per_second / reserving.per_second,
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "avail with/without bookings: median ratio {:.2} (min {:.2}, max {:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
