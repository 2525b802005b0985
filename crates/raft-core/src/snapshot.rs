//! InstallSnapshot (§7, Figure 13), sent in chunks.

use crate::error::Error;
use crate::message::Body;
use crate::node::{Node, Role};
use crate::progress::ProgressState;
use crate::storage::Storage;
use std::sync::Arc;

use crate::types::{NodeId, Snapshot, SnapshotMeta};

impl<S: Storage> Node<S> {
    /// The follower needs entries we compacted: send it our stored snapshot,
    /// read once and pinned for the whole transfer.
    pub(crate) fn start_snapshot(&mut self, to: NodeId) -> Result<(), Error> {
        let snapshot = Arc::new(self.log.storage().snapshot()?);
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.become_snapshot(snapshot);
        }
        self.send_snapshot_chunk(to);
        Ok(())
    }

    /// Sends the chunk the follower asked for last. One chunk is in flight at
    /// a time; a heartbeat interval with no reply sends it again.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(send) = self.progress.get(&to).and_then(|p| p.snapshot.as_ref()) else {
            return;
        };
        let snap = &send.snapshot;
        let len = snap.data.len() as u64;
        let offset = send.offset.min(len);
        let end = offset
            .saturating_add(self.cfg.snapshot_chunk_bytes as u64)
            .min(len);
        let body = Body::InstallSnapshot {
            meta: snap.meta,
            offset,
            data: snap.data[offset as usize..end as usize].to_vec(),
            done: end == len,
        };
        self.send(to, self.term, body);
    }

    /// Heartbeat for a follower receiving a snapshot: resend the current
    /// chunk only if nothing was heard from it for a whole interval.
    pub(crate) fn snapshot_heartbeat(&mut self, to: NodeId) {
        let Some(send) = self.progress.get_mut(&to).and_then(|p| p.snapshot.as_mut()) else {
            return;
        };
        let resend = !send.heard;
        send.heard = false;
        if resend {
            self.send_snapshot_chunk(to);
        }
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
        if meta.term > self.term || meta.index == u64::MAX {
            return Ok(()); // Malformed: a snapshot from the future.
        }
        let same = self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|s| s.meta == meta);
        if offset == 0 && !same {
            self.incoming_snapshot = Some(Snapshot {
                meta,
                data: Vec::new(),
            });
        }
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return Ok(());
        };
        let have = match &mut self.incoming_snapshot {
            Some(s) if s.meta == meta && s.data.len() as u64 == offset => {
                s.data.extend_from_slice(&data);
                s.data.len() as u64
            }
            Some(s) if s.meta == meta => s.data.len() as u64,
            _ => 0,
        };
        if !(done && have == end) {
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
            pr.state == ProgressState::Snapshot && pr.snapshot_index() == Some(meta.index);
        if installed {
            let grew = pr.update(meta.index);
            if current {
                pr.become_probe(meta.index + 1);
            }
            if grew {
                self.maybe_commit();
            }
            return self.send_appends(from);
        }
        if let Some(send) = pr.snapshot.as_mut().filter(|_| current) {
            send.heard = true;
            // An equal offset is a duplicate reply: that chunk is in flight.
            if next_offset != send.offset {
                send.offset = next_offset;
                self.send_snapshot_chunk(from);
            }
        }
        Ok(())
    }
}
