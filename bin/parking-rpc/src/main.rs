//! `parking-rpc`: see the library crate for what it does; this file only wires the process.

#![forbid(unsafe_code)]

use std::io;
use std::process::ExitCode;

use clap::Parser;
use client::cli;
use parking_rpc::{Cli, run};

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::init_logging("info");
    match run(&args, &mut io::stdout().lock()) {
        Ok(exit) => exit.into(),
        Err(failure) => failure.report("parking-rpc"),
    }
}
