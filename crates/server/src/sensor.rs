//! The sensor port: one command line in, one reply line out, in order.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use auth::{Action, AuthFailure, Denied, Session};

use framing::line::{self, Decoded};
use framing::sensor::{
    self, MAX_LINE_LEN, Passage, SensorCommand, SensorError, SensorErrorCode, SensorReply,
};
use metrics::{LotCounters, Outcome, RequestMetrics};
use protocol::{Protocol, Step};
use state::{Plate, StateError, UnknownLot, shown};
use store::{Feature, Store};
use warn_limit::peer_warn;

/// The names the sensor port's lines are counted under, in [`Method`] order.
pub(crate) const METRIC_METHODS: [&str; 6] = ["UPDATE", "ENTER", "EXIT", "PING", "AUTH", "invalid"];

/// What a line asked for, as its metric is labelled.
#[derive(Debug, Clone, Copy)]
enum Method {
    Update,
    Enter,
    Exit,
    Ping,
    Auth,
    Invalid,
}

/// Applies sensor reports through the store.
pub struct SensorProtocol {
    store: Arc<dyn Store>,
    updates: AtomicU64,
    /// Counted under [`METRIC_METHODS`].
    metrics: RequestMetrics,
    /// `UPDATE` lines per lot.
    lines_by_lot: LotCounters,
}

impl SensorProtocol {
    /// Serves `store`, counting lines in `metrics` and `lines_by_lot`.
    pub fn new(store: Arc<dyn Store>, metrics: RequestMetrics, lines_by_lot: LotCounters) -> Self {
        SensorProtocol {
            store,
            updates: AtomicU64::new(0),
            metrics,
            lines_by_lot,
        }
    }

    /// Lines answered so far (errors included).
    pub fn lines(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Carries out one command as `session` allows; a failed `AUTH` that closes the
    /// connection sets `close`.
    fn execute(
        &self,
        command: SensorCommand<'_>,
        peer: SocketAddr,
        session: &mut Session,
        close: &mut bool,
    ) -> Result<SensorReply, SensorError> {
        let denied = |denied: Denied| {
            let code = match denied {
                Denied::Unauthenticated => SensorErrorCode::Unauthorized,
                Denied::Forbidden { .. } => SensorErrorCode::Forbidden,
            };
            SensorError::new(code, denied.to_string())
        };
        let refused = |error| match error {
            StateError::UnknownLot(UnknownLot(lot)) => SensorError::new(
                SensorErrorCode::UnknownLot,
                format!("no lot with id {}", shown(&lot)),
            ),
            StateError::Unavailable(why) => {
                SensorError::new(SensorErrorCode::Unavailable, why.to_string())
            }
        };
        let (lot, change) = match command {
            SensorCommand::Ping => return Ok(SensorReply::Pong),
            SensorCommand::Auth { token } => {
                return match session.authenticate(token.expose(), "sensor", peer, Instant::now()) {
                    Ok(identity) => Ok(SensorReply::Authenticated {
                        id: identity.id().as_str().to_owned(),
                    }),
                    Err(failure) => {
                        *close = failure.closes();
                        let code = match failure {
                            AuthFailure::NotConfigured => SensorErrorCode::UnknownCommand,
                            _ => SensorErrorCode::Unauthorized,
                        };
                        Err(SensorError::new(code, failure.to_string()))
                    }
                };
            }
            SensorCommand::Update { lot, change } => (lot, change),
            SensorCommand::Gate {
                lot,
                plate,
                passage,
            } => {
                // Access first: a peer that may not pass this lot's gate learns nothing of
                // the lot or the plate.
                session.check(Action::PassGate { lot }).map_err(denied)?;
                self.store.require(Feature::Gates).map_err(|refusal| {
                    SensorError::new(SensorErrorCode::Unavailable, refusal.to_string())
                })?;
                let plate = Plate::parse(plate)
                    .map_err(|err| SensorError::new(SensorErrorCode::BadPlate, err.to_string()))?;
                let outcome = self.store.pass_gate(lot, plate, passage).map_err(refused)?;
                if outcome.consumed_reservation {
                    log::debug!("sensor {peer}: {plate} entered {lot} on its reservation");
                }
                return Ok(SensorReply::Passed {
                    free: outcome.free,
                    booking: outcome.booking.map(|id| id.to_string()),
                });
            }
        };
        session
            .check(Action::UpdateOccupancy { lot })
            .map_err(denied)?;
        let update = self.store.update_occupancy(lot, change).map_err(refused)?;
        if update.clamped {
            // More cars than spaces (or fewer than none) is a fact of life for counters.
            log::debug!(
                "sensor {peer}: UPDATE {lot} {change} clamped to occupied={}",
                update.occupied
            );
        }
        Ok(SensorReply::Updated { free: update.free })
    }
}

impl Protocol for SensorProtocol {
    type Upgrade = Infallible;

    fn name(&self) -> &'static str {
        "sensor"
    }

    fn max_request_len(&self) -> usize {
        // The line decoder reports a line too long once it passes this.
        MAX_LINE_LEN + 2
    }

    fn serve_one(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        session: &mut Session,
    ) -> Step<Infallible> {
        if line::starts_like_a_frame(input) {
            let error = SensorError::new(
                SensorErrorCode::UnknownCommand,
                "this is the sensor port, which takes text lines; the bytes look like an RPC \
                 frame (use the RPC port); closing",
            );
            peer_warn!("sensor {peer}: sent an RPC frame to the sensor port");
            sensor::encode_reply(out, Err(&error));
            return Step::Fatal;
        }
        match line::decode(input, MAX_LINE_LEN) {
            Decoded::Line { content, consumed } => {
                let started = self.metrics.start();
                self.updates.fetch_add(1, Ordering::Relaxed);
                let mut close = false;
                let command = sensor::parse_command(&input[content]);
                let method = match &command {
                    Ok(SensorCommand::Update { lot, .. }) => {
                        self.lines_by_lot.inc(lot);
                        Method::Update
                    }
                    Ok(SensorCommand::Gate { passage, .. }) => match passage {
                        Passage::Enter => Method::Enter,
                        Passage::Exit => Method::Exit,
                    },
                    Ok(SensorCommand::Ping) => Method::Ping,
                    Ok(SensorCommand::Auth { .. }) => Method::Auth,
                    Err(_) => Method::Invalid,
                };
                let reply =
                    command.and_then(|command| self.execute(command, peer, session, &mut close));
                if let Err(error) = &reply {
                    match error.code {
                        // A lot or plate the server does not know is a fact of life for a
                        // gate camera, not a malformed line.
                        SensorErrorCode::UnknownLot | SensorErrorCode::BadPlate => {
                            log::debug!("sensor {peer}: refused: {error}");
                        }
                        // Authentication failures are logged where they are counted.
                        SensorErrorCode::Unauthorized => {}
                        SensorErrorCode::Forbidden => {
                            peer_warn!("sensor {peer}: refused: {error}");
                        }
                        _ => peer_warn!("sensor {peer}: malformed line: {error}"),
                    }
                }
                sensor::encode_reply(out, reply.as_ref());
                let outcome = match &reply {
                    Ok(_) => Outcome::Ok,
                    Err(error) if error.code == SensorErrorCode::Unavailable => {
                        Outcome::Unavailable
                    }
                    Err(_) => Outcome::Invalid,
                };
                self.metrics.record_since(method as usize, outcome, started);
                if close {
                    return Step::Fatal;
                }
                Step::Answered { consumed }
            }
            Decoded::Incomplete => Step::Incomplete,
            Decoded::TooLong => {
                let error = SensorError::new(
                    SensorErrorCode::LineTooLong,
                    format!("line exceeds {MAX_LINE_LEN} bytes; closing"),
                );
                peer_warn!("sensor {peer}: {error}");
                sensor::encode_reply(out, Err(&error));
                Step::Fatal
            }
        }
    }

    fn busy_reply(&self, out: &mut Vec<u8>, detail: &str) {
        let error = SensorError::new(SensorErrorCode::Busy, detail);
        sensor::encode_reply(out, Err(&error));
    }
}
