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
//! - Election quorum: a new leader holds persisted votes of its term from a
//!   majority of each half of its configuration.
//! - A node never counts as a voter in a configuration it does not hold:
//!   it campaigns, and is elected, only if its own configuration lists it
//!   as a voter (learners and joining servers never do).
//! - A snapshot carries the configuration committed at its index.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::BTreeMap;

use raft_core::{ConfState, Entry, HardState, Index, NodeId, Ready, Role, Status, Storage, Term};

use crate::confs::{is_quorum, ConfMirror};

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
struct View {
    /// Snapshot point: the mirror holds `base..=last`.
    base: Index,
    base_term: Term,
    base_chain: u64,
    /// `(term, chain)` of entries `base + 1 ..`.
    log: Vec<(Term, u64)>,
    term: Term,
    vote: Option<NodeId>,
    commit: Index,
    applied: Index,
    /// The term this node has been seen leading, if it leads now.
    leading: Option<Term>,
    /// The configurations in the persisted log.
    confs: ConfMirror,
    /// The voters the node was started with (stand in for a snapshot
    /// without a configuration).
    bootstrap: Vec<NodeId>,
    /// Role, term and in-memory commit index after the last event.
    seen: (Role, Term, Index),
}

impl View {
    fn empty(bootstrap: Vec<NodeId>) -> Self {
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
    fn snapshot_conf(&self, conf: &ConfState) -> ConfState {
        if conf.voters.is_empty() {
            ConfState::new(&self.bootstrap)
        } else {
            conf.clone()
        }
    }

    /// Whether the persisted log holds entry `index` of `term` (or a
    /// snapshot covering it: only committed entries are compacted).
    fn holds(&self, index: Index, term: Term) -> bool {
        self.base >= index || self.at(index).is_some_and(|(t, _)| t == term)
    }

    fn last(&self) -> Index {
        self.base + self.log.len() as Index
    }

    fn at(&self, index: Index) -> Option<(Term, u64)> {
        if index == self.base {
            Some((self.base_term, self.base_chain))
        } else if index > self.base && index <= self.last() {
            Some(self.log[(index - self.base - 1) as usize])
        } else {
            None
        }
    }
}

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

    /// A snapshot through `index` must carry the configuration committed
    /// there (§7: "the last configuration as of lastIncludedIndex").
    fn check_snapshot_conf(&self, index: Index, conf: &ConfState) -> Check {
        if index > self.committed_index() {
            return Ok(()); // Another check reports a snapshot of uncommitted entries.
        }
        let committed = self.committed_conf_at(index);
        if conf != committed {
            return Err(format!(
                "snapshot at {index} carries configuration {conf:?}, but {committed:?} is \
                 committed there"
            ));
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

    /// Leader `leader` of `term` raised its commit index to `n` (an entry
    /// of term `n_term`): the nodes whose persisted logs hold that entry
    /// must be a majority of each half of `conf`, the configuration the
    /// leader counts with (the latest in its log, §6). Only what is
    /// persisted counts, the leader's own log included.
    fn check_commit_quorum(
        &self,
        leader: NodeId,
        term: Term,
        n: Index,
        n_term: Option<Term>,
        conf: &ConfState,
    ) -> Check {
        let Some(t) = n_term else {
            return Err(format!(
                "leader {leader} of term {term} committed index {n}, which its log lacks"
            ));
        };
        let holds = |id: NodeId| {
            (id as usize)
                .checked_sub(1)
                .and_then(|i| self.views.get(i))
                .is_some_and(|v| v.holds(n, t))
        };
        if is_quorum(conf, holds) {
            return Ok(());
        }
        let holders: Vec<NodeId> = (1..=self.views.len() as NodeId)
            .filter(|&id| holds(id))
            .collect();
        Err(format!(
            "leader {leader} of term {term} committed index {n}, but only nodes {holders:?} \
             have it persisted: no majority of each half of its configuration {conf:?}"
        ))
    }

    /// A new leader of `term` was elected with the persisted votes of a
    /// majority of each half of its configuration, and is a voter of it.
    fn check_election_quorum(&self, leader: NodeId, term: Term, conf: &ConfState) -> Check {
        if !conf.is_voter(leader) {
            return Err(format!(
                "node {leader} leads term {term} but is no voter of its configuration {conf:?}"
            ));
        }
        let voted = |v: NodeId| self.votes.get(&(term, v)) == Some(&leader);
        if is_quorum(conf, voted) {
            return Ok(());
        }
        let voters: Vec<NodeId> = self
            .votes
            .range((term, 0)..=(term, NodeId::MAX))
            .filter(|(_, &c)| c == leader)
            .map(|(&(_, v), _)| v)
            .collect();
        Err(format!(
            "node {leader} leads term {term} with persisted votes from {voters:?} only: no \
             majority of each half of its configuration {conf:?}"
        ))
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
        self.committed_confs.extend(confs);
        Ok(())
    }

    /// Node `id` crashed: it keeps its mirror (that is its disk), and leads nothing.
    pub fn on_crash(&mut self, id: NodeId) {
        let v = &mut self.views[id as usize - 1];
        v.leading = None;
        v.seen = (Role::Follower, v.term, 0);
    }

    /// Node `id` restarted over `storage`: rebuild its mirror from what the
    /// storage holds and check it against everything seen before.
    pub fn on_restart<S: Storage>(&mut self, id: NodeId, storage: &S, st: &Status) -> Check {
        let i = id as usize - 1;
        let snap = storage.snapshot().map_err(|e| e.to_string())?;
        let m = snap.meta;
        let base_chain = match self.chains.get(&(m.index, m.term)) {
            Some(&c) => c,
            None if m.index == 0 => 0,
            None => return Err(format!("restarted from an unknown snapshot ({m:?})")),
        };
        let (first, last) = (storage.first_index(), storage.last_index());
        let entries = storage
            .entries(first, last + 1, u64::MAX)
            .map_err(|e| e.to_string())?;
        let bootstrap = self.views[i].bootstrap.clone();
        let old = std::mem::replace(&mut self.views[i], View::empty(bootstrap));
        let v = &mut self.views[i];
        (v.base, v.base_term, v.base_chain) = (m.index, m.term, base_chain);
        if storage.first_index() > 1 {
            let conf = v.snapshot_conf(&snap.conf);
            v.confs.snapshot(m.index, conf, false);
        }
        v.confs.appended(first, &entries)?;
        let mut prev = base_chain;
        let mut fresh = Vec::with_capacity(entries.len());
        for e in &entries {
            prev = chain(prev, e);
            fresh.push((e.index, e.term, prev));
        }
        for (index, term, c) in fresh {
            self.record_chain(index, term, c)?;
            self.views[i].log.push((term, c));
        }
        if (st.term, st.vote) != (old.term, old.vote) {
            return Err(format!(
                "restarted with term/vote {}/{:?} but {}/{:?} was persisted",
                st.term, st.vote, old.term, old.vote
            ));
        }
        let v = &mut self.views[i];
        (v.term, v.vote) = (old.term, old.vote);
        // A new incarnation: commit and applied start over from storage.
        (v.commit, v.applied) = (st.commit, st.applied);
        v.seen = (st.role, st.term, st.commit);
        if old.last() != v.last() || old.at(old.last()) != v.at(v.last()) {
            return Err(format!(
                "storage reopened with log ending at {} but {} was persisted",
                v.last(),
                old.last()
            ));
        }
        let known = self.committed.len() as Index;
        let at_commit = v.at(st.commit).map(|(_, c)| c);
        if st.commit > v.base
            && st.commit <= known
            && at_commit != Some(self.committed[st.commit as usize - 1].1)
        {
            return Err(format!(
                "restarted with a wrong entry at commit {}",
                st.commit
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: NodeId, hs: HardState, role: Role, last: Index) -> Status {
        Status {
            id,
            term: hs.term,
            vote: hs.vote,
            role,
            leader: None,
            commit: hs.commit,
            applied: hs.commit,
            first_index: 1,
            last_index: last,
            rejected: 0,
            last_rejection: None,
        }
    }

    fn hs(term: Term, vote: NodeId, commit: Index) -> HardState {
        HardState {
            term,
            vote: Some(vote),
            commit,
        }
    }

    // Ready has a private field, so no struct-update syntax here.
    #[allow(clippy::field_reassign_with_default)]
    fn ready(entries: Vec<Entry>, hard_state: Option<HardState>) -> Ready {
        let mut rd = Ready::default();
        rd.entries = entries;
        rd.hard_state = hard_state;
        rd
    }

    fn e(index: Index, term: Term, data: u8) -> Entry {
        Entry::normal(index, term, vec![data])
    }

    /// `after_event` for a node in configuration `conf`, no write in
    /// progress, reporting `term_at` for its last and commit entries.
    fn observe(
        c: &mut Checker,
        st: &Status,
        conf: &ConfState,
        term_at: impl Fn(Index) -> Option<Term>,
    ) -> Check {
        let ob = Observed {
            status: st,
            last_term: term_at(st.last_index),
            commit_term: term_at(st.commit),
            conf,
            writing: false,
        };
        c.after_event(st.id, &ob)
    }

    fn at_zero(i: Index) -> Option<Term> {
        (i == 0).then_some(0)
    }

    /// A configuration entry moving to `conf`.
    fn conf_entry(index: Index, term: Term, conf: &ConfState) -> Entry {
        let data = raft_core::ConfEntry {
            change: raft_core::ConfChange::LeaveJoint,
            conf: conf.clone(),
            context: vec![],
        }
        .encode();
        Entry {
            index,
            term,
            kind: raft_core::EntryKind::Config,
            data: data.into(),
        }
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut c = Checker::new(3);
        let conf = ConfState::new(&[1, 2, 3]);
        for id in 1..=2 {
            c.on_ready(id, &ready(vec![], Some(hs(1, id, 0))), Role::Leader, 1)
                .unwrap();
        }
        c.on_ready(3, &ready(vec![], Some(hs(1, 1, 0))), Role::Follower, 1)
            .unwrap();
        let st = status(1, hs(1, 1, 0), Role::Leader, 0);
        observe(&mut c, &st, &conf, at_zero).unwrap();
        let st = status(2, hs(1, 2, 0), Role::Leader, 0);
        let err = observe(&mut c, &st, &conf, at_zero);
        assert!(err.unwrap_err().contains("election safety"));
    }

    #[test]
    fn same_index_and_term_with_different_data_is_caught() {
        let mut c = Checker::new(2);
        c.on_ready(1, &ready(vec![e(1, 1, 7)], None), Role::Follower, 1)
            .unwrap();
        let err = c.on_ready(2, &ready(vec![e(1, 1, 8)], None), Role::Follower, 1);
        assert!(err.unwrap_err().contains("log matching"));
    }

    #[test]
    fn leader_overwriting_its_log_is_caught() {
        let mut c = Checker::new(1);
        c.on_ready(1, &ready(vec![], Some(hs(2, 1, 0))), Role::Leader, 2)
            .unwrap();
        let st = status(1, hs(2, 1, 0), Role::Leader, 0);
        observe(&mut c, &st, &ConfState::new(&[1]), at_zero).unwrap();
        let two = vec![e(1, 2, 1), e(2, 2, 2)];
        c.on_ready(1, &ready(two, None), Role::Leader, 2).unwrap();
        // Re-writing entry 1 drops entry 2: a deletion.
        let err = c.on_ready(1, &ready(vec![e(1, 2, 1)], None), Role::Leader, 2);
        assert!(err.unwrap_err().contains("overwrote or deleted"));
    }

    #[test]
    fn diverging_commits_and_going_back_are_caught() {
        let mut c = Checker::new(2);
        c.on_ready(
            1,
            &ready(vec![e(1, 1, 1)], Some(hs(1, 1, 1))),
            Role::Follower,
            1,
        )
        .unwrap();
        let err = c.on_ready(
            2,
            &ready(vec![e(1, 2, 1)], Some(hs(2, 2, 1))),
            Role::Follower,
            2,
        );
        assert!(err.unwrap_err().contains("state-machine safety"));
        let err = c.on_ready(1, &ready(vec![], Some(hs(1, 1, 0))), Role::Follower, 1);
        assert!(err.unwrap_err().contains("went back"));
        let err = c.on_ready(1, &ready(vec![], Some(hs(1, 2, 1))), Role::Follower, 1);
        assert!(err.unwrap_err().contains("vote in term 1 changed"));
    }

    #[test]
    fn new_leader_without_committed_entry_is_caught() {
        let mut c = Checker::new(2);
        c.on_ready(
            1,
            &ready(vec![e(1, 1, 1)], Some(hs(1, 1, 1))),
            Role::Follower,
            1,
        )
        .unwrap();
        c.on_ready(2, &ready(vec![], Some(hs(2, 2, 0))), Role::Leader, 2)
            .unwrap();
        let st = status(2, hs(2, 2, 0), Role::Leader, 0);
        let err = observe(&mut c, &st, &ConfState::new(&[1, 2]), at_zero);
        assert!(err.unwrap_err().contains("leader completeness"));
    }

    /// Node 1 leads term 1 of {1, 2, 3} with votes from 1 and 3.
    fn elected() -> (Checker, ConfState) {
        let mut c = Checker::new(3);
        let conf = ConfState::new(&[1, 2, 3]);
        for id in [1, 3] {
            let role = if id == 1 {
                Role::Leader
            } else {
                Role::Follower
            };
            c.on_ready(id, &ready(vec![], Some(hs(1, 1, 0))), role, 1)
                .unwrap();
        }
        let st = status(1, hs(1, 1, 0), Role::Leader, 0);
        observe(&mut c, &st, &conf, at_zero).unwrap();
        (c, conf)
    }

    #[test]
    fn a_commit_counting_an_unpersisted_copy_is_caught() {
        let (mut c, conf) = elected();
        // Entry 1 is persisted on node 2 only; the leader's own write is
        // still in progress, yet it commits: one copy of three.
        c.on_ready(
            2,
            &ready(vec![e(1, 1, 1)], Some(hs(1, 1, 0))),
            Role::Follower,
            1,
        )
        .unwrap();
        let mut st = status(1, hs(1, 1, 1), Role::Leader, 1);
        st.applied = 0;
        let ob = Observed {
            status: &st,
            last_term: Some(1),
            commit_term: Some(1),
            conf: &conf,
            writing: true,
        };
        let err = c.after_event(1, &ob).unwrap_err();
        assert!(err.contains("only nodes [2] have it persisted"), "{err}");
        // Once its own write has landed, two of three hold it.
        let (mut c, conf) = elected();
        for id in [1, 2] {
            c.on_ready(id, &ready(vec![e(1, 1, 1)], None), Role::Follower, 1)
                .unwrap();
        }
        c.views[0].commit = 1;
        observe(&mut c, &st, &conf, |i| (i <= 1).then_some(i)).unwrap();
    }

    #[test]
    fn a_joint_commit_needs_both_halves() {
        let (mut c, _) = elected();
        c.add_node(vec![]);
        c.add_node(vec![]);
        let joint = ConfState::new(&[1, 2, 3])
            .apply(&raft_core::ConfChange::Joint {
                voters: vec![1, 4, 5],
                learners: vec![],
            })
            .unwrap();
        for id in [1, 2, 3] {
            let entries = vec![conf_entry(1, 1, &joint)];
            c.on_ready(id, &ready(entries, None), Role::Follower, 1)
                .unwrap();
        }
        c.views[0].commit = 1;
        let st = status(1, hs(1, 1, 1), Role::Leader, 1);
        let err = observe(&mut c, &st, &joint, |i| (i <= 1).then_some(i)).unwrap_err();
        assert!(err.contains("no majority of each half"), "{err}");
    }

    #[test]
    fn votes_of_learners_do_not_elect_and_learners_do_not_campaign() {
        let mut c = Checker::new(3);
        c.add_node(vec![]);
        let conf = ConfState::new(&[1, 2, 3])
            .apply(&raft_core::ConfChange::AddLearner(4))
            .unwrap();
        for id in [1, 4] {
            let entries = vec![conf_entry(1, 1, &conf)];
            c.on_ready(id, &ready(entries, Some(hs(1, 1, 0))), Role::Follower, 1)
                .unwrap();
        }
        let st = status(1, hs(1, 1, 0), Role::Leader, 1);
        let err = observe(&mut c, &st, &conf, |i| (i <= 1).then_some(i)).unwrap_err();
        assert!(err.contains("persisted votes from [1, 4] only"), "{err}");
        let mut st = status(4, hs(1, 1, 0), Role::PreCandidate, 0);
        st.vote = Some(1);
        let mut c = Checker::new(3);
        c.add_node(vec![]);
        c.on_ready(4, &ready(vec![], Some(hs(1, 1, 0))), Role::Follower, 1)
            .unwrap();
        let err = observe(&mut c, &st, &ConfState::default(), at_zero).unwrap_err();
        assert!(err.contains("no voter"), "{err}");
    }

    #[test]
    fn a_configuration_not_from_the_log_is_caught() {
        let mut c = Checker::new(3);
        let st = status(1, HardState::default(), Role::Follower, 0);
        let other = ConfState::new(&[1, 2]);
        let err = observe(&mut c, &st, &other, at_zero).unwrap_err();
        assert!(err.contains("not the latest in the log"), "{err}");
    }
}
