//! `parking-rpc` as a process, against a server started in-process on ephemeral ports.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::thread::{self, JoinHandle};

use framing::frame;
use framing::rpc::{self, CancelOutcome, LotStatus, Reply, Request, ReserveOutcome};

use server::{LotConfig, RunningServer};

fn start_server() -> RunningServer {
    testkit::start_server(|_| {})
}

fn parking_rpc(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parking-rpc"))
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn smoke_passes_against_a_live_server() {
    let server = start_server();
    let output = parking_rpc(server.rpc_addr(), &["smoke"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains("smoke: passed"), "{text}");

    let output = parking_rpc(server.rpc_addr(), &["--json", "smoke"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(output.status.code(), Some(0));
    server.shutdown();
}

/// A fake RPC port that answers like the server except that it books a plate twice (a second
/// `reserve` of the same plate succeeds and takes another space), for one connection.
fn double_booking_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let capacity = 10;
        let mut free = capacity;
        let mut payload = Vec::new();
        while let Ok(true) = frame::read_frame(&mut stream, &mut payload) {
            let (rpc_id, request) = rpc::decode_json_request(&payload).unwrap();
            let reply = match request {
                Request::Ping => Reply::Pong,
                Request::GetLots => Reply::Lots(vec![LotStatus {
                    id: "A".into(),
                    capacity,
                    occupied: 0,
                    counted: 0,
                    reserved: capacity - free,
                    booked: 0,
                    free,
                    status: None,
                }]),
                Request::GetAvailability { .. } => Reply::Free(free),
                Request::Reserve { .. } => {
                    free -= 1;
                    Reply::Reserve(ReserveOutcome::Reserved)
                }
                Request::Cancel { .. } => {
                    free += 1;
                    Reply::Cancel(CancelOutcome::Cancelled)
                }
                Request::Auth { .. } => panic!("smoke authenticated without being given a key"),
                other => panic!("smoke does not send {:?}", other.method()),
            };
            let mut out = Vec::new();
            rpc::encode_json_reply(&mut out, Some(rpc_id), Ok(&reply));
            frame::write_frame(&mut stream, &out).unwrap();
        }
    });
    (addr, handle)
}

#[test]
fn smoke_fails_against_a_server_that_double_books_and_names_the_step() {
    let (addr, fake) = double_booking_server();
    let output = parking_rpc(addr, &["smoke"]);
    let text = stdout(&output);
    fake.join().unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    let failed: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("FAIL"))
        .collect();
    // The second reservation of the plate, and (the fake having taken two spaces and given
    // back one) the availability at the end.
    assert_eq!(failed.len(), 2, "{text}");
    assert!(
        failed[0].starts_with("FAIL  duplicate reserve refused: ")
            && failed[0].ends_with("was reserved a second time"),
        "{text}"
    );
    assert!(
        failed[1].starts_with("FAIL  availability restored: lot A: 9 free (expected 10)"),
        "{text}"
    );
    assert!(text.contains("smoke: FAILED (2 of 9 checks)"), "{text}");

    let (addr, fake) = double_booking_server();
    let output = parking_rpc(addr, &["--json", "smoke"]);
    fake.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    let failed: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["ok"] == false)
        .map(|step| step["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        ["duplicate reserve refused", "availability restored"]
    );
}

#[test]
fn reserve_says_why_it_was_refused_and_smoke_proves_the_duplicate_rule_on_one_space() {
    let server = testkit::start_server(|config| {
        config.lots = vec![LotConfig::new(state::LotId::new("ONE").unwrap(), 1)];
    });
    let addr = server.rpc_addr();
    assert_eq!(
        parking_rpc(addr, &["reserve", "ONE", "P-1"]).status.code(),
        Some(0)
    );
    let duplicate = parking_rpc(addr, &["reserve", "ONE", "P-1"]);
    assert_eq!(duplicate.status.code(), Some(1));
    assert_eq!(
        stdout(&duplicate),
        "refused: P-1 already holds a reservation in lot ONE\n"
    );
    let full = parking_rpc(addr, &["--json", "reserve", "ONE", "P-2"]);
    assert_eq!(full.status.code(), Some(1));
    let answer: serde_json::Value = serde_json::from_slice(&full.stdout).unwrap();
    assert_eq!(
        (&answer["reserved"], &answer["reason"]),
        (&false.into(), &"FULL".into()),
        "{answer}"
    );
    assert_eq!(
        stdout(&parking_rpc(addr, &["reserve", "ONE", "P-2"])),
        "refused: lot ONE is full\n"
    );
    assert_eq!(
        parking_rpc(addr, &["cancel", "ONE", "P-1"]).status.code(),
        Some(0)
    );

    // With one space, the second reservation is refused as EXISTS, not FULL: the reason
    // proves the duplicate rule, so nothing is skipped, and the space is given back.
    let smoke = parking_rpc(addr, &["--json", "smoke"]);
    let report: serde_json::Value = serde_json::from_slice(&smoke.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let steps = report["steps"].as_array().unwrap();
    let duplicate = steps
        .iter()
        .find(|step| step["name"] == "duplicate reserve refused")
        .unwrap();
    assert_eq!(duplicate["ok"], true, "{report}");
    assert!(duplicate.get("skipped").is_none(), "{report}");
    assert_eq!(
        stdout(&parking_rpc(addr, &["avail", "ONE"])),
        "lot ONE: 1 free\n"
    );
    server.shutdown();
}

#[test]
fn commands_print_results_and_exit_codes() {
    let server = start_server();
    let addr = server.rpc_addr();

    let lots = parking_rpc(addr, &["lots"]);
    assert_eq!(lots.status.code(), Some(0));
    let table = stdout(&lots);
    let mut rows = table.lines();
    assert!(rows.next().unwrap().starts_with("LOT  CAPACITY"), "{table}");
    assert_eq!(
        rows.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["A", "100", "0", "0", "0", "100"]
    );

    let json = parking_rpc(addr, &["lots", "--json"]);
    let lots: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(lots[1]["id"], "B");

    assert_eq!(
        parking_rpc(addr, &["reserve", "B", "CLI-1"]).status.code(),
        Some(0)
    );
    let again = parking_rpc(addr, &["reserve", "B", "CLI-1"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stdout(&again),
        "refused: CLI-1 already holds a reservation in lot B\n"
    );
    assert_eq!(
        stdout(&parking_rpc(addr, &["avail", "B"])),
        "lot B: 49 free\n"
    );
    assert_eq!(
        parking_rpc(addr, &["cancel", "B", "CLI-1"]).status.code(),
        Some(0)
    );
    assert_eq!(
        parking_rpc(addr, &["cancel", "B", "CLI-1"]).status.code(),
        Some(1)
    );
    assert_eq!(stdout(&parking_rpc(addr, &["raw", "AVAIL", "B"])), "50\n");

    let unknown = parking_rpc(addr, &["avail", "NOPE"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(
        stderr(&unknown).contains("UNKNOWN_LOT"),
        "{}",
        stderr(&unknown)
    );

    let ping = parking_rpc(addr, &["ping"]);
    assert!(stdout(&ping).starts_with("PONG from"), "{}", stdout(&ping));
    server.shutdown();
}

#[test]
fn closed_port_prints_one_line_and_exits_2() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = parking_rpc(addr, &["--timeout", "2", "ping"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", addr.port())),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_parking-rpc"))
        .args(["reserve", "A"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn json_mode_prints_failures_as_json_on_stdout() {
    let server = start_server();
    let unknown = parking_rpc(server.rpc_addr(), &["--json", "avail", "Z"]);
    assert_eq!(unknown.status.code(), Some(3));
    let failure: serde_json::Value = serde_json::from_slice(&unknown.stdout).unwrap();
    assert_eq!(failure["error"], "UNKNOWN_LOT", "{failure}");
    assert!(
        failure["detail"].as_str().unwrap().contains("\"Z\""),
        "{failure}"
    );
    // The human-readable line still goes to stderr.
    assert!(stderr(&unknown).contains("UNKNOWN_LOT"));

    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = parking_rpc(addr, &["--json", "ping"]);
    assert_eq!(unreachable.status.code(), Some(2));
    let failure: serde_json::Value = serde_json::from_slice(&unreachable.stdout).unwrap();
    assert_eq!(failure["error"], "UNREACHABLE", "{failure}");
    server.shutdown();
}

#[test]
fn pointed_at_a_line_port_it_says_what_it_got_at_once() {
    let server = start_server();
    for (port, addr) in [
        ("sensor", server.sensor_addr()),
        ("pub/sub", server.pubsub_addr()),
    ] {
        // A timeout longer than the test's patience: the answer must come from the port.
        let output = parking_rpc(addr, &["--timeout", "60", "ping"]);
        assert_eq!(output.status.code(), Some(3), "{port}");
        let message = stderr(&output);
        assert!(
            message.contains("got a text line starting \"ERR \"")
                && message.contains("is this the RPC port?"),
            "{port}: {message}"
        );
    }
    server.shutdown();
}

/// A server with lot `ONE` (one space) and lot `EV` (zone `north`, covered, with named spot
/// `EV-1` that has a charger).
fn booking_server() -> RunningServer {
    testkit::start_server(|config| {
        let mut ev = LotConfig::new(state::LotId::new("EV").unwrap(), 2);
        ev.zone = Some(state::Label::new("north", "zone").unwrap());
        ev.features = vec![state::Label::new("covered", "feature").unwrap()];
        ev.spots = vec![server::SpotConfig {
            id: state::SpotId::new("EV-1").unwrap(),
            features: vec![state::Label::new("ev", "feature").unwrap()],
        }];
        config.lots = vec![LotConfig::new(state::LotId::new("ONE").unwrap(), 1), ev];
    })
}

/// The cells of a table's data rows (the header left out), split on runs of two spaces.
fn rows(output: &Output) -> Vec<Vec<String>> {
    stdout(output)
        .lines()
        .skip(1)
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn bookings_and_waitlists_from_the_command_line() {
    let server = booking_server();
    let addr = server.rpc_addr();
    let run = |args: &[&str]| parking_rpc(addr, args);

    let found = run(&["find-lots", "+1h", "+2h", "--feature", "ev"]);
    assert_eq!(found.status.code(), Some(0), "{}", stderr(&found));
    assert_eq!(rows(&found), [["EV", "north", "covered", "1", "EV-1"]]);
    let found = run(&["--json", "find-lots", "+1h", "+2h", "--zone", "south"]);
    assert_eq!(json(&found), serde_json::json!([]));

    // Times given as RFC 3339 print back as given; the spot is booked.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = (
        client::cli::format_time(now + 3600),
        client::cli::format_time(now + 7200),
    );
    let spot = run(&["book", "EV", "EV-CAR", &start, &end, "--spot", "EV-1"]);
    assert_eq!(spot.status.code(), Some(0), "{}", stderr(&spot));
    assert_eq!(
        rows(&spot),
        [["EV.1", "EV", "EV-1", "EV-CAR", &start, &end, "CONFIRMED"]]
    );
    let taken = run(&["book", "EV", "OTHER", &start, &end, "--spot", "EV-1"]);
    assert_eq!(taken.status.code(), Some(1), "{}", stderr(&taken));
    assert!(
        stderr(&taken).contains("refused: SPOT_TAKEN"),
        "{}",
        stderr(&taken)
    );

    let booked = run(&["book", "ONE", "P-1", "+1h", "+3h"]);
    assert_eq!(booked.status.code(), Some(0), "{}", stderr(&booked));
    assert_eq!(rows(&booked)[0][0], "ONE.1");
    // Full over that window: exit 1, and --json says why on stdout.
    let full = run(&["--json", "book", "ONE", "P-2", "+2h", "+4h"]);
    assert_eq!(full.status.code(), Some(1));
    assert_eq!(json(&full)["error"], "FULL");

    let joined = run(&["join-waitlist", "ONE", "P-2", "+2h", "+4h"]);
    assert_eq!(joined.status.code(), Some(0), "{}", stderr(&joined));
    let entry = &rows(&joined)[0];
    assert_eq!(
        (entry[0].as_str(), entry[6].as_str()),
        ("ONE.w1", "WAITING")
    );
    let again = run(&["join-waitlist", "ONE", "P-2", "+2h", "+4h"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("ALREADY_WAITING"),
        "{}",
        stderr(&again)
    );
    let early = run(&["accept-offer", "ONE.w1"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(stderr(&early).contains("NO_OFFER"), "{}", stderr(&early));

    // Cancelling the booking frees the space, and the entry gets it as an offer.
    let cancelled = run(&["cancel-booking", "ONE.1"]);
    assert_eq!(stdout(&cancelled), "cancelled: booking ONE.1\n");
    assert_eq!(cancelled.status.code(), Some(0));
    let twice = run(&["cancel-booking", "ONE.1"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        stdout(&twice).starts_with("not found:"),
        "{}",
        stdout(&twice)
    );
    let waiting = run(&["my-waitlist", "P-2"]);
    let status = &rows(&waiting)[0][6];
    assert!(
        status.starts_with("OFFERED ONE.2 until ") && status.ends_with("(accept-offer ONE.w1)"),
        "{status}"
    );
    let accepted = run(&["accept-offer", "ONE.w1"]);
    assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
    assert_eq!(rows(&accepted)[0][0], "ONE.2");
    assert_eq!(rows(&accepted)[0][6], "CONFIRMED");
    let gone = run(&["leave-waitlist", "ONE.w1"]);
    assert_eq!(gone.status.code(), Some(1), "{}", stdout(&gone));

    // JSON keeps the RPC port's fields: times in Unix seconds.
    let mine = json(&run(&["--json", "my-bookings", "P-2"]));
    assert_eq!(mine[0]["id"], "ONE.2");
    assert_eq!(mine[0]["status"], "CONFIRMED");
    assert!(mine[0]["start"].as_u64().unwrap() >= now + 7200, "{mine}");
    assert_eq!(rows(&run(&["get-booking", "ONE.1"]))[0][6], "CANCELLED");

    let all = run(&["list-bookings", "ONE", "now", "+1d"]);
    let ids: Vec<String> = rows(&all).into_iter().map(|row| row[0].clone()).collect();
    assert_eq!(ids, ["ONE.1", "ONE.2"], "{}", stdout(&all));
    let page = run(&[
        "list-bookings",
        "ONE",
        "now",
        "+1d",
        "--limit",
        "1",
        "--after",
        "ONE.1",
    ]);
    assert_eq!(rows(&page).len(), 1);
    assert_eq!(rows(&page)[0][0], "ONE.2");

    // Check-in opens 15 minutes before the window: not yet.
    let not_due = run(&["check-in", "ONE.2"]);
    assert_eq!(not_due.status.code(), Some(1));
    assert!(stderr(&not_due).contains("NOT_DUE"), "{}", stderr(&not_due));
    let checked = run(&["check-in", "EV.1"]);
    assert_eq!(checked.status.code(), Some(1));

    // A window the rules refuse is the server's error (3); a time that is none, a usage
    // error (2) that says which forms are taken.
    let backwards = run(&["book", "ONE", "P-3", "+3h", "+1h"]);
    assert_eq!(backwards.status.code(), Some(3));
    assert!(
        stderr(&backwards).contains("BAD_WINDOW"),
        "{}",
        stderr(&backwards)
    );
    let vague = run(&["book", "ONE", "P-3", "soon", "+1h"]);
    assert_eq!(vague.status.code(), Some(2));
    assert!(
        stderr(&vague).contains("\"soon\" is not a time") && stderr(&vague).contains("RFC 3339"),
        "{}",
        stderr(&vague)
    );
    server.shutdown();
}
