//! The values Raft persists: log entries, the hard state and snapshots.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::conf::ConfState;

/// A server's identity in the cluster. Zero is reserved as "nobody".
pub type NodeId = u64;
/// An election term (Figure 2: `currentTerm`). Terms only grow.
pub type Term = u64;
/// A position in the log. The first entry has index 1; index 0 is the empty prefix.
pub type Index = u64;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A command proposed by the application.
    Normal,
    /// The empty entry a new leader appends when `Config::noop_on_election` is set (§8),
    /// so that it can commit entries of earlier terms and serve reads.
    Noop,
    /// A membership change: its data is an encoded [`ConfEntry`](crate::ConfEntry).
    /// It takes effect when appended (§6).
    Config,
}

/// One log entry (Figure 2: "each entry contains command for state machine,
/// and term when entry was received by leader").
///
/// The payload is a shared buffer: once proposed it is never copied, only
/// shared, on its way to storage, to every follower and to the application.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// A command entry.
    pub fn normal(index: Index, term: Term, data: impl Into<Bytes>) -> Self {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: data.into(),
        }
    }

    /// Approximate encoded size, used to bound messages and apply batches.
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The state Figure 2 lists as "persistent state on all servers", plus the
/// commit index so that a restarted node can apply without waiting for a leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// `currentTerm`.
    pub term: Term,
    /// `votedFor`: the candidate that received this server's vote in `term`.
    pub vote: Option<NodeId>,
    /// Highest index known to be committed (safe to lose; persisted as a hint).
    pub commit: Index,
}

/// What identifies a snapshot: the last index and term it replaces (§7),
/// and the length and CRC32C of its data, so that a receiver can tell two
/// encodings of one state apart and refuse an install whose bytes do not
/// match (a transfer spliced from two senders, or damaged on the way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// `lastIncludedIndex`.
    pub index: Index,
    /// `lastIncludedTerm`.
    pub term: Term,
    /// Length of the data in bytes.
    pub size: u64,
    /// CRC32C of the data.
    pub crc: u32,
}

impl SnapshotMeta {
    /// The metadata of `data` as the image through `index` (of `term`).
    pub fn of(index: Index, term: Term, data: &[u8]) -> Self {
        SnapshotMeta {
            index,
            term,
            size: data.len() as u64,
            crc: crc32c::crc32c(data),
        }
    }

    /// Whether `data` has this metadata's length and checksum.
    pub fn matches(&self, data: &[u8]) -> bool {
        data.len() as u64 == self.size && crc32c::crc32c(data) == self.crc
    }
}

/// A state machine image covering every entry up to `meta.index`, with the
/// configuration in force at that index (§7: "the last configuration as of
/// lastIncludedIndex").
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub conf: ConfState,
    pub data: Vec<u8>,
}

impl Snapshot {
    /// The image `data` through `index` (whose entry has `term`), with its
    /// length and checksum filled in and no configuration (the node's
    /// bootstrap voters stand in for it). [`Node::snapshot`](crate::Node::snapshot)
    /// fills in the configuration itself.
    pub fn new(index: Index, term: Term, data: Vec<u8>) -> Self {
        Snapshot {
            meta: SnapshotMeta::of(index, term, &data),
            conf: ConfState::default(),
            data,
        }
    }
}
