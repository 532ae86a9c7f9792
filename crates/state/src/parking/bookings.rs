//! [`ParkingState`]'s booking operations. Each runs under its lot's lock, like a reservation,
//! so the checks (the lot-wide limit, the spot, the free space now) and the change they
//! allow are one step whatever the concurrency; each change is recorded as a
//! [`Change::Booking`] (the gate's several changes as one [`Change::Batch`]).

use crate::booking::{
    Booking, BookingError, BookingRequest, GateOutcome, LotOffer, LotQuery, Page, Passage, Window,
    WindowError,
};
use crate::change::Change;
use crate::ids::{BookingId, LotId, Plate};
use crate::lot::{CancelOutcome, CountChange};
use crate::parking::{ParkingState, StateError, UnknownLot, reservation, unix_ms};

/// A booking's change from `old` to `new` (either absent), as a recorded change.
pub(super) fn booking_change(
    id: &BookingId,
    old: Option<Booking>,
    new: Option<Booking>,
) -> (Change, Change) {
    (
        Change::Booking {
            id: id.clone(),
            booking: old,
        },
        Change::Booking {
            id: id.clone(),
            booking: new,
        },
    )
}

/// Several changes of `lot` as one: the undo undoes them in reverse order.
pub(super) fn batch(lot: &LotId, mut changes: Vec<(Change, Change)>) -> Option<(Change, Change)> {
    if changes.len() <= 1 {
        return changes.pop();
    }
    let (mut undos, redos): (Vec<Change>, Vec<Change>) = changes.into_iter().unzip();
    undos.reverse();
    Some((
        Change::Batch {
            lot: lot.clone(),
            changes: undos,
        },
        Change::Batch {
            lot: lot.clone(),
            changes: redos,
        },
    ))
}

impl ParkingState {
    /// Books a space of the lot (or the named spot) for the plate over the window, if the
    /// rules, the lot's `bookable` limit at every instant of it and the spot allow.
    pub fn book(&self, request: BookingRequest<'_>) -> Result<Booking, BookingError> {
        self.book_for(request, None)
    }

    /// [`ParkingState::book`] on behalf of `owner` (a key id), who alone may cancel it.
    pub fn book_for(
        &self,
        request: BookingRequest<'_>,
        owner: Option<&str>,
    ) -> Result<Booking, BookingError> {
        let (booked, due) = self.change_lot(request.lot, |id, lot, _, (_, wall_ms)| {
            let free = lot.free();
            let booked = lot.bookings.book(
                id,
                request.spot,
                request.plate,
                request.window,
                owner,
                wall_ms / 1000,
                free,
            );
            let change = booked
                .as_ref()
                .ok()
                .map(|booking| booking_change(&booking.id, None, Some(booking.clone())));
            ((booked, lot.bookings.next_due()), change)
        })?;
        self.nudge(due);
        booked
    }

    /// The booking with id `id`.
    pub fn booking(&self, id: &BookingId) -> Result<Booking, BookingError> {
        let unknown = || BookingError::UnknownBooking(id.to_string());
        self.with_lot(id.lot().as_str(), |lot, _| {
            lot.bookings.get(id.seq()).cloned()
        })
        .map_err(|_| unknown())?
        .ok_or_else(unknown)
    }

    /// The booking with id `id`, if `allowed` says so of its owner: another's booking is
    /// [`BookingError::UnknownBooking`], as a missing one is, so that nobody learns who
    /// booked what. Every port reads a booking through this.
    pub fn booking_if(
        &self,
        id: &BookingId,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Booking, BookingError> {
        let found = self.booking(id)?;
        if !allowed(found.owner.as_deref()) {
            return Err(BookingError::UnknownBooking(id.to_string()));
        }
        Ok(found)
    }

    /// Cancels a confirmed booking if `allowed` says so of its owner; anything else
    /// (unknown, not confirmed, refused) is `NotFound`, so that nobody learns whose it is.
    pub fn cancel_booking_if(
        &self,
        id: &BookingId,
        allowed: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        let cancelled = self.change_lot(id.lot().as_str(), |_, lot, _, (_, wall_ms)| {
            match lot.bookings.cancel(id.seq(), allowed, wall_ms / 1000) {
                Some((old, new)) => (
                    CancelOutcome::Cancelled,
                    Some(booking_change(id, Some(old), Some(new))),
                ),
                None => (CancelOutcome::NotFound, None),
            }
        });
        match cancelled {
            Err(StateError::UnknownLot(_)) => Ok(CancelOutcome::NotFound),
            other => other,
        }
    }

    /// Checks a confirmed booking in once its check-in is open (`early_checkin` before its
    /// start); one `allowed` refuses is reported unknown.
    pub fn check_in_if(
        &self,
        id: &BookingId,
        allowed: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<Booking, BookingError> {
        let checked = self.change_lot(id.lot().as_str(), |_, lot, _, (_, wall_ms)| {
            match lot.bookings.check_in(id, allowed, wall_ms / 1000) {
                Ok((old, new)) => {
                    let change = booking_change(id, Some(old), Some(new.clone()));
                    (Ok(new), Some(change))
                }
                Err(err) => (Err(err), None),
            }
        });
        match checked {
            Err(StateError::UnknownLot(_)) => Err(BookingError::UnknownBooking(id.to_string())),
            Err(err) => Err(err.into()),
            Ok(checked) => checked,
        }
    }

    /// A car through the lot's gate: the count moves by one, and on `ENTER` the plate's
    /// confirmed booking whose check-in is open is checked in and its live reservation
    /// consumed (the car is counted by the sensors now, not held for); on `EXIT` the booking
    /// the car was in is completed. All of it is one change.
    pub fn pass_gate(
        &self,
        lot: &str,
        plate: Plate,
        passage: Passage,
    ) -> Result<GateOutcome, StateError> {
        self.change_lot(lot, |id, lot, _, wall| {
            let mut changes = Vec::new();
            let before = lot.counted;
            lot.count(match passage {
                Passage::Enter => CountChange::Add(1),
                Passage::Exit => CountChange::Remove(1),
            });
            if lot.counted != before {
                changes.push((
                    Change::Count {
                        lot: id.clone(),
                        counted: before,
                    },
                    Change::Count {
                        lot: id.clone(),
                        counted: lot.counted,
                    },
                ));
            }
            let mut consumed_reservation = false;
            if passage == Passage::Enter
                && let Some(held) = lot.cancel(plate)
            {
                consumed_reservation = true;
                changes.push((
                    reservation(id, plate, Some(&held), wall),
                    reservation(id, plate, None, wall),
                ));
            }
            let booking = lot
                .bookings
                .pass(plate, passage, wall.1 / 1000)
                .map(|(old, new)| {
                    let booking = new.id.clone();
                    changes.push(booking_change(&booking, Some(old), Some(new)));
                    booking
                });
            let outcome = GateOutcome {
                free: lot.free(),
                booking,
                consumed_reservation,
            };
            (outcome, batch(id, changes))
        })
    }

    /// Up to `limit` of the lot's bookings (any status; finished ones while they are kept)
    /// overlapping `window`, by id, after booking number `after` (0: from the first). The
    /// next page starts after the last one's number.
    pub fn list_bookings(
        &self,
        lot: &str,
        window: Window,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Booking>, UnknownLot> {
        self.with_lot(lot, |lot, _| lot.bookings.list(window, after, limit))
    }

    /// [`ParkingState::list_bookings`] as the ports ask for it: `page` of the lot's
    /// bookings overlapping `window`, which must not be empty.
    pub fn bookings_page(
        &self,
        lot: &str,
        window: Window,
        page: Page,
    ) -> Result<Vec<Booking>, BookingError> {
        if window.end <= window.start {
            return Err(BookingError::BadWindow(WindowError::Empty));
        }
        Ok(self.list_bookings(lot, window, page.after, page.limit)?)
    }

    /// The lots (in configuration order) that can take a booking matching `query`, with how
    /// many they can take and their free named spots. The window must keep the rules.
    pub fn find_lots(&self, query: &LotQuery<'_>) -> Result<Vec<LotOffer>, WindowError> {
        let now = unix_ms(self.clock.wall()) / 1000;
        self.rules.check(query.window, now)?;
        Ok(self
            .entries
            .iter()
            .filter_map(|entry| {
                self.with_entry(entry, |lot, _| {
                    lot.bookings.offer(&entry.id, query, now, lot.free())
                })
                .0
            })
            .collect())
    }
}
