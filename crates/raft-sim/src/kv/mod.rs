//! The key-value service in the simulator: the 6.824 lab's 3A/3B setting.
//!
//! With [`SimConfig::kv`](crate::SimConfig::kv) set, every simulated server
//! runs raft-core (with `noop_on_election`) plus a [`raft_kv::Service`] in
//! place of the lab's applier, and simulated clerks ([`raft_kv::Clerk`])
//! send their requests through the simulated network, in virtual time:
//!
//! - a client link is up while the clerk is connected to the server (the
//!   lab's `ConnectClient`), the server runs, and it is not disconnected;
//!   partitions split servers only, as the lab's do, so a clerk may still
//!   reach a leader cut off from its majority;
//! - the lab's unreliable mode loses and delays client messages too, its
//!   long reordering holds replies back, and the long delay on every link
//!   applies to them;
//! - a restarted server restores its service from the stored snapshot and
//!   re-applies the committed entries after it; a server snapshots once its
//!   persisted Raft state reaches `max_raft_state` (the lab's maxraftstate);
//! - replicas must agree: two snapshots of one index must be the same bytes,
//!   on any node, ever.
//!
//! Every call a clerk makes is recorded ([`Recorded`]) with its call and
//! return time; [`KvCluster::check_history`] hands the history to the
//! linearizability checker ([`raft_kv::check`]), which is what proves the
//! reads, since they are served by ReadIndex and never enter the log.
//!
//! ```
//! use raft_sim::kv::KvCluster;
//!
//! // The lab's make_config: 3 servers, reliable network, maxraftstate 1000.
//! let mut cfg = KvCluster::new("example", 7, 3, false, Some(1_000)).unwrap();
//! let ck = cfg.make_client(&cfg.all());
//! cfg.put(ck, "k", "v").unwrap();
//! cfg.append(ck, "k", "w").unwrap();
//! cfg.check(ck, "k", "vw").unwrap();
//! cfg.check_history().unwrap();
//! ```
//!
//! Modules: `servers` (the server side, hooked into the event loop),
//! `clerks` (clerks, their timers and workloads, the history), `link`
//! (client messages on the network), [`workload`] (what clients call),
//! [`harness`] (the lab's vocabulary), [`lab`] (the lab's scenarios),
//! [`chaos`] (the chaos schedule with clerks).

pub mod chaos;
mod clerks;
pub mod harness;
pub mod lab;
mod link;
mod servers;
pub mod workload;

use raft_kv::{ClerkConfig, ClientReply, ClientRequest, ServiceConfig};

pub use clerks::{Clerks, ClientCounters, Recorded};
pub use harness::{KvCluster, CHECK_STEPS};
pub use servers::KvApp;
pub use workload::Workload;

/// A clerk's number in a simulated cluster (and its lane in the history).
pub type ClerkId = usize;

/// How the KV service runs in a simulated cluster.
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// Every server's settings (`max_raft_state` is the lab's maxraftstate).
    pub service: ServiceConfig,
    /// Every clerk's settings; `servers` is set to the cluster's nodes.
    pub clerk: ClerkConfig,
    /// Most Readies of a node between the image of a snapshot and its
    /// `Node::snapshot` call, drawn per snapshot in `0..=snapshot_delay`
    /// (0: at once; default 40: in the KV chaos run about a third of the
    /// seeds then see a delayed snapshot refused). The real server encodes
    /// the image on its snapshot thread while its driver goes on, so the
    /// node takes the snapshot at an index below what it has applied by
    /// then, or refuses it when a newer one came from the leader meanwhile.
    pub snapshot_delay: u32,
}

impl KvConfig {
    /// The service's defaults with the lab's maxraftstate (`None`: never
    /// snapshot, the lab's -1), and the clerk's defaults.
    pub fn new(max_raft_state: Option<u64>) -> Self {
        KvConfig {
            service: ServiceConfig {
                max_raft_state,
                ..ServiceConfig::default()
            },
            clerk: ClerkConfig::new(Vec::new()),
            snapshot_delay: 40,
        }
    }
}

/// A KV event on the simulator's queue.
#[derive(Debug)]
pub(crate) enum KvEv {
    /// A clerk's request reaches a server.
    Request {
        clerk: ClerkId,
        to: raft_core::NodeId,
        request: ClientRequest,
    },
    /// A server's reply reaches a clerk.
    Reply {
        clerk: ClerkId,
        from: raft_core::NodeId,
        reply: ClientReply,
    },
    /// A clerk's timer; stale unless `generation` is the clerk's latest.
    Timer { clerk: ClerkId, generation: u64 },
    /// A client's pause between two calls ended.
    Next { clerk: ClerkId },
}
