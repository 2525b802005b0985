//! The RPCs of Figure 2 as plain values. Requests and replies are both
//! one-way messages; a reply is matched to its request by term and content.

use serde::{Deserialize, Serialize};

use crate::types::{Entry, Index, NodeId, SnapshotMeta, Term};

/// One message between two servers. `term` is the sender's current term,
/// except for a PreVote request (the term the sender would campaign in) and a
/// granted PreVote reply (that same term echoed back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: Body,
}

/// The payload of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// RequestVote (Figure 2). With `pre_vote` set it only asks whether the
    /// receiver *would* vote, and changes no state (thesis §9.6).
    RequestVote {
        last_log_index: Index,
        last_log_term: Term,
        pre_vote: bool,
    },
    /// Reply to [`Body::RequestVote`].
    RequestVoteReply { granted: bool, pre_vote: bool },
    /// AppendEntries (Figure 2); with no entries it is a heartbeat and still
    /// runs the consistency check.
    AppendEntries {
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    },
    /// Reply to [`Body::AppendEntries`].
    AppendEntriesReply(AppendReply),
    /// One chunk of InstallSnapshot (Figure 13): `offset` into the snapshot
    /// data; `done` marks the last chunk.
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    },
    /// Reply to [`Body::InstallSnapshot`]: the chunk at `offset` was taken
    /// (`next_offset` is what the follower wants next), or the whole snapshot
    /// is installed when `installed` is set.
    InstallSnapshotReply {
        meta: SnapshotMeta,
        next_offset: u64,
        installed: bool,
    },
}

/// The outcome of an AppendEntries at the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendReply {
    /// The follower's log matches the leader's through `match_index`.
    Success { match_index: Index },
    /// The consistency check failed at `prev_log_index`. `conflict_term` is
    /// the follower's term at that index and `conflict_index` the first index
    /// it holds of that term; with no `conflict_term` the log was too short and
    /// `conflict_index` is one past its end (fast backtracking, §5.3).
    Conflict {
        prev_log_index: Index,
        conflict_term: Option<Term>,
        conflict_index: Index,
    },
    /// The request came from an older term; only the reply's term matters.
    StaleTerm,
}

impl Body {
    /// Whether this body answers a request (and so is dropped when stale).
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Body::RequestVoteReply { .. }
                | Body::AppendEntriesReply(_)
                | Body::InstallSnapshotReply { .. }
        )
    }

    /// A short name for traces and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::RequestVote { pre_vote: true, .. } => "PreVote",
            Body::RequestVote { .. } => "RequestVote",
            Body::RequestVoteReply { pre_vote: true, .. } => "PreVoteReply",
            Body::RequestVoteReply { .. } => "RequestVoteReply",
            Body::AppendEntries { .. } => "AppendEntries",
            Body::AppendEntriesReply(_) => "AppendEntriesReply",
            Body::InstallSnapshot { .. } => "InstallSnapshot",
            Body::InstallSnapshotReply { .. } => "InstallSnapshotReply",
        }
    }
}
