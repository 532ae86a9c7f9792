//! Running one table row: one thread per connection, each with its own histogram and counters,
//! merged when the row ends.
//!
//! Per request a connection does no allocation (JSON mode), no logging and no locking: it
//! borrows the request's strings from the shared [`Workload`], encodes into the client's reused
//! buffer, reads the clock once on each side of the exchange and records into its own
//! histogram. The only shared write is a relaxed store of its reply count, read by the
//! progress line.
//!
//! Every request sent inside the recorded window ends in exactly one of three ways: a recorded
//! latency, an error, or a timeout. A failed connection attempt counts as one error. After a
//! failure other than an error reply the connection's state is unknown (a late reply would be
//! taken for the next one), so the requests still in flight are counted as failed the same way
//! and the connection is made again, with a backoff when nothing got through. In open-loop
//! mode the requests that fell due while a connection was down are counted as failed too, so
//! `requests + errors + timeouts` stays close to rate × duration however the server behaves.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use client::{Access, Backoff, ClientError, Endpoints, ParkingClient};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::pacing::Pacer;
use crate::workload::{Op, OpStream, Workload};

/// Largest latency the histograms track, in microseconds (one hour). Larger values are
/// recorded as this one (saturating) rather than refused; no run waits that long for a reply.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits the histograms keep.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// First wait after a failed connection attempt (or a connection that failed before any
/// reply), doubled per failure up to [`RECONNECT_MAX`]: short enough to notice a restarted
/// server at once, long enough not to spin against a dead one.
const RECONNECT_INITIAL: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// How often the progress line (and the wait for the connections to finish) wakes up.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// What every row of a run shares.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The servers' RPC ports; connection `i` starts with the `i`th, so connections spread
    /// over several nodes.
    pub target: Endpoints,
    /// TLS and the token each connection authenticates with (once, when it connects).
    pub access: Access,
    /// Requests in flight per connection (at least 1).
    pub pipeline: u32,
    /// Total requests per second in open-loop mode; `None` for closed loop.
    pub rate: Option<f64>,
    /// Unrecorded time before the recorded window.
    pub warmup: Duration,
    /// Length of the recorded window.
    pub duration: Duration,
    /// Connect timeout and per-call socket timeout.
    pub timeout: Duration,
    /// Whether to draw a progress line on stderr (only ever when it is a terminal).
    pub progress: bool,
}

/// A fresh, empty latency histogram with the run's bounds.
pub fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
}

/// Failures by kind, as counted for a row's `errors` column. Timeouts are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Connection attempts that failed (refused, unreachable, connect timeout).
    pub connect: u64,
    /// Requests lost because the server closed or reset the connection.
    pub closed: u64,
    /// Requests lost to other socket errors.
    pub io: u64,
    /// Error replies (`{"error": ...}` or `ERR ...`).
    pub server: u64,
    /// Replies that are malformed, out of order, or of the wrong type for the request.
    pub protocol: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect + self.closed + self.io + self.server + self.protocol
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.closed += other.closed;
        self.io += other.io;
        self.server += other.server;
        self.protocol += other.protocol;
    }
}

/// A row's counters (recorded window only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests answered correctly; each has a latency in the histogram.
    pub ok: u64,
    /// Failures other than timeouts.
    pub errors: ErrorCounts,
    /// Requests whose reply did not come within the timeout.
    pub timeouts: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.errors.add(&other.errors);
        self.timeouts += other.timeouts;
    }
}

/// The outcome of one row.
#[derive(Debug, Clone)]
pub struct RowResult {
    /// Connections the row ran with.
    pub connections: u32,
    /// Every recorded latency, in microseconds.
    pub histogram: Histogram<u64>,
    /// The row's counters.
    pub tally: Tally,
    /// Why the row did not run as asked, if it did not.
    pub note: Option<String>,
}

impl RowResult {
    /// A row that could not run at all, with the failure that stopped it.
    pub fn not_run(
        connections: u32,
        histogram: Histogram<u64>,
        tally: Tally,
        note: String,
    ) -> Self {
        RowResult {
            connections,
            histogram,
            tally,
            note: Some(note),
        }
    }

    /// Whether anything went wrong in this row.
    pub fn failed(&self) -> bool {
        self.tally.errors.total() > 0 || self.tally.timeouts > 0 || self.note.is_some()
    }
}

/// Why a failure ended a connection; decides which counter its requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Timeout,
    Connect,
    Closed,
    Io,
    Protocol,
}

/// The counters of one failed call: one timeout or one error of the call's kind, as a row
/// that could not start (its `getLots` failed) reports it.
pub fn failed_call(err: &ClientError) -> Tally {
    let mut tally = Tally::default();
    match err {
        ClientError::Server(_) => tally.errors.server += 1,
        other => match Failure::from(other) {
            Failure::Timeout => tally.timeouts += 1,
            Failure::Connect => tally.errors.connect += 1,
            Failure::Closed => tally.errors.closed += 1,
            Failure::Io => tally.errors.io += 1,
            Failure::Protocol => tally.errors.protocol += 1,
        },
    }
    tally
}

impl From<&ClientError> for Failure {
    fn from(err: &ClientError) -> Self {
        match err {
            ClientError::Timeout => Failure::Timeout,
            ClientError::Connect { .. } => Failure::Connect,
            ClientError::Closed => Failure::Closed,
            ClientError::Io(_) => Failure::Io,
            // An error reply is handled where it is read; as a connection failure it can only
            // mean the server refused the connection outright.
            ClientError::Server(_) | ClientError::Protocol(_) => Failure::Protocol,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::Timeout => "timeout",
            Failure::Connect => "connect",
            Failure::Closed => "closed",
            Failure::Io => "i/o",
            Failure::Protocol => "protocol",
        })
    }
}

/// One request on its way: what it was, its JSON `rpcId`, and when it was (meant to be) sent.
#[derive(Debug, Clone, Copy)]
struct Pending {
    op: Op,
    rpc_id: Option<u32>,
    intended: Instant,
}

/// The clock marks every connection of a row works to.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    record_from: Instant,
    end: Instant,
}

impl Window {
    /// Whether a request meant to be sent at `intended` counts in the row.
    fn records(&self, intended: Instant) -> bool {
        (self.record_from..self.end).contains(&intended)
    }
}

/// A per-connection reply counter for the progress line, on its own cache line so that the
/// connections' stores do not contend.
#[derive(Debug, Default)]
#[repr(align(64))]
struct ProgressCounter(AtomicU64);

/// A connection's latency histogram, fed one latency at a time.
///
/// Equal latencies in a row are added as one count when the value changes: the replies of a
/// pipelined batch, read together, mostly share their microsecond, and recording each cost
/// load-test about as much as reading the reply, on the cores the server under test uses.
/// The histogram is the same as recording every latency on its own.
struct Latencies {
    histogram: Histogram<u64>,
    /// The latency last recorded and how many times in a row, not yet in `histogram`.
    last: u64,
    repeats: u64,
}

impl Latencies {
    fn new(histogram: Histogram<u64>) -> Self {
        Latencies {
            histogram,
            last: 0,
            repeats: 0,
        }
    }

    /// Records one latency in microseconds (saturating at the histogram's bounds).
    fn record(&mut self, micros: u64) {
        if self.repeats > 0 && micros == self.last {
            self.repeats += 1;
            return;
        }
        self.flush();
        self.last = micros;
        self.repeats = 1;
    }

    fn flush(&mut self) {
        if self.repeats > 0 {
            self.histogram.saturating_record_n(self.last, self.repeats);
            self.repeats = 0;
        }
    }

    /// Every latency recorded.
    fn into_histogram(mut self) -> Histogram<u64> {
        self.flush();
        self.histogram
    }
}

/// One connection's thread state.
struct Connection {
    index: u32,
    config: RunConfig,
    workload: Arc<Workload>,
    ops: OpStream,
    window: Window,
    latencies: Latencies,
    tally: Tally,
    in_flight: VecDeque<Pending>,
    pacer: Option<Pacer>,
    /// Replies read so far (warmup included), mirrored into `progress`.
    replies: u64,
    progress: Arc<ProgressCounter>,
}

impl Connection {
    fn run(mut self) -> (Histogram<u64>, Tally) {
        let mut backoff = Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX);
        // Why the last connection (or attempt) failed, until a new one is made.
        let mut broken: Option<Failure> = None;
        loop {
            let now = Instant::now();
            if now >= self.window.end {
                break;
            }
            let mut client = match ParkingClient::connect_with(
                &self.config.target.rotated(self.index as usize),
                self.config.timeout,
                &self.config.access,
            ) {
                Ok(client) => client,
                Err(err) => {
                    let failure = Failure::from(&err);
                    broken = Some(failure);
                    if now >= self.window.record_from {
                        self.count_failure(failure, 1);
                    }
                    self.pause(backoff.next_delay());
                    continue;
                }
            };
            if let Some(failure) = broken.take() {
                self.skip_missed_slots(failure, Instant::now());
            }
            let before = self.tally.ok;
            let outcome = self.session(&mut client);
            drop(client);
            match outcome {
                Ok(()) => break,
                Err(failure) => {
                    log::debug!("connection {}: {failure} failure", self.index);
                    broken = Some(failure);
                    if self.tally.ok > before {
                        backoff.reset();
                    } else {
                        self.pause(backoff.next_delay());
                    }
                }
            }
        }
        if let Some(failure) = broken {
            // Down until the end: nothing more was sent.
            self.skip_missed_slots(failure, self.window.end);
        }
        (self.latencies.into_histogram(), self.tally)
    }

    /// Open loop: gives up the slots that fell due while the connection was down, counting the
    /// recorded ones as failed like the failure that brought it down. (A closed loop has no
    /// schedule; it simply sends nothing meanwhile.)
    fn skip_missed_slots(&mut self, failure: Failure, now: Instant) {
        if let Some(pacer) = &mut self.pacer {
            let skipped = pacer.skip_to(now);
            let missed = pacer.slots_between(skipped, self.window.record_from, self.window.end);
            self.count_failure(failure, missed);
        }
    }

    /// Sleeps for `delay`, but not past the end of the row.
    fn pause(&self, delay: Duration) {
        let left = self.window.end.saturating_duration_since(Instant::now());
        thread::sleep(delay.min(left));
    }

    /// Sends and receives on one connection until the row ends (`Ok`) or the connection fails;
    /// on failure every request in flight has been counted.
    fn session(&mut self, client: &mut ParkingClient) -> Result<(), Failure> {
        self.in_flight.clear();
        loop {
            self.fill(client)?;
            let Some(pending) = self.in_flight.pop_front() else {
                return Ok(());
            };
            self.receive(client, pending)?;
            // Replies already buffered are taken before refilling, so that a pipelined
            // connection sends its next batch with one write instead of one per request.
            while client.reply_ready() {
                let Some(pending) = self.in_flight.pop_front() else {
                    break;
                };
                self.receive(client, pending)?;
            }
        }
    }

    /// Sends until the pipeline is full, the row's sending time is over, or (open loop) the
    /// next request is not due yet while others are still in flight; everything queued goes
    /// out with one write.
    fn fill(&mut self, client: &mut ParkingClient) -> Result<(), Failure> {
        let queued = self.queue_requests(client);
        let flushed = client.flush().map_err(|err| Failure::from(&err));
        match (queued, flushed) {
            (Err(failure), _) | (Ok(()), Err(failure)) => {
                self.lose_in_flight(failure);
                Err(failure)
            }
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Queues requests until the pipeline is full (see [`Connection::fill`]).
    fn queue_requests(&mut self, client: &mut ParkingClient) -> Result<(), Failure> {
        let pipeline = self.config.pipeline as usize;
        while self.in_flight.len() < pipeline {
            let now = Instant::now();
            let intended = match &mut self.pacer {
                None if now < self.window.end => now,
                Some(pacer) if pacer.next_due() < self.window.end => {
                    let due = pacer.next_due();
                    if due > now {
                        if !self.in_flight.is_empty() {
                            // A reply is awaited; a late send is charged to the latency.
                            return Ok(());
                        }
                        thread::sleep(due - now);
                    }
                    pacer.advance()
                }
                // The row is over; only a reserve-mode pair is completed (unrecorded).
                _ if self.ops.owes_cancel() => now,
                _ => return Ok(()),
            };
            let op = self.ops.next_op();
            let request = self.workload.request(op);
            let queued = if self.workload.mode().is_text() {
                client.queue_text(&request).map(|()| None)
            } else {
                client.queue(&request).map(Some)
            };
            let pending = Pending {
                op,
                rpc_id: None,
                intended,
            };
            match queued {
                Ok(rpc_id) => self.in_flight.push_back(Pending { rpc_id, ..pending }),
                Err(err) => {
                    self.in_flight.push_back(pending);
                    return Err(Failure::from(&err));
                }
            }
        }
        Ok(())
    }

    /// Reads the reply to `pending` (the oldest request in flight) and records it.
    fn receive(&mut self, client: &mut ParkingClient, pending: Pending) -> Result<(), Failure> {
        let verdict = if self.workload.mode().is_text() {
            match client.recv_text() {
                Ok(text) => Ok(text_verdict(pending.op, text)),
                Err(err) => Err(Failure::from(&err)),
            }
        } else {
            match client.recv() {
                Ok(reply) => Ok(json_verdict(pending, reply.rpc_id(), reply.result())),
                Err(err) => Err(Failure::from(&err)),
            }
        };
        let now = Instant::now();
        self.replies += 1;
        self.progress.0.store(self.replies, Ordering::Relaxed);
        let recorded = self.window.records(pending.intended);
        match verdict {
            Ok(Verdict::Good) => {
                if recorded {
                    let micros = now.saturating_duration_since(pending.intended).as_micros();
                    self.latencies
                        .record(u64::try_from(micros).unwrap_or(u64::MAX));
                    self.tally.ok += 1;
                }
                Ok(())
            }
            Ok(Verdict::ErrorReply) => {
                if recorded {
                    self.tally.errors.server += 1;
                }
                Ok(())
            }
            Ok(Verdict::Unexpected) => {
                if recorded {
                    self.tally.errors.protocol += 1;
                }
                Ok(())
            }
            Ok(Verdict::OutOfStep) | Err(_) => {
                let failure = match verdict {
                    Err(failure) => failure,
                    _ => Failure::Protocol,
                };
                self.in_flight.push_front(pending);
                self.lose_in_flight(failure);
                Err(failure)
            }
        }
    }

    /// Counts every request still in flight (sent in the recorded window) as failed.
    fn lose_in_flight(&mut self, failure: Failure) {
        let window = self.window;
        let lost = self
            .in_flight
            .drain(..)
            .filter(|pending| window.records(pending.intended))
            .count() as u64;
        self.count_failure(failure, lost);
    }

    fn count_failure(&mut self, failure: Failure, n: u64) {
        let errors = &mut self.tally.errors;
        match failure {
            Failure::Timeout => self.tally.timeouts += n,
            Failure::Connect => errors.connect += n,
            Failure::Closed => errors.closed += n,
            Failure::Io => errors.io += n,
            Failure::Protocol => errors.protocol += n,
        }
    }
}

/// What a reply that arrived says about its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The right kind of answer.
    Good,
    /// An error reply; the connection is still in step.
    ErrorReply,
    /// A well-framed reply of the wrong shape; the connection is still in step.
    Unexpected,
    /// A reply to another request: the connection is out of step and must be dropped.
    OutOfStep,
}

fn json_verdict(
    pending: Pending,
    rpc_id: Option<u32>,
    result: Result<&serde_json::value::RawValue, &framing::rpc::WireError>,
) -> Verdict {
    match (rpc_id, result) {
        // A refusal without an id (BUSY) answers whatever was first in line.
        (None, Err(_)) => Verdict::ErrorReply,
        (Some(id), result) if Some(id) == pending.rpc_id => match result {
            Ok(raw) if pending.op.accepts_json(raw.get()) => Verdict::Good,
            Ok(_) => Verdict::Unexpected,
            Err(_) => Verdict::ErrorReply,
        },
        _ => Verdict::OutOfStep,
    }
}

fn text_verdict(op: Op, reply: &str) -> Verdict {
    if op.accepts_text(reply) {
        Verdict::Good
    } else if reply.starts_with("ERR ") {
        Verdict::ErrorReply
    } else {
        Verdict::Unexpected
    }
}

/// Runs one row: `connections` connections for the warmup and the recorded window, then
/// merges their histograms and counters.
///
/// Never fails because of the server: whatever goes wrong on the network is counted in the
/// row. A connection thread that cannot be started is counted as a connect error and noted.
pub fn run_row(
    config: &RunConfig,
    workload: &Arc<Workload>,
    connections: u32,
    template: &Histogram<u64>,
) -> RowResult {
    let start = Instant::now();
    let record_from = start + config.warmup;
    let window = Window {
        start,
        record_from,
        end: record_from + config.duration,
    };
    let mut threads = Vec::with_capacity(connections as usize);
    let mut counters = Vec::with_capacity(connections as usize);
    let mut merged = template.clone();
    let mut tally = Tally::default();
    let mut notes = Vec::new();
    for index in 0..connections {
        let progress = Arc::new(ProgressCounter::default());
        let connection = Connection {
            index,
            config: config.clone(),
            workload: Arc::clone(workload),
            ops: workload.ops(index),
            window,
            latencies: Latencies::new(template.clone()),
            tally: Tally::default(),
            in_flight: VecDeque::with_capacity(config.pipeline as usize),
            pacer: config
                .rate
                .map(|rate| Pacer::new(start, rate, connections, index)),
            replies: 0,
            progress: Arc::clone(&progress),
        };
        let spawned = thread::Builder::new()
            .name(format!("conn-{index}"))
            .spawn(move || connection.run());
        match spawned {
            Ok(handle) => {
                threads.push(handle);
                counters.push(progress);
            }
            Err(err) => {
                tally.errors.connect += 1;
                notes.push(format!("cannot start connection thread {index}: {err}"));
            }
        }
    }

    let bar = progress_bar(config, connections, window);
    let mut last = (Instant::now(), 0u64);
    while !threads.iter().all(thread::JoinHandle::is_finished) {
        thread::sleep(PROGRESS_TICK);
        let now = Instant::now();
        let replies: u64 = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        let rate = (replies - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, replies);
        let (phase, elapsed, total) = if now < window.record_from {
            (
                "warmup",
                now.saturating_duration_since(start),
                config.warmup,
            )
        } else {
            (
                "run",
                now.saturating_duration_since(record_from),
                config.duration,
            )
        };
        let position = now.saturating_duration_since(start).as_millis();
        bar.set_position(position.try_into().unwrap_or(u64::MAX));
        bar.set_message(format!(
            "{phase} {:.1}/{:.1}s | {replies} replies | {rate:.0} req/s",
            elapsed.as_secs_f64(),
            total.as_secs_f64()
        ));
    }
    bar.finish_and_clear();

    for (index, handle) in threads.into_iter().enumerate() {
        match handle.join() {
            Ok((histogram, counts)) => {
                tally.add(&counts);
                // Every histogram is a clone of `template`, so the bounds always match.
                if let Err(err) = merged.add(&histogram) {
                    notes.push(format!(
                        "connection {index}: cannot merge its histogram: {err}"
                    ));
                }
            }
            Err(_) => {
                tally.errors.io += 1;
                notes.push(format!("connection thread {index} panicked"));
            }
        }
    }
    if tally == Tally::default() && !config.duration.is_zero() {
        // Nothing was sent in the window and nothing failed: not a measurement at all.
        notes.push(
            "no request was sent in the recorded window (the load generator did not get to run; \
             is the machine overloaded?)"
                .to_owned(),
        );
    }
    RowResult {
        connections,
        histogram: merged,
        tally,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// The progress line: a bar over warmup plus duration, drawn only when asked and when stderr
/// is a terminal (indicatif hides itself otherwise).
fn progress_bar(config: &RunConfig, connections: u32, window: Window) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let total = window.end.saturating_duration_since(window.start);
    let bar = ProgressBar::with_draw_target(
        Some(total.as_millis().try_into().unwrap_or(u64::MAX)),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:20}] {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("{connections} conn"));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_make_the_histogram_of_every_latency_recorded_on_its_own() {
        // Runs, single values, a run at the end, and values past both bounds.
        let recorded = [
            5,
            5,
            5,
            7,
            5,
            0,
            0,
            MAX_LATENCY_US * 2,
            MAX_LATENCY_US * 2,
            9,
            9,
            1,
            1,
        ];
        let mut one_by_one = new_histogram().unwrap();
        let mut latencies = Latencies::new(new_histogram().unwrap());
        for &micros in &recorded {
            one_by_one.saturating_record(micros);
            latencies.record(micros);
        }
        let histogram = latencies.into_histogram();
        assert_eq!(histogram.len(), recorded.len() as u64);
        assert_eq!(histogram, one_by_one);
        assert_eq!(histogram.count_at(5), 4);
        assert_eq!(histogram.max(), one_by_one.max());
        assert!(
            Latencies::new(new_histogram().unwrap())
                .into_histogram()
                .is_empty()
        );
    }
}
