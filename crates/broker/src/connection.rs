//! One connection as its notifier thread drives it, without ever blocking on the socket: a
//! pub/sub port connection (reading `SUBSCRIBE` lines, answering them, writing queued events)
//! or an HTTP event stream (subscribed from the start, writing queued events and a keep-alive
//! comment when quiet, its input read only to notice that the peer has gone).
//!
//! The socket is non-blocking and registered (edge-triggered) with the notifier's poll, which
//! calls [`Connection::step`] when it becomes readable or writable, and
//! [`Connection::deliver`] when the doorbell says events were queued for it. Output goes
//! through a pending buffer capped at [`MAX_PENDING_OUTPUT`]: what a `write` does not take
//! stays there until the socket is writable again, and while the buffer is over the cap the
//! connection takes nothing more from its event queue (and reads no more commands). A reader
//! that stops reading therefore fills its bounded queue, where the publishers count the drops
//! that eventually disconnect it; memory per connection stays bounded whatever the peer does.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::{Action, AuthFailure, Denied, Session};
use framing::line::{self, Decoded};
use framing::pubsub::{self, Command, PubsubError, PubsubErrorCode, Topic};
use framing::sse;
use mio::Token;
use state::LotId;
use transport::Stream;

use crate::Held;
use crate::notifier::Doorbell;
use crate::registry::{Encoding, Registry, Subscription};

/// Most bytes waiting to be written before the connection stops taking events from its queue.
pub(crate) const MAX_PENDING_OUTPUT: usize = 16 * 1024;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 4096;

/// Most `read` calls per step, so that one chatty peer cannot hold up the notifier's others;
/// a connection stopped by this is stepped again at once, without waiting for readiness.
const MAX_READS_PER_STEP: usize = 8;

/// Most times per step the pending buffer is refilled from the queue and written, for the
/// same reason.
const MAX_WRITE_ROUNDS: usize = 4;

/// How long a connection being closed after an error reply keeps discarding input, waiting
/// for the peer to read the reply and close first (see [`Connection::linger`]).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// What a connection's notifier needs to run it.
#[derive(Debug)]
pub(crate) struct Context {
    /// The topic lists.
    pub(crate) registry: Arc<Registry>,
    /// The notifier's doorbell, handed to each new subscriber.
    pub(crate) doorbell: Arc<Doorbell>,
    /// Longest silence allowed before the first successful `SUBSCRIBE`.
    pub(crate) idle_timeout: Duration,
    /// Longest time a started line may take to complete.
    pub(crate) line_timeout: Duration,
    /// How long an event stream may stay quiet before a keep-alive comment is sent.
    pub(crate) keep_alive: Duration,
    /// Longest a connection may go unauthenticated, when keys are configured.
    pub(crate) auth_timeout: Duration,
}

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum CloseReason {
    /// The peer closed its side.
    PeerClosed,
    /// Reading or writing failed (reset, broken pipe...).
    Io(io::Error),
    /// The subscriber's queue overflowed too many times in a row.
    SlowSubscriber {
        /// Consecutive drops when it was disconnected.
        drops: u32,
    },
    /// No `SUBSCRIBE` and no input for the idle timeout.
    IdleTimeout,
    /// Keys are configured and no good `AUTH` came within the auth timeout.
    AuthTimeout,
    /// Too many wrong tokens; `ERR UNAUTHORIZED` was sent.
    AuthFailures,
    /// A line was started but not finished within the line timeout.
    LineTimeout,
    /// Output was pending and the peer took none of it for the line timeout.
    WriteStalled,
    /// A line went over the limit; `ERR LINE_TOO_LONG` was sent.
    LineTooLong,
    /// The peer sent an RPC frame, not a line; `ERR BAD_COMMAND` was sent.
    NotALine,
    /// The broker is shutting down.
    Shutdown,
}

/// A connection that answered with an error and is on its way out.
#[derive(Debug)]
struct Closing {
    reason: CloseReason,
    deadline: Instant,
    write_shut: bool,
}

/// One connection, owned by one notifier thread.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Stream,
    peer: SocketAddr,
    /// How its events are written: a pub/sub port connection's lines, or an event stream.
    encoding: Encoding,
    /// Who the peer authenticated as, when keys are configured.
    session: Session,
    connected: Instant,
    /// The notifier's name for this connection, given to its subscriber for the doorbell.
    token: Token,
    /// Bytes received but not yet a complete line; bounded by the line limit plus one read.
    input: Vec<u8>,
    /// Bytes to send (replies, then events), oldest first.
    output: Vec<u8>,
    /// Set by the first successful `SUBSCRIBE`.
    subscription: Option<Subscription>,
    last_input: Instant,
    /// When the unfinished line in `input` began, for the line timeout.
    line_started: Option<Instant>,
    /// Since when output has been pending with the peer taking none of it. A subscriber that
    /// stops reading is normally cut off by its queue overflowing; this also catches one whose
    /// lots have gone quiet, so that it does not hold its buffers forever.
    stalled_since: Option<Instant>,
    /// The socket may hold input not read yet: readiness is edge-triggered, so input left
    /// unread (at the per-step cap, or while output is over its cap) is not reported again.
    unread_input: bool,
    closing: Option<Closing>,
    /// When the socket last took bytes (or the connection began), for an event stream's
    /// keep-alive.
    last_output: Instant,
    /// The caller's hold on this connection, let go when it is dropped.
    _held: Held,
}

impl Connection {
    /// Wraps an accepted, non-blocking pub/sub port stream known to its notifier as `token`;
    /// `session` is who the peer is (nobody yet, when keys are configured).
    pub(crate) fn new(
        stream: Stream,
        peer: SocketAddr,
        token: Token,
        now: Instant,
        held: Held,
        session: Session,
    ) -> Self {
        Connection::with(
            stream,
            peer,
            token,
            now,
            held,
            session,
            Encoding::Lines,
            Vec::new(),
        )
    }

    /// Wraps an HTTP connection that becomes an event stream: `preamble` (its response head,
    /// and any replies before it) goes out first. [`Connection::open_stream`] subscribes it.
    /// The HTTP port checked its access before handing it over, so it needs no session.
    pub(crate) fn event_stream(
        stream: Stream,
        peer: SocketAddr,
        token: Token,
        now: Instant,
        held: Held,
        preamble: Vec<u8>,
    ) -> Self {
        Connection::with(
            stream,
            peer,
            token,
            now,
            held,
            Session::new(None),
            Encoding::EventStream,
            preamble,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn with(
        stream: Stream,
        peer: SocketAddr,
        token: Token,
        now: Instant,
        held: Held,
        session: Session,
        encoding: Encoding,
        output: Vec<u8>,
    ) -> Self {
        Connection {
            stream,
            peer,
            session,
            connected: now,
            encoding,
            token,
            input: Vec::new(),
            output,
            subscription: None,
            last_input: now,
            line_started: None,
            stalled_since: None,
            // A new connection's SUBSCRIBE often arrives with it.
            unread_input: true,
            closing: None,
            last_output: now,
            _held: held,
        }
    }

    /// Subscribes an event stream to `owner`'s notices, when given; else to `lots` (every
    /// lot when empty), queueing the current value of each, which come before any change.
    pub(crate) fn open_stream(&mut self, ctx: &Context, lots: &[LotId], owner: Option<&str>) {
        if let Some(owner) = owner {
            let id = ctx.registry.follow_owner(
                &mut self.subscription,
                owner,
                self.peer,
                (&ctx.doorbell, self.token),
            );
            log::debug!(
                "{} opened the notice stream of {owner} (subscription {id})",
                self.peer
            );
            return;
        }
        let all = [Topic::All];
        let named: Vec<Topic<'_>> = lots.iter().map(|lot| Topic::Lot(lot.as_str())).collect();
        let topics = if lots.is_empty() { &all[..] } else { &named };
        for &topic in topics {
            match ctx.registry.subscribe(
                &mut self.subscription,
                topic,
                self.peer,
                (&ctx.doorbell, self.token),
                Encoding::EventStream,
            ) {
                Ok((_, snapshots)) => {
                    for current in &snapshots {
                        self.encoding.encode(&mut self.output, current, true);
                    }
                }
                // The HTTP port checked the lots before handing the stream over.
                Err(error) => log::debug!("event stream {}: {error}", self.peer),
            }
        }
        if let Some(id) = self.subscription_id() {
            log::debug!("{} opened event stream (subscription {id})", self.peer);
        }
    }

    /// Whether this is an HTTP event stream rather than a pub/sub port connection.
    pub(crate) fn is_event_stream(&self) -> bool {
        self.encoding == Encoding::EventStream
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The notifier's name for this connection.
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// The stream, to register with the notifier's poll.
    pub(crate) fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// The subscription id, once subscribed.
    pub(crate) fn subscription_id(&self) -> Option<u64> {
        self.subscription.as_ref().map(|s| s.subscriber().id())
    }

    /// Does everything the connection can do now: sends what is pending, reads and answers
    /// commands, enforces the timeouts. `Err` means it must be closed, and why.
    pub(crate) fn step(
        &mut self,
        ctx: &Context,
        readable: bool,
        now: Instant,
    ) -> Result<(), CloseReason> {
        self.unread_input |= readable;
        if self.closing.is_none() {
            // Sending first makes room for replies to the commands about to be read.
            self.send(now)?;
            self.handle_lines(ctx, now);
            self.read_input(ctx, now)?;
            self.check_timeouts(ctx, now)?;
            if self.closing.is_none() {
                self.keep_alive(ctx, now);
                self.send(now)?;
            }
        }
        if self.closing.is_some() {
            self.linger(now)?;
        }
        Ok(())
    }

    /// Whether the connection has work it can do at once, without a readiness event: input
    /// left unread while it could be read.
    pub(crate) fn wants_step(&self) -> bool {
        self.unread_input && self.output.len() < MAX_PENDING_OUTPUT
    }

    /// Sends queued events without reading: the doorbell's path.
    pub(crate) fn deliver(&mut self, now: Instant) -> Result<(), CloseReason> {
        if let Some(subscription) = &self.subscription {
            // Before the queue is drained: an event queued after this rings again.
            subscription.subscriber().delivering();
        }
        if self.closing.is_some() {
            return Ok(());
        }
        self.send(now)
    }

    /// When the connection must be looked at even if its socket stays quiet: a timeout, or
    /// the end of its closing linger. `None` for a subscriber with nothing pending.
    pub(crate) fn deadline(&self, ctx: &Context) -> Option<Instant> {
        if let Some(closing) = &self.closing {
            return Some(closing.deadline);
        }
        [
            self.line_started.map(|at| at + ctx.line_timeout),
            self.stalled_since.map(|at| at + ctx.line_timeout),
            self.subscription
                .is_none()
                .then(|| self.last_input + ctx.idle_timeout),
            // Only with nothing pending: while output waits, the stalled write's deadline
            // stands instead (a keep-alive could not go out anyway).
            (self.is_event_stream() && self.output.is_empty())
                .then(|| self.last_output + ctx.keep_alive),
            self.session
                .needs_auth()
                .then(|| self.connected + ctx.auth_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// For shutdown: stops new events from being queued; those already queued can still be
    /// flushed.
    pub(crate) fn end_subscription(&mut self, registry: &Registry) {
        if let Some(subscription) = &mut self.subscription {
            registry.unsubscribe(subscription);
        }
    }

    /// For shutdown: writes what is pending without reading; `Ok(true)` once nothing is left.
    pub(crate) fn flush(&mut self, now: Instant) -> Result<bool, CloseReason> {
        if self.closing.is_some() {
            self.write_output(now)?;
            return Ok(self.output.is_empty());
        }
        self.send(now)?;
        Ok(!self.has_pending_output())
    }

    /// Ends the connection: leaves the topic lists, makes a last attempt to send what is
    /// pending (an error reply, typically), and closes the socket.
    pub(crate) fn close(mut self, registry: &Registry) {
        self.end_subscription(registry);
        let _ = write_pending(&mut self.stream, &mut self.output);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn has_pending_output(&self) -> bool {
        !self.output.is_empty()
            || self.stream.has_pending()
            || self
                .subscription
                .as_ref()
                .is_some_and(|s| s.subscriber().has_events())
    }

    /// Moves queued events to the pending buffer and writes it, until the socket is full, the
    /// queue is empty, or the round limit is reached.
    fn send(&mut self, now: Instant) -> Result<(), CloseReason> {
        if let Some(subscription) = &self.subscription {
            let subscriber = subscription.subscriber();
            if subscriber.is_doomed() {
                return Err(CloseReason::SlowSubscriber {
                    drops: subscriber.consecutive_drops(),
                });
            }
        }
        let mut progressed = false;
        let mut more = false;
        if self.output.is_empty() && self.stream.has_pending() {
            // TLS records (a handshake message) wait even with no output of ours.
            self.write_output(now)?;
        }
        for _ in 0..MAX_WRITE_ROUNDS {
            self.fill_output();
            if self.output.is_empty() {
                break;
            }
            let before = self.output.len();
            let done = self.write_output(now)?;
            progressed |= self.output.len() < before;
            if !done {
                break;
            }
            more = true;
        }
        if let Some(subscription) = &self.subscription {
            let subscriber = subscription.subscriber();
            if progressed || (self.output.is_empty() && !subscriber.has_events()) {
                subscriber.reading();
            } else if !self.output.is_empty() {
                subscriber.not_reading();
            }
            // The round limit stopped a socket that still takes bytes: ring again, so that
            // the rest goes out after the notifier's other connections had their turn.
            if more && self.output.is_empty() && subscriber.has_events() {
                subscriber.ring();
            }
        }
        Ok(())
    }

    /// On an event stream that has sent nothing for the keep-alive interval and has nothing
    /// to send, queues a comment, so that proxies and browsers see the stream alive.
    fn keep_alive(&mut self, ctx: &Context, now: Instant) {
        if self.is_event_stream()
            && self.output.is_empty()
            && now.saturating_duration_since(self.last_output) >= ctx.keep_alive
            && !self
                .subscription
                .as_ref()
                .is_some_and(|s| s.subscriber().has_events())
        {
            self.output.extend_from_slice(sse::KEEP_ALIVE);
        }
    }

    /// Writes what the socket takes; `Ok(true)` if everything was written.
    fn write_output(&mut self, now: Instant) -> Result<bool, CloseReason> {
        let before = self.output.len();
        let done = write_pending(&mut self.stream, &mut self.output).map_err(CloseReason::Io)?;
        if self.output.len() < before {
            self.last_output = now;
        }
        if done {
            self.stalled_since = None;
        } else if self.output.len() < before || self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        Ok(done)
    }

    fn fill_output(&mut self) {
        let Some(subscription) = &self.subscription else {
            return;
        };
        while self.output.len() < MAX_PENDING_OUTPUT {
            match subscription.subscriber().next_event() {
                Some(line) => self.output.extend_from_slice(&line),
                None => break,
            }
        }
    }

    fn read_input(&mut self, ctx: &Context, now: Instant) -> Result<(), CloseReason> {
        let mut chunk = [0; READ_CHUNK];
        for _ in 0..MAX_READS_PER_STEP {
            // Over the cap, the peer is not reading its replies: stop reading its commands,
            // so that it is its own sends that block.
            if !self.unread_input
                || self.closing.is_some()
                || self.output.len() >= MAX_PENDING_OUTPUT
            {
                return Ok(());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(CloseReason::PeerClosed),
                // An event stream takes no commands: what its peer sends is dropped unread.
                Ok(_) if self.is_event_stream() => self.last_input = now,
                Ok(n) => {
                    self.last_input = now;
                    self.input.extend_from_slice(&chunk[..n]);
                    self.handle_lines(ctx, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.unread_input = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::Io(e)),
            }
        }
        Ok(())
    }

    /// Answers every complete line in `input` (while there is room for the replies).
    fn handle_lines(&mut self, ctx: &Context, now: Instant) {
        let mut consumed_any = false;
        while self.closing.is_none() && self.output.len() < MAX_PENDING_OUTPUT {
            if line::starts_like_a_frame(&self.input) {
                let error = PubsubError::new(
                    PubsubErrorCode::BadCommand,
                    "this is the pub/sub port, which takes text lines; the bytes look like an \
                     RPC frame (use the RPC port)",
                );
                self.refuse(ctx, &error, CloseReason::NotALine, now);
                break;
            }
            match line::decode(&self.input, pubsub::MAX_LINE_LEN) {
                Decoded::Line { content, consumed } => {
                    let peer = self.peer;
                    let token = self.token;
                    let subscription = &mut self.subscription;
                    let session = &mut self.session;
                    let mut closes = false;
                    let command = pubsub::parse_command(&self.input[content]);
                    match command {
                        Ok(Command::Auth { token: secret }) => {
                            match session.authenticate(secret.expose(), "pubsub", peer, now) {
                                Ok(identity) => {
                                    pubsub::encode_authenticated(
                                        &mut self.output,
                                        identity.id().as_str(),
                                    );
                                }
                                Err(failure) => {
                                    closes = failure.closes();
                                    let code = match failure {
                                        AuthFailure::NotConfigured => PubsubErrorCode::BadCommand,
                                        _ => PubsubErrorCode::Unauthorized,
                                    };
                                    let error = PubsubError::new(code, failure.to_string());
                                    pubsub::encode_error(&mut self.output, &error);
                                }
                            }
                        }
                        Ok(Command::Subscribe(topic)) => {
                            let reply = session
                                .check(Action::Read)
                                .map_err(|denied| {
                                    let code = match denied {
                                        Denied::Unauthenticated => PubsubErrorCode::Unauthorized,
                                        Denied::Forbidden { .. } => PubsubErrorCode::Forbidden,
                                    };
                                    PubsubError::new(code, denied.to_string())
                                })
                                .and_then(|()| {
                                    let subscribed = ctx.registry.subscribe(
                                        subscription,
                                        topic,
                                        peer,
                                        (&ctx.doorbell, token),
                                        Encoding::Lines,
                                    )?;
                                    let topic = match topic {
                                        Topic::All => "ALL",
                                        Topic::Lot(lot) => lot,
                                    };
                                    log::debug!(
                                        "{peer} subscribed to {topic} (subscription {})",
                                        subscribed.0
                                    );
                                    Ok(subscribed)
                                });
                            match reply {
                                Ok((id, snapshots)) => {
                                    pubsub::encode_subscribed(&mut self.output, id);
                                    // The current values come before any event the queue
                                    // holds, so a sign is right at once, not at the lot's next
                                    // change.
                                    for current in &snapshots {
                                        self.encoding.encode(&mut self.output, current, true);
                                    }
                                }
                                Err(error) => pubsub::encode_error(&mut self.output, &error),
                            }
                        }
                        Err(error) => pubsub::encode_error(&mut self.output, &error),
                    }
                    if closes {
                        self.input.clear();
                        self.end_subscription(&ctx.registry);
                        self.closing = Some(Closing {
                            reason: CloseReason::AuthFailures,
                            deadline: now + CLOSE_LINGER,
                            write_shut: false,
                        });
                        break;
                    }
                    self.input.drain(..consumed);
                    consumed_any = true;
                }
                Decoded::Incomplete => break,
                Decoded::TooLong => {
                    let error = PubsubError::new(
                        PubsubErrorCode::LineTooLong,
                        format!("lines are limited to {} bytes", pubsub::MAX_LINE_LEN),
                    );
                    self.refuse(ctx, &error, CloseReason::LineTooLong, now);
                }
            }
        }
        if self.input.is_empty() {
            self.line_started = None;
        } else if consumed_any || self.line_started.is_none() {
            self.line_started = Some(now);
        }
    }

    /// Answers a fatal `error` and closes for `reason` once it is written.
    fn refuse(&mut self, ctx: &Context, error: &PubsubError, reason: CloseReason, now: Instant) {
        pubsub::encode_error(&mut self.output, error);
        self.input.clear();
        // Nothing more is sent but the reply, so stop queueing events at once.
        self.end_subscription(&ctx.registry);
        self.closing = Some(Closing {
            reason,
            deadline: now + CLOSE_LINGER,
            write_shut: false,
        });
    }

    fn check_timeouts(&self, ctx: &Context, now: Instant) -> Result<(), CloseReason> {
        if let Some(started) = self.line_started
            && now.saturating_duration_since(started) >= ctx.line_timeout
        {
            return Err(CloseReason::LineTimeout);
        }
        if let Some(stalled) = self.stalled_since
            && now.saturating_duration_since(stalled) >= ctx.line_timeout
        {
            return Err(CloseReason::WriteStalled);
        }
        if self.session.needs_auth()
            && now.saturating_duration_since(self.connected) >= ctx.auth_timeout
        {
            return Err(CloseReason::AuthTimeout);
        }
        // Only before the first SUBSCRIBE: a subscriber to a quiet lot may rightly say and
        // hear nothing for hours.
        if self.subscription.is_none()
            && now.saturating_duration_since(self.last_input) >= ctx.idle_timeout
        {
            return Err(CloseReason::IdleTimeout);
        }
        Ok(())
    }

    /// Closing after an error reply: send the reply, then shut our sending side and discard
    /// input until the peer closes (or [`CLOSE_LINGER`] passes). Closing a socket that still
    /// has unread input makes the kernel send a reset, which could destroy the reply before
    /// the peer reads it.
    fn linger(&mut self, now: Instant) -> Result<(), CloseReason> {
        let Some(closing) = self.closing.as_mut() else {
            return Ok(());
        };
        let mut done = now >= closing.deadline;
        if !done {
            match write_pending(&mut self.stream, &mut self.output) {
                Ok(true) if !closing.write_shut => {
                    let _ = self.stream.shutdown(Shutdown::Write);
                    closing.write_shut = true;
                }
                Ok(_) => {}
                Err(_) => done = true,
            }
        }
        if !done && closing.write_shut {
            done = discard_input(&mut self.stream);
        }
        match self.closing.take() {
            Some(closing) if done => Err(closing.reason),
            closing => {
                self.closing = closing;
                Ok(())
            }
        }
    }
}

/// Writes as much of `output` as the socket takes and removes it, then any TLS records
/// still waiting; `Ok(true)` if all of it went.
fn write_pending(stream: &mut Stream, output: &mut Vec<u8>) -> io::Result<bool> {
    let mut written = 0;
    let result = loop {
        if written == output.len() {
            break Ok(true);
        }
        match stream.write(&output[written..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    output.drain(..written);
    match result {
        Ok(true) => stream.flush_pending(),
        other => other,
    }
}

/// Reads and throws away what the peer sent, until the socket would block; `true` once the
/// peer has closed (or the socket failed).
fn discard_input(stream: &mut Stream) -> bool {
    let mut chunk = [0; READ_CHUNK];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::SystemTime;

    use socket2::SockRef;
    use state::{LotChange, LotId};

    use super::*;

    const QUEUE: usize = 4;
    const MAX_DROPS: u32 = 3;

    /// A subscribed connection over a real loopback socket whose both buffers are small, the
    /// peer's end (which reads only when told to), and the context the connection runs in.
    fn subscribed() -> (Connection, std::net::TcpStream, Context) {
        subscribed_with(MAX_DROPS, Duration::from_secs(60))
    }

    /// [`subscribed`], disconnected after `max_drops` drops and with `line_timeout`.
    fn subscribed_with(
        max_drops: u32,
        line_timeout: Duration,
    ) -> (Connection, std::net::TcpStream, Context) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let (stream, peer) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        SockRef::from(&stream).set_send_buffer_size(4096).unwrap();
        let registry = Arc::new(Registry::new(
            vec![LotId::new("A").unwrap()],
            QUEUE,
            max_drops,
        ));
        let ctx = Context {
            registry,
            doorbell: Doorbell::detached(),
            idle_timeout: Duration::from_secs(60),
            line_timeout,
            keep_alive: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(60),
        };
        let token = Token(1);
        let mut connection = Connection::new(
            Stream::Plain(mio::net::TcpStream::from_std(stream)),
            peer,
            token,
            Instant::now(),
            Held::new(()),
            Session::new(None),
        );
        ctx.registry
            .subscribe(
                &mut connection.subscription,
                Topic::Lot("A"),
                peer,
                (&ctx.doorbell, token),
                Encoding::Lines,
            )
            .unwrap();
        let peer_end: std::net::TcpStream = socket.into();
        // A read that would wait for ever fails the test instead.
        peer_end
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (connection, peer_end, ctx)
    }

    fn publish(ctx: &Context, free: u32) {
        ctx.registry.publish(&LotChange {
            lot: LotId::new("A").unwrap(),
            free,
            status: state::Availability::of(free, 0),
            seq: u64::from(free) + 1,
            at: SystemTime::now(),
        });
    }

    fn drops(ctx: &Context) -> u64 {
        ctx.registry.counters().snapshot().events_dropped
    }

    /// Drops count towards disconnection only while the socket takes nothing: a send that gets
    /// some bytes through, however few, clears the count, and `max_overflow_drops` drops with
    /// the socket full doom the subscriber, one fewer does not.
    #[test]
    fn drops_count_only_while_the_socket_takes_nothing() {
        let (mut connection, mut peer, ctx) = subscribed();
        let now = Instant::now();
        // Publish and send until the pending output is at its cap and the queue starts to drop.
        let mut free = 0;
        while drops(&ctx) == 0 {
            assert!(free < 100_000, "the queue never overflowed");
            publish(&ctx, free);
            free += 1;
            connection.send(now).unwrap();
        }
        // A send through a socket that takes nothing marks the subscriber as not reading.
        connection.send(now).unwrap();
        let subscriber = connection.subscription.as_ref().unwrap().subscriber();
        publish(&ctx, free);
        assert_eq!(subscriber.consecutive_drops(), 2);
        assert!(!subscriber.is_doomed());
        // The peer takes a little at a time: the first send that gets bytes through clears the
        // count, with plenty still pending. (The kernel reopens the window only once enough of
        // the receive buffer is free, so how many reads that takes is the kernel's business.)
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut some = [0; 1024];
        loop {
            peer.read_exact(&mut some).unwrap();
            std::thread::sleep(Duration::from_millis(1));
            connection.send(now).unwrap();
            let subscriber = connection.subscription.as_ref().unwrap().subscriber();
            if subscriber.consecutive_drops() == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sends that got bytes through never cleared the count"
            );
        }
        assert!(!connection.output.is_empty());
        // Full again: the drops with nothing taken doom it at the third, and not before.
        while connection.output.len() < MAX_PENDING_OUTPUT {
            publish(&ctx, free);
            free += 1;
            connection.send(now).unwrap();
        }
        connection.send(now).unwrap();
        let subscriber = connection.subscription.as_ref().unwrap().subscriber();
        while !subscriber.is_doomed() {
            assert!(subscriber.consecutive_drops() < MAX_DROPS);
            publish(&ctx, free);
            free += 1;
        }
        assert_eq!(subscriber.consecutive_drops(), MAX_DROPS);
        assert!(matches!(
            connection.send(now),
            Err(CloseReason::SlowSubscriber { drops: MAX_DROPS })
        ));
    }

    /// The write-stall clock restarts whenever the socket takes some bytes: a reader that is
    /// slow but steady (its pending output never drains) stays connected long past the line
    /// timeout, and is cut off only once it takes nothing for a whole line timeout. The clock
    /// is the connection's own `now`, so the rounds below are hours of reading in no time.
    #[test]
    fn a_slow_but_steady_reader_outlives_the_line_timeout() {
        let line_timeout = Duration::from_secs(10);
        // No drop may disconnect it: only the stall rule is on trial.
        let (mut connection, mut peer, ctx) = subscribed_with(u32::MAX, line_timeout);
        let start = Instant::now();
        let mut free = 0;
        while connection.output.len() < MAX_PENDING_OUTPUT {
            assert!(free < 100_000, "the socket never filled");
            publish(&ctx, free);
            free += 1;
            connection.step(&ctx, false, start).unwrap();
        }
        // Each round comes 0.6 line timeouts after the last: the reader takes 1 KiB at a time
        // until a step at that time gets bytes through (when the kernel reopens the window is
        // its business), with events still pending behind them.
        let mut at = start;
        let mut some = [0; 1024];
        for round in 1..=10 {
            at += line_timeout * 3 / 5;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                peer.read_exact(&mut some).unwrap();
                // A full queue keeps the pending output at its cap.
                for _ in 0..QUEUE {
                    publish(&ctx, free);
                    free += 1;
                }
                if let Err(reason) = connection.step(&ctx, false, at) {
                    panic!("round {round}: closed for {reason:?} while the peer was reading");
                }
                if connection.last_output == at {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the socket took nothing however much the peer read"
                );
            }
            // Back to a full socket and pending output at its cap, for the next round.
            while connection.output.len() < MAX_PENDING_OUTPUT {
                assert!(Instant::now() < deadline, "round {round}: never full again");
                for _ in 0..QUEUE {
                    publish(&ctx, free);
                    free += 1;
                }
                connection.step(&ctx, false, at).unwrap();
            }
        }
        // Now it stops reading: a line timeout after the last bytes went out, it is closed.
        let just_before = at + line_timeout - Duration::from_millis(1);
        connection.step(&ctx, false, just_before).unwrap();
        assert!(matches!(
            connection.step(&ctx, false, at + line_timeout),
            Err(CloseReason::WriteStalled)
        ));
    }
}
