//! The expiry work: removing reservations whose time has come. Every node runs it, each as
//! the earliest reservation's time comes; it is idempotent SQL (`parking_expire`), so nodes
//! running it at once remove each reservation once, and a node that dies leaves it to the
//! others. Removals are announced like any change (after each commit, through the outbox),
//! so every copy hears of them.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use postgres::types::Type;
use state::Unavailable;

use crate::Shared;

/// Reservations removed per transaction: few enough that the announcement (about 100
/// bytes each) fits in one notification and the lot's row lock is held briefly.
const BATCH: i32 = 50;

/// How long the thread waits after the database could not be reached.
const RETRY: Duration = Duration::from_secs(1);

/// Removes every due reservation, lot by lot; returns how many, and how long until the
/// next one is due (`None` when none is held).
pub(crate) fn sweep(shared: &Shared) -> Result<(usize, Option<Duration>), Unavailable> {
    shared.link.with_connection(|client| {
        let due = client.query_typed(
            "SELECT DISTINCT lot FROM parking_reservations WHERE expires_at <= now()",
            &[],
        )?;
        let mut expired = 0;
        for row in &due {
            let lot: &str = row.try_get(0)?;
            loop {
                let row = client.query_typed_one(
                    "SELECT removed, parking_unsent() FROM parking_expire($1, $2) AS removed",
                    &[(&lot, Type::TEXT), (&BATCH, Type::INT4)],
                )?;
                let removed: i32 = row.try_get(0)?;
                shared.outbox.send(row.try_get(1)?);
                expired += usize::try_from(removed).unwrap_or(0);
                if removed < BATCH {
                    break;
                }
            }
        }
        let next: Option<i64> = client
            .query_typed_one(
                "SELECT parking_ms(min(expires_at)) - parking_ms(now()) FROM parking_reservations",
                &[],
            )?
            .try_get(0)?;
        // Rounded up, so that the thread does not wake just before the time and spin.
        let next = next.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 1));
        Ok((expired, next))
    })
}

/// Handle to the expiry thread; dropping it stops the thread and waits for it.
pub(crate) struct Expirer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Expirer {
    pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<Expirer> {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread = thread::Builder::new()
            .name("pg-expiry".into())
            .spawn(move || run(&shared, &stopped))?;
        Ok(Expirer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(shared: &Shared, stopped: &Receiver<()>) {
    loop {
        // Never sleeps longer than the TTL: a reservation another node makes meanwhile is
        // due a TTL after it was made, so it is looked for in time.
        let wait = match sweep(shared) {
            Ok((expired, next)) => {
                if expired > 0 {
                    log::debug!("expired {expired} reservation(s)");
                }
                next.map_or(shared.ttl, |next| next.min(shared.ttl))
            }
            Err(err) => {
                log::debug!("expiry: {err}");
                RETRY.min(shared.ttl)
            }
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
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
