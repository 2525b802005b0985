//! Everything a node tracks about the other members, in one place: the
//! configuration (voters, learners, and the old voters during a joint
//! change), the leader's per-member [`Progress`], the votes of a campaign,
//! and quorum activity for CheckQuorum. Majority arithmetic lives in
//! [`crate::quorum`]; this module decides whose numbers count, and counts a
//! joint configuration as two majorities (§6).

use std::collections::BTreeMap;

use crate::conf::ConfState;
use crate::progress::Progress;
use crate::quorum::{committed_index, joint, tally_among, VoteResult};
use crate::types::{Index, NodeId};

/// The members as this node counts them.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// This node.
    id: NodeId,
    conf: ConfState,
    /// Leader only: one entry per other member, learners included.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Candidate and PreCandidate: replies so far (own vote included).
    votes: BTreeMap<NodeId, bool>,
    /// Reused for the commit index, so a proposal allocates nothing.
    scratch: Vec<Index>,
    /// The other members (learners included), in id order: kept with
    /// `conf`, so that a Ready's sends allocate no list of them.
    peers: Vec<NodeId>,
}

impl Tracker {
    /// Tracks the members of `conf`.
    pub(crate) fn new(id: NodeId, conf: ConfState) -> Self {
        Tracker {
            id,
            scratch: Vec::with_capacity(conf.voters.len()),
            peers: others(&conf, id),
            conf,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
        }
    }

    /// Switches to `conf`. A leader starts tracking new members (probing
    /// them from `next_index`) and stops tracking departed ones.
    pub(crate) fn set_conf(&mut self, conf: ConfState, next_index: Index, leading: bool) {
        self.peers = others(&conf, self.id);
        self.conf = conf;
        if leading {
            let members = self.conf.members();
            self.progress
                .retain(|id, _| members.binary_search(id).is_ok());
            for id in members {
                if id != self.id {
                    self.progress
                        .entry(id)
                        .or_insert_with(|| Progress::new(next_index));
                }
            }
        }
    }

    /// Whether `id` votes in the configuration in force.
    pub(crate) fn is_voter(&self, id: NodeId) -> bool {
        self.conf.is_voter(id)
    }

    /// The other members (learners included), in id order.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.peers.clone()
    }

    /// The `i`th of [`peers`](Tracker::peers), for a loop over them that
    /// must not hold the tracker borrowed (nor allocate a copy of the list).
    pub(crate) fn peer(&self, i: usize) -> Option<NodeId> {
        self.peers.get(i).copied()
    }

    /// The other voters, in id order.
    pub(crate) fn voter_peers(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .conf
            .voters
            .iter()
            .chain(&self.conf.voters_outgoing)
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether this node alone is every majority.
    pub(crate) fn is_singleton(&self) -> bool {
        let alone = |vs: &[NodeId]| vs.is_empty() || vs == [self.id];
        alone(&self.conf.voters) && alone(&self.conf.voters_outgoing) && self.conf.is_voter(self.id)
    }

    /// Figure 2, leaders: "reinitialize nextIndex and matchIndex" for every peer.
    pub(crate) fn reset_progress(&mut self, next_index: Index) {
        self.progress = self
            .peers()
            .into_iter()
            .map(|p| (p, Progress::new(next_index)))
            .collect();
    }

    /// Drops the leader-only state.
    pub(crate) fn clear_progress(&mut self) {
        self.progress.clear();
    }

    /// Figure 2, leaders: the highest N that a majority of voters hold
    /// (`matchIndex[i] ≥ N`), counting this leader's own log at `own` if it
    /// votes; in a joint configuration, a majority of each half (§6).
    pub(crate) fn committed(&mut self, own: Index) -> Index {
        let incoming = self.half_committed(own, false);
        let outgoing = self.half_committed(own, true);
        incoming.min(outgoing)
    }

    fn half_committed(&mut self, own: Index, outgoing: bool) -> Index {
        let voters = if outgoing {
            &self.conf.voters_outgoing
        } else {
            &self.conf.voters
        };
        if voters.is_empty() {
            return Index::MAX; // No second half: it does not constrain.
        }
        self.scratch.clear();
        for &v in voters {
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
        if self.conf.is_voter(from) {
            self.votes.entry(from).or_insert(granted);
        }
    }

    /// Whether the votes so far win, lose or wait (both halves when joint).
    pub(crate) fn tally(&self) -> VoteResult {
        joint(
            tally_among(&self.votes, &self.conf.voters),
            tally_among(&self.votes, &self.conf.voters_outgoing),
        )
    }

    /// Whether the voters for which `acked` holds (this node always
    /// included) form a majority of each half of the configuration.
    pub(crate) fn is_quorum(&self, acked: impl Fn(NodeId) -> bool) -> bool {
        let half = |voters: &[NodeId]| {
            voters.is_empty() || {
                let n = voters.iter().filter(|&&v| v == self.id || acked(v)).count();
                n >= crate::quorum::majority(voters.len())
            }
        };
        half(&self.conf.voters) && half(&self.conf.voters_outgoing)
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

/// The members of `conf` other than `id`, in id order.
fn others(conf: &ConfState, id: NodeId) -> Vec<NodeId> {
    let mut m = conf.members();
    m.retain(|&p| p != id);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::ConfChange;

    fn plain(voters: &[NodeId]) -> ConfState {
        ConfState::new(voters)
    }

    #[test]
    fn commit_counts_voters_and_the_leader_itself() {
        let mut t = Tracker::new(1, plain(&[1, 2, 3]));
        t.reset_progress(1);
        assert_eq!(t.committed(5), 0);
        t.progress.get_mut(&2).unwrap().match_index = 4;
        assert_eq!(t.committed(5), 4);
        assert_eq!(t.committed(3), 3, "the leader's own log counts too");
    }

    #[test]
    fn learners_do_not_count_for_commit() {
        let conf = plain(&[1, 2, 3]).apply(&ConfChange::AddLearner(4)).unwrap();
        let mut t = Tracker::new(1, conf);
        t.reset_progress(1);
        t.progress.get_mut(&4).unwrap().match_index = 9;
        assert_eq!(t.committed(9), 0, "node 4 is a learner");
        assert!(!t.is_voter(4));
        assert_eq!(t.peers(), [2, 3, 4]);
        assert_eq!(t.voter_peers(), [2, 3]);
    }

    #[test]
    fn joint_commit_needs_a_majority_of_both_halves() {
        let conf = plain(&[1, 2, 3])
            .apply(&ConfChange::Joint {
                voters: vec![3, 4, 5],
                learners: vec![],
            })
            .unwrap();
        let mut t = Tracker::new(1, conf);
        t.reset_progress(1);
        for (id, m) in [(2, 7), (3, 7)] {
            t.progress.get_mut(&id).unwrap().match_index = m;
        }
        assert_eq!(t.committed(7), 0, "the new half has only node 3");
        t.progress.get_mut(&4).unwrap().match_index = 6;
        assert_eq!(t.committed(7), 6);
        // The leader (node 1) is not in C_new: it does not count there.
        let mut r = Tracker::new(1, t.conf.apply(&ConfChange::LeaveJoint).unwrap());
        r.reset_progress(1);
        r.progress.get_mut(&3).unwrap().match_index = 5;
        assert_eq!(r.committed(9), 0);
    }

    #[test]
    fn votes_from_strangers_and_repeats_do_not_count() {
        let mut t = Tracker::new(1, plain(&[1, 2, 3, 4, 5]));
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
        let mut t = Tracker::new(1, plain(&[1, 2, 3]));
        t.reset_progress(1);
        assert!(
            t.quorum_active(),
            "a new leader starts with everyone active"
        );
        assert!(!t.quorum_active(), "nobody was heard from since");
        t.progress.get_mut(&3).unwrap().recent_active = true;
        assert!(t.quorum_active());
    }

    #[test]
    fn new_members_get_progress_and_departed_ones_lose_it() {
        let mut t = Tracker::new(1, plain(&[1, 2, 3]));
        t.reset_progress(5);
        let conf = t.conf.apply(&ConfChange::AddLearner(4)).unwrap();
        t.set_conf(conf, 6, true);
        assert_eq!(t.progress[&4].next_index, 6);
        let conf = t.conf.apply(&ConfChange::Remove(2)).unwrap();
        t.set_conf(conf, 6, true);
        assert_eq!(t.progress.keys().copied().collect::<Vec<_>>(), [3, 4]);
    }
}
