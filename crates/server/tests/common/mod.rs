//! Shared helpers for the server's integration tests: a server on ephemeral ports and raw
//! socket conversations with it.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use framing::frame;
use serde_json::Value;
use server::{Config, RunningServer, Server};
use shutdown::ShutdownHandle;
use state::{Clock, ManualClock};

pub use testkit::{DEADLINE, eventually};

/// The production configuration on ephemeral ports, except that `frame_timeout` is
/// [`OTHER_TIMEOUT`] (default 10 s, idle 300 s): every close a test waits for within
/// [`DEADLINE`] is then the one it provokes, never a timeout standing in for it (a server
/// that did not close after an error reply would otherwise pass at the frame timeout).
fn test_config() -> Config {
    Config {
        frame_timeout: OTHER_TIMEOUT,
        ..Config::ephemeral()
    }
}

/// Starts a server with the production pool sizes on ephemeral ports, after letting `tweak`
/// adjust the configuration.
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = test_config();
    tweak(&mut config);
    testkit::start(config)
}

/// [`start_with`], with reservations timed by `clock` (a `ManualClock`, typically).
pub fn start_with_clock(clock: Arc<dyn Clock>, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = test_config();
    tweak(&mut config);
    Server::new(config)
        .with_clock(clock)
        .start(ShutdownHandle::new())
        .expect("server starts")
}

/// Starts a server with the default lots (A=100, B=50, C=200) on ephemeral ports.
pub fn start() -> RunningServer {
    start_with(|_| {})
}

/// Starts a server on a manual clock (the test moves time), after `tweak`; small pools.
pub fn start_on_clock(clock: Arc<ManualClock>, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = testkit::small_config();
    tweak(&mut config);
    Server::new(config)
        .with_clock(clock)
        .start(ShutdownHandle::new())
        .expect("the test server starts")
}

/// The clock's wall time in whole Unix seconds.
pub fn unix_now(clock: &ManualClock) -> u64 {
    clock.wall().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A raw RPC connection: frames in and out, payloads as the test writes them.
pub struct RawRpc {
    pub stream: TcpStream,
}

impl RawRpc {
    pub fn connect(addr: SocketAddr) -> RawRpc {
        RawRpc::over(TcpStream::connect(addr).unwrap())
    }

    /// Connects from the local address `from` (another client machine, to the server).
    pub fn connect_from(from: IpAddr, addr: SocketAddr) -> RawRpc {
        RawRpc::over(testkit::connect_from(from, addr))
    }

    fn over(stream: TcpStream) -> RawRpc {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawRpc { stream }
    }

    pub fn send(&mut self, payload: &[u8]) {
        let mut out = Vec::new();
        frame::encode(&mut out, payload).unwrap();
        // A refused connection may already be reset; the reply (or its absence) tells.
        let _ = self.stream.write_all(&out);
    }

    pub fn recv(&mut self) -> Vec<u8> {
        let mut payload = Vec::new();
        assert!(
            frame::read_frame(&mut self.stream, &mut payload).unwrap(),
            "server closed the connection"
        );
        payload
    }

    pub fn json(&mut self, request: &str) -> Value {
        self.send(request.as_bytes());
        serde_json::from_slice(&self.recv()).unwrap()
    }

    pub fn text(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        String::from_utf8(self.recv()).unwrap()
    }

    /// Like [`RawRpc::text`], but `None` where the server refused or closed the connection.
    pub fn try_text(&mut self, request: &str) -> Option<String> {
        self.send(request.as_bytes());
        let mut payload = Vec::new();
        match frame::read_frame(&mut self.stream, &mut payload) {
            Ok(true) => String::from_utf8(payload).ok(),
            Ok(false) | Err(_) => None,
        }
    }

    /// See [`expect_closed`].
    pub fn expect_closed(&self, within: Duration) -> Duration {
        expect_closed(&self.stream, within)
    }

    /// See [`expect_closed_with_nothing_more`].
    pub fn expect_closed_with_nothing_more(&self, within: Duration) -> Duration {
        expect_closed_with_nothing_more(&self.stream, within)
    }
}

/// The JSON reply's error code, e.g. `BAD_REQUEST`.
pub fn error_code(reply: &Value) -> String {
    let error = reply["error"].as_str().expect("an error reply");
    error.split(':').next().unwrap().to_owned()
}

/// A raw line-protocol connection (sensor and pub/sub ports).
pub struct RawLines {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl RawLines {
    pub fn connect(addr: SocketAddr) -> RawLines {
        RawLines::over(TcpStream::connect(addr).unwrap())
    }

    /// Connects from the local address `from` (another client machine, to the server).
    pub fn connect_from(from: IpAddr, addr: SocketAddr) -> RawLines {
        RawLines::over(testkit::connect_from(from, addr))
    }

    fn over(stream: TcpStream) -> RawLines {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        RawLines {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).unwrap();
        assert!(read > 0, "server closed the connection");
        line.trim_end_matches('\n').to_owned()
    }

    pub fn call(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.line()
    }

    /// See [`expect_closed`]; lines already buffered are discarded too.
    pub fn expect_closed(&self, within: Duration) -> Duration {
        expect_closed(self.reader.get_ref(), within)
    }

    /// See [`expect_closed_with_nothing_more`]; nothing may be buffered either.
    pub fn expect_closed_with_nothing_more(&self, within: Duration) -> Duration {
        let buffered = self.reader.buffer();
        assert!(
            buffered.is_empty(),
            "the server sent {} more bytes after the last reply: {:?}...",
            buffered.len(),
            String::from_utf8_lossy(&buffered[..buffered.len().min(64)])
        );
        expect_closed_with_nothing_more(self.reader.get_ref(), within)
    }
}

/// A pub/sub connection that has subscribed to `topic` and read the snapshots that follow.
pub fn subscribe(server: &RunningServer, topic: &str) -> RawLines {
    let mut subscriber = RawLines::connect(server.pubsub_addr());
    let reply = subscriber.call(&format!("SUBSCRIBE {topic}"));
    assert!(reply.starts_with("OK "), "{reply}");
    expect_snapshots(server, &mut subscriber, topic);
    subscriber
}

/// Reads the snapshot of every lot `topic` covers (they come right after the `OK`, before any
/// event) and checks they are the current values.
pub fn expect_snapshots(server: &RunningServer, subscriber: &mut RawLines, topic: &str) {
    let lots = server.state().lots();
    let covered: Vec<_> = lots
        .iter()
        .filter(|lot| topic.eq_ignore_ascii_case("ALL") || lot.id.as_str() == topic)
        .collect();
    let mut seen = Vec::new();
    for _ in &covered {
        let line: Value = serde_json::from_str(&subscriber.line()).unwrap();
        assert_eq!(line["type"], "SNAPSHOT", "{line}");
        assert!(line["timestamp"].as_f64().unwrap() > 1.7e9);
        seen.push((
            line["lotId"].as_str().unwrap().to_owned(),
            line["free"].as_u64().unwrap(),
        ));
    }
    seen.sort();
    let mut expected: Vec<(String, u64)> = covered
        .iter()
        .map(|lot| (lot.id.to_string(), u64::from(lot.free)))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
}

/// The next line, which must be an event: its lot and free count.
pub fn next_event(subscriber: &mut RawLines) -> (String, u64) {
    let event: Value = serde_json::from_str(&subscriber.line()).unwrap();
    assert_eq!(event["type"], "EVENT");
    assert!(event["timestamp"].as_f64().unwrap() > 1.7e9);
    (
        event["lotId"].as_str().unwrap().to_owned(),
        event["free"].as_u64().unwrap(),
    )
}

/// Makes a change to lot A (a reservation of a fresh plate) and checks that `subscriber`
/// hears it: it is still connected and served.
pub fn check_still_served(server: &RunningServer, subscriber: &mut RawLines) {
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("RESERVE A STILL-SERVED"), "OK");
    assert_eq!(next_event(subscriber), ("A".into(), 99));
}

/// Whether a socket error means the peer closed the connection (a reset, typically because it
/// closed with our bytes still unread).
fn is_closed_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Waits for the server to close `stream` and returns how long that took. Only an end of
/// stream or a reset counts; bytes that arrive meanwhile are discarded. Fails if the
/// connection is still open after `within`: a read that times out is not a close, so a server
/// that never closes fails here instead of passing.
pub fn expect_closed(stream: &TcpStream, within: Duration) -> Duration {
    await_close(stream, within, |_| {})
}

/// Like [`expect_closed`], but the server must send nothing more before it closes: after a
/// fatal error its error reply is the last thing on the connection.
pub fn expect_closed_with_nothing_more(stream: &TcpStream, within: Duration) -> Duration {
    await_close(stream, within, |more| {
        panic!(
            "the server sent {} more bytes after the last reply: {:?}...",
            more.len(),
            String::from_utf8_lossy(&more[..more.len().min(64)])
        )
    })
}

fn await_close(stream: &TcpStream, within: Duration, on_data: impl Fn(&[u8])) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the connection is still open after {within:?}"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match (&mut &*stream).read(&mut sink) {
            Ok(0) => return started.elapsed(),
            Ok(n) => on_data(&sink[..n]),
            Err(err) if is_timeout(&err) => {
                panic!("the connection is still open after {within:?}")
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if is_closed_error(&err) => return started.elapsed(),
            Err(err) => panic!("reading from the server failed: {err}"),
        }
    }
}

/// A connection whose receive buffer and segment size are set small before connecting, so
/// that a peer that stops reading fills it, and then the server's send buffer, after tens of
/// kilobytes. (The kernel sizes a send buffer by segments: at loopback's 64 KiB segments the
/// server's grows to megabytes, which a loaded machine is slow to fill.)
pub fn connect_small_buffer(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_tcp_mss(536).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// Sends `bytes` one at a time, one every `every`, never completing a request, and returns
/// how long after the first byte the server closed the connection (end of stream or reset).
/// Fails if the server answers, if it is still open after `within`, or if `bytes` run out
/// first. The peer is never silent for long, so only a rule about unfinished requests can
/// close it.
pub fn trickle_until_closed(
    stream: &TcpStream,
    bytes: &[u8],
    every: Duration,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(every)).unwrap();
    let mut reply = [0u8; 256];
    for byte in bytes {
        assert!(
            started.elapsed() < within,
            "the connection is still open after {within:?} of trickling"
        );
        match (&mut &*stream).write_all(std::slice::from_ref(byte)) {
            Ok(()) => {}
            Err(err) if is_closed_error(&err) => return started.elapsed(),
            Err(err) => panic!("writing to the server failed: {err}"),
        }
        match (&mut &*stream).read(&mut reply) {
            Ok(0) => return started.elapsed(),
            Ok(n) => panic!(
                "the server answered an unfinished request: {:?}",
                String::from_utf8_lossy(&reply[..n])
            ),
            Err(err) if is_timeout(&err) => {}
            Err(err) if is_closed_error(&err) => return started.elapsed(),
            Err(err) => panic!("reading from the server failed: {err}"),
        }
    }
    panic!(
        "sent all {} bytes and the connection is still open",
        bytes.len()
    );
}

/// Writes `batch` (pipelined requests) again and again without reading a reply, until a
/// write has waited 50 ms without going through: the server has stopped reading this
/// connection because it cannot write the replies. Fails after `within`.
pub fn flood_until_blocked(stream: &TcpStream, batch: &[u8], within: Duration) {
    let started = Instant::now();
    stream
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    loop {
        assert!(
            started.elapsed() < within,
            "the server kept reading for {within:?} although nothing was read back"
        );
        match (&mut &*stream).write(batch) {
            Ok(_) => {}
            Err(err) if is_timeout(&err) => return,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!("the connection failed before it stalled: {err}"),
        }
    }
}

/// Whether the server still has the connection open, asked without reading: a write either
/// goes through or waits (open), or fails (closed or reset).
pub fn still_open(stream: &TcpStream) -> bool {
    stream
        .set_write_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    match (&mut &*stream).write(b"\0") {
        Ok(written) => written > 0,
        Err(err) => is_timeout(&err) || err.kind() == ErrorKind::Interrupted,
    }
}

/// The server's ports, for the rules they share: timeouts on all three; stalled peers and
/// requests ([`Port::flood`], [`Port::ping`]) on the two served by the connection scheduler.
#[derive(Debug, Clone, Copy)]
pub enum Port {
    Rpc,
    Sensor,
    Pubsub,
}

/// Far longer than the timeout under test in the timeout tests, so that only the rule under
/// test can close the connection within [`CLOSE_BOUND`].
pub const OTHER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a timeout test waits for the close it expects (the timeouts are 0.3 to 1 s):
/// only reached when the test fails, so as long as [`DEADLINE`], for a loaded machine.
pub const CLOSE_BOUND: Duration = DEADLINE;

impl Port {
    pub fn addr(self, server: &RunningServer) -> SocketAddr {
        match self {
            Port::Rpc => server.rpc_addr(),
            Port::Sensor => server.sensor_addr(),
            Port::Pubsub => server.pubsub_addr(),
        }
    }

    /// Pipelined requests whose replies are many times their size (`LOTS`, or empty sensor
    /// lines answered with an error), so that a peer that does not read them fills the
    /// server's socket buffers (which the kernel grows to megabytes) quickly.
    pub fn flood(self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Port::Rpc => {
                for _ in 0..256 {
                    frame::encode(&mut out, b"LOTS").unwrap();
                }
            }
            Port::Sensor => out.resize(4096, b'\n'),
            Port::Pubsub => panic!("the pub/sub port answers no requests"),
        }
        out
    }

    /// Over 100 bytes of a request that is never finished (and never over the size limit).
    pub fn unfinished_request(self) -> Vec<u8> {
        match self {
            Port::Rpc => {
                let mut bytes = vec![0, 0, 1, 0];
                bytes.resize(4 + 200, b' ');
                bytes
            }
            Port::Sensor => {
                let mut bytes = b"UPDATE A ".to_vec();
                bytes.resize(200, b'1');
                bytes
            }
            Port::Pubsub => {
                let mut bytes = b"SUBSCRIBE ".to_vec();
                bytes.resize(200, b'A');
                bytes
            }
        }
    }

    /// Sends one PING on `stream` and checks the PONG.
    pub fn ping(self, stream: &TcpStream) {
        match self {
            Port::Rpc => {
                let mut rpc = RawRpc {
                    stream: stream.try_clone().unwrap(),
                };
                rpc.stream.set_read_timeout(Some(DEADLINE)).unwrap();
                assert_eq!(rpc.text("PING"), "PONG");
            }
            Port::Sensor => {
                let mut lines = RawLines {
                    writer: stream.try_clone().unwrap(),
                    reader: BufReader::new(stream.try_clone().unwrap()),
                };
                lines
                    .reader
                    .get_ref()
                    .set_read_timeout(Some(DEADLINE))
                    .unwrap();
                assert_eq!(lines.call("PING"), "PONG");
            }
            Port::Pubsub => panic!("the pub/sub port answers no requests"),
        }
    }
}

/// `idle_timeout`: a connection that sends nothing is closed, not before the timeout; one that
/// keeps sending requests is not, for twice the timeout. The timeout is a second and the
/// requests come back to back, so that only a 1 s stall of the test thread could close the
/// active one (with 300 ms and a 100 ms pause per request, a loaded machine failed it).
pub fn check_idle_timeout(port: Port) {
    let idle_timeout = Duration::from_secs(1);
    let server = start_with(|config| {
        config.idle_timeout = idle_timeout;
        config.frame_timeout = OTHER_TIMEOUT;
    });
    // The server's idle clock starts when it accepts, which on a loaded machine can come
    // before `connect` returns here (the kernel finishes the handshake first): measured from
    // before the connect, the close can never look early.
    let connecting = Instant::now();
    let idle = TcpStream::connect(port.addr(&server)).unwrap();
    expect_closed(&idle, CLOSE_BOUND);
    let waited = connecting.elapsed();
    assert!(waited >= idle_timeout, "closed after {waited:?}");
    let active = TcpStream::connect(port.addr(&server)).unwrap();
    let began = Instant::now();
    while began.elapsed() < 2 * idle_timeout {
        port.ping(&active);
    }
}

/// `frame_timeout`: a request whose bytes trickle in (so the connection is never idle) is
/// closed once it has been incomplete for the timeout.
pub fn check_frame_timeout(port: Port) {
    let server = start_with(|config| {
        config.idle_timeout = OTHER_TIMEOUT;
        config.frame_timeout = Duration::from_millis(300);
    });
    let stream = TcpStream::connect(port.addr(&server)).unwrap();
    let waited = trickle_until_closed(
        &stream,
        &port.unfinished_request(),
        Duration::from_millis(100),
        CLOSE_BOUND,
    );
    assert!(
        waited >= Duration::from_millis(300),
        "closed after {waited:?}"
    );
}

/// A peer that stops reading its replies is closed after `frame_timeout`, and meanwhile does
/// not hold the port's only worker: another connection is answered while the stalled one is
/// still open. (A worker that stayed with the stalled connection would answer nothing until
/// the close; no time bound is asserted, so a loaded machine cannot fail the test.)
pub fn check_write_stall(port: Port) {
    let frame_timeout = Duration::from_secs(2);
    let server = start_with(|config| {
        config.thread_pool_size = 1;
        config.sensor_pool_size = 1;
        config.idle_timeout = OTHER_TIMEOUT;
        config.frame_timeout = frame_timeout;
    });
    let stalled = connect_small_buffer(port.addr(&server));
    let flooding = Instant::now();
    flood_until_blocked(&stalled, &port.flood(), DEADLINE);
    let other = TcpStream::connect(port.addr(&server)).unwrap();
    let mut answered_while_stalled = 0;
    while still_open(&stalled) {
        assert!(
            flooding.elapsed() < DEADLINE,
            "the server did not close the stalled connection within {DEADLINE:?}"
        );
        port.ping(&other);
        if still_open(&stalled) {
            answered_while_stalled += 1;
        }
    }
    assert!(flooding.elapsed() >= frame_timeout);
    assert!(
        answered_while_stalled >= 2,
        "the other connection was answered {answered_while_stalled} times while the stalled one was open"
    );
}
