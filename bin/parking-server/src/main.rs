//! `parking-server`: loads the configuration, starts the server, and stops it gracefully on
//! Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
        Ctrl-C or SIGTERM stops it gracefully: no new connections, requests already received \
        are answered, queued events get shutdown_grace to drain.\n\n\
        Exit codes: 0 stopped cleanly, 1 could not start, 2 bad configuration.",
    after_help = "Example:\n  parking-server --config config.json --rpc-port 0 --sensor-port 0 --pubsub-port 0"
)]
struct Args {
    /// Configuration file (JSON). Default: ./config.json if present, else built-in defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    overrides: ConfigOverrides,
}

fn main() -> ExitCode {
    cli::init_logging("info");
    let args = Args::parse();
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
