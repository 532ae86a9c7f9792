//! Starting, running and stopping the whole server.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use broker::{Broker, BrokerConfig};
use crossbeam_channel::{Receiver, Sender};
use state::{Clock, ParkingState, Purger, SetupError, SystemClock};

use crate::config::Config;
use crate::connection::{Scheduler, SchedulerConfig};
use crate::listener::{self, BindError};
use crate::rpc::RpcProtocol;
use crate::sensor::SensorProtocol;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration does not describe a valid state.
    State(SetupError),
    /// A port could not be opened.
    Bind(BindError),
    /// A thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::State(err) => write!(f, "invalid lots: {err}"),
            StartError::Bind(err) => write!(f, "{err}"),
            StartError::Spawn(err) => write!(f, "cannot start a thread: {err}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::State(err) => Some(err),
            StartError::Bind(err) => Some(err),
            StartError::Spawn(err) => Some(err),
        }
    }
}

impl From<BindError> for StartError {
    fn from(err: BindError) -> Self {
        StartError::Bind(err)
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
    /// Connections refused at `max_connections` on the RPC and sensor ports.
    pub refused_busy: u64,
    /// Events queued for subscribers.
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
             {} refused busy; pub/sub: {} event(s) published, {} dropped, {} slow subscriber(s) disconnected",
            self.rpc_connections,
            self.rpc_requests,
            self.sensor_connections,
            self.sensor_lines,
            self.refused_busy,
            self.events_published,
            self.events_dropped,
            self.slow_disconnects
        )
    }
}

/// Raises the shutdown flag from anywhere (a signal handler, a test); cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    requested: Sender<()>,
}

impl ShutdownHandle {
    /// Asks the server to stop; [`RunningServer::wait`] then returns. Idempotent.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Full means a request is already pending.
        let _ = self.requested.try_send(());
    }
}

/// The server's entry point.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Binds the three ports and starts every thread. Returns once the server is accepting.
    pub fn start(config: Config) -> Result<RunningServer, StartError> {
        Server::start_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Server::start`], with reservation expiry and event timestamps taken from `clock`
    /// instead of the system clock: tests pass a [`state::ManualClock`] to expire reservations
    /// at an exact instant without waiting. Timeouts on sockets still use real time.
    pub fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<RunningServer, StartError> {
        let state = Arc::new(
            ParkingState::new(config.lot_specs(), config.reservation_ttl(), clock)
                .map_err(StartError::State)?,
        );
        let shutdown = Arc::new(AtomicBool::new(false));
        let rpc_listener = listener::bind("rpc", &config.host, config.rpc_port, config.backlog)?;
        let sensor_listener =
            listener::bind("sensor", &config.host, config.sensor_port, config.backlog)?;
        let pubsub_listener =
            listener::bind("pubsub", &config.host, config.pubsub_port, config.backlog)?;
        let addrs = Addresses {
            rpc: rpc_listener.local_addr()?,
            sensor: sensor_listener.local_addr()?,
            pubsub: pubsub_listener.local_addr()?,
        };

        let broker = Arc::new(Broker::start(
            state.lot_ids().cloned().collect(),
            BrokerConfig {
                queue_size: config.subscriber_queue_size,
                max_overflow_drops: config.max_overflow_drops,
                notifier_threads: config.notifier_threads,
                idle_timeout: config.idle_timeout(),
                line_timeout: config.frame_timeout(),
                max_connections: config.max_connections,
                send_buffer: config.subscriber_send_buffer,
            },
        )?);
        state.add_listener(broker.listener());
        let purger = Purger::spawn(Arc::clone(&state), config.purge_interval())?;

        let scheduler_config = |workers| SchedulerConfig {
            workers,
            slice: Duration::from_millis(config.scheduling_slice_ms),
            idle_timeout: config.idle_timeout(),
            frame_timeout: config.frame_timeout(),
            max_connections: config.max_connections,
        };
        let rpc = Scheduler::new(
            RpcProtocol::new(Arc::clone(&state)),
            scheduler_config(config.thread_pool_size),
            Arc::clone(&shutdown),
        );
        let sensor = Scheduler::new(
            SensorProtocol::new(Arc::clone(&state)),
            scheduler_config(config.sensor_pool_size),
            Arc::clone(&shutdown),
        );

        let mut accept_threads = Vec::with_capacity(3);
        let scheduler = Arc::clone(&rpc);
        accept_threads.push(listener::spawn_accept_loop(
            "rpc",
            rpc_listener,
            Arc::clone(&shutdown),
            move |stream, peer| scheduler.admit(stream, peer),
        )?);
        let scheduler = Arc::clone(&sensor);
        accept_threads.push(listener::spawn_accept_loop(
            "sensor",
            sensor_listener,
            Arc::clone(&shutdown),
            move |stream, peer| scheduler.admit(stream, peer),
        )?);
        let subscribers = Arc::clone(&broker);
        accept_threads.push(listener::spawn_accept_loop(
            "pubsub",
            pubsub_listener,
            Arc::clone(&shutdown),
            move |stream, peer| subscribers.attach(stream, peer),
        )?);

        log::info!(
            "listening: rpc {} ({} workers), sensor {} ({} workers), pubsub {} ({} notifiers); lots: {}",
            addrs.rpc,
            config.thread_pool_size,
            addrs.sensor,
            config.sensor_pool_size,
            addrs.pubsub,
            config.notifier_threads,
            config
                .lots
                .iter()
                .map(|lot| format!("{}={}", lot.id, lot.capacity))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let (requested, shutdown_requested) = crossbeam_channel::bounded(1);
        Ok(RunningServer {
            addrs,
            state,
            shutdown: ShutdownHandle {
                flag: shutdown,
                requested,
            },
            shutdown_requested,
            accept_threads,
            rpc,
            sensor,
            broker,
            purger: Some(purger),
            grace: config.shutdown_grace(),
            stopped: false,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Addresses {
    rpc: SocketAddr,
    sensor: SocketAddr,
    pubsub: SocketAddr,
}

/// A started server. Dropping it stops it (gracefully, like [`RunningServer::shutdown`]).
pub struct RunningServer {
    addrs: Addresses,
    state: Arc<ParkingState>,
    shutdown: ShutdownHandle,
    shutdown_requested: Receiver<()>,
    accept_threads: Vec<JoinHandle<()>>,
    rpc: Arc<Scheduler<RpcProtocol>>,
    sensor: Arc<Scheduler<SensorProtocol>>,
    broker: Arc<Broker>,
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

    /// The shared state, for embedding and tests.
    pub fn state(&self) -> &Arc<ParkingState> {
        &self.state
    }

    /// The broker, for its statistics.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// A handle that can stop the server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Blocks until a shutdown is triggered, then stops gracefully.
    pub fn wait(mut self) -> Summary {
        let _ = self.shutdown_requested.recv();
        self.stop()
    }

    /// Stops the server: no new connections, requests already received are answered, queued
    /// events get up to `shutdown_grace` to reach subscribers, then every thread is joined.
    pub fn shutdown(mut self) -> Summary {
        self.shutdown.trigger();
        self.stop()
    }

    /// What the server has done so far.
    pub fn summary(&self) -> Summary {
        let broker = self.broker.stats();
        let rpc = self.rpc.stats();
        let sensor = self.sensor.stats();
        Summary {
            rpc_connections: rpc.accepted.load(Ordering::Relaxed),
            rpc_requests: self.rpc.protocol().requests(),
            sensor_connections: sensor.accepted.load(Ordering::Relaxed),
            sensor_lines: self.sensor.protocol().lines(),
            refused_busy: rpc.refused_busy.load(Ordering::Relaxed)
                + sensor.refused_busy.load(Ordering::Relaxed),
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
        self.shutdown.flag.store(true, Ordering::SeqCst);
        for addr in [self.addrs.rpc, self.addrs.sensor, self.addrs.pubsub] {
            listener::wake(addr);
        }
        for thread in self.accept_threads.drain(..) {
            if thread.join().is_err() {
                log::error!("an accept loop panicked");
            }
        }
        self.rpc.join();
        self.sensor.join();
        let remaining = self.grace.saturating_sub(started.elapsed());
        self.broker.shutdown(remaining);
        drop(self.purger.take());
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
