//! The parking server: configuration, the three ports, and how connections share workers.
//!
//! [`Server::start`] builds the shared `state::ParkingState`, binds the RPC, sensor and
//! pub/sub ports, and starts:
//! - one blocking accept loop per port (named `rpc-accept`, `sensor-accept`, `pubsub-accept`);
//! - a pool of `thread_pool_size` workers for RPC connections and a separate pool of
//!   `sensor_pool_size` for sensors, each with a readiness poller where connections wait
//!   while they have nothing to say, so that any number of idle or slow peers costs no
//!   worker;
//! - the `broker::Broker`'s notifier threads, which push state changes to subscribers; the
//!   state calls the broker after releasing its lock, so publishing never holds up a request;
//! - the `state::Purger`, which does what is due on time: expires reservations, and holds,
//!   releases (no-shows) and completes bookings.
//!
//! Writes go through the `store::Store` the `store` setting names: the state in this
//! process, or `store_pg::PgStore`, where PostgreSQL decides every write and several nodes
//! share one database (`docs/scaling.md`).
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
//! - `connection`: one connection and its buffers (answer what is buffered, write some, read
//!   some); the `protocol::Protocol` a port implements answers its requests.
//! - `scheduler`: the policy sharing a port's workers between its connections, and the
//!   ready queue.
//! - `worker`: one worker thread: its own poll and the hot connections it keeps there.
//! - `poller`: where connections wait while they have nothing to say, and their deadlines.
//! - `limits`: the open-files limit and the `max_connections` it allows.
//! - `rpc`: the RPC port's protocol: decoding requests and dispatching them to the state.
//! - `sensor`: the sensor port's protocol.
//! - `exposition`: the metrics read at scrape time (connections, lots, the broker).
//! - `server`: [`Server`], [`RunningServer`] and shutdown.

#![forbid(unsafe_code)]

mod config;
mod connection;
mod exposition;
mod limits;
mod listener;
mod poller;
mod rpc;
mod scheduler;
mod sensor;
mod server;
mod worker;

pub use config::{
    Config, ConfigError, ConfigOverrides, ConfigSource, DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR,
    LotConfig, MAX_FEATURES, MAX_POOL_SIZE, MAX_SECONDS, MAX_SPOTS, OptionalPort, PortName,
    PostgresConfig, SpotConfig, StoreConfig, TlsConfig,
};
pub use listener::BindError;
pub use server::{OpenConnections, RunningServer, Server, StartError, Summary};
