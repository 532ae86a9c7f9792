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
    // Nearly every reply is a scalar result in exactly the bytes `encode_json_reply` writes;
    // anything else (a list, an error, other spacing, a malformed reply) goes through
    // serde_json, which decides what it means or what is wrong with it.
    if let Some(envelope) = decode_scalar_reply(payload) {
        return Ok(envelope);
    }
    serde_json::from_slice(payload)
}

/// A successful reply whose result is a number, `true`, `false`, `null` or a plain string
/// (`42`, `"PONG"`), byte for byte as [`encode_json_reply`] writes it, in one look at each
/// byte: a load generator's reply to a `getAvailability` cost a serde struct pass of about
/// as many instructions as the server spent answering it. `None` for anything else; what
/// this accepts, serde_json decodes to the same envelope (the tests compare the two).
fn decode_scalar_reply(payload: &[u8]) -> Option<ReplyEnvelope<'_>> {
    let rest = payload.strip_prefix(b"{\"rpcId\":")?;
    let (rpc_id, rest) = match rest.strip_prefix(b"null") {
        Some(rest) => (None, rest),
        None => {
            let (digits, rest) = json_integer(rest)?;
            (Some(digits.parse().ok()?), rest)
        }
    };
    let rest = rest.strip_prefix(b",\"result\":")?;
    let (result, rest) = scalar(rest)?;
    let rest = rest.strip_prefix(b",\"error\":null")?;
    let (reason, rest) = match rest.strip_prefix(b",\"reason\":") {
        Some(rest) => {
            let (word, rest) = plain_string(rest)?;
            // Without its quotes; a plain string has nothing to unescape.
            (Some(Cow::Borrowed(&word[1..word.len() - 1])), rest)
        }
        None => (None, rest),
    };
    if rest != b"}" {
        return None;
    }
    let result = match result {
        "null" => None,
        raw => Some(serde_json::from_str::<&RawValue>(raw).ok()?),
    };
    Some(ReplyEnvelope {
        rpc_id,
        result,
        error: None,
        reason,
    })
}

/// A JSON integer without sign, fraction or exponent at the start of `bytes` (`0`, `42`; not
/// `042`), and what follows it.
fn json_integer(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || (len > 1 && bytes[0] == b'0') {
        return None;
    }
    let (digits, rest) = bytes.split_at(len);
    Some((std::str::from_utf8(digits).ok()?, rest))
}

/// A string of printable ASCII without quotes or backslashes, quotes included, at the start
/// of `bytes`, and what follows it.
fn plain_string(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let inner = bytes.strip_prefix(b"\"")?;
    let len = inner
        .iter()
        .take_while(|&&b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        .count();
    if inner.get(len) != Some(&b'"') {
        return None;
    }
    let (text, rest) = bytes.split_at(len + 2);
    Some((std::str::from_utf8(text).ok()?, rest))
}

/// A scalar result at the start of `bytes` (see [`decode_scalar_reply`]), and what follows.
fn scalar(bytes: &[u8]) -> Option<(&str, &[u8])> {
    for word in ["true", "false", "null"] {
        if let Some(rest) = bytes.strip_prefix(word.as_bytes()) {
            return Some((word, rest));
        }
    }
    if bytes.first() == Some(&b'"') {
        return plain_string(bytes);
    }
    json_integer(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json alone makes of `payload`, for comparison.
    fn by_serde(payload: &[u8]) -> Option<(Option<u32>, Option<String>, Option<String>)> {
        let envelope: ReplyEnvelope<'_> = serde_json::from_slice(payload).ok()?;
        Some((
            envelope.rpc_id,
            envelope.result.map(|raw| raw.get().to_owned()),
            envelope.reason.map(Cow::into_owned),
        ))
        .filter(|_| envelope.error.is_none())
    }

    #[test]
    fn a_scalar_reply_decodes_in_one_pass_as_serde_json_decodes_it() {
        for payload in [
            &br#"{"rpcId":7,"result":95,"error":null}"#[..],
            br#"{"rpcId":0,"result":0,"error":null}"#,
            br#"{"rpcId":4294967295,"result":true,"error":null}"#,
            br#"{"rpcId":1,"result":false,"error":null,"reason":"NOT_FOUND"}"#,
            br#"{"rpcId":null,"result":"PONG","error":null}"#,
            br#"{"rpcId":3,"result":null,"error":null}"#,
            br#"{"rpcId":3,"result":"a b~!","error":null}"#,
            br#"{"rpcId":3,"result":18446744073709551616,"error":null}"#,
        ] {
            let fast = decode_scalar_reply(payload).expect("a scalar reply");
            let fast = (
                fast.rpc_id,
                fast.result.map(|raw| raw.get().to_owned()),
                fast.reason.map(Cow::into_owned),
            );
            assert_eq!(
                Some(fast),
                by_serde(payload),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for payload in [
            // Not what the server writes, though serde_json may read it.
            &br#"{"rpcId":7, "result":95,"error":null}"#[..],
            br#"{"result":95,"rpcId":7,"error":null}"#,
            br#"{"rpcId":7,"result":[1],"error":null}"#,
            br#"{"rpcId":7,"result":-1,"error":null}"#,
            br#"{"rpcId":7,"result":1.5,"error":null}"#,
            br#"{"rpcId":7,"result":"a\"b","error":null}"#,
            br#"{"rpcId":7,"result":"\u00e9","error":null}"#,
            b"{\"rpcId\":7,\"result\":\"\xc3\xa9\",\"error\":null}",
            br#"{"rpcId":7,"result":null,"error":"BAD_ARGS: no"}"#,
            br#"{"rpcId":7,"result":true,"error":null,"reason":"A\\B"}"#,
            // Malformed: serde_json's error says what is wrong.
            br#"{"rpcId":07,"result":95,"error":null}"#,
            br#"{"rpcId":4294967296,"result":95,"error":null}"#,
            br#"{"rpcId":7,"result":095,"error":null}"#,
            br#"{"rpcId":7,"result":95,"error":null}}"#,
            br#"{"rpcId":7,"result":95,"error":null"#,
            br#"{"rpcId":7,"result":"PONG,"error":null}"#,
        ] {
            assert!(
                decode_scalar_reply(payload).is_none(),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        assert!(decode_json_reply(br#"{"rpcId":07,"result":95,"error":null}"#).is_err());
        let spaced = decode_json_reply(br#"{"rpcId":7, "result":95,"error":null}"#).unwrap();
        assert_eq!(spaced.result.map(RawValue::get), Some("95"));
    }
}
