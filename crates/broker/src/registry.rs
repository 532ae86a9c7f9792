//! Who follows which lot, and each subscriber's bounded queue of event lines.
//!
//! [`Registry::publish`] is the only code that runs on the threads that change the state. It
//! takes the topic lists' read lock, encodes the event line once (only if someone listens),
//! and offers it to each listening subscriber's queue with `try_send`: it never blocks and
//! never touches a socket. The write lock is taken only to edit the lists when a connection
//! subscribes or goes away, for a few pointer moves, so readers never wait on I/O.
//!
//! A subscriber is in the lists at most once per change: subscribing twice to one lot is a
//! no-op, and `SUBSCRIBE ALL` moves it from its lot lists to the ALL list (under one write
//! lock, so no change is missed or doubled by the move).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use framing::pubsub::{self, Event, PubsubError, PubsubErrorCode, Topic};
use framing::sse;
use mio::Token;
use parking_lot::{Mutex, RwLock};
use state::{LotChange, LotId};

use crate::notifier::Doorbell;
use crate::stats::Counters;

/// One encoded event (a pub/sub line with its terminator, or an event-stream event), shared
/// by every queue it is offered to.
pub(crate) type EventLine = Arc<[u8]>;

/// How a subscriber's events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// The pub/sub port's JSON lines.
    Lines,
    /// The HTTP port's Server-Sent Events.
    EventStream,
}

impl Encoding {
    /// The event for `change`, as a change (`EVENT` line) or as a new subscriber's current
    /// value (`SNAPSHOT` line; an event stream does not tell them apart).
    pub(crate) fn encode(self, out: &mut Vec<u8>, change: &LotChange, snapshot: bool) {
        let event = event_of(change);
        match (self, snapshot) {
            (Encoding::Lines, false) => pubsub::encode_event(out, &event),
            (Encoding::Lines, true) => pubsub::encode_snapshot(out, &event),
            (Encoding::EventStream, _) => sse::encode_event(out, &event, change.seq),
        }
    }
}

/// How many times a publisher tries to make room in a full queue. Publishers of different
/// lots may race for the same subscriber's last free slot; after this many lost races the
/// new line is dropped instead of an old one, which keeps `publish` wait-free.
const PUSH_ATTEMPTS: usize = 4;

/// One subscribed connection as the publishers see it: its queue and its overflow state. The
/// socket itself belongs to a notifier thread, which the doorbell wakes.
#[derive(Debug)]
pub(crate) struct Subscriber {
    id: u64,
    peer: SocketAddr,
    encoding: Encoding,
    sender: Sender<EventLine>,
    /// Kept by the broker too, so that a publisher can discard the oldest line of a full queue.
    receiver: Receiver<EventLine>,
    /// Lines dropped since the subscriber's socket last took any bytes.
    consecutive_drops: AtomicU32,
    /// Set by the notifier when the socket took none of the pending output; cleared when it
    /// takes some. Only while it is set do drops count towards disconnection, so a subscriber
    /// that reads but is briefly outpaced (its notifier starved of CPU during a burst, say)
    /// loses old events but stays connected, while one that stopped reading is cut off.
    socket_full: AtomicBool,
    /// Drops with a full socket after which the subscriber is disconnected.
    max_drops: u32,
    /// Set once `consecutive_drops` reaches `max_drops` with the socket full; publishers skip
    /// the subscriber from then on and its notifier disconnects it.
    doomed: AtomicBool,
    /// The owning notifier's doorbell (ringing never blocks, and a burst of events costs the
    /// notifier one wake-up), and this subscriber's connection there.
    doorbell: Arc<Doorbell>,
    token: Token,
    /// Set when the doorbell has been rung for this subscriber and the notifier has not
    /// delivered yet; further events need no ring of their own.
    rung: AtomicBool,
}

impl Subscriber {
    /// The id sent in `OK <subId>`.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The next queued event line, if any.
    pub(crate) fn next_event(&self) -> Option<EventLine> {
        self.receiver.try_recv().ok()
    }

    /// Whether event lines are waiting to be sent.
    pub(crate) fn has_events(&self) -> bool {
        !self.receiver.is_empty()
    }

    /// Whether the subscriber fell too far behind and must be disconnected.
    pub(crate) fn is_doomed(&self) -> bool {
        self.doomed.load(Ordering::Acquire)
    }

    /// Drops counted since the socket last took any bytes.
    pub(crate) fn consecutive_drops(&self) -> u32 {
        self.consecutive_drops.load(Ordering::Relaxed)
    }

    /// Called by the notifier when the socket took bytes, or nothing was left to send: the
    /// subscriber is reading, so earlier drops no longer count towards disconnection.
    pub(crate) fn reading(&self) {
        self.socket_full.store(false, Ordering::Release);
        self.consecutive_drops.store(0, Ordering::Relaxed);
    }

    /// Called by the notifier when the socket took none of the pending output: from now on
    /// drops count towards disconnection (and those already counted do at once).
    pub(crate) fn not_reading(&self) {
        self.socket_full.store(true, Ordering::Release);
        if self.consecutive_drops() >= self.max_drops {
            self.doom();
        }
    }

    /// Marks the subscriber for disconnection and rings, so that its notifier, which a full
    /// socket would never wake, comes to close it.
    fn doom(&self) {
        if !self.doomed.swap(true, Ordering::AcqRel) {
            self.ring();
        }
    }

    /// Offers `line` to the queue. A full queue loses its OLDEST line, not the new one: a
    /// subscriber that lags wants the latest free counts, and the lines that stay keep their
    /// order. Each drop counts towards `max_drops`, after which a subscriber that is not
    /// reading is doomed.
    fn push(&self, line: &EventLine, counters: &Counters) {
        counters.event_published();
        let mut line = Arc::clone(line);
        for _ in 0..PUSH_ATTEMPTS {
            match self.sender.try_send(line) {
                Ok(()) => return,
                // Cannot happen while this struct holds the receiver; nothing to deliver to.
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => {
                    line = back;
                    if self.receiver.try_recv().is_ok() {
                        self.record_drop(counters);
                    }
                }
            }
        }
        self.record_drop(counters);
    }

    fn record_drop(&self, counters: &Counters) {
        counters.event_dropped();
        let drops = self.consecutive_drops.fetch_add(1, Ordering::Relaxed) + 1;
        if drops >= self.max_drops && self.socket_full.load(Ordering::Acquire) {
            self.doom();
        }
    }

    /// Tells the notifier that events are queued, unless it has been told and not yet
    /// delivered.
    pub(crate) fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.doorbell.ring(self.token);
        }
    }

    /// Called by the notifier before it delivers: events queued from now on ring again.
    pub(crate) fn delivering(&self) {
        self.rung.store(false, Ordering::Release);
    }
}

/// What one connection is subscribed to; owned by the connection's notifier, handed to the
/// registry to change or end it.
#[derive(Debug)]
pub(crate) struct Subscription {
    subscriber: Arc<Subscriber>,
    all: bool,
    lots: HashSet<LotId>,
    /// For a driver's notice stream: whose notices it follows (it follows no lot then).
    owner: Option<String>,
    /// Whether the subscriber is still in the topic lists.
    listed: bool,
}

impl Subscription {
    /// The subscriber whose queue this subscription fills.
    pub(crate) fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }
}

#[derive(Debug, Default)]
struct Topics {
    /// Subscribers of each known lot, ALL subscribers excluded.
    by_lot: HashMap<LotId, Vec<Arc<Subscriber>>>,
    /// `SUBSCRIBE ALL` subscribers, who hear about every lot, known or not.
    all: Vec<Arc<Subscriber>>,
    /// Notice streams by owner (`GET /v1/me/events`); an owner with none has no entry, so
    /// the map holds no more owners than there are open streams.
    by_owner: HashMap<String, Vec<Arc<Subscriber>>>,
}

/// Every subscription of the broker, and the publishing path.
#[derive(Debug)]
pub(crate) struct Registry {
    /// The lots a client may subscribe to; fixed at start.
    known: HashSet<LotId>,
    /// Each known lot's last published value, for the `SNAPSHOT` a new subscriber gets. Set
    /// under the topic lists' read lock and read under their write lock, so a subscriber
    /// either got a change in its queue or has it in its snapshot, never both, never neither.
    latest: HashMap<LotId, Mutex<Option<LotChange>>>,
    topics: RwLock<Topics>,
    /// Source of subscription ids: unique per broker, starting at 1.
    next_id: AtomicU64,
    queue_size: usize,
    max_overflow_drops: u32,
    counters: Counters,
}

impl Registry {
    /// A registry for `lots`, with queues of `queue_size` lines (at least 1) and doom after
    /// `max_overflow_drops` drops while the socket takes no bytes (0 acts as 1).
    pub(crate) fn new(lots: Vec<LotId>, queue_size: usize, max_overflow_drops: u32) -> Self {
        let by_lot = lots.iter().map(|lot| (lot.clone(), Vec::new())).collect();
        Registry {
            latest: lots
                .iter()
                .map(|lot| (lot.clone(), Mutex::new(None)))
                .collect(),
            known: lots.into_iter().collect(),
            topics: RwLock::new(Topics {
                by_lot,
                all: Vec::new(),
                by_owner: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            queue_size: queue_size.max(1),
            max_overflow_drops,
            counters: Counters::default(),
        }
    }

    /// The broker's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Adds `topic` to the connection's subscription, creating it (with a new id and queue)
    /// on the first success. Returns the subscription id, the same for every later topic,
    /// and the last published value of every lot the topic newly covers (for its
    /// `SNAPSHOT` lines). An unknown lot is refused and leaves `slot` as it was.
    pub(crate) fn subscribe(
        &self,
        slot: &mut Option<Subscription>,
        topic: Topic<'_>,
        peer: SocketAddr,
        doorbell: (&Arc<Doorbell>, Token),
        encoding: Encoding,
    ) -> Result<(u64, Vec<LotChange>), PubsubError> {
        let lot = match topic {
            Topic::All => None,
            Topic::Lot(text) => Some(self.known.get(text).cloned().ok_or_else(|| {
                // A well-formed id is echoed as it is (`ERR UNKNOWN_LOT Z`), anything
                // else cut short and escaped: the reply must not carry raw control
                // bytes or a peer's kilobytes.
                let detail = match LotId::new(text) {
                    Ok(_) => text.to_owned(),
                    Err(_) => state::shown(text).to_string(),
                };
                PubsubError::new(PubsubErrorCode::UnknownLot, detail)
            })?),
        };
        let subscription = match slot {
            Some(subscription) => subscription,
            None => slot.insert(self.new_subscription(peer, doorbell, encoding)),
        };
        let mut topics = self.topics.write();
        let snapshot = |lot: &LotId| {
            self.latest
                .get(lot)
                .and_then(|latest| latest.lock().clone())
        };
        let mut snapshots = Vec::new();
        match lot {
            None if !subscription.all => {
                snapshots = self
                    .latest
                    .keys()
                    .filter(|lot| !subscription.lots.contains(*lot))
                    .filter_map(snapshot)
                    .collect();
                for lot in subscription.lots.drain() {
                    if let Some(list) = topics.by_lot.get_mut(&lot) {
                        remove(list, &subscription.subscriber);
                    }
                }
                topics.all.push(Arc::clone(&subscription.subscriber));
                subscription.all = true;
            }
            Some(lot) if !subscription.all && !subscription.lots.contains(&lot) => {
                snapshots.extend(snapshot(&lot));
                if let Some(list) = topics.by_lot.get_mut(&lot) {
                    list.push(Arc::clone(&subscription.subscriber));
                }
                subscription.lots.insert(lot);
            }
            // Already covered: subscribing again must not double the events.
            _ => {}
        }
        drop(topics);
        Ok((subscription.subscriber.id, snapshots))
    }

    /// Records each lot's current value before anything is published (the server's state at
    /// start), so that the first subscribers get snapshots too.
    pub(crate) fn seed(&self, current: &[LotChange]) {
        let _topics = self.topics.read();
        for change in current {
            if let Some(latest) = self.latest.get(&change.lot) {
                *latest.lock() = Some(change.clone());
            }
        }
    }

    fn new_subscription(
        &self,
        peer: SocketAddr,
        (doorbell, token): (&Arc<Doorbell>, Token),
        encoding: Encoding,
    ) -> Subscription {
        let (sender, receiver) = crossbeam_channel::bounded(self.queue_size);
        self.counters.subscriber_added(encoding);
        Subscription {
            subscriber: Arc::new(Subscriber {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                peer,
                encoding,
                sender,
                receiver,
                consecutive_drops: AtomicU32::new(0),
                socket_full: AtomicBool::new(false),
                max_drops: self.max_overflow_drops,
                doomed: AtomicBool::new(false),
                doorbell: Arc::clone(doorbell),
                token,
                rung: AtomicBool::new(false),
            }),
            all: false,
            lots: HashSet::new(),
            owner: None,
            listed: true,
        }
    }

    /// Makes the connection's subscription one that follows `owner`'s notices (a driver's
    /// event stream). Returns its id.
    pub(crate) fn follow_owner(
        &self,
        slot: &mut Option<Subscription>,
        owner: &str,
        peer: SocketAddr,
        doorbell: (&Arc<Doorbell>, Token),
    ) -> u64 {
        let subscription =
            slot.insert(self.new_subscription(peer, doorbell, Encoding::EventStream));
        subscription.owner = Some(owner.to_owned());
        self.topics
            .write()
            .by_owner
            .entry(owner.to_owned())
            .or_default()
            .push(Arc::clone(&subscription.subscriber));
        subscription.subscriber.id
    }

    /// Queues a notice for every stream following `owner`, encoded by `encode` once and only
    /// if one does, and wakes their notifiers. Like [`Registry::publish`], it never blocks
    /// and does no I/O: it runs on the thread that changed the state.
    pub(crate) fn publish_notice(&self, owner: &str, encode: impl FnOnce(&mut Vec<u8>)) {
        let topics = self.topics.read();
        let Some(streams) = topics.by_owner.get(owner) else {
            return;
        };
        let line: EventLine = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            encode(buf);
            Arc::from(buf.as_slice())
        });
        if line.is_empty() {
            return;
        }
        for subscriber in streams {
            if subscriber.is_doomed() {
                continue;
            }
            subscriber.push(&line, &self.counters);
            subscriber.ring();
        }
    }

    /// Takes the subscriber off every topic list, so no more lines are queued for it; lines
    /// already queued stay readable. Idempotent. The queue is freed when the `Subscription`
    /// is dropped.
    pub(crate) fn unsubscribe(&self, subscription: &mut Subscription) {
        if !subscription.listed {
            return;
        }
        let mut topics = self.topics.write();
        if subscription.all {
            remove(&mut topics.all, &subscription.subscriber);
        }
        for lot in &subscription.lots {
            if let Some(list) = topics.by_lot.get_mut(lot) {
                remove(list, &subscription.subscriber);
            }
        }
        if let Some(owner) = &subscription.owner
            && let Some(list) = topics.by_owner.get_mut(owner)
        {
            remove(list, &subscription.subscriber);
            if list.is_empty() {
                topics.by_owner.remove(owner);
            }
        }
        drop(topics);
        subscription.listed = false;
        self.counters
            .subscriber_removed(subscription.subscriber.encoding);
        log::debug!(
            "subscription {} of {} ended",
            subscription.subscriber.id,
            subscription.subscriber.peer
        );
    }

    /// Queues the change for every subscriber of its lot and every ALL subscriber, then wakes
    /// their notifiers. Never blocks and does no I/O: this runs on the thread that changed the
    /// state. Lines of one lot are queued in the order of the calls, and the state makes those
    /// calls in the order the changes happened, one at a time per lot.
    pub(crate) fn publish(&self, change: &LotChange) {
        self.counters.change_published();
        let topics = self.topics.read();
        if let Some(latest) = self.latest.get(&change.lot) {
            *latest.lock() = Some(change.clone());
        }
        let of_lot = topics
            .by_lot
            .get(&change.lot)
            .map_or(&[][..], Vec::as_slice);
        if of_lot.is_empty() && topics.all.is_empty() {
            return;
        }
        // Encoded once per encoding that someone listening uses, shared by their queues.
        let mut lines = None;
        let mut events = None;
        for subscriber in of_lot.iter().chain(&topics.all) {
            if subscriber.is_doomed() {
                continue;
            }
            let line = match subscriber.encoding {
                Encoding::Lines => lines.get_or_insert_with(|| encode(change, Encoding::Lines)),
                Encoding::EventStream => {
                    events.get_or_insert_with(|| encode(change, Encoding::EventStream))
                }
            };
            subscriber.push(line, &self.counters);
            subscriber.ring();
        }
    }
}

fn remove(list: &mut Vec<Arc<Subscriber>>, subscriber: &Arc<Subscriber>) {
    if let Some(index) = list.iter().position(|s| Arc::ptr_eq(s, subscriber)) {
        list.swap_remove(index);
    }
}

thread_local! {
    /// Reused for encoding, so that an event costs one allocation: its shared line.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A change as the pub/sub protocol says it.
pub(crate) fn event_of(change: &LotChange) -> Event<'_> {
    Event {
        lot_id: change.lot.as_str().into(),
        free: change.free,
        status: Some(change.status),
        timestamp: unix_seconds(change.at),
    }
}

/// Encodes the change's event once, for every queue of subscribers that use `encoding`.
fn encode(change: &LotChange, encoding: Encoding) -> EventLine {
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        encoding.encode(buf, change, false);
        Arc::from(buf.as_slice())
    })
}

/// Seconds since the Unix epoch, negative before it.
fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::BrokerStats;

    fn lot(id: &str) -> LotId {
        LotId::new(id).unwrap()
    }

    fn next_seq() -> u64 {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SEQ.fetch_add(1, Ordering::Relaxed)
    }

    fn change(id: &str, free: u32) -> LotChange {
        use state::Availability;
        LotChange {
            lot: lot(id),
            free,
            status: Availability::of(free, 0),
            seq: next_seq(),
            at: UNIX_EPOCH + Duration::from_millis(1_712_345_678_900),
        }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    fn registry(queue_size: usize, max_drops: u32) -> Registry {
        Registry::new(vec![lot("A"), lot("B"), lot("C")], queue_size, max_drops)
    }

    fn queued(subscription: &Subscription) -> Vec<String> {
        std::iter::from_fn(|| subscription.subscriber().next_event())
            .map(|line| String::from_utf8(line.to_vec()).unwrap())
            .collect()
    }

    fn event_line(id: &str, free: u32) -> String {
        let status = if free == 0 { "full" } else { "open" };
        format!(
            "{{\"type\":\"EVENT\",\"lotId\":\"{id}\",\"free\":{free},\"status\":\"{status}\",\"timestamp\":1712345678.9}}\n"
        )
    }

    #[test]
    fn full_queue_drops_the_oldest() {
        let registry = registry(4, 100);
        let doorbell = Doorbell::detached();
        let mut slot = None;
        registry
            .subscribe(
                &mut slot,
                Topic::Lot("A"),
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        for free in 1..=6 {
            registry.publish(&change("A", free));
        }
        let subscription = slot.unwrap();
        assert_eq!(subscription.subscriber().consecutive_drops(), 2);
        let stats = registry.counters().snapshot();
        assert_eq!((stats.events_published, stats.events_dropped), (6, 2));
        let expected: Vec<String> = (3..=6).map(|free| event_line("A", free)).collect();
        assert_eq!(queued(&subscription), expected);
        assert_eq!(doorbell.take(), [Token(1)], "rung once for the burst");
        subscription.subscriber().reading();
        assert_eq!(subscription.subscriber().consecutive_drops(), 0);
    }

    #[test]
    fn repeated_drops_doom_the_subscriber() {
        let registry = registry(2, 3);
        let doorbell = Doorbell::detached();
        let mut slot = None;
        registry
            .subscribe(
                &mut slot,
                Topic::All,
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        let subscription = slot.unwrap();
        // While the socket is taking data, drops alone never doom a subscriber.
        for free in 0..10 {
            registry.publish(&change("B", free));
        }
        assert!(!subscription.subscriber().is_doomed());
        assert_eq!(registry.counters().snapshot().events_dropped, 8);
        // Once the socket takes nothing, the queue (still full) overflows towards the limit.
        subscription.subscriber().reading();
        subscription.subscriber().not_reading();
        for free in 0..2 {
            registry.publish(&change("B", free));
        }
        assert!(!subscription.subscriber().is_doomed());
        registry.publish(&change("B", 9));
        assert!(subscription.subscriber().is_doomed());
        // A doomed subscriber is skipped, so its drops stop at the limit.
        registry.publish(&change("B", 10));
        assert_eq!(registry.counters().snapshot().events_dropped, 8 + 3);
    }

    #[test]
    fn topics_never_duplicate_and_share_one_id() {
        let registry = registry(16, 10);
        let doorbell = Doorbell::detached();
        let mut slot = None;
        let (id, _) = registry
            .subscribe(
                &mut slot,
                Topic::Lot("A"),
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        for topic in [
            Topic::Lot("A"),
            Topic::Lot("B"),
            Topic::All,
            Topic::Lot("C"),
        ] {
            assert_eq!(
                registry
                    .subscribe(
                        &mut slot,
                        topic,
                        peer(),
                        (&doorbell, Token(1)),
                        Encoding::Lines
                    )
                    .map(|(id, _)| id),
                Ok(id)
            );
        }
        for id in ["A", "B", "C", "D"] {
            registry.publish(&change(id, 1));
        }
        let mut subscription = slot.unwrap();
        let lots: Vec<String> = queued(&subscription)
            .iter()
            .map(
                |line| match pubsub::parse_server_line(line.trim_end().as_bytes()) {
                    Ok(pubsub::ServerLine::Event(event)) => event.lot_id.into_owned(),
                    other => panic!("not an event: {other:?}"),
                },
            )
            .collect();
        assert_eq!(lots, ["A", "B", "C", "D"]);
        assert_eq!(registry.counters().snapshot().subscribers, 1);

        registry.unsubscribe(&mut subscription);
        registry.unsubscribe(&mut subscription);
        registry.publish(&change("A", 2));
        assert!(!subscription.subscriber().has_events());
        let stats = registry.counters().snapshot();
        assert_eq!((stats.subscribers, stats.events_published), (0, 4));
    }

    #[test]
    fn unknown_lot_is_refused_without_subscribing() {
        let registry = registry(16, 10);
        let doorbell = Doorbell::detached();
        let mut slot = None;
        let refused = registry
            .subscribe(
                &mut slot,
                Topic::Lot("a"),
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap_err();
        assert_eq!(refused, PubsubError::new(PubsubErrorCode::UnknownLot, "a"));
        assert!(slot.is_none());
        assert_eq!(registry.counters().snapshot().subscribers, 0);
        let first = registry
            .subscribe(
                &mut slot,
                Topic::Lot("A"),
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        let mut other = None;
        let second = registry
            .subscribe(
                &mut other,
                Topic::All,
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        assert_eq!((first.0, second.0), (1, 2));
    }

    #[test]
    fn a_subscription_gets_the_last_value_of_each_lot_it_newly_covers() {
        let registry = registry(16, 10);
        let doorbell = Doorbell::detached();
        let seeded: Vec<LotChange> = ["A", "B", "C"].iter().map(|id| change(id, 7)).collect();
        registry.seed(&seeded);
        registry.publish(&change("B", 6));
        let mut slot = None;
        let (_, first) = registry
            .subscribe(
                &mut slot,
                Topic::Lot("B"),
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        assert_eq!(
            first
                .iter()
                .map(|c| (c.lot.as_str(), c.free))
                .collect::<Vec<_>>(),
            [("B", 6)]
        );
        // Again: nothing new is covered, so no snapshot (and no duplicate events).
        let (_, again) = registry
            .subscribe(
                &mut slot,
                Topic::Lot("B"),
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        assert!(again.is_empty());
        // ALL covers A and C newly, B already.
        let (_, all) = registry
            .subscribe(
                &mut slot,
                Topic::All,
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        let mut lots: Vec<&str> = all.iter().map(|c| c.lot.as_str()).collect();
        lots.sort_unstable();
        assert_eq!(lots, ["A", "C"]);
        // A change published before a subscription is in its snapshot, not in its queue.
        let subscription = slot.unwrap();
        assert!(!subscription.subscriber().has_events());
    }

    #[test]
    fn nothing_is_encoded_without_subscribers() {
        let registry = registry(4, 10);
        registry.publish(&change("A", 1));
        // The change is counted; no line was made or queued.
        assert_eq!(
            registry.counters().snapshot(),
            BrokerStats {
                changes_published: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn timestamps_are_unix_seconds() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1500)), 1.5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(500)), -0.5);
        assert_eq!(
            String::from_utf8(encode(&change("A", 12), Encoding::Lines).to_vec()).unwrap(),
            event_line("A", 12)
        );
    }

    #[test]
    fn each_subscriber_gets_its_own_encoding() {
        let registry = registry(4, 10);
        let doorbell = Doorbell::detached();
        let (mut lines, mut stream) = (None, None);
        registry
            .subscribe(
                &mut lines,
                Topic::All,
                peer(),
                (&doorbell, Token(1)),
                Encoding::Lines,
            )
            .unwrap();
        registry
            .subscribe(
                &mut stream,
                Topic::Lot("A"),
                peer(),
                (&doorbell, Token(2)),
                Encoding::EventStream,
            )
            .unwrap();
        let stats = registry.counters().snapshot();
        assert_eq!((stats.subscribers, stats.streams), (1, 1));
        let published = change("A", 12);
        registry.publish(&published);
        assert_eq!(queued(lines.as_ref().unwrap()), [event_line("A", 12)]);
        assert_eq!(
            queued(stream.as_ref().unwrap()),
            [format!(
                "event: availability\nid: {}\ndata: {{\"lotId\":\"A\",\"free\":12,\
                 \"status\":\"open\",\"timestamp\":1712345678.9}}\n\n",
                published.seq
            )]
        );
        registry.unsubscribe(stream.as_mut().unwrap());
        let stats = registry.counters().snapshot();
        assert_eq!((stats.subscribers, stats.streams), (1, 0));
    }
}
