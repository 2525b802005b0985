//! The safety checker, run after every event.
//!
//! It keeps a mirror of each node's persisted log as `(term, chain)` pairs,
//! where `chain` hashes the entry together with the chain of the entry
//! before it: equal chains mean identical prefixes. The mirror is updated
//! from each Ready (the only way a log changes), so a check costs what the
//! Ready carries, not the log's length. Properties (Figure 3 of the paper):
//!
//! - Election safety: at most one leader per term, over the whole run.
//! - Leader append-only: a leader never overwrites or deletes its entries
//!   while it leads that term.
//! - Log matching: one `(index, term)` has one chain on every node, ever.
//! - Leader completeness: a new leader holds the whole committed prefix.
//! - State-machine safety: every node commits the same prefix (the apply
//!   side is checked in [`crate::app`]).
//! - Match index: a leader never counts a peer of its term as holding
//!   entries the peer does not hold.
//! - Commit and apply never go back within an incarnation; terms never go
//!   back and a vote never changes within a term, even across restarts.
//!
//! And with membership changes (§6), the mirror also holds each log's
//! configurations ([`crate::confs`]):
//! - A node's configuration in force is the latest in its log.
//! - Commit quorum: when a leader's commit index rises to N, the nodes whose
//!   persisted logs hold entry N form a majority of each half of the
//!   configuration the leader uses (the latest in its log, both halves while
//!   joint). Counting persisted copies only, a leader that counts its own
//!   entries before they are durable (asynchronous writes) is caught.
//! - A configuration entry, once committed, is persisted on a majority of
//!   each half of the configuration it brings in: it commits while it is
//!   the latest (one change at a time, and C_new only follows a committed
//!   C_old,new), so this also checks the commit of C_old,new by a leader
//!   that appends C_new in the same step.
//! - Election quorum: a new leader holds persisted votes of its term from a
//!   majority of each half of its configuration.
//! - A node never counts as a voter in a configuration it does not hold:
//!   it campaigns, and is elected, only if its own configuration lists it
//!   as a voter (learners and joining servers never do).
//! - A snapshot carries the configuration committed at its index.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::BTreeMap;

use raft_core::{ConfState, Entry, HardState, Index, NodeId, Ready, Role, Status, Term};

mod quorums;
mod restart;
mod view;

use view::View;
pub use view::{chain, fnv1a};

/// What the driver observed of a node after an event.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The node's status.
    pub status: &'a Status,
    /// The term of its last entry, as the node reports it.
    pub last_term: Option<Term>,
    /// The term of the entry at its commit index, as the node reports it.
    pub commit_term: Option<Term>,
    /// The configuration the node says is in force.
    pub conf: &'a ConfState,
    /// A write is in progress (asynchronous leader writes): the node's
    /// memory is ahead of its persisted state.
    pub writing: bool,
}

/// Run-wide safety state.
#[derive(Debug)]
pub struct Checker {
    views: Vec<View>,
    /// Election safety: the leader of each term.
    leaders: BTreeMap<Term, NodeId>,
    /// Log matching: the chain of every `(index, term)` ever held.
    chains: BTreeMap<(Index, Term), u64>,
    /// Term and chain of the committed prefix, `committed[i - 1]` for index `i`.
    committed: Vec<(Term, u64)>,
    /// Configurations of the committed prefix, by index (the bootstrap one at 0).
    committed_confs: Vec<(Index, ConfState)>,
    /// Every vote persisted: `(term, voter) -> candidate`.
    votes: BTreeMap<(Term, NodeId), NodeId>,
}

type Check = Result<(), String>;

impl Checker {
    /// A checker for nodes `1..=n` with empty logs, each started with all
    /// of them as voters.
    pub fn new(n: usize) -> Self {
        let voters: Vec<NodeId> = (1..=n as NodeId).collect();
        Checker {
            views: vec![View::empty(voters.clone()); n],
            leaders: BTreeMap::new(),
            chains: BTreeMap::new(),
            committed: Vec::new(),
            committed_confs: vec![(0, ConfState::new(&voters))],
            votes: BTreeMap::new(),
        }
    }

    /// Adds node `n + 1`, started with `bootstrap` as its voters (none for
    /// a server joining a running cluster).
    pub fn add_node(&mut self, bootstrap: Vec<NodeId>) {
        self.views.push(View::empty(bootstrap));
    }

    /// The leader seen in each term so far.
    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    /// Highest index known committed.
    pub fn committed_index(&self) -> Index {
        self.committed.len() as Index
    }

    /// The term of the committed entry at `index`, if known committed.
    pub fn committed_term(&self, index: Index) -> Option<Term> {
        let i = (index as usize).checked_sub(1)?;
        self.committed.get(i).map(|&(t, _)| t)
    }

    /// The configuration in force at the highest committed index.
    pub fn committed_conf(&self) -> &ConfState {
        &self.committed_confs.last().expect("the bootstrap one").1
    }

    /// The committed configuration in force at `index` (at most the
    /// committed index).
    pub fn committed_conf_at(&self, index: Index) -> &ConfState {
        let at = self
            .committed_confs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .expect("the bootstrap one is at 0");
        &at.1
    }

    /// Where each committed configuration entry is, with its configuration.
    pub fn committed_confs(&self) -> &[(Index, ConfState)] {
        &self.committed_confs[1..]
    }

    fn record_chain(&mut self, index: Index, term: Term, c: u64) -> Check {
        match self.chains.entry((index, term)) {
            MapEntry::Occupied(o) if *o.get() != c => Err(format!(
                "log matching: entry (index {index}, term {term}) has a different command or \
                 history than another log's entry with the same index and term"
            )),
            MapEntry::Occupied(_) => Ok(()),
            MapEntry::Vacant(v) => {
                v.insert(c);
                Ok(())
            }
        }
    }

    /// Mirrors what node `id` persists from `rd`. `role` and `term` are the
    /// node's after the input that produced it.
    pub fn on_ready(&mut self, id: NodeId, rd: &Ready, role: Role, term: Term) -> Check {
        let i = id as usize - 1;
        let leading = role == Role::Leader && self.views[i].leading == Some(term);
        if let Some(s) = &rd.snapshot {
            if leading {
                return Err(format!("leader of term {term} installed a snapshot"));
            }
            let m = s.meta;
            let c = match self.chains.get(&(m.index, m.term)) {
                Some(&c) => c,
                None if m.index == 0 => 0,
                None => {
                    return Err(format!(
                        "snapshot ends at (index {}, term {}), an entry no log ever held",
                        m.index, m.term
                    ))
                }
            };
            let conf = self.views[i].snapshot_conf(&s.conf);
            self.check_snapshot_conf(m.index, &conf)?;
            let v = &mut self.views[i];
            let keep = v.at(m.index).map(|(t, _)| t) == Some(m.term);
            if keep {
                let drop = (m.index - v.base) as usize;
                v.log.drain(..drop.min(v.log.len()));
            } else {
                v.log.clear();
            }
            v.confs.snapshot(m.index, conf, keep);
            (v.base, v.base_term, v.base_chain) = (m.index, m.term, c);
        }
        self.append(i, &rd.entries, leading, term)?;
        if let Some(hs) = &rd.hard_state {
            self.on_hard_state(i, hs)?;
        }
        if let Some(s) = &rd.local_snapshot {
            let m = s.meta;
            let v = &mut self.views[i];
            if m.index > v.commit {
                return Err(format!(
                    "snapshot at {} covers uncommitted entries",
                    m.index
                ));
            }
            let held = v.confs.at(m.index).clone();
            if v.snapshot_conf(&s.conf) != held {
                return Err(format!(
                    "local snapshot at {} carries configuration {:?}, but the log has {held:?} there",
                    m.index, s.conf
                ));
            }
            self.check_snapshot_conf(m.index, &held)?;
            let v = &mut self.views[i];
            match v.at(m.index) {
                Some((t, c)) if t == m.term => {
                    let drop = (m.index - v.base) as usize;
                    v.log.drain(..drop.min(v.log.len()));
                    v.confs.snapshot(m.index, held, true);
                    (v.base, v.base_term, v.base_chain) = (m.index, m.term, c);
                }
                _ => {
                    return Err(format!(
                        "local snapshot at (index {}, term {}) does not match the log",
                        m.index, m.term
                    ))
                }
            }
        }
        Ok(())
    }

    /// The persisted term and vote never go back; the commit index only
    /// rises, and each rise must extend the one committed prefix.
    fn on_hard_state(&mut self, i: usize, hs: &HardState) -> Check {
        let v = &self.views[i];
        if hs.term < v.term {
            return Err(format!("term went back from {} to {}", v.term, hs.term));
        }
        if hs.term == v.term && v.vote.is_some() && hs.vote != v.vote {
            return Err(format!(
                "vote in term {} changed from {:?} to {:?}",
                hs.term, v.vote, hs.vote
            ));
        }
        if hs.commit < v.commit {
            return Err(format!(
                "commit went back from {} to {}",
                v.commit, hs.commit
            ));
        }
        if hs.commit > v.commit {
            self.record_commit(i, hs.commit)?;
        }
        if let Some(candidate) = hs.vote {
            self.votes.insert((hs.term, i as NodeId + 1), candidate);
        }
        let v = &mut self.views[i];
        (v.term, v.vote, v.commit) = (hs.term, hs.vote, hs.commit);
        Ok(())
    }

    fn append(&mut self, i: usize, entries: &[Entry], leading: bool, term: Term) -> Check {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let v = &self.views[i];
        let old_last = v.last();
        if first.index > old_last + 1 {
            return Err(format!(
                "entries from {} leave a gap after the last index {old_last}",
                first.index
            ));
        }
        // Entries at or below the snapshot are committed; storage skips them.
        let skip = entries.iter().take_while(|e| e.index <= v.base).count();
        if let Some(e) = entries[..skip].last() {
            if e.index == v.base && e.term != v.base_term {
                return Err(format!(
                    "entry {} conflicts with the snapshot's term",
                    e.index
                ));
            }
        }
        let entries = &entries[skip..];
        let Some(from) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        let overwritten: Vec<(Term, u64)> = if leading && from <= old_last {
            v.log[(from - v.base - 1) as usize..].to_vec()
        } else {
            Vec::new()
        };
        let mut prev = v.at(from - 1).map(|(_, c)| c).unwrap_or(0);
        let mut fresh = Vec::with_capacity(entries.len());
        for e in entries {
            if leading && e.term != term {
                return Err(format!(
                    "leader of term {term} appended entry {} of term {}",
                    e.index, e.term
                ));
            }
            prev = chain(prev, e);
            self.record_chain(e.index, e.term, prev)?;
            fresh.push((e.term, prev));
        }
        let v = &mut self.views[i];
        v.log.truncate((from - v.base - 1) as usize);
        v.log.extend(fresh);
        v.confs.appended(from, entries)?;
        if leading {
            let changed = overwritten
                .iter()
                .zip(&v.log[(from - v.base - 1) as usize..])
                .any(|(a, b)| a != b);
            if changed || v.last() < old_last {
                return Err(format!(
                    "leader of term {term} overwrote or deleted its entries from index {from}"
                ));
            }
        }
        Ok(())
    }

    /// Checks node `id` after an event that touched it, against what it
    /// persisted (unless a write is in progress) and against the run.
    pub fn after_event(&mut self, id: NodeId, ob: &Observed) -> Check {
        let i = id as usize - 1;
        let st = ob.status;
        let v = &self.views[i];
        let last_term = ob.last_term;
        if !ob.writing {
            if st.last_index != v.last() || last_term != v.at(v.last()).map(|(t, _)| t) {
                return Err(format!(
                    "in-memory log ends at ({}, {last_term:?}) but the persisted one at ({}, {:?})",
                    st.last_index,
                    v.last(),
                    v.at(v.last()).map(|(t, _)| t)
                ));
            }
            if st.first_index != v.base + 1 {
                return Err(format!(
                    "first index {} but the persisted snapshot ends at {}",
                    st.first_index, v.base
                ));
            }
            if (st.term, st.vote, st.commit) != (v.term, v.vote, v.commit) {
                return Err(format!(
                    "in-memory term/vote/commit {}/{:?}/{} differ from the persisted {}/{:?}/{}",
                    st.term, st.vote, st.commit, v.term, v.vote, v.commit
                ));
            }
            if ob.conf != v.confs.current() {
                return Err(format!(
                    "configuration in force {:?} is not the latest in the log, {:?} (§6)",
                    ob.conf,
                    v.confs.current()
                ));
            }
        }
        if st.applied < v.applied {
            return Err(format!(
                "applied went back from {} to {}",
                v.applied, st.applied
            ));
        }
        if st.applied > st.commit || st.commit > st.last_index {
            return Err(format!(
                "applied {} > commit {} or commit > last index {}",
                st.applied, st.commit, st.last_index
            ));
        }
        let (role, term, commit) = v.seen;
        // A leader's commit rose (it may have stepped down in the same
        // event, handing over after its own removal committed). Within one
        // event a node cannot both commit as a follower and become leader.
        let led = st.role == Role::Leader || v.leading == Some(st.term);
        if led && st.commit > commit {
            self.check_commit_quorum(id, st.term, st.commit, ob.commit_term, ob.conf)?;
        }
        let campaigning = matches!(st.role, Role::PreCandidate | Role::Candidate);
        if campaigning && (st.role, st.term) != (role, term) && !ob.conf.is_voter(id) {
            return Err(format!(
                "node {id} campaigns in term {} but is no voter of its configuration {:?}",
                st.term, ob.conf
            ));
        }
        if st.role == Role::Leader {
            match self.leaders.entry(st.term) {
                MapEntry::Occupied(o) if *o.get() != id => {
                    return Err(format!(
                        "election safety: node {} already led term {}",
                        o.get(),
                        st.term
                    ))
                }
                MapEntry::Occupied(_) => {}
                MapEntry::Vacant(e) => {
                    e.insert(id);
                }
            }
        }
        // A new leader is checked once its term (and so its vote) is
        // persisted, in the configuration it was elected in: its own
        // appends come later (a write in progress holds only those).
        let elected = st.role == Role::Leader && v.term == st.term;
        if elected && v.leading != Some(st.term) {
            self.check_completeness(i, st.term)?;
            self.check_election_quorum(id, st.term, ob.conf)?;
        }
        let v = &mut self.views[i];
        if st.role != Role::Leader || elected {
            v.leading = elected.then_some(st.term);
        }
        v.applied = st.applied;
        v.seen = (st.role, st.term, st.commit);
        Ok(())
    }

    /// Figure 2's matchIndex is the "index of highest log entry known to be
    /// replicated on server": when leader `leader` of `term` counts `peer`
    /// as holding its log through `m`, the peer's persisted log must end at
    /// or after `m` with the same entry there (log matching makes the prefix
    /// equal). Skipped once the peer is in a later term (a later leader may
    /// have rewritten its log) and where either side compacted `m` away
    /// (compacted entries are committed). A leader that acts on a reply
    /// from an older term breaks this before it breaks anything else.
    pub fn check_match(&self, leader: NodeId, term: Term, peer: NodeId, m: Index) -> Check {
        let (l, p) = (
            &self.views[leader as usize - 1],
            &self.views[peer as usize - 1],
        );
        if m == 0 || p.term > term {
            return Ok(());
        }
        let claim = format!(
            "leader {leader} of term {term} counts node {peer} as holding its log through {m}"
        );
        if m > p.last() {
            return Err(format!("{claim}, but that log ends at {}", p.last()));
        }
        match (l.at(m), p.at(m)) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "{claim}, but their entries at {m} differ (terms {} and {})",
                a.0, b.0
            )),
            _ => Ok(()),
        }
    }

    fn check_completeness(&self, i: usize, term: Term) -> Check {
        let known = self.committed.len() as Index;
        if known == 0 {
            return Ok(());
        }
        let v = &self.views[i];
        match v.at(known) {
            Some((_, c)) if c == self.committed[known as usize - 1].1 => Ok(()),
            Some(_) => Err(format!(
                "leader completeness: new leader of term {term} has a different entry at \
                 committed index {known}"
            )),
            None => Err(format!(
                "leader completeness: new leader of term {term} (log {}..={}) lacks committed \
                 index {known}",
                v.base,
                v.last()
            )),
        }
    }

    fn record_commit(&mut self, i: usize, commit: Index) -> Check {
        let v = &self.views[i];
        let Some((_, c)) = v.at(commit) else {
            return Err(format!("committed index {commit} is outside the log"));
        };
        let known = self.committed.len() as Index;
        if commit <= known {
            if self.committed[commit as usize - 1].1 != c {
                return Err(format!(
                    "two different entries committed at index {commit} (state-machine safety)"
                ));
            }
            return Ok(());
        }
        if known > 0 {
            match v.at(known) {
                Some((_, ck)) if ck == self.committed[known as usize - 1].1 => {}
                _ => {
                    return Err(format!(
                        "commit to {commit} does not extend the committed prefix ending at {known}"
                    ))
                }
            }
        } else if v.base > 0 {
            return Err(format!(
                "commit to {commit} skips a prefix nobody committed"
            ));
        }
        for index in known + 1..=commit {
            let at = v.at(index).expect("between base and commit");
            self.committed.push(at);
        }
        let confs: Vec<(Index, ConfState)> = v.confs.between(known, commit).cloned().collect();
        for (x, conf) in &confs {
            self.check_conf_commit(*x, conf)?;
        }
        self.committed_confs.extend(confs);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
