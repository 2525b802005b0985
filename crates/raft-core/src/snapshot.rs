//! InstallSnapshot (§7, Figure 13), sent in chunks.

use std::sync::Arc;

use crate::conf::ConfState;
use crate::error::Error;
use crate::message::Body;
use crate::node::{Node, Role};
use crate::progress::ProgressState;
use crate::storage::Storage;
use crate::types::{NodeId, Snapshot, SnapshotMeta};
use crate::validate::Rejection;

/// A snapshot being received: from whom, which one, and the bytes so far.
/// It lives only within one term and one sender.
#[derive(Debug)]
pub(crate) struct Incoming {
    from: NodeId,
    meta: SnapshotMeta,
    conf: ConfState,
    data: Vec<u8>,
}

impl<S: Storage> Node<S> {
    /// The follower needs entries we compacted: send it our stored snapshot,
    /// read once and pinned for the whole transfer.
    pub(crate) fn start_snapshot(&mut self, to: NodeId) -> Result<(), Error> {
        let snapshot = Arc::new(self.log.storage().snapshot()?);
        if let Some(pr) = self.tracker.progress.get_mut(&to) {
            pr.become_snapshot(snapshot);
        }
        self.send_snapshot_chunk(to);
        Ok(())
    }

    /// Sends the chunk the follower asked for last. One chunk is in flight at
    /// a time; a heartbeat interval with no reply sends it again.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(send) = self
            .tracker
            .progress
            .get(&to)
            .and_then(|p| p.snapshot.as_ref())
        else {
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
            conf: snap.conf.clone(),
            offset,
            data: snap.data[offset as usize..end as usize].to_vec(),
            done: end == len,
        };
        self.send(to, self.term, body);
    }

    /// Heartbeat for a follower receiving a snapshot: resend the current
    /// chunk only if nothing was heard from it for a whole interval. A
    /// transfer the follower never answered (it was cut off, say) moves to
    /// the newest snapshot if the leader has compacted since: nothing of
    /// the old one reached it, and installing the old one would only be
    /// followed by another transfer. Once answered, a transfer stays pinned.
    pub(crate) fn snapshot_heartbeat(&mut self, to: NodeId) -> Result<(), Error> {
        let Some(send) = self
            .tracker
            .progress
            .get_mut(&to)
            .and_then(|p| p.snapshot.as_mut())
        else {
            return Ok(());
        };
        let resend = !send.heard;
        send.heard = false;
        if !resend {
            return Ok(());
        }
        // The stored snapshot (one taken but not yet persisted cannot be sent).
        let stored = self.log.storage().first_index().saturating_sub(1);
        if !send.answered && stored > send.snapshot.meta.index {
            return self.start_snapshot(to);
        }
        self.send_snapshot_chunk(to);
        Ok(())
    }

    /// InstallSnapshot receiver (Figure 13), `term` equal to ours and not
    /// led by us; the door checked that the chunk lies inside the snapshot.
    ///
    /// A chunk at offset 0 always starts the transfer over ("create new
    /// snapshot file if first chunk"), and a transfer is only ever continued
    /// with chunks from the same sender in the same term, so no install can
    /// mix two leaders' bytes. The finished image must match the length and
    /// CRC32C in its metadata, or it is thrown away and asked for again.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        conf: ConfState,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<(), Error> {
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
            self.incoming_snapshot = Some(Incoming {
                from,
                meta,
                conf: conf.clone(),
                data: Vec::new(),
            });
        }
        let have = match &mut self.incoming_snapshot {
            Some(s) if s.from == from && s.meta == meta && s.conf == conf => {
                if s.data.len() as u64 == offset {
                    s.data.extend_from_slice(&data);
                }
                s.data.len() as u64
            }
            // Not the transfer under way: ask for this one from the start.
            _ => 0,
        };
        if !(done && have == meta.size) {
            self.send(from, self.term, reply(have, false));
            return Ok(());
        }
        let Some(incoming) = self.incoming_snapshot.take() else {
            return Ok(());
        };
        if !meta.matches(&incoming.data) {
            self.reject(Rejection::SnapshotChecksum);
            self.send(from, self.term, reply(0, false));
            return Ok(());
        }
        if self
            .local_snapshot
            .as_ref()
            .is_some_and(|s| s.meta.index <= meta.index)
        {
            self.local_snapshot = None;
        }
        self.log.restore(Snapshot {
            meta,
            conf: incoming.conf.clone(),
            data: incoming.data,
        });
        // §7: the snapshot's configuration, then any kept entries' (§6).
        self.log_restored(incoming.conf)?;
        self.send(from, self.term, reply(have, true));
        Ok(())
    }

    /// The leader's side of an InstallSnapshot reply. Only a reply about the
    /// snapshot this leader is sending counts: it is the one snapshot whose
    /// index the leader knows to be in its log.
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
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        let current = pr.state == ProgressState::Snapshot
            && pr
                .snapshot
                .as_ref()
                .is_some_and(|s| s.snapshot.meta == meta);
        if !current {
            return Ok(()); // About another transfer, or a late duplicate.
        }
        if installed {
            let grew = pr.maybe_update(meta.index);
            pr.become_probe(meta.index + 1);
            if grew {
                self.maybe_commit();
            }
            return self.send_appends(from);
        }
        if let Some(send) = pr.snapshot.as_mut() {
            send.heard = true;
            send.answered = true;
            // An equal offset is a duplicate reply: that chunk is in flight.
            if next_offset != send.offset {
                send.offset = next_offset;
                self.send_snapshot_chunk(from);
            }
        }
        Ok(())
    }
}
