//! Starting, running and stopping the whole server.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use accounts::{Drivers, JwtSecret};
use auth::Authenticator;
use broker::{Broker, BrokerConfig, Held};
use history::History;
use http_port::{Cors, HttpPort};
use metrics::{Metrics, MetricsError};
use shutdown::ShutdownHandle;
use state::{Clock, ParkingState, Purger, SetupError, SystemClock};
use store::{EmbeddedStore, MemoryStore, Store};
use store_pg::{PgOptions, PgStore};
use transport::{TlsAcceptor, TlsError};
use warn_limit::peer_warn;

use crate::config::{Config, ConfigError, PortName, StoreConfig};
use crate::connection::Timeouts;
use crate::exposition::{self, Ports};
use crate::limits::{self, Admission, BufferBudget, ConnectionBudget};
use crate::listener::{self, BindError};
use crate::rpc::{self, RpcProtocol};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::sensor::{self, SensorProtocol};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration does not describe a valid state.
    State(SetupError),
    /// A port could not be opened.
    Bind(BindError),
    /// A thread could not be started.
    Spawn(io::Error),
    /// The metrics could not be set up.
    Metrics(MetricsError),
    /// The data directory could not be used (held by another server, corrupt, unwritable).
    Store(store::OpenError),
    /// The configuration cannot be served (protected mode, unusable keys).
    Config(ConfigError),
    /// The TLS certificate or key cannot be used.
    Tls(TlsError),
    /// The PostgreSQL store could not be opened.
    Postgres(store_pg::OpenError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::State(err) => write!(f, "invalid lots: {err}"),
            StartError::Bind(err) => write!(f, "{err}"),
            StartError::Spawn(err) => write!(f, "cannot start a thread: {err}"),
            StartError::Metrics(err) => write!(f, "{err}"),
            StartError::Store(err) => write!(f, "{err}"),
            StartError::Config(err) => write!(f, "{err}"),
            StartError::Tls(err) => write!(f, "{err}"),
            StartError::Postgres(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::State(err) => Some(err),
            StartError::Bind(err) => Some(err),
            StartError::Spawn(err) => Some(err),
            StartError::Metrics(err) => Some(err),
            StartError::Store(err) => Some(err),
            StartError::Config(err) => Some(err),
            StartError::Tls(err) => Some(err),
            StartError::Postgres(err) => Some(err),
        }
    }
}

impl From<BindError> for StartError {
    fn from(err: BindError) -> Self {
        StartError::Bind(err)
    }
}

impl From<MetricsError> for StartError {
    fn from(err: MetricsError) -> Self {
        StartError::Metrics(err)
    }
}

impl From<io::Error> for StartError {
    fn from(err: io::Error) -> Self {
        StartError::Spawn(err)
    }
}

/// What the server did, reported when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// RPC connections served.
    pub rpc_connections: u64,
    /// RPC requests answered.
    pub rpc_requests: u64,
    /// Sensor connections served.
    pub sensor_connections: u64,
    /// Sensor lines answered.
    pub sensor_lines: u64,
    /// HTTP connections served.
    pub http_connections: u64,
    /// HTTP requests answered.
    pub http_requests: u64,
    /// Connections refused at a connection limit, on every port.
    pub refused_busy: u64,
    /// Changes of a lot's free count published.
    pub changes_published: u64,
    /// Event lines queued for subscribers: one per subscriber per change it follows.
    pub events_published: u64,
    /// Events dropped because a subscriber fell behind.
    pub events_dropped: u64,
    /// Subscribers disconnected for falling too far behind.
    pub slow_disconnects: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rpc: {} connection(s), {} request(s); sensor: {} connection(s), {} line(s); \
             http: {} connection(s), {} request(s); {} refused busy; pub/sub: {} change(s) \
             published, {} event line(s) queued for subscribers, {} dropped, {} slow \
             subscriber(s) disconnected",
            self.rpc_connections,
            self.rpc_requests,
            self.sensor_connections,
            self.sensor_lines,
            self.http_connections,
            self.http_requests,
            self.refused_busy,
            self.changes_published,
            self.events_published,
            self.events_dropped,
            self.slow_disconnects
        )
    }
}

/// Connections open at one moment, per port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenConnections {
    /// On the RPC port.
    pub rpc: usize,
    /// On the sensor port.
    pub sensor: usize,
    /// On the pub/sub port.
    pub pubsub: usize,
    /// On the HTTP port, event streams included.
    pub http: usize,
}

/// A server to start: its configuration and what the caller supplies besides.
///
/// ```no_run
/// # fn main() -> Result<(), server::StartError> {
/// let shutdown = shutdown::ShutdownHandle::new();
/// let running = server::Server::new(server::Config::ephemeral()).start(shutdown.clone())?;
/// // Elsewhere (a signal handler): shutdown.trigger();
/// let summary = running.wait();
/// # Ok(())
/// # }
/// ```
pub struct Server {
    config: Config,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn Store>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `config`, on the system clock.
    pub fn new(config: Config) -> Self {
        Server {
            config,
            clock: Arc::new(SystemClock),
            store: None,
        }
    }

    /// Writes through `store` (and reads its state) instead of the one the configuration
    /// describes; its state must have the configuration's lots. For tests that inject
    /// faults behind the store, and for embedding.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Runs the state on `clock` instead of the system clock (tests of expiry use a manual
    /// one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Binds the ports and starts every thread; returns once the server is accepting.
    /// Triggering `shutdown` (from a signal handler, say) makes [`RunningServer::wait`]
    /// return after a graceful stop.
    pub fn start(self, shutdown: ShutdownHandle) -> Result<RunningServer, StartError> {
        let Server {
            config,
            clock,
            store,
        } = self;
        // Checked here too, not only when the file is loaded: an embedding caller builds its
        // `Config` in code. Before the store opens, so that a refused configuration never
        // touches the database.
        if let Some(err) = config.protected_mode_violation() {
            return Err(StartError::Config(err));
        }
        let drivers = Arc::new(drivers(&config)?);
        let auth = Authenticator::new(&config.auth)
            .map_err(|err| {
                StartError::Config(ConfigError::Invalid {
                    key: "auth",
                    reason: err.to_string(),
                })
            })?
            .map(|auth| Arc::new(auth.with_drivers(Arc::clone(&drivers), Arc::clone(&clock))));
        let acceptor = match &config.tls {
            Some(tls) => {
                Some(TlsAcceptor::from_pem_files(&tls.cert, &tls.key).map_err(StartError::Tls)?)
            }
            None => None,
        };
        let store = match store {
            Some(store) => store,
            None => open_store(&config, clock)?,
        };
        let tls_for = |port| acceptor.clone().filter(|_| config.tls_on(port));
        let state = Arc::clone(store.state());
        let rpc_listener = listener::bind("rpc", &config.host, config.rpc_port, config.backlog)?;
        let sensor_listener =
            listener::bind("sensor", &config.host, config.sensor_port, config.backlog)?;
        let pubsub_listener =
            listener::bind("pubsub", &config.host, config.pubsub_port, config.backlog)?;
        let http_listener = config
            .http_port
            .map(|port| listener::bind("http", &config.host, port, config.backlog))
            .transpose()?;
        let addrs = Addresses {
            rpc: rpc_listener.local_addr()?,
            sensor: sensor_listener.local_addr()?,
            pubsub: pubsub_listener.local_addr()?,
            http: http_listener
                .as_ref()
                .map(|listener| listener.local_addr())
                .transpose()?,
        };

        // Every port's connections are file descriptors; see what the process may open.
        let max_connections = config.max_connections;
        let ports = 3 + usize::from(http_listener.is_some());
        let budget = Arc::new(ConnectionBudget::new(limits::fit_open_files(
            ports,
            max_connections,
        )));
        let broker = Arc::new(Broker::start(
            state.lot_ids().cloned().collect(),
            BrokerConfig {
                queue_size: config.subscriber_queue_size,
                max_overflow_drops: config.max_overflow_drops,
                notifier_threads: config.notifier_threads,
                idle_timeout: config.idle_timeout,
                line_timeout: config.frame_timeout,
                max_connections,
                send_buffer: config.subscriber_send_buffer,
                stream_keep_alive: config.event_stream_keep_alive,
                auth: auth.clone(),
                auth_timeout: config.auth_timeout,
                tls: tls_for(PortName::Pubsub),
            },
        )?);
        broker.seed(&state.published());
        state.add_listener(broker.listener());
        let metrics = match config.metrics {
            true => Metrics::new()?,
            false => Metrics::new()?.without_request_counts(),
        };
        let metrics = Arc::new(metrics);
        let purger = Purger::spawn(Arc::clone(&state), config.purge_interval)?;

        let admission = || {
            Admission::new(
                max_connections,
                config.max_connections_per_address,
                Arc::clone(&budget),
            )
        };
        let buffers = BufferBudget::new(config.max_buffered_bytes);
        let scheduler_config = |workers, tls, auth| SchedulerConfig {
            workers,
            timeouts: Timeouts {
                idle: config.idle_timeout,
                frame: config.frame_timeout,
                auth: config.auth_timeout,
            },
            admission: admission(),
            buffers: Arc::clone(&buffers),
            auth,
            tls,
        };
        let rpc = Scheduler::start(
            RpcProtocol::new(
                Arc::clone(&store),
                metrics.requests("rpc", &rpc::metric_methods()),
            ),
            scheduler_config(
                config.thread_pool_size,
                tls_for(PortName::Rpc),
                auth.clone(),
            ),
        )?;
        let sensor = Scheduler::start(
            SensorProtocol::new(
                Arc::clone(&store),
                metrics.requests("sensor", &sensor::METRIC_METHODS),
                metrics.lot_counters(
                    "parking_sensor_lines_total",
                    "UPDATE lines received, by lot.",
                    state.lot_ids().map(|lot| lot.as_str()),
                )?,
            ),
            scheduler_config(
                config.sensor_pool_size,
                tls_for(PortName::Sensor),
                auth.clone(),
            ),
        )?;
        let http = match http_listener {
            Some(listener) => {
                // Kept only for the HTTP port, which alone serves it.
                let history = History::new(&state.published());
                state.add_listener(history.listener());
                // Drivers' notices reach their `/v1/me/events` streams through the broker.
                state.add_notice_listener(broker.notice_listener(http_port::encode_notice));
                let port = HttpPort::new(
                    Arc::clone(&store),
                    Arc::clone(&drivers),
                    Arc::clone(&broker),
                    history,
                    Arc::clone(&metrics),
                    shutdown.clone(),
                    Cors::new(&config.http_cors_origins),
                    auth.clone(),
                    config.tls_on(PortName::Http),
                );
                // Each request is checked for its key by the port itself: connections have
                // no session to open.
                let scheduler = Scheduler::start(
                    port,
                    scheduler_config(config.http_pool_size, tls_for(PortName::Http), None),
                )?;
                Some((scheduler, listener))
            }
            None => None,
        };
        let pubsub_admission = admission();
        exposition::register(
            &metrics,
            &state,
            &broker,
            Ports {
                rpc: Arc::clone(&rpc.config.admission),
                sensor: Arc::clone(&sensor.config.admission),
                pubsub: Arc::clone(&pubsub_admission),
                http: http
                    .as_ref()
                    .map(|(scheduler, _)| Arc::clone(&scheduler.config.admission)),
            },
        )?;

        let mut accept_threads = Vec::with_capacity(ports);
        let scheduler = Arc::clone(&rpc);
        accept_threads.push(listener::spawn_accept_loop(
            "rpc",
            rpc_listener,
            shutdown.clone(),
            move |stream, peer| scheduler.admit(stream, peer),
        )?);
        let scheduler = Arc::clone(&sensor);
        accept_threads.push(listener::spawn_accept_loop(
            "sensor",
            sensor_listener,
            shutdown.clone(),
            move |stream, peer| scheduler.admit(stream, peer),
        )?);
        let subscribers = Arc::clone(&broker);
        let admitted = Arc::clone(&pubsub_admission);
        accept_threads.push(listener::spawn_accept_loop(
            "pubsub",
            pubsub_listener,
            shutdown.clone(),
            move |stream, peer| match admitted.admit(peer) {
                Ok(ticket) => subscribers.attach_holding(stream, peer, Held::new(ticket)),
                Err(refusal) => {
                    peer_warn!("pubsub {peer}: refused: {refusal}");
                    subscribers.refuse_busy(stream, &format!("{refusal}; try again later"));
                }
            },
        )?);

        let http = match http {
            Some((scheduler, listener)) => {
                let admit = Arc::clone(&scheduler);
                accept_threads.push(listener::spawn_accept_loop(
                    "http",
                    listener,
                    shutdown.clone(),
                    move |stream, peer| admit.admit(stream, peer),
                )?);
                Some(scheduler)
            }
            None => None,
        };

        let http_line = match addrs.http {
            Some(addr) => format!(
                "http {addr}{} ({} workers)",
                if config.tls_on(PortName::Http) {
                    " TLS"
                } else {
                    ""
                },
                config.http_pool_size
            ),
            None => "http off".to_owned(),
        };
        let tls = |port| if config.tls_on(port) { " TLS" } else { "" };
        log::info!(
            "listening: rpc {}{} ({} workers), sensor {}{} ({} workers), pubsub {}{} ({} notifiers), \
             {http_line}; {}; lots: {}",
            addrs.rpc,
            tls(PortName::Rpc),
            config.thread_pool_size,
            addrs.sensor,
            tls(PortName::Sensor),
            config.sensor_pool_size,
            addrs.pubsub,
            tls(PortName::Pubsub),
            config.notifier_threads,
            match &auth {
                Some(auth) => format!("access control on ({} keys)", auth.len()),
                None => "access control off (no keys)".to_owned(),
            },
            lots_line(&config)
        );
        Ok(RunningServer {
            addrs,
            store,
            drivers,
            shutdown,
            accept_threads,
            rpc,
            sensor,
            http,
            broker,
            pubsub_admission,
            buffers,
            purger: Some(purger),
            grace: config.shutdown_grace,
            stopped: false,
        })
    }
}

/// Drivers' accounts and login tokens: the secret that signs their tokens from
/// `auth.jwt_secret_file`, else kept in the data directory (made on first start), else one
/// made for this run (tokens then die with the process). The secret is never logged.
fn drivers(config: &Config) -> Result<Drivers, StartError> {
    let invalid = |key, reason: String| StartError::Config(ConfigError::Invalid { key, reason });
    let secret = match (&config.auth.jwt_secret_file, &config.data_dir) {
        (Some(path), _) => {
            JwtSecret::read(path).map_err(|err| invalid("auth.jwt_secret_file", err.to_string()))?
        }
        (None, Some(dir)) => {
            let (secret, made) =
                JwtSecret::in_data_dir(dir).map_err(|err| invalid("data_dir", err.to_string()))?;
            if made {
                log::info!(
                    "made the secret for drivers' login tokens in {}",
                    dir.join(accounts::SECRET_FILE_NAME).display()
                );
            }
            secret
        }
        (None, None) => {
            log::info!(
                "drivers' login tokens are signed with a secret made for this run \
                 (no auth.jwt_secret_file, no data_dir): they do not outlive a restart"
            );
            JwtSecret::random().map_err(|err| invalid("auth.jwt_secret_file", err.to_string()))?
        }
    };
    let ttl = Duration::from_secs(u64::from(config.jwt_ttl_hours) * 3600);
    Drivers::new(&secret, ttl).map_err(|err| invalid("auth.jwt_secret_file", err.to_string()))
}

/// The store the configuration describes, with the state loaded from it: before the ports
/// open (a data directory another server holds stops this one first) and before any
/// listener is attached (recovery publishes nothing).
fn open_store(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn Store>, StartError> {
    match &config.store {
        StoreConfig::Embedded {} => open_embedded(config, clock),
        StoreConfig::Postgres(pg) => {
            let options = PgOptions {
                url: pg.url.clone(),
                pool_size: pg.pool_size,
                timeout: pg.timeout,
            };
            let store = PgStore::open(
                &options,
                config.lot_specs(),
                config.reservation_ttl,
                clock,
                |state| {
                    Ok(state
                        .with_bookings(config.booking_rules(), config.lot_terms())?
                        .with_waitlist(config.waitlist_rules(), config.max_accounts))
                },
            )
            .map_err(StartError::Postgres)?;
            Ok(Arc::new(store))
        }
    }
}

/// The embedded store in `data_dir`, or memory only when it is `null`.
fn open_embedded(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn Store>, StartError> {
    let state = Arc::new(config.state(clock).map_err(StartError::State)?);
    let Some(dir) = &config.data_dir else {
        log::warn!("data_dir is null: the state lives in memory only, nothing survives a restart");
        return Ok(Arc::new(MemoryStore::new(state)));
    };
    let options = store::Options {
        fsync: config.fsync,
        segment_bytes: config.journal_segment_bytes,
        ..store::Options::new(dir)
    };
    let store = EmbeddedStore::open(state, options).map_err(StartError::Store)?;
    Ok(Arc::new(store))
}

/// Lots shown by name in the start-up line; a city's thousand lots are counted instead.
const LOTS_LOGGED: usize = 10;

/// `A=100 B=50 C=200`, or the first [`LOTS_LOGGED`] of them and how many more.
fn lots_line(config: &Config) -> String {
    let mut line: Vec<String> = config
        .lots
        .iter()
        .take(LOTS_LOGGED)
        .map(|lot| format!("{}={}", lot.id, lot.capacity))
        .collect();
    if config.lots.len() > LOTS_LOGGED {
        line.push(format!(
            "and {} more ({} in all)",
            config.lots.len() - LOTS_LOGGED,
            config.lots.len()
        ));
    }
    line.join(" ")
}

#[derive(Debug, Clone, Copy)]
struct Addresses {
    rpc: SocketAddr,
    sensor: SocketAddr,
    pubsub: SocketAddr,
    http: Option<SocketAddr>,
}

/// A started server. Dropping it stops it (gracefully, like [`RunningServer::shutdown`]).
pub struct RunningServer {
    addrs: Addresses,
    store: Arc<dyn Store>,
    /// Drivers' registration, login and tokens (the HTTP routes use them).
    drivers: Arc<Drivers>,
    shutdown: ShutdownHandle,
    accept_threads: Vec<JoinHandle<()>>,
    rpc: Arc<Scheduler<RpcProtocol>>,
    sensor: Arc<Scheduler<SensorProtocol>>,
    /// Absent with `http_port: null`.
    http: Option<Arc<Scheduler<HttpPort>>>,
    broker: Arc<Broker>,
    /// Who may connect to the pub/sub port (the broker holds each admitted one's ticket).
    pubsub_admission: Arc<Admission>,
    /// What RPC, sensor and HTTP connections buffer beyond their free allowance.
    buffers: Arc<BufferBudget>,
    purger: Option<Purger>,
    grace: Duration,
    stopped: bool,
}

impl RunningServer {
    /// The RPC port's bound address (the real port when configured as 0).
    pub fn rpc_addr(&self) -> SocketAddr {
        self.addrs.rpc
    }

    /// The sensor port's bound address.
    pub fn sensor_addr(&self) -> SocketAddr {
        self.addrs.sensor
    }

    /// The pub/sub port's bound address.
    pub fn pubsub_addr(&self) -> SocketAddr {
        self.addrs.pubsub
    }

    /// The HTTP port's bound address, unless it is off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.addrs.http
    }

    /// The shared state, for embedding and tests.
    pub fn state(&self) -> &Arc<ParkingState> {
        self.store.state()
    }

    /// The store the server writes through.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Drivers' registration, login and tokens.
    pub fn drivers(&self) -> &Arc<Drivers> {
        &self.drivers
    }

    /// The broker, for its statistics.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The handle the server was started with: triggering it stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Blocks until the shutdown handle is triggered, then stops gracefully.
    pub fn wait(mut self) -> Summary {
        self.shutdown.wait();
        self.stop()
    }

    /// Stops the server: no new connections, requests already received are answered, queued
    /// events get up to `shutdown_grace` to reach subscribers, then every thread is joined.
    pub fn shutdown(mut self) -> Summary {
        self.shutdown.trigger();
        self.stop()
    }

    /// Bytes RPC and sensor connections hold now in unfinished requests and unsent replies,
    /// beyond the 4 KiB each may use freely (what `max_buffered_bytes` limits).
    pub fn buffered_bytes(&self) -> usize {
        self.buffers.held()
    }

    /// Connections open now on each port.
    pub fn open_connections(&self) -> OpenConnections {
        OpenConnections {
            rpc: self.rpc.config.admission.open(),
            sensor: self.sensor.config.admission.open(),
            pubsub: self.broker.stats().connections,
            http: self
                .http
                .as_ref()
                .map_or(0, |http| http.config.admission.open()),
        }
    }

    /// What the server has done so far.
    pub fn summary(&self) -> Summary {
        let broker = self.broker.stats();
        let rpc = self.rpc.stats();
        let sensor = self.sensor.stats();
        Summary {
            rpc_connections: rpc.accepted.load(Ordering::Relaxed),
            rpc_requests: self.rpc.protocol.requests(),
            sensor_connections: sensor.accepted.load(Ordering::Relaxed),
            sensor_lines: self.sensor.protocol.lines(),
            http_connections: self
                .http
                .as_ref()
                .map_or(0, |http| http.stats().accepted.load(Ordering::Relaxed)),
            http_requests: self
                .http
                .as_ref()
                .map_or(0, |http| http.protocol.requests()),
            refused_busy: self.rpc.config.admission.refused()
                + self.sensor.config.admission.refused()
                + self.pubsub_admission.refused()
                + self
                    .http
                    .as_ref()
                    .map_or(0, |http| http.config.admission.refused()),
            changes_published: broker.changes_published,
            events_published: broker.events_published,
            events_dropped: broker.events_dropped,
            slow_disconnects: broker.slow_disconnects,
        }
    }

    fn stop(&mut self) -> Summary {
        if self.stopped {
            return self.summary();
        }
        self.stopped = true;
        let started = Instant::now();
        self.shutdown.trigger();
        let addrs = [self.addrs.rpc, self.addrs.sensor, self.addrs.pubsub];
        for addr in addrs.into_iter().chain(self.addrs.http) {
            listener::wake(addr);
        }
        for thread in self.accept_threads.drain(..) {
            if thread.join().is_err() {
                log::error!("an accept loop panicked");
            }
        }
        self.rpc.stop();
        self.sensor.stop();
        // Its event streams belong to the broker by now, which closes them below.
        if let Some(http) = &self.http {
            http.stop();
        }
        let remaining = self.grace.saturating_sub(started.elapsed());
        self.broker.shutdown(remaining);
        drop(self.purger.take());
        // Nothing writes any more: what was acknowledged is made durable, and the store stops.
        self.store.close();
        let summary = self.summary();
        log::info!("stopped in {} ms; {summary}", started.elapsed().as_millis());
        summary
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}
