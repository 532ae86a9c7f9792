//! RPC requests and replies, the payloads carried by frames on the RPC port.
//!
//! A payload whose first non-blank byte is `{` is a JSON request
//! (`{"rpcId": 42, "method": "reserve", "args": ["A", "7ABC123"]}`) and gets a JSON reply
//! (`{"rpcId":42,"result":true,"error":null}`); any other payload is a text alias
//! (`RESERVE A 7ABC123`) and gets a text reply (`OK`). Both decode to the same [`Request`], and
//! the server answers both from the same [`Reply`], so the two syntaxes cannot drift apart.
//!
//! Decoding borrows from the payload: a request without JSON escapes costs no allocation beyond
//! the small argument list.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::str::FromStr;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// One RPC method with its arguments. Lot ids and plates are carried as the peer sent them;
/// the server validates them against its lots and the plate rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `getLots` / `LOTS`: every lot with its counts.
    GetLots,
    /// `getAvailability` / `AVAIL`: free spaces in one lot.
    GetAvailability {
        /// The lot asked about.
        lot: Cow<'a, str>,
    },
    /// `reserve` / `RESERVE`: hold a space for a plate.
    Reserve {
        /// The lot to reserve in.
        lot: Cow<'a, str>,
        /// The vehicle's plate.
        plate: Cow<'a, str>,
    },
    /// `cancel` / `CANCEL`: release a plate's reservation.
    Cancel {
        /// The lot the reservation is in.
        lot: Cow<'a, str>,
        /// The vehicle's plate.
        plate: Cow<'a, str>,
    },
    /// `PING`: liveness check.
    Ping,
}

impl Request<'_> {
    /// The JSON method name (the text verb is its uppercase alias).
    pub fn method(&self) -> &'static str {
        match self {
            Request::GetLots => "getLots",
            Request::GetAvailability { .. } => "getAvailability",
            Request::Reserve { .. } => "reserve",
            Request::Cancel { .. } => "cancel",
            Request::Ping => "PING",
        }
    }

    /// The text alias verb.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::GetLots => "LOTS",
            Request::GetAvailability { .. } => "AVAIL",
            Request::Reserve { .. } => "RESERVE",
            Request::Cancel { .. } => "CANCEL",
            Request::Ping => "PING",
        }
    }

    fn args(&self) -> [Option<&str>; 2] {
        match self {
            Request::GetLots | Request::Ping => [None, None],
            Request::GetAvailability { lot } => [Some(lot), None],
            Request::Reserve { lot, plate } | Request::Cancel { lot, plate } => {
                [Some(lot), Some(plate)]
            }
        }
    }
}

/// The protocol's error codes; `Display` prints the code exactly as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not UTF-8, not JSON, not an object, or `rpcId`/`method`/`args` missing or mistyped.
    BadRequest,
    /// The method or verb is not one the server knows.
    UnknownMethod,
    /// Wrong number or type of arguments.
    BadArgs,
    /// No lot has that id.
    UnknownLot,
    /// The plate breaks the plate rules.
    BadPlate,
    /// The frame's length prefix is over the limit; the connection is closed after this reply.
    FrameTooLarge,
    /// The server is at its connection limit; the connection is closed after this reply.
    Busy,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownMethod => "UNKNOWN_METHOD",
            ErrorCode::BadArgs => "BAD_ARGS",
            ErrorCode::UnknownLot => "UNKNOWN_LOT",
            ErrorCode::BadPlate => "BAD_PLATE",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::Busy => "BUSY",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the protocol's error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown error code {:?}", self.0)
    }
}

impl std::error::Error for UnknownErrorCode {}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Ok(match code {
            "BAD_REQUEST" => ErrorCode::BadRequest,
            "UNKNOWN_METHOD" => ErrorCode::UnknownMethod,
            "BAD_ARGS" => ErrorCode::BadArgs,
            "UNKNOWN_LOT" => ErrorCode::UnknownLot,
            "BAD_PLATE" => ErrorCode::BadPlate,
            "FRAME_TOO_LARGE" => ErrorCode::FrameTooLarge,
            "BUSY" => ErrorCode::Busy,
            other => return Err(UnknownErrorCode(other.to_owned())),
        })
    }
}

/// An error reply: a code and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// What kind of error.
    pub code: ErrorCode,
    /// What exactly was wrong, for the humans reading logs.
    pub detail: String,
}

impl WireError {
    /// An error with the given code and detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        WireError {
            code,
            detail: detail.into(),
        }
    }

    /// Parses the JSON reply's `"CODE: detail"` form.
    pub fn parse_json_form(text: &str) -> Result<Self, UnknownErrorCode> {
        let (code, detail) = text.split_once(':').unwrap_or((text, ""));
        Ok(WireError::new(code.parse()?, detail.trim_start()))
    }
}

/// JSON form: `CODE: detail`.
impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for WireError {}

/// A JSON request that could not be decoded, with the `rpcId` to echo if it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRequest {
    /// The request's id, when it was present and valid.
    pub rpc_id: Option<u32>,
    /// Why it was rejected.
    pub error: WireError,
}

/// True when the payload is a JSON request (first non-blank byte is `{`), false for a text alias.
pub fn is_json(payload: &[u8]) -> bool {
    payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// The three fields a request object must have, left raw so that a mistyped `method` or `args`
/// can still be answered with the request's `rpcId`. Other fields are ignored.
#[derive(Deserialize)]
struct RequestFields<'a> {
    #[serde(rename = "rpcId", borrow, default)]
    rpc_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    args: Option<&'a RawValue>,
}

fn bad_request(rpc_id: Option<u32>, detail: impl Into<String>) -> RejectedRequest {
    RejectedRequest {
        rpc_id,
        error: WireError::new(ErrorCode::BadRequest, detail),
    }
}

fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(text) => Some(Cow::Borrowed(text)),
        // A string with escapes cannot be borrowed; anything else is not a string at all.
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

/// Decodes a JSON request payload into its `rpcId` and [`Request`].
pub fn decode_json_request(payload: &[u8]) -> Result<(u32, Request<'_>), RejectedRequest> {
    let text =
        std::str::from_utf8(payload).map_err(|_| bad_request(None, "payload is not UTF-8"))?;
    // serde would also accept a struct written as an array; the protocol wants an object.
    if !text.trim_start().starts_with('{') {
        return Err(bad_request(None, "request must be a JSON object"));
    }
    let fields: RequestFields<'_> = serde_json::from_str(text)
        .map_err(|err| bad_request(None, format!("not a JSON request object: {err}")))?;
    let rpc_id_raw = fields
        .rpc_id
        .ok_or_else(|| bad_request(None, "rpcId is missing"))?;
    let rpc_id = serde_json::from_str::<u32>(rpc_id_raw.get()).map_err(|_| {
        bad_request(
            None,
            format!("rpcId must be an integer from 0 to 4294967295, got {rpc_id_raw}"),
        )
    })?;
    let method_raw = fields
        .method
        .ok_or_else(|| bad_request(Some(rpc_id), "method is missing"))?;
    let method =
        json_str(method_raw).ok_or_else(|| bad_request(Some(rpc_id), "method must be a string"))?;
    let args_raw = fields
        .args
        .ok_or_else(|| bad_request(Some(rpc_id), "args is missing"))?;
    let args: Vec<&RawValue> = serde_json::from_str(args_raw.get())
        .map_err(|_| bad_request(Some(rpc_id), "args must be an array"))?;
    let rejected = |error| RejectedRequest {
        rpc_id: Some(rpc_id),
        error,
    };
    let mut strings = Vec::with_capacity(args.len());
    for (index, arg) in args.iter().enumerate() {
        match json_str(arg) {
            Some(text) => strings.push(text),
            None => {
                return Err(rejected(WireError::new(
                    ErrorCode::BadArgs,
                    format!("{method}: argument {index} must be a string, got {arg}"),
                )));
            }
        }
    }
    let request = build_request(&method, strings).map_err(rejected)?;
    Ok((rpc_id, request))
}

/// Decodes a text alias payload (`RESERVE A 7ABC123`) into a [`Request`].
pub fn decode_text_request(payload: &[u8]) -> Result<Request<'_>, WireError> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| WireError::new(ErrorCode::BadRequest, "payload is not UTF-8"))?;
    let mut fields = text.split_ascii_whitespace();
    let verb = fields
        .next()
        .ok_or_else(|| WireError::new(ErrorCode::BadRequest, "empty request"))?;
    let args: Vec<Cow<'_, str>> = fields.map(Cow::Borrowed).collect();
    let method = match verb.to_ascii_uppercase().as_str() {
        "PING" => "PING",
        "LOTS" => "getLots",
        "AVAIL" => "getAvailability",
        "RESERVE" => "reserve",
        "CANCEL" => "cancel",
        _ => {
            return Err(WireError::new(
                ErrorCode::UnknownMethod,
                format!("unknown command {verb:?} (try PING, LOTS, AVAIL, RESERVE, CANCEL)"),
            ));
        }
    };
    build_request(method, args)
}

fn build_request<'a>(method: &str, args: Vec<Cow<'a, str>>) -> Result<Request<'a>, WireError> {
    let (expected, usage) = match method {
        "getLots" => (0, "[]"),
        "getAvailability" => (1, "[lotId]"),
        "reserve" | "cancel" => (2, "[lotId, plate]"),
        "PING" | "ping" => (0, "[]"),
        _ => {
            return Err(WireError::new(
                ErrorCode::UnknownMethod,
                format!(
                    "unknown method {method:?} (methods: getLots, getAvailability, reserve, cancel, PING)"
                ),
            ));
        }
    };
    if args.len() != expected {
        return Err(WireError::new(
            ErrorCode::BadArgs,
            format!("{method} takes {usage}, got {} argument(s)", args.len()),
        ));
    }
    let mut args = args.into_iter();
    let mut next = || args.next().unwrap_or_default();
    Ok(match method {
        "getLots" => Request::GetLots,
        "getAvailability" => Request::GetAvailability { lot: next() },
        "reserve" => Request::Reserve {
            lot: next(),
            plate: next(),
        },
        "cancel" => Request::Cancel {
            lot: next(),
            plate: next(),
        },
        _ => Request::Ping,
    })
}

/// Appends the JSON form of `request` to `out`.
pub fn encode_json_request(out: &mut Vec<u8>, rpc_id: u32, request: &Request<'_>) {
    struct Args<'r>([Option<&'r str>; 2]);
    impl Serialize for Args<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(None)?;
            for arg in self.0.iter().flatten() {
                seq.serialize_element(arg)?;
            }
            seq.end()
        }
    }
    #[derive(Serialize)]
    struct Wire<'r> {
        #[serde(rename = "rpcId")]
        rpc_id: u32,
        method: &'static str,
        args: Args<'r>,
    }
    let wire = Wire {
        rpc_id,
        method: request.method(),
        args: Args(request.args()),
    };
    write_json(out, &wire);
}

/// Appends the text alias form of `request` to `out`.
pub fn encode_text_request(out: &mut Vec<u8>, request: &Request<'_>) {
    out.extend_from_slice(request.verb().as_bytes());
    for arg in request.args().iter().flatten() {
        out.push(b' ');
        out.extend_from_slice(arg.as_bytes());
    }
}

/// One lot's counts, as `getLots` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotStatus<'a> {
    /// The lot's id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Total spaces.
    pub capacity: u32,
    /// Spaces the sensors report as taken.
    pub occupied: u32,
    /// Live (unexpired) reservations.
    pub reserved: u32,
    /// `max(0, capacity - occupied - reserved)`.
    pub free: u32,
}

/// Result of a `reserve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveReply {
    /// A space is now held for the plate.
    Reserved,
    /// No space left.
    Full,
    /// The plate already holds a live reservation in this lot.
    Exists,
}

/// Result of a `cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReply {
    /// A live reservation was removed.
    Cancelled,
    /// There was no live reservation for that plate.
    NotFound,
}

/// A successful result, in the shape shared by the JSON and text replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `getLots`.
    Lots(Vec<LotStatus<'a>>),
    /// `getAvailability`: free spaces.
    Free(u32),
    /// `reserve`.
    Reserve(ReserveReply),
    /// `cancel`.
    Cancel(CancelReply),
    /// `PING`.
    Pong,
}

/// The JSON `result` value: `reserve` and `cancel` collapse to booleans.
impl Serialize for Reply<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Lots(lots) => lots.serialize(serializer),
            Reply::Free(free) => serializer.serialize_u32(*free),
            Reply::Reserve(outcome) => {
                serializer.serialize_bool(*outcome == ReserveReply::Reserved)
            }
            Reply::Cancel(outcome) => serializer.serialize_bool(*outcome == CancelReply::Cancelled),
            Reply::Pong => serializer.serialize_str("PONG"),
        }
    }
}

struct JsonReply<'r, 'a> {
    rpc_id: Option<u32>,
    result: Result<&'r Reply<'a>, &'r WireError>,
}

impl Serialize for JsonReply<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut reply = serializer.serialize_struct("Reply", 3)?;
        reply.serialize_field("rpcId", &self.rpc_id)?;
        match self.result {
            Ok(result) => {
                reply.serialize_field("result", result)?;
                reply.serialize_field("error", &())?;
            }
            Err(error) => {
                reply.serialize_field("result", &())?;
                reply.serialize_field("error", &error.to_string())?;
            }
        }
        reply.end()
    }
}

/// Serialises into a `Vec`, which cannot fail for this module's types (plain strings, integers
/// and sequences; no maps with non-string keys).
fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Appends a JSON reply (`{"rpcId":..,"result":..,"error":..}`) to `out`.
pub fn encode_json_reply(
    out: &mut Vec<u8>,
    rpc_id: Option<u32>,
    result: Result<&Reply<'_>, &WireError>,
) {
    write_json(out, &JsonReply { rpc_id, result });
}

/// Appends a text reply (`PONG`, `12`, `OK`, `FULL`, `ERR BAD_PLATE ...`) to `out`.
pub fn encode_text_reply(out: &mut Vec<u8>, result: Result<&Reply<'_>, &WireError>) {
    let word: &[u8] = match result {
        Ok(Reply::Lots(lots)) => return write_json(out, lots),
        Ok(Reply::Free(free)) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{free}");
            return;
        }
        Ok(Reply::Reserve(ReserveReply::Reserved)) => b"OK",
        Ok(Reply::Reserve(ReserveReply::Full)) => b"FULL",
        Ok(Reply::Reserve(ReserveReply::Exists)) => b"EXISTS",
        Ok(Reply::Cancel(CancelReply::Cancelled)) => b"OK",
        Ok(Reply::Cancel(CancelReply::NotFound)) => b"NOT_FOUND",
        Ok(Reply::Pong) => b"PONG",
        Err(error) => {
            let _ = write!(out, "ERR {} {}", error.code, error.detail);
            return;
        }
    };
    out.extend_from_slice(word);
}

/// A JSON reply as a client receives it; `result` stays raw until the caller, who knows which
/// method it called, decodes it.
#[derive(Debug, Deserialize)]
pub struct ReplyEnvelope<'a> {
    /// The echoed request id (`null` when the server could not read one).
    #[serde(rename = "rpcId")]
    pub rpc_id: Option<u32>,
    /// The method's result, `null` on error.
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    /// `"CODE: detail"`, or `null` on success.
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
}

/// Decodes a JSON reply payload.
pub fn decode_json_reply(payload: &[u8]) -> Result<ReplyEnvelope<'_>, serde_json::Error> {
    serde_json::from_slice(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(payload: &str) -> Result<(u32, Request<'_>), RejectedRequest> {
        decode_json_request(payload.as_bytes())
    }

    fn code_of(payload: &str) -> (Option<u32>, ErrorCode) {
        let rejected = json(payload).unwrap_err();
        (rejected.rpc_id, rejected.error.code)
    }

    #[test]
    fn decodes_every_method() {
        assert_eq!(
            json(r#"{"rpcId": 42, "method": "reserve", "args": ["A", "7ABC123"]}"#).unwrap(),
            (
                42,
                Request::Reserve {
                    lot: "A".into(),
                    plate: "7ABC123".into()
                }
            )
        );
        assert_eq!(
            json(r#"{"rpcId":1,"method":"getLots","args":[]}"#).unwrap(),
            (1, Request::GetLots)
        );
        assert_eq!(
            json(r#"{"rpcId":1,"method":"ping","args":[]}"#).unwrap().1,
            Request::Ping
        );
        assert_eq!(
            json(r#"{"rpcId":1,"method":"PING","args":[],"extra":true}"#)
                .unwrap()
                .1,
            Request::Ping
        );
        assert_eq!(
            json(r#"{"rpcId":1,"method":"getAvailability","args":["B\u0031"]}"#)
                .unwrap()
                .1,
            Request::GetAvailability { lot: "B1".into() }
        );
    }

    #[test]
    fn error_codes_and_echoed_ids() {
        assert_eq!(code_of("{"), (None, ErrorCode::BadRequest));
        assert_eq!(code_of("[1]"), (None, ErrorCode::BadRequest));
        assert_eq!(
            code_of(r#"{"method":"PING","args":[]}"#),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":-1,"method":"PING","args":[]}"#),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":4294967296,"method":"PING","args":[]}"#),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":"7","method":"PING","args":[]}"#),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"args":[]}"#),
            (Some(7), ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":3,"args":[]}"#),
            (Some(7), ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":"PING"}"#),
            (Some(7), ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":"PING","args":{}}"#),
            (Some(7), ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":"Ping","args":[]}"#),
            (Some(7), ErrorCode::UnknownMethod)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":"getlots","args":[]}"#),
            (Some(7), ErrorCode::UnknownMethod)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":"reserve","args":["A"]}"#),
            (Some(7), ErrorCode::BadArgs)
        );
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":"reserve","args":["A",5]}"#),
            (Some(7), ErrorCode::BadArgs)
        );
        let rejected = decode_json_request(b"{\"rpcId\":1,\"method\":\"\xff\"}").unwrap_err();
        assert_eq!(rejected.error.code, ErrorCode::BadRequest);
        assert_eq!(
            WireError::parse_json_form("NOPE: x")
                .unwrap_err()
                .to_string(),
            "unknown error code \"NOPE\""
        );
    }

    #[test]
    fn text_aliases() {
        assert_eq!(decode_text_request(b"ping").unwrap(), Request::Ping);
        assert_eq!(decode_text_request(b"  LOTS ").unwrap(), Request::GetLots);
        assert_eq!(
            decode_text_request(b"Reserve   A  x-1").unwrap(),
            Request::Reserve {
                lot: "A".into(),
                plate: "x-1".into()
            }
        );
        assert_eq!(
            decode_text_request(b"").unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            decode_text_request(b"FLY A").unwrap_err().code,
            ErrorCode::UnknownMethod
        );
        assert_eq!(
            decode_text_request(b"AVAIL").unwrap_err().code,
            ErrorCode::BadArgs
        );
        assert_eq!(
            decode_text_request(b"PING x").unwrap_err().code,
            ErrorCode::BadArgs
        );
        assert_eq!(
            decode_text_request(b"\xff").unwrap_err().code,
            ErrorCode::BadRequest
        );
        // The JSON-only lowercase alias is not a text verb.
        assert_eq!(
            decode_text_request(b"getLots").unwrap_err().code,
            ErrorCode::UnknownMethod
        );
    }

    #[test]
    fn requests_round_trip() {
        let requests = [
            Request::GetLots,
            Request::GetAvailability { lot: "A".into() },
            Request::Reserve {
                lot: "B".into(),
                plate: "AB-12".into(),
            },
            Request::Cancel {
                lot: "C".into(),
                plate: "Q".into(),
            },
            Request::Ping,
        ];
        for request in requests {
            let mut out = Vec::new();
            encode_json_request(&mut out, 9, &request);
            assert!(is_json(&out));
            assert_eq!(decode_json_request(&out).unwrap(), (9, request.clone()));
            out.clear();
            encode_text_request(&mut out, &request);
            assert!(!is_json(&out));
            assert_eq!(decode_text_request(&out).unwrap(), request);
        }
    }

    #[test]
    fn json_replies() {
        let mut out = Vec::new();
        encode_json_reply(
            &mut out,
            Some(42),
            Ok(&Reply::Reserve(ReserveReply::Exists)),
        );
        assert_eq!(out, br#"{"rpcId":42,"result":false,"error":null}"#);
        out.clear();
        let error = WireError::new(ErrorCode::FrameTooLarge, "too big");
        encode_json_reply(&mut out, None, Err(&error));
        assert_eq!(
            out,
            br#"{"rpcId":null,"result":null,"error":"FRAME_TOO_LARGE: too big"}"#
        );
        let envelope = decode_json_reply(&out).unwrap();
        assert_eq!(envelope.rpc_id, None);
        assert_eq!(
            WireError::parse_json_form(envelope.error.as_deref().unwrap()).unwrap(),
            error
        );
        out.clear();
        let lots = Reply::Lots(vec![LotStatus {
            id: "A".into(),
            capacity: 100,
            occupied: 3,
            reserved: 2,
            free: 95,
        }]);
        encode_json_reply(&mut out, Some(1), Ok(&lots));
        assert_eq!(
            out,
            br#"{"rpcId":1,"result":[{"id":"A","capacity":100,"occupied":3,"reserved":2,"free":95}],"error":null}"#
        );
    }

    #[test]
    fn text_replies() {
        let cases: [(Result<Reply<'_>, WireError>, &str); 7] = [
            (Ok(Reply::Pong), "PONG"),
            (Ok(Reply::Free(12)), "12"),
            (Ok(Reply::Reserve(ReserveReply::Reserved)), "OK"),
            (Ok(Reply::Reserve(ReserveReply::Full)), "FULL"),
            (Ok(Reply::Cancel(CancelReply::NotFound)), "NOT_FOUND"),
            (Ok(Reply::Lots(Vec::new())), "[]"),
            (
                Err(WireError::new(ErrorCode::BadPlate, "plate is empty")),
                "ERR BAD_PLATE plate is empty",
            ),
        ];
        for (result, expected) in cases {
            let mut out = Vec::new();
            encode_text_reply(&mut out, result.as_ref());
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn json_detection() {
        assert!(is_json(b" \n{"));
        assert!(!is_json(b"PING"));
        assert!(!is_json(b""));
    }
}
