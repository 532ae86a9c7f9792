//! `sensor-sim`: simulated occupancy sensors for the parking server's sensor port.
//!
//! A run simulates `--sensors` sensors. Each owns one connection (a [`client::SensorClient`]),
//! an equal share of the total `--rate`, and a random walk per lot it covers: cars arrive and
//! leave a few at a time, never beyond what the sensor believes the lot holds. Every update's
//! reply is read and counted, and its latency recorded. A few threads (`--threads`) drive all
//! the sensors, each in turn when its update is due. When the server goes away, a sensor
//! reconnects with [`client::Backoff`] and carries on. At the end (or on Ctrl-C) the run
//! prints one summary line, `sent=.. acked=.. errors=.. reconnects=.. rate=../s` followed by
//! the ack latency.
//!
//! In gate mode (`--mode gate`) the sensors are entry and exit gates: they send
//! `ENTER|EXIT <lot> <plate>` for drive-up cars and, with `--book N`, for N cars per lot that
//! the run books over the RPC port first, so that their arrival checks the booking in.
//!
//! # Layout
//! - this file: the command line ([`Cli`]) and [`run`], which plans and starts the sensors.
//! - [`walk`]: the random walk.
//! - [`worker`]: the sensors, the threads that drive them, their counters and the summary.

#![forbid(unsafe_code)]

pub mod walk;
pub mod worker;

use std::collections::HashMap;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use client::cli::{AccessArgs, parse_lot, parse_positive, parse_seconds};
use client::{Access, ClientError, Failure, Hosts, ParkingClient};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use shutdown::ShutdownHandle;

use crate::walk::{Mode, Walk};

/// Threads used by default, however many sensors: each thread drives its share of them, so
/// thousands of sensors need no thread each.
const DEFAULT_MAX_THREADS: usize = 8;
use crate::worker::{Sensor, Stats, Summary, Target, Worker};

const LONG_ABOUT: &str = "\
Simulated occupancy sensors: streams `UPDATE <lot> <n|+k|-k>` lines to the parking server's \
sensor port at a fixed total rate, reads every reply, and prints one summary line at the end:

  sent=.. acked=.. errors=.. reconnects=.. rate=../s

Each of --sensors sensors owns one connection and an equal share of --rate, and walks the \
occupancy of its lots up and down at random, within the capacity it believes each lot has \
(learned from the RPC port with --rpc-port, else --capacity). With --mode gate the sensors \
are gates: they send `ENTER <lot> <plate>` and `EXIT <lot> <plate>` for the cars they let \
in and out (starting from an empty lot); --book N first books N windows per lot over the \
RPC port, from now to the end of the run, for plates BK<lot>-<n>, and those cars arrive \
among the drive-ups (plates DU<sensor>-<n>), checking their bookings in; the summary then \
counts checked_in=.. If the server goes away, the \
sensors reconnect with exponential backoff (100 ms doubling to 5 s) and count it. Ctrl-C ends \
the run early with the same summary. A few threads (--threads, at most 8 by default) drive \
all the sensors, each in turn when its update is due, so thousands of sensors need no thread \
each; the summary's ack latency counts from when each update was due, so a late send shows.

Examples:
  sensor-sim --rate 50 --duration 10 --lots A B C --rpc-port 9000 --seed 7
  sensor-sim --mode gate --book 20 --rate 20 --duration 60 --lots A --rpc-port 9000";

const AFTER_HELP: &str = "\
Exit codes:
  0  the run finished and at least one update was acknowledged
  1  not a single update was acknowledged
  2  usage error, or the RPC port given by --rpc-port could not be queried or booked on
  3  a lot given by --lots is not on the server (with --rpc-port)";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "sensor-sim",
    version,
    about = "Simulated occupancy sensors streaming updates to the parking server",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Server host name or IP address; several nodes comma-separated (`a:9001,b:9001`, a
    /// host without a port takes --port): sensors spread over them and move to the next
    /// when theirs is lost.
    #[arg(long, default_value = "127.0.0.1", value_parser = Hosts::parse)]
    pub host: Hosts,
    /// The server's sensor port.
    #[arg(long, default_value_t = 9001)]
    pub port: u16,
    /// Total updates per second, shared by all sensors.
    #[arg(long, default_value = "10", value_parser = parse_positive)]
    pub rate: f64,
    /// How long to run, in seconds.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    pub duration: Duration,
    /// The lots to report on.
    #[arg(long, required = true, num_args = 1.., value_name = "LOT", value_parser = parse_lot)]
    pub lots: Vec<String>,
    /// Number of sensors, each with its own connection [default: one per lot].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sensors: Option<u32>,
    /// Threads driving the sensors, each a share of them [default: one per sensor, at most 8].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Report car movements (`+k`/`-k`), whole counts (`n`), or cars through a gate
    /// (`ENTER`/`EXIT` with plates).
    #[arg(long, value_enum, default_value_t = Mode::Delta)]
    pub mode: Mode,
    /// Gate mode: book this many windows per lot over the RPC port first (needs --rpc-port),
    /// for cars that then arrive among the drive-ups.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub book: u32,
    /// Seed for the random walks, to repeat a run exactly [default: from the clock, logged].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Capacity assumed for every lot when --rpc-port is not given.
    #[arg(long, default_value_t = 100)]
    pub capacity: u32,
    /// Learn each lot's capacity and current occupancy from getLots on this RPC port.
    #[arg(long, value_name = "PORT")]
    pub rpc_port: Option<u16>,
    /// Seconds to wait for a connection and for each reply.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// TLS and the key's token (a sensor key for the lots given; --rpc-port needs one that
    /// may read, and --book one that may also book and pass the gate: an operator's).
    #[command(flatten)]
    pub access: AccessArgs,
}

impl Summary {
    /// The exit code for a finished run: 0 if anything was acknowledged, else 1.
    pub fn exit_code(&self) -> ExitCode {
        if self.stats.acked > 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// What a lot looks like to the sensors at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LotStart {
    capacity: u32,
    occupied: u32,
}

/// Runs the simulation until `--duration` passes or `stop` is triggered, and returns the
/// summary. Fails only if `--rpc-port` was given and the lots could not be learned.
pub fn run(cli: &Cli, stop: &ShutdownHandle) -> Result<Summary, Failure> {
    if cli.book > 0 && (cli.mode != Mode::Gate || cli.rpc_port.is_none()) {
        return Err(Failure::new(
            2,
            "--book needs --mode gate and --rpc-port (the bookings are made over the RPC port)",
        ));
    }
    let access = cli.access.access(2)?;
    let starts = learn_lots(cli, &access)?;
    let booked = book_plates(cli, &access)?;
    let sensors = cli.sensors.map_or(cli.lots.len(), |n| n as usize).max(1);
    let seed = cli.seed.unwrap_or_else(clock_seed);
    let plan = worker::assign(cli.lots.len(), sensors);
    // How many sensors share each lot; in delta mode each one walks its share of the lot.
    let mut sharing = vec![0u32; cli.lots.len()];
    for lot in plan.iter().flatten() {
        sharing[*lot] += 1;
    }
    // The booked cars of a lot are dealt out in turn to the sensors that cover it.
    let mut dealt: HashMap<(usize, usize), Vec<String>> = HashMap::new();
    for (lot, plates) in booked.into_iter().enumerate() {
        let covering: Vec<usize> = (0..plan.len())
            .filter(|&s| plan[s].contains(&lot))
            .collect();
        for (n, plate) in plates.into_iter().enumerate() {
            if let Some(&sensor) = covering.get(n % covering.len().max(1)) {
                dealt.entry((sensor, lot)).or_default().push(plate);
            }
        }
    }
    // A sensor slower than once per run sends once, at the start.
    let interval = Duration::try_from_secs_f64(sensors as f64 / cli.rate)
        .map_or(cli.duration, |interval| interval.min(cli.duration));
    log::info!(
        "{sensors} sensor(s) sending {} updates/s to {} for {} s ({} mode, seed {seed})",
        cli.rate,
        cli.host.on(cli.port),
        cli.duration.as_secs_f64(),
        cli.mode.name()
    );
    let start = Instant::now();
    let target = Target {
        endpoints: cli.host.on(cli.port),
        timeout: cli.timeout,
        access,
        mode: cli.mode,
        interval,
        end: start + cli.duration,
        stop: stop.clone(),
    };
    let sensors_list: Vec<Sensor> = plan
        .iter()
        .enumerate()
        .map(|(index, lots)| {
            let walks = lots
                .iter()
                .map(|&lot| {
                    let LotStart { capacity, occupied } = starts[lot];
                    let share = sharing[lot].max(1);
                    match cli.mode {
                        Mode::Delta => {
                            Walk::new(&cli.lots[lot], occupied / share, (capacity / share).max(1))
                        }
                        Mode::Absolute => Walk::new(&cli.lots[lot], occupied, capacity),
                        Mode::Gate => Walk::gate(
                            &cli.lots[lot],
                            (capacity / share).max(1),
                            dealt.remove(&(index, lot)).unwrap_or_default(),
                            format!("DU{index}-"),
                        ),
                    }
                })
                .collect();
            Sensor {
                index,
                walks,
                // Staggered so the sensors' updates interleave instead of arriving together.
                first_send: start + interval.mul_f64(index as f64 / sensors as f64),
                rng: SmallRng::seed_from_u64(seed.wrapping_add(index as u64)),
            }
        })
        .collect();
    let threads = cli
        .threads
        .map_or(sensors.min(DEFAULT_MAX_THREADS), |threads| threads as usize)
        .clamp(1, sensors);
    // Sensor `i` goes to thread `i % threads`, so each thread's sensors are spread over time.
    let mut groups: Vec<Vec<Sensor>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, sensor) in sensors_list.into_iter().enumerate() {
        groups[index % threads].push(sensor);
    }
    let mut total = Stats::default();
    thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(number, sensors)| {
                let worker = Worker {
                    target: target.clone(),
                    sensors,
                };
                thread::Builder::new()
                    .name(format!("sensors-{number}"))
                    .spawn_scoped(scope, move || worker.run())
            })
            .collect();
        for handle in handles {
            match handle.map(|handle| handle.join()) {
                Ok(Ok(stats)) => total += stats,
                Ok(Err(_)) => log::error!("a sensor thread panicked; its counts are lost"),
                Err(err) => log::error!("cannot start a sensor thread: {err}"),
            }
        }
    });
    Ok(Summary {
        stats: total,
        elapsed: start.elapsed(),
    })
}

/// Capacities and occupancy per `--lots` entry: from the server with `--rpc-port`, else
/// `--capacity` and empty lots.
fn learn_lots(cli: &Cli, access: &Access) -> Result<Vec<LotStart>, Failure> {
    let Some(rpc_port) = cli.rpc_port else {
        return Ok(vec![
            LotStart {
                capacity: cli.capacity,
                occupied: 0,
            };
            cli.lots.len()
        ]);
    };
    let endpoints = cli.host.all_on(rpc_port);
    let unreachable = |err: ClientError| {
        Failure::new(
            2,
            format!("cannot learn the lots from the RPC port at {endpoints}: {err}"),
        )
    };
    let mut rpc =
        ParkingClient::connect_with(&endpoints, cli.timeout, access).map_err(unreachable)?;
    let known: HashMap<String, LotStart> = rpc
        .get_lots()
        .map_err(unreachable)?
        .into_iter()
        .map(|lot| {
            let start = LotStart {
                capacity: lot.capacity,
                occupied: lot.occupied,
            };
            (lot.id.into_owned(), start)
        })
        .collect();
    cli.lots
        .iter()
        .map(|lot| {
            known.get(lot).copied().ok_or_else(|| {
                let mut ids: Vec<&str> = known.keys().map(String::as_str).collect();
                ids.sort_unstable();
                Failure::new(
                    3,
                    format!(
                        "lot {lot:?} is not on the server at {endpoints} (it has {})",
                        ids.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// Books `--book` windows per lot, from now to the end of the run, for plates
/// `BK<lot>-<n>`; returns the plates booked per lot. A refused booking (the lot full) is
/// logged and its car left out.
fn book_plates(cli: &Cli, access: &Access) -> Result<Vec<Vec<String>>, Failure> {
    let mut booked = vec![Vec::new(); cli.lots.len()];
    let Some(rpc_port) = cli.rpc_port.filter(|_| cli.book > 0) else {
        return Ok(booked);
    };
    let endpoints = cli.host.all_on(rpc_port);
    let failed = |err: ClientError| {
        Failure::new(
            2,
            format!("cannot book on the RPC port at {endpoints}: {err}"),
        )
    };
    let mut rpc = ParkingClient::connect_with(&endpoints, cli.timeout, access).map_err(failed)?;
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    // A minute past the run, within the server's default longest window (a day).
    let length = (cli.duration.as_secs() + 60).min(24 * 3600);
    for (index, lot) in cli.lots.iter().enumerate() {
        for n in 1..=cli.book {
            let plate = format!("BK{index}-{n}");
            match rpc.book(lot, &plate, start, start + length, None) {
                Ok(booking) => {
                    log::debug!("booked {} for {plate}", booking.id);
                    booked[index].push(plate);
                }
                Err(ClientError::Server(refused)) => {
                    log::warn!("no booking for {plate} in lot {lot}: {refused}");
                }
                Err(err) => return Err(failed(err)),
            }
        }
        log::info!(
            "booked {} of {} car(s) in lot {lot}",
            booked[index].len(),
            cli.book
        );
    }
    Ok(booked)
}

/// A seed from the clock, for runs without `--seed`.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["sensor-sim", "--lots", "A", "B", "--rate", "2.5"]).unwrap();
        assert_eq!(cli.lots, ["A", "B"]);
        assert_eq!(cli.rate, 2.5);
        assert_eq!(cli.mode, Mode::Delta);
        assert!(Cli::try_parse_from(["sensor-sim"]).is_err());
        assert!(Cli::try_parse_from(["sensor-sim", "--lots", "A", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["sensor-sim", "--lots", "A", "--sensors", "0"]).is_err());
        assert!(Cli::try_parse_from(["sensor-sim", "--lots", "A B"]).is_err());
        assert!(Cli::try_parse_from(["sensor-sim", "--lots", "A", "--duration", "1e10"]).is_err());
        let cli =
            Cli::try_parse_from(["sensor-sim", "--lots", "A", "--mode", "gate", "--book", "3"])
                .unwrap();
        assert_eq!((cli.mode, cli.book), (Mode::Gate, 3));
        // Bookings are made over the RPC port.
        let refused = run(&cli, &ShutdownHandle::new()).unwrap_err();
        assert_eq!(refused.exit, 2);
    }
}
