//! The routes: a request's method and path turned into a typed [`Route`], or the error that
//! says why not. This is the one table of the HTTP API's paths; `docs/http.md` and
//! `docs/openapi.yaml` describe the same ones.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::error::{ApiError, Code};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `GET /`: the dashboard.
    Dashboard,
    /// `GET /book`: the drivers' booking page.
    BookPage,
    /// `GET /healthz`.
    Health,
    /// `GET /readyz`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.yaml`.
    OpenApi,
    /// `GET /v1/lots`.
    Lots,
    /// `GET /v1/lots/{id}`.
    Lot(Cow<'a, str>),
    /// `GET /v1/lots/{id}/history`.
    History(Cow<'a, str>),
    /// `POST /v1/lots/{id}/reservations`.
    Reserve(Cow<'a, str>),
    /// `DELETE /v1/lots/{id}/reservations/{plate}`.
    Cancel(Cow<'a, str>, Cow<'a, str>),
    /// `GET /v1/events`.
    Events,
    /// `GET /v1/lots/{id}/bookings` (operator).
    LotBookings(Cow<'a, str>),
    /// `POST /v1/bookings`.
    Book,
    /// `GET /v1/bookings/{id}`.
    Booking(Cow<'a, str>),
    /// `DELETE /v1/bookings/{id}`.
    CancelBooking(Cow<'a, str>),
    /// `POST /v1/bookings/{id}/checkin`.
    CheckIn(Cow<'a, str>),
    /// `POST /v1/auth/register`.
    Register,
    /// `POST /v1/auth/login`.
    Login,
    /// `GET /v1/me`.
    Me,
    /// `GET /v1/me/bookings`.
    MyBookings,
    /// `GET /v1/me/waitlist`.
    MyWaitlist,
    /// `POST /v1/waitlist`.
    JoinWaitlist,
    /// `GET /v1/waitlist/{id}`.
    WaitEntry(Cow<'a, str>),
    /// `DELETE /v1/waitlist/{id}`.
    LeaveWaitlist(Cow<'a, str>),
    /// `POST /v1/waitlist/{id}/accept`.
    AcceptOffer(Cow<'a, str>),
    /// `GET /v1/me/events`.
    MyEvents,
    /// `/v1/session`: the dashboard's sign-in (`crate::session`).
    Session(SessionVerb),
    /// `OPTIONS` on any route: what it allows (a CORS preflight, or a client asking).
    Options(&'static str),
}

/// What a request does with the dashboard's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionVerb {
    /// `GET`: who the request's key is.
    Show,
    /// `POST` with a token: signs in.
    SignIn,
    /// `DELETE`: signs out.
    SignOut,
}

/// What a request does with a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// `GET`, or `HEAD` (the same response without its body).
    Read,
    Create,
    Delete,
    Options,
}

/// Where a path leads, before the method is considered.
enum Resource<'a> {
    Dashboard,
    BookPage,
    Health,
    Ready,
    Metrics,
    OpenApi,
    Lots,
    Lot(Cow<'a, str>),
    History(Cow<'a, str>),
    Reservations(Cow<'a, str>),
    Reservation(Cow<'a, str>, Cow<'a, str>),
    Events,
    LotBookings(Cow<'a, str>),
    Bookings,
    Booking(Cow<'a, str>),
    CheckIn(Cow<'a, str>),
    Register,
    Login,
    Me,
    MyBookings,
    MyWaitlist,
    MyEvents,
    Waitlist,
    WaitEntry(Cow<'a, str>),
    Accept(Cow<'a, str>),
    Session,
}

impl Resource<'_> {
    /// The methods it takes, as the `Allow` header lists them.
    fn allow(&self) -> &'static str {
        match self {
            Resource::Reservations(_)
            | Resource::Bookings
            | Resource::CheckIn(_)
            | Resource::Register
            | Resource::Login
            | Resource::Waitlist
            | Resource::Accept(_) => "POST, OPTIONS",
            Resource::Reservation(..) => "DELETE, OPTIONS",
            Resource::Booking(_) | Resource::WaitEntry(_) => "GET, HEAD, DELETE, OPTIONS",
            Resource::Session => "GET, HEAD, POST, DELETE, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }
}

/// The names requests are counted under in the metrics, one per [`Route`] kind, then
/// `invalid` for requests that reached none.
pub(crate) const METRIC_NAMES: [&str; 32] = [
    "getDashboard",
    "getHealth",
    "getReady",
    "getMetrics",
    "getOpenApi",
    "listLots",
    "getLot",
    "getLotHistory",
    "createReservation",
    "deleteReservation",
    "streamEvents",
    "listLotBookings",
    "createBooking",
    "getBooking",
    "cancelBooking",
    "checkIn",
    "register",
    "login",
    "getMe",
    "listMyBookings",
    "listMyWaitlist",
    "joinWaitlist",
    "getWaitlistEntry",
    "leaveWaitlist",
    "acceptOffer",
    "streamMyEvents",
    "getBookPage",
    "getSession",
    "createSession",
    "deleteSession",
    "options",
    "invalid",
];

/// The index in [`METRIC_NAMES`] of requests that reached no route.
pub(crate) const INVALID: usize = METRIC_NAMES.len() - 1;

impl Route<'_> {
    /// What a key must be allowed to do for this route, when keys are configured; `None`
    /// for routes anyone may use: the health probes, the dashboard page and the API's
    /// document (they hold no data; the dashboard's own requests carry its key), and
    /// `OPTIONS` (a browser's preflight never carries credentials).
    pub(crate) fn action(&self) -> Option<auth::Action<'static>> {
        match self {
            Route::Dashboard
            | Route::BookPage
            | Route::Health
            | Route::Ready
            | Route::OpenApi
            | Route::Options(_) => None,
            Route::Metrics | Route::Lots | Route::Lot(_) | Route::History(_) | Route::Events => {
                Some(auth::Action::Read)
            }
            Route::Session(SessionVerb::Show) => Some(auth::Action::Read),
            // Signing in checks the token it carries; signing out ends what the cookie
            // names, if anything.
            Route::Session(_) => None,
            Route::Reserve(_) => Some(auth::Action::Reserve),
            Route::Cancel(..) | Route::CancelBooking(_) | Route::LeaveWaitlist(_) => {
                Some(auth::Action::Cancel)
            }
            Route::Book | Route::JoinWaitlist | Route::AcceptOffer(_) => Some(auth::Action::Book),
            Route::Booking(_)
            | Route::WaitEntry(_)
            | Route::Me
            | Route::MyBookings
            | Route::MyWaitlist
            | Route::MyEvents => Some(auth::Action::ReadBooking),
            Route::CheckIn(_) => Some(auth::Action::CheckIn),
            Route::LotBookings(_) => Some(auth::Action::ListBookings),
            // Anyone may make an account and log in: that is how a driver gets a token.
            Route::Register | Route::Login => None,
        }
    }

    /// What the store must keep for this route to mean anything: a store without it has
    /// the request refused once here, rather than answered from a copy that never holds
    /// any (the RPC port's dispatch asks the same). Registering and logging in ask the
    /// accounts code, which checks for itself; a search of lots over a window asks in its
    /// handler, as `GET /v1/lots` without one needs nothing.
    pub(crate) fn feature(&self) -> Option<store::Feature> {
        match self {
            Route::LotBookings(_)
            | Route::Book
            | Route::Booking(_)
            | Route::CancelBooking(_)
            | Route::CheckIn(_)
            | Route::MyBookings => Some(store::Feature::Bookings),
            Route::JoinWaitlist
            | Route::WaitEntry(_)
            | Route::LeaveWaitlist(_)
            | Route::AcceptOffer(_)
            | Route::MyWaitlist => Some(store::Feature::Waitlists),
            _ => None,
        }
    }

    /// Whether only a driver (a login token) may use it, even with access control off: the
    /// routes about "me", which mean nothing for a key or for nobody.
    pub(crate) fn needs_driver(&self) -> bool {
        matches!(
            self,
            Route::Me | Route::MyBookings | Route::MyWaitlist | Route::MyEvents
        )
    }

    /// Its index in [`METRIC_NAMES`] (the `operationId` in `docs/openapi.yaml`).
    pub(crate) fn metric(&self) -> usize {
        match self {
            Route::Dashboard => 0,
            Route::Health => 1,
            Route::Ready => 2,
            Route::Metrics => 3,
            Route::OpenApi => 4,
            Route::Lots => 5,
            Route::Lot(_) => 6,
            Route::History(_) => 7,
            Route::Reserve(_) => 8,
            Route::Cancel(..) => 9,
            Route::Events => 10,
            Route::LotBookings(_) => 11,
            Route::Book => 12,
            Route::Booking(_) => 13,
            Route::CancelBooking(_) => 14,
            Route::CheckIn(_) => 15,
            Route::Register => 16,
            Route::Login => 17,
            Route::Me => 18,
            Route::MyBookings => 19,
            Route::MyWaitlist => 20,
            Route::JoinWaitlist => 21,
            Route::WaitEntry(_) => 22,
            Route::LeaveWaitlist(_) => 23,
            Route::AcceptOffer(_) => 24,
            Route::MyEvents => 25,
            Route::BookPage => 26,
            Route::Session(SessionVerb::Show) => 27,
            Route::Session(SessionVerb::SignIn) => 28,
            Route::Session(SessionVerb::SignOut) => 29,
            Route::Options(_) => 30,
        }
    }
}

/// The route for `method` on `path` (still percent-encoded). `HEAD` reads like `GET`.
pub(crate) fn route<'a>(method: &str, path: &'a str) -> Result<(Route<'a>, Verb), ApiError> {
    let resource = resource(path)?;
    let verb = match method {
        "GET" | "HEAD" => Verb::Read,
        "POST" => Verb::Create,
        "DELETE" => Verb::Delete,
        "OPTIONS" => Verb::Options,
        _ => return Err(not_allowed(method, path, &resource)),
    };
    let route = match (resource, verb) {
        (resource, Verb::Options) => Route::Options(resource.allow()),
        (Resource::Dashboard, Verb::Read) => Route::Dashboard,
        (Resource::BookPage, Verb::Read) => Route::BookPage,
        (Resource::Health, Verb::Read) => Route::Health,
        (Resource::Ready, Verb::Read) => Route::Ready,
        (Resource::Metrics, Verb::Read) => Route::Metrics,
        (Resource::OpenApi, Verb::Read) => Route::OpenApi,
        (Resource::Lots, Verb::Read) => Route::Lots,
        (Resource::Lot(lot), Verb::Read) => Route::Lot(lot),
        (Resource::History(lot), Verb::Read) => Route::History(lot),
        (Resource::Events, Verb::Read) => Route::Events,
        (Resource::Session, Verb::Read) => Route::Session(SessionVerb::Show),
        (Resource::Session, Verb::Create) => Route::Session(SessionVerb::SignIn),
        (Resource::Session, Verb::Delete) => Route::Session(SessionVerb::SignOut),
        (Resource::Reservations(lot), Verb::Create) => Route::Reserve(lot),
        (Resource::Reservation(lot, plate), Verb::Delete) => Route::Cancel(lot, plate),
        (Resource::LotBookings(lot), Verb::Read) => Route::LotBookings(lot),
        (Resource::Bookings, Verb::Create) => Route::Book,
        (Resource::Booking(id), Verb::Read) => Route::Booking(id),
        (Resource::Booking(id), Verb::Delete) => Route::CancelBooking(id),
        (Resource::CheckIn(id), Verb::Create) => Route::CheckIn(id),
        (Resource::Register, Verb::Create) => Route::Register,
        (Resource::Login, Verb::Create) => Route::Login,
        (Resource::Me, Verb::Read) => Route::Me,
        (Resource::MyBookings, Verb::Read) => Route::MyBookings,
        (Resource::MyWaitlist, Verb::Read) => Route::MyWaitlist,
        (Resource::MyEvents, Verb::Read) => Route::MyEvents,
        (Resource::Waitlist, Verb::Create) => Route::JoinWaitlist,
        (Resource::WaitEntry(id), Verb::Read) => Route::WaitEntry(id),
        (Resource::WaitEntry(id), Verb::Delete) => Route::LeaveWaitlist(id),
        (Resource::Accept(id), Verb::Create) => Route::AcceptOffer(id),
        (resource, _) => return Err(not_allowed(method, path, &resource)),
    };
    Ok((route, verb))
}

fn not_allowed(method: &str, path: &str, resource: &Resource<'_>) -> ApiError {
    ApiError {
        allow: Some(resource.allow()),
        ..ApiError::new(
            Code::MethodNotAllowed,
            format!(
                "{} is not allowed on {}; allowed: {}",
                state::shown(method),
                state::shown(path),
                resource.allow()
            ),
        )
    }
}

fn resource(path: &str) -> Result<Resource<'_>, ApiError> {
    let unknown = || {
        ApiError::new(
            Code::UnknownRoute,
            format!("no route {}", state::shown(path)),
        )
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    // `/v1/lots/` or `//`: an empty segment names nothing.
    if segments.len() > 1 && segments.iter().any(|segment| segment.is_empty()) {
        return Err(unknown());
    }
    Ok(match segments.as_slice() {
        [""] => Resource::Dashboard,
        ["book"] => Resource::BookPage,
        ["healthz"] => Resource::Health,
        ["readyz"] => Resource::Ready,
        ["metrics"] => Resource::Metrics,
        ["openapi.yaml"] => Resource::OpenApi,
        ["v1", "lots"] => Resource::Lots,
        ["v1", "events"] => Resource::Events,
        ["v1", "session"] => Resource::Session,
        ["v1", "lots", lot] => Resource::Lot(decode(lot)?),
        ["v1", "lots", lot, "history"] => Resource::History(decode(lot)?),
        ["v1", "lots", lot, "reservations"] => Resource::Reservations(decode(lot)?),
        ["v1", "lots", lot, "reservations", plate] => {
            Resource::Reservation(decode(lot)?, decode(plate)?)
        }
        ["v1", "lots", lot, "bookings"] => Resource::LotBookings(decode(lot)?),
        ["v1", "bookings"] => Resource::Bookings,
        ["v1", "bookings", id] => Resource::Booking(decode(id)?),
        ["v1", "bookings", id, "checkin"] => Resource::CheckIn(decode(id)?),
        ["v1", "auth", "register"] => Resource::Register,
        ["v1", "auth", "login"] => Resource::Login,
        ["v1", "me"] => Resource::Me,
        ["v1", "me", "bookings"] => Resource::MyBookings,
        ["v1", "me", "waitlist"] => Resource::MyWaitlist,
        ["v1", "me", "events"] => Resource::MyEvents,
        ["v1", "waitlist"] => Resource::Waitlist,
        ["v1", "waitlist", id] => Resource::WaitEntry(decode(id)?),
        ["v1", "waitlist", id, "accept"] => Resource::Accept(decode(id)?),
        _ => return Err(unknown()),
    })
}

/// A path segment, percent-decoded. Lot ids and plates never need escapes, but a client
/// may escape what it sends anyway.
fn decode(segment: &str) -> Result<Cow<'_, str>, ApiError> {
    percent_decode_str(segment).decode_utf8().map_err(|_| {
        ApiError::rpc(
            framing::rpc::ErrorCode::BadRequest,
            format!("path segment {} is not UTF-8", state::shown(segment)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_its_methods() {
        for (method, path, expected) in [
            ("GET", "/", Route::Dashboard),
            ("GET", "/book", Route::BookPage),
            ("HEAD", "/healthz", Route::Health),
            ("GET", "/readyz", Route::Ready),
            ("GET", "/metrics", Route::Metrics),
            ("GET", "/openapi.yaml", Route::OpenApi),
            ("GET", "/v1/lots", Route::Lots),
            ("GET", "/v1/lots/A", Route::Lot("A".into())),
            (
                "GET",
                "/v1/lots/%41%2d1/history",
                Route::History("A-1".into()),
            ),
            (
                "POST",
                "/v1/lots/A/reservations",
                Route::Reserve("A".into()),
            ),
            (
                "DELETE",
                "/v1/lots/A/reservations/7ABC",
                Route::Cancel("A".into(), "7ABC".into()),
            ),
            ("GET", "/v1/events", Route::Events),
            ("GET", "/v1/lots/A/bookings", Route::LotBookings("A".into())),
            ("POST", "/v1/bookings", Route::Book),
            ("GET", "/v1/bookings/A.1", Route::Booking("A.1".into())),
            (
                "DELETE",
                "/v1/bookings/A.1",
                Route::CancelBooking("A.1".into()),
            ),
            (
                "POST",
                "/v1/bookings/A.1/checkin",
                Route::CheckIn("A.1".into()),
            ),
            ("POST", "/v1/auth/register", Route::Register),
            ("POST", "/v1/auth/login", Route::Login),
            ("GET", "/v1/me", Route::Me),
            ("GET", "/v1/me/bookings", Route::MyBookings),
            ("GET", "/v1/me/waitlist", Route::MyWaitlist),
            ("GET", "/v1/me/events", Route::MyEvents),
            ("POST", "/v1/waitlist", Route::JoinWaitlist),
            ("GET", "/v1/waitlist/A.w1", Route::WaitEntry("A.w1".into())),
            (
                "DELETE",
                "/v1/waitlist/A.w1",
                Route::LeaveWaitlist("A.w1".into()),
            ),
            (
                "POST",
                "/v1/waitlist/A.w1/accept",
                Route::AcceptOffer("A.w1".into()),
            ),
            ("GET", "/v1/session", Route::Session(SessionVerb::Show)),
            ("POST", "/v1/session", Route::Session(SessionVerb::SignIn)),
            (
                "DELETE",
                "/v1/session",
                Route::Session(SessionVerb::SignOut),
            ),
            (
                "OPTIONS",
                "/v1/lots/A/reservations",
                Route::Options("POST, OPTIONS"),
            ),
        ] {
            assert_eq!(route(method, path).unwrap().0, expected, "{method} {path}");
        }
    }

    #[test]
    fn wrong_methods_say_what_is_allowed_and_unknown_paths_are_unknown() {
        let error = route("POST", "/v1/lots").unwrap_err();
        assert_eq!(
            (error.code, error.allow),
            (Code::MethodNotAllowed, Some("GET, HEAD, OPTIONS"))
        );
        let error = route("PATCH", "/v1/lots/A/reservations/X").unwrap_err();
        assert_eq!(error.allow, Some("DELETE, OPTIONS"));
        for path in [
            "/v2/lots",
            "/v1/lots/",
            "/v1/lots/A/b",
            "/healthz/",
            "//",
            "/v1/lots/A/reservations/X/Y",
        ] {
            assert_eq!(
                route("GET", path).unwrap_err().code,
                Code::UnknownRoute,
                "{path}"
            );
        }
        assert_eq!(
            route("GET", "/v1/lots/%ff").unwrap_err().code,
            Code::Rpc(framing::rpc::ErrorCode::BadRequest)
        );
    }

    /// `docs/http.md`, `docs/openapi.yaml` and this table name the same routes, each
    /// OpenAPI `operationId` is the metric name of the route its path reaches, and both
    /// documents list exactly the error codes the port sends, with their statuses.
    #[test]
    fn docs_agree() {
        use std::collections::BTreeSet;

        use crate::error::Code;

        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/");
        let openapi: serde_norway::Value = serde_norway::from_str(
            &std::fs::read_to_string(format!("{root}openapi.yaml")).unwrap(),
        )
        .unwrap();
        let markdown = std::fs::read_to_string(format!("{root}http.md")).unwrap();

        let mut documented = BTreeSet::new();
        let mut operations = BTreeSet::new();
        for (path, item) in openapi["paths"].as_mapping().unwrap() {
            let path = path.as_str().unwrap();
            for (method, operation) in item.as_mapping().unwrap() {
                let method = method.as_str().unwrap().to_uppercase();
                if method == "PARAMETERS" {
                    continue;
                }
                let concrete = path.replace("{id}", "A.1").replace("{plate}", "P1");
                let (route, _) = route(&method, &concrete).unwrap();
                let id = operation["operationId"].as_str().unwrap();
                assert_eq!(METRIC_NAMES[route.metric()], id, "{method} {path}");
                operations.insert(id.to_owned());
                documented.insert(format!("{method} {path}"));
            }
        }
        let routes: BTreeSet<String> = METRIC_NAMES[..Route::Options("").metric()]
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        assert_eq!(
            operations, routes,
            "operationIds and the route table differ"
        );

        let section = |title: &str| {
            let start = markdown.find(&format!("\n## {title}\n")).unwrap();
            let rest = &markdown[start + title.len() + 5..];
            rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
        };
        // `| `GET /v1/lots` | ...`, without the query.
        let in_markdown: BTreeSet<String> = section("Routes")
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .map(|line| line[..line.find('`').unwrap()].to_owned())
            .collect();
        assert_eq!(
            in_markdown, documented,
            "docs/http.md and docs/openapi.yaml routes differ"
        );

        // `| 404 | `UNKNOWN_LOT` | ...`
        let errors: BTreeSet<(u16, String)> = section("Errors")
            .lines()
            .filter(|line| line.starts_with("| 4") || line.starts_with("| 5"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (
                    cells[1].parse().unwrap(),
                    cells[2].trim_matches('`').to_owned(),
                )
            })
            .collect();
        let sent: BTreeSet<(u16, String)> = Code::ALL
            .iter()
            .map(|code| (code.status().0, code.as_str().to_owned()))
            .collect();
        assert_eq!(errors, sent, "docs/http.md's errors and the port's differ");
        let schema: BTreeSet<String> =
            openapi["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|code| code.as_str().unwrap().to_owned())
                .collect();
        let codes: BTreeSet<String> = sent.into_iter().map(|(_, code)| code).collect();
        assert_eq!(
            schema, codes,
            "docs/openapi.yaml's error codes and the port's differ"
        );
    }
}
