//! `subscriber`: see the library crate for what it does; this file only wires the process.

#![forbid(unsafe_code)]

use std::io;
use std::process::ExitCode;

use clap::Parser;
use client::cli;
use subscriber::{Cli, run};

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::init_logging("info");
    let stop = cli::stop_on_signal("Ctrl-C will end the process without cleanup");
    match run(&args, &stop, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report("subscriber"),
    }
}
