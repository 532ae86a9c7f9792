//! `parking-server`: loads the configuration, starts the server, and stops it gracefully on
//! Ctrl-C or SIGTERM; `parking-server repair` cuts a corrupt journal so that it starts again,
//! `parking-server keygen` makes a key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use auth::{KeyId, Role};
use clap::{Parser, Subcommand};
use client::cli;
use server::{Config, ConfigOverrides, Server, StartError};
use state::LotId;

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
        Listens on four ports: RPC (reservations and queries, length-prefixed JSON or text \
        frames), sensors (occupancy lines), pub/sub (availability events) and HTTP (REST \
        API, event stream, /metrics, the dashboard at /; --http-port off turns it off). See \
        docs/protocol.md and docs/http.md.\n\n\
        Settings come from --config FILE, else ./config.json if present, else built-in \
        defaults; the flags below override them. Port 0 picks a free port; the bound \
        addresses are logged at startup. Log level: RUST_LOG (default info).\n\n\
        The state is kept in data_dir (default ./data next to the config file), so \
        reservations and counts survive a restart; with fsync \"always\" (the default) a \
        reply means the change is on disk. Only one server may use a data directory.\n\n\
        Ctrl-C or SIGTERM stops it gracefully: no new connections, requests already received \
        are answered, queued events get shutdown_grace to drain.\n\n\
        Access control: with keys under \"auth\" in the configuration, every connection \
        authenticates with a key's token first (`parking-server keygen` makes one). Without \
        keys the server listens on loopback only (protected mode) unless \
        \"protected_mode\": false.\n\n\
        Exit codes: 0 stopped cleanly, 1 could not start (a port or the data directory taken, \
        a corrupt journal: see `parking-server repair --help`), 2 bad configuration (protected \
        mode and unusable TLS files included).",
    after_help = "Examples:\n  parking-server --config config.json --rpc-port 0 --sensor-port 0 --pubsub-port 0\n  \
        parking-server keygen --id gate-A --role sensor --lots A"
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
    /// Make a key: prints a fresh random token (shown once: hand it to the key's holder) and
    /// the configuration entry, which holds only the token's SHA-256, to paste under
    /// "auth": {"keys": [...]}.
    Keygen {
        /// The key's name: 1-64 characters of A-Z a-z 0-9 _ - ., starting with a letter.
        #[arg(long, value_parser = |id: &str| KeyId::new(id).map_err(|err| err.to_string()))]
        id: KeyId,
        /// viewer (reads, subscribes), client (also reserves and cancels its own), sensor
        /// (updates its lots) or operator (everything).
        #[arg(long, value_parser = |role: &str| Role::parse(role).ok_or_else(|| format!("{role:?} is not viewer, client, sensor or operator")))]
        role: Role,
        /// For a sensor key: the lots it may update.
        #[arg(long, num_args = 1.., value_delimiter = ',', value_parser = |lot: &str| LotId::new(lot).map_err(|err| err.to_string()))]
        lots: Vec<LotId>,
    },
}

fn main() -> ExitCode {
    cli::init_logging("info");
    let args = Args::parse();
    if let Some(Command::Repair { data_dir }) = &args.command {
        return repair(args.config.as_deref(), data_dir.as_deref());
    }
    if let Some(Command::Keygen { id, role, lots }) = args.command {
        return keygen(id, role, lots);
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
        Err(err @ (StartError::Config(_) | StartError::Tls(_))) => {
            log::error!("{err}");
            return ExitCode::from(EXIT_CONFIG);
        }
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

/// `parking-server keygen`.
fn keygen(id: KeyId, role: Role, lots: Vec<LotId>) -> ExitCode {
    let usage = |message: &str| {
        eprintln!("parking-server keygen: {message}");
        ExitCode::from(EXIT_CONFIG)
    };
    match (role, lots.is_empty()) {
        (Role::Sensor, true) => return usage("a sensor key needs --lots: the lots it may update"),
        (Role::Sensor, false) | (_, true) => {}
        (_, false) => return usage("--lots is only for sensor keys"),
    }
    let (token, key) = match auth::new_key(id, role, lots) {
        Ok(made) => made,
        Err(err) => return usage(&format!("no randomness from the operating system: {err}")),
    };
    let entry = match serde_json::to_string(&key) {
        Ok(entry) => entry,
        Err(err) => return usage(&format!("cannot write the entry: {err}")),
    };
    println!("token (shown once; give it to the key's holder, e.g. as PARKING_TOKEN):");
    println!("  {token}");
    println!("config entry (add it to \"auth\": {{\"keys\": [...]}}):");
    println!("  {entry}");
    ExitCode::SUCCESS
}
