//! Typed errors of the core.

use thiserror::Error;

use crate::types::{Index, NodeId};

/// Errors a [`Storage`](crate::Storage) reports.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The entry was discarded into a snapshot.
    #[error("index {0} is compacted into the snapshot")]
    Compacted(Index),
    /// The entry is past the end of the log.
    #[error("index {0} is past the last entry")]
    Unavailable(Index),
    /// A snapshot older than the stored one was offered.
    #[error("snapshot at index {offered} is older than the stored one at {stored}")]
    SnapshotOutOfDate { offered: Index, stored: Index },
    /// The backing store failed (disk, corruption); the node must stop.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Invalid [`Config`](crate::Config) values, found by `Config::validate`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("node id 0 is reserved")]
    ZeroId,
    #[error("node {0} appears twice in the voter set")]
    DuplicateVoter(NodeId),
    #[error("node {0} is not in its own voter set")]
    NotAVoter(NodeId),
    #[error("heartbeat_tick must be at least 1")]
    ZeroHeartbeat,
    #[error("heartbeat_tick ({heartbeat}) must be smaller than election_tick ({election})")]
    HeartbeatNotBelowElection { heartbeat: u32, election: u32 },
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    #[error(
        "lease_reads needs check_quorum: a lease rests on followers ignoring votes (thesis §6.4.1)"
    )]
    LeaseWithoutCheckQuorum,
    #[error("lease_drift_permille ({0}) must be below 1000")]
    LeaseDrift(u32),
}

/// Errors from driving a [`Node`](crate::Node).
#[derive(Debug, Error)]
pub enum Error {
    /// Only the leader accepts proposals; `leader` is the last one known.
    #[error("not the leader (leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// A snapshot was requested at an index not yet applied, or already covered.
    #[error("cannot snapshot at {index}: applied is {applied}, last snapshot is {snapshot}")]
    BadSnapshotIndex {
        index: Index,
        applied: Index,
        snapshot: Index,
    },
    /// A leadership transfer to `to` is under way: proposals wait for it.
    #[error("leadership is being transferred to {to}")]
    Transferring { to: NodeId },
    /// `transfer_leader` was given a node that is not another voter.
    #[error("node {0} is not another voter; leadership cannot go there")]
    BadTransferTarget(NodeId),
    /// A membership change was refused.
    #[error("configuration change refused: {0}")]
    ConfChange(#[from] crate::conf::ConfChangeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}
