//! The sensor port's line protocol: `UPDATE <lotId> <n|+k|-k>`, the gate's
//! `ENTER|EXIT <lotId> <plate>`, `PING` and `AUTH <token>`; one reply line each.

use std::fmt;
use std::io::Write;

use state::shown;
pub use state::{CountChange, Passage};

use crate::Secret;

/// Longest accepted command line, terminator excluded; a longer one is answered
/// `ERR LINE_TOO_LONG` and the connection is closed.
pub const MAX_LINE_LEN: usize = 1024;

/// One sensor command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorCommand<'a> {
    /// `UPDATE <lotId> <count>`.
    Update {
        /// The lot the sensor belongs to.
        lot: &'a str,
        /// The reported change.
        change: CountChange,
    },
    /// `ENTER <lotId> <plate>` or `EXIT <lotId> <plate>`: a car through the lot's gate.
    Gate {
        /// The lot the gate belongs to.
        lot: &'a str,
        /// The car's plate, as read (validated by the server).
        plate: &'a str,
        /// In or out.
        passage: Passage,
    },
    /// `PING`.
    Ping,
    /// `AUTH <token>`.
    Auth {
        /// The key's token.
        token: Secret<'a>,
    },
}

/// The sensor protocol's error codes; `Display` prints the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorErrorCode {
    /// Unknown verb, wrong number of fields, empty or non-UTF-8 line.
    UnknownCommand,
    /// No lot has that id.
    UnknownLot,
    /// The count is missing or not `n`, `+k` or `-k` with `n`, `k` fitting in 32 bits.
    BadCount,
    /// The line is over [`MAX_LINE_LEN`]; the connection is closed after this reply.
    LineTooLong,
    /// The server is at its connection limit; the connection is closed after this reply.
    Busy,
    /// The update could not be made durable, so it was not applied; retrying later is safe.
    Unavailable,
    /// A gate line's plate is missing or breaks the plate rules.
    BadPlate,
    /// Keys are configured and the connection has not authenticated (or sent a wrong token);
    /// after 5 wrong tokens the connection is closed after this reply.
    Unauthorized,
    /// The connection's key may not do this (update another lot, say).
    Forbidden,
}

impl SensorErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorErrorCode::UnknownCommand => "UNKNOWN_COMMAND",
            SensorErrorCode::UnknownLot => "UNKNOWN_LOT",
            SensorErrorCode::BadCount => "BAD_COUNT",
            SensorErrorCode::LineTooLong => "LINE_TOO_LONG",
            SensorErrorCode::Busy => "BUSY",
            SensorErrorCode::Unavailable => "UNAVAILABLE",
            SensorErrorCode::BadPlate => "BAD_PLATE",
            SensorErrorCode::Unauthorized => "UNAUTHORIZED",
            SensorErrorCode::Forbidden => "FORBIDDEN",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        [
            SensorErrorCode::UnknownCommand,
            SensorErrorCode::UnknownLot,
            SensorErrorCode::BadCount,
            SensorErrorCode::LineTooLong,
            SensorErrorCode::Busy,
            SensorErrorCode::Unavailable,
            SensorErrorCode::BadPlate,
            SensorErrorCode::Unauthorized,
            SensorErrorCode::Forbidden,
        ]
        .into_iter()
        .find(|candidate| candidate.as_str() == code)
    }
}

impl fmt::Display for SensorErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused sensor line: code and human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorError {
    /// What kind of error.
    pub code: SensorErrorCode,
    /// What exactly was wrong.
    pub detail: String,
}

impl SensorError {
    /// An error with the given code and detail.
    pub fn new(code: SensorErrorCode, detail: impl Into<String>) -> Self {
        SensorError {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for SensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.detail)
    }
}

impl std::error::Error for SensorError {}

fn parse_count(field: &str) -> Result<CountChange, SensorError> {
    let (make, digits): (fn(u32) -> CountChange, &str) = match field.as_bytes().first() {
        Some(b'+') => (CountChange::Add, &field[1..]),
        Some(b'-') => (CountChange::Remove, &field[1..]),
        _ => (CountChange::Set, field),
    };
    let bad = || {
        SensorError::new(
            SensorErrorCode::BadCount,
            format!(
                "count must be n, +k or -k with whole numbers below 2^32, got {}",
                shown(field)
            ),
        )
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse().map(make).map_err(|_| bad())
}

/// Parses one command line (terminator already removed).
pub fn parse_command(line: &[u8]) -> Result<SensorCommand<'_>, SensorError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| SensorError::new(SensorErrorCode::UnknownCommand, "line is not UTF-8"))?;
    let mut fields = text.split_ascii_whitespace();
    let Some(verb) = fields.next() else {
        return Err(SensorError::new(
            SensorErrorCode::UnknownCommand,
            "empty line",
        ));
    };
    if verb.eq_ignore_ascii_case("PING") {
        return match fields.next() {
            None => Ok(SensorCommand::Ping),
            Some(_) => Err(SensorError::new(
                SensorErrorCode::UnknownCommand,
                "PING takes no arguments",
            )),
        };
    }
    let passage = if verb.eq_ignore_ascii_case("ENTER") {
        Some(Passage::Enter)
    } else if verb.eq_ignore_ascii_case("EXIT") {
        Some(Passage::Exit)
    } else {
        None
    };
    if let Some(passage) = passage {
        return parse_gate(fields, passage);
    }
    if verb.eq_ignore_ascii_case("AUTH") {
        return match (fields.next(), fields.next()) {
            (Some(token), None) => Ok(SensorCommand::Auth {
                token: Secret::new(token),
            }),
            _ => Err(SensorError::new(
                SensorErrorCode::UnknownCommand,
                "AUTH takes exactly one field: <token>",
            )),
        };
    }
    if !verb.eq_ignore_ascii_case("UPDATE") {
        return Err(SensorError::new(
            SensorErrorCode::UnknownCommand,
            format!(
                "unknown command {} (try UPDATE <lotId> <n|+k|-k>, ENTER|EXIT <lotId> <plate>, PING or AUTH <token>)",
                shown(verb)
            ),
        ));
    }
    let lot = fields
        .next()
        .ok_or_else(|| SensorError::new(SensorErrorCode::UnknownLot, "UPDATE needs a lot id"))?;
    let count = fields
        .next()
        .ok_or_else(|| SensorError::new(SensorErrorCode::BadCount, "UPDATE needs a count"))?;
    let change = parse_count(count)?;
    if fields.next().is_some() {
        return Err(SensorError::new(
            SensorErrorCode::UnknownCommand,
            "UPDATE takes exactly two fields: <lotId> <n|+k|-k>",
        ));
    }
    Ok(SensorCommand::Update { lot, change })
}

/// The fields after `ENTER` or `EXIT`: `<lotId> <plate>`.
fn parse_gate<'a>(
    mut fields: impl Iterator<Item = &'a str>,
    passage: Passage,
) -> Result<SensorCommand<'a>, SensorError> {
    let verb = passage_verb(passage);
    let lot = fields.next().ok_or_else(|| {
        SensorError::new(
            SensorErrorCode::UnknownLot,
            format!("{verb} needs a lot id"),
        )
    })?;
    let plate = fields.next().ok_or_else(|| {
        SensorError::new(SensorErrorCode::BadPlate, format!("{verb} needs a plate"))
    })?;
    if fields.next().is_some() {
        return Err(SensorError::new(
            SensorErrorCode::UnknownCommand,
            format!("{verb} takes exactly two fields: <lotId> <plate>"),
        ));
    }
    Ok(SensorCommand::Gate {
        lot,
        plate,
        passage,
    })
}

/// The verb of a gate line.
fn passage_verb(passage: Passage) -> &'static str {
    match passage {
        Passage::Enter => "ENTER",
        Passage::Exit => "EXIT",
    }
}

/// Appends a command line, terminator included.
pub fn encode_command(out: &mut Vec<u8>, command: &SensorCommand<'_>) {
    // Writing to a Vec cannot fail.
    let _ = match command {
        SensorCommand::Update { lot, change } => writeln!(out, "UPDATE {lot} {change}"),
        SensorCommand::Gate {
            lot,
            plate,
            passage,
        } => writeln!(out, "{} {lot} {plate}", passage_verb(*passage)),
        SensorCommand::Ping => writeln!(out, "PING"),
        SensorCommand::Auth { token } => writeln!(out, "AUTH {}", token.expose()),
    };
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorReply {
    /// `OK <free>`: the update was applied; the lot now has `free` free spaces.
    Updated {
        /// Free spaces after the update.
        free: u32,
    },
    /// `OK <free>` or `OK <free> BOOKING <id>`: a car passed the gate; it checked in to
    /// (`ENTER`) or completed (`EXIT`) booking `id`.
    Passed {
        /// Free spaces afterwards.
        free: u32,
        /// The booking it checked in to or completed, if any.
        booking: Option<String>,
    },
    /// `PONG`.
    Pong,
    /// `OK <keyId>`: the connection is now this key (key ids start with a letter, counts
    /// are digits).
    Authenticated {
        /// The key's id.
        id: String,
    },
}

/// Appends a reply line, terminator included.
pub fn encode_reply(out: &mut Vec<u8>, reply: Result<&SensorReply, &SensorError>) {
    let _ = match reply {
        Ok(SensorReply::Updated { free })
        | Ok(SensorReply::Passed {
            free,
            booking: None,
        }) => writeln!(out, "OK {free}"),
        Ok(SensorReply::Passed {
            free,
            booking: Some(booking),
        }) => writeln!(out, "OK {free} BOOKING {booking}"),
        Ok(SensorReply::Pong) => writeln!(out, "PONG"),
        Ok(SensorReply::Authenticated { id }) => writeln!(out, "OK {id}"),
        Err(error) => writeln!(out, "ERR {error}"),
    };
}

/// A reply line that is not in the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedReply(pub String);

impl fmt::Display for MalformedReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed sensor reply {}", shown(&self.0))
    }
}

impl std::error::Error for MalformedReply {}

/// Parses a reply line (terminator removed), as a sensor client sees it.
pub fn parse_reply(line: &[u8]) -> Result<Result<SensorReply, SensorError>, MalformedReply> {
    let text = String::from_utf8_lossy(line);
    let malformed = || MalformedReply(text.to_string());
    if text == "PONG" {
        return Ok(Ok(SensorReply::Pong));
    }
    if let Some(rest) = text.strip_prefix("OK ") {
        // `OK <keyId>` answers `AUTH` (key ids start with a letter); `OK <free>` answers an
        // update and a gate line alike: the caller knows which it sent.
        if rest.starts_with(|c: char| c.is_ascii_alphabetic()) && !rest.contains(' ') {
            return Ok(Ok(SensorReply::Authenticated {
                id: rest.to_owned(),
            }));
        }
        return match rest.split_once(" BOOKING ") {
            None => rest
                .parse()
                .map(|free| Ok(SensorReply::Updated { free }))
                .map_err(|_| malformed()),
            Some((free, booking)) if !booking.is_empty() && !booking.contains(' ') => free
                .parse()
                .map(|free| {
                    Ok(SensorReply::Passed {
                        free,
                        booking: Some(booking.to_owned()),
                    })
                })
                .map_err(|_| malformed()),
            Some(_) => Err(malformed()),
        };
    }
    if let Some(rest) = text.strip_prefix("ERR ") {
        let (code, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = SensorErrorCode::parse(code).ok_or_else(malformed)?;
        return Ok(Err(SensorError::new(code, detail)));
    }
    Err(malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> SensorErrorCode {
        parse_command(line.as_bytes()).unwrap_err().code
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse_command(b"UPDATE A 12").unwrap(),
            SensorCommand::Update {
                lot: "A",
                change: CountChange::Set(12)
            }
        );
        assert_eq!(
            parse_command(b"update  B +3").unwrap(),
            SensorCommand::Update {
                lot: "B",
                change: CountChange::Add(3)
            }
        );
        assert_eq!(
            parse_command(b"Update C -0").unwrap(),
            SensorCommand::Update {
                lot: "C",
                change: CountChange::Remove(0)
            }
        );
        assert_eq!(parse_command(b"ping").unwrap(), SensorCommand::Ping);
        assert_eq!(
            parse_command(b"enter A 7abc").unwrap(),
            SensorCommand::Gate {
                lot: "A",
                plate: "7abc",
                passage: Passage::Enter
            }
        );
        assert_eq!(
            parse_command(b"EXIT  B  X").unwrap(),
            SensorCommand::Gate {
                lot: "B",
                plate: "X",
                passage: Passage::Exit
            }
        );
        assert_eq!(
            parse_command(b"auth  s3cret ").unwrap(),
            SensorCommand::Auth {
                token: Secret::new("s3cret")
            }
        );
    }

    #[test]
    fn refuses_bad_lines() {
        assert_eq!(code(""), SensorErrorCode::UnknownCommand);
        assert_eq!(code("JUMP A 1"), SensorErrorCode::UnknownCommand);
        assert_eq!(code("UPDATE"), SensorErrorCode::UnknownLot);
        assert_eq!(code("UPDATE A"), SensorErrorCode::BadCount);
        assert_eq!(code("UPDATE A x"), SensorErrorCode::BadCount);
        assert_eq!(code("UPDATE A +"), SensorErrorCode::BadCount);
        assert_eq!(code("UPDATE A +-1"), SensorErrorCode::BadCount);
        assert_eq!(code("UPDATE A ++1"), SensorErrorCode::BadCount);
        assert_eq!(code("UPDATE A 1.5"), SensorErrorCode::BadCount);
        assert_eq!(code("UPDATE A 4294967296"), SensorErrorCode::BadCount);
        assert_eq!(code("UPDATE A 1 2"), SensorErrorCode::UnknownCommand);
        assert_eq!(code("PING now"), SensorErrorCode::UnknownCommand);
        assert_eq!(code("ENTER"), SensorErrorCode::UnknownLot);
        assert_eq!(code("ENTER A"), SensorErrorCode::BadPlate);
        assert_eq!(code("EXIT A P Q"), SensorErrorCode::UnknownCommand);
        assert_eq!(code("AUTH"), SensorErrorCode::UnknownCommand);
        assert_eq!(code("AUTH a b"), SensorErrorCode::UnknownCommand);
        assert_eq!(
            parse_command(b"\xffUPDATE").unwrap_err().code,
            SensorErrorCode::UnknownCommand
        );
    }

    #[test]
    fn commands_and_replies_round_trip() {
        for command in [
            SensorCommand::Ping,
            SensorCommand::Update {
                lot: "A",
                change: CountChange::Remove(4),
            },
            SensorCommand::Gate {
                lot: "A",
                plate: "P-1",
                passage: Passage::Exit,
            },
            SensorCommand::Auth {
                token: Secret::new("t"),
            },
        ] {
            let mut out = Vec::new();
            encode_command(&mut out, &command);
            assert_eq!(out.last(), Some(&b'\n'));
            assert_eq!(parse_command(&out[..out.len() - 1]).unwrap(), command);
        }
        let error = SensorError::new(SensorErrorCode::UnknownLot, "no lot \"Z\"");
        for reply in [
            Ok(SensorReply::Pong),
            Ok(SensorReply::Updated { free: 7 }),
            Ok(SensorReply::Passed {
                free: 3,
                booking: Some("A.17".into()),
            }),
            Ok(SensorReply::Authenticated {
                id: "gate-A".into(),
            }),
            Err(error),
        ] {
            let mut out = Vec::new();
            encode_reply(&mut out, reply.as_ref());
            assert_eq!(parse_reply(&out[..out.len() - 1]).unwrap(), reply);
        }
        assert_eq!(
            parse_reply(b"OK 1x").unwrap_err().to_string(),
            "malformed sensor reply \"OK 1x\""
        );
        assert!(parse_reply(b"OK 1 BOOKING ").is_err());
        assert!(parse_reply(b"OK x BOOKING A.1").is_err());
        assert!(parse_reply(b"OK a b").is_err());
        assert!(parse_reply(b"ERR NOPE x").is_err());
    }
}
