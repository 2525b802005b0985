//! The servers of a simulated cluster, which may change while it runs.
//!
//! The first [`SimConfig::nodes`](crate::SimConfig::nodes) servers start
//! together, each bootstrapped with all of them as voters. More join at run
//! time with new ids ([`Sim::add_server`]); a joining server starts with no
//! configuration at all, as one added to a running cluster would, and waits
//! for a leader to add it (§6). Ids are never reused. A server removed from
//! the configuration keeps running until the scenario stops it for good
//! ([`Sim::retire`]); a retired server stays down, and the fault schedules
//! leave it alone. Messages to an id that no server has are lost.

use raft_core::{NodeId, Ready};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::SimError;
use crate::factory::StorageFactory;
use crate::sim::{derive_seed, Seen, Sim, TICK};
use crate::trace::Event;

/// What the simulator keeps about one server besides its node.
#[derive(Debug)]
pub(crate) struct Server {
    /// `Config::voters` at every start: the first servers' ids, or none for
    /// a server that joined later (its storage says who is in the cluster).
    pub bootstrap: Vec<NodeId>,
    /// Stopped for good: never restarted.
    pub retired: bool,
    /// A Ready whose early messages have left while its write is in
    /// progress (asynchronous leader writes, see `write.rs`).
    pub write: Option<Ready>,
    /// The next write in progress is lost: the server crashes before it lands.
    pub fail_next_write: bool,
    /// Requests stepped whose replies are due in the next Ready: sender,
    /// kind, and whether the server may leave it unanswered.
    pub awaiting: Vec<(NodeId, &'static str, bool)>,
}

impl Server {
    pub fn new(bootstrap: Vec<NodeId>) -> Self {
        Server {
            bootstrap,
            retired: false,
            write: None,
            fail_next_write: false,
            awaiting: Vec::new(),
        }
    }
}

/// Adding, stopping and listing servers.
impl<F: StorageFactory> Sim<F> {
    /// Starts a new server with the next free id, connected, on fresh
    /// storage and with no configuration: it takes part once a leader adds
    /// it (as a learner, a voter, or in a joint change).
    pub fn add_server(&mut self) -> Result<NodeId, SimError> {
        let id = self.nodes.len() as NodeId + 1;
        let mut phase = ChaCha8Rng::seed_from_u64(derive_seed(self.cfg.seed, 2, id));
        self.nodes.push(None);
        self.incarnation.push(0);
        self.phase.push(phase.gen_range(0..TICK));
        self.seen.push(Seen {
            role: raft_core::Role::Follower,
            term: 0,
            commit: 0,
        });
        self.servers.push(Server::new(Vec::new()));
        self.net.add_node();
        self.checker.add_node(Vec::new());
        self.apps.add_node();
        if let Some(kv) = self.kv.as_deref_mut() {
            kv.services.push(None);
        }
        self.holds_dirty = true;
        self.record(Some(id), Event::Join);
        self.start_node(id)?;
        Ok(id)
    }

    /// Stops server `id` for good (a removed member leaving): it crashes,
    /// is cut off, and is never restarted.
    pub fn retire(&mut self, id: NodeId) {
        if self.is_retired(id) || id == 0 || id as usize > self.n() {
            return;
        }
        self.crash(id);
        self.set_connected(id, false);
        self.servers[id as usize - 1].retired = true;
        self.record(Some(id), Event::Retire);
    }

    /// Whether server `id` was stopped for good.
    pub fn is_retired(&self, id: NodeId) -> bool {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.servers.get(i))
            .is_some_and(|s| s.retired)
    }

    /// Every server not retired, in id order.
    pub fn servers(&self) -> Vec<NodeId> {
        (1..=self.n() as NodeId)
            .filter(|&id| !self.is_retired(id))
            .collect()
    }
}
