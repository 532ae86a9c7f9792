//! The vocabulary of bookings: a [`Booking`] and its [`BookingStatus`], the [`Window`] it is
//! for, the [`BookingRules`] every window must keep, a lot's [`LotTerms`], and the outcomes
//! and errors of the operations ([`BookingError`], [`GateOutcome`], [`LotOffer`]).
//!
//! Like the reservation outcomes in `lot`, these are the product's one vocabulary for them:
//! the RPC codec encodes these same types and the journal records them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::change::Unavailable;
use crate::ids::{BookingId, Label, LotId, Plate, SpotId};
use crate::parking::{StateError, UnknownLot};
use crate::shown::shown;

/// How far in the past a booking may start: a request sent at the start of its window, or a
/// clock a little behind the server's, is not refused for it.
pub const START_SLACK_SECS: u64 = 60;

/// Where a booking is in its life. Active ones (`CONFIRMED`, `CHECKED_IN`) count against the
/// lot; the others are kept for a while so that they can still be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    /// Booked; holds a space while its window includes now, until checked in.
    Confirmed,
    /// The car has arrived.
    CheckedIn,
    /// The car left, or the window ended.
    Completed,
    /// Cancelled before check-in.
    Cancelled,
    /// Not checked in by `start + checkin_grace` (or by the end of a shorter window).
    NoShow,
    /// Held for a waitlist entry until its offer runs out: accepted, it becomes `CONFIRMED`;
    /// not accepted in time, it is forgotten and the space passes on.
    Offered,
}

impl BookingStatus {
    /// Whether the booking counts against its lot (and spot): an offer does, since it holds
    /// the space for the driver it is offered to.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            BookingStatus::Confirmed | BookingStatus::CheckedIn | BookingStatus::Offered
        )
    }

    /// The status as the wire writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Confirmed => "CONFIRMED",
            BookingStatus::CheckedIn => "CHECKED_IN",
            BookingStatus::Completed => "COMPLETED",
            BookingStatus::Cancelled => "CANCELLED",
            BookingStatus::NoShow => "NO_SHOW",
            BookingStatus::Offered => "OFFERED",
        }
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time window `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First second of the window.
    pub start: u64,
    /// First second after it.
    pub end: u64,
}

impl Window {
    /// Whether the window and `other` share an instant.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `at` is inside the window.
    pub fn contains(&self, at: u64) -> bool {
        self.start <= at && at < self.end
    }
}

/// A booking: a space in a lot (or one named spot) for a plate over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "BookingFields", try_from = "BookingFields")]
pub struct Booking {
    /// Its id, which names its lot.
    pub id: BookingId,
    /// The named spot booked, or `None` for any space of the lot.
    pub spot: Option<SpotId>,
    /// The vehicle's plate.
    pub plate: Plate,
    /// The window booked.
    pub window: Window,
    /// Where it is in its life.
    pub status: BookingStatus,
    /// The key id that made it, when access control is on.
    pub owner: Option<String>,
    /// The car was still in the lot `checkin_grace` after the window ended.
    pub overstay: bool,
    /// The car is in the lot: checked in and not yet through the exit gate.
    pub inside: bool,
    /// For an `OFFERED` booking, when the offer runs out (Unix seconds).
    pub offered_until: Option<u64>,
}

impl Booking {
    /// The lot it is in.
    pub fn lot(&self) -> &LotId {
        self.id.lot()
    }
}

/// A booking as the wire and the journal write it: the lot beside the id, times flat.
/// Unknown fields are ignored, so that a client keeps reading the bookings of a newer server.
#[derive(Serialize, Deserialize)]
struct BookingFields {
    id: BookingId,
    lot: LotId,
    spot: Option<SpotId>,
    plate: Plate,
    start: u64,
    end: u64,
    status: BookingStatus,
    owner: Option<String>,
    #[serde(default)]
    overstay: bool,
    #[serde(default)]
    inside: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offered_until: Option<u64>,
}

impl From<Booking> for BookingFields {
    fn from(booking: Booking) -> Self {
        BookingFields {
            lot: booking.id.lot().clone(),
            id: booking.id,
            spot: booking.spot,
            plate: booking.plate,
            start: booking.window.start,
            end: booking.window.end,
            status: booking.status,
            owner: booking.owner,
            overstay: booking.overstay,
            inside: booking.inside,
            offered_until: booking.offered_until,
        }
    }
}

impl TryFrom<BookingFields> for Booking {
    type Error = String;

    fn try_from(fields: BookingFields) -> Result<Self, Self::Error> {
        if fields.lot != *fields.id.lot() {
            return Err(format!(
                "booking {} says it is in lot {}",
                fields.id, fields.lot
            ));
        }
        if fields.start >= fields.end {
            return Err(format!("booking {} ends before it starts", fields.id));
        }
        Ok(Booking {
            id: fields.id,
            spot: fields.spot,
            plate: fields.plate,
            window: Window {
                start: fields.start,
                end: fields.end,
            },
            status: fields.status,
            owner: fields.owner,
            overstay: fields.overstay,
            inside: fields.inside,
            offered_until: fields.offered_until,
        })
    }
}

/// What every booking window must keep, and the times of check-in and release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingRules {
    /// Longest window (`max_booking_hours`).
    pub max_length: Duration,
    /// How far ahead a window may start (`booking_horizon_days`).
    pub horizon: Duration,
    /// How long before its start a booking may check in (`early_checkin_minutes`).
    pub early_checkin: Duration,
    /// How long after its start a booking not checked in is kept, and after its end a car
    /// may stay before it is flagged as overstaying (`checkin_grace`).
    pub checkin_grace: Duration,
    /// How long a finished booking stays readable after its window ends
    /// (`booking_retention_days`); then it is forgotten, so memory follows live bookings.
    pub retention: Duration,
    /// Most finished bookings (completed, cancelled, no-show) one lot keeps
    /// (`max_finished_bookings`): past it, the one due to be forgotten soonest is forgotten
    /// at once, so that booking and cancelling in a loop cannot grow a lot's memory for the
    /// whole retention.
    pub max_finished: u32,
}

impl Default for BookingRules {
    fn default() -> Self {
        BookingRules {
            max_length: Duration::from_secs(24 * 3600),
            horizon: Duration::from_secs(30 * 86_400),
            early_checkin: Duration::from_secs(15 * 60),
            checkin_grace: Duration::from_secs(900),
            retention: Duration::from_secs(7 * 86_400),
            max_finished: DEFAULT_MAX_FINISHED,
        }
    }
}

/// Finished bookings a lot keeps by default (a few hundred bytes each).
pub const DEFAULT_MAX_FINISHED: u32 = 10_000;

impl BookingRules {
    /// Checks `window` against the rules at `now` (Unix seconds).
    pub fn check(&self, window: Window, now: u64) -> Result<(), WindowError> {
        if window.end <= window.start {
            return Err(WindowError::Empty);
        }
        if window.start.saturating_add(START_SLACK_SECS) < now {
            return Err(WindowError::Past);
        }
        if window.end - window.start > self.max_length.as_secs() {
            return Err(WindowError::TooLong {
                max_secs: self.max_length.as_secs(),
            });
        }
        if window.start > now.saturating_add(self.horizon.as_secs()) {
            return Err(WindowError::TooFar {
                horizon_secs: self.horizon.as_secs(),
            });
        }
        Ok(())
    }

    /// When a confirmed booking that has not checked in stops holding its space and becomes
    /// a no-show: `checkin_grace` after its start, or at its end if that is sooner.
    pub fn no_show_at(&self, window: Window) -> u64 {
        window
            .start
            .saturating_add(self.checkin_grace.as_secs())
            .min(window.end)
    }

    /// When check-in opens: `early_checkin` before the start.
    pub fn checkin_opens_at(&self, window: Window) -> u64 {
        window.start.saturating_sub(self.early_checkin.as_secs())
    }
}

/// Why a window is refused (`BAD_WINDOW`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowError {
    /// `end` is not after `start`.
    Empty,
    /// `start` is more than [`START_SLACK_SECS`] in the past.
    Past,
    /// Longer than `max_booking_hours`.
    TooLong {
        /// The longest window, in seconds.
        max_secs: u64,
    },
    /// Starts beyond `booking_horizon_days`.
    TooFar {
        /// How far ahead windows may start, in seconds.
        horizon_secs: u64,
    },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::Empty => write!(f, "the window must end after it starts"),
            WindowError::Past => write!(
                f,
                "the window starts in the past (more than {START_SLACK_SECS} s ago)"
            ),
            WindowError::TooLong { max_secs } => {
                write!(f, "the window is longer than {} hours", max_secs / 3600)
            }
            WindowError::TooFar { horizon_secs } => write!(
                f,
                "the window starts more than {} days ahead",
                horizon_secs / 86_400
            ),
        }
    }
}

/// A named spot as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotSpec {
    /// Its id, unique in its lot.
    pub id: SpotId,
    /// What it offers beyond what its lot does (`ev`).
    pub features: Vec<Label>,
}

/// How a lot is booked, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotTerms {
    /// The lot.
    pub id: LotId,
    /// Where it is, for `findLots`.
    pub zone: Option<Label>,
    /// What every space of it offers (`covered`).
    pub features: Vec<Label>,
    /// How many spaces may be booked for any one instant (at most the capacity).
    pub bookable: u32,
    /// Its named spaces, bookable one by one.
    pub spots: Vec<SpotSpec>,
}

/// What to book: a space of `lot` (or its spot `spot`) for `plate` over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingRequest<'a> {
    /// The lot's id.
    pub lot: &'a str,
    /// A named spot of the lot, or `None` for any space.
    pub spot: Option<&'a str>,
    /// The vehicle's plate.
    pub plate: Plate,
    /// The window.
    pub window: Window,
}

/// Why a booking operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingError {
    /// No lot has that id.
    UnknownLot(UnknownLot),
    /// The lot has no spot with that id.
    UnknownSpot {
        /// The lot.
        lot: LotId,
        /// The spot asked for, as given.
        spot: String,
    },
    /// No booking has that id (or the caller may not see it).
    UnknownBooking(String),
    /// The window breaks the rules.
    BadWindow(WindowError),
    /// At some instant of the window the lot already has `bookable` active bookings.
    Full {
        /// The lot's `bookable`.
        bookable: u32,
    },
    /// The window includes now and the lot has no free space now.
    NoSpaceNow,
    /// An active booking of the spot overlaps the window.
    SpotTaken,
    /// Check-in opens later, at `opens` (Unix seconds).
    NotDue {
        /// When check-in opens.
        opens: u64,
    },
    /// The booking is not in a state that allows this.
    BadState(BookingStatus),
    /// The change could not be made durable, so it was not made.
    Unavailable(Unavailable),
}

impl fmt::Display for BookingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BookingError::UnknownLot(err) => err.fmt(f),
            BookingError::UnknownSpot { lot, spot } => {
                write!(f, "lot {lot} has no spot {}", shown(spot))
            }
            BookingError::UnknownBooking(id) => write!(f, "no booking with id {}", shown(id)),
            BookingError::BadWindow(err) => err.fmt(f),
            BookingError::Full { bookable } => write!(
                f,
                "the lot already has its {bookable} bookable space(s) booked at some time in the window"
            ),
            BookingError::NoSpaceNow => {
                write!(f, "the window includes now and the lot has no free space")
            }
            BookingError::SpotTaken => write!(f, "the spot is booked at some time in the window"),
            BookingError::NotDue { opens } => write!(f, "check-in opens at {opens}"),
            BookingError::BadState(status) => write!(f, "the booking is {status}"),
            BookingError::Unavailable(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for BookingError {}

impl From<UnknownLot> for BookingError {
    fn from(err: UnknownLot) -> Self {
        BookingError::UnknownLot(err)
    }
}

impl From<StateError> for BookingError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::UnknownLot(err) => BookingError::UnknownLot(err),
            StateError::Unavailable(err) => BookingError::Unavailable(err),
        }
    }
}

/// Bookings a page of a lot's bookings holds when the request gives no `limit`.
pub const PAGE_DEFAULT: u64 = 100;
/// Most bookings a page may hold: a page of them (a few hundred bytes each) stays far
/// inside one 4 MiB RPC frame or one HTTP response.
pub const PAGE_MAX: u64 = 1000;

/// Which page of a lot's bookings is asked for (`listBookings` on RPC,
/// `GET /v1/lots/{id}/bookings` on HTTP): the one after booking `after`, of `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The sequence number of the last booking of the previous page (0: the first page).
    pub after: u64,
    /// How many at most.
    pub limit: usize,
}

impl Page {
    /// The page of lot `lot`'s bookings after booking `after` (an id of that lot), of at most
    /// `limit` (1 to [`PAGE_MAX`], default [`PAGE_DEFAULT`]).
    pub fn new(lot: &str, limit: Option<u64>, after: Option<&str>) -> Result<Page, PageError> {
        let limit = match limit {
            None => PAGE_DEFAULT,
            Some(n @ 1..=PAGE_MAX) => n,
            Some(n) => return Err(PageError::Limit(n)),
        };
        let after = match after {
            None => 0,
            Some(text) => match BookingId::parse(text) {
                Ok(id) if id.lot().as_str() == lot => id.seq(),
                _ => {
                    return Err(PageError::After {
                        lot: lot.to_owned(),
                        after: text.to_owned(),
                    });
                }
            },
        };
        Ok(Page {
            after,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }
}

/// Why a page was refused (`BAD_ARGS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// `limit` out of range.
    Limit(u64),
    /// `after` is not an id of the lot.
    After {
        /// The lot listed.
        lot: String,
        /// The `after` given.
        after: String,
    },
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Limit(n) => write!(f, "limit must be from 1 to {PAGE_MAX}, got {n}"),
            PageError::After { lot, after } => write!(
                f,
                "after must be a booking id of lot {} (the last of the previous page), got {}",
                shown(lot),
                shown(after)
            ),
        }
    }
}

impl std::error::Error for PageError {}

/// A car through a lot's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage {
    /// `ENTER`: a car came in.
    Enter,
    /// `EXIT`: a car left.
    Exit,
}

/// What a car through the gate changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateOutcome {
    /// Free spaces afterwards.
    pub free: u32,
    /// The booking the car checked in to (`ENTER`) or completed (`EXIT`), if any.
    pub booking: Option<BookingId>,
    /// `ENTER` consumed the plate's live reservation (it no longer counts beside the car).
    pub consumed_reservation: bool,
}

/// A query for lots that can take a booking over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotQuery<'a> {
    /// Only lots in this zone.
    pub zone: Option<&'a str>,
    /// Only spaces with this feature (the lot's own, or a spot's).
    pub feature: Option<&'a str>,
    /// The window.
    pub window: Window,
}

/// A named spot free over a queried window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotOffer {
    /// The spot.
    pub id: SpotId,
    /// What it offers, its lot's features included.
    pub features: Vec<Label>,
}

/// A lot that can take a booking over a queried window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotOffer {
    /// The lot.
    pub id: LotId,
    /// Its zone.
    pub zone: Option<Label>,
    /// What every space of it offers.
    pub features: Vec<Label>,
    /// How many more bookings (with the feature asked for) it can take over the window.
    pub remaining: u32,
    /// Its named spots free over the window (with the feature asked for).
    pub spots: Vec<SpotOffer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: u64, end: u64) -> Window {
        Window { start, end }
    }

    #[test]
    fn windows_keep_the_rules() {
        let rules = BookingRules::default();
        let now = 1_000_000;
        assert_eq!(rules.check(window(now, now + 1), now), Ok(()));
        assert_eq!(rules.check(window(now, now), now), Err(WindowError::Empty));
        assert_eq!(rules.check(window(now - 60, now + 1), now), Ok(()));
        assert_eq!(
            rules.check(window(now - 61, now + 1), now),
            Err(WindowError::Past)
        );
        assert_eq!(rules.check(window(now, now + 24 * 3600), now), Ok(()));
        assert!(matches!(
            rules.check(window(now, now + 24 * 3600 + 1), now),
            Err(WindowError::TooLong { .. })
        ));
        let far = now + 30 * 86_400;
        assert_eq!(rules.check(window(far, far + 1), now), Ok(()));
        assert!(matches!(
            rules.check(window(far + 1, far + 2), now),
            Err(WindowError::TooFar { .. })
        ));
        assert_eq!(rules.no_show_at(window(100, 10_000)), 1000);
        assert_eq!(rules.no_show_at(window(100, 200)), 200);
        assert_eq!(rules.checkin_opens_at(window(1000, 2000)), 100);
        assert_eq!(rules.checkin_opens_at(window(10, 2000)), 0);
    }

    #[test]
    fn bookings_serialise_with_their_lot_and_flat_times() {
        let booking = Booking {
            id: BookingId::parse("A.7").unwrap(),
            spot: Some(SpotId::new("A-EV1").unwrap()),
            plate: Plate::parse("7abc").unwrap(),
            window: window(100, 200),
            status: BookingStatus::CheckedIn,
            owner: None,
            overstay: false,
            inside: true,
            offered_until: None,
        };
        let json = serde_json::to_string(&booking).unwrap();
        assert_eq!(
            json,
            r#"{"id":"A.7","lot":"A","spot":"A-EV1","plate":"7ABC","start":100,"end":200,"status":"CHECKED_IN","owner":null,"overstay":false,"inside":true}"#
        );
        assert_eq!(serde_json::from_str::<Booking>(&json).unwrap(), booking);
        for bad in [
            json.replace(r#""lot":"A""#, r#""lot":"B""#),
            json.replace(r#""start":100"#, r#""start":200"#),
            json.replace("CHECKED_IN", "LOST"),
        ] {
            assert!(serde_json::from_str::<Booking>(&bad).is_err(), "{bad}");
        }
    }
}
