//! The parking server: configuration, the three ports, and how connections share workers.
//!
//! [`Server::start`] builds the shared [`state::ParkingState`], binds the RPC, sensor and
//! pub/sub ports, and starts:
//! - one blocking accept loop per port (named `rpc-accept`, `sensor-accept`, `pubsub-accept`);
//! - a pool of `thread_pool_size` workers for RPC connections and a separate pool of
//!   `sensor_pool_size` for sensors, each run by a [`connection::Scheduler`] that shares its
//!   workers fairly between any number of connections (idle and slow peers included);
//! - the [`broker::Broker`]'s notifier threads, which push state changes to subscribers; the
//!   state calls the broker after releasing its lock, so publishing never holds up a request;
//! - the [`state::Purger`], which expires reservations on time.
//!
//! The wire formats live in the `framing` crate; this crate only decides what to do with a
//! request. `docs/design.md` describes the thread model and its trade-offs.
//!
//! # Layout
//! - [`config`]: the [`Config`] struct, its defaults, loading and validation.
//! - [`listener`]: binding ports and the accept loops.
//! - [`connection`]: the per-port scheduler and the [`connection::Protocol`] trait.
//! - [`rpc`]: the RPC port's protocol.
//! - [`sensor`]: the sensor port's protocol.
//! - [`server`]: [`Server`], [`RunningServer`] and shutdown.
//! - `warn_limit`: rate-limited warnings about misbehaving peers.

#![forbid(unsafe_code)]

pub mod config;
pub mod connection;
pub mod listener;
pub mod rpc;
pub mod sensor;
pub mod server;
mod warn_limit;

pub use config::{Config, ConfigError, ConfigOverrides, ConfigSource};
pub use server::{RunningServer, Server, ShutdownHandle, StartError, Summary};
