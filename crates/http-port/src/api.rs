//! What each route answers. Reads come from the store's state, writes go through the store,
//! exactly as the RPC port's do: no rule is written twice.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use auth::Identity;
use framing::rpc::ErrorCode;
use history::History;
use metrics::Metrics;
use serde::Serialize;
use shutdown::ShutdownHandle;
use state::{
    Availability, CancelOutcome, LotId, LotSnapshot, Plate, ReserveOutcome, StateError, UnknownLot,
    shown,
};
use store::{Health, Store};

use crate::error::{ApiError, Code};
use crate::response::{Body, Response, Status};
use crate::route::{Route, SessionVerb};

/// The dashboard, compiled into the binary: the machines that show it may be offline.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

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
    pub(crate) history: Arc<History>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: ShutdownHandle,
}

impl Api {
    /// Answers a routed request with its query and body.
    /// `caller` is the key the request came with, when keys are configured.
    pub(crate) fn answer(
        &self,
        route: Route<'_>,
        query: &str,
        body: &[u8],
        caller: Option<&Identity>,
    ) -> Result<Answer, ApiError> {
        let response = match route {
            Route::Dashboard => Response::with_body(
                Status::OK,
                "text/html; charset=utf-8",
                Body::Static(DASHBOARD.as_bytes()),
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
            Route::Lots => {
                let lots = self.store.state().lots();
                let views: Vec<LotView<'_>> = lots.iter().map(LotView::from).collect();
                Response::json(Status::OK, &views)
            }
            Route::Lot(lot) => {
                let lot = self.store.state().lot(&lot).map_err(unknown_lot)?;
                Response::json(Status::OK, &LotView::from(&lot))
            }
            Route::History(lot) => self.history(&lot, query)?,
            Route::Reserve(lot) => self.reserve(&lot, body, caller)?,
            Route::Cancel(lot, plate) => self.cancel(&lot, &plate, caller)?,
            Route::Events => return self.events(query),
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
