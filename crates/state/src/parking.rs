//! [`ParkingState`]: the lots, shared by every worker, and the values its operations return.
//!
//! # Layout
//! - this file: the state, its setup, reservations, sensor counts, durability and publishing.
//! - `bookings`: its booking operations (book, check in, the gate, discovery).
//! - `waitlist`: its waitlist operations (join, leave, accept), the offers made when room
//!   appears, and drivers' accounts and bookings.

mod bookings;
mod waitlist;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::account::Accounts;
use crate::availability::Availability;
use crate::booking::{BookingRules, LotTerms};
use crate::change::{Change, Recorder, Unavailable};
use crate::clock::Clock;
use crate::ids::{LotId, Plate};
use crate::lot::{CancelOutcome, CountChange, Held, Lot, ReserveOutcome};
use crate::notice::{Notice, NoticeListener};
use crate::quick::{self, QuickFree};
use crate::waitlist::WaitlistRules;

/// A lot as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotSpec {
    /// The lot's id.
    pub id: LotId,
    /// Its number of spaces (at least 1).
    pub capacity: u32,
    /// Free spaces at or below which it is [`Availability::AlmostFull`].
    pub almost_full_free: u32,
}

impl LotSpec {
    /// A lot of `capacity` spaces with the default threshold
    /// ([`Availability::default_threshold`]).
    pub fn new(id: LotId, capacity: u32) -> Self {
        LotSpec {
            id,
            capacity,
            almost_full_free: Availability::default_threshold(capacity),
        }
    }
}

/// One lot's counts at one instant, expired reservations excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotSnapshot {
    /// The lot's id.
    pub id: LotId,
    /// Total spaces.
    pub capacity: u32,
    /// Spaces the sensors report as taken: their running count, clamped to `[0, capacity]`.
    pub occupied: u32,
    /// The sensors' running count, unclamped: a gate counter that drifts shows it here.
    pub counted: i64,
    /// Live reservations.
    pub reserved: u32,
    /// Spaces held by confirmed bookings whose window includes now.
    pub booked: u32,
    /// `max(0, capacity - occupied - reserved - booked)`.
    pub free: u32,
    /// How full it is.
    pub status: Availability,
}

/// Result of [`ParkingState::update_occupancy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OccupancyUpdate {
    /// Occupied spaces after the update.
    pub occupied: u32,
    /// The running count after the update, unclamped.
    pub counted: i64,
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
    /// Its status after the change (it changes only with `free`).
    pub status: Availability,
    /// The change's number in its lot, from 1 up: listeners see each lot's changes with
    /// increasing numbers, so one that joins late can tell which changes a snapshot already
    /// covers.
    pub seq: u64,
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
        write!(f, "no lot with id {}", crate::shown::shown(&self.0))
    }
}

impl std::error::Error for UnknownLot {}

/// Why an operation that changes the state failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// No lot has that id.
    UnknownLot(UnknownLot),
    /// The change could not be made durable, so it was not made.
    Unavailable(Unavailable),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::UnknownLot(err) => err.fmt(f),
            StateError::Unavailable(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for StateError {}

impl From<UnknownLot> for StateError {
    fn from(err: UnknownLot) -> Self {
        StateError::UnknownLot(err)
    }
}

impl From<Unavailable> for StateError {
    fn from(err: Unavailable) -> Self {
        StateError::Unavailable(err)
    }
}

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
    /// Booking terms name a lot that does not exist.
    UnknownLot(LotId),
    /// A lot's `bookable` is over its capacity.
    BookableOverCapacity(LotId),
    /// A lot has more named spots than spaces.
    TooManySpots(LotId),
    /// Two spots of a lot share an id.
    DuplicateSpot(LotId, crate::ids::SpotId),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NoLots => write!(f, "at least one lot is needed"),
            SetupError::DuplicateLot(id) => write!(f, "lot id {id:?} appears more than once"),
            SetupError::ZeroCapacity(id) => write!(f, "lot {id:?} has capacity 0"),
            SetupError::ZeroTtl => write!(f, "the reservation TTL must be at least 1 second"),
            SetupError::UnknownLot(id) => write!(f, "booking terms for unknown lot {id:?}"),
            SetupError::BookableOverCapacity(id) => {
                write!(f, "lot {id:?} has bookable over its capacity")
            }
            SetupError::TooManySpots(id) => {
                write!(f, "lot {id:?} has more named spots than spaces")
            }
            SetupError::DuplicateSpot(id, spot) => {
                write!(f, "lot {id:?} has spot {spot} more than once")
            }
        }
    }
}

impl std::error::Error for SetupError {}

/// A lot as the state shares it: the lot behind its lock, and the queue of its changes on
/// their way to the listeners.
struct LotEntry {
    id: LotId,
    lot: Mutex<Lot>,
    /// Changes made but not yet handed to the listeners, in the order they were made (they
    /// are queued under `lot`'s lock).
    pending: Mutex<VecDeque<Published>>,
    /// Held by the one thread handing this lot's pending changes to the listeners. Others
    /// that find it taken leave their change to that thread instead of waiting.
    publishing: Mutex<()>,
    /// The free count as the last operation left it, for reads without the lock.
    quick: QuickFree,
}

/// What a lot hands to listeners: a change of its free count, or an owner's notice.
enum Published {
    Free(LotChange),
    Notice(Notice),
}

/// Every lot's occupancy and reservations, safe to share between threads.
pub struct ParkingState {
    /// In configuration order, which is the order `getLots` reports.
    entries: Vec<LotEntry>,
    /// Lot id to its place in `entries`. FxHash rather than SipHash: every request looks a
    /// lot up, and SipHash cost a `getAvailability` more than its free count. SipHash's
    /// defence against chosen collisions is not needed here: the table holds only the
    /// configured lots and never grows with what peers send, so a peer's lookup probes it
    /// no longer however its id hashes.
    index: FxHashMap<LotId, usize>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    listeners: RwLock<Vec<Listener>>,
    notice_listeners: RwLock<Vec<NoticeListener>>,
    /// Where changes are made durable; unset, the state lives in memory only.
    recorder: OnceLock<Arc<dyn Recorder>>,
    /// What booking windows must keep.
    rules: BookingRules,
    /// Wakes the thread that does what is due (`Purger`) when a booking makes something due
    /// sooner than it planned to wake.
    waker: Mutex<Option<Sender<()>>>,
    /// When that thread plans to wake, in Unix milliseconds: `u64::MAX` while it is working
    /// out when (so a booking made meanwhile wakes it), 0 while there is no such thread.
    wakes_at_ms: AtomicU64,
    /// Drivers' accounts; in no lot, so behind their own lock.
    accounts: Mutex<Accounts>,
    /// Set for a copy of a state decided elsewhere ([`ParkingState::follower`]): nothing
    /// expires by this state's clock.
    follower: bool,
    /// The monotonic instant that published free counts measure their expiry from.
    epoch: Instant,
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
        let mut entries = Vec::new();
        let mut index = FxHashMap::default();
        for spec in lots {
            if spec.capacity == 0 {
                return Err(SetupError::ZeroCapacity(spec.id));
            }
            if index.insert(spec.id.clone(), entries.len()).is_some() {
                return Err(SetupError::DuplicateLot(spec.id));
            }
            entries.push(LotEntry {
                id: spec.id,
                lot: Mutex::new(Lot::new(spec.capacity, spec.almost_full_free)),
                pending: Mutex::new(VecDeque::new()),
                publishing: Mutex::new(()),
                quick: QuickFree::unpublished(),
            });
        }
        if entries.is_empty() {
            return Err(SetupError::NoLots);
        }
        let epoch = clock.now();
        Ok(ParkingState {
            entries,
            index,
            ttl,
            clock,
            listeners: RwLock::new(Vec::new()),
            notice_listeners: RwLock::new(Vec::new()),
            recorder: OnceLock::new(),
            rules: BookingRules::default(),
            waker: Mutex::new(None),
            wakes_at_ms: AtomicU64::new(0),
            accounts: Mutex::new(Accounts {
                max: DEFAULT_MAX_ACCOUNTS,
                ..Accounts::default()
            }),
            follower: false,
            epoch,
        })
    }

    /// Sets how lots are booked: the rules of every window, and each lot's terms (lots
    /// without terms keep every space bookable and no named spots). Before any booking.
    pub fn with_bookings(
        mut self,
        rules: BookingRules,
        terms: impl IntoIterator<Item = LotTerms>,
    ) -> Result<Self, SetupError> {
        for entry in &mut self.entries {
            let lot = entry.lot.get_mut();
            let default = LotTerms {
                id: entry.id.clone(),
                zone: None,
                features: Vec::new(),
                bookable: lot.capacity,
                spots: Vec::new(),
            };
            lot.bookings.configure(default, rules);
        }
        for terms in terms {
            let index = *self
                .index
                .get(&terms.id)
                .ok_or_else(|| SetupError::UnknownLot(terms.id.clone()))?;
            let lot = self.entries[index].lot.get_mut();
            if terms.bookable > lot.capacity {
                return Err(SetupError::BookableOverCapacity(terms.id));
            }
            if terms.spots.len() > lot.capacity as usize {
                return Err(SetupError::TooManySpots(terms.id));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(spot) = terms.spots.iter().find(|spot| !seen.insert(&spot.id)) {
                return Err(SetupError::DuplicateSpot(terms.id.clone(), spot.id.clone()));
            }
            lot.bookings.configure(terms, rules);
        }
        self.rules = rules;
        Ok(self)
    }

    /// Sets how waitlists work (offer time, most entries per lot) and how many drivers'
    /// accounts are kept at most. Before any entry or account.
    pub fn with_waitlist(mut self, rules: WaitlistRules, max_accounts: usize) -> Self {
        for entry in &mut self.entries {
            entry.lot.get_mut().waitlist.configure(rules);
        }
        self.accounts.get_mut().max = max_accounts;
        self
    }

    /// How waitlists work (every lot has the same rules): what a store that decides
    /// waitlists elsewhere (a database) needs to know of the configuration.
    pub fn waitlist_rules(&self) -> WaitlistRules {
        self.entries
            .first()
            .map_or_else(WaitlistRules::default, |entry| {
                *entry.lot.lock().waitlist.rules()
            })
    }

    /// The rules booking windows must keep.
    pub fn booking_rules(&self) -> &BookingRules {
        &self.rules
    }

    /// Makes this state a follower: a copy of a state that something else decides (a
    /// database that several nodes share), changed only through [`ParkingState::apply_all`].
    /// A follower never expires a reservation by its own clock: every node would do so at a
    /// slightly different moment, interleaved differently with the changes other nodes make,
    /// and their subscribers would hear different sequences of events. It holds each
    /// reservation until an applied change removes it, so expiry is decided once, where
    /// every other change is. (Its deciding operations, `reserve` and the like, still work
    /// on the copy but must not be used: they would decide locally.)
    pub fn follower(mut self) -> Self {
        self.follower = true;
        self
    }

    /// Makes every later change go through `recorder` (once; a second call is refused with
    /// the recorder handed back).
    pub fn set_recorder(&self, recorder: Arc<dyn Recorder>) -> Result<(), Arc<dyn Recorder>> {
        self.recorder.set(recorder)
    }

    /// Registers a listener for every later change of any lot's free count.
    pub fn add_listener(&self, listener: Listener) {
        self.listeners.write().push(listener);
    }

    /// Registers a listener for every later notice to an owner (their bookings' changes,
    /// their waitlist offers and offers run out).
    pub fn add_notice_listener(&self, listener: NoticeListener) {
        self.notice_listeners.write().push(listener);
    }

    /// How long a reservation lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The lot ids in configuration order.
    pub fn lot_ids(&self) -> impl Iterator<Item = &LotId> {
        self.entries.iter().map(|entry| &entry.id)
    }

    /// Looks up a lot id, returning the shared [`LotId`].
    pub fn lot_id(&self, id: &str) -> Result<&LotId, UnknownLot> {
        self.entry(id).map(|entry| &entry.id)
    }

    /// Every lot's free count as listeners last heard it, with that change's number (0 for
    /// a lot that has not changed since start): where a listener that joins now starts.
    pub fn published(&self) -> Vec<LotChange> {
        let at = self.clock.wall();
        self.entries
            .iter()
            .map(|entry| {
                let lot = entry.lot.lock();
                let (free, seq) = lot.published();
                LotChange {
                    lot: entry.id.clone(),
                    free,
                    status: Availability::of(free, lot.almost_full_free),
                    seq,
                    at,
                }
            })
            .collect()
    }

    /// Every lot's counts, in configuration order.
    pub fn lots(&self) -> Vec<LotSnapshot> {
        self.entries
            .iter()
            .map(|entry| self.snapshot(entry))
            .collect()
    }

    /// One lot's counts.
    pub fn lot(&self, id: &str) -> Result<LotSnapshot, UnknownLot> {
        self.entry(id).map(|entry| self.snapshot(entry))
    }

    fn snapshot(&self, entry: &LotEntry) -> LotSnapshot {
        self.with_entry(entry, |lot, _| LotSnapshot {
            id: entry.id.clone(),
            capacity: lot.capacity,
            occupied: lot.occupied(),
            counted: lot.counted,
            reserved: lot.reserved(),
            booked: lot.booked(),
            free: lot.free(),
            status: lot.availability(),
        })
        .0
    }

    /// Free spaces in one lot.
    pub fn free(&self, lot: &str) -> Result<u32, UnknownLot> {
        let entry = self.entry(lot)?;
        if let Some(free) = self.quick_free(entry) {
            return Ok(free);
        }
        Ok(self.with_entry(entry, |lot, _| lot.free()).0)
    }

    /// The lot's free count as its last operation published it, if that is still true by
    /// the clock: no reservation has expired and nothing of the bookings or waitlist has
    /// come due since, so taking the lock would purge, move on and offer nothing.
    fn quick_free(&self, entry: &LotEntry) -> Option<u32> {
        let (free, until_ns, until_wall_s) = entry.quick.read()?;
        if self.since_epoch(self.clock.now()) >= until_ns {
            return None;
        }
        // Most lots have no bookings or waitlist: then the wall clock is not read.
        if until_wall_s != quick::NEVER && unix_ms(self.clock.wall()) / 1000 >= until_wall_s {
            return None;
        }
        Some(free)
    }

    /// Publishes `lot`'s free count for [`ParkingState::quick_free`], under its lock, as
    /// `with_entry_as` leaves it.
    fn publish_quick(&self, entry: &LotEntry, lot: &Lot) {
        let free = lot.free();
        if self.follower {
            // Nothing expires, moves on or is offered by this state's clock.
            return entry.quick.publish(free, quick::NEVER, quick::NEVER);
        }
        if lot.waitlist.would_look(free, lot.bookings.released()) {
            // A locked read would offer room to the waitlist first (changes applied from
            // elsewhere derive no offers): reads take the lock until it has.
            return entry.quick.withdraw();
        }
        let until_ns = lot
            .next_expiry()
            .map_or(quick::NEVER, |at| self.since_epoch(at));
        entry
            .quick
            .publish(free, until_ns, next_due(lot).unwrap_or(quick::NEVER));
    }

    /// `at` in nanoseconds since the state's epoch (0 before it).
    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whose live reservation `plate` holds in `lot`: `Some(owner)` when it holds one (the
    /// owner is `None` when no key made it), `None` when it holds none.
    pub fn holder(&self, lot: &str, plate: &Plate) -> Result<Option<Option<Arc<str>>>, UnknownLot> {
        self.with_lot(lot, |lot, _| lot.held(plate).map(|held| held.owner.clone()))
    }

    /// Holds a space for `plate` unless the lot is full or the plate already holds one.
    pub fn reserve(&self, lot: &str, plate: Plate) -> Result<ReserveOutcome, StateError> {
        self.reserve_for(lot, plate, None)
    }

    /// [`ParkingState::reserve`], on behalf of `owner` (a key id), who alone may cancel it.
    pub fn reserve_for(
        &self,
        lot: &str,
        plate: Plate,
        owner: Option<Arc<str>>,
    ) -> Result<ReserveOutcome, StateError> {
        let ttl = self.ttl;
        self.change_lot(lot, |id, lot, now, wall| {
            let held = Held {
                expires_at: now + ttl,
                owner,
            };
            let outcome = lot.reserve(plate, held.clone());
            let change = (outcome == ReserveOutcome::Reserved).then(|| {
                (
                    reservation(id, plate, None, wall),
                    reservation(id, plate, Some(&held), wall),
                )
            });
            (outcome, change)
        })
    }

    /// Removes `plate`'s live reservation, if any.
    pub fn cancel(&self, lot: &str, plate: Plate) -> Result<CancelOutcome, StateError> {
        self.cancel_if(lot, plate, |_| true)
    }

    /// Removes `plate`'s live reservation if `allowed` says so of its owner; a refused one is
    /// reported as not found, so that nobody learns whose it is.
    pub fn cancel_if(
        &self,
        lot: &str,
        plate: Plate,
        allowed: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        self.change_lot(lot, |id, lot, _, wall| {
            if !lot
                .held(&plate)
                .is_some_and(|held| allowed(held.owner.as_deref()))
            {
                return (CancelOutcome::NotFound, None);
            }
            match lot.cancel(plate) {
                Some(held) => (
                    CancelOutcome::Cancelled,
                    Some((
                        reservation(id, plate, Some(&held), wall),
                        reservation(id, plate, None, wall),
                    )),
                ),
                None => (CancelOutcome::NotFound, None),
            }
        })
    }

    /// Applies a sensor's report to the lot's running count; what is reported as occupied is
    /// that count clamped to `[0, capacity]`.
    pub fn update_occupancy(
        &self,
        lot: &str,
        change: CountChange,
    ) -> Result<OccupancyUpdate, StateError> {
        self.change_lot(lot, |id, lot, _, _| {
            let before = lot.counted;
            let clamped = lot.count(change);
            let update = OccupancyUpdate {
                occupied: lot.occupied(),
                counted: lot.counted,
                free: lot.free(),
                clamped,
            };
            let recorded = (lot.counted != before).then(|| {
                (
                    Change::Count {
                        lot: id.clone(),
                        counted: before,
                    },
                    Change::Count {
                        lot: id.clone(),
                        counted: lot.counted,
                    },
                )
            });
            (update, recorded)
        })
    }

    /// Sets one key of the state to the value `change` gives it, whatever it was: a journal's
    /// replay, an undo, a change another node made. Capacity is not checked (it was, when the
    /// reservation or booking was made); a reservation already past its time is dropped at
    /// once (by a follower, kept until a change removes it), and a booking is brought up to
    /// date with the clock (a no-show, a completion).
    pub fn apply(&self, change: &Change) -> Result<(), UnknownLot> {
        if let Change::Batch { lot, changes } = change
            && changes.iter().any(|change| change.lot() != Some(lot))
        {
            // Never written by this state; applied key by key rather than refused.
            return changes.iter().try_for_each(|change| self.apply(change));
        }
        self.apply_all(std::slice::from_ref(change))
    }

    /// [`ParkingState::apply`] for several changes at once: each run of consecutive changes
    /// of one lot is applied under one lock, so listeners hear of at most one change of that
    /// lot's free count for the whole run. A transaction that another node committed
    /// (expiring three reservations, say) then reaches subscribers as the one event it is,
    /// not as the intermediate counts nobody else saw. Stops at the first unknown lot.
    pub fn apply_all(&self, changes: &[Change]) -> Result<(), UnknownLot> {
        let mixed = |change: &Change| {
            matches!(change, Change::Batch { lot, changes }
                if changes.iter().any(|change| change.lot() != Some(lot)))
        };
        if changes.iter().any(mixed) {
            // A batch across lots is never written by this state; applied key by key.
            return changes.iter().try_for_each(|change| self.apply(change));
        }
        for run in changes.chunk_by(|a, b| a.lot() == b.lot()) {
            let Some(first) = run.first() else { continue };
            let Some(lot) = first.lot() else {
                // Accounts, which are in no lot.
                let mut accounts = self.accounts.lock();
                for change in run {
                    if let Change::Account { username, account } = change {
                        accounts.set(username, account.clone());
                    }
                }
                continue;
            };
            let entry = self.entry(lot.as_str())?;
            // No offers are derived while changes are applied: the journal (or the node
            // that made them) has the offers that were made, and one derived here could hold
            // a space a later change hands to someone else.
            let due = self
                .with_entry_as(entry, false, |lot, now| {
                    let wall_now = unix_ms(self.clock.wall());
                    for change in run {
                        if self.follower {
                            offer_notice(lot, change);
                        }
                        set_key(lot, change, now, wall_now);
                    }
                    if self.follower {
                        return None;
                    }
                    advance(lot, wall_now / 1000);
                    next_due(lot)
                })
                .0;
            self.nudge(due);
        }
        Ok(())
    }

    /// Every key of the state as changes: each lot's count, its live reservations, its
    /// bookings and its waitlist, then the accounts. Taken
    /// lot by lot, each under its own lock, so it never stops the whole state; replaying the
    /// journal from where it began on top of it gives the state as it was at the end.
    pub fn image(&self) -> Vec<Change> {
        let mut changes = Vec::new();
        for entry in &self.entries {
            self.with_entry(entry, |lot, now| {
                let wall = (now, unix_ms(self.clock.wall()));
                changes.push(Change::Count {
                    lot: entry.id.clone(),
                    counted: lot.counted,
                });
                for (&plate, held) in lot.reservations() {
                    changes.push(reservation(&entry.id, plate, Some(held), wall));
                }
                let next = lot.bookings.next_number();
                if next > 1 {
                    changes.push(Change::BookingNumber {
                        lot: entry.id.clone(),
                        next,
                    });
                }
                let mut bookings: Vec<_> = lot.bookings.all().collect();
                bookings.sort_by_key(|booking| booking.id.seq());
                changes.extend(bookings.into_iter().map(|booking| Change::Booking {
                    id: booking.id.clone(),
                    booking: Some(booking.clone()),
                }));
                let next = lot.waitlist.next_number();
                if next > 1 {
                    changes.push(Change::WaitNumber {
                        lot: entry.id.clone(),
                        next,
                    });
                }
                changes.extend(lot.waitlist.all().map(|waiting| Change::Waiting {
                    id: waiting.id.clone(),
                    entry: Some(waiting.clone()),
                }));
            });
        }
        let accounts = self.accounts.lock();
        let mut names: Vec<_> = accounts.by_name.keys().collect();
        names.sort();
        changes.extend(names.into_iter().map(|name| Change::Account {
            username: name.clone(),
            account: accounts.by_name.get(name).cloned(),
        }));
        changes
    }

    /// Does what is due in every lot (publishing the resulting changes): removes expired
    /// reservations, and moves bookings on (holding a space from their start, no-shows,
    /// completions, overstays). Returns how many reservations were removed. Reads never count
    /// an expired reservation or a released booking whether or not this has run; it keeps
    /// memory bounded and makes the events timely. A follower removes and moves on nothing:
    /// what it holds changes only through the changes applied to it.
    pub fn purge_expired(&self) -> usize {
        self.entries
            .iter()
            .map(|entry| self.with_entry(entry, |_, _| ()).1)
            .sum()
    }

    /// The earliest time any reservation may expire.
    pub fn next_expiry(&self) -> Option<Instant> {
        if self.follower {
            // Nothing expires here (see `follower`), so there is nothing to wake up for.
            return None;
        }
        self.entries
            .iter()
            .filter_map(|entry| entry.lot.lock().next_expiry())
            .min()
    }

    /// The earliest time (Unix seconds) something may be due for a booking or a waitlist
    /// entry.
    pub fn next_booking_due(&self) -> Option<u64> {
        self.entries
            .iter()
            .filter_map(|entry| next_due(&entry.lot.lock()))
            .min()
    }

    /// Makes `waker` the way to wake the thread that does what is due; `wakes_at` stands at
    /// `u64::MAX` until that thread first plans its sleep.
    pub(crate) fn attach_waker(&self, waker: Sender<()>) {
        *self.waker.lock() = Some(waker);
        self.wakes_at_ms.store(u64::MAX, Ordering::SeqCst);
    }

    /// Detaches the waker; later bookings wake no one.
    pub(crate) fn detach_waker(&self) {
        self.wakes_at_ms.store(0, Ordering::SeqCst);
        *self.waker.lock() = None;
    }

    /// Records when the due-time thread plans to wake (Unix ms; `u64::MAX` while it is
    /// working that out).
    pub(crate) fn plan_wake(&self, at_ms: u64) {
        self.wakes_at_ms.store(at_ms, Ordering::SeqCst);
    }

    /// Wakes the due-time thread if `due` (Unix seconds) comes before it planned to wake.
    /// Only booking operations call this, never reservations or reads.
    fn nudge(&self, due: Option<u64>) {
        let Some(due) = due else { return };
        if due.saturating_mul(1000) < self.wakes_at_ms.load(Ordering::SeqCst)
            && let Some(waker) = &*self.waker.lock()
        {
            // A full channel already holds a wake-up.
            let _ = waker.try_send(());
        }
    }

    /// The clock this state runs on.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn entry(&self, id: &str) -> Result<&LotEntry, UnknownLot> {
        self.index
            .get(id)
            .and_then(|&index| self.entries.get(index))
            .ok_or_else(|| UnknownLot(id.to_owned()))
    }

    fn with_lot<R>(
        &self,
        id: &str,
        op: impl FnOnce(&mut Lot, Instant) -> R,
    ) -> Result<R, UnknownLot> {
        let entry = self.entry(id)?;
        Ok(self.with_entry(entry, op).0)
    }

    /// Runs an operation that may change the lot, as [`ParkingState::with_entry`] does, and
    /// makes its change durable: `op` returns its result and, if it changed a key, the key's
    /// old and new values. The change is recorded under the lot's lock (so a lot's changes
    /// are recorded in the order they happen) and waited for after it is released (so a slow
    /// disk holds up no one else's reads). A change the recorder refuses is undone at once.
    fn change_lot<R>(
        &self,
        id: &str,
        op: impl FnOnce(&LotId, &mut Lot, Instant, (Instant, u64)) -> (R, Option<(Change, Change)>),
    ) -> Result<R, StateError> {
        let entry = self.entry(id)?;
        let recorder = self.recorder.get();
        let ((result, commit), _) = self.with_entry(entry, |lot, now| {
            let wall = (now, unix_ms(self.clock.wall()));
            let (result, change) = op(&entry.id, lot, now, wall);
            let Some((undo, redo)) = change else {
                return (result, Ok(None));
            };
            let Some(recorder) = recorder else {
                return (result, Ok(None));
            };
            match recorder.record(&undo, &redo) {
                Ok(commit) => (result, Ok(Some(commit))),
                Err(refused) => {
                    set_key(lot, &undo, now, wall.1);
                    (result, Err(refused))
                }
            }
        });
        if let (Some(recorder), Some(commit)) = (recorder, commit?) {
            recorder.wait(commit)?;
        }
        Ok(result)
    }

    /// Runs `op` on the lot under its lock, after purging expired reservations, then publishes
    /// the change of free count, if any, with the lock released. Returns `op`'s result and the
    /// number of reservations purged.
    fn with_entry<R>(
        &self,
        entry: &LotEntry,
        op: impl FnOnce(&mut Lot, Instant) -> R,
    ) -> (R, usize) {
        self.with_entry_as(entry, true, op)
    }

    /// [`ParkingState::with_entry`]; with `offers`, room that has appeared in the lot is
    /// offered to its waitlist first, before `op` runs (a driver who waited comes before a
    /// drive-up), and again after it (`op` may have made room). Those offers are recorded
    /// and waited for before this returns, like any change.
    fn with_entry_as<R>(
        &self,
        entry: &LotEntry,
        offers: bool,
        op: impl FnOnce(&mut Lot, Instant) -> R,
    ) -> (R, usize) {
        let mut lot = entry.lot.lock();
        // Read under the lock, so a lot sees time only move forward: its expiry queue stays
        // sorted, which purging relies on. Read before the lock, a thread that waited for it
        // could queue an expiry behind a later one, keeping its reservation past the TTL.
        let now = self.clock.now();
        let purged = if self.follower { 0 } else { lot.purge(now) };
        // With no bookings or waitlist in the lot this is two comparisons; the wall clock
        // is read only when they exist. A follower's bookings move on only through applied
        // changes, and it makes no offers: the node that decides does.
        let offers = offers && !self.follower;
        if !self.follower && next_due(&lot).is_some() {
            advance(&mut lot, unix_ms(self.clock.wall()) / 1000);
        }
        let mut offered = Vec::new();
        if offers {
            offered.extend(self.offer_room(&entry.id, &mut lot, now));
        }
        let result = op(&mut lot, now);
        if offers {
            offered.extend(self.offer_room(&entry.id, &mut lot, now));
        }
        let due = (!offered.is_empty()).then(|| next_due(&lot)).flatten();
        let changed = lot.take_change();
        let mut notices = std::mem::take(&mut lot.bookings.notices);
        notices.append(&mut lot.waitlist.notices);
        // Owned bookings are rare on the hot path; the listeners are looked at only then.
        if !notices.is_empty() && self.notice_listeners.read().is_empty() {
            notices.clear();
        }
        let publish = changed.is_some() || !notices.is_empty();
        if publish {
            let mut pending = entry.pending.lock();
            if let Some((free, seq)) = changed {
                pending.push_back(Published::Free(LotChange {
                    lot: entry.id.clone(),
                    free,
                    status: Availability::of(free, lot.almost_full_free),
                    seq,
                    at: self.clock.wall(),
                }));
            }
            pending.extend(notices.into_iter().map(Published::Notice));
        }
        self.publish_quick(entry, &lot);
        drop(lot);
        if let Some(recorder) = self.recorder.get() {
            for commit in offered {
                if let Err(err) = recorder.wait(commit) {
                    // The recorder has rolled the offer back; the space is looked at again
                    // on the lot's next change.
                    log::warn!("lot {}: an offer was not made durable: {err}", entry.id);
                }
            }
        }
        self.nudge(due);
        if publish {
            self.publish_pending(entry);
        }
        (result, purged)
    }

    /// Hands the lot's pending changes to the listeners, oldest first, unless another thread
    /// is already doing so, in which case that thread publishes ours too. So changes reach
    /// listeners in the order they were made, listeners never run under the lot's lock, and no
    /// thread ever waits for another thread's listeners.
    fn publish_pending(&self, entry: &LotEntry) {
        loop {
            let Some(publishing) = entry.publishing.try_lock() else {
                return;
            };
            let listeners = self.listeners.read();
            let notice_listeners = self.notice_listeners.read();
            loop {
                let next = entry.pending.lock().pop_front();
                match next {
                    None => break,
                    Some(Published::Free(change)) => {
                        for listener in listeners.iter() {
                            listener(&change);
                        }
                    }
                    Some(Published::Notice(notice)) => {
                        for listener in notice_listeners.iter() {
                            listener(&notice);
                        }
                    }
                }
            }
            drop(notice_listeners);
            drop(listeners);
            drop(publishing);
            // A change queued after our last look, by a thread that then found `publishing`
            // taken, is ours to publish.
            if entry.pending.lock().is_empty() {
                return;
            }
        }
    }
}

/// Most drivers' accounts kept unless configured otherwise (`max_accounts`).
pub const DEFAULT_MAX_ACCOUNTS: usize = 100_000;

/// The earliest time (Unix seconds) something is due in `lot`'s bookings or waitlist.
fn next_due(lot: &Lot) -> Option<u64> {
    match (lot.bookings.next_due(), lot.waitlist.next_due()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Does what is due by `wall_now` (Unix seconds) in `lot`'s bookings and waitlist: an offer
/// that ran out lets its space go with its entry.
fn advance(lot: &mut Lot, wall_now: u64) {
    if lot.bookings.next_due().is_some_and(|due| due <= wall_now) {
        lot.bookings.advance(wall_now);
    }
    if lot.waitlist.next_due().is_some_and(|due| due <= wall_now) {
        for gone in lot.waitlist.advance(wall_now) {
            let Some(offer) = gone.offer else { continue };
            let seq = offer.booking.seq();
            if lot
                .bookings
                .get(seq)
                .is_some_and(|booking| booking.status == crate::BookingStatus::Offered)
            {
                lot.bookings.set(seq, None, wall_now);
            }
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it, which no clock of ours reads).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// A reservation as a change: `held` (or its absence), its expiry in wall-clock time.
/// `wall` pairs the monotonic now with the wall-clock now, for the conversion.
fn reservation(lot: &LotId, plate: Plate, held: Option<&Held>, wall: (Instant, u64)) -> Change {
    let (now, wall_now) = wall;
    Change::Reservation {
        lot: lot.clone(),
        plate,
        expires_at_ms: held.map(|held| {
            let left = held.expires_at.saturating_duration_since(now);
            wall_now.saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        }),
        owner: held.and_then(|held| held.owner.as_deref().map(str::to_owned)),
    }
}

/// A follower tells an entry's owner of the offer it was made when the change that makes it
/// arrives (the node that made it decided it; a follower makes no offers of its own, so
/// nothing else would). A journal's replay is no follower and tells nobody again.
fn offer_notice(lot: &mut Lot, change: &Change) {
    let Change::Waiting {
        id,
        entry: Some(entry),
    } = change
    else {
        return;
    };
    let had_offer = lot
        .waitlist
        .get(id.seq())
        .is_some_and(|old| old.offer.is_some());
    if entry.offer.is_some() && entry.owner.is_some() && !had_offer {
        lot.waitlist
            .notices
            .push(Notice::WaitlistOffer(entry.clone()));
    }
}

/// Sets the key `change` names, in a lot whose lock is held.
fn set_key(lot: &mut Lot, change: &Change, now: Instant, wall_now: u64) {
    match change {
        Change::Reservation {
            plate,
            expires_at_ms,
            owner,
            ..
        } => {
            let held = expires_at_ms.map(|ms| Held {
                // In the past, it is due now: the next purge drops it.
                expires_at: now + Duration::from_millis(ms.saturating_sub(wall_now)),
                owner: owner.as_deref().map(Arc::from),
            });
            lot.set_held(*plate, held);
        }
        Change::Count { counted, .. } => {
            lot.counted = (*counted).clamp(-crate::lot::COUNT_LIMIT, crate::lot::COUNT_LIMIT);
        }
        Change::Booking { id, booking } => {
            if booking.as_ref().is_some_and(|booking| booking.id != *id) {
                log::error!("a change of booking {id} carries another booking's record; skipped");
                return;
            }
            lot.bookings.set(id.seq(), booking.clone(), wall_now / 1000);
        }
        Change::BookingNumber { next, .. } => lot.bookings.number_from(*next),
        Change::Waiting { id, entry } => {
            if entry.as_ref().is_some_and(|entry| entry.id != *id) {
                log::error!("a change of waitlist entry {id} carries another entry; skipped");
                return;
            }
            lot.waitlist.set(id.seq(), entry.clone());
        }
        Change::WaitNumber { next, .. } => lot.waitlist.number_from(*next),
        // In no lot: `apply` sets it.
        Change::Account { .. } => {}
        Change::Batch { changes, .. } => {
            for change in changes {
                set_key(lot, change, now, wall_now);
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
        LotSpec::new(LotId::new(id).unwrap(), capacity)
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

    /// The lock-free read of `lot`'s free count, checked against a locked one taken right
    /// after it (which purges and moves on first): when the quick read answers, it agrees.
    fn quick_then_locked(state: &ParkingState, lot: &str) -> (Option<u32>, u32) {
        let quick = state.quick_free(state.entry(lot).unwrap());
        let locked = state.lot(lot).unwrap().free;
        if let Some(quick) = quick {
            assert_eq!(quick, locked, "lot {lot}: the published count is stale");
        }
        assert_eq!(state.free(lot).unwrap(), locked);
        (quick, locked)
    }

    #[test]
    fn a_quick_read_agrees_with_a_locked_one_after_every_kind_of_change() {
        let clock = Arc::new(ManualClock::new());
        let state = state_with(clock.clone(), 3);
        // Nothing published before the lot's first operation: the read takes the lock.
        assert_eq!(quick_then_locked(&state, "A"), (None, 3));
        assert_eq!(quick_then_locked(&state, "A"), (Some(3), 3));

        assert_eq!(
            state.reserve("A", plate("P1")),
            Ok(ReserveOutcome::Reserved)
        );
        assert_eq!(quick_then_locked(&state, "A"), (Some(2), 2));
        state.update_occupancy("A", CountChange::Set(1)).unwrap();
        assert_eq!(quick_then_locked(&state, "A"), (Some(1), 1));
        state.update_occupancy("A", CountChange::Remove(1)).unwrap();
        assert_eq!(quick_then_locked(&state, "A"), (Some(2), 2));
        assert_eq!(state.cancel("A", plate("P1")), Ok(CancelOutcome::Cancelled));
        assert_eq!(quick_then_locked(&state, "A"), (Some(3), 3));
        // Another lot's changes are its own.
        assert_eq!(
            state.reserve("B", plate("P1")),
            Ok(ReserveOutcome::Reserved)
        );
        assert_eq!(quick_then_locked(&state, "A"), (Some(3), 3));
        assert_eq!(quick_then_locked(&state, "B"), (Some(4), 4));
        // A change applied from elsewhere (a journal's replay, another node).
        state
            .apply(&Change::Count {
                lot: LotId::new("A").unwrap(),
                counted: 2,
            })
            .unwrap();
        assert_eq!(quick_then_locked(&state, "A"), (Some(1), 1));

        // A reservation expiring with no purge run: the published count stops holding at
        // its expiry to the nanosecond, and the locked read that follows publishes anew.
        state.update_occupancy("A", CountChange::Set(0)).unwrap();
        assert_eq!(
            state.reserve("A", plate("P2")),
            Ok(ReserveOutcome::Reserved)
        );
        clock.advance(Duration::from_secs(10) - Duration::from_nanos(1));
        assert_eq!(quick_then_locked(&state, "A"), (Some(2), 2));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(quick_then_locked(&state, "A"), (None, 3));
        assert_eq!(quick_then_locked(&state, "A"), (Some(3), 3));
    }

    #[test]
    fn a_quick_read_stops_at_a_bookings_start_and_after_room_for_the_waitlist() {
        let clock = Arc::new(ManualClock::new());
        let id = LotId::new("A").unwrap();
        let terms = LotTerms {
            id: id.clone(),
            zone: None,
            features: Vec::new(),
            bookable: 1,
            spots: Vec::new(),
        };
        let state = ParkingState::new([spec("A", 5)], Duration::from_secs(300), clock.clone())
            .unwrap()
            .with_bookings(BookingRules::default(), [terms])
            .unwrap()
            .with_waitlist(WaitlistRules::default(), 10);
        let now = unix_ms(clock.wall()) / 1000;
        let window = crate::Window {
            start: now + 3600,
            end: now + 7200,
        };
        let request = |text| crate::BookingRequest {
            lot: "A",
            spot: None,
            plate: plate(text),
            window,
        };
        let booking = state.book(request("B1")).unwrap();
        assert_eq!(quick_then_locked(&state, "A"), (Some(5), 5));
        // The booking starts holding its space when its window opens, by the wall clock,
        // with nothing run: the count published before stops holding then.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(quick_then_locked(&state, "A"), (None, 4));
        assert_eq!(quick_then_locked(&state, "A"), (Some(4), 4));

        // A driver waits for the full window; the booking's cancellation offers them the
        // space in the same operation, so the count published after it holds.
        state.join_waitlist(request("W1"), None).unwrap();
        assert_eq!(quick_then_locked(&state, "A"), (Some(4), 4));
        // Room made by an applied change derives no offer there: reads take the lock, which
        // makes the offer first, until one has.
        state
            .apply(&Change::Booking {
                id: booking.id.clone(),
                booking: None,
            })
            .unwrap();
        assert_eq!(quick_then_locked(&state, "A"), (None, 4));
        assert_eq!(quick_then_locked(&state, "A"), (Some(4), 4));
        assert!(
            state.waitlist_where(|_| true)[0].offer.is_some(),
            "the locked read offered the room"
        );
    }

    #[test]
    fn a_followers_quick_read_holds_past_expiry_as_its_locked_one_does() {
        let clock = Arc::new(ManualClock::new());
        let state = state_with(clock.clone(), 3).follower();
        state
            .apply(&reservation(
                &LotId::new("A").unwrap(),
                plate("P1"),
                Some(&Held {
                    expires_at: clock.now() + Duration::from_secs(1),
                    owner: None,
                }),
                (clock.now(), unix_ms(clock.wall())),
            ))
            .unwrap();
        clock.advance(Duration::from_secs(60));
        assert_eq!(quick_then_locked(&state, "A"), (Some(2), 2));
    }

    #[test]
    fn status_follows_free_with_the_lots_own_threshold() {
        let clock = Arc::new(ManualClock::new());
        let lot = LotSpec {
            almost_full_free: 2,
            ..spec("A", 4)
        };
        let state = ParkingState::new([lot], Duration::from_secs(10), clock).unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        state.add_listener(Arc::new(move |change: &LotChange| {
            sink.lock().push((change.free, change.status));
        }));
        assert_eq!(state.published()[0].status, Availability::Open);
        for text in ["P1", "P2", "P3", "P4"] {
            state.reserve("A", plate(text)).unwrap();
        }
        assert_eq!(
            *heard.lock(),
            [
                (3, Availability::Open),
                (2, Availability::AlmostFull),
                (1, Availability::AlmostFull),
                (0, Availability::Full),
            ]
        );
        assert_eq!(state.lots()[0].status, Availability::Full);
        assert_eq!(state.lot("A").unwrap(), state.lots()[0]);
        assert_eq!(state.lot("Z").unwrap_err(), UnknownLot("Z".into()));
        assert_eq!(state.published()[0].status, Availability::Full);
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
            ReserveOutcome::Exists
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
        assert_eq!(
            state.reserve("Z", plate("P1")),
            Err(StateError::UnknownLot(UnknownLot("Z".into())))
        );
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
        let update = state.update_occupancy("A", CountChange::Set(4)).unwrap();
        assert_eq!(
            update,
            OccupancyUpdate {
                occupied: 4,
                counted: 4,
                free: 6,
                clamped: false
            }
        );
        state.update_occupancy("A", CountChange::Set(4)).unwrap();
        let update = state.update_occupancy("A", CountChange::Add(100)).unwrap();
        assert_eq!(
            update,
            OccupancyUpdate {
                occupied: 10,
                counted: 104,
                free: 0,
                clamped: true
            }
        );
        assert_eq!(*events.lock(), vec![("A".into(), 6), ("A".into(), 0)]);
    }

    /// Records every change; refuses them all once `refuse` is set.
    #[derive(Default)]
    struct Journal {
        changes: Mutex<Vec<(Change, Change)>>,
        refuse: std::sync::atomic::AtomicBool,
        waited: AtomicU32,
    }

    impl Recorder for Journal {
        fn record(&self, undo: &Change, redo: &Change) -> Result<crate::Commit, Unavailable> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Unavailable("disk full".into()));
            }
            let mut changes = self.changes.lock();
            changes.push((undo.clone(), redo.clone()));
            Ok(crate::Commit(changes.len() as u64))
        }

        fn wait(&self, _commit: crate::Commit) -> Result<(), Unavailable> {
            self.waited.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn every_change_is_recorded_with_its_old_value_and_waited_for() {
        let clock = Arc::new(ManualClock::new());
        let state = state_with(clock.clone(), 3);
        let journal = Arc::new(Journal::default());
        assert!(state.set_recorder(journal.clone()).is_ok());
        assert!(state.set_recorder(journal.clone()).is_err());
        state.reserve("A", plate("p1")).unwrap();
        // Refusals change nothing and record nothing.
        assert_eq!(
            state.reserve("A", plate("P1")).unwrap(),
            ReserveOutcome::Exists
        );
        assert_eq!(
            state.cancel("A", plate("P9")).unwrap(),
            CancelOutcome::NotFound
        );
        state.update_occupancy("A", CountChange::Add(2)).unwrap();
        state.update_occupancy("A", CountChange::Add(0)).unwrap();
        state.cancel("A", plate("P1")).unwrap();
        let wall = unix_ms(clock.wall());
        let a = || LotId::new("A").unwrap();
        let held = Change::Reservation {
            lot: a(),
            plate: plate("P1"),
            expires_at_ms: Some(wall + 10_000),
            owner: None,
        };
        let gone = Change::Reservation {
            lot: a(),
            plate: plate("P1"),
            expires_at_ms: None,
            owner: None,
        };
        assert_eq!(
            *journal.changes.lock(),
            vec![
                (gone.clone(), held.clone()),
                (
                    Change::Count {
                        lot: a(),
                        counted: 0
                    },
                    Change::Count {
                        lot: a(),
                        counted: 2
                    }
                ),
                (held, gone),
            ]
        );
        assert_eq!(journal.waited.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_refused_change_is_undone_and_reported_unavailable() {
        let state = state_with(Arc::new(ManualClock::new()), 3);
        let events = recorder(&state);
        let journal = Arc::new(Journal::default());
        let _ = state.set_recorder(journal.clone());
        state.reserve("A", plate("KEEP")).unwrap();
        journal
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            state.reserve("A", plate("P1")),
            Err(StateError::Unavailable(_))
        ));
        assert!(matches!(
            state.update_occupancy("A", CountChange::Set(2)),
            Err(StateError::Unavailable(_))
        ));
        assert!(matches!(
            state.cancel("A", plate("KEEP")),
            Err(StateError::Unavailable(_))
        ));
        let a = &state.lots()[0];
        assert_eq!((a.counted, a.reserved, a.free), (0, 1, 2));
        // Nothing that was undone was ever announced.
        assert_eq!(*events.lock(), vec![("A".into(), 2)]);
        // Reads still work.
        assert_eq!(state.free("A").unwrap(), 2);
    }

    #[test]
    fn an_image_replayed_into_a_new_state_is_the_same_state_and_expiry_runs_on() {
        let clock = Arc::new(ManualClock::new());
        let state = state_with(clock.clone(), 5);
        state.reserve("A", plate("P1")).unwrap();
        clock.advance(Duration::from_secs(4));
        state.reserve("A", plate("P2")).unwrap();
        state.update_occupancy("B", CountChange::Set(7)).unwrap();
        let image = state.image();
        // A restart: a new state, the same wall clock, the monotonic clock started afresh.
        let later = Arc::new(ManualClock::new());
        later.advance(Duration::from_secs(4));
        let restored = state_with(later.clone(), 5);
        for change in &image {
            restored.apply(change).unwrap();
        }
        let original: Vec<_> = state.lots();
        assert_eq!(restored.lots(), original);
        assert_eq!(original[1].counted, 7);
        assert_eq!(original[1].occupied, 5);
        // P1 had 6 s left, P2 10 s: expiry runs on from where it was.
        later.advance(Duration::from_secs(6));
        assert_eq!(restored.lots()[0].reserved, 1);
        later.advance(Duration::from_secs(4));
        assert_eq!(restored.lots()[0].reserved, 0);
        assert!(
            restored
                .apply(&Change::Count {
                    lot: LotId::new("Z").unwrap(),
                    counted: 1,
                })
                .is_err()
        );
    }

    #[test]
    fn a_follower_applies_a_run_as_one_event_and_expires_nothing_itself() {
        let clock = Arc::new(ManualClock::new());
        let state = state_with(clock.clone(), 5).follower();
        let events = recorder(&state);
        let wall = unix_ms(clock.wall());
        let held = |name: &str, expires_at_ms| Change::Reservation {
            lot: LotId::new("A").unwrap(),
            plate: plate(name),
            expires_at_ms,
            owner: None,
        };
        state
            .apply_all(&[
                held("P1", Some(wall + 1_000)),
                held("P2", Some(wall + 1_000)),
                Change::Count {
                    lot: LotId::new("B").unwrap(),
                    counted: 2,
                },
                held("P3", Some(wall)),
            ])
            .unwrap();
        // Three runs (A, B, A): three events, not four.
        assert_eq!(
            *events.lock(),
            vec![("A".into(), 3), ("B".into(), 3), ("A".into(), 2)]
        );
        // Past their time, the reservations stay until a change removes them.
        clock.advance(Duration::from_secs(60));
        assert_eq!(state.purge_expired(), 0);
        assert_eq!(state.next_expiry(), None);
        assert_eq!(state.lots()[0].reserved, 3);
        state
            .apply_all(&[held("P1", None), held("P2", None), held("P3", None)])
            .unwrap();
        assert_eq!(state.lots()[0].free, 5);
        assert_eq!(events.lock().last(), Some(&("A".into(), 5)));
        assert_eq!(events.lock().len(), 4);
    }

    #[test]
    fn only_an_allowed_owner_cancels_and_a_refusal_looks_like_nothing_there() {
        let state = state_with(Arc::new(ManualClock::new()), 3);
        state
            .reserve_for("A", plate("P1"), Some(Arc::from("kiosk-1")))
            .unwrap();
        let mine = |owner: Option<&str>| owner == Some("kiosk-2");
        assert_eq!(
            state.cancel_if("A", plate("P1"), mine).unwrap(),
            CancelOutcome::NotFound
        );
        assert_eq!(state.lots()[0].reserved, 1);
        assert_eq!(
            state
                .cancel_if("A", plate("P1"), |owner| owner == Some("kiosk-1"))
                .unwrap(),
            CancelOutcome::Cancelled
        );
        let image = state.image();
        assert_eq!(image.len(), 2, "two counts, no reservation: {image:?}");
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
