//! A small real-time harness in the lab's vocabulary (`check_one_leader`,
//! `one`, `n_committed`, crash/restart, connect/disconnect) over a
//! `ChannelNetwork`. Every wait polls for a condition with a deadline. As in
//! the lab, a lost call fails only after up to 7 s (`LONG_DELAYS`), and the
//! cluster may be shared by client threads (`&Cluster` is `Sync`).
//!
//! Each server's apply channel is read by a thread that plays the lab's
//! checking state machine: commands must arrive in index order with no gap,
//! agree with every other server, and a snapshot must move the state
//! forward; violations are collected and fail the test.

#![allow(dead_code)]

pub mod unreliable;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use raft_lab::{make, ApplyMsg, ChannelNetwork, Index, MemPersister, Node, Persister, Term};

/// How long anything in these tests may take to happen.
pub const PATIENCE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// What a server's application saw, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Command { index: Index, term: Term },
    Snapshot { index: Index, term: Term },
}

/// One server's application state (one incarnation).
#[derive(Debug, Default)]
pub struct App {
    pub incarnation: u64,
    pub last_applied: Index,
    /// Every command applied or restored, by index (the "state machine").
    pub state: BTreeMap<Index, Vec<u8>>,
    pub events: Vec<Event>,
}

#[derive(Debug, Default)]
pub struct Logs {
    /// The first command any server applied at each index, with its term.
    pub committed: BTreeMap<Index, (Term, Vec<u8>)>,
    pub apps: Vec<App>,
    pub errors: Vec<String>,
}

/// How the cluster's applications and network behave.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Each server snapshots after applying an index divisible by this.
    pub snapshot_every: Option<u64>,
    /// Nobody reads the apply channels (rendezvous channels, never drained).
    pub unread: bool,
    /// How long a lost call may take to fail (the lab's 7 s by default).
    pub failure_delay: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            snapshot_every: None,
            unread: false,
            failure_delay: ChannelNetwork::LONG_DELAYS,
        }
    }
}

pub struct Cluster {
    pub n: usize,
    pub net: ChannelNetwork,
    nodes: RwLock<Vec<Node>>,
    pub persisters: Vec<MemPersister>,
    pub logs: Arc<Mutex<Logs>>,
    setup: Setup,
    /// Apply receivers kept alive but never read (`Setup::unread`).
    unread: Mutex<Vec<Receiver<ApplyMsg>>>,
}

/// Polls `cond` until it holds; fails the test after `PATIENCE`.
pub fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

pub fn cmd(x: u64) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

impl Cluster {
    pub fn new(n: usize) -> Self {
        Self::with(n, Setup::default())
    }

    pub fn with(n: usize, setup: Setup) -> Self {
        let logs = Logs {
            apps: (0..n).map(|_| App::default()).collect(),
            ..Logs::default()
        };
        let c = Cluster {
            n,
            net: ChannelNetwork::new(n),
            nodes: RwLock::new(Vec::new()),
            persisters: (0..n).map(|_| MemPersister::new()).collect(),
            logs: Arc::new(Mutex::new(logs)),
            setup,
            unread: Mutex::new(Vec::new()),
        };
        c.net.set_failure_delay(setup.failure_delay);
        let nodes = (0..n).map(|i| c.make(i)).collect();
        *c.nodes.write().unwrap() = nodes;
        c
    }

    /// Server `i` as it is now (a killed one until it is restarted).
    pub fn node(&self, i: usize) -> Node {
        self.nodes.read().unwrap()[i].clone()
    }

    /// Every server as it is now.
    pub fn nodes(&self) -> Vec<Node> {
        self.nodes.read().unwrap().clone()
    }

    /// The largest raft state any server's persister holds (the lab's `LogSize`).
    pub fn log_size(&self) -> usize {
        self.persisters
            .iter()
            .map(|p| p.raft_state_size())
            .max()
            .unwrap_or(0)
    }

    pub fn logs(&self) -> MutexGuard<'_, Logs> {
        self.logs.lock().unwrap()
    }

    /// Makes server `i` over its persister and starts its application.
    fn make(&self, i: usize) -> Node {
        let persister = self.persisters[i].clone();
        let node = if self.setup.unread {
            let (tx, rx) = mpsc::sync_channel(0);
            self.unread.lock().unwrap().push(rx);
            make(self.net.ends(i), i, persister, tx).expect("make")
        } else {
            let (tx, rx) = mpsc::channel();
            let node = make(self.net.ends(i), i, persister, tx).expect("make");
            let incarnation = {
                let mut logs = self.logs();
                let app = &mut logs.apps[i];
                *app = App {
                    incarnation: app.incarnation + 1,
                    ..App::default()
                };
                app.incarnation
            };
            let (logs, every, n) = (
                Arc::clone(&self.logs),
                self.setup.snapshot_every,
                node.clone(),
            );
            std::thread::spawn(move || read_apply(i, incarnation, rx, n, logs, every));
            node
        };
        self.net.register(i, node.clone());
        node
    }

    /// Kills server `i`; its persister keeps what it saved. Calls to it
    /// fail as to a crashed server (after the failure delay) until `restart`.
    pub fn crash(&self, i: usize) {
        self.net.unregister(i);
        self.node(i).kill();
    }

    /// Makes server `i` again from its persister (after `crash`), with the
    /// same connectivity as before.
    pub fn restart(&self, i: usize) {
        self.node(i).kill();
        let node = self.make(i);
        self.nodes.write().unwrap()[i] = node;
    }

    pub fn disconnect(&self, i: usize) {
        self.net.disconnect(i);
    }

    pub fn connect(&self, i: usize) {
        self.net.connect(i);
    }

    /// Fails the test if any application saw something wrong.
    pub fn check_errors(&self) {
        let logs = self.logs();
        assert!(logs.errors.is_empty(), "apply errors: {:#?}", logs.errors);
    }

    /// Polls until exactly one connected server leads in the newest term
    /// with a leader (and no term has two leaders); returns it.
    pub fn check_one_leader(&self) -> usize {
        self.check_leader_where(|_| true)
    }

    /// `check_one_leader`, but waits for a leader that satisfies `ok`.
    pub fn check_leader_where(&self, ok: impl Fn(usize) -> bool) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut by_term: BTreeMap<Term, Vec<usize>> = BTreeMap::new();
            for i in (0..self.n).filter(|&i| self.net.is_connected(i)) {
                let (term, leader) = self.node(i).get_state();
                if leader {
                    by_term.entry(term).or_default().push(i);
                }
            }
            for (term, leaders) in &by_term {
                assert!(leaders.len() <= 1, "term {term} has leaders {leaders:?}");
            }
            if let Some((_, leaders)) = by_term.iter().next_back() {
                if ok(leaders[0]) {
                    return leaders[0];
                }
            }
            assert!(
                Instant::now() < deadline,
                "no acceptable leader within {PATIENCE:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// How many servers' applications hold index `index`, and its command.
    pub fn n_committed(&self, index: Index) -> (usize, Option<Vec<u8>>) {
        self.check_errors();
        let logs = self.logs();
        let mut count = 0;
        let mut seen = None;
        for app in &logs.apps {
            if let Some(c) = app.state.get(&index) {
                if let Some(prev) = &seen {
                    assert_eq!(prev, c, "servers disagree at index {index}");
                }
                seen = Some(c.clone());
                count += 1;
            }
        }
        (count, seen)
    }

    /// The lab's `one`: gets `command` committed on at least `expected`
    /// servers, retrying on whichever server is leader; returns its index.
    pub fn one(&self, command: &[u8], expected: usize) -> Index {
        let deadline = Instant::now() + 2 * PATIENCE;
        let mut next = 0;
        while Instant::now() < deadline {
            let started = (0..self.n).map(|k| (next + k) % self.n).find_map(|i| {
                let ok = self.net.is_connected(i);
                ok.then(|| self.node(i).start(command.to_vec()).ok())
                    .flatten()
            });
            next += 1;
            let Some((index, _)) = started else {
                std::thread::sleep(POLL);
                continue;
            };
            let wait = Instant::now() + Duration::from_secs(2);
            while Instant::now() < wait {
                let (count, got) = self.n_committed(index);
                if count >= expected && got.as_deref() == Some(command) {
                    return index;
                }
                std::thread::sleep(POLL);
            }
        }
        panic!("one({command:?}, {expected}) failed to reach agreement");
    }

    /// Polls until server `i`'s application has applied through `index`.
    pub fn wait_applied(&self, i: usize, index: Index) {
        let deadline = Instant::now() + PATIENCE;
        while self.logs().apps[i].last_applied < index {
            self.check_errors();
            assert!(
                Instant::now() < deadline,
                "server {i} did not apply {index}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Kills everything and checks the applications saw nothing wrong.
    pub fn finish(self) {
        for node in self.nodes.read().unwrap().iter() {
            node.kill();
        }
        self.check_errors();
    }
}

fn encode(state: &BTreeMap<Index, Vec<u8>>) -> Vec<u8> {
    postcard::to_allocvec(state).expect("encode snapshot")
}

/// The lab's checking applier: in-order, gap-free, agreeing commands; a
/// snapshot only moves forward and must hold exactly the committed commands.
fn read_apply(
    i: usize,
    incarnation: u64,
    rx: Receiver<ApplyMsg>,
    node: Node,
    logs: Arc<Mutex<Logs>>,
    every: Option<u64>,
) {
    for msg in rx {
        let mut guard = logs.lock().unwrap();
        let logs = &mut *guard;
        if logs.apps[i].incarnation != incarnation {
            return;
        }
        let mut snapshot_now = None;
        let error = match msg {
            ApplyMsg::Command {
                index,
                term,
                command,
            } => {
                let app = &mut logs.apps[i];
                let mut err = None;
                if index != app.last_applied + 1 {
                    err = Some(format!(
                        "server {i} applied {index} after {}",
                        app.last_applied
                    ));
                }
                let first = logs
                    .committed
                    .entry(index)
                    .or_insert((term, command.clone()));
                if *first != (term, command.clone()) {
                    err = Some(format!(
                        "server {i} applied {command:?}@{term} at {index}, others {first:?}"
                    ));
                }
                app.state.insert(index, command);
                app.last_applied = index;
                app.events.push(Event::Command { index, term });
                if every.is_some_and(|k| index % k == 0) {
                    snapshot_now = Some((index, encode(&app.state)));
                }
                err
            }
            ApplyMsg::Snapshot { index, term, data } => {
                let app = &mut logs.apps[i];
                let mut err = None;
                if index <= app.last_applied {
                    err = Some(format!(
                        "server {i} got snapshot {index} after applying {}",
                        app.last_applied
                    ));
                }
                if logs.committed.get(&index).is_some_and(|(t, _)| *t != term) {
                    err = Some(format!(
                        "server {i}: snapshot {index} has the wrong term {term}"
                    ));
                }
                if !node.cond_install_snapshot(term, index, &data) {
                    err = Some(format!(
                        "server {i}: cond_install_snapshot({term}, {index}) refused"
                    ));
                }
                match postcard::from_bytes::<BTreeMap<Index, Vec<u8>>>(&data) {
                    Ok(state) if state.keys().copied().eq(1..=index) => {
                        for (k, c) in &state {
                            if logs.committed.get(k).is_some_and(|(_, first)| first != c) {
                                err = Some(format!("server {i}: snapshot disagrees at {k}"));
                            }
                        }
                        app.state = state;
                    }
                    _ => err = Some(format!("server {i}: bad snapshot data at {index}")),
                }
                app.last_applied = index;
                app.events.push(Event::Snapshot { index, term });
                err
            }
        };
        if let Some(e) = error {
            logs.errors.push(e);
        }
        drop(guard);
        if let Some((index, data)) = snapshot_now {
            // Refusal (a newer snapshot got there first) is fine.
            let _ = node.snapshot(index, data);
        }
    }
}
