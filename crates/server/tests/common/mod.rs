//! Shared helpers for the server's integration tests: a server on ephemeral ports and raw
//! socket conversations with it.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use framing::frame;
use serde_json::Value;
use server::{Config, RunningServer};

pub use testkit::{DEADLINE, eventually};

/// Starts a server with the production pool sizes on ephemeral ports, after letting `tweak`
/// adjust the configuration.
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::ephemeral();
    tweak(&mut config);
    testkit::start(config)
}

/// Starts a server with the default lots (A=100, B=50, C=200) on ephemeral ports.
pub fn start() -> RunningServer {
    start_with(|_| {})
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

    /// True once the server has closed the connection (reads EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
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

    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(self.reader.read_line(&mut line), Ok(0) | Err(_))
    }
}
