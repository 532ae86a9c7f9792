//! Gate lines (the sensor port's `ENTER`/`EXIT`) in the database (migration 0006): one
//! call of `parking_gate`, which under the lot's row lock moves the count by one, consumes
//! the plate's live reservation and checks its booking in (`ENTER`), or completes the
//! booking the car was in (`EXIT`), as one version and one announcement. The node replies
//! once it has committed, with the free count the database computed.

use postgres::types::Type;
use state::{BookingId, Change, GateOutcome, Passage, Plate, StateError};

use crate::Shared;
use crate::bookings::Times;
use crate::link;
use crate::waitlists::OfferTerms;

/// Passes a car through `lot`'s gate as [`store::Store::pass_gate`] says.
pub(crate) fn pass(
    shared: &Shared,
    lot: &str,
    plate: Plate,
    passage: Passage,
) -> Result<GateOutcome, StateError> {
    let state = shared.copy.state();
    let lot = state.lot_id(lot)?.clone();
    let times = Times::of(state.booking_rules());
    let enter = passage == Passage::Enter;
    // A car out makes room, which is offered to the waitlist in the same transaction.
    let terms = OfferTerms::of(state, lot.as_str());
    let row = shared.write(
        "SELECT counted, free, version, booking, consumed, changes::text, \
         parking_offer_room($1, $7, $8), parking_unsent() \
         FROM parking_gate($1, $2, $3, $4, $5, $6)",
        &[
            (&lot.as_str(), Type::TEXT),
            (&plate.as_str(), Type::TEXT),
            (&enter, Type::BOOL),
            (&times.early, Type::INT8),
            (&times.grace, Type::INT8),
            (&times.retention, Type::INT8),
            (&terms.bookable, Type::INT4),
            (&terms.offer_for, Type::INT8),
        ],
    )?;
    let counted: Option<i64> = link::column(&row, 0)?;
    if counted.is_none() {
        return Err(crate::schema::missing_lot(&lot));
    }
    let free: i32 = link::column(&row, 1)?;
    let booking: Option<&str> = link::column(&row, 3)?;
    let booking = booking
        .map(|id| {
            BookingId::parse(id)
                .map_err(|_| link::unexpected(format!("parking_gate's booking id {id:?}")))
        })
        .transpose()?;
    let consumed_reservation: bool = link::column(&row, 4)?;
    if let Some(version) = link::optional_version(&row, 2)? {
        let changes: &str = link::column(&row, 5)?;
        let changes: Vec<Change> = serde_json::from_str(changes)
            .map_err(|err| link::unexpected(format!("parking_gate's changes: {err}")))?;
        // Read-your-writes on this node, as every write here does.
        shared.copy.apply(&lot, version, changes);
    }
    Ok(GateOutcome {
        free: u32::try_from(free).unwrap_or(0),
        booking,
        consumed_reservation,
    })
}
