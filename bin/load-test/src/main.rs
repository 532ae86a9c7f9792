//! `load-test`: parses the command line, runs the rows and maps the outcome to an exit code.
//! Everything else lives in the `load_test` library.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use client::{Failure, cli};
use load_test::Options;

fn main() -> ExitCode {
    cli::init_logging("warn");
    let options = Options::parse();
    match load_test::run(&options, &mut io::stdout().lock()) {
        Ok(rows) => ExitCode::from(load_test::exit_code(&rows)),
        Err(err) => Failure::new(err.exit_code(), err.to_string()).report("load-test"),
    }
}
