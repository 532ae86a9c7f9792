//! [`Notice`]: what a driver is told about their own bookings and waitlist entries, as the
//! state's notice listeners hear it (the driver's event stream is one).

use std::sync::Arc;

use crate::booking::{Booking, BookingStatus};
use crate::waitlist::WaitEntry;

/// Something that happened to one owner's booking or waitlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A booking was made or changed status (confirmed, checked in, completed, cancelled,
    /// a no-show); the record as it is now.
    Booking(Booking),
    /// A waitlist entry was offered a space; the entry with its offer.
    WaitlistOffer(WaitEntry),
    /// An offer ran out before it was accepted; the entry, which has left the list.
    OfferExpired(WaitEntry),
    /// A confirmed booking starts in 15 minutes.
    Reminder(Booking),
}

impl Notice {
    /// Whose it is: the booking's or entry's owner.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Notice::Booking(booking) | Notice::Reminder(booking) => booking.owner.as_deref(),
            Notice::WaitlistOffer(entry) | Notice::OfferExpired(entry) => entry.owner.as_deref(),
        }
    }

    /// The event name a stream gives it: `booking`, `waitlist_offer`, `offer_expired`,
    /// `reminder`.
    pub fn event(&self) -> &'static str {
        match self {
            Notice::Booking(_) => "booking",
            Notice::WaitlistOffer(_) => "waitlist_offer",
            Notice::OfferExpired(_) => "offer_expired",
            Notice::Reminder(_) => "reminder",
        }
    }

    /// The notice for a booking that went from `old` to `new`, if it is one an owner hears:
    /// made or changed status, owned, and not an offer (offers have their own notices).
    pub(crate) fn of_booking(old: Option<&Booking>, new: &Booking) -> Option<Notice> {
        let changed = old.is_none_or(|old| old.status != new.status);
        (changed && new.owner.is_some() && new.status != BookingStatus::Offered)
            .then(|| Notice::Booking(new.clone()))
    }
}

/// A callback told of every notice, in order per lot, with no lock of the lot held; it
/// should return quickly (hand the notice on).
pub type NoticeListener = Arc<dyn Fn(&Notice) + Send + Sync>;
