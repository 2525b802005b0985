//! raft-core driven as its docs say: one thread per node, a channel inbox,
//! `MemStorage`, 10 ms ticks.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use raft_core::{persist_owned, Config, EntryKind, MemStorage, Message, Node};

use crate::workload::{
    client_of, closed_loop, drain, to_node, Cell, Inboxes, Input, LeaderBoard, Outcome, Shared,
    COMPACT_EVERY, NODES, TICK,
};

/// How raft-core is configured for the run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `Config::async_leader_writes`: the leader sends its AppendEntries
    /// before its own write (as raft-rs does).
    pub async_leader_writes: bool,
}

/// One run of `cell` on a fresh three-node raft-core cluster.
pub fn run(cell: Cell, opts: Options) -> anyhow::Result<Outcome> {
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
            .name(format!("raftkv-{id}"))
            .spawn(move || drive(id, opts, rx, peers, shared))?;
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
            .map_err(|_| anyhow::anyhow!("raftkv node panicked"))??;
    }
    outcome
}

fn send(peers: &[Sender<Input<Message>>], msgs: Vec<Message>) {
    for m in msgs {
        if let Some(to) = to_node(peers, m.to) {
            let _ = to.send(Input::Msg(m));
        }
    }
}

/// One node's thread. Batching: every input waiting in the inbox is handed
/// to the node before the next `ready()`, so all proposals and replies that
/// arrived meanwhile travel in one Ready (one append, one message per peer).
fn drive(
    id: u64,
    opts: Options,
    inbox: Receiver<Input<Message>>,
    peers: Vec<Sender<Input<Message>>>,
    shared: Shared,
) -> anyhow::Result<()> {
    let mut cfg = Config::new(id, NODES.to_vec());
    cfg.async_leader_writes = opts.async_leader_writes;
    let mut node = Node::new(cfg, MemStorage::new())?;
    let mut next_tick = Instant::now() + TICK;
    let mut inputs = Vec::new();
    // The state machine: how many commands it applied.
    let mut commands: u64 = 0;
    let mut applied: u64 = 0;
    let mut compacted: u64 = 0;
    loop {
        if node.has_ready() {
            inputs.extend(inbox.try_iter());
        } else {
            drain(&inbox, next_tick, &mut inputs);
        }
        for input in inputs.drain(..) {
            match input {
                Input::Msg(m) => node.step(m)?,
                Input::Propose(batch) => {
                    for data in batch {
                        // A proposal refused (leadership lost) is not
                        // answered: its client stops, and throughput shows it.
                        let _ = node.propose(data);
                    }
                }
                Input::Stop => {
                    if std::env::var_os("RAFTKV_BENCH_TRACE").is_some() {
                        eprintln!("raftkv node {id}: applied {applied}, {commands} commands");
                    }
                    return Ok(());
                }
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            node.tick()?;
            next_tick = (next_tick + TICK).max(now);
        }
        if !node.has_ready() {
            continue;
        }
        let mut rd = node.ready()?;
        send(&peers, std::mem::take(&mut rd.early_messages));
        persist_owned(node.storage_mut(), &mut rd)?;
        send(&peers, std::mem::take(&mut rd.messages));
        let leading = node.is_leader();
        let mut finished = Vec::new();
        for e in &rd.committed_entries {
            applied = e.index;
            if e.kind == EntryKind::Normal {
                commands += 1;
                if leading {
                    finished.extend(client_of(&e.data));
                }
            }
        }
        node.advance();
        if leading {
            shared.board.set(id);
        }
        if !finished.is_empty() {
            let _ = shared.done.send(finished);
        }
        if applied >= compacted + 2 * COMPACT_EVERY {
            compacted = applied - COMPACT_EVERY;
            match node.snapshot(compacted, commands.to_le_bytes().to_vec()) {
                // A snapshot from the leader already covers it: nothing to do.
                Ok(()) | Err(raft_core::Error::BadSnapshotIndex { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
