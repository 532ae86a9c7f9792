//! `sensor-sim`: see the library crate for what it does; this file only wires the process.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use client::cli;
use sensor_sim::{Cli, run};

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::init_logging("info");
    let stop = cli::stop_on_signal("Ctrl-C will not end the run early");
    match run(&args, &stop) {
        Ok(summary) => {
            println!("{summary}");
            summary.exit_code()
        }
        Err(failure) => failure.report("sensor-sim"),
    }
}
