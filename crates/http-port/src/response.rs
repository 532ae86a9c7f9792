//! Writing responses: the status line, the headers every response carries, and the body,
//! appended to the connection's output in one piece.

use std::cell::RefCell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::ApiError;

/// An HTTP status code and its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status(pub(crate) u16, pub(crate) &'static str);

impl Status {
    pub(crate) const OK: Status = Status(200, "OK");
    pub(crate) const CREATED: Status = Status(201, "Created");
    pub(crate) const NO_CONTENT: Status = Status(204, "No Content");
    pub(crate) const BAD_REQUEST: Status = Status(400, "Bad Request");
    pub(crate) const UNAUTHORIZED: Status = Status(401, "Unauthorized");
    pub(crate) const FORBIDDEN: Status = Status(403, "Forbidden");
    pub(crate) const NOT_FOUND: Status = Status(404, "Not Found");
    pub(crate) const METHOD_NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
    pub(crate) const CONFLICT: Status = Status(409, "Conflict");
    pub(crate) const GONE: Status = Status(410, "Gone");
    pub(crate) const LENGTH_REQUIRED: Status = Status(411, "Length Required");
    pub(crate) const UNPROCESSABLE: Status = Status(422, "Unprocessable Content");
    pub(crate) const BODY_TOO_LARGE: Status = Status(413, "Content Too Large");
    pub(crate) const TOO_MANY_REQUESTS: Status = Status(429, "Too Many Requests");
    pub(crate) const HEADERS_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
    pub(crate) const SERVICE_UNAVAILABLE: Status = Status(503, "Service Unavailable");
}

/// `Content-Type` of the JSON bodies.
pub(crate) const JSON: &str = "application/json";

/// A response to write.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: Status,
    /// With no content type, there is no body.
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: Body,
    /// Further header lines, each `Name: value` without its line end.
    pub(crate) headers: Vec<String>,
}

/// A response's body: built for it, or one of the documents compiled into the binary.
#[derive(Debug)]
pub(crate) enum Body {
    Owned(Vec<u8>),
    Static(&'static [u8]),
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Owned(bytes) => bytes,
            Body::Static(bytes) => bytes,
        }
    }
}

impl Response {
    /// A response with a JSON body.
    pub(crate) fn json(status: Status, value: &impl Serialize) -> Response {
        let mut body = Vec::with_capacity(128);
        // Serialising this crate's plain structs into a Vec cannot fail.
        if serde_json::to_writer(&mut body, value).is_err() {
            body = b"null".to_vec();
        }
        Response::with_body(status, JSON, Body::Owned(body))
    }

    /// A response with `body` of `content_type`.
    pub(crate) fn with_body(status: Status, content_type: &'static str, body: Body) -> Response {
        Response {
            status,
            content_type: Some(content_type),
            body,
            headers: Vec::new(),
        }
    }

    /// A response with no body.
    pub(crate) fn empty(status: Status) -> Response {
        Response {
            status,
            content_type: None,
            body: Body::Static(b""),
            headers: Vec::new(),
        }
    }

    /// Adds a header line.
    pub(crate) fn header(mut self, name: &str, value: impl std::fmt::Display) -> Response {
        self.headers.push(format!("{name}: {value}"));
        self
    }

    /// Appends the response to `out`: its body unless `head_only` (a `HEAD` request), and
    /// `Connection: close` when it is the connection's last.
    pub(crate) fn write(&self, out: &mut Vec<u8>, head_only: bool, close: bool) {
        let body = self.body.bytes();
        // 204 has no body and no length.
        let length = (self.status != Status::NO_CONTENT).then_some(body.len());
        self.write_head(out, length, close);
        if !head_only {
            out.extend_from_slice(body);
        }
    }

    /// Appends the head of a response whose body runs until the connection closes (an event
    /// stream): no length, and `Connection: close`.
    pub(crate) fn write_stream_head(&self, out: &mut Vec<u8>) {
        self.write_head(out, None, true);
    }

    fn write_head(&self, out: &mut Vec<u8>, length: Option<usize>, close: bool) {
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nDate: {}\r\n",
            self.status.0,
            self.status.1,
            date()
        );
        if let Some(content_type) = self.content_type {
            let _ = write!(out, "Content-Type: {content_type}\r\n");
        }
        if let Some(length) = length {
            let _ = write!(out, "Content-Length: {length}\r\n");
        }
        for header in &self.headers {
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl From<ApiError> for Response {
    fn from(error: ApiError) -> Response {
        error.into_response()
    }
}

thread_local! {
    /// The `Date` value of the current second: formatted once a second per worker, not per
    /// response.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Now, as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn date() -> String {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second || text.is_empty() {
            *cached_second = second;
            *text = httpdate::fmt_http_date(now);
        }
        text.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_status_headers_and_body() {
        let mut out = Vec::new();
        Response::json(Status::CREATED, &serde_json::json!({"a": 1}))
            .header("Location", "/x")
            .write(&mut out, false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 201 Created\r\nDate: "), "{text}");
        assert!(
            text.ends_with(
                "GMT\r\nContent-Type: application/json\r\nContent-Length: 7\r\nLocation: /x\r\n\
             Connection: close\r\n\r\n{\"a\":1}"
            ),
            "{text}"
        );
        let mut head = Vec::new();
        Response::json(Status::OK, &1).write(&mut head, true, false);
        assert!(
            String::from_utf8(head)
                .unwrap()
                .ends_with("Content-Length: 1\r\n\r\n")
        );
        let mut none = Vec::new();
        Response::empty(Status::NO_CONTENT).write(&mut none, false, false);
        assert!(!String::from_utf8(none).unwrap().contains("Content-Length"));
    }
}
