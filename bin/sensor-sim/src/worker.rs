//! The sensors and the threads that drive them. A sensor is a connection, its share of the
//! rate and its own random walks; a worker thread drives a group of sensors, each in turn
//! when its next update is due, so thousands of sensors need only a few threads. A sensor
//! whose connection is lost reconnects with its own backoff while the others carry on.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::ops::AddAssign;
use std::time::{Duration, Instant};

use client::{Access, Backoff, Endpoints, Passage, SensorClient, SensorClientError};
use framing::sensor::{CountChange, SensorErrorCode};
use hdrhistogram::Histogram;
use rand::RngExt;
use rand::rngs::SmallRng;
use shutdown::ShutdownHandle;

use crate::walk::{Mode, Walk};

/// Errors logged at `warn` per worker before the rest go to `debug`, so a server that refuses
/// every update does not flood the terminal; the summary still counts them all.
const LOGGED_ERRORS: u64 = 5;

/// Pacing never catches up on more than this much lost time (after a reconnect, say) at once;
/// anything older is skipped rather than sent as a burst.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

/// Longest ack latency the histogram records exactly, in microseconds (a minute).
const MAX_LATENCY_US: u64 = 60_000_000;

/// What the sensors (one worker's, or the whole run's once added up) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// `UPDATE` lines written.
    pub sent: u64,
    /// `OK` replies received.
    pub acked: u64,
    /// `ERR` replies, plus updates whose reply was lost with the connection.
    pub errors: u64,
    /// Connections made after a lost one (the first connection is not counted).
    pub reconnects: u64,
    /// Sensors that never got a connection.
    pub never_connected: u64,
    /// Gate mode: cars whose `ENTER` checked a booking in.
    pub checked_in: u64,
    /// Time from each update's due time to its `OK`, in microseconds: the server's ack
    /// latency, plus any delay in sending it (so a late send is not hidden).
    pub ack_latency: Option<Histogram<u64>>,
}

impl Stats {
    fn record_ack(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = &mut self.ack_latency {
            histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
        }
    }
}

impl AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        self.never_connected += other.never_connected;
        self.checked_in += other.checked_in;
        match (&mut self.ack_latency, other.ack_latency) {
            (Some(mine), Some(theirs)) => {
                let _ = mine.add(theirs);
            }
            (mine @ None, theirs) => *mine = theirs,
            (_, None) => {}
        }
    }
}

fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).ok()
}

/// The run's one summary line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The counts, over every sensor.
    pub stats: Stats,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Summary {
    /// Acknowledged updates per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.acked as f64 / secs
        } else {
            0.0
        }
    }

    /// An ack latency percentile in milliseconds, `None` before any ack.
    pub fn ack_ms(&self, quantile: f64) -> Option<f64> {
        let histogram = self.stats.ack_latency.as_ref()?;
        (!histogram.is_empty()).then(|| histogram.value_at_quantile(quantile) as f64 / 1000.0)
    }
}

/// `sent=.. acked=.. errors=.. reconnects=.. rate=../s`, then the ack latency and, if any,
/// cars checked in to a booking at the gate and sensors that never connected: scripts and
/// tests parse these keys.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Stats {
            sent,
            acked,
            errors,
            reconnects,
            never_connected,
            checked_in,
            ..
        } = self.stats;
        write!(
            f,
            "sent={sent} acked={acked} errors={errors} reconnects={reconnects} rate={:.1}/s",
            self.rate()
        )?;
        if let (Some(p50), Some(p99), Some(max)) =
            (self.ack_ms(0.5), self.ack_ms(0.99), self.ack_ms(1.0))
        {
            write!(
                f,
                " ack_p50_ms={p50:.3} ack_p99_ms={p99:.3} ack_max_ms={max:.3}"
            )?;
        }
        if checked_in > 0 {
            write!(f, " checked_in={checked_in}")?;
        }
        if never_connected > 0 {
            write!(f, " never_connected={never_connected}")?;
        }
        Ok(())
    }
}

/// Where every sensor of a run sends, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The servers' sensor ports; each sensor starts with a different one, so sensors
    /// spread over the nodes, and fails over to the next.
    pub endpoints: Endpoints,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// TLS and the token.
    pub access: Access,
    /// How updates are reported.
    pub mode: Mode,
    /// Time between two updates of one sensor.
    pub interval: Duration,
    /// When the run ends.
    pub end: Instant,
    /// Set by Ctrl-C.
    pub stop: ShutdownHandle,
}

/// One simulated sensor.
#[derive(Debug)]
pub struct Sensor {
    /// The sensor's number, for log lines.
    pub index: usize,
    /// The lots this sensor reports on.
    pub walks: Vec<Walk>,
    /// When its first update is due (staggered across sensors).
    pub first_send: Instant,
    /// This sensor's random stream.
    pub rng: SmallRng,
}

/// What a worker has logged at info or warn already, to keep the log short.
#[derive(Debug, Default)]
struct Logged {
    /// A first connection was logged.
    connected: bool,
    /// Refused updates logged at warn.
    errors: u64,
}

/// A sensor while it runs: its connection, its pacing and its backoff.
#[derive(Debug)]
struct Running {
    sensor: Sensor,
    connection: Option<SensorClient>,
    connected_before: bool,
    backoff: Backoff,
    /// When its next update is due.
    next_send: Instant,
}

/// Drives a group of sensors from one thread.
#[derive(Debug)]
pub struct Worker {
    /// Where and how they send.
    pub target: Target,
    /// The sensors.
    pub sensors: Vec<Sensor>,
}

impl Worker {
    /// Runs the sensors until the end of the run or `stop`; returns what they did.
    pub fn run(self) -> Stats {
        let Worker { target, sensors } = self;
        let mut stats = Stats {
            ack_latency: new_histogram(),
            ..Stats::default()
        };
        let mut running: Vec<Running> = sensors
            .into_iter()
            .filter(|sensor| !sensor.walks.is_empty())
            .map(|sensor| Running {
                next_send: sensor.first_send,
                sensor,
                connection: None,
                connected_before: false,
                backoff: Backoff::default(),
            })
            .collect();
        // The sensor due soonest comes first.
        let mut due: BinaryHeap<Reverse<(Instant, usize)>> = running
            .iter()
            .enumerate()
            .map(|(slot, sensor)| Reverse((sensor.next_send, slot)))
            .collect();
        let mut logged = Logged::default();
        while let Some(Reverse((at, slot))) = due.pop() {
            if target.stop.wait_until(at.min(target.end)) || Instant::now() >= target.end {
                break;
            }
            let sensor = &mut running[slot];
            let next = sensor.step(&target, at, &mut stats, &mut logged);
            due.push(Reverse((next, slot)));
        }
        stats.never_connected += running
            .iter()
            .filter(|sensor| !sensor.connected_before)
            .count() as u64;
        stats
    }
}

impl Running {
    /// Does what is due at `due` (connect, or send one update and read its reply); returns
    /// when this sensor is due next.
    fn step(
        &mut self,
        target: &Target,
        due: Instant,
        stats: &mut Stats,
        logged: &mut Logged,
    ) -> Instant {
        let id = self.sensor.index;
        let Some(client) = self.connection.as_mut() else {
            let address = target.endpoints.to_string();
            return match SensorClient::connect_with(
                &target.endpoints.rotated(id),
                target.timeout,
                &target.access,
            ) {
                Ok(client) => {
                    let address = client.peer_addr();
                    if self.connected_before {
                        stats.reconnects += 1;
                        log::info!("sensor {id}: reconnected to {address}");
                    } else if !logged.connected {
                        // One line per thread, not one per sensor (there may be thousands).
                        logged.connected = true;
                        log::info!("sensor {id}: connected to {address}");
                    } else {
                        log::debug!("sensor {id}: connected to {address}");
                    }
                    self.connected_before = true;
                    self.connection = Some(client);
                    // Send the update that was due at once.
                    due
                }
                Err(err) => {
                    let delay = self.backoff.next_delay();
                    // The address is in the message already; keep only the cause.
                    let cause = match err {
                        SensorClientError::Connect { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    log::warn!(
                        "sensor {id}: {cause}; reconnecting to {address} in {} ms",
                        delay.as_millis()
                    );
                    Instant::now() + delay
                }
            };
        };
        let address = client.peer_addr();
        let now = Instant::now();
        if now.saturating_duration_since(self.next_send) > MAX_CATCH_UP {
            self.next_send = now;
        }
        // Latency counts from when the update was due, so a late send is not hidden.
        let intended = self.next_send;
        self.next_send += target.interval;

        let pick = self.sensor.rng.random_range(0..self.sensor.walks.len());
        let walk = &mut self.sensor.walks[pick];
        let (sent, reply) = if target.mode == Mode::Gate {
            let (passage, plate) = walk.pass(&mut self.sensor.rng);
            let reply = client.pass(&walk.lot, &plate, passage).map(|pass| {
                if passage == Passage::Enter && pass.booking.is_some() {
                    stats.checked_in += 1;
                }
                pass.free
            });
            (
                Sent::Gate {
                    lot: &walk.lot,
                    plate,
                    passage,
                },
                reply,
            )
        } else {
            let change = walk.step(&mut self.sensor.rng, target.mode);
            let reply = client.update(&walk.lot, change);
            (
                Sent::Update {
                    lot: &walk.lot,
                    change,
                },
                reply,
            )
        };
        stats.sent += 1;
        match reply {
            Ok(free) => {
                // Success is an acknowledged update, not just a connection: a server that
                // accepts and then refuses (BUSY) must still be backed off from.
                self.backoff.reset();
                stats.acked += 1;
                stats.record_ack(intended.elapsed());
                log::debug!("sensor {id}: {sent} -> {free} free");
                self.next_send
            }
            Err(SensorClientError::Server(refused)) if refused.code == SensorErrorCode::Busy => {
                // The server is at its connection limit and closes this connection.
                stats.errors += 1;
                self.connection = None;
                let delay = self.backoff.next_delay();
                log::warn!(
                    "sensor {id}: {address} is busy; reconnecting in {} ms",
                    delay.as_millis()
                );
                Instant::now() + delay
            }
            Err(SensorClientError::Server(refused)) => {
                stats.errors += 1;
                logged.errors += 1;
                if logged.errors <= LOGGED_ERRORS {
                    log::warn!("sensor {id}: {sent} refused: {refused}");
                } else {
                    log::debug!("sensor {id}: {sent} refused: {refused}");
                }
                self.next_send
            }
            Err(err) => {
                // The update may or may not have been applied; its ack is lost either way.
                stats.errors += 1;
                log::warn!("sensor {id}: lost the connection to {address}: {err}");
                self.connection = None;
                self.next_send
            }
        }
    }
}

/// A line a sensor sent, for the log (formatted only when logged).
enum Sent<'a> {
    Update {
        lot: &'a str,
        change: CountChange,
    },
    Gate {
        lot: &'a str,
        plate: String,
        passage: Passage,
    },
}

impl fmt::Display for Sent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sent::Update { lot, change } => write!(f, "UPDATE {lot} {change}"),
            Sent::Gate {
                lot,
                plate,
                passage,
            } => {
                let verb = match passage {
                    Passage::Enter => "ENTER",
                    Passage::Exit => "EXIT",
                };
                write!(f, "{verb} {lot} {plate}")
            }
        }
    }
}

/// Which lots each of `sensors` sensors reports on, as indexes into the lot list.
///
/// With at least as many lots as sensors, the lots are dealt out round-robin and each lot has
/// one sensor; with more sensors than lots, sensor `i` reports on lot `i % lots`, so a lot may
/// have several.
pub fn assign(lots: usize, sensors: usize) -> Vec<Vec<usize>> {
    (0..sensors)
        .map(|sensor| {
            if lots >= sensors {
                (sensor..lots).step_by(sensors.max(1)).collect()
            } else if lots == 0 {
                Vec::new()
            } else {
                vec![sensor % lots]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lots_are_dealt_out() {
        assert_eq!(assign(3, 1), vec![vec![0, 1, 2]]);
        assert_eq!(assign(5, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(
            assign(2, 5),
            vec![vec![0], vec![1], vec![0], vec![1], vec![0]]
        );
        assert_eq!(assign(0, 1), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn summary_has_the_documented_keys() {
        let mut stats = Stats {
            sent: 21,
            acked: 20,
            errors: 1,
            reconnects: 1,
            never_connected: 0,
            checked_in: 0,
            ack_latency: new_histogram(),
        };
        let summary = Summary {
            stats: stats.clone(),
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(
            summary.to_string(),
            "sent=21 acked=20 errors=1 reconnects=1 rate=10.0/s"
        );
        stats.record_ack(Duration::from_millis(2));
        stats.never_connected = 3;
        stats.checked_in = 4;
        let summary = Summary {
            stats,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(
            summary.to_string(),
            "sent=21 acked=20 errors=1 reconnects=1 rate=10.0/s \
             ack_p50_ms=2.000 ack_p99_ms=2.000 ack_max_ms=2.000 checked_in=4 never_connected=3"
        );
    }
}
