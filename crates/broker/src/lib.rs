//! The pub/sub broker behind the server's pub/sub port (9002): clients send
//! `SUBSCRIBE <lotId>` or `SUBSCRIBE ALL`, and from then on receive one JSON line per change of
//! a followed lot's free count (the wire format lives in [`framing::pubsub`]).
//!
//! # How it fits
//! The server registers [`Broker::listener`] with `state::ParkingState::add_listener`; the
//! state calls it, after releasing the lot's lock, on the RPC or sensor thread that made the
//! change, once per change and in order per lot. The server's pub/sub accept loop hands every
//! accepted socket to [`Broker::attach`]. The HTTP port hands each `GET /v1/events` connection
//! to [`Broker::attach_stream`]: an event stream is a subscriber like any other (same queue,
//! same back-pressure, same notifier threads, no thread of its own), with its own encoding
//! ([`framing::sse`]) and a keep-alive comment when it is quiet. A driver's notice stream
//! (`GET /v1/me/events`) is one too, following an owner instead of lots: the state's notices
//! reach it through [`Broker::notice_listener`]. Nothing else crosses the boundary.
//!
//! # Guarantees
//! - **Publishing never blocks a worker.** [`Broker::on_lot_change`] takes a read lock on the
//!   topic lists (writers hold it only to edit the lists, never during I/O), encodes the event line once (only if someone is subscribed), offers it to
//!   each subscriber's bounded queue with `try_send`, and rings the owning notifier's doorbell
//!   (a `bounded(1)` channel, so wake-ups coalesce and ringing never waits). It does no I/O.
//! - **Slow subscribers cost bounded memory and are eventually cut off.** Each subscriber has
//!   a queue of [`BrokerConfig::queue_size`] lines. When it is full, the *oldest* line is
//!   dropped (a laggard wants the latest counts) and counted. A subscriber whose socket stops
//!   taking bytes is disconnected (and logged at warn) after
//!   [`BrokerConfig::max_overflow_drops`] drops; one that reads but is briefly outpaced (its
//!   notifier starved of CPU during a burst) loses its oldest events, counted, and stays
//!   connected. New subscriptions are always accepted.
//! - **No subscriber can stall another.** Sockets are non-blocking and owned by notifier
//!   threads ([`BrokerConfig::notifier_threads`], connections assigned round-robin). Unwritten
//!   output waits in a capped per-connection buffer; while it is over the cap the connection
//!   takes nothing from its queue, so back-pressure turns into counted drops, not blocking.
//! - **Order and uniqueness.** A subscriber receives one lot's events in the order the changes
//!   happened (FIFO queue, one publisher at a time per lot), and each change at most once,
//!   however its subscriptions overlap (a lot twice, or a lot plus `ALL`).
//! - **Snapshots.** Right after `OK`, a subscriber gets the last published value of every lot
//!   its subscription newly covers (`SNAPSHOT` lines, from [`Broker::seed`] until the first
//!   change); a change is either in the snapshot or among the events after it, never both.
//! - **Limits.** At most [`BrokerConfig::max_connections`] connections (more get `ERR BUSY`);
//!   command lines of at most [`framing::pubsub::MAX_LINE_LEN`] bytes (longer: `ERR
//!   LINE_TOO_LONG`, then close); [`BrokerConfig::line_timeout`] to finish a line, and for a
//!   peer to take some of its pending output; [`BrokerConfig::idle_timeout`] to subscribe
//!   (only until the first successful `SUBSCRIBE`).
//! - **Shutdown is bounded.** [`Broker::shutdown`] flushes for at most its grace period,
//!   closes every socket and joins the notifiers.
//!
//! # Layout
//! - `lib.rs`: [`Broker`], its [`BrokerConfig`], attaching connections and shutdown.
//! - `registry`: topic lists, subscribers (each with its encoding) and their bounded queues;
//!   the publishing path, which encodes each change once per encoding in use.
//! - `notifier`: the notifier threads, their wake-ups and poll schedule.
//! - `connection`: one connection's non-blocking reading, command handling and writing, for
//!   pub/sub port connections and event streams alike.
//! - `stats`: the counters behind [`BrokerStats`].

#![forbid(unsafe_code)]

mod connection;
mod notifier;
mod registry;
mod stats;

use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use auth::Authenticator;
use framing::pubsub::{self, PubsubError, PubsubErrorCode};
use parking_lot::{Mutex, RwLock};
use state::{Listener, LotChange, LotId, Notice, NoticeListener};
use transport::{Stream, TlsAcceptor};

use crate::notifier::{Command, NotifierHandle, Timeouts};
use crate::registry::Registry;
use warn_limit::peer_warn;

pub use crate::stats::BrokerStats;

/// What an event stream ([`Broker::attach_stream`]) follows, and what it sends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStream {
    /// The lots it follows; empty for every lot. Ignored when `owner` is set.
    pub lots: Vec<LotId>,
    /// For a driver's stream (`GET /v1/me/events`): the owner (`@<username>`) whose
    /// notices it follows, instead of any lot's availability.
    pub owner: Option<String>,
    /// Bytes to send before any event: the HTTP response head, after whatever replies
    /// before it the connection had not written yet.
    pub preamble: Vec<u8>,
}

/// Something the caller keeps alive while a connection is open and lets go when it closes,
/// such as its place in a server-wide connection count.
pub struct Held {
    _value: Box<dyn Send>,
}

impl Held {
    /// Holds `value` until the connection closes.
    pub fn new(value: impl Send + 'static) -> Self {
        Held {
            _value: Box::new(value),
        }
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Held")
    }
}

/// Longest grace [`Broker::shutdown`] honours; longer ones are cut to it (it keeps the
/// deadline computable for any `Duration`).
const MAX_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// The broker's limits and sizes, and who may subscribe.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Event lines each subscriber's queue holds before the oldest is dropped (at least 1;
    /// default 64). Bounds a slow subscriber's memory.
    pub queue_size: usize,
    /// Drops, while its socket takes no bytes, after which a subscriber is disconnected
    /// (default 10; 0 acts as 1). Any write the socket accepts resets the count.
    pub max_overflow_drops: u32,
    /// Threads that own the subscriber sockets (at least 1; default 2).
    pub notifier_threads: usize,
    /// How long a connection may stay silent before its first successful `SUBSCRIBE`
    /// (default 300 s). Does not apply once subscribed: a quiet lot is no reason to close.
    pub idle_timeout: Duration,
    /// How long a started command line may take to complete (default 10 s), so that a peer
    /// cannot hold a half-sent line open forever. Also how long a connection may leave its
    /// pending output unread before it is closed (a stuck subscriber to a quiet lot drops no
    /// events, so the overflow rule alone would never free its buffers).
    pub line_timeout: Duration,
    /// Most open pub/sub connections (default 1024); beyond it a connection gets
    /// `ERR BUSY <detail>` and is closed.
    pub max_connections: usize,
    /// `SO_SNDBUF` for subscriber sockets, in bytes (default 32 KiB; 0 keeps the system's).
    /// Small, so that a subscriber that stops reading is detected by its queue overflowing
    /// rather than hidden by a large kernel buffer.
    pub send_buffer: usize,
    /// How long an event stream may send nothing before it gets a keep-alive comment
    /// (default 15 s): proxies and load balancers close connections that stay silent.
    pub stream_keep_alive: Duration,
    /// The key table; with one, a connection must `AUTH <token>` before it may `SUBSCRIBE`
    /// (default none: anyone may).
    pub auth: Option<Arc<Authenticator>>,
    /// With `auth`, how long a connection may go unauthenticated before it is closed
    /// (default 10 s).
    pub auth_timeout: Duration,
    /// The certificate, when the port speaks TLS (default none).
    pub tls: Option<TlsAcceptor>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            queue_size: 64,
            max_overflow_drops: 10,
            notifier_threads: 2,
            idle_timeout: Duration::from_secs(300),
            line_timeout: Duration::from_secs(10),
            max_connections: 1024,
            send_buffer: 32 * 1024,
            stream_keep_alive: Duration::from_secs(15),
            auth: None,
            auth_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// A [`BrokerConfig`] that cannot work. [`Broker::start`] returns it inside an
/// [`io::Error`] of kind [`io::ErrorKind::InvalidInput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `queue_size` is 0: no event could ever be queued.
    ZeroQueueSize,
    /// `notifier_threads` is 0: no connection could be served.
    ZeroNotifierThreads,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroQueueSize => write!(f, "the pub/sub queue size must be at least 1"),
            ConfigError::ZeroNotifierThreads => {
                write!(f, "at least one pub/sub notifier thread is needed")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for io::Error {
    fn from(error: ConfigError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, error)
    }
}

/// The running broker: its notifier threads, the topic lists and the counters. Share it (in an
/// `Arc`) between the accept loop and whoever shuts the server down.
pub struct Broker {
    registry: Arc<Registry>,
    /// One control channel per notifier.
    notifiers: Vec<NotifierHandle>,
    /// The notifier threads; `None` once shut down.
    threads: Mutex<Option<Vec<JoinHandle<()>>>>,
    /// Whether [`Broker::attach`] still takes connections. `attach` holds the read lock while
    /// it hands a connection over, so that once `shutdown` has taken the write lock no
    /// connection can reach a notifier that is going away.
    accepting: RwLock<bool>,
    /// Round-robin cursor over `notifiers`.
    next_notifier: AtomicUsize,
    config: BrokerConfig,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Starts the broker for `lots` (the ids clients may subscribe to; `SUBSCRIBE ALL` also
    /// covers lots not in the list) and spawns its notifier threads, named `notifier-1`,
    /// `notifier-2`, ... Fails if the configuration is unusable ([`ConfigError`]) or a thread
    /// cannot be spawned.
    pub fn start(lots: Vec<LotId>, config: BrokerConfig) -> io::Result<Broker> {
        if config.queue_size == 0 {
            return Err(ConfigError::ZeroQueueSize.into());
        }
        if config.notifier_threads == 0 {
            return Err(ConfigError::ZeroNotifierThreads.into());
        }
        let registry = Arc::new(Registry::new(
            lots,
            config.queue_size,
            config.max_overflow_drops,
        ));
        let timeouts = Timeouts {
            idle: config.idle_timeout,
            line: config.line_timeout,
            keep_alive: config.stream_keep_alive,
            auth: config.auth_timeout,
        };
        let mut notifiers = Vec::with_capacity(config.notifier_threads);
        let mut threads = Vec::with_capacity(config.notifier_threads);
        for number in 1..=config.notifier_threads {
            let access = notifier::Access {
                auth: config.auth.clone(),
                tls: config.tls.clone(),
            };
            match notifier::spawn(number, Arc::clone(&registry), timeouts, access) {
                Ok((control, thread)) => {
                    notifiers.push(control);
                    threads.push(thread);
                }
                Err(error) => {
                    // Dropping their handles stops the notifiers already started.
                    drop(notifiers);
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(error);
                }
            }
        }
        Ok(Broker {
            registry,
            notifiers,
            threads: Mutex::new(Some(threads)),
            accepting: RwLock::new(true),
            next_notifier: AtomicUsize::new(0),
            config,
        })
    }

    /// A [`Listener`] that calls [`Broker::on_lot_change`], for
    /// `ParkingState::add_listener`. It stays harmless after shutdown (nobody is subscribed).
    pub fn listener(&self) -> Listener {
        let registry = Arc::clone(&self.registry);
        Arc::new(move |change: &LotChange| registry.publish(change))
    }

    /// The state's notice listener (`state::ParkingState::add_notice_listener`): each
    /// notice goes to the streams that follow its owner, written by `encode` (the HTTP
    /// port's format) once, and only when such a stream is open. A notice without an owner
    /// goes nowhere.
    pub fn notice_listener(
        &self,
        encode: impl Fn(&Notice, &mut Vec<u8>) + Send + Sync + 'static,
    ) -> NoticeListener {
        let registry = Arc::clone(&self.registry);
        Arc::new(move |notice: &Notice| {
            if let Some(owner) = notice.owner() {
                registry.publish_notice(owner, |out| encode(notice, out));
            }
        })
    }

    /// Records each lot's current value before anything changes (the state at start), so
    /// that subscribers get a `SNAPSHOT` of every lot they subscribe to, changed yet or not.
    pub fn seed(&self, current: &[LotChange]) {
        self.registry.seed(current);
    }

    /// Queues an event for every subscriber of `change.lot` and every `ALL` subscriber. Never
    /// blocks on a subscriber and does no I/O, so it is safe on any worker thread; calls for
    /// one lot must come in the order of the changes (the state guarantees this).
    pub fn on_lot_change(&self, change: &LotChange) {
        self.registry.publish(change);
    }

    /// Takes over an accepted pub/sub connection and returns at once: the socket is made
    /// non-blocking and handed to a notifier. Over [`BrokerConfig::max_connections`], or after
    /// shutdown, the peer gets `ERR BUSY <detail>` and the socket is closed instead.
    pub fn attach(&self, stream: TcpStream, peer: SocketAddr) {
        self.attach_holding(stream, peer, Held::new(()));
    }

    /// [`Broker::attach`], keeping `held` until the connection closes (it is dropped after
    /// the connection is uncounted, so a count it releases never runs ahead of the broker's).
    pub fn attach_holding(&self, stream: TcpStream, peer: SocketAddr, held: Held) {
        let accepting = self.accepting.read();
        if !*accepting {
            self.refuse_busy(stream, "the server is shutting down");
            return;
        }
        let counters = self.registry.counters();
        if !counters.try_add_connection(self.config.max_connections) {
            peer_warn!(
                "refused pub/sub client {peer}: {} connections already open",
                self.config.max_connections
            );
            let detail = format!(
                "at most {} pub/sub connections are allowed",
                self.config.max_connections
            );
            self.refuse_busy(stream, &detail);
            return;
        }
        if let Err(error) = configure(&stream, self.config.send_buffer) {
            log::debug!("dropped pub/sub client {peer}: cannot set up its socket: {error}");
            counters.connection_closed();
            return;
        }
        let index = self.next_notifier.fetch_add(1, Ordering::Relaxed) % self.notifiers.len();
        if !self.notifiers[index].send(Command::Attach { stream, peer, held }) {
            log::error!("pub/sub notifier {} is not running", index + 1);
            counters.connection_closed();
        }
    }

    /// Takes over an HTTP connection as an event stream and returns at once: the stream
    /// (non-blocking; plain, or TLS with its session) is handed to a notifier, which sends `request.preamble`, then the
    /// current value of every lot the stream follows, then one event per change, in the
    /// stream's own encoding (`framing::sse`), under the same queue and back-pressure rules
    /// as a pub/sub subscriber. The caller has admitted the connection (its limits are the
    /// HTTP port's, not [`BrokerConfig::max_connections`]); after shutdown it is closed.
    pub fn attach_stream(
        &self,
        stream: Stream,
        peer: SocketAddr,
        held: Held,
        request: EventStream,
    ) {
        let accepting = self.accepting.read();
        if !*accepting {
            log::debug!("event stream {peer} closed: the server is shutting down");
            return;
        }
        if let Err(error) = configure_stream(stream.tcp(), self.config.send_buffer) {
            log::debug!("dropped event stream {peer}: cannot set up its socket: {error}");
            return;
        }
        let index = self.next_notifier.fetch_add(1, Ordering::Relaxed) % self.notifiers.len();
        let command = Command::AttachStream {
            stream,
            peer,
            held,
            request,
        };
        if !self.notifiers[index].send(command) {
            log::error!("pub/sub notifier {} is not running", index + 1);
        }
    }

    /// The limits and sizes it was started with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Refuses a connection the caller has no room for: `ERR BUSY <detail>`, then close (on
    /// a TLS port just the close: the line would need a finished handshake first).
    pub fn refuse_busy(&self, stream: TcpStream, detail: &str) {
        if self.config.tls.is_some() {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        refuse(stream, detail);
    }

    /// The current counters.
    pub fn stats(&self) -> BrokerStats {
        self.registry.counters().snapshot()
    }

    /// Stops taking connections, lets the notifiers write what is queued or pending for up to
    /// `grace`, closes every socket and joins the notifier threads. Returns within about
    /// `grace` (plus one poll period). Idempotent; a concurrent call waits for the first.
    pub fn shutdown(&self, grace: Duration) {
        let mut threads = self.threads.lock();
        let Some(handles) = threads.take() else {
            return;
        };
        *self.accepting.write() = false;
        let deadline = Instant::now() + grace.min(MAX_GRACE);
        for control in &self.notifiers {
            let _ = control.send(Command::Shutdown { deadline });
        }
        for handle in handles {
            if handle.join().is_err() {
                log::error!("a pub/sub notifier thread panicked");
            }
        }
        let stats = self.stats();
        log::info!(
            "pub/sub broker stopped: {} changes published, {} event lines queued for subscribers, \
             {} dropped, {} slow subscribers disconnected",
            stats.changes_published,
            stats.events_published,
            stats.events_dropped,
            stats.slow_disconnects
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// Makes a subscriber socket non-blocking, with `TCP_NODELAY` (events are small and should
/// leave at once) and the configured send buffer.
fn configure(stream: &TcpStream, send_buffer: usize) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    if send_buffer > 0 {
        socket2::SockRef::from(stream).set_send_buffer_size(send_buffer)?;
    }
    Ok(())
}

/// [`configure`] for a socket that is already non-blocking (an event stream's, from the
/// scheduler's mio poller).
fn configure_stream(stream: &mio::net::TcpStream, send_buffer: usize) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if send_buffer > 0 {
        socket2::SockRef::from(stream).set_send_buffer_size(send_buffer)?;
    }
    Ok(())
}

/// Sends `ERR BUSY <detail>` with one non-blocking write and closes the socket. A fresh
/// socket's send buffer is empty, so the line goes out unless the peer is already gone.
fn refuse(mut stream: TcpStream, detail: &str) {
    let mut line = Vec::new();
    pubsub::encode_error(&mut line, &PubsubError::new(PubsubErrorCode::Busy, detail));
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write(&line);
    }
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Broker>();
    }

    #[test]
    fn unusable_configurations_are_refused() {
        for (config, expected) in [
            (
                BrokerConfig {
                    queue_size: 0,
                    ..BrokerConfig::default()
                },
                ConfigError::ZeroQueueSize,
            ),
            (
                BrokerConfig {
                    notifier_threads: 0,
                    ..BrokerConfig::default()
                },
                ConfigError::ZeroNotifierThreads,
            ),
        ] {
            let error = Broker::start(Vec::new(), config).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            let inner = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<ConfigError>());
            assert_eq!(inner, Some(&expected));
        }
        assert_eq!(
            ConfigError::ZeroQueueSize.to_string(),
            "the pub/sub queue size must be at least 1"
        );
        assert_eq!(
            ConfigError::ZeroNotifierThreads.to_string(),
            "at least one pub/sub notifier thread is needed"
        );
    }

    #[test]
    fn the_broker_keeps_its_configuration() {
        let config = BrokerConfig {
            queue_size: 3,
            notifier_threads: 1,
            ..BrokerConfig::default()
        };
        let broker = Broker::start(Vec::new(), config.clone()).unwrap();
        let kept = broker.config();
        assert_eq!(
            (kept.queue_size, kept.notifier_threads, kept.send_buffer),
            (3, 1, config.send_buffer)
        );
        let debug = format!("{broker:?}");
        assert!(
            debug.starts_with("Broker { config: BrokerConfig { queue_size: 3,")
                && debug.contains("stats: BrokerStats {"),
            "{debug}"
        );
    }

    #[test]
    fn notifier_threads_are_named_and_joined() {
        let broker = Broker::start(Vec::new(), BrokerConfig::default()).unwrap();
        let names: Vec<String> = broker
            .threads
            .lock()
            .iter()
            .flatten()
            .map(|thread| thread.thread().name().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(names, ["notifier-1", "notifier-2"]);
        broker.shutdown(Duration::ZERO);
        assert!(broker.threads.lock().is_none());
    }
}
