//! The `parking-server` process: configuration errors, startup log, graceful stop on SIGTERM
//! under load, restarting on the same ports and with the same state, one server per data
//! directory, and `repair`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use client::{ClientError, ParkingClient};
use testkit::TempDir;

const BINARY: &str = env!("CARGO_BIN_EXE_parking-server");

/// A config file in a temporary directory of its own, removed on drop with anything the
/// server kept next to the file (its default `data/`).
struct TempConfig {
    path: PathBuf,
    _dir: TempDir,
}

impl TempConfig {
    fn new(name: &str, contents: &str) -> TempConfig {
        let dir = TempDir::new(&format!("config-{name}"));
        let path = dir.path().join("config.json");
        std::fs::write(&path, contents).unwrap();
        TempConfig { path, _dir: dir }
    }
}

fn run_to_end(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(BINARY).args(args).output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_name_the_file_and_the_problem() {
    let (status, stderr) = run_to_end(&["--config", "/nonexistent/parking.json"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("/nonexistent/parking.json"), "{stderr}");

    let typo = TempConfig::new("typo", r#"{"rpc_prot": 9000}"#);
    let (status, stderr) = run_to_end(&["--config", typo.path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("unknown field `rpc_prot`"), "{stderr}");
    assert!(stderr.contains(typo.path.to_str().unwrap()), "{stderr}");

    let duplicate = TempConfig::new(
        "duplicate",
        r#"{"lots": [{"id": "A", "capacity": 1}, {"id": "A", "capacity": 2}]}"#,
    );
    let (status, stderr) = run_to_end(&["--config", duplicate.path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("appears twice"), "{stderr}");

    let (status, stderr) = run_to_end(&["--thread-pool-size", "0"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("thread_pool_size"), "{stderr}");

    let (status, stderr) = run_to_end(&["--rpc-port", "99999"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--rpc-port"), "{stderr}");
}

/// A server process, the RPC and sensor addresses it logged, and its log up to then.
struct ServerProcess {
    child: Child,
    rpc: SocketAddr,
    sensor: SocketAddr,
    log: String,
}

impl ServerProcess {
    /// Starts the server on `rpc_port` (0 for any) with the other ports ephemeral, keeping
    /// its state in `data_dir`.
    fn start(rpc_port: u16, data_dir: &TempDir) -> ServerProcess {
        let port = rpc_port.to_string();
        let dir = data_dir.path().to_str().unwrap();
        ServerProcess::spawn(&[
            "--rpc-port",
            &port,
            "--sensor-port",
            "0",
            "--http-port",
            "0",
            "--pubsub-port",
            "0",
            "--data-dir",
            dir,
        ])
    }

    /// Starts the server with `args` and waits until it listens.
    fn spawn(args: &[&str]) -> ServerProcess {
        let mut child = Command::new(BINARY)
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut log = String::new();
        let address_after = |line: &str, label: &str| -> Option<SocketAddr> {
            let rest = line.split(label).nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        };
        let (rpc, sensor) = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "server exited early:\n{log}"
            );
            log.push_str(&line);
            if let Some(rpc) = address_after(&line, "listening: rpc ") {
                break (rpc, address_after(&line, ", sensor ").unwrap());
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        thread::spawn(move || for _ in stderr.lines() {});
        ServerProcess {
            child,
            rpc,
            sensor,
            log,
        }
    }

    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client of the SIGTERM test: alternates reserve and cancel of its own plate in lot A
/// (even `n`), or reads lot B's availability (odd `n`), checking every answer, until the server
/// closes the connection. Returns how many requests were answered; fails on a wrong answer, on
/// any other error, and on a connection lost before `signalled` was raised.
fn sigterm_client(
    n: usize,
    addr: SocketAddr,
    answered: &AtomicU64,
    signalled: &AtomicBool,
) -> Result<u64, String> {
    let mut client = ParkingClient::connect(addr).map_err(|err| err.to_string())?;
    let plate = format!("SIG{n}");
    loop {
        let checked = if n.is_multiple_of(2) {
            // Only this client books its plate, and it cancels before booking again: both
            // must succeed.
            client.reserve("A", &plate).and_then(|reserved| {
                answered.fetch_add(1, Ordering::Relaxed);
                Ok(reserved && client.cancel("A", &plate)?)
            })
        } else {
            // Nobody books in B: it stays at its capacity.
            client.get_availability("B").map(|free| free == 50)
        };
        match checked {
            Ok(true) => {}
            Ok(false) => return Err(format!("client {n}: a wrong answer")),
            Err(ClientError::Closed | ClientError::Io(_)) if signalled.load(Ordering::SeqCst) => {
                return Ok(answered.load(Ordering::Relaxed));
            }
            Err(err) => return Err(format!("client {n}: {err}")),
        }
        answered.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn sigterm_under_load_answers_cleanly_and_exits_zero() {
    const CLIENTS: usize = 8;
    let data_dir = TempDir::new("process-sigterm");
    let mut server = ServerProcess::start(0, &data_dir);
    let signalled = Arc::new(AtomicBool::new(false));
    let answered: Arc<Vec<AtomicU64>> = Arc::new((0..CLIENTS).map(|_| AtomicU64::new(0)).collect());
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (signalled, answered, addr) =
                (Arc::clone(&signalled), Arc::clone(&answered), server.rpc);
            thread::spawn(move || sigterm_client(n, addr, &answered[n], &signalled))
        })
        .collect();
    // Every client is under way before the signal, so that the shutdown meets all of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered
        .iter()
        .any(|count| count.load(Ordering::Relaxed) < 50)
    {
        if let Some(stopped) = clients.iter().position(thread::JoinHandle::is_finished) {
            let outcome = clients.swap_remove(stopped).join();
            panic!("a client stopped before the signal: {outcome:?}");
        }
        assert!(
            Instant::now() < deadline,
            "the clients did not get going: {answered:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    signalled.store(true, Ordering::SeqCst);
    let signalled_at = Instant::now();
    let status = server.terminate();
    let took = signalled_at.elapsed();
    for client in clients {
        let answered = client.join().unwrap().unwrap();
        assert!(answered >= 50, "{answered}");
    }
    assert!(status.success(), "exit status {status}");
    // The documented bound (design.md, Shutdown): shutdown_grace (2 s) plus answering what
    // was already read. A hang guard, not a speed figure: a shutdown that ignored the grace
    // would wait for the clients' idle_timeout (300 s), so the slack is generous, since a
    // loaded 2-core machine can take seconds to stop a debug build's threads.
    assert!(
        took < Duration::from_secs(2) + testkit::DEADLINE,
        "shutdown took {took:?}"
    );

    // The ports are free again at once (SO_REUSEADDR): a new server can take the same port.
    let mut again = ServerProcess::start(server.rpc.port(), &data_dir);
    assert_eq!(again.rpc, server.rpc);
    ParkingClient::connect(again.rpc).unwrap().ping().unwrap();
    assert!(again.terminate().success());
}

#[test]
fn a_restart_after_sigterm_keeps_the_acknowledged_state() {
    let data_dir = TempDir::new("process-restart");
    let mut server = ServerProcess::start(0, &data_dir);
    let mut client = ParkingClient::connect(server.rpc).unwrap();
    assert!(client.reserve("A", "KEPT").unwrap());
    assert!(client.reserve("A", "GONE").unwrap());
    assert!(client.cancel("A", "GONE").unwrap());
    assert!(client.reserve("B", "KEPT").unwrap());
    drop(client);
    assert!(server.terminate().success());

    let mut again = ServerProcess::start(0, &data_dir);
    assert!(
        again.log.contains("recovered 2 reservation(s)"),
        "{}",
        again.log
    );
    let mut client = ParkingClient::connect(again.rpc).unwrap();
    assert_eq!(client.get_availability("A").unwrap(), 99);
    assert!(
        !client.reserve("A", "KEPT").unwrap(),
        "the reservation was lost"
    );
    assert!(!client.cancel("A", "GONE").unwrap(), "the cancel was lost");
    assert!(client.cancel("B", "KEPT").unwrap());
    drop(client);
    assert!(again.terminate().success());
}

#[test]
fn a_second_server_on_the_same_data_directory_exits_1_naming_it() {
    let data_dir = TempDir::new("process-lock");
    let mut first = ServerProcess::start(0, &data_dir);
    let dir = data_dir.path().to_str().unwrap();
    let ports = [
        "--rpc-port",
        "0",
        "--sensor-port",
        "0",
        "--http-port",
        "0",
        "--pubsub-port",
        "0",
    ];
    let (status, stderr) = run_to_end(&[&ports[..], &["--data-dir", dir]].concat());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(dir), "{stderr}");
    assert!(
        stderr.contains("in use by another parking-server"),
        "{stderr}"
    );
    assert!(first.terminate().success());
}

#[test]
fn a_corrupt_journal_stops_the_start_until_repair_cuts_it() {
    let data_dir = TempDir::new("process-repair");
    let mut server = ServerProcess::start(0, &data_dir);
    let mut client = ParkingClient::connect(server.rpc).unwrap();
    for plate in ["R1", "R2", "R3"] {
        assert!(client.reserve("A", plate).unwrap());
    }
    drop(client);
    assert!(server.terminate().success());
    let journal = data_dir.path().join("journal-1.log");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&journal, bytes).unwrap();

    let dir = data_dir.path().to_str().unwrap();
    let ports = [
        "--rpc-port",
        "0",
        "--sensor-port",
        "0",
        "--http-port",
        "0",
        "--pubsub-port",
        "0",
    ];
    let (status, stderr) = run_to_end(&[&ports[..], &["--data-dir", dir]].concat());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("journal-1.log is corrupt at byte 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("parking-server repair --data-dir {dir}")),
        "{stderr}"
    );

    let output = Command::new(BINARY)
        .args(["repair", "--data-dir", dir])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("holding 2 readable record(s)"), "{report}");

    let mut again = ServerProcess::start(0, &data_dir);
    let mut client = ParkingClient::connect(again.rpc).unwrap();
    assert_eq!(client.get_availability("A").unwrap(), 100);
    drop(client);
    assert!(again.terminate().success());
}

#[test]
fn kill_9_loses_no_acknowledged_change() {
    let config = TempConfig::new(
        "crash",
        r#"{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, "http_port": 0, "thread_pool_size": 4,
            "journal_segment_bytes": 65536, "reservation_ttl": 3600,
            "lots": [{"id": "R", "capacity": 1000000}, {"id": "S0", "capacity": 100},
                     {"id": "S1", "capacity": 100}]}"#,
    );
    let data_dir = TempDir::new("process-crash");
    let args = [
        "--config",
        config.path.to_str().unwrap(),
        "--data-dir",
        data_dir.path().to_str().unwrap(),
    ];
    let mut server = ServerProcess::spawn(&args);
    for run in 1..=2 {
        let plan = load_test::crash::Plan {
            rpc: server.rpc,
            sensor: server.sensor,
            rpc_connections: 4,
            sensor_connections: 2,
            run,
            duration: Duration::from_secs(20),
        };
        let writers = thread::spawn(move || load_test::crash::run(&plan));
        // The kill comes at some moment 0.3 to 0.7 s into the run.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        thread::sleep(Duration::from_millis(300 + u64::from(nanos % 400)));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let log = writers.join().unwrap().unwrap();
        assert!(log.acknowledged > 0, "nothing was written before the kill");
        server = ServerProcess::spawn(&args);
        let verdict = load_test::crash::check(server.rpc, &log).unwrap();
        assert!(verdict.violations.is_empty(), "run {run}: {verdict}");
    }
    assert!(server.terminate().success());
}

#[test]
fn protected_mode_an_open_server_beyond_loopback_exits_2() {
    let (status, stderr) = run_to_end(&[
        "--host",
        "0.0.0.0",
        "--rpc-port",
        "0",
        "--sensor-port",
        "0",
        "--http-port",
        "0",
        "--pubsub-port",
        "0",
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("protected mode"), "{stderr}");
    assert!(stderr.contains("\"protected_mode\": false"), "{stderr}");
    assert!(stderr.contains("keygen"), "{stderr}");
}

#[test]
fn keygen_prints_a_token_and_the_entry_that_accepts_it() {
    let output = Command::new(BINARY)
        .args([
            "keygen", "--id", "gate-A", "--role", "sensor", "--lots", "A,B",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let token = lines[1];
    assert!(token.len() >= 22, "{token}");
    let entry: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(entry["id"], "gate-A");
    assert_eq!(entry["role"], "sensor");
    assert_eq!(entry["lots"], serde_json::json!(["A", "B"]));
    assert_eq!(entry["sha256"], auth::token_hash(token));
    assert!(!stdout.contains(&auth::token_hash("x")));

    let (status, stderr) = run_to_end(&["keygen", "--id", "gate-A", "--role", "sensor"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--lots"), "{stderr}");
    let (status, _) = run_to_end(&["keygen", "--id", "1x", "--role", "viewer"]);
    assert_eq!(status.code(), Some(2));
}

/// Every way a token can reach the server (right, wrong, malformed, on each port) leaves no
/// trace of it in the log, even at `debug`.
#[test]
fn tokens_never_appear_in_the_log() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let right = "Right0Token0SECRET";
    let config = TempConfig::new(
        "tokens",
        &format!(
            r#"{{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, "http_port": 0, "thread_pool_size": 2,
                "sensor_pool_size": 1, "notifier_threads": 1, "shutdown_grace": 0.2,
                "auth": {{"keys": [{{"id": "ops", "role": "operator", "sha256": "{}"}}]}}}}"#,
            auth::token_hash(right)
        ),
    );
    let mut child = Command::new(BINARY)
        .args(["--config", config.path.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let listening = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early:\n{log}"
        );
        log.push_str(&line);
        if line.contains("listening: rpc ") {
            break line;
        }
    };
    let addr = |port: &str| -> SocketAddr {
        let rest = listening.split(&format!(" {port} ")).nth(1).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let rest_of_log = thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });

    let connect = |port: &str| {
        let stream = TcpStream::connect(addr(port)).unwrap();
        stream.set_read_timeout(Some(testkit::DEADLINE)).unwrap();
        stream
    };
    let mut rpc = connect("rpc");
    let payloads = [
        format!("AUTH {right}"),
        "AUTH Wrong1SECRET".to_owned(),
        "AUTH Two2SECRET words".to_owned(),
        r#"{"rpcId": 1, "method": "auth", "args": ["Json3SECRET"]}"#.to_owned(),
        r#"{"rpcId": 2, "method": "auth", "args": ["Json4SECRET", "x"]}"#.to_owned(),
        r#"{"rpcId": 3, "method": "auth", "args": "Json5SECRET"}"#.to_owned(),
    ];
    for payload in &payloads {
        let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(payload.as_bytes());
        rpc.write_all(&frame).unwrap();
        let mut header = [0; 4];
        rpc.read_exact(&mut header).unwrap();
        let mut reply = vec![0; u32::from_be_bytes(header) as usize];
        rpc.read_exact(&mut reply).unwrap();
        assert!(
            !String::from_utf8_lossy(&reply).contains("SECRET"),
            "{payload}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    for port in ["sensor", "pubsub"] {
        let mut lines = BufReader::new(connect(port));
        for line in [
            format!("AUTH {right}"),
            "AUTH Wrong6SECRET".to_owned(),
            "AUTH Two7SECRET words".to_owned(),
        ] {
            lines
                .get_mut()
                .write_all(format!("{line}\n").as_bytes())
                .unwrap();
            let mut reply = String::new();
            lines.read_line(&mut reply).unwrap();
            assert!(!reply.contains("SECRET"), "{port} {line}: {reply}");
        }
    }
    drop(rpc);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    log.push_str(&rest_of_log.join().unwrap());
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("SECRET"), "a token reached the log:\n{log}");
}
