//! TLS on every port, with a certificate made at run time: the clients speak through it
//! (authenticated, too), a plain-text client on a TLS port is refused promptly instead of
//! hanging, and `tls_ports` leaves the other ports plain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use auth::Role;
use client::{Access, Endpoints, ParkingClient, SensorClient, Subscription, TlsClient, Update};
use framing::pubsub::Topic;
use framing::sensor::CountChange;
use server::{PortName, RunningServer};
use testkit::TestCert;
use testkit::http::{Http, request};

const TIMEOUT: Duration = Duration::from_secs(5);

fn start_tls(cert: &TestCert, tweak: impl FnOnce(&mut server::Config)) -> RunningServer {
    common::start_with(|config| {
        config.thread_pool_size = 2;
        config.sensor_pool_size = 1;
        config.notifier_threads = 1;
        config.tls = Some(cert.config());
        tweak(config);
    })
}

/// `host` on `addr`'s port: the name a TLS client checks the certificate against.
fn at(host: &str, addr: SocketAddr) -> Endpoints {
    Endpoints::parse(&format!("{host}:{}", addr.port()), 0).unwrap()
}

fn tls(cert: &TestCert) -> Access {
    Access::none().with_tls(TlsClient::from_ca_pem(cert.pem.as_bytes()).unwrap())
}

#[test]
fn every_port_speaks_tls() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |_| {});
    let access = tls(&cert);
    let mut rpc =
        ParkingClient::connect_with(&at("localhost", server.rpc_addr()), TIMEOUT, &access).unwrap();
    rpc.ping().unwrap();
    assert_eq!(rpc.get_lots().unwrap().len(), 3);
    // Pipelined requests cross TLS records in both directions.
    for _ in 0..50 {
        rpc.queue(&framing::rpc::Request::GetAvailability { lot: "A".into() })
            .unwrap();
    }
    rpc.flush().unwrap();
    for _ in 0..50 {
        rpc.recv().unwrap();
    }
    let mut subscription = Subscription::connect_with(
        &at("127.0.0.1", server.pubsub_addr()),
        &[Topic::Lot("A")],
        TIMEOUT,
        &access,
    )
    .unwrap();
    assert!(matches!(
        subscription.next_update_timeout(TIMEOUT).unwrap(),
        Some(Update::Snapshot(_))
    ));
    let mut sensor =
        SensorClient::connect_with(&at("localhost", server.sensor_addr()), TIMEOUT, &access)
            .unwrap();
    sensor.ping().unwrap();
    assert_eq!(sensor.update("A", CountChange::Set(10)).unwrap(), 90);
    let event = subscription.next_event_timeout(TIMEOUT).unwrap().unwrap();
    assert_eq!(event.free, 90);
}

#[test]
fn tls_and_keys_together() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |config| {
        config.auth = testkit::keys(&[("ops", Role::Operator)]);
    });
    let access = tls(&cert).with_token("token-ops");
    let mut rpc =
        ParkingClient::connect_with(&at("localhost", server.rpc_addr()), TIMEOUT, &access).unwrap();
    assert!(rpc.reserve("A", "TLS1").unwrap());
    let mut sensor =
        SensorClient::connect_with(&at("localhost", server.sensor_addr()), TIMEOUT, &access)
            .unwrap();
    sensor.update("B", CountChange::Add(1)).unwrap();
    Subscription::connect_with(
        &at("localhost", server.pubsub_addr()),
        &[Topic::All],
        TIMEOUT,
        &access,
    )
    .unwrap();
    let wrong = tls(&cert).with_token("nope");
    match ParkingClient::connect_with(&at("localhost", server.rpc_addr()), TIMEOUT, &wrong) {
        Err(client::ClientError::Server(err)) => {
            assert_eq!(err.code, framing::rpc::ErrorCode::Unauthorized);
        }
        other => panic!("expected UNAUTHORIZED, got {other:?}"),
    }
}

/// A plain-text client on a TLS port gets a close (EOF or reset, not a read timeout), long
/// before any of the server's timeouts could have closed it.
#[test]
fn plain_text_on_a_tls_port_is_refused_at_once() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |config| {
        config.idle_timeout = Duration::from_secs(60);
        config.frame_timeout = Duration::from_secs(60);
    });
    for (addr, hello) in [
        (server.rpc_addr(), &b"\0\0\0\x04PING"[..]),
        (server.sensor_addr(), b"PING\n"),
        (server.pubsub_addr(), b"SUBSCRIBE A\n"),
    ] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(testkit::DEADLINE)).unwrap();
        stream.write_all(hello).unwrap();
        let mut byte = [0; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{addr}: expected a close, got {other:?}"),
        }
    }
    // The plain client library says what happened rather than hanging.
    let plain = ParkingClient::connect_with_timeout(server.rpc_addr(), TIMEOUT)
        .unwrap()
        .ping();
    assert!(
        matches!(plain, Err(client::ClientError::Closed)),
        "{plain:?}"
    );
    // And the server still serves TLS clients.
    let mut rpc =
        ParkingClient::connect_with(&at("localhost", server.rpc_addr()), TIMEOUT, &tls(&cert))
            .unwrap();
    rpc.ping().unwrap();
}

#[test]
fn a_tls_client_refuses_a_certificate_it_does_not_trust_and_a_plain_port() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let server = start_tls(&cert, |config| config.tls_ports = Some(vec![PortName::Rpc]));
    let untrusted = tls(&other);
    let err = ParkingClient::connect_with(&at("localhost", server.rpc_addr()), TIMEOUT, &untrusted)
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    // tls_ports: only RPC speaks TLS; the sensor port stays plain.
    let mut sensor = SensorClient::connect_with(
        &at("localhost", server.sensor_addr()),
        TIMEOUT,
        &Access::none(),
    )
    .unwrap();
    sensor.ping().unwrap();
    let err =
        SensorClient::connect_with(&at("localhost", server.sensor_addr()), TIMEOUT, &tls(&cert))
            .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[test]
fn a_tls_connection_that_never_handshakes_is_closed_by_the_idle_timeout() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |config| {
        config.idle_timeout = Duration::from_millis(300)
    });
    let mut silent = std::net::TcpStream::connect(server.rpc_addr()).unwrap();
    silent.set_read_timeout(Some(testkit::DEADLINE)).unwrap();
    let mut byte = [0; 1];
    assert!(matches!(silent.read(&mut byte), Ok(0)));
}

/// With several nodes, a TLS client checks each one's certificate against the name that node
/// was given by, and fails over from one that is down to the next.
#[test]
fn a_tls_client_fails_over_between_nodes() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |_| {});
    // Held, not dropped: a freed port may be handed to another test's server meanwhile.
    let (_held, dead) = testkit::refused_port();
    let dead_port = dead.port();
    let nodes = Endpoints::parse(
        &format!(
            "127.0.0.1:{dead_port},localhost:{}",
            server.rpc_addr().port()
        ),
        0,
    )
    .unwrap();
    let mut rpc = ParkingClient::connect_with(&nodes, TIMEOUT, &tls(&cert)).unwrap();
    rpc.ping().unwrap();
    assert_eq!(rpc.peer_addr(), server.rpc_addr());
}

#[test]
fn the_http_port_speaks_tls_with_keep_alive_and_tls_event_streams() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |_| {});
    let addr = server.http_addr().unwrap();
    let mut https = Http::connect_tls(addr, &cert);
    // Keep-alive: every request on the one TLS session, pipelined ones too.
    for _ in 0..3 {
        assert_eq!(https.get("/v1/lots/A").json()["free"], 100);
    }
    https.send(request("GET", "/healthz", None, &[]).repeat(20).as_bytes());
    for _ in 0..20 {
        assert_eq!(https.response().status, 200);
    }

    // An event stream over TLS is handed to the broker, its session with it.
    let mut events = Http::connect_tls(addr, &cert);
    events.send(request("GET", "/v1/events?lot=A", None, &[]).as_bytes());
    assert_eq!(events.stream_head().status, 200);
    assert_eq!(events.event().json()["free"], 100);
    testkit::eventually("the stream to be the broker's", || {
        server.broker().stats().streams == 1
    });
    let reserved = https.request(
        "POST",
        "/v1/lots/A/reservations",
        Some(r#"{"plate":"TLS1"}"#),
    );
    assert_eq!(reserved.status, 201);
    assert_eq!(events.event().json()["free"], 99);
    // The session goes on after the hand-over: the keep-alive comment and more events.
    let mut sensor =
        SensorClient::connect_with(&at("localhost", server.sensor_addr()), TIMEOUT, &tls(&cert))
            .unwrap();
    sensor.update("A", CountChange::Set(10)).unwrap();
    assert_eq!(events.event().json()["free"], 89);

    // Plain text on the TLS HTTP port is refused at once, not left hanging.
    let mut plain = Http::connect(addr);
    plain.send(request("GET", "/healthz", None, &[]).as_bytes());
    assert!(plain.closes_silently());
}

#[test]
fn a_tls_event_stream_that_stops_reading_is_disconnected_like_a_slow_subscriber() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |config| {
        config.subscriber_queue_size = 4;
        config.subscriber_send_buffer = 4096;
    });
    let addr = server.http_addr().unwrap();
    // A small receive buffer, so that the socket fills after a few events.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut slow = Http::over_tls(socket.into(), &cert);
    slow.send(request("GET", "/v1/events?lot=A", None, &[]).as_bytes());
    assert_eq!(slow.stream_head().status, 200);
    let mut fast = Http::connect_tls(addr, &cert);
    fast.send(request("GET", "/v1/events?lot=A", None, &[]).as_bytes());
    assert_eq!(fast.stream_head().status, 200);
    fast.event();
    testkit::eventually("both streams to be the broker's", || {
        server.broker().stats().streams == 2
    });
    let mut sensor =
        SensorClient::connect_with(&at("localhost", server.sensor_addr()), TIMEOUT, &tls(&cert))
            .unwrap();
    // The slow one reads nothing more; the changes fill its socket, then its queue. The fast
    // one reads each change before the next is made, so that its own queue of 4 never fills
    // (on a loaded machine a burst of changes outran its notifier and cut it off as well, and
    // the count never read exactly 1).
    let mut n = 0;
    testkit::eventually("the slow TLS stream to be disconnected", || {
        for _ in 0..50 {
            n += 1;
            sensor.update("A", CountChange::Set(n % 100)).unwrap();
            let free = u64::from(100 - n % 100);
            while fast.event().json()["free"] != free {}
        }
        server.broker().stats().slow_disconnects == 1
    });
    // The fast one is still served after the slow one is gone.
    n += 1;
    sensor.update("A", CountChange::Set(n % 100)).unwrap();
    let last = u64::from(100 - n % 100);
    while fast.event().json()["free"] != last {}
}

#[test]
fn the_session_cookie_is_secure_on_a_tls_http_port() {
    let cert = TestCert::new();
    let server = start_tls(&cert, |config| {
        config.auth = testkit::keys(&[("signs", Role::Viewer)]);
    });
    let mut https = Http::connect_tls(server.http_addr().unwrap(), &cert);
    let signed_in = https.request("POST", "/v1/session", Some(r#"{"token":"token-signs"}"#));
    assert_eq!(signed_in.status, 200);
    let set_cookie = signed_in.header("set-cookie").unwrap();
    assert!(
        set_cookie
            .split("; ")
            .any(|attribute| attribute == "Secure"),
        "{set_cookie}"
    );
}
