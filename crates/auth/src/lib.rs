//! Access control for the parking server's ports: who a peer is (a key from the key table)
//! and what its role lets it do.
//!
//! The configuration lists keys (`"auth": {"keys": [...]}`): each has an id, a [`Role`], for a
//! sensor the lots it may report on, and the SHA-256 of its token. Only hashes are stored; tokens
//! are random and long (see [`generate_token`]), so a plain SHA-256 is enough (ParkAPI stores
//! its per-source credentials the same way), and a presented token is compared against every
//! hash in constant time.
//!
//! Every port uses the same pieces, so the rules are written once:
//! - the RPC, sensor and pub/sub ports keep one [`Session`] per connection, authenticate it
//!   with the peer's `auth`/`AUTH <token>` and check each request's [`Action`] against it;
//! - an HTTP port (issue 16, not built yet) checks `Authorization: Bearer <token>` on each
//!   request with [`Authenticator::verify`] and the returned [`Identity`], without a session.
//!
//! The role table (docs/protocol.md has the normative copy):
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read lots and availability, find lots that can take a booking, subscribe |
//! | `client` | viewer's rights, reserve and book; cancel its own reservations and bookings, read and check in its own bookings |
//! | `sensor` | report occupancy (`UPDATE`) and cars through the gate (`ENTER`/`EXIT`) of the lots listed in its key, nothing else but `PING` |
//! | `operator` | everything, including anyone's reservations and bookings and `listBookings` |
//!
//! # Layout
//! - `key`: [`KeyId`], [`Role`], [`KeyConfig`] (one configured key) and [`AuthConfig`].
//! - `authenticator`: [`Authenticator`], the key table that verifies tokens, and the
//!   per-address failure window behind it.
//! - `access`: [`Identity`], [`Action`] and the role table; [`Session`], one connection's
//!   state (not yet authenticated, authenticated, failures so far).
//! - `token`: [`generate_token`], [`token_hash`] and [`new_key`], for `parking-server keygen`.

#![forbid(unsafe_code)]

mod access;
mod authenticator;
mod key;
mod token;

pub use access::{Action, Denied, Identity, MAX_FAILURES, Session};
pub use authenticator::{AuthFailure, Authenticator, FAILURE_WINDOW, FAILURES_PER_ADDRESS};
pub use key::{AuthConfig, KeyConfig, KeyError, KeyId, MAX_KEY_ID_LEN, Role};
pub use token::{generate_token, new_key, token_hash};
