//! The RPC port's error codes and error replies.

use std::fmt;
use std::str::FromStr;

use state::{BookingError, StateError, UnknownLot, WaitlistError, shown};

/// The protocol's error codes; `Display` prints the code exactly as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not UTF-8, not JSON, not an object, or `rpcId`/`method`/`args` missing or mistyped.
    BadRequest,
    /// The method or verb is not one the server knows.
    UnknownMethod,
    /// Wrong number or type of arguments.
    BadArgs,
    /// No lot has that id.
    UnknownLot,
    /// The plate breaks the plate rules.
    BadPlate,
    /// The frame's length prefix is over the limit; the connection is closed after this reply.
    FrameTooLarge,
    /// The server is at its connection limit; the connection is closed after this reply.
    Busy,
    /// The change could not be made durable (a failing disk, the database unreachable), so it
    /// was not made; reads still work. Retrying later is safe.
    Unavailable,
    /// The lot has no bookable space over the window (or, for a window that includes now,
    /// no free space now).
    Full,
    /// The named spot is booked at some time in the window.
    SpotTaken,
    /// The window breaks the booking rules (empty, in the past, too long, too far ahead).
    BadWindow,
    /// The lot has no spot with that id.
    UnknownSpot,
    /// No booking has that id.
    UnknownBooking,
    /// Check-in is not open yet.
    NotDue,
    /// The booking's status does not allow it (a check-in of a cancelled one, say).
    BadState,
    /// `joinWaitlist` for a window that can be booked now: book it instead.
    NotFull,
    /// The plate already waits for an overlapping window (the detail names the entry).
    AlreadyWaiting,
    /// The lot's waitlist holds `max_waitlist_per_lot` entries already.
    WaitlistFull,
    /// No waitlist entry has that id (an entry whose offer ran out is gone).
    UnknownEntry,
    /// The entry has no live offer to accept yet.
    NoOffer,
    /// Keys are configured and the connection has not authenticated (or sent a wrong token);
    /// after 5 wrong tokens the connection is closed after this reply.
    Unauthorized,
    /// The connection's key may not call this method.
    Forbidden,
}

impl ErrorCode {
    /// Every code, for parsing.
    const ALL: [ErrorCode; 22] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownMethod,
        ErrorCode::BadArgs,
        ErrorCode::UnknownLot,
        ErrorCode::BadPlate,
        ErrorCode::FrameTooLarge,
        ErrorCode::Busy,
        ErrorCode::Unavailable,
        ErrorCode::Full,
        ErrorCode::SpotTaken,
        ErrorCode::BadWindow,
        ErrorCode::UnknownSpot,
        ErrorCode::UnknownBooking,
        ErrorCode::NotDue,
        ErrorCode::BadState,
        ErrorCode::NotFull,
        ErrorCode::AlreadyWaiting,
        ErrorCode::WaitlistFull,
        ErrorCode::UnknownEntry,
        ErrorCode::NoOffer,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
    ];

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownMethod => "UNKNOWN_METHOD",
            ErrorCode::BadArgs => "BAD_ARGS",
            ErrorCode::UnknownLot => "UNKNOWN_LOT",
            ErrorCode::BadPlate => "BAD_PLATE",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::Busy => "BUSY",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Full => "FULL",
            ErrorCode::SpotTaken => "SPOT_TAKEN",
            ErrorCode::BadWindow => "BAD_WINDOW",
            ErrorCode::UnknownSpot => "UNKNOWN_SPOT",
            ErrorCode::UnknownBooking => "UNKNOWN_BOOKING",
            ErrorCode::NotDue => "NOT_DUE",
            ErrorCode::BadState => "BAD_STATE",
            ErrorCode::NotFull => "NOT_FULL",
            ErrorCode::AlreadyWaiting => "ALREADY_WAITING",
            ErrorCode::WaitlistFull => "WAITLIST_FULL",
            ErrorCode::UnknownEntry => "UNKNOWN_ENTRY",
            ErrorCode::NoOffer => "NO_OFFER",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the protocol's error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown error code {:?}", self.0)
    }
}

impl std::error::Error for UnknownErrorCode {}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == code)
            .ok_or_else(|| UnknownErrorCode(code.to_owned()))
    }
}

/// An error reply: a code and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// What kind of error.
    pub code: ErrorCode,
    /// What exactly was wrong, for the humans reading logs.
    pub detail: String,
}

impl WireError {
    /// An error with the given code and detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        WireError {
            code,
            detail: detail.into(),
        }
    }

    /// Parses the JSON reply's `"CODE: detail"` form.
    pub fn parse_json_form(text: &str) -> Result<Self, UnknownErrorCode> {
        let (code, detail) = text.split_once(':').unwrap_or((text, ""));
        Ok(WireError::new(code.parse()?, detail.trim_start()))
    }
}

/// JSON form: `CODE: detail`.
impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for WireError {}

/// A refused booking operation as the ports send it: the RPC port's reply error, and the
/// HTTP port's `{"error", "detail"}` (which maps the code to a status). One mapping, so that
/// the two ports cannot name the same refusal differently.
impl From<BookingError> for WireError {
    fn from(error: BookingError) -> Self {
        let code = match &error {
            BookingError::UnknownLot(_) => ErrorCode::UnknownLot,
            BookingError::UnknownSpot { .. } => ErrorCode::UnknownSpot,
            BookingError::UnknownBooking(_) => ErrorCode::UnknownBooking,
            BookingError::BadWindow(_) => ErrorCode::BadWindow,
            BookingError::Full { .. } | BookingError::NoSpaceNow => ErrorCode::Full,
            BookingError::SpotTaken => ErrorCode::SpotTaken,
            BookingError::NotDue { .. } => ErrorCode::NotDue,
            BookingError::BadState(_) => ErrorCode::BadState,
            BookingError::Unavailable(_) => ErrorCode::Unavailable,
        };
        WireError::new(code, error.to_string())
    }
}

/// A refused waitlist operation as the ports send it (see the booking conversion).
impl From<WaitlistError> for WireError {
    fn from(error: WaitlistError) -> Self {
        let code = match &error {
            WaitlistError::UnknownLot(_) => ErrorCode::UnknownLot,
            WaitlistError::UnknownSpot { .. } => ErrorCode::UnknownSpot,
            WaitlistError::BadWindow(_) => ErrorCode::BadWindow,
            WaitlistError::NotFull => ErrorCode::NotFull,
            WaitlistError::AlreadyWaiting(_) => ErrorCode::AlreadyWaiting,
            WaitlistError::WaitlistFull { .. } => ErrorCode::WaitlistFull,
            WaitlistError::UnknownEntry(_) => ErrorCode::UnknownEntry,
            WaitlistError::NoOffer => ErrorCode::NoOffer,
            WaitlistError::Unavailable(_) => ErrorCode::Unavailable,
        };
        WireError::new(code, error.to_string())
    }
}

impl From<UnknownLot> for WireError {
    fn from(UnknownLot(lot): UnknownLot) -> Self {
        WireError::new(
            ErrorCode::UnknownLot,
            format!("no lot with id {}", shown(&lot)),
        )
    }
}

impl From<StateError> for WireError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::UnknownLot(lot) => lot.into(),
            StateError::Unavailable(why) => WireError::new(ErrorCode::Unavailable, why.to_string()),
        }
    }
}

/// A JSON request that could not be decoded, with the `rpcId` to echo if it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRequest {
    /// The request's id, when it was present and valid.
    pub rpc_id: Option<u32>,
    /// Why it was rejected.
    pub error: WireError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_back() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse(), Ok(code));
        }
        assert!("bad_request".parse::<ErrorCode>().is_err());
        assert_eq!(
            WireError::parse_json_form("NOPE: x")
                .unwrap_err()
                .to_string(),
            "unknown error code \"NOPE\""
        );
    }
}
