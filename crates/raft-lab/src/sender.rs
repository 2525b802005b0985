//! Outgoing calls: a few worker threads per peer take messages from a small
//! queue, make the blocking [`Transport::call`], and feed each reply back to
//! the driver as an input. The driver only ever does a non-blocking push.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use raft_core::{Message, NodeId};

use crate::driver::Input;
use crate::shared::Shared;
use crate::transport::{node_id, Transport};

/// The sending side of every peer's queue.
pub(crate) struct Senders {
    queues: BTreeMap<NodeId, Sender<Message>>,
}

/// How many calls may be outstanding per peer, and how many may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SenderLimits {
    pub workers: usize,
    pub queue: usize,
}

impl Senders {
    /// Starts `limits.workers` threads for every peer but `me`.
    pub(crate) fn spawn(
        me: usize,
        peers: &[Arc<dyn Transport>],
        limits: SenderLimits,
        input: &Sender<Input>,
        shared: &Arc<Shared>,
    ) -> std::io::Result<Self> {
        let mut queues = BTreeMap::new();
        for (i, end) in peers.iter().enumerate() {
            if i == me {
                continue;
            }
            let (tx, rx) = crossbeam_channel::bounded(limits.queue.max(1));
            for w in 0..limits.workers.max(1) {
                let (rx, end, input, shared) = (
                    rx.clone(),
                    Arc::clone(end),
                    input.clone(),
                    Arc::clone(shared),
                );
                std::thread::Builder::new()
                    .name(format!("raft-lab-{me}-to-{i}-{w}"))
                    .spawn(move || work(rx, end, input, shared))?;
            }
            queues.insert(node_id(i), tx);
        }
        Ok(Senders { queues })
    }

    /// Queues `msg` for its peer without waiting. When the queue is full (the
    /// peer is slow or cut off) the message is dropped: Raft tolerates lost
    /// messages, and heartbeats and probes resend what matters.
    pub(crate) fn send(&self, msg: Message) {
        let Some(queue) = self.queues.get(&msg.to) else {
            tracing::warn!(to = msg.to, "message to an unknown peer dropped");
            return;
        };
        match queue.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                tracing::debug!(to = m.to, kind = m.body.kind(), "peer queue full; dropped")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// One worker: call, then hand the reply (if any) to the driver. Stops when
/// the queue closes (the driver exited) or the node is killed.
fn work(rx: Receiver<Message>, end: Arc<dyn Transport>, input: Sender<Input>, shared: Arc<Shared>) {
    for msg in rx {
        if shared.is_killed() {
            return;
        }
        let to = msg.to;
        let reply = end.call(msg);
        if shared.is_killed() {
            return;
        }
        let Some(r) = reply else { continue };
        if r.from != to {
            tracing::warn!(
                from = r.from,
                expected = to,
                "reply from the wrong peer dropped"
            );
            continue;
        }
        if input.send(Input::Reply(r)).is_err() {
            return;
        }
    }
}
