//! The parking server's HTTP port: a REST API over the same state as the RPC port, a live
//! event stream, Prometheus metrics and a dashboard for the wall screen.
//!
//! # How it fits
//! [`HttpPort`] is a [`protocol::Protocol`], served by the server's scheduler like the RPC
//! and sensor ports: a fixed pool of workers answers the requests of any number of
//! connections, and a keep-alive connection with nothing to say waits in the port's poller,
//! never on a thread. One request is read at a time from the connection's buffer (with
//! `httparse`), routed ([`route`](crate::route)), answered, and its response appended to the
//! connection's output in one piece; pipelined requests are answered in order.
//!
//! Reads come from the store's state and writes go through the store (`store::Store`), as
//! the RPC port's do, so no rule is written twice. A `GET /v1/events` request takes its
//! connection over ([`protocol::Step::Upgrade`]): the response head is written, and the
//! connection is handed to the broker (`broker::Broker::attach_stream`), whose notifier
//! threads push its events from then on, under the pub/sub port's back-pressure rules. No
//! thread per stream. `GET /v1/me/events` is taken over the same way, following the
//! driver's own notices (the server registers `broker::Broker::notice_listener` with
//! [`encode_notice`]) instead of lots.
//!
//! Every request passes through one place, `HttpPort::respond`, with its route known, where
//! its key is checked (`Authorization: Bearer`, with `auth::Authenticator::verify`: no
//! session, each request on its own) against what the route needs (`Route::action`). A
//! driver's login token (a JWT from `POST /v1/auth/login`) is such a key, with role
//! `driver`; with access control off (no keys configured) it is still checked, by
//! `accounts::Drivers`, so that a driver's bookings are theirs and `/v1/me` knows them.
//!
//! `docs/http.md` is the normative description, `docs/openapi.yaml` the schema (also served
//! at `GET /openapi.yaml`).
//!
//! # Layout
//! - `request`: reading one request with `httparse`, and the size limits.
//! - `route`: the table of routes: method and path to a typed [`Route`](crate::route).
//! - `api`: what each route answers.
//! - `views`: the booking, waitlist and account bodies as HTTP spells them (RFC 3339 times).
//! - `response`: writing a response.
//! - `error`: the error codes and their statuses.
//! - `cors`: [`Cors`], which other origins may call the API.
//! - `assets/dashboard.html`: the dashboard, compiled in.
//! - `assets/book.html`: the drivers' booking page (`GET /book`), compiled in.

#![forbid(unsafe_code)]

mod api;
mod cors;
mod error;
mod request;
mod response;
mod route;
mod session;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use accounts::Drivers;
use auth::{AuthFailure, Authenticator, Identity, KeyId, Role, Session};
use broker::{Broker, EventStream, Held};
use framing::rpc::ErrorCode;
use history::History;
use metrics::{Metrics, Outcome, RequestMetrics};
use protocol::{Protocol, Released, Step};
use shutdown::ShutdownHandle;
use state::LotId;
use store::Store;
use warn_limit::peer_warn;

use crate::api::{Answer, Api};
use crate::error::ApiError;
use crate::request::{Parsed, Request};
use crate::response::{Response, Status};
use crate::route::{Route, SessionVerb};
use crate::session::Sessions;

pub use crate::cors::Cors;
pub use crate::request::{MAX_BODY_LEN, MAX_HEAD_LEN};
pub use crate::views::encode_notice;

/// The HTTP port's protocol.
pub struct HttpPort {
    api: Api,
    /// The key table; with one, every route but the health probes, the dashboard and booking
    /// pages and the API document needs a key allowed to do what it asks.
    auth: Option<Arc<Authenticator>>,
    broker: Arc<Broker>,
    cors: Cors,
    requests: AtomicU64,
    /// Counted under `route::METRIC_NAMES`.
    metrics: RequestMetrics,
    /// The dashboard's signed-in browsers.
    sessions: Sessions,
    /// Whether the port speaks TLS: its session cookie is then `Secure`.
    tls: bool,
}

impl HttpPort {
    /// The HTTP port over `store`, handing event streams to `broker`, answering history from
    /// `history`, rendering `metrics`, and telling readiness probes when `shutdown` is
    /// triggered; `cors` says which other origins may call it, `auth` which keys may (none:
    /// anyone); `drivers` registers and logs in drivers and checks their tokens; `tls`
    /// whether its connections are TLS.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        drivers: Arc<Drivers>,
        broker: Arc<Broker>,
        history: Arc<History>,
        metrics: Arc<Metrics>,
        shutdown: ShutdownHandle,
        cors: Cors,
        auth: Option<Arc<Authenticator>>,
        tls: bool,
    ) -> Self {
        let requests = metrics.requests("http", &route::METRIC_NAMES);
        HttpPort {
            api: Api {
                store,
                drivers,
                history,
                metrics,
                shutdown,
            },
            auth,
            broker,
            cors,
            requests: AtomicU64::new(0),
            metrics: requests,
            sessions: Sessions::default(),
            tls,
        }
    }

    /// Requests answered so far (errors included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The answer to one request, the metric it is counted under, and whether the
    /// connection must close after it (an address over its failed-token budget). Every
    /// request passes here with its route known.
    fn respond(
        &self,
        request: &Request<'_>,
        peer: SocketAddr,
        access: &mut Session,
    ) -> (usize, Result<Answer, ApiError>, bool) {
        let (route, _) = match route::route(request.method, request.path) {
            Ok(routed) => routed,
            Err(error) => return (route::INVALID, Err(error), false),
        };
        let metric = route.metric();
        let caller = match self.authorize(&route, request, peer, access) {
            Ok(caller) => caller,
            Err((error, close)) => return (metric, Err(error), close),
        };
        if let Some(feature) = route.feature()
            && let Err(refusal) = self.api.store.require(feature)
        {
            let error = ApiError::rpc(ErrorCode::Unavailable, refusal.to_string());
            return (metric, Err(error), false);
        }
        let preflight = match route {
            Route::Options(allow) => self.cors.preflight(request.origin, allow),
            _ => Vec::new(),
        };
        let mut answer =
            self.api
                .answer(route, request.query, request.body, caller.as_deref(), peer);
        if let Ok(Answer::Session(verb)) = answer {
            match self.session(verb, request, (peer, access), caller.as_deref()) {
                Ok(response) => answer = Ok(Answer::Response(response)),
                Err((error, close)) => return (metric, Err(error), close),
            }
        }
        if let Ok(Answer::Response(response)) = &mut answer {
            response.headers.extend(preflight);
        }
        (metric, answer, false)
    }

    /// Who the request comes from: with keys configured and a route that needs one, the key
    /// of its `Authorization: Bearer` header; else of its session cookie (the dashboard,
    /// signed in: `crate::session`); else of an `access_token` query parameter (for an
    /// `EventSource` opened without signing in; it lands in proxy logs, so the others are
    /// the safer choices). With access control off, only a driver's token names a caller
    /// (other tokens are ignored, as before there were drivers). Each request is checked on
    /// its own: a keep-alive connection may carry several clients' requests through a proxy.
    fn authorize(
        &self,
        route: &Route<'_>,
        request: &Request<'_>,
        peer: SocketAddr,
        access: &mut Session,
    ) -> Result<Option<Arc<Identity>>, (ApiError, bool)> {
        let Some(action) = route.action() else {
            return Ok(None);
        };
        let now = Instant::now();
        let signed_in = match (request.bearer, request.session) {
            (None, Some(session)) => self.sessions.identity(session, now),
            _ => None,
        };
        let identity = match signed_in {
            Some(identity) => identity,
            None => {
                let from_query = || {
                    form_urlencoded::parse(request.query.as_bytes())
                        .find(|(key, _)| key == "access_token")
                        .map(|(_, token)| token.into_owned())
                };
                let token = request.bearer.map(str::to_owned).or_else(from_query);
                let unauthorized = |detail: &str| {
                    (
                        ApiError::rpc(ErrorCode::Unauthorized, detail.to_owned()),
                        false,
                    )
                };
                match (&self.auth, token) {
                    (_, None) if route.needs_driver() => {
                        return Err(unauthorized(
                            "this route is a driver's: send Authorization: Bearer <token from POST /v1/auth/login>",
                        ));
                    }
                    (Some(_), None) => {
                        return Err(unauthorized(match request.session {
                            Some(_) => {
                                "the session has ended (signed out, unused for a day, or the \
                                 server restarted): sign in again"
                            }
                            None => "this route needs a key: send Authorization: Bearer <token>",
                        }));
                    }
                    (None, None) => return Ok(None),
                    (Some(auth), Some(token)) => self.verify(auth, &token, (peer, access), now)?,
                    (None, Some(token)) => {
                        // A JWT has three parts; a key's token (URL-safe base64) has no dot.
                        let jwt = token.bytes().filter(|&b| b == b'.').count() == 2;
                        if !jwt && !route.needs_driver() {
                            return Ok(None);
                        }
                        let wall = self.api.store.state().clock().wall();
                        let driver =
                            self.api
                                .drivers
                                .authenticate(&token, wall)
                                .map_err(|error| {
                                    peer_warn!("http {peer}: refused a driver's token: {error}");
                                    unauthorized(&format!(
                                        "{error}; log in again at POST /v1/auth/login"
                                    ))
                                })?;
                        Arc::new(Identity::new(
                            KeyId::driver(&driver),
                            Role::Driver,
                            Vec::new(),
                        ))
                    }
                }
            }
        };
        if !identity.may(action) {
            return Err((
                ApiError::rpc(
                    ErrorCode::Forbidden,
                    format!(
                        "key {} ({}) may not {action}",
                        identity.id().as_str(),
                        identity.role()
                    ),
                ),
                false,
            ));
        }
        if route.needs_driver() && identity.role() != Role::Driver {
            return Err((
                ApiError::rpc(
                    ErrorCode::Forbidden,
                    format!(
                        "key {} ({}) has no account: this route is a driver's (a token from POST /v1/auth/login)",
                        identity.id().as_str(),
                        identity.role()
                    ),
                ),
                false,
            ));
        }
        Ok(Some(identity))
    }

    /// The key whose token `token` is; a wrong one is `UNAUTHORIZED`, and closes the
    /// connection at its fifth wrong token (counted in `session`, as on the other ports) or
    /// once the address is over its budget of failures.
    fn verify(
        &self,
        auth: &Authenticator,
        token: &str,
        (peer, session): (SocketAddr, &mut Session),
        now: Instant,
    ) -> Result<Arc<Identity>, (ApiError, bool)> {
        auth.verify(token, peer.ip(), now).map_err(|failure| {
            let failure = match failure {
                AuthFailure::WrongToken { .. } => session.wrong_token(),
                failure => failure,
            };
            peer_warn!("http {peer}: refused a token: {failure}");
            (
                ApiError::rpc(ErrorCode::Unauthorized, failure.to_string()),
                failure.closes(),
            )
        })
    }

    /// Answers `/v1/session`: who the caller is, signing in (a token in, a session cookie
    /// out), signing out.
    fn session(
        &self,
        verb: SessionVerb,
        request: &Request<'_>,
        (peer, access): (SocketAddr, &mut Session),
        caller: Option<&Identity>,
    ) -> Result<Response, (ApiError, bool)> {
        let refuse = |code, detail: &str| (ApiError::rpc(code, detail), false);
        match verb {
            SessionVerb::Show => Ok(Response::json(Status::OK, &SessionView::of(caller))),
            SessionVerb::SignIn => {
                let Some(auth) = &self.auth else {
                    return Err(refuse(
                        ErrorCode::BadRequest,
                        "access control is off (no keys): there is nothing to sign in to",
                    ));
                };
                // A page on another site can post a form here, but not JSON without a CORS
                // preflight, which only `http_cors_origins` pass: no sign-in forgery.
                if !request.json {
                    return Err(refuse(
                        ErrorCode::BadRequest,
                        "sign in with Content-Type: application/json and {\"token\": \"...\"}",
                    ));
                }
                let Ok(SignIn { token }) = serde_json::from_slice(request.body) else {
                    return Err(refuse(
                        ErrorCode::BadArgs,
                        "the body must be {\"token\": \"...\"}, a key's token",
                    ));
                };
                let now = Instant::now();
                let identity = self.verify(auth, &token, (peer, access), now)?;
                let response = Response::json(Status::OK, &SessionView::of(Some(&*identity)));
                log::debug!("http {peer}: signed in as {}", identity.id().as_str());
                let id = self.sessions.open(identity, now).map_err(|error| {
                    log::error!("http {peer}: cannot make a session id: {error}");
                    refuse(
                        ErrorCode::Unavailable,
                        "the server could not make a session; try again",
                    )
                })?;
                Ok(response
                    .header("Set-Cookie", session::set_cookie(&id, self.tls))
                    .header("Cache-Control", "no-store"))
            }
            SessionVerb::SignOut => {
                if let Some(id) = request.session {
                    self.sessions.close(id);
                }
                Ok(Response::empty(Status::NO_CONTENT)
                    .header("Set-Cookie", session::clear_cookie(self.tls)))
            }
        }
    }
}

/// The body of `POST /v1/session`. No `Debug`: it holds a token.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// Who a request's key is: `{"id": "signs", "role": "viewer"}`, both `null` with access
/// control off.
#[derive(Debug, serde::Serialize)]
struct SessionView<'a> {
    id: Option<&'a str>,
    role: Option<&'static str>,
}

impl<'a> SessionView<'a> {
    fn of(identity: Option<&'a Identity>) -> Self {
        SessionView {
            id: identity.map(|identity| identity.id().as_str()),
            role: identity.map(|identity| identity.role().as_str()),
        }
    }
}

impl Protocol for HttpPort {
    /// An event stream's lots (empty: all), or a notice stream's owner.
    type Upgrade = (Vec<LotId>, Option<String>);

    fn name(&self) -> &'static str {
        "http"
    }

    fn max_request_len(&self) -> usize {
        MAX_HEAD_LEN + MAX_BODY_LEN
    }

    fn serve_one(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        access: &mut Session,
    ) -> Step<(Vec<LotId>, Option<String>)> {
        let started = self.metrics.start();
        let request = match request::parse(input) {
            Parsed::Request(request) => request,
            Parsed::Incomplete => return Step::Incomplete,
            Parsed::Invalid(error) => {
                peer_warn!("http {peer}: refused: {error}");
                let mut response = error.clone().into_response();
                response.headers.extend(self.cors.headers(None));
                response.write(out, false, true);
                self.count(route::INVALID, error.code.outcome(), started);
                return Step::Fatal;
            }
        };
        let head_only = request.method == "HEAD";
        let (metric, answer, close) = self.respond(&request, peer, access);
        let keep_alive = request.keep_alive && !close;
        let cors = self.cors.headers(request.origin);
        let (mut response, outcome) = match answer {
            Ok(Answer::Stream(lots)) => {
                stream_head(out, cors);
                self.count(metric, Outcome::Ok, started);
                if head_only {
                    return Step::Fatal;
                }
                log::debug!(
                    "http {peer}: event stream of {} lot(s) (0: all)",
                    lots.len()
                );
                return Step::Upgrade {
                    upgrade: (lots, None),
                };
            }
            Ok(Answer::Notices(owner)) => {
                stream_head(out, cors);
                self.count(metric, Outcome::Ok, started);
                if head_only {
                    return Step::Fatal;
                }
                log::debug!("http {peer}: notice stream of {owner}");
                return Step::Upgrade {
                    upgrade: (Vec::new(), Some(owner)),
                };
            }
            Ok(Answer::Response(response)) => (response, Outcome::Ok),
            // Answered in `respond`; never left for here.
            Ok(Answer::Session(_)) => (Response::empty(Status::NO_CONTENT), Outcome::Ok),
            Err(error) => {
                log::debug!(
                    "http {peer}: {} {}: {error}",
                    state::shown(request.method),
                    state::shown(request.path)
                );
                let outcome = error.code.outcome();
                (error.into_response(), outcome)
            }
        };
        response.headers.extend(cors);
        response.write(out, head_only, !keep_alive);
        self.count(metric, outcome, started);
        if keep_alive {
            Step::Answered {
                consumed: request.len,
            }
        } else {
            // The conversation ends with this response: close once it is written.
            Step::Fatal
        }
    }

    fn busy_reply(&self, out: &mut Vec<u8>, detail: &str) {
        ApiError::rpc(ErrorCode::Busy, detail)
            .into_response()
            .write(out, false, true);
    }

    fn take_over(&self, (lots, owner): (Vec<LotId>, Option<String>), connection: Released) {
        let Released {
            stream,
            peer,
            unwritten,
            place,
        } = connection;
        self.broker.attach_stream(
            stream,
            peer,
            Held::new(place),
            EventStream {
                lots,
                owner,
                preamble: unwritten,
            },
        );
    }
}

impl HttpPort {
    fn count(&self, metric: usize, outcome: Outcome, started: Option<Instant>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.record_since(metric, outcome, started);
    }
}

/// Appends an event stream's response head. It has no length: the stream ends when the
/// connection does, which `Connection: close` says.
fn stream_head(out: &mut Vec<u8>, cors: Vec<String>) {
    let mut response = Response::empty(Status::OK)
        .header("Content-Type", "text/event-stream")
        .header("Cache-Control", "no-cache")
        // Tells nginx not to buffer the stream.
        .header("X-Accel-Buffering", "no");
    response.headers.extend(cors);
    response.write_stream_head(out);
}
