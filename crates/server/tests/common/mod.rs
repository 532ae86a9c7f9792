//! Shared helpers for the server's integration tests: a server on ephemeral ports and raw
//! socket conversations with it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use framing::frame;
use serde_json::Value;
use server::{Config, RunningServer, Server};

/// Generous bound for anything a test waits on; only reached when the test is failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Starts a server on ephemeral ports after letting `tweak` adjust the test configuration.
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = Config::ephemeral();
    tweak(&mut config);
    Server::start(config).expect("server starts")
}

/// Starts a server with the default lots (A=100, B=50, C=200) on ephemeral ports.
pub fn start() -> RunningServer {
    start_with(|_| {})
}

/// Polls `condition` until it holds or [`DEADLINE`] passes.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A raw RPC connection: frames in and out, payloads as the test writes them.
pub struct RawRpc {
    pub stream: TcpStream,
}

impl RawRpc {
    pub fn connect(addr: SocketAddr) -> RawRpc {
        let stream = TcpStream::connect(addr).unwrap();
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
        let stream = TcpStream::connect(addr).unwrap();
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
            Ok(_) => {}
            Err(err) if is_timeout(&err) => {
                panic!("the connection is still open after {within:?}")
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if is_closed_error(&err) => return started.elapsed(),
            Err(err) => panic!("reading from the server failed: {err}"),
        }
    }
}
