//! What calls answer: the results of the key-value operations, a node's
//! status, and the client's settings.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Linearizable (the default): the node confirms with the leader that
    /// it has applied every write committed before the read arrived
    /// (ReadIndex, Raft thesis §6.4). Any node serves it.
    #[default]
    Linearizable,
    /// Whatever the node has applied (serializable, possibly behind; like
    /// etcd's `--consistency=s`). Cheaper, and answered by a node that
    /// cannot reach a leader.
    Stale,
}

/// The answer of a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the value was the expected one (and so was replaced).
    pub matched: bool,
    /// The value before the operation (`None`: absent).
    pub previous: Option<Bytes>,
}

/// A page of a prefix listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Keys and values, in key order.
    pub pairs: Vec<(Bytes, Bytes)>,
    /// Whether more keys with the prefix follow the last one.
    pub more: bool,
}

/// A leader as a node names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Its node id.
    pub id: u64,
    /// Its client address, `host:port`.
    pub client: String,
}

/// Another member as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its node id.
    pub id: u64,
    /// Its Raft address.
    pub raft: String,
    /// Its client address.
    pub client: String,
    /// Whether the peer connection is up.
    pub connected: bool,
    /// The leader's match index for it (on the leader only).
    pub match_index: Option<u64>,
}

/// One node's `GET /v1/status`. Fields a newer server adds are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: u64,
    /// The cluster id.
    pub cluster_id: String,
    /// `follower`, `precandidate`, `candidate` or `leader`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of in its term.
    pub leader: Option<LeaderInfo>,
    /// Commit index.
    pub commit: u64,
    /// Last applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Index covered by the latest snapshot.
    pub snapshot_index: u64,
    /// Client requests waiting on the node.
    #[serde(default)]
    pub pending_requests: u64,
    /// Whether the node refuses writes for lack of disk space.
    #[serde(default)]
    pub no_space: bool,
    /// The other members.
    #[serde(default)]
    pub peers: Vec<PeerInfo>,
}

/// Which protocol a [`Client`](crate::Client) speaks for the key-value
/// calls and status (membership calls always go over HTTP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The native binary protocol (docs/PROTOCOL.md): a few connections
    /// per node, each carrying many requests at once. The default.
    #[default]
    Binary,
    /// The HTTP API, one request at a time per connection (the servers
    /// before the binary protocol speak only this).
    Http,
}

/// How a [`Client`](crate::Client) behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for one exchange (connect, send, answer). The
    /// server answers a write it cannot finish with 504 after 10 s.
    pub attempt_timeout: Duration,
    /// Longest a whole call may take, retries included.
    pub call_timeout: Duration,
    /// First wait between retries; it doubles on each retry of a call.
    pub backoff_min: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// Consistency of [`Client::get`](crate::Client::get) and
    /// [`Client::list`](crate::Client::list).
    pub consistency: Consistency,
    /// The protocol of the key-value calls and status.
    pub protocol: Protocol,
    /// With [`Protocol::Binary`]: connections to each node, shared by
    /// every call (each carries many requests at once).
    pub connections_per_node: usize,
}

impl Default for ClientConfig {
    /// 12 s per attempt, 30 s per call, backoff from 20 ms to 1 s,
    /// linearizable reads, the binary protocol on one connection per node.
    fn default() -> Self {
        ClientConfig {
            attempt_timeout: Duration::from_secs(12),
            call_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            consistency: Consistency::Linearizable,
            protocol: Protocol::Binary,
            connections_per_node: 1,
        }
    }
}
