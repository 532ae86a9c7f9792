//! The HTTP port's errors: a status, a code and a detail, sent as
//! `{"error": "CODE", "detail": "..."}`.
//!
//! The codes are the RPC port's wherever the condition is the same (`UNKNOWN_LOT`,
//! `BAD_PLATE`, `BUSY`, `UNAVAILABLE`, `SPOT_TAKEN`, `BAD_WINDOW`...), its reply words for a
//! refused reserve or cancel (`FULL`, `EXISTS`, `NOT_FOUND`), and a few of HTTP's own
//! (routing, limits, accounts). A refused booking or waitlist operation reaches here as the
//! RPC port's [`WireError`] (one conversion, in `framing`), so both ports name it alike.
//!
//! The statuses: 400 for a request or field that is malformed, 401/403 for keys, 404 for
//! what a path (or a body's lot or spot) names and is not there, 409 for a request the
//! current state refuses (full, taken, not due, wrong status), 410 for a booking `DELETE`
//! cancelled, 422 for a window the booking rules refuse, 429 for a client over its limits, 503 for the server's own trouble.

use std::fmt;

use framing::rpc::{ErrorCode, WireError};
use metrics::Outcome;
use serde::Serialize;

use crate::response::{Response, Status};

/// What went wrong, as the `error` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// A code the RPC port uses for the same condition.
    Rpc(ErrorCode),
    /// The lot has no free space.
    Full,
    /// The plate already holds a reservation in the lot.
    Exists,
    /// The plate holds no reservation in the lot.
    NotFound,
    /// No route has that path.
    UnknownRoute,
    /// The route does not take that method (the response's `Allow` says which it takes).
    MethodNotAllowed,
    /// The booking the path names was cancelled: `DELETE` removed it, so it reads as gone.
    Cancelled,
    /// The request head is over the limit.
    HeadersTooLarge,
    /// The body is over the limit.
    BodyTooLarge,
    /// A body without a `Content-Length`.
    LengthRequired,
    /// The server is stopping.
    ShuttingDown,
    /// A username that breaks the rules (3 to 32 of `a-z 0-9 _ . -`).
    BadUsername,
    /// A password that breaks the rules (at least 10 characters).
    BadPassword,
    /// An account has that username already.
    UsernameTaken,
    /// The server keeps `max_accounts` accounts already.
    TooManyAccounts,
    /// Too many logins failed, or too many registrations came, from here: the response's
    /// `Retry-After` says when to try again.
    RateLimited,
}

impl Code {
    /// Every code the HTTP port sends (`docs/http.md` lists the same, a test checks).
    #[cfg(test)]
    pub(crate) const ALL: [Code; 34] = [
        Code::Rpc(ErrorCode::BadRequest),
        Code::Rpc(ErrorCode::BadArgs),
        Code::Rpc(ErrorCode::BadPlate),
        Code::BadUsername,
        Code::BadPassword,
        Code::Rpc(ErrorCode::Unauthorized),
        Code::Rpc(ErrorCode::Forbidden),
        Code::UnknownRoute,
        Code::Rpc(ErrorCode::UnknownLot),
        Code::Rpc(ErrorCode::UnknownSpot),
        Code::Rpc(ErrorCode::UnknownBooking),
        Code::Rpc(ErrorCode::UnknownEntry),
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::Full,
        Code::Exists,
        Code::Rpc(ErrorCode::SpotTaken),
        Code::Rpc(ErrorCode::NotDue),
        Code::Rpc(ErrorCode::BadState),
        Code::Rpc(ErrorCode::NotFull),
        Code::Rpc(ErrorCode::AlreadyWaiting),
        Code::Rpc(ErrorCode::WaitlistFull),
        Code::Rpc(ErrorCode::NoOffer),
        Code::UsernameTaken,
        Code::TooManyAccounts,
        Code::Cancelled,
        Code::LengthRequired,
        Code::BodyTooLarge,
        Code::Rpc(ErrorCode::BadWindow),
        Code::RateLimited,
        Code::HeadersTooLarge,
        Code::Rpc(ErrorCode::Busy),
        Code::Rpc(ErrorCode::Unavailable),
        Code::ShuttingDown,
    ];

    /// The code as written on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Code::Rpc(code) => code.as_str(),
            Code::Full => "FULL",
            Code::Exists => "EXISTS",
            Code::NotFound => "NOT_FOUND",
            Code::UnknownRoute => "UNKNOWN_ROUTE",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::Cancelled => "CANCELLED",
            Code::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Code::BodyTooLarge => "BODY_TOO_LARGE",
            Code::LengthRequired => "LENGTH_REQUIRED",
            Code::ShuttingDown => "SHUTTING_DOWN",
            Code::BadUsername => "BAD_USERNAME",
            Code::BadPassword => "BAD_PASSWORD",
            Code::UsernameTaken => "USERNAME_TAKEN",
            Code::TooManyAccounts => "TOO_MANY_ACCOUNTS",
            Code::RateLimited => "RATE_LIMITED",
        }
    }

    /// The status a response with this code has.
    pub(crate) fn status(self) -> Status {
        match self {
            Code::Rpc(
                ErrorCode::UnknownLot
                | ErrorCode::UnknownSpot
                | ErrorCode::UnknownBooking
                | ErrorCode::UnknownEntry,
            )
            | Code::NotFound
            | Code::UnknownRoute => Status::NOT_FOUND,
            Code::Rpc(
                ErrorCode::SpotTaken
                | ErrorCode::NotDue
                | ErrorCode::BadState
                | ErrorCode::NotFull
                | ErrorCode::AlreadyWaiting
                | ErrorCode::WaitlistFull
                | ErrorCode::NoOffer,
            )
            | Code::UsernameTaken
            | Code::TooManyAccounts => Status::CONFLICT,
            Code::Rpc(ErrorCode::BadWindow) => Status::UNPROCESSABLE,
            Code::RateLimited => Status::TOO_MANY_REQUESTS,
            Code::Rpc(ErrorCode::Busy | ErrorCode::Unavailable) | Code::ShuttingDown => {
                Status::SERVICE_UNAVAILABLE
            }
            Code::Rpc(ErrorCode::Unauthorized) => Status::UNAUTHORIZED,
            Code::Rpc(ErrorCode::Forbidden) => Status::FORBIDDEN,
            Code::Rpc(_) | Code::BadUsername | Code::BadPassword => Status::BAD_REQUEST,
            Code::Full | Code::Exists => Status::CONFLICT,
            Code::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
            Code::Cancelled => Status::GONE,
            Code::HeadersTooLarge => Status::HEADERS_TOO_LARGE,
            Code::BodyTooLarge => Status::BODY_TOO_LARGE,
            Code::LengthRequired => Status::LENGTH_REQUIRED,
        }
    }

    /// How a request answered with this code is counted.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Code::Full
            | Code::Exists
            | Code::NotFound
            | Code::UsernameTaken
            | Code::TooManyAccounts
            | Code::RateLimited
            | Code::Rpc(
                ErrorCode::SpotTaken
                | ErrorCode::NotDue
                | ErrorCode::BadState
                | ErrorCode::NotFull
                | ErrorCode::AlreadyWaiting
                | ErrorCode::WaitlistFull
                | ErrorCode::NoOffer,
            ) => Outcome::Refused,
            Code::Rpc(ErrorCode::Unavailable) | Code::ShuttingDown => Outcome::Unavailable,
            _ => Outcome::Invalid,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: Code,
    pub(crate) detail: String,
    /// For [`Code::MethodNotAllowed`]: the methods the route takes.
    pub(crate) allow: Option<&'static str>,
    /// For [`Code::RateLimited`]: seconds until a retry may succeed.
    pub(crate) retry_after: Option<u64>,
}

/// The JSON body of an error.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: &'a str,
}

impl ApiError {
    pub(crate) fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            allow: None,
            retry_after: None,
        }
    }

    pub(crate) fn rpc(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError::new(Code::Rpc(code), detail)
    }

    pub(crate) fn into_response(self) -> Response {
        let mut response = Response::json(
            self.code.status(),
            &ErrorBody {
                error: self.code.as_str(),
                detail: &self.detail,
            },
        );
        if let Some(allow) = self.allow {
            response = response.header("Allow", allow);
        }
        if self.code.status() == Status::UNAUTHORIZED {
            response = response.header("WWW-Authenticate", "Bearer");
        }
        if let Some(seconds) = self.retry_after {
            response = response.header("Retry-After", seconds);
        } else if self.code.status() == Status::SERVICE_UNAVAILABLE {
            response = response.header("Retry-After", 1);
        }
        response
    }
}

/// The RPC port's refusal, with the RPC port's code. `FULL` is the same word for a full
/// lot whether a reservation or a booking found it so.
impl From<WireError> for ApiError {
    fn from(error: WireError) -> Self {
        let code = match error.code {
            ErrorCode::Full => Code::Full,
            code => Code::Rpc(code),
        };
        ApiError::new(code, error.detail)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.detail)
    }
}
