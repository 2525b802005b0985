//! The 6.824 lab's test vocabulary over the simulator.
//!
//! Servers are the core's node ids, `1..=n` (the lab's `(leader + k) %
//! servers` is [`Cluster::next`]). Commands are byte vectors; the lab's
//! integers are [`cmd`]`(x)`, eight little-endian bytes. The lab's
//! `time.Sleep` is [`Cluster::run_for`]. Checks that the lab makes with
//! `t.Fatalf` return a [`SimError`]; scenarios use `?`.

use std::path::PathBuf;

use raft_core::{Index, NodeId, Storage, Term};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::{Time, MS};
use crate::error::{FailureKind, SimError};
use crate::factory::{MemFactory, StorageFactory};
use crate::network::LinkFaults;
use crate::sim::{derive_seed, Sim, SimConfig};
use crate::stats::Stats;
use crate::tasks::{show_cmd, OneTask, Poll, Slot};

/// The lab's election-timeout allowance (`RaftElectionTimeout`), in ms.
pub const ELECTION_TIMEOUT_MS: u64 = 1_000;

/// A lab command: the integer `x` as eight little-endian bytes.
pub fn cmd(x: u64) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

/// Sets up a [`Cluster`], like the lab's `make_config`.
pub struct Builder {
    cfg: SimConfig,
    unreliable: bool,
}

impl Builder {
    /// Starts with the lab's unreliable network (`make_config(.., true, ..)`).
    pub fn unreliable(mut self, yes: bool) -> Self {
        self.unreliable = yes;
        self
    }

    /// The application snapshots every `n` applied entries (the lab's 2D: 10).
    pub fn snapshot_every(mut self, n: Index) -> Self {
        self.cfg.snapshot_every = n;
        self
    }

    /// Runs the KV service on every node, with clerks, instead of the
    /// lab's applier (see [`crate::kv`]).
    pub fn kv(mut self, kv: crate::kv::KvConfig) -> Self {
        self.cfg.kv = Some(kv);
        self
    }

    /// Writes the JSON-lines trace to `path`.
    pub fn trace(mut self, path: Option<PathBuf>) -> Self {
        self.cfg.trace = path;
        self
    }

    /// Keeps the notable events for [`Sim::timeline`].
    pub fn timeline(mut self, yes: bool) -> Self {
        self.cfg.timeline = yes;
        self
    }

    /// Adjusts every node's `raft_core::Config` (see [`SimConfig::configure`]).
    pub fn configure(mut self, f: fn(&mut raft_core::Config)) -> Self {
        self.cfg.configure = f;
        self
    }

    /// A cluster on in-memory storage.
    pub fn build(self) -> Result<Cluster<MemFactory>, SimError> {
        self.build_with(MemFactory::new())
    }

    /// A cluster whose nodes' storage comes from `factory`.
    pub fn build_with<F: StorageFactory>(self, factory: F) -> Result<Cluster<F>, SimError> {
        let seed = self.cfg.seed;
        let mut sim = Sim::new(self.cfg, factory)?;
        if self.unreliable {
            sim.set_network_mode(false, false);
        }
        Ok(Cluster {
            sim,
            rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, 4, 0)),
            tasks: Vec::new(),
            stop_clients: false,
        })
    }
}

/// A simulated cluster with the lab's vocabulary.
pub struct Cluster<F: StorageFactory = MemFactory> {
    pub(crate) sim: Sim<F>,
    /// The test's own randomness (the lab's `rand`).
    pub(crate) rng: ChaCha8Rng,
    pub(crate) tasks: Vec<Slot>,
    pub(crate) stop_clients: bool,
}

impl Cluster<MemFactory> {
    /// `n` servers on a reliable network, in-memory storage, seeded by `seed`.
    pub fn new(n: usize, seed: u64) -> Result<Self, SimError> {
        Self::builder(n, seed).build()
    }

    /// A builder for `n` servers; `RAFT_TRACE` (see [`crate::seeds`]) is honoured.
    pub fn builder(n: usize, seed: u64) -> Builder {
        let mut cfg = SimConfig::new(n, seed);
        cfg.trace = crate::seeds::trace_path(seed);
        Builder {
            cfg,
            unreliable: false,
        }
    }
}

impl<F: StorageFactory> Cluster<F> {
    /// Number of servers.
    pub fn n(&self) -> usize {
        self.sim.n()
    }

    /// The simulator underneath.
    pub fn sim(&self) -> &Sim<F> {
        &self.sim
    }

    /// The simulator underneath, for faults beyond the lab's vocabulary.
    pub fn sim_mut(&mut self) -> &mut Sim<F> {
        &mut self.sim
    }

    /// Virtual time now.
    pub fn now(&self) -> Time {
        self.sim.now()
    }

    /// The server `k` places after `id`, wrapping: the lab's `(id + k) % servers`.
    pub fn next(&self, id: NodeId, k: u64) -> NodeId {
        (id - 1 + k) % self.n() as NodeId + 1
    }

    /// A failure like the lab's `t.Fatalf`.
    pub fn fatal(&self, msg: impl Into<String>) -> SimError {
        self.sim.fail(FailureKind::Check(msg.into()))
    }

    /// A random number from the test's generator.
    pub fn rand_u64(&mut self) -> u64 {
        self.rng.gen()
    }

    /// A random number in `0..n`.
    pub fn rand_below(&mut self, n: u64) -> u64 {
        self.rng.gen_range(0..n)
    }

    /// A random lab command.
    pub fn rand_cmd(&mut self) -> Vec<u8> {
        cmd(self.rand_u64())
    }

    /// Random bytes (the lab's `randstring`).
    pub fn rand_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.rng.gen()).collect()
    }

    /// The lab's `time.Sleep`: lets `ms` of virtual time pass.
    pub fn run_for(&mut self, ms: u64) -> Result<(), SimError> {
        self.run_until(self.sim.now() + ms * MS)
    }

    /// The lab's `Start`: `Some((index, term))` if `id` is a running leader.
    pub fn start(&mut self, id: NodeId, cmd: Vec<u8>) -> Result<Option<(Index, Term)>, SimError> {
        self.sim.propose(id, cmd)
    }

    /// The lab's `GetState`: `(term, is_leader)`, `None` if `id` is down.
    pub fn get_state(&self, id: NodeId) -> Option<(Term, bool)> {
        self.sim.node(id).map(|n| (n.term(), n.is_leader()))
    }

    /// Whether `id` is connected (the lab's `connected[i]`).
    pub fn is_connected(&self, id: NodeId) -> bool {
        self.sim.net().is_connected(id)
    }

    /// Whether `id` is running.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.sim.is_up(id)
    }

    /// The lab's `connect(i)`.
    pub fn connect(&mut self, id: NodeId) {
        self.sim.set_connected(id, true);
    }

    /// The lab's `disconnect(i)`.
    pub fn disconnect(&mut self, id: NodeId) {
        self.sim.set_connected(id, false);
    }

    /// The lab's `crash1(i)`: disconnects `id` and kills it; its storage survives.
    pub fn crash(&mut self, id: NodeId) {
        self.disconnect(id);
        self.sim.crash(id);
    }

    /// The lab's `start1(i)`: crashes `id` if running, then starts a new
    /// incarnation from its storage. It stays disconnected until [`connect`](Self::connect).
    pub fn restart(&mut self, id: NodeId) -> Result<(), SimError> {
        self.crash(id);
        self.sim.restart(id)
    }

    /// Cuts the link between `a` and `b` both ways (every message lost), or
    /// restores it; the nodes keep every other link.
    pub fn cut_link(&mut self, a: NodeId, b: NodeId, cut: bool) {
        let f = LinkFaults {
            drop: if cut { 1.0 } else { 0.0 },
            ..LinkFaults::default()
        };
        self.sim.set_faults(a, b, f);
        self.sim.set_faults(b, a, f);
    }

    /// Runs in 10 ms steps until `done` holds; fails after `ms`, naming `what`.
    pub fn wait_for(
        &mut self,
        ms: u64,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), SimError> {
        let deadline = self.sim.now() + ms * MS;
        while !done(self) {
            if self.sim.now() >= deadline {
                return Err(self.fatal(format!("after {ms} ms, still waiting for {what}")));
            }
            self.run_for(10)?;
        }
        Ok(())
    }

    /// The lab's `setunreliable`.
    pub fn set_unreliable(&mut self, yes: bool) {
        let long = self.sim.net().long_reordering;
        self.sim.set_network_mode(!yes, long);
    }

    /// The lab's `setlongreordering`.
    pub fn set_long_reordering(&mut self, yes: bool) {
        let reliable = self.sim.net().reliable;
        self.sim.set_network_mode(reliable, yes);
    }

    /// Requests delivered to `id` (the lab's `rpcCount(i)`).
    pub fn rpc_count(&self, id: NodeId) -> u64 {
        self.sim.net().counters.delivered[id as usize - 1]
    }

    /// Requests delivered to anyone.
    pub fn rpc_total(&self) -> u64 {
        self.sim.net().counters.delivered.iter().sum()
    }

    /// Bytes of all requests sent (the lab's `bytesTotal`).
    pub fn bytes_total(&self) -> u64 {
        self.sim.net().counters.bytes
    }

    /// Elections, leaders and terms so far (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.sim.stats()
    }

    /// Messages sent so far by every node, requests and replies.
    pub fn messages(&self) -> u64 {
        let k = &self.sim.net().counters;
        k.sent.iter().sum::<u64>() + k.replies
    }

    /// The lab's `LogSize`: the largest persisted Raft state among running servers.
    pub fn log_size(&self) -> u64 {
        (1..=self.n() as NodeId)
            .filter_map(|id| self.sim.node(id))
            .filter_map(|n| self.sim.factory().raft_state_size(n.storage()))
            .max()
            .unwrap_or(0)
    }

    /// The longest retained log (entries after the snapshot) among running servers.
    pub fn max_retained(&self) -> u64 {
        (1..=self.n() as NodeId)
            .filter_map(|id| self.sim.node(id))
            .map(|n| n.storage().last_index() + 1 - n.storage().first_index())
            .max()
            .unwrap_or(0)
    }

    /// The lab's `nCommitted(index)`: how many servers applied `index`, and what.
    pub fn n_committed(&self, index: Index) -> (usize, Option<Vec<u8>>) {
        let (n, c) = self.sim.apps().n_committed(index);
        (n, c.map(<[u8]>::to_vec))
    }

    /// The lab's `checkOneLeader`: within ~5 s a single connected leader of
    /// the newest term; fails on two leaders in one term.
    pub fn check_one_leader(&mut self) -> Result<NodeId, SimError> {
        for _ in 0..10 {
            let ms = 450 + self.rand_below(100);
            self.run_for(ms)?;
            let mut leaders: std::collections::BTreeMap<Term, Vec<NodeId>> = Default::default();
            for id in 1..=self.n() as NodeId {
                if self.is_connected(id) {
                    if let Some((term, true)) = self.get_state(id) {
                        leaders.entry(term).or_default().push(id);
                    }
                }
            }
            for (term, ids) in &leaders {
                if ids.len() > 1 {
                    return Err(self.fatal(format!("term {term} has {} (>1) leaders", ids.len())));
                }
            }
            if let Some((_, ids)) = leaders.last_key_value() {
                return Ok(ids[0]);
            }
        }
        Err(self.fatal("expected one leader, got none"))
    }

    /// The lab's `checkTerms`: every connected server is in the same term.
    pub fn check_terms(&self) -> Result<Term, SimError> {
        let mut term = None;
        for id in 1..=self.n() as NodeId {
            if !self.is_connected(id) {
                continue;
            }
            if let Some((t, _)) = self.get_state(id) {
                match term {
                    None => term = Some(t),
                    Some(x) if x != t => return Err(self.fatal("servers disagree on term")),
                    Some(_) => {}
                }
            }
        }
        Ok(term.unwrap_or(0))
    }

    /// The lab's `checkNoLeader`: no connected server thinks it leads.
    pub fn check_no_leader(&self) -> Result<(), SimError> {
        for id in 1..=self.n() as NodeId {
            if self.is_connected(id) && self.get_state(id).is_some_and(|(_, l)| l) {
                let msg = format!(
                    "expected no leader among connected servers, but {id} claims to be leader"
                );
                return Err(self.fatal(msg));
            }
        }
        Ok(())
    }

    /// The lab's `one(cmd, expectedServers, retry)`: gets `cmd` committed on
    /// at least `expected` servers and returns its index.
    pub fn one(&mut self, cmd: Vec<u8>, expected: usize, retry: bool) -> Result<Index, SimError> {
        let mut task = OneTask::new(cmd, expected, retry, self.sim.now());
        loop {
            match task.poll(&mut self.sim)? {
                Poll::Done(index) => return Ok(index),
                Poll::Sleep(d) => self.run_until(self.sim.now() + d)?,
            }
        }
    }

    /// The lab's `wait(index, n, startTerm)`: waits for `n` servers to apply
    /// `index`. `Ok(None)` (the lab's -1) if a server moved past `start_term`.
    pub fn wait(
        &mut self,
        index: Index,
        n: usize,
        start_term: Option<Term>,
    ) -> Result<Option<Vec<u8>>, SimError> {
        let mut to = 10;
        for _ in 0..30 {
            if self.n_committed(index).0 >= n {
                break;
            }
            self.run_for(to)?;
            if to < 1_000 {
                to *= 2;
            }
            if let Some(start) = start_term {
                let moved = (1..=self.n() as NodeId)
                    .filter_map(|id| self.get_state(id))
                    .any(|(t, _)| t > start);
                if moved {
                    return Ok(None);
                }
            }
        }
        let (nd, cmd) = self.n_committed(index);
        if nd < n {
            let msg = format!("only {nd} decided for index {index}; wanted {n}");
            return Err(self.fatal(msg));
        }
        Ok(cmd)
    }

    /// Fails unless the command at `index` is `expected`, as seen by `wait`.
    pub fn expect_cmd(
        &self,
        index: Index,
        got: &Option<Vec<u8>>,
        expected: &[u8],
    ) -> Result<(), SimError> {
        match got {
            Some(c) if c == expected => Ok(()),
            other => Err(self.fatal(format!(
                "wrong value {} committed for index {index}; expected {}",
                other.as_deref().map_or("none".into(), show_cmd),
                show_cmd(expected)
            ))),
        }
    }
}
