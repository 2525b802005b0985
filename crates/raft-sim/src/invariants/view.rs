//! The checker's mirror of one node's persisted log: `(term, chain)` per
//! entry, where the chain hashes an entry with the chain before it (equal
//! chains mean identical prefixes), and the configurations the log holds.

use raft_core::{ConfState, Entry, Index, NodeId, Role, Term};

use crate::confs::ConfMirror;

/// FNV-1a over bytes: a deterministic hash that no std release can change.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The chain hash of `entry` following a prefix whose chain is `prev`.
pub fn chain(prev: u64, entry: &Entry) -> u64 {
    let mut h = mix(prev ^ 0x9e37_79b9_7f4a_7c15);
    h = mix(h ^ entry.index);
    h = mix(h ^ entry.term);
    h = mix(h ^ (entry.kind as u64));
    mix(h ^ fnv1a(&entry.data))
}

/// The checker's mirror of one node.
#[derive(Clone, Debug)]
pub(super) struct View {
    /// Snapshot point: the mirror holds `base..=last`.
    pub(super) base: Index,
    pub(super) base_term: Term,
    pub(super) base_chain: u64,
    /// `(term, chain)` of entries `base + 1 ..`.
    pub(super) log: Vec<(Term, u64)>,
    pub(super) term: Term,
    pub(super) vote: Option<NodeId>,
    pub(super) commit: Index,
    pub(super) applied: Index,
    /// The term this node has been seen leading, if it leads now.
    pub(super) leading: Option<Term>,
    /// The configurations in the persisted log.
    pub(super) confs: ConfMirror,
    /// The voters the node was started with (stand in for a snapshot
    /// without a configuration).
    pub(super) bootstrap: Vec<NodeId>,
    /// Role, term and in-memory commit index after the last event.
    pub(super) seen: (Role, Term, Index),
}

impl View {
    pub(super) fn empty(bootstrap: Vec<NodeId>) -> Self {
        View {
            base: 0,
            base_term: 0,
            base_chain: 0,
            log: Vec::new(),
            term: 0,
            vote: None,
            commit: 0,
            applied: 0,
            leading: None,
            confs: ConfMirror::new(ConfState::new(&bootstrap)),
            bootstrap,
            seen: (Role::Follower, 0, 0),
        }
    }

    /// A snapshot's configuration; one without stands for the bootstrap one.
    pub(super) fn snapshot_conf(&self, conf: &ConfState) -> ConfState {
        if conf.voters.is_empty() {
            ConfState::new(&self.bootstrap)
        } else {
            conf.clone()
        }
    }

    /// Whether the persisted log holds entry `index` of `term` (or a
    /// snapshot covering it: only committed entries are compacted).
    pub(super) fn holds(&self, index: Index, term: Term) -> bool {
        self.base >= index || self.at(index).is_some_and(|(t, _)| t == term)
    }

    pub(super) fn last(&self) -> Index {
        self.base + self.log.len() as Index
    }

    pub(super) fn at(&self, index: Index) -> Option<(Term, u64)> {
        if index == self.base {
            Some((self.base_term, self.base_chain))
        } else if index > self.base && index <= self.last() {
            Some(self.log[(index - self.base - 1) as usize])
        } else {
            None
        }
    }
}
