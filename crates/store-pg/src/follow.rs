//! The listening thread: receives every committed change's announcement and applies it to
//! the copy; when its connection is lost it marks the database down, reconnects with
//! backoff, re-`LISTEN`s, reads every lot afresh and lets writes in again.
//!
//! Announcements are sent after their commits (`crate::announce`), so one can be lost: its
//! node died between the commit and the announcement. The thread repairs that by reading
//! the lot afresh, when a later change of the lot has waited [`GAP_GRACE`] for it, or when
//! the lot's version in the database, compared every [`VERSION_CHECK_EVERY`], is one the
//! copy has still not reached a check later. So a copy is never stale for longer than
//! about two checks plus a read (docs/scaling.md), whatever a node does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
use postgres::{Client, IsolationLevel, NoTls};
use serde::Deserialize;
use state::{Change, LotId, Plate};

use crate::Shared;
use crate::copy::LotImage;
use crate::link;

/// The channel every change is announced on (`parking_announce` in the migrations).
pub(crate) const CHANNEL: &str = "parking_changes";

/// How long the thread waits for an announcement before looking at its stop flag and the
/// database's health; also the longest a closing store waits for it.
const POLL: Duration = Duration::from_millis(100);

/// How long a quiet connection goes unchecked: a server that vanished without closing the
/// connection is noticed within this (plus the timeout).
const PING_EVERY: Duration = Duration::from_secs(1);

/// How long a change that came early waits for the one before it before the lot is read
/// afresh: announcements of different nodes (and of one node's concurrent writes) overtake
/// each other by a few milliseconds; one that has not come after this was lost.
const GAP_GRACE: Duration = Duration::from_millis(500);

/// How often the lots held up past [`GAP_GRACE`] are looked for.
const GAP_CHECK_EVERY: Duration = Duration::from_millis(100);

/// How often each lot's version in the database is compared with the copy's: the backstop
/// for a lost announcement that no later change of its lot reveals. One query of every
/// lot's id and version (a thousand lots: a few hundred microseconds of the database's time).
const VERSION_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Reconnect backoff bounds.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// One announcement, as `parking_announce` sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    lot: String,
    version: u64,
    /// Absent when they did not fit in a notification: the lot is then read afresh.
    #[serde(default)]
    changes: Option<Vec<Change>>,
}

/// Subscribes `client` to the announcements.
pub(crate) fn listen(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(&format!("LISTEN {CHANNEL}"))
}

/// Reads `lots` (every lot this node serves if `None`) in one snapshot and makes the copy
/// hold it; returns how many lots were read.
pub(crate) fn resync(
    copy: &crate::copy::Copy,
    client: &mut Client,
    lots: Option<&[LotId]>,
) -> Result<usize, postgres::Error> {
    let ids: Vec<&str> = match lots {
        Some(lots) => lots.iter().map(LotId::as_str).collect(),
        None => copy.lot_ids().map(LotId::as_str).collect(),
    };
    // One snapshot for the lots and their reservations, so each lot's version matches
    // its content.
    let mut snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let rows = snapshot.query_typed(
        "SELECT id, counted, version FROM parking_lots WHERE id = ANY($1)",
        &[(&ids, Type::TEXT_ARRAY)],
    )?;
    let reservations = snapshot.query_typed(
        "SELECT lot, plate, parking_ms(expires_at), owner FROM parking_reservations \
         WHERE lot = ANY($1)",
        &[(&ids, Type::TEXT_ARRAY)],
    )?;
    let bookings = snapshot.query_typed(
        "SELECT b.lot, parking_booking_json(b)::text FROM parking_bookings b \
         WHERE b.lot = ANY($1)",
        &[(&ids, Type::TEXT_ARRAY)],
    )?;
    let entries = snapshot.query_typed(
        "SELECT w.lot, parking_entry_json(w)::text FROM parking_waitlist w \
         WHERE w.lot = ANY($1)",
        &[(&ids, Type::TEXT_ARRAY)],
    )?;
    snapshot.commit()?;
    let mut images = std::collections::HashMap::new();
    for row in &rows {
        let id: &str = row.try_get(0)?;
        let Ok(lot) = copy.state().lot_id(id).cloned() else {
            continue;
        };
        let version: i64 = row.try_get(2)?;
        images.insert(
            id.to_owned(),
            LotImage {
                lot,
                version: u64::try_from(version).unwrap_or(0),
                counted: row.try_get(1)?,
                reservations: Vec::new(),
                bookings: Vec::new(),
                entries: Vec::new(),
            },
        );
    }
    for row in &reservations {
        let lot: &str = row.try_get(0)?;
        let plate: &str = row.try_get(1)?;
        let expires_at_ms: i64 = row.try_get(2)?;
        let owner: Option<String> = row.try_get(3)?;
        // The table only holds plates that were valid when reserved.
        let (Some(image), Ok(plate)) = (images.get_mut(lot), Plate::parse(plate)) else {
            continue;
        };
        image
            .reservations
            .push((plate, u64::try_from(expires_at_ms).unwrap_or(0), owner));
    }
    for row in &bookings {
        let lot: &str = row.try_get(0)?;
        let record: &str = row.try_get(1)?;
        // The table only holds bookings that were valid when made.
        let (Some(image), Ok(booking)) = (images.get_mut(lot), serde_json::from_str(record)) else {
            continue;
        };
        image.bookings.push(booking);
    }
    for row in &entries {
        let lot: &str = row.try_get(0)?;
        let record: &str = row.try_get(1)?;
        // The table only holds entries that were valid when made.
        let (Some(image), Ok(entry)) = (images.get_mut(lot), serde_json::from_str(record)) else {
            continue;
        };
        image.entries.push(entry);
    }
    let count = images.len();
    copy.reset(images.into_values().collect());
    Ok(count)
}

/// Handle to the listening thread; dropping it stops the thread and waits for it.
pub(crate) struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following with `client`, which already `LISTEN`s and has been read from.
    pub(crate) fn spawn(shared: Arc<Shared>, client: Client) -> std::io::Result<Follower> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("pg-follow".into())
            .spawn(move || run(&shared, client, &stopping))?;
        Ok(Follower {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("the PostgreSQL listening thread panicked");
        }
    }
}

fn run(shared: &Shared, mut client: Client, stop: &AtomicBool) {
    let mut last_heard = Instant::now();
    let mut backstop = Backstop::new();
    while !stop.load(Ordering::SeqCst) {
        let next = client.notifications().timeout_iter(POLL).next();
        let lost = match next {
            Ok(Some(notification)) => {
                last_heard = Instant::now();
                match announced(shared, &mut client, notification.payload()) {
                    Ok(()) => None,
                    Err(err) => Some(link::describe(&err)),
                }
            }
            Ok(None) if client.is_closed() => Some("the connection closed".to_owned()),
            Ok(None) => {
                // Quiet: check the connection now and then, and at once when a write found
                // the database unreachable (it may be back, or only that connection died).
                let down = shared.link.down_reason().is_some();
                if (down || last_heard.elapsed() >= PING_EVERY) && !shared.link.is_closed() {
                    last_heard = Instant::now();
                    match client.is_valid(shared.link.timeout()) {
                        Ok(()) if down => recovered(shared),
                        Ok(()) => None,
                        Err(err) => Some(link::describe(&err)),
                    }
                } else {
                    None
                }
            }
            Err(err) => Some(link::describe(&err)),
        };
        // Also under a steady stream of announcements, which never leaves the loop quiet.
        let lost = lost.or_else(|| {
            backstop
                .check(shared, &mut client)
                .err()
                .map(|err| link::describe(&err))
        });
        if let Some(why) = lost {
            shared.link.mark_down(&why);
            match reconnect(shared, stop) {
                Some(fresh) => client = fresh,
                None => return,
            }
            last_heard = Instant::now();
        }
    }
}

/// The listening connection works while writes were refused: a write's own connection
/// died, not the database. Takes writes again; a failure is a lost connection after all.
fn recovered(shared: &Shared) -> Option<String> {
    shared.link.mark_up().err().map(|err| link::describe(&err))
}

/// Applies one announcement's payload.
fn announced(shared: &Shared, client: &mut Client, payload: &str) -> Result<(), postgres::Error> {
    let announcement: Announcement = match serde_json::from_str(payload) {
        Ok(announcement) => announcement,
        Err(err) => {
            // Not ours, or a newer node's format: read every lot rather than miss a change.
            log::warn!(
                "unreadable announcement on {CHANNEL} ({err}): {}; reading every lot afresh",
                state::shown(payload)
            );
            resync(&shared.copy, client, None)?;
            return Ok(());
        }
    };
    if !shared.copy.serves(&announcement.lot) {
        return Ok(());
    }
    let Ok(lot) = shared.copy.state().lot_id(&announcement.lot).cloned() else {
        return Ok(());
    };
    match announcement.changes {
        Some(changes) => {
            // One that is early is held until those before it come; the backstop reads
            // the lot afresh if they do not.
            shared.copy.apply(&lot, announcement.version, changes);
        }
        None => {
            if announcement.version > shared.copy.version(lot.as_str()) {
                resync(&shared.copy, client, Some(std::slice::from_ref(&lot)))?;
            }
        }
    }
    Ok(())
}

/// Finds the lots whose announcement was lost, and reads them afresh.
struct Backstop {
    gaps_checked: Instant,
    versions_checked: Instant,
    /// Each lot's version in the database at the last check.
    seen: HashMap<LotId, u64>,
}

impl Backstop {
    fn new() -> Backstop {
        Backstop {
            gaps_checked: Instant::now(),
            versions_checked: Instant::now(),
            seen: HashMap::new(),
        }
    }

    /// Runs whichever check is due.
    fn check(&mut self, shared: &Shared, client: &mut Client) -> Result<(), postgres::Error> {
        if self.gaps_checked.elapsed() >= GAP_CHECK_EVERY {
            self.gaps_checked = Instant::now();
            let stalled = shared.copy.stalled(GAP_GRACE);
            if !stalled.is_empty() {
                log::debug!(
                    "{} lot(s) missed a change for {} ms (an announcement was lost): reading \
                     them afresh",
                    stalled.len(),
                    GAP_GRACE.as_millis()
                );
                resync(&shared.copy, client, Some(stalled.as_slice()))?;
            }
        }
        if self.versions_checked.elapsed() >= VERSION_CHECK_EVERY {
            self.versions_checked = Instant::now();
            self.compare_versions(shared, client)?;
        }
        Ok(())
    }

    /// Reads afresh every lot whose copy is still behind the version the database had at
    /// the previous check. Only then: a copy a little behind the latest version is normal
    /// (its announcement is on its way), one a whole check behind has lost it.
    fn compare_versions(
        &mut self,
        shared: &Shared,
        client: &mut Client,
    ) -> Result<(), postgres::Error> {
        let ids: Vec<&str> = shared.copy.lot_ids().map(LotId::as_str).collect();
        let rows = client.query_typed(
            "SELECT id, version FROM parking_lots WHERE id = ANY($1)",
            &[(&ids, Type::TEXT_ARRAY)],
        )?;
        let mut seen = HashMap::with_capacity(rows.len());
        let mut behind = Vec::new();
        for row in &rows {
            let id: &str = row.try_get(0)?;
            let version: i64 = row.try_get(1)?;
            let Ok(lot) = shared.copy.state().lot_id(id).cloned() else {
                continue;
            };
            if let Some(&before) = self.seen.get(&lot)
                && shared.copy.version(id) < before
            {
                behind.push(lot.clone());
            }
            seen.insert(lot, u64::try_from(version).unwrap_or(0));
        }
        self.seen = seen;
        if !behind.is_empty() {
            log::info!(
                "lot(s) {}: a committed change was never announced (its node stopped between \
                 commit and announcement?): reading them afresh",
                behind
                    .iter()
                    .map(LotId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            resync(&shared.copy, client, Some(behind.as_slice()))?;
        }
        Ok(())
    }
}

/// Connects again until it works (or the store closes: `None`), then `LISTEN`s, reads every
/// lot and lets writes in.
fn reconnect(shared: &Shared, stop: &AtomicBool) -> Option<Client> {
    let mut wait = FIRST_RETRY;
    let started = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match follow_again(shared) {
            Ok((client, lots)) => {
                log::info!(
                    "PostgreSQL: following again after {} ms; read {lots} lot(s) afresh",
                    started.elapsed().as_millis()
                );
                return Some(client);
            }
            Err(err) => log::debug!("PostgreSQL: still unreachable: {}", link::describe(&err)),
        }
        // Sleeps in short steps so that a closing store is not kept waiting.
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        wait = (wait * 2).min(LAST_RETRY);
    }
}

fn follow_again(shared: &Shared) -> Result<(Client, usize), postgres::Error> {
    let mut client = shared.link.config().connect(NoTls)?;
    // LISTEN first: a change committed while reading is then both read and announced.
    listen(&mut client)?;
    let lots = resync(&shared.copy, &mut client, None)?;
    shared.link.mark_up()?;
    Ok((client, lots))
}
