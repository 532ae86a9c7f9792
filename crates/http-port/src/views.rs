//! What the booking, waitlist and account routes send and take, as HTTP spells it: field
//! names in camelCase, and times as RFC 3339 strings (`2026-12-01T16:00:00Z`) where the RPC
//! port writes Unix seconds. The records themselves are the state's; only their spelling is
//! here.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use std::io::Write;

use state::{Account, Booking, LotOffer, Notice, WaitEntry, shown};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use framing::rpc::ErrorCode;

/// Unix seconds as RFC 3339, in UTC.
pub(crate) fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .and_then(|at| at.format(&Rfc3339).ok())
        // Beyond year 9999: no record holds such a time (windows are checked on the way in).
        .unwrap_or_else(|| unix.to_string())
}

/// An RFC 3339 time from a request, as Unix seconds. Any offset is taken (`+02:00` as well
/// as `Z`); a fraction of a second is refused unless it is zero (a browser's
/// `toISOString()` writes `.000`): the booking rules work in whole seconds, and rounding a
/// window would book other seconds than the ones asked for.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<u64, ApiError> {
    let bad = |why: &str| {
        ApiError::rpc(
            ErrorCode::BadArgs,
            format!(
                "{field} must be an RFC 3339 time such as 2026-12-01T16:00:00Z ({why}), got {}",
                shown(text)
            ),
        )
    };
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad("not one"))?;
    if at.nanosecond() != 0 {
        return Err(bad("whole seconds only"));
    }
    u64::try_from(at.unix_timestamp()).map_err(|_| bad("before 1970"))
}

/// Appends `notice` as one Server-Sent Event of a driver's stream (`GET /v1/me/events`):
/// `event: booking` (or `waitlist_offer`, `offer_expired`, `reminder`) and `data:` the
/// booking or waitlist entry as the routes show it. Called by the broker, on the thread that
/// made the change, only when a stream of the notice's owner is open.
pub fn encode_notice(notice: &Notice, out: &mut Vec<u8>) {
    let mark = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "event: {}\ndata: ", notice.event());
    // serde_json writes no raw newline, so the data stays one line.
    let written = match notice {
        Notice::Booking(booking) | Notice::Reminder(booking) => {
            serde_json::to_writer(&mut *out, &BookingView::from(booking))
        }
        Notice::WaitlistOffer(entry) | Notice::OfferExpired(entry) => {
            serde_json::to_writer(&mut *out, &EntryView::from(entry))
        }
    };
    if written.is_err() {
        out.truncate(mark);
        return;
    }
    out.extend_from_slice(b"\n\n");
}

/// A booking as HTTP shows it.
#[derive(Debug, Serialize)]
pub(crate) struct BookingView<'a> {
    id: String,
    lot: &'a str,
    spot: Option<&'a str>,
    plate: &'a str,
    start: String,
    end: String,
    status: &'static str,
    owner: Option<&'a str>,
    overstay: bool,
    inside: bool,
    #[serde(rename = "offeredUntil", skip_serializing_if = "Option::is_none")]
    offered_until: Option<String>,
}

impl<'a> From<&'a Booking> for BookingView<'a> {
    fn from(booking: &'a Booking) -> Self {
        BookingView {
            id: booking.id.to_string(),
            lot: booking.lot().as_str(),
            spot: booking.spot.as_ref().map(|spot| spot.as_str()),
            plate: booking.plate.as_str(),
            start: rfc3339(booking.window.start),
            end: rfc3339(booking.window.end),
            status: booking.status.as_str(),
            owner: booking.owner.as_deref(),
            overstay: booking.overstay,
            inside: booking.inside,
            offered_until: booking.offered_until.map(rfc3339),
        }
    }
}

/// A waitlist entry as HTTP shows it; `status` is `WAITING` or `OFFERED`.
#[derive(Debug, Serialize)]
pub(crate) struct EntryView<'a> {
    id: String,
    lot: &'a str,
    spot: Option<&'a str>,
    plate: &'a str,
    start: String,
    end: String,
    owner: Option<&'a str>,
    #[serde(rename = "joinedAt")]
    joined_at: String,
    status: &'static str,
    offer: Option<OfferView>,
}

/// An entry's live offer: the `OFFERED` booking holding its space, and until when.
#[derive(Debug, Serialize)]
struct OfferView {
    booking: String,
    #[serde(rename = "expiresAt")]
    expires_at: String,
}

impl<'a> From<&'a WaitEntry> for EntryView<'a> {
    fn from(entry: &'a WaitEntry) -> Self {
        EntryView {
            id: entry.id.to_string(),
            lot: entry.lot().as_str(),
            spot: entry.spot.as_ref().map(|spot| spot.as_str()),
            plate: entry.plate.as_str(),
            start: rfc3339(entry.window.start),
            end: rfc3339(entry.window.end),
            owner: entry.owner.as_deref(),
            joined_at: rfc3339(entry.joined_at),
            status: if entry.offer.is_some() {
                "OFFERED"
            } else {
                "WAITING"
            },
            offer: entry.offer.as_ref().map(|offer| OfferView {
                booking: offer.booking.to_string(),
                expires_at: rfc3339(offer.expires_at),
            }),
        }
    }
}

/// A lot that can take a booking over the queried window: the state's [`LotOffer`] (it has
/// no times), with the window it was asked for.
#[derive(Debug, Serialize)]
pub(crate) struct LotOfferView<'a> {
    #[serde(flatten)]
    offer: &'a LotOffer,
    start: &'a str,
    end: &'a str,
}

impl<'a> LotOfferView<'a> {
    pub(crate) fn new(offer: &'a LotOffer, start: &'a str, end: &'a str) -> Self {
        LotOfferView { offer, start, end }
    }
}

/// A driver's account: never its hash.
#[derive(Debug, Serialize)]
pub(crate) struct AccountView<'a> {
    username: &'a str,
    role: &'static str,
    #[serde(rename = "createdAt")]
    created_at: String,
}

impl<'a> From<&'a Account> for AccountView<'a> {
    fn from(account: &'a Account) -> Self {
        AccountView {
            username: account.username.as_str(),
            role: accounts::DRIVER_ROLE,
            created_at: rfc3339(account.created_at),
        }
    }
}

/// A login's answer.
#[derive(Debug, Serialize)]
pub(crate) struct LoginView {
    pub(crate) token: String,
    #[serde(rename = "expiresAt")]
    pub(crate) expires_at: String,
}

/// `POST /v1/bookings` and `POST /v1/waitlist`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BookingBody<'a> {
    #[serde(borrow)]
    pub(crate) lot: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) spot: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) plate: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) start: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) end: Cow<'a, str>,
}

/// `POST /v1/auth/register` and `POST /v1/auth/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials<'a> {
    #[serde(borrow)]
    pub(crate) username: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) password: Cow<'a, str>,
}

/// The body of a request as `T`: 400 `BAD_REQUEST` when it is not JSON, `BAD_ARGS` when
/// its fields are not `T`'s (missing, unknown or mistyped), with `example` to say what is.
pub(crate) fn body<'a, T: Deserialize<'a>>(body: &'a [u8], example: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        let code = match error.classify() {
            serde_json::error::Category::Data => ErrorCode::BadArgs,
            _ => ErrorCode::BadRequest,
        };
        // serde's message may quote the peer's field names: shown cuts it short.
        ApiError::rpc(
            code,
            format!("the body must be {example}: {}", shown(&error.to_string())),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_go_both_ways_and_odd_ones_are_refused() {
        assert_eq!(rfc3339(1_796_140_800), "2026-12-01T16:00:00Z");
        assert_eq!(
            parse_time("start", "2026-12-01T16:00:00Z"),
            Ok(1_796_140_800)
        );
        assert_eq!(
            parse_time("start", "2026-12-01T18:00:00.000+02:00"),
            Ok(1_796_140_800)
        );
        for text in [
            "2026-12-01T16:00:00.5Z",
            "2026-12-01 16:00",
            "1796140800",
            "1969-12-31T23:59:59Z",
            "",
        ] {
            let error = parse_time("start", text).unwrap_err();
            assert_eq!(
                error.code,
                crate::error::Code::Rpc(ErrorCode::BadArgs),
                "{text}"
            );
            assert!(
                error.detail.starts_with("start must be"),
                "{}",
                error.detail
            );
        }
    }
}
