//! The notifier threads. Each owns the sockets of the connections assigned to it and is the
//! only thread that reads or writes them.
//!
//! A notifier sleeps in a crossbeam `select!` on three things: its control channel (new
//! connections, shutdown), its doorbell (rung by publishers when they queue an event for one
//! of its subscribers), and a timeout that is the earliest time one of its connections wants
//! polling. A doorbell makes it write queued events to the connections that have some, without
//! reading any socket; reads (more `SUBSCRIBE` lines, EOF) happen on each connection's own
//! poll schedule: every [`BUSY_POLL`] while a line, output or a close is in progress, every
//! [`UNSUBSCRIBED_POLL`] before the first `SUBSCRIBE`, every [`IDLE_POLL`] after it.
//!
//! [`BUSY_POLL`]: crate::connection::BUSY_POLL
//! [`UNSUBSCRIBED_POLL`]: crate::connection::UNSUBSCRIBED_POLL
//! [`IDLE_POLL`]: crate::connection::IDLE_POLL

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use crate::connection::{BUSY_POLL, CloseReason, Connection, Context, IDLE_POLL};
use crate::registry::Registry;
use warn_limit::peer_warn;

/// Shortest time between two deliveries triggered by the doorbell. During a burst of events
/// this batches them (at 60,000 events/s, about 15 per write) instead of waking the notifier,
/// and writing every socket, once per event; a lone event after a quiet spell goes out at once.
/// Short enough that a subscriber queue of the default 64 events does not overflow at rates a
/// 2-core server can produce.
const DELIVERY_INTERVAL: Duration = Duration::from_micros(250);

/// What the broker tells a notifier.
#[derive(Debug)]
pub(crate) enum Command {
    /// Take over this accepted, configured connection.
    Attach {
        /// The connection's socket, already non-blocking.
        stream: TcpStream,
        /// The peer's address, for logs.
        peer: SocketAddr,
    },
    /// Flush pending output until `deadline`, close every connection and exit.
    Shutdown {
        /// When to give up flushing.
        deadline: Instant,
    },
}

/// The timeouts a notifier enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// See `BrokerConfig::idle_timeout`.
    pub(crate) idle: Duration,
    /// See `BrokerConfig::line_timeout`.
    pub(crate) line: Duration,
}

/// Starts notifier number `number` (its thread is named `notifier-<number>`); returns its
/// control channel and thread. Dropping the control channel's last sender also shuts it down,
/// with no grace.
pub(crate) fn spawn(
    number: usize,
    registry: Arc<Registry>,
    timeouts: Timeouts,
) -> io::Result<(Sender<Command>, JoinHandle<()>)> {
    let (control_sender, control) = crossbeam_channel::unbounded();
    let (doorbell_sender, doorbell) = crossbeam_channel::bounded(1);
    let notifier = Notifier {
        ctx: Context {
            registry,
            doorbell: doorbell_sender,
            idle_timeout: timeouts.idle,
            line_timeout: timeouts.line,
        },
        connections: Vec::new(),
    };
    let thread = thread::Builder::new()
        .name(format!("notifier-{number}"))
        .spawn(move || notifier.run(&control, &doorbell))?;
    Ok((control_sender, thread))
}

struct Notifier {
    ctx: Context,
    connections: Vec<Connection>,
}

impl Notifier {
    fn run(mut self, control: &Receiver<Command>, doorbell: &Receiver<()>) {
        let not_now = crossbeam_channel::never();
        let mut last_delivery = Instant::now();
        loop {
            let now = Instant::now();
            let next_delivery = last_delivery + DELIVERY_INTERVAL;
            let mut due = self.next_due().unwrap_or(now + IDLE_POLL);
            // Within DELIVERY_INTERVAL of the last delivery the doorbell is not listened to:
            // a ring stays pending in the channel (costing the publisher no wake-up) and is
            // served when the interval ends, with everything queued meanwhile in one write.
            let bell = if now >= next_delivery {
                doorbell
            } else {
                due = due.min(next_delivery);
                &not_now
            };
            select! {
                recv(control) -> command => match command {
                    Ok(Command::Attach { stream, peer }) => self.adopt(stream, peer),
                    Ok(Command::Shutdown { deadline }) => return self.shut_down(control, deadline),
                    Err(_) => return self.shut_down(control, Instant::now()),
                },
                recv(bell) -> _ => {
                    last_delivery = Instant::now();
                    self.visit(|connection, _| {
                        if connection.wants_delivery() {
                            connection.deliver(last_delivery)?;
                        }
                        Ok(())
                    });
                }
                default(due.saturating_duration_since(now)) => {}
            }
            let now = Instant::now();
            self.visit(|connection, ctx| {
                if connection.next_poll() <= now {
                    connection.poll(ctx, now)?;
                }
                Ok(())
            });
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.connections.iter().map(Connection::next_poll).min()
    }

    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr) {
        log::debug!("{peer} connected to the pub/sub port");
        let now = Instant::now();
        let mut connection = Connection::new(stream, peer, now);
        // Read at once: the SUBSCRIBE line often arrives with the connection.
        match connection.poll(&self.ctx, now) {
            Ok(()) => self.connections.push(connection),
            Err(reason) => self.close(connection, reason),
        }
    }

    /// Runs `step` on every connection, closing those for which it fails.
    fn visit(
        &mut self,
        mut step: impl FnMut(&mut Connection, &Context) -> Result<(), CloseReason>,
    ) {
        let mut index = 0;
        while index < self.connections.len() {
            match step(&mut self.connections[index], &self.ctx) {
                Ok(()) => index += 1,
                Err(reason) => {
                    let connection = self.connections.swap_remove(index);
                    self.close(connection, reason);
                }
            }
        }
    }

    fn close(&mut self, connection: Connection, reason: CloseReason) {
        let who = describe(&connection);
        let counters = self.ctx.registry.counters();
        match reason {
            CloseReason::PeerClosed => log::debug!("{who} closed the connection"),
            CloseReason::Io(error) => log::debug!("{who} dropped: {error}"),
            CloseReason::Shutdown => log::debug!("{who} closed: the broker is shutting down"),
            CloseReason::SlowSubscriber { drops } => {
                // Redis disconnects slow subscribers outright and mini-redis lets them skip;
                // we drop their oldest events and disconnect only those that stopped reading.
                counters.slow_disconnect();
                peer_warn!(
                    "{who} disconnected: not reading, {drops} events dropped while its socket \
                         took no bytes"
                );
            }
            CloseReason::IdleTimeout => {
                peer_warn!(
                    "{who} closed: no SUBSCRIBE within {:?}",
                    self.ctx.idle_timeout
                );
            }
            CloseReason::LineTimeout => {
                peer_warn!(
                    "{who} closed: a line took longer than {:?}",
                    self.ctx.line_timeout
                );
            }
            CloseReason::WriteStalled => {
                counters.slow_disconnect();
                peer_warn!(
                    "{who} closed: read nothing of its pending output for {:?}",
                    self.ctx.line_timeout
                );
            }
            CloseReason::LineTooLong => {
                peer_warn!("{who} closed: sent a line over the length limit");
            }
        }
        connection.close(&self.ctx.registry);
        counters.connection_closed();
    }

    /// Takes every subscriber off the topic lists (so the work is finite), writes what is
    /// queued or pending until `deadline`, then closes everything.
    fn shut_down(mut self, control: &Receiver<Command>, deadline: Instant) {
        for connection in &mut self.connections {
            connection.end_subscription(&self.ctx.registry);
        }
        loop {
            let mut pending = false;
            self.visit(|connection, _| {
                pending |= !connection.flush(Instant::now())?;
                Ok(())
            });
            let now = Instant::now();
            if !pending || now >= deadline {
                break;
            }
            // Waiting for sockets to drain; there is no readiness API without a poller, so
            // retry on the busy-poll period.
            thread::sleep(BUSY_POLL.min(deadline - now));
        }
        for connection in std::mem::take(&mut self.connections) {
            self.close(connection, CloseReason::Shutdown);
        }
        // The broker stops sending before it shuts notifiers down; anything still here
        // was counted as a connection and must be uncounted.
        while let Ok(command) = control.try_recv() {
            if let Command::Attach { .. } = command {
                self.ctx.registry.counters().connection_closed();
            }
        }
    }
}

fn describe(connection: &Connection) -> String {
    match connection.subscription_id() {
        Some(id) => format!("subscriber {} (subscription {id})", connection.peer()),
        None => format!("pub/sub client {}", connection.peer()),
    }
}
