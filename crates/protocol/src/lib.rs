//! What a port's protocol implements so that the server's scheduler can serve it.
//!
//! The server (`crates/server`) owns the sockets, the workers and the poller where idle
//! connections wait; a [`Protocol`] only turns the bytes a connection sent into the bytes to
//! send back. The RPC and sensor ports implement it in the server crate, the HTTP port in
//! its own crate (`crates/http-port`), which is why the trait lives here, below both.
//!
//! A request may also take its connection off the scheduler for good: an HTTP event stream
//! is handed to the pub/sub broker's notifier threads, which push events to it from then on.
//! [`Step::Upgrade`] asks for that, and [`Protocol::take_over`] receives the connection.
//!
//! # Layout
//! Everything is in this file.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;

use auth::Session;
use transport::Stream;

/// What a protocol did with the request at the front of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<U> {
    /// One request of `consumed` bytes was answered.
    Answered {
        /// Its length in the input.
        consumed: usize,
    },
    /// The input holds only the start of a request.
    Incomplete,
    /// A fatal protocol error was answered (frame or line too large, the last wrong token
    /// allowed): close once the replies are written.
    Fatal,
    /// The request was answered and takes its connection over: the scheduler stops serving
    /// it and passes it, with the replies not yet written, to [`Protocol::take_over`]. Bytes
    /// after the request are not answered.
    Upgrade {
        /// What [`Protocol::take_over`] needs to know of the request.
        upgrade: U,
    },
}

/// A connection the scheduler has let go of, for [`Protocol::take_over`].
pub struct Released {
    /// The byte stream, non-blocking: plain TCP, or TLS with its session (records
    /// still waiting in it go out with the next write).
    pub stream: Stream,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Replies the socket had not taken yet, to be sent first.
    pub unwritten: Vec<u8>,
    /// The connection's place under its port's connection limits: keep it while the
    /// connection is open and drop it when the connection closes.
    pub place: Box<dyn Send>,
}

impl fmt::Debug for Released {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Released")
            .field("peer", &self.peer)
            .field("unwritten", &self.unwritten.len())
            .finish_non_exhaustive()
    }
}

/// A request/reply protocol served by the scheduler.
pub trait Protocol: Send + Sync + 'static {
    /// What a request that takes its connection over passes on to [`Protocol::take_over`]
    /// (`std::convert::Infallible` for a protocol whose requests never do).
    type Upgrade: Send;

    /// Short name for logs and thread names, e.g. `rpc`.
    fn name(&self) -> &'static str;

    /// Most bytes one request may occupy in the buffer; the protocol must refuse (and ask to
    /// close) before a request grows past it.
    fn max_request_len(&self) -> usize;

    /// Handles the request at the front of `input`, if it is complete, appending its reply to
    /// `out`; `session` is the connection's access (which `auth` requests change).
    fn serve_one(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        session: &mut Session,
    ) -> Step<Self::Upgrade>;

    /// Appends the `BUSY` reply sent to a connection refused at a connection limit, `detail`
    /// saying which.
    fn busy_reply(&self, out: &mut Vec<u8>, detail: &str);

    /// Takes over a connection whose request asked for it with [`Step::Upgrade`]. Must not
    /// block. The default closes it.
    fn take_over(&self, upgrade: Self::Upgrade, connection: Released) {
        let _ = (upgrade, connection);
    }
}
