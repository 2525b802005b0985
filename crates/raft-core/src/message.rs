//! The RPCs of Figure 2 as plain values. Requests and replies are both
//! one-way messages; a reply is matched to its request by term and content.

use serde::{Deserialize, Serialize};

use crate::conf::ConfState;
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
    /// receiver *would* vote, and changes no state (thesis §9.6). With
    /// `transfer` set the candidate campaigns on its leader's TimeoutNow, and
    /// voters disregard that leader's lease (thesis §3.10).
    RequestVote {
        last_log_index: Index,
        last_log_term: Term,
        pre_vote: bool,
        transfer: bool,
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
        conf: ConfState,
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
    /// The leader's periodic "I am alive" (§5.2). It carries no log position,
    /// so it can never be mistaken for a failed consistency check; `commit`
    /// is the leader's commit index capped at what the follower is known to
    /// hold, so the follower may commit through it. `ctx` numbers the
    /// leader's read round (thesis §6.4; 0 for none).
    Heartbeat { commit: Index, ctx: u64 },
    /// Reply to [`Body::Heartbeat`], echoing its read round.
    HeartbeatReply { ctx: u64 },
    /// A follower asks the leader for a read index on behalf of a read of its
    /// own (thesis §6.4, follower reads). Answered by
    /// [`Body::ReadIndexReply`] once the leader has confirmed its leadership,
    /// or never (the follower's caller times out).
    ReadIndex { ctx: u64 },
    /// The read index for the follower's read `ctx`: once the follower has
    /// applied through `index`, the read may be served from its state.
    ReadIndexReply { ctx: u64, index: Index },
    /// The leader hands over leadership: the receiver, whose log is up to
    /// date, campaigns at once (thesis §3.10). One-way.
    TimeoutNow,
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
                | Body::HeartbeatReply { .. }
                | Body::ReadIndexReply { .. }
        )
    }

    /// Whether this body is a request that the receiver answers in the Ready
    /// right after stepping it (see the crate docs for the exceptions).
    pub fn expects_reply(&self) -> bool {
        matches!(
            self,
            Body::RequestVote { .. }
                | Body::AppendEntries { .. }
                | Body::InstallSnapshot { .. }
                | Body::Heartbeat { .. }
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
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatReply { .. } => "HeartbeatReply",
            Body::ReadIndex { .. } => "ReadIndex",
            Body::ReadIndexReply { .. } => "ReadIndexReply",
            Body::TimeoutNow => "TimeoutNow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every body's name and class. Drivers depend on both: raft-sim holds
    /// messages chosen by class or by name and counts them per name, raft-lab
    /// hands a reply back to the caller waiting on that peer, and raft-sim
    /// checks the one-reply promise (crate docs) for each request that
    /// expects a reply.
    #[test]
    fn each_body_has_its_name_and_class() {
        let meta = SnapshotMeta::default();
        let vote = |pre_vote| Body::RequestVote {
            last_log_index: 0,
            last_log_term: 0,
            pre_vote,
            transfer: false,
        };
        let vote_reply = |pre_vote| Body::RequestVoteReply {
            granted: true,
            pre_vote,
        };
        // (body, kind, is_reply, expects_reply)
        let table = [
            (vote(true), "PreVote", false, true),
            (vote(false), "RequestVote", false, true),
            (vote_reply(true), "PreVoteReply", true, false),
            (vote_reply(false), "RequestVoteReply", true, false),
            (
                Body::AppendEntries {
                    prev_log_index: 0,
                    prev_log_term: 0,
                    entries: vec![],
                    leader_commit: 0,
                },
                "AppendEntries",
                false,
                true,
            ),
            (
                Body::AppendEntriesReply(AppendReply::StaleTerm),
                "AppendEntriesReply",
                true,
                false,
            ),
            (
                Body::InstallSnapshot {
                    meta,
                    conf: ConfState::default(),
                    offset: 0,
                    data: vec![],
                    done: true,
                },
                "InstallSnapshot",
                false,
                true,
            ),
            (
                Body::InstallSnapshotReply {
                    meta,
                    next_offset: 0,
                    installed: false,
                },
                "InstallSnapshotReply",
                true,
                false,
            ),
            (
                Body::Heartbeat { commit: 0, ctx: 1 },
                "Heartbeat",
                false,
                true,
            ),
            (
                Body::HeartbeatReply { ctx: 1 },
                "HeartbeatReply",
                true,
                false,
            ),
            // Answered later, or never: no reply in the next Ready.
            (Body::ReadIndex { ctx: 1 }, "ReadIndex", false, false),
            (
                Body::ReadIndexReply { ctx: 1, index: 0 },
                "ReadIndexReply",
                true,
                false,
            ),
            // One-way (thesis §3.10).
            (Body::TimeoutNow, "TimeoutNow", false, false),
        ];
        for (body, kind, is_reply, expects_reply) in table {
            assert_eq!(body.kind(), kind, "{body:?}");
            assert_eq!(body.is_reply(), is_reply, "{body:?}");
            assert_eq!(body.expects_reply(), expects_reply, "{body:?}");
        }
    }
}
