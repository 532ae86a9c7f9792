//! Waitlists in the database (migration 0007): entries are rows of `parking_waitlist`
//! (one per plate, spot and overlapping window, an exclusion constraint; one offer per
//! driver and lot, a unique index), offers are `OFFERED` rows of `parking_bookings`. Each
//! operation is one SQL function call under the lot's row lock that announces what it
//! changed ([`Change::Waiting`], [`Change::Booking`]), which every node's copy applies:
//! `/v1/me/waitlist` and `myWaitlist` read the copy.
//!
//! Offers are made by `parking_offer_room`, idempotent, in the same statement (so the same
//! transaction) as each write that may make room (a cancel, a count or a car going down, an
//! entry leaving) and as the time-driven work (no-shows, offers running out, reservations
//! expiring), which every node runs: room is offered once, by whichever commits first, and
//! a node dying mid-way leaves nothing half offered. [`OfferTerms`] are what that call
//! needs from the node's configuration.

use postgres::types::Type;
use state::{
    Booking, BookingRequest, CancelOutcome, Change, ParkingState, StateError, Unavailable,
    WaitEntry, WaitId, WaitlistError,
};

use crate::Shared;
use crate::bookings::{Times, WindowTerms, seconds};
use crate::link;

/// What `parking_offer_room(lot, bookable, offer_for)` is called with for a lot, from the
/// node's configuration (every node shares it).
pub(crate) struct OfferTerms {
    /// The lot's `bookable`; `None` for a lot this node does not serve (nothing is offered).
    pub(crate) bookable: Option<i32>,
    /// `offer_minutes`, in seconds.
    pub(crate) offer_for: i64,
}

impl OfferTerms {
    pub(crate) fn of(state: &ParkingState, lot: &str) -> OfferTerms {
        OfferTerms {
            bookable: state
                .booking_terms(lot, None)
                .ok()
                .map(|(bookable, _)| i32::try_from(bookable).unwrap_or(i32::MAX)),
            offer_for: i64::try_from(state.waitlist_rules().offer_for.as_secs())
                .unwrap_or(i64::MAX),
        }
    }
}

/// An entry record as the database's `parking_entry_json` writes it.
fn parse_entry(text: &str) -> Result<WaitEntry, Unavailable> {
    serde_json::from_str(text).map_err(|err| link::unexpected(format!("an entry record: {err}")))
}

/// Joins as [`store::Store::join_waitlist`] says.
pub(crate) fn join(
    shared: &Shared,
    request: BookingRequest<'_>,
    owner: Option<&str>,
) -> Result<WaitEntry, WaitlistError> {
    let state = shared.copy.state();
    let WindowTerms {
        lot,
        spot,
        bookable,
        times,
    } = WindowTerms::check(state, &request)?;
    let max = state.waitlist_rules().max_entries;
    let row = shared.write(
        "SELECT outcome, version, entry::text, parking_unsent() \
         FROM parking_join($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            (&lot.as_str(), Type::TEXT),
            (&spot.as_ref().map(|spot| spot.as_str()), Type::TEXT),
            (&request.plate.as_str(), Type::TEXT),
            (&seconds(request.window.start), Type::INT8),
            (&seconds(request.window.end), Type::INT8),
            (&owner, Type::TEXT),
            (&bookable, Type::INT4),
            (&i32::try_from(max).unwrap_or(i32::MAX), Type::INT4),
            (&times.grace, Type::INT8),
            (&times.retention, Type::INT8),
        ],
    )?;
    let outcome: &str = link::column(&row, 0)?;
    let entry: Option<&str> = link::column(&row, 2)?;
    let entry = entry.map(parse_entry).transpose()?;
    match (outcome, entry) {
        ("joined", Some(entry)) => {
            let version = link::version(&row, 1)?;
            shared.copy.apply(
                &lot,
                version,
                vec![Change::Waiting {
                    id: entry.id.clone(),
                    entry: Some(entry.clone()),
                }],
            );
            // Its window's end is due: the time-driven work takes it off the list then.
            let _ = shared.nudge.try_send(());
            Ok(entry)
        }
        ("not_full", _) => Err(WaitlistError::NotFull),
        ("already", Some(entry)) => Err(WaitlistError::AlreadyWaiting(entry.id)),
        ("waitlist_full", _) => Err(WaitlistError::WaitlistFull { max }),
        ("unknown_lot", _) => Err(crate::schema::missing_lot(&lot).into()),
        (other, _) => Err(link::unexpected(format!("parking_join answered {other:?}")).into()),
    }
}

/// Who owns entry `id` in the database (`None`: there is none). Asked of the database, not
/// the copy, which may not have heard yet of an entry made through another node.
fn holder(shared: &Shared, id: &WaitId) -> Result<Option<Option<String>>, Unavailable> {
    let row = shared.link.query_one(
        "SELECT found, owner FROM parking_entry_holder($1, $2)",
        &[
            (&id.lot().as_str(), Type::TEXT),
            (&seconds(id.seq()), Type::INT8),
        ],
    )?;
    let found: bool = link::column(&row, 0)?;
    let owner: Option<String> = link::column(&row, 1)?;
    Ok(found.then_some(owner))
}

/// Leaves as [`store::Store::leave_waitlist`] says; the room its offer held is offered on
/// in the same transaction.
pub(crate) fn leave(
    shared: &Shared,
    id: &WaitId,
    allowed: &dyn Fn(Option<&str>) -> bool,
) -> Result<CancelOutcome, StateError> {
    let state = shared.copy.state();
    if state.lot_id(id.lot().as_str()).is_err() {
        return Ok(CancelOutcome::NotFound);
    }
    let Some(owner) = holder(shared, id)? else {
        return Ok(CancelOutcome::NotFound);
    };
    if !allowed(owner.as_deref()) {
        return Ok(CancelOutcome::NotFound);
    }
    let terms = OfferTerms::of(state, id.lot().as_str());
    // Removed only if the owner is still the one judged allowed.
    let row = shared.write(
        "SELECT version, parking_offer_room($1, $4, $5), parking_unsent() \
         FROM parking_leave($1, $2, $3)",
        &[
            (&id.lot().as_str(), Type::TEXT),
            (&seconds(id.seq()), Type::INT8),
            (&owner, Type::TEXT),
            (&terms.bookable, Type::INT4),
            (&terms.offer_for, Type::INT8),
        ],
    )?;
    if link::optional_version(&row, 0)?.is_none() {
        return Ok(CancelOutcome::NotFound);
    }
    // The copy hears of it (and of any offer made) from the announcements: a booking the
    // offer held may have been let go in the same change.
    let _ = shared.nudge.try_send(());
    Ok(CancelOutcome::Cancelled)
}

/// Accepts as [`store::Store::accept_offer`] says.
pub(crate) fn accept(
    shared: &Shared,
    id: &WaitId,
    allowed: &dyn Fn(Option<&str>) -> bool,
) -> Result<Booking, WaitlistError> {
    let unknown = || WaitlistError::UnknownEntry(id.to_string());
    let state = shared.copy.state();
    if state.lot_id(id.lot().as_str()).is_err() {
        return Err(unknown());
    }
    let Some(owner) = holder(shared, id)? else {
        return Err(unknown());
    };
    if !allowed(owner.as_deref()) {
        return Err(unknown());
    }
    let times = Times::of(state.booking_rules());
    let row = shared.write(
        "SELECT outcome, version, booking::text, parking_unsent() \
         FROM parking_accept($1, $2, $3, $4, $5)",
        &[
            (&id.lot().as_str(), Type::TEXT),
            (&seconds(id.seq()), Type::INT8),
            (&owner, Type::TEXT),
            (&times.grace, Type::INT8),
            (&times.retention, Type::INT8),
        ],
    )?;
    let outcome: &str = link::column(&row, 0)?;
    match outcome {
        "accepted" => {
            let version = link::version(&row, 1)?;
            let booking = crate::bookings::parse(link::column(&row, 2)?)?;
            shared.copy.apply(
                booking.lot(),
                version,
                vec![
                    Change::Booking {
                        id: booking.id.clone(),
                        booking: Some(booking.clone()),
                    },
                    Change::Waiting {
                        id: id.clone(),
                        entry: None,
                    },
                ],
            );
            // Its start or no-show time may come before the expiry thread would look.
            let _ = shared.nudge.try_send(());
            Ok(booking)
        }
        "no_offer" => Err(WaitlistError::NoOffer),
        "unknown" => Err(unknown()),
        other => Err(link::unexpected(format!("parking_accept answered {other:?}")).into()),
    }
}
