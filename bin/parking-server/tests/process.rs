//! The `parking-server` process: configuration errors, startup log, graceful stop on SIGTERM
//! under load, and restarting on the same ports.

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

const BINARY: &str = env!("CARGO_BIN_EXE_parking-server");

/// A config file in the temp directory, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, contents: &str) -> TempConfig {
        let path = std::env::temp_dir().join(format!(
            "parking-server-test-{}-{name}.json",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempConfig(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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
    let (status, stderr) = run_to_end(&["--config", typo.0.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("unknown field `rpc_prot`"), "{stderr}");
    assert!(stderr.contains(typo.0.to_str().unwrap()), "{stderr}");

    let duplicate = TempConfig::new(
        "duplicate",
        r#"{"lots": [{"id": "A", "capacity": 1}, {"id": "A", "capacity": 2}]}"#,
    );
    let (status, stderr) = run_to_end(&["--config", duplicate.0.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("appears twice"), "{stderr}");

    let (status, stderr) = run_to_end(&["--thread-pool-size", "0"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("thread_pool_size"), "{stderr}");

    let (status, stderr) = run_to_end(&["--rpc-port", "99999"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--rpc-port"), "{stderr}");
}

/// A server process on ephemeral ports and the RPC address it logged.
struct ServerProcess {
    child: Child,
    rpc: SocketAddr,
}

impl ServerProcess {
    /// Starts the server on `rpc_port` (0 for any) with the other ports ephemeral.
    fn start(rpc_port: u16) -> ServerProcess {
        let mut child = Command::new(BINARY)
            .args(["--rpc-port", &rpc_port.to_string()])
            .args(["--sensor-port", "0", "--pubsub-port", "0"])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut log = String::new();
        let rpc = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "server exited early:\n{log}"
            );
            log.push_str(&line);
            if let Some(rest) = line.split("listening: rpc ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        thread::spawn(move || for _ in stderr.lines() {});
        ServerProcess { child, rpc }
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

#[test]
fn sigterm_under_load_answers_cleanly_and_exits_zero() {
    let mut server = ServerProcess::start(0);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|n| {
            let (stop, answered, addr) = (Arc::clone(&stop), Arc::clone(&answered), server.rpc);
            thread::spawn(move || {
                let mut client = ParkingClient::connect(addr).unwrap();
                let plate = format!("SIG{n}");
                while !stop.load(Ordering::Relaxed) {
                    let reply = match n % 2 {
                        0 => client
                            .reserve("A", &plate)
                            .and_then(|_| client.cancel("A", &plate)),
                        _ => client.get_availability("B").map(|free| free == 50),
                    };
                    match reply {
                        Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                        // The server closing the connection is the expected end.
                        Err(ClientError::Closed | ClientError::Io(_)) => return,
                        Err(other) => panic!("malformed or wrong reply during shutdown: {other}"),
                    };
                }
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < 500 {
        thread::sleep(Duration::from_millis(5));
    }
    let signalled = Instant::now();
    let status = server.terminate();
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");

    // The ports are free again at once (SO_REUSEADDR): a new server can take the same port.
    let mut again = ServerProcess::start(server.rpc.port());
    assert_eq!(again.rpc, server.rpc);
    ParkingClient::connect(again.rpc).unwrap().ping().unwrap();
    assert!(again.terminate().success());
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
            r#"{{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, "thread_pool_size": 2,
                "sensor_pool_size": 1, "notifier_threads": 1, "shutdown_grace": 0.2,
                "auth": {{"keys": [{{"id": "ops", "role": "operator", "sha256": "{}"}}]}}}}"#,
            auth::token_hash(right)
        ),
    );
    let mut child = Command::new(BINARY)
        .args(["--config", config.0.to_str().unwrap()])
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
