//! Reading one HTTP/1.x request from the front of a connection's buffer, with `httparse`.
//!
//! Only what the routes need is kept: the method, the path and query (percent-decoding is
//! left to the router), the headers that decide framing and keep-alive, and `Origin` for
//! CORS. The limits are checked here, before anything is answered: a head over
//! [`MAX_HEAD_LEN`] is refused with 431, a body over [`MAX_BODY_LEN`] with 413, and neither
//! is buffered past its limit.

use std::str;

use framing::rpc::ErrorCode;

use crate::error::{ApiError, Code};

/// Longest request head (request line and headers, blank line included): 8 KiB, as nginx
/// and most proxies allow by default.
pub const MAX_HEAD_LEN: usize = 8 * 1024;

/// Longest request body: 64 KiB, far above a reservation's `{"plate": "..."}`.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Most header fields one request may have (every browser sends fewer than 30).
const MAX_HEADERS: usize = 64;

/// A request, borrowed from the connection's buffer.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The method, as sent (methods are case-sensitive).
    pub(crate) method: &'a str,
    /// The path, still percent-encoded.
    pub(crate) path: &'a str,
    /// What follows `?`, still encoded; empty without one.
    pub(crate) query: &'a str,
    /// `Origin`, for CORS.
    pub(crate) origin: Option<&'a str>,
    /// The token of an `Authorization: Bearer <token>` header.
    pub(crate) bearer: Option<&'a str>,
    /// The dashboard session id of a `Cookie` header (`crate::session`).
    pub(crate) session: Option<&'a str>,
    /// Whether the body is declared JSON (`Content-Type: application/json`).
    pub(crate) json: bool,
    /// Whether the connection stays open after the response (HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`).
    pub(crate) keep_alive: bool,
    /// The body (`Content-Length` bytes after the head).
    pub(crate) body: &'a [u8],
    /// Bytes of the buffer the request takes.
    pub(crate) len: usize,
}

/// What [`parse`] found.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A complete request.
    Request(Request<'a>),
    /// Only the start of one; nothing to answer yet.
    Incomplete,
    /// A request that cannot be answered; the connection closes after the error (where the
    /// next request would start is not known).
    Invalid(ApiError),
}

fn invalid(code: Code, detail: impl Into<String>) -> ApiError {
    ApiError::new(code, detail)
}

fn bad_request(detail: impl Into<String>) -> ApiError {
    ApiError::rpc(ErrorCode::BadRequest, detail)
}

/// Reads the request at the front of `input`.
pub(crate) fn parse(input: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(input) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_LEN => len,
        Ok(httparse::Status::Complete(_)) => return too_large_head(),
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD_LEN => return too_large_head(),
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(invalid(
                Code::HeadersTooLarge,
                format!("more than {MAX_HEADERS} header fields"),
            ));
        }
        Err(error) => {
            return Parsed::Invalid(bad_request(format!("malformed request: {error}")));
        }
    };
    // A complete parse has all three; an empty method or path never parses.
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Invalid(bad_request("malformed request line"));
    };
    let mut fields = Fields::default();
    for header in request.headers.iter() {
        if let Err(invalid) = fields.take(header) {
            return Parsed::Invalid(invalid);
        }
    }
    if version == 1 && !fields.host {
        return Parsed::Invalid(bad_request("an HTTP/1.1 request needs a Host header"));
    }
    if fields.chunked {
        // The length of a chunked body is not known up front; no route takes a body that
        // needs one (browsers and curl send Content-Length).
        return Parsed::Invalid(invalid(
            Code::LengthRequired,
            "request bodies need a Content-Length (Transfer-Encoding is not accepted)",
        ));
    }
    let body_len = fields.content_length.unwrap_or(0);
    if body_len > MAX_BODY_LEN {
        return Parsed::Invalid(invalid(
            Code::BodyTooLarge,
            format!("body of {body_len} bytes exceeds the {MAX_BODY_LEN} byte limit"),
        ));
    }
    let len = head_len + body_len;
    if input.len() < len {
        return Parsed::Incomplete;
    }
    let Some((path, query)) = origin_form(target) else {
        return Parsed::Invalid(bad_request(format!(
            "request target {} is not a path",
            state::shown(target)
        )));
    };
    let keep_alive = match version {
        1 => !fields.close,
        _ => fields.keep_alive && !fields.close,
    };
    Parsed::Request(Request {
        method,
        path,
        query,
        origin: fields.origin,
        bearer: fields.bearer,
        session: fields.session,
        json: fields.json,
        keep_alive,
        body: &input[head_len..len],
        len,
    })
}

fn too_large_head<'a>() -> Parsed<'a> {
    Parsed::Invalid(invalid(
        Code::HeadersTooLarge,
        format!("request head exceeds {MAX_HEAD_LEN} bytes"),
    ))
}

/// The path and query of a request target: origin-form (`/v1/lots?x`) as browsers send it,
/// or absolute-form (`http://host/v1/lots`) as proxies may.
fn origin_form(target: &str) -> Option<(&str, &str)> {
    let target = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            &rest[rest.find('/')?..]
        }
        _ => target,
    };
    if !target.starts_with('/') {
        return None;
    }
    Some(target.split_once('?').unwrap_or((target, "")))
}

/// The header fields that matter, as they are read.
#[derive(Debug, Default)]
struct Fields<'a> {
    content_length: Option<usize>,
    chunked: bool,
    host: bool,
    close: bool,
    keep_alive: bool,
    origin: Option<&'a str>,
    bearer: Option<&'a str>,
    session: Option<&'a str>,
    json: bool,
}

impl<'a> Fields<'a> {
    fn take(&mut self, header: &httparse::Header<'a>) -> Result<(), ApiError> {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let length = content_length(value)?;
            // Two different lengths would let a proxy and this server disagree on where the
            // next request starts (request smuggling).
            if self.content_length.is_some_and(|earlier| earlier != length) {
                return Err(bad_request("conflicting Content-Length headers"));
            }
            self.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.chunked = true;
        } else if name.eq_ignore_ascii_case("host") {
            self.host = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in String::from_utf8_lossy(value).split(',') {
                let token = token.trim();
                self.close |= token.eq_ignore_ascii_case("close");
                self.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("origin") {
            self.origin = str::from_utf8(value).ok();
        } else if name.eq_ignore_ascii_case("cookie") {
            // A browser may split its cookies over several headers (HTTP/2 proxies do).
            if let Some(session) = str::from_utf8(value)
                .ok()
                .and_then(crate::session::from_header)
            {
                self.session = Some(session);
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            self.json = str::from_utf8(value).is_ok_and(|value| {
                let media_type = value.split(';').next().unwrap_or("").trim();
                media_type.eq_ignore_ascii_case("application/json")
            });
        } else if name.eq_ignore_ascii_case("authorization") {
            // The scheme is case-insensitive (RFC 9110); any other scheme is no token.
            self.bearer = str::from_utf8(value).ok().and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim())
                    .filter(|token| !token.is_empty())
            });
        }
        Ok(())
    }
}

/// A `Content-Length` value: digits only (no sign, no spaces inside), as RFC 9110 has it.
fn content_length(value: &[u8]) -> Result<usize, ApiError> {
    let bad = || {
        bad_request(format!(
            "invalid Content-Length {}",
            state::shown(&String::from_utf8_lossy(value))
        ))
    };
    let digits = str::from_utf8(value).map_err(|_| bad())?.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // More digits than fit is certainly over the body limit.
    Ok(digits.parse().unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request<'_> {
        match parse(text.as_bytes()) {
            Parsed::Request(request) => request,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn refused(text: &[u8]) -> Code {
        match parse(text) {
            Parsed::Invalid(invalid) => invalid.code,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn a_request_with_a_body_and_what_follows_it() {
        let text = "POST /v1/lots/A/reservations?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\
                    Origin: http://o\r\n\r\nhelloGET";
        let got = request(text);
        assert_eq!(
            (got.method, got.path, got.query),
            ("POST", "/v1/lots/A/reservations", "x=1")
        );
        assert_eq!(
            (got.body, got.origin, got.keep_alive),
            (&b"hello"[..], Some("http://o"), true)
        );
        assert_eq!((got.session, got.json), (None, false));
        let with_cookie = request(
            "POST / HTTP/1.1\r\nHost: h\r\nCookie: a=1; parking_session=s1\r\n\
             Content-Type: Application/JSON; charset=utf-8\r\n\r\n",
        );
        assert_eq!((with_cookie.session, with_cookie.json), (Some("s1"), true));
        assert_eq!(got.len, text.len() - 3);
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(!request("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(request("GET http://h:1/v1/lots HTTP/1.1\r\nHost: h\r\n\r\n").path == "/v1/lots");
    }

    #[test]
    fn incomplete_until_the_body_is_there() {
        for text in [
            "GET / HTTP/1.1\r\nHost: h\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab",
        ] {
            assert!(
                matches!(parse(text.as_bytes()), Parsed::Incomplete),
                "{text:?}"
            );
        }
    }

    #[test]
    fn limits_and_malformed_requests_are_refused() {
        let mut long = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        long.resize(MAX_HEAD_LEN + 1, b'a');
        assert_eq!(refused(&long), Code::HeadersTooLarge);
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            refused(format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes()),
            Code::HeadersTooLarge
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65537\r\n\r\n"),
            Code::BodyTooLarge
        );
        assert_eq!(
            refused(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"
            ),
            Code::BodyTooLarge
        );
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            b"GET nowhere HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\x00\x00\x00\x04LOTS",
        ] {
            assert_eq!(
                refused(bad),
                Code::Rpc(ErrorCode::BadRequest),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Code::LengthRequired
        );
    }
}
