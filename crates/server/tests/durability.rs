//! The durable store behind the server, over real sockets: a failing disk answers
//! UNAVAILABLE on every port while reads go on, writes resume when it recovers, and a
//! restart has exactly what was acknowledged; expiry runs on across a restart.

#![allow(clippy::unwrap_used)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RawLines, RawRpc, error_code, eventually};
use serde_json::json;
use server::{Config, RunningServer, Server};
use shutdown::ShutdownHandle;
use state::{ManualClock, ParkingState};
use store::disk::{Fault, FaultyDisk, Op};
use store::{EmbeddedStore, Options};
use testkit::TempDir;

/// A server on ephemeral ports whose state is kept in `dir`, written through `disk`.
fn start_on(dir: &TempDir, disk: &Arc<FaultyDisk>, clock: &Arc<ManualClock>) -> RunningServer {
    let _ = env_logger::builder().is_test(true).try_init();
    let config = Config::ephemeral();
    let state = ParkingState::new(config.lot_specs(), config.reservation_ttl, clock.clone());
    let options = Options {
        retry_after: Duration::from_millis(50),
        disk: disk.clone(),
        ..Options::new(dir.path())
    };
    let store = EmbeddedStore::open(Arc::new(state.unwrap()), options).unwrap();
    Server::new(config)
        .with_clock(clock.clone())
        .with_store(Arc::new(store))
        .start(ShutdownHandle::new())
        .unwrap()
}

#[test]
fn a_failing_disk_answers_unavailable_keeps_reads_and_recovers() {
    let dir = TempDir::new("server-failing-disk");
    let clock = Arc::new(ManualClock::new());
    let disk = FaultyDisk::new();
    let server = start_on(&dir, &disk, &clock);
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let mut sensor = RawLines::connect(server.sensor_addr());
    let reserve =
        |plate: &str| format!(r#"{{"rpcId":1,"method":"reserve","args":["A","{plate}"]}}"#);
    assert_eq!(rpc.json(&reserve("P1"))["result"], json!(true));

    disk.fail_ops(Fault::Full, &[Op::Write, Op::Sync]);
    let reply = rpc.json(&reserve("P2"));
    assert_eq!(error_code(&reply), "UNAVAILABLE", "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("UNAVAILABLE: storage: "), "{error}");
    assert!(error.contains("no space left"), "{error}");
    let text = rpc.text("RESERVE A P3");
    assert!(text.starts_with("ERR UNAVAILABLE storage: "), "{text}");
    let line = sensor.call("UPDATE A 5");
    assert!(line.starts_with("ERR UNAVAILABLE "), "{line}");
    // Reads go on, and nothing refused is in the state.
    assert_eq!(rpc.text("AVAIL A"), "99");
    let lots: serde_json::Value = serde_json::from_str(&rpc.text("LOTS")).unwrap();
    assert_eq!(
        (lots[0]["reserved"].clone(), lots[0]["counted"].clone()),
        (json!(1), json!(0))
    );
    assert!(matches!(
        server.store().health(),
        store::Health::Unavailable(_)
    ));

    disk.heal();
    eventually("writes to resume", || rpc.text("RESERVE A P4") == "OK");
    assert_eq!(sensor.call("UPDATE A 5"), "OK 93");
    assert_eq!(server.store().health(), store::Health::Ok);
    server.shutdown();

    let server = start_on(&dir, &FaultyDisk::new(), &clock);
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("AVAIL A"), "93");
    for (plate, held) in [("P1", true), ("P2", false), ("P3", false), ("P4", true)] {
        let reply = rpc.text(&format!("CANCEL A {plate}"));
        assert_eq!(reply == "OK", held, "{plate}: {reply}");
    }
}

#[test]
fn a_configured_data_dir_keeps_reservations_until_they_expire_across_a_restart() {
    let dir = TempDir::new("server-data-dir");
    let clock = Arc::new(ManualClock::new());
    let start = |clock: &Arc<ManualClock>| {
        let config = Config {
            data_dir: Some(dir.path().to_path_buf()),
            reservation_ttl: Duration::from_secs(60),
            ..Config::ephemeral()
        };
        Server::new(config)
            .with_clock(clock.clone())
            .start(ShutdownHandle::new())
            .unwrap()
    };
    let server = start(&clock);
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE A EARLY"), "OK");
    clock.advance(Duration::from_secs(30));
    assert_eq!(rpc.text("RESERVE A LATE"), "OK");
    server.shutdown();

    // Back 10 s later (by the wall clock): EARLY has 20 s left, LATE 50 s.
    let later = Arc::new(ManualClock::new());
    later.advance(Duration::from_secs(40));
    let server = start(&later);
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("AVAIL A"), "98");
    later.advance(Duration::from_secs(20));
    assert_eq!(rpc.text("AVAIL A"), "99");
    later.advance(Duration::from_secs(30));
    assert_eq!(rpc.text("AVAIL A"), "100");
}
