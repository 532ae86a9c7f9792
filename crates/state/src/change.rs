//! [`Change`]: one key of the state and its value, the unit in which the state is made
//! durable. A journal records each change as it happens, a snapshot lists one change per key,
//! and replaying them rebuilds the state; a change's old value undoes it.
//!
//! Every change is an assignment, never a delta ("plate P in lot A is held until t", "lot A's
//! count is 42"), so replaying a change that a snapshot already reflects is harmless: the
//! last assignment of each key wins.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::booking::Booking;
use crate::ids::{BookingId, LotId, Plate};

/// One key of the state and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// `plate`'s reservation in `lot`: held until `expires_at_ms` (Unix milliseconds, so it
    /// runs on across a restart), or none.
    Reservation {
        /// The lot.
        lot: LotId,
        /// The plate.
        plate: Plate,
        /// When it expires; `None` once cancelled.
        expires_at_ms: Option<u64>,
        /// The key id that made it, when access control is on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// `lot`'s running sensor count.
    Count {
        /// The lot.
        lot: LotId,
        /// The count, unclamped.
        counted: i64,
    },
    /// Booking `id`: its whole record, or none (never made, or forgotten).
    Booking {
        /// The booking, which names its lot.
        id: BookingId,
        /// Its record; its own id is `id`.
        booking: Option<Booking>,
    },
    /// The number `lot`'s next booking gets, at least: a snapshot carries it, so that a
    /// booking forgotten after its retention never has its id handed out again.
    BookingNumber {
        /// The lot.
        lot: LotId,
        /// The next number.
        next: u64,
    },
    /// Changes of one lot made as one (a car at the gate: the count, the booking it checks
    /// in to, the reservation it consumes), so that a replay never has one without the others.
    Batch {
        /// The lot every change is in.
        lot: LotId,
        /// The changes, applied in order.
        changes: Vec<Change>,
    },
}

impl Change {
    /// The lot the change is in.
    pub fn lot(&self) -> &LotId {
        match self {
            Change::Reservation { lot, .. }
            | Change::Count { lot, .. }
            | Change::BookingNumber { lot, .. }
            | Change::Batch { lot, .. } => lot,
            Change::Booking { id, .. } => id.lot(),
        }
    }
}

/// Where a ticket to a recorded change stands in its recorder's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Commit(pub u64);

/// The store cannot make changes durable now; the detail says why (for logs and replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Where a [`crate::ParkingState`] records its changes so that they outlive the process: the
/// durable store's journal.
pub trait Recorder: Send + Sync {
    /// Records that `redo` replaced `undo`. Called under the changed lot's lock, so changes
    /// of one lot are recorded in the order they happen. A refusal rolls the change back at
    /// once and the operation fails.
    fn record(&self, undo: &Change, redo: &Change) -> Result<Commit, Unavailable>;

    /// Waits, with no lock held, until the change recorded as `commit` is as durable as the
    /// store promises. `Err` means it is not and never will be: the recorder has rolled it
    /// back (with every change recorded after it).
    fn wait(&self, commit: Commit) -> Result<(), Unavailable>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn changes_round_trip_through_json() {
        let changes = [
            Change::Reservation {
                lot: LotId::new("A").unwrap(),
                plate: Plate::parse("7abc").unwrap(),
                expires_at_ms: Some(1_700_000_000_123),
                owner: None,
            },
            Change::Reservation {
                lot: LotId::new("A").unwrap(),
                plate: Plate::parse("X").unwrap(),
                expires_at_ms: None,
                owner: Some("kiosk-1".into()),
            },
            Change::Count {
                lot: LotId::new("B").unwrap(),
                counted: -3,
            },
            Change::Booking {
                id: crate::BookingId::parse("A.3").unwrap(),
                booking: None,
            },
            Change::BookingNumber {
                lot: LotId::new("A").unwrap(),
                next: 4,
            },
            Change::Batch {
                lot: LotId::new("A").unwrap(),
                changes: vec![Change::Count {
                    lot: LotId::new("A").unwrap(),
                    counted: 1,
                }],
            },
        ];
        for change in changes {
            let json = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
        }
        let json = r#"{"kind":"reservation","lot":"A","plate":"7abc","expires_at_ms":5}"#;
        match serde_json::from_str::<Change>(json).unwrap() {
            Change::Reservation { plate, .. } => assert_eq!(plate.as_str(), "7ABC"),
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<Change>(r#"{"kind":"count","lot":"A"}"#).is_err());
        assert!(
            serde_json::from_str::<Change>(r#"{"kind":"count","lot":"ALL","counted":1}"#).is_err()
        );
    }
}
