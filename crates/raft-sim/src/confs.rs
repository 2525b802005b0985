//! Configurations as the invariant checker sees them: the ones a node's
//! persisted log holds (the snapshot's, then one per configuration entry
//! after it; the latest is in force, §6), and the majority arithmetic of a
//! configuration, joint ones included. Written apart from raft-core's own
//! bookkeeping on purpose, so the checker does not trust the code it checks.

use raft_core::{ConfEntry, ConfState, Entry, EntryKind, Index, NodeId};

/// The configuration an entry sets, if it is a configuration entry; an
/// error if it is one that does not decode (only a leader's bug makes one:
/// the door refuses them from peers).
pub(crate) fn conf_of(e: &Entry) -> Result<Option<ConfState>, String> {
    if e.kind != EntryKind::Config {
        return Ok(None);
    }
    match ConfEntry::decode(&e.data) {
        Some(c) => Ok(Some(c.conf)),
        None => Err(format!(
            "configuration entry (index {}, term {}) does not decode",
            e.index, e.term
        )),
    }
}

/// Whether the nodes for which `holds` is true form a majority of the
/// voters and, while joint, of the outgoing voters too (§6). A
/// configuration without voters has no majority.
pub fn is_quorum(conf: &ConfState, holds: impl Fn(NodeId) -> bool) -> bool {
    let half = |voters: &[NodeId]| {
        let n = voters.iter().filter(|&&v| holds(v)).count();
        n > voters.len() / 2
    };
    !conf.voters.is_empty()
        && half(&conf.voters)
        && (conf.voters_outgoing.is_empty() || half(&conf.voters_outgoing))
}

/// The configurations in one node's persisted log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConfMirror {
    /// In force at the snapshot's index (the bootstrap one before any).
    base: ConfState,
    /// `(index, configuration)` of each configuration entry after it.
    entries: Vec<(Index, ConfState)>,
}

impl ConfMirror {
    pub fn new(base: ConfState) -> Self {
        ConfMirror {
            base,
            entries: Vec::new(),
        }
    }

    /// The latest configuration in the log: the one in force.
    pub fn current(&self) -> &ConfState {
        self.entries.last().map_or(&self.base, |(_, c)| c)
    }

    /// The configuration in force at `index`.
    pub fn at(&self, index: Index) -> &ConfState {
        self.entries
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, c)| c)
    }

    /// The configuration entries in `(after, upto]`.
    pub fn between(&self, after: Index, upto: Index) -> impl Iterator<Item = &(Index, ConfState)> {
        self.entries
            .iter()
            .filter(move |(i, _)| *i > after && *i <= upto)
    }

    /// Entries from `from` on were replaced by `new`.
    pub fn appended(&mut self, from: Index, new: &[Entry]) -> Result<(), String> {
        self.entries.retain(|&(i, _)| i < from);
        for e in new {
            if let Some(c) = conf_of(e)? {
                self.entries.push((e.index, c));
            }
        }
        Ok(())
    }

    /// The log up to `index` became a snapshot whose configuration is
    /// `base`; entries after it are kept only if `keep_tail`.
    pub fn snapshot(&mut self, index: Index, base: ConfState, keep_tail: bool) {
        self.base = base;
        if keep_tail {
            self.entries.retain(|&(i, _)| i > index);
        } else {
            self.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::ConfChange;

    #[test]
    fn joint_quorums_need_both_halves() {
        let old = ConfState::new(&[1, 2, 3]);
        let joint = old
            .apply(&ConfChange::Joint {
                voters: vec![3, 4, 5],
                learners: vec![6],
            })
            .unwrap();
        assert!(is_quorum(&old, |v| v <= 2));
        assert!(!is_quorum(&joint, |v| v <= 2), "only one of C_new");
        assert!(is_quorum(&joint, |v| [2, 3, 4].contains(&v)));
        assert!(!is_quorum(&joint, |v| v >= 4), "none of C_old but 3");
        assert!(
            !is_quorum(&ConfState::default(), |_| true),
            "no voters, no majority"
        );
    }

    #[test]
    fn the_latest_configuration_is_in_force_and_goes_when_truncated() {
        let conf = |c: &ConfState, index| {
            let data = ConfEntry {
                change: ConfChange::AddLearner(9),
                conf: c.clone(),
                context: vec![],
            }
            .encode();
            Entry {
                index,
                term: 1,
                kind: EntryKind::Config,
                data: data.into(),
            }
        };
        let a = ConfState::new(&[1, 2, 3]);
        let b = a.apply(&ConfChange::AddLearner(4)).unwrap();
        let mut m = ConfMirror::new(a.clone());
        m.appended(1, &[Entry::normal(1, 1, vec![1]), conf(&b, 2)])
            .unwrap();
        assert_eq!((m.current(), m.at(1)), (&b, &a));
        m.appended(2, &[Entry::normal(2, 2, vec![2])]).unwrap();
        assert_eq!(m.current(), &a);
        let mut bad = conf(&b, 3);
        bad.data = vec![7, 7].into();
        assert!(m.appended(3, &[bad]).is_err());
    }
}
