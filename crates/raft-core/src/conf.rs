//! Cluster membership (§6 of the extended paper, thesis chapter 4): the
//! configuration, the changes a leader may propose, and the log entry that
//! carries a change.
//!
//! A configuration takes effect on a server as soon as its entry is in the
//! server's log, committed or not ("a server always uses the latest
//! configuration in its log", §6). Two kinds of change are offered:
//! - single-server changes (add a learner, add or promote one voter, remove
//!   one member): any two majorities of the old and new voter sets overlap,
//!   so one entry suffices (thesis §4.1);
//! - joint consensus for anything else: the cluster first moves to C_old,new,
//!   in which elections and commits need a majority of both, and the leader
//!   appends C_new once C_old,new commits (§6).
//!
//! Both are safe only with the fix from the 2015 raft-dev erratum: a leader
//! proposes no change before an entry of its own term has committed, and
//! never two changes at once (one uncommitted configuration entry at most).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::NodeId;

/// Who is in the cluster. All lists are sorted and free of duplicates;
/// learners are never voters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfState {
    /// The voters (C_new during a joint change).
    pub voters: Vec<NodeId>,
    /// Members that receive the log but do not vote or count for commit.
    pub learners: Vec<NodeId>,
    /// During a joint change, the old voters (C_old); empty otherwise.
    pub voters_outgoing: Vec<NodeId>,
}

/// A change a leader may propose with
/// [`Node::propose_conf_change`](crate::Node::propose_conf_change).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfChange {
    /// Adds a learner: it receives the log and snapshots but does not vote.
    AddLearner(NodeId),
    /// Adds a voter, or promotes a learner to voter (one voter more).
    AddVoter(NodeId),
    /// Removes a voter or a learner.
    Remove(NodeId),
    /// Moves to an arbitrary configuration through joint consensus.
    Joint {
        voters: Vec<NodeId>,
        learners: Vec<NodeId>,
    },
    /// Leaves a joint configuration for its C_new. The leader appends it by
    /// itself once the joint entry commits.
    LeaveJoint,
}

/// Why a configuration change was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfChangeError {
    #[error("node id 0 is reserved")]
    ZeroId,
    #[error("node {0} is already a member in that role")]
    AlreadyMember(NodeId),
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    #[error("node {0} appears twice")]
    Duplicate(NodeId),
    #[error("a configuration needs at least one voter")]
    NoVoters,
    #[error("node {0} cannot be a voter and a learner at once")]
    VoterAndLearner(NodeId),
    #[error(
        "a voter of the old configuration cannot become a learner in one change: remove it first"
    )]
    Demotion(NodeId),
    #[error("the cluster is in a joint configuration: only leaving it is allowed")]
    InJoint,
    #[error("the cluster is not in a joint configuration")]
    NotJoint,
    #[error("another configuration change is not committed yet")]
    Pending,
    #[error("no entry of the leader's term has committed yet (raft-dev erratum, 2015)")]
    TermNotCommitted,
    #[error("a leadership transfer is in progress")]
    Transferring,
    #[error("the leader leaves a joint configuration by itself once it commits")]
    LeaveIsAutomatic,
}

fn sorted_unique(ids: &[NodeId]) -> Result<Vec<NodeId>, ConfChangeError> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    for w in v.windows(2) {
        if w[0] == w[1] {
            return Err(ConfChangeError::Duplicate(w[0]));
        }
    }
    if v.first() == Some(&0) {
        return Err(ConfChangeError::ZeroId);
    }
    Ok(v)
}

impl ConfState {
    /// A plain configuration of `voters`.
    pub fn new(voters: &[NodeId]) -> Self {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        ConfState {
            voters,
            ..ConfState::default()
        }
    }

    /// Whether a joint change is under way.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.voters_outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` is a member in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every member, sorted, without duplicates.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The configuration after `change`, or why it is not allowed from here.
    pub fn apply(&self, change: &ConfChange) -> Result<ConfState, ConfChangeError> {
        if self.is_joint() && *change != ConfChange::LeaveJoint {
            return Err(ConfChangeError::InJoint);
        }
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner(id) => {
                if *id == 0 {
                    return Err(ConfChangeError::ZeroId);
                }
                if self.contains(*id) {
                    return Err(ConfChangeError::AlreadyMember(*id));
                }
                insert(&mut next.learners, *id);
            }
            ConfChange::AddVoter(id) => {
                if *id == 0 {
                    return Err(ConfChangeError::ZeroId);
                }
                if self.is_voter(*id) {
                    return Err(ConfChangeError::AlreadyMember(*id));
                }
                next.learners.retain(|l| l != id);
                insert(&mut next.voters, *id);
            }
            ConfChange::Remove(id) => {
                if !self.contains(*id) {
                    return Err(ConfChangeError::NotMember(*id));
                }
                next.voters.retain(|v| v != id);
                next.learners.retain(|l| l != id);
                if next.voters.is_empty() {
                    return Err(ConfChangeError::NoVoters);
                }
            }
            ConfChange::Joint { voters, learners } => {
                let voters = sorted_unique(voters)?;
                let learners = sorted_unique(learners)?;
                if voters.is_empty() {
                    return Err(ConfChangeError::NoVoters);
                }
                if let Some(&id) = learners.iter().find(|l| voters.binary_search(l).is_ok()) {
                    return Err(ConfChangeError::VoterAndLearner(id));
                }
                if let Some(&id) = learners
                    .iter()
                    .find(|l| self.voters.binary_search(l).is_ok())
                {
                    return Err(ConfChangeError::Demotion(id));
                }
                next = ConfState {
                    voters,
                    learners,
                    voters_outgoing: self.voters.clone(),
                };
            }
            ConfChange::LeaveJoint => {
                if !self.is_joint() {
                    return Err(ConfChangeError::NotJoint);
                }
                next.voters_outgoing.clear();
            }
        }
        Ok(next)
    }
}

fn insert(list: &mut Vec<NodeId>, id: NodeId) {
    if let Err(at) = list.binary_search(&id) {
        list.insert(at, id);
    }
}

/// What a configuration entry's payload holds: the change, the whole
/// configuration it leads to (so a restart reads it back without replaying
/// history), and opaque bytes for the application (such as the new
/// member's address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfEntry {
    pub change: ConfChange,
    pub conf: ConfState,
    pub context: Vec<u8>,
}

/// The format version of an encoded [`ConfEntry`].
const CONF_ENTRY_VERSION: u8 = 1;

impl ConfEntry {
    /// The entry payload: a version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CONF_ENTRY_VERSION];
        out.extend(postcard::to_stdvec(self).expect("plain data always serialises"));
        out
    }

    /// Reads a payload written by [`encode`](ConfEntry::encode); `None` when
    /// it is not one (another version, or damage).
    pub fn decode(data: &[u8]) -> Option<ConfEntry> {
        let (&version, body) = data.split_first()?;
        if version != CONF_ENTRY_VERSION {
            return None;
        }
        let (entry, rest) = postcard::take_from_bytes::<ConfEntry>(body).ok()?;
        rest.is_empty().then_some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_server_changes() {
        let c = ConfState::new(&[1, 2, 3]);
        let c = c.apply(&ConfChange::AddLearner(4)).unwrap();
        assert_eq!(
            (c.voters.clone(), c.learners.clone()),
            (vec![1, 2, 3], vec![4])
        );
        assert_eq!(
            c.apply(&ConfChange::AddLearner(4)),
            Err(ConfChangeError::AlreadyMember(4))
        );
        let c = c.apply(&ConfChange::AddVoter(4)).unwrap();
        assert_eq!(
            (c.voters.clone(), c.learners.clone()),
            (vec![1, 2, 3, 4], vec![])
        );
        let c = c.apply(&ConfChange::Remove(1)).unwrap();
        assert_eq!(c.voters, [2, 3, 4]);
        assert_eq!(
            ConfState::new(&[1]).apply(&ConfChange::Remove(1)),
            Err(ConfChangeError::NoVoters)
        );
        assert_eq!(
            c.apply(&ConfChange::Remove(9)),
            Err(ConfChangeError::NotMember(9))
        );
    }

    #[test]
    fn joint_changes_keep_the_old_voters_until_left() {
        let c = ConfState::new(&[1, 2, 3]);
        let j = c
            .apply(&ConfChange::Joint {
                voters: vec![4, 5, 3],
                learners: vec![6],
            })
            .unwrap();
        assert!(j.is_joint());
        assert_eq!(
            (j.voters.clone(), j.voters_outgoing.clone()),
            (vec![3, 4, 5], vec![1, 2, 3])
        );
        assert!(j.is_voter(1) && j.is_voter(5) && j.is_learner(6));
        assert_eq!(
            j.apply(&ConfChange::AddLearner(7)),
            Err(ConfChangeError::InJoint)
        );
        let n = j.apply(&ConfChange::LeaveJoint).unwrap();
        assert_eq!(
            n,
            ConfState {
                voters: vec![3, 4, 5],
                learners: vec![6],
                voters_outgoing: vec![]
            }
        );
        assert_eq!(
            n.apply(&ConfChange::LeaveJoint),
            Err(ConfChangeError::NotJoint)
        );
        assert_eq!(
            c.apply(&ConfChange::Joint {
                voters: vec![1, 2],
                learners: vec![3]
            }),
            Err(ConfChangeError::Demotion(3))
        );
        assert_eq!(
            c.apply(&ConfChange::Joint {
                voters: vec![1, 1],
                learners: vec![]
            }),
            Err(ConfChangeError::Duplicate(1))
        );
    }

    #[test]
    fn entries_round_trip_and_refuse_garbage() {
        let e = ConfEntry {
            change: ConfChange::AddLearner(4),
            conf: ConfState::new(&[1, 2, 3])
                .apply(&ConfChange::AddLearner(4))
                .unwrap(),
            context: b"127.0.0.1:7004".to_vec(),
        };
        assert_eq!(ConfEntry::decode(&e.encode()), Some(e.clone()));
        let mut bad = e.encode();
        bad[0] = 9;
        assert_eq!(ConfEntry::decode(&bad), None);
        assert_eq!(ConfEntry::decode(&[]), None);
        assert_eq!(ConfEntry::decode(&[1, 0xff, 0xff]), None);
    }
}
