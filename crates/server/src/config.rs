//! The server's configuration: one typed struct, read from JSON, with defaults for every key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use state::{LotId, LotSpec};

/// The file read when no `--config` is given, from the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "config.json";

/// One lot as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotConfig {
    /// The lot's id: 1-32 characters of `A-Z a-z 0-9 _ -`, not `ALL`.
    pub id: LotId,
    /// Number of spaces, at least 1.
    pub capacity: u32,
}

/// Every setting of the server. Durations are in seconds (fractions allowed).
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
    /// Worker threads serving RPC connections.
    pub thread_pool_size: usize,
    /// Worker threads serving sensor connections, separate so sensors never wait for RPC.
    pub sensor_pool_size: usize,
    /// Listen backlog: connections the kernel queues before `accept`.
    pub backlog: u32,
    /// How long a reservation lives, in seconds.
    pub reservation_ttl: f64,
    /// How often expired reservations are purged at the latest, in seconds.
    pub purge_interval: f64,
    /// A connection that sends nothing for this long is closed, in seconds.
    pub idle_timeout: f64,
    /// A request (frame or line) that has started must complete within this, in seconds; a
    /// peer that stops reading replies for this long is closed too.
    pub frame_timeout: f64,
    /// How long a worker waits on a quiet connection before serving another one that is
    /// waiting, in milliseconds. Smaller is fairer to waiting connections and costs more wake-ups.
    pub scheduling_slice_ms: u64,
    /// Open connections allowed per port; further ones are told BUSY and closed.
    pub max_connections: usize,
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
    /// On shutdown, how long in-flight replies and queued events may take to drain, in seconds.
    pub shutdown_grace: f64,
    /// The lots, in the order `getLots` reports them.
    pub lots: Vec<LotConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let lot = |id: &str, capacity| LotConfig {
            // The built-in ids are valid.
            id: LotId::new(id).unwrap_or_else(|_| unreachable!("built-in lot id {id}")),
            capacity,
        };
        Config {
            host: "127.0.0.1".into(),
            rpc_port: 9000,
            sensor_port: 9001,
            pubsub_port: 9002,
            thread_pool_size: 16,
            sensor_pool_size: 4,
            backlog: 128,
            reservation_ttl: 300.0,
            purge_interval: 30.0,
            idle_timeout: 300.0,
            frame_timeout: 10.0,
            scheduling_slice_ms: 5,
            max_connections: 1024,
            subscriber_queue_size: 64,
            max_overflow_drops: 10,
            notifier_threads: 2,
            subscriber_send_buffer: 32 * 1024,
            shutdown_grace: 2.0,
            lots: vec![lot("A", 100), lot("B", 50), lot("C", 200)],
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
            ConfigError::Invalid { key, reason } => write!(f, "invalid config `{key}`: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Parse { source, .. } => Some(source),
            ConfigError::Invalid { .. } => None,
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
    /// RPC worker threads (`thread_pool_size`).
    #[arg(long)]
    pub thread_pool_size: Option<usize>,
    /// Sensor worker threads (`sensor_pool_size`).
    #[arg(long)]
    pub sensor_pool_size: Option<usize>,
    /// Reservation lifetime in seconds (`reservation_ttl`).
    #[arg(long)]
    pub reservation_ttl: Option<f64>,
    /// Idle connection timeout in seconds (`idle_timeout`).
    #[arg(long)]
    pub idle_timeout: Option<f64>,
    /// Open connections allowed per port (`max_connections`).
    #[arg(long)]
    pub max_connections: Option<usize>,
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
        let config = Config::from_json(&text).map_err(|err| match err {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.clone(),
                source,
            },
            other => other,
        })?;
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
        Ok(config)
    }

    /// Parses and validates a configuration from JSON text.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
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
            thread_pool_size,
            sensor_pool_size,
            reservation_ttl,
            idle_timeout,
            max_connections,
        } = overrides;
        if let Some(host) = host {
            self.host.clone_from(host);
        }
        set(&mut self.rpc_port, *rpc_port);
        set(&mut self.sensor_port, *sensor_port);
        set(&mut self.pubsub_port, *pubsub_port);
        set(&mut self.thread_pool_size, *thread_pool_size);
        set(&mut self.sensor_pool_size, *sensor_pool_size);
        set(&mut self.max_connections, *max_connections);
        set(&mut self.reservation_ttl, *reservation_ttl);
        set(&mut self.idle_timeout, *idle_timeout);
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
        for (key, value) in [
            ("thread_pool_size", self.thread_pool_size),
            ("sensor_pool_size", self.sensor_pool_size),
            ("max_connections", self.max_connections),
            ("subscriber_queue_size", self.subscriber_queue_size),
            ("notifier_threads", self.notifier_threads),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.backlog == 0 {
            return invalid("backlog", "must be at least 1");
        }
        if self.max_overflow_drops == 0 {
            return invalid("max_overflow_drops", "must be at least 1");
        }
        if self.scheduling_slice_ms == 0 || self.scheduling_slice_ms > 1000 {
            return invalid("scheduling_slice_ms", "must be from 1 to 1000");
        }
        for (key, seconds) in [
            ("reservation_ttl", self.reservation_ttl),
            ("purge_interval", self.purge_interval),
            ("idle_timeout", self.idle_timeout),
            ("frame_timeout", self.frame_timeout),
        ] {
            if !(seconds.is_finite() && seconds > 0.0 && seconds <= 1e9) {
                return invalid(
                    key,
                    &format!("must be a positive number of seconds, got {seconds}"),
                );
            }
        }
        if !(self.shutdown_grace.is_finite() && (0.0..=3600.0).contains(&self.shutdown_grace)) {
            return invalid("shutdown_grace", "must be from 0 to 3600 seconds");
        }
        let ports = [self.rpc_port, self.sensor_port, self.pubsub_port];
        for (i, port) in ports.iter().enumerate() {
            if *port != 0 && ports[..i].contains(port) {
                return invalid(
                    "rpc_port",
                    &format!("port {port} is used for two protocols"),
                );
            }
        }
        if self.lots.is_empty() {
            return invalid("lots", "at least one lot is needed");
        }
        for (i, lot) in self.lots.iter().enumerate() {
            if lot.capacity == 0 {
                return invalid("lots", &format!("lot {:?} has capacity 0", lot.id.as_str()));
            }
            if self.lots[..i].iter().any(|other| other.id == lot.id) {
                return invalid(
                    "lots",
                    &format!("lot id {:?} appears twice", lot.id.as_str()),
                );
            }
        }
        Ok(())
    }

    /// The lots as the state wants them.
    pub fn lot_specs(&self) -> Vec<LotSpec> {
        self.lots
            .iter()
            .map(|lot| LotSpec {
                id: lot.id.clone(),
                capacity: lot.capacity,
            })
            .collect()
    }

    /// `reservation_ttl` as a duration.
    pub fn reservation_ttl(&self) -> Duration {
        Duration::from_secs_f64(self.reservation_ttl)
    }

    /// `purge_interval` as a duration.
    pub fn purge_interval(&self) -> Duration {
        Duration::from_secs_f64(self.purge_interval)
    }

    /// `idle_timeout` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout)
    }

    /// `frame_timeout` as a duration.
    pub fn frame_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.frame_timeout)
    }

    /// `shutdown_grace` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace)
    }

    /// A configuration for tests and embedding: every port 0 (ephemeral) on 127.0.0.1.
    pub fn ephemeral() -> Config {
        Config {
            rpc_port: 0,
            sensor_port: 0,
            pubsub_port: 0,
            ..Config::default()
        }
    }
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
        assert_eq!(source, ConfigSource::File(path));
        assert_eq!(config, Config::default());
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
        assert_eq!(invalid_key(r#"{"host": " "}"#), "host");
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
                reservation_ttl: Some(1.5),
                ..ConfigOverrides::default()
            })
            .unwrap();
        assert_eq!(config.rpc_port, 0);
        assert_eq!(config.reservation_ttl(), Duration::from_millis(1500));
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
