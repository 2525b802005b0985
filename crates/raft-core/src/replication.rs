//! Log replication (§5.3), heartbeats (§5.2) and the commit rule (§5.4.2,
//! Figure 8).

use crate::error::{Error, StorageError};
use crate::message::{AppendReply, Body};
use crate::node::{Node, Role};
use crate::progress::ProgressState;
use crate::storage::Storage;
use crate::types::{Entry, Index, NodeId, Term};

impl<S: Storage> Node<S> {
    /// Heartbeat round (§5.2): every follower gets a Heartbeat carrying the
    /// commit index (capped at what it is known to hold) and a read round
    /// number (thesis §6.4); one receiving a snapshot gets its chunk again if
    /// it went quiet.
    pub(crate) fn broadcast_heartbeat(&mut self) -> Result<(), Error> {
        self.heartbeat_elapsed = 0;
        let round = self.start_round();
        let committed = self.log.committed();
        let mut i = 0;
        while let Some(to) = self.tracker.peer(i) {
            i += 1;
            let Some(pr) = self.tracker.progress.get(&to) else {
                continue;
            };
            let in_snapshot = pr.state == ProgressState::Snapshot;
            let commit = pr.match_index.min(committed);
            self.send(to, self.term, Body::Heartbeat { commit, ctx: round });
            if in_snapshot {
                self.snapshot_heartbeat(to)?;
            }
        }
        // A single voter confirms its own round at once.
        self.confirm_rounds();
        Ok(())
    }

    /// Retransmission, every tick: a follower whose oldest AppendEntries
    /// has gone `resend_tick` ticks without an answer is sent to again from
    /// its match index (Figure 2: "if AppendEntries fails ... retry"; here a
    /// lost request or reply is a failure too). Without this a lost message
    /// would wait for the follower's next heartbeat reply, or forever in
    /// Replicate state.
    pub(crate) fn resend_unanswered(&mut self) -> Result<(), Error> {
        let mut i = 0;
        while let Some(to) = self.tracker.peer(i) {
            i += 1;
            let Some(pr) = self.tracker.progress.get_mut(&to) else {
                continue;
            };
            if pr.tick_unanswered(self.cfg.resend_tick) {
                self.send_append(to, true)?;
            }
        }
        Ok(())
    }

    /// Sends what proposals appended since the last Ready (batching: all
    /// proposals between two Readies travel in one message per follower).
    pub(crate) fn send_pending(&mut self) -> Result<(), Error> {
        if self.role == Role::Leader && self.pending_send {
            let mut i = 0;
            while let Some(to) = self.tracker.peer(i) {
                i += 1;
                self.send_appends(to)?;
            }
        }
        self.pending_send = false;
        if self.role == Role::Leader && self.round_due() {
            // Reads are waiting for a round: confirm them now, not at the
            // next heartbeat (it doubles as that heartbeat).
            self.broadcast_heartbeat()?;
        }
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
        let Some(pr) = self.tracker.progress.get(&to) else {
            return Ok(false);
        };
        if pr.is_paused(self.cfg.max_inflight) {
            return Ok(false);
        }
        let prev = pr.next_index - 1;
        if prev >= self.log.last_index() && !allow_empty {
            return Ok(false);
        }
        let unacked = prev - pr.match_index;
        if pr.state == ProgressState::Replicate
            && unacked > 0
            && unacked <= self.cfg.carry_unacked as Index
            && self.send_carrying(to, pr.match_index, prev + 1)?
        {
            return Ok(true);
        }
        self.send_append_at(to, prev, true)
    }

    /// Sends the entries after `match_index`, the unacknowledged ones again,
    /// through at least `next` (`Config::carry_unacked`). Whichever of the
    /// messages in flight arrives first passes the consistency check.
    /// Returns false, sending nothing, when they are compacted or do not all
    /// fit in one message: the caller then sends from `next` as usual.
    fn send_carrying(
        &mut self,
        to: NodeId,
        match_index: Index,
        next: Index,
    ) -> Result<bool, Error> {
        let hi = next
            .saturating_add(self.cfg.max_msg_entries as Index)
            .min(self.log.last_index() + 1);
        let found = self.log.term(match_index).and_then(|term| {
            let entries = self
                .log
                .entries(match_index + 1, hi, self.cfg.max_msg_bytes)?;
            Ok((term, entries))
        });
        match found {
            Ok((term, entries)) if entries.last().is_some_and(|e| e.index >= next) => {
                self.send_entries(to, match_index, term, entries);
                Ok(true)
            }
            Ok(_) | Err(StorageError::Compacted(_) | StorageError::Unavailable(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
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
                if let Some(pr) = self.tracker.progress.get_mut(&to) {
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
        self.send_entries(to, prev, prev_term, entries);
        Ok(true)
    }

    /// Sends one AppendEntries and records it in the follower's progress.
    fn send_entries(&mut self, to: NodeId, prev: Index, prev_term: Term, entries: Vec<Entry>) {
        let last = entries.last().map_or(prev, |e| e.index);
        if let Some(pr) = self.tracker.progress.get_mut(&to) {
            pr.sent(last);
        }
        let body = Body::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.log.committed(),
        };
        self.send(to, self.term, body);
    }

    /// AppendEntries receiver (Figure 2). `term` equals ours, we do not
    /// lead it, and the door checked that the entries follow
    /// `prev_log_index` with sane terms.
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    ) -> Result<(), Error> {
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

    /// Heartbeat receiver: the leader of our term is alive (§5.2). Its
    /// commit index is capped at entries it knows we hold, so committing
    /// through it needs no consistency check.
    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: Index, ctx: u64) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.reset_election_timer();
        self.log.commit_to(commit.min(self.log.last_index()));
        self.send(from, self.term, Body::HeartbeatReply { ctx });
    }

    /// The leader's side of a heartbeat reply: the follower is alive, its
    /// read round counts, and a follower still behind is sent what it lacks.
    pub(crate) fn handle_heartbeat_reply(&mut self, from: NodeId, ctx: u64) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let last_index = self.log.last_index();
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.resume();
        let probe = pr.state == ProgressState::Probe;
        let behind = pr.match_index < last_index;
        self.round_acked(from, ctx);
        if probe || behind {
            self.send_append(from, probe)?;
        }
        if self.transferee == Some(from) && !behind {
            // TimeoutNow may have been lost: a target that holds the whole
            // log and still follows gets it again (one that is behind was
            // just sent what it lacks, above).
            self.try_finish_transfer(from)?;
        }
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
            entries.drain(..i);
            let from = entries[0].index;
            if self.touches_confs(from, &entries) {
                self.log.append(&entries);
                self.log_appended(from, &entries);
            } else {
                self.log.append_owned(entries);
            }
        }
        // Figure 2: commitIndex = min(leaderCommit, index of last new entry).
        self.log.commit_to(leader_commit.min(last_new));
        Ok(AppendReply::Success {
            match_index: last_new.max(committed),
        })
    }

    /// The leader's side of an AppendEntries reply (its term equals ours).
    /// Whether a reply is fresh or stale is `Progress`'s decision.
    pub(crate) fn handle_append_reply(
        &mut self,
        from: NodeId,
        reply: AppendReply,
    ) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let last_index = self.log.last_index();
        let log = &self.log;
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        match reply {
            AppendReply::Success { match_index } => {
                if match_index > last_index {
                    return Ok(()); // Claims entries we never had: ignore.
                }
                let grew = pr.maybe_update(match_index);
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Snapshot
                        if pr.snapshot_index().is_some_and(|i| pr.match_index >= i) =>
                    {
                        pr.become_replicate()
                    }
                    _ => {}
                }
                // A match index at or below the commit index cannot move the
                // majority's (the k-th largest stays put): skip the count.
                if grew && pr.match_index > log.committed() {
                    self.maybe_commit();
                }
                self.send_appends(from)?;
                if self.transferee == Some(from) {
                    self.try_finish_transfer(from)?;
                }
                Ok(())
            }
            AppendReply::Conflict {
                prev_log_index,
                conflict_term,
                conflict_index,
            } => {
                if prev_log_index > last_index {
                    return Ok(()); // Answers nothing we sent.
                }
                // Fast backtracking: skip the follower's whole conflicting
                // term, or to just after our last entry of that term.
                let hint =
                    match conflict_term.and_then(|t| log.last_index_of_term(t, prev_log_index)) {
                        Some(last) if last < prev_log_index => last + 1,
                        _ => conflict_index,
                    };
                if pr.maybe_decr_to(prev_log_index, hint) {
                    self.send_append(from, true)?;
                }
                Ok(())
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
        // The leader's own log counts once durable: at once when it persists
        // before sending, else only what has been persisted.
        let own = if self.cfg.async_leader_writes {
            self.log.persisted_index()
        } else {
            self.log.last_index()
        };
        let n = self.tracker.committed(own);
        if n > self.log.committed() && self.log.term_of(n) == Some(self.term) {
            self.log.commit_to(n);
            self.release_waiting_reads();
            self.after_commit();
            return true;
        }
        false
    }
}
