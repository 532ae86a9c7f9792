//! [`SensorClient`]: the sensor port's typed client, one `UPDATE`/`PING` line at a time.

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use framing::sensor::{self, CountChange, SensorCommand, SensorError, SensorReply};

use crate::net::{self, Failure, LineError, LineReader};

/// Why a sensor command failed.
#[derive(Debug)]
pub enum SensorClientError {
    /// No connection could be made (refused, unreachable, connect timeout, unresolvable name).
    Connect {
        /// The address or addresses that were tried.
        addr: String,
        /// The last attempt's error.
        source: io::Error,
    },
    /// The server did not take the command or answer it within the timeout.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// Any other socket error, or an argument that cannot be sent (`InvalidInput`).
    Io(io::Error),
    /// The server refused the command (`ERR CODE detail`).
    Server(SensorError),
    /// The reply line is not in the protocol, or not the reply this command expects.
    Protocol(String),
}

impl fmt::Display for SensorClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SensorClientError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            SensorClientError::Timeout => f.write_str("timed out waiting for the server"),
            SensorClientError::Closed => f.write_str("the server closed the connection"),
            SensorClientError::Io(err) => write!(f, "i/o error: {err}"),
            SensorClientError::Server(err) => write!(f, "server error {err}"),
            SensorClientError::Protocol(detail) => write!(f, "protocol error: {detail}"),
        }
    }
}

impl std::error::Error for SensorClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SensorClientError::Connect { source, .. } | SensorClientError::Io(source) => {
                Some(source)
            }
            SensorClientError::Server(err) => Some(err),
            _ => None,
        }
    }
}

/// Socket errors are sorted as for [`ClientError`](crate::ClientError): timeouts become
/// `Timeout`, resets and broken pipes `Closed`, anything else `Io`.
impl From<io::Error> for SensorClientError {
    fn from(err: io::Error) -> Self {
        match net::classify(err) {
            Failure::Timeout => SensorClientError::Timeout,
            Failure::Closed => SensorClientError::Closed,
            Failure::Other(err) => SensorClientError::Io(err),
        }
    }
}

impl From<SensorError> for SensorClientError {
    fn from(err: SensorError) -> Self {
        SensorClientError::Server(err)
    }
}

impl From<net::ConnectFailure> for SensorClientError {
    fn from(failure: net::ConnectFailure) -> Self {
        SensorClientError::Connect {
            addr: failure.addr,
            source: failure.source,
        }
    }
}

impl From<LineError> for SensorClientError {
    fn from(err: LineError) -> Self {
        match err {
            LineError::Io(err) => err.into(),
            LineError::Closed => SensorClientError::Closed,
            LineError::TooLong => SensorClientError::Protocol(format!(
                "reply line longer than {} bytes",
                net::MAX_REPLY_LINE_LEN
            )),
        }
    }
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
            lines: LineReader::new(stream),
            peer,
            out: Vec::with_capacity(64),
        })
    }

    /// Changes the timeout that bounds each wait on the socket.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), SensorClientError> {
        net::set_timeouts(self.lines.stream(), Some(timeout))?;
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
        if lot.is_empty() || lot.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(SensorClientError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("lot id {lot:?} must be non-empty and contain no whitespace"),
            )));
        }
        match self.exchange(&SensorCommand::Update { lot, change })? {
            SensorReply::Updated { free } => Ok(free),
            SensorReply::Pong => Err(SensorClientError::Protocol(
                "UPDATE answered PONG".to_owned(),
            )),
        }
    }

    /// `PING`: succeeds when the server answers `PONG`.
    pub fn ping(&mut self) -> Result<(), SensorClientError> {
        match self.exchange(&SensorCommand::Ping)? {
            SensorReply::Pong => Ok(()),
            SensorReply::Updated { free } => Err(SensorClientError::Protocol(format!(
                "PING answered OK {free}"
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
