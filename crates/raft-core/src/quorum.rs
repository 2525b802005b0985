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

/// Tallies the votes of the voters in `voters` only; an empty set of voters
/// (the missing half of a non-joint configuration) never stands in the way.
pub fn tally_among(votes: &BTreeMap<NodeId, bool>, voters: &[NodeId]) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let mut granted = 0;
    let mut rejected = 0;
    for v in voters {
        match votes.get(v) {
            Some(true) => granted += 1,
            Some(false) => rejected += 1,
            None => {}
        }
    }
    if granted >= majority(voters.len()) {
        VoteResult::Won
    } else if rejected >= majority(voters.len()) {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// A joint configuration's result (§6): it needs both halves to win, and
/// loses as soon as either half does.
pub fn joint(a: VoteResult, b: VoteResult) -> VoteResult {
    match (a, b) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
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
        assert_eq!(tally_among(&v, &[1, 2, 3]), VoteResult::Won);
        assert_eq!(tally_among(&v, &[1, 2, 3, 4, 5]), VoteResult::Pending);
        let v: BTreeMap<_, _> = [(1, true), (2, false), (3, false)].into();
        assert_eq!(tally_among(&v, &[1, 2, 3, 4, 5]), VoteResult::Pending);
        assert_eq!(tally_among(&v, &[1, 2, 3, 4]), VoteResult::Pending);
        assert_eq!(tally_among(&v, &[1, 2, 3]), VoteResult::Lost);
    }

    #[test]
    fn joint_votes_need_both_halves() {
        let v: BTreeMap<_, _> = [(1, true), (2, true), (4, false), (5, false)].into();
        let old = tally_among(&v, &[1, 2, 3]);
        let new = tally_among(&v, &[3, 4, 5]);
        assert_eq!((old, new), (VoteResult::Won, VoteResult::Lost));
        assert_eq!(joint(old, new), VoteResult::Lost);
        assert_eq!(joint(old, tally_among(&v, &[])), VoteResult::Won);
        assert_eq!(joint(old, tally_among(&v, &[3, 6, 7])), VoteResult::Pending);
    }
}
