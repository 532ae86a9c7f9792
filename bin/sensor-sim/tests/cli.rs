//! `sensor-sim` as a process, against servers started in-process on ephemeral ports.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use server::{Config, RunningServer};

fn start_server(sensor_port: u16) -> RunningServer {
    start_server_with(sensor_port, |_| {})
}

fn start_server_with(sensor_port: u16, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    testkit::start_server(|config| {
        config.sensor_port = sensor_port;
        tweak(config);
    })
}

/// Held while a child process is being started, and by a test while it restarts a server on
/// the same port. Between fork and exec a child holds copies of every descriptor of this
/// process, listening sockets included, and a server shut down in that window keeps its port
/// busy until the exec; rebinding it then fails with `AddrInUse`.
static SPAWNING: Mutex<()> = Mutex::new(());

fn spawn_lock() -> MutexGuard<'static, ()> {
    SPAWNING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn(command: &mut Command) -> Child {
    let _guard = spawn_lock();
    command.spawn().unwrap()
}

fn run_to_end(command: &mut Command) -> Output {
    spawn(command).wait_with_output().unwrap()
}

fn sensor_sim() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sensor-sim"));
    command
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The summary line's `key=value` pairs.
fn parse_summary(stdout: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary in {text:?}"));
    line.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn count(summary: &HashMap<String, String>, key: &str) -> u64 {
    summary[key].parse().unwrap()
}

/// Reads log lines until one contains `needle`; fails if the process ends first.
fn wait_for_log(stderr: &mut BufReader<ChildStderr>, needle: &str) {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("sensor-sim ended before logging {needle:?}; it logged:\n{seen}");
        }
        if line.contains(needle) {
            return;
        }
        seen.push_str(&line);
    }
}

/// Keeps reading the rest of the log so the process never blocks on a full pipe.
fn drain(mut stderr: BufReader<ChildStderr>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    })
}

#[test]
fn two_second_run_is_acknowledged_without_errors() {
    let server = start_server(0);
    let output = run_to_end(
        sensor_sim()
            .args(["--port", &server.sensor_addr().port().to_string()])
            .args(["--rpc-port", &server.rpc_addr().port().to_string()])
            .args([
                "--rate",
                "40",
                "--duration",
                "2",
                "--lots",
                "A",
                "B",
                "C",
                "--seed",
                "1",
            ]),
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let summary = parse_summary(&output.stdout);
    assert!(count(&summary, "acked") > 0, "{summary:?}");
    assert_eq!(
        count(&summary, "acked"),
        count(&summary, "sent"),
        "{summary:?}"
    );
    assert_eq!(count(&summary, "errors"), 0, "{summary:?}\n{log}");
    assert_eq!(count(&summary, "reconnects"), 0, "{summary:?}");
    assert!(summary["rate"].ends_with("/s"));
    // The walks moved cars in, and never past a lot's capacity.
    let lots = client::ParkingClient::connect(server.rpc_addr())
        .unwrap()
        .get_lots()
        .unwrap();
    assert!(lots.iter().any(|lot| lot.occupied > 0), "{lots:?}");
    assert!(
        lots.iter().all(|lot| lot.occupied <= lot.capacity),
        "{lots:?}"
    );
    server.shutdown();
}

#[test]
fn gate_mode_lets_booked_and_drive_up_cars_in_and_out() {
    let server = start_server_with(0, |config| {
        config.lots =
            serde_json::from_value(serde_json::json!([{"id": "G", "capacity": 8}])).unwrap();
    });
    let output = run_to_end(
        sensor_sim()
            .args(["--port", &server.sensor_addr().port().to_string()])
            .args(["--rpc-port", &server.rpc_addr().port().to_string()])
            .args(["--mode", "gate", "--book", "6", "--sensors", "2"])
            .args([
                "--rate",
                "100",
                "--duration",
                "2",
                "--lots",
                "G",
                "--seed",
                "3",
            ]),
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let summary = parse_summary(&output.stdout);
    assert_eq!(count(&summary, "errors"), 0, "{summary:?}\n{log}");
    assert!(count(&summary, "checked_in") > 0, "{summary:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut rpc = client::ParkingClient::connect(server.rpc_addr()).unwrap();
    let bookings = rpc.list_bookings("G", now - 3600, now + 3600).unwrap();
    assert_eq!(bookings.len(), 6, "{bookings:?}");
    let arrived = bookings
        .iter()
        .filter(|booking| booking.status != client::BookingStatus::Confirmed)
        .count() as u64;
    assert_eq!(arrived, count(&summary, "checked_in"), "{bookings:?}");
    // Every car the gates let in that has not left is counted, drive-ups included.
    let lot = &rpc.get_lots().unwrap()[0];
    assert!(lot.counted >= 0 && lot.counted <= 8, "{lot:?}");
    server.shutdown();
}

#[test]
fn survives_a_server_restart() {
    let first = start_server(0);
    let port = first.sensor_addr().port();
    let mut child = spawn(
        sensor_sim()
            .args(["--port", &port.to_string(), "--timeout", "1"])
            .args([
                "--rate",
                "40",
                "--duration",
                "3",
                "--lots",
                "A",
                "--mode",
                "absolute",
            ]),
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    wait_for_log(&mut stderr, "connected to");
    let second = {
        let _no_fork = spawn_lock();
        first.shutdown();
        testkit::restart_server(|config| config.sensor_port = port)
    };
    wait_for_log(&mut stderr, "reconnected to");
    let log = drain(stderr);
    let output = child.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{log}");
    let summary = parse_summary(&output.stdout);
    assert!(count(&summary, "reconnects") >= 1, "{summary:?}");
    assert!(count(&summary, "acked") > 0, "{summary:?}");
    second.shutdown();
}

/// Waits for `child` to exit, for at most `within`; kills it and fails if it has not.
fn wait_within(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("sensor-sim still running after {within:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn interrupt_ends_the_run_with_the_summary() {
    let server = start_server(0);
    let mut child = spawn(
        sensor_sim()
            .args(["--port", &server.sensor_addr().port().to_string()])
            .args(["--rate", "20", "--duration", "600", "--lots", "A", "B"]),
    );
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let log = drain(stderr);
    // An update has been answered, so the run has something to show for itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.summary().sensor_lines == 0 {
        assert!(Instant::now() < deadline, "no update reached the server");
        thread::sleep(Duration::from_millis(10));
    }
    let status = spawn(Command::new("kill").args(["-INT", &child.id().to_string()]))
        .wait()
        .unwrap();
    assert!(status.success());
    // The run was to last ten minutes: only the interrupt can end it this soon.
    let status = wait_within(&mut child, Duration::from_secs(10));
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    let summary = parse_summary(&stdout);
    assert!(count(&summary, "acked") >= 1, "{summary:?}\n{log}");
    assert_eq!(
        count(&summary, "acked"),
        count(&summary, "sent"),
        "{summary:?}"
    );
    assert_eq!(count(&summary, "errors"), 0, "{summary:?}");
    assert!(!log.contains("panicked"), "{log}");
    server.shutdown();
}

/// A sensor port that answers every connection's first line with `ERR BUSY` and closes it,
/// recording when each connection came in. Stops once `stop` is raised and it is woken by
/// one more connection.
fn busy_sensor_port(stop: Arc<AtomicBool>) -> (SocketAddr, thread::JoinHandle<Vec<Instant>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let mut accepted = Vec::new();
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            accepted.push(Instant::now());
            let mut stream = stream.unwrap();
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let _ = stream.write_all(b"ERR BUSY at the connection limit\n");
        }
        accepted
    });
    (addr, handle)
}

#[test]
fn a_busy_server_is_retried_with_doubling_delays() {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, fake) = busy_sensor_port(Arc::clone(&stop));
    let output = run_to_end(
        sensor_sim()
            .args(["--port", &addr.port().to_string()])
            .args(["--rate", "40", "--duration", "2", "--lots", "A"]),
    );
    stop.store(true, Ordering::SeqCst);
    drop(TcpStream::connect(addr));
    let accepted = fake.join().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    // Nothing was ever acknowledged.
    assert_eq!(output.status.code(), Some(1), "{log}");
    let summary = parse_summary(&output.stdout);
    let tries = accepted.len() as u64;
    assert_eq!(count(&summary, "acked"), 0, "{summary:?}");
    assert_eq!(count(&summary, "errors"), tries, "{summary:?}");
    assert_eq!(count(&summary, "reconnects"), tries - 1, "{summary:?}");
    // 100 ms, then doubling (the documented backoff), between one try and the next: in two
    // seconds that leaves room for five tries at most, against forty updates due.
    assert!((2..=5).contains(&tries), "{tries} tries\n{log}");
    for (n, pair) in accepted.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let backoff = Duration::from_millis(100 << n);
        assert!(
            gap >= backoff,
            "try {} came {gap:?} after the one before",
            n + 2
        );
    }
}

#[test]
fn unknown_lot_is_reported_when_learning_capacities() {
    let server = start_server(0);
    let output = run_to_end(
        sensor_sim()
            .args(["--port", &server.sensor_addr().port().to_string()])
            .args(["--rpc-port", &server.rpc_addr().port().to_string()])
            .args(["--duration", "1", "--lots", "A", "NOPE"]),
    );
    assert_eq!(output.status.code(), Some(3));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("\"NOPE\" is not on the server"),
        "{message}"
    );
    server.shutdown();
}

#[test]
fn busy_server_is_counted_and_backed_off_from() {
    let server = start_server_with(0, |config| config.max_connections = 1);
    let output = run_to_end(
        sensor_sim()
            .args(["--port", &server.sensor_addr().port().to_string()])
            .args([
                "--rate",
                "40",
                "--duration",
                "1",
                "--lots",
                "A",
                "--sensors",
                "2",
            ]),
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let summary = parse_summary(&output.stdout);
    assert!(count(&summary, "acked") > 0, "{summary:?}");
    assert!(count(&summary, "errors") > 0, "{summary:?}");
    assert!(
        log.contains("busy") || log.contains("lost the connection"),
        "{log}"
    );
    server.shutdown();
}

#[test]
fn hundreds_of_sensors_share_two_threads_and_every_update_is_acked() {
    let server = start_server(0);
    let output = run_to_end(
        sensor_sim()
            .args(["--port", &server.sensor_addr().port().to_string()])
            .args(["--sensors", "500", "--threads", "2", "--rate", "1000"])
            .args(["--duration", "1", "--lots", "A", "B", "C", "--seed", "3"]),
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let summary = parse_summary(&output.stdout);
    assert!(count(&summary, "sent") >= 500, "{summary:?}");
    assert_eq!(
        count(&summary, "acked"),
        count(&summary, "sent"),
        "{summary:?}"
    );
    assert_eq!(count(&summary, "errors"), 0, "{summary:?}\n{log}");
    assert!(!summary.contains_key("never_connected"), "{summary:?}");
    let p99: f64 = summary["ack_p99_ms"].parse().unwrap();
    assert!(p99 > 0.0, "{summary:?}");
    // Every sensor had a connection of its own, served by the server's one sensor worker.
    assert_eq!(server.summary().sensor_connections, 500);
}

#[test]
fn sensors_that_never_connect_are_reported_and_the_run_fails() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = run_to_end(sensor_sim().args(["--port", &closed.to_string()]).args([
        "--sensors",
        "3",
        "--duration",
        "0.5",
        "--lots",
        "A",
    ]));
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let summary = parse_summary(&output.stdout);
    assert_eq!(count(&summary, "acked"), 0, "{summary:?}");
    assert_eq!(count(&summary, "never_connected"), 3, "{summary:?}");
}
