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
//! 3. while the node has a Ready: **persist** it (WAL write + one fsync,
//!    here, on this thread: never on the async runtime's workers), then
//!    **send** its messages (queued to the peer writers, non-blocking), then
//!    **apply** its committed entries through the service, then
//!    **advance**; the service's answers go to the waiting HTTP handlers at
//!    once, and a snapshot is taken when enough was applied since the last;
//! 4. notes a change of term, role or leader (log line, metrics, label).
//!
//! While it fsyncs, new inputs queue in the inbox; the next turn takes them
//! all, so one fsync covers every write that arrived meanwhile (group
//! commit). No lock is held across I/O: the driver shares nothing but the
//! inbox, the peer queues (locked only to push) and atomics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft_core::{persist, Entry, EntryKind, Message, Node, NodeId, Role, Term};
use raft_kv::{ClientReply, ClientRequest, Replies, Service};
use raft_wal::Wal;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::PeerAddrs;
use crate::logging::NodeLabel;
use crate::metrics::Metrics;
use crate::server::ServerError;
use crate::status::{role_name, LeaderRef, PeerStatus, StatusReport};
use crate::transport::Transport;

/// Most ticks one turn makes up for.
pub const MAX_TICKS_PER_TURN: u32 = 3;

/// The channel end an HTTP handler waits on.
pub(crate) type ReplyTo = oneshot::Sender<ClientReply>;

/// One input to the driver.
pub(crate) enum Input {
    /// A client request and where to send its answer.
    Client {
        request: ClientRequest,
        reply: ReplyTo,
    },
    /// Messages from one peer frame.
    Peer(Vec<Message>),
    /// Time passed (sent every tick by a timer task).
    Tick,
    /// A status request.
    Status(oneshot::Sender<StatusReport>),
    /// Stop after this turn.
    Stop,
}

/// Everything the driver owns.
pub(crate) struct Driver {
    pub node: Node<Wal>,
    pub service: Service<ReplyTo>,
    pub inbox: mpsc::Receiver<Input>,
    pub transport: Transport,
    pub metrics: Arc<Metrics>,
    pub label: Arc<NodeLabel>,
    pub peers: Arc<BTreeMap<NodeId, PeerAddrs>>,
    pub cluster_id: String,
    pub tick: Duration,
}

/// The driver's own bookkeeping for one run.
struct Turns {
    last_tick: Instant,
    /// Entry bytes applied since the last snapshot (taken or installed).
    applied_bytes: u64,
    seen: Option<(Term, Role, Option<NodeId>)>,
    status: Vec<oneshot::Sender<StatusReport>>,
}

impl Driver {
    /// Runs until [`Input::Stop`], every sender gone, or a storage failure
    /// (the node can no longer keep the contract).
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut t = Turns {
            last_tick: Instant::now(),
            applied_bytes: 0,
            seen: None,
            status: Vec::new(),
        };
        self.observe(&mut t);
        info!(
            applied = self.service.store().applied(),
            last_index = self.node.last_index(),
            "driver started"
        );
        loop {
            let Some(first) = self.inbox.blocking_recv() else {
                break;
            };
            let mut stop = self.take(first, &mut t)?;
            while let Ok(input) = self.inbox.try_recv() {
                stop |= self.take(input, &mut t)?;
            }
            self.tick(&mut t)?;
            self.ready(&mut t)?;
            self.observe(&mut t);
            for tx in t.status.drain(..) {
                let _ = tx.send(self.status());
            }
            if stop {
                break;
            }
        }
        info!("driver stopped; the WAL is closed");
        Ok(())
    }

    /// Feeds one input; whether it asks to stop.
    fn take(&mut self, input: Input, t: &mut Turns) -> Result<bool, ServerError> {
        match input {
            Input::Client { request, reply } => {
                let out = self
                    .service
                    .on_request(&mut self.node, reply, request, now_ms());
                answer(out);
            }
            Input::Peer(msgs) => {
                for m in msgs {
                    self.node.step(m).map_err(ServerError::Storage)?;
                }
            }
            Input::Tick => {}
            Input::Status(tx) => t.status.push(tx),
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
        answer(self.service.tick(&self.node, now_ms()));
        Ok(())
    }

    /// Persist, send, apply, advance, for every Ready the node has.
    fn ready(&mut self, t: &mut Turns) -> Result<(), ServerError> {
        while self.node.has_ready() {
            let mut rd = self.node.ready().map_err(ServerError::Storage)?;
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
            if rd.snapshot.is_some() {
                self.metrics.snapshots_installed.inc();
                t.applied_bytes = 0;
            }
            let out = self
                .service
                .on_ready(&self.node, &rd)
                .map_err(ServerError::StateMachine)?;
            answer(out);
            t.applied_bytes += rd.committed_entries.iter().map(Entry::size).sum::<u64>();
            self.metrics
                .applied
                .inc_by(rd.committed_entries.len() as u64);
            // 4. Advance.
            self.node.advance();
            if let Some((index, data)) = self.service.maybe_snapshot(t.applied_bytes) {
                match self.node.snapshot(index, data) {
                    Ok(()) => {
                        t.applied_bytes = 0;
                        self.metrics.snapshots_taken.inc();
                        info!(index, "took a snapshot");
                    }
                    Err(e) => warn!("snapshot at {index} refused: {e}"),
                }
            }
        }
        Ok(())
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
        let leader = st.leader.map(|id| LeaderRef {
            id,
            client: self
                .peers
                .get(&id)
                .map(|p| p.client.clone())
                .unwrap_or_default(),
        });
        let connected = self.transport.connected();
        let peers = self
            .peers
            .iter()
            .filter(|(&id, _)| id != st.id)
            .map(|(&id, p)| PeerStatus {
                id,
                raft: p.raft.clone(),
                client: p.client.clone(),
                connected: connected.get(&id).copied().unwrap_or(false),
                match_index: self.node.match_index(id).filter(|_| self.node.is_leader()),
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
            peers,
        }
    }
}

/// Hands each reply to its waiting handler (gone handlers are skipped).
fn answer(out: Replies<ReplyTo>) {
    for (tx, reply) in out {
        let _ = tx.send(reply);
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
