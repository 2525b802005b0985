//! Everything a node tracks about the other members, in one place: the
//! voters, the leader's per-follower [`Progress`], the votes of a campaign,
//! and quorum activity for CheckQuorum. Quorum arithmetic lives in
//! [`crate::quorum`]; this module decides whose numbers count.

use std::collections::BTreeMap;

use crate::progress::Progress;
use crate::quorum::{committed_index, majority, tally, VoteResult};
use crate::types::{Index, NodeId};

/// The members as this node counts them.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// This node.
    id: NodeId,
    /// Every voter, this node included, sorted.
    voters: Vec<NodeId>,
    /// Leader only: one entry per other member.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Candidate and PreCandidate: replies so far (own vote included).
    votes: BTreeMap<NodeId, bool>,
    /// Reused for the commit index, so a proposal allocates nothing.
    scratch: Vec<Index>,
}

impl Tracker {
    /// Tracks `voters` (which include `id`).
    pub(crate) fn new(id: NodeId, voters: &[NodeId]) -> Self {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        Tracker {
            id,
            scratch: Vec::with_capacity(voters.len()),
            voters,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
        }
    }

    /// Whether `id` is another member this node talks to.
    pub(crate) fn is_peer(&self, id: NodeId) -> bool {
        id != self.id && self.voters.binary_search(&id).is_ok()
    }

    /// The other members, in id order.
    pub(crate) fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied().filter(move |&v| v != self.id)
    }

    /// Whether this node alone is a majority.
    pub(crate) fn is_singleton(&self) -> bool {
        self.voters == [self.id]
    }

    /// Figure 2, leaders: "reinitialize nextIndex and matchIndex" for every peer.
    pub(crate) fn reset_progress(&mut self, next_index: Index) {
        self.progress = self
            .peers()
            .map(|p| (p, Progress::new(next_index)))
            .collect();
    }

    /// Drops the leader-only state.
    pub(crate) fn clear_progress(&mut self) {
        self.progress.clear();
    }

    /// Figure 2, leaders: the highest N that a majority of voters hold
    /// (`matchIndex[i] ≥ N`), counting this leader's own log at `own`.
    pub(crate) fn committed(&mut self, own: Index) -> Index {
        self.scratch.clear();
        for &v in &self.voters {
            let m = if v == self.id {
                own
            } else {
                self.progress.get(&v).map_or(0, |p| p.match_index)
            };
            self.scratch.push(m);
        }
        committed_index(&mut self.scratch)
    }

    /// Starts counting a new round of votes, with this node's own.
    pub(crate) fn reset_votes(&mut self) {
        self.votes.clear();
        self.votes.insert(self.id, true);
    }

    /// Forgets the votes (the campaign is over).
    pub(crate) fn clear_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `from`'s answer; only the first answer of a voter counts.
    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool) {
        if self.voters.binary_search(&from).is_ok() {
            self.votes.entry(from).or_insert(granted);
        }
    }

    /// Whether the votes so far win, lose or wait.
    pub(crate) fn tally(&self) -> VoteResult {
        tally(&self.votes, self.voters.len())
    }

    /// Whether `acked` (a set of voters given by a predicate, this node
    /// always included) is a majority.
    pub(crate) fn is_quorum(&self, acked: impl Fn(NodeId) -> bool) -> bool {
        let n = self
            .voters
            .iter()
            .filter(|&&v| v == self.id || acked(v))
            .count();
        n >= majority(self.voters.len())
    }

    /// CheckQuorum (thesis §6.2): whether a majority was heard from since the
    /// last round; starts a new round.
    pub(crate) fn quorum_active(&mut self) -> bool {
        let active = self.is_quorum(|v| self.progress.get(&v).is_some_and(|p| p.recent_active));
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_counts_voters_and_the_leader_itself() {
        let mut t = Tracker::new(1, &[1, 2, 3]);
        t.reset_progress(1);
        assert_eq!(t.committed(5), 0);
        t.progress.get_mut(&2).unwrap().match_index = 4;
        assert_eq!(t.committed(5), 4);
        assert_eq!(t.committed(3), 3, "the leader's own log counts too");
    }

    #[test]
    fn votes_from_strangers_and_repeats_do_not_count() {
        let mut t = Tracker::new(1, &[1, 2, 3, 4, 5]);
        t.reset_votes();
        t.record_vote(9, true);
        t.record_vote(2, true);
        t.record_vote(2, false);
        assert_eq!(t.tally(), VoteResult::Pending);
        t.record_vote(3, true);
        assert_eq!(t.tally(), VoteResult::Won);
    }

    #[test]
    fn quorum_activity_resets_each_round() {
        let mut t = Tracker::new(1, &[1, 2, 3]);
        t.reset_progress(1);
        assert!(
            t.quorum_active(),
            "a new leader starts with everyone active"
        );
        assert!(!t.quorum_active(), "nobody was heard from since");
        t.progress.get_mut(&3).unwrap().recent_active = true;
        assert!(t.quorum_active());
    }
}
