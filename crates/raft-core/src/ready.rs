//! The output batch: what to persist, send and apply, and its acknowledgement.

use crate::error::Error;
use crate::message::{Body, Message};
use crate::node::{HandedOut, Node};
use crate::read_only::ReadState;
use crate::storage::Storage;
use crate::types::{Entry, HardState, Snapshot};

/// One batch of output. Act on it in field order — persist (`snapshot`,
/// `local_snapshot`, `entries`, `hard_state`, then one sync), send
/// `messages`, apply `committed_entries` — then call [`Node::advance`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The hard state, when it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader: persist it, and restore the application
    /// from it before applying `committed_entries`.
    pub snapshot: Option<Snapshot>,
    /// A snapshot the application asked for with [`Node::snapshot`]: persist
    /// it (the log up to it is then dropped); nothing to restore.
    pub local_snapshot: Option<Snapshot>,
    /// Entries to append, replacing any stored entries from the first one's index.
    pub entries: Vec<Entry>,
    /// Messages to send once the above is durable.
    pub messages: Vec<Message>,
    /// With `Config::async_leader_writes`: a leader's AppendEntries,
    /// heartbeats and snapshot chunks, which may be sent at once, before or
    /// while this Ready is persisted. Empty otherwise.
    pub early_messages: Vec<Message>,
    /// Entries to apply, in index order, exactly once.
    pub committed_entries: Vec<Entry>,
    /// Reads confirmed since the last Ready (thesis §6.4): serve each once
    /// the state machine has applied through its index.
    pub read_states: Vec<ReadState>,
    /// Term or vote changed: the hard state must be synced before sending.
    /// (A change of the commit index alone may be written lazily.)
    term_or_vote_changed: bool,
}

impl Ready {
    /// Whether the writes must be synced before sending: new entries, a
    /// snapshot, or a new term or vote. A Ready that only moves the commit
    /// index needs no fsync (commit is recoverable from the cluster).
    pub fn must_sync(&self) -> bool {
        self.term_or_vote_changed
            || self.snapshot.is_some()
            || self.local_snapshot.is_some()
            || !self.entries.is_empty()
    }

    /// Whether the batch holds nothing at all.
    pub fn is_empty(&self) -> bool {
        !self.must_sync()
            && self.hard_state.is_none()
            && self.messages.is_empty()
            && self.early_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }
}

impl<S: Storage> Node<S> {
    /// Whether [`ready`](Node::ready) has anything to hand out.
    pub fn has_ready(&self) -> bool {
        ((self.pending_send || self.round_due()) && self.is_leader())
            || !self.msgs.is_empty()
            || !self.read_states.is_empty()
            || self.hard_state() != self.prev_hard_state
            || !self.log.unstable_entries().is_empty()
            || self.log.unstable_snapshot().is_some()
            || self.local_snapshot.is_some()
            || self.log.has_next_committed()
    }

    /// Collects the pending output. Call [`advance`](Node::advance) once it is
    /// acted on, before the next call.
    pub fn ready(&mut self) -> Result<Ready, Error> {
        self.send_pending()?;
        let hs = self.hard_state();
        let term_or_vote_changed =
            (hs.term, hs.vote) != (self.prev_hard_state.term, self.prev_hard_state.vote);
        let mut messages = std::mem::take(&mut self.msgs);
        let mut early_messages = Vec::new();
        if self.cfg.async_leader_writes && self.is_leader() && !term_or_vote_changed {
            // Term and vote are durable: what a leader's replication messages
            // depend on is only its own entries, which it does not count
            // until they are durable too.
            let early = |m: &Message| {
                matches!(
                    m.body,
                    Body::AppendEntries { .. }
                        | Body::Heartbeat { .. }
                        | Body::InstallSnapshot { .. }
                )
            };
            // Usually all of them are: then the list changes hands as it is.
            if messages.iter().all(early) {
                early_messages = messages;
                messages = Vec::new();
            } else {
                early_messages = messages.extract_if(.., |m| early(m)).collect();
            }
        }
        let rd = Ready {
            hard_state: (hs != self.prev_hard_state).then_some(hs),
            snapshot: self.log.unstable_snapshot().cloned(),
            local_snapshot: self.local_snapshot.take(),
            entries: self.log.unstable_entries().to_vec(),
            messages,
            early_messages,
            committed_entries: self.log.next_committed(self.cfg.max_apply_bytes)?,
            read_states: std::mem::take(&mut self.read_states),
            term_or_vote_changed,
        };
        self.handed = Some(HandedOut {
            last_entry: rd.entries.last().map(|e| (e.index, e.term)),
            snapshot: rd.snapshot.as_ref().map(|s| s.meta.index),
            local_snapshot: rd.local_snapshot.as_ref().map(|s| s.meta.index),
            hard_state: rd.hard_state,
            applied: rd.committed_entries.last().map(|e| e.index),
        });
        Ok(rd)
    }

    /// Acknowledges the last Ready: its writes are durable, its messages sent
    /// and its committed entries applied.
    pub fn advance(&mut self) {
        let Some(h) = self.handed.take() else {
            return;
        };
        if let Some(index) = h.snapshot {
            self.log.stable_snapshot_to(index);
        }
        if let Some((index, term)) = h.last_entry {
            self.log.stable_to(index, term);
        }
        if let Some(hs) = h.hard_state {
            self.prev_hard_state = hs;
        }
        if let Some(index) = h.applied {
            self.log.applied_to(index);
        }
        if self.cfg.async_leader_writes && h.last_entry.is_some() {
            // The leader's own entries just became durable: they count now.
            self.maybe_commit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver may skip an empty Ready altogether: nothing to persist, send,
    /// apply or serve. Any one part makes it non-empty.
    #[test]
    fn a_ready_is_empty_only_with_nothing_in_it() {
        assert!(Ready::default().is_empty());
        let msg = Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::TimeoutNow,
        };
        let snap = Snapshot::new(1, 1, vec![]);
        let entry = Entry::normal(1, 1, vec![]);
        let parts = [
            Ready {
                hard_state: Some(HardState::default()),
                ..Ready::default()
            },
            Ready {
                snapshot: Some(snap.clone()),
                ..Ready::default()
            },
            Ready {
                local_snapshot: Some(snap),
                ..Ready::default()
            },
            Ready {
                entries: vec![entry.clone()],
                ..Ready::default()
            },
            Ready {
                messages: vec![msg.clone()],
                ..Ready::default()
            },
            Ready {
                early_messages: vec![msg],
                ..Ready::default()
            },
            Ready {
                committed_entries: vec![entry],
                ..Ready::default()
            },
            Ready {
                read_states: vec![ReadState { ctx: 1, index: 1 }],
                ..Ready::default()
            },
            Ready {
                term_or_vote_changed: true,
                ..Ready::default()
            },
        ];
        for rd in parts {
            assert!(!rd.is_empty(), "{rd:?}");
        }
    }
}
