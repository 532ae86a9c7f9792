//! The node's copy of the database: the follower [`ParkingState`] that reads are served
//! from, and each lot's version, so that every committed change is applied once and in
//! order, whether it arrives first from this node's own commit or from the announcement.
//! Announcements are sent after their commits, by each node on its own (`crate::announce`),
//! so they come in any order: a change that comes early is held until the ones before it
//! arrive, and a lot held up for long is one whose announcement was lost ([`Copy::stalled`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use state::{Booking, BookingId, Change, LotId, ParkingState, Plate, WaitEntry, WaitId};

/// Changes held for a lot while an earlier version is still on its way; past this many the
/// newest are dropped (the lot is read afresh when the listening thread catches up), so a
/// long outage of the listener cannot grow memory without bound.
const MAX_EARLY: usize = 10_000;

/// One lot's place in the database's sequence of changes.
#[derive(Debug, Default)]
struct Followed {
    /// The version of the last change applied.
    version: u64,
    /// Changes with later versions that came before one in between (this node's own
    /// commits overtaking the announcement of another node's earlier one).
    early: BTreeMap<u64, Vec<Change>>,
    /// Since when the change after `version` has been awaited while later ones are held.
    waiting_since: Option<Instant>,
}

/// What became of a change offered to the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Applied now (and any held changes it unblocked).
    Now,
    /// The copy had it already.
    Already,
    /// Held until the versions before it arrive.
    Early,
}

/// One lot as read from the database: its version, count and reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LotImage {
    pub(crate) lot: LotId,
    pub(crate) version: u64,
    pub(crate) counted: i64,
    /// Plate, expiry (Unix ms) and owner of every reservation.
    pub(crate) reservations: Vec<(Plate, u64, Option<String>)>,
    /// Every booking the database keeps.
    pub(crate) bookings: Vec<Booking>,
    /// Every waitlist entry the database keeps.
    pub(crate) entries: Vec<WaitEntry>,
}

/// The follower state and the version of each of its lots.
pub(crate) struct Copy {
    state: Arc<ParkingState>,
    lots: HashMap<LotId, Mutex<Followed>>,
}

impl Copy {
    pub(crate) fn new(state: Arc<ParkingState>) -> Copy {
        let lots = state
            .lot_ids()
            .map(|id| (id.clone(), Mutex::new(Followed::default())))
            .collect();
        Copy { state, lots }
    }

    pub(crate) fn state(&self) -> &Arc<ParkingState> {
        &self.state
    }

    /// The lots this node serves (the database may hold more, which it ignores).
    pub(crate) fn lot_ids(&self) -> impl Iterator<Item = &LotId> {
        self.state.lot_ids()
    }

    /// Whether this node serves `lot`.
    pub(crate) fn serves(&self, lot: &str) -> bool {
        self.lots.contains_key(lot)
    }

    /// The version of `lot`'s last applied change (0 for a lot this node does not serve).
    pub(crate) fn version(&self, lot: &str) -> u64 {
        self.lots
            .get(lot)
            .map_or(0, |followed| followed.lock().version)
    }

    /// Offers `lot`'s change number `version`, which set the keys `changes` hold.
    pub(crate) fn apply(&self, lot: &LotId, version: u64, changes: Vec<Change>) -> Applied {
        let Some(followed) = self.lots.get(lot) else {
            return Applied::Already;
        };
        // Held while applying, so that the state (and through it the subscribers) gets
        // each lot's changes in version order even when two threads offer them at once.
        let mut followed = followed.lock();
        if version <= followed.version {
            return Applied::Already;
        }
        if version > followed.version + 1 {
            if followed.early.len() < MAX_EARLY {
                followed.early.insert(version, changes);
            }
            followed.waiting_since.get_or_insert_with(Instant::now);
            return Applied::Early;
        }
        self.apply_in_order(&mut followed, version, &changes);
        Applied::Now
    }

    /// Who holds `plate`'s reservation in `lot` as far as this node knows: the newest change
    /// of it held back for an earlier version (this node's own reserve that overtook
    /// another node's announcement), else the copy's. `None` when not held, `Some(None)`
    /// when held by nobody in particular. A guess, which only the database can confirm:
    /// a cancel removes the reservation only if the database has this owner too.
    pub(crate) fn holder(&self, lot: &LotId, plate: &Plate) -> Option<Option<String>> {
        let followed = self.lots.get(lot)?.lock();
        // Newest first: a later held change overrides an earlier one and the copy.
        let newest = followed
            .early
            .values()
            .rev()
            .find_map(|changes| changes.iter().rev().find_map(|c| reservation(c, plate)));
        if let Some(Change::Reservation {
            expires_at_ms,
            owner,
            ..
        }) = newest
        {
            return expires_at_ms.map(|_| owner.clone());
        }
        drop(followed);
        let held = self.state.holder(lot.as_str(), plate).ok()??;
        Some(held.map(|owner| owner.to_string()))
    }

    /// The lots that have held a later change for `longer_than` while the one after their
    /// version has not come: its announcement was lost (or is very late), so the lot is to
    /// be read afresh.
    pub(crate) fn stalled(&self, longer_than: Duration) -> Vec<LotId> {
        self.lots
            .iter()
            .filter(|(_, followed)| {
                followed
                    .lock()
                    .waiting_since
                    .is_some_and(|since| since.elapsed() >= longer_than)
            })
            .map(|(lot, _)| lot.clone())
            .collect()
    }

    /// Makes each image its lot's content, unless the copy is already there or past it: the
    /// keys that differ are set in one change (one event at most), and held changes after
    /// it follow. Every named lot's place is held throughout, so no change slips in between
    /// reading the copy and setting it.
    pub(crate) fn reset(&self, images: Vec<LotImage>) {
        let mut images: HashMap<LotId, LotImage> = images
            .into_iter()
            .map(|image| (image.lot.clone(), image))
            .collect();
        // Locked in configuration order; writers lock one lot at a time, so this cannot
        // deadlock with them.
        let mut held: Vec<_> = self
            .lot_ids()
            .filter_map(|id| Some((images.remove(id)?, self.lots.get(id)?.lock())))
            .collect();
        let mut local: HashMap<LotId, Vec<Plate>> = HashMap::new();
        let mut local_bookings: HashMap<LotId, Vec<BookingId>> = HashMap::new();
        let mut local_entries: HashMap<LotId, Vec<WaitId>> = HashMap::new();
        for change in self.state.image() {
            match change {
                Change::Reservation { lot, plate, .. } => local.entry(lot).or_default().push(plate),
                Change::Booking { id, .. } => {
                    local_bookings.entry(id.lot().clone()).or_default().push(id);
                }
                Change::Waiting { id, .. } => {
                    local_entries.entry(id.lot().clone()).or_default().push(id);
                }
                _ => {}
            }
        }
        for (image, followed) in &mut held {
            if image.version <= followed.version {
                // A change this node committed itself got here first; the image is older.
                continue;
            }
            let wanted: HashSet<Plate> = image
                .reservations
                .iter()
                .map(|(plate, ..)| *plate)
                .collect();
            let had: HashSet<Plate> = local
                .remove(&image.lot)
                .unwrap_or_default()
                .into_iter()
                .collect();
            let mut changes: Vec<Change> = had
                .iter()
                .copied()
                .filter(|plate| !wanted.contains(plate))
                .map(|plate| Change::Reservation {
                    lot: image.lot.clone(),
                    plate,
                    expires_at_ms: None,
                    owner: None,
                })
                .collect();
            changes.push(Change::Count {
                lot: image.lot.clone(),
                counted: image.counted,
            });
            // Only what the copy lacks: what it has is the same reservation (the copy's
            // expiry and owner decide nothing; the database does).
            changes.extend(
                image
                    .reservations
                    .drain(..)
                    .filter(|(plate, ..)| !had.contains(plate))
                    .map(|(plate, expires_at_ms, owner)| Change::Reservation {
                        lot: image.lot.clone(),
                        plate,
                        expires_at_ms: Some(expires_at_ms),
                        owner,
                    }),
            );
            // Bookings are set whole: a booking the database no longer keeps is forgotten,
            // every other one set to its record (setting one the copy has is harmless).
            let kept: HashSet<BookingId> = image.bookings.iter().map(|b| b.id.clone()).collect();
            changes.extend(
                local_bookings
                    .remove(&image.lot)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|id| !kept.contains(id))
                    .map(|id| Change::Booking { id, booking: None }),
            );
            changes.extend(image.bookings.drain(..).map(|booking| Change::Booking {
                id: booking.id.clone(),
                booking: Some(booking),
            }));
            // Waitlist entries likewise.
            let kept: HashSet<WaitId> = image.entries.iter().map(|e| e.id.clone()).collect();
            changes.extend(
                local_entries
                    .remove(&image.lot)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|id| !kept.contains(id))
                    .map(|id| Change::Waiting { id, entry: None }),
            );
            changes.extend(image.entries.drain(..).map(|entry| Change::Waiting {
                id: entry.id.clone(),
                entry: Some(entry),
            }));
            self.apply_in_order(followed, image.version, &changes);
        }
    }

    /// Applies the change that brings `followed` to `version`, then every held one that
    /// follows without a gap; drops held ones it has passed.
    fn apply_in_order(&self, followed: &mut Followed, version: u64, changes: &[Change]) {
        self.set(changes);
        followed.version = version;
        followed.early = followed.early.split_off(&(version + 1));
        while let Some(entry) = followed.early.first_entry() {
            if *entry.key() != followed.version + 1 {
                break;
            }
            let (next, changes) = entry.remove_entry();
            self.set(&changes);
            followed.version = next;
        }
        // A gap that remains is a later one, awaited from now on; none, nothing awaited.
        followed.waiting_since = (!followed.early.is_empty()).then(Instant::now);
    }

    fn set(&self, changes: &[Change]) {
        // Every change names a lot of this node (the callers checked), so this cannot fail.
        if let Err(err) = self.state.apply_all(changes) {
            log::error!("applying a committed change: {err}");
        }
    }
}

/// The change of `plate`'s reservation in `change`, if there is one (the last of a batch).
fn reservation<'a>(change: &'a Change, plate: &Plate) -> Option<&'a Change> {
    match change {
        Change::Reservation { plate: changed, .. } if changed == plate => Some(change),
        Change::Batch { changes, .. } => changes
            .iter()
            .rev()
            .find_map(|change| reservation(change, plate)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use state::{LotChange, LotSpec, ManualClock};

    use super::*;

    fn lot() -> LotId {
        LotId::new("A").unwrap()
    }

    fn held(plate: &str) -> Change {
        Change::Reservation {
            lot: lot(),
            plate: Plate::parse(plate).unwrap(),
            expires_at_ms: Some(u64::MAX / 2),
            owner: None,
        }
    }

    fn copy() -> (Copy, Arc<Mutex<Vec<u32>>>) {
        let state = ParkingState::new(
            [LotSpec::new(lot(), 10)],
            Duration::from_secs(60),
            Arc::new(ManualClock::new()),
        )
        .unwrap()
        .follower();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        state.add_listener(Arc::new(move |change: &LotChange| {
            sink.lock().push(change.free);
        }));
        (Copy::new(Arc::new(state)), seen)
    }

    #[test]
    fn changes_apply_once_and_in_version_order_whatever_order_they_come_in() {
        let (copy, seen) = copy();
        assert_eq!(copy.apply(&lot(), 2, vec![held("P2")]), Applied::Early);
        assert_eq!(copy.apply(&lot(), 3, vec![held("P3")]), Applied::Early);
        assert!(seen.lock().is_empty());
        assert_eq!(copy.apply(&lot(), 1, vec![held("P1")]), Applied::Now);
        assert_eq!(*seen.lock(), vec![9, 8, 7]);
        assert_eq!(copy.version("A"), 3);
        // The announcements of 2 and 3 arrive after this node applied them itself.
        assert_eq!(copy.apply(&lot(), 2, vec![held("P2")]), Applied::Already);
        assert_eq!(copy.apply(&lot(), 3, vec![held("P3")]), Applied::Already);
        assert_eq!(*seen.lock(), vec![9, 8, 7]);
    }

    #[test]
    fn the_holder_is_the_newest_word_held_back_or_applied() {
        let (copy, _) = copy();
        let p1 = Plate::parse("P1").unwrap();
        let owned = |version_owner: &str| Change::Reservation {
            lot: lot(),
            plate: p1,
            expires_at_ms: Some(u64::MAX / 2),
            owner: Some(version_owner.to_owned()),
        };
        let ended = Change::Reservation {
            lot: lot(),
            plate: p1,
            expires_at_ms: None,
            owner: None,
        };
        assert_eq!(copy.holder(&lot(), &p1), None);
        // This node's reserve (version 2) waits for version 1: held back, and known.
        copy.apply(&lot(), 2, vec![owned("kiosk")]);
        assert_eq!(copy.state().holder("A", &p1).unwrap(), None);
        assert_eq!(copy.holder(&lot(), &p1), Some(Some("kiosk".to_owned())));
        // A later held change ends it (inside a batch, as a gate's does).
        copy.apply(
            &lot(),
            4,
            vec![Change::Batch {
                lot: lot(),
                changes: vec![ended.clone(), held("P9")],
            }],
        );
        assert_eq!(copy.holder(&lot(), &p1), None);
        // Applied in order: the copy's word, then a held one over it.
        copy.apply(&lot(), 1, vec![held("P0")]);
        copy.apply(&lot(), 3, vec![]);
        assert_eq!(copy.version("A"), 4);
        assert_eq!(copy.holder(&lot(), &p1), None);
        copy.apply(&lot(), 5, vec![owned("app")]);
        assert_eq!(copy.holder(&lot(), &p1), Some(Some("app".to_owned())));
        copy.apply(&lot(), 7, vec![ended]);
        assert_eq!(copy.holder(&lot(), &p1), None);
        assert_eq!(
            copy.holder(&lot(), &Plate::parse("P0").unwrap()),
            Some(None)
        );
    }

    #[test]
    fn a_lot_is_stalled_while_a_change_before_a_held_one_has_not_come() {
        let (copy, _) = copy();
        assert!(copy.stalled(Duration::ZERO).is_empty());
        copy.apply(&lot(), 2, vec![held("P2")]);
        assert_eq!(copy.stalled(Duration::ZERO), vec![lot()]);
        assert!(copy.stalled(Duration::from_secs(3600)).is_empty());
        copy.apply(&lot(), 1, vec![held("P1")]);
        assert!(copy.stalled(Duration::ZERO).is_empty());
        // A reset past the gap ends the wait too.
        copy.apply(&lot(), 4, vec![held("P4")]);
        copy.reset(vec![LotImage {
            lot: lot(),
            version: 4,
            counted: 0,
            reservations: vec![],
            bookings: vec![],
            entries: vec![],
        }]);
        assert!(copy.stalled(Duration::ZERO).is_empty());
        assert_eq!(copy.version("A"), 4);
    }

    #[test]
    fn a_reset_sets_what_differs_as_one_event_and_never_goes_back() {
        let (copy, seen) = copy();
        copy.apply(&lot(), 1, vec![held("P1")]);
        copy.apply(&lot(), 2, vec![held("P2")]);
        // Held: version 6 arrives while 3-5 were missed (the listener was disconnected).
        copy.apply(&lot(), 6, vec![held("P6")]);
        copy.reset(vec![LotImage {
            lot: lot(),
            version: 5,
            counted: 3,
            reservations: vec![(Plate::parse("P2").unwrap(), 1, None)],
            bookings: vec![],
            entries: vec![],
        }]);
        // P1 gone, P2 kept, three cars counted: 10 - 3 - 1 = 6; then 6 applies: 5.
        assert_eq!(*seen.lock(), vec![9, 8, 6, 5]);
        assert_eq!(copy.version("A"), 6);
        let older = LotImage {
            lot: lot(),
            version: 4,
            counted: 0,
            reservations: vec![],
            bookings: vec![],
            entries: vec![],
        };
        copy.reset(vec![older]);
        assert_eq!(copy.state().free("A").unwrap(), 5);
        assert!(!copy.serves("B"));
    }
}
