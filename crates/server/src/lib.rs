//! The parking server: configuration, the three ports, and how connections share workers.
//!
//! [`Server::start`] builds the shared `state::ParkingState`, binds the RPC, sensor and
//! pub/sub ports, and starts:
//! - one blocking accept loop per port (named `rpc-accept`, `sensor-accept`, `pubsub-accept`);
//! - a pool of `thread_pool_size` workers for RPC connections and a separate pool of
//!   `sensor_pool_size` for sensors, each run by a connection scheduler that shares its
//!   workers fairly between any number of connections (idle and slow peers included);
//! - the `broker::Broker`'s notifier threads, which push state changes to subscribers; the
//!   state calls the broker after releasing its lock, so publishing never holds up a request;
//! - the `state::Purger`, which expires reservations on time.
//!
//! The caller creates the [`shutdown::ShutdownHandle`] and passes it to [`Server::start`];
//! triggering it (from a signal handler) stops everything gracefully.
//!
//! The wire formats live in the `framing` crate; this crate only decides what to do with a
//! request. `docs/design.md` describes the thread model and its trade-offs.
//!
//! # Layout
//! - `config`: the [`Config`] struct, its defaults, loading and validation.
//! - `listener`: binding ports and the accept loops.
//! - `connection`: the per-port scheduler and the `Protocol` trait it serves.
//! - `rpc`: the RPC port's protocol: decoding requests and dispatching them to the state.
//! - `sensor`: the sensor port's protocol.
//! - `server`: [`Server`], [`RunningServer`] and shutdown.

#![forbid(unsafe_code)]

mod config;
mod connection;
mod listener;
mod rpc;
mod sensor;
mod server;

pub use config::{
    Config, ConfigError, ConfigOverrides, ConfigSource, DEFAULT_CONFIG_FILE, LotConfig, MAX_SECONDS,
};
pub use listener::BindError;
pub use server::{RunningServer, Server, StartError, Summary};
