//! Asynchronous leader writes (`Config::async_leader_writes`): a leader's
//! Ready carries `early_messages`, which may leave before the Ready is
//! persisted, so its fsync overlaps replication.
//!
//! The simulator sends them at once and lets the write take a disk's time
//! (`WRITE_DELAY`, longer than a round trip on a reliable link, so
//! followers' acknowledgements often arrive before the leader's own write
//! lands). Meanwhile the node goes on taking ticks, messages and
//! proposals, but gets no new Ready; when the write lands the rest of the
//! contract follows (persist, send the other messages, apply, advance).
//! A crash before then loses the Ready's writes; [`Sim::fail_next_write`]
//! makes the next write in progress end that way. The checker sees the
//! node's persisted state only, so a leader that counts its own entries
//! before they are durable is caught committing without a majority.

use raft_core::{NodeId, Ready};
use rand::Rng;

use crate::clock::Time;
use crate::error::SimError;
use crate::factory::StorageFactory;
use crate::sim::{Ev, Sim};
use crate::trace::Event;

/// How long a leader's write takes, uniform in this range (microseconds).
/// A reliable link takes 0.1–1 ms each way.
const WRITE_DELAY: (Time, Time) = (500, 4_000);

impl<F: StorageFactory> Sim<F> {
    /// Sends `rd`'s early messages and starts persisting it. A Ready with
    /// nothing to sync lands at once.
    pub(crate) fn begin_write(&mut self, id: NodeId, mut rd: Ready) -> Result<(), SimError> {
        for m in std::mem::take(&mut rd.early_messages) {
            self.send(m);
        }
        if !rd.must_sync() {
            return self.finish_ready(id, rd);
        }
        let i = id as usize - 1;
        self.stats.async_writes += 1;
        let delay = self.rng.gen_range(WRITE_DELAY.0..=WRITE_DELAY.1);
        self.servers[i].write = Some(rd);
        let incarnation = self.incarnation[i];
        self.queue
            .push(self.now + delay, Ev::WriteDone { id, incarnation });
        Ok(())
    }

    /// The write of node `id`'s incarnation `incarnation` lands (or, if it
    /// was told to fail, the node crashes first and loses it).
    pub(crate) fn on_write_done(&mut self, id: NodeId, incarnation: u64) -> Result<(), SimError> {
        let i = id as usize - 1;
        if incarnation != self.incarnation[i] || self.nodes[i].is_none() {
            return Ok(());
        }
        let Some(rd) = self.servers[i].write.take() else {
            return Ok(());
        };
        self.events += 1;
        if std::mem::take(&mut self.servers[i].fail_next_write) {
            self.stats.lost_writes += 1;
            self.record(Some(id), Event::WriteLost);
            self.crash(id);
            return Ok(());
        }
        self.finish_ready(id, rd)?;
        self.drive(id)
    }

    /// The next write node `id` has in progress is lost: it crashes after
    /// its early messages left and before its Ready is persisted. Only
    /// nodes with `async_leader_writes` ever have one.
    pub fn fail_next_write(&mut self, id: NodeId) {
        if let Some(s) = (id as usize)
            .checked_sub(1)
            .and_then(|i| self.servers.get_mut(i))
        {
            s.fail_next_write = true;
        }
    }

    /// Undoes [`fail_next_write`](Self::fail_next_write) for node `id`.
    pub fn keep_next_write(&mut self, id: NodeId) {
        if let Some(s) = (id as usize)
            .checked_sub(1)
            .and_then(|i| self.servers.get_mut(i))
        {
            s.fail_next_write = false;
        }
    }

    /// Whether node `id` has a write in progress.
    pub fn writing(&self, id: NodeId) -> bool {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.servers.get(i))
            .is_some_and(|s| s.write.is_some())
    }
}
