//! InstallSnapshot (§7, Figure 13), sent in chunks.

use crate::error::Error;
use crate::message::Body;
use crate::node::{Node, Role};
use crate::progress::ProgressState;
use crate::storage::Storage;
use crate::types::{NodeId, Snapshot, SnapshotMeta, Term};

impl<S: Storage> Node<S> {
    /// The follower needs entries we compacted: send our stored snapshot.
    pub(crate) fn start_snapshot(&mut self, to: NodeId) -> Result<(), Error> {
        let index = self.log.storage().snapshot()?.meta.index;
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.become_snapshot(index);
        }
        self.send_snapshot_chunk(to)
    }

    /// Sends the chunk the follower asked for last (one chunk in flight; a
    /// heartbeat interval without a reply sends it again).
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) -> Result<(), Error> {
        let Some((index, mut offset)) = self.progress.get(&to).and_then(|p| p.snapshot) else {
            return Ok(());
        };
        let snap = self.log.storage().snapshot()?;
        if snap.meta.index != index {
            // A newer snapshot replaced it: start that one over.
            offset = 0;
            if let Some(pr) = self.progress.get_mut(&to) {
                pr.snapshot = Some((snap.meta.index, 0));
            }
        }
        let len = snap.data.len() as u64;
        let offset = offset.min(len);
        let end = (offset + self.cfg.snapshot_chunk_bytes as u64).min(len);
        let body = Body::InstallSnapshot {
            meta: snap.meta,
            offset,
            data: snap.data[offset as usize..end as usize].to_vec(),
            done: end == len,
        };
        self.send(to, self.term, body);
        Ok(())
    }

    /// InstallSnapshot receiver (Figure 13), `term` equal to ours.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<(), Error> {
        if self.role == Role::Leader {
            return Ok(());
        }
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.reset_election_timer();
        let reply = |next_offset, installed| Body::InstallSnapshotReply {
            meta,
            next_offset,
            installed,
        };
        if meta.index <= self.log.committed() {
            // We already hold everything it covers (committed entries match).
            self.incoming_snapshot = None;
            self.send(from, self.term, reply(0, true));
            return Ok(());
        }
        if offset == 0 {
            self.incoming_snapshot = Some(Snapshot {
                meta,
                data: Vec::new(),
            });
        }
        let have = match &mut self.incoming_snapshot {
            Some(s) if s.meta == meta && s.data.len() as u64 == offset => {
                s.data.extend_from_slice(&data);
                s.data.len() as u64
            }
            Some(s) if s.meta == meta => s.data.len() as u64,
            _ => 0,
        };
        if !(done && have == offset + data.len() as u64) {
            self.send(from, self.term, reply(have, false));
            return Ok(());
        }
        if let Some(snapshot) = self.incoming_snapshot.take() {
            if self
                .local_snapshot
                .as_ref()
                .is_some_and(|s| s.meta.index <= meta.index)
            {
                self.local_snapshot = None;
            }
            self.log.restore(snapshot);
        }
        self.send(from, self.term, reply(have, true));
        Ok(())
    }

    /// The leader's side of an InstallSnapshot reply.
    pub(crate) fn handle_snapshot_reply(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        next_offset: u64,
        installed: bool,
    ) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        let current =
            pr.state == ProgressState::Snapshot && pr.snapshot.map(|s| s.0) == Some(meta.index);
        if installed {
            let grew = pr.update(meta.index);
            if current {
                pr.become_probe(meta.index + 1);
            }
            if grew {
                self.maybe_commit();
            }
            return self.send_append(from, true);
        }
        if current {
            pr.snapshot = Some((meta.index, next_offset));
            return self.send_snapshot_chunk(from);
        }
        Ok(())
    }

    /// Term of the stored snapshot (for tests).
    pub fn snapshot_term(&self) -> Term {
        self.log.term_of(self.log.snapshot_index()).unwrap_or(0)
    }
}
