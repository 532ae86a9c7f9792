//! Everything that crosses the wire between the parking server and its peers.
//!
//! The server speaks three protocols of its own (see `docs/protocol.md`, the normative copy):
//! length-prefixed RPC frames on the RPC port, newline-terminated lines on the sensor and
//! pub/sub ports; and the HTTP port's event stream is encoded here too ([`sse`]), since the
//! broker writes it. (HTTP itself is parsed in the `http` crate, with `httparse`.) This crate turns bytes into typed values and typed values into bytes, and does
//! nothing else: no sockets, no shared state. Both the server and the client crate use it, so
//! the two sides of every exchange are written once. The domain's own vocabulary (what a
//! reserve or a cancel can answer, a sensor's count change) comes from the `state` crate and is
//! encoded as it is, so the words on the wire are the state's words.
//!
//! Decoders work on byte slices that the caller has already buffered and never panic on any
//! input; they either return a typed value, report that more bytes are needed, or return a
//! typed error that names the protocol's error code.
//!
//! # Layout
//! - [`frame`]: the `[len: u32 BE][payload]` frame codec and its limit ([`MAX_FRAME_LEN`]).
//! - [`line`]: splitting a byte buffer into `\n`-terminated lines with a length limit.
//! - [`rpc`]: RPC requests and replies, as JSON objects or as text aliases.
//! - [`sensor`]: sensor command lines and their replies.
//! - [`pubsub`]: subscription command lines and pushed events.
//! - [`sse`]: the same events as the HTTP port's event stream (Server-Sent Events).
//! - `secret`: [`Secret`], a token that never shows in logs.

#![forbid(unsafe_code)]

pub mod frame;
pub mod line;
pub mod pubsub;
pub mod rpc;
mod secret;
pub mod sensor;
pub mod sse;

pub use frame::{FrameError, MAX_FRAME_LEN};
pub use secret::Secret;
