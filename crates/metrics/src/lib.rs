//! The parking server's Prometheus metrics, rendered by the HTTP port's `GET /metrics`.
//!
//! Two kinds of value, so that no request ever takes a lock for a metric:
//! - **Counted on the hot path.** [`RequestMetrics`] holds, for one port, a counter per
//!   (method, outcome) and a latency histogram per method, every label resolved once at
//!   start; recording a request is a few atomic additions (the `prometheus` crate's
//!   counters and histograms are lock-free). [`LotCounters`] does the same per lot.
//! - **Sampled at scrape time.** What the server already keeps (open connections, the lots'
//!   counts, the broker's counters) is read when Prometheus asks, through a closure given to
//!   [`Metrics::sample`]; nothing is kept twice. The process's RSS, threads and open files
//!   come from the `prometheus` crate's process collector.
//!
//! The text exposition is the `prometheus` crate's `TextEncoder`: nothing here writes the
//! format by hand.
//!
//! # Layout
//! Everything is in this file.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Upper bounds of the request latency buckets, in seconds: from the 10 us a request takes
/// on an idle server to the second that means something is badly wrong.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1, 0.25, 1.0,
];

/// A metric could not be registered (two with the same name: a bug, reported at start).
#[derive(Debug)]
pub struct MetricsError(prometheus::Error);

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot register a metric: {}", self.0)
    }
}

impl std::error::Error for MetricsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<prometheus::Error> for MetricsError {
    fn from(error: prometheus::Error) -> Self {
        MetricsError(error)
    }
}

/// How a request ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as asked.
    Ok,
    /// Well-formed, and answered no: the lot is full, the plate already holds a
    /// reservation, there was none to cancel.
    Refused,
    /// Malformed, or about something that does not exist (unknown lot, bad plate).
    Invalid,
    /// The change could not be made durable.
    Unavailable,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Invalid,
        Outcome::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Invalid => "invalid",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// Whether a sampled value only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One port's request counters and latency histograms, every label resolved at start.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    /// `methods × Outcome::ALL`, method-major.
    counted: Vec<IntCounter>,
    latency: Vec<prometheus::Histogram>,
    /// False with `"metrics": false`: nothing is timed or counted.
    on: bool,
}

impl RequestMetrics {
    /// When a request started, for [`RequestMetrics::record_since`]; `None` when metrics
    /// are off, so that a server without them does not even read the clock.
    pub fn start(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }

    /// Records one request of method number `method` that began at `started` (from
    /// [`RequestMetrics::start`]; `None`: nothing to record).
    pub fn record_since(&self, method: usize, outcome: Outcome, started: Option<Instant>) {
        if let Some(started) = started {
            self.record(method, outcome, started.elapsed());
        }
    }

    /// Records one request of method number `method` (its index in the list given to
    /// [`Metrics::requests`]). Atomic additions only.
    pub fn record(&self, method: usize, outcome: Outcome, took: Duration) {
        let outcomes = Outcome::ALL.len();
        if let Some(counter) = self.counted.get(method * outcomes + outcome as usize) {
            counter.inc();
        }
        if let Some(histogram) = self.latency.get(method) {
            histogram.observe(took.as_secs_f64());
        }
    }
}

/// A counter per lot, resolved at start.
#[derive(Debug, Clone)]
pub struct LotCounters {
    by_lot: HashMap<String, IntCounter>,
}

impl LotCounters {
    /// Counts one for `lot`; a lot it was not made for is not counted.
    pub fn inc(&self, lot: &str) {
        if let Some(counter) = self.by_lot.get(lot) {
            counter.inc();
        }
    }
}

/// Values read by a closure at scrape time, as one metric family.
struct Sampled {
    desc: Desc,
    kind: Kind,
    label: Option<&'static str>,
    sample: Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>,
}

impl Collector for Sampled {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(match self.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
        });
        let metrics = (self.sample)()
            .into_iter()
            .map(|(label_value, value)| {
                let mut metric = proto::Metric::default();
                if let Some(name) = self.label {
                    let mut pair = proto::LabelPair::default();
                    pair.set_name(name.to_owned());
                    pair.set_value(label_value);
                    metric.set_label(vec![pair]);
                }
                match self.kind {
                    Kind::Counter => {
                        let mut counter = proto::Counter::default();
                        counter.set_value(value);
                        metric.set_counter(counter);
                    }
                    Kind::Gauge => {
                        let mut gauge = proto::Gauge::default();
                        gauge.set_value(value);
                        metric.set_gauge(gauge);
                    }
                }
                metric
            })
            .collect();
        family.set_metric(metrics);
        vec![family]
    }
}

/// The server's metric registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// False with `"metrics": false`: [`Metrics::requests`] hands out metrics that neither
    /// time nor count, so that a benchmark can measure what counting costs.
    count_requests: bool,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with the request metrics of every port and the process's own.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "parking_requests_total",
                "Requests answered, by port, method and outcome.",
            ),
            &["port", "method", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "parking_request_duration_seconds",
                "Time from a complete request to its reply, by port and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["port", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            count_requests: true,
        })
    }

    /// The same registry, with request counting and timing off (the sampled values are
    /// still rendered): what `"metrics": false` sets, to measure what counting costs.
    pub fn without_request_counts(mut self) -> Self {
        self.count_requests = false;
        self
    }

    /// The request metrics of `port`, whose methods are `methods` (in the order
    /// [`RequestMetrics::record`] numbers them).
    pub fn requests(&self, port: &str, methods: &[&str]) -> RequestMetrics {
        if !self.count_requests {
            return RequestMetrics {
                counted: Vec::new(),
                latency: Vec::new(),
                on: false,
            };
        }
        let mut counted = Vec::with_capacity(methods.len() * Outcome::ALL.len());
        let mut latency = Vec::with_capacity(methods.len());
        for method in methods {
            for outcome in Outcome::ALL {
                counted.push(
                    self.requests
                        .with_label_values(&[port, method, outcome.label()]),
                );
            }
            latency.push(self.latency.with_label_values(&[port, method]));
        }
        RequestMetrics {
            counted,
            latency,
            on: self.count_requests,
        }
    }

    /// A counter `name` with a `lot` label for each of `lots`.
    pub fn lot_counters<'a>(
        &self,
        name: &str,
        help: &str,
        lots: impl IntoIterator<Item = &'a str>,
    ) -> Result<LotCounters, MetricsError> {
        let vec = IntCounterVec::new(Opts::new(name, help), &["lot"])?;
        self.registry.register(Box::new(vec.clone()))?;
        let by_lot = lots
            .into_iter()
            .map(|lot| (lot.to_owned(), vec.with_label_values(&[lot])))
            .collect();
        Ok(LotCounters { by_lot })
    }

    /// A metric `name` whose values `sample` reads at scrape time: one value, or with a
    /// `label`, one per `(label value, value)` pair it returns (the label value is ignored
    /// without one).
    pub fn sample(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        label: Option<&'static str>,
        sample: impl Fn() -> Vec<(String, f64)> + Send + Sync + 'static,
    ) -> Result<(), MetricsError> {
        let labels = label.iter().map(|label| (*label).to_owned()).collect();
        let desc = Desc::new(name.to_owned(), help.to_owned(), labels, HashMap::new())?;
        self.registry.register(Box::new(Sampled {
            desc,
            kind,
            label,
            sample: Box::new(sample),
        }))?;
        Ok(())
    }

    /// Appends every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self, out: &mut Vec<u8>) {
        let families = self.registry.gather();
        if let Err(error) = prometheus::TextEncoder::new().encode(&families, out) {
            // Only a metric the encoder finds malformed; say so rather than serve half.
            out.extend_from_slice(format!("# metrics incomplete: {error}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &Metrics) -> String {
        let mut out = Vec::new();
        metrics.render(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn requests_are_counted_by_method_and_outcome() {
        let metrics = Metrics::new().unwrap();
        let rpc = metrics.requests("rpc", &["ping", "reserve"]);
        rpc.record(1, Outcome::Refused, Duration::from_micros(30));
        rpc.record(1, Outcome::Refused, Duration::from_micros(30));
        rpc.record(0, Outcome::Ok, Duration::from_millis(2));
        rpc.record(7, Outcome::Ok, Duration::ZERO);
        let text = rendered(&metrics);
        for line in [
            r#"parking_requests_total{method="reserve",outcome="refused",port="rpc"} 2"#,
            r#"parking_requests_total{method="ping",outcome="ok",port="rpc"} 1"#,
            r#"parking_requests_total{method="ping",outcome="invalid",port="rpc"} 0"#,
            r#"parking_request_duration_seconds_bucket{method="reserve",port="rpc",le="0.00005"} 2"#,
            r#"parking_request_duration_seconds_bucket{method="ping",port="rpc",le="0.001"} 0"#,
            r#"parking_request_duration_seconds_count{method="ping",port="rpc"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn sampled_values_are_read_when_rendered() {
        let metrics = Metrics::new().unwrap();
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = std::sync::Arc::clone(&reads);
        metrics
            .sample(
                "parking_lot_free_spaces",
                "Free spaces.",
                Kind::Gauge,
                Some("lot"),
                move || {
                    let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    vec![("A".into(), 10.0 + n as f64), ("B".into(), 5.0)]
                },
            )
            .unwrap();
        metrics
            .sample(
                "parking_events_total",
                "Events.",
                Kind::Counter,
                None,
                || vec![(String::new(), 3.0)],
            )
            .unwrap();
        let counters = metrics
            .lot_counters("parking_sensor_lines_total", "Lines.", ["A", "B"])
            .unwrap();
        counters.inc("A");
        counters.inc("Z");
        let text = rendered(&metrics);
        assert!(
            text.contains("# TYPE parking_lot_free_spaces gauge"),
            "{text}"
        );
        assert!(
            text.contains(r#"parking_lot_free_spaces{lot="A"} 10"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE parking_events_total counter\nparking_events_total 3"),
            "{text}"
        );
        assert!(
            text.contains(r#"parking_sensor_lines_total{lot="A"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"parking_sensor_lines_total{lot="B"} 0"#),
            "{text}"
        );
        assert!(rendered(&metrics).contains(r#"parking_lot_free_spaces{lot="A"} 11"#));
        #[cfg(target_os = "linux")]
        for process in [
            "process_resident_memory_bytes",
            "process_threads",
            "process_open_fds",
        ] {
            assert!(text.contains(process), "{process} missing");
        }
    }

    #[test]
    fn a_name_registered_twice_is_an_error() {
        let metrics = Metrics::new().unwrap();
        assert!(metrics.lot_counters("parking_x_total", "x", ["A"]).is_ok());
        assert!(metrics.lot_counters("parking_x_total", "x", ["A"]).is_err());
    }
}
