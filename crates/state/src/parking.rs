//! [`ParkingState`]: the lots, shared by every worker, and the values its operations return.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

use crate::clock::Clock;
use crate::ids::{LotId, Plate};
use crate::lot::Lot;

/// A lot as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotSpec {
    /// The lot's id.
    pub id: LotId,
    /// Its number of spaces (at least 1).
    pub capacity: u32,
}

/// One lot's counts at one instant, expired reservations excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotSnapshot {
    /// The lot's id.
    pub id: LotId,
    /// Total spaces.
    pub capacity: u32,
    /// Spaces the sensors report as taken.
    pub occupied: u32,
    /// Live reservations.
    pub reserved: u32,
    /// `max(0, capacity - occupied - reserved)`.
    pub free: u32,
}

/// Result of [`ParkingState::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// A space is held for the plate until the TTL runs out.
    Reserved,
    /// Occupied plus reserved spaces already reach the capacity.
    Full,
    /// The plate already holds a live reservation in this lot.
    AlreadyReserved,
}

/// Result of [`ParkingState::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The plate's live reservation was removed.
    Cancelled,
    /// The plate held no live reservation in this lot.
    NotFound,
}

/// A sensor's report about a lot's occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OccupancyChange {
    /// Exactly `n` spaces are occupied.
    Set(u32),
    /// `k` more cars came in.
    Increase(u32),
    /// `k` cars left.
    Decrease(u32),
}

/// Result of [`ParkingState::update_occupancy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OccupancyUpdate {
    /// Occupied spaces after the update.
    pub occupied: u32,
    /// Free spaces after the update.
    pub free: u32,
    /// The report asked for less than 0 or more than capacity and was clamped.
    pub clamped: bool,
}

/// A change of a lot's free count, as listeners receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotChange {
    /// The lot that changed.
    pub lot: LotId,
    /// Its free count after the change.
    pub free: u32,
    /// When the change happened.
    pub at: SystemTime,
}

/// A callback told of every change of a lot's free count, once per change and in order per
/// lot. Called with no lock of the lot held, on a thread that changed the lot (not always the
/// one that made this change), so it should return quickly.
pub type Listener = Arc<dyn Fn(&LotChange) + Send + Sync>;

/// No lot has the requested id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLot(pub String);

impl fmt::Display for UnknownLot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no lot with id {:?}", self.0)
    }
}

impl std::error::Error for UnknownLot {}

/// Why a [`ParkingState`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// No lots were given.
    NoLots,
    /// Two lots share an id.
    DuplicateLot(LotId),
    /// A lot has no spaces.
    ZeroCapacity(LotId),
    /// The reservation TTL is zero.
    ZeroTtl,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NoLots => write!(f, "at least one lot is needed"),
            SetupError::DuplicateLot(id) => write!(f, "lot id {id:?} appears more than once"),
            SetupError::ZeroCapacity(id) => write!(f, "lot {id:?} has capacity 0"),
            SetupError::ZeroTtl => write!(f, "the reservation TTL must be at least 1 second"),
        }
    }
}

impl std::error::Error for SetupError {}

struct Slot {
    id: LotId,
    lot: Mutex<Lot>,
    /// Changes made but not yet handed to the listeners, in the order they were made (they
    /// are queued under `lot`'s lock).
    pending: Mutex<VecDeque<LotChange>>,
    /// Held by the one thread handing this lot's pending changes to the listeners. Others
    /// that find it taken leave their change to that thread instead of waiting.
    publishing: Mutex<()>,
}

/// Every lot's occupancy and reservations, safe to share between threads.
pub struct ParkingState {
    /// In configuration order, which is the order `getLots` reports.
    slots: Vec<Slot>,
    index: HashMap<LotId, usize>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    listeners: RwLock<Vec<Listener>>,
}

impl fmt::Debug for ParkingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParkingState")
            .field("lots", &self.lots())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl std::borrow::Borrow<str> for LotId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl ParkingState {
    /// Builds the state with every lot empty; reservations live for `ttl`.
    pub fn new(
        lots: impl IntoIterator<Item = LotSpec>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SetupError> {
        if ttl.is_zero() {
            return Err(SetupError::ZeroTtl);
        }
        let mut slots = Vec::new();
        let mut index = HashMap::new();
        for spec in lots {
            if spec.capacity == 0 {
                return Err(SetupError::ZeroCapacity(spec.id));
            }
            if index.insert(spec.id.clone(), slots.len()).is_some() {
                return Err(SetupError::DuplicateLot(spec.id));
            }
            slots.push(Slot {
                id: spec.id,
                lot: Mutex::new(Lot::new(spec.capacity)),
                pending: Mutex::new(VecDeque::new()),
                publishing: Mutex::new(()),
            });
        }
        if slots.is_empty() {
            return Err(SetupError::NoLots);
        }
        Ok(ParkingState {
            slots,
            index,
            ttl,
            clock,
            listeners: RwLock::new(Vec::new()),
        })
    }

    /// Registers a listener for every later change of any lot's free count.
    pub fn add_listener(&self, listener: Listener) {
        self.listeners.write().push(listener);
    }

    /// How long a reservation lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The lot ids in configuration order.
    pub fn lot_ids(&self) -> impl Iterator<Item = &LotId> {
        self.slots.iter().map(|slot| &slot.id)
    }

    /// Looks up a lot id, returning the shared [`LotId`].
    pub fn lot_id(&self, id: &str) -> Result<&LotId, UnknownLot> {
        self.slot(id).map(|slot| &slot.id)
    }

    /// Every lot's counts, in configuration order.
    pub fn lots(&self) -> Vec<LotSnapshot> {
        self.slots
            .iter()
            .map(|slot| {
                self.with_slot(slot, |lot, _| LotSnapshot {
                    id: slot.id.clone(),
                    capacity: lot.capacity,
                    occupied: lot.occupied,
                    reserved: lot.reserved(),
                    free: lot.free(),
                })
                .0
            })
            .collect()
    }

    /// Free spaces in one lot.
    pub fn free(&self, lot: &str) -> Result<u32, UnknownLot> {
        self.with_lot(lot, |lot, _| lot.free())
    }

    /// Holds a space for `plate` unless the lot is full or the plate already holds one.
    pub fn reserve(&self, lot: &str, plate: Plate) -> Result<ReserveOutcome, UnknownLot> {
        let ttl = self.ttl;
        self.with_lot(lot, |lot, now| lot.reserve(plate, now + ttl))
    }

    /// Removes `plate`'s live reservation, if any.
    pub fn cancel(&self, lot: &str, plate: Plate) -> Result<CancelOutcome, UnknownLot> {
        self.with_lot(lot, |lot, _| lot.cancel(plate))
    }

    /// Applies a sensor's occupancy report, clamped to `[0, capacity]`.
    pub fn update_occupancy(
        &self,
        lot: &str,
        change: OccupancyChange,
    ) -> Result<OccupancyUpdate, UnknownLot> {
        self.with_lot(lot, |lot, _| {
            let clamped = lot.apply(change);
            OccupancyUpdate {
                occupied: lot.occupied,
                free: lot.free(),
                clamped,
            }
        })
    }

    /// Removes expired reservations from every lot (publishing the resulting changes);
    /// returns how many were removed. Reads never count expired reservations whether or not
    /// this has run; it keeps memory bounded and makes expiry events timely.
    pub fn purge_expired(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| self.with_slot(slot, |_, _| ()).1)
            .sum()
    }

    /// The earliest time any reservation may expire.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|slot| slot.lot.lock().next_expiry())
            .min()
    }

    /// The clock this state runs on.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn slot(&self, id: &str) -> Result<&Slot, UnknownLot> {
        self.index
            .get(id)
            .and_then(|&index| self.slots.get(index))
            .ok_or_else(|| UnknownLot(id.to_owned()))
    }

    fn with_lot<R>(
        &self,
        id: &str,
        op: impl FnOnce(&mut Lot, Instant) -> R,
    ) -> Result<R, UnknownLot> {
        let slot = self.slot(id)?;
        Ok(self.with_slot(slot, op).0)
    }

    /// Runs `op` on the lot under its lock, after purging expired reservations, then publishes
    /// the change of free count, if any, with the lock released. Returns `op`'s result and the
    /// number of reservations purged.
    fn with_slot<R>(&self, slot: &Slot, op: impl FnOnce(&mut Lot, Instant) -> R) -> (R, usize) {
        let mut lot = slot.lot.lock();
        // Read under the lock, so a lot sees time only move forward: its expiry queue stays
        // sorted, which purging relies on. Read before the lock, a thread that waited for it
        // could queue an expiry behind a later one, keeping its reservation past the TTL.
        let now = self.clock.now();
        let purged = lot.purge(now);
        let result = op(&mut lot, now);
        let changed = lot.take_change();
        if let Some(free) = changed {
            slot.pending.lock().push_back(LotChange {
                lot: slot.id.clone(),
                free,
                at: self.clock.wall(),
            });
        }
        drop(lot);
        if changed.is_some() {
            self.publish_pending(slot);
        }
        (result, purged)
    }

    /// Hands the lot's pending changes to the listeners, oldest first, unless another thread
    /// is already doing so, in which case that thread publishes ours too. So changes reach
    /// listeners in the order they were made, listeners never run under the lot's lock, and no
    /// thread ever waits for another thread's listeners.
    fn publish_pending(&self, slot: &Slot) {
        loop {
            let Some(publishing) = slot.publishing.try_lock() else {
                return;
            };
            let listeners = self.listeners.read();
            loop {
                let next = slot.pending.lock().pop_front();
                let Some(change) = next else { break };
                for listener in listeners.iter() {
                    listener(&change);
                }
            }
            drop(listeners);
            drop(publishing);
            // A change queued after our last look, by a thread that then found `publishing`
            // taken, is ours to publish.
            if slot.pending.lock().is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::thread;

    use super::*;
    use crate::clock::ManualClock;

    fn spec(id: &str, capacity: u32) -> LotSpec {
        LotSpec {
            id: LotId::new(id).unwrap(),
            capacity,
        }
    }

    fn plate(text: &str) -> Plate {
        Plate::parse(text).unwrap()
    }

    fn state_with(clock: Arc<ManualClock>, capacity: u32) -> ParkingState {
        ParkingState::new(
            [spec("A", capacity), spec("B", 5)],
            Duration::from_secs(10),
            clock,
        )
        .unwrap()
    }

    fn recorder(state: &ParkingState) -> Arc<Mutex<Vec<(String, u32)>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        state.add_listener(Arc::new(move |change: &LotChange| {
            sink.lock().push((change.lot.to_string(), change.free));
        }));
        seen
    }

    #[test]
    fn setup_errors() {
        let clock = Arc::new(ManualClock::new());
        let ttl = Duration::from_secs(1);
        assert_eq!(
            ParkingState::new([], ttl, clock.clone()).unwrap_err(),
            SetupError::NoLots
        );
        assert!(matches!(
            ParkingState::new([spec("A", 1), spec("A", 2)], ttl, clock.clone()),
            Err(SetupError::DuplicateLot(_))
        ));
        assert!(matches!(
            ParkingState::new([spec("A", 0)], ttl, clock.clone()),
            Err(SetupError::ZeroCapacity(_))
        ));
        assert_eq!(
            ParkingState::new([spec("A", 1)], Duration::ZERO, clock).unwrap_err(),
            SetupError::ZeroTtl
        );
        // What the server prints when it cannot start.
        assert_eq!(SetupError::NoLots.to_string(), "at least one lot is needed");
        assert_eq!(
            SetupError::DuplicateLot(LotId::new("A").unwrap()).to_string(),
            "lot id LotId(\"A\") appears more than once"
        );
        assert_eq!(
            SetupError::ZeroCapacity(LotId::new("A").unwrap()).to_string(),
            "lot LotId(\"A\") has capacity 0"
        );
        assert_eq!(
            SetupError::ZeroTtl.to_string(),
            "the reservation TTL must be at least 1 second"
        );
    }

    #[test]
    fn accessors_report_the_configuration() {
        let state = state_with(Arc::new(ManualClock::new()), 3);
        assert_eq!(state.ttl(), Duration::from_secs(10));
        let ids: Vec<&str> = state.lot_ids().map(LotId::as_str).collect();
        assert_eq!(ids, ["A", "B"]);
        assert_eq!(state.lot_id("B").unwrap().as_str(), "B");
        assert_eq!(UnknownLot("Z".into()).to_string(), "no lot with id \"Z\"");
        let debug = format!("{state:?}");
        assert!(
            debug.starts_with("ParkingState { lots: [LotSnapshot { id: LotId(\"A\"), capacity: 3")
                && debug.contains("ttl: 10s"),
            "{debug}"
        );
    }

    #[test]
    fn reserve_cancel_and_counts() {
        let state = state_with(Arc::new(ManualClock::new()), 2);
        let events = recorder(&state);
        assert_eq!(
            state.reserve("A", plate("p1")).unwrap(),
            ReserveOutcome::Reserved
        );
        assert_eq!(
            state.reserve("A", plate("P1")).unwrap(),
            ReserveOutcome::AlreadyReserved
        );
        assert_eq!(
            state.reserve("A", plate("P2")).unwrap(),
            ReserveOutcome::Reserved
        );
        assert_eq!(
            state.reserve("A", plate("P3")).unwrap(),
            ReserveOutcome::Full
        );
        assert_eq!(state.free("A").unwrap(), 0);
        assert_eq!(
            state.cancel("A", plate("P1")).unwrap(),
            CancelOutcome::Cancelled
        );
        assert_eq!(
            state.cancel("A", plate("P1")).unwrap(),
            CancelOutcome::NotFound
        );
        assert_eq!(state.free("A").unwrap(), 1);
        assert_eq!(state.reserve("Z", plate("P1")), Err(UnknownLot("Z".into())));
        let a = &state.lots()[0];
        assert_eq!((a.capacity, a.occupied, a.reserved, a.free), (2, 0, 1, 1));
        assert_eq!(
            *events.lock(),
            vec![("A".into(), 1), ("A".into(), 0), ("A".into(), 1)]
        );
    }

    #[test]
    fn reservations_expire_on_reads_without_purge() {
        let clock = Arc::new(ManualClock::new());
        let state = state_with(clock.clone(), 3);
        let events = recorder(&state);
        state.reserve("A", plate("P1")).unwrap();
        clock.advance(Duration::from_secs(9));
        assert_eq!(state.free("A").unwrap(), 2);
        clock.advance(Duration::from_secs(1));
        assert_eq!(state.free("A").unwrap(), 3);
        assert_eq!(state.lots()[0].reserved, 0);
        assert_eq!(*events.lock(), vec![("A".into(), 2), ("A".into(), 3)]);
        // The expired plate may reserve again.
        assert_eq!(
            state.reserve("A", plate("P1")).unwrap(),
            ReserveOutcome::Reserved
        );
    }

    #[test]
    fn purge_reports_and_publishes_expiry() {
        let clock = Arc::new(ManualClock::new());
        let state = state_with(clock.clone(), 3);
        state.reserve("A", plate("P1")).unwrap();
        state.reserve("B", plate("P1")).unwrap();
        let events = recorder(&state);
        assert_eq!(
            state.next_expiry(),
            Some(clock.now() + Duration::from_secs(10))
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(state.purge_expired(), 2);
        assert_eq!(state.next_expiry(), None);
        assert_eq!(*events.lock(), vec![("A".into(), 3), ("B".into(), 5)]);
    }

    #[test]
    fn sensor_updates_publish_only_real_changes() {
        let state = state_with(Arc::new(ManualClock::new()), 10);
        let events = recorder(&state);
        let update = state
            .update_occupancy("A", OccupancyChange::Set(4))
            .unwrap();
        assert_eq!(
            update,
            OccupancyUpdate {
                occupied: 4,
                free: 6,
                clamped: false
            }
        );
        state
            .update_occupancy("A", OccupancyChange::Set(4))
            .unwrap();
        let update = state
            .update_occupancy("A", OccupancyChange::Increase(100))
            .unwrap();
        assert_eq!(
            update,
            OccupancyUpdate {
                occupied: 10,
                free: 0,
                clamped: true
            }
        );
        assert_eq!(*events.lock(), vec![("A".into(), 6), ("A".into(), 0)]);
    }

    #[test]
    fn concurrent_reserves_never_overbook() {
        let state = Arc::new(state_with(Arc::new(ManualClock::new()), 50));
        let granted = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let state = Arc::clone(&state);
                let granted = Arc::clone(&granted);
                thread::spawn(move || {
                    for n in 0..100 {
                        let plate = plate(&format!("T{thread}N{n}"));
                        if state.reserve("A", plate).unwrap() == ReserveOutcome::Reserved {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::Relaxed), 50);
        assert_eq!(state.free("A").unwrap(), 0);
    }

    #[test]
    fn listeners_see_changes_in_order_under_concurrency() {
        let state = Arc::new(state_with(Arc::new(ManualClock::new()), 1000));
        let events = recorder(&state);
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    for n in 0..200 {
                        state
                            .reserve("A", plate(&format!("T{thread}N{n}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let frees: Vec<u32> = events.lock().iter().map(|(_, free)| *free).collect();
        let expected: Vec<u32> = (200..1000).rev().collect();
        assert_eq!(frees, expected);
    }
}
