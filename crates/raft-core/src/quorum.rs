//! Majority arithmetic: commit index and vote counting.

use std::collections::BTreeMap;

use crate::types::{Index, NodeId};

/// Votes needed out of `n` voters.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The highest index that a majority of `matched` (one per voter) have
/// reached: Figure 2's "a majority of `matchIndex[i]` ≥ N".
pub fn committed_index(matched: &mut [Index]) -> Index {
    if matched.is_empty() {
        return 0;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched[majority(matched.len()) - 1]
}

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Tallies `votes` (granted or not, per voter) among `voters` voters.
pub fn tally(votes: &BTreeMap<NodeId, bool>, voters: usize) -> VoteResult {
    let granted = votes.values().filter(|&&g| g).count();
    let rejected = votes.len() - granted;
    if granted >= majority(voters) {
        VoteResult::Won
    } else if rejected >= majority(voters) {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_the_majority_match() {
        assert_eq!(committed_index(&mut [5]), 5);
        assert_eq!(committed_index(&mut [5, 1, 3]), 3);
        assert_eq!(committed_index(&mut [5, 1, 3, 4]), 3);
        assert_eq!(committed_index(&mut [9, 9, 1, 1, 2]), 2);
    }

    #[test]
    fn votes_need_a_majority() {
        let v: BTreeMap<_, _> = [(1, true), (2, true)].into();
        assert_eq!(tally(&v, 3), VoteResult::Won);
        assert_eq!(tally(&v, 5), VoteResult::Pending);
        let v: BTreeMap<_, _> = [(1, true), (2, false), (3, false)].into();
        assert_eq!(tally(&v, 5), VoteResult::Pending);
        assert_eq!(tally(&v, 4), VoteResult::Pending);
        assert_eq!(tally(&v, 3), VoteResult::Lost);
    }
}
