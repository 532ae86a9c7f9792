//! `subscriber`: see the library crate for what it does; this file only wires the process.

#![forbid(unsafe_code)]

use std::io;
use std::process::ExitCode;

use clap::Parser;
use client::StopSignal;
use subscriber::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let stop = StopSignal::new();
    let on_interrupt = stop.clone();
    if let Err(err) = ctrlc::set_handler(move || on_interrupt.trigger()) {
        log::warn!("Ctrl-C will end the process without cleanup: {err}");
    }
    match run(&cli, &stop, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("subscriber: {err}");
            ExitCode::from(err.exit)
        }
    }
}
