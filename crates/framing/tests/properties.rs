//! Property tests for the wire codecs (see `docs/robustness.md`).
//!
//! Three kinds of property:
//! - **No panic, typed result**: every decoder, fed arbitrary bytes or bytes biased towards its
//!   grammar, returns a value or a typed error. Grammar-biased inputs are checked against a small
//!   reference model of the grammar written here, so they prove the decoder picks the right
//!   error code, not only that it survives.
//! - **Round trips**: encoding any valid value and decoding the bytes gives the value back, and
//!   anything a decoder accepts survives a re-encode and re-decode unchanged.
//! - **Cut streams**: a stream of frames or lines that arrives in chunks of arbitrary sizes
//!   decodes to what the whole stream decodes to.
//!
//! Case counts are sized so the whole file runs in a few seconds in a debug build.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;

use codec_checks::{ShortReads, same_server_line};

use framing::Secret;
use framing::frame::{self, FrameError, HEADER_LEN, MAX_FRAME_LEN};
use framing::pubsub::{self, Command, Event, PubsubError, PubsubErrorCode, ServerLine, Topic};
use framing::rpc::{
    self, Arg, CancelOutcome, ErrorCode, KeyGrant, LotFilter, LotStatus, Method, Reply, Request,
    ReserveOutcome, WireError,
};
use framing::sensor::{
    self, CountChange, Passage, SensorCommand, SensorError, SensorErrorCode, SensorReply,
};
use framing::{line, pubsub::MAX_LINE_LEN as PUBSUB_MAX_LINE_LEN, sensor::MAX_LINE_LEN};
use proptest::prelude::*;
use proptest::{collection::vec, option, sample::select};
use serde_json::Value;
use state::{
    Availability, Booking, BookingId, BookingStatus, Label, LotId, LotOffer, Offer, Plate, SpotId,
    SpotOffer, WaitEntry, WaitId, Window,
};

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A lot id as the protocol allows it (`ALL` included: only the pub/sub port reserves it).
fn lot_id() -> BoxedStrategy<String> {
    "[A-Za-z0-9_-]{1,32}".boxed()
}

/// A lot id that `SUBSCRIBE` can name (`ALL` in any case means every lot).
fn subscribable_lot_id() -> BoxedStrategy<String> {
    lot_id()
        .prop_filter("ALL is SUBSCRIBE ALL", |id| !id.eq_ignore_ascii_case("ALL"))
        .boxed()
}

fn plate() -> BoxedStrategy<String> {
    "[A-Za-z0-9-]{1,16}".boxed()
}

/// Every JSON method name and alias, and near misses: other cases, verbs used as names.
fn method_names() -> Vec<String> {
    Method::ALL
        .iter()
        .flat_map(|method| {
            let name = method.name();
            let mut near = name.to_owned();
            // Flip the case of the first letter: `Ping`, `GetLots`.
            near.replace_range(..1, &flip_case(&name[..1]));
            [name.to_owned(), near, method.verb().to_owned()]
                .into_iter()
                .chain(method.aliases().iter().map(|alias| (*alias).to_owned()))
        })
        .collect()
}

/// Every text verb in several cases, and JSON names used as verbs.
fn method_verbs() -> Vec<String> {
    Method::ALL
        .iter()
        .flat_map(|method| {
            let verb = method.verb();
            [
                verb.to_owned(),
                verb.to_ascii_lowercase(),
                flip_case(&verb[..1]) + &verb[1..].to_ascii_lowercase(),
                method.name().to_owned(),
            ]
        })
        .collect()
}

fn flip_case(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// A field of a whitespace-separated line: anything but the ASCII whitespace
/// `split_ascii_whitespace` splits on (so `\x0b` and non-ASCII spaces are fair game).
fn token() -> BoxedStrategy<String> {
    "[^ \t\n\r\x0c]{1,10}".boxed()
}

/// One run of ASCII whitespace, as separators between fields.
fn separator() -> BoxedStrategy<String> {
    "[ \t\r\x0c]{1,3}".boxed()
}

/// Optional leading or trailing ASCII whitespace.
fn padding() -> BoxedStrategy<String> {
    "[ \t\r\n\x0c]{0,2}".boxed()
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 0..max).boxed()
}

fn requests(
    lot: BoxedStrategy<String>,
    plate: BoxedStrategy<String>,
) -> BoxedStrategy<Request<'static>> {
    let booking = (lot.clone(), any::<u64>()).prop_map(|(lot, n)| format!("{lot}.{n}"));
    let entry = (lot.clone(), any::<u64>()).prop_map(|(lot, n)| format!("{lot}.w{n}"));
    prop_oneof![
        Just(Request::GetLots),
        Just(Request::Ping),
        lot.clone()
            .prop_map(|lot| Request::GetAvailability { lot: lot.into() }),
        (lot.clone(), plate.clone()).prop_map(|(lot, plate)| Request::Reserve {
            lot: lot.into(),
            plate: plate.into()
        }),
        (lot.clone(), plate.clone()).prop_map(|(lot, plate)| Request::Cancel {
            lot: lot.into(),
            plate: plate.into()
        }),
        plate.clone().prop_map(|token| Request::Auth {
            token: Secret::new(token)
        }),
        (
            lot.clone(),
            plate.clone(),
            any::<[u64; 2]>(),
            option::of(lot.clone())
        )
            .prop_map(|(lot, plate, [start, end], spot)| Request::JoinWaitlist {
                lot: lot.into(),
                plate: plate.into(),
                start,
                end,
                spot: spot.map(Into::into),
            }),
        entry.clone().prop_map(|entry| Request::AcceptOffer {
            entry: entry.into()
        }),
        entry.prop_map(|entry| Request::LeaveWaitlist {
            entry: entry.into()
        }),
        plate.clone().prop_map(|plate| Request::MyBookings {
            plate: plate.into()
        }),
        plate.clone().prop_map(|plate| Request::MyWaitlist {
            plate: plate.into()
        }),
        (
            lot.clone(),
            plate,
            any::<[u64; 2]>(),
            option::of(lot.clone())
        )
            .prop_map(|(lot, plate, [start, end], spot)| Request::Book {
                lot: lot.into(),
                plate: plate.into(),
                start,
                end,
                spot: spot.map(Into::into),
            }),
        booking.clone().prop_map(|booking| Request::GetBooking {
            booking: booking.into()
        }),
        booking.clone().prop_map(|booking| Request::CancelBooking {
            booking: booking.into()
        }),
        booking.clone().prop_map(|booking| Request::CheckIn {
            booking: booking.into()
        }),
        (
            lot.clone(),
            any::<[u64; 2]>(),
            option::of(any::<u64>()),
            option::of(booking.clone())
        )
            .prop_map(|(lot, [start, end], limit, after)| Request::ListBookings {
                lot: lot.into(),
                start,
                end,
                limit,
                after: after.map(Into::into),
            }),
        (option::of(lot.clone()), option::of(lot), any::<[u64; 2]>()).prop_map(
            |(zone, feature, [start, end])| Request::FindLots {
                query: LotFilter {
                    zone: zone.map(Into::into),
                    feature: feature.map(Into::into),
                    start,
                    end,
                },
            }
        ),
    ]
    .boxed()
}

/// A JSON argument of any kind a method takes: strings, Unix seconds, lot queries.
fn json_arg() -> BoxedStrategy<Value> {
    let query = (
        option::of(prop_oneof![lot_id().prop_map(Value::from), json_value()]),
        option::of(prop_oneof![lot_id().prop_map(Value::from), json_value()]),
        option::of(prop_oneof![
            any::<u64>().prop_map(Value::from),
            json_value()
        ]),
        option::of(prop_oneof![
            any::<u64>().prop_map(Value::from),
            json_value()
        ]),
        option::weighted(0.1, json_value()),
    )
        .prop_map(|(zone, feature, start, end, extra)| {
            let members = [
                ("zone", zone),
                ("feature", feature),
                ("start", start),
                ("end", end),
                ("colour", extra),
            ];
            Value::Object(
                members
                    .into_iter()
                    .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value)))
                    .collect(),
            )
        });
    prop_oneof![
        3 => lot_id().prop_map(Value::from),
        3 => plate().prop_map(Value::from),
        2 => any::<u64>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => query,
        1 => any::<String>().prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

/// A text field of any kind a method takes: tokens, digits, lot queries.
fn text_arg() -> BoxedStrategy<String> {
    let pair = prop_oneof![
        lot_id().prop_map(|zone| format!("zone={zone}")),
        lot_id().prop_map(|feature| format!("feature={feature}")),
        any::<u64>().prop_map(|start| format!("start={start}")),
        "[0-9+x]{0,4}".prop_map(|end| format!("end={end}")),
        "[a-z]{0,6}=?[a-z0-9]{0,4}",
    ];
    prop_oneof![
        3 => lot_id(),
        3 => plate(),
        2 => any::<u64>().prop_map(|secs| secs.to_string()),
        1 => "[+0-9]{1,22}",
        1 => vec(pair, 1..5).prop_map(|pairs| pairs.join("&")),
        1 => token(),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{0,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Writes `fields` as a JSON object, in the given order, with `separator` between members.
fn json_object(fields: &[(String, Value)], separator: &str) -> String {
    let members: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
        .collect();
    format!("{{{}}}", members.join(separator))
}

const ERROR_CODES: [ErrorCode; 22] = [
    ErrorCode::BadRequest,
    ErrorCode::UnknownMethod,
    ErrorCode::BadArgs,
    ErrorCode::UnknownLot,
    ErrorCode::BadPlate,
    ErrorCode::FrameTooLarge,
    ErrorCode::Busy,
    ErrorCode::Unavailable,
    ErrorCode::Full,
    ErrorCode::SpotTaken,
    ErrorCode::BadWindow,
    ErrorCode::UnknownSpot,
    ErrorCode::UnknownBooking,
    ErrorCode::NotDue,
    ErrorCode::BadState,
    ErrorCode::NotFull,
    ErrorCode::AlreadyWaiting,
    ErrorCode::WaitlistFull,
    ErrorCode::UnknownEntry,
    ErrorCode::NoOffer,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
];

const SENSOR_ERROR_CODES: [SensorErrorCode; 9] = [
    SensorErrorCode::UnknownCommand,
    SensorErrorCode::UnknownLot,
    SensorErrorCode::BadCount,
    SensorErrorCode::LineTooLong,
    SensorErrorCode::Busy,
    SensorErrorCode::Unavailable,
    SensorErrorCode::BadPlate,
    SensorErrorCode::Unauthorized,
    SensorErrorCode::Forbidden,
];

const PUBSUB_ERROR_CODES: [PubsubErrorCode; 6] = [
    PubsubErrorCode::UnknownLot,
    PubsubErrorCode::BadCommand,
    PubsubErrorCode::LineTooLong,
    PubsubErrorCode::Busy,
    PubsubErrorCode::Unauthorized,
    PubsubErrorCode::Forbidden,
];

fn availability() -> BoxedStrategy<Option<Availability>> {
    proptest::option::of(select(vec![
        Availability::Open,
        Availability::AlmostFull,
        Availability::Full,
    ]))
    .boxed()
}

fn lot_status() -> BoxedStrategy<LotStatus<'static>> {
    (
        any::<String>(),
        any::<[u32; 4]>(),
        any::<i64>(),
        availability(),
    )
        .prop_map(
            |(id, [capacity, occupied, reserved, free], counted, status)| LotStatus {
                id: id.into(),
                capacity,
                occupied,
                counted,
                reserved,
                booked: free / 2,
                free,
                status,
            },
        )
        .boxed()
}

/// A valid waitlist entry, with or without an offer.
fn entry() -> BoxedStrategy<WaitEntry> {
    (
        (
            subscribable_lot_id(),
            any::<u64>(),
            option::of("[A-Z0-9-]{1,8}"),
            plate(),
        ),
        (
            any::<u64>(),
            1u64..100_000,
            option::of(".{0,8}"),
            any::<u64>(),
        ),
        option::of((any::<u64>(), any::<u64>())),
    )
        .prop_map(
            |((lot, seq, spot, plate), (start, length, owner, joined_at), offer)| {
                let lot = LotId::new(&lot).unwrap();
                WaitEntry {
                    id: WaitId::new(lot.clone(), seq),
                    spot: spot.map(|spot| SpotId::new(&spot).unwrap()),
                    plate: Plate::parse(&plate).unwrap(),
                    window: Window {
                        start: start / 2,
                        end: start / 2 + length,
                    },
                    owner,
                    joined_at,
                    offer: offer.map(|(booking, expires_at)| Offer {
                        booking: BookingId::new(lot, booking),
                        expires_at,
                    }),
                }
            },
        )
        .boxed()
}

/// A valid booking, any status.
fn booking() -> BoxedStrategy<Booking> {
    let statuses = vec![
        BookingStatus::Confirmed,
        BookingStatus::CheckedIn,
        BookingStatus::Completed,
        BookingStatus::Cancelled,
        BookingStatus::NoShow,
        BookingStatus::Offered,
    ];
    (
        (
            subscribable_lot_id(),
            any::<u64>(),
            option::of("[A-Z0-9-]{1,8}"),
            plate(),
        ),
        (
            any::<u64>(),
            1u64..100_000,
            select(statuses),
            option::of(".{0,8}"),
            any::<[bool; 2]>(),
            option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (lot, seq, spot, plate),
                (start, length, status, owner, [overstay, inside], offered_until),
            )| {
                Booking {
                    id: BookingId::new(LotId::new(&lot).unwrap(), seq),
                    spot: spot.map(|spot| SpotId::new(&spot).unwrap()),
                    plate: Plate::parse(&plate).unwrap(),
                    window: Window {
                        start: start / 2,
                        end: start / 2 + length,
                    },
                    status,
                    owner,
                    overstay,
                    inside,
                    offered_until,
                }
            },
        )
        .boxed()
}

fn offer() -> BoxedStrategy<LotOffer> {
    let label = || "[a-z0-9_-]{1,8}".prop_map(|text| Label::new(&text, "label").unwrap());
    (
        subscribable_lot_id(),
        option::of(label()),
        vec(label(), 0..3),
        any::<u32>(),
        vec(("[A-Z0-9]{1,6}", vec(label(), 0..3)), 0..3),
    )
        .prop_map(|(lot, zone, features, remaining, spots)| LotOffer {
            id: LotId::new(&lot).unwrap(),
            zone,
            features,
            remaining,
            spots: spots
                .into_iter()
                .map(|(id, features)| SpotOffer {
                    id: SpotId::new(&id).unwrap(),
                    features,
                })
                .collect(),
        })
        .boxed()
}

fn reply() -> BoxedStrategy<Reply<'static>> {
    prop_oneof![
        booking().prop_map(Reply::Booking),
        vec(booking(), 0..3).prop_map(Reply::Bookings),
        entry().prop_map(Reply::Entry),
        vec(entry(), 0..3).prop_map(Reply::Entries),
        vec(offer(), 0..3).prop_map(Reply::Offers),
        vec(lot_status(), 0..4).prop_map(Reply::Lots),
        any::<u32>().prop_map(Reply::Free),
        select(vec![
            ReserveOutcome::Reserved,
            ReserveOutcome::Full,
            ReserveOutcome::Exists
        ])
        .prop_map(Reply::Reserve),
        select(vec![CancelOutcome::Cancelled, CancelOutcome::NotFound]).prop_map(Reply::Cancel),
        Just(Reply::Pong),
        (
            any::<String>(),
            select(vec!["viewer", "client", "sensor", "operator"])
        )
            .prop_map(|(id, role)| Reply::Authenticated(KeyGrant {
                id: id.into(),
                role: role.into()
            })),
    ]
    .boxed()
}

/// A detail that survives `CODE: detail` (whose parser drops whitespace after the colon).
fn json_error_detail() -> BoxedStrategy<String> {
    any::<String>()
        .prop_filter("leading whitespace is not kept", |detail| {
            !detail.starts_with(char::is_whitespace)
        })
        .boxed()
}

/// A detail that fits on one line and keeps its last byte through `line::decode`.
fn line_detail() -> BoxedStrategy<String> {
    "[^\r\n]{0,40}".boxed()
}

fn count_change() -> BoxedStrategy<CountChange> {
    prop_oneof![
        any::<u32>().prop_map(CountChange::Set),
        any::<u32>().prop_map(CountChange::Add),
        any::<u32>().prop_map(CountChange::Remove),
    ]
    .boxed()
}

/// A finite timestamp: mostly plausible Unix times, sometimes any finite f64.
fn timestamp() -> BoxedStrategy<f64> {
    prop_oneof![
        3 => 0.0..4.0e9f64,
        1 => (0u64..4_000_000_000, 0u32..1000)
            .prop_map(|(secs, millis)| secs as f64 + f64::from(millis) / 1000.0),
        1 => any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()),
    ]
    .boxed()
}

fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for payload in payloads {
        frame::encode(&mut stream, payload).unwrap();
    }
    stream
}

/// Splits `stream` into consecutive chunks whose sizes cycle through `sizes` (0 counts as 1).
fn chunks<'a>(stream: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut offset = 0;
    let mut index = 0;
    std::iter::from_fn(move || {
        if offset >= stream.len() {
            return None;
        }
        let size = sizes[index % sizes.len()].max(1).min(stream.len() - offset);
        index += 1;
        let chunk = &stream[offset..offset + size];
        offset += size;
        Some(chunk)
    })
}

/// How decoding a line stream ended.
#[derive(Debug, PartialEq, Eq)]
enum LinesEnd {
    /// Waiting for more bytes, with these bytes left in the buffer.
    Incomplete(Vec<u8>),
    /// A line over the limit; the connection would be closed.
    TooLong,
}

/// Decodes every line of a whole buffer, the reference for the chunked decoding.
fn lines_at_once(stream: &[u8], max_len: usize) -> (Vec<Vec<u8>>, LinesEnd) {
    let mut lines = Vec::new();
    let mut rest = stream;
    loop {
        match line::decode(rest, max_len) {
            line::Decoded::Line { content, consumed } => {
                lines.push(rest[content].to_vec());
                rest = &rest[consumed..];
            }
            line::Decoded::Incomplete => return (lines, LinesEnd::Incomplete(rest.to_vec())),
            line::Decoded::TooLong => return (lines, LinesEnd::TooLong),
        }
    }
}

/// Decodes the same stream as it would arrive on a socket: chunk by chunk, consuming each line
/// from a growing buffer as soon as it is complete.
fn lines_in_chunks(stream: &[u8], sizes: &[usize], max_len: usize) -> (Vec<Vec<u8>>, LinesEnd) {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    for chunk in chunks(stream, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            match line::decode(&buf, max_len) {
                line::Decoded::Line { content, consumed } => {
                    lines.push(buf[content].to_vec());
                    buf.drain(..consumed);
                }
                line::Decoded::Incomplete => break,
                line::Decoded::TooLong => return (lines, LinesEnd::TooLong),
            }
        }
    }
    (lines, LinesEnd::Incomplete(buf))
}

// ---------------------------------------------------------------------------------------------
// Reference models of the grammars
// ---------------------------------------------------------------------------------------------

/// A decoded request as the models describe it: the id, the method and the arguments as
/// JSON values (strings, whole numbers, and objects without null members), an optional one
/// left out absent.
type ModelRequest = (u32, Method, Vec<Value>);

/// `request` in the models' terms.
fn as_model(rpc_id: u32, request: &Request<'_>) -> ModelRequest {
    let args = request.with_args(|args| {
        args.iter()
            .map(|arg| match arg {
                Arg::Text(text) => Value::from(*text),
                Arg::Seconds(secs) => Value::from(*secs),
                Arg::Null => Value::Null,
                Arg::Query(filter) => {
                    let mut members = serde_json::Map::new();
                    members.insert("start".into(), Value::from(filter.start));
                    members.insert("end".into(), Value::from(filter.end));
                    for (key, value) in [("zone", &filter.zone), ("feature", &filter.feature)] {
                        if let Some(value) = value {
                            members.insert(key.into(), Value::from(value.as_ref()));
                        }
                    }
                    Value::Object(members)
                }
            })
            .collect()
    });
    (rpc_id, request.method(), args)
}

/// What each argument of a method must be, written out here as the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Seconds,
    /// A text that may be left out (last only).
    OptText,
    /// A whole number that may be left out (last only).
    OptNumber,
    Query,
}

fn kinds(method: Method) -> &'static [Kind] {
    use Kind::*;
    match method {
        Method::GetLots | Method::Ping => &[],
        Method::GetAvailability | Method::Auth => &[Text],
        Method::Reserve | Method::Cancel => &[Text, Text],
        Method::Book => &[Text, Text, Seconds, Seconds, OptText],
        Method::GetBooking | Method::CancelBooking | Method::CheckIn => &[Text],
        Method::ListBookings => &[Text, Seconds, Seconds, OptNumber, OptText],
        Method::FindLots => &[Query],
        Method::JoinWaitlist => &[Text, Text, Seconds, Seconds, OptText],
        Method::AcceptOffer | Method::LeaveWaitlist | Method::MyBookings | Method::MyWaitlist => {
            &[Text]
        }
    }
}

/// Checks the argument count against the kinds; optional ones may be left out.
fn arity_ok(kinds: &[Kind], given: usize) -> bool {
    let required = kinds
        .iter()
        .filter(|kind| !matches!(kind, Kind::OptText | Kind::OptNumber))
        .count();
    (required..=kinds.len()).contains(&given)
}

/// Whole seconds from digits, computed without `str::parse`.
fn model_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// A JSON argument read as `kind`: `Some(None)` for an optional one given as null.
fn model_json_arg(kind: Kind, value: &Value) -> Option<Option<Value>> {
    match (kind, value) {
        (Kind::Text | Kind::OptText, Value::String(_)) => Some(Some(value.clone())),
        (Kind::OptText | Kind::OptNumber, Value::Null) => Some(None),
        (Kind::Seconds | Kind::OptNumber, Value::Number(n)) => {
            n.as_u64().map(|n| Some(Value::from(n)))
        }
        (Kind::Query, Value::Object(members)) => {
            let mut query = serde_json::Map::new();
            for (key, value) in members {
                match (key.as_str(), value) {
                    ("zone" | "feature", Value::Null) => {}
                    ("zone" | "feature", Value::String(_)) => {
                        query.insert(key.clone(), value.clone());
                    }
                    ("start" | "end", Value::Number(n)) => {
                        query.insert(key.clone(), Value::from(n.as_u64()?));
                    }
                    _ => return None,
                }
            }
            (query.contains_key("start") && query.contains_key("end"))
                .then_some(Some(Value::Object(query)))
        }
        _ => None,
    }
}

/// A text field read as `kind`.
fn model_text_arg(kind: Kind, field: &str) -> Option<Value> {
    match kind {
        Kind::Text | Kind::OptText => Some(Value::from(field)),
        Kind::Seconds | Kind::OptNumber => model_seconds(field).map(Value::from),
        Kind::Query => {
            let mut query = serde_json::Map::new();
            for pair in field.split('&') {
                let (key, value) = pair.split_once('=')?;
                let value = match key {
                    "zone" | "feature" => Value::from(value),
                    "start" | "end" => Value::from(model_seconds(value)?),
                    _ => return None,
                };
                if query.insert(key.to_owned(), value).is_some() {
                    return None;
                }
            }
            (query.contains_key("start") && query.contains_key("end"))
                .then_some(Value::Object(query))
        }
    }
}

/// What `decode_json_request` must answer for an object with these (distinct) members.
fn expected_json_request(
    fields: &[(String, Value)],
) -> Result<ModelRequest, (Option<u32>, ErrorCode)> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    };
    let rpc_id = get("rpcId")
        .and_then(Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or((None, ErrorCode::BadRequest))?;
    let fail = |code| Err((Some(rpc_id), code));
    let Some(Value::String(method)) = get("method") else {
        return fail(ErrorCode::BadRequest);
    };
    let Some(Value::Array(args)) = get("args") else {
        return fail(ErrorCode::BadRequest);
    };
    // Names are exact: the method's own name or one of its listed aliases.
    let Some(&known) = Method::ALL
        .iter()
        .find(|known| known.name() == method || known.aliases().contains(&method.as_str()))
    else {
        return fail(ErrorCode::UnknownMethod);
    };
    let kinds = kinds(known);
    if !arity_ok(kinds, args.len()) {
        return fail(ErrorCode::BadArgs);
    }
    let mut read = Vec::new();
    for (kind, arg) in kinds.iter().zip(args) {
        match model_json_arg(*kind, arg) {
            Some(value) => read.push(value.unwrap_or(Value::Null)),
            None => return fail(ErrorCode::BadArgs),
        }
    }
    // An optional argument given as null is as good as left out, unless one follows it.
    while read.last() == Some(&Value::Null) {
        read.pop();
    }
    Ok((rpc_id, known, read))
}

/// What `decode_text_request` must answer for a line with these fields.
fn expected_text_request(fields: &[String]) -> Result<ModelRequest, ErrorCode> {
    let Some((verb, args)) = fields.split_first() else {
        return Err(ErrorCode::BadRequest);
    };
    // Verbs match in any ASCII case.
    let upper = verb.to_ascii_uppercase();
    let Some(&method) = Method::ALL.iter().find(|method| method.verb() == upper) else {
        return Err(ErrorCode::UnknownMethod);
    };
    let kinds = kinds(method);
    if !arity_ok(kinds, args.len()) {
        return Err(ErrorCode::BadArgs);
    }
    let read = kinds
        .iter()
        .zip(args)
        .map(|(kind, field)| model_text_arg(*kind, field).ok_or(ErrorCode::BadArgs))
        .collect::<Result<Vec<Value>, ErrorCode>>()?;
    Ok((0, method, read))
}

/// What a sensor count field must parse to, computed without `str::parse::<u32>`.
fn expected_count(field: &str) -> Option<CountChange> {
    let (make, digits): (fn(u32) -> CountChange, &str) =
        if let Some(digits) = field.strip_prefix('+') {
            (CountChange::Add, digits)
        } else if let Some(digits) = field.strip_prefix('-') {
            (CountChange::Remove, digits)
        } else {
            (CountChange::Set, field)
        };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 10 {
        return None;
    }
    let value = significant
        .bytes()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    u32::try_from(value).ok().map(make)
}

/// What `sensor::parse_command` must answer for a line with these fields.
fn expected_sensor_command(fields: &[String]) -> Result<SensorCommand<'_>, SensorErrorCode> {
    match fields {
        [] => Err(SensorErrorCode::UnknownCommand),
        [verb, rest @ ..] if verb.eq_ignore_ascii_case("PING") => {
            if rest.is_empty() {
                Ok(SensorCommand::Ping)
            } else {
                Err(SensorErrorCode::UnknownCommand)
            }
        }
        [verb, rest @ ..]
            if verb.eq_ignore_ascii_case("ENTER") || verb.eq_ignore_ascii_case("EXIT") =>
        {
            let passage = if verb.eq_ignore_ascii_case("ENTER") {
                Passage::Enter
            } else {
                Passage::Exit
            };
            match rest {
                [] => Err(SensorErrorCode::UnknownLot),
                [_] => Err(SensorErrorCode::BadPlate),
                [lot, plate] => Ok(SensorCommand::Gate {
                    lot,
                    plate,
                    passage,
                }),
                _ => Err(SensorErrorCode::UnknownCommand),
            }
        }
        [verb, token] if verb.eq_ignore_ascii_case("AUTH") => Ok(SensorCommand::Auth {
            token: Secret::new(token.as_str()),
        }),
        [verb, ..] if !verb.eq_ignore_ascii_case("UPDATE") => Err(SensorErrorCode::UnknownCommand),
        [_] => Err(SensorErrorCode::UnknownLot),
        [_, _] => Err(SensorErrorCode::BadCount),
        [_, lot, count, rest @ ..] => {
            let change = expected_count(count).ok_or(SensorErrorCode::BadCount)?;
            if rest.is_empty() {
                Ok(SensorCommand::Update { lot, change })
            } else {
                Err(SensorErrorCode::UnknownCommand)
            }
        }
    }
}

/// What `pubsub::parse_command` must answer for a line with these fields.
fn expected_subscription(fields: &[String]) -> Result<Command<'_>, PubsubErrorCode> {
    match fields {
        [verb, token] if verb.eq_ignore_ascii_case("AUTH") => Ok(Command::Auth {
            token: Secret::new(token.as_str()),
        }),
        [verb, target] if verb.eq_ignore_ascii_case("SUBSCRIBE") => {
            if target.eq_ignore_ascii_case("ALL") {
                Ok(Command::Subscribe(Topic::All))
            } else {
                Ok(Command::Subscribe(Topic::Lot(target)))
            }
        }
        _ => Err(PubsubErrorCode::BadCommand),
    }
}

/// Joins fields with the given separators (cycling) and pads both ends.
fn join_fields(fields: &[String], separators: &[String], lead: &str, trail: &str) -> String {
    let mut line = lead.to_owned();
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            line.push_str(&separators[index % separators.len()]);
        }
        line.push_str(field);
    }
    line.push_str(trail);
    line
}

/// Flips, inserts or truncates one byte: structured inputs made slightly wrong.
fn mutate(mut input: Vec<u8>, at: usize, byte: u8, how: u8) -> Vec<u8> {
    let at = if input.is_empty() {
        0
    } else {
        at % input.len()
    };
    match how % 3 {
        0 if !input.is_empty() => input[at] = byte,
        1 => input.insert(at, byte),
        _ => input.truncate(at),
    }
    input
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the arbitrary-bytes and the grammar-biased properties
// ---------------------------------------------------------------------------------------------

/// Decodes a JSON request; an accepted one must survive re-encoding unchanged.
fn check_json_request(payload: &[u8]) -> Result<(), TestCaseError> {
    match rpc::decode_json_request(payload) {
        Ok((rpc_id, request)) => {
            let mut again = Vec::new();
            rpc::encode_json_request(&mut again, rpc_id, &request);
            prop_assert_eq!(rpc::decode_json_request(&again), Ok((rpc_id, request)));
        }
        Err(rejected) => {
            // Only a request that got past rpcId can name its id.
            if rejected.rpc_id.is_some() {
                prop_assert_ne!(rejected.error.code, ErrorCode::FrameTooLarge);
            }
        }
    }
    Ok(())
}

/// Decodes a text request; an accepted one must survive re-encoding unchanged.
fn check_text_request(payload: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(request) = rpc::decode_text_request(payload) {
        let mut again = Vec::new();
        rpc::encode_text_request(&mut again, &request);
        prop_assert_eq!(rpc::decode_text_request(&again), Ok(request));
    }
    Ok(())
}

fn check_sensor_command(line: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(command) = sensor::parse_command(line) {
        let mut again = Vec::new();
        sensor::encode_command(&mut again, &command);
        prop_assert_eq!(again.pop(), Some(b'\n'));
        prop_assert_eq!(sensor::parse_command(&again), Ok(command));
    }
    Ok(())
}

fn check_subscription(line: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(command) = pubsub::parse_command(line) {
        let mut again = Vec::new();
        match &command {
            Command::Subscribe(topic) => pubsub::encode_command(&mut again, *topic),
            Command::Auth { token } => pubsub::encode_auth(&mut again, token),
        }
        prop_assert_eq!(again.pop(), Some(b'\n'));
        prop_assert_eq!(pubsub::parse_command(&again), Ok(command));
    }
    Ok(())
}

fn check_sensor_reply(line: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(reply) = sensor::parse_reply(line) {
        let mut again = Vec::new();
        sensor::encode_reply(&mut again, reply.as_ref());
        prop_assert_eq!(again.pop(), Some(b'\n'));
        prop_assert_eq!(sensor::parse_reply(&again), Ok(reply));
    }
    Ok(())
}

fn encode_server_line(out: &mut Vec<u8>, line: &ServerLine<'_>) {
    match line {
        ServerLine::Subscribed(id) => pubsub::encode_subscribed(out, *id),
        ServerLine::Authenticated(id) => pubsub::encode_authenticated(out, id),
        ServerLine::Refused(error) => pubsub::encode_error(out, error),
        ServerLine::Event(event) => pubsub::encode_event(out, event),
        ServerLine::Snapshot(event) => pubsub::encode_snapshot(out, event),
    }
}

fn check_server_line(line: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(parsed) = pubsub::parse_server_line(line) {
        let mut again = Vec::new();
        encode_server_line(&mut again, &parsed);
        prop_assert_eq!(again.pop(), Some(b'\n'));
        let reparsed = pubsub::parse_server_line(&again);
        prop_assert!(
            reparsed
                .as_ref()
                .is_ok_and(|reparsed| same_server_line(reparsed, &parsed)),
            "{:?} came back as {:?}",
            parsed,
            reparsed
        );
    }
    Ok(())
}

/// `line::decode`'s answer, checked against the definition of a line.
fn check_line_decode(buf: &[u8], max_len: usize) -> Result<(), TestCaseError> {
    let newline = buf.iter().position(|&b| b == b'\n');
    // Content length of the first line, were it complete.
    let content_len = |end: usize| {
        if end > 0 && buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        }
    };
    match line::decode(buf, max_len) {
        line::Decoded::Line { content, consumed } => {
            prop_assert_eq!(Some(consumed - 1), newline);
            prop_assert_eq!(content.start, 0);
            prop_assert_eq!(content.end, content_len(consumed - 1));
            prop_assert!(content.end <= max_len);
        }
        line::Decoded::TooLong => match newline {
            Some(end) => prop_assert!(content_len(end) > max_len),
            // Without a terminator, the content is over the limit even if a last `\r` turns
            // out to belong to the terminator.
            None => prop_assert!(content_len(buf.len()) > max_len),
        },
        line::Decoded::Incomplete => {
            prop_assert_eq!(newline, None);
            prop_assert!(content_len(buf.len()) <= max_len);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

// Proptest's default of 256 cases per property is sized for CI; `PROPTEST_CASES` sets another
// number for longer runs.
proptest! {
    // --- Arbitrary bytes: never a panic, always a typed answer. ---

    #[test]
    fn frame_decode_describes_any_buffer(buf in bytes(64), header in any::<u32>(), use_header in any::<bool>()) {
        // Arbitrary bytes rarely announce a small length; make half the cases plausible.
        let buf = if use_header {
            let mut with_header = (header % 48).to_be_bytes().to_vec();
            with_header.extend(buf.iter().skip(HEADER_LEN));
            with_header
        } else {
            buf
        };
        let announced = (buf.len() >= HEADER_LEN)
            .then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize);
        match frame::decode(&buf) {
            Ok(frame::Decoded::Frame { payload, consumed }) => {
                prop_assert_eq!(payload, HEADER_LEN..consumed);
                prop_assert_eq!(Some(consumed - HEADER_LEN), announced);
                prop_assert!(consumed <= buf.len());
            }
            Ok(frame::Decoded::Incomplete { needed }) => {
                prop_assert!(needed > buf.len());
                prop_assert_eq!(needed, announced.map_or(HEADER_LEN, |len| HEADER_LEN + len));
            }
            Err(FrameError::TooLarge { len }) => {
                prop_assert_eq!(Some(len), announced);
                prop_assert!(len > MAX_FRAME_LEN);
            }
            Err(other) => prop_assert!(false, "decode never does i/o: {other}"),
        }
    }

    #[test]
    fn read_frame_reads_any_stream(stream in bytes(64), sizes in vec(0usize..8, 1..6)) {
        let mut reader = ShortReads::new(&stream, sizes);
        let mut payload = Vec::new();
        let mut consumed = 0;
        loop {
            match frame::read_frame(&mut reader, &mut payload) {
                Ok(true) => {
                    // A frame read from a stream is the frame `decode` finds there.
                    let rest = &stream[consumed..];
                    let Ok(frame::Decoded::Frame { payload: range, consumed: used }) = frame::decode(rest) else {
                        return Err(TestCaseError::fail("read_frame found a frame decode does not"));
                    };
                    prop_assert_eq!(&payload[..], &rest[range]);
                    consumed += used;
                }
                Ok(false) => {
                    prop_assert_eq!(consumed, stream.len());
                    break;
                }
                Err(FrameError::Truncated { expected, received }) => {
                    prop_assert_eq!(received, stream.len() - consumed);
                    prop_assert!(received < expected);
                    break;
                }
                Err(FrameError::TooLarge { len }) => {
                    prop_assert!(len > MAX_FRAME_LEN);
                    break;
                }
                Err(FrameError::Io(err)) => return Err(TestCaseError::fail(format!("unexpected i/o error {err}"))),
            }
        }
    }

    #[test]
    fn json_request_decoder_survives_any_bytes(payload in bytes(128)) {
        check_json_request(&payload)?;
    }

    #[test]
    fn text_request_decoder_survives_any_bytes(payload in bytes(64)) {
        check_text_request(&payload)?;
    }

    #[test]
    fn sensor_parsers_survive_any_bytes(input in bytes(64), max_len in 0usize..48) {
        check_line_decode(&input, max_len)?;
        check_line_decode(&input, MAX_LINE_LEN)?;
        check_sensor_command(&input)?;
        check_sensor_reply(&input)?;
    }

    #[test]
    fn pubsub_parsers_survive_any_bytes(input in bytes(64)) {
        check_line_decode(&input, PUBSUB_MAX_LINE_LEN)?;
        check_subscription(&input)?;
        check_server_line(&input)?;
    }

    #[test]
    fn json_reply_decoder_survives_any_bytes(payload in bytes(128)) {
        let _ = rpc::decode_json_reply(&payload);
    }

    // --- Grammar-biased inputs, checked against the reference models. ---

    #[test]
    fn json_requests_get_the_right_answer(
        rpc_id in option::weighted(0.9, prop_oneof![3 => any::<u32>().prop_map(Value::from), 1 => json_value()]),
        method in option::weighted(0.9, prop_oneof![
            4 => select(method_names()).prop_map(Value::from),
            1 => "[a-zA-Z]{0,10}".prop_map(Value::from),
            1 => json_value(),
        ]),
        args in option::weighted(0.9, prop_oneof![
            4 => vec(json_arg(), 0..6).prop_map(Value::Array),
            1 => json_value(),
        ]),
        extra in proptest::collection::btree_map("[a-zA-Z]{1,6}", json_value(), 0..3),
        order in vec(any::<prop::sample::Index>(), 3),
        separator in select(vec![",", ", ", ",\n\t", " , "]),
        lead in "[ \t\r\n]{0,2}",
    ) {
        let mut fields: Vec<(String, Value)> = extra
            .into_iter()
            .filter(|(key, _)| !["rpcId", "method", "args"].contains(&key.as_str()))
            .collect();
        for ((name, value), at) in [("rpcId", rpc_id), ("method", method), ("args", args)].into_iter().zip(&order) {
            if let Some(value) = value {
                let at = at.index(fields.len() + 1);
                fields.insert(at, (name.to_owned(), value));
            }
        }
        let payload = format!("{lead}{}", json_object(&fields, separator));
        let got = rpc::decode_json_request(payload.as_bytes())
            .map(|(rpc_id, request)| as_model(rpc_id, &request))
            .map_err(|rejected| (rejected.rpc_id, rejected.error.code));
        prop_assert_eq!(got, expected_json_request(&fields), "payload {}", payload);
        check_json_request(payload.as_bytes())?;
    }

    #[test]
    fn slightly_broken_json_requests_are_refused_cleanly(
        request in requests(lot_id(), plate()),
        rpc_id in any::<u32>(),
        at in any::<usize>(),
        byte in prop_oneof![any::<u8>(), select(b"{}[]\",:\\0-e.".to_vec())],
        how in any::<u8>(),
    ) {
        let mut payload = Vec::new();
        rpc::encode_json_request(&mut payload, rpc_id, &request);
        check_json_request(&mutate(payload, at, byte, how))?;
    }

    #[test]
    fn text_requests_get_the_right_answer(
        verb in prop_oneof![
            6 => select(method_verbs()),
            1 => token(),
        ],
        args in vec(text_arg(), 0..6),
        separators in vec(separator(), 1..4),
        lead in padding(),
        trail in padding(),
    ) {
        let fields: Vec<String> = std::iter::once(verb).chain(args).collect();
        let payload = join_fields(&fields, &separators, &lead, &trail);
        let got = rpc::decode_text_request(payload.as_bytes())
            .map(|request| as_model(0, &request))
            .map_err(|error| error.code);
        prop_assert_eq!(got, expected_text_request(&fields), "payload {:?}", payload);
        check_text_request(payload.as_bytes())?;
    }

    #[test]
    fn blank_text_requests_are_bad_requests(payload in padding()) {
        prop_assert_eq!(
            rpc::decode_text_request(payload.as_bytes()).map_err(|error| error.code),
            Err(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn sensor_lines_get_the_right_answer(
        verb in prop_oneof![
            6 => select(vec!["UPDATE", "update", "Update"]).prop_map(str::to_owned),
            2 => select(vec!["ENTER", "exit", "Exit"]).prop_map(str::to_owned),
            1 => select(vec!["PING", "ping", "AUTH", "auth"]).prop_map(str::to_owned),
            1 => token(),
        ],
        lot in option::weighted(0.9, prop_oneof![3 => lot_id(), 1 => token()]),
        count in option::weighted(0.9, prop_oneof![
            2 => any::<u32>().prop_map(|n| n.to_string()),
            2 => any::<u32>().prop_map(|k| format!("+{k}")),
            2 => any::<u32>().prop_map(|k| format!("-{k}")),
            1 => any::<u64>().prop_map(|n| n.to_string()),
            2 => ("[+-]{0,2}", "[0-9]{0,13}").prop_map(|(sign, digits)| format!("{sign}{digits}")),
            1 => select(vec!["1.5", "0x10", "1e3", "+ 1", "\u{661}", "\u{ff11}"]).prop_map(str::to_owned),
            1 => token(),
        ]),
        extra in vec(token(), 0..2),
        separators in vec(separator(), 1..4),
        lead in padding(),
        trail in padding(),
    ) {
        let fields: Vec<String> = std::iter::once(verb).chain(lot).chain(count).chain(extra).collect();
        // A field with inner whitespace (like "+ 1") splits in two; the model sees what the
        // parser sees.
        let line = join_fields(&fields, &separators, &lead, &trail);
        let seen: Vec<String> = line.split_ascii_whitespace().map(str::to_owned).collect();
        let got = sensor::parse_command(line.as_bytes()).map_err(|error| error.code);
        prop_assert_eq!(got, expected_sensor_command(&seen), "line {:?}", line);
        check_sensor_command(line.as_bytes())?;
    }

    #[test]
    fn subscribe_lines_get_the_right_answer(
        fields in vec(prop_oneof![
            3 => select(vec!["SUBSCRIBE", "subscribe", "Subscribe", "ALL", "all", "aLl", "AUTH", "auth"]).prop_map(str::to_owned),
            3 => lot_id(),
            1 => token(),
        ], 0..4),
        separators in vec(separator(), 1..4),
        lead in padding(),
        trail in padding(),
    ) {
        let line = join_fields(&fields, &separators, &lead, &trail);
        let got = pubsub::parse_command(line.as_bytes()).map_err(|error| error.code);
        prop_assert_eq!(got, expected_subscription(&fields), "line {:?}", line);
        check_subscription(line.as_bytes())?;
    }

    #[test]
    fn reply_like_lines_parse_or_are_malformed(
        head in select(vec!["OK ", "ERR ", "PONG", "OK", "ERR", "ok ", ""]),
        body in prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<u32>().prop_map(|n| n.to_string()),
            "-?[0-9]{0,22}",
            (select(vec!["UNKNOWN_COMMAND", "UNKNOWN_LOT", "BAD_COUNT", "LINE_TOO_LONG", "BUSY", "BAD_COMMAND", "NOPE"]),
             "( .{0,20})?").prop_map(|(code, detail)| format!("{code}{detail}")),
            ".{0,20}",
        ],
    ) {
        let line = format!("{head}{body}");
        check_sensor_reply(line.as_bytes())?;
        check_server_line(line.as_bytes())?;
        if let Some(rest) = line.strip_prefix("OK ")
            && !rest.contains(" BOOKING ")
        {
            // A key id starts with a letter and is one field; anything else must be a number.
            let key_id = (rest.starts_with(|c: char| c.is_ascii_alphabetic()) && !rest.contains(' '))
                .then(|| rest.to_owned());
            prop_assert_eq!(
                sensor::parse_reply(line.as_bytes()).ok(),
                match &key_id {
                    Some(id) => Some(Ok(SensorReply::Authenticated { id: id.clone() })),
                    None => rest.parse().ok().map(|free| Ok(SensorReply::Updated { free })),
                }
            );
            prop_assert_eq!(
                pubsub::parse_server_line(line.as_bytes()).ok(),
                match key_id {
                    Some(id) => Some(ServerLine::Authenticated(id)),
                    None => rest.parse().ok().map(ServerLine::Subscribed),
                }
            );
        }
    }

    #[test]
    fn event_like_lines_parse_or_are_malformed(
        kind in option::weighted(0.9, prop_oneof![4 => Just(Value::from("EVENT")), 1 => json_value()]),
        lot in option::weighted(0.9, prop_oneof![4 => any::<String>().prop_map(Value::from), 1 => json_value()]),
        free in option::weighted(0.9, prop_oneof![4 => any::<u32>().prop_map(Value::from), 1 => json_value()]),
        timestamp in option::weighted(0.9, prop_oneof![4 => timestamp().prop_map(Value::from), 1 => json_value()]),
        order in any::<prop::sample::Index>(),
    ) {
        let mut fields = Vec::new();
        for (name, value) in [("type", kind), ("lotId", lot), ("free", free), ("timestamp", timestamp)] {
            if let Some(value) = value {
                let at = order.index(fields.len() + 1);
                fields.insert(at, (name.to_owned(), value));
            }
        }
        let line = json_object(&fields, ",");
        let get = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value);
        let expected = match (get("type"), get("lotId"), get("free"), get("timestamp")) {
            (Some(Value::String(kind)), Some(Value::String(lot)), Some(free), Some(timestamp))
                if kind == "EVENT" => free
                    .as_u64()
                    .and_then(|free| u32::try_from(free).ok())
                    // What serde_json reads from those digits.
                    .zip(serde_json::from_str::<f64>(&timestamp.to_string()).ok())
                    .map(|(free, timestamp)| Event { lot_id: lot.clone().into(), free, status: None, timestamp }),
            _ => None,
        };
        let got = pubsub::parse_server_line(line.as_bytes());
        prop_assert_eq!(got.ok(), expected.map(ServerLine::Event), "line {}", line);
        check_server_line(line.as_bytes())?;
    }

    #[test]
    fn reply_envelopes_decode_their_members(
        rpc_id in option::weighted(0.9, prop_oneof![3 => any::<u32>().prop_map(Value::from), 1 => json_value()]),
        result in option::weighted(0.9, json_value()),
        error in option::weighted(0.9, prop_oneof![3 => Just(Value::Null), 3 => any::<String>().prop_map(Value::from), 1 => json_value()]),
    ) {
        let fields: Vec<(String, Value)> = [("rpcId", rpc_id), ("result", result.clone()), ("error", error)]
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
            .collect();
        let payload = json_object(&fields, ",");
        let get = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value);
        let id_ok = match get("rpcId") {
            None | Some(Value::Null) => Some(None),
            Some(value) => value.as_u64().and_then(|id| u32::try_from(id).ok()).map(Some),
        };
        let error_ok = match get("error") {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(text)) => Some(Some(text.clone())),
            Some(_) => None,
        };
        match rpc::decode_json_reply(payload.as_bytes()) {
            Ok(envelope) => {
                prop_assert_eq!(Some(envelope.rpc_id), id_ok);
                prop_assert_eq!(Some(envelope.error.map(Cow::into_owned)), error_ok);
                // Both sides through the same parser, so floats compare exactly.
                let reread = |text: &str| serde_json::from_str::<Value>(text).unwrap();
                let result_seen = envelope.result.map(|raw| reread(raw.get()));
                let result_sent = result.filter(|value| !value.is_null()).map(|value| reread(&value.to_string()));
                prop_assert_eq!(result_seen, result_sent);
            }
            Err(_) => prop_assert!(id_ok.is_none() || error_ok.is_none(), "payload {}", payload),
        }
    }

    // --- Round trips of every valid value. ---

    #[test]
    fn json_requests_round_trip(rpc_id in any::<u32>(), request in requests(lot_id(), plate())) {
        let mut payload = Vec::new();
        rpc::encode_json_request(&mut payload, rpc_id, &request);
        prop_assert!(rpc::is_json(&payload));
        prop_assert_eq!(rpc::decode_json_request(&payload), Ok((rpc_id, request)));
    }

    #[test]
    fn json_requests_round_trip_any_strings(
        rpc_id in any::<u32>(),
        request in requests(any::<String>().boxed(), any::<String>().boxed()),
    ) {
        // JSON escapes whatever the strings hold; the server validates them later.
        let mut payload = Vec::new();
        rpc::encode_json_request(&mut payload, rpc_id, &request);
        prop_assert_eq!(rpc::decode_json_request(&payload), Ok((rpc_id, request)));
    }

    #[test]
    fn text_requests_round_trip(request in requests(lot_id(), plate())) {
        // A text request cannot leave out an optional argument before a given one.
        prop_assume!(request.with_args(|args| args.iter().all(Arg::fits_text_field)));
        let mut payload = Vec::new();
        rpc::encode_text_request(&mut payload, &request);
        prop_assert!(!rpc::is_json(&payload));
        prop_assert_eq!(rpc::decode_text_request(&payload), Ok(request));
    }

    #[test]
    fn json_replies_round_trip(rpc_id in option::of(any::<u32>()), reply in reply()) {
        let mut payload = Vec::new();
        rpc::encode_json_reply(&mut payload, rpc_id, Ok(&reply));
        let envelope = rpc::decode_json_reply(&payload).unwrap();
        prop_assert_eq!(envelope.rpc_id, rpc_id);
        prop_assert_eq!(envelope.error, None);
        let result = envelope.result.expect("a successful reply has a result").get();
        // The caller knows which method it called, and so which type `result` has.
        match &reply {
            Reply::Lots(lots) => {
                let decoded: Vec<LotStatus<'_>> = serde_json::from_str(result).unwrap();
                prop_assert_eq!(&decoded, lots);
            }
            Reply::Free(free) => prop_assert_eq!(serde_json::from_str::<u32>(result).unwrap(), *free),
            // `reserve` and `cancel` collapse to booleans on the JSON wire.
            Reply::Reserve(outcome) => prop_assert_eq!(
                serde_json::from_str::<bool>(result).unwrap(),
                *outcome == ReserveOutcome::Reserved
            ),
            Reply::Cancel(outcome) => prop_assert_eq!(
                serde_json::from_str::<bool>(result).unwrap(),
                *outcome == CancelOutcome::Cancelled
            ),
            Reply::Booking(booking) => prop_assert_eq!(&serde_json::from_str::<Booking>(result).unwrap(), booking),
            Reply::Bookings(bookings) => prop_assert_eq!(&serde_json::from_str::<Vec<Booking>>(result).unwrap(), bookings),
            Reply::Offers(offers) => prop_assert_eq!(&serde_json::from_str::<Vec<LotOffer>>(result).unwrap(), offers),
            Reply::Entry(entry) => prop_assert_eq!(&serde_json::from_str::<WaitEntry>(result).unwrap(), entry),
            Reply::Entries(entries) => prop_assert_eq!(&serde_json::from_str::<Vec<WaitEntry>>(result).unwrap(), entries),
            Reply::Pong => prop_assert_eq!(serde_json::from_str::<String>(result).unwrap(), "PONG"),
            Reply::Authenticated(grant) => {
                prop_assert_eq!(&serde_json::from_str::<KeyGrant<'_>>(result).unwrap(), grant);
            }
        }
    }

    #[test]
    fn json_error_replies_round_trip(
        rpc_id in option::of(any::<u32>()),
        code in select(ERROR_CODES.to_vec()),
        detail in json_error_detail(),
    ) {
        let error = WireError::new(code, detail);
        let mut payload = Vec::new();
        rpc::encode_json_reply(&mut payload, rpc_id, Err(&error));
        let envelope = rpc::decode_json_reply(&payload).unwrap();
        prop_assert_eq!(envelope.rpc_id, rpc_id);
        prop_assert!(envelope.result.is_none());
        let text = envelope.error.expect("an error reply has an error");
        prop_assert_eq!(WireError::parse_json_form(&text), Ok(error));
    }

    #[test]
    fn text_lots_replies_are_json(lots in vec(lot_status(), 0..4)) {
        let mut payload = Vec::new();
        rpc::encode_text_reply(&mut payload, Ok(&Reply::Lots(lots.clone())));
        let decoded: Vec<LotStatus<'_>> = serde_json::from_slice(&payload).unwrap();
        prop_assert_eq!(decoded, lots);
    }

    #[test]
    fn sensor_commands_round_trip(
        command in prop_oneof![
            1 => Just(None),
            4 => (lot_id(), count_change()).prop_map(|update| Some(Ok(update))),
            2 => (lot_id(), plate(), any::<bool>()).prop_map(|gate| Some(Err(gate))),
        ],
    ) {
        let command = match &command {
            Some(Ok((lot, change))) => SensorCommand::Update { lot, change: *change },
            Some(Err((lot, plate, enter))) => SensorCommand::Gate {
                lot,
                plate,
                passage: if *enter { Passage::Enter } else { Passage::Exit },
            },
            None => SensorCommand::Ping,
        };
        let mut out = Vec::new();
        sensor::encode_command(&mut out, &command);
        let line::Decoded::Line { content, consumed } = line::decode(&out, MAX_LINE_LEN) else {
            return Err(TestCaseError::fail("an encoded command is one line"));
        };
        prop_assert_eq!(consumed, out.len());
        prop_assert_eq!(sensor::parse_command(&out[content]), Ok(command));
    }

    #[test]
    fn sensor_replies_round_trip(
        reply in prop_oneof![
            any::<u32>().prop_map(|free| Ok(SensorReply::Updated { free })),
            (any::<u32>(), subscribable_lot_id(), any::<u64>()).prop_map(|(free, lot, n)| Ok(SensorReply::Passed {
                free,
                booking: Some(format!("{lot}.{n}")),
            })),
            Just(Ok(SensorReply::Pong)),
            "[A-Za-z][A-Za-z0-9_.-]{0,63}".prop_map(|id| Ok(SensorReply::Authenticated { id })),
            (select(SENSOR_ERROR_CODES.to_vec()), line_detail())
                .prop_map(|(code, detail)| Err(SensorError::new(code, detail))),
        ],
    ) {
        let mut out = Vec::new();
        sensor::encode_reply(&mut out, reply.as_ref());
        let line::Decoded::Line { content, consumed } = line::decode(&out, usize::from(u16::MAX)) else {
            return Err(TestCaseError::fail("an encoded reply is one line"));
        };
        prop_assert_eq!(consumed, out.len());
        prop_assert_eq!(sensor::parse_reply(&out[content]), Ok(reply));
    }

    #[test]
    fn subscribe_commands_round_trip(lot in option::of(subscribable_lot_id())) {
        let topic = lot.as_deref().map_or(Topic::All, Topic::Lot);
        let mut out = Vec::new();
        pubsub::encode_command(&mut out, topic);
        let line::Decoded::Line { content, consumed } = line::decode(&out, PUBSUB_MAX_LINE_LEN) else {
            return Err(TestCaseError::fail("an encoded command is one line"));
        };
        prop_assert_eq!(consumed, out.len());
        prop_assert_eq!(pubsub::parse_command(&out[content]), Ok(Command::Subscribe(topic)));
    }

    #[test]
    fn server_lines_round_trip(
        line_value in prop_oneof![
            any::<u64>().prop_map(ServerLine::Subscribed),
            "[A-Za-z][A-Za-z0-9_.-]{0,63}".prop_map(ServerLine::Authenticated),
            (select(PUBSUB_ERROR_CODES.to_vec()), line_detail())
                .prop_map(|(code, detail)| ServerLine::Refused(PubsubError::new(code, detail))),
            (any::<String>(), any::<u32>(), availability(), timestamp()).prop_map(
                |(lot, free, status, timestamp)| {
                    ServerLine::Event(Event { lot_id: lot.into(), free, status, timestamp })
                }
            ),
        ],
    ) {
        let mut out = Vec::new();
        encode_server_line(&mut out, &line_value);
        // Exactly one line, whatever the lot id holds (JSON escapes newlines).
        let line::Decoded::Line { content, consumed } = line::decode(&out, usize::from(u16::MAX)) else {
            return Err(TestCaseError::fail("an encoded server line is one line"));
        };
        prop_assert_eq!(consumed, out.len());
        let parsed = pubsub::parse_server_line(&out[content]);
        prop_assert!(
            parsed.as_ref().is_ok_and(|parsed| same_server_line(parsed, &line_value)),
            "{:?} came back as {:?}",
            line_value,
            parsed
        );
    }

    // --- Streams cut at arbitrary points. ---

    #[test]
    fn frames_cut_anywhere_decode_the_same(
        payloads in vec(prop_oneof![4 => bytes(24), 1 => bytes(300)], 0..8),
        sizes in vec(1usize..40, 1..8),
    ) {
        let stream = framed(&payloads);
        let mut buf = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        for chunk in chunks(&stream, &sizes) {
            buf.extend_from_slice(chunk);
            loop {
                match frame::decode(&buf) {
                    Ok(frame::Decoded::Frame { payload, consumed }) => {
                        got.push(buf[payload].to_vec());
                        buf.drain(..consumed);
                    }
                    Ok(frame::Decoded::Incomplete { needed }) => {
                        prop_assert!(needed > buf.len());
                        let expected = if buf.len() < HEADER_LEN {
                            HEADER_LEN
                        } else {
                            HEADER_LEN + payloads[got.len()].len()
                        };
                        prop_assert_eq!(needed, expected);
                        break;
                    }
                    Err(err) => return Err(TestCaseError::fail(format!("valid stream refused: {err}"))),
                }
            }
        }
        prop_assert_eq!(got, payloads);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn frames_read_with_short_reads_decode_the_same(
        payloads in vec(prop_oneof![4 => bytes(24), 1 => bytes(300)], 0..8),
        sizes in vec(0usize..40, 1..8),
        cut in option::of(any::<prop::sample::Index>()),
    ) {
        let stream = framed(&payloads);
        let end = cut.map_or(stream.len(), |cut| cut.index(stream.len() + 1));
        let mut reader = ShortReads::new(&stream[..end], sizes);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut payload = Vec::new();
        let outcome = loop {
            match frame::read_frame(&mut reader, &mut payload) {
                Ok(true) => got.push(payload.clone()),
                other => break other,
            }
        };
        // Every frame wholly before the cut is read; the cut either falls between frames
        // (a clean end) or inside one (truncation, with exact counts).
        let mut whole = 0;
        let mut offset = 0;
        while whole < payloads.len() && offset + HEADER_LEN + payloads[whole].len() <= end {
            offset += HEADER_LEN + payloads[whole].len();
            whole += 1;
        }
        prop_assert_eq!(&got[..], &payloads[..whole]);
        match outcome {
            Ok(false) => prop_assert_eq!(offset, end),
            Err(FrameError::Truncated { expected, received }) => {
                prop_assert!(offset < end);
                prop_assert_eq!(received, end - offset);
                let expected_len = if received < HEADER_LEN { HEADER_LEN } else { HEADER_LEN + payloads[whole].len() };
                prop_assert_eq!(expected, expected_len);
            }
            other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_their_payload(
        len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX,
        tail in bytes(16),
        sizes in vec(0usize..6, 1..4),
    ) {
        let mut stream = len.to_be_bytes().to_vec();
        stream.extend_from_slice(&tail);
        let refused = matches!(frame::decode(&stream), Err(FrameError::TooLarge { len: got }) if got == len as usize);
        prop_assert!(refused, "decode accepted a {len}-byte header");
        let mut payload = Vec::new();
        let mut reader = ShortReads::new(&stream, sizes);
        let result = frame::read_frame(&mut reader, &mut payload);
        let refused = matches!(result, Err(FrameError::TooLarge { len: got }) if got == len as usize);
        prop_assert!(refused, "read_frame accepted a {len}-byte header: {result:?}");
        // Refused on the header alone: not one payload byte was read or allocated.
        prop_assert_eq!(reader.unread().len(), tail.len());
        prop_assert!(payload.capacity() == 0);
    }

    #[test]
    fn well_formed_lines_cut_anywhere_decode_to_their_content(
        lines in vec((vec(select(b"ab \t\r\xff\x00".to_vec()), 0..40), any::<bool>()), 0..8),
        sizes in vec(1usize..16, 1..8),
    ) {
        let mut stream = Vec::new();
        let mut contents = Vec::new();
        for (mut content, crlf) in lines {
            // A `\r` right before the terminator is part of the terminator, not content.
            while content.last() == Some(&b'\r') {
                content.pop();
            }
            stream.extend_from_slice(&content);
            stream.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            contents.push(content);
        }
        let (got, end) = lines_in_chunks(&stream, &sizes, 40);
        prop_assert_eq!(got, contents);
        prop_assert_eq!(end, LinesEnd::Incomplete(Vec::new()));
    }

    #[test]
    fn any_line_stream_cut_anywhere_decodes_as_if_whole(
        stream in vec(select(b"a\r\n\xff ".to_vec()), 0..120),
        sizes in vec(1usize..16, 1..8),
        max_len in 0usize..24,
    ) {
        // Limits included: a line over the limit is refused at the same line however the
        // stream was cut, and an incomplete line leaves the same bytes buffered.
        prop_assert_eq!(lines_in_chunks(&stream, &sizes, max_len), lines_at_once(&stream, max_len));
        let mut rest = &stream[..];
        while let line::Decoded::Line { consumed, .. } = line::decode(rest, max_len) {
            check_line_decode(rest, max_len)?;
            rest = &rest[consumed..];
        }
        check_line_decode(rest, max_len)?;
    }
}
