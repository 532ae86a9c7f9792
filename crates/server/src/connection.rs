//! One connection of a port the scheduler serves (RPC, sensor, HTTP): its socket and its
//! buffers, and the three things a worker does with it: answer what is buffered, write some,
//! read some.
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
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use auth::Session;
use memmap2::MmapMut;
use protocol::{Protocol, Released, Step};
use transport::Stream;

use crate::limits::{BufferBudget, BufferCharge, Ticket};

/// Size a read buffer starts at (and shrinks back to after a large request).
const INITIAL_BUFFER: usize = 4 * 1024;

/// Unsent replies at which a connection stops answering until they are written: a peer
/// that pipelines many requests with large replies (`getLots` over thousands of lots) holds
/// at most this much plus one reply, however many requests it has sent.
pub(crate) const OUTPUT_HIGH_WATER: usize = 64 * 1024;

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
    /// The request needs a bigger buffer than the server-wide buffer budget has room for.
    OverBudget,
}

/// Size from which an input buffer gets a memory map of its own.
const MAPPED_FROM: usize = 256 * 1024;

/// A connection's input buffer: on the heap while small, in an anonymous memory map of its
/// own when large, so that a large request's memory goes back to the system the moment the
/// buffer is dropped. On the heap it would not: glibc keeps freed memory for reuse and
/// raises its mmap threshold after each large free, so that 48 peers sending 4 MiB requests
/// left the server holding 1.2 GB (docs/robustness.md, "Memory under attack").
#[derive(Debug, Default)]
enum InputBuffer {
    #[default]
    Empty,
    Heap(Vec<u8>),
    Mapped(MmapMut),
}

impl InputBuffer {
    /// A buffer of the initial size.
    fn new() -> Self {
        InputBuffer::Heap(vec![0; INITIAL_BUFFER])
    }

    /// Grows the buffer to `len` bytes, keeping its first `keep`.
    fn grow(&mut self, len: usize, keep: usize) -> io::Result<()> {
        if len < MAPPED_FROM
            && let InputBuffer::Heap(bytes) = self
        {
            bytes.resize(len, 0);
            return Ok(());
        }
        let mut grown = if len < MAPPED_FROM {
            InputBuffer::Heap(vec![0; len])
        } else {
            InputBuffer::Mapped(MmapMut::map_anon(len)?)
        };
        grown[..keep].copy_from_slice(&self[..keep]);
        *self = grown;
        Ok(())
    }
}

impl Deref for InputBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            InputBuffer::Empty => &[],
            InputBuffer::Heap(bytes) => bytes,
            InputBuffer::Mapped(map) => map,
        }
    }
}

impl DerefMut for InputBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            InputBuffer::Empty => &mut [],
            InputBuffer::Heap(bytes) => bytes,
            InputBuffer::Mapped(map) => map,
        }
    }
}

/// What making room in the input buffer came to.
enum Room {
    Made,
    Full,
    OverBudget,
}

/// The bytes of a buffer of `len` that count against the buffer budget: every connection
/// may use [`INITIAL_BUFFER`] freely (a connection that waits gives even that back).
fn charged(len: usize) -> usize {
    len.saturating_sub(INITIAL_BUFFER)
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
    input: InputBuffer,
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
    /// The last answer stopped at the output high-water mark with requests left.
    paused: bool,
    /// What the buffers hold beyond their free allowance, counted in the server's budget.
    charge: BufferCharge,
    /// The connection's place under the port's limits, given back when it is dropped (or
    /// handed on with the connection by [`Connection::release`]).
    ticket: Ticket,
}

impl Connection {
    /// Wraps an accepted, non-blocking stream.
    pub(crate) fn new(
        stream: Stream,
        peer: SocketAddr,
        ticket: Ticket,
        budget: Arc<BufferBudget>,
        session: Session,
    ) -> Self {
        let now = Instant::now();
        Connection {
            stream,
            peer,
            session,
            connected: now,
            input: InputBuffer::default(),
            start: 0,
            end: 0,
            output: Vec::new(),
            written: 0,
            last_read: now,
            partial_since: None,
            stalled_since: None,
            closing: false,
            paused: false,
            charge: BufferCharge::new(budget),
            ticket,
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

    /// Answers the complete requests in the buffer, appending the replies to the output,
    /// until none is left or [`OUTPUT_HIGH_WATER`] bytes of replies wait to be written
    /// ([`Connection::paused`]). Returns the upgrade a request asked for: the connection is
    /// then to be released to the protocol, the rest of its input unanswered.
    pub(crate) fn answer<P: Protocol>(&mut self, protocol: &P, now: Instant) -> Option<P::Upgrade> {
        let began = self.start;
        self.paused = false;
        while !self.closing && self.start < self.end {
            if self.output.len() - self.written >= OUTPUT_HIGH_WATER {
                self.paused = true;
                break;
            }
            match protocol.serve_one(
                &self.input[self.start..self.end],
                &mut self.output,
                self.peer,
                &mut self.session,
            ) {
                Step::Answered { consumed } => self.start += consumed,
                Step::Incomplete => break,
                Step::Fatal => self.closing = true,
                Step::Upgrade { upgrade } => return Some(upgrade),
            }
        }
        if self.start == self.end || self.closing {
            self.start = 0;
            self.end = 0;
            self.partial_since = None;
            if self.input.len() > INITIAL_BUFFER {
                // A large request is answered: do not keep its buffer for the small ones.
                self.input = InputBuffer::new();
            }
        } else if self.paused {
            // What is left is requests waiting for their turn, not a slow one arriving.
            self.partial_since = None;
        } else if self.start > began || self.partial_since.is_none() {
            // The incomplete request at the front is a new one: its clock starts now.
            self.partial_since = Some(now);
        }
        self.charge_buffers();
        None
    }

    /// Whether the last [`Connection::answer`] stopped at [`OUTPUT_HIGH_WATER`] with
    /// complete requests still buffered: answer again once the output is written.
    pub(crate) fn paused(&self) -> bool {
        self.paused
    }

    /// Refuses the connection for want of buffer memory: `BUSY`, then close once written.
    pub(crate) fn refuse_over_budget(&mut self, protocol: &impl Protocol, budget: &BufferBudget) {
        protocol.busy_reply(
            &mut self.output,
            &format!(
                "the server is at its limit of {} bytes buffered for requests and replies \
                 (max_buffered_bytes); try again later",
                budget.max()
            ),
        );
        self.closing = true;
        self.start = 0;
        self.end = 0;
        self.input = InputBuffer::default();
        self.charge_buffers();
    }

    /// Brings the buffer charge up to date with what the buffers hold now. Only growth of
    /// the input buffer may be refused ([`Connection::read_some`]); replies already made are
    /// counted in any case, since their requests have been applied.
    fn charge_buffers(&mut self) {
        let held = charged(self.input.len()) + charged(self.output.capacity());
        self.charge.force(held);
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
        if self.output.capacity() > INITIAL_BUFFER {
            // A burst of large replies is written: do not keep its buffer.
            self.output = Vec::new();
            self.charge_buffers();
        }
        // TLS records the socket did not take yet (a plain stream has none).
        if !self.stream.flush_pending()? {
            self.stalled_since.get_or_insert(now);
            return Ok(false);
        }
        Ok(true)
    }

    /// Reads once into the buffer, growing it (up to `max`, and as the buffer budget allows)
    /// for a request larger than it.
    pub(crate) fn read_some(&mut self, max: usize, now: Instant) -> io::Result<ReadOutcome> {
        match self.make_room(max) {
            Room::Made => {}
            Room::Full => return Ok(ReadOutcome::Full),
            Room::OverBudget => return Ok(ReadOutcome::OverBudget),
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
    /// `max` if the buffer budget has room for the growth.
    fn make_room(&mut self, max: usize) -> Room {
        if self.input.is_empty() {
            self.input = InputBuffer::new();
        }
        if self.end < self.input.len() {
            return Room::Made;
        }
        if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return Room::Made;
        }
        if self.input.len() >= max {
            return Room::Full;
        }
        let grown = (self.input.len() * 2).min(max);
        // Charged before it is allocated: a connection growing a large request is the one
        // refused when the budget is spent, never one sending small requests.
        let held = charged(grown) + charged(self.output.capacity());
        if !self.charge.try_raise(held) {
            return Room::OverBudget;
        }
        if let Err(err) = self.input.grow(grown, self.end) {
            log::warn!("cannot map a {grown}-byte request buffer: {err}");
            return Room::OverBudget;
        }
        Room::Made
    }

    /// Gives back the buffers that hold nothing, before the connection waits.
    pub(crate) fn release_buffers(&mut self) {
        if self.start == self.end {
            self.input = InputBuffer::default();
            self.start = 0;
            self.end = 0;
        }
        if !self.has_output() {
            self.output = Vec::new();
            self.written = 0;
        }
        self.charge_buffers();
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

    /// Closes the socket (an established TLS session with its `close_notify`). The replies
    /// already written stay on their way.
    pub(crate) fn close(mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Lets go of the connection for a protocol to take over: its stream (a TLS session
    /// moves with it), the replies not yet written, and its place under the port's limits.
    /// Its buffers leave the budget.
    pub(crate) fn release(mut self) -> Released {
        let unwritten = self.output.split_off(self.written.min(self.output.len()));
        Released {
            stream: self.stream,
            peer: self.peer,
            unwritten,
            place: Box::new(self.ticket),
        }
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

/// Connections over loopback sockets, for the thread model's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use auth::Session;
    use transport::Stream;

    use super::Connection;
    use crate::limits::{Admission, BufferBudget, ConnectionBudget};

    /// `n` accepted connections (non-blocking, plain TCP, no access control), each with the
    /// peer's end of its socket, which must stay open for as long as the test needs it.
    pub(crate) fn connections(n: usize) -> Vec<(Connection, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admission = Admission::new(n, 0, Arc::new(ConnectionBudget::new(n)));
        let budget = BufferBudget::new(1 << 20);
        (0..n)
            .map(|_| {
                let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (accepted, peer) = listener.accept().unwrap();
                accepted.set_nonblocking(true).unwrap();
                let stream = Stream::accept(mio::net::TcpStream::from_std(accepted), None).unwrap();
                let connection = Connection::new(
                    stream,
                    peer,
                    admission.admit(peer).unwrap(),
                    Arc::clone(&budget),
                    Session::new(None),
                );
                (connection, client)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_input_buffer_keeps_its_bytes_and_moves_to_a_map_when_large() {
        let mut buffer = InputBuffer::new();
        buffer[..5].copy_from_slice(b"hello");
        buffer.grow(MAPPED_FROM / 2, 5).unwrap();
        assert!(matches!(buffer, InputBuffer::Heap(_)));
        buffer.grow(MAPPED_FROM * 2, 5).unwrap();
        assert!(matches!(buffer, InputBuffer::Mapped(_)));
        assert_eq!(buffer.len(), MAPPED_FROM * 2);
        assert_eq!(&buffer[..5], b"hello");
        buffer.grow(MAPPED_FROM * 4, 5).unwrap();
        assert_eq!(&buffer[..5], b"hello");
        assert!(InputBuffer::default().is_empty());
    }
}
