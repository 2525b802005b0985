//! A Raft server as a deterministic state machine: inputs are ticks,
//! messages and proposals; outputs are collected into a [`Ready`](crate::Ready).
//!
//! This file holds the node's state, the term rules every message passes
//! through (Figure 2, "Rules for Servers: All Servers"), and role changes.
//! Elections live in `election.rs`, replication in `replication.rs`,
//! snapshots in `snapshot.rs`, and the output batch in `ready.rs`.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::conf::ConfState;
use crate::config::Config;
use crate::error::Error;
use crate::log::RaftLog;
use crate::membership::ConfLog;
use crate::message::{AppendReply, Body, Message};
use crate::read_only::{ReadOnly, ReadState};
use crate::snapshot::Incoming;
use crate::storage::Storage;
use crate::tracker::Tracker;
use crate::types::{Entry, EntryKind, HardState, Index, NodeId, Snapshot, Term};
use crate::validate::{self, Rejection};

/// The role a server plays (§5.1), plus the PreVote stage before candidacy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Follower,
    /// Asking whether it could win before raising its term (thesis §9.6).
    PreCandidate,
    Candidate,
    Leader,
}

/// A snapshot of a node's volatile and persistent state, for tests and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub term: Term,
    pub vote: Option<NodeId>,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub applied: Index,
    pub first_index: Index,
    pub last_index: Index,
    /// Messages refused at the door since the node started (see
    /// [`Rejection`]); a driver may log when it grows.
    pub rejected: u64,
    /// Why the last one was refused.
    pub last_rejection: Option<Rejection>,
}

/// What the last Ready handed out, so that `advance` can mark it done.
#[derive(Debug, Default)]
pub(crate) struct HandedOut {
    pub last_entry: Option<(Index, Term)>,
    pub snapshot: Option<Index>,
    pub local_snapshot: Option<Index>,
    pub hard_state: Option<HardState>,
    pub applied: Option<Index>,
}

/// One Raft server. Drive it with [`tick`](Node::tick), [`step`](Node::step)
/// and [`propose`](Node::propose); collect output with
/// [`ready`](Node::ready) and acknowledge it with [`advance`](Node::advance).
pub struct Node<S: Storage> {
    pub(crate) cfg: Config,
    pub(crate) id: NodeId,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) log: RaftLog<S>,
    /// Voters, the leader's progress per follower, votes, quorum activity.
    pub(crate) tracker: Tracker,
    /// Outgoing messages for the next Ready.
    pub(crate) msgs: Vec<Message>,
    /// Ticks since the election timer was last reset (leader: since the last
    /// CheckQuorum round).
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    /// This round's timeout, drawn from [T, 2T).
    pub(crate) randomized_timeout: u32,
    /// Ticks since the node started (the lease clock).
    pub(crate) ticks: u64,
    rng: ChaCha8Rng,
    /// Leader: appends were made that peers have not been sent yet.
    pub(crate) pending_send: bool,
    /// Follower: the snapshot transfer under way, if any.
    pub(crate) incoming_snapshot: Option<Incoming>,
    /// A snapshot the application took, waiting to be persisted.
    pub(crate) local_snapshot: Option<Snapshot>,
    /// The hard state as last handed out in a Ready.
    pub(crate) prev_hard_state: HardState,
    pub(crate) handed: Option<HandedOut>,
    /// Leader: reads waiting for their heartbeat round.
    pub(crate) read_only: ReadOnly,
    /// Read points for the next Ready.
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) rejected: u64,
    pub(crate) last_rejection: Option<Rejection>,
    /// The configurations in the log; the latest is in force (§6).
    pub(crate) confs: ConfLog,
    /// Leader: the voter leadership is being handed to (thesis §3.10).
    pub(crate) transferee: Option<NodeId>,
    /// Leader ticks since the transfer began.
    pub(crate) transfer_elapsed: u32,
}

impl<S: Storage> Node<S> {
    /// Builds a node from its configuration and whatever `storage` holds: a
    /// restarted node recovers term, vote, log, commit and membership from
    /// storage alone (`Config::voters` is only the bootstrap configuration,
    /// used while neither a snapshot nor a configuration entry says
    /// otherwise). The application restores its state from
    /// `storage.snapshot()` itself.
    pub fn new(cfg: Config, storage: S) -> Result<Self, Error> {
        cfg.validate()?;
        let hs = storage.hard_state()?;
        let base = if storage.first_index() > 1 {
            storage.snapshot_conf()?
        } else {
            ConfState::new(&cfg.voters)
        };
        let mut node = Node {
            id: cfg.id,
            term: hs.term,
            vote: hs.vote,
            leader: None,
            role: Role::Follower,
            log: RaftLog::new(storage, hs.commit),
            tracker: Tracker::new(cfg.id, base.clone()),
            msgs: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: cfg.election_tick,
            ticks: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            pending_send: false,
            incoming_snapshot: None,
            local_snapshot: None,
            prev_hard_state: hs,
            handed: None,
            read_only: ReadOnly::default(),
            read_states: Vec::new(),
            rejected: 0,
            last_rejection: None,
            confs: ConfLog::new(base.clone()),
            transferee: None,
            transfer_elapsed: 0,
            cfg,
        };
        node.log_restored(base)?;
        node.reset_election_timer();
        Ok(node)
    }

    /// Advances logical time by one tick: followers and candidates count down
    /// to an election, a leader sends heartbeats and checks its quorum.
    pub fn tick(&mut self) -> Result<(), Error> {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.heartbeat_elapsed += 1;
            self.election_elapsed += 1;
            if self.election_elapsed >= self.cfg.election_tick {
                self.election_elapsed = 0;
                if self.cfg.check_quorum && !self.quorum_active() {
                    // Thesis §6.2: a leader that cannot reach a majority steps down.
                    self.become_follower(self.term, None);
                    return Ok(());
                }
            }
            self.tick_transfer();
            self.resend_unanswered()?;
            if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
                self.heartbeat_elapsed = 0;
                self.broadcast_heartbeat()?;
            }
        } else {
            self.election_elapsed += 1;
            if self.election_elapsed >= self.randomized_timeout {
                if self.tracker.is_voter(self.id) {
                    self.campaign()?;
                } else {
                    // Learners and servers outside the configuration never
                    // campaign (they could not win, and would only disturb).
                    self.reset_election_timer();
                }
            }
        }
        Ok(())
    }

    /// Feeds one incoming message. Figure 2, all servers: a higher term makes
    /// this node a follower of that term; a lower-term request is refused with
    /// our term, and a lower-term reply is dropped as stale.
    ///
    /// Every message is first checked at the door (`validate.rs`): one that
    /// no correct peer could send is refused, counted in
    /// [`Status::rejected`], and gets no reply.
    ///
    /// Requests are taken from any server (a leader this node does not know
    /// yet may have added it); replies and votes count only from members.
    pub fn step(&mut self, m: Message) -> Result<(), Error> {
        if m.to != self.id {
            return Ok(()); // Not for us.
        }
        if let Err(why) = validate::check(&m) {
            self.reject(why);
            return Ok(());
        }
        if m.term > self.term {
            match &m.body {
                Body::RequestVote {
                    pre_vote, transfer, ..
                } => {
                    if self.in_lease() && !transfer {
                        // §4.2.3 of the thesis: ignore vote requests while a
                        // leader is known to be alive; do not even adopt the
                        // term. A candidate sent by the leader's own transfer
                        // (§3.10) is the exception.
                        return Ok(());
                    }
                    if !pre_vote {
                        self.become_follower(m.term, None);
                    }
                }
                // A granted PreVote echoes the term we would campaign in.
                Body::RequestVoteReply {
                    pre_vote: true,
                    granted: true,
                } => {}
                Body::AppendEntries { .. }
                | Body::InstallSnapshot { .. }
                | Body::Heartbeat { .. } => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            self.reply_stale(&m);
            return Ok(());
        } else if self.role == Role::Leader
            && matches!(
                m.body,
                Body::AppendEntries { .. } | Body::InstallSnapshot { .. } | Body::Heartbeat { .. }
            )
        {
            // Another leader in our own term: impossible in a correct cluster.
            self.reject(Rejection::SameTermLeader);
            return Ok(());
        }
        let from = m.from;
        let term = m.term;
        match m.body {
            Body::RequestVote {
                last_log_index,
                last_log_term,
                pre_vote,
                ..
            } => self.handle_vote_request(from, term, last_log_index, last_log_term, pre_vote),
            Body::RequestVoteReply { granted, pre_vote } => {
                self.handle_vote_reply(from, term, granted, pre_vote)?
            }
            Body::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => self.handle_append(from, prev_log_index, prev_log_term, entries, leader_commit)?,
            Body::AppendEntriesReply(reply) => self.handle_append_reply(from, reply)?,
            Body::InstallSnapshot {
                meta,
                conf,
                offset,
                data,
                done,
            } => self.handle_snapshot_chunk(from, meta, conf, offset, data, done)?,
            Body::InstallSnapshotReply {
                meta,
                next_offset,
                installed,
            } => self.handle_snapshot_reply(from, meta, next_offset, installed)?,
            Body::Heartbeat { commit, ctx } => self.handle_heartbeat(from, commit, ctx),
            Body::HeartbeatReply { ctx } => self.handle_heartbeat_reply(from, ctx)?,
            Body::ReadIndex { ctx } => {
                if self.role == Role::Leader {
                    self.leader_read(from, ctx);
                }
            }
            Body::ReadIndexReply { ctx, index } => self.handle_read_index_reply(from, ctx, index),
            Body::TimeoutNow => self.handle_timeout_now(from)?,
        }
        Ok(())
    }

    /// Counts a message refused at the door.
    pub(crate) fn reject(&mut self, why: Rejection) {
        self.rejected += 1;
        self.last_rejection = Some(why);
    }

    /// Appends a command to the leader's log (§5.3). Returns the index and
    /// term it will have if it commits.
    ///
    /// `data` may be a `Vec<u8>` or a shared `bytes::Bytes`; it is not copied.
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<(Index, Term), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(to) = self.transferee {
            return Err(Error::Transferring { to });
        }
        let index = self.log.last_index() + 1;
        self.append_own(Entry::normal(index, self.term, data.into()));
        Ok((index, self.term))
    }

    /// The application saved its state through `index` (already applied): the
    /// log up to there is replaced by `data` in the next Ready (§7).
    ///
    /// `index` must be past every snapshot already taken, including one
    /// handed out in a Ready that is not persisted yet; otherwise the answer
    /// is [`Error::BadSnapshotIndex`] and nothing changes.
    pub fn snapshot(&mut self, index: Index, data: Vec<u8>) -> Result<(), Error> {
        let applied = self.log.applied();
        let floor = self
            .log
            .snapshot_index()
            .max(self.local_snapshot.as_ref().map_or(0, |s| s.meta.index))
            .max(
                self.handed
                    .as_ref()
                    .and_then(|h| h.local_snapshot)
                    .unwrap_or(0),
            );
        if index > applied || index <= floor {
            return Err(Error::BadSnapshotIndex {
                index,
                applied,
                snapshot: floor,
            });
        }
        let term = self.log.term(index)?;
        let mut snapshot = Snapshot::new(index, term, data);
        // Every entry through `index` is committed, so the configuration in
        // force there is final (§7: the snapshot keeps it).
        snapshot.conf = self.confs.at(index).clone();
        self.confs.compacted(index);
        self.local_snapshot = Some(snapshot);
        Ok(())
    }

    /// Current term, vote, role, leader and log positions.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            term: self.term,
            vote: self.vote,
            role: self.role,
            leader: self.leader,
            commit: self.log.committed(),
            applied: self.log.applied(),
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            rejected: self.rejected,
            last_rejection: self.last_rejection,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The leader this node last heard from in its term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The log's last index.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Term of the entry at `index`, if the log holds it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term_of(index)
    }

    /// Entries in `[lo, hi)` (stable and unstable alike).
    pub fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>, Error> {
        Ok(self.log.entries(lo, hi, u64::MAX)?)
    }

    /// The leader's match index for `peer`, for tests and metrics.
    pub fn match_index(&self, peer: NodeId) -> Option<Index> {
        self.tracker.progress.get(&peer).map(|p| p.match_index)
    }

    /// The storage, for reads by the caller.
    pub fn storage(&self) -> &S {
        self.log.storage()
    }

    /// The storage, for the caller's writes when acting on a Ready.
    pub fn storage_mut(&mut self) -> &mut S {
        self.log.storage_mut()
    }

    /// Drops the volatile state and returns the storage (a crash, in tests).
    pub fn into_storage(self) -> S {
        self.log.into_storage()
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }

    pub(crate) fn send(&mut self, to: NodeId, term: Term, body: Body) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }

    /// Refuses a request from an older term so its sender learns ours.
    fn reply_stale(&mut self, m: &Message) {
        let body = match &m.body {
            Body::RequestVote { pre_vote, .. } => Body::RequestVoteReply {
                granted: false,
                pre_vote: *pre_vote,
            },
            Body::AppendEntries { .. } => Body::AppendEntriesReply(AppendReply::StaleTerm),
            Body::InstallSnapshot { meta, .. } => Body::InstallSnapshotReply {
                meta: *meta,
                next_offset: 0,
                installed: false,
            },
            Body::Heartbeat { ctx, .. } => Body::HeartbeatReply { ctx: *ctx },
            // Figure 2: replies from older terms are ignored. A read asked of
            // an old leader is left unanswered: its asker times it out.
            _ => return,
        };
        self.send(m.from, self.term, body);
    }

    /// Starts a new election timeout drawn from [T, 2T) (§5.2).
    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let t = self.cfg.election_tick;
        self.randomized_timeout = self.rng.gen_range(t..2 * t);
    }

    /// Heard from a live leader less than an election timeout ago. Only with
    /// CheckQuorum, which guarantees that a leader's lease expires when it
    /// loses its majority. With lease reads, a node that started less than
    /// an election timeout ago counts too: it may have acknowledged a
    /// leader's lease before it restarted, and must not help depose that
    /// leader while the lease runs.
    pub(crate) fn in_lease(&self) -> bool {
        let since_start = self.cfg.lease_reads && self.ticks < u64::from(self.cfg.election_tick);
        self.cfg.check_quorum
            && ((self.leader.is_some() && self.election_elapsed < self.cfg.election_tick)
                || since_start)
    }

    /// Becomes a follower in `term` (clearing the vote if the term is new).
    /// The election timer keeps running: it is reset only when a vote is
    /// granted, the current leader is heard from, or an election starts.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if self.role == Role::Leader {
            self.tracker.clear_progress();
            self.pending_send = false;
            self.reset_reads();
            self.transferee = None;
        }
        if term != self.term {
            self.term = term;
            self.vote = None;
            // A transfer from an older term's leader must never be resumed
            // by a newer one (Figure 13: each leader starts at offset 0).
            self.incoming_snapshot = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.tracker.clear_votes();
    }

    /// Appends an entry made by this leader and schedules sending it.
    pub(crate) fn append_own(&mut self, entry: Entry) {
        let index = entry.index;
        if self.touches_confs(index, std::slice::from_ref(&entry)) {
            let entries = [entry];
            self.log.append(&entries);
            self.log_appended(index, &entries);
        } else {
            self.log.append_one(entry);
        }
        self.pending_send = true;
        // A single-node cluster commits on its own.
        if self.tracker.is_singleton() {
            self.maybe_commit();
        }
    }

    /// Appends the empty entry of §8 when configured.
    pub(crate) fn append_noop(&mut self) {
        if self.cfg.noop_on_election {
            let index = self.log.last_index() + 1;
            self.append_own(Entry {
                index,
                term: self.term,
                kind: EntryKind::Noop,
                data: Bytes::new(),
            });
        }
    }

    /// CheckQuorum: whether a majority (this leader included) was heard from
    /// since the last round; starts a new round.
    pub(crate) fn quorum_active(&mut self) -> bool {
        self.tracker.quorum_active()
    }
}
