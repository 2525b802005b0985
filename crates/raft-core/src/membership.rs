//! Membership changes and leadership transfer, on the node.
//!
//! The node keeps the configuration of its snapshot and every configuration
//! entry after it, so the configuration in force is always the latest in
//! its log (§6: "a server always uses the latest configuration in its log,
//! regardless of whether the entry is committed"), and a truncated entry
//! takes its configuration with it.
//!
//! Leadership transfer (thesis §3.10): the leader stops taking proposals,
//! brings the target's log up to date, and sends it TimeoutNow; the target
//! campaigns at once, without PreVote, and voters grant it their vote even
//! while they hear from the current leader. A transfer that has not finished
//! after an election timeout is abandoned and proposals resume.

use bytes::Bytes;

use crate::conf::{ConfChange, ConfChangeError, ConfEntry, ConfState};
use crate::error::Error;
use crate::message::Body;
use crate::node::{Node, Role};
use crate::storage::Storage;
use crate::types::{Entry, EntryKind, Index, NodeId, Term};

/// The configurations a node's log holds: the snapshot's, then one per
/// configuration entry after it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConfLog {
    /// In force at the snapshot's index.
    base: ConfState,
    /// `(index, configuration)` of each configuration entry after it.
    entries: Vec<(Index, ConfState)>,
}

impl ConfLog {
    pub(crate) fn new(base: ConfState) -> Self {
        ConfLog {
            base,
            entries: Vec::new(),
        }
    }

    /// The configuration in force: the latest in the log.
    pub(crate) fn current(&self) -> &ConfState {
        self.entries.last().map_or(&self.base, |(_, c)| c)
    }

    /// The index of the latest configuration entry (0 if none after the snapshot).
    pub(crate) fn last_index(&self) -> Index {
        self.entries.last().map_or(0, |&(i, _)| i)
    }

    /// The configuration in force at `index`.
    pub(crate) fn at(&self, index: Index) -> &ConfState {
        self.entries
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, c)| c)
    }

    /// Entries from `from` on were replaced by `new`: forget configurations
    /// at or after `from`, then record the ones `new` brings.
    pub(crate) fn appended(&mut self, from: Index, new: &[Entry]) {
        self.entries.retain(|&(i, _)| i < from);
        for e in new.iter().filter(|e| e.kind == EntryKind::Config) {
            // A configuration entry that does not decode changes nothing; the
            // door and the leader only ever produce decodable ones.
            if let Some(c) = ConfEntry::decode(&e.data) {
                self.entries.push((e.index, c.conf));
            }
        }
    }

    /// The log was compacted through `index`: fold what it covers into the base.
    pub(crate) fn compacted(&mut self, index: Index) {
        self.base = self.at(index).clone();
        self.entries.retain(|&(i, _)| i > index);
    }
}

impl<S: Storage> Node<S> {
    /// The configuration in force (the latest in this node's log).
    pub fn conf(&self) -> &ConfState {
        self.confs.current()
    }

    /// Proposes a membership change (§6). Single-server changes take one
    /// entry; [`ConfChange::Joint`] moves through C_old,new, and the leader
    /// appends C_new by itself once the joint entry commits. `context` is
    /// handed to the application with the committed entry (an address, say).
    ///
    /// Refused with [`Error::ConfChange`] while another change is
    /// uncommitted, before an entry of this leader's term has committed (the
    /// 2015 raft-dev erratum), during a leadership transfer, or when the
    /// change does not fit the configuration.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
        context: Vec<u8>,
    ) -> Result<(Index, Term), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.transferee.is_some() {
            return Err(ConfChangeError::Transferring.into());
        }
        if self.confs.last_index() > self.log.committed() {
            return Err(ConfChangeError::Pending.into());
        }
        if !self.committed_in_term() {
            return Err(ConfChangeError::TermNotCommitted.into());
        }
        if change == ConfChange::LeaveJoint {
            return Err(ConfChangeError::LeaveIsAutomatic.into());
        }
        let conf = self.conf().apply(&change)?;
        Ok(self.append_conf(change, conf, context))
    }

    /// Appends a configuration entry, which takes effect at once.
    fn append_conf(
        &mut self,
        change: ConfChange,
        conf: ConfState,
        context: Vec<u8>,
    ) -> (Index, Term) {
        let index = self.log.last_index() + 1;
        let data = ConfEntry {
            change,
            conf,
            context,
        }
        .encode();
        self.append_own(Entry {
            index,
            term: self.term,
            kind: EntryKind::Config,
            data: Bytes::from(data),
        });
        (index, self.term)
    }

    /// Whether appending `new` from `from` on changes the configurations:
    /// it holds a configuration entry, or replaces one.
    pub(crate) fn touches_confs(&self, from: Index, new: &[Entry]) -> bool {
        self.confs.last_index() >= from || new.iter().any(|e| e.kind == EntryKind::Config)
    }

    /// Entries from `from` on were replaced by `new` (appended by this
    /// leader or received from one): configurations follow the log.
    pub(crate) fn log_appended(&mut self, from: Index, new: &[Entry]) {
        if self.touches_confs(from, new) {
            self.confs.appended(from, new);
            self.conf_changed();
        }
    }

    /// The log was replaced by a snapshot (and the tail kept after it): the
    /// configuration is the snapshot's, then any entries in that tail.
    pub(crate) fn log_restored(&mut self, base: ConfState) -> Result<(), Error> {
        // A snapshot made without a configuration stands for the bootstrap one.
        let base = if base.voters.is_empty() {
            ConfState::new(&self.cfg.voters)
        } else {
            base
        };
        self.confs = ConfLog::new(base);
        // Read the log a bounded slice at a time: a restart may find a long one.
        let (mut lo, hi) = (self.log.first_index(), self.log.last_index() + 1);
        while lo < hi {
            let chunk = self.log.entries(lo, hi, 16 << 20)?;
            let Some(last) = chunk.last().map(|e| e.index) else {
                break;
            };
            self.confs.appended(lo, &chunk);
            lo = last + 1;
        }
        self.conf_changed();
        Ok(())
    }

    /// The configuration in force changed: follow it.
    pub(crate) fn conf_changed(&mut self) {
        let conf = self.confs.current().clone();
        let leading = self.role == Role::Leader;
        self.tracker
            .set_conf(conf, self.log.last_index() + 1, leading);
        if leading {
            // New members hear from the leader at once.
            self.pending_send = true;
            // The configuration counts from when it is appended (thesis
            // §4.1): a smaller majority may already hold what the old one
            // did not.
            self.maybe_commit();
        }
        // A transfer's target stays a voter: during a transfer proposals are
        // refused and leaving a joint configuration waits (`after_commit`).
    }

    /// After the commit index moved on the leader: leave a committed joint
    /// configuration (§6), and step down once a configuration without this
    /// leader as a voter has committed.
    pub(crate) fn after_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let committed = self.log.committed();
        if self.confs.last_index() > committed {
            return;
        }
        // Not while a transfer is under way: its target was sent TimeoutNow
        // on holding the whole log, and a new entry now would make its
        // campaign fail. The new leader appends C_new itself once its first
        // entry commits; an abandoned transfer comes back here.
        if self.transferee.is_some() {
            return;
        }
        // Read in place: this runs on every commit, and a copy of the
        // configuration would allocate.
        if self.conf().is_joint() {
            let next = self
                .conf()
                .apply(&ConfChange::LeaveJoint)
                .expect("a joint configuration can always be left");
            self.append_conf(ConfChange::LeaveJoint, next, Vec::new());
        } else if !self.conf().is_voter(self.id) {
            self.hand_over();
        }
    }

    /// This leader is no voter of the committed configuration: tell the
    /// members the commit index, hand leadership to a caught-up voter at
    /// once (thesis §3.10) rather than leave them to an election timeout,
    /// and step down (thesis §4.2.2).
    fn hand_over(&mut self) {
        let last = self.log.last_index();
        let committed = self.log.committed();
        for to in self.tracker.peers() {
            let commit = self.match_index(to).unwrap_or(0).min(committed);
            self.send(to, self.term, Body::Heartbeat { commit, ctx: 0 });
        }
        let successor = self
            .tracker
            .voter_peers()
            .into_iter()
            .find(|&v| self.match_index(v) == Some(last));
        if let Some(to) = successor {
            self.send(to, self.term, Body::TimeoutNow);
        }
        self.become_follower(self.term, None);
    }

    /// Starts handing leadership to `to` (thesis §3.10). Proposals are
    /// refused until it is done or abandoned (after an election timeout).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id || !self.tracker.is_voter(to) {
            return Err(Error::BadTransferTarget(to));
        }
        self.transferee = Some(to);
        self.transfer_elapsed = 0;
        // A target campaigning on TimeoutNow is granted votes under any lease,
        // so no lease of this term can be trusted from now on.
        self.read_only_lease_off();
        self.try_finish_transfer(to)
    }

    /// Sends TimeoutNow once `to` holds the whole log, or what it lacks first.
    pub(crate) fn try_finish_transfer(&mut self, to: NodeId) -> Result<(), Error> {
        if self.transferee != Some(to) {
            return Ok(());
        }
        let caught_up = self.match_index(to) == Some(self.log.last_index());
        if caught_up {
            self.send(to, self.term, Body::TimeoutNow);
            Ok(())
        } else {
            self.send_append(to, true).map(drop)
        }
    }

    /// Counts a leader tick of a transfer; abandons it after an election timeout.
    pub(crate) fn tick_transfer(&mut self) {
        if self.transferee.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.cfg.election_tick {
                self.transferee = None;
                // What waited for the transfer (leaving a joint
                // configuration, stepping down) goes on now.
                self.after_commit();
            }
        }
    }

    /// TimeoutNow from our leader: campaign at once, skipping PreVote, and
    /// ask voters to disregard the current leader's lease (thesis §3.10).
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) -> Result<(), Error> {
        if self.role != Role::Follower
            || self.leader != Some(from)
            || !self.tracker.is_voter(self.id)
        {
            return Ok(());
        }
        self.start_election(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf_entry(index: Index, voters: &[NodeId]) -> Entry {
        let data = ConfEntry {
            change: ConfChange::AddVoter(voters[voters.len() - 1]),
            conf: ConfState::new(voters),
            context: Vec::new(),
        }
        .encode();
        Entry {
            index,
            term: 1,
            kind: EntryKind::Config,
            data: Bytes::from(data),
        }
    }

    /// Configurations at 5 ({1,2,3,4}) and 10 ({1,2,3,4,5}) over a base of {1,2,3}.
    fn two_changes() -> ConfLog {
        let mut confs = ConfLog::new(ConfState::new(&[1, 2, 3]));
        confs.appended(5, &[conf_entry(5, &[1, 2, 3, 4])]);
        confs.appended(10, &[conf_entry(10, &[1, 2, 3, 4, 5])]);
        confs
    }

    #[test]
    fn a_replaced_suffix_takes_its_configurations_with_it() {
        let mut confs = two_changes();
        confs.appended(8, &[Entry::normal(8, 2, vec![])]);
        assert_eq!(confs.current(), &ConfState::new(&[1, 2, 3, 4]));
        assert_eq!(confs.last_index(), 5);
        confs.appended(3, &[]);
        assert_eq!(confs.current(), &ConfState::new(&[1, 2, 3]));
        assert_eq!(confs.last_index(), 0);
    }

    #[test]
    fn compaction_folds_covered_configurations_into_the_base() {
        let mut confs = two_changes();
        confs.compacted(7);
        assert_eq!(confs.base, ConfState::new(&[1, 2, 3, 4]));
        assert_eq!(confs.entries.len(), 1, "only the entry after 7 is kept");
        assert_eq!(confs.current(), &ConfState::new(&[1, 2, 3, 4, 5]));
        assert_eq!(confs.at(8), &ConfState::new(&[1, 2, 3, 4]));
        // Compacting through the last one leaves the base alone in the log.
        confs.compacted(10);
        assert_eq!(confs.base, ConfState::new(&[1, 2, 3, 4, 5]));
        assert!(confs.entries.is_empty());
        assert_eq!(confs.last_index(), 0);
    }
}
