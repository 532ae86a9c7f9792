//! [`OpenError`]: why a data directory cannot be opened (or repaired).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::journal::DiskError;

/// Why the embedded store could not open (or repair) its data directory.
#[derive(Debug)]
pub struct OpenError {
    /// The data directory.
    pub dir: PathBuf,
    /// What is wrong.
    pub kind: OpenErrorKind,
}

/// What is wrong with a data directory.
#[derive(Debug)]
pub enum OpenErrorKind {
    /// Another process holds the directory's lock: another server is using it.
    Locked,
    /// A file operation failed.
    Disk(DiskError),
    /// A journal segment has a bad record before its tail (valid records follow it, or
    /// later segments do): not what a crash leaves, so nothing is cut without being asked.
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A journal segment between the snapshot and the newest segment is missing.
    MissingSegment(PathBuf),
    /// The newest snapshot cannot be used.
    BadSnapshot {
        /// The snapshot file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The state given to the store already records its changes somewhere else.
    AlreadyRecording,
    /// A thread of the store could not be started.
    Spawn(io::Error),
}

impl OpenError {
    pub(crate) fn new(dir: &Path, kind: OpenErrorKind) -> Self {
        OpenError {
            dir: dir.to_path_buf(),
            kind,
        }
    }

    pub(crate) fn disk(dir: &Path, err: DiskError) -> Self {
        OpenError::new(dir, OpenErrorKind::Disk(err))
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        match &self.kind {
            OpenErrorKind::Locked => write!(
                f,
                "data directory {dir} is in use by another parking-server (it holds {}); stop \
                 that server or give this one another data_dir",
                self.dir.join(crate::files::LOCK).display()
            ),
            OpenErrorKind::Disk(err) => write!(f, "data directory {dir}: {err}"),
            OpenErrorKind::Corrupt {
                file,
                offset,
                reason,
            } => write!(
                f,
                "{} is corrupt at byte {offset} ({reason}), and valid records follow it: not \
                 starting, so that nothing is lost silently. `parking-server repair --data-dir \
                 {dir}` cuts the journal there, keeps the rest aside in a file next to it, and \
                 reports what is lost",
                file.display()
            ),
            OpenErrorKind::MissingSegment(file) => write!(
                f,
                "{} is missing: the journal must run on from the newest snapshot without a gap; \
                 restore it, or move the segments after it away to start from what precedes it",
                file.display()
            ),
            OpenErrorKind::BadSnapshot { file, reason } => {
                write!(f, "snapshot {} cannot be used: {reason}", file.display())
            }
            OpenErrorKind::AlreadyRecording => write!(
                f,
                "the state already records its changes elsewhere; a state has one store"
            ),
            OpenErrorKind::Spawn(err) => write!(f, "cannot start a store thread: {err}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            OpenErrorKind::Disk(err) => Some(err),
            OpenErrorKind::Spawn(err) => Some(err),
            _ => None,
        }
    }
}
