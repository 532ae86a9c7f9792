//! Where the parking server's state is made durable.
//!
//! The server writes through one seam, [`Store`]: every operation that changes the state
//! (reserve, cancel, a sensor's count, a booking and its check-in, a car at the gate, a
//! waitlist entry and its offer, a driver's account) goes to the store, which decides it and answers only
//! once the change is as durable as it promises. Reads never come here: they are served
//! from the store's in-memory copy, [`Store::state`], which is the source of truth for reads.
//!
//! Implementations:
//! - [`MemoryStore`]: the state alone; nothing survives a restart (`"data_dir": null`).
//! - [`EmbeddedStore`]: the state plus a journal and snapshots in a data directory. Every
//!   change is appended to the journal under the lot's lock and waited for after it, with
//!   group commit: one writer writes and syncs the changes of every writer waiting, so
//!   throughput grows with concurrency. A failing disk makes writes `UNAVAILABLE` (the
//!   change is undone), never acknowledged. `docs/design.md` ("Durability") has the format,
//!   the measurements behind it and each fsync policy's loss window.
//! - `store_pg::PgStore` (crate `crates/store-pg`): several nodes over one PostgreSQL,
//!   which decides every write; each node's copy follows it.
//!
//! # Layout
//! - this file: [`Store`], [`Health`] and [`MemoryStore`].
//! - `feature`: [`Feature`], what a store may lack, and [`Unsupported`], the refusal.
//! - `embedded`: [`EmbeddedStore`] and its [`Options`]: opening a directory, its threads.
//! - `journal`: the state's recorder: group commit, the fsync policies ([`Fsync`]), the
//!   failure path (rollback, retry with backoff).
//! - `record`: the journal's record format, and telling a torn tail from corruption.
//! - `snapshot`: snapshot files.
//! - `compactor`: the thread that snapshots the state and removes old segments.
//! - `recovery`: loading a directory at start-up, and [`repair`].
//! - `files`: the directory's file names and its lock.
//! - [`disk`]: the file operations, behind a trait, and a test double that fails them.
//! - `error`: [`OpenError`].

#![forbid(unsafe_code)]

mod compactor;
pub mod disk;
mod embedded;
mod error;
mod feature;
mod files;
mod journal;
mod record;
mod recovery;
mod snapshot;

use std::sync::Arc;

pub use embedded::{
    DEFAULT_MAX_GATHER, DEFAULT_RETRY_AFTER, DEFAULT_SEGMENT_BYTES, EmbeddedStore, Options,
};
pub use error::{OpenError, OpenErrorKind};
pub use feature::{Feature, Unsupported};
pub use journal::{DiskError, Fsync, JournalStats};
pub use recovery::{Cut, Repair, repair};

use state::{
    Account, AccountError, Booking, BookingError, BookingId, BookingRequest, CancelOutcome,
    CountChange, GateOutcome, OccupancyUpdate, ParkingState, Passage, Plate, ReserveOutcome,
    StateError, Unavailable, Username, WaitEntry, WaitId, WaitlistError,
};

/// What the server writes through. Every method that changes the state returns only once
/// the change is as durable as the store promises; [`StateError::Unavailable`] means it was
/// not made at all.
///
/// The provided methods decide a change in the in-memory state, which records it through its
/// `state::Recorder` when the store has set one (the embedded store's journal); a store where
/// something else decides (a database) overrides them.
pub trait Store: Send + Sync {
    /// The in-memory copy of the state, which every read is served from.
    fn state(&self) -> &Arc<ParkingState>;

    /// Whether writes can be made durable now.
    fn health(&self) -> Health;

    /// Makes everything acknowledged so far durable and stops the store's threads; later
    /// writes are refused. Called once the server has stopped taking requests.
    fn close(&self);

    /// Whether this store keeps `feature`. The ports ask before they serve a request of
    /// that feature, reads included, and refuse it with [`Unsupported`] when not: a store
    /// that lacks a feature would otherwise decide it in its in-memory copy alone (and
    /// answer reads from a copy that never holds any). Every feature by default.
    fn supports(&self, feature: Feature) -> bool {
        let _ = feature;
        true
    }

    /// `Ok` if this store keeps `feature`, else the refusal a port answers with.
    fn require(&self, feature: Feature) -> Result<(), Unsupported> {
        if self.supports(feature) {
            Ok(())
        } else {
            Err(Unsupported(feature))
        }
    }

    /// Holds a space for `plate` in `lot`, on behalf of `owner` (a key id) if given.
    fn reserve(
        &self,
        lot: &str,
        plate: Plate,
        owner: Option<&str>,
    ) -> Result<ReserveOutcome, StateError> {
        self.state().reserve_for(lot, plate, owner.map(Arc::from))
    }

    /// Removes `plate`'s reservation in `lot` if `allowed` says so of its owner (a refusal
    /// is reported as not found).
    fn cancel(
        &self,
        lot: &str,
        plate: Plate,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        self.state().cancel_if(lot, plate, allowed)
    }

    /// Applies a sensor's report to `lot`'s count.
    fn update_occupancy(
        &self,
        lot: &str,
        change: CountChange,
    ) -> Result<OccupancyUpdate, StateError> {
        self.state().update_occupancy(lot, change)
    }

    /// Books a space (or a named spot) over a window, on behalf of `owner` if given.
    fn book(
        &self,
        request: BookingRequest<'_>,
        owner: Option<&str>,
    ) -> Result<Booking, BookingError> {
        self.state().book_for(request, owner)
    }

    /// Cancels a confirmed booking if `allowed` says so of its owner (a refusal, like an
    /// unknown or unconfirmed booking, is reported as not found).
    fn cancel_booking(
        &self,
        id: &BookingId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        self.state().cancel_booking_if(id, allowed)
    }

    /// Checks a booking in if `allowed` says so of its owner (a refusal looks unknown).
    fn check_in(
        &self,
        id: &BookingId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Booking, BookingError> {
        self.state().check_in_if(id, allowed)
    }

    /// A car through `lot`'s gate: the count, and the plate's booking and reservation.
    fn pass_gate(
        &self,
        lot: &str,
        plate: Plate,
        passage: Passage,
    ) -> Result<GateOutcome, StateError> {
        self.state().pass_gate(lot, plate, passage)
    }

    /// Puts a plate on a lot's waitlist for a window it cannot book now, on behalf of
    /// `owner` if given.
    fn join_waitlist(
        &self,
        request: BookingRequest<'_>,
        owner: Option<&str>,
    ) -> Result<WaitEntry, WaitlistError> {
        self.state().join_waitlist(request, owner)
    }

    /// Takes an entry off its waitlist if `allowed` says so of its owner (a refusal is
    /// reported as not found).
    fn leave_waitlist(
        &self,
        id: &WaitId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        self.state().leave_waitlist_if(id, allowed)
    }

    /// Accepts an entry's live offer if `allowed` says so of its owner: the booking.
    fn accept_offer(
        &self,
        id: &WaitId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Booking, WaitlistError> {
        self.state().accept_offer_if(id, allowed)
    }

    /// Makes a driver's account (its password already hashed).
    fn create_account(&self, account: Account) -> Result<(), AccountError> {
        self.state().create_account(account)
    }

    /// The driver's account named `username`, for a login: the in-memory state's, unless
    /// the store keeps accounts where every node sees them at once (a database).
    fn account(&self, username: &Username) -> Result<Option<Account>, Unavailable> {
        Ok(self.state().account(username))
    }
}

/// Whether a store can take writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Writes are made durable.
    Ok,
    /// Writes are refused (`UNAVAILABLE`) for this reason; reads still work.
    Unavailable(String),
}

/// The state alone, in memory: nothing survives a restart.
#[derive(Debug)]
pub struct MemoryStore {
    state: Arc<ParkingState>,
}

impl MemoryStore {
    /// A store over `state`, which must have no recorder.
    pub fn new(state: Arc<ParkingState>) -> Self {
        MemoryStore { state }
    }
}

impl Store for MemoryStore {
    fn state(&self) -> &Arc<ParkingState> {
        &self.state
    }

    fn health(&self) -> Health {
        Health::Ok
    }

    fn close(&self) {}
}
