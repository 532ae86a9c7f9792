//! Where connections wait while they have nothing to say: one readiness poller per port.
//!
//! A worker that has answered everything a connection sent *parks* it here
//! ([`Parking::park`]): the socket is registered with the poller's `mio::Poll`, its buffers
//! given back, and its deadline (idle, incomplete request or stalled write) queued. The
//! poller thread sleeps in `epoll_wait` until a parked socket becomes ready, then hands the
//! connection to the scheduler's ready queue; or until the earliest deadline, then closes the
//! connections whose deadline passed. No worker is woken for either, and nothing wakes on a
//! timer to look for work: the only timeout is the next deadline.
//!
//! Why `mio`: it is the Rust ecosystem's standard readiness layer (tokio's), it is safe to
//! call from any thread (workers register sockets while the poller thread waits), and it
//! needs no `unsafe` in this crate. Its registrations are edge-triggered; a connection is
//! registered when it is parked and deregistered when it leaves, and registering a socket
//! that is already readable reports it at once, so no readiness is lost in between.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::Mutex;

use crate::connection::{CloseReason, Connection, DeadlineKind, Timeouts};

/// The token of the poller's own waker; connection tokens start above it.
const WAKE: Token = Token(0);

/// Readiness events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;

/// What the poller tells its owner.
pub(crate) trait Handoff: Send + Sync {
    /// A parked connection became ready: serve it.
    fn ready(&self, connection: Connection);
    /// A parked connection's deadline passed, or the server is stopping: it is closed.
    fn closed(&self, connection: Connection, reason: CloseReason);
    /// Whether the server is stopping.
    fn stopping(&self) -> bool;
}

struct Entry {
    connection: Connection,
    kind: DeadlineKind,
}

#[derive(Default)]
struct Parked {
    connections: HashMap<Token, Entry>,
    /// Every parked connection's deadline, earliest first. Entries of connections that have
    /// left are skipped when they come up (their token is gone from `connections`).
    deadlines: BinaryHeap<Reverse<(Instant, Token)>>,
    /// When the poller thread will next wake up by itself; a park with an earlier deadline
    /// must wake it.
    next_wake: Option<Instant>,
}

/// The shared half of a port's poller: parking connections and waking the poller.
pub(crate) struct Parking {
    registry: Registry,
    waker: Waker,
    parked: Mutex<Parked>,
    /// Tokens are never reused, so a late event for a connection that has left cannot be
    /// taken for another one.
    next_token: AtomicUsize,
    timeouts: Timeouts,
}

/// The poller thread's half: the `Poll` it waits on.
pub(crate) struct PollerLoop {
    poll: Poll,
}

impl Parking {
    /// A poller for connections with `timeouts`; run the returned loop on its own thread.
    pub(crate) fn new(timeouts: Timeouts) -> io::Result<(Parking, PollerLoop)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        Ok((
            Parking {
                registry,
                waker,
                parked: Mutex::new(Parked::default()),
                next_token: AtomicUsize::new(WAKE.0 + 1),
                timeouts,
            },
            PollerLoop { poll },
        ))
    }

    /// Parks `connection` until its socket is ready for `interest` or its deadline passes.
    /// A socket that cannot be registered is handed to `owner` as closed.
    pub(crate) fn park(&self, mut connection: Connection, interest: Interest, owner: &dyn Handoff) {
        connection.release_buffers();
        let (deadline, kind) = connection.deadline(self.timeouts);
        let token = Token(self.next_token.fetch_add(1, Ordering::Relaxed));
        let mut parked = self.parked.lock();
        // Registered under the lock: an event that fires at once waits for the lock and then
        // finds the entry.
        if let Err(err) = self
            .registry
            .register(connection.stream_mut(), token, interest)
        {
            drop(parked);
            owner.closed(connection, CloseReason::Io(err));
            return;
        }
        parked.connections.insert(token, Entry { connection, kind });
        parked.deadlines.push(Reverse((deadline, token)));
        let wake = parked.next_wake.is_none_or(|next| deadline < next);
        drop(parked);
        if wake {
            self.wake();
        }
    }

    /// How many connections are parked now (for tests that follow where a connection went).
    #[cfg(test)]
    pub(crate) fn parked_len(&self) -> usize {
        self.parked.lock().connections.len()
    }

    /// Wakes the poller thread (to see a new earliest deadline, or that the server stops).
    pub(crate) fn wake(&self) {
        if let Err(err) = self.waker.wake() {
            log::error!("cannot wake a poller: {err}");
        }
    }

    /// Takes a parked connection out for serving.
    fn unpark(&self, token: Token) -> Option<Connection> {
        let mut entry = self.parked.lock().connections.remove(&token)?;
        let _ = self.registry.deregister(entry.connection.stream_mut());
        Some(entry.connection)
    }

    /// Takes out every connection whose deadline is at or before `now`, and returns when the
    /// next one is due.
    fn expired(&self, now: Instant, out: &mut Vec<(Connection, DeadlineKind)>) -> Option<Instant> {
        let mut parked = self.parked.lock();
        while let Some(&Reverse((deadline, token))) = parked.deadlines.peek() {
            if deadline > now {
                break;
            }
            parked.deadlines.pop();
            // Each park has its own token, so a token still parked is that park's deadline.
            if let Some(mut entry) = parked.connections.remove(&token) {
                let _ = self.registry.deregister(entry.connection.stream_mut());
                out.push((entry.connection, entry.kind));
            }
        }
        // A heap of mostly stale entries would grow with every park; rebuild it from the live
        // connections once stale ones dominate.
        if parked.deadlines.len() > 64 && parked.deadlines.len() > 2 * parked.connections.len() {
            let live: Vec<_> = std::mem::take(&mut parked.deadlines)
                .into_iter()
                .filter(|Reverse((_, token))| parked.connections.contains_key(token))
                .collect();
            parked.deadlines = live.into();
        }
        let next = parked
            .deadlines
            .peek()
            .map(|&Reverse((deadline, _))| deadline);
        // With no deadline the thread sleeps until an event, so any park must wake it.
        parked.next_wake = next;
        next
    }

    /// Takes out every parked connection, for shutdown.
    fn drain(&self) -> Vec<Connection> {
        let mut parked = self.parked.lock();
        parked.deadlines.clear();
        let entries: Vec<Entry> = parked.connections.drain().map(|(_, entry)| entry).collect();
        drop(parked);
        entries
            .into_iter()
            .map(|mut entry| {
                let _ = self.registry.deregister(entry.connection.stream_mut());
                entry.connection
            })
            .collect()
    }
}

impl PollerLoop {
    /// Runs until `owner` is stopping: hands ready connections back and closes expired ones.
    pub(crate) fn run(mut self, parking: &Parking, owner: &dyn Handoff) {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        let mut expired = Vec::new();
        loop {
            let now = Instant::now();
            let next = parking.expired(now, &mut expired);
            for (connection, kind) in expired.drain(..) {
                owner.closed(connection, kind.reason());
            }
            if owner.stopping() {
                break;
            }
            let timeout = next.map(|next| next.saturating_duration_since(Instant::now()));
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() != io::ErrorKind::Interrupted {
                    log::error!("poller failed: {err}; retrying");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in events.iter() {
                if event.token() == WAKE {
                    continue;
                }
                if let Some(connection) = parking.unpark(event.token()) {
                    owner.ready(connection);
                }
            }
        }
        for connection in parking.drain() {
            owner.closed(connection, CloseReason::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::testing;

    /// An owner that must never be told anything: these tests drive the poller by hand.
    struct Nobody;

    impl Handoff for Nobody {
        fn ready(&self, _: Connection) {
            panic!("a connection was handed over");
        }
        fn closed(&self, _: Connection, reason: CloseReason) {
            panic!("a connection was closed: {reason:?}");
        }
        fn stopping(&self) -> bool {
            false
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_deadline_heap_follows_the_parked_connections_not_the_parks() {
        let timeouts = Timeouts {
            idle: HOUR,
            frame: HOUR,
            auth: HOUR,
        };
        let (parking, _poll) = Parking::new(timeouts).unwrap();
        let (mut connections, _peers): (Vec<_>, Vec<_>) =
            testing::connections(100).into_iter().unzip();
        let mut expired = Vec::new();
        for round in 0..10 {
            // Each connection is parked three times between two looks at the deadlines, as a
            // busy connection is (it speaks, is served, waits again), so two of every three
            // entries in the heap are stale by the time the poller looks.
            for _ in 0..3 {
                for connection in connections.drain(..) {
                    parking.park(connection, Interest::READABLE, &Nobody);
                }
                let tokens: Vec<Token> =
                    parking.parked.lock().connections.keys().copied().collect();
                connections = tokens
                    .into_iter()
                    .filter_map(|t| parking.unpark(t))
                    .collect();
            }
            for connection in connections.drain(..) {
                parking.park(connection, Interest::READABLE, &Nobody);
            }
            // None is due for an hour: this only tidies the heap.
            assert!(parking.expired(Instant::now(), &mut expired).is_some());
            assert!(expired.is_empty());
            let parked = parking.parked.lock();
            assert_eq!(parked.connections.len(), 100);
            assert!(
                parked.deadlines.len() <= 2 * parked.connections.len(),
                "round {round}: {} deadlines kept for {} parked connections",
                parked.deadlines.len(),
                parked.connections.len()
            );
            drop(parked);
            let tokens: Vec<Token> = parking.parked.lock().connections.keys().copied().collect();
            connections = tokens
                .into_iter()
                .filter_map(|t| parking.unpark(t))
                .collect();
        }
    }
}
