//! The time-driven work: removing reservations whose time has come (`parking_expire`) and
//! moving bookings on (`parking_settle`: held from the start, no-shows, completions,
//! forgetting). Every node runs it, each as the earliest due time comes; it is idempotent
//! SQL, so nodes running it at once do each thing once, and a node that dies leaves it to
//! the others. What it does is announced like any change (after each commit, through the
//! outbox), so every copy hears of it.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use postgres::types::Type;
use state::Unavailable;

use crate::Shared;
use crate::bookings;
use crate::waitlists::OfferTerms;

/// Reservations removed per transaction: few enough that the announcement (about 100
/// bytes each) fits in one notification and the lot's row lock is held briefly.
const BATCH: i32 = 50;

/// How long the thread waits after the database could not be reached.
const RETRY: Duration = Duration::from_secs(1);

/// What one run of the time-driven work did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Reservations removed.
    pub(crate) expired: usize,
    /// Bookings moved on (held from their start, no-shows, completions, forgotten).
    pub(crate) moved: usize,
    /// How long until the next reservation or booking is due (`None` when none is).
    pub(crate) next: Option<Duration>,
}

/// Removes every due reservation and moves on every due booking, lot by lot.
pub(crate) fn sweep(shared: &Shared) -> Result<Swept, Unavailable> {
    let state = shared.copy.state();
    shared.link.with_connection(|client| {
        let due = client.query_typed(
            "SELECT DISTINCT lot FROM parking_reservations WHERE expires_at <= now()",
            &[],
        )?;
        let mut expired = 0;
        for row in &due {
            let lot: &str = row.try_get(0)?;
            let terms = OfferTerms::of(state, lot);
            loop {
                // The room they leave is offered to the waitlist in the same transaction.
                let row = client.query_typed_one(
                    "SELECT removed, parking_offer_room($1, $3, $4), parking_unsent() \
                     FROM parking_expire($1, $2) AS removed",
                    &[
                        (&lot, Type::TEXT),
                        (&BATCH, Type::INT4),
                        (&terms.bookable, Type::INT4),
                        (&terms.offer_for, Type::INT8),
                    ],
                )?;
                let removed: i32 = row.try_get(0)?;
                shared.outbox.send(row.try_get(2)?);
                expired += usize::try_from(removed).unwrap_or(0);
                if removed < BATCH {
                    break;
                }
            }
        }
        let moved = bookings::settle(client, state, &shared.outbox)?;
        let next: Option<i64> = client
            .query_typed_one(
                "SELECT parking_ms(min(expires_at)) - parking_ms(now()) FROM parking_reservations",
                &[],
            )?
            .try_get(0)?;
        // Rounded up, so that the thread does not wake just before the time and spin.
        let next = next.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 1));
        let next = match (next, bookings::next_due(client)?) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Swept {
            expired,
            moved,
            next,
        })
    })
}

/// Handle to the expiry thread; dropping it stops the thread and waits for it.
pub(crate) struct Expirer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Expirer {
    /// Starts the thread; a message on `nudged` makes it look again at once (this node
    /// made something due sooner than it was going to look).
    pub(crate) fn spawn(shared: Arc<Shared>, nudged: Receiver<()>) -> std::io::Result<Expirer> {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread = thread::Builder::new()
            .name("pg-expiry".into())
            .spawn(move || run(&shared, &stopped, &nudged))?;
        Ok(Expirer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(shared: &Shared, stopped: &Receiver<()>, nudged: &Receiver<()>) {
    loop {
        // Never sleeps longer than the TTL: a reservation another node makes meanwhile is
        // due a TTL after it was made, so it is looked for in time. A booking another node
        // makes is looked after by that node's thread (nudged when it books); this one
        // catches up within a TTL should that node die.
        let wait = match sweep(shared) {
            Ok(Swept {
                expired,
                moved,
                next,
            }) => {
                if expired > 0 || moved > 0 {
                    log::debug!("expired {expired} reservation(s), moved {moved} booking(s) on");
                }
                next.map_or(shared.ttl, |next| next.min(shared.ttl))
            }
            Err(err) => {
                log::debug!("expiry: {err}");
                RETRY.min(shared.ttl)
            }
        };
        crossbeam_channel::select! {
            recv(stopped) -> _ => return,
            recv(nudged) -> _ => {}
            default(wait) => {}
        }
    }
}

impl Drop for Expirer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("the expiry thread panicked");
        }
    }
}
