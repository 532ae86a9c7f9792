//! The PostgreSQL store: several stateless parking-server nodes over one database.
//!
//! PostgreSQL decides every write. A reserve is one call of a SQL function that takes the
//! lot's row lock, checks the plate and the capacity and inserts the reservation; a plate's
//! uniqueness is the table's primary key. A reply of `true` means the transaction committed.
//! No node's lock decides anything, so any number of nodes may take writes for the same lot.
//!
//! Reads are served from each node's in-memory copy ([`state::ParkingState`] as a
//! follower), so they cost what they cost with the embedded store. Every committed change
//! bumps its lot's version; the node that made it announces it with `NOTIFY` once it has
//! committed (the lot, the new version, the keys that changed as [`state::Change`]s), in a
//! transaction of its own: a NOTIFY inside the writing transaction would make every write
//! wait for an fsync of its own (docs/scaling.md). Each node `LISTEN`s and applies each
//! lot's changes in version order, exactly once, whichever node made them, so its
//! subscribers hear every lot's events in the order they were committed. An announcement
//! lost with its node (dead between commit and announcement) is noticed from the versions
//! and the lot read afresh, within about two seconds. A node also applies its own commits
//! at once (when they are next in line), so a client reads its own writes on the node it
//! wrote through.
//!
//! Bookings are decided the same way (`bookings`): the spot rule is an exclusion
//! constraint, the lot-wide rule a peak computed under the lot's row lock. A car through
//! the gate (`gates`) is one function moving the count, the plate's reservation and its
//! booking under that lock, as one change. Waitlists (`waitlists`) are rows whose uniqueness
//! and one-offer-per-driver rule are constraints; offers are made by idempotent SQL in the
//! same transaction as whatever made the room. Drivers' accounts
//! are rows with the username as key; logins read them from the database (`accounts`).
//!
//! Time-driven work (reservation expiry; bookings held from their start, no-shows,
//! completions; offers running out and passing on) is idempotent SQL that every node runs
//! when its time comes; several nodes running it at once queue on the lot's row lock and
//! each thing is done once.
//!
//! It keeps every feature ([`Store::supports`]); a feature it lacked would be refused by
//! the ports (reads included) rather than decided in one node's copy, where the other nodes
//! would never see it.
//!
//! When PostgreSQL cannot be reached, writes answer [`StateError::Unavailable`] within the
//! configured timeout (at once, once the outage is known), reads go on from the copy, and
//! [`Store::health`] says why. The listening thread reconnects, re-`LISTEN`s, reads every lot
//! afresh and takes writes again with no manual step.
//!
//! # Layout
//! - this file: [`PgStore`] and its [`Store`] implementation (the writes), [`PgOptions`],
//!   [`OpenError`].
//! - `bookings`: bookings, cancellations and check-ins; the time-driven moves of bookings.
//! - `gates`: cars through a lot's gate (`ENTER`/`EXIT`).
//! - `waitlists`: waitlist entries, the offers made to them, accepting and leaving.
//! - `accounts`: drivers' accounts.
//! - `schema`: the versioned migrations (`migrations/*.sql`), applied under an advisory lock,
//!   and the lots a node brings.
//! - `copy`: the node's copy: each lot's version, applying changes in version order.
//! - `announce`: the thread that sends this node's announcements after their commits.
//! - `link`: the connection pool and whether the database is reachable.
//! - `follow`: the thread that `LISTEN`s, applies announcements, resynchronises, and reads
//!   afresh the lots whose announcement was lost.
//! - `expiry`: the thread that runs the time-driven work on time.

#![forbid(unsafe_code)]

mod accounts;
mod announce;
mod bookings;
mod copy;
mod expiry;
mod follow;
mod gates;
mod link;
mod schema;
mod waitlists;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use postgres::Row;
use postgres::types::{ToSql, Type};
use state::{
    Account, AccountError, Booking, BookingError, BookingId, BookingRequest, CancelOutcome, Change,
    Clock, CountChange, GateOutcome, LotId, LotSpec, OccupancyUpdate, ParkingState, Passage, Plate,
    ReserveOutcome, SetupError, StateError, Unavailable, Username, WaitEntry, WaitId,
    WaitlistError,
};
use store::{Feature, Health, Store};

use crate::announce::{Announcer, Outbox};
use crate::copy::Copy;
use crate::expiry::Expirer;
use crate::follow::Follower;
use crate::link::Link;
use crate::waitlists::OfferTerms;

pub use crate::schema::{MIGRATIONS, Migration};

/// How a node reaches its database.
#[derive(Clone)]
pub struct PgOptions {
    /// A libpq-style URL or key-value string (`postgres://user:pass@host:5432/db`).
    pub url: String,
    /// Connections kept for writes; the RPC and sensor workers share them.
    pub pool_size: u32,
    /// The longest a write waits for the database (a connection from the pool, a connect, a
    /// statement) before it answers `UNAVAILABLE`.
    pub timeout: Duration,
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redacted(&self.url))
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `url` without its password, for logs: `postgres://user:***@host/db`; a key-value
/// string's `password=` value is hidden the same way.
pub fn redacted(url: &str) -> String {
    if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@'))
        && at > scheme
        && let Some((user, _)) = url[scheme + 3..at].split_once(':')
    {
        return format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]);
    }
    url.split(' ')
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=***",
            _ => pair,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a node could not open its store.
#[derive(Debug)]
pub enum OpenError {
    /// The URL is not one PostgreSQL's client understands.
    Url(postgres::Error),
    /// The database could not be reached or refused a statement at start.
    Database(postgres::Error),
    /// The database's schema is not one this node can use.
    Schema(String),
    /// The lots do not describe a valid state.
    Lots(SetupError),
    /// A thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Url(err) => write!(f, "invalid PostgreSQL url: {err}"),
            OpenError::Database(err) => write!(f, "PostgreSQL: {}", link::describe(err)),
            OpenError::Schema(why) => write!(f, "PostgreSQL schema: {why}"),
            OpenError::Lots(err) => write!(f, "invalid lots: {err}"),
            OpenError::Spawn(err) => write!(f, "cannot start a thread: {err}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Url(err) | OpenError::Database(err) => Some(err),
            OpenError::Schema(_) => None,
            OpenError::Lots(err) => Some(err),
            OpenError::Spawn(err) => Some(err),
        }
    }
}

/// What the store's threads and its writers share.
pub(crate) struct Shared {
    pub(crate) copy: Copy,
    pub(crate) link: Link,
    pub(crate) outbox: Outbox,
    pub(crate) ttl: Duration,
    /// Wakes the expiry thread: something this node made is due sooner than it would look.
    pub(crate) nudge: Sender<()>,
}

/// `at` in whole Unix seconds (0 before the epoch).
pub(crate) fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Shared {
    /// Runs a write whose statement ends with `parking_unsent()` (every write function's
    /// call does) and hands its announcements to the announcing thread: the statement is
    /// its own transaction, so by the time it answers it has committed.
    fn write(&self, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<Row, Unavailable> {
        let row = self.link.query_one(sql, params)?;
        match link::unsent(&row) {
            Ok(unsent) => self.outbox.send(unsent),
            // Committed all the same: the nodes read the lot afresh when they notice.
            Err(err) => log::error!("a write's announcements: {err}"),
        }
        Ok(row)
    }

    /// Hands the announcement of a committed change that its SQL left to the node (the
    /// `*_quietly` functions) to the announcing thread, followed by those of the later
    /// changes of the same transaction (`then`, announced by their SQL), and applies it to
    /// the copy.
    fn committed(&self, lot: &LotId, version: u64, change: Change, then: Vec<String>) {
        let changes = [change];
        let mut payloads = Vec::with_capacity(1 + then.len());
        payloads.push(announce::payload(lot, version, &changes));
        payloads.extend(then);
        self.outbox.send(payloads);
        self.copy.apply(lot, version, Vec::from(changes));
    }

    /// Removes `plate`'s reservation in `lot` if `owner` still owns it; the lot's new
    /// version, or `None` when nothing was removed.
    fn cancel_owned(
        &self,
        lot: &LotId,
        plate: &Plate,
        owner: Option<&str>,
    ) -> Result<Option<u64>, Unavailable> {
        // The space is offered to the lot's waitlist in the same transaction (a quick
        // look when nobody waits); an offer is announced by its SQL, after the cancel.
        let terms = OfferTerms::of(self.copy.state(), lot.as_str());
        let row = self.link.query_one(
            "SELECT c.version, parking_offer_room($1, $4, $5), parking_unsent() \
             FROM parking_cancel_quietly($1, $2, $3) AS c",
            &[
                (&lot.as_str(), Type::TEXT),
                (&plate.as_str(), Type::TEXT),
                (&owner, Type::TEXT),
                (&terms.bookable, Type::INT4),
                (&terms.offer_for, Type::INT8),
            ],
        )?;
        let version = link::optional_version(&row, 0)?;
        let offers = link::unsent(&row)?;
        if let Some(version) = version {
            self.committed(
                lot,
                version,
                Change::Reservation {
                    lot: lot.clone(),
                    plate: *plate,
                    expires_at_ms: None,
                    owner: None,
                },
                offers,
            );
        } else {
            self.outbox.send(offers);
        }
        Ok(version)
    }
}

/// A node's store over PostgreSQL; see the crate documentation.
pub struct PgStore {
    shared: Arc<Shared>,
    follower: parking_lot::Mutex<Option<Follower>>,
    expirer: parking_lot::Mutex<Option<Expirer>>,
    announcer: parking_lot::Mutex<Option<Announcer>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, applies the migrations this node knows (under an advisory lock, so nodes
    /// starting together are safe), adds the configured lots the database lacks, reads
    /// every lot, and starts following the database. A lot's capacity is the database's
    /// when it already has the lot (a differing configured one is logged): every node then
    /// agrees on it. Reservations live for `ttl`. `setup` configures the copy's state beyond
    /// its lots (bookings' rules and terms, waitlists, accounts), as the node's
    /// configuration says; every node must say the same.
    pub fn open(
        options: &PgOptions,
        lots: Vec<LotSpec>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
        setup: impl FnOnce(ParkingState) -> Result<ParkingState, SetupError>,
    ) -> Result<PgStore, OpenError> {
        if ttl.is_zero() {
            return Err(OpenError::Lots(SetupError::ZeroTtl));
        }
        let config = link::client_config(options)?;
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(OpenError::Database)?;
        schema::migrate(&mut client)?;
        let lots = schema::ensure_lots(&mut client, lots)?;
        let state = ParkingState::new(lots, ttl, clock).map_err(OpenError::Lots)?;
        let state = setup(state).map_err(OpenError::Lots)?.follower();
        let (nudge, nudged) = crossbeam_channel::bounded(1);
        let (outbox, pending) = Outbox::new();
        let shared = Arc::new(Shared {
            copy: Copy::new(Arc::new(state)),
            link: Link::new(config, options),
            outbox,
            ttl,
            nudge,
        });
        // LISTEN before reading: a change committed in between is then both in what is read
        // and announced, and its version tells the copy it has it already.
        follow::listen(&mut client).map_err(OpenError::Database)?;
        follow::resync(&shared.copy, &mut client, None).map_err(OpenError::Database)?;
        let follower = Follower::spawn(Arc::clone(&shared), client).map_err(OpenError::Spawn)?;
        let announcer = Announcer::spawn(Arc::clone(&shared), pending).map_err(OpenError::Spawn)?;
        let expirer = Expirer::spawn(Arc::clone(&shared), nudged).map_err(OpenError::Spawn)?;
        log::info!(
            "store: PostgreSQL at {} (pool of {}, timeout {} ms), schema version {}",
            redacted(&options.url),
            options.pool_size,
            options.timeout.as_millis(),
            MIGRATIONS.last().map_or(0, |m| m.version)
        );
        Ok(PgStore {
            shared,
            follower: parking_lot::Mutex::new(Some(follower)),
            expirer: parking_lot::Mutex::new(Some(expirer)),
            announcer: parking_lot::Mutex::new(Some(announcer)),
        })
    }

    /// Runs the expiry work once: removes every reservation whose time has come, in every
    /// lot of the database; returns how many. The store's own thread runs it on time;
    /// running it anywhere else too (another node, a test) is harmless.
    pub fn expire_due(&self) -> Result<usize, Unavailable> {
        expiry::sweep(&self.shared).map(|swept| swept.expired)
    }

    /// Runs the time-driven work once and returns how many bookings it moved on (held from
    /// their start, no-shows, completions, forgotten); harmless anywhere, like
    /// [`PgStore::expire_due`], which it includes.
    pub fn settle_due(&self) -> Result<usize, Unavailable> {
        expiry::sweep(&self.shared).map(|swept| swept.moved)
    }

    /// The lot's id as this node's state knows it, or the error a write reports.
    fn lot(&self, lot: &str) -> Result<LotId, StateError> {
        Ok(self.state().lot_id(lot)?.clone())
    }
}

impl Store for PgStore {
    fn state(&self) -> &Arc<ParkingState> {
        self.shared.copy.state()
    }

    fn health(&self) -> Health {
        match self.shared.link.down_reason() {
            None => Health::Ok,
            Some(why) => Health::Unavailable(why),
        }
    }

    fn close(&self) {
        self.shared.link.close();
        drop(self.expirer.lock().take());
        // After the writers and the expiry work: it sends what they committed, then stops.
        drop(self.announcer.lock().take());
        drop(self.follower.lock().take());
    }

    /// Every feature: lots, reservations, counts, gate lines, bookings, waitlists and
    /// accounts. (A feature this store did not keep would be refused by the ports before it
    /// reached the provided methods, which would decide it in this node's copy alone.)
    fn supports(&self, feature: Feature) -> bool {
        match feature {
            Feature::Bookings | Feature::Accounts | Feature::Gates | Feature::Waitlists => true,
        }
    }

    fn reserve(
        &self,
        lot: &str,
        plate: Plate,
        owner: Option<&str>,
    ) -> Result<ReserveOutcome, StateError> {
        let lot = self.lot(lot)?;
        let ttl_ms = i64::try_from(self.shared.ttl.as_millis()).unwrap_or(i64::MAX);
        // One prepared statement, one round trip; the node announces it (`committed`).
        let row = self.shared.link.query_one(
            "SELECT outcome, version, expires_at_ms FROM parking_reserve_quietly($1, $2, $3, $4)",
            &[
                (&lot.as_str(), Type::TEXT),
                (&plate.as_str(), Type::TEXT),
                (&ttl_ms, Type::INT8),
                (&owner, Type::TEXT),
            ],
        )?;
        let outcome: &str = link::column(&row, 0)?;
        match outcome {
            "reserved" => {
                let version = link::version(&row, 1)?;
                let expires_at_ms: i64 = link::column(&row, 2)?;
                self.shared.committed(
                    &lot,
                    version,
                    Change::Reservation {
                        lot: lot.clone(),
                        plate,
                        expires_at_ms: Some(u64::try_from(expires_at_ms).unwrap_or(0)),
                        owner: owner.map(str::to_owned),
                    },
                    Vec::new(),
                );
                Ok(ReserveOutcome::Reserved)
            }
            "full" => Ok(ReserveOutcome::Full),
            "exists" => Ok(ReserveOutcome::Exists),
            "unknown_lot" => Err(schema::missing_lot(&lot)),
            other => Err(link::unexpected(format!("parking_reserve answered {other:?}")).into()),
        }
    }

    fn cancel(
        &self,
        lot: &str,
        plate: Plate,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        let lot = self.lot(lot)?;
        // The owner as this node knows it, when it knows the reservation (it knows every
        // one made through this node, also while its own commit waits in the copy for
        // another node's earlier change: the usual case for a cancel right after a reserve
        // while two nodes write the lot): one statement then decides, removing it only if
        // the database agrees on the owner.
        if let Some(owner) = self.shared.copy.holder(&lot, &plate)
            && allowed(owner.as_deref())
            && self
                .shared
                .cancel_owned(&lot, &plate, owner.as_deref())?
                .is_some()
        {
            return Ok(CancelOutcome::Cancelled);
        }
        // Otherwise who holds it is asked of the database, not the copy, which may not have
        // heard yet of a reservation made a moment ago through another node.
        let holder = self.shared.link.query_one(
            "SELECT held, owner FROM parking_holder($1, $2)",
            &[(&lot.as_str(), Type::TEXT), (&plate.as_str(), Type::TEXT)],
        )?;
        let held: bool = link::column(&holder, 0)?;
        let owner: Option<String> = link::column(&holder, 1)?;
        if !held || !allowed(owner.as_deref()) {
            return Ok(CancelOutcome::NotFound);
        }
        // Removed only if the owner is still the one judged allowed.
        Ok(
            match self.shared.cancel_owned(&lot, &plate, owner.as_deref())? {
                Some(_) => CancelOutcome::Cancelled,
                None => CancelOutcome::NotFound,
            },
        )
    }

    fn update_occupancy(
        &self,
        lot: &str,
        change: CountChange,
    ) -> Result<OccupancyUpdate, StateError> {
        let lot = self.lot(lot)?;
        let (set, add) = match change {
            CountChange::Set(n) => (Some(i64::from(n)), 0),
            CountChange::Add(k) => (None, i64::from(k)),
            CountChange::Remove(k) => (None, -i64::from(k)),
        };
        // Cars gone make room, which is offered to the waitlist in the same transaction.
        let terms = OfferTerms::of(self.state(), lot.as_str());
        let row = self.shared.write(
            "SELECT counted, capacity, reserved, version, parking_offer_room($1, $4, $5), \
             parking_unsent() FROM parking_count($1, $2, $3)",
            &[
                (&lot.as_str(), Type::TEXT),
                (&set, Type::INT8),
                (&add, Type::INT8),
                (&terms.bookable, Type::INT4),
                (&terms.offer_for, Type::INT8),
            ],
        )?;
        let counted: Option<i64> = link::column(&row, 0)?;
        let Some(counted) = counted else {
            return Err(schema::missing_lot(&lot));
        };
        let capacity: i32 = link::column(&row, 1)?;
        let reserved: i32 = link::column(&row, 2)?;
        if let Some(version) = link::optional_version(&row, 3)? {
            self.shared.copy.apply(
                &lot,
                version,
                vec![Change::Count {
                    lot: lot.clone(),
                    counted,
                }],
            );
        }
        let capacity = u32::try_from(capacity).unwrap_or(0);
        let reserved = u32::try_from(reserved).unwrap_or(0);
        // Clamped into [0, capacity], which fits in u32.
        let occupied = counted.clamp(0, i64::from(capacity)) as u32;
        Ok(OccupancyUpdate {
            occupied,
            counted,
            free: capacity.saturating_sub(occupied.saturating_add(reserved)),
            clamped: counted != i64::from(occupied),
        })
    }

    fn book(
        &self,
        request: BookingRequest<'_>,
        owner: Option<&str>,
    ) -> Result<Booking, BookingError> {
        let booking = bookings::book(&self.shared, request, owner)?;
        // Its start (or no-show time) may come before the expiry thread would look.
        let _ = self.shared.nudge.try_send(());
        Ok(booking)
    }

    fn cancel_booking(
        &self,
        id: &BookingId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        bookings::cancel(&self.shared, id, allowed)
    }

    fn check_in(
        &self,
        id: &BookingId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Booking, BookingError> {
        bookings::check_in(&self.shared, id, allowed)
    }

    fn pass_gate(
        &self,
        lot: &str,
        plate: Plate,
        passage: Passage,
    ) -> Result<GateOutcome, StateError> {
        gates::pass(&self.shared, lot, plate, passage)
    }

    fn join_waitlist(
        &self,
        request: BookingRequest<'_>,
        owner: Option<&str>,
    ) -> Result<WaitEntry, WaitlistError> {
        waitlists::join(&self.shared, request, owner)
    }

    fn leave_waitlist(
        &self,
        id: &WaitId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        waitlists::leave(&self.shared, id, allowed)
    }

    fn accept_offer(
        &self,
        id: &WaitId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Booking, WaitlistError> {
        waitlists::accept(&self.shared, id, allowed)
    }

    fn create_account(&self, account: Account) -> Result<(), AccountError> {
        accounts::create(&self.shared.link, &account, self.state().max_accounts())
    }

    fn account(&self, username: &Username) -> Result<Option<Account>, Unavailable> {
        accounts::find(&self.shared.link, username)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redacted("postgres://parking:s3cret@db.example:5432/parking"),
            "postgres://parking:***@db.example:5432/parking"
        );
        assert_eq!(
            redacted("postgres://db.example/parking"),
            "postgres://db.example/parking"
        );
        assert_eq!(
            redacted("postgres://parking@db.example/parking"),
            "postgres://parking@db.example/parking"
        );
        assert_eq!(
            redacted("host=/tmp user=x password=y"),
            "host=/tmp user=x password=***"
        );
    }
}
