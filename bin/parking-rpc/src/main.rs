//! `parking-rpc`: see the library crate for what it does; this file only wires the process.

#![forbid(unsafe_code)]

use std::io;
use std::process::ExitCode;

use clap::Parser;
use parking_rpc::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(&cli, &mut io::stdout().lock()) {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("parking-rpc: {err}");
            err.exit.into()
        }
    }
}
