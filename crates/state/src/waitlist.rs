//! Waitlists: drivers waiting for a space in a full lot, and the offers made to them.
//!
//! A driver whose booking would be refused as full (`FULL`, `SPOT_TAKEN`) may join the lot's
//! waitlist for that window instead: a [`WaitEntry`]. Whenever room may have appeared in the
//! lot (a booking cancelled, a no-show released, an offer gone, a reservation or a car gone),
//! the entries are looked at oldest first, and each whose window now fits gets an offer: an
//! `OFFERED` booking that holds the space for it for `offer_minutes`. Accepted in time, the
//! offer becomes a `CONFIRMED` booking and the entry is done; not accepted, the booking is
//! forgotten, the entry leaves the list, and the space passes to the next entry that fits.
//!
//! Because everything happens under the lot's lock, an offer is one step: a space is never
//! offered to two entries, and an offer is accepted or expired, never both. An entry holds at
//! most one offer, and one driver (its owner, or its plate when it has none) at most one
//! offer per lot at a time.
//!
//! What happens because time passes (an offer running out, a window ending) is derived from
//! the records and the clock, as for bookings, so a replay derives it again; what is decided
//! (joining, an offer made, an acceptance, leaving) is recorded as a [`crate::Change`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::booking::{BookingError, Window, WindowError};
use crate::change::{Change, Unavailable};
use crate::ids::{BookingId, LotId, Plate, SpotId, WaitId};
use crate::notice::Notice;
use crate::parking::{StateError, UnknownLot};
use crate::shown::shown;

/// An offer made to a waitlist entry: the booking that holds its space, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// The `OFFERED` booking holding the space.
    pub booking: BookingId,
    /// When the offer runs out (Unix seconds).
    pub expires_at: u64,
}

/// A driver waiting for a space: in a lot (or one named spot) for a plate over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "EntryFields", try_from = "EntryFields")]
pub struct WaitEntry {
    /// Its id, which names its lot.
    pub id: WaitId,
    /// The named spot waited for, or `None` for any space.
    pub spot: Option<SpotId>,
    /// The vehicle's plate.
    pub plate: Plate,
    /// The window wanted.
    pub window: Window,
    /// Who joined: a key id or a driver, when access control is on.
    pub owner: Option<String>,
    /// When it joined (Unix seconds).
    pub joined_at: u64,
    /// The live offer, if one has been made.
    pub offer: Option<Offer>,
}

impl WaitEntry {
    /// The lot it waits in.
    pub fn lot(&self) -> &LotId {
        self.id.lot()
    }

    /// Who may hold one offer at a time: the owner, or the plate when there is none.
    fn driver(&self) -> String {
        match &self.owner {
            Some(owner) => format!("owner:{owner}"),
            None => format!("plate:{}", self.plate),
        }
    }

    /// When the entry has something due: its offer running out, or its window ending.
    fn due(&self) -> u64 {
        self.offer
            .as_ref()
            .map_or(self.window.end, |offer| offer.expires_at)
    }
}

/// An entry as the wire and the journal write it: the lot beside the id, times flat, and
/// the status (`WAITING` or `OFFERED`) spelled out for readers.
#[derive(Serialize, Deserialize)]
struct EntryFields {
    id: WaitId,
    lot: LotId,
    spot: Option<SpotId>,
    plate: Plate,
    start: u64,
    end: u64,
    owner: Option<String>,
    joined_at: u64,
    #[serde(default)]
    status: String,
    offer: Option<Offer>,
}

impl From<WaitEntry> for EntryFields {
    fn from(entry: WaitEntry) -> Self {
        EntryFields {
            lot: entry.id.lot().clone(),
            id: entry.id,
            spot: entry.spot,
            plate: entry.plate,
            start: entry.window.start,
            end: entry.window.end,
            owner: entry.owner,
            joined_at: entry.joined_at,
            status: if entry.offer.is_some() {
                "OFFERED"
            } else {
                "WAITING"
            }
            .to_owned(),
            offer: entry.offer,
        }
    }
}

impl TryFrom<EntryFields> for WaitEntry {
    type Error = String;

    fn try_from(fields: EntryFields) -> Result<Self, Self::Error> {
        if fields.lot != *fields.id.lot() {
            return Err(format!(
                "waitlist entry {} says it is in lot {}",
                fields.id, fields.lot
            ));
        }
        if fields.start >= fields.end {
            return Err(format!(
                "waitlist entry {} ends before it starts",
                fields.id
            ));
        }
        if let Some(offer) = &fields.offer
            && offer.booking.lot() != fields.id.lot()
        {
            return Err(format!(
                "waitlist entry {} is offered a booking in another lot",
                fields.id
            ));
        }
        Ok(WaitEntry {
            id: fields.id,
            spot: fields.spot,
            plate: fields.plate,
            window: Window {
                start: fields.start,
                end: fields.end,
            },
            owner: fields.owner,
            joined_at: fields.joined_at,
            offer: fields.offer,
        })
    }
}

/// How waitlists work, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitlistRules {
    /// How long an offer holds its space (`offer_minutes`).
    pub offer_for: Duration,
    /// Most entries one lot's waitlist keeps (`max_waitlist_per_lot`): looking for a space
    /// to offer walks them, so the walk stays short.
    pub max_entries: usize,
}

impl Default for WaitlistRules {
    fn default() -> Self {
        WaitlistRules {
            offer_for: Duration::from_secs(10 * 60),
            max_entries: 1000,
        }
    }
}

/// Why a waitlist operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitlistError {
    /// No lot has that id.
    UnknownLot(UnknownLot),
    /// The lot has no spot with that id.
    UnknownSpot {
        /// The lot.
        lot: LotId,
        /// The spot asked for, as given.
        spot: String,
    },
    /// The window breaks the booking rules.
    BadWindow(WindowError),
    /// The window can be booked now: book it instead.
    NotFull,
    /// The plate already waits for an overlapping window there.
    AlreadyWaiting(WaitId),
    /// The lot's waitlist holds `max_waitlist_per_lot` entries already.
    WaitlistFull {
        /// The limit.
        max: usize,
    },
    /// No entry has that id (or the caller may not see it).
    UnknownEntry(String),
    /// The entry has no live offer to accept (none made yet, or it ran out).
    NoOffer,
    /// The change could not be made durable, so it was not made.
    Unavailable(Unavailable),
}

impl fmt::Display for WaitlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitlistError::UnknownLot(err) => err.fmt(f),
            WaitlistError::UnknownSpot { lot, spot } => {
                write!(f, "lot {lot} has no spot {}", shown(spot))
            }
            WaitlistError::BadWindow(err) => err.fmt(f),
            WaitlistError::NotFull => {
                write!(
                    f,
                    "the window can be booked now; book it instead of waiting"
                )
            }
            WaitlistError::AlreadyWaiting(id) => {
                write!(f, "the plate already waits for this window as {id}")
            }
            WaitlistError::WaitlistFull { max } => {
                write!(f, "the lot's waitlist already holds {max} entries")
            }
            WaitlistError::UnknownEntry(id) => {
                write!(f, "no waitlist entry with id {}", shown(id))
            }
            WaitlistError::NoOffer => write!(f, "the entry has no live offer to accept"),
            WaitlistError::Unavailable(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for WaitlistError {}

impl From<StateError> for WaitlistError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::UnknownLot(err) => WaitlistError::UnknownLot(err),
            StateError::Unavailable(err) => WaitlistError::Unavailable(err),
        }
    }
}

impl From<Unavailable> for WaitlistError {
    fn from(err: Unavailable) -> Self {
        WaitlistError::Unavailable(err)
    }
}

impl From<UnknownLot> for WaitlistError {
    fn from(err: UnknownLot) -> Self {
        WaitlistError::UnknownLot(err)
    }
}

impl From<BookingError> for WaitlistError {
    fn from(err: BookingError) -> Self {
        match err {
            BookingError::UnknownLot(err) => WaitlistError::UnknownLot(err),
            BookingError::UnknownSpot { lot, spot } => WaitlistError::UnknownSpot { lot, spot },
            BookingError::BadWindow(err) => WaitlistError::BadWindow(err),
            BookingError::Unavailable(err) => WaitlistError::Unavailable(err),
            // Nothing else is ever converted: the rest are answers about bookings.
            other => WaitlistError::Unavailable(Unavailable(other.to_string())),
        }
    }
}

/// One lot's waitlist. Not thread-safe by itself: it lives in a `Lot`, behind its lock.
#[derive(Debug, Default)]
pub(crate) struct LotWaitlist {
    rules: WaitlistRules,
    /// The number the next entry gets; numbers follow the order of joining.
    next_seq: u64,
    /// Every entry, by number: iterating gives the oldest first, which is the order offers
    /// are made in.
    entries: BTreeMap<u64, WaitEntry>,
    /// `(due, seq)` of every entry: its offer running out, or its window ending.
    due: BTreeSet<(u64, u64)>,
    /// Entries without an offer.
    waiting: usize,
    /// The free count and the bookings' release count when offers were last looked for;
    /// until one of them moves, nothing new can fit (see `LotBookings::released`).
    looked_at: Option<(u32, u64)>,
    /// Notices for owners (offers made, offers run out), waiting to be handed on.
    pub(crate) notices: Vec<Notice>,
}

impl LotWaitlist {
    /// Applies the configured rules (before any entry exists).
    pub(crate) fn configure(&mut self, rules: WaitlistRules) {
        self.rules = rules;
    }

    /// The rules in force.
    pub(crate) fn rules(&self) -> &WaitlistRules {
        &self.rules
    }

    /// The earliest time something is due; one comparison when the list is empty.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.due.first().map(|&(at, _)| at)
    }

    /// Whether offers are worth looking for with `free` spaces free and the bookings'
    /// release count at `released`: someone waits, and room may have appeared since the
    /// last look. Records the look.
    pub(crate) fn should_look(&mut self, free: u32, released: u64) -> bool {
        let look = self.would_look(free, released);
        if self.waiting > 0 {
            self.looked_at = Some((free, released));
        }
        look
    }

    /// What [`LotWaitlist::should_look`] would answer, without recording a look.
    pub(crate) fn would_look(&self, free: u32, released: u64) -> bool {
        if self.waiting == 0 {
            return false;
        }
        match self.looked_at {
            None => true,
            Some((last_free, last_released)) => free > last_free || released != last_released,
        }
    }

    /// Notes the state after a look that made offers, so that the next look compares with it.
    pub(crate) fn looked(&mut self, free: u32, released: u64) {
        self.looked_at = Some((free, released));
    }

    /// Sets entry `seq` to `entry`, or removes it, whatever it was.
    pub(crate) fn set(&mut self, seq: u64, entry: Option<WaitEntry>) {
        if let Some(old) = self.entries.remove(&seq) {
            self.due.remove(&(old.due(), seq));
            if old.offer.is_none() {
                self.waiting -= 1;
            }
        }
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        if let Some(entry) = entry {
            self.due.insert((entry.due(), seq));
            if entry.offer.is_none() {
                self.waiting += 1;
                // A new waiter has not been looked for yet.
                self.looked_at = None;
            }
            self.entries.insert(seq, entry);
        }
    }

    /// The entry numbered `seq`.
    pub(crate) fn get(&self, seq: u64) -> Option<&WaitEntry> {
        self.entries.get(&seq)
    }

    /// Every entry, oldest first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &WaitEntry> {
        self.entries.values()
    }

    /// The number the next entry gets.
    pub(crate) fn next_number(&self) -> u64 {
        self.next_seq.max(1)
    }

    /// Numbers later entries from `next` on, at least.
    pub(crate) fn number_from(&mut self, next: u64) {
        self.next_seq = self.next_seq.max(next);
    }

    /// An entry of `plate` for `spot` whose window overlaps `window`, if any.
    pub(crate) fn waiting_for(
        &self,
        plate: Plate,
        spot: Option<&SpotId>,
        window: Window,
    ) -> Option<&WaitEntry> {
        self.entries.values().find(|entry| {
            entry.plate == plate && entry.spot.as_ref() == spot && entry.window.overlaps(&window)
        })
    }

    /// Whether another entry may join.
    pub(crate) fn has_room(&self) -> bool {
        self.entries.len() < self.rules.max_entries
    }

    /// Removes what time has made due by `now`: entries whose offer ran out, and entries
    /// whose window has ended. Returns the removed entries that had an offer, whose
    /// bookings the caller lets go.
    pub(crate) fn advance(&mut self, now: u64) -> Vec<WaitEntry> {
        let mut expired = Vec::new();
        while let Some(&(at, seq)) = self.due.first() {
            if at > now {
                break;
            }
            let Some(entry) = self.entries.get(&seq).cloned() else {
                self.due.remove(&(at, seq));
                continue;
            };
            self.set(seq, None);
            if entry.offer.is_some() {
                if entry.owner.is_some() {
                    self.notices.push(Notice::OfferExpired(entry.clone()));
                }
                expired.push(entry);
            }
        }
        expired
    }

    /// The waiting entries (no offer) in the order offers go to them, oldest first, with
    /// their drivers; those of drivers who hold an offer in this lot already are left out.
    pub(crate) fn candidates(&self) -> Vec<(u64, String)> {
        let offered: HashSet<String> = self
            .entries
            .values()
            .filter(|entry| entry.offer.is_some())
            .map(WaitEntry::driver)
            .collect();
        self.entries
            .iter()
            .filter(|(_, entry)| entry.offer.is_none())
            .map(|(&seq, entry)| (seq, entry.driver()))
            // One offer per driver at a time: a driver's later entries wait their turn.
            .filter(|(_, driver)| !offered.contains(driver))
            .collect()
    }
}

/// An entry's change from `old` to `new` (either absent), as a recorded change.
pub(crate) fn entry_change(
    id: &WaitId,
    old: Option<WaitEntry>,
    new: Option<WaitEntry>,
) -> (Change, Change) {
    (
        Change::Waiting {
            id: id.clone(),
            entry: old,
        },
        Change::Waiting {
            id: id.clone(),
            entry: new,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, plate: &str, offer: Option<u64>) -> WaitEntry {
        let lot = LotId::new("A").unwrap();
        WaitEntry {
            id: WaitId::new(lot.clone(), seq),
            spot: None,
            plate: Plate::parse(plate).unwrap(),
            window: Window {
                start: 100,
                end: 200,
            },
            owner: None,
            joined_at: 50,
            offer: offer.map(|expires_at| Offer {
                booking: BookingId::new(lot, 9),
                expires_at,
            }),
        }
    }

    #[test]
    fn entries_serialise_with_their_lot_status_and_flat_times() {
        let json = serde_json::to_string(&entry(3, "p1", Some(150))).unwrap();
        assert_eq!(
            json,
            r#"{"id":"A.w3","lot":"A","spot":null,"plate":"P1","start":100,"end":200,"owner":null,"joined_at":50,"status":"OFFERED","offer":{"booking":"A.9","expires_at":150}}"#
        );
        assert_eq!(
            serde_json::from_str::<WaitEntry>(&json).unwrap(),
            entry(3, "P1", Some(150))
        );
        for bad in [
            json.replace(r#""lot":"A""#, r#""lot":"B""#),
            json.replace(r#""start":100"#, r#""start":200"#),
            json.replace(r#""booking":"A.9""#, r#""booking":"B.9""#),
        ] {
            assert!(serde_json::from_str::<WaitEntry>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_list_keeps_its_order_its_due_times_and_one_offer_per_driver() {
        let mut list = LotWaitlist::default();
        list.set(1, Some(entry(1, "P1", Some(150))));
        list.set(2, Some(entry(2, "P1", None)));
        list.set(3, Some(entry(3, "P2", None)));
        assert_eq!(list.next_number(), 4);
        // P1 holds an offer: its second entry waits; P2's is next in line.
        let seqs = |list: &LotWaitlist| -> Vec<u64> {
            list.candidates().into_iter().map(|(seq, _)| seq).collect()
        };
        assert_eq!(seqs(&list), vec![3]);
        assert_eq!(list.next_due(), Some(150));
        assert!(list.advance(149).is_empty());
        let expired = list.advance(150);
        assert_eq!(expired.len(), 1);
        assert_eq!(seqs(&list), vec![2, 3]);
        // Windows end: the entries go.
        assert!(list.advance(200).is_empty());
        assert_eq!(list.all().count(), 0);
        assert_eq!(list.next_due(), None);
        assert_eq!(list.next_number(), 4);
    }

    #[test]
    fn offers_are_looked_for_only_when_room_may_have_appeared() {
        let mut list = LotWaitlist::default();
        assert!(!list.should_look(5, 0));
        list.set(1, Some(entry(1, "P1", None)));
        assert!(list.should_look(0, 0));
        assert!(!list.should_look(0, 0));
        assert!(list.should_look(1, 0));
        assert!(!list.should_look(0, 0));
        assert!(list.should_look(0, 1));
        list.set(2, Some(entry(2, "P2", None)));
        assert!(list.should_look(0, 1));
    }
}
