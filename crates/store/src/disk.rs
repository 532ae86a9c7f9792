//! The file operations the embedded store makes, behind a trait so that a test can make any
//! of them fail: [`Disk`] and [`DiskFile`], the real [`RealDisk`], and [`FaultyDisk`], which
//! fails on demand (an I/O error, a full disk) or stops reaching the disk altogether (a
//! simulated crash).
//!
//! Only writes go through here. Reading the data directory at start-up uses `std::fs`
//! directly: there is nothing to inject there that a test cannot write into the files.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Where the store writes: creating and opening files, replacing and removing them, and
/// making directory entries durable.
pub trait Disk: Send + Sync + fmt::Debug {
    /// Opens `path` for writing at explicit offsets; `Create::Empty` creates it or empties
    /// it, `Create::Keep` creates it only if it is missing.
    fn open(&self, path: &Path, create: Create) -> io::Result<Arc<dyn DiskFile>>;
    /// Writes `bytes` as the whole content of `path` (created or replaced) and syncs it.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `dir` (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Whether [`Disk::open`] keeps what a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Keep the content; create the file if it is missing.
    Keep,
    /// Start from an empty file.
    Empty,
}

/// An open file the store appends to.
pub trait DiskFile: Send + Sync {
    /// Writes all of `bytes` at `offset`.
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Makes what was written durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn open(&self, path: &Path, create: Create) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(create == Create::Empty)
            .open(path)?;
        Ok(Arc::new(RealFile(file)))
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let file = File::create(path)?;
        file.write_all_at(bytes, 0)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

struct RealFile(File);

impl DiskFile for RealFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// A kind of operation on the disk, as [`FaultyDisk`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// [`Disk::open`].
    Open,
    /// [`DiskFile::write_at`].
    Write,
    /// [`DiskFile::sync`].
    Sync,
    /// [`DiskFile::truncate`].
    Truncate,
    /// [`Disk::write_file`].
    WriteFile,
    /// [`Disk::rename`].
    Rename,
    /// [`Disk::remove`].
    Remove,
    /// [`Disk::sync_dir`].
    SyncDir,
}

/// One operation [`FaultyDisk`] is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    /// What it is.
    pub op: Op,
    /// The file (for a rename, its source; for `SyncDir`, the directory).
    pub path: &'a Path,
    /// How many operations came before it on this disk.
    pub index: u64,
}

/// The error a failing operation returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `EIO`: the device failed.
    Io,
    /// `ENOSPC`: no space left on the device. A failing write still puts the first half of
    /// its bytes in the file, as a real disk may take part of a write before it fills up.
    Full,
}

impl Fault {
    fn error(self, operation: &Operation<'_>) -> io::Error {
        let (kind, what) = match self {
            Fault::Io => (io::ErrorKind::Other, "input/output error"),
            Fault::Full => (io::ErrorKind::StorageFull, "no space left on device"),
        };
        io::Error::new(
            kind,
            format!(
                "{what} (injected into {:?} of {})",
                operation.op,
                operation.path.display()
            ),
        )
    }
}

type Rule = Box<dyn Fn(&Operation<'_>) -> bool + Send + Sync>;

/// A test double: the real disk, except that the operations a rule picks fail with a
/// [`Fault`] and never reach the disk.
#[derive(Default)]
pub struct FaultyDisk {
    real: RealDisk,
    faults: Arc<Faults>,
}

#[derive(Default)]
struct Faults {
    /// Shared out of the mutex before it runs, so a rule may block (a test holding an
    /// operation back) without holding up every other operation's check.
    rule: Mutex<Option<Arc<(Fault, Rule)>>>,
    done: AtomicU64,
}

impl fmt::Debug for FaultyDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyDisk")
            .field("operations", &self.operations())
            .field("failing", &self.faults.rule.lock().is_some())
            .finish()
    }
}

impl FaultyDisk {
    /// A disk that fails nothing until told to.
    pub fn new() -> Arc<FaultyDisk> {
        Arc::new(FaultyDisk::default())
    }

    /// From now on, every operation for which `when` holds fails with `fault`. `when` sees
    /// every operation before it happens, so it may also count them, or hold one back.
    pub fn fail(
        &self,
        fault: Fault,
        when: impl Fn(&Operation<'_>) -> bool + Send + Sync + 'static,
    ) {
        *self.faults.rule.lock() = Some(Arc::new((fault, Box::new(when))));
    }

    /// From now on, every operation of one of `ops` fails with `fault`.
    pub fn fail_ops(&self, fault: Fault, ops: &'static [Op]) {
        self.fail(fault, move |operation| ops.contains(&operation.op));
    }

    /// Simulates a crash after `more` further operations: those reach the disk, no later one
    /// does (they fail with `EIO`).
    pub fn crash_after(&self, more: u64) {
        let at = self.operations() + more;
        self.fail(Fault::Io, move |operation| operation.index >= at);
    }

    /// Stops failing operations.
    pub fn heal(&self) {
        *self.faults.rule.lock() = None;
    }

    /// How many operations have been asked of this disk, failed ones included.
    pub fn operations(&self) -> u64 {
        self.faults.done.load(Ordering::SeqCst)
    }
}

impl Faults {
    /// Counts the operation, and fails it if the rule says so.
    fn check(&self, op: Op, path: &Path) -> io::Result<()> {
        let index = self.done.fetch_add(1, Ordering::SeqCst);
        let operation = Operation { op, path, index };
        let rule = self.rule.lock().clone();
        match rule.as_deref() {
            Some((fault, rule)) if rule(&operation) => Err(fault.error(&operation)),
            _ => Ok(()),
        }
    }
}

impl Disk for FaultyDisk {
    fn open(&self, path: &Path, create: Create) -> io::Result<Arc<dyn DiskFile>> {
        self.faults.check(Op::Open, path)?;
        Ok(Arc::new(FaultyFile {
            real: self.real.open(path, create)?,
            path: path.to_path_buf(),
            faults: Arc::clone(&self.faults),
        }))
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.faults.check(Op::WriteFile, path)?;
        self.real.write_file(path, bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Op::Rename, from)?;
        self.real.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Op::Remove, path)?;
        self.real.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.check(Op::SyncDir, dir)?;
        self.real.sync_dir(dir)
    }
}

struct FaultyFile {
    real: Arc<dyn DiskFile>,
    path: PathBuf,
    faults: Arc<Faults>,
}

impl DiskFile for FaultyFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        if let Err(err) = self.faults.check(Op::Write, &self.path) {
            // A full disk may take part of a write before it fails: the store must cut it off.
            if err.kind() == io::ErrorKind::StorageFull {
                let half = bytes.get(..bytes.len() / 2).unwrap_or_default();
                let _ = self.real.write_at(half, offset);
            }
            return Err(err);
        }
        self.real.write_at(bytes, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.faults.check(Op::Sync, &self.path)?;
        self.real.sync()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.faults.check(Op::Truncate, &self.path)?;
        self.real.truncate(len)
    }
}
