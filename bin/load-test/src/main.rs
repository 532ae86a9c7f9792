//! `load-test`: parses the command line, runs the rows and maps the outcome to an exit code.
//! Everything else lives in the `load_test` library.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use load_test::Options;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let options = Options::parse();
    match load_test::run(&options, &mut io::stdout().lock()) {
        Ok(rows) => ExitCode::from(load_test::exit_code(&rows)),
        Err(err) => {
            eprintln!("load-test: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
