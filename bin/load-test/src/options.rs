//! The command line: [`Options`], parsed with clap's derive API, and the validated numbers the
//! runner works with.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use client::cli::AccessArgs;
use client::{Endpoints, Hosts};

use crate::workload::Mode;

const LONG_ABOUT: &str = "\
Load generator for the parking server's RPC port.

For each count given to --workers, opens that many connections (one thread each), runs the \
chosen request mix for --warmup seconds (not recorded) and then --duration seconds (recorded), \
and prints one table row: connections, requests answered, errors, timeouts, throughput and the \
latency percentiles. Rows run one after the other against the same server.

By default each connection is closed-loop: it keeps --pipeline requests in flight and sends the \
next one as soon as a reply arrives, so latency is measured from the actual send. With --rate \
the total request rate is fixed (open loop, as wrk2 does): each request has an intended send \
time and its latency is measured from that time, so a server that stalls shows the stall as \
latency of every request that should have been sent meanwhile instead of simply receiving fewer \
requests.

A server that is down, refuses connections or fails mid-run is not fatal: failed connection \
attempts and failed requests are counted as errors (a reply that does not come within --timeout \
as a timeout), the connection is re-established with a backoff, and the run goes on to the next \
row.";

const AFTER_HELP: &str = "\
Exit codes:
  0  every row ran without errors or timeouts
  1  at least one row had errors or timeouts (server down, refused, failed mid-run, error replies)
  2  usage error
  3  an output could not be written (--json, --hgrm, --plot, or the table on stdout)
  4  the --idle connections could not all be opened

Examples:
  load-test --port 9000 --workers 1 4 8 16 --duration 30 --mode mixed
  load-test --mode mixed --workers 16 --idle 10000
  load-test --mode avail --workers 8 --pipeline 16 --json out.json --plot out.svg
  load-test --mode ping --workers 4 --rate 20000 --hgrm hgrm/";

/// Everything `load-test` is told on its command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "load-test",
    version,
    about = "Load generator for the parking server's RPC port",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Options {
    /// Server host name or IP address; several nodes comma-separated (`a:9000,b:9000`, a
    /// host without a port takes --port): connections are spread over them in turn.
    #[arg(long, default_value = "127.0.0.1", value_parser = Hosts::parse)]
    pub host: Hosts,

    /// The server's RPC port.
    #[arg(long, default_value_t = 9000)]
    pub port: u16,

    /// Connection counts, one table row each, run in the order given (space or comma separated).
    #[arg(
        long,
        num_args = 1..,
        value_delimiter = ',',
        default_values_t = [1, 4, 8, 16],
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub workers: Vec<u32>,

    /// Recorded seconds per row (more than 0).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_duration)]
    pub duration: Seconds,

    /// Unrecorded seconds before each row's recording starts (connections warm up, caches fill).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    pub warmup: Seconds,

    /// Request mix.
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    pub mode: Mode,

    /// Requests kept in flight per connection.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pipeline: u32,

    /// Open-loop mode: a fixed total rate in requests per second, shared evenly by the
    /// connections, with latency measured from each request's intended send time.
    #[arg(long, value_name = "REQ_PER_SEC", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Longest wait for the server to take a request or for each part of a reply; also the
    /// connect timeout. A reply that does not come in time is counted as a timeout.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Seconds,

    /// Connections held open and silent during every row, besides the busy ones (what idle
    /// kiosks, gates and sensors cost the server).
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub idle: u32,

    /// Size of the plate pool the mixed and text modes draw from.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub plates: u32,

    /// Write every row, with its full percentile distribution, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write one HdrHistogram percentile-distribution file per row into DIR (created if needed),
    /// named MODE-cN.hgrm, values in milliseconds.
    #[arg(long, value_name = "DIR")]
    pub hgrm: Option<PathBuf>,

    /// Draw latency by percentile (one curve per row) as an SVG image into FILE.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// TLS and the key's token (a client or operator key for the reserving modes); each
    /// connection authenticates once, when it connects.
    #[command(flatten)]
    pub access: AccessArgs,
}

impl Options {
    /// The `host:port` addresses the connections go to.
    pub fn target(&self) -> Endpoints {
        self.host.on(self.port)
    }
}

/// A non-negative, finite number of seconds from the command line, kept as given (for reports)
/// along with its [`Duration`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds {
    /// The number as typed.
    pub secs: f64,
    /// The same as a duration.
    pub duration: Duration,
}

fn parse_seconds(text: &str) -> Result<Seconds, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    // A day bounds every wait and keeps the arithmetic on instants far from overflowing.
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{text} is outside 0 to 86400 seconds"));
    }
    let duration = Duration::try_from_secs_f64(secs).map_err(|err| err.to_string())?;
    Ok(Seconds { secs, duration })
}

/// [`parse_seconds`], above zero: a row that records nothing measures nothing.
fn parse_duration(text: &str) -> Result<Seconds, String> {
    let seconds = parse_seconds(text)?;
    if seconds.duration.is_zero() {
        return Err(format!("{text} records nothing: give more than 0 seconds"));
    }
    Ok(seconds)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of requests per second"))?;
    if rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0 {
        Ok(rate)
    } else {
        Err(format!(
            "{text} is outside (0, 10000000] requests per second"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_lists() {
        let options = Options::try_parse_from(["load-test"]).unwrap();
        assert_eq!(options.workers, [1, 4, 8, 16]);
        assert_eq!(options.duration.duration, Duration::from_secs(30));
        assert_eq!(options.warmup.secs, 2.0);
        assert_eq!(options.mode, Mode::Mixed);
        assert_eq!(options.pipeline, 1);
        assert_eq!(options.rate, None);
        assert_eq!(options.target().to_string(), "127.0.0.1:9000");

        let options = Options::try_parse_from([
            "load-test",
            "--workers",
            "2",
            "3",
            "--mode",
            "text",
            "--duration",
            "0.5",
        ])
        .unwrap();
        assert_eq!(options.workers, [2, 3]);
        assert_eq!(options.duration.duration, Duration::from_millis(500));
        let options =
            Options::try_parse_from(["load-test", "--workers", "1,8", "--host", "::1"]).unwrap();
        assert_eq!(options.workers, [1, 8]);
        assert_eq!(options.target().to_string(), "[::1]:9000");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["load-test", "--workers", "0"][..],
            &["load-test", "--duration", "-1"],
            &["load-test", "--duration", "0"],
            &["load-test", "--duration", "NaN"],
            &["load-test", "--rate", "0"],
            &["load-test", "--rate", "inf"],
            &["load-test", "--pipeline", "0"],
            &["load-test", "--mode", "fly"],
        ] {
            assert!(Options::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
