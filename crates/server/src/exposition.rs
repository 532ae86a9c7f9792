//! What the server shows Prometheus besides the request counters the ports bump: values it
//! keeps anyway (connections, the lots' counts, the broker's counters), read when scraped.

use std::sync::Arc;

use broker::Broker;
use metrics::{Kind, Metrics, MetricsError};
use state::{LotSnapshot, ParkingState};

use crate::limits::Admission;

/// Each port's admission, which counts its open and refused connections.
pub(crate) struct Ports {
    pub(crate) rpc: Arc<Admission>,
    pub(crate) sensor: Arc<Admission>,
    pub(crate) pubsub: Arc<Admission>,
    /// Absent when the HTTP port is off.
    pub(crate) http: Option<Arc<Admission>>,
}

impl Ports {
    fn each(&self) -> Vec<(&'static str, &Arc<Admission>)> {
        let mut ports = vec![
            ("rpc", &self.rpc),
            ("sensor", &self.sensor),
            ("pubsub", &self.pubsub),
        ];
        ports.extend(self.http.as_ref().map(|http| ("http", http)));
        ports
    }
}

/// A metric read from each lot: its name, help and how to read it.
type LotGauge = (&'static str, &'static str, fn(&LotSnapshot) -> u32);

/// A metric read from the broker's counters: its name, help, kind and how to read it.
type BrokerValue = (
    &'static str,
    &'static str,
    Kind,
    fn(&broker::BrokerStats) -> f64,
);

/// Registers the sampled metrics.
pub(crate) fn register(
    metrics: &Metrics,
    state: &Arc<ParkingState>,
    broker: &Arc<Broker>,
    ports: Ports,
) -> Result<(), MetricsError> {
    let ports = Arc::new(ports);
    let per_port = |read: fn(&Admission) -> f64| {
        let ports = Arc::clone(&ports);
        move || {
            ports
                .each()
                .into_iter()
                .map(|(name, admission)| (name.to_owned(), read(admission)))
                .collect()
        }
    };
    metrics.sample(
        "parking_connections_open",
        "Connections open, by port (the HTTP port's event streams included).",
        Kind::Gauge,
        Some("port"),
        per_port(|admission| admission.open() as f64),
    )?;
    metrics.sample(
        "parking_connections_refused_total",
        "Connections refused at a connection limit (told BUSY), by port.",
        Kind::Counter,
        Some("port"),
        per_port(|admission| admission.refused() as f64),
    )?;
    let lot_gauges: [LotGauge; 4] = [
        ("parking_lot_free_spaces", "Free spaces, by lot.", |lot| {
            lot.free
        }),
        (
            "parking_lot_occupied_spaces",
            "Spaces the sensors report taken, by lot.",
            |lot| lot.occupied,
        ),
        (
            "parking_lot_reserved_spaces",
            "Live reservations, by lot.",
            |lot| lot.reserved,
        ),
        ("parking_lot_capacity_spaces", "Spaces, by lot.", |lot| {
            lot.capacity
        }),
    ];
    for (name, help, read) in lot_gauges {
        let state = Arc::clone(state);
        metrics.sample(name, help, Kind::Gauge, Some("lot"), move || {
            state
                .lots()
                .iter()
                .map(|lot| (lot.id.to_string(), f64::from(read(lot))))
                .collect()
        })?;
    }
    let broker_counters: [BrokerValue; 5] = [
        (
            "parking_changes_published_total",
            "Changes of a lot's free count published.",
            Kind::Counter,
            |stats| stats.changes_published as f64,
        ),
        (
            "parking_events_published_total",
            "Events queued for subscribers (one per subscriber per change it follows).",
            Kind::Counter,
            |stats| stats.events_published as f64,
        ),
        (
            "parking_events_dropped_total",
            "Events dropped because a subscriber's queue was full.",
            Kind::Counter,
            |stats| stats.events_dropped as f64,
        ),
        (
            "parking_slow_subscriber_disconnects_total",
            "Subscribers and event streams disconnected for not keeping up.",
            Kind::Counter,
            |stats| stats.slow_disconnects as f64,
        ),
        (
            "parking_pubsub_connections",
            "Open connections on the pub/sub port, subscribed or not.",
            Kind::Gauge,
            |stats| stats.connections as f64,
        ),
    ];
    for (name, help, kind, read) in broker_counters {
        let broker = Arc::clone(broker);
        metrics.sample(name, help, kind, None, move || {
            vec![(String::new(), read(&broker.stats()))]
        })?;
    }
    let broker = Arc::clone(broker);
    metrics.sample(
        "parking_subscribers",
        "Subscribers, by kind: pub/sub port connections and HTTP event streams.",
        Kind::Gauge,
        Some("kind"),
        move || {
            let stats = broker.stats();
            vec![
                ("pubsub".to_owned(), stats.subscribers as f64),
                ("event_stream".to_owned(), stats.streams as f64),
            ]
        },
    )?;
    Ok(())
}
