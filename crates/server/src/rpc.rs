//! The RPC port: frames in, one reply frame per request out, in order.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use auth::{Action, AuthFailure, Denied, Session};
use framing::frame::{self, Decoded, FrameError};
use framing::rpc::{
    self, CancelOutcome, ErrorCode, KeyGrant, LotFilter, LotStatus, Method, Reply, Request,
    ReserveOutcome, WireError,
};
use metrics::{Outcome, RequestMetrics};
use protocol::{Protocol, Step};
use state::{BookingId, BookingRequest, LotQuery, Page, Plate, WaitId, Window, shown};
use store::{Feature, Store};
use warn_limit::peer_warn;

/// Answers RPC requests: reads from the store's in-memory state, writes through the store.
pub struct RpcProtocol {
    store: Arc<dyn Store>,
    requests: AtomicU64,
    /// Counted under [`metric_methods`].
    metrics: RequestMetrics,
}

impl RpcProtocol {
    /// Serves `store`, counting requests in `metrics`.
    pub fn new(store: Arc<dyn Store>, metrics: RequestMetrics) -> Self {
        RpcProtocol {
            store,
            requests: AtomicU64::new(0),
            metrics,
        }
    }

    /// Requests answered so far (errors included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Runs one decoded request against the state, as `session` allows. A failed `auth`
    /// that closes the connection sets `close`.
    fn execute(
        &self,
        request: &Request<'_>,
        session: &mut Session,
        peer: SocketAddr,
        close: &mut bool,
    ) -> Result<Reply<'static>, WireError> {
        let action = match request {
            Request::Ping => return Ok(Reply::Pong),
            Request::Auth { token } => {
                return match session.authenticate(token.expose(), "rpc", peer, Instant::now()) {
                    Ok(identity) => Ok(Reply::Authenticated(KeyGrant {
                        id: Cow::Owned(identity.id().as_str().to_owned()),
                        role: Cow::Borrowed(identity.role().as_str()),
                    })),
                    Err(failure) => {
                        *close = failure.closes();
                        let code = match failure {
                            AuthFailure::NotConfigured => ErrorCode::BadRequest,
                            _ => ErrorCode::Unauthorized,
                        };
                        Err(WireError::new(code, failure.to_string()))
                    }
                };
            }
            Request::GetLots | Request::GetAvailability { .. } | Request::FindLots { .. } => {
                Action::Read
            }
            Request::Reserve { .. } => Action::Reserve,
            Request::Cancel { .. } | Request::CancelBooking { .. } => Action::Cancel,
            Request::Book { .. } | Request::JoinWaitlist { .. } | Request::AcceptOffer { .. } => {
                Action::Book
            }
            Request::LeaveWaitlist { .. } => Action::Cancel,
            Request::GetBooking { .. }
            | Request::MyBookings { .. }
            | Request::MyWaitlist { .. } => Action::ReadBooking,
            Request::CheckIn { .. } => Action::CheckIn,
            Request::ListBookings { .. } => Action::ListBookings,
        };
        session.check(action).map_err(|denied| match denied {
            Denied::Unauthenticated => WireError::new(
                ErrorCode::Unauthorized,
                "authenticate first: method auth with args [token] (text: AUTH <token>)",
            ),
            forbidden => WireError::new(ErrorCode::Forbidden, forbidden.to_string()),
        })?;
        // The one place a request meets what the store keeps: a store without the feature
        // would otherwise decide it in this node's copy alone, or read it from a copy that
        // never holds any.
        if let Some(feature) = feature(request) {
            self.store
                .require(feature)
                .map_err(|refusal| WireError::new(ErrorCode::Unavailable, refusal.to_string()))?;
        }
        let plate = |plate: &str| {
            Plate::parse(plate).map_err(|err| WireError::new(ErrorCode::BadPlate, err.to_string()))
        };
        Ok(match request {
            // Answered above.
            Request::Ping | Request::Auth { .. } => Reply::Pong,
            Request::GetLots => Reply::Lots(
                self.store
                    .state()
                    .lots()
                    .into_iter()
                    .map(|lot| LotStatus {
                        id: Cow::Owned(lot.id.as_str().to_owned()),
                        capacity: lot.capacity,
                        occupied: lot.occupied,
                        counted: lot.counted,
                        reserved: lot.reserved,
                        booked: lot.booked,
                        free: lot.free,
                        status: Some(lot.status),
                    })
                    .collect(),
            ),
            Request::GetAvailability { lot } => Reply::Free(self.store.state().free(lot)?),
            Request::Reserve { lot, plate: text } => {
                let outcome = self.store.reserve(lot, plate(text)?, session.owner())?;
                Reply::Reserve(outcome)
            }
            Request::Cancel { lot, plate: text } => {
                // Another key's reservation is "not found": who holds what is not told.
                let outcome = self
                    .store
                    .cancel(lot, plate(text)?, &|owner| session.may_handle(owner))?;
                Reply::Cancel(outcome)
            }
            Request::Book {
                lot,
                plate: text,
                start,
                end,
                spot,
            } => {
                let request = BookingRequest {
                    lot,
                    spot: spot.as_deref(),
                    plate: plate(text)?,
                    window: Window {
                        start: *start,
                        end: *end,
                    },
                };
                // The booking belongs to the key that made it (nobody, with access off).
                Reply::Booking(self.store.book(request, session.owner())?)
            }
            Request::GetBooking { booking } => {
                let id = booking_id(booking)?;
                Reply::Booking(
                    self.store
                        .state()
                        .booking_if(&id, &|owner| session.may_handle(owner))?,
                )
            }
            Request::CancelBooking { booking } => match BookingId::parse(booking) {
                // Not one of ours: there is nothing to cancel.
                Err(_) => Reply::Cancel(CancelOutcome::NotFound),
                Ok(id) => Reply::Cancel(
                    self.store
                        .cancel_booking(&id, &|owner| session.may_handle(owner))?,
                ),
            },
            Request::CheckIn { booking } => {
                let id = booking_id(booking)?;
                Reply::Booking(
                    self.store
                        .check_in(&id, &|owner| session.may_handle(owner))?,
                )
            }
            Request::ListBookings {
                lot,
                start,
                end,
                limit,
                after,
            } => {
                let page = Page::new(lot, *limit, after.as_deref()).map_err(|error| {
                    WireError::new(ErrorCode::BadArgs, format!("listBookings: {error}"))
                })?;
                let window = Window {
                    start: *start,
                    end: *end,
                };
                Reply::Bookings(self.store.state().bookings_page(lot, window, page)?)
            }
            Request::JoinWaitlist {
                lot,
                plate: text,
                start,
                end,
                spot,
            } => {
                let request = BookingRequest {
                    lot,
                    spot: spot.as_deref(),
                    plate: plate(text)?,
                    window: Window {
                        start: *start,
                        end: *end,
                    },
                };
                Reply::Entry(self.store.join_waitlist(request, session.owner())?)
            }
            Request::AcceptOffer { entry } => {
                let id = entry_id(entry)?;
                Reply::Booking(
                    self.store
                        .accept_offer(&id, &|owner| session.may_handle(owner))?,
                )
            }
            Request::LeaveWaitlist { entry } => match WaitId::parse(entry) {
                // Not one of ours: there is nothing to leave.
                Err(_) => Reply::Cancel(CancelOutcome::NotFound),
                Ok(id) => Reply::Cancel(
                    self.store
                        .leave_waitlist(&id, &|owner| session.may_handle(owner))?,
                ),
            },
            Request::MyBookings { plate: text } => {
                let plate = plate(text)?;
                Reply::Bookings(self.store.state().bookings_where(|booking| {
                    booking.plate == plate && session.may_handle(booking.owner.as_deref())
                }))
            }
            Request::MyWaitlist { plate: text } => {
                let plate = plate(text)?;
                Reply::Entries(self.store.state().waitlist_where(|entry| {
                    entry.plate == plate && session.may_handle(entry.owner.as_deref())
                }))
            }
            Request::FindLots { query } => {
                let LotFilter {
                    zone,
                    feature,
                    start,
                    end,
                } = query;
                let query = LotQuery {
                    zone: zone.as_deref(),
                    feature: feature.as_deref(),
                    window: Window {
                        start: *start,
                        end: *end,
                    },
                };
                Reply::Offers(
                    self.store
                        .state()
                        .find_lots(&query)
                        .map_err(|err| WireError::new(ErrorCode::BadWindow, err.to_string()))?,
                )
            }
        })
    }

    /// Appends the reply frame for one request payload: JSON for a JSON request (with its
    /// `rpcId` when it had a usable one), text for a text request. True if the connection
    /// must close after it (the last wrong token allowed).
    fn answer(
        &self,
        payload: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        session: &mut Session,
    ) -> bool {
        let started = self.metrics.start();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut close = false;
        let (format, method, result) = if rpc::is_json(payload) {
            match rpc::decode_json_request(payload) {
                Ok((rpc_id, request)) => {
                    let (method, result) = self.run(&request, peer, session, &mut close);
                    (Format::Json(Some(rpc_id)), method, result)
                }
                Err(rejected) => {
                    warn_malformed(peer, &rejected.error);
                    (Format::Json(rejected.rpc_id), None, Err(rejected.error))
                }
            }
        } else {
            match rpc::decode_text_request(payload) {
                Ok(request) => {
                    let (method, result) = self.run(&request, peer, session, &mut close);
                    (Format::Text, method, result)
                }
                Err(error) => {
                    warn_malformed(peer, &error);
                    (Format::Text, None, Err(error))
                }
            }
        };
        encode_reply(out, format, result.as_ref(), peer);
        // Undecodable requests are counted under the method after the table's last.
        let method = method.map_or(Method::ALL.len(), |method| method as usize);
        self.metrics.record_since(method, outcome(&result), started);
        close
    }

    fn run(
        &self,
        request: &Request<'_>,
        peer: SocketAddr,
        session: &mut Session,
        close: &mut bool,
    ) -> (Option<Method>, Result<Reply<'static>, WireError>) {
        let result = self.execute(request, session, peer, close);
        log_outcome(peer, request, result.as_ref().err());
        (Some(request.method()), result)
    }
}

/// The part of the state `request` needs beyond lots and reservations, if any.
fn feature(request: &Request<'_>) -> Option<Feature> {
    match request {
        Request::Ping
        | Request::Auth { .. }
        | Request::GetLots
        | Request::GetAvailability { .. }
        | Request::Reserve { .. }
        | Request::Cancel { .. } => None,
        Request::Book { .. }
        | Request::GetBooking { .. }
        | Request::CancelBooking { .. }
        | Request::CheckIn { .. }
        | Request::ListBookings { .. }
        | Request::MyBookings { .. }
        | Request::FindLots { .. } => Some(Feature::Bookings),
        Request::JoinWaitlist { .. }
        | Request::LeaveWaitlist { .. }
        | Request::AcceptOffer { .. }
        | Request::MyWaitlist { .. } => Some(Feature::Waitlists),
    }
}

/// The names the RPC port's requests are counted under: the method table's, then
/// `invalid` for requests that could not be decoded.
pub(crate) fn metric_methods() -> Vec<&'static str> {
    Method::ALL
        .iter()
        .map(|method| method.name())
        .chain(["invalid"])
        .collect()
}

/// How a request ended, for its metric.
fn outcome(result: &Result<Reply<'_>, WireError>) -> Outcome {
    match result {
        Ok(Reply::Reserve(ReserveOutcome::Full | ReserveOutcome::Exists))
        | Ok(Reply::Cancel(CancelOutcome::NotFound)) => Outcome::Refused,
        Ok(_) => Outcome::Ok,
        Err(error) if error.code == ErrorCode::Unavailable => Outcome::Unavailable,
        Err(_) => Outcome::Invalid,
    }
}

/// How a request was written, and so how its reply is.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// JSON, with the request's `rpcId` when it had a usable one.
    Json(Option<u32>),
    Text,
}

impl Format {
    fn encode(self, out: &mut Vec<u8>, result: Result<&Reply<'_>, &WireError>) {
        match self {
            Format::Json(rpc_id) => rpc::encode_json_reply(out, rpc_id, result),
            Format::Text => rpc::encode_text_reply(out, result),
        }
    }
}

/// A booking id from the wire; one that is not `<lotId>.<n>` names no booking of ours.
fn booking_id(text: &str) -> Result<BookingId, WireError> {
    BookingId::parse(text).map_err(|_| {
        WireError::new(
            ErrorCode::UnknownBooking,
            format!("no booking with id {}", shown(text)),
        )
    })
}

/// A waitlist entry id from the wire; one that is not `<lotId>.w<n>` names no entry of ours.
fn entry_id(text: &str) -> Result<WaitId, WireError> {
    WaitId::parse(text).map_err(|_| {
        WireError::new(
            ErrorCode::UnknownEntry,
            format!("no waitlist entry with id {}", shown(text)),
        )
    })
}

/// Appends `result` as one reply frame in `format`. A reply too large for a frame (which
/// the lot limit should make impossible) is replaced by an error in the same format, so a
/// JSON client still gets JSON with its `rpcId`.
fn encode_reply(
    out: &mut Vec<u8>,
    format: Format,
    result: Result<&Reply<'_>, &WireError>,
    peer: SocketAddr,
) {
    if let Err(err) = frame::encode_with(out, |out| format.encode(out, result)) {
        peer_warn!("rpc {peer}: reply not sent: {err}");
        let error = WireError::new(ErrorCode::BadRequest, "reply would exceed the frame limit");
        // A short error always fits in a frame.
        let _ = frame::encode_with(out, |out| format.encode(out, Err(&error)));
    }
}

fn log_outcome(peer: SocketAddr, request: &Request<'_>, error: Option<&WireError>) {
    match error {
        None => log::trace!("rpc {peer}: {request:?}"),
        // The method name, not the arguments: those are the peer's and could be megabytes.
        Some(error) => log::debug!("rpc {peer}: {} refused: {error}", request.method().name()),
    }
}

fn warn_malformed(peer: SocketAddr, error: &WireError) {
    peer_warn!("rpc {peer}: malformed request: {error}");
}

impl Protocol for RpcProtocol {
    type Upgrade = Infallible;

    fn name(&self) -> &'static str {
        "rpc"
    }

    fn max_request_len(&self) -> usize {
        frame::HEADER_LEN + framing::MAX_FRAME_LEN
    }

    fn serve_one(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        session: &mut Session,
    ) -> Step<Infallible> {
        match frame::decode(input) {
            Ok(Decoded::Frame { payload, consumed }) => {
                if self.answer(&input[payload], out, peer, session) {
                    // Too many wrong tokens: what follows is not answered.
                    return Step::Fatal;
                }
                Step::Answered { consumed }
            }
            Ok(Decoded::Incomplete { .. }) => Step::Incomplete,
            Err(FrameError::TooLarge { len }) => {
                let error = WireError::new(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "frame of {len} bytes exceeds the {} byte limit; closing",
                        framing::MAX_FRAME_LEN
                    ),
                );
                peer_warn!("rpc {peer}: {error}");
                // A short error always fits in a frame.
                let _ = frame::encode_with(out, |out| {
                    rpc::encode_json_reply(out, None, Err(&error));
                });
                Step::Fatal
            }
            Err(other) => {
                // `decode` reports nothing else; close rather than guess.
                log::error!("rpc {peer}: unexpected framing error: {other}");
                Step::Fatal
            }
        }
    }

    fn busy_reply(&self, out: &mut Vec<u8>, detail: &str) {
        let error = WireError::new(ErrorCode::Busy, detail);
        let _ = frame::encode_with(out, |out| rpc::encode_json_reply(out, None, Err(&error)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn huge_lots() -> Reply<'static> {
        // Each entry is over 100 bytes of JSON: 50,000 of them are over the 4 MiB limit.
        Reply::Lots(
            (0..50_000)
                .map(|i| LotStatus {
                    id: Cow::Owned(format!("lot-with-a-long-identifier-{i:05}")),
                    capacity: u32::MAX,
                    occupied: u32::MAX,
                    counted: i64::MAX,
                    reserved: u32::MAX,
                    booked: u32::MAX,
                    free: u32::MAX,
                    status: Some(state::Availability::AlmostFull),
                })
                .collect(),
        )
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[test]
    fn a_reply_too_large_for_a_frame_is_an_error_in_the_request_s_format() {
        let mut out = Vec::new();
        encode_reply(&mut out, Format::Json(Some(7)), Ok(&huge_lots()), peer());
        let Ok(frame::Decoded::Frame { payload, consumed }) = frame::decode(&out) else {
            panic!("not one frame: {} bytes", out.len());
        };
        assert_eq!(consumed, out.len());
        let reply: serde_json::Value = serde_json::from_slice(&out[payload]).unwrap();
        assert_eq!(reply["rpcId"], 7);
        assert_eq!(reply["result"], serde_json::Value::Null);
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .starts_with("BAD_REQUEST: reply would exceed"),
            "{reply}"
        );

        let mut out = Vec::new();
        encode_reply(&mut out, Format::Text, Ok(&huge_lots()), peer());
        let Ok(frame::Decoded::Frame { payload, .. }) = frame::decode(&out) else {
            panic!("not one frame");
        };
        assert!(out[payload].starts_with(b"ERR BAD_REQUEST reply would exceed"));
    }
}
