//! `subscriber` as a process, against servers started in-process on ephemeral ports.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use client::ParkingClient;
use server::RunningServer;

fn start_server(pubsub_port: u16) -> RunningServer {
    testkit::start_server(|config| config.pubsub_port = pubsub_port)
}

/// Held while a child process is being started, and by a test while it restarts a server on
/// the same port. Between fork and exec a child holds copies of every descriptor of this
/// process, listening sockets included, and a server shut down in that window keeps its port
/// busy until the exec; rebinding it then fails with `AddrInUse`.
static SPAWNING: Mutex<()> = Mutex::new(());

fn spawn_lock() -> MutexGuard<'static, ()> {
    SPAWNING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn subscriber(addr: SocketAddr, args: &[&str]) -> Child {
    let _guard = spawn_lock();
    Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .args(["--port", &addr.port().to_string()])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads log lines until one contains `needle`; fails if the process ends first.
fn wait_for_log(stderr: &mut BufReader<ChildStderr>, needle: &str) {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("subscriber ended before logging {needle:?}; it logged:\n{seen}");
        }
        if line.contains(needle) {
            return;
        }
        seen.push_str(&line);
    }
}

/// Waits for the process, reading the rest of its log alongside so it never blocks on a
/// full pipe.
fn finish(mut child: Child, mut stderr: BufReader<ChildStderr>) -> (Output, String) {
    let log = thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    child.stderr = None;
    let output = child.wait_with_output().unwrap();
    (output, log.join().unwrap())
}

fn started(mut child: Child) -> (Child, BufReader<ChildStderr>) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    wait_for_log(&mut stderr, "subscribed to");
    (child, stderr)
}

#[test]
fn count_one_prints_one_event() {
    let server = start_server(0);
    let (child, stderr) = started(subscriber(
        server.pubsub_addr(),
        &["--lot", "A", "--count", "1"],
    ));
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    assert!(rpc.reserve("A", "SUB-1").unwrap());
    let (output, log) = finish(child, stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "the snapshot, then the one event: {text:?}");
    let snapshot: Vec<&str> = lines[0].split("  ").collect();
    assert_eq!(&snapshot[1..], ["A", "free=100", "(current)"], "{text:?}");
    let fields: Vec<&str> = lines[1].split("  ").collect();
    assert_eq!(fields.len(), 3, "{text:?}");
    assert!(
        fields[0].ends_with('Z') && fields[0].contains('T'),
        "{text:?}"
    );
    assert_eq!(&fields[1..], ["A", "free=99"], "{text:?}");
    server.shutdown();
}

#[test]
fn json_prints_the_event_line() {
    let server = start_server(0);
    let (child, stderr) = started(subscriber(
        server.pubsub_addr(),
        &["--all", "--json", "--count", "2"],
    ));
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    assert!(rpc.reserve("B", "SUB-2").unwrap());
    assert!(rpc.cancel("B", "SUB-2").unwrap());
    let (output, log) = finish(child, stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // Every lot's current value first, then the two events.
    let (snapshots, events) = lines.split_at(lines.len().saturating_sub(2));
    assert_eq!(snapshots.len(), 3, "{text}");
    assert!(
        snapshots.iter().all(|line| line["type"] == "SNAPSHOT"),
        "{text}"
    );
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["type"], "EVENT");
    assert_eq!(events[0]["lotId"], "B");
    assert_eq!(events[0]["free"], 49);
    assert_eq!(events[1]["free"], 50);
    server.shutdown();
}

#[test]
fn resubscribes_after_a_server_restart() {
    let first = start_server(0);
    let port = first.pubsub_addr().port();
    let (child, mut stderr) = started(subscriber(first.pubsub_addr(), &["--count", "1"]));
    let second = {
        let _no_fork = spawn_lock();
        first.shutdown();
        testkit::restart_server(|config| config.pubsub_port = port)
    };
    wait_for_log(&mut stderr, "re-subscribed");
    let mut rpc = ParkingClient::connect(second.rpc_addr()).unwrap();
    assert!(rpc.reserve("C", "SUB-3").unwrap());
    let (output, log) = finish(child, stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("  C  free=199")
    );
    second.shutdown();
}

#[test]
fn interrupt_exits_cleanly() {
    let server = start_server(0);
    let (child, stderr) = started(subscriber(server.pubsub_addr(), &[]));
    let status = {
        let _guard = spawn_lock();
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .spawn()
            .unwrap()
    }
    .wait()
    .unwrap();
    assert!(status.success());
    let (output, log) = finish(child, stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    server.shutdown();
}

#[test]
fn refusals_and_unreachable_servers_are_one_line_errors() {
    let server = start_server(0);
    let child = subscriber(server.pubsub_addr(), &["--lot", "NOPE"]);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.contains("UNKNOWN_LOT"), "{message}");
    server.shutdown();

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = subscriber(closed, &["--timeout", "2"])
        .wait_with_output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8(output.stderr).unwrap();
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains(&closed.port().to_string()), "{message}");
}
