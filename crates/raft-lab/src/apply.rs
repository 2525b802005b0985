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
/// thread, a plain thread outside any async runtime, waits on them.
///
/// Implemented for `std::sync::mpsc::{Sender, SyncSender}` and
/// `crossbeam_channel::Sender`; with the `futures` feature for
/// `futures::channel::mpsc::{UnboundedSender, Sender}`, and with the `tokio`
/// feature for `tokio::sync::mpsc::{UnboundedSender, Sender}`.
pub trait ApplySink: Send + 'static {
    /// Hands over one message, waiting for room if need be; `false` when
    /// the receiver is gone.
    fn deliver(&mut self, msg: ApplyMsg) -> bool;
}

impl ApplySink for std::sync::mpsc::Sender<ApplyMsg> {
    fn deliver(&mut self, msg: ApplyMsg) -> bool {
        self.send(msg).is_ok()
    }
}

impl ApplySink for std::sync::mpsc::SyncSender<ApplyMsg> {
    fn deliver(&mut self, msg: ApplyMsg) -> bool {
        self.send(msg).is_ok()
    }
}

impl ApplySink for crossbeam_channel::Sender<ApplyMsg> {
    fn deliver(&mut self, msg: ApplyMsg) -> bool {
        self.send(msg).is_ok()
    }
}

#[cfg(feature = "futures")]
impl ApplySink for futures::channel::mpsc::UnboundedSender<ApplyMsg> {
    fn deliver(&mut self, msg: ApplyMsg) -> bool {
        self.unbounded_send(msg).is_ok()
    }
}

#[cfg(feature = "futures")]
impl ApplySink for futures::channel::mpsc::Sender<ApplyMsg> {
    /// Waits for room by blocking the applier thread (never a runtime's).
    fn deliver(&mut self, msg: ApplyMsg) -> bool {
        futures::executor::block_on(futures::SinkExt::send(self, msg)).is_ok()
    }
}

#[cfg(feature = "tokio")]
impl ApplySink for tokio::sync::mpsc::UnboundedSender<ApplyMsg> {
    fn deliver(&mut self, msg: ApplyMsg) -> bool {
        self.send(msg).is_ok()
    }
}

#[cfg(feature = "tokio")]
impl ApplySink for tokio::sync::mpsc::Sender<ApplyMsg> {
    /// `blocking_send` is right here: the applier is not a runtime thread.
    fn deliver(&mut self, msg: ApplyMsg) -> bool {
        self.blocking_send(msg).is_ok()
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

fn run<A: ApplySink>(rx: Receiver<ApplyMsg>, mut sink: A, shared: &Shared) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn command(index: Index) -> ApplyMsg {
        ApplyMsg::Command {
            index,
            term: 1,
            command: vec![index as u8],
        }
    }

    /// Feeds two messages through a real applier into `sink`.
    fn through_applier<A: ApplySink>(sink: A) {
        let (tx, _h) = spawn_applier("t".into(), sink, Arc::default()).unwrap();
        tx.send(command(1)).unwrap();
        tx.send(command(2)).unwrap();
    }

    #[cfg(feature = "futures")]
    #[test]
    fn futures_senders_are_sinks() {
        use futures::StreamExt;
        let (tx, rx) = futures::channel::mpsc::unbounded();
        through_applier(tx);
        let got: Vec<_> = futures::executor::block_on(rx.take(2).collect());
        assert_eq!(got, vec![command(1), command(2)]);
        let (tx, rx) = futures::channel::mpsc::channel(0);
        through_applier(tx);
        let got: Vec<_> = futures::executor::block_on(rx.take(2).collect());
        assert_eq!(got, vec![command(1), command(2)]);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn tokio_senders_are_sinks() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        through_applier(tx);
        assert_eq!(rx.blocking_recv(), Some(command(1)));
        assert_eq!(rx.blocking_recv(), Some(command(2)));
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        through_applier(tx);
        assert_eq!(rx.blocking_recv(), Some(command(1)));
        assert_eq!(rx.blocking_recv(), Some(command(2)));
    }

    #[test]
    fn std_sender_is_a_sink() {
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        through_applier(tx);
        assert_eq!(rx.recv().unwrap(), command(1));
        assert_eq!(rx.recv().unwrap(), command(2));
    }
}
