//! `load-test`: a load generator for the parking server's RPC port; `baseline-server`, the
//! least a correct RPC server has to do, to compare the parking server with; and
//! `crash-client`, the client side of the crash test (`scripts/crash-test.sh`).
//!
//! A run is a list of rows, one per connection count given to `--workers`. Each row opens that
//! many connections through [`client::ParkingClient`] (one thread each), sends the chosen
//! request mix closed-loop (with `--pipeline` requests in flight) or open-loop at a fixed
//! `--rate`, records every latency in a per-connection HdrHistogram and merges them into one
//! table line. Rows can also be written as JSON, as HdrHistogram `.hgrm` files and as an SVG
//! chart. `scripts/bench.sh` runs the same rows against `parking-server` and
//! `baseline-server` and prints their ratio.
//!
//! The generator shares the machine with the server it measures, so the per-request path is
//! kept cheap: no allocation (for JSON requests), no logging, no shared locks.
//!
//! # Layout
//! - [`options`]: the command line ([`Options`]).
//! - [`workload`]: modes, the operation stream of each connection, requests and reply checks.
//! - [`pacing`]: intended send times for open-loop (`--rate`) runs.
//! - [`idle`]: the `--idle` connections, held open and silent during every row.
//! - [`runner`]: one row: connection threads, reconnection, histograms, progress line.
//! - [`report`]: the table, the JSON report and the `.hgrm` files.
//! - [`plot`]: the latency-by-percentile SVG chart.
//! - [`cleanup`]: cancelling what the run left reserved.
//! - [`baseline`]: the baseline server behind the `baseline-server` binary.
//! - [`crash`]: the crash test's writers and checker, behind the `crash-client` binary.
//! - this file: [`run`], which ties them together, and the exit codes.

#![forbid(unsafe_code)]

pub mod baseline;
pub mod cleanup;
pub mod crash;
pub mod idle;
pub mod options;
pub mod pacing;
pub mod plot;
pub mod report;
pub mod runner;
pub mod workload;

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use client::ParkingClient;

use idle::{IdleConnections, IdleError};
pub use options::Options;
use report::{OutputError, Report, Row};
use runner::{RowResult, RunConfig};
use workload::Workload;

/// Exit code: every row ran without errors or timeouts.
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one row had errors or timeouts.
pub const EXIT_ROW_FAILURES: u8 = 1;
/// Exit code: an output file (`--json`, `--hgrm`, `--plot`) could not be written.
pub const EXIT_OUTPUT: u8 = 3;
/// Exit code: the `--idle` connections could not all be opened.
pub const EXIT_IDLE: u8 = 4;
/// Exit code for a usage error (clap's, and an unusable `--ca`).
pub const EXIT_USAGE: u8 = 2;

/// Why a run could not complete; failures of the server under test are not among them (they
/// are counted in the rows).
#[derive(Debug)]
pub enum RunError {
    /// The latency histogram could not be set up.
    Histogram(hdrhistogram::CreationError),
    /// An output file could not be written.
    Output(OutputError),
    /// Writing the table to stdout failed.
    Stdout(io::Error),
    /// The `--idle` connections could not all be opened.
    Idle(IdleError),
    /// `--tls`/`--ca` cannot be used.
    Access(client::Failure),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Histogram(err) => write!(f, "cannot create a latency histogram: {err:?}"),
            RunError::Output(err) => write!(f, "{err}"),
            RunError::Stdout(err) => write!(f, "cannot write the table: {err}"),
            RunError::Idle(err) => write!(f, "{err}"),
            RunError::Access(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Histogram(_) => None,
            RunError::Output(err) => Some(err),
            RunError::Stdout(err) => Some(err),
            RunError::Idle(err) => Some(err),
            RunError::Access(err) => Some(err),
        }
    }
}

impl From<OutputError> for RunError {
    fn from(err: OutputError) -> Self {
        RunError::Output(err)
    }
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Idle(_) => EXIT_IDLE,
            RunError::Access(_) => EXIT_USAGE,
            RunError::Histogram(_) | RunError::Output(_) | RunError::Stdout(_) => EXIT_OUTPUT,
        }
    }
}

/// Runs every row of `options`, printing the table to `out` as rows finish, then writes the
/// requested output files. Returns the rows.
pub fn run(options: &Options, out: &mut impl Write) -> Result<Vec<Row>, RunError> {
    let config = RunConfig {
        target: options.target(),
        access: options
            .access
            .access(EXIT_USAGE)
            .map_err(RunError::Access)?,
        pipeline: options.pipeline,
        rate: options.rate,
        warmup: options.warmup.duration,
        duration: options.duration.duration,
        timeout: options.timeout.duration,
        progress: io::stderr().is_terminal(),
    };
    let files: Vec<&Path> = [&options.json, &options.plot]
        .into_iter()
        .filter_map(|path| path.as_deref())
        .collect();
    report::check_writable(&files, options.hgrm.as_deref())?;
    let template = runner::new_histogram().map_err(RunError::Histogram)?;
    let mode = options.mode;

    let loop_kind = match options.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".to_owned(),
    };
    let busiest = options.workers.iter().copied().max().unwrap_or(0) as usize;
    let idle = IdleConnections::open(
        config.target.get(0),
        options.idle as usize,
        busiest,
        options.timeout.duration,
    )
    .map_err(RunError::Idle)?;
    let idle_note = if idle.is_empty() {
        String::new()
    } else {
        format!(", {} idle connections held open", idle.len())
    };
    writeln!(
        out,
        "{mode} against {}: pipeline {}, {loop_kind}, warmup {}s, duration {}s{idle_note}",
        config.target, options.pipeline, options.warmup.secs, options.duration.secs
    )
    .and_then(|()| writeln!(out, "{}", report::table_header()))
    .map_err(RunError::Stdout)?;

    let mut lots: Option<Vec<String>> = None;
    let mut results: Vec<RowResult> = Vec::with_capacity(options.workers.len());
    let mut rows = Vec::with_capacity(options.workers.len());
    for &connections in &options.workers {
        let result = match row_workload(options, &config, &mut lots, connections) {
            Ok(workload) => runner::run_row(&config, &Arc::new(workload), connections, &template),
            Err((tally, note)) => RowResult::not_run(connections, template.clone(), tally, note),
        };
        let mut row = Row::new(mode, &result, options.duration.secs);
        let closed = idle.closed_by_server();
        if closed > 0 && row.note.is_none() {
            row.note = Some(format!(
                "the server closed {closed} of the {} idle connections",
                idle.len()
            ));
        }
        writeln!(out, "{}", report::table_row(&row))
            .and_then(|()| out.flush())
            .map_err(RunError::Stdout)?;
        results.push(result);
        rows.push(row);
    }

    if let Some(lot_ids) = lots {
        let note = cleanup_note(options, &config, lot_ids, busiest);
        if let Some(note) = note {
            writeln!(out, "{note}").map_err(RunError::Stdout)?;
        }
    }

    if let Some(path) = &options.json {
        let report = Report {
            target: config.target.to_string(),
            mode,
            pipeline: options.pipeline,
            rate: options.rate,
            warmup_secs: options.warmup.secs,
            duration_secs: options.duration.secs,
            timeout_secs: options.timeout.secs,
            idle: options.idle,
            rows: rows.clone(),
        };
        report::write_json(path, &report)?;
    }
    if let Some(dir) = &options.hgrm {
        report::write_hgrm(dir, mode, &results)?;
    }
    if let Some(path) = &options.plot {
        let title = format!(
            "{mode} latency by percentile ({}, {loop_kind})",
            config.target
        );
        plot::write_svg(path, &title, &rows)?;
    }
    Ok(rows)
}

/// Cancels what the run may have left reserved and describes it in one line (none when the
/// mode reserves nothing).
fn cleanup_note(
    options: &Options,
    config: &RunConfig,
    lots: Vec<String>,
    busiest: usize,
) -> Option<String> {
    let connections = u32::try_from(busiest).unwrap_or(u32::MAX);
    let workload = Workload::new(options.mode, lots, options.plates, connections)?;
    match cleanup::cancel_leftovers(config, &workload) {
        Ok(cleanup::Cleanup::NotNeeded) => None,
        Ok(cleanup::Cleanup::Done { sent, cancelled }) => Some(format!(
            "cleanup: cancelled {cancelled} reservation(s) the run left ({sent} cancels sent)"
        )),
        Ok(cleanup::Cleanup::Skipped { pairs }) => Some(format!(
            "cleanup: skipped ({pairs} lot and plate pairs, over {}); the run's \
             reservations expire after the server's reservation_ttl",
            cleanup::MAX_CANCELS
        )),
        Err(err) => Some(format!(
            "cleanup: failed ({err}); the run's reservations expire after the server's \
             reservation_ttl"
        )),
    }
}

/// The exit code for a run that produced `rows`.
pub fn exit_code(rows: &[Row]) -> u8 {
    let failed = rows
        .iter()
        .any(|row| row.errors > 0 || row.timeouts > 0 || row.note.is_some());
    if failed { EXIT_ROW_FAILURES } else { EXIT_OK }
}

/// The workload of a row, asking the server for its lots first if the mode needs them and they
/// are not known yet. A failure becomes the row's counters and note.
fn row_workload(
    options: &Options,
    config: &RunConfig,
    lots: &mut Option<Vec<String>>,
    connections: u32,
) -> Result<Workload, (runner::Tally, String)> {
    let mode = options.mode;
    if mode.needs_lots() && lots.is_none() {
        let found = ParkingClient::connect_with(&config.target, config.timeout, &config.access)
            .and_then(|mut client| client.get_lots())
            .map_err(|err| (runner::failed_call(&err), format!("getLots failed: {err}")))?;
        *lots = Some(found.into_iter().map(|lot| lot.id.into_owned()).collect());
    }
    let lot_ids = lots.clone().unwrap_or_default();
    Workload::new(mode, lot_ids, options.plates, connections).ok_or_else(|| {
        let mut tally = runner::Tally::default();
        tally.errors.protocol += 1;
        (tally, "the server reports no lots".to_owned())
    })
}
