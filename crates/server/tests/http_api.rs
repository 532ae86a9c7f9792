//! The HTTP port's REST routes and errors (docs/http.md), over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{RawLines, RawRpc};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use client::ParkingClient;
use server::{Config, RunningServer, Server};
use shutdown::ShutdownHandle;
use state::{Clock, CountChange, ManualClock, ParkingState, Plate, StateError};
use store::{Health, MemoryStore, Store};
use testkit::http::{Http, request};

fn start_with(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    testkit::start_server(tweak)
}

fn http(server: &RunningServer) -> Http {
    Http::connect(addr(server))
}

fn addr(server: &RunningServer) -> SocketAddr {
    server.http_addr().expect("the HTTP port is on")
}

#[test]
fn lots_are_listed_in_config_order_and_one_lot_by_id() {
    let server = start_with(|_| {});
    server
        .state()
        .update_occupancy("B", CountChange::Set(46))
        .unwrap();
    let mut http = http(&server);
    let lots = http.get("/v1/lots");
    assert_eq!(lots.status, 200);
    assert_eq!(lots.header("content-type"), Some("application/json"));
    assert_eq!(
        lots.json(),
        serde_json::json!([
            {"id": "A", "capacity": 100, "occupied": 0, "reserved": 0, "booked": 0, "free": 100, "status": "open"},
            {"id": "B", "capacity": 50, "occupied": 46, "reserved": 0, "booked": 0, "free": 4, "status": "almostFull"},
            {"id": "C", "capacity": 200, "occupied": 0, "reserved": 0, "booked": 0, "free": 200, "status": "open"},
        ])
    );
    // The same connection serves the next request (keep-alive).
    let lot = http.get("/v1/lots/B");
    assert_eq!(lot.status, 200);
    assert_eq!(lot.json(), lots.json()[1]);
    let unknown = http.get("/v1/lots/Z");
    assert_eq!(
        (unknown.status, unknown.error()),
        (404, "UNKNOWN_LOT".into())
    );
    // An escaped id is the same id.
    assert_eq!(http.get("/v1/lots/%41").json()["id"], "A");
}

#[test]
fn reservations_are_made_and_cancelled_through_the_same_rules_as_rpc() {
    let clock = Arc::new(ManualClock::new());
    let mut config = testkit::small_config();
    config.lots = vec![server::LotConfig::new(state::LotId::new("A").unwrap(), 2)];
    let server = Server::new(config)
        .with_clock(Arc::clone(&clock) as Arc<dyn Clock>)
        .start(ShutdownHandle::new())
        .unwrap();
    let mut http = Http::connect(server.http_addr().unwrap());
    let made = http.request(
        "POST",
        "/v1/lots/A/reservations",
        Some(r#"{"plate": "7ABC123"}"#),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(
        made.header("location"),
        Some("/v1/lots/A/reservations/7ABC123")
    );
    let body = made.json();
    assert_eq!(
        (body["lot"].as_str(), body["plate"].as_str()),
        (Some("A"), Some("7ABC123"))
    );
    let ttl = server.state().ttl().as_secs_f64();
    let now = clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (body["expiresAt"].as_f64().unwrap() - (now + ttl)).abs() < 0.01,
        "{body}"
    );

    // The RPC port sees it, and its reservation is seen here.
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    assert_eq!(rpc.get_availability("A").unwrap(), 1);
    let again = http.request(
        "POST",
        "/v1/lots/A/reservations",
        Some(r#"{"plate":"7ABC123"}"#),
    );
    assert_eq!((again.status, again.error()), (409, "EXISTS".into()));
    assert!(rpc.reserve("A", "OTHER1").unwrap());
    let full = http.request(
        "POST",
        "/v1/lots/A/reservations",
        Some(r#"{"plate":"THIRD1"}"#),
    );
    assert_eq!((full.status, full.error()), (409, "FULL".into()));

    for (body, status, code) in [
        (r#"{"plate": "no spaces"}"#, 400, "BAD_PLATE"),
        (r#"{"plate": ""}"#, 400, "BAD_PLATE"),
        (r#"{"plate": 7}"#, 400, "BAD_ARGS"),
        (r#"{}"#, 400, "BAD_ARGS"),
        (r#"["7ABC123"]"#, 400, "BAD_REQUEST"),
        ("{not json", 400, "BAD_REQUEST"),
    ] {
        let refused = http.request("POST", "/v1/lots/A/reservations", Some(body));
        assert_eq!(
            (refused.status, refused.error()),
            (status, code.into()),
            "{body}"
        );
    }
    let unknown = http.request("POST", "/v1/lots/Z/reservations", Some(r#"{"plate":"X1"}"#));
    assert_eq!(
        (unknown.status, unknown.error()),
        (404, "UNKNOWN_LOT".into())
    );

    let cancelled = http.request("DELETE", "/v1/lots/A/reservations/7ABC123", None);
    assert_eq!(cancelled.status, 204);
    assert!(cancelled.body.is_empty());
    assert_eq!(rpc.get_availability("A").unwrap(), 1);
    let gone = http.request("DELETE", "/v1/lots/A/reservations/7ABC123", None);
    assert_eq!((gone.status, gone.error()), (404, "NOT_FOUND".into()));
    let bad = http.request("DELETE", "/v1/lots/A/reservations/no%20spaces", None);
    assert_eq!((bad.status, bad.error()), (400, "BAD_PLATE".into()));
    // The RPC port's reservation is cancelled here too.
    assert_eq!(
        http.request("DELETE", "/v1/lots/A/reservations/OTHER1", None)
            .status,
        204
    );
    assert_eq!(rpc.get_availability("A").unwrap(), 2);
}

#[test]
fn history_has_a_sample_per_minute_and_per_change() {
    let clock = Arc::new(ManualClock::new());
    let server = Server::new(testkit::small_config())
        .with_clock(Arc::clone(&clock) as Arc<dyn Clock>)
        .start(ShutdownHandle::new())
        .unwrap();
    let mut http = Http::connect(server.http_addr().unwrap());
    let start = clock.wall().duration_since(UNIX_EPOCH).unwrap().as_secs();
    // The change comes on the first whole minute 90 s or more after the start, every run: a
    // change on a minute shares its second with that minute's sample, the one case of two
    // samples at one `t` (the clock starts at the real time, which put it there one run in 60).
    let changed_at = (start + 90).div_ceil(60) * 60;
    clock.advance(Duration::from_secs(changed_at - start));
    server
        .state()
        .update_occupancy("A", CountChange::Set(10))
        .unwrap();
    clock.advance(Duration::from_secs(150));
    let history = http.get("/v1/lots/A/history?minutes=10");
    assert_eq!(history.status, 200, "{}", history.text());
    let samples = history.json();
    let samples = samples.as_array().unwrap();
    let t = |i: usize| samples[i]["t"].as_u64().unwrap();
    let free = |i: usize| samples[i]["free"].as_u64().unwrap();
    // Oldest first, within the window, ending at 90 free.
    assert!(samples.len() >= 4, "{samples:?}");
    assert!(
        t(0) >= start && t(samples.len() - 1) <= changed_at + 150,
        "{samples:?}"
    );
    assert_eq!(free(0), 100);
    assert_eq!(free(samples.len() - 1), 90);
    // The change itself is a sample, right after its minute's sample (the value before it);
    // every other sample is later than the one before.
    let change = (0..samples.len())
        .find(|&i| t(i) == changed_at && free(i) == 90)
        .unwrap_or_else(|| panic!("no sample of the change: {samples:?}"));
    assert!(
        change > 0 && t(change - 1) == changed_at && free(change - 1) == 100,
        "{samples:?}"
    );
    assert!(
        (1..samples.len()).all(|i| i == change || t(i - 1) < t(i)),
        "{samples:?}"
    );
    // The default window is 60 minutes; one minute shows less.
    assert_eq!(http.get("/v1/lots/A/history").json(), history.json());
    let last_minute = http.get("/v1/lots/A/history?minutes=1").json();
    assert!(last_minute.as_array().unwrap().len() < samples.len());

    for bad in ["0", "1441", "x", "-1", "1.5"] {
        let refused = http.get(&format!("/v1/lots/A/history?minutes={bad}"));
        assert_eq!(
            (refused.status, refused.error()),
            (400, "BAD_ARGS".into()),
            "{bad}"
        );
    }
    let unknown = http.get("/v1/lots/Z/history");
    assert_eq!(
        (unknown.status, unknown.error()),
        (404, "UNKNOWN_LOT".into())
    );
}

/// A store whose health the test sets.
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Store for Flaky {
    fn state(&self) -> &Arc<ParkingState> {
        self.inner.state()
    }
    fn health(&self) -> Health {
        if self.down.load(Ordering::Relaxed) {
            Health::Unavailable("disk full".into())
        } else {
            Health::Ok
        }
    }
    fn close(&self) {}
    fn reserve(
        &self,
        lot: &str,
        plate: Plate,
        owner: Option<&str>,
    ) -> Result<state::ReserveOutcome, StateError> {
        if let Health::Unavailable(why) = self.health() {
            return Err(StateError::Unavailable(state::Unavailable(why)));
        }
        self.inner.reserve(lot, plate, owner)
    }
    fn update_occupancy(
        &self,
        lot: &str,
        change: CountChange,
    ) -> Result<state::OccupancyUpdate, StateError> {
        if let Health::Unavailable(why) = self.health() {
            return Err(StateError::Unavailable(state::Unavailable(why)));
        }
        self.inner.update_occupancy(lot, change)
    }
}

/// A server on a [`Flaky`] store, up.
fn start_flaky() -> (RunningServer, Arc<Flaky>) {
    let config = testkit::small_config();
    let state = Arc::new(
        ParkingState::new(
            config.lot_specs(),
            config.reservation_ttl,
            Arc::new(state::SystemClock),
        )
        .unwrap(),
    );
    let store = Arc::new(Flaky {
        inner: MemoryStore::new(state),
        down: AtomicBool::new(false),
    });
    let server = Server::new(config)
        .with_store(Arc::clone(&store) as Arc<dyn Store>)
        .start(ShutdownHandle::new())
        .unwrap();
    (server, store)
}

#[test]
fn health_and_readiness_tell_what_a_load_balancer_needs() {
    let (server, store) = start_flaky();
    let mut http = Http::connect(server.http_addr().unwrap());
    let health = http.get("/healthz");
    assert_eq!(
        (health.status, health.json()),
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(http.get("/readyz").status, 200);

    store.down.store(true, Ordering::Relaxed);
    let unready = http.get("/readyz");
    assert_eq!(
        (unready.status, unready.error()),
        (503, "UNAVAILABLE".into())
    );
    assert!(
        unready.json()["detail"]
            .as_str()
            .unwrap()
            .contains("disk full")
    );
    assert_eq!(http.get("/healthz").status, 200);
    let refused = http.request("POST", "/v1/lots/A/reservations", Some(r#"{"plate":"P1"}"#));
    assert_eq!(
        (refused.status, refused.error()),
        (503, "UNAVAILABLE".into())
    );
    store.down.store(false, Ordering::Relaxed);
    assert_eq!(http.get("/readyz").status, 200);
}

#[test]
fn bad_http_gets_the_answer_a_proxy_expects() {
    let server = start_with(|_| {});
    let addr = addr(&server);

    let mut malformed = Http::connect(addr);
    malformed.send(b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n");
    let response = malformed.response();
    assert_eq!(
        (response.status, response.error()),
        (400, "BAD_REQUEST".into())
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert!(malformed.closes_silently());

    let mut no_host = Http::connect(addr);
    no_host.send(b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(no_host.response().status, 400);

    let mut long = Http::connect(addr);
    long.send(
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
            "a".repeat(9000)
        )
        .as_bytes(),
    );
    let response = long.response();
    assert_eq!(
        (response.status, response.error()),
        (431, "HEADERS_TOO_LARGE".into())
    );

    let mut big = Http::connect(addr);
    big.send(b"POST /v1/lots/A/reservations HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n");
    let response = big.response();
    assert_eq!(
        (response.status, response.error()),
        (413, "BODY_TOO_LARGE".into())
    );

    let mut http = Http::connect(addr);
    let unknown = http.get("/v2/lots");
    assert_eq!(
        (unknown.status, unknown.error()),
        (404, "UNKNOWN_ROUTE".into())
    );
    let wrong = http.request("PUT", "/v1/lots/A", Some("{}"));
    assert_eq!(
        (wrong.status, wrong.error()),
        (405, "METHOD_NOT_ALLOWED".into())
    );
    assert_eq!(wrong.header("allow"), Some("GET, HEAD, OPTIONS"));
    let wrong = http.get("/v1/lots/A/reservations");
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("POST, OPTIONS"))
    );
    // Errors keep the connection: it still answers.
    assert_eq!(http.get("/healthz").status, 200);
    // The server kept serving everyone.
    assert_eq!(Http::connect(addr).get("/v1/lots/A").status, 200);
}

#[test]
fn keep_alive_pipelining_head_and_connection_close() {
    let server = start_with(|_| {});
    let mut http = http(&server);
    let mut pipelined = String::new();
    for path in ["/v1/lots/A", "/v1/lots/B", "/healthz"] {
        pipelined.push_str(&request("GET", path, None, &[]));
    }
    http.send(pipelined.as_bytes());
    assert_eq!(http.response().json()["id"], "A");
    assert_eq!(http.response().json()["id"], "B");
    assert_eq!(http.response().json()["status"], "ok");

    http.send(request("HEAD", "/v1/lots/A", None, &[]).as_bytes());
    let head = http.head_response();
    assert_eq!(head.status, 200);
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, http.get("/v1/lots/A").body.len());

    http.send(request("GET", "/healthz", None, &["Connection: close"]).as_bytes());
    let last = http.response();
    assert_eq!(
        (last.status, last.header("connection")),
        (200, Some("close"))
    );
    assert!(http.closes_silently());

    let mut old = Http::connect(addr(&server));
    old.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(old.response().status, 200);
    assert!(old.closes_silently());
}

#[test]
fn idle_and_slow_connections_are_closed_by_the_other_ports_timeouts() {
    let server = start_with(|config| {
        config.idle_timeout = Duration::from_millis(300);
        config.frame_timeout = Duration::from_millis(300);
    });
    let mut idle = http(&server);
    assert_eq!(idle.get("/healthz").status, 200);
    assert!(idle.closes_silently());
    let mut slow = http(&server);
    slow.send(b"GET /healthz HTTP/1.1\r\nHo");
    assert!(slow.closes_silently());
}

#[test]
fn past_max_connections_the_port_answers_503_busy() {
    let server = start_with(|config| config.max_connections = 2);
    let mut first = http(&server);
    let mut second = http(&server);
    assert_eq!(first.get("/healthz").status, 200);
    assert_eq!(second.get("/healthz").status, 200);
    let mut third = http(&server);
    let busy = third.response();
    assert_eq!((busy.status, busy.error()), (503, "BUSY".into()));
    assert!(busy.header("retry-after").is_some());
    drop(first);
    common::eventually("a place to free up", || {
        Http::connect(addr(&server)).get("/healthz").status == 200
    });
}

#[test]
fn cors_headers_only_for_configured_origins() {
    let closed = start_with(|_| {});
    let mut http = Http::connect(addr(&closed));
    http.send(
        request(
            "GET",
            "/v1/lots",
            None,
            &["Origin: https://ops.example.com"],
        )
        .as_bytes(),
    );
    assert_eq!(http.response().header("access-control-allow-origin"), None);

    let open = start_with(|config| {
        config.http_cors_origins = vec!["https://ops.example.com".into()];
    });
    let mut http = Http::connect(addr(&open));
    http.send(
        request(
            "GET",
            "/v1/lots",
            None,
            &["Origin: https://ops.example.com"],
        )
        .as_bytes(),
    );
    let allowed = http.response();
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://ops.example.com")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    http.send(request("GET", "/v1/lots", None, &["Origin: https://evil.example"]).as_bytes());
    assert_eq!(http.response().header("access-control-allow-origin"), None);
    http.send(
        request(
            "OPTIONS",
            "/v1/lots/A/reservations",
            None,
            &[
                "Origin: https://ops.example.com",
                "Access-Control-Request-Method: POST",
            ],
        )
        .as_bytes(),
    );
    let preflight = http.response();
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("Content-Type")
    );
}

#[test]
fn metrics_count_requests_lots_connections_and_the_process() {
    let server = start_with(|_| {});
    let mut http = http(&server);
    assert_eq!(http.get("/v1/lots/A").status, 200);
    assert_eq!(http.get("/v1/lots/Z").status, 404);
    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    assert!(rpc.reserve("B", "M1").unwrap());
    let mut sensor =
        client::SensorClient::connect(server.sensor_addr(), Duration::from_secs(5)).unwrap();
    sensor.update("C", CountChange::Add(3)).unwrap();
    let metrics = http.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    for line in [
        r#"parking_requests_total{method="getLot",outcome="ok",port="http"} 1"#,
        r#"parking_requests_total{method="getLot",outcome="invalid",port="http"} 1"#,
        r#"parking_requests_total{method="reserve",outcome="ok",port="rpc"} 1"#,
        r#"parking_requests_total{method="UPDATE",outcome="ok",port="sensor"} 1"#,
        r#"parking_sensor_lines_total{lot="C"} 1"#,
        r#"parking_lot_free_spaces{lot="B"} 49"#,
        r#"parking_lot_reserved_spaces{lot="B"} 1"#,
        r#"parking_lot_occupied_spaces{lot="C"} 3"#,
        r#"parking_connections_open{port="http"} 1"#,
        r#"parking_connections_open{port="rpc"} 1"#,
        r#"parking_subscribers{kind="event_stream"} 0"#,
        "# TYPE parking_request_duration_seconds histogram",
        r#"parking_request_duration_seconds_count{method="getLot",port="http"} 2"#,
        "parking_events_dropped_total 0",
        "parking_slow_subscriber_disconnects_total 0",
        "process_resident_memory_bytes ",
        "process_threads ",
        "process_open_fds ",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// Each RPC request and sensor line is counted under how it ended: `refused` (the plate
/// already holds a reservation, nothing to cancel), `invalid` (an unknown lot; an
/// undecodable request, under the method `invalid`), `unavailable` (the store could not make
/// the change durable).
#[test]
fn metrics_count_every_outcome_on_the_rpc_and_sensor_ports() {
    let (server, store) = start_flaky();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let mut sensor = RawLines::connect(server.sensor_addr());
    assert_eq!(rpc.text("RESERVE B M1"), "OK");
    assert_eq!(rpc.text("RESERVE B M1"), "EXISTS");
    assert_eq!(rpc.text("CANCEL B NOBODY"), "NOT_FOUND");
    assert!(rpc.text("RESERVE Z M2").starts_with("ERR UNKNOWN_LOT "));
    assert!(
        rpc.text("RESERVE B bad_plate")
            .starts_with("ERR BAD_PLATE ")
    );
    assert!(rpc.text("NO-SUCH-METHOD").starts_with("ERR "));
    assert!(sensor.call("UPDATE C +1").starts_with("OK "));
    assert!(sensor.call("UPDATE Z +1").starts_with("ERR UNKNOWN_LOT "));
    assert!(sensor.call("UPDATE Y -1").starts_with("ERR UNKNOWN_LOT "));
    store.down.store(true, Ordering::Relaxed);
    assert!(rpc.text("RESERVE B M3").starts_with("ERR UNAVAILABLE "));
    assert!(sensor.call("UPDATE C +1").starts_with("ERR UNAVAILABLE "));
    let text = http(&server).get("/metrics").text();
    let count = |port: &str, method: &str, outcome: &str| {
        let series = format!(
            r#"parking_requests_total{{method="{method}",outcome="{outcome}",port="{port}"}} "#
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
            .to_owned()
    };
    for (port, method, counts) in [
        ("rpc", "reserve", ["1", "1", "2", "1"]),
        ("rpc", "cancel", ["0", "1", "0", "0"]),
        ("rpc", "invalid", ["0", "0", "1", "0"]),
        ("sensor", "UPDATE", ["1", "0", "2", "1"]),
    ] {
        let got =
            ["ok", "refused", "invalid", "unavailable"].map(|outcome| count(port, method, outcome));
        assert_eq!(
            got, counts,
            "{port} {method}: ok, refused, invalid, unavailable"
        );
    }
}

#[test]
fn the_dashboard_and_the_openapi_document_are_served_from_the_binary() {
    let server = start_with(|_| {});
    let mut http = http(&server);
    let page = http.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("EventSource"));
    // Offline machines: nothing is fetched from elsewhere.
    assert!(
        !page.text().contains("://"),
        "the dashboard links outside itself"
    );
    let openapi = http.get("/openapi.yaml");
    assert_eq!(openapi.status, 200);
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.yaml"
    ))
    .unwrap();
    assert_eq!(openapi.text(), file);
}

#[test]
fn the_port_can_be_turned_off() {
    let server = start_with(|config| config.http_port = None);
    assert_eq!(server.http_addr(), None);
    assert_eq!(server.open_connections().http, 0);
}

#[test]
fn readiness_says_shutting_down_once_shutdown_has_begun() {
    let server = start_with(|_| {});
    let mut http = http(&server);
    assert_eq!(http.get("/readyz").status, 200);

    // Shutdown begins as a signal handler begins it: the handle is triggered. Until
    // `RunningServer::wait` (or `shutdown`) stops the ports, they keep serving: that is the
    // drain phase in which a load balancer's probe must read "not ready", held open here for
    // as long as the test needs it.
    server.shutdown_handle().trigger();
    let draining = http.get("/readyz");
    assert_eq!(
        (draining.status, draining.error()),
        (503, "SHUTTING_DOWN".into())
    );
    assert_eq!(draining.header("retry-after"), Some("1"));
    // Still alive, and still answering on the same keep-alive connection.
    assert_eq!(http.get("/healthz").status, 200);
    assert_eq!(http.get("/readyz").status, 503);

    // The drain ends: the server stops and closes the connection.
    server.wait();
    assert!(http.is_closed());
}
