//! The error type shared by the three clients.

use std::fmt;
use std::io;

use framing::pubsub::PubsubError;
use framing::rpc::WireError;
use framing::sensor::SensorError;

use crate::net::{self, ConnectFailure, Failure, LineError};

/// Why a call on one of the clients failed. The transport cases are the same for every port;
/// `E` is the port's own error reply ([`crate::ClientError`], [`crate::SensorClientError`] and
/// [`crate::SubscribeError`] name the three).
#[derive(Debug)]
pub enum Error<E> {
    /// No connection could be made (refused, unreachable, connect timeout, unresolvable name).
    Connect {
        /// The address or addresses that were tried.
        addr: String,
        /// The last attempt's error.
        source: io::Error,
    },
    /// The server did not take the request, or did not answer it, within the timeout.
    Timeout,
    /// The server closed the connection, possibly in the middle of a reply.
    Closed,
    /// Any other socket error, or an argument that cannot be sent (`InvalidInput`).
    Io(io::Error),
    /// The server answered with an error reply or refused the request.
    Server(E),
    /// The reply is not what the protocol promises: malformed, for another request, or of the
    /// wrong type for the call.
    Protocol(String),
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::Timeout => f.write_str("timed out waiting for the server"),
            Error::Closed => f.write_str("the server closed the connection"),
            Error::Io(err) => write!(f, "i/o error: {err}"),
            Error::Server(err) => write!(f, "server error {err}"),
            Error::Protocol(detail) => write!(f, "protocol error: {detail}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io(source) => Some(source),
            Error::Server(err) => Some(err),
            _ => None,
        }
    }
}

/// Socket errors are sorted: a read/write timeout becomes [`Error::Timeout`], a reset or
/// broken pipe [`Error::Closed`], anything else [`Error::Io`].
impl<E> From<io::Error> for Error<E> {
    fn from(err: io::Error) -> Self {
        match net::classify(err) {
            Failure::Timeout => Error::Timeout,
            Failure::Closed => Error::Closed,
            Failure::Other(err) => Error::Io(err),
        }
    }
}

impl<E> From<ConnectFailure> for Error<E> {
    fn from(failure: ConnectFailure) -> Self {
        Error::Connect {
            addr: failure.addr,
            source: failure.source,
        }
    }
}

impl<E> From<LineError> for Error<E> {
    fn from(err: LineError) -> Self {
        match err {
            LineError::Io(err) => err.into(),
            LineError::Closed => Error::Closed,
            LineError::TooLong => Error::Protocol(format!(
                "reply line longer than {} bytes",
                net::MAX_REPLY_LINE_LEN
            )),
        }
    }
}

impl From<WireError> for Error<WireError> {
    fn from(err: WireError) -> Self {
        Error::Server(err)
    }
}

impl From<SensorError> for Error<SensorError> {
    fn from(err: SensorError) -> Self {
        Error::Server(err)
    }
}

impl From<PubsubError> for Error<PubsubError> {
    fn from(err: PubsubError) -> Self {
        Error::Server(err)
    }
}
