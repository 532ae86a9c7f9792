//! Successful RPC results, and the JSON and text replies that carry them or an error.

use std::borrow::Cow;
use std::io::Write;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use state::{Availability, Booking, CancelOutcome, LotOffer, ReserveOutcome, WaitEntry};

use super::error::WireError;

/// One lot's counts, as `getLots` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotStatus<'a> {
    /// The lot's id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Total spaces.
    pub capacity: u32,
    /// Spaces the sensors report as taken.
    pub occupied: u32,
    /// The sensors' running count, unclamped (a drifting gate counter shows here); 0 from a
    /// server that predates it.
    #[serde(default)]
    pub counted: i64,
    /// Live (unexpired) reservations.
    pub reserved: u32,
    /// Spaces held by confirmed bookings whose window includes now; 0 from a server that
    /// predates bookings.
    #[serde(default)]
    pub booked: u32,
    /// `max(0, capacity - occupied - reserved - booked)`.
    pub free: u32,
    /// `open`, `almostFull` or `full`; absent from a server that predates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Availability>,
}

/// A successful result, in the shape shared by the JSON and text replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `getLots`.
    Lots(Vec<LotStatus<'a>>),
    /// `getAvailability`: free spaces.
    Free(u32),
    /// `reserve`.
    Reserve(ReserveOutcome),
    /// `cancel`, `cancelBooking`, `leaveWaitlist`.
    Cancel(CancelOutcome),
    /// `book`, `getBooking`, `checkIn`, `acceptOffer`: the booking.
    Booking(Booking),
    /// `listBookings`, `myBookings`.
    Bookings(Vec<Booking>),
    /// `joinWaitlist`: the entry.
    Entry(WaitEntry),
    /// `myWaitlist`.
    Entries(Vec<WaitEntry>),
    /// `findLots`.
    Offers(Vec<LotOffer>),
    /// `PING`.
    Pong,
    /// `auth`: the connection is now this key.
    Authenticated(KeyGrant<'a>),
}

/// Who an `auth` made the connection: `{"id": "kiosk-1", "role": "client"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant<'a> {
    /// The key's id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Its role: `viewer`, `client`, `sensor` or `operator`.
    #[serde(borrow)]
    pub role: Cow<'a, str>,
}

impl Reply<'_> {
    /// Why a `reserve` or `cancel` changed nothing: the JSON reply's `reason` (next to
    /// `"result":false`) and the text reply's word.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Reply::Reserve(outcome) => outcome.reason(),
            Reply::Cancel(CancelOutcome::NotFound) => Some("NOT_FOUND"),
            _ => None,
        }
    }
}

/// The JSON `result` value: `reserve` and `cancel` collapse to booleans (the reply's
/// `reason` says why a `false`).
impl Serialize for Reply<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Lots(lots) => lots.serialize(serializer),
            Reply::Free(free) => serializer.serialize_u32(*free),
            Reply::Reserve(outcome) => {
                serializer.serialize_bool(*outcome == ReserveOutcome::Reserved)
            }
            Reply::Cancel(outcome) => {
                serializer.serialize_bool(*outcome == CancelOutcome::Cancelled)
            }
            Reply::Booking(booking) => booking.serialize(serializer),
            Reply::Bookings(bookings) => bookings.serialize(serializer),
            Reply::Entry(entry) => entry.serialize(serializer),
            Reply::Entries(entries) => entries.serialize(serializer),
            Reply::Offers(offers) => offers.serialize(serializer),
            Reply::Pong => serializer.serialize_str("PONG"),
            Reply::Authenticated(grant) => grant.serialize(serializer),
        }
    }
}

/// Serialises into a `Vec`, which cannot fail for the protocol's types (plain strings,
/// integers, sequences and structs; no maps with non-string keys).
pub(crate) fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Appends a JSON reply (`{"rpcId":..,"result":..,"error":..}`) to `out`.
///
/// The envelope's keys are fixed, so they are written as they are; only the values go
/// through serde_json (which writes `42`, `"PONG"`, escapes an error's text, and so on).
/// This is the per-request path of every JSON request: a struct serialiser would check
/// every key for characters to escape, for about a seventh of a `getAvailability`'s cost.
pub fn encode_json_reply(
    out: &mut Vec<u8>,
    rpc_id: Option<u32>,
    result: Result<&Reply<'_>, &WireError>,
) {
    out.extend_from_slice(b"{\"rpcId\":");
    write_json(out, &rpc_id);
    match result {
        Ok(reply) => {
            out.extend_from_slice(b",\"result\":");
            write_json(out, reply);
            out.extend_from_slice(b",\"error\":null");
            // Additive: clients that read only `result` see the same `false` as before.
            if let Some(reason) = reply.reason() {
                out.extend_from_slice(b",\"reason\":");
                write_json(out, &reason);
            }
        }
        Err(error) => {
            out.extend_from_slice(b",\"result\":null,\"error\":");
            write_json(out, &error.to_string());
        }
    }
    out.push(b'}');
}

/// Appends a text reply (`PONG`, `12`, `OK`, `FULL`, `OK kiosk-1 client`, `ERR BAD_PLATE ...`;
/// a lot list, a booking, a waitlist entry or a list of them as their JSON) to `out`.
pub fn encode_text_reply(out: &mut Vec<u8>, result: Result<&Reply<'_>, &WireError>) {
    let word: &[u8] = match result {
        Ok(Reply::Lots(lots)) => return write_json(out, lots),
        Ok(Reply::Booking(booking)) => return write_json(out, booking),
        Ok(Reply::Bookings(bookings)) => return write_json(out, bookings),
        Ok(Reply::Entry(entry)) => return write_json(out, entry),
        Ok(Reply::Entries(entries)) => return write_json(out, entries),
        Ok(Reply::Offers(offers)) => return write_json(out, offers),
        Ok(Reply::Free(free)) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{free}");
            return;
        }
        Ok(Reply::Reserve(ReserveOutcome::Reserved) | Reply::Cancel(CancelOutcome::Cancelled)) => {
            b"OK"
        }
        Ok(refused @ (Reply::Reserve(_) | Reply::Cancel(_))) => {
            refused.reason().unwrap_or_default().as_bytes()
        }
        Ok(Reply::Pong) => b"PONG",
        Ok(Reply::Authenticated(KeyGrant { id, role })) => {
            let _ = write!(out, "OK {id} {role}");
            return;
        }
        Err(error) => {
            let _ = write!(out, "ERR {} {}", error.code, error.detail);
            return;
        }
    };
    out.extend_from_slice(word);
}

/// A JSON reply as a client receives it; `result` stays raw until the caller, who knows which
/// method it called, decodes it.
#[derive(Debug, Deserialize)]
pub struct ReplyEnvelope<'a> {
    /// The echoed request id (`null` when the server could not read one).
    #[serde(rename = "rpcId")]
    pub rpc_id: Option<u32>,
    /// The method's result, `null` on error.
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    /// `"CODE: detail"`, or `null` on success.
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
    /// Why a `reserve` or `cancel` answered `false` (`FULL`, `EXISTS`, `NOT_FOUND`); absent
    /// otherwise, and from a server that predates it.
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
}

/// Decodes a JSON reply payload.
pub fn decode_json_reply(payload: &[u8]) -> Result<ReplyEnvelope<'_>, serde_json::Error> {
    serde_json::from_slice(payload)
}
