//! The HTTP port's errors: a status, a code and a detail, sent as
//! `{"error": "CODE", "detail": "..."}`.
//!
//! The codes are the RPC port's wherever the condition is the same (`UNKNOWN_LOT`,
//! `BAD_PLATE`, `BUSY`, `UNAVAILABLE`...), its reply words for a refused reserve or cancel
//! (`FULL`, `EXISTS`, `NOT_FOUND`), and a few of HTTP's own.

use std::fmt;

use framing::rpc::ErrorCode;
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
    /// The request head is over the limit.
    HeadersTooLarge,
    /// The body is over the limit.
    BodyTooLarge,
    /// A body without a `Content-Length`.
    LengthRequired,
    /// The server is stopping.
    ShuttingDown,
}

impl Code {
    /// Every code the HTTP port sends (`docs/http.md` lists the same, a test checks).
    #[cfg(test)]
    pub(crate) const ALL: [Code; 17] = [
        Code::Rpc(ErrorCode::BadRequest),
        Code::Rpc(ErrorCode::BadArgs),
        Code::Rpc(ErrorCode::BadPlate),
        Code::Rpc(ErrorCode::Unauthorized),
        Code::Rpc(ErrorCode::Forbidden),
        Code::UnknownRoute,
        Code::Rpc(ErrorCode::UnknownLot),
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::Full,
        Code::Exists,
        Code::LengthRequired,
        Code::BodyTooLarge,
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
            Code::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Code::BodyTooLarge => "BODY_TOO_LARGE",
            Code::LengthRequired => "LENGTH_REQUIRED",
            Code::ShuttingDown => "SHUTTING_DOWN",
        }
    }

    /// The status a response with this code has.
    pub(crate) fn status(self) -> Status {
        match self {
            Code::Rpc(ErrorCode::UnknownLot) | Code::NotFound | Code::UnknownRoute => {
                Status::NOT_FOUND
            }
            Code::Rpc(ErrorCode::Busy | ErrorCode::Unavailable) | Code::ShuttingDown => {
                Status::SERVICE_UNAVAILABLE
            }
            Code::Rpc(ErrorCode::Unauthorized) => Status::UNAUTHORIZED,
            Code::Rpc(ErrorCode::Forbidden) => Status::FORBIDDEN,
            Code::Rpc(_) => Status::BAD_REQUEST,
            Code::Full | Code::Exists => Status::CONFLICT,
            Code::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
            Code::HeadersTooLarge => Status::HEADERS_TOO_LARGE,
            Code::BodyTooLarge => Status::BODY_TOO_LARGE,
            Code::LengthRequired => Status::LENGTH_REQUIRED,
        }
    }

    /// How a request answered with this code is counted.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Code::Full | Code::Exists | Code::NotFound => Outcome::Refused,
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
        if self.code.status() == Status::SERVICE_UNAVAILABLE {
            response = response.header("Retry-After", 1);
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.detail)
    }
}
