//! The apply channel: committed commands and snapshots, in log order, handed
//! to the application by a thread of their own so that a slow reader never
//! holds up the node.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use raft_core::{Index, Term};

use crate::shared::Shared;

/// One message on the apply channel (the lab's `ApplyMsg`; the variant says
/// which of `CommandValid` / `SnapshotValid` holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyMsg {
    /// A committed command, at `index` in the log, appended in `term`.
    /// Commands arrive once each, in index order, with no gaps except the
    /// ones a `Snapshot` message covers.
    Command {
        index: Index,
        term: Term,
        command: Vec<u8>,
    },
    /// Replace the application's state with `data`, which covers the log
    /// through `index` (whose entry had `term`) (§7, the lab's 2D). Sent when
    /// this node installs a leader's snapshot, and first thing after a
    /// restart that finds one in the persister. The next `Command`, if any,
    /// has index `index + 1`.
    Snapshot {
        index: Index,
        term: Term,
        data: Vec<u8>,
    },
}

impl ApplyMsg {
    /// The log index this message brings the application to.
    pub fn index(&self) -> Index {
        match self {
            ApplyMsg::Command { index, .. } | ApplyMsg::Snapshot { index, .. } => *index,
        }
    }

    /// The term of the entry at [`index`](ApplyMsg::index).
    pub fn term(&self) -> Term {
        match self {
            ApplyMsg::Command { term, .. } | ApplyMsg::Snapshot { term, .. } => *term,
        }
    }
}

/// Where the apply channel's messages go: the sending half of a channel.
/// Bounded (even rendezvous) channels are fine: only the node's applier
/// thread waits on them.
pub trait ApplySink: Send + 'static {
    /// Hands over one message; `false` when the receiver is gone.
    fn deliver(&self, msg: ApplyMsg) -> bool;
}

impl ApplySink for std::sync::mpsc::Sender<ApplyMsg> {
    fn deliver(&self, msg: ApplyMsg) -> bool {
        self.send(msg).is_ok()
    }
}

impl ApplySink for std::sync::mpsc::SyncSender<ApplyMsg> {
    fn deliver(&self, msg: ApplyMsg) -> bool {
        self.send(msg).is_ok()
    }
}

impl ApplySink for crossbeam_channel::Sender<ApplyMsg> {
    fn deliver(&self, msg: ApplyMsg) -> bool {
        self.send(msg).is_ok()
    }
}

/// Starts the applier thread: it moves messages from an unbounded queue
/// (filled by the driver, which never waits) to `sink` (which may wait).
/// It stops when the queue closes, the node is killed, or the reader leaves.
pub(crate) fn spawn_applier<A: ApplySink>(
    name: String,
    sink: A,
    shared: Arc<Shared>,
) -> std::io::Result<(Sender<ApplyMsg>, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || run(rx, sink, &shared))?;
    Ok((tx, handle))
}

fn run<A: ApplySink>(rx: Receiver<ApplyMsg>, sink: A, shared: &Shared) {
    for msg in rx {
        if shared.is_killed() {
            return;
        }
        if let ApplyMsg::Snapshot { index, term, .. } = msg {
            // Before delivery, so that cond_install_snapshot knows it.
            shared.record_snapshot(index, term);
        }
        if !sink.deliver(msg) {
            tracing::debug!("apply channel receiver gone; applier stops");
            return;
        }
    }
}
