//! raft-core alone, on one thread: the same three nodes and closed-loop
//! clients, but the nodes take turns and messages wait in plain queues. No
//! thread, clock or channel is involved, so the work per write is the
//! core's own (plus `MemStorage`) and the run is exactly repeatable: under
//! `valgrind --tool=callgrind` it counts the same instructions every time.
//! This is how raft-core changes are measured before and after.

use std::collections::VecDeque;
use std::time::Instant;

use raft_core::{persist_owned, Config, EntryKind, MemStorage, Message, Node};

use crate::workload::{client_of, payload, COMPACT_EVERY, NODES};

/// Runs `clients` closed-loop clients of `size`-byte writes until `writes`
/// are applied on the leader; returns writes per second of wall time.
pub fn run(clients: usize, size: usize, writes: u64) -> anyhow::Result<f64> {
    let mut nodes = Vec::new();
    for id in NODES {
        let mut cfg = Config::new(id, NODES.to_vec());
        cfg.async_leader_writes = true;
        nodes.push(Node::new(cfg, MemStorage::new())?);
    }
    let mut queues: Vec<VecDeque<Message>> = NODES.iter().map(|_| VecDeque::new()).collect();
    // Elect node 1: tick it alone until it campaigns, deliver until it leads.
    while !nodes[0].is_leader() {
        nodes[0].tick()?;
        for i in 0..nodes.len() {
            step_and_ready(&mut nodes, &mut queues, i, &mut Vec::new(), &mut 0)?;
        }
    }
    let mut pending: Vec<u64> = (0..clients as u64).collect();
    let mut done = 0u64;
    let mut compacted = vec![0u64; nodes.len()];
    let start = Instant::now();
    while done < writes {
        for c in pending.drain(..) {
            nodes[0].propose(payload(c, size))?;
        }
        for i in 0..nodes.len() {
            let applied = step_and_ready(&mut nodes, &mut queues, i, &mut pending, &mut done)?;
            if applied >= compacted[i] + 2 * COMPACT_EVERY {
                compacted[i] = applied - COMPACT_EVERY;
                nodes[i].snapshot(compacted[i], Vec::new())?;
            }
        }
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    // The entries still held are dropped at exit, not counted: freeing them
    // is the same work whatever the change measured, and its amount depends
    // on where the last compaction fell.
    std::mem::forget(nodes);
    Ok(rate)
}

/// Hands node `i` everything queued for it, then acts on one Ready; the
/// leader's finished clients go to `finished`. Returns the last applied index.
fn step_and_ready(
    nodes: &mut [Node<MemStorage>],
    queues: &mut [VecDeque<Message>],
    i: usize,
    finished: &mut Vec<u64>,
    done: &mut u64,
) -> anyhow::Result<u64> {
    let node = &mut nodes[i];
    while let Some(m) = queues[i].pop_front() {
        node.step(m)?;
    }
    let mut applied = node.status().applied;
    if !node.has_ready() {
        return Ok(applied);
    }
    let mut rd = node.ready()?;
    let route = |queues: &mut [VecDeque<Message>], msgs: Vec<Message>| {
        for m in msgs {
            if let Some(q) = queues.get_mut((m.to as usize).wrapping_sub(1)) {
                q.push_back(m);
            }
        }
    };
    route(queues, std::mem::take(&mut rd.early_messages));
    persist_owned(node.storage_mut(), &mut rd)?;
    route(queues, std::mem::take(&mut rd.messages));
    let leading = node.is_leader();
    for e in &rd.committed_entries {
        applied = e.index;
        if leading && e.kind == EntryKind::Normal {
            finished.extend(client_of(&e.data));
            *done += 1;
        }
    }
    node.advance();
    Ok(applied)
}
