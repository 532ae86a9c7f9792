//! One lot's counters and reservations, and the outcomes of the operations on it. Not
//! thread-safe by itself: [`crate::ParkingState`] keeps each `Lot` behind its own lock.
//!
//! The outcome types are the product's one vocabulary for them: the wire codecs (`framing`)
//! encode these same types, so a state outcome, a wire reply and a client result cannot
//! drift apart.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::availability::Availability;
use crate::booking::BookingRules;
use crate::bookings::LotBookings;
use crate::ids::Plate;
use crate::waitlist::LotWaitlist;

/// Entries the expiry queue may hold per live reservation (the live one's own entry included,
/// the rest stale ones left behind by cancels) before it is rebuilt; keeps memory proportional
/// to live reservations under churn.
const STALE_ENTRY_RATIO: usize = 2;
/// Queue length below which stale entries are never worth a rebuild.
const MIN_COMPACT_LEN: usize = 64;

/// How far the sensors' running count may stray outside `[0, capacity]`: far enough that a
/// gate counter's drift is never lost to clamping, near enough that arithmetic never
/// overflows.
pub(crate) const COUNT_LIMIT: i64 = 1 << 40;

/// Result of a reservation ([`crate::ParkingState::reserve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// A space is held for the plate until the TTL runs out.
    Reserved,
    /// Occupied, reserved and booked spaces already reach the capacity.
    Full,
    /// The plate already holds a live reservation in this lot.
    Exists,
}

impl ReserveOutcome {
    /// Why nothing was reserved, in the word every port and client uses for it (`FULL`,
    /// `EXISTS`: the RPC reply's `reason`); `None` for a grant.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            ReserveOutcome::Reserved => None,
            ReserveOutcome::Full => Some("FULL"),
            ReserveOutcome::Exists => Some("EXISTS"),
        }
    }

    /// The refusal that `reason` names, if it is one of [`ReserveOutcome::reason`]'s words.
    pub fn from_reason(reason: &str) -> Option<Self> {
        [ReserveOutcome::Full, ReserveOutcome::Exists]
            .into_iter()
            .find(|outcome| outcome.reason() == Some(reason))
    }
}

/// Result of a cancellation ([`crate::ParkingState::cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The plate's live reservation was removed.
    Cancelled,
    /// The plate held no live reservation in this lot.
    NotFound,
}

/// A sensor's report about a lot's occupancy count; `Display` writes it as the sensor port
/// does (`n`, `+k`, `-k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountChange {
    /// `n`: exactly `n` spaces are occupied (a lot-level counter).
    Set(u32),
    /// `+k`: `k` more cars came in (a gate counter).
    Add(u32),
    /// `-k`: `k` cars left.
    Remove(u32),
}

impl fmt::Display for CountChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountChange::Set(n) => write!(f, "{n}"),
            CountChange::Add(k) => write!(f, "+{k}"),
            CountChange::Remove(k) => write!(f, "-{k}"),
        }
    }
}

/// A live reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) expires_at: Instant,
    /// The key id that made it, when access control is on.
    pub(crate) owner: Option<Arc<str>>,
}

/// One lot's counters and reservations.
#[derive(Debug)]
pub(crate) struct Lot {
    pub(crate) capacity: u32,
    /// Free spaces at or below which the lot is [`Availability::AlmostFull`].
    pub(crate) almost_full_free: u32,
    /// The sensors' running count, kept unclamped (within [`COUNT_LIMIT`]): a gate counter
    /// that reports more cars leaving than came in must come back to the true count when they
    /// return. What is reported as occupied is this clamped to `[0, capacity]`.
    pub(crate) counted: i64,
    /// Live reservations.
    reservations: HashMap<Plate, Held>,
    /// Expiry times, earliest first, so purging only ever looks at the top. Cancelled
    /// reservations leave stale entries, recognised because the map no longer holds that
    /// plate with that time.
    expiries: BinaryHeap<Reverse<(Instant, Plate)>>,
    /// The free count listeners last heard about; a change is published when this differs.
    published_free: u32,
    /// The number of the last change published.
    published_seq: u64,
    /// Bookings of time windows; those holding a space now count like reservations.
    pub(crate) bookings: LotBookings,
    /// Drivers waiting for room in the lot, and the offers made to them.
    pub(crate) waitlist: LotWaitlist,
}

impl Lot {
    pub(crate) fn new(capacity: u32, almost_full_free: u32) -> Self {
        Lot {
            capacity,
            almost_full_free,
            counted: 0,
            reservations: HashMap::new(),
            expiries: BinaryHeap::new(),
            published_free: capacity,
            published_seq: 0,
            bookings: LotBookings::new(capacity, BookingRules::default()),
            waitlist: LotWaitlist::default(),
        }
    }

    /// Spaces taken, as the sensors see them, within `[0, capacity]`.
    pub(crate) fn occupied(&self) -> u32 {
        // Clamped into [0, capacity], which fits in u32.
        self.counted.clamp(0, i64::from(self.capacity)) as u32
    }

    pub(crate) fn reserved(&self) -> u32 {
        // Reservations are granted below capacity; restored ones are bounded by a u32 count
        // of earlier grants too.
        u32::try_from(self.reservations.len()).unwrap_or(u32::MAX)
    }

    /// Spaces held by bookings whose window includes now.
    pub(crate) fn booked(&self) -> u32 {
        self.bookings.holding()
    }

    /// Spaces taken: occupied, reserved, or held by a booking.
    fn taken(&self) -> u64 {
        u64::from(self.occupied()) + u64::from(self.reserved()) + u64::from(self.booked())
    }

    pub(crate) fn free(&self) -> u32 {
        // At most capacity once saturated, so it fits.
        u64::from(self.capacity).saturating_sub(self.taken()) as u32
    }

    /// How full the lot is now.
    pub(crate) fn availability(&self) -> Availability {
        Availability::of(self.free(), self.almost_full_free)
    }

    /// Drops every reservation whose time has come; returns how many.
    pub(crate) fn purge(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&Reverse((expires_at, plate))) = self.expiries.peek() {
            if expires_at > now {
                break;
            }
            self.expiries.pop();
            if self
                .reservations
                .get(&plate)
                .is_some_and(|held| held.expires_at == expires_at)
            {
                self.reservations.remove(&plate);
                expired += 1;
            }
        }
        expired
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiries
            .peek()
            .map(|&Reverse((expires_at, _))| expires_at)
    }

    /// The live reservation of `plate`, if any.
    pub(crate) fn held(&self, plate: &Plate) -> Option<&Held> {
        self.reservations.get(plate)
    }

    /// Every live reservation.
    pub(crate) fn reservations(&self) -> impl Iterator<Item = (&Plate, &Held)> {
        self.reservations.iter()
    }

    /// The check-and-set; the caller has purged expired reservations first.
    pub(crate) fn reserve(&mut self, plate: Plate, held: Held) -> ReserveOutcome {
        if self.reservations.contains_key(&plate) {
            return ReserveOutcome::Exists;
        }
        if self.taken() >= u64::from(self.capacity) {
            return ReserveOutcome::Full;
        }
        self.set_held(plate, Some(held));
        ReserveOutcome::Reserved
    }

    /// Removes `plate`'s reservation, returning it.
    pub(crate) fn cancel(&mut self, plate: Plate) -> Option<Held> {
        let held = self.reservations.remove(&plate)?;
        self.compact();
        Some(held)
    }

    /// Sets `plate`'s reservation as it is to be, whatever it was (a journal replay, an undo);
    /// capacity is not checked, since it was when the reservation was granted.
    pub(crate) fn set_held(&mut self, plate: Plate, held: Option<Held>) {
        match held {
            Some(held) => {
                self.expiries.push(Reverse((held.expires_at, plate)));
                self.reservations.insert(plate, held);
            }
            None => {
                if self.reservations.remove(&plate).is_some() {
                    self.compact();
                }
            }
        }
    }

    /// Rebuilds the expiry queue once stale entries outnumber live reservations.
    fn compact(&mut self) {
        if self.expiries.len() > MIN_COMPACT_LEN
            && self.expiries.len() > STALE_ENTRY_RATIO * self.reservations.len()
        {
            let reservations = &self.reservations;
            self.expiries.retain(|Reverse((expires_at, plate))| {
                reservations
                    .get(plate)
                    .is_some_and(|held| held.expires_at == *expires_at)
            });
        }
    }

    /// Applies a sensor report to the running count; returns whether what is reported was
    /// clamped (the count is outside `[0, capacity]`).
    pub(crate) fn count(&mut self, change: CountChange) -> bool {
        let wanted = match change {
            CountChange::Set(n) => i64::from(n),
            CountChange::Add(k) => self.counted + i64::from(k),
            CountChange::Remove(k) => self.counted - i64::from(k),
        };
        self.counted = wanted.clamp(-COUNT_LIMIT, COUNT_LIMIT);
        self.counted != i64::from(self.occupied())
    }

    /// The new free count and its change number if it differs from the last one published,
    /// marking it published.
    pub(crate) fn take_change(&mut self) -> Option<(u32, u64)> {
        let free = self.free();
        (free != self.published_free).then(|| {
            self.published_free = free;
            self.published_seq += 1;
            (free, self.published_seq)
        })
    }

    /// The free count listeners last heard about, and its change number.
    pub(crate) fn published(&self) -> (u32, u64) {
        (self.published_free, self.published_seq)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn plate(text: &str) -> Plate {
        Plate::parse(text).unwrap()
    }

    /// Reserves and cancels one plate `rounds` times, returning the queue's length after each.
    fn churn(lot: &mut Lot, plate_name: &str, rounds: u64, now: Instant) -> Vec<usize> {
        (0..rounds)
            .map(|round| {
                let at = now + Duration::from_millis(round);
                assert_eq!(
                    lot.reserve(plate(plate_name), held(at)),
                    ReserveOutcome::Reserved
                );
                assert_eq!(lot.cancel(plate(plate_name)), Some(held(at)));
                lot.expiries.len()
            })
            .collect()
    }

    fn held(at: Instant) -> Held {
        Held {
            expires_at: at,
            owner: None,
        }
    }

    #[test]
    fn cancel_compacts_stale_expiries_past_the_minimum_length() {
        let mut lot = Lot::new(10, 0);
        let lengths = churn(&mut lot, "P", 200, Instant::now());
        // Below MIN_COMPACT_LEN stale entries are left alone; the cancel that takes the queue
        // past it rebuilds it, and the churn starts over.
        let expected: Vec<usize> = (1..=200).map(|n| n % (MIN_COMPACT_LEN + 1)).collect();
        assert_eq!(lengths, expected);
        assert_eq!(lot.free(), 10);
    }

    #[test]
    fn memory_follows_live_reservations_under_churn() {
        const LIVE: usize = 40;
        let mut lot = Lot::new(1000, 0);
        let now = Instant::now();
        for n in 0..LIVE {
            let expires = now + Duration::from_secs(60);
            assert_eq!(
                lot.reserve(plate(&format!("L{n}")), held(expires)),
                ReserveOutcome::Reserved
            );
        }
        // The queue may grow to twice the live reservations (as many stale entries as live
        // ones); the cancel that takes it past that rebuilds it down to the live ones.
        let lengths = churn(&mut lot, "P", 100, now);
        let limit = STALE_ENTRY_RATIO * LIVE;
        let expected: Vec<usize> = (1..=100).map(|n| LIVE + n % (limit - LIVE + 1)).collect();
        assert_eq!(lengths, expected);
        assert_eq!(lot.reserved(), LIVE as u32);
    }

    #[test]
    fn stale_entry_does_not_expire_a_newer_reservation() {
        let mut lot = Lot::new(10, 0);
        let now = Instant::now();
        lot.reserve(plate("P"), held(now + Duration::from_secs(1)));
        lot.cancel(plate("P"));
        lot.reserve(plate("P"), held(now + Duration::from_secs(2)));
        assert_eq!(lot.purge(now + Duration::from_secs(1)), 0);
        assert_eq!(lot.reserved(), 1);
        assert_eq!(lot.purge(now + Duration::from_secs(2)), 1);
        assert_eq!(lot.reserved(), 0);
    }

    #[test]
    fn restored_reservations_expire_in_time_order_whatever_the_order_they_came_in() {
        let mut lot = Lot::new(10, 0);
        let now = Instant::now();
        for (name, secs) in [("LATE", 30), ("EARLY", 10), ("MID", 20)] {
            lot.set_held(plate(name), Some(held(now + Duration::from_secs(secs))));
        }
        assert_eq!(lot.next_expiry(), Some(now + Duration::from_secs(10)));
        assert_eq!(lot.purge(now + Duration::from_secs(15)), 1);
        assert!(lot.held(&plate("EARLY")).is_none());
        assert_eq!(lot.purge(now + Duration::from_secs(25)), 1);
        assert_eq!(lot.reserved(), 1);
    }

    #[test]
    fn the_running_count_is_kept_and_only_the_report_is_clamped() {
        let mut lot = Lot::new(50, 0);
        assert!(!lot.count(CountChange::Set(50)));
        // Five more cars than spaces: the report stays at capacity, the count goes on.
        assert!(lot.count(CountChange::Add(5)));
        assert_eq!((lot.occupied(), lot.counted, lot.free()), (50, 55, 0));
        // They leave: the lot is full again, not five short.
        assert!(!lot.count(CountChange::Remove(5)));
        assert_eq!((lot.occupied(), lot.counted, lot.free()), (50, 50, 0));
        assert!(lot.count(CountChange::Remove(u32::MAX)));
        assert_eq!(lot.occupied(), 0);
        assert_eq!(lot.counted, 50 - i64::from(u32::MAX));
        // The count is bounded, so arithmetic cannot overflow.
        for _ in 0..1000 {
            lot.count(CountChange::Remove(u32::MAX));
        }
        assert_eq!(lot.counted, -COUNT_LIMIT);
        assert!(!lot.count(CountChange::Set(6)));
        assert_eq!(lot.occupied(), 6);
    }
}
