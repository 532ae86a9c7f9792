//! `load-test` and `baseline-server` as processes, against a parking server started in-process
//! on ephemeral ports (or the baseline binary). Rows are kept to a second or less so the whole
//! file runs in a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use server::RunningServer;

fn start_server() -> RunningServer {
    testkit::start_server(|_| {})
}

fn load_test_command(addr: SocketAddr, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_load-test"));
    command
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn_load_test(addr: SocketAddr, args: &[&str]) -> Child {
    load_test_command(addr, args).spawn().unwrap()
}

/// A fresh scratch path under Cargo's per-target temporary directory.
fn scratch(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("load-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Asserts a clean run: exit 0, nothing on stderr (no progress line off a terminal), and every
/// row answered requests without errors or timeouts.
fn assert_clean(output: &Output, report: &Value) {
    let context = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{context}");
    assert!(output.stderr.is_empty(), "{context}");
    for row in report["rows"].as_array().unwrap() {
        assert_eq!(row["errors"], 0, "{row}\n{context}");
        assert_eq!(row["timeouts"], 0, "{row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        assert!(row["throughput"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["note"].is_null(), "{row}");
    }
}

/// Runs several load tests at once, each against its address, and checks that each ran clean.
fn run_clean_in_parallel(runs: &[(SocketAddr, &str, &[&str])]) {
    let children: Vec<(String, PathBuf, Child)> = runs
        .iter()
        .map(|(addr, name, args)| {
            let json = scratch(&format!("{name}.json"));
            let mut all = vec!["--duration", "1", "--warmup", "0", "--workers", "2"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["--json", json.to_str().unwrap()]);
            (name.to_string(), json.clone(), spawn_load_test(*addr, &all))
        })
        .collect();
    for (name, json, child) in children {
        let output = child.wait_with_output().unwrap();
        assert!(json.exists(), "{name}: {}", text(&output.stderr));
        let report = read_json(&json);
        assert_clean(&output, &report);
        let rows = report["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        assert_eq!(rows[0]["connections"], 2, "{name}");
        let table = text(&output.stdout);
        assert!(
            table.contains("req/s") && table.contains("p99.9 ms"),
            "{table}"
        );
        if ["reserve", "mixed", "text", "pipelined"].contains(&name.as_str()) {
            assert!(table.contains("cleanup: cancelled "), "{name}: {table}");
        }
    }
}

#[test]
fn every_mode_runs_clean_against_a_live_server() {
    let server = start_server();
    // The reserve mode gets a server of its own, to check what it leaves behind.
    let reserve_server = start_server();
    let addr = server.rpc_addr();
    // Three at a time: the machine has two cores for everything.
    run_clean_in_parallel(&[
        (addr, "ping", &["--mode", "ping"]),
        (addr, "avail", &["--mode", "avail"]),
        (
            reserve_server.rpc_addr(),
            "reserve",
            &["--mode", "reserve", "--pipeline", "3"],
        ),
    ]);
    run_clean_in_parallel(&[
        (addr, "mixed", &["--mode", "mixed"]),
        (addr, "text", &["--mode", "text"]),
        (addr, "pipelined", &["--mode", "mixed", "--pipeline", "8"]),
    ]);
    // Every reservation the runs made, they cancelled: the reserve mode as it went, the
    // mixed and text modes in their cleanup after the last row.
    for server in [&server, &reserve_server] {
        let lots = server.state().lots();
        assert!(lots.iter().all(|lot| lot.reserved == 0), "{lots:?}");
    }
    reserve_server.shutdown();
    server.shutdown();
}

#[test]
fn json_hgrm_and_plot_outputs() {
    let server = start_server();
    let json = scratch("outputs.json");
    let hgrm = scratch("hgrm");
    let svg = scratch("plot.svg");
    let output = load_test_command(
        server.rpc_addr(),
        &[
            "--mode",
            "avail",
            "--workers",
            "1",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--json",
            json.to_str().unwrap(),
            "--hgrm",
            hgrm.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    server.shutdown();
    let report = read_json(&json);
    assert_clean(&output, &report);

    assert_eq!(report["mode"], "avail");
    assert_eq!(report["pipeline"], 1);
    assert!(report["rate"].is_null());
    assert_eq!(report["duration_secs"], 1.0);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["connections"].clone())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    for row in rows {
        let latency = &row["latency_us"];
        let percentiles: Vec<u64> = ["min", "p50", "p90", "p99", "p99.9", "max"]
            .iter()
            .map(|key| {
                latency[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{key}: {row}"))
            })
            .collect();
        assert!(percentiles.windows(2).all(|w| w[0] <= w[1]), "{latency}");
        let distribution = row["distribution"].as_array().unwrap();
        assert!(distribution.len() > 10, "{row}");
        assert_eq!(distribution[0]["quantile"], 0.0);
        let last = distribution.last().unwrap();
        assert_eq!(last["quantile"], 1.0);
        assert_eq!(last["total_count"], row["requests"]);
        assert_eq!(last["value_us"], latency["max"]);
    }

    for connections in [1, 2] {
        let path = hgrm.join(format!("avail-c{connections}.hgrm"));
        let file = std::fs::read_to_string(&path).unwrap();
        let mut lines = file.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next().unwrap(), "");
        let body: Vec<&str> = lines.clone().take_while(|l| !l.starts_with('#')).collect();
        assert!(body.len() > 10, "{file}");
        for line in &body[..body.len() - 1] {
            let fields: Vec<f64> = line
                .split_whitespace()
                .map(|f| f.parse().unwrap())
                .collect();
            assert_eq!(fields.len(), 4, "{line}");
        }
        let last: Vec<&str> = body.last().unwrap().split_whitespace().collect();
        assert_eq!(last[1], "1.000000000000", "{file}");
        let footer: Vec<&str> = lines.filter(|l| l.starts_with('#')).collect();
        assert!(footer[0].starts_with("#[Mean    ="), "{file}");
        assert!(footer[1].starts_with("#[Max     ="), "{file}");
        assert!(footer[2].starts_with("#[Buckets ="), "{file}");
    }

    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("1 conn") && chart.contains("2 conn") && chart.contains("99%"));
}

#[test]
fn rate_mode_holds_the_requested_rate() {
    let server = start_server();
    let json = scratch("rate.json");
    let output = load_test_command(
        server.rpc_addr(),
        &[
            "--mode",
            "avail",
            "--workers",
            "2",
            "--rate",
            "400",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--json",
            json.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    server.shutdown();
    let report = read_json(&json);
    assert_clean(&output, &report);
    assert_eq!(report["rate"], 400.0);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("open loop at 400 req/s"), "{stdout}");
    let requests = report["rows"][0]["requests"].as_u64().unwrap();
    // 400 requests are due in the recorded second, give or take the slots at its edges.
    assert!((390..=410).contains(&requests), "{requests}\n{stdout}");
}

/// A one-connection server that answers `PING` at once, except that it stalls for `stall`
/// before answering request number `stall_at`.
fn start_stalling_server(stall_at: u64, stall: Duration) -> SocketAddr {
    use framing::frame;
    use framing::rpc::{self, Reply};
    use std::io::Write;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let (mut payload, mut out) = (Vec::new(), Vec::new());
        let mut served = 0u64;
        while let Ok(true) = frame::read_frame(&mut reader, &mut payload) {
            served += 1;
            if served == stall_at {
                thread::sleep(stall);
            }
            let (rpc_id, _) = rpc::decode_json_request(&payload).unwrap();
            out.clear();
            frame::encode_with(&mut out, |out| {
                rpc::encode_json_reply(out, Some(rpc_id), Ok(&Reply::Pong));
            })
            .unwrap();
            if writer.write_all(&out).is_err() {
                break;
            }
        }
    });
    addr
}

#[test]
fn rate_mode_charges_a_stall_to_every_request_it_delays() {
    // 200 req/s for 1 s; the 50th request (due at 245 ms) is held for 300 ms, so about 60
    // requests fall due during the stall and each waits for part of it.
    let stall = Duration::from_millis(300);
    let run = |addr, extra: &[&str]| {
        let json = scratch(&format!("stall{}.json", extra.len()));
        let mut args = vec![
            "--mode",
            "ping",
            "--workers",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--json", json.to_str().unwrap()]);
        let output = load_test_command(addr, &args).output().unwrap();
        let report = read_json(&json);
        assert_clean(&output, &report);
        report["rows"][0].clone()
    };
    let open = run(start_stalling_server(50, stall), &["--rate", "200"]);
    let closed = run(start_stalling_server(50, stall), &[]);
    // Open loop: every request that fell due in the first 200 ms of the stall (about 40)
    // waited at least 100 ms. Closed loop: only the one request that was held.
    assert!(slow_requests(&open) >= 30, "{open}");
    assert!(slow_requests(&closed) <= 3, "{closed}");
    for row in [&open, &closed] {
        assert!(
            row["latency_us"]["max"].as_u64().unwrap() >= 290_000,
            "{row}"
        );
    }
}

/// How many of a row's requests took 100 ms or more, from its distribution.
fn slow_requests(row: &Value) -> u64 {
    let fast = row["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|point| point["value_us"].as_u64().unwrap() < 100_000)
        .map(|point| point["total_count"].as_u64().unwrap())
        .max()
        .unwrap_or(0);
    row["requests"].as_u64().unwrap() - fast
}

#[test]
fn a_server_killed_mid_run_is_counted_not_fatal() {
    let server = start_server();
    let json = scratch("killed.json");
    let child = spawn_load_test(
        server.rpc_addr(),
        &[
            "--mode",
            "mixed",
            "--workers",
            "2",
            "--duration",
            "3",
            "--warmup",
            "0",
            "--timeout",
            "1",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    // Mid-run: the load test is connected and its requests are being answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.summary().rpc_requests < 1_000 {
        assert!(Instant::now() < deadline, "the load test never got going");
        thread::sleep(Duration::from_millis(10));
    }
    server.shutdown();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let row = &read_json(&json)["rows"][0];
    assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
    let failures = row["errors"].as_u64().unwrap() + row["timeouts"].as_u64().unwrap();
    assert!(failures > 0, "{row}");
    // Reconnection attempts back off: a few dozen, not a busy loop.
    assert!(
        row["error_kinds"]["connect"].as_u64().unwrap() < 200,
        "{row}"
    );
}

#[test]
fn a_server_that_is_down_is_reported_per_row() {
    // Held, not dropped: a freed port may be handed to another test's server meanwhile.
    let (_held, port) = testkit::refused_port();
    let runs: [(&str, &[&str], PathBuf); 3] = [
        ("mixed", &[], scratch("down-mixed.json")),
        ("ping", &[], scratch("down-ping.json")),
        ("ping", &["--rate", "200"], scratch("down-rate.json")),
    ];
    let children: Vec<Child> = runs
        .iter()
        .map(|(mode, extra, json)| {
            let mut args = vec![
                "--mode",
                mode,
                "--workers",
                "1",
                "2",
                "--duration",
                "0.5",
                "--warmup",
                "0",
                "--json",
                json.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            spawn_load_test(port, &args)
        })
        .collect();
    for ((mode, extra, json), child) in runs.iter().zip(children) {
        let output = child.wait_with_output().unwrap();
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{mode}: {stdout}");
        let report = read_json(json);
        let rows = report["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{mode}: the run goes on after a failed row");
        for row in rows {
            assert_eq!(row["requests"], 0, "{row}");
            assert!(
                row["error_kinds"]["connect"].as_u64().unwrap() >= 1,
                "{row}"
            );
            if !extra.is_empty() {
                // Open loop: the 100 requests due in the row count as failed, plus the attempts.
                assert!(row["errors"].as_u64().unwrap() >= 100, "{row}");
            }
        }
        if *mode == "mixed" {
            assert!(stdout.contains("note: getLots failed"), "{stdout}");
        }
    }
}

/// Starts `baseline-server` on an ephemeral port and returns it with its address.
fn start_baseline() -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baseline-server"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

#[test]
fn baseline_server_answers_every_mode() {
    let (mut baseline, addr) = start_baseline();
    run_clean_in_parallel(&[
        (addr, "baseline-mixed", &["--mode", "mixed"]),
        (addr, "baseline-text", &["--mode", "text"]),
        (
            addr,
            "baseline-pipelined",
            &["--mode", "reserve", "--pipeline", "16"],
        ),
    ]);
    baseline.kill().unwrap();
    baseline.wait().unwrap();
}

#[test]
fn idle_connections_are_held_open_for_every_row_and_counted_if_closed() {
    let server = start_server();
    let json = scratch("idle.json");
    let output = load_test_command(
        server.rpc_addr(),
        &[
            "--mode",
            "ping",
            "--workers",
            "1",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--idle",
            "300",
            "--json",
            json.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let report = read_json(&json);
    assert_clean(&output, &report);
    assert_eq!(report["idle"], 300);
    assert!(
        text(&output.stdout).contains("300 idle connections held open"),
        "{}",
        text(&output.stdout)
    );
    // The server saw them all: the busy rows' connections plus the idle ones.
    assert!(server.summary().rpc_connections >= 303);

    // A server that closes idle connections: the row says so and counts as failed.
    let strict = testkit::start_server(|config| config.idle_timeout = Duration::from_millis(100));
    let output = load_test_command(
        strict.rpc_addr(),
        &[
            "--mode",
            "ping",
            "--workers",
            "1",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--idle",
            "20",
        ],
    )
    .output()
    .unwrap();
    let table = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{table}");
    assert!(
        table.contains("the server closed 20 of the 20 idle connections"),
        "{table}"
    );
}

#[test]
fn an_output_that_cannot_be_written_fails_before_the_run() {
    let server = start_server();
    let output = load_test_command(
        server.rpc_addr(),
        &[
            "--mode",
            "avail",
            "--workers",
            "1",
            // A run this long would hang the test if it ran.
            "--duration",
            "600",
            "--plot",
            "/nonexistent/x.svg",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("cannot write /nonexistent/x.svg"),
        "{}",
        text(&output.stderr)
    );
    // Nothing ran: no table row was printed.
    assert_eq!(text(&output.stdout), "");
    server.shutdown();
}
