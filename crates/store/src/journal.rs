//! The journal: the state's [`Recorder`], appending every change to the current segment file
//! with group commit, and rolling changes back when the disk fails.
//!
//! # Group commit
//! [`Recorder::record`] runs under the changed lot's lock, so it only encodes the change,
//! appends the record to an in-memory pending buffer under a short mutex and hands out a
//! sequence number. [`Recorder::wait`] runs with no lock held: if that number is not durable
//! yet and nobody is flushing, the waiter becomes the flusher. It takes the *whole* pending
//! buffer (the records of every writer that arrived meanwhile), writes it with one `write`,
//! syncs it once (`fsync: always`), publishes the new durable sequence number and wakes every
//! waiter. While it writes, the next writers' records pile up for the next flush, so one
//! fsync serves as many writers as arrived during the previous one: throughput grows with
//! concurrency instead of being one fsync per request. When a flush ends, the writers whose
//! records are still pending are woken before those it synced, so the next batch starts
//! without waiting for the others' wake-ups ([`Journal::end_flush`]).
//!
//! # Gathering the writers that are coming back (`always`)
//! Left alone, concurrent writers split into two halves that take turns: while one half's
//! batch syncs, the other half's records pile up, and the writers the sync releases come back
//! during the next one. Each sync then carries half of the writers. So before it syncs, a
//! flusher under `always` waits until as many records have arrived since the previous flush
//! ended as that flush carried (its writers, coming back), for at most half of the previous
//! flush's I/O time ([`Journal::gather`]). A lone writer's own record is that one arrival,
//! so it never waits; a writer that does not come back costs at most that bound once, and
//! the next flush no longer expects it.
//!
//! # Writing through (`everysec`, `no`)
//! Without an fsync per change, a batch buys little: a `write` to the page cache costs a few
//! microseconds, far less than parking every writer on a condition variable and waking it
//! again. So under those policies `record` writes its record to the OS itself when nothing
//! else is pending or being written, and the change is decided before `record` returns: its
//! bytes are in the kernel before its reply is sent, so a killed server loses nothing
//! acknowledged, and the file's order is the order of the records. The write holds the
//! flusher's token, not the mutex: a writer of another lot that arrives meanwhile appends
//! its record to `pending` and leaves its lot's lock at once, and the first such writer to
//! `wait` writes every pending record with one `write` (the flush path, without the sync),
//! so concurrent writers share writes as `always`'s share syncs. The cost is that a lot's
//! readers may wait for one `write` of a writer of that lot. Whenever records are pending,
//! the token is taken (a flush, a segment switch) or the disk has failed, records take the
//! flush path, so a retry, its rewrite after a failed sync and its rollback stay in one
//! place; the syncer thread fdatasyncs once a second either way.
//!
//! # When the disk fails
//! Nothing is acknowledged that is not durable. A failed write or sync makes the journal
//! unavailable: the flusher cuts the segment back to its last good length (it never retries
//! an fsync on the same pages: after a failed fsync Linux may have dropped the dirty pages
//! and a second fsync reports success), undoes every change that is not durable in memory,
//! newest first, and their waiters get [`Unavailable`]. New changes are refused at once until
//! the backoff has passed; the next change after it tries the disk again, and writes resume
//! when that succeeds.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::Deserialize;
use state::{Change, Commit, ParkingState, Recorder, Unavailable};

use crate::Health;
use crate::disk::{Create, Disk, DiskFile};
use crate::files;
use crate::record;

/// Longest wait between two attempts to write to a failing disk.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How often `fsync: everysec` syncs the journal.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Set in a [`Commit`] that [`Journal::write_through`] decided before `record` returned, so
/// its `wait` has nothing to look up. Sequence numbers never reach this bit.
const DECIDED: u64 = 1 << 63;

/// When a write counts as durable, as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// A change is synced to the disk before it is acknowledged: nothing acknowledged is
    /// lost, even to a power cut.
    #[default]
    Always,
    /// A change is written to the operating system before it is acknowledged, and synced
    /// within about a second: a killed server loses nothing, a power cut or an OS crash
    /// loses up to the last second or two.
    Everysec,
    /// A change is written to the operating system before it is acknowledged and never
    /// synced by the server (the OS writes it back, typically within 30 s): a killed server
    /// loses nothing, a power cut loses what the OS had not written back.
    No,
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::Everysec),
            "no" => Ok(Fsync::No),
            _ => Err(format!(
                "{text:?} is not an fsync policy (always, everysec or no)"
            )),
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        })
    }
}

/// A file operation that failed: what, on which file, and the OS's error.
#[derive(Debug)]
pub struct DiskError {
    /// What was being done (`write`, `sync`, `create`, ...).
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

impl DiskError {
    pub(crate) fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        DiskError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for DiskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How the journal is set up.
pub(crate) struct Settings {
    pub(crate) dir: PathBuf,
    pub(crate) disk: Arc<dyn Disk>,
    pub(crate) fsync: Fsync,
    pub(crate) retry_after: Duration,
    /// The longest a flush waits for the writers it expects back ([`Journal::gather`]),
    /// whatever the disk's speed: a bound on what a writer that does not come back costs
    /// the others' replies.
    pub(crate) max_gather: Duration,
    pub(crate) segment_bytes: u64,
}

/// The journal, shared by every writer: the state holds it as its recorder.
pub(crate) struct Journal {
    shared: Mutex<Shared>,
    /// Rung when a flush ends (records became durable or were rolled back) and so the
    /// flusher's token is free again. Waited on by those whose records that flush carries,
    /// and by anyone waiting for the token.
    flushed: Condvar,
    /// Rung when a flush ends, just before `flushed`: waited on by writers whose records
    /// were still pending, one of whom becomes the next flusher. See [`Journal::end_flush`].
    next_turn: Condvar,
    /// Rung when the last writer a gathering flusher waits for has recorded its change
    /// ([`Journal::gather`]).
    arrived: Condvar,
    /// Rung at close, so the `everysec` syncer stops without waiting out its second.
    stopping: Condvar,
    settings: Settings,
    /// Where undone changes are applied. Weak: the state holds the journal, and a strong
    /// reference back would keep both alive forever.
    state: Weak<ParkingState>,
    /// Rung when the current segment has grown past `segment_bytes` (bounded(1): rings
    /// coalesce and never block a flusher).
    compact: Sender<()>,
}

/// What the journal's mutex guards.
struct Shared {
    /// Sequence number of the next record; the first is 1.
    next: u64,
    /// Every record with a sequence number up to this one is decided: durable, unless it is
    /// in `lost`.
    decided: u64,
    /// Encoded records not yet handed to a flusher, in sequence order.
    pending: Vec<u8>,
    /// The old value of each pending record's key, to undo it if the write fails.
    pending_undo: Vec<Change>,
    /// A buffer kept from the last flush, so batches do not allocate.
    spare: Vec<u8>,
    /// A flusher (or a segment switch) is doing I/O; no one else may until it is done.
    flushing: bool,
    /// The last sequence number the flush under way carries (`decided` when none does):
    /// a waiter with a later one waits for its turn to flush, not for this flush's end.
    in_flight: u64,
    /// Records that were rolled back, whose waiters have not all been told yet.
    lost: Vec<Lost>,
    segment: Segment,
    status: Status,
    /// A failed flush is undoing changes; nothing may be recorded until it is done, or the
    /// undo of an older change would clobber the newer one in memory.
    rolling_back: bool,
    /// How many rollbacks have happened, so a snapshot can tell whether one overlapped it.
    rollbacks: u64,
    /// How many times the segment was cut back, so the syncer can tell whether what it
    /// synced is still there.
    truncations: u64,
    closed: bool,
    /// How many flushes have ended (written or rolled back).
    flushes: u64,
    /// Records written by flushes (so `records / flushes` is the batch size).
    flushed_records: u64,
    /// How many records the last flush carried: the writers a gathering flusher expects back.
    released: u64,
    /// How many records have arrived since the last flush ended. Counting records, not
    /// threads, because a connection's next request may be served by another worker thread:
    /// a writer that came back is a record that arrived. (Those pending when the flush ended
    /// are not counted: they are the other writers, not the ones it released.)
    returned: u64,
    /// A flusher is waiting for `returned` to reach `released`; `record` rings `arrived`
    /// when it does.
    gathering: bool,
    /// Flushes that waited for writers to come back, and those of them that ended at their
    /// time bound with writers still missing.
    gathers: u64,
    gather_timeouts: u64,
    /// How long the last flush's write and sync took: what a gathering may cost.
    last_io: Duration,
}

/// What the journal has done so far: for tests, benchmarks and the shutdown summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Flushes that carried records (written, with a sync under `always`, or rolled back).
    pub flushes: u64,
    /// Records those flushes wrote.
    pub records: u64,
    /// Flushes that waited for the writers the previous one released.
    pub gathers: u64,
    /// Those of them that waited their whole time bound for writers that did not come back.
    pub gather_timeouts: u64,
}

/// The segment file being appended to.
struct Segment {
    number: u64,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    /// Bytes written (and acknowledged): where the next batch goes.
    written: u64,
    /// Bytes known to be on the disk (`written` under `fsync: always`).
    synced: u64,
    /// Under `everysec`, the bytes from `synced` to `written`, to write again if a sync
    /// fails: the pages they were in may be gone.
    unsynced: Vec<u8>,
}

enum Status {
    Ok,
    Failed {
        reason: String,
        /// No change is accepted before this.
        retry_at: Instant,
        /// The wait before the next attempt, after this one.
        backoff: Duration,
        /// A sync failed: the next attempt writes the unsynced bytes again.
        rewrite: bool,
    },
}

/// A range of rolled-back sequence numbers and how many of their waiters have not heard.
struct Lost {
    first: u64,
    last: u64,
    unclaimed: u64,
    reason: String,
}

/// What a flush does with the file, decided under the mutex, done without it.
struct Plan {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    /// Cut the file to this length first (when retrying after a failure).
    truncate_to: Option<u64>,
    /// Where the first byte goes.
    offset: u64,
    /// Bytes written before the batch: the unsynced ones, on a retry after a failed sync.
    rewrite: Vec<u8>,
    sync: bool,
}

impl Plan {
    fn run(&self, batch: &[u8]) -> Result<(), DiskError> {
        let fail = |action| move |err| DiskError::new(action, &self.path, err);
        if let Some(len) = self.truncate_to {
            self.file.truncate(len).map_err(fail("truncate"))?;
        }
        if !self.rewrite.is_empty() {
            self.file
                .write_at(&self.rewrite, self.offset)
                .map_err(fail("write"))?;
        }
        self.file
            .write_at(batch, self.offset + self.rewrite.len() as u64)
            .map_err(fail("write"))?;
        if self.sync {
            self.file.sync().map_err(fail("sync"))?;
        }
        Ok(())
    }
}

thread_local! {
    /// Where `record` encodes a change before taking the journal's mutex, so the mutex is
    /// held only for a copy.
    static ENCODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Journal {
    /// A journal appending to segment `number` (open as `file`, `len` valid bytes), undoing
    /// failed changes in `state`.
    pub(crate) fn new(
        settings: Settings,
        state: &Arc<ParkingState>,
        segment: (u64, Arc<dyn DiskFile>, u64),
        compact: Sender<()>,
    ) -> Journal {
        let (number, file, len) = segment;
        Journal {
            shared: Mutex::new(Shared {
                next: 1,
                decided: 0,
                pending: Vec::new(),
                pending_undo: Vec::new(),
                spare: Vec::new(),
                flushing: false,
                in_flight: 0,
                lost: Vec::new(),
                segment: Segment {
                    number,
                    path: files::segment(&settings.dir, number),
                    file,
                    written: len,
                    synced: len,
                    unsynced: Vec::new(),
                },
                status: Status::Ok,
                rolling_back: false,
                rollbacks: 0,
                truncations: 0,
                closed: false,
                flushes: 0,
                flushed_records: 0,
                released: 0,
                returned: 0,
                gathering: false,
                gathers: 0,
                gather_timeouts: 0,
                last_io: Duration::ZERO,
            }),
            flushed: Condvar::new(),
            next_turn: Condvar::new(),
            arrived: Condvar::new(),
            stopping: Condvar::new(),
            settings,
            state: Arc::downgrade(state),
            compact,
        }
    }

    /// Whether writes can be made durable now.
    pub(crate) fn health(&self) -> Health {
        match &self.shared.lock().status {
            Status::Ok => Health::Ok,
            Status::Failed { reason, .. } => Health::Unavailable(reason.clone()),
        }
    }

    /// What the journal has done so far.
    pub(crate) fn stats(&self) -> JournalStats {
        let shared = self.shared.lock();
        JournalStats {
            flushes: shared.flushes,
            records: shared.flushed_records,
            gathers: shared.gathers,
            gather_timeouts: shared.gather_timeouts,
        }
    }

    /// The segment being appended to, and its length.
    pub(crate) fn current_segment(&self) -> (u64, u64) {
        let shared = self.shared.lock();
        (shared.segment.number, shared.segment.written)
    }

    /// Whether [`Journal::close`] has run.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// How many rollbacks have happened, or `None` while one is in progress.
    pub(crate) fn rollbacks(&self) -> Option<u64> {
        let shared = self.shared.lock();
        (!shared.rolling_back).then_some(shared.rollbacks)
    }

    /// The sequence number of the last record.
    pub(crate) fn last_recorded(&self) -> u64 {
        self.shared.lock().next - 1
    }

    /// Waits until every record up to `upto` is durable (flushing if need be) and returns
    /// true; false if a rollback happened since `rollbacks` was read, in which case a change
    /// recorded meanwhile may have been undone. (Records rolled back before that are undone
    /// in memory already.)
    pub(crate) fn settle(&self, upto: u64, rollbacks: u64) -> bool {
        let mut shared = self.shared.lock();
        loop {
            if shared.rollbacks != rollbacks || shared.rolling_back {
                return false;
            }
            if shared.decided >= upto {
                return true;
            }
            if shared.flushing {
                self.flushed.wait(&mut shared);
            } else {
                self.flush(&mut shared);
            }
        }
    }

    /// Makes the journal continue in a new, empty segment (the next number), between two
    /// batches. Returns the new segment's number.
    pub(crate) fn start_segment(&self) -> Result<u64, String> {
        let mut shared = self.shared.lock();
        while shared.flushing {
            self.flushed.wait(&mut shared);
        }
        if shared.closed {
            return Err("the store is closed".into());
        }
        if let Status::Failed { reason, .. } = &shared.status {
            // A retry needs the segment it failed on: switch once writes work again.
            return Err(reason.clone());
        }
        // Holding the token, so no batch is written while the segment changes.
        shared.flushing = true;
        let outcome = self.switch(&mut shared);
        self.end_flush(&mut shared);
        outcome
    }

    /// [`Journal::start_segment`]'s I/O, with the flusher's token held.
    fn switch(&self, shared: &mut MutexGuard<'_, Shared>) -> Result<u64, String> {
        let old = &shared.segment;
        // Under everysec the old segment's last second is not on the disk yet, and nothing
        // would sync that file again.
        if self.settings.fsync != Fsync::No && old.synced < old.written {
            let (file, path, upto) = (Arc::clone(&old.file), old.path.clone(), old.written);
            match MutexGuard::unlocked(shared, || file.sync()) {
                Ok(()) => shared.segment.mark_synced(upto),
                Err(err) => {
                    // Those changes were acknowledged (everysec's window): nothing is undone,
                    // but nothing new is taken until a retry has rewritten and synced them.
                    let reason = DiskError::new("sync", &path, err).to_string();
                    self.mark_failed(shared, reason.clone(), true);
                    return Err(reason);
                }
            }
        }
        let number = shared.segment.number + 1;
        let path = files::segment(&self.settings.dir, number);
        let settings = &self.settings;
        // A failure leaves the journal on the old segment; it fails no write.
        let file = MutexGuard::unlocked(shared, || {
            let file = settings
                .disk
                .open(&path, Create::Empty)
                .map_err(|err| DiskError::new("create", &path, err))?;
            settings
                .disk
                .sync_dir(&settings.dir)
                .map_err(|err| DiskError::new("sync", &settings.dir, err))?;
            Ok::<_, DiskError>(file)
        })
        .map_err(|err| err.to_string())?;
        shared.segment = Segment {
            number,
            path,
            file,
            written: 0,
            synced: 0,
            unsynced: Vec::new(),
        };
        Ok(number)
    }

    /// Flushes what is pending and syncs the segment whatever the policy (a graceful stop
    /// loses nothing, as Redis syncs its AOF at shutdown); from then on every change is
    /// refused. Returns whether this call closed it (false if it was closed already).
    pub(crate) fn close(&self) -> bool {
        let mut shared = self.shared.lock();
        loop {
            if shared.flushing {
                self.flushed.wait(&mut shared);
            } else if !shared.pending.is_empty() {
                self.flush(&mut shared);
            } else {
                break;
            }
        }
        if shared.closed {
            return false;
        }
        shared.closed = true;
        let segment = &shared.segment;
        if segment.synced < segment.written && matches!(shared.status, Status::Ok) {
            let (file, path, upto) = (
                Arc::clone(&segment.file),
                segment.path.clone(),
                segment.written,
            );
            match file.sync() {
                Ok(()) => shared.segment.mark_synced(upto),
                Err(err) => log::error!("{}", DiskError::new("sync", &path, err)),
            }
        }
        self.stopping.notify_all();
        let _ = self.compact.try_send(());
        true
    }

    /// The `everysec` syncer's loop: syncs the segment about once a second until close.
    pub(crate) fn sync_every_second(&self) {
        let mut shared = self.shared.lock();
        loop {
            self.stopping.wait_for(&mut shared, SYNC_INTERVAL);
            if shared.closed {
                return;
            }
            let segment = &shared.segment;
            if segment.synced == segment.written || matches!(shared.status, Status::Failed { .. }) {
                // Nothing new; or a failure, after which the retry syncs what it rewrites.
                continue;
            }
            let (file, path) = (Arc::clone(&segment.file), segment.path.clone());
            let (number, upto, epoch) = (segment.number, segment.written, shared.truncations);
            // Without the mutex, and without the flusher's token: writers keep appending
            // while the sync runs, which is the point of everysec.
            let result = MutexGuard::unlocked(&mut shared, || file.sync());
            if shared.segment.number != number || shared.truncations != epoch {
                // The segment was switched (and synced) or cut back meanwhile.
                continue;
            }
            match result {
                Ok(()) => shared.segment.mark_synced(upto),
                Err(err) => {
                    // What was written since the last good sync may never reach the disk.
                    // It was acknowledged (everysec's window), so nothing is undone; new
                    // changes are refused until a retry has written it again and synced.
                    let reason = DiskError::new("sync", &path, err).to_string();
                    self.mark_failed(&mut shared, reason, true);
                }
            }
        }
    }

    /// Becomes the flusher: writes every pending record in one batch and makes it durable,
    /// or rolls it back. Called with the token free; wakes every waiter when done.
    fn flush(&self, shared: &mut MutexGuard<'_, Shared>) {
        if shared.pending.is_empty() {
            return;
        }
        let last = shared.next - 1;
        let records = last - shared.decided;
        let spare = mem::take(&mut shared.spare);
        let mut batch = mem::replace(&mut shared.pending, spare);
        let undo = mem::take(&mut shared.pending_undo);
        shared.flushing = true;
        shared.in_flight = last;
        let plan = shared.plan(self.settings.fsync);
        // The I/O runs without the mutex: writers keep recording into the next batch.
        let started = Instant::now();
        let result = MutexGuard::unlocked(shared, || plan.run(&batch));
        shared.last_io = started.elapsed();
        shared.flushes += 1;
        shared.flushed_records += records;
        // This flush's writers are the ones the next flusher may wait for.
        shared.released = records;
        shared.returned = 0;
        match result {
            Ok(()) => {
                let end = plan.offset + (plan.rewrite.len() + batch.len()) as u64;
                if plan.truncate_to.is_some() {
                    shared.truncations += 1;
                }
                let segment = &mut shared.segment;
                segment.written = end;
                if plan.sync {
                    segment.mark_synced(end);
                } else if self.settings.fsync == Fsync::Everysec {
                    segment.unsynced.extend_from_slice(&batch);
                }
                shared.decided = last;
                if let Status::Failed { reason, .. } = &shared.status {
                    // Error level, as the failure was: whoever saw that sees this.
                    log::error!(
                        "storage recovered, writes are accepted again (it had failed: {reason})"
                    );
                    shared.status = Status::Ok;
                }
                if end >= self.settings.segment_bytes {
                    let _ = self.compact.try_send(());
                }
                batch.clear();
                shared.spare = batch;
            }
            Err(err) => self.roll_back(shared, &undo, &err),
        }
        self.end_flush(shared);
    }

    /// Gives the flusher's token back and wakes every waiter: first those whose records
    /// were still pending, then those whose records this flush carried.
    ///
    /// The order is the point. A woken waiter must take the mutex again, so the waiters
    /// wake one after another, each handing the mutex to the next; had the pending ones
    /// been woken last (they waited last), the next flush would start only after every
    /// writer of this one had woken, and on a busy machine that chain of wake-ups took
    /// as long as the fsync itself, with the disk idle. Woken first, one of them takes
    /// the token and starts the next batch at once, and this flush's writers go to their
    /// replies while the disk works.
    fn end_flush(&self, shared: &mut Shared) {
        shared.flushing = false;
        shared.in_flight = shared.decided;
        self.next_turn.notify_all();
        self.flushed.notify_all();
    }

    /// `everysec` and `no`'s path: writes one record to the OS at once and decides it. Only
    /// called when nothing is pending, no flush or segment switch is running and the disk is
    /// healthy, so the record goes right after every earlier one and nothing else can be
    /// caught in a failure: a failed write cuts the record's bytes back off and refuses the
    /// change, which the state undoes under the lot's lock before anyone can see it.
    ///
    /// The write runs holding the flusher's token but not the mutex, so writers of other
    /// lots that arrive meanwhile are not held up: they append their records to `pending`
    /// and go on, and the first of them to wait writes all of those with one `write`
    /// ([`Journal::flush`], outside any lot's lock, where a failure can be rolled back).
    fn write_through(
        &self,
        shared: &mut MutexGuard<'_, Shared>,
        encoded: &[u8],
    ) -> Result<Commit, Unavailable> {
        let seq = shared.next;
        shared.next += 1;
        shared.flushing = true;
        shared.in_flight = seq;
        let segment = &shared.segment;
        let (file, offset) = (Arc::clone(&segment.file), segment.written);
        let written = MutexGuard::unlocked(shared, || {
            file.write_at(encoded, offset).inspect_err(|_| {
                // A partial write must not stay in the file. If the cut fails too, the next
                // attempt (a flush, as the disk is marked failed) cuts first.
                let _ = file.truncate(offset);
            })
        });
        let outcome = match written {
            Ok(()) => {
                let segment = &mut shared.segment;
                segment.written += encoded.len() as u64;
                if self.settings.fsync == Fsync::Everysec {
                    segment.unsynced.extend_from_slice(encoded);
                }
                if segment.written >= self.settings.segment_bytes {
                    let _ = self.compact.try_send(());
                }
                Ok(Commit(seq | DECIDED))
            }
            Err(err) => {
                let reason = DiskError::new("write", &shared.segment.path, err).to_string();
                shared.truncations += 1;
                self.mark_failed(shared, reason.clone(), false);
                Err(Unavailable(reason))
            }
        };
        // Decided either way: in the file, or refused (the state undoes it, and no one
        // waits for it). Every earlier record was decided when this one was taken, and
        // later ones are pending behind it, for the next flush.
        shared.decided = seq;
        self.end_flush(shared);
        outcome
    }

    /// Under `always`, before a flush: holding the flusher's token, waits until as many
    /// records have arrived since the last flush ended as it carried (its writers' next
    /// changes, which then share this sync instead of the next one), or until half of the
    /// last flush's I/O time has passed.
    ///
    /// Why wait at all: the writers a sync releases reply, and their clients' next requests
    /// arrive while the following sync runs, so without this each sync carries about half
    /// of the writers and the halves take turns (counted: 6.5-7.9 records per fdatasync at
    /// 16 connections). One batch of all of them costs one sync plus their way back, instead
    /// of two syncs. Why it is bounded by half a flush: past that, waiting costs the waiting
    /// writers more than the next flush would, and a writer that stopped writing (its
    /// client reads, or left) must not hold the others up for long. A lone writer is the
    /// one the last flush released, and its own record is the one arrival expected, so it
    /// never waits.
    fn gather(&self, shared: &mut MutexGuard<'_, Shared>) {
        if self.settings.fsync != Fsync::Always
            || self.settings.max_gather.is_zero()
            || shared.returned >= shared.released
            || !matches!(shared.status, Status::Ok)
        {
            return;
        }
        let deadline = Instant::now() + (shared.last_io / 2).min(self.settings.max_gather);
        shared.gathers += 1;
        // The token is held, so no one else starts a batch; writers that wait meanwhile
        // wait for their turn, which this flush takes them in.
        shared.flushing = true;
        shared.in_flight = shared.decided;
        shared.gathering = true;
        while shared.returned < shared.released && !shared.closed {
            if self.arrived.wait_until(shared, deadline).timed_out() {
                if shared.returned < shared.released {
                    shared.gather_timeouts += 1;
                }
                break;
            }
        }
        shared.gathering = false;
        shared.flushing = false;
    }

    /// The failure path of a flush: refuses changes from now on, cuts the segment back to
    /// its last good length, undoes in memory every change that is not durable (the failed
    /// batch and whatever was recorded since), newest first, and records them as lost so
    /// their waiters get `Unavailable`. Runs holding the flusher's token.
    fn roll_back(
        &self,
        shared: &mut MutexGuard<'_, Shared>,
        batch_undo: &[Change],
        err: &DiskError,
    ) {
        let reason = err.to_string();
        let backoff = self.mark_failed(shared, reason.clone(), false);
        shared.rolling_back = true;
        let later = mem::take(&mut shared.pending_undo);
        shared.pending.clear();
        let (first, last) = (shared.decided + 1, shared.next - 1);
        let segment = &shared.segment;
        let file = Arc::clone(&segment.file);
        let rewrite = matches!(shared.status, Status::Failed { rewrite: true, .. });
        let cut_to = if rewrite {
            segment.synced
        } else {
            segment.written
        };
        MutexGuard::unlocked(shared, || {
            // Cut off whatever part of the batch reached the file. If this fails too, the
            // retry cuts first, before it writes anything.
            let _ = file.truncate(cut_to);
            if let Some(state) = self.state.upgrade() {
                for change in later.iter().rev().chain(batch_undo.iter().rev()) {
                    // Every recorded change is of a lot the state has.
                    let _ = state.apply(change);
                }
            }
        });
        shared.truncations += 1;
        shared.lost.push(Lost {
            first,
            last,
            unclaimed: last - first + 1,
            reason,
        });
        shared.decided = last;
        shared.rolling_back = false;
        shared.rollbacks += 1;
        // The backoff runs from when the rollback is done.
        if let Status::Failed { retry_at, .. } = &mut shared.status {
            *retry_at = Instant::now() + backoff;
        }
    }

    /// Makes the journal unavailable for `reason`, logging the transition once; `rewrite`
    /// when a sync failed, so the retry writes the unsynced bytes again. Returns the wait
    /// before the next attempt, which doubles with each failure in a row.
    fn mark_failed(&self, shared: &mut Shared, reason: String, rewrite: bool) -> Duration {
        let (backoff, rewrite) = match &shared.status {
            Status::Ok => {
                log::error!(
                    "storage unavailable: {reason}; writes are refused (UNAVAILABLE) until the \
                     disk takes them again, first retry in {:?}",
                    self.settings.retry_after
                );
                (self.settings.retry_after, rewrite)
            }
            Status::Failed {
                backoff,
                rewrite: before,
                ..
            } => (*backoff, rewrite || *before),
        };
        shared.status = Status::Failed {
            reason,
            retry_at: Instant::now() + backoff,
            backoff: (backoff * 2).min(MAX_RETRY_AFTER),
            rewrite,
        };
        backoff
    }
}

impl Shared {
    /// Whether a change may be recorded now.
    fn accepting(&self, now: Instant) -> Result<(), Unavailable> {
        if self.closed {
            return Err(Unavailable("the store is closed".into()));
        }
        match &self.status {
            Status::Failed { reason, .. } if self.rolling_back => Err(Unavailable(reason.clone())),
            Status::Failed {
                reason, retry_at, ..
            } if now < *retry_at => Err(Unavailable(reason.clone())),
            // Past the backoff, this change is the next attempt: its flush retries.
            _ => Ok(()),
        }
    }

    /// Whether a record may be written to the OS at once ([`Journal::write_through`]):
    /// nothing is pending (it would go after those), no one holds the flusher's token (a
    /// flush or a segment switch is under way) and the disk is healthy (a retry after a
    /// failure takes the flush path, which rewrites, syncs and rolls back as it must).
    fn can_write_through(&self) -> bool {
        self.pending.is_empty() && !self.flushing && matches!(self.status, Status::Ok)
    }

    /// What the next flush does, given the policy and whether the last attempt failed.
    fn plan(&self, fsync: Fsync) -> Plan {
        let segment = &self.segment;
        let mut plan = Plan {
            file: Arc::clone(&segment.file),
            path: segment.path.clone(),
            truncate_to: None,
            offset: segment.written,
            rewrite: Vec::new(),
            sync: fsync == Fsync::Always,
        };
        if let Status::Failed { rewrite, .. } = self.status {
            if rewrite {
                // The sync failed: write the unsynced bytes again, and sync to prove it.
                plan.truncate_to = Some(segment.synced);
                plan.offset = segment.synced;
                plan.rewrite = segment.unsynced.clone();
                plan.sync = true;
            } else {
                // A failed write may have left part of a batch, or its truncation failed.
                plan.truncate_to = Some(segment.written);
            }
        }
        plan
    }

    /// What became of record `seq`, if it is decided: durable, or rolled back.
    fn outcome(&mut self, seq: u64) -> Option<Result<(), Unavailable>> {
        if let Some(index) = self
            .lost
            .iter()
            .position(|lost| lost.first <= seq && seq <= lost.last)
        {
            let lost = &mut self.lost[index];
            lost.unclaimed -= 1;
            let reason = lost.reason.clone();
            // Every recorded change is waited for once, so the range is done with.
            if lost.unclaimed == 0 {
                self.lost.remove(index);
            }
            return Some(Err(Unavailable(reason)));
        }
        (seq <= self.decided).then_some(Ok(()))
    }
}

impl Segment {
    /// Records that the first `upto` bytes are on the disk.
    fn mark_synced(&mut self, upto: u64) {
        let done = usize::try_from(upto.saturating_sub(self.synced)).unwrap_or(usize::MAX);
        self.unsynced.drain(..done.min(self.unsynced.len()));
        self.synced = self.synced.max(upto);
    }
}

impl Recorder for Journal {
    fn record(&self, undo: &Change, redo: &Change) -> Result<Commit, Unavailable> {
        ENCODED.with_borrow_mut(|encoded| {
            encoded.clear();
            record::encode(encoded, redo)
                .map_err(|err| Unavailable(format!("cannot encode a change: {err}")))?;
            let mut shared = self.shared.lock();
            shared.accepting(Instant::now())?;
            // Any writer's record counts: a request with two changes (an offer) or a new
            // writer only ends a gathering sooner.
            shared.returned += 1;
            if shared.gathering && shared.returned >= shared.released {
                self.arrived.notify_one();
            }
            if self.settings.fsync != Fsync::Always && shared.can_write_through() {
                return self.write_through(&mut shared, encoded);
            }
            shared.pending.extend_from_slice(encoded);
            shared.pending_undo.push(undo.clone());
            let seq = shared.next;
            shared.next += 1;
            Ok(Commit(seq))
        })
    }

    fn wait(&self, commit: Commit) -> Result<(), Unavailable> {
        if commit.0 & DECIDED != 0 {
            // Written through and decided in `record`: it can be in no rollback (those undo
            // only records after `decided`), so there is nothing to ask under the mutex,
            // which at 16 connections another writer holds for its `write` more often than
            // not. (Gathering is `always`'s only: nothing to count here.)
            return Ok(());
        }
        let mut shared = self.shared.lock();
        loop {
            if let Some(outcome) = shared.outcome(commit.0) {
                return outcome;
            }
            if shared.flushing && commit.0 > shared.in_flight {
                // Pending behind the flush under way: woken first when it ends, to flush.
                self.next_turn.wait(&mut shared);
            } else if shared.flushing {
                self.flushed.wait(&mut shared);
            } else {
                // Our record is pending and nobody is writing: we write it, and everyone
                // else's with it, once the writers we expect back have joined.
                self.gather(&mut shared);
                self.flush(&mut shared);
            }
        }
    }
}
