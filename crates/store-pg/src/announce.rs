//! Sending the announcements of this node's committed writes: a thread with a connection of
//! its own publishes what the writers hand it, many at a time, each batch in one
//! transaction that writes nothing.
//!
//! Why not inside the writing transaction: a transaction that NOTIFYs holds a
//! database-wide lock across its commit's WAL flush, so writes that announce themselves
//! commit one fsync at a time instead of sharing group commits (docs/scaling.md has the
//! pgbench numbers). A transaction that only NOTIFYs writes no WAL of its own and commits
//! without waiting for a flush, so it holds that lock only briefly; batching makes that one
//! short transaction per batch, off the writers' path (a writer hands its announcements
//! over and replies at once).
//!
//! An announcement sent this way can be lost: the node dies between its commit and the
//! publish, or this connection fails. The listening threads repair that (`crate::follow`):
//! a later version of the lot shows the gap, and the lot versions they compare every second
//! show a lot that went quiet after the lost one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use postgres::types::Type;
use postgres::{Client, NoTls};
use serde::Serialize;
use state::{Change, LotId};

use crate::Shared;
use crate::link;

/// Announcements waiting to be sent, at most. Past it a writer's announcement is dropped
/// (and repaired like a lost one) rather than a writer waiting: the thread sends thousands
/// a second, so only a database that stopped answering fills it.
const PENDING: usize = 4096;

/// Announcements sent in one transaction, at most (each up to 8000 bytes).
const BATCH: usize = 256;

/// How long the thread waits for an announcement before looking at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// The longest announcement sent with its changes. A notification's payload must be shorter
/// than 8000 bytes; a longer one goes without its changes and the nodes read the lot afresh,
/// as `parking_announce` does (migration 0001).
const MAX_PAYLOAD: usize = 7900;

/// An announcement as the listening nodes read it (`crate::follow`).
#[derive(Serialize)]
struct Announcement<'a> {
    lot: &'a str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<&'a [Change]>,
}

/// The announcement that `lot` reached `version` through `changes`, as `parking_announce`
/// makes it: for the writes whose SQL leaves announcing to the node
/// (`parking_reserve_quietly`, `parking_cancel_quietly`), so that nothing of it is done
/// while the lot's row lock is held.
pub(crate) fn payload(lot: &LotId, version: u64, changes: &[Change]) -> String {
    let announcement = |changes| Announcement {
        lot: lot.as_str(),
        version,
        changes,
    };
    // A lot id, plates and numbers always serialise; the fallback is never sent in practice.
    let full = serde_json::to_string(&announcement(Some(changes))).unwrap_or_default();
    if !full.is_empty() && full.len() <= MAX_PAYLOAD {
        return full;
    }
    serde_json::to_string(&announcement(None)).unwrap_or_default()
}

/// Where writers leave the announcements of what they committed.
pub(crate) struct Outbox {
    sender: Sender<String>,
    /// Announcements dropped because too many were waiting, or lost with the connection.
    lost: AtomicU64,
}

impl Outbox {
    /// An outbox and the end the announcing thread takes them from.
    pub(crate) fn new() -> (Outbox, Receiver<String>) {
        let (sender, pending) = crossbeam_channel::bounded(PENDING);
        let outbox = Outbox {
            sender,
            lost: AtomicU64::new(0),
        };
        (outbox, pending)
    }

    /// Hands over committed announcements, oldest first; never waits.
    pub(crate) fn send(&self, payloads: Vec<String>) {
        for payload in payloads {
            match self.sender.try_send(payload) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.lost(1),
            }
        }
    }

    fn lost(&self, count: u64) {
        let before = self.lost.fetch_add(count, Ordering::Relaxed);
        // Once per thousand: a database that stopped answering loses many in a row.
        if before / 1000 != (before + count) / 1000 || before == 0 {
            log::warn!(
                "{} announcement(s) of committed writes not sent so far; the other nodes \
                 read the lots afresh when they notice (within about 2 s)",
                before + count
            );
        }
    }
}

/// Handle to the announcing thread; dropping it sends what is waiting, then stops it.
pub(crate) struct Announcer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Announcer {
    pub(crate) fn spawn(shared: Arc<Shared>, pending: Receiver<String>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("pg-announce".into())
            .spawn(move || run(&shared, &pending, &stopping))?;
        Ok(Announcer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("the PostgreSQL announcing thread panicked");
        }
    }
}

fn run(shared: &Shared, pending: &Receiver<String>, stop: &AtomicBool) {
    let mut client: Option<Client> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match pending.recv_timeout(POLL) {
            Ok(payload) => batch.push(payload),
            // Stops only once nothing is waiting: a closing node sends what it committed.
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::SeqCst) => return,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        batch.extend(pending.try_iter().take(BATCH - 1));
        if let Err(err) = publish(shared, &mut client, &batch) {
            log::debug!(
                "could not send {} announcement(s): {}",
                batch.len(),
                link::describe(&err)
            );
            // Connected afresh for the next batch; this one is repaired by the nodes.
            client = None;
            shared
                .outbox
                .lost(u64::try_from(batch.len()).unwrap_or(u64::MAX));
        }
        batch.clear();
    }
}

/// Sends `batch` in one transaction, in order, on the thread's connection (made first if
/// there is none).
fn publish(
    shared: &Shared,
    client: &mut Option<Client>,
    batch: &[String],
) -> Result<(), postgres::Error> {
    let client = match client {
        Some(client) => client,
        None => client.insert(shared.link.config().connect(NoTls)?),
    };
    client.query_typed("SELECT parking_publish($1)", &[(&batch, Type::TEXT_ARRAY)])?;
    Ok(())
}
