//! The little state that callers read without asking the driver: what
//! `get_state` returns, the kill flag, and which snapshots went out. Every
//! lock here is held for a copy, never across I/O or a channel operation.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;

use raft_core::{Index, Term};

/// A node's state as its driver last published it (after every input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// `currentTerm`.
    pub term: Term,
    /// Whether this node believes it is the leader.
    pub is_leader: bool,
    /// Peer index of the leader this node last heard from in `term`.
    pub leader: Option<usize>,
    /// `commitIndex`.
    pub commit: Index,
    /// Highest index handed to the apply queue (the application may still
    /// be reading up to it).
    pub applied: Index,
    /// Index of the last log entry.
    pub last_index: Index,
    /// Index of the last entry covered by the stored snapshot.
    pub snapshot_index: Index,
}

#[derive(Debug, Default)]
struct Published {
    status: NodeStatus,
    /// Snapshots handed to the application since `make`, as (index, term).
    delivered: BTreeSet<(Index, Term)>,
    /// Why the driver stopped on its own, if it did.
    failure: Option<String>,
}

/// Shared between the handle, the driver, the senders and the applier.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    killed: AtomicBool,
    published: Mutex<Published>,
    /// Set by the driver thread as its very last act (even when it panics).
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
    /// The driver thread, so that a `kill` from it does not wait on itself.
    driver: OnceLock<ThreadId>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Published> {
        // Plain data, never left half-written: a poisoned lock is still usable.
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
    }

    pub(crate) fn status(&self) -> NodeStatus {
        self.lock().status
    }

    pub(crate) fn publish(&self, status: NodeStatus) {
        self.lock().status = status;
    }

    pub(crate) fn record_snapshot(&self, index: Index, term: Term) {
        self.lock().delivered.insert((index, term));
    }

    pub(crate) fn was_delivered(&self, index: Index, term: Term) -> bool {
        self.lock().delivered.contains(&(index, term))
    }

    /// The driver stopped because of `why`: the node counts as killed.
    pub(crate) fn fail(&self, why: String) {
        self.lock().failure = Some(why);
        self.kill();
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// Records the driver thread, right after it is spawned.
    pub(crate) fn set_driver_thread(&self, id: ThreadId) {
        let _ = self.driver.set(id);
    }

    /// Called by the driver thread when it ends, however it ends: the node
    /// is killed, no longer claims leadership, and `kill` callers wake up.
    pub(crate) fn driver_stopped(&self) {
        self.kill();
        self.lock().status.is_leader = false;
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stopped_cv.notify_all();
    }

    /// Blocks until the driver thread has ended (returns at once on the
    /// driver thread itself, or if it never started).
    pub(crate) fn wait_stopped(&self) {
        match self.driver.get() {
            Some(&id) if id != std::thread::current().id() => {}
            _ => return,
        }
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped {
            stopped = self
                .stopped_cv
                .wait(stopped)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}
