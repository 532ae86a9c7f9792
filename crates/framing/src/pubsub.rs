//! The pub/sub port's line protocol: `SUBSCRIBE <lotId>`, `SUBSCRIBE ALL` or `AUTH <token>` from
//! the client, `OK <subId>` / `OK <keyId>` / `ERR <CODE> <detail>` replies and one JSON event
//! per line from the server.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

use serde::{Deserialize, Serialize};
use state::{Availability, shown};

use crate::Secret;

/// Longest accepted command line, terminator excluded.
pub const MAX_LINE_LEN: usize = 1024;

/// What a subscription covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'a> {
    /// One lot.
    Lot(&'a str),
    /// Every lot, present and future.
    All,
}

/// One command line from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `SUBSCRIBE <lotId>` or `SUBSCRIBE ALL`.
    Subscribe(Topic<'a>),
    /// `AUTH <token>`.
    Auth {
        /// The key's token.
        token: Secret<'a>,
    },
}

/// The pub/sub protocol's error codes; `Display` prints the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PubsubErrorCode {
    /// No lot has that id.
    UnknownLot,
    /// Not a `SUBSCRIBE` line, or one with the wrong number of fields.
    BadCommand,
    /// The line is over [`MAX_LINE_LEN`]; the connection is closed after this reply.
    LineTooLong,
    /// The server is at its connection limit; the connection is closed after this reply.
    Busy,
    /// Keys are configured and the connection has not authenticated (or sent a wrong token);
    /// after 5 wrong tokens the connection is closed after this reply.
    Unauthorized,
    /// The connection's key may not subscribe (a sensor key).
    Forbidden,
}

impl PubsubErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PubsubErrorCode::UnknownLot => "UNKNOWN_LOT",
            PubsubErrorCode::BadCommand => "BAD_COMMAND",
            PubsubErrorCode::LineTooLong => "LINE_TOO_LONG",
            PubsubErrorCode::Busy => "BUSY",
            PubsubErrorCode::Unauthorized => "UNAUTHORIZED",
            PubsubErrorCode::Forbidden => "FORBIDDEN",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        [
            PubsubErrorCode::UnknownLot,
            PubsubErrorCode::BadCommand,
            PubsubErrorCode::LineTooLong,
            PubsubErrorCode::Busy,
            PubsubErrorCode::Unauthorized,
            PubsubErrorCode::Forbidden,
        ]
        .into_iter()
        .find(|candidate| candidate.as_str() == code)
    }
}

impl fmt::Display for PubsubErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused command: code and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubError {
    /// What kind of error.
    pub code: PubsubErrorCode,
    /// What exactly was wrong.
    pub detail: String,
}

impl PubsubError {
    /// An error with the given code and detail.
    pub fn new(code: PubsubErrorCode, detail: impl Into<String>) -> Self {
        PubsubError {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for PubsubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.detail)
    }
}

impl std::error::Error for PubsubError {}

/// Parses a command line (terminator removed).
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, PubsubError> {
    let usage = "expected SUBSCRIBE <lotId>, SUBSCRIBE ALL or AUTH <token>";
    let text = std::str::from_utf8(line).map_err(|_| {
        PubsubError::new(
            PubsubErrorCode::BadCommand,
            format!("line is not UTF-8; {usage}"),
        )
    })?;
    let mut fields = text.split_ascii_whitespace();
    let (Some(verb), Some(target), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(PubsubError::new(PubsubErrorCode::BadCommand, usage));
    };
    if verb.eq_ignore_ascii_case("AUTH") {
        return Ok(Command::Auth {
            token: Secret::new(target),
        });
    }
    if !verb.eq_ignore_ascii_case("SUBSCRIBE") {
        return Err(PubsubError::new(
            PubsubErrorCode::BadCommand,
            format!("unknown command {}; {usage}", shown(verb)),
        ));
    }
    Ok(Command::Subscribe(if target.eq_ignore_ascii_case("ALL") {
        Topic::All
    } else {
        Topic::Lot(target)
    }))
}

/// Appends a command line, terminator included.
pub fn encode_command(out: &mut Vec<u8>, topic: Topic<'_>) {
    let _ = match topic {
        Topic::Lot(lot) => writeln!(out, "SUBSCRIBE {lot}"),
        Topic::All => writeln!(out, "SUBSCRIBE ALL"),
    };
}

/// Appends an `AUTH <token>` line.
pub fn encode_auth(out: &mut Vec<u8>, token: &Secret<'_>) {
    let _ = writeln!(out, "AUTH {}", token.expose());
}

/// Appends the `OK <keyId>` line that answers a good `AUTH`.
pub fn encode_authenticated(out: &mut Vec<u8>, key_id: &str) {
    let _ = writeln!(out, "OK {key_id}");
}

/// Appends the `OK <subId>` line.
pub fn encode_subscribed(out: &mut Vec<u8>, subscriber_id: u64) {
    let _ = writeln!(out, "OK {subscriber_id}");
}

/// Appends an `ERR <CODE> <detail>` line.
pub fn encode_error(out: &mut Vec<u8>, error: &PubsubError) {
    let _ = writeln!(out, "ERR {error}");
}

/// A lot's free count as pushed to subscribers: a change (`EVENT`), or its current value
/// right after a subscription (`SNAPSHOT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<'a> {
    /// The lot that changed.
    #[serde(rename = "lotId", borrow)]
    pub lot_id: Cow<'a, str>,
    /// Its free spaces after the change.
    pub free: u32,
    /// `open`, `almostFull` or `full`; absent from a server that predates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Availability>,
    /// When the change happened, in Unix seconds.
    pub timestamp: f64,
}

/// A pushed line as it is written, the `type` key first.
#[derive(Serialize)]
#[serde(tag = "type")]
enum PushedRef<'r, 'a> {
    #[serde(rename = "EVENT")]
    Event(&'r Event<'a>),
    #[serde(rename = "SNAPSHOT")]
    Snapshot(&'r Event<'a>),
}

/// Appends an event line (`{"type":"EVENT",...}`), terminator included.
pub fn encode_event(out: &mut Vec<u8>, event: &Event<'_>) {
    write_pushed(out, &PushedRef::Event(event));
}

/// Appends a snapshot line (`{"type":"SNAPSHOT",...}`): the lot's current value, sent after
/// `OK` for every lot a subscription newly covers.
pub fn encode_snapshot(out: &mut Vec<u8>, event: &Event<'_>) {
    write_pushed(out, &PushedRef::Snapshot(event));
}

fn write_pushed(out: &mut Vec<u8>, line: &PushedRef<'_, '_>) {
    let mark = out.len();
    // serde_json writes a NaN or infinite timestamp as `null` (a wall clock produces neither);
    // serialising this into a Vec cannot otherwise fail.
    if serde_json::to_writer(&mut *out, line).is_err() {
        out.truncate(mark);
        return;
    }
    out.push(b'\n');
}

/// A line from the server, as a subscriber sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerLine<'a> {
    /// `OK <subId>`.
    Subscribed(u64),
    /// `OK <keyId>` (key ids start with a letter).
    Authenticated(String),
    /// `ERR <CODE> <detail>`.
    Refused(PubsubError),
    /// A pushed event.
    Event(Event<'a>),
    /// A lot's current value, right after a subscription covered it.
    Snapshot(Event<'a>),
}

/// A server line that is not in the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine(pub String);

impl fmt::Display for MalformedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed pub/sub line {}", shown(&self.0))
    }
}

impl std::error::Error for MalformedLine {}

/// The JSON lines a server may push, told apart by their `type`; any other `type`, or none,
/// is malformed.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Pushed<'a> {
    #[serde(rename = "EVENT", borrow)]
    Event(Event<'a>),
    #[serde(rename = "SNAPSHOT", borrow)]
    Snapshot(Event<'a>),
}

/// Parses a line from the server (terminator removed).
pub fn parse_server_line(line: &[u8]) -> Result<ServerLine<'_>, MalformedLine> {
    let malformed = || MalformedLine(String::from_utf8_lossy(line).into_owned());
    if line.first() == Some(&b'{') {
        return serde_json::from_slice(line)
            .map(|pushed| match pushed {
                Pushed::Event(event) => ServerLine::Event(event),
                Pushed::Snapshot(event) => ServerLine::Snapshot(event),
            })
            .map_err(|_| malformed());
    }
    let text = std::str::from_utf8(line).map_err(|_| malformed())?;
    if let Some(id) = text.strip_prefix("OK ") {
        if id.starts_with(|c: char| c.is_ascii_alphabetic()) && !id.contains(' ') {
            return Ok(ServerLine::Authenticated(id.to_owned()));
        }
        return id
            .parse()
            .map(ServerLine::Subscribed)
            .map_err(|_| malformed());
    }
    if let Some(rest) = text.strip_prefix("ERR ") {
        let (code, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = PubsubErrorCode::parse(code).ok_or_else(malformed)?;
        return Ok(ServerLine::Refused(PubsubError::new(code, detail)));
    }
    Err(malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(
            parse_command(b"SUBSCRIBE A").unwrap(),
            Command::Subscribe(Topic::Lot("A"))
        );
        assert_eq!(
            parse_command(b"subscribe all").unwrap(),
            Command::Subscribe(Topic::All)
        );
        assert_eq!(
            parse_command(b"auth tok").unwrap(),
            Command::Auth {
                token: Secret::new("tok")
            }
        );
        for bad in [
            &b""[..],
            b"SUBSCRIBE",
            b"SUBSCRIBE A B",
            b"AUTH",
            b"AUTH a b",
            b"LISTEN A",
            b"\xff A",
        ] {
            assert_eq!(
                parse_command(bad).unwrap_err().code,
                PubsubErrorCode::BadCommand,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lines_round_trip() {
        let mut out = Vec::new();
        encode_event(
            &mut out,
            &Event {
                lot_id: "A".into(),
                free: 12,
                status: Some(Availability::Open),
                timestamp: 1712345678.5,
            },
        );
        assert_eq!(
            out,
            b"{\"type\":\"EVENT\",\"lotId\":\"A\",\"free\":12,\"status\":\"open\",\"timestamp\":1712345678.5}\n"
        );
        assert_eq!(
            parse_server_line(&out[..out.len() - 1]).unwrap(),
            ServerLine::Event(Event {
                lot_id: "A".into(),
                free: 12,
                status: Some(Availability::Open),
                timestamp: 1712345678.5
            })
        );
        // A server that predates `status` sends none, and its lines still parse.
        assert_eq!(
            parse_server_line(b"{\"type\":\"EVENT\",\"lotId\":\"A\",\"free\":0,\"timestamp\":1.5}")
                .unwrap(),
            ServerLine::Event(Event {
                lot_id: "A".into(),
                free: 0,
                status: None,
                timestamp: 1.5
            })
        );
        out.clear();
        encode_subscribed(&mut out, 7);
        assert_eq!(
            parse_server_line(b"OK 7").unwrap(),
            ServerLine::Subscribed(7)
        );
        let error = PubsubError::new(PubsubErrorCode::UnknownLot, "Z");
        out.clear();
        encode_error(&mut out, &error);
        assert_eq!(out, b"ERR UNKNOWN_LOT Z\n");
        assert_eq!(
            parse_server_line(&out[..out.len() - 1]).unwrap(),
            ServerLine::Refused(error)
        );
        assert!(parse_server_line(b"{\"type\":\"OTHER\"}").is_err());
        out.clear();
        let snapshot = Event {
            lot_id: "B".into(),
            free: 3,
            status: Some(Availability::AlmostFull),
            timestamp: 1.5,
        };
        encode_snapshot(&mut out, &snapshot);
        assert_eq!(
            out,
            b"{\"type\":\"SNAPSHOT\",\"lotId\":\"B\",\"free\":3,\"status\":\"almostFull\",\"timestamp\":1.5}\n"
        );
        assert_eq!(
            parse_server_line(&out[..out.len() - 1]).unwrap(),
            ServerLine::Snapshot(snapshot)
        );
        assert!(parse_server_line(b"{\"lotId\":\"B\",\"free\":3,\"timestamp\":1.5}").is_err());
        assert_eq!(
            parse_server_line(b"HELLO").unwrap_err().to_string(),
            "malformed pub/sub line \"HELLO\""
        );
        out.clear();
        encode_authenticated(&mut out, "signs");
        assert_eq!(out, b"OK signs\n");
        assert_eq!(
            parse_server_line(b"OK signs").unwrap(),
            ServerLine::Authenticated("signs".into())
        );
        out.clear();
        encode_auth(&mut out, &Secret::new("t"));
        assert_eq!(out, b"AUTH t\n");
    }
}
