//! tikv/raft-rs (the `raft` crate) driven through its `RawNode` the way its
//! own examples do, over the same shape as raft-core: one thread per node, a
//! channel inbox, its `MemStorage`, 10 ms ticks.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use raft::eraftpb::{Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole, Storage};

use crate::workload::{
    client_of, closed_loop, drain, to_node, Cell, Inboxes, Input, LeaderBoard, Outcome, Shared,
    COMPACT_EVERY, NODES, TICK,
};

/// One run of `cell` on a fresh three-node raft-rs cluster.
pub fn run(cell: Cell) -> anyhow::Result<Outcome> {
    let inboxes = Inboxes::<Message>::new();
    let board = Arc::new(LeaderBoard::default());
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let mut handles = Vec::new();
    for (id, rx) in NODES.iter().copied().zip(inboxes.receivers) {
        let peers = inboxes.senders.clone();
        let shared = Shared {
            board: board.clone(),
            done: done_tx.clone(),
        };
        let h = thread::Builder::new()
            .name(format!("raft-rs-{id}"))
            .spawn(move || drive(id, rx, peers, shared))?;
        handles.push(h);
    }
    let leader = board.wait(Duration::from_secs(10));
    let outcome = leader.and_then(|id| {
        let to = to_node(&inboxes.senders, id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        closed_loop(to, &done_rx, cell)
    });
    for s in &inboxes.senders {
        let _ = s.send(Input::Stop);
    }
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("raft-rs node panicked"))??;
    }
    outcome
}

/// raft-rs's configuration, set to raft-core's defaults where the two
/// have the same knob: 10-tick heartbeats, 30-tick elections, PreVote and
/// CheckQuorum, 1 MiB messages, 64 messages in flight per follower.
fn config(id: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: 30,
        heartbeat_tick: 10,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 64,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    }
}

fn send(peers: &[Sender<Input<Message>>], msgs: Vec<Message>) {
    for m in msgs {
        if let Some(to) = to_node(peers, m.to) {
            let _ = to.send(Input::Msg(m));
        }
    }
}

/// The state machine of one node: counts commands, and on the leader
/// collects whose writes are done.
struct Applier {
    leading: bool,
    commands: u64,
    applied: u64,
    finished: Vec<u64>,
}

impl Applier {
    fn apply(&mut self, entries: Vec<Entry>) {
        for e in entries {
            self.applied = e.index;
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                self.commands += 1;
                if self.leading {
                    self.finished.extend(client_of(&e.data));
                }
            }
        }
    }
}

/// One node's thread, in the order raft-rs's examples handle a Ready.
/// Batching: every input waiting in the inbox is stepped before the next
/// `ready()`, as for raft-core.
fn drive(
    id: u64,
    inbox: Receiver<Input<Message>>,
    peers: Vec<Sender<Input<Message>>>,
    shared: Shared,
) -> anyhow::Result<()> {
    let storage = MemStorage::new_with_conf_state((NODES.to_vec(), vec![]));
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut node = RawNode::new(&config(id), storage.clone(), &logger)?;
    let mut next_tick = Instant::now() + TICK;
    let mut inputs = Vec::new();
    let mut sm = Applier {
        leading: false,
        commands: 0,
        applied: 0,
        finished: Vec::new(),
    };
    let mut compacted = 0;
    loop {
        if node.has_ready() {
            inputs.extend(inbox.try_iter());
        } else {
            drain(&inbox, next_tick, &mut inputs);
        }
        for input in inputs.drain(..) {
            match input {
                // Errors here are refusals of one message (e.g. from an
                // unknown peer); the node goes on.
                Input::Msg(m) => {
                    let _ = node.step(m);
                }
                Input::Propose(batch) => {
                    for data in batch {
                        let _ = node.propose(Vec::new(), data);
                    }
                }
                Input::Stop => return Ok(()),
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            node.tick();
            next_tick = (next_tick + TICK).max(now);
        }
        if !node.has_ready() {
            continue;
        }
        sm.leading = node.raft.state == StateRole::Leader;
        let mut rd = node.ready();
        send(&peers, rd.take_messages());
        if !rd.snapshot().is_empty() {
            storage.wl().apply_snapshot(rd.snapshot().clone())?;
        }
        sm.apply(rd.take_committed_entries());
        if !rd.entries().is_empty() {
            storage.wl().append(rd.entries())?;
        }
        if let Some(hs) = rd.hs() {
            storage.wl().set_hardstate(hs.clone());
        }
        send(&peers, rd.take_persisted_messages());
        let mut light = node.advance(rd);
        if let Some(commit) = light.commit_index() {
            storage.wl().mut_hard_state().set_commit(commit);
        }
        send(&peers, light.take_messages());
        sm.apply(light.take_committed_entries());
        node.advance_apply();
        if sm.leading {
            shared.board.set(id);
        }
        if !sm.finished.is_empty() {
            let _ = shared.done.send(std::mem::take(&mut sm.finished));
        }
        if sm.applied >= compacted + 2 * COMPACT_EVERY {
            compacted = sm.applied - COMPACT_EVERY;
            if compacted >= storage.first_index()? {
                storage.wl().compact(compacted)?;
            }
        }
    }
}
