//! One lot's bookings: the records, the [`Timeline`] of active ones the lot-wide limit is
//! checked against, one line per named spot, the plates at the gate, and the queue of due
//! times. Not thread-safe by itself: it lives in a `Lot`, behind the lot's lock.
//!
//! Every change of a booking, whoever makes it (a request, the clock, a journal's replay),
//! goes through [`LotBookings::set`], which unlinks the old record from every structure and
//! links the new one: the structures cannot disagree with the records.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use crate::booking::{
    Booking, BookingError, BookingRules, BookingStatus, LotOffer, LotQuery, LotTerms, Passage,
    SpotOffer, SpotSpec, Window,
};
use crate::ids::{BookingId, Label, LotId, Plate, SpotId};
use crate::notice::Notice;
use crate::timeline::Timeline;

/// Due-queue entries tolerated per booking before the queue is rebuilt (as for the expiry
/// queue of reservations: stale entries are left behind when a booking changes).
const STALE_DUE_RATIO: usize = 2;
/// Queue length below which a rebuild is never worth it.
const MIN_COMPACT_LEN: usize = 64;

/// A booking and what the lot keeps beside it.
#[derive(Debug)]
struct Entry {
    booking: Booking,
    /// Confirmed and inside its window (before its no-show time): it holds a space, and is
    /// counted in [`LotBookings::holding`].
    holding: bool,
    /// The due time queued for it; a queue entry with another time is stale.
    due: u64,
}

/// One lot's bookings.
#[derive(Debug)]
pub(crate) struct LotBookings {
    rules: BookingRules,
    /// How many active bookings may cover one instant.
    bookable: u32,
    zone: Option<Label>,
    features: Vec<Label>,
    spots: Vec<SpotSpec>,
    /// Spot id to its index in `spots` and `spot_lines`.
    spot_index: HashMap<crate::ids::SpotId, usize>,
    /// The number the next booking gets.
    next_seq: u64,
    /// Every booking still kept (active, or finished within the retention), by number:
    /// ordered, so that `listBookings` pages by id.
    entries: BTreeMap<u64, Entry>,
    /// The finished bookings kept, as `(forget_at, seq)`: the first is the one to forget
    /// when there are more than `rules.max_finished`.
    finished: BTreeSet<(u64, u64)>,
    /// Active bookings (spot ones included) over time.
    timeline: Timeline,
    /// Per spot, its active bookings: `(start, seq) -> end`. They never overlap, so the one
    /// starting last before a window's end is the only one that can overlap it.
    spot_lines: Vec<BTreeMap<(u64, u64), u64>>,
    /// Bookings the gate may act on (confirmed, or with the car inside), by plate.
    by_plate: HashMap<Plate, Vec<u64>>,
    /// Each booking's next due time, earliest first.
    due: BinaryHeap<Reverse<(u64, u64)>>,
    /// How many bookings hold a space now.
    holding: u32,
    /// How many times an active booking stopped counting (cancelled, a no-show, completed,
    /// an offer gone): the lot's waitlist looks for a space to offer only after this moves
    /// or the lot's free count grows, since nothing else can make room.
    released: u64,
    /// Notices for owners, waiting to be handed to the state's notice listeners.
    pub(crate) notices: Vec<Notice>,
}

impl LotBookings {
    /// No bookings yet; every space bookable, no named spots, until configured.
    pub(crate) fn new(capacity: u32, rules: BookingRules) -> Self {
        LotBookings {
            rules,
            bookable: capacity,
            zone: None,
            features: Vec::new(),
            spots: Vec::new(),
            spot_index: HashMap::new(),
            next_seq: 1,
            entries: BTreeMap::new(),
            finished: BTreeSet::new(),
            timeline: Timeline::default(),
            spot_lines: Vec::new(),
            by_plate: HashMap::new(),
            due: BinaryHeap::new(),
            holding: 0,
            released: 0,
            notices: Vec::new(),
        }
    }

    /// Applies the lot's configured terms (before any booking exists).
    pub(crate) fn configure(&mut self, terms: LotTerms, rules: BookingRules) {
        self.rules = rules;
        self.bookable = terms.bookable;
        self.zone = terms.zone;
        self.features = terms.features;
        self.spot_index = terms
            .spots
            .iter()
            .enumerate()
            .map(|(index, spot)| (spot.id.clone(), index))
            .collect();
        self.spot_lines = vec![BTreeMap::new(); terms.spots.len()];
        self.spots = terms.spots;
    }

    /// How many spaces may be booked for any instant.
    pub(crate) fn bookable(&self) -> u32 {
        self.bookable
    }

    /// The id of the named spot on line `line`.
    pub(crate) fn spot_id(&self, line: usize) -> SpotId {
        self.spots[line].id.clone()
    }

    /// Bookings holding a space now (confirmed, inside their window).
    pub(crate) fn holding(&self) -> u32 {
        self.holding
    }

    /// The earliest time something may be due. Cheap: the hot path asks it on every
    /// operation, and with no bookings it is one comparison.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.due.peek().map(|&Reverse((at, _))| at)
    }

    /// Does everything due by `now`: holds, no-shows, completions, overstays, forgetting.
    pub(crate) fn advance(&mut self, now: u64) {
        while let Some(&Reverse((at, seq))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            let Some(entry) = self.entries.get_mut(&seq) else {
                continue;
            };
            if entry.due != at {
                continue;
            }
            // Marks the queue entry as used, so that `set` queues the next due time even if
            // it is the same.
            entry.due = u64::MAX;
            if at == reminder_at(&entry.booking) && entry.booking.status == BookingStatus::Confirmed
            {
                self.notices.push(Notice::Reminder(entry.booking.clone()));
            }
            let settled = settle(&entry.booking, &self.rules, now);
            self.set(seq, settled, now);
        }
    }

    /// Sets booking `seq` to `booking`, or forgets it (`None`), whatever it was: a new
    /// booking, a change, an undo, a replay. Limits are not checked (they were, when the
    /// booking was made).
    pub(crate) fn set(&mut self, seq: u64, booking: Option<Booking>, now: u64) {
        let old = self.entries.remove(&seq);
        if let Some(old) = &old {
            self.unlink(seq, old);
        }
        if let Some(notice) = booking
            .as_ref()
            .and_then(|new| Notice::of_booking(old.as_ref().map(|old| &old.booking), new))
        {
            self.notices.push(notice);
        }
        let queued = old.map(|old| old.due);
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        let Some(booking) = booking else {
            self.compact();
            return;
        };
        self.compact();
        let window = booking.window;
        let holding = match booking.status {
            BookingStatus::Confirmed => window.start <= now && now < self.rules.no_show_at(window),
            // An offer holds the space it offers for as long as it runs.
            BookingStatus::Offered => {
                window.contains(now) && booking.offered_until.is_some_and(|until| now < until)
            }
            _ => false,
        };
        if booking.status.is_active() {
            self.timeline.add(window.start, window.end);
            if let Some(line) = self.spot_line(&booking) {
                self.spot_lines[line].insert((window.start, seq), window.end);
            }
        }
        if holding {
            self.holding += 1;
        }
        if booking.status == BookingStatus::Confirmed || booking.inside {
            self.by_plate.entry(booking.plate).or_default().push(seq);
        }
        let mut due = next_due(&booking, &self.rules, holding);
        // An owned booking's reminder comes first, unless its time has passed.
        if booking.status == BookingStatus::Confirmed && booking.owner.is_some() {
            let remind = reminder_at(&booking);
            if now < remind {
                due = due.min(remind);
            }
        }
        if queued != Some(due) {
            self.due.push(Reverse((due, seq)));
        }
        let finished = !booking.status.is_active();
        let forget_at = self.forget_at(&booking);
        self.entries.insert(
            seq,
            Entry {
                booking,
                holding,
                due,
            },
        );
        if finished {
            self.finished.insert((forget_at, seq));
            self.evict_finished();
        }
    }

    /// When a finished `booking` is forgotten by time.
    fn forget_at(&self, booking: &Booking) -> u64 {
        booking
            .window
            .end
            .saturating_add(self.rules.retention.as_secs())
    }

    /// Forgets the finished bookings due to be forgotten soonest while there are more than
    /// `max_finished`. The count is of the records themselves, so replaying a journal (or a
    /// follower applying the same changes) forgets the same ones. (A change undone because
    /// the disk refused it may have forgotten one early: a finished record, which a restart
    /// would show again until its time.)
    fn evict_finished(&mut self) {
        while self.finished.len() > self.rules.max_finished as usize {
            let Some((_, seq)) = self.finished.pop_first() else {
                break;
            };
            if let Some(old) = self.entries.remove(&seq) {
                self.unlink(seq, &old);
            }
        }
    }

    /// Removes what `entry` contributed to the structures.
    fn unlink(&mut self, seq: u64, entry: &Entry) {
        let booking = &entry.booking;
        if !booking.status.is_active() {
            self.finished.remove(&(self.forget_at(booking), seq));
        }
        if booking.status.is_active() {
            self.released += 1;
            self.timeline
                .remove(booking.window.start, booking.window.end);
            if let Some(line) = self.spot_line(booking) {
                self.spot_lines[line].remove(&(booking.window.start, seq));
            }
        }
        if entry.holding {
            self.holding -= 1;
        }
        if let Some(seqs) = self.by_plate.get_mut(&booking.plate) {
            seqs.retain(|&other| other != seq);
            if seqs.is_empty() {
                self.by_plate.remove(&booking.plate);
            }
        }
    }

    /// The index of the spot line `booking` is on, if it booked a configured spot.
    fn spot_line(&self, booking: &Booking) -> Option<usize> {
        let spot = booking.spot.as_ref()?;
        self.spot_index.get(spot.as_str()).copied()
    }

    /// Rebuilds the due queue once stale entries outnumber the bookings.
    fn compact(&mut self) {
        if self.due.len() > MIN_COMPACT_LEN && self.due.len() > STALE_DUE_RATIO * self.entries.len()
        {
            let entries = &self.entries;
            self.due
                .retain(|Reverse((at, seq))| entries.get(seq).is_some_and(|e| e.due == *at));
        }
    }

    /// Whether an active booking of spot `line` overlaps `window`.
    fn spot_taken(&self, line: usize, window: Window) -> bool {
        self.spot_lines[line]
            .range(..(window.end, 0))
            .next_back()
            .is_some_and(|(_, &end)| end > window.start)
    }

    /// The number the next booking gets.
    pub(crate) fn next_number(&self) -> u64 {
        self.next_seq
    }

    /// Numbers later bookings from `next` on, at least.
    pub(crate) fn number_from(&mut self, next: u64) {
        self.next_seq = self.next_seq.max(next);
    }

    /// The booking numbered `seq`.
    pub(crate) fn get(&self, seq: u64) -> Option<&Booking> {
        self.entries.get(&seq).map(|entry| &entry.booking)
    }

    /// Every booking kept.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Booking> {
        self.entries.values().map(|entry| &entry.booking)
    }

    /// The check-and-set of a new booking, at `now` with `free` spaces free in the lot;
    /// returns the booking made. Due work must have been done first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn book(
        &mut self,
        lot: &LotId,
        spot: Option<&str>,
        plate: Plate,
        window: Window,
        owner: Option<&str>,
        now: u64,
        free: u32,
    ) -> Result<Booking, BookingError> {
        self.rules
            .check(window, now)
            .map_err(BookingError::BadWindow)?;
        let line = self.spot(lot, spot)?;
        self.fits(line, window, now, free)?;
        let seq = self.next_seq;
        let booking = Booking {
            id: BookingId::new(lot.clone(), seq),
            spot: line.map(|line| self.spots[line].id.clone()),
            plate,
            window,
            status: BookingStatus::Confirmed,
            owner: owner.map(str::to_owned),
            overstay: false,
            inside: false,
            offered_until: None,
        };
        self.set(seq, Some(booking.clone()), now);
        Ok(booking)
    }

    /// The line of the named spot `spot` (`None`: any space of the lot).
    pub(crate) fn spot(
        &self,
        lot: &LotId,
        spot: Option<&str>,
    ) -> Result<Option<usize>, BookingError> {
        let Some(spot) = spot else { return Ok(None) };
        let line = self.spot_index.get(spot).copied();
        line.map(Some).ok_or_else(|| BookingError::UnknownSpot {
            lot: lot.clone(),
            spot: spot.to_owned(),
        })
    }

    /// Whether a booking of spot `line` (or any space) over `window` fits at `now` with
    /// `free` spaces free: the check of [`LotBookings::book`] beyond the window's rules.
    pub(crate) fn fits(
        &self,
        line: Option<usize>,
        window: Window,
        now: u64,
        free: u32,
    ) -> Result<(), BookingError> {
        if line.is_some_and(|line| self.spot_taken(line, window)) {
            return Err(BookingError::SpotTaken);
        }
        if self.timeline.peak(window.start, window.end) >= self.bookable {
            return Err(BookingError::Full {
                bookable: self.bookable,
            });
        }
        // Beginning now, it holds a space at once: like a reservation, only if one is free.
        if window.contains(now) && free == 0 {
            return Err(BookingError::NoSpaceNow);
        }
        Ok(())
    }

    /// How many times an active booking has stopped counting; see the field.
    pub(crate) fn released(&self) -> u64 {
        self.released
    }

    /// Holds a space (or spot `line`) over `window` for a waitlist entry's `plate` and
    /// `owner` until `until`, if one fits now: an `OFFERED` booking. The window is the
    /// entry's, which kept the rules when it joined; the caller cuts off what is past.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hold_offer(
        &mut self,
        lot: &LotId,
        line: Option<usize>,
        plate: Plate,
        window: Window,
        owner: Option<&str>,
        until: u64,
        now: u64,
        free: u32,
    ) -> Option<Booking> {
        self.fits(line, window, now, free).ok()?;
        let seq = self.next_seq;
        let booking = Booking {
            id: BookingId::new(lot.clone(), seq),
            spot: line.map(|line| self.spots[line].id.clone()),
            plate,
            window,
            status: BookingStatus::Offered,
            owner: owner.map(str::to_owned),
            overstay: false,
            inside: false,
            offered_until: Some(until),
        };
        self.set(seq, Some(booking.clone()), now);
        Some(booking)
    }

    /// Turns the live offer `seq` into a confirmed booking; returns the old and new records.
    /// A window that began while it was offered now begins at `now`, so that the booking's
    /// grace for check-in runs from when the driver took it.
    pub(crate) fn accept(&mut self, seq: u64, now: u64) -> Option<(Booking, Booking)> {
        let old = self.get(seq)?;
        let live = old.status == BookingStatus::Offered
            && old.offered_until.is_some_and(|until| now < until)
            && now < old.window.end;
        if !live {
            return None;
        }
        let old = old.clone();
        let new = Booking {
            status: BookingStatus::Confirmed,
            offered_until: None,
            window: Window {
                start: old.window.start.max(now),
                end: old.window.end,
            },
            ..old.clone()
        };
        self.set(seq, Some(new.clone()), now);
        Some((old, new))
    }

    /// Cancels booking `seq` if it is confirmed and `allowed` says so of its owner; returns
    /// the old and new records.
    pub(crate) fn cancel(
        &mut self,
        seq: u64,
        allowed: impl FnOnce(Option<&str>) -> bool,
        now: u64,
    ) -> Option<(Booking, Booking)> {
        let old = self.get(seq)?;
        if old.status != BookingStatus::Confirmed || !allowed(old.owner.as_deref()) {
            return None;
        }
        let old = old.clone();
        let new = Booking {
            status: BookingStatus::Cancelled,
            ..old.clone()
        };
        self.set(seq, Some(new.clone()), now);
        Some((old, new))
    }

    /// Checks booking `seq` in (the car is at the gate); returns the old and new records.
    /// One that `allowed` refuses is reported as unknown, so that nobody learns whose it is.
    pub(crate) fn check_in(
        &mut self,
        id: &BookingId,
        allowed: impl FnOnce(Option<&str>) -> bool,
        now: u64,
    ) -> Result<(Booking, Booking), BookingError> {
        let unknown = || BookingError::UnknownBooking(id.to_string());
        let old = self.get(id.seq()).ok_or_else(unknown)?;
        if !allowed(old.owner.as_deref()) {
            return Err(unknown());
        }
        if old.status != BookingStatus::Confirmed {
            return Err(BookingError::BadState(old.status));
        }
        let opens = self.rules.checkin_opens_at(old.window);
        if now < opens {
            return Err(BookingError::NotDue { opens });
        }
        let old = old.clone();
        let new = checked_in(&old);
        self.set(id.seq(), Some(new.clone()), now);
        Ok((old, new))
    }

    /// What a car through the gate does to the plate's bookings: `ENTER` checks in its
    /// confirmed booking whose check-in is open (the earliest, if several), `EXIT` marks the
    /// car out of the booking it is in, completing it. Returns the old and new records.
    pub(crate) fn pass(
        &mut self,
        plate: Plate,
        passage: Passage,
        now: u64,
    ) -> Option<(Booking, Booking)> {
        let rules = self.rules;
        let candidate = self
            .by_plate
            .get(&plate)?
            .iter()
            .filter_map(|seq| self.get(*seq))
            .filter(|booking| match passage {
                Passage::Enter => {
                    booking.status == BookingStatus::Confirmed
                        && rules.checkin_opens_at(booking.window) <= now
                }
                Passage::Exit => booking.inside,
            })
            .min_by_key(|booking| (booking.window.start, booking.id.seq()))?;
        let old = candidate.clone();
        let new = match passage {
            Passage::Enter => checked_in(&old),
            Passage::Exit => Booking {
                inside: false,
                status: match old.status {
                    BookingStatus::CheckedIn => BookingStatus::Completed,
                    other => other,
                },
                ..old.clone()
            },
        };
        self.set(old.id.seq(), Some(new.clone()), now);
        Some((old, new))
    }

    /// Up to `limit` bookings overlapping `window`, any status, numbered after `after`, by
    /// number (the order they were made in): a page that the next one continues after its
    /// last booking, however many were forgotten in between.
    pub(crate) fn list(&self, window: Window, after: u64, limit: usize) -> Vec<Booking> {
        self.entries
            .range(after.saturating_add(1)..)
            .map(|(_, entry)| &entry.booking)
            .filter(|booking| booking.window.overlaps(&window))
            .take(limit)
            .cloned()
            .collect()
    }

    /// What the lot can offer for `query` at `now` with `free` spaces free, if anything.
    /// The window must have been checked against the rules.
    pub(crate) fn offer(
        &self,
        lot: &LotId,
        query: &LotQuery<'_>,
        now: u64,
        free: u32,
    ) -> Option<LotOffer> {
        if let Some(zone) = query.zone
            && self.zone.as_ref().map(Label::as_str) != Some(zone)
        {
            return None;
        }
        let window = query.window;
        let mut remaining = self
            .bookable
            .saturating_sub(self.timeline.peak(window.start, window.end));
        if window.contains(now) {
            remaining = remaining.min(free);
        }
        if remaining == 0 {
            return None;
        }
        let has = |labels: &[Label], wanted: &str| labels.iter().any(|l| l.as_str() == wanted);
        let spots: Vec<SpotOffer> = self
            .spots
            .iter()
            .enumerate()
            .filter(|&(line, _)| !self.spot_taken(line, window))
            .filter_map(|(_, spot)| {
                // A spot offers what its lot does, and its own features besides.
                let mut features = self.features.clone();
                for feature in &spot.features {
                    if !features.contains(feature) {
                        features.push(feature.clone());
                    }
                }
                match query.feature {
                    Some(wanted) if !has(&features, wanted) => None,
                    _ => Some(SpotOffer {
                        id: spot.id.clone(),
                        features,
                    }),
                }
            })
            .collect();
        // A feature only some spots have: only those spots can take such a booking.
        if let Some(wanted) = query.feature
            && !has(&self.features, wanted)
        {
            remaining = remaining.min(u32::try_from(spots.len()).unwrap_or(u32::MAX));
        }
        (remaining > 0).then(|| LotOffer {
            id: lot.clone(),
            zone: self.zone.clone(),
            features: self.features.clone(),
            remaining,
            spots,
        })
    }
}

/// `booking` checked in: the car is inside.
fn checked_in(booking: &Booking) -> Booking {
    Booking {
        status: BookingStatus::CheckedIn,
        inside: true,
        ..booking.clone()
    }
}

/// `booking` as time has made it by `now`, or `None` once it is to be forgotten.
fn settle(booking: &Booking, rules: &BookingRules, now: u64) -> Option<Booking> {
    let mut booking = booking.clone();
    let window = booking.window;
    if booking.status == BookingStatus::Confirmed && now >= rules.no_show_at(window) {
        booking.status = BookingStatus::NoShow;
    }
    if booking.status == BookingStatus::CheckedIn && now >= window.end {
        booking.status = BookingStatus::Completed;
    }
    if booking.status == BookingStatus::Offered
        && booking.offered_until.is_none_or(|until| now >= until)
    {
        // An offer not taken in time leaves nothing behind: the space passes on.
        return None;
    }
    let grace = rules.checkin_grace.as_secs();
    if booking.inside && now >= window.end.saturating_add(grace) {
        booking.overstay = true;
    }
    let forget_at = window.end.saturating_add(rules.retention.as_secs());
    (booking.status.is_active() || now < forget_at).then_some(booking)
}

/// How long before its start an owned booking's owner is reminded of it.
pub(crate) const REMINDER_LEAD_SECS: u64 = 15 * 60;

/// When the owner of `booking` is reminded of it.
fn reminder_at(booking: &Booking) -> u64 {
    booking.window.start.saturating_sub(REMINDER_LEAD_SECS)
}

/// When `booking` next has something due; `holding` says whether it holds a space now.
fn next_due(booking: &Booking, rules: &BookingRules, holding: bool) -> u64 {
    let window = booking.window;
    let no_show = rules.no_show_at(window);
    match booking.status {
        // Not yet holding: at its start it begins to (or, past its no-show time already,
        // becomes a no-show at once).
        BookingStatus::Confirmed if holding => no_show,
        BookingStatus::Confirmed => window.start.min(no_show),
        BookingStatus::CheckedIn => window.end,
        // Holding, or not yet started (it begins to hold at its start).
        BookingStatus::Offered => {
            let until = booking.offered_until.unwrap_or(0);
            if holding {
                until
            } else {
                window.start.min(until)
            }
        }
        BookingStatus::Completed if booking.inside && !booking.overstay => {
            window.end.saturating_add(rules.checkin_grace.as_secs())
        }
        _ => window.end.saturating_add(rules.retention.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ids::SpotId;

    const NOW: u64 = 1_000_000;

    fn lot() -> LotId {
        LotId::new("A").unwrap()
    }

    fn plate(text: &str) -> Plate {
        Plate::parse(text).unwrap()
    }

    fn window(start: u64, end: u64) -> Window {
        Window { start, end }
    }

    fn rules() -> BookingRules {
        BookingRules {
            checkin_grace: Duration::from_secs(100),
            early_checkin: Duration::from_secs(50),
            retention: Duration::from_secs(1000),
            ..BookingRules::default()
        }
    }

    fn bookings(bookable: u32, spots: &[&str]) -> LotBookings {
        let mut bookings = LotBookings::new(10, rules());
        bookings.configure(
            LotTerms {
                id: lot(),
                zone: None,
                features: Vec::new(),
                bookable,
                spots: spots
                    .iter()
                    .map(|id| SpotSpec {
                        id: SpotId::new(id).unwrap(),
                        features: Vec::new(),
                    })
                    .collect(),
            },
            rules(),
        );
        bookings
    }

    fn book(
        bookings: &mut LotBookings,
        spot: Option<&str>,
        w: Window,
    ) -> Result<u64, BookingError> {
        bookings
            .book(&lot(), spot, plate("P"), w, None, NOW, 10)
            .map(|booking| booking.id.seq())
    }

    #[test]
    fn the_lot_limit_holds_at_every_instant() {
        let mut lot = bookings(2, &[]);
        book(&mut lot, None, window(NOW + 100, NOW + 200)).unwrap();
        book(&mut lot, None, window(NOW + 150, NOW + 300)).unwrap();
        assert_eq!(
            book(&mut lot, None, window(NOW + 199, NOW + 201)),
            Err(BookingError::Full { bookable: 2 })
        );
        // [200, 250) meets [100, 200) without sharing an instant: one booking covers it.
        book(&mut lot, None, window(NOW + 200, NOW + 250)).unwrap();
        assert!(book(&mut lot, None, window(NOW + 210, NOW + 220)).is_err());
        book(&mut lot, None, window(NOW + 300, NOW + 400)).unwrap();
        book(&mut lot, None, window(NOW, NOW + 100)).unwrap();
    }

    #[test]
    fn a_spot_takes_one_booking_at_a_time_and_counts_against_the_lot() {
        let mut lot = bookings(2, &["S1", "S2"]);
        let first = book(&mut lot, Some("S1"), window(NOW + 100, NOW + 200)).unwrap();
        assert_eq!(
            book(&mut lot, Some("S1"), window(NOW + 150, NOW + 160)),
            Err(BookingError::SpotTaken)
        );
        book(&mut lot, Some("S1"), window(NOW + 200, NOW + 300)).unwrap();
        book(&mut lot, Some("S2"), window(NOW + 100, NOW + 200)).unwrap();
        assert_eq!(
            book(&mut lot, None, window(NOW + 120, NOW + 130)),
            Err(BookingError::Full { bookable: 2 })
        );
        assert!(matches!(
            book(&mut lot, Some("S9"), window(NOW + 100, NOW + 200)),
            Err(BookingError::UnknownSpot { .. })
        ));
        assert!(lot.cancel(first, |_| true, NOW).is_some());
        book(&mut lot, Some("S1"), window(NOW + 150, NOW + 160)).unwrap();
    }

    #[test]
    fn time_holds_releases_completes_flags_and_forgets() {
        let mut lot = bookings(5, &[]);
        let start = NOW + 10;
        let seq = book(&mut lot, None, window(start, start + 500)).unwrap();
        assert_eq!(lot.holding(), 0);
        assert_eq!(lot.next_due(), Some(start));
        lot.advance(start);
        assert_eq!(lot.holding(), 1);
        // Not checked in by start + grace: a no-show, the space released.
        lot.advance(start + 99);
        assert_eq!(lot.get(seq).unwrap().status, BookingStatus::Confirmed);
        lot.advance(start + 100);
        assert_eq!(lot.get(seq).unwrap().status, BookingStatus::NoShow);
        assert_eq!(lot.holding(), 0);
        assert_eq!(lot.timeline.peak(start, start + 500), 0);
        lot.advance(start + 500 + 999);
        assert!(lot.get(seq).is_some());
        lot.advance(start + 500 + 1000);
        assert!(lot.get(seq).is_none());

        let seq = book(&mut lot, None, window(start + 2000, start + 2100)).unwrap();
        assert!(lot.pass(plate("P"), Passage::Enter, start + 1949).is_none());
        let (_, entered) = lot.pass(plate("P"), Passage::Enter, start + 1950).unwrap();
        assert_eq!(
            (entered.status, entered.inside),
            (BookingStatus::CheckedIn, true)
        );
        lot.advance(start + 2100);
        assert_eq!(lot.get(seq).unwrap().status, BookingStatus::Completed);
        assert!(!lot.get(seq).unwrap().overstay);
        lot.advance(start + 2200);
        assert!(lot.get(seq).unwrap().overstay);
        let (_, out) = lot.pass(plate("P"), Passage::Exit, start + 2300).unwrap();
        assert!(!out.inside && out.overstay);
        assert!(lot.by_plate.is_empty());
    }

    #[test]
    fn the_due_queue_stays_proportional_to_the_bookings() {
        let mut lot = bookings(1000, &[]);
        for round in 0..500 {
            let seq = book(&mut lot, None, window(NOW + 10 + round, NOW + 20 + round)).unwrap();
            lot.cancel(seq, |_| true, NOW).unwrap();
            lot.set(seq, None, NOW);
        }
        assert!(lot.due.len() <= MIN_COMPACT_LEN + 1, "{}", lot.due.len());
        assert!(lot.entries.is_empty());
    }
}
