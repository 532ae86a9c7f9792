//! [`SensorClient`]: the sensor port's typed client, one `UPDATE`/`PING` line at a time.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use framing::Secret;
use framing::sensor::{self, CountChange, Passage, SensorCommand, SensorError, SensorReply};

use crate::access::Access;
use crate::endpoints::Endpoints;
use crate::error::Error;
use crate::net::{self, Conn, LineReader};

/// Why a sensor command failed; [`Error::Server`] carries the server's `ERR` reply.
pub type SensorClientError = Error<SensorError>;

/// What a car through the gate did, as the server answered `ENTER`/`EXIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatePass {
    /// The lot's free spaces afterwards.
    pub free: u32,
    /// The booking the car checked in to (`ENTER`) or completed (`EXIT`), if any.
    pub booking: Option<String>,
}

/// Refuses a field that cannot be sent as one field of a line.
fn one_field(what: &str, field: &str) -> Result<(), SensorClientError> {
    if field.is_empty() || field.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(SensorClientError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {field:?} must be non-empty and contain no whitespace"),
        )));
    }
    Ok(())
}

/// A blocking client for the sensor port: one connection, one command and its reply at a
/// time. Each command goes out in one write; replies are read through a buffered reader.
///
/// After any error other than [`SensorClientError::Server`] the connection is out of step
/// (a reply may still be on its way); drop the client and connect again.
#[derive(Debug)]
pub struct SensorClient {
    lines: LineReader,
    peer: SocketAddr,
    out: Vec<u8>,
}

impl SensorClient {
    /// Connects, trying each address `addr` resolves to for at most `timeout`, and then uses
    /// `timeout` for every command.
    pub fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> Result<Self, SensorClientError> {
        let (stream, peer) = net::connect(addr, timeout)?;
        Ok(SensorClient {
            lines: LineReader::new(Conn::Plain(stream)),
            peer,
            out: Vec::with_capacity(64),
        })
    }

    /// Connects to the first of `endpoints` that answers, as `access` says (TLS, then `AUTH <token>`), with `timeout`
    /// for the connection, the handshake and every command.
    pub fn connect_with(
        endpoints: &Endpoints,
        timeout: Duration,
        access: &Access,
    ) -> Result<Self, SensorClientError> {
        let (stream, peer) = net::connect_with(endpoints, timeout, access)?;
        let mut client = SensorClient {
            lines: LineReader::new(stream),
            peer,
            out: Vec::with_capacity(64),
        };
        if let Some(token) = access.token() {
            client.auth(token)?;
        }
        Ok(client)
    }

    /// `AUTH <token>`: authenticates the connection; returns the key's id.
    pub fn auth(&mut self, token: &str) -> Result<String, SensorClientError> {
        match self.exchange(&SensorCommand::Auth {
            token: Secret::new(token),
        })? {
            SensorReply::Authenticated { id } => Ok(id),
            other => Err(SensorClientError::Protocol(format!(
                "AUTH answered {other:?}"
            ))),
        }
    }

    /// Changes the timeout that bounds each wait on the socket.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), SensorClientError> {
        net::set_timeouts(self.lines.socket(), Some(timeout))?;
        Ok(())
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// `UPDATE <lot> <change>`: reports a count and returns the lot's free spaces afterwards.
    ///
    /// A lot id that is empty or contains whitespace cannot be sent as one field and is
    /// refused before anything is written (`Io` with kind `InvalidInput`).
    pub fn update(&mut self, lot: &str, change: CountChange) -> Result<u32, SensorClientError> {
        one_field("lot id", lot)?;
        match self.exchange(&SensorCommand::Update { lot, change })? {
            SensorReply::Updated { free } => Ok(free),
            other => Err(SensorClientError::Protocol(format!(
                "UPDATE answered {other:?}"
            ))),
        }
    }

    /// `ENTER <lot> <plate>` or `EXIT <lot> <plate>`: a car through the lot's gate. Fields
    /// that cannot be sent as one are refused before anything is written.
    pub fn pass(
        &mut self,
        lot: &str,
        plate: &str,
        passage: Passage,
    ) -> Result<GatePass, SensorClientError> {
        one_field("lot id", lot)?;
        one_field("plate", plate)?;
        let command = SensorCommand::Gate {
            lot,
            plate,
            passage,
        };
        match self.exchange(&command)? {
            // `OK <free>` alone reads as an update's reply; for a gate line it means no booking.
            SensorReply::Updated { free } => Ok(GatePass {
                free,
                booking: None,
            }),
            SensorReply::Passed { free, booking } => Ok(GatePass { free, booking }),
            other => Err(SensorClientError::Protocol(format!(
                "a gate line answered {other:?}"
            ))),
        }
    }

    /// `PING`: succeeds when the server answers `PONG`.
    pub fn ping(&mut self) -> Result<(), SensorClientError> {
        match self.exchange(&SensorCommand::Ping)? {
            SensorReply::Pong => Ok(()),
            other => Err(SensorClientError::Protocol(format!(
                "PING answered {other:?}"
            ))),
        }
    }

    fn exchange(&mut self, command: &SensorCommand<'_>) -> Result<SensorReply, SensorClientError> {
        self.out.clear();
        sensor::encode_command(&mut self.out, command);
        self.lines.stream_mut().write_all(&self.out)?;
        let line = self.lines.read_line()?;
        match sensor::parse_reply(line) {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(refused)) => Err(SensorClientError::Server(refused)),
            Err(malformed) => Err(SensorClientError::Protocol(malformed.to_string())),
        }
    }
}
