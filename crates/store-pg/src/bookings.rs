//! Bookings in the database (migration 0003): each write is one SQL function call that
//! takes the lot's row lock, brings the lot's bookings up to date with the time
//! (`parking_settle`), decides, and announces the whole booking record as a
//! [`Change::Booking`], which every node's copy applies (reads are served from it).
//!
//! The node checks what needs no shared state first: the window's rules (on its clock, as
//! the embedded store does) and the named spot (from its configuration, which every node
//! shares). The database decides the rest: the spot rule is its exclusion constraint, the
//! lot-wide rule its peak computation under the row lock, the free space now its counts.

use std::time::Duration;

use postgres::types::Type;
use state::{
    Booking, BookingError, BookingId, BookingRequest, BookingRules, BookingStatus, CancelOutcome,
    Change, LotId, ParkingState, SpotId, StateError, Unavailable,
};

use crate::Shared;
use crate::announce::Outbox;
use crate::link;
use crate::waitlists::OfferTerms;

/// Bookings `parking_settle` moves per transaction when the time-driven work runs it: few
/// enough that the announcement (a few hundred bytes each) fits in one notification.
pub(crate) const SETTLE_BATCH: i32 = 20;

/// The rules' durations as the SQL functions take them, in whole seconds.
pub(crate) struct Times {
    pub(crate) early: i64,
    pub(crate) grace: i64,
    pub(crate) retention: i64,
}

impl Times {
    pub(crate) fn of(rules: &BookingRules) -> Times {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Times {
            early: secs(rules.early_checkin),
            grace: secs(rules.checkin_grace),
            retention: secs(rules.retention),
        }
    }
}

/// Unix seconds as the SQL functions take them.
pub(crate) fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What a write for a window (a booking, a waitlist entry) is sent to the database with. The
/// node checks what needs no shared state first, on its own clock as the embedded store does:
/// the window's rules, the lot, and the named spot (from its configuration, which every node
/// shares).
pub(crate) struct WindowTerms {
    pub(crate) lot: LotId,
    pub(crate) spot: Option<SpotId>,
    pub(crate) bookable: i32,
    pub(crate) times: Times,
}

impl WindowTerms {
    pub(crate) fn check(
        state: &ParkingState,
        request: &BookingRequest<'_>,
    ) -> Result<WindowTerms, BookingError> {
        let lot = state.lot_id(request.lot)?.clone();
        let rules = *state.booking_rules();
        let now = crate::unix_seconds(state.clock().wall());
        rules
            .check(request.window, now)
            .map_err(BookingError::BadWindow)?;
        let (bookable, spot) = state.booking_terms(request.lot, request.spot)?;
        Ok(WindowTerms {
            lot,
            spot,
            bookable: i32::try_from(bookable).unwrap_or(i32::MAX),
            times: Times::of(&rules),
        })
    }
}

/// A booking record as the database's `parking_booking_json` writes it.
pub(crate) fn parse(text: &str) -> Result<Booking, Unavailable> {
    serde_json::from_str(text).map_err(|err| link::unexpected(format!("a booking record: {err}")))
}

/// Applies a committed booking change to this node's copy at once (read-your-writes).
fn applied(shared: &Shared, version: u64, booking: &Booking) {
    shared.copy.apply(
        booking.lot(),
        version,
        vec![Change::Booking {
            id: booking.id.clone(),
            booking: Some(booking.clone()),
        }],
    );
}

/// Books as [`store::Store::book`] says.
pub(crate) fn book(
    shared: &Shared,
    request: BookingRequest<'_>,
    owner: Option<&str>,
) -> Result<Booking, BookingError> {
    let WindowTerms {
        lot,
        spot,
        bookable,
        times,
    } = WindowTerms::check(shared.copy.state(), &request)?;
    let row = shared.write(
        "SELECT outcome, version, booking::text, parking_unsent() \
         FROM parking_book($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            (&lot.as_str(), Type::TEXT),
            (&spot.as_ref().map(|spot| spot.as_str()), Type::TEXT),
            (&request.plate.as_str(), Type::TEXT),
            (&seconds(request.window.start), Type::INT8),
            (&seconds(request.window.end), Type::INT8),
            (&owner, Type::TEXT),
            (&bookable, Type::INT4),
            (&times.grace, Type::INT8),
            (&times.retention, Type::INT8),
        ],
    )?;
    let outcome: &str = link::column(&row, 0)?;
    match outcome {
        "booked" => {
            let version = link::version(&row, 1)?;
            let booking = parse(link::column(&row, 2)?)?;
            applied(shared, version, &booking);
            Ok(booking)
        }
        "full" => Err(BookingError::Full {
            bookable: u32::try_from(bookable).unwrap_or(0),
        }),
        "no_space_now" => Err(BookingError::NoSpaceNow),
        "spot_taken" => Err(BookingError::SpotTaken),
        "unknown_lot" => Err(crate::schema::missing_lot(&lot).into()),
        other => Err(link::unexpected(format!("parking_book answered {other:?}")).into()),
    }
}

/// The booking `id` as the database holds it now (brought up to date with the time), if
/// there is one.
fn current(shared: &Shared, id: &BookingId, times: &Times) -> Result<Option<Booking>, Unavailable> {
    // A write when something was due: bringing it up to date moves it on, and announces so.
    let row = shared.write(
        "SELECT parking_booking($1, $2, $3, $4)::text, parking_unsent()",
        &[
            (&id.lot().as_str(), Type::TEXT),
            (&seconds(id.seq()), Type::INT8),
            (&times.grace, Type::INT8),
            (&times.retention, Type::INT8),
        ],
    )?;
    let text: Option<&str> = link::column(&row, 0)?;
    text.map(parse).transpose()
}

/// Cancels as [`store::Store::cancel_booking`] says.
pub(crate) fn cancel(
    shared: &Shared,
    id: &BookingId,
    allowed: &dyn Fn(Option<&str>) -> bool,
) -> Result<CancelOutcome, StateError> {
    let state = shared.copy.state();
    if state.lot_id(id.lot().as_str()).is_err() {
        return Ok(CancelOutcome::NotFound);
    }
    let times = Times::of(state.booking_rules());
    // Whose it is is asked of the database: the copy may not have heard of it yet.
    let Some(booking) = current(shared, id, &times)? else {
        return Ok(CancelOutcome::NotFound);
    };
    if booking.status != BookingStatus::Confirmed || !allowed(booking.owner.as_deref()) {
        return Ok(CancelOutcome::NotFound);
    }
    // Cancelled only if it is still confirmed and still the owner's judged allowed; the
    // room it leaves is offered to the waitlist in the same transaction.
    let terms = OfferTerms::of(state, id.lot().as_str());
    let row = shared.write(
        "SELECT version, booking::text, parking_offer_room($1, $6, $7), parking_unsent() \
         FROM parking_cancel_booking($1, $2, $3, $4, $5)",
        &[
            (&id.lot().as_str(), Type::TEXT),
            (&seconds(id.seq()), Type::INT8),
            (&booking.owner, Type::TEXT),
            (&times.grace, Type::INT8),
            (&times.retention, Type::INT8),
            (&terms.bookable, Type::INT4),
            (&terms.offer_for, Type::INT8),
        ],
    )?;
    let Some(version) = link::optional_version(&row, 0)? else {
        return Ok(CancelOutcome::NotFound);
    };
    let cancelled = parse(link::column(&row, 1)?)?;
    applied(shared, version, &cancelled);
    Ok(CancelOutcome::Cancelled)
}

/// Checks in as [`store::Store::check_in`] says.
pub(crate) fn check_in(
    shared: &Shared,
    id: &BookingId,
    allowed: &dyn Fn(Option<&str>) -> bool,
) -> Result<Booking, BookingError> {
    let unknown = || BookingError::UnknownBooking(id.to_string());
    let state = shared.copy.state();
    if state.lot_id(id.lot().as_str()).is_err() {
        return Err(unknown());
    }
    let rules = *state.booking_rules();
    let times = Times::of(&rules);
    let Some(booking) = current(shared, id, &times)? else {
        return Err(unknown());
    };
    if !allowed(booking.owner.as_deref()) {
        return Err(unknown());
    }
    let row = shared.write(
        "SELECT outcome, version, booking::text, parking_unsent() \
         FROM parking_check_in($1, $2, $3, $4, $5, $6)",
        &[
            (&id.lot().as_str(), Type::TEXT),
            (&seconds(id.seq()), Type::INT8),
            (&booking.owner, Type::TEXT),
            (&times.early, Type::INT8),
            (&times.grace, Type::INT8),
            (&times.retention, Type::INT8),
        ],
    )?;
    let outcome: &str = link::column(&row, 0)?;
    let record: Option<&str> = link::column(&row, 2)?;
    let record = record.map(parse).transpose()?;
    match (outcome, record) {
        ("checked_in", Some(checked)) => {
            applied(shared, link::version(&row, 1)?, &checked);
            Ok(checked)
        }
        ("bad_state", Some(now)) => Err(BookingError::BadState(now.status)),
        ("not_due", Some(now)) => Err(BookingError::NotDue {
            opens: rules.checkin_opens_at(now.window),
        }),
        ("unknown", _) => Err(unknown()),
        (other, _) => Err(link::unexpected(format!("parking_check_in answered {other:?}")).into()),
    }
}

/// Moves on every booking and waitlist entry whose time has come, lot by lot
/// (`parking_settle`), and offers the room there is to each lot's waitlist in the same
/// statement (`parking_offer_room`; also where nothing moved, so room a node made and died
/// before offering is offered now): returns how many moved. Idempotent, like the expiry of
/// reservations.
pub(crate) fn settle(
    client: &mut postgres::Client,
    state: &ParkingState,
    outbox: &Outbox,
) -> Result<usize, postgres::Error> {
    let times = Times::of(state.booking_rules());
    let due = client.query_typed(
        "SELECT lot FROM parking_bookings WHERE due <= parking_unix_now() \
         UNION SELECT lot FROM parking_waitlist",
        &[],
    )?;
    let mut moved = 0;
    for row in &due {
        let lot: &str = row.try_get(0)?;
        let terms = OfferTerms::of(state, lot);
        loop {
            let row = client.query_typed_one(
                "SELECT parking_settle($1, $2, $3, $4), parking_offer_room($1, $5, $6), \
                 parking_unsent()",
                &[
                    (&lot, Type::TEXT),
                    (&times.grace, Type::INT8),
                    (&times.retention, Type::INT8),
                    (&SETTLE_BATCH, Type::INT4),
                    (&terms.bookable, Type::INT4),
                    (&terms.offer_for, Type::INT8),
                ],
            )?;
            let count: i32 = row.try_get(0)?;
            outbox.send(row.try_get(2)?);
            moved += usize::try_from(count).unwrap_or(0);
            if count < SETTLE_BATCH {
                break;
            }
        }
    }
    Ok(moved)
}

/// How long until the next booking or waitlist entry has something due (`None` when none
/// has).
pub(crate) fn next_due(client: &mut postgres::Client) -> Result<Option<Duration>, postgres::Error> {
    let next: Option<i64> = client
        .query_typed_one(
            "SELECT least((SELECT min(due) FROM parking_bookings), \
                          (SELECT min(upper(during)) FROM parking_waitlist \
                               WHERE offer_booking IS NULL)) * 1000 - parking_ms(now())",
            &[],
        )?
        .try_get(0)?;
    // Rounded up, so that the thread does not wake just before the time and spin.
    Ok(next.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 1)))
}
