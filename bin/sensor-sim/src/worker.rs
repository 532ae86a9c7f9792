//! One simulated sensor: a thread with its own connection, its share of the rate and its own
//! random walks, which keeps sending until the run ends and reconnects when the server goes
//! away.

use std::fmt;
use std::ops::AddAssign;
use std::time::{Duration, Instant};

use client::{Backoff, SensorClient, SensorClientError};
use framing::sensor::SensorErrorCode;
use rand::RngExt;
use rand::rngs::SmallRng;
use shutdown::ShutdownHandle;

use crate::walk::{Mode, Walk};

/// Errors logged at `warn` per sensor before the rest go to `debug`, so a server that refuses
/// every update does not flood the terminal; the summary still counts them all.
const LOGGED_ERRORS: u64 = 5;

/// Pacing never catches up on more than this much lost time (after a reconnect, say) at once;
/// anything older is skipped rather than sent as a burst.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

/// What one sensor (or the whole run, once added up) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `UPDATE` lines written.
    pub sent: u64,
    /// `OK` replies received.
    pub acked: u64,
    /// `ERR` replies, plus updates whose reply was lost with the connection.
    pub errors: u64,
    /// Connections made after a lost one (the first connection is not counted).
    pub reconnects: u64,
}

impl AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
    }
}

/// The run's one summary line.
#[derive(Debug, Clone, Copy, PartialEq)]
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
}

/// `sent=.. acked=.. errors=.. reconnects=.. rate=../s`: scripts and tests parse these keys.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Stats {
            sent,
            acked,
            errors,
            reconnects,
        } = self.stats;
        write!(
            f,
            "sent={sent} acked={acked} errors={errors} reconnects={reconnects} rate={:.1}/s",
            self.rate()
        )
    }
}

/// Everything a sensor thread needs.
#[derive(Debug)]
pub struct Worker {
    /// The sensor's number, for log lines.
    pub index: usize,
    /// Sensor port host.
    pub host: String,
    /// Sensor port.
    pub port: u16,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// The lots this sensor reports on.
    pub walks: Vec<Walk>,
    /// How updates are reported.
    pub mode: Mode,
    /// Time between two updates of this sensor.
    pub interval: Duration,
    /// When the first update is due (staggered across sensors).
    pub first_send: Instant,
    /// When the run ends.
    pub end: Instant,
    /// This sensor's random stream.
    pub rng: SmallRng,
    /// Set by Ctrl-C.
    pub stop: ShutdownHandle,
}

impl Worker {
    /// Sends updates until `end` or `stop`, and returns what it did.
    pub fn run(mut self) -> Stats {
        let mut stats = Stats::default();
        let mut backoff = Backoff::default();
        let mut connection: Option<SensorClient> = None;
        let mut connected_before = false;
        let mut next_send = self.first_send;
        let target = format!("{}:{}", self.host, self.port);
        let id = self.index;
        while !self.stop.is_triggered() && Instant::now() < self.end && !self.walks.is_empty() {
            let Some(client) = connection.as_mut() else {
                match SensorClient::connect((self.host.as_str(), self.port), self.timeout) {
                    Ok(client) => {
                        if connected_before {
                            stats.reconnects += 1;
                            log::info!("sensor {id}: reconnected to {target}");
                        } else {
                            log::info!("sensor {id}: connected to {target}");
                        }
                        connected_before = true;
                        connection = Some(client);
                    }
                    Err(err) => {
                        let delay = backoff.next_delay();
                        // The address is in the message already; keep only the cause.
                        let cause = match err {
                            SensorClientError::Connect { source, .. } => source.to_string(),
                            other => other.to_string(),
                        };
                        log::warn!(
                            "sensor {id}: {cause}; reconnecting to {target} in {} ms",
                            delay.as_millis()
                        );
                        self.stop.wait_until((Instant::now() + delay).min(self.end));
                    }
                }
                continue;
            };
            let now = Instant::now();
            if next_send > now {
                if self.stop.wait_until(next_send.min(self.end)) || Instant::now() >= self.end {
                    break;
                }
            } else if now - next_send > MAX_CATCH_UP {
                next_send = now;
            }
            next_send += self.interval;

            let pick = self.rng.random_range(0..self.walks.len());
            let walk = &mut self.walks[pick];
            let change = walk.step(&mut self.rng, self.mode);
            stats.sent += 1;
            match client.update(&walk.lot, change) {
                Ok(free) => {
                    // Success is an acknowledged update, not just a connection: a server that
                    // accepts and then refuses (BUSY) must still be backed off from.
                    backoff.reset();
                    stats.acked += 1;
                    log::debug!("sensor {id}: UPDATE {} {change} -> {free} free", walk.lot);
                }
                Err(SensorClientError::Server(refused))
                    if refused.code == SensorErrorCode::Busy =>
                {
                    // The server is at its connection limit and closes this connection.
                    stats.errors += 1;
                    connection = None;
                    let delay = backoff.next_delay();
                    log::warn!(
                        "sensor {id}: {target} is busy; reconnecting in {} ms",
                        delay.as_millis()
                    );
                    self.stop.wait_until((Instant::now() + delay).min(self.end));
                }
                Err(SensorClientError::Server(refused)) => {
                    stats.errors += 1;
                    if stats.errors <= LOGGED_ERRORS {
                        log::warn!(
                            "sensor {id}: UPDATE {} {change} refused: {refused}",
                            walk.lot
                        );
                    } else {
                        log::debug!(
                            "sensor {id}: UPDATE {} {change} refused: {refused}",
                            walk.lot
                        );
                    }
                }
                Err(err) => {
                    // The update may or may not have been applied; its ack is lost either way.
                    stats.errors += 1;
                    log::warn!("sensor {id}: lost the connection to {target}: {err}");
                    connection = None;
                }
            }
        }
        stats
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
        let summary = Summary {
            stats: Stats {
                sent: 21,
                acked: 20,
                errors: 1,
                reconnects: 1,
            },
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(
            summary.to_string(),
            "sent=21 acked=20 errors=1 reconnects=1 rate=10.0/s"
        );
    }
}
