//! A raw HTTP/1.1 client for the HTTP port's tests: requests written as the test spells
//! them, responses read with `httparse` (the server's own parser, so nothing here re-implements
//! HTTP), and `text/event-stream` events read one at a time, over plain TCP or over TLS
//! ([`Http::connect_tls`], a rustls client that trusts a [`TestCert`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;

use crate::{DEADLINE, TestCert};

/// A TLS connection to the HTTP port.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `(name, value)` as sent; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    /// The body (empty for `HEAD`, 204).
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} body is not JSON ({error}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    /// The `error` code of an error body.
    pub fn error(&self) -> String {
        let body = self.json();
        assert!(body["detail"].is_string(), "no detail in {body}");
        body["error"].as_str().expect("an error code").to_owned()
    }
}

/// A connection to the HTTP port, plain (`Http`) or TLS (`Http<TlsStream>`).
pub struct Http<S = TcpStream> {
    /// The socket (or TLS stream), for tests that need to stop reading or set options.
    pub stream: S,
    /// Bytes read past the last response.
    buffered: Vec<u8>,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its `event:` field.
    pub event: String,
    /// Its `id:` field.
    pub id: String,
    /// Its `data:` field.
    pub data: String,
}

impl Event {
    /// `data` as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

impl Http {
    /// Connects to `addr`, with reads bounded by [`DEADLINE`].
    pub fn connect(addr: SocketAddr) -> Http {
        Http::over(TcpStream::connect(addr).expect("connects to the HTTP port"))
    }

    /// Speaks over an already connected `stream`.
    pub fn over(stream: TcpStream) -> Http {
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("a read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Http {
            stream,
            buffered: Vec::new(),
        }
    }
}

impl Http<TlsStream> {
    /// Connects to `addr` over TLS, checking the server's certificate against `cert` for
    /// the name `localhost`; reads are bounded by [`DEADLINE`].
    pub fn connect_tls(addr: SocketAddr, cert: &TestCert) -> Http<TlsStream> {
        let tcp = TcpStream::connect(addr).expect("connects to the HTTP port");
        Http::over_tls(tcp, cert)
    }

    /// [`Http::connect_tls`] over an already connected `tcp`.
    pub fn over_tls(tcp: TcpStream, cert: &TestCert) -> Http<TlsStream> {
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(cert.pem.as_bytes()) {
            roots
                .add(der.expect("the test certificate parses"))
                .expect("a root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("a server name");
        let session = ClientConnection::new(Arc::new(config), name).expect("a TLS session");
        tcp.set_read_timeout(Some(DEADLINE))
            .expect("a read timeout");
        tcp.set_nodelay(true).expect("nodelay");
        Http {
            stream: StreamOwned::new(session, tcp),
            buffered: Vec::new(),
        }
    }
}

impl<S: Read + Write> Http<S> {
    /// Writes `bytes` as they are (a reset connection is left for the reply to tell).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// Sends `method path` with a `Host` header, and `body` as JSON if given, and reads the
    /// response.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.send(request(method, path, body, &[]).as_bytes());
        self.response()
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    /// Reads one response; its body by `Content-Length`, none for 204 or a `HEAD`-style
    /// response without one, else until the server closes.
    pub fn response(&mut self) -> Response {
        self.response_to(false)
    }

    /// Reads the response to a `HEAD` request (a length, no body).
    pub fn head_response(&mut self) -> Response {
        self.response_to(true)
    }

    fn response_to(&mut self, head: bool) -> Response {
        let (mut response, head_len) = self.read_head();
        self.buffered.drain(..head_len);
        let length = response
            .header("content-length")
            .map(|length| length.parse::<usize>().expect("a numeric Content-Length"));
        match (head, length) {
            (true, _) => {}
            (false, Some(length)) => {
                self.fill(length);
                response.body = self.buffered.drain(..length).collect();
            }
            (false, None) if response.status == 204 || response.status == 304 => {}
            (false, None) => {
                while self.read_more() {}
                response.body = std::mem::take(&mut self.buffered);
            }
        }
        response
    }

    /// Reads a response head only, leaving what follows (an event stream) to be read.
    pub fn stream_head(&mut self) -> Response {
        let (response, head_len) = self.read_head();
        self.buffered.drain(..head_len);
        response
    }

    fn read_head(&mut self) -> (Response, usize) {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed
                .parse(&self.buffered)
                .expect("a well-formed response")
            {
                httparse::Status::Complete(len) => {
                    let response = Response {
                        status: parsed.code.expect("a status"),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_owned(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    return (response, len);
                }
                httparse::Status::Partial => {
                    assert!(
                        self.read_more(),
                        "the server closed the connection before a full response head: {:?}",
                        String::from_utf8_lossy(&self.buffered)
                    );
                }
            }
        }
    }

    /// Reads the next server-sent event, skipping comments (`: keep-alive`).
    pub fn event(&mut self) -> Event {
        loop {
            let block = self.block();
            let mut event = Event {
                event: String::new(),
                id: String::new(),
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    event.event = value.to_owned();
                } else if let Some(value) = line.strip_prefix("id: ") {
                    event.id = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    event.data = value.to_owned();
                }
            }
            if !event.data.is_empty() {
                return event;
            }
        }
    }

    /// Reads the next block of an event stream (up to a blank line), comments included.
    pub fn block(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buffered, b"\n\n") {
                let block: Vec<u8> = self.buffered.drain(..end + 2).collect();
                return String::from_utf8(block).expect("a UTF-8 event stream");
            }
            assert!(
                self.read_more(),
                "the event stream ended: {:?}",
                String::from_utf8_lossy(&self.buffered)
            );
        }
    }

    /// Whether the server has closed the connection (after any bytes still to read).
    pub fn is_closed(&mut self) -> bool {
        while self.read_more() {}
        true
    }

    /// Whether the server closes the connection with nothing more sent.
    pub fn closes_silently(&mut self) -> bool {
        let before = self.buffered.len();
        self.is_closed() && self.buffered.len() == before
    }

    fn fill(&mut self, len: usize) {
        while self.buffered.len() < len {
            assert!(self.read_more(), "the server closed mid-body");
        }
    }

    /// Reads what is there; false at the end of the stream (or a reset).
    fn read_more(&mut self) -> bool {
        let mut chunk = [0; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buffered.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    return false;
                }
                Err(error) => panic!("reading from the HTTP port: {error}"),
            }
        }
    }
}

/// The text of a request: `method path` with `Host`, then `headers` (`"Name: value"`), then
/// `body` as JSON with its length.
pub fn request(method: &str, path: &str, body: Option<&str>, headers: &[&str]) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if let Some(body) = body {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    text.push_str("\r\n");
    text.push_str(body.unwrap_or(""));
    text
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
