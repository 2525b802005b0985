//! Three raft-core nodes with the KV service and clerks, in one thread: a
//! small loop that delivers messages in order (one millisecond per hop) and
//! ticks every 10 ms. Faults are coarse: cut a node off, crash and restart
//! one, deliver every client request twice. The lab's scenarios, with a
//! faulty network and checked histories, live in the simulator.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raft_core::{persist, Config, MemStorage, Message, Node, NodeId, Storage};
use raft_kv::{
    Action, CallId, Clerk, ClerkConfig, ClientReply, ClientRequest, KvError, Op, OpResult,
    ReadPath, Replies, Service, ServiceConfig,
};

const IDS: [NodeId; 3] = [1, 2, 3];

/// Seeds to run: `RAFT_SEED=s` alone, or `1..=RAFT_SEEDS` (default 5), like
/// the simulator's scenarios.
fn seeds() -> Vec<u64> {
    let var = |name| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
    match var("RAFT_SEED") {
        Some(seed) => vec![seed],
        None => (1..=var("RAFT_SEEDS").unwrap_or(5)).collect(),
    }
}

enum Packet {
    Raft(Message),
    Request {
        clerk: usize,
        to: NodeId,
        request: ClientRequest,
    },
    Reply {
        clerk: usize,
        from: NodeId,
        reply: ClientReply,
    },
}

struct Server {
    node: Node<MemStorage>,
    service: Service<usize>,
}

struct ClerkSlot {
    clerk: Clerk,
    timer: Option<u64>,
    done: BTreeMap<CallId, Result<OpResult, KvError>>,
}

struct Cluster {
    cfg: ServiceConfig,
    seed: u64,
    servers: BTreeMap<NodeId, Server>,
    /// Storage of crashed servers.
    down: BTreeMap<NodeId, MemStorage>,
    /// Leader snapshots each server restored, over all its incarnations.
    installed: BTreeMap<NodeId, usize>,
    /// Servers cut off from everyone (clerks included).
    cut: BTreeSet<NodeId>,
    queue: VecDeque<Packet>,
    clerks: Vec<ClerkSlot>,
    now: u64,
    duplicate_requests: bool,
}

fn raft_config(id: NodeId, seed: u64) -> Config {
    Config {
        noop_on_election: true,
        seed: seed * 10 + id,
        ..Config::new(id, IDS.to_vec())
    }
}

/// Prints how to replay a seed whose run panics.
struct Replay(&'static str, u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "replay: RAFT_SEED={} cargo test -p raft-kv --test cluster {}",
                self.1, self.0
            );
        }
    }
}

impl Cluster {
    fn new(cfg: ServiceConfig, seed: u64, clerks: usize) -> Self {
        let mut c = Cluster {
            cfg,
            seed,
            servers: BTreeMap::new(),
            down: IDS.iter().map(|&id| (id, MemStorage::new())).collect(),
            installed: BTreeMap::new(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            clerks: Vec::new(),
            now: 0,
            duplicate_requests: false,
        };
        for id in IDS {
            c.restart(id);
        }
        for _ in 0..clerks {
            c.clerks.push(ClerkSlot {
                clerk: Clerk::new(ClerkConfig::new(IDS.to_vec())),
                timer: None,
                done: BTreeMap::new(),
            });
        }
        c
    }

    /// Starts server `id` from its storage: the service restores the stored
    /// snapshot, then re-applies the committed log.
    fn restart(&mut self, id: NodeId) {
        let storage = self.down.remove(&id).expect("server is down");
        let mut service = Service::new(self.cfg.clone());
        service.restore(&storage.snapshot().unwrap()).unwrap();
        let node = Node::new(raft_config(id, self.seed), storage).unwrap();
        self.servers.insert(id, Server { node, service });
    }

    /// Crashes server `id`: everything but its storage is lost.
    fn crash(&mut self, id: NodeId) {
        let server = self.servers.remove(&id).expect("server is up");
        self.down.insert(id, server.node.into_storage());
    }

    fn reachable(&self, id: NodeId) -> bool {
        self.servers.contains_key(&id) && !self.cut.contains(&id)
    }

    fn route(&mut self, from: NodeId, replies: Replies<usize>) {
        for (clerk, reply) in replies {
            self.queue.push_back(Packet::Reply { clerk, from, reply });
        }
    }

    fn act(&mut self, clerk: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, request } => {
                    let copies = if self.duplicate_requests { 2 } else { 1 };
                    for _ in 0..copies {
                        let request = request.clone();
                        self.queue.push_back(Packet::Request { clerk, to, request });
                    }
                }
                Action::SetTimer { at_ms } => self.clerks[clerk].timer = Some(at_ms),
                Action::Done { call, result } => {
                    self.clerks[clerk].done.insert(call, result);
                }
            }
        }
    }

    /// One millisecond: deliver what was sent, act on every Ready, tick.
    fn step(&mut self) {
        self.now += 1;
        let now = self.now;
        for _ in 0..self.queue.len() {
            match self.queue.pop_front().unwrap() {
                Packet::Raft(m) => {
                    if self.reachable(m.from) && self.reachable(m.to) {
                        let server = self.servers.get_mut(&m.to).unwrap();
                        server.node.step(m).unwrap();
                    }
                }
                Packet::Request { clerk, to, request } => {
                    if self.reachable(to) {
                        let s = self.servers.get_mut(&to).unwrap();
                        let replies = s.service.on_request(&mut s.node, clerk, request, now);
                        self.route(to, replies);
                    }
                }
                Packet::Reply { clerk, from, reply } => {
                    if self.reachable(from) {
                        let actions = self.clerks[clerk].clerk.on_reply(from, reply, now);
                        self.act(clerk, actions);
                    }
                }
            }
        }
        let ids: Vec<NodeId> = self.servers.keys().copied().collect();
        for id in ids {
            let s = self.servers.get_mut(&id).unwrap();
            let mut replies = Vec::new();
            if now.is_multiple_of(10) {
                s.node.tick().unwrap();
                replies.extend(s.service.tick(&s.node, now));
            }
            while s.node.has_ready() {
                let rd = s.node.ready().unwrap();
                persist(s.node.storage_mut(), &rd).unwrap();
                self.queue
                    .extend(rd.messages.iter().cloned().map(Packet::Raft));
                if rd.snapshot.is_some() {
                    *self.installed.entry(id).or_default() += 1;
                }
                replies.extend(s.service.on_ready(&s.node, &rd).unwrap());
                s.node.advance();
                let size = s.node.storage().raft_state_size();
                if let Some((index, data)) = s.service.maybe_snapshot(size) {
                    s.node.snapshot(index, data).unwrap();
                }
            }
            self.route(id, replies);
        }
        for i in 0..self.clerks.len() {
            if self.clerks[i].timer.is_some_and(|t| t <= now) {
                self.clerks[i].timer = None;
                let actions = self.clerks[i].clerk.on_timer(now);
                self.act(i, actions);
            }
        }
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Starts a call on clerk `clerk`.
    fn start(&mut self, clerk: usize, op: Op) -> CallId {
        let (call, actions) = self.clerks[clerk].clerk.call(op, self.now);
        self.act(clerk, actions);
        call
    }

    /// Runs until call `call` of clerk `clerk` is done (the clerk's own
    /// deadline bounds the wait).
    fn finish(&mut self, clerk: usize, call: CallId) -> Result<OpResult, KvError> {
        loop {
            if let Some(result) = self.clerks[clerk].done.remove(&call) {
                return result;
            }
            self.step();
        }
    }

    fn call(&mut self, clerk: usize, op: Op) -> Result<OpResult, KvError> {
        let call = self.start(clerk, op);
        self.finish(clerk, call)
    }

    fn leader(&self) -> Option<NodeId> {
        self.servers
            .iter()
            .find(|(id, s)| s.node.is_leader() && !self.cut.contains(id))
            .map(|(&id, _)| id)
    }

    fn wait_leader(&mut self) -> NodeId {
        for _ in 0..5_000 {
            if let Some(id) = self.leader() {
                return id;
            }
            self.step();
        }
        panic!("no leader within 5 s (seed {})", self.seed);
    }

    /// Runs until every live server has applied the same index, then checks
    /// that their state machines encode the same snapshot.
    fn converge(&mut self) {
        for _ in 0..5_000 {
            let applied: BTreeSet<_> = self
                .servers
                .values()
                .map(|s| s.service.store().applied())
                .collect();
            if applied.len() == 1 && self.queue.is_empty() {
                let images: BTreeSet<_> = self
                    .servers
                    .values()
                    .map(|s| s.service.store().snapshot())
                    .collect();
                assert_eq!(images.len(), 1, "replicas diverged (seed {})", self.seed);
                return;
            }
            self.step();
        }
        panic!("replicas did not converge within 5 s (seed {})", self.seed);
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: b(key),
        value: b(value),
    }
}

fn append(key: &str, value: &str) -> Op {
    Op::Append {
        key: b(key),
        value: b(value),
    }
}

fn get(key: &str) -> Op {
    Op::Get { key: b(key) }
}

fn value(v: &str) -> Result<OpResult, KvError> {
    Ok(OpResult::Value(Some(b(v))))
}

/// Puts and gets through a leader that is cut off and replaced, then healed.
fn through_a_leader_change(read_path: ReadPath, seed: u64) {
    let _replay = Replay("puts_and_gets_through_a_leader_change", seed);
    let cfg = ServiceConfig {
        read_path,
        ..ServiceConfig::default()
    };
    let mut c = Cluster::new(cfg, seed, 1);
    let first = c.wait_leader();
    assert_eq!(c.call(0, put("a", "1")), Ok(OpResult::Replaced(None)));
    assert_eq!(
        c.call(0, append("a", "2")),
        Ok(OpResult::Appended { len: 2 })
    );
    assert_eq!(c.call(0, get("a")), value("12"));

    c.cut.insert(first);
    assert_eq!(c.call(0, put("b", "x")), Ok(OpResult::Replaced(None)));
    let second = c.leader().expect("a new leader answered");
    assert_ne!(second, first);
    assert_eq!(c.clerks[0].clerk.leader(), Some(second));
    assert_eq!(c.call(0, get("a")), value("12"));
    assert_eq!(
        c.call(0, append("b", "y")),
        Ok(OpResult::Appended { len: 2 })
    );

    c.cut.clear();
    c.run(1_000);
    let cas = Op::Cas {
        key: b("a"),
        expected: Some(b("12")),
        new: b("3"),
    };
    let matched = OpResult::Cas {
        matched: true,
        previous: Some(b("12")),
    };
    assert_eq!(c.call(0, cas), Ok(matched));
    assert_eq!(c.call(0, get("a")), value("3"));
    assert_eq!(c.call(0, get("b")), value("xy"));
    c.converge();
}

#[test]
fn puts_and_gets_through_a_leader_change_reads_through_the_log() {
    for seed in seeds() {
        through_a_leader_change(ReadPath::Log, seed);
    }
}

#[test]
fn puts_and_gets_through_a_leader_change_reads_by_read_index() {
    for seed in seeds() {
        through_a_leader_change(ReadPath::ReadIndex, seed);
    }
}

/// Every request is delivered twice, a follower falls behind the leader's
/// snapshot and catches up by InstallSnapshot, a server crashes and
/// restarts from its storage: every append is applied exactly once.
#[test]
fn exactly_once_through_duplicates_snapshots_and_a_restart() {
    for seed in seeds() {
        let _replay = Replay(
            "exactly_once_through_duplicates_snapshots_and_a_restart",
            seed,
        );
        let cfg = ServiceConfig {
            read_path: ReadPath::Log,
            max_raft_state: Some(2_000),
            ..ServiceConfig::default()
        };
        let mut c = Cluster::new(cfg, seed, 2);
        c.duplicate_requests = true;
        let leader = c.wait_leader();
        let lagging = IDS.into_iter().find(|&id| id != leader).unwrap();
        let mut expected = String::new();
        for i in 0..120 {
            match i {
                10 => c.cut.extend([lagging]),
                40 | 70 => c.cut.clear(),
                100 => {
                    let crashed = c.wait_leader();
                    c.crash(crashed);
                    c.run(50);
                    c.restart(crashed);
                }
                _ => {}
            }
            // Two clerks, one call each at a time, interleaved.
            let token = format!("{i};");
            let call = c.start(i % 2, append("k", &token));
            if i == 50 {
                // Cut the leader off once its entry has reached the
                // followers: the new leader commits it, and the clerk's
                // retry (same sequence number) must not apply it again.
                c.run(2);
                let leader = c.wait_leader();
                c.cut.insert(leader);
            }
            let result = c.finish(i % 2, call);
            expected.push_str(&token);
            assert_eq!(
                result,
                Ok(OpResult::Appended {
                    len: expected.len() as u64
                })
            );
        }
        assert_eq!(c.call(0, get("k")), value(&expected));
        c.converge();
        assert!(
            c.installed.get(&lagging) > Some(&0),
            "the lagging follower caught up by snapshot"
        );
        assert!(
            c.servers[&leader]
                .node
                .storage()
                .snapshot()
                .unwrap()
                .meta
                .index
                > 0
        );
    }
}
