//! What each route answers. Reads come from the store's state, writes go through the store,
//! exactly as the RPC port's do: no rule is written twice. Who may handle which booking or
//! waitlist entry is the caller's `Identity::may_handle`, given to the same state and store
//! calls the RPC port makes; refusals come back as the RPC port's `WireError`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use accounts::{Drivers, LoginError, RegisterError, RetryAfter};
use auth::Identity;
use framing::rpc::{ErrorCode, WireError};
use history::History;
use metrics::Metrics;
use serde::Serialize;
use shutdown::ShutdownHandle;
use state::{
    AccountError, Availability, BookingId, BookingRequest, BookingStatus, CancelOutcome, LotId,
    LotQuery, LotSnapshot, Page, Plate, ReserveOutcome, StateError, UnknownLot, Username, WaitId,
    Window, shown,
};
use store::{Feature, Health, Store};

use crate::error::{ApiError, Code};
use crate::response::{Body, Response, Status};
use crate::route::{Route, SessionVerb};
use crate::views::{
    AccountView, BookingBody, BookingView, Credentials, EntryView, LoginView, LotOfferView,
    parse_time, rfc3339,
};

/// What a booking body looks like, for error details.
const BOOKING_EXAMPLE: &str = "{\"lot\": \"A\", \"spot\": null, \"plate\": \"7ABC123\", \"start\": \"2026-12-01T16:00:00Z\", \"end\": \"2026-12-01T18:00:00Z\"}";

/// What a credentials body looks like, for error details.
const CREDENTIALS_EXAMPLE: &str =
    "{\"username\": \"alice\", \"password\": \"at least 10 characters\"}";

/// The dashboard, compiled into the binary: the machines that show it may be offline.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

/// The drivers' booking page, compiled in like the dashboard.
const BOOK_PAGE: &str = include_str!("../assets/book.html");

/// The API's OpenAPI document, served as it is in the repository.
const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

/// `minutes` of history when the query does not say.
const DEFAULT_HISTORY_MINUTES: u32 = 60;

/// What a request gets.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A response.
    Response(Response),
    /// The event stream of these lots (all of them when empty).
    Stream(Vec<LotId>),
    /// The notice stream of this owner (a driver, `@<username>`).
    Notices(String),
    /// A session route, which the port answers itself: it needs the key table and the
    /// caller's address (`crate::session`).
    Session(SessionVerb),
}

/// One lot, as the API shows it.
#[derive(Debug, Serialize)]
struct LotView<'a> {
    id: &'a str,
    capacity: u32,
    occupied: u32,
    reserved: u32,
    booked: u32,
    free: u32,
    status: Availability,
}

impl<'a> From<&'a LotSnapshot> for LotView<'a> {
    fn from(lot: &'a LotSnapshot) -> Self {
        LotView {
            id: lot.id.as_str(),
            capacity: lot.capacity,
            occupied: lot.occupied,
            reserved: lot.reserved,
            booked: lot.booked,
            free: lot.free,
            status: lot.status,
        }
    }
}

/// A reservation just made.
#[derive(Debug, Serialize)]
struct Reservation<'a> {
    lot: &'a str,
    plate: &'a str,
    /// Unix seconds; the reservation holds at least until then.
    #[serde(rename = "expiresAt")]
    expires_at: f64,
}

/// One history sample.
#[derive(Debug, Serialize)]
struct Sample {
    t: u32,
    free: u32,
}

/// A `{"status": ...}` body.
#[derive(Debug, Serialize)]
struct StatusBody {
    status: &'static str,
}

/// What the routes answer from.
pub(crate) struct Api {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) drivers: Arc<Drivers>,
    pub(crate) history: Arc<History>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: ShutdownHandle,
}

impl Api {
    /// Answers a routed request with its query and body, from `peer`.
    /// `caller` is the key (or driver) the request came with: with access control on, every
    /// route that needs one has one; with it off, only a driver's token names a caller.
    pub(crate) fn answer(
        &self,
        route: Route<'_>,
        query: &str,
        body: &[u8],
        caller: Option<&Identity>,
        peer: SocketAddr,
    ) -> Result<Answer, ApiError> {
        // With a caller, only what it may handle; without one (access control off), anything.
        let allowed =
            |owner: Option<&str>| caller.is_none_or(|identity| identity.may_handle(owner));
        let response = match route {
            Route::Dashboard => Response::with_body(
                Status::OK,
                "text/html; charset=utf-8",
                Body::Static(DASHBOARD.as_bytes()),
            )
            .header("Cache-Control", "no-cache"),
            Route::BookPage => Response::with_body(
                Status::OK,
                "text/html; charset=utf-8",
                Body::Static(BOOK_PAGE.as_bytes()),
            )
            .header("Cache-Control", "no-cache"),
            Route::Health => Response::json(Status::OK, &StatusBody { status: "ok" }),
            Route::Ready => self.ready()?,
            Route::Metrics => {
                let mut text = Vec::with_capacity(16 * 1024);
                self.metrics.render(&mut text);
                Response::with_body(Status::OK, metrics::CONTENT_TYPE, Body::Owned(text))
            }
            Route::OpenApi => Response::with_body(
                Status::OK,
                "application/yaml",
                Body::Static(OPENAPI.as_bytes()),
            ),
            Route::Lots => self.lots(query)?,
            Route::Lot(lot) => {
                let lot = self.store.state().lot(&lot).map_err(unknown_lot)?;
                Response::json(Status::OK, &LotView::from(&lot))
            }
            Route::History(lot) => self.history(&lot, query)?,
            Route::Reserve(lot) => self.reserve(&lot, body, caller)?,
            Route::Cancel(lot, plate) => self.cancel(&lot, &plate, caller)?,
            Route::Events => return self.events(query),
            Route::LotBookings(lot) => self.lot_bookings(&lot, query)?,
            Route::Book => self.book(body, caller)?,
            Route::Booking(id) => {
                let booking = self.store.state().booking_if(&booking_id(&id)?, &allowed);
                let booking = booking.map_err(wire)?;
                // `DELETE` on this path cancels: HTTP's DELETE says the resource is gone after,
                // so its path answers 410 (not 404: the id was real). The record itself stays
                // listed, CANCELLED, in the owner's `GET /v1/me/bookings`.
                if booking.status == BookingStatus::Cancelled {
                    return Err(ApiError::new(
                        Code::Cancelled,
                        format!("booking {} was cancelled", booking.id),
                    ));
                }
                Response::json(Status::OK, &BookingView::from(&booking))
            }
            Route::CancelBooking(id) => {
                // Not one of ours, not confirmed, or another's: there is nothing to cancel.
                let outcome = match BookingId::parse(&id) {
                    Err(_) => CancelOutcome::NotFound,
                    Ok(id) => self.store.cancel_booking(&id, &allowed).map_err(wire)?,
                };
                match outcome {
                    CancelOutcome::Cancelled => Response::empty(Status::NO_CONTENT),
                    CancelOutcome::NotFound => {
                        return Err(ApiError::new(
                            Code::NotFound,
                            format!("no confirmed booking {} to cancel", shown(&id)),
                        ));
                    }
                }
            }
            Route::CheckIn(id) => {
                let booking = self.store.check_in(&booking_id(&id)?, &allowed);
                Response::json(Status::OK, &BookingView::from(&booking.map_err(wire)?))
            }
            Route::Register => self.register(body, peer)?,
            Route::Login => self.login(body, peer)?,
            Route::Me => self.me(caller)?,
            Route::MyEvents => {
                // The port lets only a driver through.
                let Some(identity) = caller else {
                    return Err(ApiError::rpc(ErrorCode::Unauthorized, "no driver's token"));
                };
                return Ok(Answer::Notices(identity.id().as_str().to_owned()));
            }
            Route::MyBookings => self.my_bookings(query, &allowed)?,
            Route::MyWaitlist => {
                let entries = self.store.state().waitlist_where(|entry| {
                    entry.owner.is_some() && allowed(entry.owner.as_deref())
                });
                let views: Vec<EntryView<'_>> = entries.iter().map(EntryView::from).collect();
                Response::json(Status::OK, &views)
            }
            Route::JoinWaitlist => self.join_waitlist(body, caller)?,
            Route::WaitEntry(id) => {
                let id = entry_id(&id)?;
                let entry = self
                    .store
                    .state()
                    .waitlist_entry(&id)
                    // Another's entry is unknown, as a missing one: whose it is is not told.
                    .filter(|entry| allowed(entry.owner.as_deref()))
                    .ok_or_else(|| unknown_entry(&id.to_string()))?;
                Response::json(Status::OK, &EntryView::from(&entry))
            }
            Route::LeaveWaitlist(id) => {
                let outcome = match WaitId::parse(&id) {
                    Err(_) => CancelOutcome::NotFound,
                    Ok(id) => self.store.leave_waitlist(&id, &allowed).map_err(wire)?,
                };
                match outcome {
                    CancelOutcome::Cancelled => Response::empty(Status::NO_CONTENT),
                    CancelOutcome::NotFound => {
                        return Err(ApiError::new(
                            Code::NotFound,
                            format!("no waitlist entry {} to leave", shown(&id)),
                        ));
                    }
                }
            }
            Route::AcceptOffer(id) => {
                let booking = self.store.accept_offer(&entry_id(&id)?, &allowed);
                let booking = booking.map_err(wire)?;
                Response::json(Status::OK, &BookingView::from(&booking))
                    .header("Location", format!("/v1/bookings/{}", booking.id))
            }
            Route::Session(verb) => return Ok(Answer::Session(verb)),
            Route::Options(allow) => Response::empty(Status::NO_CONTENT).header("Allow", allow),
        };
        Ok(Answer::Response(response))
    }

    fn ready(&self) -> Result<Response, ApiError> {
        if self.shutdown.is_triggered() {
            return Err(ApiError::new(
                Code::ShuttingDown,
                "the server is shutting down",
            ));
        }
        match self.store.health() {
            Health::Ok => Ok(Response::json(Status::OK, &StatusBody { status: "ready" })),
            Health::Unavailable(why) => Err(ApiError::rpc(
                ErrorCode::Unavailable,
                format!("storage unavailable: {why}"),
            )),
        }
    }

    fn history(&self, lot: &str, query: &str) -> Result<Response, ApiError> {
        let mut minutes = DEFAULT_HISTORY_MINUTES;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key == "minutes" {
                minutes = value
                    .parse()
                    .ok()
                    .filter(|minutes| (1..=history::MINUTE_SAMPLES as u32).contains(minutes))
                    .ok_or_else(|| {
                        ApiError::rpc(
                            ErrorCode::BadArgs,
                            format!(
                                "minutes must be a whole number from 1 to {} (history is kept \
                                 for 24 hours), got {}",
                                history::MINUTE_SAMPLES,
                                shown(&value)
                            ),
                        )
                    })?;
            }
        }
        let now = self.store.state().clock().wall();
        let samples = self
            .history
            .samples(lot, minutes, now)
            .map_err(unknown_lot)?;
        let samples: Vec<Sample> = samples
            .into_iter()
            .map(|sample| Sample {
                t: sample.t,
                free: sample.free,
            })
            .collect();
        Ok(Response::json(Status::OK, &samples))
    }

    fn reserve(
        &self,
        lot: &str,
        body: &[u8],
        caller: Option<&Identity>,
    ) -> Result<Response, ApiError> {
        let body: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
            ApiError::rpc(
                ErrorCode::BadRequest,
                format!("the body is not JSON: {error}"),
            )
        })?;
        let Some(fields) = body.as_object() else {
            return Err(ApiError::rpc(
                ErrorCode::BadRequest,
                "the body must be a JSON object: {\"plate\": \"7ABC123\"}",
            ));
        };
        let Some(text) = fields.get("plate").and_then(serde_json::Value::as_str) else {
            return Err(ApiError::rpc(
                ErrorCode::BadArgs,
                "the body needs \"plate\", a string: {\"plate\": \"7ABC123\"}",
            ));
        };
        let plate = parse_plate(text)?;
        let state = self.store.state();
        // Read before the reservation is made: it lives at least `ttl` from then.
        let reserved_at = state.clock().wall();
        // With keys, the reservation belongs to the key that made it.
        let owner = caller.map(|identity| identity.id().as_str());
        let outcome = self.store.reserve(lot, plate, owner).map_err(refused)?;
        let lot = state.lot_id(lot).map_err(unknown_lot)?;
        match outcome {
            ReserveOutcome::Reserved => {
                let expires_at = unix_seconds(reserved_at + state.ttl());
                let body = Reservation {
                    lot: lot.as_str(),
                    plate: plate.as_str(),
                    expires_at,
                };
                Ok(Response::json(Status::CREATED, &body).header(
                    "Location",
                    format!("/v1/lots/{lot}/reservations/{}", plate.as_str()),
                ))
            }
            ReserveOutcome::Full => Err(ApiError::new(
                Code::Full,
                format!("lot {lot} has no free space"),
            )),
            ReserveOutcome::Exists => Err(ApiError::new(
                Code::Exists,
                format!(
                    "{} already holds a reservation in lot {lot}",
                    plate.as_str()
                ),
            )),
        }
    }

    fn cancel(
        &self,
        lot: &str,
        plate: &str,
        caller: Option<&Identity>,
    ) -> Result<Response, ApiError> {
        let plate = parse_plate(plate)?;
        // Another key's reservation answers as none at all: whose it is is not revealed.
        let allowed =
            |owner: Option<&str>| caller.is_none_or(|identity| identity.may_handle(owner));
        match self.store.cancel(lot, plate, &allowed).map_err(refused)? {
            CancelOutcome::Cancelled => Ok(Response::empty(Status::NO_CONTENT)),
            CancelOutcome::NotFound => Err(ApiError::new(
                Code::NotFound,
                format!(
                    "{} holds no reservation in lot {}",
                    plate.as_str(),
                    shown(lot)
                ),
            )),
        }
    }

    /// `GET /v1/lots`: every lot now; with `start` and `end` (and optionally `zone`,
    /// `feature`), the lots that can take a booking over that window (`findLots`).
    fn lots(&self, query: &str) -> Result<Response, ApiError> {
        let (mut zone, mut feature, mut start, mut end) = (None, None, None, None);
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "zone" => zone = Some(value),
                "feature" => feature = Some(value),
                "start" => start = Some(value),
                "end" => end = Some(value),
                _ => {}
            }
        }
        if zone.is_none() && feature.is_none() && start.is_none() && end.is_none() {
            let lots = self.store.state().lots();
            let views: Vec<LotView<'_>> = lots.iter().map(LotView::from).collect();
            return Ok(Response::json(Status::OK, &views));
        }
        self.store
            .require(Feature::Bookings)
            .map_err(|refusal| ApiError::rpc(ErrorCode::Unavailable, refusal.to_string()))?;
        let (Some(start), Some(end)) = (start, end) else {
            return Err(ApiError::rpc(
                ErrorCode::BadArgs,
                "a search for lots needs start and end (RFC 3339), e.g. \
                 ?start=2026-12-01T16:00:00Z&end=2026-12-01T18:00:00Z",
            ));
        };
        let query = LotQuery {
            zone: zone.as_deref(),
            feature: feature.as_deref(),
            window: Window {
                start: parse_time("start", &start)?,
                end: parse_time("end", &end)?,
            },
        };
        let offers = self
            .store
            .state()
            .find_lots(&query)
            .map_err(|error| ApiError::rpc(ErrorCode::BadWindow, error.to_string()))?;
        let (start, end) = (rfc3339(query.window.start), rfc3339(query.window.end));
        let views: Vec<LotOfferView<'_>> = offers
            .iter()
            .map(|offer| LotOfferView::new(offer, &start, &end))
            .collect();
        Ok(Response::json(Status::OK, &views))
    }

    /// `GET /v1/lots/{id}/bookings?start=&end=&limit=&after=` (`listBookings`).
    fn lot_bookings(&self, lot: &str, query: &str) -> Result<Response, ApiError> {
        let (mut start, mut end, mut limit, mut after) = (None, None, None, None);
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "start" => start = Some(parse_time("start", &value)?),
                "end" => end = Some(parse_time("end", &value)?),
                "limit" => {
                    limit = Some(value.parse::<u64>().map_err(|_| {
                        ApiError::rpc(
                            ErrorCode::BadArgs,
                            format!("limit must be a whole number, got {}", shown(&value)),
                        )
                    })?);
                }
                "after" => after = Some(value.into_owned()),
                _ => {}
            }
        }
        let (Some(start), Some(end)) = (start, end) else {
            return Err(ApiError::rpc(
                ErrorCode::BadArgs,
                "listing bookings needs start and end (RFC 3339): the window they overlap",
            ));
        };
        let page = Page::new(lot, limit, after.as_deref())
            .map_err(|error| ApiError::rpc(ErrorCode::BadArgs, error.to_string()))?;
        let bookings = self
            .store
            .state()
            .bookings_page(lot, Window { start, end }, page)
            .map_err(wire)?;
        let views: Vec<BookingView<'_>> = bookings.iter().map(BookingView::from).collect();
        Ok(Response::json(Status::OK, &views))
    }

    /// A booking (or waitlist) request from a body.
    fn booking_request<'a>(
        &self,
        fields: &'a BookingBody<'a>,
    ) -> Result<BookingRequest<'a>, ApiError> {
        Ok(BookingRequest {
            lot: &fields.lot,
            spot: fields.spot.as_deref(),
            plate: parse_plate(&fields.plate)?,
            window: Window {
                start: parse_time("start", &fields.start)?,
                end: parse_time("end", &fields.end)?,
            },
        })
    }

    /// `POST /v1/bookings`: the booking belongs to the caller (nobody, with access off and
    /// no driver's token).
    fn book(&self, body: &[u8], caller: Option<&Identity>) -> Result<Response, ApiError> {
        let fields: BookingBody<'_> = crate::views::body(body, BOOKING_EXAMPLE)?;
        let request = self.booking_request(&fields)?;
        let owner = caller.map(|identity| identity.id().as_str());
        let booking = self.store.book(request, owner).map_err(wire)?;
        Ok(
            Response::json(Status::CREATED, &BookingView::from(&booking))
                .header("Location", format!("/v1/bookings/{}", booking.id)),
        )
    }

    /// `POST /v1/waitlist`: allowed only when the booking would be refused as full.
    fn join_waitlist(&self, body: &[u8], caller: Option<&Identity>) -> Result<Response, ApiError> {
        let fields: BookingBody<'_> = crate::views::body(body, BOOKING_EXAMPLE)?;
        let request = self.booking_request(&fields)?;
        let owner = caller.map(|identity| identity.id().as_str());
        let entry = self.store.join_waitlist(request, owner).map_err(wire)?;
        Ok(Response::json(Status::CREATED, &EntryView::from(&entry))
            .header("Location", format!("/v1/waitlist/{}", entry.id)))
    }

    /// `GET /v1/me/bookings?upcoming=`: the caller's bookings, the latest start first;
    /// `upcoming=true` keeps those not finished whose window has not ended.
    fn my_bookings(
        &self,
        query: &str,
        allowed: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Response, ApiError> {
        let mut upcoming = false;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key == "upcoming" {
                upcoming = match &*value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::rpc(
                            ErrorCode::BadArgs,
                            format!("upcoming must be true or false, got {}", shown(&value)),
                        ));
                    }
                };
            }
        }
        let state = self.store.state();
        let now = unix_seconds(state.clock().wall()) as u64;
        let mut bookings = state.bookings_where(|booking| {
            // `/v1/me` is a driver's: a booking nobody owns is nobody's "mine".
            booking.owner.is_some()
                && allowed(booking.owner.as_deref())
                && (!upcoming || (booking.status.is_active() && booking.window.end > now))
        });
        bookings.sort_by(|a, b| {
            (b.window.start, b.id.to_string()).cmp(&(a.window.start, a.id.to_string()))
        });
        let views: Vec<BookingView<'_>> = bookings.iter().map(BookingView::from).collect();
        Ok(Response::json(Status::OK, &views))
    }

    /// `POST /v1/auth/register`: 201 with the account.
    fn register(&self, body: &[u8], peer: SocketAddr) -> Result<Response, ApiError> {
        let credentials: Credentials<'_> = crate::views::body(body, CREDENTIALS_EXAMPLE)?;
        let wall = self.store.state().clock().wall();
        let account = self
            .drivers
            .register_from(
                &*self.store,
                &credentials.username,
                &credentials.password,
                (peer.ip(), Instant::now()),
                wall,
            )
            .map_err(|error| {
                let code = match &error {
                    RegisterError::BadUsername(_) => Code::BadUsername,
                    RegisterError::BadPassword(_) => Code::BadPassword,
                    RegisterError::Account(AccountError::Exists(_)) => Code::UsernameTaken,
                    RegisterError::Account(AccountError::TooMany { .. }) => Code::TooManyAccounts,
                    RegisterError::Account(AccountError::Unavailable(_))
                    | RegisterError::Unsupported(_) => Code::Rpc(ErrorCode::Unavailable),
                    RegisterError::RateLimited(retry) => {
                        return rate_limited(error.to_string(), *retry);
                    }
                };
                ApiError::new(code, error.to_string())
            })?;
        Ok(
            Response::json(Status::CREATED, &AccountView::from(&account))
                .header("Location", "/v1/me"),
        )
    }

    /// `POST /v1/auth/login`: `{"token", "expiresAt"}`.
    fn login(&self, body: &[u8], peer: SocketAddr) -> Result<Response, ApiError> {
        let credentials: Credentials<'_> = crate::views::body(body, CREDENTIALS_EXAMPLE)?;
        let wall = self.store.state().clock().wall();
        let issued = self
            .drivers
            .login(
                &*self.store,
                &credentials.username,
                &credentials.password,
                peer.ip(),
                Instant::now(),
                wall,
            )
            .map_err(|error| match &error {
                LoginError::RateLimited(retry) => rate_limited(error.to_string(), *retry),
                LoginError::BadCredentials => {
                    ApiError::rpc(ErrorCode::Unauthorized, error.to_string())
                }
                LoginError::Token(_) | LoginError::Unavailable(_) | LoginError::Unsupported(_) => {
                    ApiError::rpc(ErrorCode::Unavailable, error.to_string())
                }
            })?;
        let body = LoginView {
            expires_at: rfc3339(issued.expires_at),
            token: issued.token,
        };
        // A credential: no cache may keep it.
        Ok(Response::json(Status::OK, &body).header("Cache-Control", "no-store"))
    }

    /// `GET /v1/me`: the caller's account (the port let only a driver through).
    fn me(&self, caller: Option<&Identity>) -> Result<Response, ApiError> {
        let name = caller
            .and_then(|identity| identity.id().as_str().strip_prefix('@'))
            .and_then(|name| Username::new(name).ok());
        let account = name.and_then(|name| self.store.state().account(&name));
        // A valid token for an account this server does not keep (a restored older data
        // directory): it names nobody here.
        let account = account.ok_or_else(|| {
            ApiError::rpc(ErrorCode::Unauthorized, "the token names no account here")
        })?;
        Ok(Response::json(Status::OK, &AccountView::from(&account)))
    }

    fn events(&self, query: &str) -> Result<Answer, ApiError> {
        let state = self.store.state();
        let mut lots = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key == "lot" {
                lots.push(state.lot_id(&value).map_err(unknown_lot)?.clone());
            }
        }
        Ok(Answer::Stream(lots))
    }
}

/// A refusal of the state or store, in the RPC port's words.
fn wire(error: impl Into<WireError>) -> ApiError {
    ApiError::from(error.into())
}

/// A booking id from a path; one that is not `<lotId>.<n>` names no booking of ours.
fn booking_id(text: &str) -> Result<BookingId, ApiError> {
    BookingId::parse(text).map_err(|_| {
        ApiError::rpc(
            ErrorCode::UnknownBooking,
            format!("no booking with id {}", shown(text)),
        )
    })
}

fn unknown_entry(text: &str) -> ApiError {
    ApiError::rpc(
        ErrorCode::UnknownEntry,
        format!("no waitlist entry with id {}", shown(text)),
    )
}

/// A waitlist entry id from a path; one that is not `<lotId>.w<n>` names no entry of ours.
fn entry_id(text: &str) -> Result<WaitId, ApiError> {
    WaitId::parse(text).map_err(|_| unknown_entry(text))
}

fn rate_limited(detail: String, RetryAfter(after): RetryAfter) -> ApiError {
    ApiError {
        retry_after: Some(after.as_secs().max(1)),
        ..ApiError::new(Code::RateLimited, detail)
    }
}

fn parse_plate(text: &str) -> Result<Plate, ApiError> {
    Plate::parse(text).map_err(|error| ApiError::rpc(ErrorCode::BadPlate, error.to_string()))
}

fn unknown_lot(UnknownLot(lot): UnknownLot) -> ApiError {
    ApiError::rpc(
        ErrorCode::UnknownLot,
        format!("no lot with id {}", shown(&lot)),
    )
}

fn refused(error: StateError) -> ApiError {
    match error {
        StateError::UnknownLot(lot) => unknown_lot(lot),
        StateError::Unavailable(why) => ApiError::rpc(ErrorCode::Unavailable, why.to_string()),
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
