//! The simulator: one thread, a virtual clock, a seeded RNG, N nodes.
//!
//! Every node ticks every 10 ms of virtual time, at a phase drawn from the
//! seed. Messages travel through the [`Network`]; crashes drop a node's
//! volatile state and hand its storage back to the [`StorageFactory`].
//! [`Sim::step`] runs one event; the harness in [`crate::harness`] builds
//! the lab's vocabulary on top.

use std::path::PathBuf;

use raft_core::{Body, Config, Index, Message, Node, NodeId, Role, Term};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::app::Apps;
use crate::clock::{as_ms, EventQueue, Time, MS};
use crate::error::{FailureKind, SimError};
use crate::factory::StorageFactory;
use crate::invariants::Checker;
use crate::network::{LinkFaults, LongDelay, Network};
use crate::servers::Server;
use crate::stats::Stats;
use crate::timeline;
use crate::trace::{Event, Record, Tracer};

/// The tick period (the core's defaults assume 10 ms).
pub const TICK: Time = 10 * MS;

/// How a simulated cluster is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes at the start, all voters; ids are `1..=nodes`. More
    /// can join at run time ([`Sim::add_server`]).
    pub nodes: usize,
    /// The run's seed: everything random derives from it.
    pub seed: u64,
    /// The application snapshots every this many applied entries (0: never).
    pub snapshot_every: Index,
    /// Write a JSON-lines trace to this file.
    pub trace: Option<PathBuf>,
    /// Keep the notable events for [`Sim::timeline`].
    pub timeline: bool,
    /// Adjusts every node's [`Config`] (PreVote, CheckQuorum, the empty
    /// entry on election, asynchronous leader writes...) after the
    /// simulator has set its id, voters and seed.
    pub configure: fn(&mut Config),
    /// Run the KV service on every node instead of the lab's applier.
    pub kv: Option<crate::kv::KvConfig>,
}

impl SimConfig {
    /// `nodes` nodes, seeded with `seed`, no snapshots, no trace.
    pub fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            seed,
            snapshot_every: 0,
            trace: None,
            timeline: false,
            configure: |_| {},
            kv: None,
        }
    }
}

/// A queued event.
pub(crate) enum Ev {
    Tick {
        id: NodeId,
        incarnation: u64,
    },
    Deliver(Message),
    Wake(u64),
    /// A leader's asynchronous write of a Ready lands on its disk.
    WriteDone {
        id: NodeId,
        incarnation: u64,
    },
    Kv(crate::kv::KvEv),
}

/// Role, term and commit last reported for a node, to trace changes.
#[derive(Clone, Copy)]
pub(crate) struct Seen {
    pub role: Role,
    pub term: Term,
    pub commit: Index,
}

/// Derives an independent seed for one purpose (`stream`, `k`) of a run.
pub fn derive_seed(seed: u64, stream: u64, k: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k.rotate_left(29);
    for _ in 0..2 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

/// A deterministic cluster of raft-core nodes over a simulated network.
pub struct Sim<F: StorageFactory> {
    pub(crate) cfg: SimConfig,
    pub(crate) now: Time,
    pub(crate) queue: EventQueue<Ev>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) net: Network,
    pub(crate) nodes: Vec<Option<Node<F::Storage>>>,
    pub(crate) incarnation: Vec<u64>,
    pub(crate) phase: Vec<Time>,
    pub(crate) factory: F,
    pub(crate) checker: Checker,
    pub(crate) apps: Apps,
    /// The KV service and its clerks, when it replaces the lab's applier.
    pub(crate) kv: Option<Box<crate::kv::KvApp>>,
    pub(crate) tracer: Tracer,
    pub(crate) seen: Vec<Seen>,
    pub(crate) events: u64,
    pub(crate) stats: Stats,
    /// A role, term or link changed, or a message was held, since held
    /// messages were last looked at.
    pub(crate) holds_dirty: bool,
    /// Per server: how it starts, whether it is retired, its write in
    /// progress and the requests waiting for its reply.
    pub(crate) servers: Vec<Server>,
}

impl<F: StorageFactory> Sim<F> {
    /// Starts every node of `cfg` on storage opened by `factory`.
    pub fn new(cfg: SimConfig, factory: F) -> Result<Self, SimError> {
        let n = cfg.nodes;
        assert!(n >= 1, "a cluster needs a node");
        let tracer = Tracer::new(cfg.trace.as_deref(), cfg.timeline);
        let mut phase_rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, 2, 0));
        let mut sim = Sim {
            now: 0,
            queue: EventQueue::new(),
            rng: ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, 1, 0)),
            net: Network::new(n),
            nodes: (0..n).map(|_| None).collect(),
            incarnation: vec![0; n],
            phase: (0..n).map(|_| phase_rng.gen_range(0..TICK)).collect(),
            factory,
            checker: Checker::new(n),
            apps: Apps::new(n),
            kv: crate::kv::KvApp::boxed(&cfg),
            tracer: Tracer::default(),
            seen: vec![
                Seen {
                    role: Role::Follower,
                    term: 0,
                    commit: 0
                };
                n
            ],
            events: 0,
            stats: Stats::default(),
            holds_dirty: false,
            servers: (0..n)
                .map(|_| Server::new((1..=n as NodeId).collect()))
                .collect(),
            cfg,
        };
        sim.tracer = tracer.map_err(|e| {
            sim.fail(FailureKind::Check(format!(
                "cannot create the trace file: {e}"
            )))
        })?;
        for id in 1..=n as NodeId {
            sim.start_node(id)?;
        }
        Ok(sim)
    }

    /// Number of servers started so far, retired ones included; ids are `1..=n`.
    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    /// The run's configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Current virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Events processed so far (deliveries, ticks, proposals, crashes, restarts).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Elections, leaders and terms so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Time of the next queued event.
    pub fn next_time(&self) -> Option<Time> {
        self.queue.peek_time()
    }

    /// Moves the clock forward to `t` (no event may be due before it).
    pub fn advance_to(&mut self, t: Time) {
        if let Some(next) = self.next_time() {
            debug_assert!(next >= t, "an event is due before {t}");
        }
        self.now = self.now.max(t);
    }

    /// Queues a wake-up for harness task `task` after `delay`.
    pub fn schedule_wake(&mut self, delay: Time, task: u64) {
        self.queue.push(self.now + delay, Ev::Wake(task));
    }

    /// Runs the next event. Returns the task to poll when it was a wake-up.
    pub fn step(&mut self) -> Result<Option<u64>, SimError> {
        self.release_held();
        let Some((time, ev)) = self.queue.pop() else {
            return Ok(None);
        };
        self.now = time;
        match ev {
            Ev::Wake(task) => return Ok(Some(task)),
            Ev::Tick { id, incarnation } => self.on_tick(id, incarnation)?,
            Ev::Deliver(m) => self.on_deliver(m)?,
            Ev::WriteDone { id, incarnation } => self.on_write_done(id, incarnation)?,
            Ev::Kv(ev) => self.on_kv(ev)?,
        }
        Ok(None)
    }

    fn on_tick(&mut self, id: NodeId, incarnation: u64) -> Result<(), SimError> {
        let i = id as usize - 1;
        if incarnation != self.incarnation[i] {
            return Ok(());
        }
        let Some(node) = self.nodes[i].as_mut() else {
            return Ok(());
        };
        self.events += 1;
        let res = node.tick();
        self.core(id, res)?;
        self.kv_tick(id);
        self.drive(id)?;
        self.queue
            .push(self.now + TICK, Ev::Tick { id, incarnation });
        Ok(())
    }

    fn on_deliver(&mut self, m: Message) -> Result<(), SimError> {
        let (from, to, kind) = (m.from, m.to, m.body.kind());
        let i = (to as usize).wrapping_sub(1);
        let reason = if i >= self.nodes.len() {
            Some("no such server")
        } else if self.nodes[i].is_none() {
            Some("receiver down")
        } else if !self.net.link_up(from, to) {
            Some("cut in flight")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.net.counters.dropped += 1;
            if self.tracer.wants_messages() {
                self.record(
                    Some(from),
                    Event::Lost {
                        to,
                        msg: kind,
                        reason,
                    },
                );
            }
            return Ok(());
        }
        self.events += 1;
        let term = self.nodes[i].as_ref().map_or(0, |n| n.term());
        self.net.count_delivery(to, term, &m);
        if self.tracer.wants_messages() {
            self.record(Some(to), Event::Deliver { from, msg: kind });
        }
        let node = self.nodes[i].as_mut().expect("checked up");
        // The core promises one reply per request in the next Ready, except
        // for a vote request it ignores while it knows a live leader, and a
        // message it refuses at the door (counted in its status).
        let request = m.body.expects_reply();
        let may_ignore = matches!(m.body, Body::RequestVote { .. })
            && m.term > node.term()
            && node.leader().is_some();
        let rejected = node.status().rejected;
        let res = node.step(m);
        let refused = self.nodes[i]
            .as_ref()
            .is_some_and(|n| n.status().rejected > rejected);
        self.core(to, res)?;
        if request {
            self.servers[i]
                .awaiting
                .push((from, kind, may_ignore || refused));
        }
        self.drive(to)
    }

    /// The lab's `Start`: proposes `data` at node `id`. `None` if the node
    /// is down or not the leader.
    pub fn propose(
        &mut self,
        id: NodeId,
        data: Vec<u8>,
    ) -> Result<Option<(Index, Term)>, SimError> {
        let Some(node) = self.node_mut(id) else {
            return Ok(None);
        };
        match node.propose(data) {
            Ok((index, term)) => {
                self.events += 1;
                if self.tracer.wants_messages() {
                    self.record(Some(id), Event::Propose { index });
                }
                self.drive(id)?;
                Ok(Some((index, term)))
            }
            // Not the leader, or it is handing leadership over (thesis §3.10):
            // the client tries elsewhere or later.
            Err(raft_core::Error::NotLeader { .. } | raft_core::Error::Transferring { .. }) => {
                Ok(None)
            }
            Err(e) => Err(self.fail(FailureKind::Core {
                node: id,
                source: e,
            })),
        }
    }

    /// Crashes node `id`: its volatile state is gone, its storage goes back
    /// to the factory. Connectivity flags are left alone.
    pub fn crash(&mut self, id: NodeId) {
        let i = id as usize - 1;
        if let Some(node) = self.nodes[i].take() {
            self.events += 1;
            // A write in progress is lost with the node's memory.
            self.servers[i].write = None;
            self.servers[i].awaiting.clear();
            self.factory.crash(id, node.into_storage());
            self.checker.on_crash(id);
            self.record(Some(id), Event::Crash);
        }
    }

    /// Starts a new incarnation of node `id` from its storage (crashing the
    /// running one first, if any).
    pub fn restart(&mut self, id: NodeId) -> Result<(), SimError> {
        if self.is_retired(id) {
            let what = format!("server {id} was retired and cannot restart");
            return Err(self.fail(FailureKind::Check(what)));
        }
        self.crash(id);
        self.events += 1;
        self.start_node(id)?;
        Ok(())
    }

    /// Connects (`true`) or disconnects node `id` from the network.
    pub fn set_connected(&mut self, id: NodeId, up: bool) {
        self.holds_dirty = true;
        if self.net.is_connected(id) != up {
            self.net.set_connected(id, up);
            let ev = if up {
                Event::Connect
            } else {
                Event::Disconnect
            };
            self.record(Some(id), ev);
        }
    }

    /// Splits the cluster: `group[i]` is the group of node `i + 1`.
    pub fn partition(&mut self, group: Vec<u32>) {
        self.holds_dirty = true;
        self.net.partition(group.clone());
        for (i, g) in group.into_iter().enumerate() {
            self.record(Some(i as NodeId + 1), Event::Group { group: g });
        }
    }

    /// Removes all partitions.
    pub fn heal(&mut self) {
        self.holds_dirty = true;
        self.net.heal();
        self.record(None, Event::Heal);
    }

    /// Sets the lab's unreliable and long-reordering modes.
    pub fn set_network_mode(&mut self, reliable: bool, long_reordering: bool) {
        self.net.reliable = reliable;
        self.net.long_reordering = long_reordering;
        self.record(
            None,
            Event::Network {
                reliable,
                long_reordering,
            },
        );
    }

    /// Sets extra faults on the directed link `from -> to`.
    pub fn set_faults(&mut self, from: NodeId, to: NodeId, f: LinkFaults) {
        self.net.set_faults(from, to, f);
        let ev = Event::Faults {
            to,
            drop_pct: (f.drop * 100.0).round() as u32,
            dup_pct: (f.duplicate * 100.0).round() as u32,
            delay_max_ms: f.delay_ms.1,
        };
        self.record(Some(from), ev);
    }

    /// Clears the faults of every link (holds and the global long delay stay).
    pub fn clear_faults(&mut self) {
        self.net.clear_faults();
    }

    /// Sets the long delay applied on every link.
    pub fn set_long_delay(&mut self, d: LongDelay) {
        self.net.long_delay = d;
        let ev = Event::LongDelay {
            pct: (d.probability * 100.0).round() as u32,
            max_ms: d.delay_ms.1,
        };
        self.record(None, ev);
    }

    /// Node `id`, if it is up (`None` too for an id no server has).
    pub fn node(&self, id: NodeId) -> Option<&Node<F::Storage>> {
        let i = (id as usize).checked_sub(1)?;
        self.nodes.get(i)?.as_ref()
    }

    /// Node `id`, if it is up, to drive it.
    pub(crate) fn node_mut(&mut self, id: NodeId) -> Option<&mut Node<F::Storage>> {
        let i = (id as usize).checked_sub(1)?;
        self.nodes.get_mut(i)?.as_mut()
    }

    /// Whether node `id` is running.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// The applications (what each node applied).
    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    /// The network (connectivity, modes, counters).
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// The invariant checker (leaders per term, committed prefix).
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// The storage factory.
    pub fn factory(&self) -> &F {
        &self.factory
    }

    /// Draws the notable events kept so far (needs `SimConfig::timeline`).
    pub fn timeline(&self) -> String {
        timeline::render(self.tracer.kept(), self.n())
    }

    /// Flushes the trace file.
    pub fn flush_trace(&mut self) -> std::io::Result<()> {
        self.tracer.flush()
    }

    /// Records `event` on `node` (or cluster-wide) with the node's state.
    pub(crate) fn record(&mut self, node: Option<NodeId>, event: Event) {
        let (term, role) = match node.and_then(|id| self.node(id)) {
            Some(n) => (Some(n.term()), Some(n.role())),
            None => (node.map(|id| self.seen[id as usize - 1].term), None),
        };
        self.tracer.record(Record {
            time: self.now,
            node,
            term,
            role,
            event,
        });
    }

    /// A failure at the current time, with the recent events attached.
    pub fn fail(&self, kind: FailureKind) -> SimError {
        SimError {
            kind,
            time_ms: as_ms(self.now),
            events: self.events,
            recent: timeline::render(&self.tracer.recent(), self.n()),
        }
    }

    pub(crate) fn core<T>(
        &self,
        id: NodeId,
        res: Result<T, raft_core::Error>,
    ) -> Result<T, SimError> {
        res.map_err(|e| {
            self.fail(FailureKind::Core {
                node: id,
                source: e,
            })
        })
    }
}
