//! The notifier threads. Each owns the sockets of the connections assigned to it and is the
//! only thread that reads or writes them.
//!
//! A notifier sleeps in its own `mio::Poll` until one of three things happens: a socket it
//! owns becomes readable (more `SUBSCRIBE` lines, or EOF) or writable again (after a write
//! that would have blocked); its [`Doorbell`] is rung, because publishers queued events for
//! some of its subscribers (or the broker sent a command); or the earliest deadline of its
//! connections passes (a timeout, the end of a closing linger). Nothing wakes it on a timer
//! to look for work, and a doorbell makes it visit only the subscribers that have events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use auth::{Authenticator, Session};
use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use transport::{Stream, TlsAcceptor};
use warn_limit::peer_warn;

use crate::connection::{CloseReason, Connection, Context};
use crate::registry::Registry;
use crate::{EventStream, Held};

/// Shortest time between two deliveries triggered by the doorbell. During a burst of events
/// this batches them (at 60,000 events/s, about 15 per write) instead of waking the notifier,
/// and writing every socket, once per event; a lone event after a quiet spell goes out at once.
/// Short enough that a subscriber queue of the default 64 events does not overflow at rates a
/// 2-core server can produce.
const DELIVERY_INTERVAL: Duration = Duration::from_micros(250);

/// Token of the notifier's waker (its doorbell and its control channel).
const WAKE: Token = Token(0);

/// Readiness events taken per wait.
const EVENTS_PER_WAIT: usize = 1024;

/// What the broker tells a notifier.
#[derive(Debug)]
pub(crate) enum Command {
    /// Take over this accepted, configured connection.
    Attach {
        /// The connection's socket, already non-blocking.
        stream: TcpStream,
        /// The peer's address, for logs.
        peer: SocketAddr,
        /// Kept until the connection closes.
        held: Held,
    },
    /// Take over this HTTP connection as an event stream.
    AttachStream {
        /// The connection's stream (plain or TLS), already non-blocking.
        stream: Stream,
        /// The peer's address, for logs.
        peer: SocketAddr,
        /// Kept until the connection closes.
        held: Held,
        /// What it follows and what goes out first.
        request: EventStream,
    },
    /// Flush pending output until `deadline`, close every connection and exit.
    Shutdown {
        /// When to give up flushing.
        deadline: Instant,
    },
}

/// The timeouts a notifier enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// See `BrokerConfig::idle_timeout`.
    pub(crate) idle: Duration,
    /// See `BrokerConfig::line_timeout`.
    pub(crate) line: Duration,
    /// See `BrokerConfig::stream_keep_alive`.
    pub(crate) keep_alive: Duration,
    /// See `BrokerConfig::auth_timeout`.
    pub(crate) auth: Duration,
}

/// Who may use the port, and how it is reached.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// See `BrokerConfig::auth`.
    pub(crate) auth: Option<Arc<Authenticator>>,
    /// See `BrokerConfig::tls`.
    pub(crate) tls: Option<TlsAcceptor>,
}

/// How publishers (and the broker) wake a notifier. Ringing never blocks: it records which
/// connection has events and makes one `eventfd` write per wake-up, however many rings it
/// covers.
#[derive(Debug)]
pub(crate) struct Doorbell {
    waker: Waker,
    /// Set by the first ring after the notifier last looked; later rings skip the wake-up.
    rung: AtomicBool,
    /// Connections whose subscriber queued events since the notifier last looked.
    pending: Mutex<Vec<Token>>,
}

impl Doorbell {
    /// Says that connection `token` has events queued.
    pub(crate) fn ring(&self, token: Token) {
        self.pending.lock().push(token);
        self.wake();
    }

    /// Wakes the notifier unless a wake-up is already pending.
    fn wake(&self) {
        if !self.rung.swap(true, Ordering::AcqRel)
            && let Err(err) = self.waker.wake()
        {
            log::error!("cannot wake a pub/sub notifier: {err}");
        }
    }

    /// A doorbell whose notifier is gone, for tests of the publishing side.
    #[cfg(test)]
    pub(crate) fn detached() -> Arc<Doorbell> {
        #[allow(clippy::expect_used)]
        let poll = Poll::new().expect("a test poll");
        #[allow(clippy::expect_used)]
        let waker = Waker::new(poll.registry(), WAKE).expect("a test waker");
        Arc::new(Doorbell {
            waker,
            rung: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// The connections rung for since the last call. The flag is cleared first, so a ring
    /// that comes while the list is being taken wakes the notifier again.
    pub(crate) fn take(&self) -> Vec<Token> {
        self.rung.store(false, Ordering::Release);
        std::mem::take(&mut *self.pending.lock())
    }
}

/// The broker's side of a notifier: its control channel and its doorbell.
#[derive(Debug)]
pub(crate) struct NotifierHandle {
    control: Sender<Command>,
    doorbell: Arc<Doorbell>,
}

impl NotifierHandle {
    /// Sends a command and wakes the notifier to read it; `false` when the notifier is
    /// gone (it can only have panicked): the command is dropped, and with it any socket it
    /// carried, which closes.
    pub(crate) fn send(&self, command: Command) -> bool {
        if self.control.send(command).is_err() {
            return false;
        }
        self.doorbell.wake();
        true
    }
}

impl Drop for NotifierHandle {
    /// A notifier whose handle is gone stops at once (after a proper shutdown, it already has).
    fn drop(&mut self) {
        let _ = self.send(Command::Shutdown {
            deadline: Instant::now(),
        });
    }
}

/// Starts notifier number `number` (its thread is named `notifier-<number>`); returns its
/// handle and thread. Dropping the handle's control channel also shuts it down, with no
/// grace.
pub(crate) fn spawn(
    number: usize,
    registry: Arc<Registry>,
    timeouts: Timeouts,
    access: Access,
) -> io::Result<(NotifierHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let doorbell = Arc::new(Doorbell {
        waker: Waker::new(poll.registry(), WAKE)?,
        rung: AtomicBool::new(false),
        pending: Mutex::new(Vec::new()),
    });
    let (control_sender, control) = crossbeam_channel::unbounded();
    let notifier = Notifier {
        ctx: Context {
            registry,
            doorbell: Arc::clone(&doorbell),
            idle_timeout: timeouts.idle,
            line_timeout: timeouts.line,
            keep_alive: timeouts.keep_alive,
            auth_timeout: timeouts.auth,
        },
        access,
        poll,
        connections: HashMap::new(),
        next_token: WAKE.0 + 1,
        deadlines: BinaryHeap::new(),
        undelivered: Vec::new(),
        last_delivery: Instant::now(),
        busy: Vec::new(),
    };
    let thread = thread::Builder::new()
        .name(format!("notifier-{number}"))
        .spawn(move || notifier.run(&control))?;
    Ok((
        NotifierHandle {
            control: control_sender,
            doorbell,
        },
        thread,
    ))
}

/// A connection and the deadline the heap holds for it.
struct Entry {
    connection: Connection,
    /// The deadline last pushed to the heap; a new one is pushed only if it is earlier.
    scheduled: Option<Instant>,
}

struct Notifier {
    ctx: Context,
    access: Access,
    poll: Poll,
    connections: HashMap<Token, Entry>,
    /// Tokens are never reused, so a late event or ring cannot reach another connection.
    next_token: usize,
    /// Connections' deadlines, earliest first; stale entries are checked and skipped.
    deadlines: BinaryHeap<Reverse<(Instant, Token)>>,
    /// Rung connections whose delivery waits for the batching interval to end.
    undelivered: Vec<Token>,
    last_delivery: Instant,
    /// Connections that can make progress without a readiness event (input left unread).
    busy: Vec<Token>,
}

impl Notifier {
    fn run(mut self, control: &Receiver<Command>) {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let now = Instant::now();
            let timeout = if self.busy.is_empty() {
                let next_delivery =
                    (!self.undelivered.is_empty()).then(|| self.last_delivery + DELIVERY_INTERVAL);
                let next_deadline = self.deadlines.peek().map(|&Reverse((at, _))| at);
                [next_delivery, next_deadline]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|at| at.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() != io::ErrorKind::Interrupted {
                    log::error!("pub/sub notifier: poll failed: {err}");
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == WAKE {
                    if let Some(deadline) = self.take_commands(control) {
                        return self.shut_down(control, deadline);
                    }
                    let rung = self.ctx.doorbell.take();
                    self.undelivered.extend(rung);
                } else {
                    self.step(event.token(), event.is_readable(), now);
                }
            }
            for token in std::mem::take(&mut self.busy) {
                self.step(token, false, now);
            }
            if !self.undelivered.is_empty() && now >= self.last_delivery + DELIVERY_INTERVAL {
                self.deliver(now);
            }
            self.expire(now);
        }
    }

    /// Handles the broker's commands; returns the deadline if one was to shut down.
    fn take_commands(&mut self, control: &Receiver<Command>) -> Option<Instant> {
        loop {
            match control.try_recv() {
                Ok(Command::Attach { stream, peer, held }) => self.adopt(stream, peer, held),
                Ok(Command::AttachStream {
                    stream,
                    peer,
                    held,
                    request,
                }) => self.adopt_stream(stream, peer, held, request),
                Ok(Command::Shutdown { deadline }) => return Some(deadline),
                Err(crossbeam_channel::TryRecvError::Empty) => return None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Some(Instant::now()),
            }
        }
    }

    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr, held: Held) {
        log::debug!("{peer} connected to the pub/sub port");
        let token = Token(self.next_token);
        self.next_token += 1;
        let now = Instant::now();
        let stream = match Stream::accept(
            mio::net::TcpStream::from_std(stream),
            self.access.tls.as_ref(),
        ) {
            Ok(stream) => stream,
            Err(err) => {
                log::error!("pub/sub client {peer}: cannot start a TLS session: {err}");
                self.ctx.registry.counters().connection_closed();
                return;
            }
        };
        let session = Session::new(self.access.auth.as_ref());
        let connection = Connection::new(stream, peer, token, now, held, session);
        self.register(connection, now);
    }

    fn adopt_stream(&mut self, stream: Stream, peer: SocketAddr, held: Held, request: EventStream) {
        let token = Token(self.next_token);
        self.next_token += 1;
        let now = Instant::now();
        let mut connection =
            Connection::event_stream(stream, peer, token, now, held, request.preamble);
        // Subscribed before it is registered: the doorbell may ring for it at once, and the
        // snapshots are queued behind the preamble, ahead of any change.
        connection.open_stream(&self.ctx, &request.lots, request.owner.as_deref());
        self.register(connection, now);
    }

    /// Registers a new connection with the poll and steps it at once.
    fn register(&mut self, mut connection: Connection, now: Instant) {
        let token = connection.token();
        if let Err(err) = self.poll.registry().register(
            connection.stream_mut(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.close(connection, CloseReason::Io(err));
        }
        self.connections.insert(
            token,
            Entry {
                connection,
                scheduled: None,
            },
        );
        // At once: a SUBSCRIBE line often arrives with the connection, and an event stream
        // has its response head and snapshots to send.
        self.step(token, true, now);
    }

    /// Lets connection `token` do what it can, then closes it or updates its deadline.
    fn step(&mut self, token: Token, readable: bool, now: Instant) {
        self.with(token, |connection, ctx| connection.step(ctx, readable, now));
    }

    /// Writes queued events to every connection rung for.
    fn deliver(&mut self, now: Instant) {
        self.last_delivery = now;
        let mut rung = std::mem::take(&mut self.undelivered);
        rung.sort_unstable();
        rung.dedup();
        for token in rung {
            self.with(token, |connection, _| connection.deliver(now));
        }
    }

    /// Runs `action` on connection `token` (if it is still open), then closes it if the
    /// action failed, or reschedules it.
    fn with(
        &mut self,
        token: Token,
        action: impl FnOnce(&mut Connection, &Context) -> Result<(), CloseReason>,
    ) {
        let Some(entry) = self.connections.get_mut(&token) else {
            return;
        };
        if let Err(reason) = action(&mut entry.connection, &self.ctx) {
            if let Some(entry) = self.remove(token) {
                self.close(entry.connection, reason);
            }
            return;
        }
        if entry.connection.wants_step() && !self.busy.contains(&token) {
            self.busy.push(token);
        }
        if let Some(deadline) = entry.connection.deadline(&self.ctx)
            && entry.scheduled.is_none_or(|scheduled| deadline < scheduled)
        {
            entry.scheduled = Some(deadline);
            self.deadlines.push(Reverse((deadline, token)));
        }
    }

    /// Steps every connection whose deadline has come; a deadline that moved later is
    /// pushed again.
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, token))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(entry) = self.connections.get_mut(&token) {
                entry.scheduled = None;
                self.step(token, false, now);
            }
        }
    }

    fn remove(&mut self, token: Token) -> Option<Entry> {
        let mut entry = self.connections.remove(&token)?;
        let _ = self
            .poll
            .registry()
            .deregister(entry.connection.stream_mut());
        Some(entry)
    }

    fn close(&mut self, connection: Connection, reason: CloseReason) {
        let who = describe(&connection);
        let counters = self.ctx.registry.counters();
        match reason {
            CloseReason::PeerClosed => log::debug!("{who} closed the connection"),
            CloseReason::Shutdown => log::debug!("{who} closed: the broker is shutting down"),
            CloseReason::SlowSubscriber { drops } => {
                // Redis disconnects slow subscribers outright and mini-redis lets them skip;
                // we drop their oldest events and disconnect only those that stopped reading.
                counters.slow_disconnect();
                peer_warn!(
                    "{who} disconnected: not reading, {drops} events dropped while its socket \
                     took no bytes"
                );
            }
            CloseReason::Io(error) if transport::is_plain_text(&error) => {
                peer_warn!("{who} closed: it sent plain text to this TLS port");
            }
            CloseReason::Io(error) => log::debug!("{who} dropped: {error}"),
            CloseReason::IdleTimeout => {
                peer_warn!(
                    "{who} closed: no SUBSCRIBE within {:?}",
                    self.ctx.idle_timeout
                );
            }
            CloseReason::AuthTimeout => {
                peer_warn!(
                    "{who} closed: not authenticated within {:?} (auth_timeout)",
                    self.ctx.auth_timeout
                );
            }
            CloseReason::AuthFailures => {
                peer_warn!("{who} closed: too many wrong tokens");
            }
            CloseReason::LineTimeout => {
                peer_warn!(
                    "{who} closed: a line took longer than {:?}",
                    self.ctx.line_timeout
                );
            }
            CloseReason::WriteStalled => {
                counters.slow_disconnect();
                peer_warn!(
                    "{who} closed: read nothing of its pending output for {:?}",
                    self.ctx.line_timeout
                );
            }
            CloseReason::LineTooLong => {
                peer_warn!("{who} closed: sent a line over the length limit");
            }
            CloseReason::NotALine => {
                peer_warn!("{who} closed: sent an RPC frame to the pub/sub port");
            }
        }
        let pubsub_port = !connection.is_event_stream();
        connection.close(&self.ctx.registry);
        // Event streams are the HTTP port's connections, counted there.
        if pubsub_port {
            counters.connection_closed();
        }
    }

    /// Takes every subscriber off the topic lists (so the work is finite), writes what is
    /// queued or pending until `deadline`, waiting for sockets to become writable, then
    /// closes everything.
    fn shut_down(mut self, control: &Receiver<Command>, deadline: Instant) {
        for entry in self.connections.values_mut() {
            entry.connection.end_subscription(&self.ctx.registry);
        }
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let now = Instant::now();
            let mut failed = Vec::new();
            for (&token, entry) in &mut self.connections {
                match entry.connection.flush(now) {
                    Ok(true) => {}
                    Ok(false) => failed.push((token, None)),
                    Err(reason) => failed.push((token, Some(reason))),
                }
            }
            let pending = failed.iter().any(|(_, reason)| reason.is_none());
            for (token, reason) in failed {
                if let Some(reason) = reason
                    && let Some(entry) = self.remove(token)
                {
                    self.close(entry.connection, reason);
                }
            }
            if !pending || now >= deadline {
                break;
            }
            // Wait for a socket to take more, or the deadline.
            let _ = self.poll.poll(&mut events, Some(deadline - now));
        }
        let tokens: Vec<Token> = self.connections.keys().copied().collect();
        for token in tokens {
            if let Some(entry) = self.remove(token) {
                self.close(entry.connection, CloseReason::Shutdown);
            }
        }
        // The broker stops sending before it shuts notifiers down; anything still here
        // was counted as a connection and must be uncounted.
        while let Ok(command) = control.try_recv() {
            match command {
                Command::Attach { held, .. } => {
                    self.ctx.registry.counters().connection_closed();
                    drop(held);
                }
                Command::AttachStream { .. } | Command::Shutdown { .. } => {}
            }
        }
    }
}

fn describe(connection: &Connection) -> String {
    match connection.subscription_id() {
        Some(id) if connection.is_event_stream() => {
            format!("event stream {} (subscription {id})", connection.peer())
        }
        Some(id) => format!("subscriber {} (subscription {id})", connection.peer()),
        None => format!("pub/sub client {}", connection.peer()),
    }
}
