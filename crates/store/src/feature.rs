//! [`Feature`]: the parts of the state a store may not keep, and [`Unsupported`], the
//! refusal of a request that needs one.

use std::fmt;

/// A part of the state that a store may not keep (yet). Reservations and sensor counts are
/// not among them: every store keeps those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Time-window bookings and the reads of them (`book`, `getBooking`, `listBookings`,
    /// `findLots`, ...).
    Bookings,
    /// Gate lines on the sensor port (`ENTER`/`EXIT`).
    Gates,
    /// Waitlists and their offers.
    Waitlists,
    /// Drivers' accounts (registration and login).
    Accounts,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 4] = [
        Feature::Bookings,
        Feature::Gates,
        Feature::Waitlists,
        Feature::Accounts,
    ];

    /// What it is called in a refusal (and in docs/protocol.md).
    pub fn name(self) -> &'static str {
        match self {
            Feature::Bookings => "bookings",
            Feature::Gates => "gate lines (ENTER/EXIT)",
            Feature::Waitlists => "waitlists",
            Feature::Accounts => "drivers' accounts",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request refused because the server's store does not keep its feature. The ports
/// answer it as `UNAVAILABLE` with this text: retrying the same node does not help, another
/// configuration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported(pub Feature);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unsupported: {} are not kept by this server's store (docs/scaling.md lists what \
             each store keeps)",
            self.0
        )
    }
}

impl std::error::Error for Unsupported {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_feature() {
        for feature in Feature::ALL {
            let text = Unsupported(feature).to_string();
            assert!(text.starts_with("unsupported: "), "{text}");
            assert!(text.contains(feature.name()), "{text}");
        }
        assert!(
            Unsupported(Feature::Gates)
                .to_string()
                .contains("gate lines (ENTER/EXIT) are not kept")
        );
    }
}
