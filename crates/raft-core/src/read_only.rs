//! Linearizable reads without writing the log (thesis §6.4).
//!
//! ReadIndex: the leader notes its commit index as the read's index, then
//! confirms it is still the leader by a heartbeat round that a majority
//! answers; a read is released once its round is confirmed, and the
//! application serves it after applying through the index. A new leader
//! serves no read before an entry of its own term commits (its commit index
//! may lag until then). Every heartbeat broadcast is a numbered round, so
//! reads queued between two Readies share one round (batching).
//!
//! Leases (thesis §6.4.1, `Config::lease_reads`): a round confirmed by a
//! majority also proves that none of those voters will vote for anyone else
//! until an election timeout after they received it, so the leader may
//! answer reads without a round until then, minus the clock-drift margin.

use std::collections::{BTreeMap, VecDeque};

use crate::message::Body;
use crate::node::{Node, Role};
use crate::storage::Storage;
use crate::types::{Index, NodeId};

/// A read point handed out in a [`Ready`](crate::Ready): the read `ctx` may
/// be served from the state machine once it has applied through `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadState {
    /// The caller's id for the read, as given to [`Node::read_index`].
    pub ctx: u64,
    /// The commit index the read must see.
    pub index: Index,
}

/// A read waiting for its round.
#[derive(Clone, Copy, Debug)]
struct Pending {
    ctx: u64,
    /// This node, or the follower that asked.
    from: NodeId,
    index: Index,
    round: u64,
}

/// The leader's read bookkeeping. Reset whenever leadership ends.
#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// Reads that came before an entry of this term committed: `(from, ctx)`.
    waiting_commit: Vec<(NodeId, u64)>,
    /// Reads waiting for their round, oldest first.
    pending: VecDeque<Pending>,
    /// The round the next heartbeat broadcast carries (rounds start at 1).
    next_round: u64,
    /// A read joined `next_round`: broadcast it without waiting for the timer.
    round_due: bool,
    /// The highest round each peer answered.
    acked: BTreeMap<NodeId, u64>,
    /// Rounds sent and not yet confirmed, with the tick each was sent at.
    sent_at: VecDeque<(u64, u64)>,
    /// Reads may be served by lease until this tick.
    lease_until: u64,
    /// A leadership transfer began: no lease of this leadership holds.
    lease_off: bool,
}

impl ReadOnly {
    fn round(&mut self) -> u64 {
        self.next_round = self.next_round.max(1);
        self.next_round
    }
}

impl<S: Storage> Node<S> {
    /// Asks for a linearizable read point (thesis §6.4). On the leader the
    /// read is confirmed by a heartbeat round (or at once under a valid
    /// lease); on a follower it is forwarded to the leader. The answer comes
    /// as a [`ReadState`] in a later Ready, or never if leadership changes
    /// first (the caller times the read out).
    ///
    /// Fails with [`Error::NotLeader`](crate::Error::NotLeader) when no
    /// leader is known.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), crate::Error> {
        match self.role {
            Role::Leader => {
                self.leader_read(self.id, ctx);
                Ok(())
            }
            Role::Follower if self.leader.is_some() => {
                let leader = self.leader.expect("checked");
                self.send(leader, self.term, Body::ReadIndex { ctx });
                Ok(())
            }
            _ => Err(crate::Error::NotLeader {
                leader: self.leader,
            }),
        }
    }

    /// A read for `from` (this node or a follower) reached the leader.
    pub(crate) fn leader_read(&mut self, from: NodeId, ctx: u64) {
        if !self.committed_in_term() {
            self.read_only.waiting_commit.push((from, ctx));
            return;
        }
        let index = self.log.committed();
        if self.cfg.lease_reads && self.ticks < self.read_only.lease_until {
            self.release(from, ctx, index);
            return;
        }
        let round = self.read_only.round();
        self.read_only.pending.push_back(Pending {
            ctx,
            from,
            index,
            round,
        });
        self.read_only.round_due = true;
    }

    /// Whether an entry of the current term has committed (§8: until then a
    /// new leader's commit index may be behind its predecessor's).
    pub(crate) fn committed_in_term(&self) -> bool {
        self.log.term_of(self.log.committed()) == Some(self.term)
    }

    /// The first entry of this term committed: queue the reads that waited.
    pub(crate) fn release_waiting_reads(&mut self) {
        if self.read_only.waiting_commit.is_empty() || !self.committed_in_term() {
            return;
        }
        for (from, ctx) in std::mem::take(&mut self.read_only.waiting_commit) {
            self.leader_read(from, ctx);
        }
    }

    /// The round for the next heartbeat broadcast; records when it left.
    pub(crate) fn start_round(&mut self) -> u64 {
        let round = self.read_only.round();
        self.read_only.next_round = round + 1;
        self.read_only.round_due = false;
        self.read_only.sent_at.push_back((round, self.ticks));
        round
    }

    /// Whether reads joined a round that has not been broadcast yet.
    pub(crate) fn round_due(&self) -> bool {
        self.read_only.round_due
    }

    /// `from` answered round `round`: release every read whose round a
    /// majority has now answered, and extend the lease.
    pub(crate) fn round_acked(&mut self, from: NodeId, round: u64) {
        let acked = self.read_only.acked.entry(from).or_default();
        *acked = (*acked).max(round);
        self.confirm_rounds();
    }

    /// Releases what the rounds confirmed so far allow: a round is
    /// confirmed once a majority of voters (of each half, when joint) has
    /// answered it or a later one.
    pub(crate) fn confirm_rounds(&mut self) {
        let acked = &self.read_only.acked;
        let mut confirmed = 0;
        for &(round, _) in &self.read_only.sent_at {
            if !self
                .tracker
                .is_quorum(|v| acked.get(&v).is_some_and(|&r| r >= round))
            {
                break;
            }
            confirmed = round;
        }
        while let Some(&(round, at)) = self.read_only.sent_at.front() {
            if round > confirmed {
                break;
            }
            self.read_only.sent_at.pop_front();
            // Voters that answered this round will not vote for another
            // candidate for an election timeout after they received it
            // (§4.2.3 with CheckQuorum); the margin covers clock drift.
            let lease = u64::from(self.cfg.election_tick)
                * u64::from(1000 - self.cfg.lease_drift_permille.min(1000))
                / 1000;
            if !self.read_only.lease_off {
                self.read_only.lease_until = self.read_only.lease_until.max(at + lease);
            }
        }
        while let Some(p) = self.read_only.pending.front().copied() {
            if p.round > confirmed {
                break;
            }
            self.read_only.pending.pop_front();
            self.release(p.from, p.ctx, p.index);
        }
    }

    /// Hands a confirmed read to its asker.
    fn release(&mut self, from: NodeId, ctx: u64, index: Index) {
        if from == self.id {
            self.read_states.push(ReadState { ctx, index });
        } else {
            self.send(from, self.term, Body::ReadIndexReply { ctx, index });
        }
    }

    /// A follower got its read index from the leader.
    pub(crate) fn handle_read_index_reply(&mut self, from: NodeId, ctx: u64, index: Index) {
        if self.role == Role::Follower && self.leader == Some(from) {
            self.read_states.push(ReadState { ctx, index });
        }
    }

    /// Leadership ended: every pending read is dropped, the lease with them.
    pub(crate) fn reset_reads(&mut self) {
        self.read_only = ReadOnly::default();
    }

    /// Ends the lease for the rest of this leadership (a transfer began).
    pub(crate) fn read_only_lease_off(&mut self) {
        self.read_only.lease_off = true;
        self.read_only.lease_until = 0;
    }
}
