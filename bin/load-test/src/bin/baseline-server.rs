//! `baseline-server`: a minimal RPC server for comparison with `parking-server` (see
//! `load_test::baseline`). Prints `listening on ADDR` on stdout once bound, then serves until
//! killed.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use load_test::baseline::BaselineServer;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "baseline-server",
    version,
    about = "Minimal RPC server (thread per connection, constant answers) to compare parking-server with",
    after_help = "Prints `listening on ADDR` on stdout once bound; runs until killed.\n\n\
        Exit codes:\n  1  the address could not be bound\n  2  usage error"
)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

fn main() -> ExitCode {
    client::cli::init_logging("warn");
    let args = Args::parse();
    let bound = BaselineServer::bind((args.host.as_str(), args.port))
        .and_then(|server| server.local_addr().map(|addr| (server, addr)));
    let (server, addr) = match bound {
        Ok(bound) => bound,
        Err(err) => {
            eprintln!(
                "baseline-server: cannot bind {}:{}: {err}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout().lock();
    if writeln!(stdout, "listening on {addr}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Whoever started us cannot learn the port; serving would be pointless.
        return ExitCode::FAILURE;
    }
    drop(stdout);
    server.serve()
}
