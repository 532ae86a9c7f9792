//! Turning row results into output: the table on stdout, the `--json` file and the `--hgrm`
//! percentile-distribution files.
//!
//! Latencies are kept in microseconds everywhere except where a format fixes the unit: the
//! table and the `.hgrm` files use milliseconds, as wrk2 and HdrHistogram's plotter do.

use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::runner::{ErrorCounts, RowResult, SIGNIFICANT_DIGITS};
use crate::workload::Mode;

/// Percentile steps per half distance to 100%, as in HdrHistogram's
/// `outputPercentileDistribution` default: 50%, 55%, ... 75%, 77.5%, ... 87.5%, ...
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Microseconds per millisecond, the unit the table and `.hgrm` files show.
const US_PER_MS: f64 = 1000.0;

/// The whole `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `host:port` tested.
    pub target: String,
    /// The request mix.
    pub mode: Mode,
    /// Requests in flight per connection.
    pub pipeline: u32,
    /// Total request rate of an open-loop run; `null` for closed loop.
    pub rate: Option<f64>,
    /// Unrecorded seconds before each row.
    pub warmup_secs: f64,
    /// Recorded seconds per row.
    pub duration_secs: f64,
    /// Per-call timeout in seconds.
    pub timeout_secs: f64,
    /// Connections held open and silent during every row (`--idle`).
    pub idle: u32,
    /// One entry per `--workers` count, in the order run.
    pub rows: Vec<Row>,
}

/// One table row, with its full latency distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The request mix.
    pub mode: Mode,
    /// Concurrent connections.
    pub connections: u32,
    /// Requests answered correctly in the recorded window.
    pub requests: u64,
    /// Failed requests and connection attempts (see `error_kinds`).
    pub errors: u64,
    /// Requests whose reply did not come within the timeout.
    pub timeouts: u64,
    /// `requests` per second of the recorded window.
    pub throughput: f64,
    /// `errors` by kind.
    pub error_kinds: ErrorCounts,
    /// Why the row did not run as asked (server unreachable for getLots, no lots, ...).
    pub note: Option<String>,
    /// Latency summary in microseconds; `null` when no request was answered.
    pub latency_us: Option<LatencySummary>,
    /// The percentile distribution, as the `.hgrm` file lists it (microseconds).
    pub distribution: Vec<DistributionPoint>,
}

/// A row's latency summary, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Smallest latency.
    pub min: u64,
    /// Mean latency.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p99_9: u64,
    /// Largest latency.
    pub max: u64,
}

/// One step of a percentile distribution.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DistributionPoint {
    /// Latency in microseconds (highest value equivalent to the step's bucket).
    pub value_us: u64,
    /// Fraction of requests at or below `value_us`, from 0 to 1.
    pub quantile: f64,
    /// Number of requests at or below `value_us`.
    pub total_count: u64,
}

impl Row {
    /// The row for `result`, whose window lasted `duration_secs`.
    pub fn new(mode: Mode, result: &RowResult, duration_secs: f64) -> Self {
        let histogram = &result.histogram;
        let tally = &result.tally;
        let latency_us = (!histogram.is_empty()).then(|| LatencySummary {
            min: histogram.min(),
            mean: histogram.mean(),
            stdev: histogram.stdev(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p99_9: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        });
        Row {
            mode,
            connections: result.connections,
            requests: tally.ok,
            errors: tally.errors.total(),
            timeouts: tally.timeouts,
            throughput: if duration_secs > 0.0 {
                tally.ok as f64 / duration_secs
            } else {
                0.0
            },
            error_kinds: tally.errors,
            note: result.note.clone(),
            latency_us,
            distribution: distribution(histogram),
        }
    }
}

/// The percentile distribution of `histogram`, step by step as `outputPercentileDistribution`
/// walks it. Empty for an empty histogram.
pub fn distribution(histogram: &Histogram<u64>) -> Vec<DistributionPoint> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let mut total_count = 0u64;
    histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| {
            total_count += step.count_since_last_iteration();
            DistributionPoint {
                value_us: step.value_iterated_to(),
                quantile: step.quantile_iterated_to(),
                total_count,
            }
        })
        .collect()
}

/// The table's column headings.
pub fn table_header() -> String {
    format!(
        "{:>6} {:>11} {:>8} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "conns",
        "requests",
        "errors",
        "timeouts",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    )
}

/// One table line for `row` (and a second, indented, with its note if it has one).
pub fn table_row(row: &Row) -> String {
    let ms = |us: Option<u64>| match us {
        Some(us) => format!("{:.3}", us as f64 / US_PER_MS),
        None => "-".to_owned(),
    };
    let latency = row.latency_us;
    let mut line = format!(
        "{:>6} {:>11} {:>8} {:>8} {:>11.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
        row.connections,
        row.requests,
        row.errors,
        row.timeouts,
        row.throughput,
        ms(latency.map(|l| l.p50)),
        ms(latency.map(|l| l.p90)),
        ms(latency.map(|l| l.p99)),
        ms(latency.map(|l| l.p99_9)),
        ms(latency.map(|l| l.max)),
    );
    if let Some(note) = &row.note {
        let _ = write!(line, "\n       note: {note}");
    }
    line
}

/// An output file that could not be written.
#[derive(Debug)]
pub struct OutputError {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: OutputErrorKind,
}

/// Why an output could not be written.
#[derive(Debug)]
pub enum OutputErrorKind {
    /// Creating or writing the file failed.
    Io(io::Error),
    /// The report could not be serialised.
    Json(serde_json::Error),
    /// The chart could not be drawn.
    Plot(String),
}

impl OutputError {
    /// An error about `path`.
    pub fn new(path: &Path, kind: OutputErrorKind) -> Self {
        OutputError {
            path: path.to_owned(),
            kind,
        }
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            OutputErrorKind::Io(err) => write!(f, "cannot write {path}: {err}"),
            OutputErrorKind::Json(err) => {
                write!(f, "cannot serialise the report for {path}: {err}")
            }
            OutputErrorKind::Plot(err) => write!(f, "cannot draw the chart {path}: {err}"),
        }
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            OutputErrorKind::Io(err) => Some(err),
            OutputErrorKind::Json(err) => Some(err),
            OutputErrorKind::Plot(_) => None,
        }
    }
}

/// Checks, before a run, that each output can be written: the `--json` and `--plot` files
/// can be created (a file that did not exist is removed again), and the `--hgrm` directory
/// exists or can be made. A run of minutes must not end in "cannot write".
pub fn check_writable(files: &[&Path], dir: Option<&Path>) -> Result<(), OutputError> {
    for &path in files {
        let existed = path.exists();
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|err| io_error(path, err))?;
        if !existed {
            fs::remove_file(path).map_err(|err| io_error(path, err))?;
        }
    }
    if let Some(dir) = dir {
        fs::create_dir_all(dir).map_err(|err| io_error(dir, err))?;
    }
    Ok(())
}

fn io_error(path: &Path, err: io::Error) -> OutputError {
    OutputError::new(path, OutputErrorKind::Io(err))
}

/// Writes `report` as pretty-printed JSON to `path`.
pub fn write_json(path: &Path, report: &Report) -> Result<(), OutputError> {
    let mut text = serde_json::to_string_pretty(report)
        .map_err(|err| OutputError::new(path, OutputErrorKind::Json(err)))?;
    text.push('\n');
    fs::write(path, text).map_err(|err| OutputError::new(path, OutputErrorKind::Io(err)))
}

/// The `.hgrm` file names of a run's rows: `MODE-cN.hgrm`, with `-2`, `-3`, ... added when a
/// connection count repeats, so that no row overwrites another.
pub fn hgrm_file_names(mode: Mode, connections: &[u32]) -> Vec<String> {
    let mut seen: Vec<u32> = Vec::with_capacity(connections.len());
    connections
        .iter()
        .map(|&n| {
            seen.push(n);
            match seen.iter().filter(|&&m| m == n).count() {
                1 => format!("{mode}-c{n}.hgrm"),
                repeat => format!("{mode}-c{n}-{repeat}.hgrm"),
            }
        })
        .collect()
}

/// Writes one `.hgrm` file per row into `dir` (created if missing), named by
/// [`hgrm_file_names`]; returns their paths.
pub fn write_hgrm(
    dir: &Path,
    mode: Mode,
    results: &[RowResult],
) -> Result<Vec<PathBuf>, OutputError> {
    fs::create_dir_all(dir).map_err(|err| OutputError::new(dir, OutputErrorKind::Io(err)))?;
    let connections: Vec<u32> = results.iter().map(|r| r.connections).collect();
    let mut written = Vec::with_capacity(results.len());
    for (result, name) in results.iter().zip(hgrm_file_names(mode, &connections)) {
        let path = dir.join(name);
        fs::write(&path, hgrm_text(&result.histogram))
            .map_err(|err| OutputError::new(&path, OutputErrorKind::Io(err)))?;
        written.push(path);
    }
    Ok(written)
}

/// `histogram` (microseconds) in the text format of HdrHistogram's
/// `outputPercentileDistribution(out, 5, 1000.0)`: values in milliseconds, a
/// `Value Percentile TotalCount 1/(1-Percentile)` table, then the `#[Mean ...]`, `#[Max ...]`
/// and `#[Buckets ...]` footer. HdrHistogram's plotter and wrk2's output use the same layout.
pub fn hgrm_text(histogram: &Histogram<u64>) -> String {
    let digits = usize::from(SIGNIFICANT_DIGITS);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for point in distribution(histogram) {
        let value = point.value_us as f64 / US_PER_MS;
        if point.quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.digits$} {:>2.12} {:>10} {:>14.2}",
                point.quantile,
                point.total_count,
                1.0 / (1.0 - point.quantile)
            );
        } else {
            let _ = writeln!(
                out,
                "{value:>12.digits$} {:>2.12} {:>10}",
                point.quantile, point.total_count
            );
        }
    }
    let (mean, stdev) = if histogram.is_empty() {
        (0.0, 0.0)
    } else {
        (histogram.mean() / US_PER_MS, histogram.stdev() / US_PER_MS)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        histogram.max() as f64 / US_PER_MS,
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_bucket_count(SIGNIFICANT_DIGITS)
    );
    out
}

/// The sub-bucket count HdrHistogram derives from its precision: the power of two at or above
/// `2 * 10^digits` (2048 for 3 digits). The crate does not expose it.
fn sub_bucket_count(digits: u8) -> u64 {
    (2 * 10u64.pow(u32::from(digits))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Tally, new_histogram};

    fn sample() -> Histogram<u64> {
        let mut histogram = new_histogram().unwrap();
        // 1..=1000 µs once each, and one 50 ms outlier.
        for us in 1..=1000 {
            histogram.saturating_record(us);
        }
        histogram.saturating_record(50_000);
        histogram
    }

    #[test]
    fn hgrm_matches_hdrhistogram_layout() {
        let text = hgrm_text(&sample());
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        assert_eq!(
            lines.next().unwrap(),
            "       0.001 0.000000000000          1           1.00"
        );
        let body: Vec<&str> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        let median = body
            .iter()
            .find(|l| l.contains(" 0.500000000000 "))
            .unwrap();
        assert_eq!(
            median.split_whitespace().collect::<Vec<_>>(),
            ["0.501", "0.500000000000", "501", "2.00"]
        );
        let last: Vec<&str> = body.last().unwrap().split_whitespace().collect();
        assert_eq!(last, ["50.015", "1.000000000000", "1001"]);
        let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
        assert_eq!(footer.len(), 3);
        assert!(footer[1].starts_with("#[Max     =       50.015, Total count    =         1001]"));
        assert!(
            footer[2].ends_with("SubBuckets     =         2048]"),
            "{}",
            footer[2]
        );
        // Every body line parses as numbers, as plotters of .hgrm files expect.
        for line in &body {
            for field in line.split_whitespace() {
                field.parse::<f64>().unwrap();
            }
        }
    }

    #[test]
    fn hgrm_names_never_collide() {
        assert_eq!(
            hgrm_file_names(Mode::Mixed, &[1, 4, 1, 1]),
            [
                "mixed-c1.hgrm",
                "mixed-c4.hgrm",
                "mixed-c1-2.hgrm",
                "mixed-c1-3.hgrm"
            ]
        );
    }

    #[test]
    fn rows_summarise_and_tabulate() {
        let result = RowResult {
            connections: 4,
            histogram: sample(),
            tally: Tally {
                ok: 1001,
                timeouts: 2,
                ..Tally::default()
            },
            note: None,
        };
        let row = Row::new(Mode::Ping, &result, 2.0);
        assert_eq!(row.throughput, 500.5);
        let latency = row.latency_us.unwrap();
        assert_eq!((latency.p50, latency.p90, latency.max), (501, 901, 50_015));
        assert_eq!(row.distribution.first().unwrap().total_count, 1);
        assert_eq!(row.distribution.last().unwrap().quantile, 1.0);
        let line = table_row(&row);
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            [
                "4", "1001", "0", "2", "500.5", "0.501", "0.901", "0.991", "1.000", "50.015"
            ]
        );
        assert_eq!(
            table_header().split_whitespace().count(),
            15,
            "ten columns, each latency heading is two words"
        );

        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["latency_us"]["p99.9"], 1000);
        assert_eq!(json["mode"], "ping");

        let mut tally = Tally::default();
        tally.errors.connect = 1;
        let empty = RowResult::not_run(2, new_histogram().unwrap(), tally, "no lots".into());
        let row = Row::new(Mode::Avail, &empty, 1.0);
        assert!(row.latency_us.is_none() && row.distribution.is_empty());
        assert_eq!(row.errors, 1);
        assert!(table_row(&row).contains("note: no lots"));
        assert!(hgrm_text(&empty.histogram).contains("Total count    =            0]"));
    }
}
