//! Socket plumbing shared by the three clients: connecting with a timeout (and TLS), sorting
//! socket errors into "deadline passed" / "peer went away" / other, and reading bounded lines.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use framing::line::{self, Decoded};
use rustls::{ClientConnection, StreamOwned};

use crate::access::{Access, TlsClient};
use crate::endpoints::Endpoints;

/// A connection to the server: plain TCP, or TLS over it. Blocking, with the socket's
/// timeouts.
#[derive(Debug)]
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// The socket, for its timeouts.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.read(buf),
            Conn::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.write(buf),
            Conn::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(tcp) => tcp.flush(),
            Conn::Tls(tls) => tls.flush(),
        }
    }
}

/// Connects to the first of `endpoints` that answers, as [`connect`] does, and, with TLS in
/// `access`, completes the handshake (checking the certificate against the name that endpoint
/// was given by) before returning, so that a wrong certificate is a connection failure that
/// says so. With TLS each endpoint is tried by itself (the name to verify is its own), and one
/// whose handshake fails is passed over for the next, as one that does not answer is.
pub(crate) fn connect_with(
    endpoints: &Endpoints,
    timeout: Duration,
    access: &Access,
) -> Result<(Conn, SocketAddr), ConnectFailure> {
    let Some(tls) = &access.tls else {
        let (tcp, peer) = connect(endpoints, timeout)?;
        return Ok((Conn::Plain(tcp), peer));
    };
    let mut last = None;
    for n in 0..endpoints.len() {
        let attempt = connect(endpoints.get(n), timeout)
            .and_then(|(tcp, peer)| handshake(tcp, peer, endpoints.host(n), tls));
        match attempt {
            Ok(connected) => return Ok(connected),
            Err(failure) => last = Some(failure),
        }
    }
    Err(last.unwrap_or_else(|| ConnectFailure {
        addr: "(no address)".to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to"),
    }))
}

/// Runs the TLS handshake with `peer` over `tcp`, verifying the certificate against `host`.
fn handshake(
    mut tcp: TcpStream,
    peer: SocketAddr,
    host: &str,
    tls: &TlsClient,
) -> Result<(Conn, SocketAddr), ConnectFailure> {
    let failure = |detail: String| ConnectFailure {
        addr: peer.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {detail}")),
    };
    let mut session = tls.session(host).map_err(failure)?;
    while session.is_handshaking() {
        if let Err(err) = session.complete_io(&mut tcp) {
            return Err(match classify(err) {
                // A plain-text server answers the ClientHello with something that is not
                // TLS, or closes: say what it probably is.
                Failure::Closed => failure(
                    "the server closed the connection during the handshake (is TLS on for \
                     this port?)"
                        .to_owned(),
                ),
                Failure::Timeout => failure("the handshake timed out".to_owned()),
                Failure::Other(err) => failure(err.to_string()),
            });
        }
    }
    Ok((Conn::Tls(Box::new(StreamOwned::new(session, tcp))), peer))
}

/// The OS reads a zero socket timeout as "no timeout" (and `connect_timeout` refuses it), so
/// the smallest timeout a client applies is one millisecond.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Longest reply or event line the line-based clients accept, terminator excluded. Server
/// lines are short (a count, a code and a sentence, one JSON event); the limit only bounds the
/// memory a broken or hostile server can make a client use.
pub const MAX_REPLY_LINE_LEN: usize = 64 * 1024;

/// `timeout`, raised to the smallest one the OS honours.
pub(crate) fn effective(timeout: Duration) -> Duration {
    timeout.max(MIN_TIMEOUT)
}

/// A failed connection attempt: what was tried and the last error.
pub(crate) struct ConnectFailure {
    pub(crate) addr: String,
    pub(crate) source: io::Error,
}

/// Resolves `addr` and tries each address in turn with `connect_timeout`, returning the first
/// stream that connects, already configured: `TCP_NODELAY` on (requests are small and latency
/// matters more than packet count) and `timeout` on both reads and writes.
pub(crate) fn connect(
    addr: impl ToSocketAddrs,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), ConnectFailure> {
    let timeout = effective(timeout);
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|source| ConnectFailure {
            addr: "(unresolved address)".to_owned(),
            source,
        })?
        .collect();
    let mut last_error = None;
    for candidate in &addrs {
        match TcpStream::connect_timeout(candidate, timeout) {
            Ok(stream) if is_self_connected(&stream) => {
                // Dropping the stream frees the port again for the server we are waiting for.
                last_error = Some(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "connection refused (the socket connected to itself)",
                ));
            }
            Ok(stream) => {
                let configured = stream
                    .set_nodelay(true)
                    .and_then(|()| set_timeouts(&stream, Some(timeout)));
                return match configured {
                    Ok(()) => Ok((stream, *candidate)),
                    Err(source) => Err(ConnectFailure {
                        addr: candidate.to_string(),
                        source,
                    }),
                };
            }
            Err(err) => last_error = Some(err),
        }
    }
    let tried = addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(ConnectFailure {
        addr: if tried.is_empty() {
            "(no address)".to_owned()
        } else {
            tried
        },
        source: last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )
        }),
    })
}

/// True when a connection to a local port that nobody listens on was given that same port as
/// its source and so connected to itself (TCP simultaneous open). Reconnecting clients hit this
/// while a local server restarts; the stray socket would also keep the server from binding its
/// port again, so it is treated as a refused connection.
fn is_self_connected(stream: &TcpStream) -> bool {
    match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) => local == peer,
        _ => false,
    }
}

/// Applies `timeout` (raised to the OS minimum; `None` blocks forever) to reads and writes.
pub(crate) fn set_timeouts(stream: &TcpStream, timeout: Option<Duration>) -> io::Result<()> {
    let timeout = timeout.map(effective);
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)
}

/// What a socket error means to a caller.
pub(crate) enum Failure {
    /// A read or write timeout expired.
    Timeout,
    /// The peer closed or reset the connection.
    Closed,
    /// Anything else.
    Other(io::Error),
}

/// Sorts a socket error. A socket timeout surfaces as `WouldBlock` on Unix and `TimedOut` on
/// Windows; a vanished peer as one of several kinds depending on timing.
pub(crate) fn classify(err: io::Error) -> Failure {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => Failure::Closed,
        _ => Failure::Other(err),
    }
}

/// Why [`LineReader::read_line`] returned no line.
pub(crate) enum LineError {
    /// The socket failed (a timeout included); a partial line is kept for the next call.
    Io(io::Error),
    /// The server closed the connection (possibly in the middle of a line).
    Closed,
    /// The line is longer than [`MAX_REPLY_LINE_LEN`].
    TooLong,
}

/// Reads `\n`-terminated lines from a socket through a `BufReader`, reusing one line buffer.
///
/// Terminator and length rules are [`framing::line`]'s. A read that fails part-way (a timeout)
/// keeps the bytes it got, so the next call resumes the same line instead of losing it.
#[derive(Debug)]
pub(crate) struct LineReader {
    reader: BufReader<Conn>,
    line: Vec<u8>,
    /// `line` holds a whole line that was already returned; clear it before reading on.
    complete: bool,
}

impl LineReader {
    pub(crate) fn new(stream: Conn) -> Self {
        LineReader {
            reader: BufReader::new(stream),
            line: Vec::with_capacity(128),
            complete: false,
        }
    }

    /// The socket, for its timeouts.
    pub(crate) fn socket(&self) -> &TcpStream {
        self.reader.get_ref().tcp()
    }

    pub(crate) fn stream_mut(&mut self) -> &mut Conn {
        self.reader.get_mut()
    }

    /// Reads the next line and returns its content, terminator removed.
    pub(crate) fn read_line(&mut self) -> Result<&[u8], LineError> {
        if self.complete {
            self.line.clear();
            self.complete = false;
        }
        // One byte for a '\r' and one for the '\n' may follow a line of the maximum length.
        let window = MAX_REPLY_LINE_LEN + 2;
        let room = window.saturating_sub(self.line.len()) as u64;
        (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.line)
            .map_err(LineError::Io)?;
        if self.line.last() != Some(&b'\n') {
            return Err(if self.line.len() >= window {
                LineError::TooLong
            } else {
                LineError::Closed
            });
        }
        match line::decode(&self.line, MAX_REPLY_LINE_LEN) {
            Decoded::Line { content, .. } => {
                self.complete = true;
                Ok(&self.line[content])
            }
            Decoded::TooLong | Decoded::Incomplete => Err(LineError::TooLong),
        }
    }
}
