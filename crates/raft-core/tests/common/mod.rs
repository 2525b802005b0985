//! A seeded, single-threaded cluster of [`Node`]s over a faulty network, for
//! the regression and fuzz tests.
//!
//! Each node drives a toy state machine ([`App`]) that folds every applied
//! entry into a running hash. Safety is checked on every Ready: at most one
//! leader per term, entries applied in index order, and at each applied index
//! every node has the same entry and the same state. A panic means a broken
//! rule; the message names the node and index.
//!
//! Nothing here reads a clock or iterates a hash map, so a seed replays a run
//! exactly.

// Each test crate uses a different part of the harness.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use raft_core::{
    persist, Body, Config, Entry, Index, MemStorage, Message, Node, NodeId, Storage, Term,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// SplitMix64's finalizer: spreads every input bit over the output, so the
/// running state hash notices any difference in what was applied.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The replicated state machine: the last applied index and a hash of every
/// entry applied through it.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct App {
    pub last: Index,
    pub hash: u64,
}

impl App {
    /// Folds one committed entry into the state.
    fn apply(&mut self, e: &Entry) {
        let sum = e.data.iter().map(|&b| u64::from(b)).sum::<u64>();
        self.hash = mix(self.hash ^ mix(e.term ^ mix(e.data.len() as u64 ^ sum)));
        self.last = e.index;
    }

    /// Snapshot data: `last` and `hash` (little-endian), then `pad` filler
    /// bytes so tests can choose how many chunks a transfer takes.
    pub fn encode(&self, pad: usize) -> Vec<u8> {
        let mut data = self.last.to_le_bytes().to_vec();
        data.extend_from_slice(&self.hash.to_le_bytes());
        data.resize(16 + pad, 7);
        data
    }

    /// Reads back what [`encode`](App::encode) wrote.
    pub fn decode(data: &[u8]) -> App {
        assert!(
            data.len() >= 16,
            "snapshot data too short: {} B",
            data.len()
        );
        App {
            last: u64::from_le_bytes(data[0..8].try_into().unwrap()),
            hash: u64::from_le_bytes(data[8..16].try_into().unwrap()),
        }
    }
}

/// What was first applied at an index; every later node must match it.
struct Applied {
    term: Term,
    data: Vec<u8>,
    /// The state after applying it.
    hash: u64,
}

/// Per-tick fault and workload probabilities (all in `0.0..=1.0`).
#[derive(Clone, Debug)]
pub struct Faults {
    /// A message is lost.
    pub drop: f64,
    /// A message is delivered twice (each copy with its own delay).
    pub dup: f64,
    /// Messages arrive 1..=`max_delay` ticks after they are sent, so they reorder.
    pub max_delay: u64,
    /// One random node crashes and restarts from its storage alone.
    pub crash: f64,
    /// One random node is cut off, or, if one already is, the network heals.
    pub isolate: f64,
    /// Each node snapshots its state (at its applied index or an earlier one).
    pub snapshot: f64,
    /// Each leader proposes a new command.
    pub propose: f64,
    /// A node whose Ready has early messages (async leader writes) crashes
    /// after sending them and before persisting the Ready.
    pub crash_mid_write: f64,
}

impl Faults {
    /// No faults and no proposals: a reliable network delivering in one tick.
    pub fn none() -> Faults {
        Faults {
            drop: 0.0,
            dup: 0.0,
            max_delay: 1,
            crash: 0.0,
            isolate: 0.0,
            snapshot: 0.0,
            propose: 0.0,
            crash_mid_write: 0.0,
        }
    }
}

/// A cluster of nodes `1..=n` on [`MemStorage`], a network and a clock,
/// all driven by one seeded RNG.
pub struct Sim {
    rng: ChaCha8Rng,
    cfgs: Vec<Config>,
    /// `None` only for the moment a node is being restarted.
    nodes: Vec<Option<Node<MemStorage>>>,
    apps: Vec<App>,
    /// Messages in flight, with the tick they arrive at.
    net: Vec<(u64, Message)>,
    now: u64,
    /// Who led each term, to check election safety.
    leaders: BTreeMap<Term, NodeId>,
    /// The first application of each index, to check state-machine safety.
    applied: BTreeMap<Index, Applied>,
    next_cmd: u64,
    /// Messages sent, by [`kind`](raft_core::Body::kind).
    sent: BTreeMap<&'static str, u64>,
    /// Nodes cut off from the network: messages from or to them are lost.
    pub isolated: BTreeSet<NodeId>,
    pub faults: Faults,
    /// Filler bytes added to every snapshot the harness takes.
    pub pad: usize,
}

impl Sim {
    /// A fresh cluster of `n` nodes. Each starts from [`Config::new`] with
    /// fast timers and tiny message, window and chunk limits (so that short
    /// runs exercise batching, flow control and chunking); `tweak` may then
    /// change any field.
    pub fn new(seed: u64, n: u64, faults: Faults, tweak: impl Fn(&mut Config)) -> Sim {
        let mut cfgs = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let mut c = Config::new(id, (1..=n).collect());
            c.seed = seed.wrapping_mul(100).wrapping_add(id);
            c.election_tick = 10;
            c.heartbeat_tick = 2;
            c.snapshot_chunk_bytes = 16;
            c.max_msg_entries = 4;
            c.max_inflight = 3;
            tweak(&mut c);
            nodes.push(Some(Node::new(c.clone(), MemStorage::new()).unwrap()));
            cfgs.push(c);
        }
        Sim {
            rng: ChaCha8Rng::seed_from_u64(seed),
            cfgs,
            nodes,
            apps: vec![App::default(); n as usize],
            net: Vec::new(),
            now: 0,
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
            next_cmd: 1,
            sent: BTreeMap::new(),
            isolated: BTreeSet::new(),
            faults,
            pad: 40,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// Node `id`'s configuration.
    pub fn config(&self, id: NodeId) -> &Config {
        &self.cfgs[(id - 1) as usize]
    }

    pub fn node(&self, id: NodeId) -> &Node<MemStorage> {
        self.nodes[(id - 1) as usize].as_ref().unwrap()
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node<MemStorage> {
        self.nodes[(id - 1) as usize].as_mut().unwrap()
    }

    /// Node `id`'s state machine.
    pub fn app(&self, id: NodeId) -> App {
        self.apps[(id - 1) as usize]
    }

    /// The lowest-numbered node that believes it leads.
    pub fn leader(&self) -> Option<NodeId> {
        (1..=self.len()).find(|&id| self.node(id).is_leader())
    }

    /// How many messages of this [`kind`](raft_core::Body::kind) were sent
    /// (counted before the network loses any).
    pub fn sent(&self, kind: &str) -> u64 {
        self.sent.get(kind).copied().unwrap_or(0)
    }

    /// One line per node: role, term, commit and applied index, for failure
    /// messages.
    pub fn describe(&self) -> String {
        (1..=self.len())
            .map(|id| {
                let st = self.node(id).status();
                format!(
                    "node {id}: {:?} term {} commit {} applied {} log {}..={}",
                    st.role,
                    st.term,
                    st.commit,
                    self.app(id).last,
                    st.first_index,
                    st.last_index
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Acts on node `id`'s Readies until it has none, keeping the contract
    /// (persist, send, apply, advance) and checking safety along the way.
    pub fn process(&mut self, id: NodeId) {
        while self.node(id).has_ready() {
            let node = self.node_mut(id);
            let rd = node.ready().unwrap();
            if !rd.early_messages.is_empty() {
                // Async leader writes: these may leave before the Ready is
                // durable, and a crash may come in between.
                for m in rd.early_messages.clone() {
                    *self.sent.entry(m.body.kind()).or_default() += 1;
                    self.send(m);
                }
                if self.rng.gen_bool(self.faults.crash_mid_write) {
                    self.restart(id);
                    return;
                }
            }
            let node = self.node_mut(id);
            persist(node.storage_mut(), &rd).unwrap();
            if node.is_leader() {
                let term = node.term();
                let first = *self.leaders.entry(term).or_insert(id);
                assert_eq!(first, id, "two leaders in term {term}");
            }
            if let Some(s) = &rd.snapshot {
                let snap = App::decode(&s.data);
                let app = self.app(id);
                assert_eq!(snap.last, s.meta.index, "node {id}: snapshot data index");
                assert!(
                    app.last <= snap.last,
                    "node {id}: snapshot at {} behind applied {}",
                    snap.last,
                    app.last
                );
                if let Some(a) = self.applied.get(&snap.last) {
                    assert_eq!(
                        a.hash, snap.hash,
                        "node {id}: snapshot at {} differs",
                        snap.last
                    );
                }
                self.apps[(id - 1) as usize] = snap;
            }
            for e in &rd.committed_entries {
                let app = &mut self.apps[(id - 1) as usize];
                assert_eq!(
                    e.index,
                    app.last + 1,
                    "node {id}: applied out of order (Ready snapshot {:?})",
                    rd.snapshot.as_ref().map(|s| s.meta)
                );
                app.apply(e);
                let hash = app.hash;
                match self.applied.get(&e.index) {
                    Some(a) => assert!(
                        a.term == e.term && a.data == e.data && a.hash == hash,
                        "node {id}: committed entry {} differs: {:?} vs {:?}",
                        e.index,
                        (a.term, &a.data),
                        (e.term, &e.data)
                    ),
                    None => {
                        let a = Applied {
                            term: e.term,
                            data: e.data.to_vec(),
                            hash,
                        };
                        self.applied.insert(e.index, a);
                    }
                }
            }
            for m in rd.messages {
                *self.sent.entry(m.body.kind()).or_default() += 1;
                self.send(m);
            }
            self.node_mut(id).advance();
        }
    }

    /// Proposes `data` on node `id` (which must lead) and processes the result.
    pub fn propose(&mut self, id: NodeId, data: Vec<u8>) -> (Index, Term) {
        let at = self.node_mut(id).propose(data).unwrap();
        self.process(id);
        at
    }

    /// Whether the entry `at` (index, term) was committed and applied by
    /// some node.
    pub fn is_applied(&self, at: (Index, Term)) -> bool {
        self.applied.get(&at.0).is_some_and(|a| a.term == at.1)
    }

    /// Node `id` snapshots `app`, which must be its state at an applied index
    /// past its current snapshot; processes the result.
    pub fn snapshot(&mut self, id: NodeId, app: App) {
        let data = app.encode(self.pad);
        self.node_mut(id).snapshot(app.last, data).unwrap();
        self.process(id);
    }

    /// Queues `m` on the network, unless faults lose it.
    fn send(&mut self, m: Message) {
        if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
            return;
        }
        if self.rng.gen_bool(self.faults.drop) {
            return;
        }
        let max_delay = self.faults.max_delay.max(1);
        if self.rng.gen_bool(self.faults.dup) {
            let at = self.now + self.rng.gen_range(1..=max_delay);
            self.net.push((at, m.clone()));
        }
        let at = self.now + self.rng.gen_range(1..=max_delay);
        self.net.push((at, m));
    }

    /// Replaces node `id` by one rebuilt from its storage alone, as after a
    /// crash; its state machine restarts from the stored snapshot.
    fn restart(&mut self, id: NodeId) {
        let storage = self.nodes[(id - 1) as usize].take().unwrap().into_storage();
        let snap = storage.snapshot().unwrap();
        self.apps[(id - 1) as usize] = if snap.meta.index > 0 {
            App::decode(&snap.data)
        } else {
            App::default()
        };
        let node = Node::new(self.config(id).clone(), storage).unwrap();
        self.nodes[(id - 1) as usize] = Some(node);
    }

    /// Advances one tick: maybe crash or (un)isolate a node; tick every node;
    /// deliver the messages due, in random order; let leaders propose; let
    /// nodes snapshot. Every node is processed after each input.
    pub fn tick(&mut self) {
        self.now += 1;
        let n = self.len();
        if self.rng.gen_bool(self.faults.crash) {
            let id = self.rng.gen_range(1..=n);
            self.restart(id);
        }
        if self.rng.gen_bool(self.faults.isolate) {
            if self.isolated.is_empty() {
                let id = self.rng.gen_range(1..=n);
                self.isolated.insert(id);
            } else {
                self.isolated.clear();
            }
        }
        for id in 1..=n {
            self.node_mut(id).tick().unwrap();
            self.process(id);
        }
        let now = self.now;
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].0 <= now {
                due.push(self.net.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        for k in (1..due.len()).rev() {
            let j = self.rng.gen_range(0..=k);
            due.swap(k, j);
        }
        for m in due {
            // A partition that started while the message was in flight loses it.
            if self.isolated.contains(&m.to) || self.isolated.contains(&m.from) {
                continue;
            }
            let to = m.to;
            self.node_mut(to).step(m).unwrap();
            self.process(to);
        }
        for id in 1..=n {
            if self.node(id).is_leader() && self.rng.gen_bool(self.faults.propose) {
                let cmd = self.next_cmd;
                self.next_cmd += 1;
                self.propose(id, cmd.to_le_bytes().to_vec());
            }
        }
        for id in 1..=n {
            if self.rng.gen_bool(self.faults.snapshot) {
                self.random_snapshot(id);
            }
        }
    }

    /// Node `id` snapshots at its applied index, or half the time at a random
    /// earlier index past its current snapshot; does nothing if there is no
    /// such index.
    fn random_snapshot(&mut self, id: NodeId) {
        let app = self.app(id);
        let floor = self.node(id).status().first_index - 1;
        if app.last <= floor {
            return;
        }
        let snap = if app.last > floor + 1 && self.rng.gen_bool(0.5) {
            let last = self.rng.gen_range(floor + 1..=app.last);
            App {
                last,
                hash: self.applied[&last].hash,
            }
        } else {
            app
        };
        self.snapshot(id, snap);
    }

    /// Stops all faults and proposals and reconnects every node.
    pub fn heal(&mut self) {
        self.faults = Faults::none();
        self.isolated.clear();
    }
}

/// Acts on a node's Readies until it has none; returns the messages.
pub fn drain<S: Storage>(n: &mut Node<S>) -> Vec<Message> {
    let mut out = Vec::new();
    while n.has_ready() {
        let rd = n.ready().unwrap();
        persist(n.storage_mut(), &rd).unwrap();
        out.extend(rd.messages);
        n.advance();
    }
    out
}

/// `(prev_log_index, first index, last index)` of each AppendEntries with
/// entries in `msgs` addressed to `to`, in order.
pub fn appends_to(msgs: &[Message], to: NodeId) -> Vec<(Index, Index, Index)> {
    msgs.iter()
        .filter(|m| m.to == to)
        .filter_map(|m| match &m.body {
            Body::AppendEntries {
                prev_log_index,
                entries,
                ..
            } => Some((
                *prev_log_index,
                entries.first()?.index,
                entries.last()?.index,
            )),
            _ => None,
        })
        .collect()
}

/// A message from `from` to `to` in `term`.
pub fn msg(from: NodeId, to: NodeId, term: Term, body: Body) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

/// A granted (pre)vote from `from` to `to` in `term`.
pub fn vote_reply(from: NodeId, to: NodeId, term: Term, pre_vote: bool) -> Message {
    let body = Body::RequestVoteReply {
        granted: true,
        pre_vote,
    };
    msg(from, to, term, body)
}

/// `from` tells leader `to` that its log matches through `match_index`.
pub fn append_ok(from: NodeId, to: NodeId, term: Term, match_index: Index) -> Message {
    let body = Body::AppendEntriesReply(raft_core::AppendReply::Success { match_index });
    msg(from, to, term, body)
}

/// Makes `n` (PreVote on) leader with the votes of `voters`, draining what
/// it sends on the way.
pub fn elect<S: Storage>(n: &mut Node<S>, voters: &[NodeId]) {
    tick_until(n, |n| n.role() != raft_core::Role::Follower);
    let pre_term = drain(n)[0].term;
    let me = n.id();
    for &v in voters {
        n.step(vote_reply(v, me, pre_term, true)).unwrap();
    }
    drain(n);
    let term = n.term();
    for &v in voters {
        n.step(vote_reply(v, me, term, false)).unwrap();
    }
    drain(n);
    assert!(n.is_leader());
}

/// Ticks `n` until `done` holds; panics after 1,000 ticks (a node that
/// never gets there is a failure, not a hang).
pub fn tick_until<S: Storage>(n: &mut Node<S>, done: impl Fn(&Node<S>) -> bool) {
    for _ in 0..1_000 {
        if done(n) {
            return;
        }
        n.tick().unwrap();
    }
    assert!(done(n), "still not there after 1,000 ticks");
}
