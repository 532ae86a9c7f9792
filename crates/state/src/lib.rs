//! The parking server's state: which lots exist, how many cars the sensors see in each, and who
//! holds a reservation until when.
//!
//! [`ParkingState`] is shared by every worker thread. Each lot sits behind its own
//! `parking_lot::Mutex`, so a reservation in lot A never waits for one in lot B, and the
//! check-and-set in [`ParkingState::reserve`] happens under that lock: a reservation is granted
//! only while occupied spaces plus live reservations are below the capacity, whatever the
//! interleaving. (Sensors report what they see, so occupied can later grow past what that
//! leaves; free is then 0 and further reservations are refused.) `docs/design.md` measures
//! per-lot locks against the reference design's single re-entrant lock.
//! A read of one lot's free count ([`ParkingState::free`]) takes no lock while the count its
//! last operation published is still true by the clock (no expiry or due time has passed
//! since); otherwise it takes the lock, as every other operation does.
//!
//! Every change of a lot's free count is reported to the registered listeners (the pub/sub
//! broker) exactly once, with the new value, *after* the lot's lock has been released, and in
//! the order the changes happened. Changes are queued under the lot's lock; whichever thread
//! finds no one else publishing hands the queue to the listeners, so no thread ever waits for
//! a listener.
//!
//! Bookings of time windows live beside the reservations, in the same lot under the same
//! lock: a booking is accepted only while, at every instant of its window, the lot's active
//! bookings stay below its `bookable` limit (checked exactly against a step function of
//! them, not sampled), and a named spot only while no active booking of it overlaps. A
//! confirmed booking whose window includes now holds a space as a reservation does. A lot
//! without bookings pays one comparison per operation for them.
//!
//! A lot whose bookings are full keeps a waitlist: when room appears (a cancellation, a
//! no-show, an offer not taken), the oldest waiting entry that fits is offered the space,
//! held for it as an `OFFERED` booking for a while; accepted, it is a booking, not accepted,
//! it passes on. Drivers' accounts are kept here too, so that they are made durable with the
//! rest.
//!
//! Time comes from a [`Clock`], so tests can expire reservations and move bookings on without
//! sleeping; reservations expire on the monotonic clock, bookings run on the wall clock
//! (their windows are Unix seconds).
//!
//! # Layout
//! - `account`: drivers' [`Account`]s as kept (the password's hash, never the password).
//! - `availability`: [`Availability`], a lot's `open` / `almostFull` / `full` status.
//! - `booking`: the vocabulary of bookings: [`Booking`], [`Window`], [`BookingRules`],
//!   [`LotTerms`], [`BookingError`] and the outcomes of the gate and of discovery.
//! - `bookings`: one lot's bookings: records, the lot's timeline, spot lines, due times.
//! - `change`: [`Change`], the unit in which the state is made durable, and the [`Recorder`]
//!   a durable store plugs in.
//! - `clock`: the [`Clock`] trait, the real clock and a manual one for tests.
//! - `ids`: validated domain values: [`LotId`], [`Plate`], [`SpotId`], [`Label`],
//!   [`BookingId`].
//! - `lot`: one lot's counters and reservations, and the outcomes of operations on it.
//! - `notice`: [`Notice`], what owners are told about their bookings and entries.
//! - `parking`: [`ParkingState`], the lots shared between threads, and what reads return;
//!   `parking/bookings.rs` holds its booking operations.
//! - `purger`: the background thread that does what is due on time: expiries, and the
//!   holds, no-shows and completions of bookings.
//! - `quick`: a lot's free count published for reads that take no lock (`free`), with
//!   until when it stays true.
//! - `shown`: [`shown`], how errors everywhere echo peer input (short, escaped).
//! - `timeline`: how many bookings cover each instant.
//! - `waitlist`: [`WaitEntry`], [`Offer`], [`WaitlistRules`], [`WaitlistError`], and one
//!   lot's waitlist.

#![forbid(unsafe_code)]

mod account;
mod availability;
mod booking;
mod bookings;
mod change;
mod clock;
mod ids;
mod lot;
mod notice;
mod parking;
mod purger;
mod quick;
mod shown;
mod timeline;
mod waitlist;

pub use account::{Account, AccountError};
pub use availability::Availability;
pub use booking::{
    Booking, BookingError, BookingRequest, BookingRules, BookingStatus, DEFAULT_MAX_FINISHED,
    GateOutcome, LotOffer, LotQuery, LotTerms, PAGE_DEFAULT, PAGE_MAX, Page, PageError, Passage,
    START_SLACK_SECS, SpotOffer, SpotSpec, Window, WindowError,
};
pub use change::{Change, Commit, Recorder, Unavailable};
pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{
    BookingId, BookingIdError, Label, LotId, LotIdError, MAX_LOT_ID_LEN, MAX_NAME_LEN,
    MAX_PLATE_LEN, MAX_USERNAME_LEN, MIN_USERNAME_LEN, NameError, Plate, PlateError, SpotId,
    Username, UsernameError, WaitId, WaitIdError,
};
pub use lot::{CancelOutcome, CountChange, ReserveOutcome};
pub use notice::{Notice, NoticeListener};
pub use parking::{
    DEFAULT_MAX_ACCOUNTS, Listener, LotChange, LotSnapshot, LotSpec, OccupancyUpdate, ParkingState,
    SetupError, StateError, UnknownLot,
};
pub use purger::Purger;
pub use shown::{SHOWN_CHARS, Shown, shown};
pub use waitlist::{Offer, WaitEntry, WaitlistError, WaitlistRules};
