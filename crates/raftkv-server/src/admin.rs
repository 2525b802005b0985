//! The admin API's vocabulary: membership changes and leadership transfer
//! as the HTTP layer hands them to the driver, their answers, and their
//! typed errors. The driver's side is in `reconfig`.

use raft_core::{ConfChangeError, Index, NodeId, Term};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::PeerAddrs;
use crate::status::LeaderRef;

/// A learner is caught up, and may be promoted, when the leader's match
/// index for it is at most this many entries behind the leader's log (one
/// full AppendEntries). Promoting a server far behind would leave the new
/// majority waiting for it (thesis §4.2.1).
pub const CATCH_UP_ENTRIES: u64 = 512;

/// What an admin call asks of the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRequest {
    /// The configuration as this node sees it (the latest in its log).
    Members,
    /// Add `id` as a learner at `addrs`. Already a member at the same
    /// addresses: nothing changes (so a joining node may ask again).
    AddLearner {
        id: NodeId,
        addrs: PeerAddrs,
        /// The cluster the caller believes it joins.
        cluster_id: Option<String>,
    },
    /// Make these learners voters (one: a single-server change; several: a
    /// joint change). Refused while one is not caught up.
    Promote(Vec<NodeId>),
    /// Remove these members (one: a single-server change; several: a joint
    /// change).
    Remove(Vec<NodeId>),
    /// Hand leadership to this voter, or to the most caught-up one.
    TransferLeader(Option<NodeId>),
}

/// The driver's answer to an admin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminReply {
    /// The configuration (after the change, once it committed).
    Members(MembersReport),
    /// Leadership moved.
    Transferred(TransferReport),
}

/// The configuration as one node sees it: `GET /v1/members`, and the answer
/// of every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersReport {
    /// The cluster id.
    pub cluster_id: String,
    /// The node that answered.
    pub node: NodeId,
    /// The leader it knows of.
    pub leader: Option<LeaderRef>,
    /// Voters (during a joint change: C_new's).
    pub voters: Vec<MemberInfo>,
    /// Learners: receive the log, do not vote.
    pub learners: Vec<MemberInfo>,
    /// During a joint change, C_old's voters; empty otherwise.
    #[serde(default)]
    pub voters_outgoing: Vec<NodeId>,
    /// Whether a joint change (C_old,new) is in force.
    #[serde(default)]
    pub joint: bool,
    /// Whether the call changed the configuration (false: it already was so).
    #[serde(default)]
    pub changed: bool,
    /// The answering node's commit index.
    pub commit: Index,
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its node id.
    pub id: NodeId,
    /// Its Raft address (empty if this node does not know it).
    pub raft: String,
    /// Its client address (empty if unknown).
    pub client: String,
    /// The leader's match index for it (on the leader only).
    pub match_index: Option<Index>,
}

/// The answer of a leadership transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReport {
    /// The leader before.
    pub from: NodeId,
    /// The leader now.
    pub to: NodeId,
    /// The new leader's term.
    pub term: Term,
    /// Whether leadership moved (false: `to` already led).
    pub changed: bool,
}

/// Why an admin call failed. Each has a stable kind for the HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AdminError {
    /// Only the leader changes the configuration.
    #[error("not the leader")]
    NotLeader { leader: Option<NodeId> },
    /// A change is not committed yet, or the cluster is in a joint configuration.
    #[error("another membership change is in progress ({0}); retry once it is done")]
    ChangeInProgress(String),
    /// A new leader has not committed an entry of its term (raft-dev erratum, 2015).
    #[error("the leader has not committed an entry of its term yet; retry")]
    LeaderNotReady,
    /// Proposals wait while leadership is handed over.
    #[error("a leadership transfer is in progress; retry")]
    TransferInProgress,
    /// No such member.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    /// Already a member, in that role or at other addresses.
    #[error("node {0} is already a member {1}")]
    AlreadyMember(NodeId, String),
    /// The id belonged to a removed member.
    #[error("node id {0} belonged to a removed member; ids are never reused")]
    Retired(NodeId),
    /// A learner too far behind to vote.
    #[error(
        "learner {id} is not caught up (match index {matched}, leader's last index {last}); retry"
    )]
    NotCaughtUp {
        id: NodeId,
        matched: Index,
        last: Index,
    },
    /// The change does not fit the configuration.
    #[error("{0}")]
    BadChange(String),
    /// Leadership can only go to another voter.
    #[error("node {0} is not another voter; leadership cannot go there")]
    BadTransferTarget(NodeId),
    /// The caller is in another cluster.
    #[error("cluster id {found:?} is not this cluster's ({expected:?})")]
    WrongCluster { found: String, expected: String },
    /// The leader lost its leadership or its entry before the change
    /// committed: it may still take effect.
    #[error("leadership changed before the change committed; it may or may not take effect: check `member list`")]
    Lost { leader: Option<NodeId> },
    /// No answer in time; the change may still take effect.
    #[error("the change did not complete in time; it may still take effect")]
    Timeout,
    /// The transfer was abandoned (the target did not win in time).
    #[error("leadership did not move to node {0} within an election timeout; retry")]
    TransferFailed(NodeId),
    /// The node cannot serve (stopping, storage failed).
    #[error("{0}")]
    Unavailable(String),
}

impl From<raft_core::Error> for AdminError {
    fn from(e: raft_core::Error) -> Self {
        use raft_core::Error as E;
        match e {
            E::NotLeader { leader } => AdminError::NotLeader { leader },
            E::Transferring { .. } => AdminError::TransferInProgress,
            E::BadTransferTarget(id) => AdminError::BadTransferTarget(id),
            E::ConfChange(c) => c.into(),
            other => AdminError::Unavailable(other.to_string()),
        }
    }
}

impl From<ConfChangeError> for AdminError {
    fn from(e: ConfChangeError) -> Self {
        use ConfChangeError as C;
        match e {
            C::Pending | C::InJoint => AdminError::ChangeInProgress(e.to_string()),
            C::TermNotCommitted => AdminError::LeaderNotReady,
            C::Transferring => AdminError::TransferInProgress,
            C::NotMember(id) => AdminError::UnknownNode(id),
            C::AlreadyMember(id) => AdminError::AlreadyMember(id, "in that role".into()),
            other => AdminError::BadChange(other.to_string()),
        }
    }
}
