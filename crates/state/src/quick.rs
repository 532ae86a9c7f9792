//! A lot's free count published for reads that take no lock.
//!
//! `getAvailability` is the hottest request, and answering it under the lot's lock cost it
//! the lock, a purge and two waitlist checks. Every operation on a lot ends (under the lot's
//! lock) by publishing here the free count it leaves and until when that count stays true
//! with nothing else happening: the next reservation expiry (monotonic clock) and the next
//! booking or waitlist due time (wall clock). A read that finds the count still true by the
//! clock returns it without the lock; otherwise it takes the lock as before, which purges,
//! moves bookings on and publishes again. Writes never use this: the check-and-set of a
//! reservation stays under the lot's lock.
//!
//! The three values are published under a sequence number (a seqlock: odd while being
//! written). There is one writer at a time, the holder of the lot's lock; readers retry
//! nothing, they fall back to the lock when they see a write in progress.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// "Never": no expiry or due time bounds the count.
pub(crate) const NEVER: u64 = u64::MAX;

/// One lot's published free count.
#[derive(Debug)]
pub(crate) struct QuickFree {
    /// Odd while a write is in progress.
    seq: AtomicU64,
    free: AtomicU32,
    /// The count holds while the monotonic clock, in nanoseconds since the state's epoch, is
    /// below this (0: never, so reads take the lock).
    until_ns: AtomicU64,
    /// ... and while the wall clock, in Unix seconds, is below this.
    until_wall_s: AtomicU64,
}

impl QuickFree {
    /// Nothing published yet: reads take the lock until the lot's first operation publishes.
    pub(crate) fn unpublished() -> Self {
        QuickFree {
            seq: AtomicU64::new(0),
            free: AtomicU32::new(0),
            until_ns: AtomicU64::new(0),
            until_wall_s: AtomicU64::new(0),
        }
    }

    /// Publishes `free`, true while the monotonic clock is below `until_ns` and the wall
    /// clock below `until_wall_s`. Only under the lot's lock, so there is one writer.
    pub(crate) fn publish(&self, free: u32, until_ns: u64, until_wall_s: u64) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd number before the values: a reader that sees any new value sees
        // the odd (or a later) number on its second look, and falls back to the lock.
        fence(Ordering::Release);
        self.free.store(free, Ordering::Relaxed);
        self.until_ns.store(until_ns, Ordering::Relaxed);
        self.until_wall_s.store(until_wall_s, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Withdraws the published count: reads take the lock.
    pub(crate) fn withdraw(&self) {
        self.publish(0, 0, 0);
    }

    /// The published count with the bounds it holds within, unless a write is in progress.
    pub(crate) fn read(&self) -> Option<(u32, u64, u64)> {
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        let free = self.free.load(Ordering::Relaxed);
        let until_ns = self.until_ns.load(Ordering::Relaxed);
        let until_wall_s = self.until_wall_s.load(Ordering::Relaxed);
        // Orders the values before the second look at the number (see `publish`).
        fence(Ordering::Acquire);
        let after = self.seq.load(Ordering::Relaxed);
        (before == after).then_some((free, until_ns, until_wall_s))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    #[test]
    fn nothing_published_is_never_true() {
        let quick = QuickFree::unpublished();
        let (_, until_ns, until_wall_s) = quick.read().unwrap();
        assert_eq!((until_ns, until_wall_s), (0, 0));
    }

    #[test]
    fn reads_what_was_published_last() {
        let quick = QuickFree::unpublished();
        quick.publish(7, 100, NEVER);
        assert_eq!(quick.read(), Some((7, 100, NEVER)));
        quick.withdraw();
        assert_eq!(quick.read(), Some((0, 0, 0)));
    }

    #[test]
    fn a_read_never_mixes_two_publications() {
        // Each publication's three values agree (free = n, until = 2n, wall = 3n); a torn
        // read would show values of different publications.
        let quick = Arc::new(QuickFree::unpublished());
        let writer = {
            let quick = Arc::clone(&quick);
            thread::spawn(move || {
                for n in 1..200_000u32 {
                    quick.publish(n, 2 * u64::from(n), 3 * u64::from(n));
                }
            })
        };
        let mut seen = 0;
        loop {
            // Looked at before the read, so the last read comes after the last publication.
            let done = writer.is_finished();
            if let Some((free, until_ns, until_wall_s)) = quick.read()
                && free > 0
            {
                let n = u64::from(free);
                assert_eq!((until_ns, until_wall_s), (2 * n, 3 * n));
                seen += 1;
            }
            if done {
                break;
            }
        }
        writer.join().unwrap();
        assert!(seen > 0);
    }
}
