//! What a run cost: elections, leaders and terms, counted as they happen
//! (and how many leader writes ran in parallel with replication).
//! Safety holds or not; these figures say whether a run wasted rounds, so
//! scenarios can bound them (see `tests/liveness.rs`).

use raft_core::{Role, Term};

/// Election counts of a whole run, all nodes together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// PreVote rounds begun (a node became PreCandidate).
    pub pre_vote_rounds: u64,
    /// Elections begun: a node became Candidate in a new term (§5.2).
    pub elections: u64,
    /// Elections won.
    pub leaders: u64,
    /// The highest term any node has reached.
    pub max_term: Term,
    /// Leader writes that ran while their early messages were on the way
    /// (asynchronous leader writes).
    pub async_writes: u64,
    /// Of those, writes lost to a crash before they landed.
    pub lost_writes: u64,
}

impl Stats {
    /// Counts a node's change from `(from, from_term)` to `(to, to_term)`.
    pub(crate) fn on_change(&mut self, from: (Role, Term), to: (Role, Term)) {
        if to == from {
            return;
        }
        match to.0 {
            Role::PreCandidate if from.0 != Role::PreCandidate => self.pre_vote_rounds += 1,
            Role::Candidate => self.elections += 1,
            Role::Leader if from.0 != Role::Leader => self.leaders += 1,
            _ => {}
        }
        self.max_term = self.max_term.max(to.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_new_candidacy_once() {
        let mut s = Stats::default();
        s.on_change((Role::Follower, 1), (Role::PreCandidate, 1));
        s.on_change((Role::PreCandidate, 1), (Role::Candidate, 2));
        s.on_change((Role::Candidate, 2), (Role::Candidate, 2));
        s.on_change((Role::Candidate, 2), (Role::Candidate, 3));
        s.on_change((Role::Candidate, 3), (Role::Leader, 3));
        assert_eq!((s.pre_vote_rounds, s.elections, s.leaders), (1, 2, 1));
        assert_eq!(s.max_term, 3);
    }
}
