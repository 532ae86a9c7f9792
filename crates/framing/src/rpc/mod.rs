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
//!
//! # Layout
//! - `methods.rs`: the table of methods, the one place their names and arguments are written;
//!   [`Method`] and [`Request`] come from it.
//! - `error.rs`: [`ErrorCode`], [`WireError`] and [`RejectedRequest`].
//! - `reply.rs`: [`Reply`] and its parts, and the JSON and text reply codecs.
//! - this file: telling JSON from text, and the request codecs.

mod error;
mod methods;
mod reply;

use std::borrow::Cow;

use std::fmt;

use serde::Deserialize;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use state::shown;

pub use error::{ErrorCode, RejectedRequest, UnknownErrorCode, WireError};
pub use methods::{Arg, LotFilter, Method, Request};
pub use reply::{
    KeyGrant, LotStatus, Reply, ReplyEnvelope, decode_json_reply, encode_json_reply,
    encode_text_reply,
};
pub use state::{
    Availability, Booking, BookingStatus, CancelOutcome, LotOffer, Offer, ReserveOutcome,
    SpotOffer, WaitEntry,
};

/// True when the payload is a JSON request (first non-blank byte is `{`), false for a text alias.
pub fn is_json(payload: &[u8]) -> bool {
    payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// The three fields a request object must have, left raw so that a mistyped `method` or `args`
/// can still be answered with the request's `rpcId`. Other fields are ignored.
///
/// A field written as `null` is present (and mistyped), not missing: serde's `Option` would
/// read it as absent, hence `present`.
#[derive(Deserialize)]
struct RequestFields<'a> {
    #[serde(rename = "rpcId", borrow, default, deserialize_with = "present")]
    rpc_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    args: Option<&'a RawValue>,
}

/// A request object as a well-behaved client writes it, read in one pass straight into the
/// [`Request`]: an integer `rpcId`, then a known `method` written without escapes, then its
/// `args` array, each argument of its kind and strings without escapes (borrowed from the
/// payload). Anything else (a field missing, mistyped, `null`, duplicated or out of that
/// order, an escape, invalid JSON) fails here and the request is read again through
/// [`RequestFields`], which says what is wrong. Other fields are ignored by both, so a
/// request this reads decodes exactly as there.
struct OnePass;

impl<'de> Visitor<'de> for OnePass {
    type Value = (u32, Request<'de>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut rpc_id, mut method, mut request) = (None, None, None);
        // Only the first failure matters, and only as "read it again": the errors say little.
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "rpcId" if rpc_id.is_none() => rpc_id = Some(map.next_value::<u32>()?),
                "method" if method.is_none() => {
                    let name = map.next_value::<&'de str>()?;
                    method = Some(
                        Method::from_name(name)
                            .ok_or_else(|| A::Error::custom("unknown method"))?,
                    );
                }
                // What an argument must be depends on the method, so it comes first.
                "args" if request.is_none() => {
                    let method = method.ok_or_else(|| A::Error::custom("args before method"))?;
                    request = Some(map.next_value_seed(ArgsOf(method))?);
                }
                "rpcId" | "method" | "args" => return Err(A::Error::custom("duplicate field")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        rpc_id
            .zip(request)
            .ok_or_else(|| A::Error::custom("missing field"))
    }
}

/// The `args` array of a request for this method.
struct ArgsOf(Method);

impl<'de> DeserializeSeed<'de> for ArgsOf {
    type Value = Request<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArgsOf {
    type Value = Request<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an argument array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Request::from_json_seq(self.0, seq)
    }
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
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
    // Nearly every request is well formed: one pass over it instead of five (the object,
    // then `rpcId`, `method`, `args` and each argument again from their raw text).
    let mut one_pass = serde_json::Deserializer::from_str(text);
    if let Ok(decoded) = one_pass.deserialize_map(OnePass)
        && one_pass.end().is_ok()
    {
        return Ok(decoded);
    }
    decode_json_fields(text)
}

/// Decodes a request that [`OnePass`] did not take, field by field, saying what is wrong.
fn decode_json_fields(text: &str) -> Result<(u32, Request<'_>), RejectedRequest> {
    let fields: RequestFields<'_> = serde_json::from_str(text)
        .map_err(|err| bad_request(None, format!("not a JSON request object: {err}")))?;
    let rpc_id_raw = fields
        .rpc_id
        .ok_or_else(|| bad_request(None, "rpcId is missing"))?;
    let rpc_id = serde_json::from_str::<u32>(rpc_id_raw.get()).map_err(|_| {
        bad_request(
            None,
            format!(
                "rpcId must be an integer from 0 to 4294967295, got {}",
                shown(rpc_id_raw.get())
            ),
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
    request_of(rpc_id, method, args)
}

/// The request `method` names, built from `args`.
fn request_of<'a>(
    rpc_id: u32,
    method: Cow<'a, str>,
    args: Vec<&'a RawValue>,
) -> Result<(u32, Request<'a>), RejectedRequest> {
    let rejected = |error| RejectedRequest {
        rpc_id: Some(rpc_id),
        error,
    };
    // The method is looked up first: what an argument must be depends on the method.
    let known = Method::from_name(&method).ok_or_else(|| {
        rejected(WireError::new(
            ErrorCode::UnknownMethod,
            format!(
                "unknown method {} (methods: {})",
                shown(&method),
                methods::names()
            ),
        ))
    })?;
    let request =
        Request::from_args(known, &method, methods::Args::Json(args)).map_err(rejected)?;
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
    let method = Method::from_verb(verb).ok_or_else(|| {
        WireError::new(
            ErrorCode::UnknownMethod,
            format!("unknown command {} (try {})", shown(verb), methods::verbs()),
        )
    })?;
    // Errors name the method as JSON does, whatever the verb's case.
    Request::from_args(method, method.name(), methods::Args::Text(fields.collect()))
}

/// Appends the JSON form of `request` to `out`.
pub fn encode_json_request(out: &mut Vec<u8>, rpc_id: u32, request: &Request<'_>) {
    // The keys and method names are the table's plain ASCII words, so they are written as
    // they are; the id and the arguments go through serde_json.
    out.extend_from_slice(b"{\"rpcId\":");
    reply::write_json(out, &rpc_id);
    out.extend_from_slice(b",\"method\":\"");
    out.extend_from_slice(request.method().name().as_bytes());
    out.extend_from_slice(b"\",\"args\":[");
    request.with_args(|args| {
        for (index, arg) in args.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            arg.write_json(out);
        }
    });
    out.extend_from_slice(b"]}");
}

/// Appends the text alias form of `request` to `out`.
pub fn encode_text_request(out: &mut Vec<u8>, request: &Request<'_>) {
    out.extend_from_slice(request.method().verb().as_bytes());
    request.with_args(|args| {
        for arg in args {
            out.push(b' ');
            arg.write_text(out);
        }
    });
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
        // Past the one-pass reading (an escaped method name, fields in another order, a
        // duplicated field) the answer is the same as through the field-by-field one.
        assert_eq!(
            json(r#"{"rpcId":3,"method":"pin\u0067","args":[]}"#).unwrap(),
            (3, Request::Ping)
        );
        assert_eq!(
            json(r#"{"args":["A"],"method":"getAvailability","rpcId":3}"#).unwrap(),
            (3, Request::GetAvailability { lot: "A".into() })
        );
        assert_eq!(
            code_of(r#"{"rpcId":3,"rpcId":4,"method":"ping","args":[]}"#),
            (None, ErrorCode::BadRequest)
        );
    }

    /// What the one-pass reading alone makes of `payload`, `None` where it leaves it.
    fn one_pass(payload: &str) -> Option<(u32, Request<'_>)> {
        let mut de = serde_json::Deserializer::from_str(payload);
        let decoded = de.deserialize_map(OnePass).ok()?;
        de.end().ok().map(|()| decoded)
    }

    /// What `decode_json_request` answered before the one pass: its checks, then the
    /// field-by-field reading.
    fn by_fields(payload: &str) -> Result<(u32, Request<'_>), RejectedRequest> {
        if !payload.trim_start().starts_with('{') {
            return Err(bad_request(None, "request must be a JSON object"));
        }
        decode_json_fields(payload)
    }

    /// Requests in every method's common form: the one pass reads each as the field-by-field
    /// reading does.
    const WELL_FORMED: &[&str] = &[
        r#"{"rpcId":1,"method":"getLots","args":[]}"#,
        r#"{"rpcId":2,"method":"getAvailability","args":["A"]}"#,
        r#"{"rpcId":3,"method":"reserve","args":["A","7ABC123"]}"#,
        r#"{"rpcId":4,"method":"cancel","args":["A","7ABC123"]}"#,
        r#"{"rpcId":5,"method":"book","args":["A","P",10,20]}"#,
        r#"{"rpcId":6,"method":"book","args":["A","P",10,20,"S1"]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P",10,20,null]}"#,
        r#"{"rpcId":8,"method":"getBooking","args":["A.1"]}"#,
        r#"{"rpcId":9,"method":"cancelBooking","args":["A.1"]}"#,
        r#"{"rpcId":10,"method":"checkIn","args":["A.1"]}"#,
        r#"{"rpcId":11,"method":"listBookings","args":["A",1,2]}"#,
        r#"{"rpcId":12,"method":"listBookings","args":["A",1,2,null,"A.3"]}"#,
        r#"{"rpcId":13,"method":"listBookings","args":["A",1,2,5]}"#,
        r#"{"rpcId":14,"method":"findLots","args":[{"start":1,"end":2,"zone":"n"}]}"#,
        r#"{"rpcId":15,"method":"joinWaitlist","args":["A","P",10,20]}"#,
        r#"{"rpcId":16,"method":"acceptOffer","args":["A.w1"]}"#,
        r#"{"rpcId":17,"method":"leaveWaitlist","args":["A.w1"]}"#,
        r#"{"rpcId":18,"method":"myBookings","args":["P"]}"#,
        r#"{"rpcId":19,"method":"myWaitlist","args":["P"]}"#,
        r#"{"rpcId":20,"method":"PING","args":[]}"#,
        r#"{"rpcId":21,"method":"ping","args":[]}"#,
        r#"{"rpcId":22,"method":"auth","args":["t0k"]}"#,
        r#" { "rpcId" : 4294967295 , "method" : "getAvailability" , "args" : [ "A" ] } "#,
        r#"{"rpcId":0,"extra":{"deep":[1,{"x":"\u0041"}]},"method":"ping","args":[]}"#,
        r#"{"rpcId":1,"method":"getAvailability","args":["A"],"extra":null}"#,
        // A query's strings may be escaped: it is read as `from_json` reads it.
        r#"{"rpcId":1,"method":"findLots","args":[{"start":1,"end":2,"zone":"\u006e"}]}"#,
    ];

    /// Payloads the one pass must leave to the field-by-field reading (each for a reason of
    /// its own), which answers them as before: accepted, or the same error code and detail.
    const LEFT_TO_FIELDS: &[&str] = &[
        // Accepted there, not the common form.
        r#"{"rpcId":1,"method":"pin\u0067","args":[]}"#,
        r#"{"rpcId":1,"method":"getAvailability","args":["B\u0031"]}"#,
        r#"{"rpcId":1,"method":"book","args":["A","P",10,20,"S\n"]}"#,
        r#"{"args":["A"],"method":"getAvailability","rpcId":3}"#,
        r#"{"rpcId":3,"args":["A"],"method":"getAvailability"}"#,
        r#"{"rpc\u0049d":3,"method":"ping","args":[]}"#,
        // Refused there.
        "",
        "{",
        "[1]",
        r#"[1,"ping",[]]"#,
        r#"{"rpcId":1,"method":"ping","args":[]}x"#,
        r#"{"rpcId":1,"method":"ping","args":[]}{}"#,
        r#"{"rpcId":1,"method":"ping","args":[],}"#,
        r#"{"rpcId":1,"method":"ping","args":[1,]}"#,
        r#"{"rpcId":1,"method":"ping","args":[]"#,
        r#"{"rpcId":3,"rpcId":4,"method":"ping","args":[]}"#,
        r#"{"rpcId":3,"method":"ping","method":"ping","args":[]}"#,
        r#"{"rpcId":3,"method":"ping","args":[],"args":[]}"#,
        r#"{"rpcId":null,"method":"ping","args":[]}"#,
        r#"{"rpcId":-1,"method":"ping","args":[]}"#,
        r#"{"rpcId":1.0,"method":"ping","args":[]}"#,
        r#"{"rpcId":1e2,"method":"ping","args":[]}"#,
        r#"{"rpcId":4294967296,"method":"ping","args":[]}"#,
        r#"{"rpcId":"7","method":"ping","args":[]}"#,
        r#"{"method":"ping","args":[]}"#,
        r#"{"rpcId":7,"args":[]}"#,
        r#"{"rpcId":7,"method":null,"args":[]}"#,
        r#"{"rpcId":7,"method":3,"args":[]}"#,
        r#"{"rpcId":7,"method":"Ping","args":[]}"#,
        r#"{"rpcId":7,"method":"fly","args":[5]}"#,
        r#"{"rpcId":7,"method":"PING"}"#,
        r#"{"rpcId":7,"method":"PING","args":null}"#,
        r#"{"rpcId":7,"method":"PING","args":{}}"#,
        r#"{"rpcId":7,"method":"PING","args":"x"}"#,
        r#"{"rpcId":7,"method":"PING","args":[1]}"#,
        r#"{"rpcId":7,"method":"reserve","args":["A"]}"#,
        r#"{"rpcId":7,"method":"reserve","args":["A",5]}"#,
        r#"{"rpcId":7,"method":"reserve","args":["A",null]}"#,
        r#"{"rpcId":7,"method":"reserve","args":["A","P","Q"]}"#,
        r#"{"rpcId":7,"method":"getAvailability","args":[["A"]]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P","10",20]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P",10.5,20]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P",-1,20]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P",1e3,20]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P",18446744073709551616,20]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P",10,20,5]}"#,
        r#"{"rpcId":7,"method":"book","args":["A","P",10,20,"S",1]}"#,
        r#"{"rpcId":7,"method":"listBookings","args":["A",1,2,"5"]}"#,
        r#"{"rpcId":7,"method":"findLots","args":[{"start":1}]}"#,
        r#"{"rpcId":7,"method":"findLots","args":[{"start":1,"end":2,"colour":"red"}]}"#,
        r#"{"rpcId":7,"method":"findLots","args":[7]}"#,
        r#"{"rpcId":7,"method":"auth","args":[null]}"#,
        r#"{"rpcId":7,"method":"ping","args":[],"extra":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
    ];

    #[test]
    fn the_one_pass_reads_common_requests_as_the_field_by_field_reading_does() {
        for payload in WELL_FORMED {
            let decoded = one_pass(payload);
            assert!(decoded.is_some(), "one pass left {payload}");
            assert_eq!(decoded.map(Ok), Some(by_fields(payload)), "{payload}");
            assert_eq!(json(payload), by_fields(payload), "{payload}");
        }
        // Strings are borrowed from the payload.
        let (_, request) = one_pass(WELL_FORMED[2]).unwrap();
        let Request::Reserve {
            lot: Cow::Borrowed(_),
            plate: Cow::Borrowed(_),
        } = request
        else {
            panic!("not borrowed: {request:?}");
        };
    }

    #[test]
    fn what_the_one_pass_leaves_is_answered_as_before() {
        for payload in LEFT_TO_FIELDS {
            assert_eq!(one_pass(payload), None, "one pass took {payload}");
            assert_eq!(json(payload), by_fields(payload), "{payload}");
        }
        // Including invalid UTF-8, which never reaches either reading.
        let rejected =
            decode_json_request(b"{\"rpcId\":1,\"method\":\"ping\",\"args\":[],\"x\":\"\xff\"}");
        assert_eq!(rejected.unwrap_err().error.detail, "payload is not UTF-8");
    }

    proptest::proptest! {
        /// A well-formed request with one byte changed, inserted or cut off decodes through
        /// the one pass exactly as through the field-by-field reading: the same request, or
        /// the same rejection (code, detail and echoed id).
        #[test]
        fn a_mutated_request_decodes_as_the_field_by_field_reading_says(
            which in 0..WELL_FORMED.len(),
            at in 0usize..200,
            byte in proptest::sample::select(
                b"{}[]\",:0123456789-.eE+ \\untrlfasAPxy\x7f".to_vec()
            ),
            how in 0u8..3,
        ) {
            let mut payload = WELL_FORMED[which].as_bytes().to_vec();
            let at = at % payload.len();
            match how {
                0 => payload[at] = byte,
                1 => payload.insert(at, byte),
                _ => payload.truncate(at),
            }
            let text = std::str::from_utf8(&payload).unwrap();
            proptest::prop_assert_eq!(decode_json_request(&payload), by_fields(text), "{}", text);
        }
    }

    #[test]
    fn a_null_field_is_mistyped_not_missing() {
        let detail = |payload: &str| json(payload).unwrap_err().error.detail;
        assert_eq!(
            detail(r#"{"rpcId":null,"method":"ping","args":[]}"#),
            r#"rpcId must be an integer from 0 to 4294967295, got "null""#
        );
        assert_eq!(detail(r#"{"method":"ping","args":[]}"#), "rpcId is missing");
        assert_eq!(
            detail(r#"{"rpcId":1,"method":null,"args":[]}"#),
            "method must be a string"
        );
        assert_eq!(
            detail(r#"{"rpcId":1,"method":"ping","args":null}"#),
            "args must be an array"
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
    }

    #[test]
    fn booking_arguments_are_numbers_and_objects_in_json() {
        assert_eq!(
            json(r#"{"rpcId":1,"method":"book","args":["A","P",10,20,"S1"]}"#)
                .unwrap()
                .1,
            Request::Book {
                lot: "A".into(),
                plate: "P".into(),
                start: 10,
                end: 20,
                spot: Some("S1".into()),
            }
        );
        assert_eq!(
            json(r#"{"rpcId":1,"method":"book","args":["A","P",10,20,null]}"#)
                .unwrap()
                .1,
            json(r#"{"rpcId":1,"method":"book","args":["A","P",10,20]}"#)
                .unwrap()
                .1
        );
        assert_eq!(
            json(r#"{"rpcId":1,"method":"findLots","args":[{"start":1,"end":2,"zone":"n"}]}"#)
                .unwrap()
                .1,
            Request::FindLots {
                query: LotFilter {
                    zone: Some("n".into()),
                    feature: None,
                    start: 1,
                    end: 2,
                }
            }
        );
        for args in [
            r#"["A","P","10",20]"#,
            r#"["A","P",10.5,20]"#,
            r#"["A","P",-1,20]"#,
            r#"["A","P",1e3,20]"#,
            r#"["A","P",10,20,5]"#,
            r#"["A","P",10,20,"S",1]"#,
        ] {
            let payload = format!(r#"{{"rpcId":3,"method":"book","args":{args}}}"#);
            assert_eq!(code_of(&payload), (Some(3), ErrorCode::BadArgs), "{args}");
        }
        for args in [
            r#"[{"start":1}]"#,
            r#"[{"start":1,"end":2,"colour":"red"}]"#,
            "[7]",
        ] {
            let payload = format!(r#"{{"rpcId":3,"method":"findLots","args":{args}}}"#);
            assert_eq!(code_of(&payload), (Some(3), ErrorCode::BadArgs), "{args}");
        }
        // The method is known before arguments are read by kind.
        assert_eq!(
            code_of(r#"{"rpcId":7,"method":"fly","args":[5]}"#),
            (Some(7), ErrorCode::UnknownMethod)
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
    fn method_names_need_no_json_escapes() {
        // encode_json_request writes them between quotes as they are.
        for method in Method::ALL {
            assert!(
                method.name().bytes().all(|b| b.is_ascii_alphanumeric()),
                "{method:?}"
            );
        }
        let mut out = Vec::new();
        encode_json_request(&mut out, 7, &Request::GetAvailability { lot: "A\"".into() });
        assert_eq!(
            out,
            br#"{"rpcId":7,"method":"getAvailability","args":["A\""]}"#
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
            Request::Book {
                lot: "A".into(),
                plate: "P".into(),
                start: 1_712_345_678,
                end: 1_712_349_278,
                spot: None,
            },
            Request::Book {
                lot: "A".into(),
                plate: "P".into(),
                start: 0,
                end: u64::MAX,
                spot: Some("A-EV1".into()),
            },
            Request::GetBooking {
                booking: "A.1".into(),
            },
            Request::CancelBooking {
                booking: "A.2".into(),
            },
            Request::CheckIn {
                booking: "A.3".into(),
            },
            Request::ListBookings {
                lot: "A".into(),
                start: 5,
                end: 6,
                limit: None,
                after: None,
            },
            Request::ListBookings {
                lot: "A".into(),
                start: 5,
                end: 6,
                limit: Some(10),
                after: Some("A.9".into()),
            },
            Request::FindLots {
                query: LotFilter {
                    zone: None,
                    feature: Some("ev".into()),
                    start: 7,
                    end: 8,
                },
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
            Ok(&Reply::Reserve(ReserveOutcome::Exists)),
        );
        assert_eq!(
            out,
            br#"{"rpcId":42,"result":false,"error":null,"reason":"EXISTS"}"#
        );
        assert_eq!(
            decode_json_reply(&out).unwrap().reason.as_deref(),
            Some("EXISTS")
        );
        for (reply, json) in [
            (
                Reply::Reserve(ReserveOutcome::Full),
                &br#"{"rpcId":1,"result":false,"error":null,"reason":"FULL"}"#[..],
            ),
            (
                Reply::Cancel(CancelOutcome::NotFound),
                br#"{"rpcId":1,"result":false,"error":null,"reason":"NOT_FOUND"}"#,
            ),
            // A success has no reason.
            (
                Reply::Reserve(ReserveOutcome::Reserved),
                br#"{"rpcId":1,"result":true,"error":null}"#,
            ),
            (
                Reply::Cancel(CancelOutcome::Cancelled),
                br#"{"rpcId":1,"result":true,"error":null}"#,
            ),
        ] {
            out.clear();
            encode_json_reply(&mut out, Some(1), Ok(&reply));
            assert_eq!(out, json, "{reply:?}");
        }
        // A server that predates `reason` is still read.
        let old = decode_json_reply(br#"{"rpcId":1,"result":false,"error":null}"#).unwrap();
        assert_eq!(old.reason, None);
        for (rpc_id, reply, json) in [
            (
                Some(7),
                Reply::Free(95),
                &br#"{"rpcId":7,"result":95,"error":null}"#[..],
            ),
            (
                None,
                Reply::Pong,
                br#"{"rpcId":null,"result":"PONG","error":null}"#,
            ),
        ] {
            out.clear();
            encode_json_reply(&mut out, rpc_id, Ok(&reply));
            assert_eq!(out, json, "{reply:?}");
        }
        out.clear();
        let error = WireError::new(ErrorCode::BadPlate, "plate \"x\\\n\" is bad");
        encode_json_reply(&mut out, Some(4_294_967_295), Err(&error));
        assert_eq!(
            out,
            br#"{"rpcId":4294967295,"result":null,"error":"BAD_PLATE: plate \"x\\\n\" is bad"}"#
        );
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
            counted: 3,
            reserved: 2,
            booked: 0,
            free: 95,
            status: Some(state::Availability::Open),
        }]);
        encode_json_reply(&mut out, Some(1), Ok(&lots));
        assert_eq!(
            out,
            br#"{"rpcId":1,"result":[{"id":"A","capacity":100,"occupied":3,"counted":3,"reserved":2,"booked":0,"free":95,"status":"open"}],"error":null}"#
        );
    }

    #[test]
    fn text_replies() {
        let cases: [(Result<Reply<'_>, WireError>, &str); 7] = [
            (Ok(Reply::Pong), "PONG"),
            (Ok(Reply::Free(12)), "12"),
            (Ok(Reply::Reserve(ReserveOutcome::Reserved)), "OK"),
            (Ok(Reply::Reserve(ReserveOutcome::Full)), "FULL"),
            (Ok(Reply::Cancel(CancelOutcome::NotFound)), "NOT_FOUND"),
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
