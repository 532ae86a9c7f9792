//! One worker thread of a port: serves connections from the ready queue and from its own hot
//! set, and sleeps in its own poll when neither has anything (see `scheduler.rs` for the
//! policy this follows).

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use protocol::Protocol;

use crate::connection::{CloseReason, Connection, ReadOutcome};
use crate::scheduler::{Scheduler, TURN_BUDGET};
use warn_limit::peer_warn;

/// Token of a worker's waker in its own poll; hot connection `slot` uses `slot + 1`.
pub(crate) const WAKE: Token = Token(0);

/// Most connections one worker keeps hot; the rest wait in the poller. Enough for every
/// connection of a busy port to stay hot across a pool of workers, few enough that scanning
/// their deadlines is cheap.
const MAX_HOT: usize = 64;

/// Readiness events taken per wait.
const EVENTS_PER_WAIT: usize = 64;

/// Wakes a worker sleeping in its poll (a push for it, or shutdown).
pub(crate) fn wake(waker: &Waker) {
    if let Err(err) = waker.wake() {
        log::error!("cannot wake a worker: {err}");
    }
}

/// How serving a connection for a while ended.
enum Turn<U> {
    /// Everything it sent is answered and written; its socket has nothing more for now.
    Drained,
    /// The peer is not taking replies: wait for its socket to become writable.
    WriteBlocked,
    /// It still has requests, but its time is up and others are ready.
    Yield,
    /// It is finished.
    Closed(CloseReason),
    /// A request asked for the connection to be taken over by the protocol.
    HandOver(U),
}

/// A worker's own state: its poll and the connections it keeps hot there.
pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    events: Events,
    /// Hot connections by slot; slot `i` is registered with the poll as `Token(i + 1)`.
    hot: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    hot_count: usize,
    /// Hot slots reported ready and not served yet, oldest first.
    ready: VecDeque<usize>,
    /// The earliest deadline of a hot connection, as last computed.
    next_deadline: Option<Instant>,
}

impl Worker {
    /// Worker `id`, sleeping in `poll` (whose waker is the scheduler's `wakers[id]`).
    pub(crate) fn new(id: usize, poll: Poll) -> Self {
        Worker {
            id,
            poll,
            events: Events::with_capacity(EVENTS_PER_WAIT),
            hot: Vec::new(),
            free_slots: Vec::new(),
            hot_count: 0,
            ready: VecDeque::new(),
            next_deadline: None,
        }
    }

    /// Serves until the scheduler stops.
    pub(crate) fn run<P: Protocol>(mut self, scheduler: &Scheduler<P>) {
        loop {
            if scheduler.is_stopping() {
                return self.stop(scheduler);
            }
            // One hot connection, then one from the queue: neither can starve the other.
            if let Some(slot) = self.ready.pop_front() {
                self.spread(scheduler);
                self.serve_hot(scheduler, slot);
            }
            if let Some(connection) = scheduler.dispatch.next() {
                self.serve_queued(scheduler, connection);
                continue;
            }
            if self.ready.is_empty() {
                self.wait(scheduler);
            }
        }
    }

    /// Collects readiness from the worker's poll. Sleeps (until a hot connection's deadline
    /// or a wake-up) only when the ready queue is empty; else just looks.
    fn wait<P: Protocol>(&mut self, scheduler: &Scheduler<P>) {
        let dispatch = &scheduler.dispatch;
        dispatch.set_hot(self.id, self.hot_count);
        // Marked asleep before the last look at the queue: see `Dispatch::sleeping`.
        dispatch.set_sleeping(self.id, true);
        let timeout = self.poll_timeout(scheduler);
        let polled = self.poll.poll(&mut self.events, timeout);
        dispatch.set_sleeping(self.id, false);
        if let Err(err) = polled {
            if err.kind() != io::ErrorKind::Interrupted {
                log::error!("worker {}: poll failed: {err}", self.id + 1);
            }
            return;
        }
        for event in self.events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let slot = event.token().0 - 1;
            if self.hot.get(slot).is_some_and(Option::is_some) && !self.ready.contains(&slot) {
                self.ready.push_back(slot);
            }
        }
        if self
            .next_deadline
            .is_some_and(|deadline| deadline <= Instant::now())
        {
            self.expire(scheduler);
        }
    }

    /// How long [`Worker::wait`] may sleep: until the next hot deadline or a wake-up, or not
    /// at all when a connection is queued or the port is stopping. Looked at after the
    /// worker is marked asleep, so a push either is seen here or wakes the poll.
    fn poll_timeout<P: Protocol>(&self, scheduler: &Scheduler<P>) -> Option<Duration> {
        let sleep = !scheduler.dispatch.has_ready() && !scheduler.is_stopping();
        if sleep {
            self.next_deadline
                .map(|deadline| deadline.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        }
    }

    /// With several hot connections ready and another worker asleep with none, hands the
    /// extra ones to the ready queue so that worker takes them.
    fn spread<P: Protocol>(&mut self, scheduler: &Scheduler<P>) {
        while !self.ready.is_empty() && scheduler.dispatch.has_idle_worker() {
            let Some(slot) = self.ready.pop_back() else {
                break;
            };
            if let Some(connection) = self.take_hot(slot) {
                scheduler.dispatch.push(connection);
            }
        }
    }

    fn serve_hot<P: Protocol>(&mut self, scheduler: &Scheduler<P>, slot: usize) {
        let Some(connection) = self.hot.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        match serve(scheduler, connection) {
            // It stays where it is, registered for its next request.
            Turn::Drained => {}
            other => {
                if let Some(connection) = self.take_hot(slot) {
                    place(scheduler, connection, other);
                }
            }
        }
    }

    fn serve_queued<P: Protocol>(&mut self, scheduler: &Scheduler<P>, mut connection: Connection) {
        match serve(scheduler, &mut connection) {
            Turn::Drained if self.hot_count < MAX_HOT => self.keep_hot(scheduler, connection),
            Turn::Drained => scheduler.park(connection, Interest::READABLE),
            other => place(scheduler, connection, other),
        }
    }

    /// Registers a drained connection with this worker's poll, so that its next request
    /// comes straight here.
    fn keep_hot<P: Protocol>(&mut self, scheduler: &Scheduler<P>, mut connection: Connection) {
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.hot.push(None);
            self.hot.len() - 1
        });
        if let Err(err) = self.poll.registry().register(
            connection.stream_mut(),
            Token(slot + 1),
            Interest::READABLE,
        ) {
            self.free_slots.push(slot);
            scheduler.close(connection, CloseReason::Io(err));
            return;
        }
        let deadline = connection.deadline(scheduler.config.timeouts).0;
        self.next_deadline = Some(
            self.next_deadline
                .map_or(deadline, |next| next.min(deadline)),
        );
        self.hot[slot] = Some(connection);
        self.hot_count += 1;
    }

    /// Takes a connection out of the hot set (and off the worker's poll).
    fn take_hot(&mut self, slot: usize) -> Option<Connection> {
        let mut connection = self.hot.get_mut(slot)?.take()?;
        let _ = self.poll.registry().deregister(connection.stream_mut());
        self.free_slots.push(slot);
        self.hot_count -= 1;
        self.ready.retain(|&ready| ready != slot);
        Some(connection)
    }

    /// Closes hot connections whose deadline has passed and works out the next deadline.
    fn expire<P: Protocol>(&mut self, scheduler: &Scheduler<P>) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for slot in 0..self.hot.len() {
            let Some(connection) = &self.hot[slot] else {
                continue;
            };
            let (deadline, kind) = connection.deadline(scheduler.config.timeouts);
            if deadline <= now {
                if let Some(connection) = self.take_hot(slot) {
                    scheduler.close(connection, kind.reason());
                }
            } else {
                next = Some(next.map_or(deadline, |next| next.min(deadline)));
            }
        }
        self.next_deadline = next;
    }

    /// Shutdown: hot connections have nothing unanswered, so they close at once; queued ones
    /// get what they already sent answered first.
    fn stop<P: Protocol>(mut self, scheduler: &Scheduler<P>) {
        for slot in 0..self.hot.len() {
            if let Some(connection) = self.take_hot(slot) {
                scheduler.close(connection, CloseReason::Shutdown);
            }
        }
        while let Some(mut connection) = scheduler.dispatch.next() {
            let turn = serve(scheduler, &mut connection);
            place(scheduler, connection, turn);
        }
    }
}

/// Sends a connection that is not hot where its turn says it goes.
fn place<P: Protocol>(scheduler: &Scheduler<P>, connection: Connection, turn: Turn<P::Upgrade>) {
    match turn {
        Turn::Drained if scheduler.is_stopping() => {
            scheduler.close(connection, CloseReason::Shutdown);
        }
        Turn::Drained => scheduler.park(connection, Interest::READABLE),
        Turn::WriteBlocked if scheduler.is_stopping() => {
            scheduler.close(connection, CloseReason::WriteStalled);
        }
        // A peer that does not read gets no worker: the poller waits for it.
        Turn::WriteBlocked => scheduler.park(connection, Interest::WRITABLE),
        // It has requests in the kernel already; queue it behind the others.
        Turn::Yield => scheduler.dispatch.push(connection),
        Turn::Closed(reason) => scheduler.close(connection, reason),
        // It leaves the scheduler for good, with its place under the limits.
        Turn::HandOver(upgrade) => scheduler.hand_over(connection, upgrade),
    }
}

/// Reads, answers and writes until the connection has nothing more, its peer stops taking
/// replies, its time is up, or it ends. A panic in the protocol costs this connection, never
/// the worker.
fn serve<P: Protocol>(scheduler: &Scheduler<P>, connection: &mut Connection) -> Turn<P::Upgrade> {
    let peer = connection.peer();
    panic::catch_unwind(AssertUnwindSafe(|| serve_turn(scheduler, connection))).unwrap_or_else(
        |_| {
            log::error!(
                "{} {peer}: panicked while serving this connection; it is closed",
                scheduler.protocol.name()
            );
            Turn::Closed(CloseReason::Protocol)
        },
    )
}

fn serve_turn<P: Protocol>(
    scheduler: &Scheduler<P>,
    connection: &mut Connection,
) -> Turn<P::Upgrade> {
    let started = Instant::now();
    let max_request = scheduler.protocol.max_request_len();
    let mut drained = false;
    loop {
        let now = Instant::now();
        // Its replies so far go with it, unwritten: whoever takes it over sends them first.
        if let Some(upgrade) = connection.answer(&scheduler.protocol, now) {
            return Turn::HandOver(upgrade);
        }
        match connection.write_some(now) {
            Ok(true) => {}
            Ok(false) => return Turn::WriteBlocked,
            Err(err) => return Turn::Closed(CloseReason::Io(err)),
        }
        if connection.is_closing() {
            return Turn::Closed(CloseReason::Protocol);
        }
        // Requests already read are answered by now; stopping reads no more.
        if scheduler.is_stopping() {
            return Turn::Closed(CloseReason::Shutdown);
        }
        // Requests left unanswered at the output high-water mark are answered before
        // anything more is read, however the socket stands.
        if drained && !connection.paused() {
            return Turn::Drained;
        }
        if scheduler.dispatch.has_ready() && started.elapsed() >= TURN_BUDGET {
            return Turn::Yield;
        }
        if connection.paused() {
            continue;
        }
        match connection.read_some(max_request, now) {
            Ok(ReadOutcome::Data { drained: all }) => drained = all,
            // Reading a TLS handshake can leave records to send: write them before waiting.
            Ok(ReadOutcome::WouldBlock) if connection.has_output() => {}
            Ok(ReadOutcome::WouldBlock) => return Turn::Drained,
            Ok(ReadOutcome::Eof) => {
                return Turn::Closed(CloseReason::PeerClosed {
                    mid_request: connection.mid_request(),
                });
            }
            // The protocol refuses an oversized request before this; never buffer past it.
            Ok(ReadOutcome::Full) => return Turn::Closed(CloseReason::Protocol),
            Ok(ReadOutcome::OverBudget) => {
                let budget = &scheduler.config.buffers;
                peer_warn!(
                    "{} {}: refused a large request: {} of max_buffered_bytes {} are held",
                    scheduler.protocol.name(),
                    connection.peer(),
                    budget.held(),
                    budget.max()
                );
                connection.refuse_over_budget(&scheduler.protocol, budget);
            }
            Err(err) => return Turn::Closed(CloseReason::Io(err)),
        }
    }
}

/// A worker driven by hand, one step at a time, on a scheduler that starts no thread, with
/// connections over loopback sockets: where each connection goes (hot set, ready queue,
/// poller) is what these check, since a peer sees the same replies wherever it waits.
#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    use auth::Session;
    use protocol::Step;

    use super::*;
    use crate::connection::testing;

    /// Answers each line with itself.
    struct Echo;

    impl Protocol for Echo {
        type Upgrade = Infallible;

        fn name(&self) -> &'static str {
            "echo"
        }

        fn max_request_len(&self) -> usize {
            1024
        }

        fn serve_one(
            &self,
            input: &[u8],
            out: &mut Vec<u8>,
            _: SocketAddr,
            _: &mut Session,
        ) -> Step<Infallible> {
            match input.iter().position(|&byte| byte == b'\n') {
                Some(end) => {
                    out.extend_from_slice(&input[..=end]);
                    Step::Answered { consumed: end + 1 }
                }
                None => Step::Incomplete,
            }
        }

        fn busy_reply(&self, out: &mut Vec<u8>, _: &str) {
            out.extend_from_slice(b"BUSY\n");
        }
    }

    /// Worker 0 of a scheduler for `workers` workers, and the other workers' polls (kept
    /// open for their wakers).
    fn worker(workers: usize) -> (Scheduler<Echo>, Worker, Vec<Poll>) {
        let (scheduler, mut polls) = Scheduler::without_threads(Echo, workers);
        let poll = polls.remove(0);
        (scheduler, Worker::new(0, poll), polls)
    }

    /// `n` new connections, each served by `worker` as if taken from the queue; their peers.
    fn serve_new(scheduler: &Scheduler<Echo>, worker: &mut Worker, n: usize) -> Vec<TcpStream> {
        let (connections, peers): (Vec<_>, Vec<_>) = testing::connections(n).into_iter().unzip();
        for connection in connections {
            worker.serve_queued(scheduler, connection);
        }
        peers
    }

    /// Waits (in the worker's poll, no timer) until `n` hot connections are reported ready.
    /// Fails rather than sleeps for good when fewer than `n` are hot.
    fn wait_until_ready(scheduler: &Scheduler<Echo>, worker: &mut Worker, n: usize) {
        assert!(
            worker.hot_count >= n,
            "{} hot, {n} to wait for",
            worker.hot_count
        );
        while worker.ready.len() < n {
            worker.wait(scheduler);
        }
    }

    #[test]
    fn a_worker_keeps_max_hot_connections_hot_and_parks_the_rest() {
        let (scheduler, mut worker, _polls) = worker(1);
        let (connections, mut peers): (Vec<_>, Vec<_>) =
            testing::connections(MAX_HOT + 1).into_iter().unzip();
        // Each has sent nothing yet: served, it drains at once.
        for (served, connection) in (1..).zip(connections) {
            worker.serve_queued(&scheduler, connection);
            assert_eq!(
                (worker.hot_count, scheduler.parked_len()),
                (served.min(MAX_HOT), served.saturating_sub(MAX_HOT)),
                "after {served} connections: (hot, parked)"
            );
        }
        // A hot connection's next request comes straight to this worker's poll.
        peers[0].write_all(b"PING\n").unwrap();
        wait_until_ready(&scheduler, &mut worker, 1);
        let slot = worker.ready.pop_front().unwrap();
        worker.serve_hot(&scheduler, slot);
        let mut reply = [0; 5];
        peers[0].read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"PING\n");
        assert_eq!(worker.hot_count, MAX_HOT, "still hot after its request");
    }

    #[test]
    fn a_hot_connection_that_closes_gives_its_place_back() {
        let (scheduler, mut worker, _polls) = worker(1);
        let mut pairs = testing::connections(2).into_iter();
        let (first, first_peer) = pairs.next().unwrap();
        worker.serve_queued(&scheduler, first);
        assert_eq!(worker.hot_count, 1);
        drop(first_peer);
        wait_until_ready(&scheduler, &mut worker, 1);
        let slot = worker.ready.pop_front().unwrap();
        worker.serve_hot(&scheduler, slot);
        assert_eq!(
            worker.hot_count, 0,
            "closed by its peer, it left the hot set"
        );
        assert!(worker.hot.iter().all(Option::is_none));
        // Its slot is taken by the next connection kept hot, which is served from it.
        let (second, mut second_peer) = pairs.next().unwrap();
        worker.serve_queued(&scheduler, second);
        assert_eq!((worker.hot_count, worker.hot.len()), (1, 1));
        second_peer.write_all(b"again\n").unwrap();
        wait_until_ready(&scheduler, &mut worker, 1);
        assert_eq!(worker.ready.pop_front(), Some(slot));
        worker.serve_hot(&scheduler, slot);
        let mut reply = [0; 6];
        second_peer.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"again\n");
        // The count stays true after connections come and go: MAX_HOT - 1 more still fit.
        let _peers = serve_new(&scheduler, &mut worker, MAX_HOT - 1);
        assert_eq!((worker.hot_count, scheduler.parked_len()), (MAX_HOT, 0));
    }

    #[test]
    fn a_hot_connection_that_closes_leaves_the_others_ready() {
        let (scheduler, mut worker, _polls) = worker(1);
        let mut peers = serve_new(&scheduler, &mut worker, 3);
        // Slots 0, 1, 2 in order. Peer 0 closes, 1 and 2 send a request.
        drop(peers.remove(0));
        for peer in &mut peers {
            peer.write_all(b"x\n").unwrap();
        }
        wait_until_ready(&scheduler, &mut worker, 3);
        // The closed one is served first: its leaving must not drop the others' readiness,
        // which the edge-triggered poll reports only once.
        worker.ready.retain(|&slot| slot != 0);
        worker.ready.push_front(0);
        let mut served = Vec::new();
        while let Some(slot) = worker.ready.pop_front() {
            served.push(slot);
            worker.serve_hot(&scheduler, slot);
        }
        served.sort_unstable();
        assert_eq!(served, [0, 1, 2]);
        for peer in &mut peers {
            let mut reply = [0; 2];
            peer.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"x\n");
        }
        assert_eq!(worker.hot_count, 2);
    }

    #[test]
    fn extra_ready_hot_connections_go_to_a_worker_asleep_with_nothing_hot() {
        let (scheduler, mut worker, _polls) = worker(2);
        let mut peers = serve_new(&scheduler, &mut worker, 3);
        for peer in &mut peers {
            peer.write_all(b"x\n").unwrap();
        }
        wait_until_ready(&scheduler, &mut worker, 3);
        // Worker 1 is awake: this worker serves all three itself.
        let first = worker.ready.pop_front().unwrap();
        worker.spread(&scheduler);
        assert_eq!((worker.ready.len(), worker.hot_count), (2, 3));
        assert!(!scheduler.dispatch.has_ready());
        worker.serve_hot(&scheduler, first);
        // Worker 1 falls asleep with nothing hot: one of the two left is handed over (the
        // push wakes worker 1, which then no longer counts as idle).
        scheduler.dispatch.set_sleeping(1, true);
        let second = worker.ready.pop_front().unwrap();
        worker.spread(&scheduler);
        assert!(worker.ready.is_empty());
        assert_eq!(worker.hot_count, 2);
        let handed = scheduler.dispatch.next().expect("a connection handed over");
        assert!(!scheduler.dispatch.has_ready());
        worker.serve_hot(&scheduler, second);
        // Whoever serves the handed-over one answers its request.
        worker.serve_queued(&scheduler, handed);
        for peer in &mut peers {
            let mut reply = [0; 2];
            peer.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"x\n");
        }
        assert_eq!(worker.hot_count, 3, "all three drained and kept hot");
    }

    #[test]
    fn a_worker_does_not_sleep_while_a_connection_is_queued_or_the_port_stops() {
        let (scheduler, worker, _polls) = worker(2);
        // Nothing queued, no hot deadline: it may sleep until woken.
        assert_eq!(worker.poll_timeout(&scheduler), None);
        let (connection, _peer) = testing::connections(1).pop().unwrap();
        scheduler.dispatch.push(connection);
        assert_eq!(
            worker.poll_timeout(&scheduler),
            Some(Duration::ZERO),
            "a connection is queued"
        );
        let queued = scheduler.dispatch.next().unwrap();
        scheduler.stop();
        assert_eq!(
            worker.poll_timeout(&scheduler),
            Some(Duration::ZERO),
            "the port is stopping"
        );
        drop(queued);
    }
}
