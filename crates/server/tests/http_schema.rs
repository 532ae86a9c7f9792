//! docs/openapi.yaml against the running server: schemathesis (PyPI) generates requests for
//! every operation of the document, valid and invalid, sends them over a real socket and
//! checks each answer against the document (status, content type, headers, body schema, no
//! 5xx). The server has an operator key, a driver's account with a booking and a waitlist
//! entry holding an offer, and lots to book, so every route can answer more than 404.
//!
//! A run draws a new seed (printed in a failure's report); `SCHEMATHESIS_SEED=<seed>` replays
//! one.
//!
//! schemathesis is found as `$SCHEMATHESIS`, on `PATH`, or in the virtualenv `.ci/run`
//! makes ([`CI_VENV`]). Without it the test says how to install it and passes, unless
//! `CI=true`, where a missing tool is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use auth::Role;
use serde_json::{Value, json};
use server::RunningServer;
use testkit::TempDir;
use testkit::http::{Http, request};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where `.ci/run` installs schemathesis (a virtualenv: Debian's python3 refuses a
/// system-wide `pip install`).
const CI_VENV: &str = "/opt/schemathesis/bin/schemathesis";

/// The operator's bearer token (`testkit::keys` makes it `token-<id>`).
const OPERATOR: &str = "token-ops";

/// Test cases per operation and phase: enough for the coverage phase's boundary cases plus a
/// sample of random ones, small enough that the whole run stays around a minute on 2 cores.
/// It bounds the stateful phase too (chains along the document's links: a booking made,
/// then read, checked in or cancelled), so that phase cannot explode.
const MAX_EXAMPLES: &str = "20";

/// The checks run on every answer: all of schemathesis's but `positive_data_acceptance`,
/// which expects every schema-valid request to be accepted. The document cannot say that
/// `start` and `end` come together and that `end` is after `start` (OpenAPI 3.0 has no
/// constraint between two fields), so a schema-valid search or booking is rightly refused
/// with 400 `BAD_ARGS` or 422 `BAD_WINDOW`; `negative_data_rejection` still checks the
/// other direction.
const CHECKS: &str = "all";
const EXCLUDED_CHECKS: &str = "positive_data_acceptance";

/// The schemathesis CLI; `None` (after one loud line) when it is not installed, which fails
/// the test under `CI=true` (`.ci/run` installs it).
fn schemathesis() -> Option<PathBuf> {
    let from_env = std::env::var_os("SCHEMATHESIS").map(PathBuf::from);
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("schemathesis"))
            .find(|candidate| candidate.is_file())
    });
    let found = from_env
        .or(on_path)
        .or_else(|| Some(PathBuf::from(CI_VENV)).filter(|venv| venv.is_file()));
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is not installed, and under CI=true the schema test must run"
        );
        eprintln!(
            "SKIPPED: the OpenAPI conformance test needs schemathesis \
             (python3 -m venv /opt/schemathesis && /opt/schemathesis/bin/pip install \
             schemathesis==4.32.5, or set SCHEMATHESIS=/path/to/schemathesis)"
        );
    }
    found
}

/// Unix seconds as RFC 3339 (UTC, whole seconds), as the document's `Time`.
fn at(unix: u64) -> String {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// `method path` with a JSON `body`, as the holder of `token` (none: anonymous); fails the
/// test unless the answer is `status`. Its body as JSON (`null` for none).
fn call(
    server: &RunningServer,
    (method, path): (&str, &str),
    body: Option<&Value>,
    token: Option<&str>,
    status: u16,
) -> Value {
    let mut http = Http::connect(server.http_addr().unwrap());
    let auth = token.map(|token| format!("Authorization: Bearer {token}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let body = body.map(Value::to_string);
    http.send(request(method, path, body.as_deref(), &headers).as_bytes());
    let answer = http.response();
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
    if answer.body.is_empty() {
        Value::Null
    } else {
        answer.json()
    }
}

/// Lots `L` (spots, zone, features: bookings and searches) and `W` (one bookable space: its
/// waitlist can hold an offer), an operator key; accounts are on without configuration.
fn server() -> RunningServer {
    testkit::start_server(|config| {
        config.lots = serde_json::from_value(json!([
            {"id": "L", "capacity": 10, "bookable": 4, "zone": "north",
             "features": ["covered"],
             "spots": [{"id": "S1", "features": ["ev"]}, {"id": "S2"}]},
            {"id": "W", "capacity": 2, "bookable": 1},
        ]))
        .unwrap();
        config.auth = testkit::keys(&[("ops", Role::Operator)]);
    })
}

/// What the run starts from: a driver's token, its booking ids and its waitlist entry ids.
struct Seeded {
    driver: String,
    bookings: Vec<String>,
    entries: Vec<String>,
}

/// Makes a driver with a booking on `L` and a waitlist entry on `W` that holds an offer (the
/// operator books `W`'s one space, the driver waits for it, the operator cancels), so the
/// id routes and `accept` meet real resources.
fn seed(server: &RunningServer, start: u64, end: u64) -> Seeded {
    let credentials = json!({"username": "schema-driver", "password": "correct horse"});
    let register = ("POST", "/v1/auth/register");
    call(server, register, Some(&credentials), None, 201);
    let login = call(
        server,
        ("POST", "/v1/auth/login"),
        Some(&credentials),
        None,
        200,
    );
    let token = login["token"].as_str().unwrap().to_owned();
    let driver = Some(token.as_str());
    let id = |answer: &Value| answer["id"].as_str().unwrap().to_owned();

    // A booking or waitlist entry for the window on `lot`, as `token`.
    let post = |path: &str, lot: &str, token: Option<&str>| {
        let body = json!({"lot": lot, "plate": "7ABC123", "start": at(start), "end": at(end)});
        call(server, ("POST", path), Some(&body), token, 201)
    };
    let booked = post("/v1/bookings", "L", driver);
    let held = post("/v1/bookings", "W", Some(OPERATOR));
    let waiting = post("/v1/waitlist", "W", driver);
    let cancel = format!("/v1/bookings/{}", id(&held));
    call(server, ("DELETE", &cancel), None, Some(OPERATOR), 204);
    let entry = id(&waiting);
    let offered = call(
        server,
        ("GET", &format!("/v1/waitlist/{entry}")),
        None,
        driver,
        200,
    );
    assert_eq!(offered["status"], "OFFERED", "{offered}");
    Seeded {
        driver: token,
        bookings: vec![
            id(&booked),
            offered["offer"]["booking"].as_str().unwrap().to_owned(),
        ],
        entries: vec![entry],
    }
}

/// A TOML array of strings.
fn strings(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|value| format!("{value:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// schemathesis's configuration: who calls what, and values it draws most of the time
/// instead of random ones (real lots, ids and windows), so requests get past 404 and 400.
fn config(seeded: &Seeded, now: u64) -> String {
    let starts = [at(now + 3600), at(now + 2 * 3600)];
    let ends = [at(now + 3 * 3600), at(now + 4 * 3600)];
    let mut toml = String::new();
    // Every value a Rust string's Debug form writes is a valid TOML basic string here (ASCII).
    writeln!(
        toml,
        r#"# Written by crates/server/tests/http_schema.rs.
headers = {{ Authorization = "Bearer {OPERATOR}" }}
# The event streams never end: schemathesis reads one event (the snapshot's first), or
# gives up after request-timeout when none comes (a driver's stream before any notice).
max-stream-events = 1
request-timeout = 5
# One worker: with two, hypothesis 6.170's lambda-source cache races between the threads
# ("AST constructor recursion depth mismatch", a Runtime Error in the coverage phase).
workers = 1

[dictionaries.lots]
values = ["L", "W"]
[dictionaries.starts]
values = {starts}
[dictionaries.ends]
values = {ends}
[dictionaries.bookings]
values = {bookings}
[dictionaries.entries]
values = {entries}

[parameters]
"body.lot" = {{ dictionary = "lots", probability = 0.8 }}
"body.start" = {{ dictionary = "starts", probability = 0.8 }}
"body.end" = {{ dictionary = "ends", probability = 0.8 }}
"query.start" = {{ dictionary = "starts", probability = 0.8 }}
"query.end" = {{ dictionary = "ends", probability = 0.8 }}

[[operations]]
include-path-regex = "^/v1/lots/"
parameters = {{ "path.id" = {{ dictionary = "lots", probability = 0.8 }} }}

# The driver's own resources, as the driver (the operator covers every other route).
[[operations]]
include-path-regex = "^/v1/(me|bookings|waitlist)"
headers = {{ Authorization = "Bearer {driver}" }}

[[operations]]
include-path-regex = "^/v1/bookings/"
parameters = {{ "path.id" = {{ dictionary = "bookings", probability = 0.8 }} }}

[[operations]]
include-path-regex = "^/v1/waitlist/"
parameters = {{ "path.id" = {{ dictionary = "entries", probability = 0.8 }} }}

# A driver's stream sends nothing until a notice: each case waits request-timeout, so few.
[[operations]]
include-path = "/v1/me/events"
request-timeout = 1
generation.max-examples = 2"#,
        starts = strings(&starts),
        ends = strings(&ends),
        bookings = strings(&seeded.bookings),
        entries = strings(&seeded.entries),
        driver = seeded.driver,
    )
    .unwrap();
    toml
}

#[test]
fn every_operation_of_the_openapi_document_conforms() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let server = server();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let seeded = seed(&server, now + 3600, now + 3 * 3600);
    let dir = TempDir::new("schemathesis");
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config(&seeded, now)).unwrap();
    let document = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml");

    let started = Instant::now();
    let mut command = Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(&document);
    // Each run draws a new seed, so runs explore more than one would; a failure's report
    // prints its seed, and SCHEMATHESIS_SEED replays those cases.
    if let Some(seed) = std::env::var_os("SCHEMATHESIS_SEED") {
        command.arg("--seed").arg(seed);
    }
    let output = command
        .args(["--url", &format!("http://{}", server.http_addr().unwrap())])
        .args(["--checks", CHECKS, "--exclude-checks", EXCLUDED_CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--generation-database", "none", "--no-color"])
        // Writes nothing (no report, no example database) into the repository.
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found disagreements with docs/openapi.yaml ({:?}):\n{report}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "schemathesis passed in {:.0?}: {}",
        started.elapsed(),
        report
            .lines()
            .rev()
            .find(|line| line.contains("generated"))
            .unwrap_or("")
    );
}
