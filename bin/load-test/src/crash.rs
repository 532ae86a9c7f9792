//! The crash test's client: writes while the server is killed, logging what was
//! acknowledged, then checks a restarted server against that log.
//!
//! [`run`] opens RPC connections that reserve and cancel plates of their own, and sensor
//! connections that move a lot's count each, until the server goes away (or the time is
//! up). Every change is logged as what the server acknowledged; the one request each
//! connection had in flight when the server died may or may not have been applied, and is
//! logged as such. [`check`] then asks the restarted server: every plate acknowledged as
//! reserved (and not cancelled) must be held, every acknowledged cancel must stay
//! cancelled, and each sensor lot's count must be its last acknowledged one (or the one its
//! request in flight would have set). Used by `crash-client` (for `scripts/crash-test.sh`)
//! and by `parking-server`'s crash test.

use std::fmt;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use client::{ClientError, ParkingClient, SensorClient};
use framing::sensor::CountChange;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// The lot the RPC connections reserve in; the server must have it, with room for every
/// plate a run holds (a run holds about half of the plates it reserves).
pub const RESERVATION_LOT: &str = "R";

/// What a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server's RPC port.
    pub rpc: SocketAddr,
    /// The server's sensor port.
    pub sensor: SocketAddr,
    /// Connections reserving and cancelling.
    pub rpc_connections: usize,
    /// Sensor connections, each moving the count of its own lot `S0`, `S1`, ...
    pub sensor_connections: usize,
    /// Makes plates unique across runs against one data directory.
    pub run: u32,
    /// Longest run, if the server is not killed first.
    pub duration: Duration,
}

/// What the server was last told, and what it answered, about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Known {
    /// Acknowledged as held (a reserve answered true, no cancel answered since).
    Held,
    /// Acknowledged as not held (a cancel answered true, or a reserve answered false).
    Absent,
    /// A request about it was in flight when the server died: either.
    Unknown,
}

/// A plate and what is known of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlateEntry {
    /// The plate (in [`RESERVATION_LOT`]).
    pub plate: String,
    /// What the server acknowledged.
    pub known: Known,
}

/// A sensor lot and the counts it may have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountEntry {
    /// The lot.
    pub lot: String,
    /// The count after the last acknowledged update.
    pub acknowledged: i64,
    /// The count the update in flight would have set, if one was.
    pub in_flight: Option<i64>,
}

/// What a run was told: the crash test's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// Every plate a run reserved.
    pub plates: Vec<PlateEntry>,
    /// Every sensor lot.
    pub counts: Vec<CountEntry>,
    /// Changes acknowledged.
    pub acknowledged: u64,
}

/// Why a run or a check could not be made at all (a server that dies mid-run is expected).
#[derive(Debug)]
pub struct CrashError(pub String);

impl fmt::Display for CrashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrashError {}

const TIMEOUT: Duration = Duration::from_secs(5);

/// Writes until the server goes away or `plan.duration` passes; returns what was
/// acknowledged.
pub fn run(plan: &Plan) -> Result<Log, CrashError> {
    let start_counts = counts(plan.rpc)?;
    let deadline = Instant::now() + plan.duration;
    let reservers: Vec<_> = (0..plan.rpc_connections)
        .map(|connection| {
            let plan = plan.clone();
            thread::spawn(move || reserve_and_cancel(&plan, connection, deadline))
        })
        .collect();
    let sensors: Vec<_> = (0..plan.sensor_connections)
        .map(|connection| {
            let lot = format!("S{connection}");
            let count = start_counts
                .iter()
                .find(|(id, _)| *id == lot)
                .map(|(_, counted)| *counted)
                .ok_or_else(|| CrashError(format!("the server has no lot {lot}")))?;
            let (sensor, seed) = (plan.sensor, u64::from(plan.run) << 16 | connection as u64);
            Ok(thread::spawn(move || {
                move_count(sensor, lot, count, seed, deadline)
            }))
        })
        .collect::<Result<_, CrashError>>()?;
    let mut log = Log::default();
    for reserver in reservers {
        let (plates, acknowledged) = reserver
            .join()
            .map_err(|_| CrashError("a connection thread panicked".into()))?;
        log.plates.extend(plates);
        log.acknowledged += acknowledged;
    }
    for sensor in sensors {
        let (entry, acknowledged) = sensor
            .join()
            .map_err(|_| CrashError("a sensor thread panicked".into()))?;
        log.counts.push(entry);
        log.acknowledged += acknowledged;
    }
    Ok(log)
}

/// One RPC connection: reserves new plates and cancels held ones, half and half.
fn reserve_and_cancel(plan: &Plan, connection: usize, deadline: Instant) -> (Vec<PlateEntry>, u64) {
    let mut rng = SmallRng::seed_from_u64(u64::from(plan.run) << 16 | connection as u64);
    let mut plates: Vec<PlateEntry> = Vec::new();
    let mut held: Vec<usize> = Vec::new();
    let mut acknowledged = 0;
    let Ok(mut client) = ParkingClient::connect_with_timeout(plan.rpc, TIMEOUT) else {
        return (plates, acknowledged);
    };
    while Instant::now() < deadline {
        let cancel = !held.is_empty() && rng.random_range(0..2) == 0;
        let (index, reply) = if cancel {
            let index = held.swap_remove(rng.random_range(0..held.len()));
            plates[index].known = Known::Unknown;
            (index, client.cancel(RESERVATION_LOT, &plates[index].plate))
        } else {
            plates.push(PlateEntry {
                plate: format!("{}-{connection}-{}", plan.run, plates.len()),
                known: Known::Unknown,
            });
            let index = plates.len() - 1;
            (index, client.reserve(RESERVATION_LOT, &plates[index].plate))
        };
        match reply {
            Ok(answer) => {
                acknowledged += 1;
                // A reserve answered true holds; a cancel answered true (or a refused
                // reserve) does not. A cancel answered false means it was not held.
                let holds = !cancel && answer;
                plates[index].known = if holds { Known::Held } else { Known::Absent };
                if holds {
                    held.push(index);
                }
            }
            // The server went away: what was in flight stays Unknown.
            Err(_) => break,
        }
    }
    (plates, acknowledged)
}

/// One sensor connection: a random walk of its lot's count, with an absolute count now and
/// then.
fn move_count(
    sensor: SocketAddr,
    lot: String,
    mut count: i64,
    seed: u64,
    deadline: Instant,
) -> (CountEntry, u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut entry = CountEntry {
        lot,
        acknowledged: count,
        in_flight: None,
    };
    let mut acknowledged = 0;
    let Ok(mut client) = SensorClient::connect(sensor, TIMEOUT) else {
        return (entry, acknowledged);
    };
    while Instant::now() < deadline {
        let (change, next) = match rng.random_range(0..10) {
            0 => {
                let n = rng.random_range(0..50u32);
                (CountChange::Set(n), i64::from(n))
            }
            1..=5 => (CountChange::Add(1), count + 1),
            _ => (CountChange::Remove(1), count - 1),
        };
        entry.in_flight = Some(next);
        if client.update(&entry.lot, change).is_err() {
            break;
        }
        count = next;
        entry.acknowledged = count;
        entry.in_flight = None;
        acknowledged += 1;
    }
    (entry, acknowledged)
}

/// The outcome of a check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Plates checked, by what was known of them: held, absent, unknown.
    pub plates: (usize, usize, usize),
    /// Sensor lots checked.
    pub counts: usize,
    /// What the restarted server got wrong, one line each.
    pub violations: Vec<String>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (held, absent, unknown) = self.plates;
        write!(
            f,
            "checked {} plates ({held} acknowledged held, {absent} acknowledged absent, \
             {unknown} in flight) and {} counts: {} violation(s)",
            held + absent + unknown,
            self.counts,
            self.violations.len()
        )?;
        for violation in &self.violations {
            write!(f, "\n  {violation}")?;
        }
        Ok(())
    }
}

/// Checks the (restarted) server at `rpc` against `log`. Probing a plate cancels it, so a
/// log can be checked once.
pub fn check(rpc: SocketAddr, log: &Log) -> Result<Verdict, CrashError> {
    let mut verdict = Verdict::default();
    let counted = counts(rpc)?;
    for entry in &log.counts {
        verdict.counts += 1;
        let Some(&(_, now)) = counted.iter().find(|(id, _)| *id == entry.lot) else {
            verdict
                .violations
                .push(format!("lot {} is gone", entry.lot));
            continue;
        };
        if now != entry.acknowledged && Some(now) != entry.in_flight {
            verdict.violations.push(format!(
                "lot {}: count {now}, but {} was acknowledged{}",
                entry.lot,
                entry.acknowledged,
                entry
                    .in_flight
                    .map(|next| format!(" ({next} was in flight)"))
                    .unwrap_or_default()
            ));
        }
    }
    let mut client = connect(rpc)?;
    for entry in &log.plates {
        let held = client
            .cancel(RESERVATION_LOT, &entry.plate)
            .map_err(|err| CrashError(format!("cannot check plate {}: {err}", entry.plate)))?;
        let wrong = match entry.known {
            Known::Held => {
                verdict.plates.0 += 1;
                (!held).then_some("acknowledged as reserved, but not held")
            }
            Known::Absent => {
                verdict.plates.1 += 1;
                held.then_some("acknowledged as cancelled (or refused), but held")
            }
            Known::Unknown => {
                verdict.plates.2 += 1;
                None
            }
        };
        if let Some(wrong) = wrong {
            verdict
                .violations
                .push(format!("plate {}: {wrong}", entry.plate));
        }
    }
    Ok(verdict)
}

fn connect(rpc: SocketAddr) -> Result<ParkingClient, CrashError> {
    ParkingClient::connect_with_timeout(rpc, TIMEOUT)
        .map_err(|err: ClientError| CrashError(format!("cannot reach the server: {err}")))
}

/// Every lot's running count.
fn counts(rpc: SocketAddr) -> Result<Vec<(String, i64)>, CrashError> {
    let lots = connect(rpc)?
        .get_lots()
        .map_err(|err| CrashError(format!("getLots failed: {err}")))?;
    Ok(lots
        .into_iter()
        .map(|lot| (lot.id.into_owned(), lot.counted))
        .collect())
}
