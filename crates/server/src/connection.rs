//! One connection of the RPC or sensor port: its socket and its buffers, and the three things
//! a worker does with it: answer what is buffered, write some, read some.
//!
//! The socket is non-blocking. A worker serving a connection reads what has arrived, answers
//! every complete request, and writes the replies; when the socket has nothing more to give
//! (or will take nothing more), the connection goes back to wait, in the scheduler's poller or
//! on the worker itself, and never holds a worker while it waits for a slow peer. The
//! scheduler (`scheduler.rs`) holds the policy; this file holds the mechanics.
//!
//! Memory: a connection that waits with nothing buffered gives its buffers back
//! ([`Connection::release_buffers`]), so an idle connection costs this struct and the kernel's
//! socket, nothing else (and, on a TLS port, its rustls session).
//!
//! The bytes go through a `transport::Stream`, plain TCP or TLS; the connection also keeps the
//! peer's `auth::Session`, which the protocol consults and updates for every request.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use auth::Session;
use transport::Stream;

use crate::limits::Ticket;

/// Size a read buffer starts at (and shrinks back to after a large request).
const INITIAL_BUFFER: usize = 4 * 1024;

/// What a protocol did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Bytes of complete requests handled; the rest is an incomplete request.
    pub consumed: usize,
    /// Close the connection once the replies are written (after a fatal protocol error).
    pub close: bool,
}

/// A request/reply protocol served by the scheduler.
pub trait Protocol: Send + Sync + 'static {
    /// Short name for logs and thread names, e.g. `rpc`.
    fn name(&self) -> &'static str;
    /// Most bytes one request may occupy in the buffer; the protocol must refuse (and ask to
    /// close) before a request grows past it.
    fn max_request_len(&self) -> usize;
    /// Handles every complete request at the front of `input`, appending the replies to `out`;
    /// `session` is the connection's access (which `auth` requests change).
    fn serve(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        session: &mut Session,
    ) -> Served;
    /// Appends the `BUSY` reply sent to a connection refused at a connection limit, `detail`
    /// saying which.
    fn busy_reply(&self, out: &mut Vec<u8>, detail: &str);
}

/// Counters kept per port.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
}

/// Why a connection was closed.
#[derive(Debug)]
pub(crate) enum CloseReason {
    /// The peer closed its side; `mid_request` if it left an incomplete request behind.
    PeerClosed { mid_request: bool },
    /// A fatal protocol error was answered (frame or line too large).
    Protocol,
    /// Nothing arrived for `idle_timeout`.
    IdleTimeout,
    /// Keys are configured and the peer did not authenticate within `auth_timeout`.
    AuthTimeout,
    /// A started request stayed incomplete for `frame_timeout`.
    RequestTimeout,
    /// The peer took none of its replies for `frame_timeout`.
    WriteStalled,
    /// The server is shutting down.
    Shutdown,
    /// Reading or writing failed.
    Io(io::Error),
}

/// What one read found.
pub(crate) enum ReadOutcome {
    /// Bytes arrived; `drained` when the read did not fill the buffer, which on a TCP socket
    /// means nothing else was waiting (Netty's rule for edge-triggered reads), so no
    /// readiness event is lost by not reading again.
    Data { drained: bool },
    /// Nothing to read now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// The buffer holds `max_request_len` bytes without a complete request; the protocol
    /// should have refused it already.
    Full,
}

/// The timeouts a connection lives by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Longest silence.
    pub(crate) idle: Duration,
    /// Longest a started request may take to arrive, and a peer may leave replies unread.
    pub(crate) frame: Duration,
    /// Longest a connection may go unauthenticated, once keys are configured.
    pub(crate) auth: Duration,
}

/// An accepted connection with everything buffered for it.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Stream,
    peer: SocketAddr,
    /// Who the peer authenticated as, if keys are configured.
    session: Session,
    connected: Instant,
    /// `input[start..end]` holds received bytes not yet answered: at most one incomplete
    /// request once [`Connection::answer`] has run. Empty and unallocated while the
    /// connection waits with nothing buffered.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// Replies not yet written; `output[written..]` is still to go.
    output: Vec<u8>,
    written: usize,
    last_read: Instant,
    /// Since when an incomplete request has been waiting for the rest of its bytes.
    partial_since: Option<Instant>,
    /// Since when the peer has taken none of our pending output.
    stalled_since: Option<Instant>,
    /// A fatal error was answered: close once the replies are out.
    closing: bool,
    /// The connection's place under the port's limits, given back when it is dropped.
    _ticket: Ticket,
}

impl Connection {
    /// Wraps an accepted, non-blocking stream.
    pub(crate) fn new(stream: Stream, peer: SocketAddr, ticket: Ticket, session: Session) -> Self {
        let now = Instant::now();
        Connection {
            stream,
            peer,
            session,
            connected: now,
            input: Vec::new(),
            start: 0,
            end: 0,
            output: Vec::new(),
            written: 0,
            last_read: now,
            partial_since: None,
            stalled_since: None,
            closing: false,
            _ticket: ticket,
        }
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The stream, to register with a poller.
    pub(crate) fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// Whether replies (or TLS records) are waiting for the socket to take them.
    pub(crate) fn has_output(&self) -> bool {
        self.written < self.output.len() || self.stream.has_pending()
    }

    /// Whether a fatal error has been answered and the connection must close once flushed.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether an incomplete request is buffered.
    pub(crate) fn mid_request(&self) -> bool {
        self.start < self.end
    }

    /// Answers every complete request in the buffer, appending the replies to the output.
    pub(crate) fn answer(&mut self, protocol: &impl Protocol, now: Instant) {
        if self.closing || self.start == self.end {
            return;
        }
        let served = protocol.serve(
            &self.input[self.start..self.end],
            &mut self.output,
            self.peer,
            &mut self.session,
        );
        self.closing |= served.close;
        self.start += served.consumed;
        if self.start == self.end || self.closing {
            self.start = 0;
            self.end = 0;
            self.partial_since = None;
            if self.input.len() > INITIAL_BUFFER {
                // A large request is answered: do not keep its buffer for the small ones.
                self.input = vec![0; INITIAL_BUFFER];
            }
        } else if served.consumed > 0 || self.partial_since.is_none() {
            // The incomplete request at the front is a new one: its clock starts now.
            self.partial_since = Some(now);
        }
    }

    /// Writes pending output; `Ok(true)` once all of it is written, `Ok(false)` if the socket
    /// took what it could and would block.
    pub(crate) fn write_some(&mut self, now: Instant) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.stalled_since = None;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled_since.get_or_insert(now);
                    return Ok(false);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.output.clear();
        self.written = 0;
        // TLS records the socket did not take yet (a plain stream has none).
        if !self.stream.flush_pending()? {
            self.stalled_since.get_or_insert(now);
            return Ok(false);
        }
        Ok(true)
    }

    /// Reads once into the buffer, growing it (up to `max`) for a request larger than it.
    pub(crate) fn read_some(&mut self, max: usize, now: Instant) -> io::Result<ReadOutcome> {
        if !self.make_room(max) {
            return Ok(ReadOutcome::Full);
        }
        let room = self.input.len() - self.end;
        loop {
            return match self.stream.read(&mut self.input[self.end..]) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => {
                    self.end += n;
                    self.last_read = now;
                    // A TLS read returns a record's worth at most, so a short one says nothing
                    // about what the socket still holds: read on until it would block.
                    let drained = n < room && !self.stream.is_tls();
                    Ok(ReadOutcome::Data { drained })
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => Err(err),
            };
        }
    }

    /// Makes room at the end of the buffer: allocates it, compacts it, or grows it up to
    /// `max`. False if it already holds `max` bytes.
    fn make_room(&mut self, max: usize) -> bool {
        if self.input.is_empty() {
            self.input = vec![0; INITIAL_BUFFER.min(max)];
        }
        if self.end < self.input.len() {
            return true;
        }
        if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return true;
        }
        if self.input.len() >= max {
            return false;
        }
        let grown = (self.input.len() * 2).min(max);
        self.input.resize(grown, 0);
        true
    }

    /// Gives back the buffers that hold nothing, before the connection waits.
    pub(crate) fn release_buffers(&mut self) {
        if self.start == self.end {
            self.input = Vec::new();
            self.start = 0;
            self.end = 0;
        }
        if !self.has_output() {
            self.output = Vec::new();
            self.written = 0;
        }
    }

    /// When this connection must be closed if nothing happens before, and why.
    pub(crate) fn deadline(&self, timeouts: Timeouts) -> (Instant, DeadlineKind) {
        let mut deadline = (self.last_read + timeouts.idle, DeadlineKind::Idle);
        for (since, kind) in [
            (self.partial_since, DeadlineKind::Request),
            (self.stalled_since, DeadlineKind::Write),
        ] {
            if let Some(since) = since
                && since + timeouts.frame < deadline.0
            {
                deadline = (since + timeouts.frame, kind);
            }
        }
        if self.session.needs_auth() && self.connected + timeouts.auth < deadline.0 {
            deadline = (self.connected + timeouts.auth, DeadlineKind::Auth);
        }
        deadline
    }

    /// Closes the socket (a TLS session with its `close_notify`). The replies already
    /// written stay on their way.
    pub(crate) fn close(mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Which timeout a deadline enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadlineKind {
    /// `idle_timeout` since the last byte read.
    Idle,
    /// `frame_timeout` since an incomplete request began.
    Request,
    /// `frame_timeout` since the peer last took any output.
    Write,
    /// `auth_timeout` since the connection opened, while it has not authenticated.
    Auth,
}

impl DeadlineKind {
    /// The close reason for a deadline that passed.
    pub(crate) fn reason(self) -> CloseReason {
        match self {
            DeadlineKind::Idle => CloseReason::IdleTimeout,
            DeadlineKind::Request => CloseReason::RequestTimeout,
            DeadlineKind::Write => CloseReason::WriteStalled,
            DeadlineKind::Auth => CloseReason::AuthTimeout,
        }
    }
}
