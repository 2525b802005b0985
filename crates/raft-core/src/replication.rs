//! Log replication (§5.3) and the commit rule (§5.4.2, Figure 8).

use crate::error::{Error, StorageError};
use crate::message::{AppendReply, Body};
use crate::node::{Node, Role};
use crate::progress::ProgressState;
use crate::quorum::committed_index;
use crate::storage::Storage;
use crate::types::{Entry, Index, NodeId, Term};

impl<S: Storage> Node<S> {
    /// Heartbeat round: every follower gets an AppendEntries, paused or not.
    /// A heartbeat runs the same consistency check as any AppendEntries.
    pub(crate) fn broadcast_heartbeat(&mut self) -> Result<(), Error> {
        for to in self.peers.clone() {
            let Some(pr) = self.progress.get_mut(&to) else {
                continue;
            };
            match pr.state {
                ProgressState::Probe => {
                    // The interval passed: probe again (the last one may be lost).
                    pr.probe_sent = false;
                    self.send_append(to, true)?;
                }
                ProgressState::Replicate if pr.is_paused(self.cfg.max_inflight) => {
                    let prev = pr.next_index - 1;
                    self.send_append_at(to, prev, false)?;
                }
                ProgressState::Replicate => {
                    self.send_append(to, true)?;
                    self.send_appends(to)?;
                }
                ProgressState::Snapshot => self.snapshot_heartbeat(to),
            }
        }
        Ok(())
    }

    /// Sends what proposals appended since the last Ready (batching: all
    /// proposals between two Readies travel in one message per follower).
    pub(crate) fn send_pending(&mut self) -> Result<(), Error> {
        if self.role == Role::Leader && self.pending_send {
            for to in self.peers.clone() {
                self.send_appends(to)?;
            }
        }
        self.pending_send = false;
        Ok(())
    }

    /// Sends the follower everything new it can take now: in Replicate state
    /// that fills the in-flight window (pipelining), in Probe one message.
    pub(crate) fn send_appends(&mut self, to: NodeId) -> Result<(), Error> {
        while self.send_append(to, false)? {}
        Ok(())
    }

    /// Sends the follower its next entries unless it is paused. With
    /// `allow_empty`, sends even when there is nothing new (a probe/heartbeat).
    /// Returns whether an AppendEntries went out.
    pub(crate) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> Result<bool, Error> {
        let Some(pr) = self.progress.get(&to) else {
            return Ok(false);
        };
        if pr.is_paused(self.cfg.max_inflight) {
            return Ok(false);
        }
        let prev = pr.next_index - 1;
        if prev >= self.log.last_index() && !allow_empty {
            return Ok(false);
        }
        self.send_append_at(to, prev, true)
    }

    /// Sends AppendEntries after `prev` (with entries if `with_entries`), or
    /// switches the follower to a snapshot when `prev` is compacted away.
    fn send_append_at(
        &mut self,
        to: NodeId,
        prev: Index,
        with_entries: bool,
    ) -> Result<bool, Error> {
        let prev_term = match self.log.term(prev) {
            Ok(t) => t,
            Err(StorageError::Compacted(_)) => return self.start_snapshot(to).map(|()| false),
            Err(StorageError::Unavailable(_)) => {
                // Never expected (a leader's log only grows); recover by probing.
                let next = self.log.last_index() + 1;
                if let Some(pr) = self.progress.get_mut(&to) {
                    pr.match_index = pr.match_index.min(next - 1);
                    pr.become_probe(next);
                }
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        let mut entries = Vec::new();
        if with_entries {
            let hi = (prev + 1 + self.cfg.max_msg_entries as Index).min(self.log.last_index() + 1);
            entries = match self.log.entries(prev + 1, hi, self.cfg.max_msg_bytes) {
                Ok(e) => e,
                Err(StorageError::Compacted(_)) => return self.start_snapshot(to).map(|()| false),
                Err(e) => return Err(e.into()),
            };
        }
        let last = entries.last().map_or(prev, |e| e.index);
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sent(last);
        }
        let body = Body::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.log.committed(),
        };
        self.send(to, self.term, body);
        Ok(true)
    }

    /// AppendEntries receiver (Figure 2). `term` equals ours here.
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    ) -> Result<(), Error> {
        if self.role == Role::Leader {
            return Ok(()); // Impossible in a correct cluster: one leader per term.
        }
        let contiguous = entries.iter().enumerate().all(|(i, e)| {
            prev_log_index.checked_add(1 + i as Index) == Some(e.index) && e.term <= self.term
        });
        if !contiguous {
            return Ok(()); // Malformed: drop it rather than trust it.
        }
        if self.role != Role::Follower {
            // A candidate learns of a leader of its own term (§5.2).
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.reset_election_timer();
        let reply = self.try_append(prev_log_index, prev_log_term, entries, leader_commit)?;
        self.send(from, self.term, Body::AppendEntriesReply(reply));
        Ok(())
    }

    /// The consistency check and append. Truncates only at a real conflict,
    /// so a late, duplicated or shorter AppendEntries never removes entries.
    fn try_append(
        &mut self,
        mut prev: Index,
        mut prev_term: Term,
        mut entries: Vec<Entry>,
        leader_commit: Index,
    ) -> Result<AppendReply, Error> {
        let committed = self.log.committed();
        if prev < committed {
            // Everything through our commit index is the leader's too (leader
            // completeness), so the check can start there.
            let skip = ((committed - prev) as usize).min(entries.len());
            entries.drain(..skip);
            prev = committed;
            prev_term = self.log.term(committed)?;
        }
        if prev > self.log.last_index() {
            return Ok(AppendReply::Conflict {
                prev_log_index: prev,
                conflict_term: None,
                conflict_index: self.log.last_index() + 1,
            });
        }
        if !self.log.matches(prev, prev_term) {
            let term = self.log.term(prev)?;
            return Ok(AppendReply::Conflict {
                prev_log_index: prev,
                conflict_term: Some(term),
                conflict_index: self.log.first_index_of_term(prev, committed),
            });
        }
        let last_new = prev + entries.len() as Index;
        // Figure 2: "if an existing entry conflicts with a new one (same index
        // but different terms), delete the existing entry and all that follow".
        if let Some(i) = entries
            .iter()
            .position(|e| !self.log.matches(e.index, e.term))
        {
            self.log.append(&entries[i..]);
        }
        // Figure 2: commitIndex = min(leaderCommit, index of last new entry).
        self.log.commit_to(leader_commit.min(last_new));
        Ok(AppendReply::Success {
            match_index: last_new.max(committed),
        })
    }

    /// The leader's side of an AppendEntries reply (its term equals ours).
    pub(crate) fn handle_append_reply(
        &mut self,
        from: NodeId,
        reply: AppendReply,
    ) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        match reply {
            AppendReply::Success { match_index } => {
                if match_index > last_index {
                    return Ok(()); // Claims entries we never had: ignore.
                }
                let grew = pr.update(match_index);
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Snapshot
                        if pr.snapshot_index().is_some_and(|i| pr.match_index >= i) =>
                    {
                        pr.become_replicate()
                    }
                    _ => {}
                }
                if grew {
                    self.maybe_commit();
                }
                self.send_appends(from)
            }
            AppendReply::Conflict {
                prev_log_index,
                conflict_term,
                conflict_index,
            } => {
                let stale = match pr.state {
                    ProgressState::Replicate => prev_log_index <= pr.match_index,
                    ProgressState::Probe => prev_log_index.checked_add(1) != Some(pr.next_index),
                    ProgressState::Snapshot => true,
                };
                if stale || prev_log_index == 0 || prev_log_index > last_index {
                    return Ok(());
                }
                // Fast backtracking: skip the follower's whole conflicting term,
                // or to just after our last entry of that term.
                let hint = match conflict_term
                    .and_then(|t| self.log.last_index_of_term(t, prev_log_index))
                {
                    Some(last) if last < prev_log_index => last + 1,
                    _ => conflict_index,
                };
                let next = hint.clamp(1, prev_log_index);
                if let Some(pr) = self.progress.get_mut(&from) {
                    pr.become_probe(next);
                }
                self.send_append(from, true).map(drop)
            }
            AppendReply::StaleTerm => Ok(()),
        }
    }

    /// Figure 2, leaders: commit the highest N replicated on a majority, but
    /// only if log[N].term == currentTerm (§5.4.2; Figure 8 shows why).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let mut matched: Vec<Index> = self.progress.values().map(|p| p.match_index).collect();
        matched.push(self.log.last_index());
        let n = committed_index(&mut matched);
        if n > self.log.committed() && self.log.term_of(n) == Some(self.term) {
            self.log.commit_to(n);
            return true;
        }
        false
    }
}
