//! The driver: one thread per node that owns the raft-core `Node`, feeds it
//! ticks (real time) and inputs from one channel, and acts on each Ready as
//! the core's contract says — persist, then send, then apply, then advance.
//! Inputs are batched: everything already waiting (up to a bound) is fed to
//! the core before the next Ready, so one save and one message per peer
//! carry many of them. It never waits on anything but its input channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures::channel::oneshot;
use raft_core::{
    EntryKind, Error as CoreError, Index, Message, NodeId, Storage, StorageError, Term,
};

use crate::apply::ApplyMsg;
use crate::error::{SnapshotError, StartError};
use crate::sender::Senders;
use crate::shared::{NodeStatus, Shared};
use crate::storage::LabStorage;
use crate::transport::peer_index;

/// Everything the driver reacts to.
pub(crate) enum Input {
    /// A request from a peer; its reply goes back on `reply`.
    Request { msg: Message, reply: ReplyTo },
    /// The reply to one of this node's own calls.
    Reply(Message),
    /// `start(command)`.
    Propose {
        command: Vec<u8>,
        reply: Sender<Result<(Index, Term), StartError>>,
    },
    /// `snapshot(index, data)`.
    Snapshot {
        index: Index,
        data: Vec<u8>,
        reply: Sender<Result<(), SnapshotError>>,
    },
    /// `kill()`.
    Kill,
}

/// Where the reply to a request goes: a thread blocked in `handle`, or a
/// future in `handle_async`. Dropped unanswered, it tells the waiter "no
/// reply" at once.
pub(crate) enum ReplyTo {
    Blocking(Sender<Option<Message>>),
    Async(oneshot::Sender<Option<Message>>),
}

impl ReplyTo {
    fn send(self, reply: Option<Message>) {
        // The waiter may have given up (timeout, dropped future): fine.
        match self {
            ReplyTo::Blocking(tx) => drop(tx.send(reply)),
            ReplyTo::Async(tx) => drop(tx.send(reply)),
        }
    }
}

/// A peer waiting in `handle` for the reply to its request.
struct Caller {
    from: NodeId,
    reply: ReplyTo,
}

/// A failure after which the node cannot keep the contract (the persister
/// failed, or the core reported a storage error): the driver stops.
struct Fatal(String);

impl From<CoreError> for Fatal {
    fn from(e: CoreError) -> Self {
        Fatal(e.to_string())
    }
}

impl From<StorageError> for Fatal {
    fn from(e: StorageError) -> Self {
        Fatal(e.to_string())
    }
}

/// Marks the node stopped when the driver thread ends, by return or by
/// panic, so that `get_state` stops claiming leadership and `kill` returns.
struct StoppedGuard(Arc<Shared>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("the driver thread panicked".into());
        }
        self.0.driver_stopped();
    }
}

pub(crate) struct Driver {
    pub node: raft_core::Node<LabStorage>,
    pub input: Receiver<Input>,
    pub senders: Senders,
    pub apply: Sender<ApplyMsg>,
    pub shared: Arc<Shared>,
    pub tick: Duration,
    /// Most inputs fed to the core before the next Ready.
    pub max_batch: usize,
}

/// What a batch of inputs asks of the loop.
enum Flow {
    Go,
    /// `kill()`: stop before the next Ready.
    Stop,
}

impl Driver {
    /// The loop: one tick per `tick` of real time (never bursting to catch
    /// up) and whatever inputs are waiting; then the Ready loop; then publish.
    pub(crate) fn run(mut self) {
        let _stopped = StoppedGuard(self.shared.clone());
        let mut next_tick = Instant::now() + self.tick;
        let mut published = NodeStatus::default();
        while !self.shared.is_killed() {
            let now = Instant::now();
            let mut callers = Vec::new();
            let mut batch = Ok(Flow::Go);
            let first = if now >= next_tick {
                next_tick += self.tick;
                if next_tick <= now {
                    next_tick = now + self.tick;
                }
                batch = self.node.tick().map(|()| Flow::Go).map_err(Fatal::from);
                self.input.try_recv().ok()
            } else {
                match self.input.recv_timeout(next_tick - now) {
                    Ok(input) => Some(input),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            if let (Ok(_), Some(first)) = (&batch, first) {
                batch = self.take_batch(first, &mut callers);
            }
            let result = match batch {
                Ok(Flow::Stop) => break,
                Ok(Flow::Go) => self.run_ready(callers),
                Err(e) => Err(e),
            };
            if let Err(Fatal(why)) = result {
                tracing::error!(node = self.node.id(), %why, "raft-lab node stops");
                self.shared.fail(why);
                break;
            }
            let status = self.status();
            if status != published {
                self.shared.publish(status);
                published = status;
            }
        }
    }

    /// Feeds `first` and then whatever else is already waiting, up to
    /// `max_batch` inputs; the callers of requests among them wait in
    /// `callers` for the replies the next Readies hold.
    fn take_batch(&mut self, first: Input, callers: &mut Vec<Caller>) -> Result<Flow, Fatal> {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(input) = next.take() {
            if let Input::Kill = input {
                return Ok(Flow::Stop);
            }
            if let Some(caller) = self.on_input(input)? {
                callers.push(caller);
            }
            taken += 1;
            if taken < self.max_batch {
                next = self.input.try_recv().ok();
            }
        }
        Ok(Flow::Go)
    }

    /// Feeds one input to the core. A request returns its caller, who waits
    /// for the reply the step produces.
    fn on_input(&mut self, input: Input) -> Result<Option<Caller>, Fatal> {
        match input {
            Input::Request { msg, reply } => {
                let from = msg.from;
                self.step(msg)?;
                Ok(Some(Caller { from, reply }))
            }
            Input::Reply(msg) => {
                self.step(msg)?;
                Ok(None)
            }
            Input::Propose { command, reply } => {
                let result = match self.node.propose(command) {
                    Ok(at) => Ok(at),
                    Err(CoreError::NotLeader { leader }) => Err(StartError::NotLeader {
                        leader: leader.and_then(peer_index),
                    }),
                    Err(e) => return Err(e.into()),
                };
                let _ = reply.send(result);
                Ok(None)
            }
            Input::Snapshot { index, data, reply } => {
                let result = match self.node.snapshot(index, data) {
                    Ok(()) => Ok(()),
                    Err(CoreError::BadSnapshotIndex {
                        index,
                        applied,
                        snapshot,
                    }) => Err(SnapshotError::BadIndex {
                        index,
                        applied,
                        snapshot,
                    }),
                    Err(e) => return Err(e.into()),
                };
                let _ = reply.send(result);
                Ok(None)
            }
            Input::Kill => Ok(None),
        }
    }

    /// Steps a message from the network. Only a storage failure is fatal;
    /// anything else the core objects to is logged and the message dropped.
    fn step(&mut self, msg: Message) -> Result<(), Fatal> {
        let kind = msg.body.kind();
        match self.node.step(msg) {
            Ok(()) => Ok(()),
            Err(e @ CoreError::Storage(StorageError::Backend(_))) => Err(e.into()),
            Err(e) => {
                tracing::warn!(node = self.node.id(), kind, error = %e, "message dropped");
                Ok(())
            }
        }
    }

    /// The Ready loop (the core's contract): persist, then send — a reply to
    /// a peer with a request waiting goes straight back to that caller —
    /// then queue the committed entries for the applier, then advance.
    fn run_ready(&mut self, mut callers: Vec<Caller>) -> Result<(), Fatal> {
        while self.node.has_ready() {
            let rd = self.node.ready()?;
            raft_core::persist(self.node.storage_mut(), &rd)?;
            if rd.hard_state.is_some() && !rd.must_sync() {
                // The core lets a commit-only change wait for the next sync;
                // saving it now lets a restarted server re-apply its committed
                // log from the persister alone, before any leader exists.
                self.node.storage_mut().sync()?;
            }
            for msg in rd.messages {
                // Replies are matched by term and content, not to a request
                // (Figure 2 RPCs carry no id): any caller from that peer will
                // do, the oldest first.
                let waiting = msg
                    .body
                    .is_reply()
                    .then(|| callers.iter().position(|c| c.from == msg.to))
                    .flatten();
                match waiting {
                    Some(at) => callers.remove(at).reply.send(Some(msg)),
                    None => self.senders.send(msg),
                }
            }
            if let Some(s) = rd.snapshot {
                self.queue_apply(ApplyMsg::Snapshot {
                    index: s.meta.index,
                    term: s.meta.term,
                    data: s.data,
                });
            }
            for e in rd.committed_entries {
                if e.kind == EntryKind::Normal {
                    self.queue_apply(ApplyMsg::Command {
                        index: e.index,
                        term: e.term,
                        command: Vec::from(e.data),
                    });
                }
            }
            self.node.advance();
        }
        // Callers still here get no reply (a vote request ignored under a
        // leader lease, or a request the core drops): dropping their reply
        // slots tells them at once.
        drop(callers);
        Ok(())
    }

    fn queue_apply(&self, msg: ApplyMsg) {
        // Unbounded: never waits. Fails only once the applier has stopped.
        let _ = self.apply.send(msg);
    }

    fn status(&self) -> NodeStatus {
        let s = self.node.status();
        NodeStatus {
            term: s.term,
            is_leader: self.node.is_leader(),
            leader: s.leader.and_then(peer_index),
            commit: s.commit,
            applied: s.applied,
            last_index: s.last_index,
            snapshot_index: s.first_index.saturating_sub(1),
        }
    }
}
