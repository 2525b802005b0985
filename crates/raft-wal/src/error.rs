//! Typed errors of the write-ahead log.

use std::io;
use std::path::PathBuf;

use raft_core::{Index, StorageError};
use thiserror::Error;

/// Everything that can go wrong opening, reading or writing a [`Wal`](crate::Wal).
///
/// Each variant that points at disk data names the file and the byte offset,
/// so an operator can inspect it; none of them is ever "fixed" silently.
#[derive(Debug, Error)]
pub enum WalError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the WAL was doing ("open", "fsync", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Wal` in this one) holds the directory.
    #[error("data directory {0} is locked by another process")]
    Locked(PathBuf),
    /// Acknowledged data does not match its checksum or cannot be decoded.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// The log refers to entries no remaining segment holds (a segment file
    /// was lost or deleted by hand).
    #[error("log entries from index {index} are missing: segment file {} is gone", path.display())]
    MissingEntries {
        /// The first missing index.
        index: Index,
        /// The segment file that should hold them (the one before the oldest
        /// segment left).
        path: PathBuf,
    },
    /// The log refers to a snapshot file that is not there.
    #[error("snapshot file {0} is missing")]
    MissingSnapshot(PathBuf),
    /// An earlier write or fsync failed, so what is on disk is unknown; the
    /// WAL refuses further writes until it is reopened (an fsync error must
    /// never be retried and taken as success).
    #[error("an earlier write failed; reopen the WAL to recover")]
    Poisoned,
    /// The caller broke the `Storage` contract (e.g. non-contiguous entries).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A single batch or entry is too large for the record format.
    #[error("record of {0} bytes is too large")]
    TooLarge(u64),
}

impl WalError {
    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }

    /// A corruption error at `offset` of `path`.
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        WalError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl From<WalError> for StorageError {
    fn from(e: WalError) -> Self {
        StorageError::Backend(Box::new(e))
    }
}
