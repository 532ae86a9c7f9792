//! The broker's counters: updated with relaxed atomics from any thread, read as one
//! [`BrokerStats`] snapshot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::registry::Encoding;

/// A snapshot of the broker's counters. The fields are read one by one, so under load they
/// may be a few events apart from each other; each one on its own is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Pub/sub connections that have subscribed to at least one topic and are still open.
    pub subscribers: usize,
    /// Open event streams (the HTTP port's `GET /v1/events`), each a subscriber too.
    pub streams: usize,
    /// Open connections on the pub/sub port, subscribed or not (those refused with `ERR BUSY`
    /// are never counted).
    pub connections: usize,
    /// Changes of a lot's free count published since start, whether or not anyone follows
    /// the lot.
    pub changes_published: u64,
    /// Event lines offered to subscriber queues since start: one per subscriber per change of
    /// a lot it follows. `events_published - events_dropped` lines were (or are being) sent.
    pub events_published: u64,
    /// Event lines discarded because a subscriber's queue was full (the oldest queued line is
    /// the one discarded).
    pub events_dropped: u64,
    /// Connections closed for not keeping up: their queue overflowed `max_overflow_drops`
    /// times while their socket took no bytes, or they took none of their pending output for
    /// the line timeout.
    pub slow_disconnects: u64,
}

/// The live counters behind [`BrokerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    subscribers: AtomicUsize,
    streams: AtomicUsize,
    connections: AtomicUsize,
    changes_published: AtomicU64,
    events_published: AtomicU64,
    events_dropped: AtomicU64,
    slow_disconnects: AtomicU64,
}

impl Counters {
    /// Counts one more connection unless `max` are already open; returns whether it did.
    pub(crate) fn try_add_connection(&self, max: usize) -> bool {
        self.connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < max).then_some(open + 1)
            })
            .is_ok()
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    fn subscribers_of(&self, encoding: Encoding) -> &AtomicUsize {
        match encoding {
            Encoding::Lines => &self.subscribers,
            Encoding::EventStream => &self.streams,
        }
    }

    pub(crate) fn subscriber_added(&self, encoding: Encoding) {
        self.subscribers_of(encoding)
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn subscriber_removed(&self, encoding: Encoding) {
        self.subscribers_of(encoding)
            .fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn change_published(&self) {
        self.changes_published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn event_published(&self) {
        self.events_published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn event_dropped(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_disconnect(&self) {
        self.slow_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BrokerStats {
        BrokerStats {
            subscribers: self.subscribers.load(Ordering::Relaxed),
            streams: self.streams.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            changes_published: self.changes_published.load(Ordering::Relaxed),
            events_published: self.events_published.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            slow_disconnects: self.slow_disconnects.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_is_exact() {
        let counters = Counters::default();
        assert!(counters.try_add_connection(2));
        assert!(counters.try_add_connection(2));
        assert!(!counters.try_add_connection(2));
        assert_eq!(counters.snapshot().connections, 2);
        counters.connection_closed();
        assert!(counters.try_add_connection(2));
    }
}
