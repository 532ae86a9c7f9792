//! Validated identifiers. A [`LotId`] or [`Plate`] that exists has passed its rules, so nothing
//! downstream checks them again.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::shown::shown;

/// Longest lot id.
pub const MAX_LOT_ID_LEN: usize = 32;

/// Longest plate.
pub const MAX_PLATE_LEN: usize = 16;

/// Defines a validated-name newtype: text (an `Arc<str>`, cheap to clone) that exists only
/// once its constructor accepted it, compared exactly, serialised as the text and checked
/// again when deserialised (`try_from` = the constructor, through `$text`).
macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $error:ty, |$text:ident| $parse:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;

            fn try_from($text: String) -> Result<Self, Self::Error> {
                $parse
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> Self {
                name.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_name! {
    /// A lot's id: 1 to 32 characters of `A-Z a-z 0-9 _ -`, compared exactly, and never `ALL`
    /// in any case (the pub/sub port's `SUBSCRIBE ALL` means every lot). Cheap to clone.
    LotId, LotIdError, |id| LotId::new(&id)
}

/// Why a string is not a valid lot id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LotIdError {
    /// The id is empty.
    Empty,
    /// The id is over [`MAX_LOT_ID_LEN`] bytes.
    TooLong(String),
    /// The id has a character outside `A-Z a-z 0-9 _ -`.
    BadCharacter(String),
    /// The id is `ALL`, which the pub/sub protocol reserves.
    Reserved(String),
}

impl fmt::Display for LotIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LotIdError::Empty => write!(f, "lot id is empty"),
            LotIdError::TooLong(id) => {
                write!(
                    f,
                    "lot id {} is longer than {MAX_LOT_ID_LEN} characters",
                    shown(id)
                )
            }
            LotIdError::BadCharacter(id) => write!(
                f,
                "lot id {} may only use the characters A-Z a-z 0-9 _ -",
                shown(id)
            ),
            LotIdError::Reserved(id) => write!(
                f,
                "lot id {} is reserved (SUBSCRIBE ALL means every lot)",
                shown(id)
            ),
        }
    }
}

impl std::error::Error for LotIdError {}

impl LotId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, LotIdError> {
        if id.is_empty() {
            return Err(LotIdError::Empty);
        }
        if id.len() > MAX_LOT_ID_LEN {
            return Err(LotIdError::TooLong(id.to_owned()));
        }
        if !id.bytes().all(is_name_byte) {
            return Err(LotIdError::BadCharacter(id.to_owned()));
        }
        if id.eq_ignore_ascii_case("ALL") {
            return Err(LotIdError::Reserved(id.to_owned()));
        }
        Ok(LotId(id.into()))
    }
}

/// A vehicle's plate: 1 to 16 characters of `A-Z a-z 0-9 -`, stored uppercase so that plates
/// compare case-insensitively. Stored inline: making one never allocates. Serialised as its
/// text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Plate {
    bytes: [u8; MAX_PLATE_LEN],
    len: u8,
}

/// Why a string is not a valid plate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlateError {
    /// The plate is empty.
    Empty,
    /// The plate is over [`MAX_PLATE_LEN`] characters.
    TooLong(String),
    /// The plate has a character outside `A-Z a-z 0-9 -`.
    BadCharacter(String),
}

impl fmt::Display for PlateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlateError::Empty => write!(f, "plate is empty"),
            PlateError::TooLong(plate) => {
                write!(
                    f,
                    "plate {} is longer than {MAX_PLATE_LEN} characters",
                    shown(plate)
                )
            }
            PlateError::BadCharacter(plate) => write!(
                f,
                "plate {} may only use the characters A-Z a-z 0-9 -",
                shown(plate)
            ),
        }
    }
}

impl std::error::Error for PlateError {}

impl Plate {
    /// Validates `plate` and normalises it to uppercase.
    pub fn parse(plate: &str) -> Result<Self, PlateError> {
        if plate.is_empty() {
            return Err(PlateError::Empty);
        }
        if plate.len() > MAX_PLATE_LEN {
            return Err(PlateError::TooLong(plate.to_owned()));
        }
        let mut bytes = [0; MAX_PLATE_LEN];
        for (slot, byte) in bytes.iter_mut().zip(plate.bytes()) {
            if !(byte.is_ascii_alphanumeric() || byte == b'-') {
                return Err(PlateError::BadCharacter(plate.to_owned()));
            }
            *slot = byte.to_ascii_uppercase();
        }
        Ok(Plate {
            bytes,
            // At most MAX_PLATE_LEN, checked above.
            len: plate.len() as u8,
        })
    }

    /// The normalised (uppercase) plate.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this is always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Plate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Plate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Plate::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plate({})", self.as_str())
    }
}

/// Longest spot id, zone or feature name.
pub const MAX_NAME_LEN: usize = 32;

/// Why a string is not a valid spot id, zone or feature name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// What the string was to name: `spot id`, `zone`, `feature`.
    pub of: &'static str,
    /// The string, as given.
    pub text: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "{} is empty", self.of)
        } else {
            write!(
                f,
                "{} {} must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ -",
                self.of,
                shown(&self.text)
            )
        }
    }
}

impl std::error::Error for NameError {}

/// The characters of lot ids and every other name: `A-Z a-z 0-9 _ -`.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// Checks the rules every name shares with lot ids: 1 to 32 characters of `A-Z a-z 0-9 _ -`.
fn checked_name(text: &str, of: &'static str) -> Result<Arc<str>, NameError> {
    let valid = !text.is_empty() && text.len() <= MAX_NAME_LEN && text.bytes().all(is_name_byte);
    if valid {
        Ok(text.into())
    } else {
        Err(NameError {
            of,
            text: text.to_owned(),
        })
    }
}

validated_name! {
    /// A named space in a lot (`A-EV1`), bookable on its own: 1 to 32 characters of
    /// `A-Z a-z 0-9 _ -`, compared exactly, unique within its lot.
    SpotId, NameError, |text| SpotId::new(&text)
}

impl SpotId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, NameError> {
        checked_name(id, "spot id").map(SpotId)
    }
}

impl std::borrow::Borrow<str> for SpotId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

validated_name! {
    /// A zone (`north`) or a feature (`ev`, `covered`) of a lot or spot: 1 to 32 characters of
    /// `A-Z a-z 0-9 _ -`, compared exactly.
    Label, NameError, |text| Label::new(&text, "label")
}

impl Label {
    /// Validates `text` as a zone or feature name; `of` says which, for the error.
    pub fn new(text: &str, of: &'static str) -> Result<Self, NameError> {
        checked_name(text, of).map(Label)
    }
}

/// A booking's id: its lot and its number there, written `<lotId>.<n>` (`A.17`). Lot ids have
/// no `.`, so the text names both; a booking is found without any index across lots, and two
/// lots never hand out the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BookingId {
    lot: LotId,
    seq: u64,
}

/// A string that is not `<lotId>.<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingIdError(pub String);

impl fmt::Display for BookingIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "booking id {} is not <lotId>.<number>", shown(&self.0))
    }
}

impl std::error::Error for BookingIdError {}

impl BookingId {
    /// The id of booking number `seq` in `lot`.
    pub fn new(lot: LotId, seq: u64) -> Self {
        BookingId { lot, seq }
    }

    /// Parses `<lotId>.<n>`.
    pub fn parse(text: &str) -> Result<Self, BookingIdError> {
        let bad = || BookingIdError(text.to_owned());
        let (lot, seq) = text.split_once('.').ok_or_else(bad)?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(BookingId {
            lot: LotId::new(lot).map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }

    /// The lot the booking is in.
    pub fn lot(&self) -> &LotId {
        &self.lot
    }

    /// Its number within the lot.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl TryFrom<String> for BookingId {
    type Error = BookingIdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        BookingId::parse(&text)
    }
}

impl From<BookingId> for String {
    fn from(id: BookingId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.lot, self.seq)
    }
}

/// A waitlist entry's id: its lot and its number there, written `<lotId>.w<n>` (`A.w3`), so
/// that it names its lot as a booking id does and never reads as one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WaitId {
    lot: LotId,
    seq: u64,
}

/// A string that is not `<lotId>.w<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitIdError(pub String);

impl fmt::Display for WaitIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "waitlist id {} is not <lotId>.w<number>", shown(&self.0))
    }
}

impl std::error::Error for WaitIdError {}

impl WaitId {
    /// The id of entry number `seq` in `lot`'s waitlist.
    pub fn new(lot: LotId, seq: u64) -> Self {
        WaitId { lot, seq }
    }

    /// Parses `<lotId>.w<n>`.
    pub fn parse(text: &str) -> Result<Self, WaitIdError> {
        let bad = || WaitIdError(text.to_owned());
        let (lot, seq) = text.split_once(".w").ok_or_else(bad)?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(WaitId {
            lot: LotId::new(lot).map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }

    /// The lot whose waitlist the entry is on.
    pub fn lot(&self) -> &LotId {
        &self.lot
    }

    /// Its number within the lot's waitlist: later entries have higher numbers.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl TryFrom<String> for WaitId {
    type Error = WaitIdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        WaitId::parse(&text)
    }
}

impl From<WaitId> for String {
    fn from(id: WaitId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for WaitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.w{}", self.lot, self.seq)
    }
}

/// Shortest username.
pub const MIN_USERNAME_LEN: usize = 3;
/// Longest username.
pub const MAX_USERNAME_LEN: usize = 32;

/// A driver's account name: 3 to 32 characters of `a-z 0-9 _ . -`. Lowercase only, so that
/// two accounts never differ by case alone (and nobody mistakes `Alice` for `alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(Arc<str>);

/// A string that breaks the username rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameError(pub String);

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "username {} must be {MIN_USERNAME_LEN} to {MAX_USERNAME_LEN} characters of a-z 0-9 _ . -",
            shown(&self.0)
        )
    }
}

impl std::error::Error for UsernameError {}

impl Username {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, UsernameError> {
        let valid = (MIN_USERNAME_LEN..=MAX_USERNAME_LEN).contains(&name.len())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        if valid {
            Ok(Username(name.into()))
        } else {
            Err(UsernameError(name.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = UsernameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Username::new(&name)
    }
}

impl From<Username> for String {
    fn from(name: Username) -> Self {
        name.as_str().to_owned()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_normalise_and_validate() {
        let plate = Plate::parse("7abc-12").unwrap();
        assert_eq!(plate.as_str(), "7ABC-12");
        assert_eq!(plate, Plate::parse("7ABC-12").unwrap());
        assert!(Plate::parse(&"X".repeat(16)).is_ok());
        assert_eq!(Plate::parse(""), Err(PlateError::Empty));
        assert!(matches!(
            Plate::parse(&"X".repeat(17)),
            Err(PlateError::TooLong(_))
        ));
        assert!(matches!(
            Plate::parse("AB C"),
            Err(PlateError::BadCharacter(_))
        ));
        assert!(matches!(
            Plate::parse("ÄB"),
            Err(PlateError::BadCharacter(_))
        ));
        assert!(matches!(
            Plate::parse("A_B"),
            Err(PlateError::BadCharacter(_))
        ));
    }

    #[test]
    fn lot_ids_validate() {
        assert_eq!(LotId::new("North-1").unwrap().as_str(), "North-1");
        assert_eq!(LotId::new(""), Err(LotIdError::Empty));
        assert!(matches!(LotId::new("all"), Err(LotIdError::Reserved(_))));
        assert!(matches!(
            LotId::new("a b"),
            Err(LotIdError::BadCharacter(_))
        ));
        assert!(matches!(
            LotId::new(&"a".repeat(33)),
            Err(LotIdError::TooLong(_))
        ));
        let parsed: Result<LotId, _> = serde_json::from_str("\"\"");
        assert!(parsed.is_err());
    }

    /// The messages reach peers (BAD_PLATE details) and operators (configuration errors).
    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(PlateError::Empty.to_string(), "plate is empty");
        let long = "X".repeat(17);
        assert_eq!(
            Plate::parse(&long).unwrap_err().to_string(),
            format!("plate {long:?} is longer than 16 characters")
        );
        assert_eq!(
            Plate::parse("A B").unwrap_err().to_string(),
            "plate \"A B\" may only use the characters A-Z a-z 0-9 -"
        );
        assert_eq!(LotIdError::Empty.to_string(), "lot id is empty");
        let long = "a".repeat(33);
        assert_eq!(
            LotId::new(&long).unwrap_err().to_string(),
            format!("lot id {long:?} is longer than 32 characters")
        );
        assert_eq!(
            LotId::new("a b").unwrap_err().to_string(),
            "lot id \"a b\" may only use the characters A-Z a-z 0-9 _ -"
        );
        assert_eq!(
            LotId::new("All").unwrap_err().to_string(),
            "lot id \"All\" is reserved (SUBSCRIBE ALL means every lot)"
        );
    }

    #[test]
    fn ids_print_and_serialise_as_their_text() {
        let plate = Plate::parse("ab-1").unwrap();
        assert_eq!(plate.to_string(), "AB-1");
        assert_eq!(format!("{plate:?}"), "Plate(AB-1)");
        let lot = LotId::new("North-1").unwrap();
        assert_eq!(lot.to_string(), "North-1");
        assert_eq!(serde_json::to_string(&lot).unwrap(), "\"North-1\"");
        assert_eq!(String::from(lot), "North-1");
    }

    #[test]
    fn names_and_booking_ids_validate() {
        assert_eq!(SpotId::new("A-EV1").unwrap().as_str(), "A-EV1");
        assert_eq!(
            Label::new("covered", "feature").unwrap().to_string(),
            "covered"
        );
        assert_eq!(SpotId::new("").unwrap_err().to_string(), "spot id is empty");
        assert_eq!(
            Label::new("ev charger", "feature").unwrap_err().to_string(),
            "feature \"ev charger\" must be 1 to 32 characters of A-Z a-z 0-9 _ -"
        );
        assert!(SpotId::new(&"s".repeat(33)).is_err());
        // Unlike lot ids, spots and labels may be called ALL.
        assert!(SpotId::new("ALL").is_ok());

        let id = BookingId::parse("North-1.17").unwrap();
        assert_eq!((id.lot().as_str(), id.seq()), ("North-1", 17));
        assert_eq!(id.to_string(), "North-1.17");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"North-1.17\"");
        assert_eq!(
            serde_json::from_str::<BookingId>("\"A.0\"").unwrap(),
            BookingId::new(LotId::new("A").unwrap(), 0)
        );
        for bad in [
            "",
            "A",
            "A.",
            ".1",
            "A.1.2",
            "A.x",
            "A.-1",
            "A.+1",
            "ALL.1",
            "A.99999999999999999999",
        ] {
            assert!(BookingId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            BookingId::parse("A.x").unwrap_err().to_string(),
            "booking id \"A.x\" is not <lotId>.<number>"
        );
    }

    #[test]
    fn waitlist_ids_and_usernames_validate() {
        let id = WaitId::parse("North-1.w3").unwrap();
        assert_eq!((id.lot().as_str(), id.seq()), ("North-1", 3));
        assert_eq!(id.to_string(), "North-1.w3");
        for bad in ["", "A.3", "A.w", "A.wx", ".w1", "A.w1.2", "ALL.w1", "A.w+1"] {
            assert!(WaitId::parse(bad).is_err(), "{bad}");
        }
        assert!(BookingId::parse("A.w3").is_err());

        for good in ["bob", "alice.smith-2", "a_b", &"x".repeat(32)] {
            assert_eq!(Username::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "ab",
            "Alice",
            "al ice",
            "al@ice",
            &"x".repeat(33),
            "é123",
        ] {
            assert!(Username::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Username::new("Al").unwrap_err().to_string(),
            "username \"Al\" must be 3 to 32 characters of a-z 0-9 _ . -"
        );
    }
}
