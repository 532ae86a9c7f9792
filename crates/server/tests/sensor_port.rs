//! The sensor port, over real sockets: every row of its table, clamping, limits, concurrency.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Port, RawLines, RawRpc, start, start_with};
use serde_json::json;

#[test]
fn every_command_row() {
    let server = start();
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert_eq!(sensor.call("PING"), "PONG");
    assert_eq!(sensor.call("ping"), "PONG");
    assert_eq!(sensor.call("UPDATE A 10"), "OK 90");
    assert_eq!(sensor.call("update A +5"), "OK 85");
    assert_eq!(sensor.call("Update A -3"), "OK 88");
    // A trailing carriage return is ignored.
    sensor.send(b"UPDATE B 1\r\n");
    assert_eq!(sensor.line(), "OK 49");
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let lots: serde_json::Value = serde_json::from_str(&rpc.text("LOTS")).unwrap();
    assert_eq!(
        lots[0],
        json!({"id": "A", "capacity": 100, "occupied": 12, "counted": 12, "reserved": 0, "booked": 0, "free": 88, "status": "open"})
    );
}

#[test]
fn errors_change_nothing() {
    let server = start();
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert_eq!(sensor.call("UPDATE A 10"), "OK 90");
    for (line, code) in [
        ("FLY A 1", "UNKNOWN_COMMAND"),
        ("", "UNKNOWN_COMMAND"),
        ("UPDATE A 1 2", "UNKNOWN_COMMAND"),
        ("UPDATE Z 1", "UNKNOWN_LOT"),
        ("UPDATE", "UNKNOWN_LOT"),
        ("UPDATE A", "BAD_COUNT"),
        ("UPDATE A ten", "BAD_COUNT"),
        ("UPDATE A +-1", "BAD_COUNT"),
        ("UPDATE A 99999999999", "BAD_COUNT"),
    ] {
        let reply = sensor.call(line);
        assert!(
            reply.starts_with(&format!("ERR {code} ")),
            "{line:?} -> {reply:?}"
        );
    }
    sensor.send(b"UPDATE \xff 1\n");
    let reply = sensor.line();
    assert!(reply.starts_with("ERR UNKNOWN_COMMAND "), "{reply:?}");
    assert_eq!(sensor.call("UPDATE A +0"), "OK 90");
}

#[test]
fn pipelined_lines_are_answered_in_order_one_reply_each() {
    let server = start();
    let mut sensor = RawLines::connect(server.sensor_addr());
    sensor.send(b"UPDATE A 10\nPING\nFLY\nUPDATE A +5\r\n\nUPDATE Z 1\nUPDATE A -15\n");
    let replies: Vec<String> = (0..7).map(|_| sensor.line()).collect();
    assert_eq!(replies[..2], ["OK 90", "PONG"]);
    assert!(
        replies[2].starts_with("ERR UNKNOWN_COMMAND "),
        "{replies:?}"
    );
    assert_eq!(replies[3], "OK 85");
    assert!(
        replies[4].starts_with("ERR UNKNOWN_COMMAND "),
        "{replies:?}"
    );
    assert!(replies[5].starts_with("ERR UNKNOWN_LOT "), "{replies:?}");
    assert_eq!(replies[6], "OK 100");
    // Nothing more was sent: the next reply is to the next line.
    assert_eq!(sensor.call("PING"), "PONG");
}

#[test]
fn the_running_count_is_kept_and_only_what_is_reported_is_clamped() {
    let server = start_with(|config| {
        config.lots = serde_json::from_value(json!([{"id": "S", "capacity": 10}])).unwrap();
    });
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert_eq!(sensor.call("UPDATE S 25"), "OK 0");
    // 22 cars counted: still full, not 3 free.
    assert_eq!(sensor.call("UPDATE S -3"), "OK 0");
    assert_eq!(sensor.call("UPDATE S -16"), "OK 4");
    assert_eq!(sensor.call("UPDATE S -4294967295"), "OK 10");
    assert_eq!(sensor.call("UPDATE S +4294967295"), "OK 4");
    assert_eq!(sensor.call("UPDATE S 0"), "OK 10");
    // A gate counter that overshoots comes back to the true count (issue 15's drift).
    assert_eq!(sensor.call("UPDATE S 10"), "OK 0");
    assert_eq!(sensor.call("UPDATE S +5"), "OK 0");
    assert_eq!(sensor.call("UPDATE S -5"), "OK 0");
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let lots = rpc.json(r#"{"rpcId": 1, "method": "getLots", "args": []}"#);
    assert_eq!(lots["result"][0]["occupied"], 10);
    assert_eq!(lots["result"][0]["counted"], 10);
    assert_eq!(sensor.call("UPDATE S +3"), "OK 0");
    let lots = rpc.json(r#"{"rpcId": 2, "method": "getLots", "args": []}"#);
    assert_eq!(lots["result"][0]["counted"], 13);
    assert_eq!(sensor.call("UPDATE S 0"), "OK 10");
    // Reservations count against free, sensors cannot push it below zero.
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE S P1"), "OK");
    assert_eq!(sensor.call("UPDATE S 10"), "OK 0");
    assert_eq!(rpc.text("RESERVE S P2"), "FULL");
}

#[test]
fn an_overlong_line_is_refused_and_closed() {
    let server = start();
    let mut sensor = RawLines::connect(server.sensor_addr());
    let mut line = b"UPDATE A ".to_vec();
    line.resize(1025, b'1');
    line.push(b'\n');
    sensor.send(&line);
    assert!(sensor.line().starts_with("ERR LINE_TOO_LONG "));
    // Nothing after the fatal error is answered, not even the overlong line again.
    sensor.expect_closed_with_nothing_more(DEADLINE);
    // A line of exactly 1024 bytes is fine (and malformed here, which is a different error).
    let mut sensor = RawLines::connect(server.sensor_addr());
    let mut line = b"UPDATE A ".to_vec();
    line.resize(1024, b'1');
    line.push(b'\n');
    sensor.send(&line);
    assert!(sensor.line().starts_with("ERR BAD_COUNT "));
    assert_eq!(sensor.call("PING"), "PONG");
}

#[test]
fn a_disconnect_mid_line_changes_nothing() {
    let server = start();
    let mut stream = TcpStream::connect(server.sensor_addr()).unwrap();
    stream.write_all(b"UPDATE A 50").unwrap();
    // Our end of stream reaches the server with the line unfinished; the server then closes its
    // side, and waiting for that orders the check below after it has dropped the line.
    stream.shutdown(Shutdown::Write).unwrap();
    common::expect_closed(&stream, DEADLINE);
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert_eq!(sensor.call("UPDATE A +0"), "OK 100");
}

/// Issue 4's load: 50 sensors at 10 updates a second each, on the sensor port's 4 workers,
/// every line acked with its count. How fast is measured by `cargo bench -p server --bench
/// sensor_fleet` (docs/benchmarks.md), not asserted here.
#[test]
fn fifty_sensors_at_ten_updates_a_second_are_all_served() {
    let server = start();
    let addr = server.sensor_addr();
    let sensors: Vec<_> = (0..50)
        .map(|n| {
            thread::spawn(move || {
                let mut sensor = RawLines::connect(addr);
                let (lot, capacity) = [("A", 100), ("B", 50), ("C", 200)][n % 3];
                let mut acked = 0;
                for i in 0..10 {
                    let sent = Instant::now();
                    // An absolute count is applied under the lot's lock, so the ack is exactly
                    // its own result whatever the other sensors of the lot send meanwhile.
                    let occupied = (n + i) % 40;
                    let reply = sensor.call(&format!("UPDATE {lot} {occupied}"));
                    assert_eq!(reply, format!("OK {}", capacity - occupied));
                    acked += 1;
                    thread::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed()));
                }
                acked
            })
        })
        .collect();
    let acked: usize = sensors.into_iter().map(|s| s.join().unwrap()).sum();
    assert_eq!(acked, 500);
}

#[test]
fn sensor_connections_over_the_limit_get_busy() {
    let server = start_with(|config| config.max_connections = 1);
    let mut first = RawLines::connect(server.sensor_addr());
    assert_eq!(first.call("PING"), "PONG");
    let mut extra = RawLines::connect(server.sensor_addr());
    assert!(extra.line().starts_with("ERR BUSY "));
    extra.expect_closed(DEADLINE);
}

#[test]
fn an_idle_sensor_is_closed_after_idle_timeout() {
    common::check_idle_timeout(Port::Sensor);
}

#[test]
fn a_line_that_trickles_in_is_closed_after_frame_timeout() {
    common::check_frame_timeout(Port::Sensor);
}

#[test]
fn a_sensor_that_stops_reading_acks_is_closed_while_others_are_served() {
    common::check_write_stall(Port::Sensor);
}

/// Two nodes over one PostgreSQL: a gate line through either is decided by the database,
/// read through the other node's `getAvailability` and heard by its subscribers in the
/// order the database decided; gates of both nodes at once lose no car, and the reported
/// occupancy stays within `[0, capacity]` whatever the running count does.
#[test]
fn gate_lines_over_postgresql_reach_every_node_in_order_and_lose_no_car() {
    let Some(pg) = testkit::pg::TempPostgres::start() else {
        return;
    };
    let node = || {
        start_with(|config| {
            config.lots = serde_json::from_value(json!([{"id": "A", "capacity": 10}])).unwrap();
            config.store = server::StoreConfig::Postgres(server::PostgresConfig {
                url: pg.url(),
                pool_size: 4,
                timeout: Duration::from_secs(2),
            });
        })
    };
    let (one, two) = (node(), node());
    let mut subscriber = common::subscribe(&two, "A");
    let mut gates = [
        RawLines::connect(one.sensor_addr()),
        RawLines::connect(two.sensor_addr()),
    ];
    let mut rpc2 = RawRpc::connect(two.rpc_addr());
    for (node, line, reply) in [
        (0, "ENTER A CAR1", "OK 9"),
        (0, "ENTER A CAR2", "OK 8"),
        (1, "ENTER A CAR3", "OK 7"),
        (0, "EXIT A CAR1", "OK 8"),
    ] {
        assert_eq!(gates[node].call(line), reply);
        let free = reply.trim_start_matches("OK ");
        // Node two's reads follow node one's gate, and its subscriber hears each step.
        common::eventually("node two reads it", || rpc2.text("AVAIL A") == free);
        assert_eq!(
            common::next_event(&mut subscriber),
            ("A".into(), free.parse().unwrap())
        );
    }

    // 4 gates per node, 8 cars each in at once: 2 + 32 counted, never more than 10 occupied.
    let race = |line: &'static str, cars: usize| {
        let gates: Vec<_> = (0..8)
            .map(|n| {
                let addr = if n % 2 == 0 {
                    one.sensor_addr()
                } else {
                    two.sensor_addr()
                };
                thread::spawn(move || {
                    let mut gate = RawLines::connect(addr);
                    (0..cars)
                        .map(|k| {
                            let reply = gate.call(&format!("{line} A R{n}K{k}"));
                            let free: u32 = reply.strip_prefix("OK ").unwrap().parse().unwrap();
                            assert!(free <= 10, "{reply}");
                            free
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut replies: Vec<u32> = gates.into_iter().flat_map(|g| g.join().unwrap()).collect();
        replies.sort_unstable();
        replies
    };
    let free_with = |counted: i64| 10 - counted.clamp(0, 10) as u32;
    let sorted = |counts: std::ops::RangeInclusive<i64>| {
        let mut frees: Vec<u32> = counts.map(free_with).collect();
        frees.sort_unstable();
        frees
    };
    // Each count from 3 to 34 was some gate's reply: none lost, none twice.
    assert_eq!(race("ENTER", 4), sorted(3..=34));
    // 40 out: the running count goes to -6, the occupancy stops at 0.
    assert_eq!(race("EXIT", 5), sorted(-6..=33));
    for server in [&one, &two] {
        let mut rpc = RawRpc::connect(server.rpc_addr());
        common::eventually("every node counts -6, occupied 0", || {
            let lots: serde_json::Value = serde_json::from_str(&rpc.text("LOTS")).unwrap();
            (
                lots[0]["counted"].clone(),
                lots[0]["occupied"].clone(),
                lots[0]["free"].clone(),
            ) == (json!(-6), json!(0), json!(10))
        });
    }
    // Node two's subscriber heard every free count the races went through, in order.
    let heard: Vec<u64> = (0..18)
        .map(|_| common::next_event(&mut subscriber).1)
        .collect();
    assert_eq!(heard, (0..=7).rev().chain(1..=10).collect::<Vec<u64>>());
}
