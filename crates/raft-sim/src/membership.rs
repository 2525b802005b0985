//! Membership changes (§6, thesis chapter 4) and leadership transfer
//! (thesis §3.10) in the simulator, and the harness's vocabulary for them:
//! add a server, add it as a learner, promote it, remove a member, move to
//! any configuration through joint consensus, hand leadership over, and wait
//! until a configuration commits.
//!
//! The blocking calls ([`Cluster::change`] and the names built on it) act
//! like the lab's `one()`: find the leader, propose, wait for the commit,
//! and try again (at the next leader, if need be) until the committed
//! configuration shows the change, or fail after 10 s of virtual time. A
//! leader refuses changes until an entry of its term has committed (the
//! raft-dev erratum); without `noop_on_election` the harness then proposes
//! an empty command for it. "Committed" is the checker's view: the configuration in force at the
//! highest index any node has persisted as committed.

use raft_core::{ConfChange, ConfChangeError, ConfState, Error, Index, NodeId, Term};

use crate::error::{FailureKind, SimError};
use crate::factory::StorageFactory;
use crate::harness::Cluster;
use crate::sim::Sim;
use crate::trace::Event;

/// Virtual time a blocking membership call may take, in ms.
const CHANGE_TIMEOUT_MS: u64 = 10_000;

/// How long to wait for one proposed change to commit before trying again.
const COMMIT_WAIT_MS: u64 = 2_000;

/// Membership requests, as the simulator offers them.
impl<F: StorageFactory> Sim<F> {
    /// Proposes `change` at node `id`. The outer error is the run's; the
    /// inner one is the core's answer (not the leader, another change
    /// pending, no entry of the leader's term committed yet, a change that
    /// does not fit the configuration...).
    pub fn propose_conf_change(
        &mut self,
        id: NodeId,
        change: ConfChange,
    ) -> Result<Result<(Index, Term), Error>, SimError> {
        let Some(node) = self.node_mut(id) else {
            return Ok(Err(Error::NotLeader { leader: None }));
        };
        match node.propose_conf_change(change, Vec::new()) {
            Ok((index, term)) => {
                self.events += 1;
                self.record(Some(id), Event::ConfChange { index });
                self.drive(id)?;
                Ok(Ok((index, term)))
            }
            Err(e @ Error::Storage(_)) => Err(self.fail(FailureKind::Core {
                node: id,
                source: e,
            })),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Asks node `id` to hand leadership to `to` (thesis §3.10). The inner
    /// error is the core's answer (not the leader, or `to` is no other voter).
    pub fn transfer_leader(
        &mut self,
        id: NodeId,
        to: NodeId,
    ) -> Result<Result<(), Error>, SimError> {
        let Some(node) = self.node_mut(id) else {
            return Ok(Err(Error::NotLeader { leader: None }));
        };
        match node.transfer_leader(to) {
            Ok(()) => {
                self.events += 1;
                self.record(Some(id), Event::Transfer { to });
                self.drive(id)?;
                Ok(Ok(()))
            }
            Err(e @ Error::Storage(_)) => Err(self.fail(FailureKind::Core {
                node: id,
                source: e,
            })),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// Whether `conf` (not joint) already is what `change` asks for.
pub fn shows(change: &ConfChange, conf: &ConfState) -> bool {
    if conf.is_joint() {
        return false;
    }
    match change {
        ConfChange::AddLearner(id) => conf.is_learner(*id),
        ConfChange::AddVoter(id) => conf.is_voter(*id),
        ConfChange::Remove(id) => !conf.contains(*id),
        ConfChange::Joint { voters, learners } => {
            let target = ConfState::new(voters);
            let mut learners = learners.clone();
            learners.sort_unstable();
            conf.voters == target.voters && conf.learners == learners
        }
        ConfChange::LeaveJoint => true,
    }
}

/// Refusals that pass: another leader, another change or a transfer under
/// way, the leader's term not yet committed, a joint change not yet left.
fn retry_later(e: &Error) -> bool {
    matches!(
        e,
        Error::NotLeader { .. }
            | Error::ConfChange(
                ConfChangeError::Pending
                    | ConfChangeError::TermNotCommitted
                    | ConfChangeError::Transferring
                    | ConfChangeError::InJoint
            )
    )
}

/// The harness's vocabulary for membership.
impl<F: StorageFactory> Cluster<F> {
    /// The leader of the newest term among running, connected servers.
    pub fn leader(&self) -> Option<NodeId> {
        (1..=self.n() as NodeId)
            .filter(|&id| self.is_connected(id))
            .filter_map(|id| self.get_state(id).filter(|s| s.1).map(|(t, _)| (t, id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Starts a new server (the next id), connected, with no configuration.
    pub fn add_server(&mut self) -> Result<NodeId, SimError> {
        self.sim.add_server()
    }

    /// Stops server `id` for good (see [`Sim::retire`]).
    pub fn retire(&mut self, id: NodeId) {
        self.sim.retire(id);
    }

    /// Every server not retired.
    pub fn servers(&self) -> Vec<NodeId> {
        self.sim.servers()
    }

    /// The committed configuration (the checker's view).
    pub fn committed_conf(&self) -> ConfState {
        self.sim.checker().committed_conf().clone()
    }

    /// Every member of the committed configuration, learners included.
    pub fn members(&self) -> Vec<NodeId> {
        self.committed_conf().members()
    }

    /// Whether running node `id` holds everything the leader has committed.
    pub fn caught_up(&self, id: NodeId) -> bool {
        let Some(l) = self.leader().and_then(|l| self.sim.node(l)) else {
            return false;
        };
        let commit = l.status().commit;
        self.sim.node(id).is_some_and(|n| n.last_index() >= commit)
    }

    /// Waits up to `ms` until every node of `ids` has applied through `index`.
    pub fn wait_applied(&mut self, ms: u64, ids: &[NodeId], index: Index) -> Result<(), SimError> {
        let what = format!("nodes {ids:?} to apply through {index}");
        self.wait_for(ms, &what, |c| {
            ids.iter()
                .all(|&id| c.sim.apps().node(id).last_applied >= index)
        })
    }

    /// Adds server `id` as a learner; returns the index of the change.
    pub fn add_learner(&mut self, id: NodeId) -> Result<Index, SimError> {
        self.change(ConfChange::AddLearner(id))
    }

    /// Makes `id` a voter (a learner promoted, or a server added directly).
    pub fn promote(&mut self, id: NodeId) -> Result<Index, SimError> {
        self.change(ConfChange::AddVoter(id))
    }

    /// Removes member `id` (its server keeps running until retired).
    pub fn remove(&mut self, id: NodeId) -> Result<Index, SimError> {
        self.change(ConfChange::Remove(id))
    }

    /// Moves to `voters` and `learners` through C_old,new (§6); returns once
    /// C_new has committed, with its index.
    pub fn joint(&mut self, voters: &[NodeId], learners: &[NodeId]) -> Result<Index, SimError> {
        self.change(ConfChange::Joint {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
        })
    }

    /// Gets `change` committed: proposes it at the leader, waits for it,
    /// tries again where refused or lost, until the committed configuration
    /// shows it. Returns the index of the configuration entry that did.
    pub fn change(&mut self, change: ConfChange) -> Result<Index, SimError> {
        let deadline = self.sim.now() + CHANGE_TIMEOUT_MS * crate::clock::MS;
        loop {
            if shows(&change, self.sim.checker().committed_conf()) {
                let at = self.sim.checker().committed_confs().last();
                return Ok(at.map_or(0, |(i, _)| *i));
            }
            if self.sim.now() >= deadline {
                return Err(self.fatal(format!(
                    "after {CHANGE_TIMEOUT_MS} ms, {change:?} is still not committed (committed: {:?})",
                    self.committed_conf()
                )));
            }
            let Some(leader) = self.leader() else {
                self.run_for(50)?;
                continue;
            };
            match self.sim.propose_conf_change(leader, change.clone())? {
                Ok((index, _)) => {
                    let wait = COMMIT_WAIT_MS;
                    let what = format!("entry {index} to commit");
                    // A lost entry is proposed again below.
                    let _ =
                        self.wait_for(wait, &what, |c| c.sim.checker().committed_index() >= index);
                    self.run_for(10)?;
                }
                Err(Error::ConfChange(ConfChangeError::TermNotCommitted)) => {
                    // Without `noop_on_election` a new leader has no entry
                    // of its term until a command commits: propose one.
                    self.sim.propose(leader, Vec::new())?;
                    self.run_for(20)?;
                }
                Err(e) if retry_later(&e) => self.run_for(20)?,
                Err(e) => {
                    return Err(self.fatal(format!("{change:?} refused: {e}")));
                }
            }
        }
    }

    /// Runs one event at a time until `done` holds, to act at an exact
    /// point (say, just after the leader commits C_old,new); fails after
    /// `ms` of virtual time, naming `what`.
    pub fn step_until(
        &mut self,
        ms: u64,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), SimError> {
        let deadline = self.sim.now() + ms * crate::clock::MS;
        while !done(self) {
            match self.sim.next_time() {
                Some(t) if t <= deadline => {
                    if let Some(task) = self.sim.step()? {
                        self.poll_task(task)?;
                    }
                }
                _ => return Err(self.fatal(format!("after {ms} ms, still waiting for {what}"))),
            }
        }
        Ok(())
    }

    /// Waits up to `ms` until the committed configuration satisfies `done`.
    pub fn wait_conf(
        &mut self,
        ms: u64,
        what: &str,
        done: impl Fn(&ConfState) -> bool,
    ) -> Result<(), SimError> {
        self.wait_for(ms, what, |c| done(c.sim.checker().committed_conf()))
    }

    /// Asks the current leader to hand leadership to `to`; returns the old
    /// leader. Fails if there is no leader or the core refuses.
    pub fn start_transfer(&mut self, to: NodeId) -> Result<NodeId, SimError> {
        let Some(leader) = self.leader() else {
            return Err(self.fatal(format!("no leader to transfer leadership to {to}")));
        };
        match self.sim.transfer_leader(leader, to)? {
            Ok(()) => Ok(leader),
            Err(e) => Err(self.fatal(format!("transfer from {leader} to {to} refused: {e}"))),
        }
    }

    /// Hands leadership to `to` and waits until it leads, starting again
    /// (at whoever leads) after a transfer that was abandoned; fails after
    /// 10 s. Returns the virtual ms from the first request.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<u64, SimError> {
        let t0 = self.sim.now();
        let deadline = t0 + CHANGE_TIMEOUT_MS * crate::clock::MS;
        while self.leader() != Some(to) {
            if self.sim.now() >= deadline {
                return Err(self.fatal(format!("after {CHANGE_TIMEOUT_MS} ms, {to} does not lead")));
            }
            match self.leader() {
                Some(l) => match self.sim.transfer_leader(l, to)? {
                    Ok(()) => {
                        let _ = self.wait_for(1_000, "the transfer", |c| c.leader() == Some(to));
                    }
                    Err(Error::NotLeader { .. }) => self.run_for(20)?,
                    Err(e) => return Err(self.fatal(format!("transfer to {to} refused: {e}"))),
                },
                None => self.run_for(50)?,
            }
        }
        Ok((self.sim.now() - t0) / crate::clock::MS)
    }
}
