//! [`Availability`]: how full a lot is, in the words signs and apps show.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A lot's status in the Smart Data Models vocabulary for `OffStreetParking`: `open`,
/// `almostFull` (free at or below the lot's `almost_full_free` threshold), `full` (no free
/// space). Every port reports the same value, computed here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Availability {
    /// More free spaces than the threshold.
    Open,
    /// Some free spaces, at most the threshold.
    AlmostFull,
    /// No free space.
    Full,
}

impl Availability {
    /// The status of a lot with `free` spaces and an `almost_full_free` threshold.
    pub fn of(free: u32, almost_full_free: u32) -> Self {
        if free == 0 {
            Availability::Full
        } else if free <= almost_full_free {
            Availability::AlmostFull
        } else {
            Availability::Open
        }
    }

    /// The threshold a lot gets when none is configured: 10 % of its capacity, rounded down
    /// (a lot of fewer than 10 spaces is `open` until it is `full`).
    pub fn default_threshold(capacity: u32) -> u32 {
        capacity / 10
    }

    /// The word on the wire: `open`, `almostFull` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Open => "open",
            Availability::AlmostFull => "almostFull",
            Availability::Full => "full",
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_inclusive_and_zero_is_full() {
        assert_eq!(Availability::of(11, 10), Availability::Open);
        assert_eq!(Availability::of(10, 10), Availability::AlmostFull);
        assert_eq!(Availability::of(1, 10), Availability::AlmostFull);
        assert_eq!(Availability::of(0, 10), Availability::Full);
        // A threshold of 0 never says almost full.
        assert_eq!(Availability::of(1, 0), Availability::Open);
        assert_eq!(Availability::of(0, 0), Availability::Full);
    }

    #[test]
    fn the_default_threshold_is_a_tenth_rounded_down() {
        assert_eq!(Availability::default_threshold(100), 10);
        assert_eq!(Availability::default_threshold(55), 5);
        assert_eq!(Availability::default_threshold(9), 0);
    }

    #[test]
    fn the_wire_words_are_the_smart_data_models_ones() {
        for status in [
            Availability::Open,
            Availability::AlmostFull,
            Availability::Full,
        ] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(serde_json::from_str::<Availability>(&json).unwrap(), status);
        }
    }
}
