//! Connection scheduling: many connections, a few blocking workers, nobody locked out.
//!
//! Each port has a fixed pool of worker threads (`threadpool`) and blocking sockets. A worker
//! takes a connection from the pool's queue and serves it for a *turn*: it answers every
//! complete request in the connection's buffer, writes the replies with one `write`, and reads
//! again. Reads and writes time out after a short *slice* (`scheduling_slice_ms`). When a slice
//! passes with nothing to do, or the worker has just answered, and other connections are waiting
//! in the queue, the worker puts this connection (with its buffers) at the back of the queue and
//! takes the next one. When nobody waits, it keeps the connection, so with no more connections
//! than workers each connection effectively has its own thread and pays no scheduling cost.
//!
//! So an idle or half-sent connection holds a worker for at most one slice at a time while
//! others wait, and `docs/design.md` explains the trade-off in full. The same scheduler serves
//! the RPC and the sensor ports; a [`Protocol`] supplies the parsing and the answers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shutdown::ShutdownHandle;
use threadpool::ThreadPool;

use warn_limit::peer_warn;

/// Initial size of a connection's read buffer; it grows for a large request and shrinks back.
const INITIAL_BUFFER: usize = 4 * 1024;
/// While nobody waits, a busy connection keeps its worker; once somebody does, it yields after
/// at most this long even if it always has requests ready.
const TURN_BUDGET: Duration = Duration::from_millis(2);

/// What a protocol did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Bytes of complete requests handled; the rest is an incomplete request.
    pub consumed: usize,
    /// Close the connection once the replies are written (after a fatal protocol error).
    pub close: bool,
}

/// A request/reply protocol served by the [`Scheduler`].
pub trait Protocol: Send + Sync + 'static {
    /// Short name for logs, e.g. `rpc`.
    fn name(&self) -> &'static str;
    /// Most bytes one request may occupy in the buffer; the protocol must refuse (and ask to
    /// close) before a request grows past it.
    fn max_request_len(&self) -> usize;
    /// Handles every complete request at the front of `input`, appending the replies to `out`.
    fn serve(&self, input: &[u8], out: &mut Vec<u8>, peer: SocketAddr) -> Served;
    /// Appends the reply sent to a connection refused because the port is at its limit.
    fn busy_reply(&self, out: &mut Vec<u8>, max_connections: usize);
}

/// Limits and timing of one port's scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Worker threads.
    pub workers: usize,
    /// Longest a worker blocks on one connection before checking whether others wait.
    pub slice: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A started request must complete, and a stalled reply must drain, within this.
    pub frame_timeout: Duration,
    /// Open connections allowed; more are told BUSY and closed.
    pub max_connections: usize,
}

/// Counters kept by a scheduler.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections refused for being over the limit.
    pub refused_busy: AtomicU64,
    /// Connections open now.
    pub open: AtomicUsize,
}

/// One port's worker pool and the rules for sharing it among connections.
pub struct Scheduler<P: Protocol> {
    protocol: P,
    config: SchedulerConfig,
    pool: ThreadPool,
    stats: Arc<ConnectionStats>,
    shutdown: ShutdownHandle,
}

/// Why a turn ended.
enum TurnEnd {
    /// Others are waiting; the connection goes to the back of the queue.
    Yield,
    /// The connection is finished.
    Close(CloseReason),
}

#[derive(Debug)]
enum CloseReason {
    PeerClosed { mid_request: bool },
    Protocol,
    IdleTimeout,
    RequestTimeout,
    WriteStalled,
    Shutdown,
    Io(io::Error),
}

/// Keeps the open-connection count honest however a connection ends, panics included.
struct OpenSlot(Arc<ConnectionStats>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection between turns: the socket and everything buffered for it.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// `input[start..end]` holds received bytes not yet consumed.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// Replies not yet written; `output[written..]` is still to go.
    output: Vec<u8>,
    written: usize,
    last_read: Instant,
    /// Since when an incomplete request has been waiting for the rest of its bytes.
    partial_since: Option<Instant>,
    /// Since when the peer has not taken any of our pending output.
    write_stalled_since: Option<Instant>,
    closing: bool,
    _slot: OpenSlot,
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Connection {
    fn consume(&mut self, consumed: usize, now: Instant) {
        self.start += consumed;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.input.len() > INITIAL_BUFFER {
                self.input.truncate(INITIAL_BUFFER);
                self.input.shrink_to_fit();
            }
            self.partial_since = None;
        } else if consumed > 0 {
            self.partial_since = Some(now);
        } else {
            self.partial_since.get_or_insert(now);
        }
    }

    /// Makes room at the end of the buffer: compacts, or grows up to `max`.
    fn make_room(&mut self, max: usize) -> bool {
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
}

impl<P: Protocol> Scheduler<P> {
    /// A scheduler with its own pool of `config.workers` threads.
    pub fn new(protocol: P, config: SchedulerConfig, shutdown: ShutdownHandle) -> Arc<Self> {
        let pool = threadpool::Builder::new()
            .num_threads(config.workers)
            .thread_name(format!("{}-worker", protocol.name()))
            .build();
        Arc::new(Scheduler {
            protocol,
            config,
            pool,
            stats: Arc::new(ConnectionStats::default()),
            shutdown,
        })
    }

    /// The protocol served.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Connection counters.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// Takes a freshly accepted connection: refuses it if the port is full, otherwise queues
    /// it for a worker. Never blocks on the peer.
    pub fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let open = self.stats.open.fetch_add(1, Ordering::Relaxed);
        let slot = OpenSlot(Arc::clone(&self.stats));
        if open >= self.config.max_connections {
            drop(slot);
            self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            self.refuse_busy(stream, peer);
            return;
        }
        let configured = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(self.config.slice)))
            .and_then(|()| stream.set_write_timeout(Some(self.config.slice)));
        if let Err(err) = configured {
            log::debug!(
                "{} {peer}: cannot configure socket: {err}",
                self.protocol.name()
            );
            return;
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        log::debug!("{} {peer}: connected", self.protocol.name());
        let now = Instant::now();
        self.schedule(Connection {
            stream,
            peer,
            input: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            output: Vec::with_capacity(INITIAL_BUFFER),
            written: 0,
            last_read: now,
            partial_since: None,
            write_stalled_since: None,
            closing: false,
            _slot: slot,
        });
    }

    fn refuse_busy(&self, mut stream: TcpStream, peer: SocketAddr) {
        peer_warn!(
            "{} {peer}: refused, {} connections already open (max_connections)",
            self.protocol.name(),
            self.config.max_connections
        );
        let mut reply = Vec::new();
        self.protocol
            .busy_reply(&mut reply, self.config.max_connections);
        // A fresh socket's send buffer is empty, so this cannot block for long; the timeout
        // only guards against the impossible.
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = stream.write_all(&reply);
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Waits until every queued and running turn has finished. Call after raising the
    /// shutdown flag, which makes every connection close at its next check.
    pub fn join(&self) {
        self.pool.join();
    }

    fn schedule(self: &Arc<Self>, connection: Connection) {
        let scheduler = Arc::clone(self);
        self.pool.execute(move || scheduler.run_turn(connection));
    }

    fn others_waiting(&self) -> bool {
        self.pool.queued_count() > 0
    }

    fn run_turn(self: Arc<Self>, mut connection: Connection) {
        match self.serve_turn(&mut connection) {
            TurnEnd::Yield => self.schedule(connection),
            TurnEnd::Close(reason) => self.log_close(&connection, reason),
        }
    }

    fn log_close(&self, connection: &Connection, reason: CloseReason) {
        let name = self.protocol.name();
        let peer = connection.peer;
        match reason {
            CloseReason::PeerClosed { mid_request: false } => {
                log::debug!("{name} {peer}: closed by peer");
            }
            CloseReason::PeerClosed { mid_request: true } => {
                log::debug!("{name} {peer}: closed by peer in the middle of a request; ignored it");
            }
            CloseReason::Protocol => log::debug!("{name} {peer}: closed after a fatal error"),
            CloseReason::Shutdown => log::debug!("{name} {peer}: closed for shutdown"),
            CloseReason::IdleTimeout => log::debug!(
                "{name} {peer}: closed after {:?} without a request (idle_timeout)",
                self.config.idle_timeout
            ),
            CloseReason::RequestTimeout => peer_warn!(
                "{name} {peer}: closed, a request stayed incomplete for {:?} (frame_timeout)",
                self.config.frame_timeout
            ),
            CloseReason::WriteStalled => peer_warn!(
                "{name} {peer}: closed, it stopped reading replies for {:?} (frame_timeout)",
                self.config.frame_timeout
            ),
            CloseReason::Io(err) => log::debug!("{name} {peer}: closed on i/o error: {err}"),
        }
    }

    fn serve_turn(&self, conn: &mut Connection) -> TurnEnd {
        let turn_started = Instant::now();
        loop {
            if conn.written == conn.output.len() && conn.start < conn.end && !conn.closing {
                conn.output.clear();
                conn.written = 0;
                let served = self.protocol.serve(
                    &conn.input[conn.start..conn.end],
                    &mut conn.output,
                    conn.peer,
                );
                conn.consume(served.consumed, Instant::now());
                conn.closing |= served.close;
            }

            if conn.written < conn.output.len() {
                match conn.stream.write(&conn.output[conn.written..]) {
                    Ok(0) => return TurnEnd::Close(CloseReason::PeerClosed { mid_request: false }),
                    Ok(written) => {
                        conn.written += written;
                        conn.write_stalled_since = None;
                    }
                    Err(err) if is_timeout(&err) => {
                        let stalled = *conn.write_stalled_since.get_or_insert_with(Instant::now);
                        if self.shutdown.is_triggered()
                            || stalled.elapsed() >= self.config.frame_timeout
                        {
                            return TurnEnd::Close(CloseReason::WriteStalled);
                        }
                        if self.others_waiting() {
                            return TurnEnd::Yield;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return TurnEnd::Close(CloseReason::Io(err)),
                }
                if conn.written < conn.output.len() {
                    continue;
                }
                // Everything answered: let a waiting connection have the worker.
                if self.others_waiting() && conn.start == conn.end && !conn.closing {
                    return TurnEnd::Yield;
                }
                continue;
            }

            if conn.closing {
                return TurnEnd::Close(CloseReason::Protocol);
            }
            if self.shutdown.is_triggered() {
                return TurnEnd::Close(CloseReason::Shutdown);
            }
            if self.others_waiting() && turn_started.elapsed() >= TURN_BUDGET {
                return TurnEnd::Yield;
            }
            if !conn.make_room(self.protocol.max_request_len()) {
                // The protocol refuses oversized requests before this; never buffer past it.
                return TurnEnd::Close(CloseReason::Protocol);
            }
            let end = conn.end;
            match conn.stream.read(&mut conn.input[end..]) {
                Ok(0) => {
                    return TurnEnd::Close(CloseReason::PeerClosed {
                        mid_request: conn.start < conn.end,
                    });
                }
                Ok(read) => {
                    conn.end += read;
                    conn.last_read = Instant::now();
                }
                Err(err) if is_timeout(&err) => {
                    let now = Instant::now();
                    if conn
                        .partial_since
                        .is_some_and(|since| now.duration_since(since) >= self.config.frame_timeout)
                    {
                        return TurnEnd::Close(CloseReason::RequestTimeout);
                    }
                    if now.duration_since(conn.last_read) >= self.config.idle_timeout {
                        return TurnEnd::Close(CloseReason::IdleTimeout);
                    }
                    if self.others_waiting() {
                        return TurnEnd::Yield;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return TurnEnd::Close(CloseReason::Io(err)),
            }
        }
    }
}
