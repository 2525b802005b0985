//! What `GET /v1/status` answers: the node's Raft state as its driver sees it.

use raft_core::{Index, NodeId, Role, Term};
use serde::{Deserialize, Serialize};

/// One node's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node's id.
    pub id: NodeId,
    /// The cluster id.
    pub cluster_id: String,
    /// `follower`, `precandidate`, `candidate` or `leader`.
    pub role: String,
    /// The current term.
    pub term: Term,
    /// The leader this node knows of in its term.
    pub leader: Option<LeaderRef>,
    /// The commit index.
    pub commit: Index,
    /// The last index applied to the state machine.
    pub applied: Index,
    /// The log's last index.
    pub last_index: Index,
    /// The index the latest snapshot covers (0: none).
    pub snapshot_index: Index,
    /// Client requests waiting for an answer.
    pub pending_requests: usize,
    /// Whether the node refuses writes because its disk is (nearly) full.
    #[serde(default)]
    pub no_space: bool,
    /// The voters of the configuration in force (C_new's during a joint change).
    #[serde(default)]
    pub voters: Vec<NodeId>,
    /// The learners (non-voting members).
    #[serde(default)]
    pub learners: Vec<NodeId>,
    /// During a joint change (C_old,new), C_old's voters; empty otherwise.
    #[serde(default)]
    pub voters_outgoing: Vec<NodeId>,
    /// The other members.
    pub peers: Vec<PeerStatus>,
}

/// A leader, with the address its clients use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRef {
    /// Its node id.
    pub id: NodeId,
    /// Its client (HTTP) address, `host:port`, as this node's peer list has it.
    pub client: String,
}

/// Another member, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its node id.
    pub id: NodeId,
    /// Its Raft address.
    pub raft: String,
    /// Its client address.
    pub client: String,
    /// Whether the peer connection is up.
    pub connected: bool,
    /// The leader's match index for it (only on the leader).
    pub match_index: Option<Index>,
}

/// The name of a role in the status and the logs.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}
