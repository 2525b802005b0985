//! Typed errors of the lab API. Nothing here panics on bad input: a corrupt
//! persister refuses to start with [`MakeError::Corrupt`], a stopped node
//! answers [`StartError::Killed`].

use thiserror::Error;

use raft_core::{ConfigError, Index, StorageError};

/// Why [`make`](crate::make) could not start a node.
#[derive(Debug, Error)]
pub enum MakeError {
    /// `me` is not an index into `peers`.
    #[error("me ({me}) is not an index into the {peers} peers")]
    BadMe { me: usize, peers: usize },
    /// An [`Options`](crate::Options) value is unusable.
    #[error("invalid options: {0}")]
    Options(&'static str),
    /// The options or the derived raft-core configuration are invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The persister could not be read.
    #[error("reading the persister: {0}")]
    Read(#[source] std::io::Error),
    /// The persister holds raft state this crate cannot decode or that
    /// breaks the log's rules; the node refuses to start rather than guess.
    #[error("persisted raft state is corrupt: {0}")]
    Corrupt(#[from] DecodeError),
    /// The core refused the recovered state.
    #[error("raft-core rejected the recovered state: {0}")]
    Core(#[from] raft_core::Error),
    /// A thread could not be spawned.
    #[error("spawning a thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why persisted raft-state bytes could not be turned back into a log.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The bytes do not start with this crate's header.
    #[error("missing the raft-lab header (not written by this crate?)")]
    BadMagic,
    /// Written in another format version: 1 is the bincode format of
    /// earlier raft-lab releases, which this one no longer reads (bincode is
    /// unmaintained, RUSTSEC-2025-0141); start from a fresh persister.
    #[error(
        "raft state is in format version {found}, this raft-lab reads only version {supported}{}",
        if *.found == 1 { " (version 1 is the old bincode format)" } else { "" }
    )]
    Version { found: u8, supported: u8 },
    /// postcard could not decode the body (truncated or garbled).
    #[error("undecodable body: {0}")]
    Body(#[from] postcard::Error),
    /// The body decoded but bytes were left over after it.
    #[error("{0} bytes left over after the raft state")]
    Trailing(usize),
    /// Decoded, but the log breaks an invariant (a term going down, a commit
    /// index past the end, indices past `u64::MAX`).
    #[error("inconsistent log: {0}")]
    Inconsistent(String),
    /// Rebuilding the in-memory log failed.
    #[error("rebuilding the log: {0}")]
    Storage(#[from] StorageError),
}

/// Why [`Node::start`](crate::Node::start) did not append the command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StartError {
    /// Only the leader accepts commands (the lab's `isLeader == false`).
    /// `leader` is the peer index of the leader this node last heard from.
    #[error("not the leader (last known leader: {leader:?})")]
    NotLeader { leader: Option<usize> },
    /// The node was killed, or stopped after a persister failure.
    #[error("the node is killed")]
    Killed,
    /// The node did not answer within `Options::driver_timeout` (a very slow
    /// persister). The command may still be appended; retry elsewhere or later.
    #[error("the node did not answer in time")]
    Timeout,
}

/// Why [`Node::snapshot`](crate::Node::snapshot) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// `index` is beyond what this node handed out to apply, or is already
    /// covered by a snapshot (for example one just installed from the leader).
    /// Refusing it is harmless; the lab's Raft silently ignores such calls.
    #[error("cannot snapshot at {index}: applied {applied}, snapshot at {snapshot}")]
    BadIndex {
        index: Index,
        applied: Index,
        snapshot: Index,
    },
    /// The node was killed, or stopped after a persister failure.
    #[error("the node is killed")]
    Killed,
    /// The node did not answer within `Options::driver_timeout`.
    #[error("the node did not answer in time")]
    Timeout,
}
