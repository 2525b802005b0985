//! The checks that configurations bring (§6): a commit needs persisted
//! copies on a majority of each half of the leader's configuration (and a
//! configuration entry on one of the configuration it brings in), an
//! election persisted votes from a majority of each half of the winner's,
//! and a snapshot the configuration committed at its index.

use raft_core::{ConfState, Index, NodeId, Term};

use super::{Check, Checker};
use crate::confs::is_quorum;

impl Checker {
    /// A snapshot through `index` must carry the configuration committed
    /// there (§7: "the last configuration as of lastIncludedIndex").
    pub(super) fn check_snapshot_conf(&self, index: Index, conf: &ConfState) -> Check {
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

    /// Leader `leader` of `term` raised its commit index to `n` (an entry
    /// of term `n_term`): the nodes whose persisted logs hold that entry
    /// must be a majority of each half of `conf`, the configuration the
    /// leader counts with (the latest in its log, §6). Only what is
    /// persisted counts, the leader's own log included.
    pub(super) fn check_commit_quorum(
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
        let Some(holders) = self.holders_short_of_quorum(n, t, conf) else {
            return Ok(());
        };
        Err(format!(
            "leader {leader} of term {term} committed index {n}, but only nodes {holders:?} \
             have it persisted: no majority of each half of its configuration {conf:?}"
        ))
    }

    /// `None` when the nodes whose persisted logs hold entry `(index, term)`
    /// are a majority of each half of `conf`; otherwise those nodes.
    fn holders_short_of_quorum(
        &self,
        index: Index,
        term: Term,
        conf: &ConfState,
    ) -> Option<Vec<NodeId>> {
        let holds = |id: NodeId| {
            (id as usize)
                .checked_sub(1)
                .and_then(|i| self.views.get(i))
                .is_some_and(|v| v.holds(index, term))
        };
        if is_quorum(conf, holds) {
            return None;
        }
        Some(
            (1..=self.views.len() as NodeId)
                .filter(|&id| holds(id))
                .collect(),
        )
    }

    /// Configuration entry `x`, bringing in `conf`, was just seen committed
    /// (its term is in the committed prefix): it must be persisted on a
    /// majority of each half of `conf`. It committed while it was the
    /// latest configuration of its leader (raft-core takes one change at a
    /// time, and appends C_new only once C_old,new is committed), so that
    /// is the quorum its commit needed; persisted copies only grow, so
    /// checking when the commit is first seen is enough. The commit check
    /// in `after_event` sees a leader's configuration after the event, by
    /// when a leader that committed C_old,new has appended C_new: this
    /// check holds the joint entry to both halves.
    pub(super) fn check_conf_commit(&self, x: Index, conf: &ConfState) -> Check {
        let Some(t) = self.committed_term(x) else {
            return Ok(());
        };
        let Some(holders) = self.holders_short_of_quorum(x, t, conf) else {
            return Ok(());
        };
        Err(format!(
            "configuration entry {x} committed, but only nodes {holders:?} have it persisted: \
             no majority of each half of the configuration it brings in, {conf:?}"
        ))
    }

    /// A new leader of `term` was elected with the persisted votes of a
    /// majority of each half of its configuration, and is a voter of it.
    pub(super) fn check_election_quorum(
        &self,
        leader: NodeId,
        term: Term,
        conf: &ConfState,
    ) -> Check {
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
}
