//! Issue 4's sensor fleet: `SENSORS` (default 50) sensors, each on its own connection sending
//! 10 updates a second for `SECONDS` (default 1) to the sensor port's 4 workers, and the time
//! from each line's send to its ack.
//!
//! Run with `cargo bench -p server --bench sensor_fleet`; results go in `docs/benchmarks.md`.
//! The integration test `fifty_sensors_at_ten_updates_a_second_are_all_served` checks that
//! every line is acked; the latency is measured here, because a test must not assert speed.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::thread;
use std::time::{Duration, Instant};

use client::SensorClient;
use hdrhistogram::Histogram;
use server::Config;
use state::CountChange;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let sensors = env("SENSORS", 50);
    let updates = env("SECONDS", 1) * 10;
    let server = testkit::start(Config::ephemeral());
    let addr = server.sensor_addr();
    let fleet: Vec<_> = (0..sensors)
        .map(|n| {
            thread::spawn(move || {
                let mut sensor = SensorClient::connect(addr, Duration::from_secs(10)).unwrap();
                let lot = ["A", "B", "C"][(n % 3) as usize];
                let mut acks = Histogram::<u64>::new(3).unwrap();
                for i in 0..updates {
                    let sent = Instant::now();
                    let count = u32::try_from((n + i) % 40).unwrap();
                    sensor.update(lot, CountChange::Set(count)).unwrap();
                    acks.record(u64::try_from(sent.elapsed().as_micros()).unwrap())
                        .unwrap();
                    thread::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed()));
                }
                acks
            })
        })
        .collect();
    let mut acks = Histogram::<u64>::new(3).unwrap();
    for sensor in fleet {
        acks.add(sensor.join().unwrap()).unwrap();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "{sensors} sensors x 10 updates/s, {} acks: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        acks.len(),
        ms(acks.value_at_quantile(0.5)),
        ms(acks.value_at_quantile(0.99)),
        ms(acks.max()),
    );
}
