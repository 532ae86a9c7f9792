//! `parking-server`: loads the configuration, starts the server, and stops it gracefully on
//! Ctrl-C or SIGTERM; `parking-server repair` cuts a corrupt journal so that it starts again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::cli;
use server::{Config, ConfigOverrides, Server};

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a server that could not start (port taken, thread limit).
const EXIT_START: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "parking-server",
    version,
    about = "Smart-parking server: reservations over RPC, sensor ingestion, live availability",
    long_about = "Smart-parking server.\n\n\
        Listens on three ports: RPC (reservations and queries, length-prefixed JSON or text \
        frames), sensors (occupancy lines) and pub/sub (availability events). See \
        docs/protocol.md.\n\n\
        Settings come from --config FILE, else ./config.json if present, else built-in \
        defaults; the flags below override them. Port 0 picks a free port; the bound \
        addresses are logged at startup. Log level: RUST_LOG (default info).\n\n\
        The state is kept in data_dir (default ./data next to the config file), so \
        reservations and counts survive a restart; with fsync \"always\" (the default) a \
        reply means the change is on disk. Only one server may use a data directory.\n\n\
        Ctrl-C or SIGTERM stops it gracefully: no new connections, requests already received \
        are answered, queued events get shutdown_grace to drain.\n\n\
        Exit codes: 0 stopped cleanly, 1 could not start (a port or the data directory taken, \
        a corrupt journal: see `parking-server repair --help`), 2 bad configuration.",
    after_help = "Example:\n  parking-server --config config.json --rpc-port 0 --sensor-port 0 --pubsub-port 0"
)]
struct Args {
    /// Configuration file (JSON). Default: ./config.json if present, else built-in defaults.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    #[command(flatten)]
    overrides: ConfigOverrides,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cuts a corrupt journal at its first bad record, so that the server starts again.
    #[command(
        long_about = "Cuts every journal segment of the data directory at its first \
        bad record, as redis-check-aof --fix does. The bytes cut off are kept in a file next \
        to the segment (journal-<N>.log.corrupt-<time>); the report says how many records \
        they held, which are lost from the state. Every other record is kept. The server must \
        not be running.\n\n\
        Exit codes: 0 repaired (or nothing to repair), 1 could not repair, 2 bad \
        configuration."
    )]
    Repair {
        /// The data directory. Default: data_dir from the configuration.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    cli::init_logging("info");
    let args = Args::parse();
    if let Some(Command::Repair { data_dir }) = &args.command {
        return repair(args.config.as_deref(), data_dir.as_deref());
    }
    let config = match Config::load_with_overrides(args.config.as_deref(), &args.overrides) {
        Ok(config) => config,
        Err(err) => {
            log::error!("{err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The handler goes in before the ports open: a SIGTERM that arrives as soon as the server
    // is listening must stop it gracefully, not kill it.
    let shutdown = cli::stop_on_signal("stop it with SIGKILL");
    let running = match Server::new(config).start(shutdown) {
        Ok(running) => running,
        Err(err) => {
            log::error!("cannot start: {err}");
            return ExitCode::from(EXIT_START);
        }
    };
    running.wait();
    ExitCode::SUCCESS
}

/// `parking-server repair`: prints what was cut, if anything.
fn repair(config: Option<&Path>, data_dir: Option<&Path>) -> ExitCode {
    let dir = match data_dir {
        Some(dir) => dir.to_path_buf(),
        None => match Config::load(config) {
            Ok((
                Config {
                    data_dir: Some(dir),
                    ..
                },
                _,
            )) => dir,
            Ok(_) => {
                log::error!("data_dir is null: the state is in memory only, nothing to repair");
                return ExitCode::from(EXIT_CONFIG);
            }
            Err(err) => {
                log::error!("{err}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match store::repair(&dir, &store::disk::RealDisk) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            log::error!("cannot repair: {err}");
            ExitCode::from(EXIT_START)
        }
    }
}
