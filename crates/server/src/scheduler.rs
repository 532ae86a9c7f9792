//! The policy that shares one port's fixed pool of workers between any number of connections.
//!
//! The shape is Tomcat's NIO connector: the accept loop hands each new connection to the
//! port's poller (`poller.rs`); the poller hands a connection to the *ready queue* here when
//! its socket becomes readable (or writable again); a worker (`worker.rs`) takes it, answers
//! everything it sent and writes the replies (`connection.rs` does the reading and writing).
//!
//! One refinement keeps busy connections as fast as with a thread each: a worker keeps the
//! connections it has just served in its own small poll, its *hot set*, so that their next
//! request wakes that worker directly instead of passing through the poller thread. Only
//! connections that fall out of a hot set (it is full, or their peer stopped reading) wait in
//! the poller. The rules that keep this fair:
//! - a worker sleeps only when its hot connections are all quiet and the ready queue is
//!   empty; whenever a connection is queued, [`Dispatch::push`] wakes a sleeping worker
//!   (one with an empty hot set first), so no worker waits on quiet connections while a
//!   connection with bytes waits in the queue;
//! - a worker that finds several of its hot connections ready while another worker sleeps
//!   with nothing hot hands the extra ones to the ready queue, so load spreads out;
//! - a connection that always has requests yields its worker after [`TURN_BUDGET`] when
//!   others are ready.
//!
//! Nothing here wakes on a timer to look for work. The only timeouts are deadlines of
//! connections (idle, incomplete request, stalled write): the poller's for parked ones, and a
//! worker's for its hot ones.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use auth::{Authenticator, Session};
use mio::{Interest, Poll, Waker};
use parking_lot::Mutex;
use transport::{Stream, TlsAcceptor};
use warn_limit::peer_warn;

use protocol::Protocol;

use crate::connection::{CloseReason, Connection, ConnectionStats, Timeouts};
#[cfg(test)]
use crate::limits::ConnectionBudget;
use crate::limits::{Admission, BufferBudget, Refusal};
use crate::poller::{Handoff, Parking};
use crate::worker::{self, Worker};

/// While others are ready, a connection that always has requests yields its worker after
/// at most this long.
pub(crate) const TURN_BUDGET: Duration = Duration::from_millis(2);

/// Limits and timing of one port's scheduler.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerConfig {
    /// Worker threads.
    pub(crate) workers: usize,
    /// The connections' timeouts.
    pub(crate) timeouts: Timeouts,
    /// Who may connect; the refused are told BUSY and closed.
    pub(crate) admission: Arc<Admission>,
    /// What connections may buffer beyond their free allowance (shared with other ports).
    pub(crate) buffers: Arc<BufferBudget>,
    /// The key table, when access control is on.
    pub(crate) auth: Option<Arc<Authenticator>>,
    /// The certificate, when the port speaks TLS.
    pub(crate) tls: Option<TlsAcceptor>,
}

/// One port's workers, ready queue and poller.
pub(crate) struct Scheduler<P: Protocol> {
    pub(crate) protocol: P,
    pub(crate) config: SchedulerConfig,
    stats: Arc<ConnectionStats>,
    pub(crate) dispatch: Dispatch,
    parking: Parking,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The ready queue, and how workers are woken to take from it.
pub(crate) struct Dispatch {
    /// `ready.len()`, readable without the lock: workers look at it after every turn.
    ready_len: AtomicUsize,
    ready: Mutex<VecDeque<Connection>>,
    /// One per worker, in its own poll.
    wakers: Vec<Waker>,
    /// Per worker: it is asleep in its own poll. Set before the worker looks at `ready_len`
    /// one last time and sleeps; a push stores `ready_len` and then looks for a set flag.
    /// Both are `SeqCst`, so either the worker sees the queued connection or the push sees
    /// the flag and wakes it.
    sleeping: Vec<AtomicBool>,
    /// Per worker: how many hot connections it keeps, to prefer waking one with none.
    hot: Vec<AtomicUsize>,
    /// Where the search for a sleeping worker starts, so that pushes wake different ones.
    next_sleeper: AtomicUsize,
}

impl Dispatch {
    fn new(wakers: Vec<Waker>) -> Self {
        Dispatch {
            ready_len: AtomicUsize::new(0),
            ready: Mutex::new(VecDeque::new()),
            sleeping: wakers.iter().map(|_| AtomicBool::new(false)).collect(),
            hot: wakers.iter().map(|_| AtomicUsize::new(0)).collect(),
            wakers,
            next_sleeper: AtomicUsize::new(0),
        }
    }

    /// A dispatch for `workers` workers, with the polls their wakers belong to (tests).
    #[cfg(test)]
    fn for_workers(workers: usize) -> (Dispatch, Vec<Poll>) {
        let polls: Vec<Poll> = (0..workers).map(|_| Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|poll| Waker::new(poll.registry(), worker::WAKE).unwrap())
            .collect();
        (Dispatch::new(wakers), polls)
    }

    /// Whether a connection waits in the ready queue.
    pub(crate) fn has_ready(&self) -> bool {
        self.ready_len.load(Ordering::SeqCst) > 0
    }

    /// Queues a ready connection and wakes a sleeping worker to take it, one with no hot
    /// connections if there is one. If every worker is busy, nobody is woken: each looks at
    /// the queue when its turn ends.
    pub(crate) fn push(&self, connection: Connection) {
        {
            let mut ready = self.ready.lock();
            ready.push_back(connection);
            self.ready_len.store(ready.len(), Ordering::SeqCst);
        }
        let sleeper = self
            .claim_sleeper(|worker| self.hot[worker].load(Ordering::Relaxed) == 0)
            .or_else(|| self.claim_sleeper(|_| true));
        if let Some(worker) = sleeper {
            worker::wake(&self.wakers[worker]);
        }
    }

    /// A sleeping worker that `prefer` accepts, taken off the sleeping list (so that it is
    /// woken once for this push).
    fn claim_sleeper(&self, prefer: impl Fn(usize) -> bool) -> Option<usize> {
        let workers = self.sleeping.len();
        let start = self.next_sleeper.fetch_add(1, Ordering::Relaxed);
        (0..workers)
            .map(|n| (start + n) % workers)
            .filter(|&worker| prefer(worker))
            .find(|&worker| {
                self.sleeping[worker]
                    .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            })
    }

    /// Whether some worker sleeps with nothing hot: extra ready connections are better
    /// handed to it than queued behind this worker's.
    pub(crate) fn has_idle_worker(&self) -> bool {
        (0..self.sleeping.len()).any(|worker| {
            self.sleeping[worker].load(Ordering::SeqCst)
                && self.hot[worker].load(Ordering::Relaxed) == 0
        })
    }

    /// Marks `worker` as asleep in its poll, or awake.
    pub(crate) fn set_sleeping(&self, worker: usize, sleeping: bool) {
        self.sleeping[worker].store(sleeping, Ordering::SeqCst);
    }

    /// Records how many hot connections `worker` keeps.
    pub(crate) fn set_hot(&self, worker: usize, count: usize) {
        self.hot[worker].store(count, Ordering::Relaxed);
    }

    /// The oldest ready connection.
    pub(crate) fn next(&self) -> Option<Connection> {
        if !self.has_ready() {
            return None;
        }
        let mut ready = self.ready.lock();
        let next = ready.pop_front();
        self.ready_len.store(ready.len(), Ordering::SeqCst);
        next
    }

    /// Wakes every worker, for shutdown.
    fn wake_all(&self) {
        for waker in &self.wakers {
            worker::wake(waker);
        }
    }
}

impl<P: Protocol> Scheduler<P> {
    /// Starts a port's poller and `config.workers` workers, named `<name>-poller` and
    /// `<name>-worker-N`.
    pub(crate) fn start(protocol: P, config: SchedulerConfig) -> io::Result<Arc<Self>> {
        let (parking, poller) = Parking::new(config.timeouts)?;
        let mut polls = Vec::with_capacity(config.workers);
        let mut wakers = Vec::with_capacity(config.workers);
        for _ in 0..config.workers {
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), worker::WAKE)?);
            polls.push(poll);
        }
        let name = protocol.name();
        let scheduler = Arc::new(Scheduler {
            protocol,
            config,
            stats: Arc::new(ConnectionStats::default()),
            dispatch: Dispatch::new(wakers),
            parking,
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let spawned = (|| {
            let owner = Arc::clone(&scheduler);
            let thread = thread::Builder::new()
                .name(format!("{name}-poller"))
                .spawn(move || poller.run(&owner.parking, &*owner))?;
            scheduler.threads.lock().push(thread);
            for (id, poll) in polls.into_iter().enumerate() {
                let owner = Arc::clone(&scheduler);
                let thread = thread::Builder::new()
                    .name(format!("{name}-worker-{}", id + 1))
                    .spawn(move || Worker::new(id, poll).run(&owner))?;
                scheduler.threads.lock().push(thread);
            }
            Ok::<(), io::Error>(())
        })();
        if let Err(err) = spawned {
            scheduler.stop();
            return Err(err);
        }
        Ok(scheduler)
    }

    /// Connection counters.
    pub(crate) fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// Takes a freshly accepted connection: refuses it if the port is full, otherwise parks
    /// it in the poller until it sends something (registering a socket that already has
    /// bytes reports it at once). Never blocks on the peer.
    pub(crate) fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let name = self.protocol.name();
        let ticket = match self.config.admission.admit(peer) {
            Ok(ticket) => ticket,
            Err(refusal) => return self.refuse_busy(stream, peer, refusal),
        };
        if let Err(err) = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_nonblocking(true))
        {
            log::debug!("{name} {peer}: cannot configure socket: {err}");
            return;
        }
        let stream = match Stream::accept(
            mio::net::TcpStream::from_std(stream),
            self.config.tls.as_ref(),
        ) {
            Ok(stream) => stream,
            Err(err) => {
                log::error!("{name} {peer}: cannot start a TLS session: {err}");
                return;
            }
        };
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        log::debug!("{name} {peer}: connected");
        let session = Session::new(self.config.auth.as_ref());
        let connection = Connection::new(
            stream,
            peer,
            ticket,
            Arc::clone(&self.config.buffers),
            session,
        );
        self.park(connection, Interest::READABLE);
    }

    /// Stops every thread: parked connections are closed, workers answer what they have
    /// already read, flush, close, and exit. Returns once all are joined.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut threads = std::mem::take(&mut *self.threads.lock()).into_iter();
        // The poller goes first (it was spawned first), so that nothing is queued after the
        // workers have drained the ready queue and left.
        self.parking.wake();
        if let Some(poller) = threads.next() {
            join(poller, self.protocol.name());
        }
        self.dispatch.wake_all();
        for worker in threads {
            join(worker, self.protocol.name());
        }
    }

    /// Whether [`Scheduler::stop`] has begun.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn refuse_busy(&self, mut stream: TcpStream, peer: SocketAddr, refusal: Refusal) {
        peer_warn!("{} {peer}: refused: {refusal}", self.protocol.name());
        if self.config.tls.is_some() {
            // A BUSY reply would need a finished handshake first; the close says enough.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let mut reply = Vec::new();
        self.protocol
            .busy_reply(&mut reply, &format!("{refusal}; try again later"));
        // A fresh socket's send buffer is empty, so this cannot block for long; the timeout
        // only guards against the impossible.
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = stream.write_all(&reply);
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Parks `connection` in the poller; if that fails, it is closed.
    pub(crate) fn park(&self, connection: Connection, interest: Interest) {
        self.parking.park(connection, interest, self);
    }

    /// Hands `connection` to the protocol, which asked to take it over.
    pub(crate) fn hand_over(&self, connection: Connection, upgrade: P::Upgrade) {
        let peer = connection.peer();
        log::debug!(
            "{} {peer}: taken over by the protocol",
            self.protocol.name()
        );
        self.protocol.take_over(upgrade, connection.release());
    }

    /// Closes `connection`, logging why.
    pub(crate) fn close(&self, connection: Connection, reason: CloseReason) {
        self.log_close(connection.peer(), reason);
        connection.close();
    }

    fn log_close(&self, peer: SocketAddr, reason: CloseReason) {
        let name = self.protocol.name();
        let timeouts = self.config.timeouts;
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
                timeouts.idle
            ),
            CloseReason::AuthTimeout => peer_warn!(
                "{name} {peer}: closed, not authenticated within {:?} (auth_timeout)",
                timeouts.auth
            ),
            CloseReason::Io(err) if transport::is_plain_text(&err) => {
                peer_warn!("{name} {peer}: closed, it sent plain text to this TLS port");
            }
            CloseReason::RequestTimeout => peer_warn!(
                "{name} {peer}: closed, a request stayed incomplete for {:?} (frame_timeout)",
                timeouts.frame
            ),
            CloseReason::WriteStalled => peer_warn!(
                "{name} {peer}: closed, it stopped reading replies for {:?} (frame_timeout)",
                timeouts.frame
            ),
            CloseReason::Io(err) => log::debug!("{name} {peer}: closed on i/o error: {err}"),
        }
    }
}

#[cfg(test)]
impl<P: Protocol> Scheduler<P> {
    /// A scheduler for `workers` workers that starts no thread (its poller never runs), for
    /// unit tests that drive a [`Worker`] by hand; also returns the workers' polls, which
    /// their wakers belong to. Every timeout is an hour, so none falls due in a test.
    pub(crate) fn without_threads(protocol: P, workers: usize) -> (Self, Vec<Poll>) {
        let hour = Duration::from_secs(3600);
        let timeouts = Timeouts {
            idle: hour,
            frame: hour,
            auth: hour,
        };
        let (dispatch, polls) = Dispatch::for_workers(workers);
        let config = SchedulerConfig {
            workers,
            timeouts,
            admission: Admission::new(1024, 0, Arc::new(ConnectionBudget::new(1024))),
            buffers: BufferBudget::new(1 << 20),
            auth: None,
            tls: None,
        };
        let (parking, _poller) = Parking::new(timeouts).unwrap();
        let scheduler = Scheduler {
            protocol,
            config,
            stats: Arc::new(ConnectionStats::default()),
            dispatch,
            parking,
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        };
        (scheduler, polls)
    }

    /// How many of the port's connections wait in its poller.
    pub(crate) fn parked_len(&self) -> usize {
        self.parking.parked_len()
    }
}

impl<P: Protocol> Handoff for Scheduler<P> {
    fn ready(&self, connection: Connection) {
        self.dispatch.push(connection);
    }

    fn closed(&self, connection: Connection, reason: CloseReason) {
        self.close(connection, reason);
    }

    fn stopping(&self) -> bool {
        self.is_stopping()
    }
}

fn join(thread: JoinHandle<()>, name: &str) {
    if thread.join().is_err() {
        log::error!("a {name} thread panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::testing;

    fn asleep(dispatch: &Dispatch) -> Vec<bool> {
        dispatch
            .sleeping
            .iter()
            .map(|flag| flag.load(Ordering::SeqCst))
            .collect()
    }

    #[test]
    fn an_empty_queue_has_nothing_ready() {
        let (dispatch, _polls) = Dispatch::for_workers(2);
        assert!(!dispatch.has_ready());
        assert!(dispatch.next().is_none());
        let (connection, _peer) = testing::connections(1).pop().unwrap();
        dispatch.push(connection);
        assert!(dispatch.has_ready());
        assert!(dispatch.next().is_some());
        assert!(!dispatch.has_ready());
    }

    #[test]
    fn a_push_wakes_a_sleeping_worker_with_nothing_hot_first() {
        let (dispatch, _polls) = Dispatch::for_workers(3);
        let mut connections = testing::connections(3).into_iter();
        // Worker 0 is awake; 1 sleeps with hot connections, 2 with none.
        dispatch.set_sleeping(1, true);
        dispatch.set_sleeping(2, true);
        dispatch.set_hot(1, 5);
        dispatch.push(connections.next().unwrap().0);
        assert_eq!(asleep(&dispatch), [false, true, false]);
        // Then the one with hot connections, rather than nobody.
        dispatch.push(connections.next().unwrap().0);
        assert_eq!(asleep(&dispatch), [false, false, false]);
        // With every worker awake, a push wakes nobody: each looks at the queue in turn.
        dispatch.push(connections.next().unwrap().0);
        assert_eq!(asleep(&dispatch), [false, false, false]);
        assert_eq!(dispatch.ready_len.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn every_sleeping_worker_is_found_wherever_the_search_starts() {
        for start in 0..6 {
            for sleeper in 0..3 {
                let (dispatch, _polls) = Dispatch::for_workers(3);
                dispatch.next_sleeper.store(start, Ordering::Relaxed);
                dispatch.set_sleeping(sleeper, true);
                dispatch.set_hot(sleeper, 1);
                let (connection, _peer) = testing::connections(1).pop().unwrap();
                dispatch.push(connection);
                assert_eq!(
                    asleep(&dispatch),
                    [false; 3],
                    "search from {start}, worker {sleeper} asleep"
                );
            }
        }
    }

    #[test]
    fn an_idle_worker_is_one_asleep_with_nothing_hot() {
        let (dispatch, _polls) = Dispatch::for_workers(2);
        assert!(!dispatch.has_idle_worker(), "all awake");
        dispatch.set_sleeping(1, true);
        assert!(dispatch.has_idle_worker(), "1 asleep, nothing hot");
        dispatch.set_hot(1, 2);
        assert!(!dispatch.has_idle_worker(), "1 asleep with hot connections");
        dispatch.set_hot(0, 0);
        dispatch.set_sleeping(1, false);
        assert!(
            !dispatch.has_idle_worker(),
            "0 has nothing hot but is awake"
        );
    }
}
