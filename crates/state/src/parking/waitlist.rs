//! [`ParkingState`]'s waitlist operations and drivers' accounts. Joining, leaving and
//! accepting run under the lot's lock like a booking, and so does looking for room to offer
//! ([`ParkingState::offer_room`]), which every operation on a lot does when room may have
//! appeared: an offer and a booking, or an offer and its acceptance, can never cross.

use std::collections::HashSet;
use std::time::Instant;

use super::bookings::{batch, booking_change};
use super::{ParkingState, set_key, unix_ms};
use crate::account::{Account, AccountError};
use crate::booking::{Booking, BookingRequest, BookingStatus, Window};
use crate::change::{Change, Commit};
use crate::ids::{LotId, SpotId, Username, WaitId};
use crate::lot::{CancelOutcome, Lot};
use crate::parking::StateError;
use crate::waitlist::{Offer, WaitEntry, WaitlistError, entry_change};

impl ParkingState {
    /// Puts the plate on the lot's waitlist for the window (and spot, if named), on behalf
    /// of `owner`: only when booking it now would be refused as full (`FULL`, or
    /// `SPOT_TAKEN`), and once per plate, spot and overlapping window.
    pub fn join_waitlist(
        &self,
        request: BookingRequest<'_>,
        owner: Option<&str>,
    ) -> Result<WaitEntry, WaitlistError> {
        let rules = self.rules;
        self.change_lot(request.lot, |id, lot, _, (_, wall_ms)| {
            let now = wall_ms / 1000;
            let joined = (|| {
                let window = request.window;
                rules.check(window, now).map_err(WaitlistError::BadWindow)?;
                let line = lot.bookings.spot(id, request.spot)?;
                if lot.bookings.fits(line, window, now, lot.free()).is_ok() {
                    return Err(WaitlistError::NotFull);
                }
                // Found by `spot`, so it is a valid spot id.
                let spot = request.spot.and_then(|spot| SpotId::new(spot).ok());
                if let Some(entry) = lot
                    .waitlist
                    .waiting_for(request.plate, spot.as_ref(), window)
                {
                    return Err(WaitlistError::AlreadyWaiting(entry.id.clone()));
                }
                if !lot.waitlist.has_room() {
                    return Err(WaitlistError::WaitlistFull {
                        max: lot.waitlist.rules().max_entries,
                    });
                }
                let seq = lot.waitlist.next_number();
                let entry = WaitEntry {
                    id: WaitId::new(id.clone(), seq),
                    spot,
                    plate: request.plate,
                    window,
                    owner: owner.map(str::to_owned),
                    joined_at: now,
                    offer: None,
                };
                lot.waitlist.set(seq, Some(entry.clone()));
                Ok(entry)
            })();
            let change = joined
                .as_ref()
                .ok()
                .map(|entry| entry_change(&entry.id, None, Some(entry.clone())));
            (joined, change)
        })?
    }

    /// Takes entry `id` off its waitlist if `allowed` says so of its owner, letting its
    /// offer's space go; anything else (unknown, refused) is `NotFound`.
    pub fn leave_waitlist_if(
        &self,
        id: &WaitId,
        allowed: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<CancelOutcome, StateError> {
        let left = self.change_lot(id.lot().as_str(), |lot_id, lot, _, (_, wall_ms)| {
            let Some(entry) = lot
                .waitlist
                .get(id.seq())
                .filter(|entry| allowed(entry.owner.as_deref()))
                .cloned()
            else {
                return (CancelOutcome::NotFound, None);
            };
            lot.waitlist.set(id.seq(), None);
            let mut changes = vec![entry_change(id, Some(entry.clone()), None)];
            if let Some(offer) = &entry.offer
                && let Some(held) = lot.bookings.get(offer.booking.seq()).cloned()
                && held.status == BookingStatus::Offered
            {
                lot.bookings.set(offer.booking.seq(), None, wall_ms / 1000);
                changes.push(booking_change(&offer.booking, Some(held), None));
            }
            (CancelOutcome::Cancelled, batch(lot_id, changes))
        });
        match left {
            Err(StateError::UnknownLot(_)) => Ok(CancelOutcome::NotFound),
            other => other,
        }
    }

    /// Accepts the live offer of entry `id` if `allowed` says so of its owner: the offered
    /// booking becomes `CONFIRMED` and the entry leaves the list. One `allowed` refuses is
    /// reported unknown; an entry whose offer ran out is gone, and so unknown too.
    pub fn accept_offer_if(
        &self,
        id: &WaitId,
        allowed: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<Booking, WaitlistError> {
        let unknown = || WaitlistError::UnknownEntry(id.to_string());
        let accepted = self.change_lot(id.lot().as_str(), |lot_id, lot, _, (_, wall_ms)| {
            let Some(entry) = lot
                .waitlist
                .get(id.seq())
                .filter(|entry| allowed(entry.owner.as_deref()))
                .cloned()
            else {
                return (Err(unknown()), None);
            };
            let Some(offer) = &entry.offer else {
                return (Err(WaitlistError::NoOffer), None);
            };
            let Some((old, new)) = lot.bookings.accept(offer.booking.seq(), wall_ms / 1000) else {
                return (Err(WaitlistError::NoOffer), None);
            };
            lot.waitlist.set(id.seq(), None);
            let changes = vec![
                booking_change(&new.id, Some(old), Some(new.clone())),
                entry_change(id, Some(entry), None),
            ];
            (Ok(new), batch(lot_id, changes))
        });
        match accepted {
            Err(StateError::UnknownLot(_)) => Err(unknown()),
            Err(err) => Err(err.into()),
            Ok(accepted) => accepted,
        }
    }

    /// Waitlist entry `id`, if it is still on its list.
    pub fn waitlist_entry(&self, id: &WaitId) -> Option<WaitEntry> {
        self.with_lot(id.lot().as_str(), |lot, _| {
            lot.waitlist.get(id.seq()).cloned()
        })
        .ok()
        .flatten()
    }

    /// The waitlist entries `wanted` picks, in every lot, oldest first.
    pub fn waitlist_where(&self, wanted: impl Fn(&WaitEntry) -> bool) -> Vec<WaitEntry> {
        let mut found = Vec::new();
        for entry in &self.entries {
            self.with_entry(entry, |lot, _| {
                found.extend(lot.waitlist.all().filter(|e| wanted(e)).cloned());
            });
        }
        found.sort_by_key(|entry| (entry.joined_at, entry.id.seq()));
        found
    }

    /// The bookings `wanted` picks (of any status, finished ones within their retention),
    /// in every lot, newest first: latest start first.
    pub fn bookings_where(&self, wanted: impl Fn(&Booking) -> bool) -> Vec<Booking> {
        let mut found = Vec::new();
        for entry in &self.entries {
            self.with_entry(entry, |lot, _| {
                found.extend(lot.bookings.all().filter(|b| wanted(b)).cloned());
            });
        }
        found.sort_by(|a, b| {
            (b.window.start, b.lot(), b.id.seq()).cmp(&(a.window.start, a.lot(), a.id.seq()))
        });
        found
    }

    /// Makes the account, unless one has its name (or the server keeps its most).
    pub fn create_account(&self, account: Account) -> Result<(), AccountError> {
        let name = account.username.clone();
        let mut accounts = self.accounts.lock();
        if accounts.by_name.contains_key(&name) {
            return Err(AccountError::Exists(name));
        }
        if accounts.by_name.len() >= accounts.max {
            return Err(AccountError::TooMany { max: accounts.max });
        }
        let undo = Change::Account {
            username: name.clone(),
            account: None,
        };
        let redo = Change::Account {
            username: name.clone(),
            account: Some(account.clone()),
        };
        accounts.set(&name, Some(account));
        let commit = match self.recorder.get() {
            None => return Ok(()),
            Some(recorder) => recorder.record(&undo, &redo),
        };
        let commit = match commit {
            Ok(commit) => commit,
            Err(refused) => {
                accounts.set(&name, None);
                return Err(AccountError::Unavailable(refused));
            }
        };
        drop(accounts);
        match self.recorder.get() {
            Some(recorder) => recorder.wait(commit).map_err(AccountError::Unavailable),
            None => Ok(()),
        }
    }

    /// The account called `name`.
    pub fn account(&self, name: &Username) -> Option<Account> {
        self.accounts.lock().by_name.get(name).cloned()
    }

    /// How many drivers' accounts are kept at most (`max_accounts`).
    pub fn max_accounts(&self) -> usize {
        self.accounts.lock().max
    }

    /// Offers room that has appeared in the lot to its waitlist, oldest entry first: each
    /// waiting entry whose window now fits (cut to start no earlier than now) gets an
    /// `OFFERED` booking holding its space until `offer_minutes` from now (or its window's
    /// end). Records each offer and returns the commits to wait for once the lot's lock is
    /// released. Costs one comparison unless someone waits and room may have appeared.
    pub(super) fn offer_room(&self, id: &LotId, lot: &mut Lot, now: Instant) -> Vec<Commit> {
        if !lot
            .waitlist
            .should_look(lot.free(), lot.bookings.released())
        {
            return Vec::new();
        }
        let wall_ms = unix_ms(self.clock.wall());
        let wall_now = wall_ms / 1000;
        let offer_for = lot.waitlist.rules().offer_for.as_secs();
        let mut offers = Vec::new();
        let mut offered = HashSet::new();
        for (seq, driver) in lot.waitlist.candidates() {
            if offered.contains(&driver) {
                continue;
            }
            let Some(entry) = lot.waitlist.get(seq).cloned() else {
                continue;
            };
            if entry.window.end <= wall_now {
                continue;
            }
            let window = Window {
                start: entry.window.start.max(wall_now),
                end: entry.window.end,
            };
            let spot = entry.spot.as_ref().map(SpotId::as_str);
            let Ok(line) = lot.bookings.spot(id, spot) else {
                continue;
            };
            let until = wall_now.saturating_add(offer_for).min(window.end);
            let free = lot.free();
            let Some(booking) = lot.bookings.hold_offer(
                id,
                line,
                entry.plate,
                window,
                entry.owner.as_deref(),
                until,
                wall_now,
                free,
            ) else {
                continue;
            };
            let updated = WaitEntry {
                offer: Some(Offer {
                    booking: booking.id.clone(),
                    expires_at: until,
                }),
                ..entry.clone()
            };
            lot.waitlist.set(seq, Some(updated.clone()));
            if updated.owner.is_some() {
                lot.waitlist
                    .notices
                    .push(crate::Notice::WaitlistOffer(updated.clone()));
            }
            offered.insert(driver);
            offers.extend(batch(
                id,
                vec![
                    booking_change(&booking.id.clone(), None, Some(booking)),
                    entry_change(&entry.id.clone(), Some(entry), Some(updated)),
                ],
            ));
        }
        lot.waitlist.looked(lot.free(), lot.bookings.released());
        let Some(recorder) = self.recorder.get() else {
            return Vec::new();
        };
        let mut commits = Vec::new();
        let mut offers = offers.into_iter();
        for (undo, redo) in offers.by_ref() {
            match recorder.record(&undo, &redo) {
                Ok(commit) => commits.push(commit),
                Err(refused) => {
                    log::warn!("lot {id}: an offer was not made: {refused}");
                    // This offer and every later one are undone, newest first.
                    let rest: Vec<_> = std::iter::once(undo)
                        .chain(offers.by_ref().map(|(undo, _)| undo))
                        .collect();
                    for undo in rest.iter().rev() {
                        set_key(lot, undo, now, wall_ms);
                    }
                    break;
                }
            }
        }
        commits
    }
}
