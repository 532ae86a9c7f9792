//! The table of RPC methods: the only place where a method's names and arguments are written.
//!
//! Each entry gives the [`Request`] variant with its argument fields (kind and the name that
//! documentation and error messages use), the JSON method name (and any other names the
//! decoder accepts), and the text alias verb. Everything else is derived from it: [`Method`]
//! and its names, the [`Request`] enum, building a request from its argument list and listing
//! its arguments for encoding. Decoders look a name up here once and match on [`Method`] from
//! then on, never on strings.
//!
//! Adding a method takes an entry here and, if it answers something new, a reply type in
//! `reply.rs`; then an arm in the server's dispatch and a call in the client.

use std::borrow::Cow;
use std::io::Write;

use serde::Deserialize;
use serde_json::value::RawValue;
use state::shown;

use super::error::{ErrorCode, WireError};

/// The kinds an argument can have, named in the table; each is the type of the field that
/// holds it in [`Request`], and implements [`ArgKind`]: how it is read from a JSON request and
/// from a text one, and written back.
pub(crate) mod kind {
    use std::borrow::Cow;

    /// A string: a lot id, a plate, a booking id. JSON strings, or one whitespace-free text
    /// field.
    pub type Text<'a> = Cow<'a, str>;
    /// A time in whole Unix seconds. JSON non-negative integers, or a text field of digits.
    pub type Seconds<'a> = u64;
    /// A string that may be left out; only ever last. JSON strings (or `null`), or a text
    /// field.
    pub type OptText<'a> = Option<Cow<'a, str>>;
    /// A whole number that may be left out; only ever among the last. JSON non-negative
    /// integers (or `null`), or a text field of digits.
    pub type OptNumber<'a> = Option<u64>;
    /// A lot query (`findLots`). A JSON object, or a text field `start=..&end=..&zone=..`.
    pub type Query<'a> = super::LotFilter<'a>;
    /// A token: a string on the wire, [`crate::Secret`] in the request, so that it never
    /// shows in a log of the request.
    pub type Secret<'a> = crate::Secret<'a>;
}

/// What `findLots` asks: lots in `zone` (if given) that can take a booking with `feature`
/// (if given) over `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotFilter<'a> {
    /// Only lots in this zone.
    #[serde(borrow, default)]
    pub zone: Option<Cow<'a, str>>,
    /// Only spaces with this feature.
    #[serde(borrow, default)]
    pub feature: Option<Cow<'a, str>>,
    /// The window's first second (Unix seconds).
    pub start: u64,
    /// The first second after it.
    pub end: u64,
}

impl LotFilter<'_> {
    /// The text field form: `start=..&end=..`, then `&zone=..` and `&feature=..` if given.
    fn write_text(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "start={}&end={}", self.start, self.end);
        for (key, value) in [("zone", &self.zone), ("feature", &self.feature)] {
            if let Some(value) = value {
                let _ = write!(out, "&{key}={value}");
            }
        }
    }

    /// Parses the text field form; keys in any order, each at most once.
    fn parse_text(field: &str) -> Option<LotFilter<'_>> {
        let (mut zone, mut feature, mut start, mut end) = (None, None, None, None);
        for pair in field.split('&') {
            let (key, value) = pair.split_once('=')?;
            let slot = match key {
                "zone" => {
                    let first = zone.replace(Cow::Borrowed(value)).is_none();
                    first.then_some(())
                }
                "feature" => {
                    let first = feature.replace(Cow::Borrowed(value)).is_none();
                    first.then_some(())
                }
                "start" => start.replace(parse_seconds(value)?).is_none().then_some(()),
                "end" => end.replace(parse_seconds(value)?).is_none().then_some(()),
                _ => None,
            };
            slot?;
        }
        Some(LotFilter {
            zone,
            feature,
            start: start?,
            end: end?,
        })
    }

    fn into_static(self) -> LotFilter<'static> {
        LotFilter {
            zone: self.zone.map(|zone| Cow::Owned(zone.into_owned())),
            feature: self.feature.map(|feature| Cow::Owned(feature.into_owned())),
            start: self.start,
            end: self.end,
        }
    }
}

/// Whole seconds written as digits only (`u64::from_str` would also take a leading `+`).
fn parse_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One argument of a request as it is encoded: borrowed from the [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'r> {
    /// A string.
    Text(&'r str),
    /// Whole Unix seconds.
    Seconds(u64),
    /// A lot query.
    Query(&'r LotFilter<'r>),
    /// An optional argument left out before one that is given: JSON `null`; a text request
    /// cannot say it.
    Null,
}

impl Arg<'_> {
    /// Appends the argument as a JSON value.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Arg::Text(text) => super::reply::write_json(out, text),
            Arg::Seconds(secs) => {
                let _ = write!(out, "{secs}");
            }
            Arg::Null => out.extend_from_slice(b"null"),
            Arg::Query(filter) => {
                #[derive(serde::Serialize)]
                struct Wire<'f> {
                    #[serde(skip_serializing_if = "Option::is_none")]
                    zone: Option<&'f str>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    feature: Option<&'f str>,
                    start: u64,
                    end: u64,
                }
                super::reply::write_json(
                    out,
                    &Wire {
                        zone: filter.zone.as_deref(),
                        feature: filter.feature.as_deref(),
                        start: filter.start,
                        end: filter.end,
                    },
                );
            }
        }
    }

    /// Appends the argument as a text field.
    pub(crate) fn write_text(&self, out: &mut Vec<u8>) {
        match self {
            Arg::Text(text) => out.extend_from_slice(text.as_bytes()),
            Arg::Seconds(secs) => {
                let _ = write!(out, "{secs}");
            }
            Arg::Query(filter) => filter.write_text(out),
            Arg::Null => {}
        }
    }

    /// Whether the text form reads back as this argument: a text field is split on
    /// whitespace, and a query's values cannot hold its separators.
    pub fn fits_text_field(&self) -> bool {
        let plain = |text: &str| {
            !text.is_empty() && !text.bytes().any(|b| b.is_ascii_whitespace() || b == b'&')
        };
        match self {
            Arg::Text(text) => plain(text),
            Arg::Seconds(_) => true,
            Arg::Null => false,
            Arg::Query(filter) => [&filter.zone, &filter.feature]
                .into_iter()
                .flatten()
                .all(|value| plain(value) && !value.contains('=')),
        }
    }
}

/// How an argument kind is read from the two request syntaxes and written back.
pub(crate) trait ArgKind<'a>: Sized {
    /// The same argument owning its data.
    type Static: 'static;
    /// What the argument must be, for the error message.
    const EXPECTED: &'static str;
    /// Whether it may be left out (only the last arguments may).
    const OPTIONAL: bool = false;

    /// What the argument is read as when a JSON request is decoded in one pass
    /// ([`Request::from_json_seq`]): text only as borrowed `&str`, so that an escaped string
    /// fails there and is read again through [`ArgKind::from_json`].
    type Wire: Deserialize<'a>;

    /// The argument from what the one-pass decoding read.
    fn from_wire(wire: Self::Wire) -> Self;
    /// Reads the argument from its JSON value.
    fn from_json(raw: &'a RawValue) -> Option<Self>;
    /// Reads the argument from its text field.
    fn from_text(field: &'a str) -> Option<Self>;
    /// The value of an optional argument left out.
    fn absent() -> Option<Self> {
        None
    }
    /// The argument for encoding; `None` for an optional one left out.
    fn arg(&self) -> Option<Arg<'_>>;
    /// The argument owning its data.
    fn into_static(self) -> Self::Static;
}

impl<'a> ArgKind<'a> for Cow<'a, str> {
    type Static = Cow<'static, str>;
    const EXPECTED: &'static str = "a string";
    type Wire = &'a str;

    fn from_wire(wire: &'a str) -> Self {
        Cow::Borrowed(wire)
    }

    fn from_json(raw: &'a RawValue) -> Option<Self> {
        super::json_str(raw)
    }

    fn from_text(field: &'a str) -> Option<Self> {
        Some(Cow::Borrowed(field))
    }

    fn arg(&self) -> Option<Arg<'_>> {
        Some(Arg::Text(self))
    }

    fn into_static(self) -> Self::Static {
        Cow::Owned(self.into_owned())
    }
}

impl<'a> ArgKind<'a> for u64 {
    type Static = u64;
    const EXPECTED: &'static str = "a whole number of Unix seconds";
    type Wire = u64;

    fn from_wire(wire: u64) -> Self {
        wire
    }

    fn from_json(raw: &'a RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }

    fn from_text(field: &'a str) -> Option<Self> {
        parse_seconds(field)
    }

    fn arg(&self) -> Option<Arg<'_>> {
        Some(Arg::Seconds(*self))
    }

    fn into_static(self) -> Self::Static {
        self
    }
}

impl<'a> ArgKind<'a> for Option<Cow<'a, str>> {
    type Static = Option<Cow<'static, str>>;
    const EXPECTED: &'static str = "a string or null";
    const OPTIONAL: bool = true;
    type Wire = Option<&'a str>;

    fn from_wire(wire: Option<&'a str>) -> Self {
        wire.map(Cow::Borrowed)
    }

    fn from_json(raw: &'a RawValue) -> Option<Self> {
        if raw.get() == "null" {
            return Some(None);
        }
        super::json_str(raw).map(Some)
    }

    fn from_text(field: &'a str) -> Option<Self> {
        Some(Some(Cow::Borrowed(field)))
    }

    fn absent() -> Option<Self> {
        Some(None)
    }

    fn arg(&self) -> Option<Arg<'_>> {
        self.as_deref().map(Arg::Text)
    }

    fn into_static(self) -> Self::Static {
        self.map(|text| Cow::Owned(text.into_owned()))
    }
}

impl<'a> ArgKind<'a> for Option<u64> {
    type Static = Option<u64>;
    const EXPECTED: &'static str = "a whole number or null";
    const OPTIONAL: bool = true;
    type Wire = Option<u64>;

    fn from_wire(wire: Option<u64>) -> Self {
        wire
    }

    fn from_json(raw: &'a RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }

    fn from_text(field: &'a str) -> Option<Self> {
        parse_seconds(field).map(Some)
    }

    fn absent() -> Option<Self> {
        Some(None)
    }

    fn arg(&self) -> Option<Arg<'_>> {
        self.map(Arg::Seconds)
    }

    fn into_static(self) -> Self::Static {
        self
    }
}

impl<'a> ArgKind<'a> for crate::Secret<'a> {
    type Static = crate::Secret<'static>;
    const EXPECTED: &'static str = "a string";
    type Wire = &'a str;

    fn from_wire(wire: &'a str) -> Self {
        crate::Secret::new(wire)
    }

    fn from_json(raw: &'a RawValue) -> Option<Self> {
        super::json_str(raw).map(crate::Secret::from)
    }

    fn from_text(field: &'a str) -> Option<Self> {
        Some(crate::Secret::new(field))
    }

    fn arg(&self) -> Option<Arg<'_>> {
        // Only the encoder sees it: `Request`'s `Debug` shows the `Secret`, not this.
        Some(Arg::Text(self.expose()))
    }

    fn into_static(self) -> Self::Static {
        self.into_owned()
    }
}

impl<'a> ArgKind<'a> for LotFilter<'a> {
    type Static = LotFilter<'static>;
    const EXPECTED: &'static str = "an object {\"start\", \"end\", \"zone\"?, \"feature\"?} (text: start=..&end=..&zone=..&feature=..)";
    // The same reading as `from_json`'s, without the raw value in between.
    type Wire = LotFilter<'a>;

    fn from_wire(wire: LotFilter<'a>) -> Self {
        wire
    }

    fn from_json(raw: &'a RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }

    fn from_text(field: &'a str) -> Option<Self> {
        LotFilter::parse_text(field)
    }

    fn arg(&self) -> Option<Arg<'_>> {
        Some(Arg::Query(self))
    }

    fn into_static(self) -> Self::Static {
        LotFilter::into_static(self)
    }
}

/// Most arguments a method takes (a test checks the table).
const MAX_ARGS: usize = 8;

/// A request's arguments as the peer sent them, before they are read by kind.
pub(crate) enum Args<'a> {
    /// The elements of a JSON `args` array.
    Json(Vec<&'a RawValue>),
    /// The fields after a text verb.
    Text(Vec<&'a str>),
}

impl<'a> Args<'a> {
    fn len(&self) -> usize {
        match self {
            Args::Json(args) => args.len(),
            Args::Text(args) => args.len(),
        }
    }

    /// Reads argument `index` as kind `K`; `None` when it is there but not a `K`. The count
    /// has been checked, so a missing one is an optional one left out.
    fn read<K: ArgKind<'a>>(&self, index: usize) -> Option<K> {
        match self {
            Args::Json(args) => args
                .get(index)
                .map_or_else(K::absent, |raw| K::from_json(raw)),
            Args::Text(args) => args
                .get(index)
                .map_or_else(K::absent, |field| K::from_text(field)),
        }
    }

    /// Argument `index` as the peer sent it, for an error message.
    fn shown(&self, index: usize) -> String {
        match self {
            Args::Json(args) => args.get(index).map(|raw| shown(raw.get()).to_string()),
            Args::Text(args) => args.get(index).map(|field| shown(field).to_string()),
        }
        .unwrap_or_default()
    }
}

/// Declares [`Method`] and [`Request`] from the table below. An entry is
/// `Variant { field: Kind "wireName", .. } = "jsonName" | "otherName", verb "VERB";`, the
/// field list left out for a method without arguments.
macro_rules! rpc_methods {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $({ $( $(#[doc = $field_doc:literal])* $field:ident: $kind:ident $wire:literal ),* $(,)? })?
            = $name:literal $(| $alias:literal)*, verb $verb:literal;
    )+) => {
        /// An RPC method: what a [`Request`] asks for, without its arguments.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Method {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl Method {
            /// Every method, in the table's order (the order `docs/protocol.md` lists them in).
            pub const ALL: &'static [Method] = &[$(Method::$variant),+];

            /// The JSON method name, as sent.
            pub fn name(self) -> &'static str {
                match self { $(Method::$variant => $name,)+ }
            }

            /// Other JSON names the decoder accepts for this method (never sent).
            pub fn aliases(self) -> &'static [&'static str] {
                match self { $(Method::$variant => &[$($alias),*],)+ }
            }

            /// The text alias verb; text requests match it case-insensitively.
            pub fn verb(self) -> &'static str {
                match self { $(Method::$variant => $verb,)+ }
            }

            /// The arguments' names in order, as documentation and error messages give them.
            pub fn arg_names(self) -> &'static [&'static str] {
                match self { $(Method::$variant => &[$($($wire),*)?],)+ }
            }

            /// How many of the arguments must be given; the rest (at the end) may be left out.
            pub fn required_args(self) -> usize {
                match self {
                    $(Method::$variant => 0 $($(
                        + usize::from(!<kind::$kind<'static> as ArgKind<'static>>::OPTIONAL)
                    )*)?,)+
                }
            }
        }

        /// One RPC request: a [`Method`] with its arguments, as the peer sent them (lot ids
        /// and plates are validated by the server, against its lots and the plate rules).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Request<'a> {
            $(
                $(#[doc = $doc])*
                $variant $({ $( $(#[doc = $field_doc])* $field: kind::$kind<'a> ),* })?,
            )+
        }

        impl<'a> Request<'a> {
            /// The method this request calls.
            pub fn method(&self) -> Method {
                match self { $(Request::$variant { .. } => Method::$variant,)+ }
            }

            /// Calls `f` with the arguments in order (an optional one left out is not
            /// there), without allocating.
            pub fn with_args<'r, R>(&'r self, f: impl FnOnce(&[Arg<'r>]) -> R) -> R {
                match self {
                    $(Request::$variant $({ $($field),* })? => {
                        let all: &[Option<Arg<'r>>] = &[$($(ArgKind::arg($field)),*)?];
                        // Optional ones left out at the end are not there; one left out
                        // before a given one is there as `null`, so the rest keep their places.
                        let count = all.iter().rposition(Option::is_some).map_or(0, |last| last + 1);
                        let mut given = [Arg::Null; MAX_ARGS];
                        for (slot, arg) in given.iter_mut().zip(&all[..count]) {
                            *slot = arg.unwrap_or(Arg::Null);
                        }
                        f(&given[..count])
                    })+
                }
            }

            /// The same request owning its arguments.
            pub fn into_owned(self) -> Request<'static> {
                match self {
                    $(
                        Request::$variant $({ $($field),* })? => Request::$variant
                            $({ $($field: ArgKind::into_static($field)),* })?,
                    )+
                }
            }

            /// Builds the request for `method` from its arguments: as many as it takes (its
            /// optional ones may be left out), each of its kind. `called` is the name the
            /// peer used, for the error message.
            // The last argument's index is counted past; a method without any reads none.
            #[allow(unused_assignments, unused_mut, unused_variables, unused_macros)]
            pub(crate) fn from_args(
                method: Method,
                called: &str,
                args: Args<'a>,
            ) -> Result<Self, WireError> {
                let names = method.arg_names();
                if args.len() < method.required_args() || args.len() > names.len() {
                    return Err(WireError::new(
                        ErrorCode::BadArgs,
                        format!(
                            "{called} takes {}, got {} argument(s)",
                            method.usage(),
                            args.len()
                        ),
                    ));
                }
                let mut index = 0;
                macro_rules! next {
                    ($k:ident) => {{
                        let read: Option<kind::$k<'a>> = args.read(index);
                        let value = read.ok_or_else(|| WireError::new(
                            ErrorCode::BadArgs,
                            format!(
                                "{}: argument {index} ({}) must be {}, got {}",
                                shown(called),
                                names[index],
                                <kind::$k<'a> as ArgKind<'a>>::EXPECTED,
                                args.shown(index),
                            ),
                        ))?;
                        index += 1;
                        value
                    }};
                }
                Ok(match method {
                    $(Method::$variant => Request::$variant $({ $($field: next!($kind)),* })?,)+
                })
            }

            /// Builds the request for `method` straight from the elements of its JSON `args`
            /// array, in the same pass that reads the request (no raw values, no list). Any
            /// error here (too few or too many arguments, one not of its kind, an escaped
            /// string) only means "not the common case": the caller reads the request again
            /// through [`Request::from_args`], which says what is wrong.
            pub(crate) fn from_json_seq<A: serde::de::SeqAccess<'a>>(
                method: Method,
                mut seq: A,
            ) -> Result<Self, A::Error> {
                macro_rules! next {
                    ($k:ident) => {{
                        match seq.next_element::<<kind::$k<'a> as ArgKind<'a>>::Wire>()? {
                            Some(wire) => <kind::$k<'a> as ArgKind<'a>>::from_wire(wire),
                            // The array ended: an optional argument left out, or too few.
                            None => <kind::$k<'a> as ArgKind<'a>>::absent().ok_or_else(|| {
                                <A::Error as serde::de::Error>::custom("too few arguments")
                            })?,
                        }
                    }};
                }
                let request = match method {
                    $(Method::$variant => Request::$variant $({ $($field: next!($kind)),* })?,)+
                };
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(<A::Error as serde::de::Error>::custom("too many arguments"));
                }
                Ok(request)
            }
        }
    };
}

rpc_methods! {
    /// `getLots` / `LOTS`: every lot with its counts.
    GetLots = "getLots", verb "LOTS";
    /// `getAvailability` / `AVAIL`: free spaces in one lot.
    GetAvailability {
        /// The lot asked about.
        lot: Text "lotId",
    } = "getAvailability", verb "AVAIL";
    /// `reserve` / `RESERVE`: hold a space for a plate.
    Reserve {
        /// The lot to reserve in.
        lot: Text "lotId",
        /// The vehicle's plate.
        plate: Text "plate",
    } = "reserve", verb "RESERVE";
    /// `cancel` / `CANCEL`: release a plate's reservation.
    Cancel {
        /// The lot the reservation is in.
        lot: Text "lotId",
        /// The vehicle's plate.
        plate: Text "plate",
    } = "cancel", verb "CANCEL";
    /// `book` / `BOOK`: book a space (or a named spot) for a plate over a time window.
    Book {
        /// The lot to book in.
        lot: Text "lotId",
        /// The vehicle's plate.
        plate: Text "plate",
        /// The window's first second.
        start: Seconds "start",
        /// The first second after the window.
        end: Seconds "end",
        /// A named spot of the lot, or any space when left out.
        spot: OptText "spotId",
    } = "book", verb "BOOK";
    /// `getBooking` / `BOOKING`: a booking by id.
    GetBooking {
        /// The booking's id, `<lotId>.<n>`.
        booking: Text "bookingId",
    } = "getBooking", verb "BOOKING";
    /// `cancelBooking` / `CANCELBOOKING`: cancel a confirmed booking.
    CancelBooking {
        /// The booking's id.
        booking: Text "bookingId",
    } = "cancelBooking", verb "CANCELBOOKING";
    /// `checkIn` / `CHECKIN`: check a booking in (the car is at the gate).
    CheckIn {
        /// The booking's id.
        booking: Text "bookingId",
    } = "checkIn", verb "CHECKIN";
    /// `listBookings` / `BOOKINGS`: a page of a lot's bookings overlapping a window, by id
    /// (operators).
    ListBookings {
        /// The lot.
        lot: Text "lotId",
        /// The window's first second.
        start: Seconds "start",
        /// The first second after the window.
        end: Seconds "end",
        /// Most bookings answered (the server's default when left out).
        limit: OptNumber "limit",
        /// Only bookings after this one (the last of the previous page).
        after: OptText "after",
    } = "listBookings", verb "BOOKINGS";
    /// `findLots` / `FIND`: the lots that can take a booking over a window.
    FindLots {
        /// Zone, feature and window.
        query: Query "query",
    } = "findLots", verb "FIND";
    /// `joinWaitlist` / `WAIT`: wait in line for a window the lot cannot book now.
    JoinWaitlist {
        /// The lot.
        lot: Text "lotId",
        /// The vehicle's plate.
        plate: Text "plate",
        /// The window's first second.
        start: Seconds "start",
        /// The first second after the window.
        end: Seconds "end",
        /// A named spot of the lot, or any space when left out.
        spot: OptText "spotId",
    } = "joinWaitlist", verb "WAIT";
    /// `acceptOffer` / `ACCEPT`: turn a waitlist entry's live offer into a booking.
    AcceptOffer {
        /// The entry's id, `<lotId>.w<n>`.
        entry: Text "entryId",
    } = "acceptOffer", verb "ACCEPT";
    /// `leaveWaitlist` / `LEAVE`: take an entry off its waitlist (and let its offer go).
    LeaveWaitlist {
        /// The entry's id.
        entry: Text "entryId",
    } = "leaveWaitlist", verb "LEAVE";
    /// `myBookings` / `MYBOOKINGS`: a plate's bookings (the caller's own), newest first.
    MyBookings {
        /// The vehicle's plate.
        plate: Text "plate",
    } = "myBookings", verb "MYBOOKINGS";
    /// `myWaitlist` / `MYWAITLIST`: a plate's waitlist entries (the caller's own), oldest
    /// first.
    MyWaitlist {
        /// The vehicle's plate.
        plate: Text "plate",
    } = "myWaitlist", verb "MYWAITLIST";
    /// `PING`: liveness check (JSON also accepts `ping`).
    Ping = "PING" | "ping", verb "PING";
    /// `auth` / `AUTH`: authenticate the connection with a key's token.
    Auth {
        /// The key's token.
        token: Secret "token",
    } = "auth", verb "AUTH";
}

impl Method {
    /// The method called `name` in JSON, if any (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL
            .iter()
            .copied()
            .find(|method| method.name() == name || method.aliases().contains(&name))
    }

    /// The method whose text verb is `verb`, in any case.
    pub fn from_verb(verb: &str) -> Option<Method> {
        Method::ALL
            .iter()
            .copied()
            .find(|method| method.verb().eq_ignore_ascii_case(verb))
    }

    /// The argument list as documented, e.g. `[lotId, plate]`; optional ones end in `?`.
    pub fn usage(self) -> String {
        let required = self.required_args();
        let names: Vec<String> = self
            .arg_names()
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let mark = if index < required { "" } else { "?" };
                format!("{name}{mark}")
            })
            .collect();
        format!("[{}]", names.join(", "))
    }
}

/// The JSON method names, for an "unknown method" message.
pub(crate) fn names() -> String {
    let names: Vec<&str> = Method::ALL.iter().map(|method| method.name()).collect();
    names.join(", ")
}

/// The text verbs, for an "unknown command" message.
pub(crate) fn verbs() -> String {
    let verbs: Vec<&str> = Method::ALL.iter().map(|method| method.verb()).collect();
    verbs.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_verb_finds_its_method() {
        for &method in Method::ALL {
            assert_eq!(Method::from_name(method.name()), Some(method));
            assert_eq!(Method::from_verb(method.verb()), Some(method));
            assert_eq!(
                Method::from_verb(&method.verb().to_ascii_lowercase()),
                Some(method)
            );
            for alias in method.aliases() {
                assert_eq!(Method::from_name(alias), Some(method));
            }
        }
        assert_eq!(Method::from_name("getlots"), None);
        assert_eq!(Method::from_name("LOTS"), None);
        assert_eq!(Method::from_verb("getLots"), None);
    }

    #[test]
    fn no_method_takes_more_than_max_args_and_optional_ones_come_last() {
        for &method in Method::ALL {
            assert!(method.arg_names().len() <= MAX_ARGS, "{method:?}");
            assert!(method.required_args() <= method.arg_names().len());
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = Method::ALL
            .iter()
            .flat_map(|method| {
                std::iter::once(method.name()).chain(method.aliases().iter().copied())
            })
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        let mut verbs: Vec<String> = Method::ALL
            .iter()
            .map(|method| method.verb().to_ascii_uppercase())
            .collect();
        verbs.sort_unstable();
        verbs.dedup();
        assert_eq!(verbs.len(), Method::ALL.len());
    }

    #[test]
    fn requests_know_their_method_and_arguments() {
        let request = Request::Reserve {
            lot: "A".into(),
            plate: "P".into(),
        };
        assert_eq!(request.method(), Method::Reserve);
        assert_eq!(
            request.with_args(|args| args.to_vec()),
            [Arg::Text("A"), Arg::Text("P")]
        );
        assert_eq!(Method::Reserve.usage(), "[lotId, plate]");
        assert_eq!(Request::Ping.with_args(|args| args.len()), 0);
        let auth = Request::Auth {
            token: crate::Secret::new("t0k"),
        };
        assert!(!format!("{auth:?}").contains("t0k"));
        assert_eq!(auth.with_args(|args| args.to_vec()), [Arg::Text("t0k")]);
        assert_eq!(auth.clone().into_owned(), auth);
        let built = Request::from_args(Method::Reserve, "reserve", Args::Text(vec!["A", "P"]));
        assert_eq!(built, Ok(request));
        let short = Request::from_args(Method::Cancel, "cancel", Args::Text(vec!["A"]));
        assert_eq!(
            short.unwrap_err().detail,
            "cancel takes [lotId, plate], got 1 argument(s)"
        );
    }

    #[test]
    fn kinds_read_their_arguments_and_optional_ones_may_be_left_out() {
        assert_eq!(Method::Book.usage(), "[lotId, plate, start, end, spotId?]");
        assert_eq!(Method::Book.required_args(), 4);
        let book = |fields: Vec<&'static str>| {
            Request::from_args(Method::Book, "book", Args::Text(fields))
        };
        assert_eq!(
            book(vec!["A", "P", "10", "20"]),
            Ok(Request::Book {
                lot: "A".into(),
                plate: "P".into(),
                start: 10,
                end: 20,
                spot: None,
            })
        );
        let with_spot = book(vec!["A", "P", "10", "20", "S1"]).unwrap();
        assert_eq!(
            with_spot.with_args(|args| args.to_vec()),
            [
                Arg::Text("A"),
                Arg::Text("P"),
                Arg::Seconds(10),
                Arg::Seconds(20),
                Arg::Text("S1")
            ]
        );
        for bad in [vec!["A", "P", "+10", "20"], vec!["A", "P", "10", "2.5"]] {
            assert_eq!(book(bad).unwrap_err().code, ErrorCode::BadArgs);
        }
        assert_eq!(
            book(vec!["A", "P", "x", "20"]).unwrap_err().detail,
            "\"book\": argument 2 (start) must be a whole number of Unix seconds, got \"x\""
        );
        assert_eq!(
            book(vec!["A", "P", "10"]).unwrap_err().code,
            ErrorCode::BadArgs
        );
        let find =
            |field| Request::from_args(Method::FindLots, "findLots", Args::Text(vec![field]));
        assert_eq!(
            find("end=20&zone=n&start=10"),
            Ok(Request::FindLots {
                query: LotFilter {
                    zone: Some("n".into()),
                    feature: None,
                    start: 10,
                    end: 20,
                }
            })
        );
        for bad in [
            "start=10",
            "start=1&end=2&start=3",
            "start=1&end=2&colour=red",
            "start=1&end",
        ] {
            assert_eq!(find(bad).unwrap_err().code, ErrorCode::BadArgs, "{bad}");
        }
    }
}
