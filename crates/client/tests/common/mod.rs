//! A fake server for the client tests: a listener on 127.0.0.1:0 and one thread that runs a
//! scripted conversation on the first connection.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use framing::frame;
use framing::rpc::{self, Reply, Request, WireError};

/// A fake server running `script` on its first connection.
pub struct Fake {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl Fake {
    pub fn start(script: impl FnOnce(TcpStream) + Send + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            script(stream);
        });
        Fake { addr, handle }
    }

    /// Waits for the script to finish, re-raising its panic (a failed assertion) if any.
    pub fn join(self) {
        self.handle.join().unwrap();
    }
}

/// An address on which nothing listens (a port that was just released).
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Reads one JSON request frame; returns its id and method name, or `None` at end of stream.
pub fn read_request(stream: &mut TcpStream) -> Option<(u32, Request<'static>)> {
    let mut payload = Vec::new();
    if !frame::read_frame(stream, &mut payload).unwrap() {
        return None;
    }
    let (id, request) = rpc::decode_json_request(&payload).unwrap();
    Some((id, request.into_owned()))
}

/// Reads one frame's raw payload.
pub fn read_payload(stream: &mut TcpStream) -> Vec<u8> {
    let mut payload = Vec::new();
    assert!(frame::read_frame(stream, &mut payload).unwrap());
    payload
}

/// Writes a JSON reply frame.
pub fn write_reply(
    stream: &mut TcpStream,
    rpc_id: Option<u32>,
    result: Result<&Reply<'_>, &WireError>,
) {
    let mut payload = Vec::new();
    rpc::encode_json_reply(&mut payload, rpc_id, result);
    frame::write_frame(stream, &payload).unwrap();
}

/// Writes an arbitrary payload as one frame.
pub fn write_payload(stream: &mut TcpStream, payload: &[u8]) {
    frame::write_frame(stream, payload).unwrap();
}

/// Line-oriented view of a stream, for the sensor and pub/sub fakes.
pub struct Lines {
    reader: BufReader<TcpStream>,
}

impl Lines {
    pub fn new(stream: TcpStream) -> Lines {
        Lines {
            reader: BufReader::new(stream),
        }
    }

    /// The next line without its terminator, or `None` at end of stream.
    pub fn read(&mut self) -> Option<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).unwrap();
        stream.flush().unwrap();
    }
}
