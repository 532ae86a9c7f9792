//! Typed, blocking clients for the parking server's three ports.
//!
//! Every tool that talks to the server goes through this crate: `parking-rpc` (the command-line
//! RPC client), `sensor-sim` (simulated occupancy sensors), `subscriber` (prints pushed events)
//! and `load-test`. The bytes on the wire are [`framing`]'s business; this crate adds sockets,
//! timeouts, request ids and typed errors, so no tool hand-rolls the protocol.
//!
//! Each client owns one TCP connection and is used from one thread. Calls block, bounded by a
//! timeout that applies to every wait on the socket (connecting included). Socket failures are
//! sorted into the same three cases everywhere: the deadline passed (`Timeout`), the server went
//! away (`Closed`), or the server was never reached (`Connect`, which names the address); the
//! server's own refusals keep their protocol error codes.
//!
//! ```no_run
//! # fn main() -> Result<(), client::ClientError> {
//! let mut rpc = client::ParkingClient::connect("127.0.0.1:9000")?;
//! for lot in rpc.get_lots()? {
//!     println!("{}: {} free", lot.id, lot.free);
//! }
//! if rpc.reserve("A", "7ABC123")? {
//!     println!("reserved");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - `access`: [`Access`] (TLS and a token) and [`TlsClient`], for servers with access
//!   control or TLS on; every client has a `connect_with` that takes them.
//! - [`cli`]: what the command-line tools share: value parsers (seconds, lot ids) and
//!   [`Failure`], the one-line error they exit with.
//! - `endpoints`: [`Hosts`] (a tool's `--host a:9000,b:9000`) and the [`Endpoints`] they
//!   make; every
//!   client's `connect` takes them and tries each in turn, which is how the tools fail over
//!   between nodes.
//! - `error`: [`Error`], the one error type of all three clients.
//! - `parking`: [`ParkingClient`] for the RPC port (JSON requests, text aliases, pipelining
//!   with `send`/`recv`; reservations and bookings), its [`ClientError`] and [`RpcReply`].
//! - `sensor`: [`SensorClient`] for the sensor port (counts and the gate's `ENTER`/`EXIT`),
//!   [`GatePass`] and [`SensorClientError`].
//! - `subscription`: [`Subscription`] for the pub/sub port and [`SubscribeError`].
//! - `retry`: [`Backoff`] for reconnecting, shared by the long-running tools.
//! - `net` (private): connecting with a timeout, sorting socket errors, reading bounded lines.

#![forbid(unsafe_code)]

mod access;
pub mod cli;
mod endpoints;
mod error;
mod net;
mod parking;
mod retry;
mod sensor;
mod subscription;

pub use access::{Access, TlsClient, TlsSetupError};
pub use cli::Failure;
pub use endpoints::{Endpoints, Hosts};
pub use error::Error;
pub use framing::rpc::{
    Booking, BookingStatus, ErrorCode, LotFilter, LotOffer, SpotOffer, WaitEntry, WireError,
};
pub use framing::sensor::Passage;
pub use net::MAX_REPLY_LINE_LEN;
pub use parking::{ClientError, DEFAULT_TIMEOUT, LotInfo, ParkingClient, Reservation, RpcReply};
pub use retry::Backoff;
pub use sensor::{GatePass, SensorClient, SensorClientError};
pub use subscription::{OwnedEvent, SubscribeError, Subscription, Update};
