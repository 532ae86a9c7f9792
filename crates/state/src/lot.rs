//! One lot's counters and reservations. Not thread-safe by itself: [`crate::ParkingState`] keeps
//! each `Lot` behind its own lock.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::ids::Plate;
use crate::parking::{CancelOutcome, OccupancyChange, ReserveOutcome};

/// Entries the expiry queue may hold per live reservation (the live one's own entry included,
/// the rest stale ones left behind by cancels) before it is rebuilt; keeps memory proportional
/// to live reservations under churn.
const STALE_ENTRY_RATIO: usize = 2;
/// Queue length below which stale entries are never worth a rebuild.
const MIN_COMPACT_LEN: usize = 64;

#[derive(Debug)]
pub(crate) struct Lot {
    pub(crate) capacity: u32,
    pub(crate) occupied: u32,
    /// Live reservations and when each expires.
    reservations: HashMap<Plate, Instant>,
    /// Expiry times in order. The TTL is the same for every reservation, so appending keeps
    /// the queue sorted and purging only ever looks at the front. Cancelled reservations leave
    /// stale entries, recognised because the map no longer holds that plate with that time.
    expiries: VecDeque<(Instant, Plate)>,
    /// The free count listeners last heard about; a change is published when this differs.
    published_free: u32,
}

impl Lot {
    pub(crate) fn new(capacity: u32) -> Self {
        Lot {
            capacity,
            occupied: 0,
            reservations: HashMap::new(),
            expiries: VecDeque::new(),
            published_free: capacity,
        }
    }

    pub(crate) fn reserved(&self) -> u32 {
        // Reservations never exceed capacity, a u32.
        self.reservations.len() as u32
    }

    pub(crate) fn free(&self) -> u32 {
        self.capacity
            .saturating_sub(self.occupied.saturating_add(self.reserved()))
    }

    /// Drops every reservation whose time has come; returns how many.
    pub(crate) fn purge(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(expires_at, plate)) = self.expiries.front() {
            if expires_at > now {
                break;
            }
            self.expiries.pop_front();
            if self.reservations.get(&plate) == Some(&expires_at) {
                self.reservations.remove(&plate);
                expired += 1;
            }
        }
        expired
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.front().map(|&(expires_at, _)| expires_at)
    }

    /// The check-and-set; the caller has purged expired reservations first.
    pub(crate) fn reserve(&mut self, plate: Plate, expires_at: Instant) -> ReserveOutcome {
        if self.reservations.contains_key(&plate) {
            return ReserveOutcome::AlreadyReserved;
        }
        if u64::from(self.occupied) + u64::from(self.reserved()) >= u64::from(self.capacity) {
            return ReserveOutcome::Full;
        }
        self.reservations.insert(plate, expires_at);
        self.expiries.push_back((expires_at, plate));
        ReserveOutcome::Reserved
    }

    pub(crate) fn cancel(&mut self, plate: Plate) -> CancelOutcome {
        if self.reservations.remove(&plate).is_none() {
            return CancelOutcome::NotFound;
        }
        if self.expiries.len() > MIN_COMPACT_LEN
            && self.expiries.len() > STALE_ENTRY_RATIO * self.reservations.len()
        {
            let reservations = &self.reservations;
            self.expiries
                .retain(|(expires_at, plate)| reservations.get(plate) == Some(expires_at));
        }
        CancelOutcome::Cancelled
    }

    /// Applies a sensor report, clamped to `[0, capacity]`; returns whether it was clamped.
    pub(crate) fn apply(&mut self, change: OccupancyChange) -> bool {
        let wanted = match change {
            OccupancyChange::Set(n) => i64::from(n),
            OccupancyChange::Increase(k) => i64::from(self.occupied) + i64::from(k),
            OccupancyChange::Decrease(k) => i64::from(self.occupied) - i64::from(k),
        };
        let clamped = wanted.clamp(0, i64::from(self.capacity));
        // Clamped into [0, capacity], which fits in u32.
        self.occupied = clamped as u32;
        clamped != wanted
    }

    /// The new free count if it differs from the last one published, marking it published.
    pub(crate) fn take_change(&mut self) -> Option<u32> {
        let free = self.free();
        (free != self.published_free).then(|| {
            self.published_free = free;
            free
        })
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
                assert_eq!(lot.reserve(plate(plate_name), at), ReserveOutcome::Reserved);
                assert_eq!(lot.cancel(plate(plate_name)), CancelOutcome::Cancelled);
                lot.expiries.len()
            })
            .collect()
    }

    #[test]
    fn cancel_compacts_stale_expiries_past_the_minimum_length() {
        let mut lot = Lot::new(10);
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
        let mut lot = Lot::new(1000);
        let now = Instant::now();
        for n in 0..LIVE {
            let expires = now + Duration::from_secs(60);
            assert_eq!(
                lot.reserve(plate(&format!("L{n}")), expires),
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
        let mut lot = Lot::new(10);
        let now = Instant::now();
        lot.reserve(plate("P"), now + Duration::from_secs(1));
        lot.cancel(plate("P"));
        lot.reserve(plate("P"), now + Duration::from_secs(2));
        assert_eq!(lot.purge(now + Duration::from_secs(1)), 0);
        assert_eq!(lot.reserved(), 1);
        assert_eq!(lot.purge(now + Duration::from_secs(2)), 1);
        assert_eq!(lot.reserved(), 0);
    }

    #[test]
    fn sensor_updates_clamp() {
        let mut lot = Lot::new(5);
        assert!(!lot.apply(OccupancyChange::Set(5)));
        assert!(lot.apply(OccupancyChange::Increase(1)));
        assert_eq!(lot.occupied, 5);
        assert!(lot.apply(OccupancyChange::Decrease(u32::MAX)));
        assert_eq!(lot.occupied, 0);
        assert!(lot.apply(OccupancyChange::Set(6)));
        assert_eq!(lot.occupied, 5);
    }
}
