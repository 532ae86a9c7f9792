//! `sensor-sim`: see the library crate for what it does; this file only wires the process.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use client::StopSignal;
use sensor_sim::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let stop = StopSignal::new();
    let on_interrupt = stop.clone();
    if let Err(err) = ctrlc::set_handler(move || on_interrupt.trigger()) {
        log::warn!("Ctrl-C will not end the run early: {err}");
    }
    match run(&cli, &stop) {
        Ok(summary) => {
            println!("{summary}");
            summary.exit_code()
        }
        Err(err) => {
            eprintln!("sensor-sim: {err}");
            ExitCode::from(err.exit)
        }
    }
}
