//! Membership changes and leadership transfer on the driver thread.
//!
//! - An admin call is checked against the configuration in force (the
//!   latest in the log, §6) and proposed with `Node::propose_conf_change`
//!   (or `Node::transfer_leader`); its caller waits.
//! - A change is answered once its entry is applied (committed); a joint
//!   change once the leader's C_new that follows it is applied, so the
//!   answer always describes a finished change. A leader that loses its
//!   leadership first answers "lost" (the entry may still commit).
//! - A transfer is answered once this node sees the target lead, or
//!   "failed" when raft-core abandoned it (after an election timeout).
//! - Addresses: a configuration entry's context is read when the entry
//!   reaches the log ([`Driver::learn`]): the transport gets a link to the
//!   new member at once. When the entry is applied the member table
//!   ([`MemberTable`]) follows it, and removed members' links are closed.
//!   Snapshots carry the table ([`members::wrap_snapshot`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raft_core::{
    ConfChange, ConfEntry, ConfState, Entry, EntryKind, Index, NodeId, Snapshot, Term,
};
use raft_kv::Replies;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::admin::{
    AdminError, AdminReply, AdminRequest, MemberInfo, MembersReport, TransferReport,
    CATCH_UP_ENTRIES,
};
use crate::config::PeerAddrs;
use crate::driver::{Driver, ReplyTo};
use crate::members::{self, MemberTable};
use crate::server::ServerError;
use crate::status::LeaderRef;

/// What an admin caller gets back.
pub(crate) type AdminResult = Result<AdminReply, AdminError>;

/// How long a transfer may take before it is reported failed: raft-core
/// abandons it after one election timeout; the target's election needs
/// about one round trip more.
const TRANSFER_WAIT_TIMEOUTS: u32 = 3;

/// The driver's membership bookkeeping.
pub(crate) struct Reconfig {
    /// The member table as of `applied` (what a snapshot there carries).
    pub table: MemberTable,
    /// The configuration as of `applied`.
    applied_conf: ConfState,
    /// The last configuration entry's index folded into `table`.
    applied: Index,
    changes: Vec<PendingChange>,
    transfer: Option<PendingTransfer>,
}

struct PendingChange {
    index: Index,
    term: Term,
    /// A joint change: answered when C_new is applied, not C_old,new.
    joint: bool,
    since: Instant,
    reply: oneshot::Sender<AdminResult>,
}

struct PendingTransfer {
    from: NodeId,
    to: NodeId,
    term: Term,
    since: Instant,
    reply: oneshot::Sender<AdminResult>,
}

impl Reconfig {
    /// The configuration as of the last entry applied: the one a snapshot
    /// at the applied index carries.
    pub(crate) fn applied_conf(&self) -> &ConfState {
        &self.applied_conf
    }

    /// The bookkeeping of a node whose state machine is at `applied`, with
    /// the configuration and member table in force there.
    pub fn new(table: MemberTable, conf: ConfState, applied: Index) -> Self {
        Reconfig {
            table,
            applied_conf: conf,
            applied,
            changes: Vec::new(),
            transfer: None,
        }
    }
}

impl Driver {
    /// Takes one admin call: answers it at once, or proposes and keeps it.
    pub(crate) fn on_admin(&mut self, request: AdminRequest, reply: oneshot::Sender<AdminResult>) {
        let result = match request {
            AdminRequest::Members => Ok(AdminReply::Members(self.members_report(false))),
            AdminRequest::TransferLeader(to) => return self.start_transfer(to, reply),
            change => match self.propose_change(change) {
                Ok(Some((index, term, joint))) => {
                    self.reconfig.changes.push(PendingChange {
                        index,
                        term,
                        joint,
                        since: Instant::now(),
                        reply,
                    });
                    return;
                }
                Ok(None) => Ok(AdminReply::Members(self.members_report(false))),
                Err(e) => Err(e),
            },
        };
        let _ = reply.send(result);
    }

    /// Proposes a change; `None` when the configuration already is so.
    fn propose_change(
        &mut self,
        request: AdminRequest,
    ) -> Result<Option<(Index, Term, bool)>, AdminError> {
        if !self.node.is_leader() {
            return Err(AdminError::NotLeader {
                leader: self.node.leader(),
            });
        }
        let conf = self.node.conf().clone();
        // What is committed (applied): a change is "already done" only there.
        let committed = self.reconfig.applied_conf.clone();
        let pending =
            || AdminError::ChangeInProgress("the configuration has an uncommitted change".into());
        let (change, context) = match request {
            AdminRequest::AddLearner {
                id,
                addrs,
                cluster_id,
            } => {
                if let Some(found) = cluster_id.filter(|c| *c != self.cluster_id) {
                    return Err(AdminError::WrongCluster {
                        found,
                        expected: self.cluster_id.clone(),
                    });
                }
                if self.reconfig.table.retired.contains(&id) {
                    return Err(AdminError::Retired(id));
                }
                if conf.contains(id) {
                    let known = self.peers.read().expect("book lock").get(&id).cloned();
                    return match known {
                        Some(a) if a != addrs => Err(AdminError::AlreadyMember(
                            id,
                            format!("at {}/{}", a.raft, a.client),
                        )),
                        // Done once the entry that added it has committed.
                        _ if committed.contains(id) => Ok(None),
                        _ => Err(AdminError::ChangeInProgress(format!(
                            "the change adding node {id} is not committed yet"
                        ))),
                    };
                }
                let context = members::encode_context(id, &addrs);
                (ConfChange::AddLearner(id), context)
            }
            AdminRequest::Promote(ids) => {
                self.check_ids(&conf, &ids)?;
                let new: Vec<NodeId> = ids.into_iter().filter(|&id| !conf.is_voter(id)).collect();
                if new.is_empty() {
                    return if conf == committed {
                        Ok(None)
                    } else {
                        Err(pending())
                    };
                }
                let last = self.node.last_index();
                for &id in &new {
                    let matched = self.node.match_index(id).unwrap_or(0);
                    if matched == 0 || matched + CATCH_UP_ENTRIES < last {
                        return Err(AdminError::NotCaughtUp { id, matched, last });
                    }
                }
                match new[..] {
                    [id] => (ConfChange::AddVoter(id), Vec::new()),
                    _ => {
                        let mut voters = conf.voters.clone();
                        voters.extend(&new);
                        let learners = without(&conf.learners, &new);
                        (ConfChange::Joint { voters, learners }, Vec::new())
                    }
                }
            }
            AdminRequest::Remove(ids) => {
                self.check_ids(&conf, &ids)?;
                let gone: Vec<NodeId> = ids.into_iter().filter(|&id| conf.contains(id)).collect();
                match gone[..] {
                    [] if conf == committed => return Ok(None),
                    [] => return Err(pending()),
                    [id] => (ConfChange::Remove(id), Vec::new()),
                    _ => {
                        let voters = without(&conf.voters, &gone);
                        let learners = without(&conf.learners, &gone);
                        (ConfChange::Joint { voters, learners }, Vec::new())
                    }
                }
            }
            AdminRequest::Members | AdminRequest::TransferLeader(_) => return Ok(None),
        };
        if self.reconfig.transfer.is_some() {
            return Err(AdminError::TransferInProgress);
        }
        let joint = matches!(change, ConfChange::Joint { .. });
        info!("proposing membership change {change:?}");
        let (index, term) = self.node.propose_conf_change(change, context)?;
        Ok(Some((index, term, joint)))
    }

    /// Every id must be a member, or a retired one (a repeated removal).
    fn check_ids(&self, conf: &ConfState, ids: &[NodeId]) -> Result<(), AdminError> {
        if ids.is_empty() {
            return Err(AdminError::BadChange("no node ids given".into()));
        }
        let retired = &self.reconfig.table.retired;
        match ids
            .iter()
            .find(|&&id| !conf.contains(id) && !retired.contains(&id))
        {
            Some(&id) => Err(AdminError::UnknownNode(id)),
            None => Ok(()),
        }
    }

    fn start_transfer(&mut self, to: Option<NodeId>, reply: oneshot::Sender<AdminResult>) {
        match self.begin_transfer(to) {
            Ok(Ok(done)) => {
                let _ = reply.send(Ok(AdminReply::Transferred(done)));
            }
            Ok(Err(to)) => {
                self.reconfig.transfer = Some(PendingTransfer {
                    from: self.node.id(),
                    to,
                    term: self.node.term(),
                    since: Instant::now(),
                    reply,
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Starts a transfer: `Ok(Ok(_))` when there is nothing to do (`to`
    /// already leads), `Ok(Err(to))` when it is under way.
    fn begin_transfer(
        &mut self,
        to: Option<NodeId>,
    ) -> Result<Result<TransferReport, NodeId>, AdminError> {
        let me = self.node.id();
        if !self.node.is_leader() {
            return Err(AdminError::NotLeader {
                leader: self.node.leader(),
            });
        }
        if self.reconfig.transfer.is_some() {
            return Err(AdminError::TransferInProgress);
        }
        let to = match to {
            Some(to) => to,
            // The voter with the most of the log: the quickest to finish.
            None => self
                .node
                .conf()
                .voters
                .iter()
                .filter(|&&v| v != me)
                .max_by_key(|&&v| self.node.match_index(v))
                .copied()
                .ok_or(AdminError::BadTransferTarget(me))?,
        };
        if to == me {
            return Ok(Ok(TransferReport {
                from: me,
                to,
                term: self.node.term(),
                changed: false,
            }));
        }
        info!("handing leadership to node {to}");
        self.node.transfer_leader(to)?;
        Ok(Err(to))
    }

    /// Config entries reached this node's log (appended by this leader or
    /// received): the members they add get a link at once, so a leader can
    /// replicate to a new member before the change commits.
    pub(crate) fn learn(&mut self, entries: &[Entry]) {
        for e in entries.iter().filter(|e| e.kind == EntryKind::Config) {
            let Some(added) =
                ConfEntry::decode(&e.data).and_then(|c| members::decode_context(&c.context))
            else {
                continue;
            };
            self.add_address(added.0, added.1);
        }
    }

    /// Records a member's addresses in the book and gives it a link.
    pub(crate) fn add_address(&mut self, id: NodeId, addrs: PeerAddrs) {
        if self.reconfig.table.retired.contains(&id) {
            return;
        }
        self.transport.add_peer(id, &addrs.raft);
        let mut book = self.peers.write().expect("book lock");
        book.entry(id).or_insert(addrs);
    }

    /// A snapshot from the leader: its member table replaces ours, and the
    /// state machine is restored from the image behind it.
    pub(crate) fn install(&mut self, snap: &Snapshot) -> Result<Replies<ReplyTo>, ServerError> {
        if snap.meta.index <= self.service.store().applied() {
            return Ok(Vec::new());
        }
        let (table, image) = members::unwrap_snapshot(&snap.data)
            .map_err(|e| ServerError::Snapshot(e.to_string()))?;
        let inner = Snapshot {
            meta: snap.meta,
            conf: snap.conf.clone(),
            data: image.to_vec(),
        };
        let out = self
            .service
            .restore(&inner)
            .map_err(ServerError::StateMachine)?;
        if let Some(table) = table {
            for (&id, addrs) in &table.addrs {
                self.add_address(id, addrs.clone());
            }
            for &id in &table.retired {
                self.retire(id);
            }
            self.reconfig.table = table;
        }
        self.reconfig.applied_conf = snap.conf.clone();
        self.reconfig.applied = snap.meta.index;
        Ok(out)
    }

    fn retire(&mut self, id: NodeId) {
        if id == self.node.id() {
            return;
        }
        self.transport.remove_peer(id);
        self.peers.write().expect("book lock").remove(&id);
    }

    /// After `entries` were applied: the member table follows each config
    /// entry, and the calls waiting on them are answered.
    pub(crate) fn applied(&mut self, entries: &[Entry]) {
        for e in entries {
            if e.index <= self.reconfig.applied {
                continue;
            }
            if e.kind == EntryKind::Config {
                if let Some(c) = ConfEntry::decode(&e.data) {
                    let gone = self.reconfig.table.apply(&c, &self.reconfig.applied_conf);
                    for id in gone {
                        info!("node {id} left the cluster");
                        self.retire(id);
                    }
                    if let Some((id, addrs)) = members::decode_context(&c.context) {
                        self.add_address(id, addrs);
                    }
                    info!(
                        index = e.index,
                        "configuration applied: voters {:?}, learners {:?}{}",
                        c.conf.voters,
                        c.conf.learners,
                        if c.conf.is_joint() {
                            format!(", joint with {:?}", c.conf.voters_outgoing)
                        } else {
                            String::new()
                        }
                    );
                    self.reconfig.applied_conf = c.conf;
                }
                self.reconfig.applied = e.index;
            }
            self.settle_changes(e);
        }
    }

    /// Answers the changes `e` settles.
    fn settle_changes(&mut self, e: &Entry) {
        if self.reconfig.changes.is_empty() {
            return;
        }
        let joint_now = self.reconfig.applied_conf.is_joint();
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for p in std::mem::take(&mut self.reconfig.changes) {
            let result = if e.index < p.index {
                None
            } else if e.index == p.index && (e.kind != EntryKind::Config || e.term != p.term) {
                Some(Err(AdminError::Lost {
                    leader: self.node.leader(),
                }))
            } else if p.joint && joint_now {
                None // C_old,new committed; C_new is on its way.
            } else {
                Some(Ok(()))
            };
            match result {
                None => keep.push(p),
                Some(r) => done.push((p, r)),
            }
        }
        self.reconfig.changes = keep;
        for (p, r) in done {
            let r = r.map(|()| AdminReply::Members(self.members_report(true)));
            let _ = p.reply.send(r);
        }
    }

    /// After each turn: a leader that lost its leadership answers its
    /// waiting changes "lost"; a transfer is answered once the target
    /// leads, or failed after its time; calls past the request timeout
    /// are answered "timeout".
    pub(crate) fn reconfig_turn(&mut self) {
        let leader = self.node.leader();
        if !self.node.is_leader() && !self.reconfig.changes.is_empty() {
            for p in self.reconfig.changes.drain(..) {
                let _ = p.reply.send(Err(AdminError::Lost { leader }));
            }
        }
        let timeout = self.cfg.request_timeout;
        let (now, mut late) = (Instant::now(), Vec::new());
        self.reconfig.changes.retain_mut(|p| {
            let expired = now.duration_since(p.since) > timeout;
            if expired {
                late.push(std::mem::replace(&mut p.reply, oneshot::channel().0));
            }
            !expired
        });
        for reply in late {
            let _ = reply.send(Err(AdminError::Timeout));
        }
        let Some(t) = &self.reconfig.transfer else {
            return;
        };
        let wait = self.tick * self.cfg.election_ticks * TRANSFER_WAIT_TIMEOUTS;
        let outcome = if leader == Some(t.to) && self.node.term() > t.term {
            Some(Ok(AdminReply::Transferred(TransferReport {
                from: t.from,
                to: t.to,
                term: self.node.term(),
                changed: true,
            })))
        } else if t.since.elapsed() > wait.max(Duration::from_secs(1)) {
            warn!("leadership transfer to node {} did not finish", t.to);
            Some(Err(AdminError::TransferFailed(t.to)))
        } else {
            None
        };
        if let Some(r) = outcome {
            if let Some(t) = self.reconfig.transfer.take() {
                let _ = t.reply.send(r);
            }
        }
    }

    /// The configuration in force on this node, with every member's addresses.
    pub(crate) fn members_report(&self, changed: bool) -> MembersReport {
        let conf = self.node.conf();
        let book = self.peers.read().expect("book lock");
        let leading = self.node.is_leader();
        let me = self.node.id();
        let info = |id: NodeId| {
            let a = book.get(&id);
            MemberInfo {
                id,
                raft: a.map(|a| a.raft.clone()).unwrap_or_default(),
                client: a.map(|a| a.client.clone()).unwrap_or_default(),
                match_index: if id == me {
                    None
                } else {
                    self.node.match_index(id).filter(|_| leading)
                },
            }
        };
        let mut voters: BTreeMap<NodeId, MemberInfo> = BTreeMap::new();
        for &id in &conf.voters {
            voters.insert(id, info(id));
        }
        MembersReport {
            cluster_id: self.cluster_id.clone(),
            node: me,
            leader: self.node.leader().map(|id| LeaderRef {
                id,
                client: book.get(&id).map(|a| a.client.clone()).unwrap_or_default(),
            }),
            voters: voters.into_values().collect(),
            learners: conf.learners.iter().map(|&id| info(id)).collect(),
            voters_outgoing: conf.voters_outgoing.clone(),
            joint: conf.is_joint(),
            changed,
            commit: self.node.status().commit,
        }
    }
}

fn without(list: &[NodeId], gone: &[NodeId]) -> Vec<NodeId> {
    list.iter()
        .copied()
        .filter(|id| !gone.contains(id))
        .collect()
}
