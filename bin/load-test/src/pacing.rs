//! Open-loop pacing: when each request of a `--rate` run is meant to be sent.
//!
//! The total rate is split evenly between the connections, and connection `c` of `n` is
//! shifted by `c/n` of its own interval, so that together they send one evenly spaced stream
//! rather than `n` simultaneous bursts. Latency is measured from these intended times, not
//! from the moment a request actually left: a connection held up by a slow reply sends late,
//! and the delay counts against the server (the coordinated-omission correction wrk2 makes).
//!
//! Times are computed from the start and the request's number each time, never by adding
//! intervals up, so rounding does not drift over a long run.

use std::ops::Range;
use std::time::{Duration, Instant};

/// The intended send times of one connection's requests.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Seconds between two of this connection's requests.
    interval: f64,
    /// Seconds from `start` to this connection's first request.
    offset: f64,
    /// Number of the next request to send.
    next: u64,
}

impl Pacer {
    /// The schedule of connection `connection` (counted from 0) of `connections`, sharing
    /// `total_rate` requests per second (finite and positive), from `start`.
    pub fn new(start: Instant, total_rate: f64, connections: u32, connection: u32) -> Self {
        let connections = f64::from(connections.max(1));
        let interval = connections / total_rate;
        Pacer {
            start,
            interval,
            offset: interval * f64::from(connection) / connections,
            next: 0,
        }
    }

    /// When request number `n` is due.
    pub fn due(&self, n: u64) -> Instant {
        let secs = self.offset + self.interval * n as f64;
        // Out-of-range values only come from schedules far beyond any run's end; those
        // requests are simply never due.
        Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|offset| self.start.checked_add(offset))
            .unwrap_or_else(|| self.far_future())
    }

    /// When the next request is due.
    pub fn next_due(&self) -> Instant {
        self.due(self.next)
    }

    /// Takes the next request's slot and returns its intended send time.
    pub fn advance(&mut self) -> Instant {
        let due = self.next_due();
        self.next = self.next.saturating_add(1);
        due
    }

    /// Gives up every slot due before `now` (a connection that was down cannot send them
    /// late: they would arrive as a burst the real clients would not have sent) and returns the
    /// numbers of the slots given up. The caller counts them as failed, so that an outage does
    /// not simply vanish from the row.
    pub fn skip_to(&mut self, now: Instant) -> Range<u64> {
        let first = self.first_due_at_or_after(now);
        let skipped = self.next..first.max(self.next);
        self.next = skipped.end;
        skipped
    }

    /// How many of `slots` are due in `[from, to)`.
    pub fn slots_between(&self, slots: Range<u64>, from: Instant, to: Instant) -> u64 {
        let lo = slots.start.max(self.first_due_at_or_after(from));
        let hi = slots.end.min(self.first_due_at_or_after(to));
        hi.saturating_sub(lo)
    }

    /// The number of the first slot due at or after `at`.
    fn first_due_at_or_after(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.start).as_secs_f64() - self.offset;
        if elapsed <= 0.0 {
            return 0;
        }
        // The float-to-int cast saturates.
        (elapsed / self.interval).ceil() as u64
    }

    fn far_future(&self) -> Instant {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        self.start.checked_add(YEAR).unwrap_or(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(pacer: &Pacer, n: u64) -> u128 {
        (pacer.due(n) - pacer.start).as_micros()
    }

    #[test]
    fn connections_interleave_into_one_even_stream() {
        let start = Instant::now();
        // 1000 req/s over 4 connections: each sends every 4 ms, shifted by 1 ms from the last.
        let pacers: Vec<Pacer> = (0..4).map(|c| Pacer::new(start, 1000.0, 4, c)).collect();
        let mut all: Vec<u128> = pacers
            .iter()
            .flat_map(|p| (0..5).map(move |n| micros(p, n)))
            .collect();
        all.sort_unstable();
        let expected: Vec<u128> = (0..20).map(|n| n * 1000).collect();
        assert_eq!(all, expected);
        assert_eq!(micros(&pacers[1], 0), 1000);
        assert_eq!(micros(&pacers[1], 2), 9000);
    }

    #[test]
    fn advance_hands_out_consecutive_slots_without_drift() {
        let start = Instant::now();
        // 3 req/s: an interval that is not exact in binary.
        let mut pacer = Pacer::new(start, 3.0, 1, 0);
        assert_eq!(pacer.advance(), start);
        for _ in 1..299_999 {
            pacer.advance();
        }
        // Request 299 999 is due after 99 999.666 666... s, to the microsecond.
        assert_eq!((pacer.next_due() - start).as_micros(), 99_999_666_666);
    }

    #[test]
    fn skip_to_drops_missed_slots_only() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut pacer = Pacer::new(start, 100.0, 1, 0);
        assert!(pacer.skip_to(start).is_empty());
        pacer.advance();
        // 55 ms in: slots 1..=5 (10..50 ms) are gone, slot 6 (60 ms) is next.
        let skipped = pacer.skip_to(start + ms(55));
        assert_eq!(skipped, 1..6);
        assert_eq!(pacer.next_due() - start, ms(60));
        // Of those, the ones due in [25 ms, 45 ms) are slots 3 and 4.
        assert_eq!(
            pacer.slots_between(skipped.clone(), start + ms(25), start + ms(45)),
            2
        );
        assert_eq!(
            pacer.slots_between(skipped.clone(), start, start + ms(1000)),
            5
        );
        assert_eq!(
            pacer.slots_between(skipped, start + ms(100), start + ms(200)),
            0
        );
        // Going back in time never rewinds.
        assert!(pacer.skip_to(start + ms(5)).is_empty());
        assert_eq!(pacer.next_due() - start, ms(60));
        // A connection whose offset has not come yet skips nothing.
        let mut late = Pacer::new(start, 100.0, 2, 1);
        assert!(late.skip_to(start + ms(5)).is_empty());
        assert_eq!(late.next_due() - start, ms(10));
    }

    #[test]
    fn absurd_schedules_do_not_panic() {
        let start = Instant::now();
        let pacer = Pacer::new(start, 1e-3, 10_000, 9_999);
        assert!(pacer.due(u64::MAX) > start);
        let mut pacer = Pacer::new(start, 1e7, 1, 0);
        assert!(
            !pacer
                .skip_to(start + Duration::from_secs(86_400))
                .is_empty()
        );
    }
}
