//! The driver: one OS thread per node that owns the raft-core `Node` (on the
//! raft-wal `Wal`) and the raft-kv `Service`, and keeps the contract.
//!
//! Each turn of its loop:
//! 1. waits for an input, then takes **everything** waiting in the inbox
//!    (client requests, peer messages, ticks): requests are proposed to the
//!    node, messages stepped, so one Ready carries all of them;
//! 2. ticks the node for the time that passed (10 ms per tick, at most
//!    [`MAX_TICKS_PER_TURN`] at once, so a stall is not mistaken for a
//!    silent leader);
//! 3. while the node has a Ready: on a leader with asynchronous writes,
//!    **send** its replication messages at once; **persist** the Ready (WAL
//!    write + one fsync, here, on this thread: never on the async runtime's
//!    workers), then **send** its other messages (written at once to an
//!    idle peer connection, else queued to its writer; never blocking), then
//!    **apply** its committed entries through the service, then
//!    **advance**; the service's answers go to the waiting HTTP handlers at
//!    once, and when enough was applied since the last snapshot an image
//!    of the store is handed to the snapshot thread (module `snapshots`),
//!    which encodes it and writes its file; a turn that finds it done
//!    calls `Node::snapshot`;
//! 4. notes a change of term, role or leader (log line, metrics, label).
//!
//! While it fsyncs, new inputs queue in the inbox; the next turn takes them
//! all, so one fsync covers every write that arrived meanwhile (group
//! commit). No lock is held across I/O: the driver shares nothing but the
//! inbox, the peer queues (locked only to push) and atomics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft_core::{persist, Body, Entry, EntryKind, Message, Node, NodeId, Role, Storage, Term};
use raft_kv::{ClientReply, ClientRequest, KvError, Replies, RequestBody, Service};
use raft_wal::Wal;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::admin::AdminRequest;
use crate::config::ServerConfig;
use crate::logging::NodeLabel;
use crate::members::Book;
use crate::metrics::Metrics;
use crate::reconfig::{AdminResult, Reconfig};
use crate::server::{self, ServerError};
use crate::snapshots::{self, Snapshotter};
use crate::space::{self, Space};
use crate::status::{role_name, LeaderRef, PeerStatus, StatusReport};
use crate::transport::Transport;

/// Most ticks one turn makes up for.
pub const MAX_TICKS_PER_TURN: u32 = 3;

/// What an HTTP handler gets back.
pub(crate) enum Reply {
    /// The KV service's answer.
    Kv(ClientReply),
    /// A write refused because the disk is full (no-space mode).
    NoSpace,
}

/// Where the service's answer to one request goes: the HTTP handler's
/// channel, tagged so the driver can tell an answer given at the door
/// (before anything was proposed) from a later one.
pub(crate) struct ReplyTo {
    ticket: u64,
    write: bool,
    tx: oneshot::Sender<Reply>,
}

/// One input to the driver.
pub(crate) enum Input {
    /// A client request and where to send its answer.
    Client {
        request: ClientRequest,
        reply: oneshot::Sender<Reply>,
    },
    /// Messages from one peer frame.
    Peer(Vec<Message>),
    /// Time passed (sent every tick by a timer task).
    Tick,
    /// A status request.
    Status(oneshot::Sender<StatusReport>),
    /// A membership change, a leadership transfer, or the member list.
    Admin {
        request: AdminRequest,
        reply: oneshot::Sender<AdminResult>,
    },
    /// The snapshot thread finished its job (the result waits on its own
    /// channel).
    Snapshot,
    /// Stop after this turn.
    Stop,
}

/// Everything the driver owns.
pub(crate) struct Driver {
    pub node: Node<Wal>,
    pub service: Service<ReplyTo>,
    /// Free space, the reserve file and the no-space mode.
    pub space: Space,
    /// The settings, to reopen the WAL after a full disk.
    pub cfg: Arc<ServerConfig>,
    pub next_ticket: u64,
    pub inbox: mpsc::Receiver<Input>,
    pub transport: Transport,
    pub metrics: Arc<Metrics>,
    pub label: Arc<NodeLabel>,
    /// Every member's addresses, as far as this node knows them.
    pub peers: Book,
    /// Membership changes and transfers under way; the member table.
    pub reconfig: Reconfig,
    pub cluster_id: String,
    pub tick: Duration,
    /// The snapshot thread.
    pub snapshots: Snapshotter,
}

/// The driver's own bookkeeping for one run.
struct Turns {
    last_tick: Instant,
    /// Entry bytes applied since the last snapshot (installed, or whose
    /// image was taken).
    applied_bytes: u64,
    /// After a snapshot file failed to write: no new snapshot job before
    /// this, and the wait after the next failure.
    snapshot_retry: Option<(Instant, Duration)>,
    seen: Option<(Term, Role, Option<NodeId>)>,
    status: Vec<oneshot::Sender<StatusReport>>,
}

/// First wait before another snapshot after a failed snapshot write; it
/// doubles with each failure in a row, up to [`SNAPSHOT_RETRY_MAX`].
const SNAPSHOT_RETRY_FIRST: Duration = Duration::from_secs(1);
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(60);

/// Why the turns stopped.
enum Halt {
    /// The disk is full: reopen the WAL and go on in no-space mode.
    NoSpace(ServerError),
    /// The node cannot go on.
    Fatal(ServerError),
}

impl From<ServerError> for Halt {
    fn from(e: ServerError) -> Self {
        match &e {
            ServerError::Storage(inner) if space::is_no_space(inner) => Halt::NoSpace(e),
            _ => Halt::Fatal(e),
        }
    }
}

impl Driver {
    /// Runs until [`Input::Stop`], every sender gone, or a storage failure
    /// (the node can no longer keep the contract). A full disk is not the
    /// end: the node reopens its WAL and goes on in no-space mode.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut t = Turns {
            last_tick: Instant::now(),
            applied_bytes: snapshot_phase(self.node.id(), self.cfg.snapshot_bytes),
            snapshot_retry: None,
            seen: None,
            status: Vec::new(),
        };
        self.observe(&mut t);
        info!(
            applied = self.service.store().applied(),
            last_index = self.node.last_index(),
            "driver started"
        );
        let result = loop {
            match self.turns(&mut t) {
                Ok(()) => break Ok(()),
                Err(Halt::Fatal(e)) => break Err(e),
                Err(Halt::NoSpace(e)) => match self.reopen(e, &mut t) {
                    Ok(driver) => self = driver,
                    // `reopen` already waited for the snapshot thread.
                    Err(e) => return Err(e),
                },
            }
        };
        // No snapshot thread outlives the WAL it writes for.
        self.drop_snapshot_job();
        result?;
        info!("driver stopped; the WAL is closed");
        Ok(())
    }

    /// Waits for the snapshot job under way, if any, and drops its result
    /// (its staged file is removed; the next open would remove it too).
    fn drop_snapshot_job(&mut self) {
        if let Some(done) = self.snapshots.wait() {
            if let Some(Ok(staged)) = done.staged {
                self.node.storage_mut().discard(staged);
            }
        }
    }

    /// The loop: take inputs, tick, handle Readies, until told to stop.
    fn turns(&mut self, t: &mut Turns) -> Result<(), Halt> {
        loop {
            let Some(first) = self.inbox.blocking_recv() else {
                return Ok(());
            };
            let mut stop = self.take(first, t)?;
            while let Ok(input) = self.inbox.try_recv() {
                stop |= self.take(input, t)?;
            }
            self.finish_snapshot(t);
            self.tick(t)?;
            self.ready(t)?;
            self.observe(t);
            self.reconfig_turn();
            if self.space.probe(Instant::now()) {
                self.metrics.no_space.set(0);
            }
            for tx in t.status.drain(..) {
                let _ = tx.send(self.status());
            }
            if stop {
                return Ok(());
            }
        }
    }

    /// The WAL failed for lack of space. Its state in memory may be ahead
    /// of the disk (the failed batch), and an fsync that failed must never
    /// be taken for one that succeeded: so the node is rebuilt from what
    /// the disk holds, exactly as a restart would, without leaving the
    /// process. Requests waiting on the old node get "entry lost" (their
    /// writes may or may not commit: a retry with the session is safe).
    fn reopen(mut self, why: ServerError, t: &mut Turns) -> Result<Driver, ServerError> {
        warn!("{why}; the disk is full: reopening the WAL from disk and refusing writes until space is freed");
        self.drop_snapshot_job();
        let Driver {
            node,
            service,
            mut space,
            cfg,
            next_ticket,
            inbox,
            transport,
            metrics,
            label,
            peers,
            reconfig,
            cluster_id,
            tick,
            snapshots,
        } = self;
        space.on_no_space();
        drop(service);
        drop(node);
        drop(reconfig);
        let opened = server::open_node(&cfg).map_err(|e| ServerError::Reopen(e.to_string()))?;
        let (node, service, reconfig) = (opened.node, opened.service, opened.reconfig);
        metrics.storage_reopens.inc();
        metrics.no_space.set(1);
        t.applied_bytes = 0;
        t.seen = None;
        info!(
            applied = service.store().applied(),
            last_index = node.last_index(),
            "WAL reopened"
        );
        Ok(Driver {
            node,
            service,
            space,
            cfg,
            next_ticket,
            inbox,
            transport,
            metrics,
            label,
            peers,
            reconfig,
            cluster_id,
            tick,
            snapshots,
        })
    }

    /// Feeds one input; whether it asks to stop.
    fn take(&mut self, input: Input, t: &mut Turns) -> Result<bool, ServerError> {
        match input {
            Input::Client { request, reply } => {
                let write = !matches!(request.body, RequestBody::Read { .. });
                if write && self.node.is_leader() && !self.space.writes_allowed(Instant::now()) {
                    self.metrics.no_space.set(1);
                    let _ = reply.send(Reply::NoSpace);
                    return Ok(false);
                }
                self.next_ticket += 1;
                let ticket = self.next_ticket;
                let to = ReplyTo {
                    ticket,
                    write,
                    tx: reply,
                };
                let out = self
                    .service
                    .on_request(&mut self.node, to, request, now_ms());
                answer(out, Some(ticket));
            }
            Input::Peer(msgs) => {
                for m in msgs {
                    if self.space.exhausted() && grows_log(&m) {
                        // No room even after the reserve went: writing it
                        // would only fail again. The leader sends it again.
                        continue;
                    }
                    self.node.step(m).map_err(ServerError::Storage)?;
                }
            }
            Input::Tick | Input::Snapshot => {}
            Input::Status(tx) => t.status.push(tx),
            Input::Admin { request, reply } => self.on_admin(request, reply),
            Input::Stop => return Ok(true),
        }
        Ok(false)
    }

    /// Ticks the node for the time that passed since the last tick.
    fn tick(&mut self, t: &mut Turns) -> Result<(), ServerError> {
        let elapsed = t.last_tick.elapsed();
        if elapsed < self.tick {
            return Ok(());
        }
        let due = (elapsed.as_nanos() / self.tick.as_nanos()) as u32;
        for _ in 0..due.min(MAX_TICKS_PER_TURN) {
            self.node.tick().map_err(ServerError::Storage)?;
        }
        t.last_tick += self.tick * due;
        answer(self.service.tick(&self.node, now_ms()), None);
        Ok(())
    }

    /// Persist, send, apply, advance, for every Ready the node has.
    fn ready(&mut self, t: &mut Turns) -> Result<(), ServerError> {
        while self.node.has_ready() {
            let mut rd = self.node.ready().map_err(ServerError::Storage)?;
            // A new member named in these entries gets its link before
            // anything is sent.
            self.learn(&rd.entries);
            // 0. A leader with asynchronous writes sends its replication
            // first, so the followers' fsyncs run while it does its own; it
            // counts itself toward a commit only once `advance` says its
            // entries are durable (raft-core's `async_leader_writes`).
            if !rd.early_messages.is_empty() {
                self.transport.send(std::mem::take(&mut rd.early_messages));
            }
            // 1. Persist: one WAL write and one fsync for the whole batch.
            let started = Instant::now();
            persist(self.node.storage_mut(), &rd).map_err(|e| ServerError::Storage(e.into()))?;
            if rd.must_sync() {
                let m = &self.metrics;
                m.fsync_seconds.observe(started.elapsed().as_secs_f64());
                m.fsync_entries.observe(rd.entries.len() as f64);
                if self.node.is_leader() {
                    let own = rd.entries.iter().filter(|e| e.kind == EntryKind::Normal);
                    m.proposals.inc_by(own.count() as u64);
                }
            }
            // 2. Send: queued to the peers' writers, never blocking.
            self.transport.send(std::mem::take(&mut rd.messages));
            // 3. Apply, and answer whoever waits.
            if let Some(snap) = &rd.snapshot {
                self.metrics.snapshots_installed.inc();
                t.applied_bytes = 0;
                answer(self.install(snap)?, None);
            }
            let out = self
                .service
                .on_ready(&self.node, &rd)
                .map_err(ServerError::StateMachine)?;
            answer(out, None);
            self.applied(&rd.committed_entries);
            t.applied_bytes += rd.committed_entries.iter().map(Entry::size).sum::<u64>();
            self.metrics
                .applied
                .inc_by(rd.committed_entries.len() as u64);
            // 4. Advance.
            self.node.advance();
            // A snapshot file needs room the disk may not have; one job
            // at a time.
            let waiting = t.snapshot_retry.is_some_and(|(at, _)| Instant::now() < at);
            if !self.space.is_full() && !self.snapshots.busy() && !waiting {
                self.start_snapshot(t);
            }
        }
        Ok(())
    }

    /// When enough was applied since the last snapshot: takes an image of
    /// the store (O(1)) and hands it to the snapshot thread, with what the
    /// snapshot at its index holds besides (member table, term,
    /// configuration) and a file the WAL reserves for it.
    fn start_snapshot(&mut self, t: &mut Turns) {
        let Some(image) = self.service.maybe_image(t.applied_bytes) else {
            return;
        };
        let index = image.index();
        let term = match self.node.storage().term(index) {
            Ok(term) => term,
            Err(e) => {
                warn!("no snapshot at {index}: its term is unknown ({e})");
                return;
            }
        };
        let writer = match self.node.storage_mut().snapshot_writer() {
            Ok(w) => Some(w),
            Err(e) => {
                // The snapshot is then written by the next persist.
                warn!("no snapshot file could be reserved ({e})");
                None
            }
        };
        let job = snapshots::Job {
            image,
            table: self.reconfig.table.clone(),
            term,
            conf: self.reconfig.applied_conf().clone(),
            writer,
            applied_bytes: std::mem::take(&mut t.applied_bytes),
        };
        if let Err(e) = self.snapshots.start(job) {
            warn!("no snapshot thread: {e}");
        }
    }

    /// Takes the snapshot thread's result, if it is done: the node takes the
    /// snapshot at the image's index (it may be below the applied index by
    /// now) and the WAL the file that was written for it, so the next
    /// persist only records it. A refusal (a newer snapshot came from the
    /// leader meanwhile) or a failed write is logged and the snapshot left.
    fn finish_snapshot(&mut self, t: &mut Turns) {
        let Some(done) = self.snapshots.poll() else {
            return;
        };
        let index = done.index;
        self.metrics
            .snapshot_encode_seconds
            .observe(done.encode.as_secs_f64());
        if done.staged.is_some() {
            self.metrics
                .snapshot_write_seconds
                .observe(done.write.as_secs_f64());
        }
        let staged = match done.staged {
            Some(Ok(staged)) => Some(staged),
            Some(Err(e)) => {
                // The writer removed what it wrote. Not again at once: a
                // full disk puts the node in no-space mode (writes refused
                // until there is room), any other failure waits, longer
                // each time it recurs.
                let wait = t.snapshot_retry.map_or(SNAPSHOT_RETRY_FIRST, |(_, w)| {
                    (w * 2).min(SNAPSHOT_RETRY_MAX)
                });
                t.snapshot_retry = Some((Instant::now() + wait, wait));
                self.metrics.snapshot_write_failures.inc();
                if space::is_no_space(&e) {
                    self.space.on_snapshot_no_space();
                    self.metrics.no_space.set(1);
                }
                warn!(
                    "snapshot at {index}: writing its file failed ({e}); next try in {} s at the earliest",
                    wait.as_secs()
                );
                t.applied_bytes += done.applied_bytes;
                return;
            }
            None => None,
        };
        if staged.is_some() {
            t.snapshot_retry = None;
        }
        match self.node.snapshot(index, done.data) {
            Ok(()) => {
                if let Some(staged) = staged {
                    self.node.storage_mut().adopt(staged);
                }
                self.metrics.snapshots_taken.inc();
                info!(
                    index,
                    encode_ms = done.encode.as_millis() as u64,
                    write_ms = done.write.as_millis() as u64,
                    "took a snapshot"
                );
            }
            Err(e) => {
                if let Some(staged) = staged {
                    self.node.storage_mut().discard(staged);
                }
                // Unless a newer snapshot covers them, the entries it
                // would have compacted count toward the next one.
                if self.node.status().first_index <= index {
                    t.applied_bytes += done.applied_bytes;
                }
                warn!("snapshot at {index} refused: {e}");
            }
        }
    }

    /// Notes changes of term, role and leader: label, metrics, log lines.
    fn observe(&mut self, t: &mut Turns) {
        let st = self.node.status();
        self.metrics.commit_index.set(st.commit as i64);
        self.metrics.applied_index.set(st.applied as i64);
        let now = (st.term, st.role, st.leader);
        if t.seen == Some(now) {
            return;
        }
        let (old_role, old_leader) = t.seen.map_or((None, None), |s| (Some(s.1), s.2));
        t.seen = Some(now);
        self.label.set(st.term, st.role);
        self.metrics.term.set(st.term as i64);
        self.metrics.set_role(st.role);
        let term = st.term;
        if st.role == Role::Candidate && old_role != Some(Role::Candidate) {
            self.metrics.elections.inc();
            info!("campaigning in term {term}");
        }
        if st.leader != old_leader {
            match st.leader {
                Some(l) => {
                    self.metrics.leader_changes.inc();
                    if l == st.id {
                        info!("became leader in term {term}");
                    } else {
                        info!("following leader {l} in term {term}");
                    }
                }
                None if old_leader.is_some() => info!("no leader known in term {term}"),
                None => {}
            }
        }
    }

    fn status(&self) -> StatusReport {
        let st = self.node.status();
        let conf = self.node.conf();
        let book = self.peers.read().expect("book lock");
        let leader = st.leader.map(|id| LeaderRef {
            id,
            client: book.get(&id).map(|p| p.client.clone()).unwrap_or_default(),
        });
        let connected = self.transport.connected();
        let peers = conf
            .members()
            .into_iter()
            .filter(|&id| id != st.id)
            .map(|id| {
                let addrs = book.get(&id);
                PeerStatus {
                    id,
                    raft: addrs.map(|p| p.raft.clone()).unwrap_or_default(),
                    client: addrs.map(|p| p.client.clone()).unwrap_or_default(),
                    connected: connected.get(&id).copied().unwrap_or(false),
                    match_index: self.node.match_index(id).filter(|_| self.node.is_leader()),
                }
            })
            .collect();
        StatusReport {
            id: st.id,
            cluster_id: self.cluster_id.clone(),
            role: role_name(st.role).to_string(),
            term: st.term,
            leader,
            commit: st.commit,
            applied: st.applied,
            last_index: st.last_index,
            snapshot_index: st.first_index.saturating_sub(1),
            pending_requests: self.service.pending(),
            no_space: self.space.is_full(),
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            voters_outgoing: conf.voters_outgoing.clone(),
            peers,
        }
    }
}

/// Hands each reply to its waiting handler (gone handlers are skipped).
///
/// `door` is the request being taken, if any: its "not the leader" answer
/// comes before anything was proposed, so the client may follow the
/// redirect. Any other write answered "not the leader" was proposed and the
/// node then lost its leadership: the entry may still commit under the
/// next leader, so the client hears "entry lost" (outcome unknown).
fn answer(out: Replies<ReplyTo>, door: Option<u64>) {
    for (to, mut reply) in out {
        if to.write && door != Some(to.ticket) {
            if let Err(KvError::NotLeader { leader }) = reply.result {
                reply.result = Err(KvError::EntryLost { leader });
            }
        }
        let _ = to.tx.send(Reply::Kv(reply));
    }
}

/// Bytes counted as applied at start, so that replicas take their
/// snapshots a third of a period apart instead of all at the same index.
/// When a snapshot was serialised and written on the driver, it stalled
/// the node, and when both followers stalled together under load, the
/// leader heard from no majority for an election timeout and stepped
/// down (CheckQuorum). Snapshots are now made on their own thread, but
/// they still take CPU and disk bandwidth from the node's two busy
/// threads, so the replicas still take turns. Node ids 1, 2, 3 start at 0,
/// 1/3 and 2/3 of `snapshot_bytes`; only the first snapshot after a start
/// comes sooner.
fn snapshot_phase(id: NodeId, snapshot_bytes: u64) -> u64 {
    snapshot_bytes / 3 * (id.saturating_sub(1) % 3)
}

/// Whether a message from a peer makes this node write log data.
fn grows_log(m: &Message) -> bool {
    match &m.body {
        Body::AppendEntries { entries, .. } => !entries.is_empty(),
        Body::InstallSnapshot { .. } => true,
        _ => false,
    }
}

/// The leader's clock for stamping records (thesis §6.3), in milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `driver` on its own OS thread inside `span`; the receiver resolves
/// when it ends, with its error if it failed.
pub(crate) fn spawn(
    driver: Driver,
    span: tracing::Span,
) -> std::io::Result<oneshot::Receiver<Result<(), ServerError>>> {
    let (done_tx, done_rx) = oneshot::channel();
    let name = format!("raftkv-driver-{}", driver.node.id());
    std::thread::Builder::new().name(name).spawn(move || {
        let _entered = span.enter();
        let result = driver.run();
        if let Err(e) = &result {
            error!("the node stops: {e}");
        }
        let _ = done_tx.send(result);
    })?;
    Ok(done_rx)
}

#[cfg(test)]
mod tests {
    use super::snapshot_phase;

    #[test]
    fn replicas_snapshot_a_third_of_a_period_apart() {
        let n = 300;
        let phases: Vec<u64> = (1..=6).map(|id| snapshot_phase(id, n)).collect();
        assert_eq!(phases, [0, 100, 200, 0, 100, 200]);
        assert_eq!(snapshot_phase(0, n), 0);
        assert!(snapshot_phase(u64::MAX, u64::MAX) < u64::MAX);
    }
}
