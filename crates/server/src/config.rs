//! The server's configuration: one typed struct, read from JSON, with defaults for every key.

use std::fmt;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auth::AuthConfig;
use serde::{Deserialize, Deserializer};
use state::{
    BookingRules, Clock, Label, LotId, LotSpec, LotTerms, ParkingState, SetupError, SpotId,
    SpotSpec, WaitlistRules,
};
use store::Fsync;

/// The file read when no `--config` is given, from the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "config.json";

/// The data directory when none is configured, relative to the configuration file.
pub const DEFAULT_DATA_DIR: &str = "data";

/// One lot as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotConfig {
    /// The lot's id: 1-32 characters of `A-Z a-z 0-9 _ -`, not `ALL`.
    pub id: LotId,
    /// Number of spaces, at least 1.
    pub capacity: u32,
    /// Free spaces at or below which the lot's status is `almostFull`, at most `capacity`;
    /// absent, 10 % of the capacity (rounded down).
    #[serde(default)]
    pub almost_full_free: Option<u32>,
    /// Where the lot is (`findLots` filters on it).
    #[serde(default)]
    pub zone: Option<Label>,
    /// What every space of it offers (`covered`, `ev`).
    #[serde(default)]
    pub features: Vec<Label>,
    /// How many spaces may be booked for any one instant; the rest are for drive-ups.
    /// Default: the capacity.
    #[serde(default)]
    pub bookable: Option<u32>,
    /// Named spaces, bookable one by one; at most the capacity.
    #[serde(default)]
    pub spots: Vec<SpotConfig>,
}

impl LotConfig {
    /// A lot of `capacity` spaces with no zone, features or named spots, every space bookable,
    /// `almostFull` at the default threshold.
    pub fn new(id: LotId, capacity: u32) -> Self {
        LotConfig {
            id,
            capacity,
            zone: None,
            features: Vec::new(),
            bookable: None,
            spots: Vec::new(),
            almost_full_free: None,
        }
    }
}

/// A named space of a lot, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotConfig {
    /// Its id, unique in its lot: 1-32 characters of `A-Z a-z 0-9 _ -`.
    pub id: SpotId,
    /// What it offers beyond its lot's features.
    #[serde(default)]
    pub features: Vec<Label>,
}

/// Most features one lot or spot lists.
pub const MAX_FEATURES: usize = 32;

/// Most named spots over all lots: `findLots` lists the free ones, and its reply must fit in
/// one 4 MiB frame.
pub const MAX_SPOTS: usize = 10_000;

/// A port, as `tls_ports` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortName {
    /// The RPC port.
    Rpc,
    /// The sensor port.
    Sensor,
    /// The pub/sub port.
    Pubsub,
    /// The HTTP port.
    Http,
}

/// The server's TLS certificate and key: `"tls": {"cert": "server.pem", "key": "key.pem"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Longest duration any setting takes, in seconds (about 31 years), so that every deadline
/// computed from a setting fits in an `Instant`.
pub const MAX_SECONDS: f64 = 1e9;

/// Most lots one server serves: their `getLots` reply (about 120 bytes a lot at most) must
/// fit in one 4 MiB frame, with room to spare for the fields later versions add.
pub const MAX_LOTS: usize = 10_000;

/// Least `max_buffered_bytes`: one request of the largest size must fit.
const MIN_BUFFERED_BYTES: usize = 4 << 20;

/// Most `max_buffered_bytes`: past this it is a typo.
const MAX_BUFFERED_BYTES: usize = 1 << 40;

/// Bounds of the counts: past these a setting is a typo, and some (threads) would crash the
/// process at start rather than fail cleanly.
const COUNT_BOUNDS: [(&str, usize); 7] = [
    ("thread_pool_size", 1024),
    ("sensor_pool_size", 1024),
    ("http_pool_size", 1024),
    ("notifier_threads", 256),
    ("max_connections", 1_000_000),
    ("subscriber_queue_size", 1 << 16),
    ("backlog", 65_535),
];

/// Every setting of the server. Durations are written in seconds (fractions allowed) and read
/// into [`Duration`]s once, here.
///
/// Unknown keys are an error: a misspelt key must not be silently ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub host: String,
    /// RPC port; 0 picks a free port.
    pub rpc_port: u16,
    /// Sensor port; 0 picks a free port.
    pub sensor_port: u16,
    /// Pub/sub port; 0 picks a free port.
    pub pubsub_port: u16,
    /// HTTP port (REST API, event stream, metrics, dashboard); 0 picks a free port, `null`
    /// turns it off.
    pub http_port: Option<u16>,
    /// Worker threads serving HTTP connections.
    pub http_pool_size: usize,
    /// Origins (`https://ops.example.com`, or `*` for any) whose pages may call the HTTP API
    /// from a browser; none by default, so no CORS header is sent.
    pub http_cors_origins: Vec<String>,
    /// An HTTP event stream that has sent nothing for this long gets a keep-alive comment,
    /// so that proxies do not close it.
    #[serde(deserialize_with = "seconds")]
    pub event_stream_keep_alive: Duration,
    /// Count and time every request for `GET /metrics` (default true). False leaves the
    /// request counters and latency histograms at zero (the sampled values stay): it exists
    /// to measure what counting costs (`scripts/bench-http.sh`).
    pub metrics: bool,
    /// Worker threads serving RPC connections.
    pub thread_pool_size: usize,
    /// Worker threads serving sensor connections, separate so sensors never wait for RPC.
    pub sensor_pool_size: usize,
    /// Listen backlog: connections the kernel queues before `accept`.
    pub backlog: u32,
    /// How long a reservation lives.
    #[serde(deserialize_with = "seconds")]
    pub reservation_ttl: Duration,
    /// How often expired reservations are purged at the latest.
    #[serde(deserialize_with = "seconds")]
    pub purge_interval: Duration,
    /// A connection that sends nothing for this long is closed.
    #[serde(deserialize_with = "seconds")]
    pub idle_timeout: Duration,
    /// A request (frame or line) that has started must complete within this; a peer that
    /// stops reading replies for this long is closed too.
    #[serde(deserialize_with = "seconds")]
    pub frame_timeout: Duration,
    /// No longer used (connections wait in a readiness poller, not on a worker); accepted so
    /// that older configuration files still load, with a warning.
    pub scheduling_slice_ms: Option<u64>,
    /// Open connections allowed per port; further ones are told BUSY and closed.
    pub max_connections: usize,
    /// Bytes all RPC and sensor connections may buffer together in unfinished requests and
    /// unsent replies, beyond 4 KiB each; a request that needs more is refused (BUSY).
    pub max_buffered_bytes: usize,
    /// Open connections one client address may hold per port, so that one client cannot
    /// take every place; 0 for no limit (behind a proxy, through which every client shares
    /// one address).
    pub max_connections_per_address: usize,
    /// Events queued per subscriber before the oldest is dropped.
    pub subscriber_queue_size: usize,
    /// Events dropped while a subscriber's socket takes no bytes, after which it is
    /// disconnected.
    pub max_overflow_drops: u32,
    /// Threads writing events to subscriber sockets.
    pub notifier_threads: usize,
    /// Kernel send buffer per subscriber socket in bytes; small, so that a subscriber that
    /// stops reading is noticed after a bounded number of events.
    pub subscriber_send_buffer: usize,
    /// On shutdown, how long in-flight replies and queued events may take to drain.
    #[serde(deserialize_with = "seconds")]
    pub shutdown_grace: Duration,
    /// Longest booking window, in hours.
    pub max_booking_hours: u32,
    /// How far ahead a booking may start, in days.
    pub booking_horizon_days: u32,
    /// How long before its window a booking may check in, in minutes.
    pub early_checkin_minutes: u32,
    /// How long after its start a booking that has not checked in keeps its space before it
    /// is released as a no-show, and how long after its end a car may stay before it is
    /// flagged as overstaying.
    #[serde(deserialize_with = "seconds")]
    pub checkin_grace: Duration,
    /// How long a finished booking (completed, cancelled, no-show) stays readable after its
    /// window, in days; then it is forgotten, so memory follows live bookings.
    pub booking_retention_days: u32,
    /// How long a waitlist offer holds its space for the driver it is offered to, in
    /// minutes; not accepted by then, it passes to the next entry.
    pub offer_minutes: u32,
    /// Most entries one lot's waitlist keeps: offers are looked for by walking them, under
    /// the lot's lock.
    pub max_waitlist_per_lot: usize,
    /// Most drivers' accounts the server keeps.
    pub max_accounts: usize,
    /// How long a driver's login token (JWT) lives, in hours.
    pub jwt_ttl_hours: u32,
    /// Most finished bookings one lot keeps; past it the one due to be forgotten soonest
    /// goes at once, so memory stays bounded whatever clients do within the retention.
    pub max_finished_bookings: u32,
    /// Access control: `{"keys": [...]}`, each key an id, a role, for a sensor its lots, and
    /// the SHA-256 of its token. With no keys every port is open to whoever can reach it, which
    /// protected mode limits to loopback.
    pub auth: AuthConfig,
    /// Once keys are configured, a connection that has not authenticated within this long is
    /// closed, so that unauthenticated peers cannot hold connection places.
    #[serde(deserialize_with = "seconds")]
    pub auth_timeout: Duration,
    /// With no keys configured, refuse to listen on any address but loopback (Redis's
    /// protected mode): an open server must not end up on a network by accident.
    pub protected_mode: bool,
    /// TLS for the ports in `tls_ports`; none by default.
    pub tls: Option<TlsConfig>,
    /// The ports that speak TLS when `tls` is set (`["rpc", "sensor", "pubsub"]`); all of
    /// them if absent.
    pub tls_ports: Option<Vec<PortName>>,
    /// The lots, in the order `getLots` reports them.
    pub lots: Vec<LotConfig>,
    /// Where the embedded store keeps the state so that it survives a restart (a journal
    /// and snapshots); `None` (`null`) keeps it in memory only. A relative path in a file is
    /// resolved against that file's directory by [`Config::load`]. Unused with PostgreSQL.
    pub data_dir: Option<PathBuf>,
    /// When an embedded store's write counts as durable: before its reply (`always`), or
    /// written to the OS and synced about once a second (`everysec`) or when the OS decides
    /// (`no`).
    pub fsync: Fsync,
    /// A journal segment that grows past this many bytes is compacted into a snapshot.
    pub journal_segment_bytes: u64,
    /// Where the state is kept: on this node (the default) or in PostgreSQL, shared by
    /// several nodes.
    pub store: StoreConfig,
}

/// Where the state is kept: the `store` key, `{"kind": "embedded"}` (the default) or
/// `{"kind": "postgres", "url": ..., "pool_size": 16, "timeout": 2}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// On this node, in its own process. (Written with braces so that a stray key next to
    /// `"kind": "embedded"` is refused, not ignored.)
    Embedded {},
    /// In PostgreSQL, which decides every write; several nodes may share it
    /// (docs/scaling.md).
    Postgres(PostgresConfig),
}

/// Most connections one node keeps to PostgreSQL: past this a setting is a typo (the
/// server's own `max_connections` defaults to 100 for all its clients).
pub const MAX_POOL_SIZE: u32 = 1024;

/// The `store` key's settings for PostgreSQL.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The database, as a URL (`postgres://user:password@host:5432/db`) or libpq key-value
    /// string. The password is never logged.
    pub url: String,
    /// Connections kept for writes, shared by the RPC and sensor workers (default 16: one
    /// per RPC worker).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Longest a write waits for the database before it answers `UNAVAILABLE`, in seconds
    /// (default 2): a connection from the pool, a connect, a statement.
    #[serde(default = "default_pg_timeout", deserialize_with = "seconds")]
    pub timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded {}
    }
}

fn default_pool_size() -> u32 {
    16
}

fn default_pg_timeout() -> Duration {
    Duration::from_secs(2)
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Configurations get printed (`{:?}` in a test, a log); the password must not be.
        f.debug_struct("PostgresConfig")
            .field("url", &store_pg::redacted(&self.url))
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        let lot = |id: &str, capacity| {
            // The built-in ids are valid.
            let id = LotId::new(id).unwrap_or_else(|_| unreachable!("built-in lot id {id}"));
            LotConfig::new(id, capacity)
        };
        Config {
            host: "127.0.0.1".into(),
            rpc_port: 9000,
            sensor_port: 9001,
            pubsub_port: 9002,
            http_port: Some(8080),
            http_pool_size: 4,
            http_cors_origins: Vec::new(),
            metrics: true,
            event_stream_keep_alive: Duration::from_secs(15),
            thread_pool_size: 16,
            sensor_pool_size: 4,
            backlog: 128,
            reservation_ttl: Duration::from_secs(300),
            purge_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(10),
            scheduling_slice_ms: None,
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            max_buffered_bytes: 256 << 20,
            subscriber_queue_size: 64,
            max_overflow_drops: 10,
            notifier_threads: 2,
            subscriber_send_buffer: 32 * 1024,
            shutdown_grace: Duration::from_secs(2),
            max_booking_hours: 24,
            booking_horizon_days: 30,
            early_checkin_minutes: 15,
            checkin_grace: Duration::from_secs(900),
            booking_retention_days: 7,
            offer_minutes: 10,
            max_waitlist_per_lot: 1000,
            max_accounts: state::DEFAULT_MAX_ACCOUNTS,
            jwt_ttl_hours: 24,
            max_finished_bookings: state::DEFAULT_MAX_FINISHED,
            auth: AuthConfig::default(),
            auth_timeout: Duration::from_secs(10),
            protected_mode: true,
            tls: None,
            tls_ports: None,
            lots: vec![lot("A", 100), lot("B", 50), lot("C", 200)],
            data_dir: Some(PathBuf::from(DEFAULT_DATA_DIR)),
            fsync: Fsync::Always,
            journal_segment_bytes: store::DEFAULT_SEGMENT_BYTES,
            store: StoreConfig::Embedded {},
        }
    }
}

/// Where the configuration came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Read from this file.
    File(PathBuf),
    /// The default file was absent; built-in defaults are in use.
    Defaults,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Defaults => write!(
                f,
                "built-in defaults (no {DEFAULT_CONFIG_FILE} in the current directory)"
            ),
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The file is not valid JSON for this struct (syntax, types, unknown keys).
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde found, with line and column.
        source: serde_json::Error,
    },
    /// The file is not a JSON object (`{ ... }`).
    NotAnObject {
        /// The file.
        path: PathBuf,
    },
    /// Protected mode: no keys are configured and `host` is not a loopback address.
    Unprotected {
        /// The configured host.
        host: String,
    },
    /// The values are well-formed but unusable.
    Invalid {
        /// The offending key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Parse { path, source } => {
                write!(f, "invalid config file {}: {source}", path.display())
            }
            ConfigError::NotAnObject { path } => write!(
                f,
                "invalid config file {}: the configuration must be a JSON object \
                 ({{\"key\": value, ...}})",
                path.display()
            ),
            ConfigError::Unprotected { host } => write!(
                f,
                "refusing to listen on {host:?} with no keys configured (protected mode): \
                 anyone who can reach it could change occupancy and cancel reservations. \
                 Add keys under \"auth\" (`parking-server keygen --id ID --role ROLE` prints \
                 one), listen on 127.0.0.1, or set \"protected_mode\": false to serve an open \
                 server on this address anyway"
            ),
            ConfigError::Invalid { key, reason } => write!(f, "invalid config `{key}`: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Parse { source, .. } => Some(source),
            ConfigError::NotAnObject { .. }
            | ConfigError::Unprotected { .. }
            | ConfigError::Invalid { .. } => None,
        }
    }
}

/// Command-line overrides, applied on top of the file. Flattened into `parking-server`'s
/// arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigOverrides {
    /// Address to listen on (config key `host`).
    #[arg(long)]
    pub host: Option<String>,
    /// RPC port, 0 for any free port (`rpc_port`).
    #[arg(long)]
    pub rpc_port: Option<u16>,
    /// Sensor port, 0 for any free port (`sensor_port`).
    #[arg(long)]
    pub sensor_port: Option<u16>,
    /// Pub/sub port, 0 for any free port (`pubsub_port`).
    #[arg(long)]
    pub pubsub_port: Option<u16>,
    /// HTTP port, 0 for any free port, `off` for none (`http_port`).
    #[arg(long, value_name = "PORT|off", value_parser = parse_optional_port)]
    pub http_port: Option<OptionalPort>,
    /// RPC worker threads (`thread_pool_size`).
    #[arg(long)]
    pub thread_pool_size: Option<usize>,
    /// Sensor worker threads (`sensor_pool_size`).
    #[arg(long)]
    pub sensor_pool_size: Option<usize>,
    /// Reservation lifetime in seconds (`reservation_ttl`).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub reservation_ttl: Option<Duration>,
    /// Idle connection timeout in seconds (`idle_timeout`).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub idle_timeout: Option<Duration>,
    /// Open connections allowed per port (`max_connections`).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Open connections one client address may hold per port, 0 for no limit
    /// (`max_connections_per_address`).
    #[arg(long, value_name = "N")]
    pub max_connections_per_address: Option<usize>,
    /// Data directory, relative to the working directory (`data_dir`).
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    pub data_dir: Option<PathBuf>,
    /// Keep the state in memory only: nothing survives a restart (`"data_dir": null`).
    #[arg(long)]
    pub in_memory: bool,
    /// When a write counts as durable: always, everysec or no (`fsync`).
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<Fsync>,
}

impl Config {
    /// Reads the configuration: from `path` if given (it must exist), else from
    /// [`DEFAULT_CONFIG_FILE`] if present, else the built-in defaults. The result is validated.
    pub fn load(path: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
        let (path, explicit) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if !explicit && err.kind() == io::ErrorKind::NotFound => {
                let config = Config::default();
                config.validate()?;
                return Ok((config, ConfigSource::Defaults));
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let mut config = Config::from_json(&text).map_err(|err| match err {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.clone(),
                source,
            },
            ConfigError::NotAnObject { .. } => ConfigError::NotAnObject { path: path.clone() },
            other => other,
        })?;
        // The file names its data directory from where it lies, wherever it is run from.
        if let (Some(dir), Some(base)) = (&config.data_dir, path.parent()) {
            config.data_dir = Some(base.join(dir));
        }
        Ok((config, ConfigSource::File(path)))
    }

    /// [`Config::load`], then the command-line overrides; logs where the settings came from.
    pub fn load_with_overrides(
        path: Option<&Path>,
        overrides: &ConfigOverrides,
    ) -> Result<Config, ConfigError> {
        let (mut config, source) = Config::load(path)?;
        config.apply(overrides)?;
        log::info!("configuration: {source}");
        if config.scheduling_slice_ms.is_some() {
            log::warn!(
                "{source}: `scheduling_slice_ms` is no longer used (idle connections wait in a \
                 readiness poller, not on a worker); remove it"
            );
        }
        Ok(config)
    }

    /// Parses and validates a configuration from JSON text.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        // serde would read a struct from an array too, positionally (`[]` meaning all
        // defaults, `["127.0.0.1", 19100]` a host and a port); a configuration is an object.
        if !text.trim_start().starts_with('{') {
            return Err(ConfigError::NotAnObject {
                path: PathBuf::from("<text>"),
            });
        }
        let config: Config = serde_json::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Applies command-line overrides, then validates again.
    pub fn apply(&mut self, overrides: &ConfigOverrides) -> Result<(), ConfigError> {
        let ConfigOverrides {
            host,
            rpc_port,
            sensor_port,
            pubsub_port,
            http_port,
            thread_pool_size,
            sensor_pool_size,
            reservation_ttl,
            idle_timeout,
            max_connections,
            max_connections_per_address,
            data_dir,
            in_memory,
            fsync,
        } = overrides;
        if let Some(host) = host {
            self.host.clone_from(host);
        }
        set(&mut self.rpc_port, *rpc_port);
        set(&mut self.sensor_port, *sensor_port);
        set(&mut self.pubsub_port, *pubsub_port);
        if let Some(OptionalPort(port)) = http_port {
            self.http_port = *port;
        }
        set(&mut self.thread_pool_size, *thread_pool_size);
        set(&mut self.sensor_pool_size, *sensor_pool_size);
        set(&mut self.max_connections, *max_connections);
        set(
            &mut self.max_connections_per_address,
            *max_connections_per_address,
        );
        set(&mut self.reservation_ttl, *reservation_ttl);
        set(&mut self.idle_timeout, *idle_timeout);
        if let Some(dir) = data_dir {
            self.data_dir = Some(dir.clone());
        }
        if *in_memory {
            self.data_dir = None;
        }
        set(&mut self.fsync, *fsync);
        self.validate()
    }

    /// Checks every value that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.host.trim().is_empty() {
            return invalid("host", "must not be empty");
        }
        for (key, max) in COUNT_BOUNDS {
            let value = match key {
                "thread_pool_size" => self.thread_pool_size,
                "sensor_pool_size" => self.sensor_pool_size,
                "http_pool_size" => self.http_pool_size,
                "notifier_threads" => self.notifier_threads,
                "max_connections" => self.max_connections,
                "subscriber_queue_size" => self.subscriber_queue_size,
                _ => self.backlog as usize,
            };
            if value == 0 || value > max {
                return invalid(key, &format!("must be from 1 to {max}, got {value}"));
            }
        }
        if self.max_connections_per_address > COUNT_BOUNDS[4].1 {
            return invalid(
                "max_connections_per_address",
                &format!(
                    "must be from 0 (no limit) to {}, got {}",
                    COUNT_BOUNDS[3].1, self.max_connections_per_address
                ),
            );
        }
        if !(MIN_BUFFERED_BYTES..=MAX_BUFFERED_BYTES).contains(&self.max_buffered_bytes) {
            return invalid(
                "max_buffered_bytes",
                &format!(
                    "must be from {MIN_BUFFERED_BYTES} (one largest request) to \
                     {MAX_BUFFERED_BYTES} (1 TiB), got {}",
                    self.max_buffered_bytes
                ),
            );
        }
        if self.subscriber_send_buffer > 64 << 20 {
            return invalid(
                "subscriber_send_buffer",
                &format!(
                    "must be at most {} bytes (64 MiB), got {}",
                    64 << 20,
                    self.subscriber_send_buffer
                ),
            );
        }
        if self.max_overflow_drops == 0 {
            return invalid("max_overflow_drops", "must be at least 1");
        }
        for (key, duration) in [
            ("auth_timeout", self.auth_timeout),
            ("reservation_ttl", self.reservation_ttl),
            ("purge_interval", self.purge_interval),
            ("idle_timeout", self.idle_timeout),
            ("frame_timeout", self.frame_timeout),
            ("event_stream_keep_alive", self.event_stream_keep_alive),
        ] {
            if duration.is_zero() {
                return invalid(key, "must be a positive number of seconds, got 0");
            }
        }
        if self.shutdown_grace > MAX_GRACE {
            return invalid("shutdown_grace", "must be from 0 to 3600 seconds");
        }
        for origin in &self.http_cors_origins {
            if !valid_origin(origin) {
                return invalid(
                    "http_cors_origins",
                    &format!(
                        "{:?} is not an origin (scheme://host[:port], like \
                         https://ops.example.com) or *",
                        origin
                    ),
                );
            }
        }
        let ports = [
            ("rpc_port", self.rpc_port),
            ("sensor_port", self.sensor_port),
            ("pubsub_port", self.pubsub_port),
            ("http_port", self.http_port.unwrap_or(0)),
        ];
        // Reported under the first key of the clashing pair; the reason names both.
        for (i, &(key, port)) in ports.iter().enumerate() {
            if let Some((other, _)) = ports[i + 1..]
                .iter()
                .find(|&&(_, p)| port != 0 && p == port)
            {
                return invalid(
                    key,
                    &format!("port {port} is used by both {key} and {other}"),
                );
            }
        }
        if self.journal_segment_bytes == 0 {
            return invalid("journal_segment_bytes", "must be at least 1");
        }
        if self
            .data_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return invalid(
                "data_dir",
                "must not be empty (null keeps the state in memory)",
            );
        }
        if self.lots.is_empty() {
            return invalid("lots", "at least one lot is needed");
        }
        if self.lots.len() > MAX_LOTS {
            return invalid(
                "lots",
                &format!(
                    "at most {MAX_LOTS} lots (so that getLots fits in one reply), got {}",
                    self.lots.len()
                ),
            );
        }
        if let StoreConfig::Postgres(pg) = &self.store {
            if pg.url.trim().is_empty() {
                return invalid("store.url", "must name the database");
            }
            if pg.pool_size == 0 || pg.pool_size > MAX_POOL_SIZE {
                return invalid(
                    "store.pool_size",
                    &format!("must be from 1 to {MAX_POOL_SIZE}, got {}", pg.pool_size),
                );
            }
            if pg.timeout.is_zero() {
                return invalid(
                    "store.timeout",
                    "must be a positive number of seconds, got 0",
                );
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(self.lots.len());
        let mut spots = 0;
        for lot in &self.lots {
            let id = lot.id.as_str();
            if lot.capacity == 0 {
                return invalid("lots", &format!("lot {id:?} has capacity 0"));
            }
            if let Some(threshold) = lot.almost_full_free
                && threshold > lot.capacity
            {
                return invalid(
                    "lots",
                    &format!(
                        "lot {:?} has almost_full_free {threshold}, more than its capacity {}",
                        lot.id.as_str(),
                        lot.capacity
                    ),
                );
            }
            if !seen.insert(&lot.id) {
                return invalid("lots", &format!("lot id {id:?} appears twice"));
            }
            if let Some(bookable) = lot.bookable
                && bookable > lot.capacity
            {
                return invalid(
                    "lots",
                    &format!(
                        "lot {id:?} has bookable {bookable}, over its capacity {}",
                        lot.capacity
                    ),
                );
            }
            if lot.spots.len() > lot.capacity as usize {
                return invalid(
                    "lots",
                    &format!(
                        "lot {id:?} names {} spots but has {} spaces",
                        lot.spots.len(),
                        lot.capacity
                    ),
                );
            }
            let mut spot_ids = std::collections::HashSet::with_capacity(lot.spots.len());
            if let Some(spot) = lot.spots.iter().find(|spot| !spot_ids.insert(&spot.id)) {
                return invalid(
                    "lots",
                    &format!("lot {id:?} names spot {:?} twice", spot.id.as_str()),
                );
            }
            let most_features = lot.spots.iter().map(|spot| spot.features.len());
            if most_features.chain([lot.features.len()]).max() > Some(MAX_FEATURES) {
                return invalid(
                    "lots",
                    &format!("lot {id:?}: at most {MAX_FEATURES} features a lot or spot"),
                );
            }
            spots += lot.spots.len();
        }
        if spots > MAX_SPOTS {
            return invalid(
                "lots",
                &format!("at most {MAX_SPOTS} named spots in all, got {spots}"),
            );
        }
        for (key, value, max) in [
            ("max_booking_hours", self.max_booking_hours, 24 * 366),
            ("booking_horizon_days", self.booking_horizon_days, 3660),
        ] {
            if value == 0 || value > max {
                return invalid(key, &format!("must be from 1 to {max}, got {value}"));
            }
        }
        for (key, value, max) in [
            ("early_checkin_minutes", self.early_checkin_minutes, 24 * 60),
            ("booking_retention_days", self.booking_retention_days, 3660),
            (
                "max_finished_bookings",
                self.max_finished_bookings,
                1_000_000,
            ),
        ] {
            if value > max {
                return invalid(key, &format!("must be from 0 to {max}, got {value}"));
            }
        }
        if self.checkin_grace > MAX_CHECKIN_GRACE {
            return invalid("checkin_grace", "must be from 0 to 86400 seconds (a day)");
        }
        if self.jwt_ttl_hours == 0 || self.jwt_ttl_hours > 24 * 366 {
            return invalid(
                "jwt_ttl_hours",
                &format!("must be from 1 to 8784, got {}", self.jwt_ttl_hours),
            );
        }
        if self.offer_minutes == 0 || self.offer_minutes > 24 * 60 {
            return invalid(
                "offer_minutes",
                &format!("must be from 1 to 1440, got {}", self.offer_minutes),
            );
        }
        for (key, value, max) in [
            ("max_waitlist_per_lot", self.max_waitlist_per_lot, 100_000),
            ("max_accounts", self.max_accounts, 10_000_000),
        ] {
            if value > max {
                return invalid(key, &format!("must be from 0 to {max}, got {value}"));
            }
        }
        self.validate_access()
    }

    /// The `auth`, `protected_mode` and `tls` settings.
    fn validate_access(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if let Err(err) = self.auth.validate() {
            return invalid("auth", err.to_string());
        }
        for key in &self.auth.keys {
            for lot in key.lots.iter().flatten() {
                if !self.lots.iter().any(|configured| configured.id == *lot) {
                    return invalid(
                        "auth",
                        format!("key {} lists lot {lot}, which is not configured", key.id),
                    );
                }
            }
        }
        if let Some(err) = self.protected_mode_violation() {
            return Err(err);
        }
        match (&self.tls, &self.tls_ports) {
            (None, Some(_)) => invalid("tls_ports", "is set but `tls` is not".into()),
            (Some(_), Some(ports)) if ports.is_empty() => invalid(
                "tls_ports",
                "names no port (leave it out for every port, or drop `tls`)".into(),
            ),
            _ => Ok(()),
        }
    }

    /// The protected-mode refusal, if this configuration would serve an open server beyond
    /// loopback. A host that does not resolve passes: binding it reports that better.
    pub fn protected_mode_violation(&self) -> Option<ConfigError> {
        if !self.protected_mode || !self.auth.keys.is_empty() {
            return None;
        }
        let host = self.host.trim();
        let loopback = match host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => match (host, 0).to_socket_addrs() {
                Ok(addrs) => addrs.into_iter().all(|addr| addr.ip().is_loopback()),
                Err(_) => true,
            },
        };
        (!loopback).then(|| ConfigError::Unprotected {
            host: self.host.clone(),
        })
    }

    /// Whether `port` speaks TLS.
    pub fn tls_on(&self, port: PortName) -> bool {
        self.tls.is_some()
            && self
                .tls_ports
                .as_ref()
                .is_none_or(|ports| ports.contains(&port))
    }

    /// What booking windows must keep, from the settings.
    pub fn booking_rules(&self) -> BookingRules {
        let hours = |n: u32| Duration::from_secs(u64::from(n) * 3600);
        BookingRules {
            max_length: hours(self.max_booking_hours),
            horizon: hours(self.booking_horizon_days) * 24,
            early_checkin: Duration::from_secs(u64::from(self.early_checkin_minutes) * 60),
            checkin_grace: self.checkin_grace,
            retention: hours(self.booking_retention_days) * 24,
            max_finished: self.max_finished_bookings,
        }
    }

    /// How waitlists work, from the settings.
    pub fn waitlist_rules(&self) -> WaitlistRules {
        WaitlistRules {
            offer_for: Duration::from_secs(u64::from(self.offer_minutes) * 60),
            max_entries: self.max_waitlist_per_lot,
        }
    }

    /// How each lot is booked, as the state wants it.
    pub fn lot_terms(&self) -> Vec<LotTerms> {
        self.lots
            .iter()
            .map(|lot| LotTerms {
                id: lot.id.clone(),
                zone: lot.zone.clone(),
                features: lot.features.clone(),
                bookable: lot.bookable.unwrap_or(lot.capacity),
                spots: lot
                    .spots
                    .iter()
                    .map(|spot| SpotSpec {
                        id: spot.id.clone(),
                        features: spot.features.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The state the configuration describes, every lot empty, on `clock`: what a store
    /// starts from.
    pub fn state(&self, clock: Arc<dyn Clock>) -> Result<ParkingState, SetupError> {
        Ok(
            ParkingState::new(self.lot_specs(), self.reservation_ttl, clock)?
                .with_bookings(self.booking_rules(), self.lot_terms())?
                .with_waitlist(self.waitlist_rules(), self.max_accounts),
        )
    }

    /// The lots as the state wants them.
    pub fn lot_specs(&self) -> Vec<LotSpec> {
        self.lots
            .iter()
            .map(|lot| {
                let spec = LotSpec::new(lot.id.clone(), lot.capacity);
                LotSpec {
                    almost_full_free: lot.almost_full_free.unwrap_or(spec.almost_full_free),
                    ..spec
                }
            })
            .collect()
    }

    /// A configuration for tests and embedding: every port 0 (ephemeral) on 127.0.0.1, and
    /// the state in memory only (a test that wants it durable names a directory of its own).
    pub fn ephemeral() -> Config {
        Config {
            rpc_port: 0,
            sensor_port: 0,
            pubsub_port: 0,
            http_port: Some(0),
            data_dir: None,
            ..Config::default()
        }
    }
}

/// Longest `shutdown_grace`.
const MAX_GRACE: Duration = Duration::from_secs(3600);

/// Longest `checkin_grace`.
const MAX_CHECKIN_GRACE: Duration = Duration::from_secs(86_400);

/// A number of seconds as a duration, or why it cannot be one.
fn duration_from_seconds(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "must be a non-negative number of seconds, got {secs}"
        ));
    }
    if secs > MAX_SECONDS {
        return Err(format!(
            "{secs} seconds is too large (at most {MAX_SECONDS}, about 31 years)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Deserialises a duration written as a number of seconds.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(deserializer)?;
    duration_from_seconds(secs).map_err(serde::de::Error::custom)
}

/// Parses a command-line duration in seconds (the file's rules).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    duration_from_seconds(secs)
}

/// Whether `origin` is `*` or `scheme://host[:port]` with nothing that could break a header
/// line: a browser's `Origin` is compared to it as it is written.
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// A port that may be turned off: `--http-port 8080`, `--http-port 0`, `--http-port off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalPort(pub Option<u16>);

/// Parses a port number or `off`.
fn parse_optional_port(text: &str) -> Result<OptionalPort, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(OptionalPort(None));
    }
    text.parse()
        .map(|port| OptionalPort(Some(port)))
        .map_err(|_| format!("{text:?} is not a port number (0 to 65535) or `off`"))
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_key(json: &str) -> &'static str {
        match Config::from_json(json) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn repo_config_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.json");
        let (config, source) = Config::load(Some(&path)).unwrap();
        assert_eq!(source, ConfigSource::File(path.clone()));
        // Its data directory lies next to it: the repository's data/.
        let data_dir = path.parent().unwrap().join(DEFAULT_DATA_DIR);
        assert_eq!(
            config,
            Config {
                data_dir: Some(data_dir),
                ..Config::default()
            }
        );
    }

    #[test]
    fn the_store_is_embedded_unless_postgres_is_named() {
        assert_eq!(
            Config::from_json(r#"{"store": {"kind": "embedded"}}"#).unwrap(),
            Config::default()
        );
        let config = Config::from_json(
            r#"{"store": {"kind": "postgres", "url": "postgres://u:secret@db/parking"}}"#,
        )
        .unwrap();
        let StoreConfig::Postgres(pg) = &config.store else {
            panic!("{config:?}")
        };
        assert_eq!((pg.pool_size, pg.timeout), (16, Duration::from_secs(2)));
        // The password, not the word (`auth.jwt_secret_file` is a key of the config).
        assert!(!format!("{config:?}").contains("u:secret"));
        let config = Config::from_json(
            r#"{"store": {"kind": "postgres", "url": "host=/tmp", "pool_size": 4, "timeout": 0.5}}"#,
        )
        .unwrap();
        assert!(matches!(
            config.store,
            StoreConfig::Postgres(PostgresConfig { pool_size: 4, .. })
        ));
        for json in [
            r#"{"store": {"kind": "postgres"}}"#,
            r#"{"store": {"kind": "postgres", "url": "x", "pool": 4}}"#,
            r#"{"store": {"kind": "embedded", "url": "x"}}"#,
            r#"{"store": {"kind": "mysql"}}"#,
            r#"{"store": "postgres"}"#,
        ] {
            assert!(
                matches!(Config::from_json(json), Err(ConfigError::Parse { .. })),
                "{json}"
            );
        }
        for (json, key) in [
            (
                r#"{"store": {"kind": "postgres", "url": " "}}"#,
                "store.url",
            ),
            (
                r#"{"store": {"kind": "postgres", "url": "x", "pool_size": 0}}"#,
                "store.pool_size",
            ),
            (
                r#"{"store": {"kind": "postgres", "url": "x", "timeout": 0}}"#,
                "store.timeout",
            ),
        ] {
            assert_eq!(invalid_key(json), key, "{json}");
        }
    }

    #[test]
    fn empty_object_is_the_defaults() {
        assert_eq!(Config::from_json("{}").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_types_are_parse_errors() {
        for json in [
            r#"{"rpc_prot": 1}"#,
            r#"{"rpc_port": 70000}"#,
            r#"{"rpc_port": "9000"}"#,
            r#"{"lots": [{"id": "A", "capacity": 1, "colour": "red"}]}"#,
            r#"{"lots": [{"id": "", "capacity": 1}]}"#,
            r#"{"lots": [{"id": "A B", "capacity": 1}]}"#,
            r#"{"lots": [{"id": "A", "capacity": -1}]}"#,
            "{",
        ] {
            assert!(
                matches!(Config::from_json(json), Err(ConfigError::Parse { .. })),
                "{json}"
            );
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        assert_eq!(invalid_key(r#"{"lots": []}"#), "lots");
        assert_eq!(
            invalid_key(r#"{"lots": [{"id": "A", "capacity": 0}]}"#),
            "lots"
        );
        assert_eq!(
            invalid_key(r#"{"lots": [{"id": "A", "capacity": 1}, {"id": "A", "capacity": 2}]}"#),
            "lots"
        );
        assert_eq!(
            invalid_key(r#"{"thread_pool_size": 0}"#),
            "thread_pool_size"
        );
        assert_eq!(invalid_key(r#"{"reservation_ttl": 0}"#), "reservation_ttl");
        assert_eq!(invalid_key(r#"{"rpc_port": 9001}"#), "rpc_port");
        for (json, key, reason) in [
            (
                r#"{"sensor_port": 9100, "pubsub_port": 9100}"#,
                "sensor_port",
                "port 9100 is used by both sensor_port and pubsub_port",
            ),
            (
                r#"{"rpc_port": 9100, "pubsub_port": 9100}"#,
                "rpc_port",
                "port 9100 is used by both rpc_port and pubsub_port",
            ),
        ] {
            match Config::from_json(json) {
                Err(ConfigError::Invalid {
                    key: got,
                    reason: why,
                }) => {
                    assert_eq!((got, why.as_str()), (key, reason), "{json}");
                }
                other => panic!("{json}: expected Invalid, got {other:?}"),
            }
        }
        assert!(
            Config::from_json(r#"{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0}"#).is_ok()
        );
        assert_eq!(invalid_key(r#"{"host": " "}"#), "host");
        assert_eq!(
            invalid_key(r#"{"lots": [{"id": "A", "capacity": 5, "almost_full_free": 6}]}"#),
            "lots"
        );
        let config =
            Config::from_json(r#"{"lots": [{"id": "A", "capacity": 5, "almost_full_free": 5}]}"#)
                .unwrap();
        assert_eq!(config.lot_specs()[0].almost_full_free, 5);
        assert_eq!(Config::default().lot_specs()[0].almost_full_free, 10);
    }

    #[test]
    fn the_top_level_must_be_an_object() {
        for json in ["[]", r#"["127.0.0.1", 19100]"#, "  7", "\"x\"", ""] {
            assert!(
                matches!(
                    Config::from_json(json),
                    Err(ConfigError::NotAnObject { .. })
                ),
                "{json}"
            );
        }
    }

    #[test]
    fn counts_have_bounds_and_say_so() {
        for (json, key) in [
            (r#"{"thread_pool_size": 20000}"#, "thread_pool_size"),
            (r#"{"sensor_pool_size": 5000}"#, "sensor_pool_size"),
            (r#"{"notifier_threads": 100000}"#, "notifier_threads"),
            (r#"{"max_connections": 2000000}"#, "max_connections"),
            (
                r#"{"max_connections_per_address": 2000000}"#,
                "max_connections_per_address",
            ),
            (
                r#"{"subscriber_queue_size": 100000000}"#,
                "subscriber_queue_size",
            ),
            (r#"{"backlog": 0}"#, "backlog"),
            (
                r#"{"subscriber_send_buffer": 1000000000}"#,
                "subscriber_send_buffer",
            ),
        ] {
            assert_eq!(invalid_key(json), key, "{json}");
        }
        match Config::from_json(r#"{"thread_pool_size": 20000}"#) {
            Err(err) => assert!(err.to_string().contains("from 1 to 1024"), "{err}"),
            Ok(_) => panic!("accepted"),
        }
        assert!(
            Config::from_json(r#"{"thread_pool_size": 1024, "notifier_threads": 256}"#).is_ok()
        );
    }

    #[test]
    fn lots_are_capped_and_checked_in_linear_time() {
        let lots = |n: usize| {
            let list: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"id": "L{i}", "capacity": 1}}"#))
                .collect();
            format!(r#"{{"lots": [{}]}}"#, list.join(","))
        };
        assert_eq!(
            Config::from_json(&lots(MAX_LOTS)).unwrap().lots.len(),
            MAX_LOTS
        );
        assert_eq!(invalid_key(&lots(MAX_LOTS + 1)), "lots");
    }

    #[test]
    fn durations_are_seconds_within_bounds() {
        let config = Config::from_json(r#"{"idle_timeout": 0.25, "shutdown_grace": 0}"#).unwrap();
        assert_eq!(config.idle_timeout, Duration::from_millis(250));
        assert_eq!(config.shutdown_grace, Duration::ZERO);
        for (json, says) in [
            (r#"{"idle_timeout": -1}"#, "non-negative"),
            (r#"{"idle_timeout": 1e30}"#, "too large"),
            (r#"{"frame_timeout": 1000000001}"#, "too large"),
            (r#"{"reservation_ttl": "300"}"#, "invalid type"),
        ] {
            match Config::from_json(json) {
                Err(err @ ConfigError::Parse { .. }) => {
                    assert!(err.to_string().contains(says), "{json}: {err}");
                }
                other => panic!("{json}: expected a parse error, got {other:?}"),
            }
        }
        assert_eq!(invalid_key(r#"{"shutdown_grace": 3601}"#), "shutdown_grace");
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("x").is_err());
        assert!(parse_seconds("-2").is_err());
    }

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn protected_mode_keeps_an_open_server_on_loopback() {
        for host in ["127.0.0.1", "::1", "localhost", "127.0.0.5"] {
            let json = format!(r#"{{"host": "{host}"}}"#);
            assert!(Config::from_json(&json).is_ok(), "{host}");
        }
        for host in ["0.0.0.0", "::", "192.0.2.7"] {
            let json = format!(r#"{{"host": "{host}"}}"#);
            match Config::from_json(&json) {
                Err(err @ ConfigError::Unprotected { .. }) => {
                    let message = err.to_string();
                    assert!(message.contains("protected_mode"), "{message}");
                    assert!(message.contains("keygen"), "{message}");
                }
                other => panic!("{host}: expected protected mode, got {other:?}"),
            }
            let open = format!(r#"{{"host": "{host}", "protected_mode": false}}"#);
            assert!(Config::from_json(&open).is_ok(), "{host}");
            let keyed = format!(
                r#"{{"host": "{host}", "auth": {{"keys": [{{"id": "ops", "role": "operator", "sha256": "{HASH}"}}]}}}}"#
            );
            assert!(Config::from_json(&keyed).is_ok(), "{host}");
        }
        let mut config = Config::default();
        let overrides = ConfigOverrides {
            host: Some("0.0.0.0".into()),
            ..ConfigOverrides::default()
        };
        assert!(matches!(
            config.apply(&overrides),
            Err(ConfigError::Unprotected { .. })
        ));
    }

    #[test]
    fn keys_and_tls_are_checked() {
        let sensor = |lot: &str| {
            format!(
                r#"{{"auth": {{"keys": [{{"id": "gate", "role": "sensor", "lots": ["{lot}"], "sha256": "{HASH}"}}]}}}}"#
            )
        };
        assert!(Config::from_json(&sensor("A")).is_ok());
        assert_eq!(invalid_key(&sensor("Z")), "auth");
        assert_eq!(
            invalid_key(r#"{"auth": {"keys": [{"id": "x", "role": "viewer", "sha256": "00"}]}}"#),
            "auth"
        );
        assert!(matches!(
            Config::from_json(r#"{"auth": {"keys": [], "users": []}}"#),
            Err(ConfigError::Parse { .. })
        ));
        assert_eq!(invalid_key(r#"{"tls_ports": ["rpc"]}"#), "tls_ports");
        assert_eq!(
            invalid_key(r#"{"tls": {"cert": "c", "key": "k"}, "tls_ports": []}"#),
            "tls_ports"
        );
        assert_eq!(invalid_key(r#"{"auth_timeout": 0}"#), "auth_timeout");
        let config =
            Config::from_json(r#"{"tls": {"cert": "c", "key": "k"}, "tls_ports": ["sensor"]}"#)
                .unwrap();
        assert!(config.tls_on(PortName::Sensor));
        assert!(!config.tls_on(PortName::Rpc));
        let all = Config::from_json(r#"{"tls": {"cert": "c", "key": "k"}}"#).unwrap();
        assert!(all.tls_on(PortName::Rpc) && all.tls_on(PortName::Pubsub));
        assert!(!Config::default().tls_on(PortName::Rpc));
    }

    #[test]
    fn durability_settings() {
        let config = Config::from_json(r#"{"data_dir": null, "fsync": "everysec"}"#).unwrap();
        assert_eq!((config.data_dir, config.fsync), (None, Fsync::Everysec));
        assert!(matches!(
            Config::from_json(r#"{"fsync": "sometimes"}"#),
            Err(ConfigError::Parse { .. })
        ));
        assert_eq!(
            invalid_key(r#"{"journal_segment_bytes": 0}"#),
            "journal_segment_bytes"
        );
        assert_eq!(invalid_key(r#"{"data_dir": ""}"#), "data_dir");

        // A relative data_dir lies next to the file that names it; an absolute one stays.
        let dir = std::env::temp_dir().join(format!("parking-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("parking.json");
        for (json, expected) in [
            (r#"{"data_dir": "state"}"#, Some(dir.join("state"))),
            (
                r#"{"data_dir": "/var/lib/parking"}"#,
                Some(PathBuf::from("/var/lib/parking")),
            ),
            (r#"{"data_dir": null}"#, None),
            ("{}", Some(dir.join(DEFAULT_DATA_DIR))),
        ] {
            std::fs::write(&file, json).unwrap();
            assert_eq!(
                Config::load(Some(&file)).unwrap().0.data_dir,
                expected,
                "{json}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);

        let mut config = Config::default();
        config
            .apply(&ConfigOverrides {
                data_dir: Some(PathBuf::from("elsewhere")),
                fsync: Some(Fsync::No),
                ..ConfigOverrides::default()
            })
            .unwrap();
        assert_eq!(config.data_dir, Some(PathBuf::from("elsewhere")));
        assert_eq!(config.fsync, Fsync::No);
        config
            .apply(&ConfigOverrides {
                in_memory: true,
                ..ConfigOverrides::default()
            })
            .unwrap();
        assert_eq!(config.data_dir, None);
        assert_eq!("everysec".parse(), Ok(Fsync::Everysec));
        assert!("never".parse::<Fsync>().is_err());
    }

    #[test]
    fn lots_take_booking_terms_that_are_checked() {
        let config = Config::from_json(
            r#"{"lots": [{"id": "A", "capacity": 3, "zone": "north", "features": ["covered"],
                "bookable": 2, "spots": [{"id": "A-EV1", "features": ["ev"]}, {"id": "A-2"}]}],
                "max_booking_hours": 2, "checkin_grace": 60}"#,
        )
        .unwrap();
        let terms = &config.lot_terms()[0];
        assert_eq!(terms.bookable, 2);
        assert_eq!(terms.zone.as_ref().map(Label::as_str), Some("north"));
        assert_eq!(terms.spots[0].features[0].as_str(), "ev");
        let rules = config.booking_rules();
        assert_eq!(rules.max_length, Duration::from_secs(7200));
        assert_eq!(rules.horizon, Duration::from_secs(30 * 86_400));
        assert_eq!(rules.checkin_grace, Duration::from_secs(60));
        assert!(config.state(Arc::new(state::SystemClock)).is_ok());
        let waitlist = Config::from_json(r#"{"offer_minutes": 3}"#).unwrap();
        assert_eq!(
            waitlist.waitlist_rules().offer_for,
            Duration::from_secs(180)
        );
        assert_eq!(Config::default().waitlist_rules().offer_for.as_secs(), 600);
        // Without terms, every space is bookable.
        assert_eq!(Config::default().lot_terms()[0].bookable, 100);
        for json in [
            r#"{"lots": [{"id": "A", "capacity": 1, "bookable": 2}]}"#,
            r#"{"lots": [{"id": "A", "capacity": 1, "spots": [{"id": "S1"}, {"id": "S2"}]}]}"#,
            r#"{"lots": [{"id": "A", "capacity": 5, "spots": [{"id": "S1"}, {"id": "S1"}]}]}"#,
        ] {
            assert_eq!(invalid_key(json), "lots", "{json}");
        }
        for (json, key) in [
            (r#"{"max_booking_hours": 0}"#, "max_booking_hours"),
            (
                r#"{"booking_horizon_days": 100000}"#,
                "booking_horizon_days",
            ),
            (
                r#"{"early_checkin_minutes": 5000}"#,
                "early_checkin_minutes",
            ),
            (r#"{"checkin_grace": 90000}"#, "checkin_grace"),
            (
                r#"{"max_finished_bookings": 2000000}"#,
                "max_finished_bookings",
            ),
            (r#"{"offer_minutes": 0}"#, "offer_minutes"),
            (r#"{"offer_minutes": 1441}"#, "offer_minutes"),
            (r#"{"jwt_ttl_hours": 0}"#, "jwt_ttl_hours"),
            (
                r#"{"max_waitlist_per_lot": 100001}"#,
                "max_waitlist_per_lot",
            ),
            (r#"{"max_accounts": 10000001}"#, "max_accounts"),
        ] {
            assert_eq!(invalid_key(json), key, "{json}");
        }
        for json in [
            r#"{"lots": [{"id": "A", "capacity": 1, "zone": "north side"}]}"#,
            r#"{"lots": [{"id": "A", "capacity": 1, "spots": [{"id": "S", "colour": "red"}]}]}"#,
            r#"{"lots": [{"id": "A", "capacity": 1, "features": [""]}]}"#,
        ] {
            assert!(
                matches!(Config::from_json(json), Err(ConfigError::Parse { .. })),
                "{json}"
            );
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error_naming_it() {
        let err = Config::load(Some(Path::new("/nonexistent/parking.json"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/parking.json"));
    }

    #[test]
    fn overrides_win_and_are_validated() {
        let mut config = Config::default();
        config
            .apply(&ConfigOverrides {
                rpc_port: Some(0),
                reservation_ttl: Some(Duration::from_millis(1500)),
                ..ConfigOverrides::default()
            })
            .unwrap();
        assert_eq!(config.rpc_port, 0);
        assert_eq!(config.reservation_ttl, Duration::from_millis(1500));
        let bad = ConfigOverrides {
            thread_pool_size: Some(0),
            ..ConfigOverrides::default()
        };
        assert!(matches!(
            config.apply(&bad),
            Err(ConfigError::Invalid {
                key: "thread_pool_size",
                ..
            })
        ));
    }
}
