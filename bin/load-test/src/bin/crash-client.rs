//! `crash-client`: the client side of `scripts/crash-test.sh` (see `load_test::crash`).
//! `run` writes until the server is killed and saves what was acknowledged; `check` holds a
//! restarted server to that log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use client::{Failure, cli};
use load_test::crash::{self, Log, Plan};

/// Exit code: the restarted server lost or invented an acknowledged change.
const EXIT_VIOLATIONS: u8 = 1;
/// Exit code: the run or the check could not be made (server unreachable, bad log file).
const EXIT_FAILED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "crash-client",
    version,
    about = "Writes to parking-server while it is killed, then checks the restarted server",
    after_help = "Exit codes:\n  0  done (check: no violation)\n  1  check: violations found\n  \
        2  could not run or check"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reserves, cancels and moves sensor counts until the server goes away, then writes the
    /// log of what was acknowledged.
    Run {
        /// The server's RPC address.
        #[arg(long)]
        rpc: SocketAddr,
        /// The server's sensor address.
        #[arg(long)]
        sensor: SocketAddr,
        /// Where to write the log (JSON).
        #[arg(long)]
        log: PathBuf,
        /// A number unique to this run against the data directory (plates carry it).
        #[arg(long, default_value_t = 0)]
        run: u32,
        /// Connections reserving and cancelling in lot R.
        #[arg(long, default_value_t = 12)]
        rpc_connections: usize,
        /// Sensor connections, one per lot S0, S1, ...
        #[arg(long, default_value_t = 4)]
        sensor_connections: usize,
        /// Stop after this many seconds if the server is still up.
        #[arg(long, default_value = "30", value_parser = cli::parse_seconds)]
        duration: Duration,
    },
    /// Checks the server against a log written by `run`.
    Check {
        /// The restarted server's RPC address.
        #[arg(long)]
        rpc: SocketAddr,
        /// The log `run` wrote.
        #[arg(long)]
        log: PathBuf,
    },
}

fn main() -> ExitCode {
    cli::init_logging("warn");
    match execute(Args::parse().command) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report("crash-client"),
    }
}

fn execute(command: Command) -> Result<u8, Failure> {
    let failed = |message: String| Failure::new(EXIT_FAILED, message);
    match command {
        Command::Run {
            rpc,
            sensor,
            log,
            run,
            rpc_connections,
            sensor_connections,
            duration,
        } => {
            let plan = Plan {
                rpc,
                sensor,
                rpc_connections,
                sensor_connections,
                run,
                duration,
            };
            let written = crash::run(&plan).map_err(|err| failed(err.to_string()))?;
            let json = serde_json::to_vec(&written).map_err(|err| failed(err.to_string()))?;
            std::fs::write(&log, json)
                .map_err(|err| failed(format!("cannot write {}: {err}", log.display())))?;
            println!("{} change(s) acknowledged", written.acknowledged);
            Ok(0)
        }
        Command::Check { rpc, log } => {
            let bytes = std::fs::read(&log)
                .map_err(|err| failed(format!("cannot read {}: {err}", log.display())))?;
            let log: Log = serde_json::from_slice(&bytes)
                .map_err(|err| failed(format!("not a crash-client log: {err}")))?;
            let verdict = crash::check(rpc, &log).map_err(|err| failed(err.to_string()))?;
            println!("{verdict}");
            Ok(if verdict.violations.is_empty() {
                0
            } else {
                EXIT_VIOLATIONS
            })
        }
    }
}
