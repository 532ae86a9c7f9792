//! Appends per second through the embedded store's journal, with 1 and 16 concurrent
//! writers, under each fsync policy, on the disk that holds the temporary directory (or
//! `BENCH_DIR`). Each append is one reserve or cancel, made durable before it returns.
//!
//! `cargo bench -p store --bench journal` (docs/design.md, "Durability", has a run).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use state::{LotId, LotSpec, ParkingState, Plate, SystemClock};
use store::{EmbeddedStore, Fsync, Options, Store};

const RUN: Duration = Duration::from_secs(3);

fn appends_per_second(fsync: Fsync, writers: usize) -> f64 {
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = base.join(format!("journal-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lots = [LotSpec::new(LotId::new("A").unwrap(), 1_000_000)];
    let state = ParkingState::new(lots, Duration::from_secs(300), Arc::new(SystemClock)).unwrap();
    let options = Options {
        fsync,
        ..Options::new(&dir)
    };
    let store = Arc::new(EmbeddedStore::open(Arc::new(state), options).unwrap());
    let until = Instant::now() + RUN;
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let plate = Plate::parse(&format!("W{writer}")).unwrap();
                let mut appends = 0u64;
                while Instant::now() < until {
                    store.state().reserve("A", plate).unwrap();
                    store.state().cancel("A", plate).unwrap();
                    appends += 2;
                }
                appends
            })
        })
        .collect();
    let appends: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    appends as f64 / RUN.as_secs_f64()
}

fn main() {
    println!("{:>9} {:>8} {:>12}", "fsync", "writers", "appends/s");
    for fsync in [Fsync::Always, Fsync::Everysec, Fsync::No] {
        for writers in [1, 16] {
            let rate = appends_per_second(fsync, writers);
            println!("{fsync:>9} {writers:>8} {rate:>12.0}");
        }
    }
}
