//! One replica's server side: the bookkeeping between client requests and
//! its raft-core node, sans-IO. The simulator and the real server drive it
//! the same way; it never owns the node.
//!
//! The driver calls:
//! - [`on_request`](Service::on_request) for each client request: a write is
//!   stamped with the driver's clock and proposed, a linearizable read asks
//!   the node for a read index (thesis §6.4);
//! - [`on_ready`](Service::on_ready) with each Ready, after persisting it and
//!   sending its messages, before `advance`: restores a leader's snapshot,
//!   applies the committed entries and answers whoever waits on them;
//! - [`tick`](Service::tick) now and then: notices a lost leadership and
//!   ends requests that waited too long;
//! - [`maybe_snapshot`](Service::maybe_snapshot) after `advance`, with the
//!   Raft state's size: past `max_raft_state` it hands back a snapshot for
//!   `Node::snapshot` ([`maybe_image`](Service::maybe_image): an image to
//!   encode on another thread instead).
//!
//! Every call returns the replies that are ready, each with the driver's
//! handle `C` for the client it goes to. A request waits at most until its
//! entry is applied, lost (another term at its index), or this node stops
//! leading; then it is answered, with "retry" if need be: the clerk's retry
//! carries the same sequence number, so it is applied at most once.

use std::collections::BTreeMap;

use raft_core::{Entry, EntryKind, Index, NodeId, Ready, Snapshot, Term};

use crate::api::{
    Answer, ClientReply, ClientRequest, Consistency, KvError, RequestBody, RequestId,
};
use crate::command::{self, Record, RecordBody};
use crate::node::RaftNode;
use crate::op::Op;
use crate::session::Check;
use crate::store::{Outcome, SnapshotError, Store, StoreConfig, StoreError, StoreImage};

/// Replies ready to go: the driver's client handle and the reply.
pub type Replies<C> = Vec<(C, ClientReply)>;

/// How linearizable reads are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadPath {
    /// ReadIndex (thesis §6.4): no log write, one heartbeat round.
    #[default]
    ReadIndex,
    /// Through the log like a write (the slower baseline of §6.4).
    Log,
}

/// The server side's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The state machine's limits and session rules (the same on every replica).
    pub store: StoreConfig,
    /// Most requests waiting at once; past it, new ones get [`KvError::Busy`].
    pub max_pending: usize,
    /// Most bytes of proposed records waiting to be applied; past it, new
    /// writes get [`KvError::Busy`].
    pub max_pending_bytes: u64,
    /// A request waiting longer than this is answered [`KvError::Timeout`].
    pub pending_timeout_ms: u64,
    /// Snapshot once the Raft state reaches this many bytes (the lab's
    /// `maxraftstate`); `None`: never.
    pub max_raft_state: Option<u64>,
    /// How linearizable reads are served.
    pub read_path: ReadPath,
}

impl Default for ServiceConfig {
    /// 4,096 waiting requests or 64 MiB of records, 10 s, no snapshots, ReadIndex.
    fn default() -> Self {
        ServiceConfig {
            store: StoreConfig::default(),
            max_pending: 4_096,
            max_pending_bytes: 64 << 20,
            pending_timeout_ms: 10_000,
            max_raft_state: None,
            read_path: ReadPath::ReadIndex,
        }
    }
}

/// A client waiting for the entry this leader proposed.
struct PendingWrite<C> {
    term: Term,
    client: C,
    id: RequestId,
    bytes: u64,
    since_ms: u64,
}

/// A client waiting for a read.
struct PendingRead<C> {
    client: C,
    id: RequestId,
    op: Op,
    since_ms: u64,
}

/// One replica's KV service. See the [module docs](self).
pub struct Service<C> {
    cfg: ServiceConfig,
    store: Store,
    /// Proposed entries by index.
    writes: BTreeMap<Index, PendingWrite<C>>,
    write_bytes: u64,
    /// Reads asked for by context, not yet confirmed.
    reads: BTreeMap<u64, PendingRead<C>>,
    /// Confirmed reads by read index, waiting until it is applied.
    confirmed: BTreeMap<Index, Vec<PendingRead<C>>>,
    confirmed_len: usize,
    next_ctx: u64,
    /// The node's (term, leading, leader) when last looked at.
    seen: Option<(Term, bool, Option<NodeId>)>,
    /// Index of the last snapshot taken or restored.
    snapshot_index: Index,
}

impl<C> Service<C> {
    /// A service with an empty state machine. At restart, call
    /// [`restore`](Service::restore) with the node's stored snapshot first.
    pub fn new(cfg: ServiceConfig) -> Self {
        Service {
            store: Store::new(cfg.store.clone()),
            cfg,
            writes: BTreeMap::new(),
            write_bytes: 0,
            reads: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            confirmed_len: 0,
            next_ctx: 1,
            seen: None,
            snapshot_index: 0,
        }
    }

    /// The state machine.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// Requests waiting for an answer.
    pub fn pending(&self) -> usize {
        self.writes.len() + self.reads.len() + self.confirmed_len
    }

    /// Handles one client request from `from`, at the driver's time `now_ms`.
    pub fn on_request<N: RaftNode>(
        &mut self,
        node: &mut N,
        from: C,
        request: ClientRequest,
        now_ms: u64,
    ) -> Replies<C> {
        let mut out = self.observe(node);
        let id = request.id;
        let body = match request.body {
            RequestBody::Register => Ok(RecordBody::Register),
            RequestBody::Write { seq: 0, .. } => Err(KvError::BadRequest {
                reason: "sequence numbers start at 1".into(),
            }),
            RequestBody::Write { session, seq, op } => {
                match self.store.sessions().check(session, seq) {
                    // Already applied: answer from the session table, which
                    // holds only committed state.
                    Check::Duplicate(answer) => {
                        let result = answer.clone().map(Answer::Op);
                        out.push((from, ClientReply { id, result }));
                        return out;
                    }
                    _ => Ok(RecordBody::Request { session, seq, op }),
                }
            }
            RequestBody::PlainWrite { op } => Ok(RecordBody::PlainWrite { op }),
            RequestBody::Read { op, .. } if !op.is_read() => Err(KvError::BadRequest {
                reason: "a read request must carry a read-only operation".into(),
            }),
            RequestBody::Read { op, consistency } => match (consistency, self.cfg.read_path) {
                (Consistency::Stale, _) => {
                    let result = self.store.read(&op).map(Answer::Op);
                    out.push((from, ClientReply { id, result }));
                    return out;
                }
                (Consistency::Linearizable, ReadPath::Log) => Ok(RecordBody::Read { op }),
                (Consistency::Linearizable, ReadPath::ReadIndex) => {
                    out.extend(self.read_index(node, from, id, op, now_ms));
                    return out;
                }
            },
        };
        match body {
            Ok(body) => out.extend(self.propose(node, from, id, body, now_ms)),
            Err(e) => out.push((from, reply_err(id, e))),
        }
        out
    }

    /// Stamps and proposes a record; remembers who waits for it.
    fn propose<N: RaftNode>(
        &mut self,
        node: &mut N,
        client: C,
        id: RequestId,
        body: RecordBody,
        now_ms: u64,
    ) -> Replies<C> {
        if let Err(e) = body_check(&self.cfg.store, &body) {
            return vec![(client, reply_err(id, e))];
        }
        if !node.is_leader() {
            let leader = node.leader();
            return vec![(client, reply_err(id, KvError::NotLeader { leader }))];
        }
        let data = command::encode(&Record {
            stamp_ms: now_ms,
            body,
        });
        let bytes = data.len() as u64;
        let over_bytes = !self.writes.is_empty()
            && self.write_bytes.saturating_add(bytes) > self.cfg.max_pending_bytes;
        if self.pending() >= self.cfg.max_pending || over_bytes {
            return vec![(client, reply_err(id, KvError::Busy))];
        }
        match node.propose(data) {
            Ok((index, term)) => {
                let waiting = PendingWrite {
                    term,
                    client,
                    id,
                    bytes,
                    since_ms: now_ms,
                };
                self.write_bytes += bytes;
                let mut out = Vec::new();
                if let Some(old) = self.writes.insert(index, waiting) {
                    self.write_bytes -= old.bytes;
                    out.push((old.client, reply_err(old.id, self.lost())));
                }
                out
            }
            Err(e) => vec![(client, reply_err(id, node_error(e)))],
        }
    }

    /// Asks the node for a read index; the read waits for its read state.
    fn read_index<N: RaftNode>(
        &mut self,
        node: &mut N,
        client: C,
        id: RequestId,
        op: Op,
        now_ms: u64,
    ) -> Replies<C> {
        if let Err(e) = self.cfg.store.check(&op) {
            return vec![(client, reply_err(id, e))];
        }
        if self.pending() >= self.cfg.max_pending {
            return vec![(client, reply_err(id, KvError::Busy))];
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        match node.read_index(ctx) {
            Ok(()) => {
                let read = PendingRead {
                    client,
                    id,
                    op,
                    since_ms: now_ms,
                };
                self.reads.insert(ctx, read);
                Vec::new()
            }
            Err(e) => vec![(client, reply_err(id, node_error(e)))],
        }
    }

    /// The node confirmed read `ctx` at `index`: answer it once `index` is applied.
    pub fn on_read_state(&mut self, ctx: u64, index: Index) -> Replies<C> {
        if let Some(read) = self.reads.remove(&ctx) {
            self.confirmed.entry(index).or_default().push(read);
            self.confirmed_len += 1;
        }
        self.answer_reads()
    }

    /// Acts on a Ready (after persisting it and sending its messages, before
    /// `advance`): restores its snapshot, applies its committed entries, and
    /// answers the requests they settle. An error means the state machine
    /// cannot follow the log (a snapshot that does not decode, entries out of
    /// order): the node must stop.
    pub fn on_ready<N: RaftNode>(
        &mut self,
        node: &N,
        rd: &Ready,
    ) -> Result<Replies<C>, StoreError> {
        let mut out = Vec::new();
        if let Some(snapshot) = &rd.snapshot {
            out.extend(self.restore(snapshot)?);
        }
        for rs in &rd.read_states {
            out.extend(self.on_read_state(rs.ctx, rs.index));
        }
        for entry in &rd.committed_entries {
            out.extend(self.apply(entry)?);
        }
        out.extend(self.observe(node));
        Ok(out)
    }

    /// Applies one committed entry and answers whoever waits on it. Entries
    /// a restored snapshot already covers are skipped.
    pub fn apply(&mut self, entry: &Entry) -> Result<Replies<C>, StoreError> {
        if entry.index <= self.store.applied() {
            return Ok(Vec::new());
        }
        let mut outcome = Some(match entry.kind {
            EntryKind::Normal => self.store.apply(entry.index, &entry.data)?,
            _ => self.store.skip(entry.index)?,
        });
        let mut out = Vec::new();
        while let Some(first) = self.writes.first_entry() {
            if *first.key() > entry.index {
                break;
            }
            let index = *first.key();
            let w = first.remove();
            self.write_bytes -= w.bytes;
            // One request waits per index: the outcome is moved into its
            // answer, not copied.
            let result = match outcome.take() {
                Some(o) if index == entry.index && w.term == entry.term => answer_of(o),
                other => {
                    outcome = other;
                    // Another leader's entry took its place (§5.3).
                    Err(self.lost())
                }
            };
            out.push((w.client, ClientReply { id: w.id, result }));
        }
        out.extend(self.answer_reads());
        Ok(out)
    }

    /// Replaces the state machine with a snapshot (the leader's, or the stored
    /// one at restart) unless it is older than what is applied. Requests
    /// waiting on entries it covers are answered "retry": a retry with the
    /// same sequence number is answered from the restored session table.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<Replies<C>, StoreError> {
        let meta = snapshot.meta;
        if meta.index <= self.store.applied() {
            return Ok(Vec::new());
        }
        let store = Store::restore(self.cfg.store.clone(), &snapshot.data)?;
        if store.applied() != meta.index {
            return Err(SnapshotError::IndexMismatch {
                data: store.applied(),
                meta: meta.index,
            }
            .into());
        }
        self.store = store;
        self.snapshot_index = meta.index;
        let mut out = Vec::new();
        let later = self.writes.split_off(&meta.index.saturating_add(1));
        for (_, w) in std::mem::replace(&mut self.writes, later) {
            self.write_bytes -= w.bytes;
            out.push((w.client, reply_err(w.id, self.lost())));
        }
        out.extend(self.answer_reads());
        Ok(out)
    }

    /// Looks at the node's role and ends requests that waited longer than
    /// `pending_timeout_ms`. Call it after ticking or stepping the node.
    pub fn tick<N: RaftNode>(&mut self, node: &N, now_ms: u64) -> Replies<C> {
        let mut out = self.observe(node);
        let timeout = self.cfg.pending_timeout_ms;
        let old = |since: u64| now_ms.saturating_sub(since) > timeout;
        let expired: Vec<Index> = self
            .writes
            .iter()
            .filter(|(_, w)| old(w.since_ms))
            .map(|(&i, _)| i)
            .collect();
        for index in expired {
            if let Some(w) = self.writes.remove(&index) {
                self.write_bytes -= w.bytes;
                out.push((w.client, reply_err(w.id, KvError::Timeout)));
            }
        }
        let (keep, expired): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.reads)
            .into_iter()
            .partition(|(_, r)| !old(r.since_ms));
        self.reads = keep;
        for r in expired.into_values() {
            out.push((r.client, reply_err(r.id, KvError::Timeout)));
        }
        out
    }

    /// Hands back `(index, data)` for `Node::snapshot` when the Raft state has
    /// reached `max_raft_state` bytes and something was applied since the last
    /// snapshot. Call after `advance`, so the node has applied `index` too.
    pub fn maybe_snapshot(&mut self, raft_state_bytes: u64) -> Option<(Index, Vec<u8>)> {
        self.maybe_image(raft_state_bytes)
            .map(|image| (image.index(), image.encode()))
    }

    /// [`maybe_snapshot`](Service::maybe_snapshot) without the encoding:
    /// an image of the store, taken in O(1), for a driver that encodes it
    /// on another thread and calls `Node::snapshot(image.index(), data)`
    /// when it is done (any time later: the node takes a snapshot at any
    /// applied index above its last one).
    pub fn maybe_image(&mut self, raft_state_bytes: u64) -> Option<StoreImage> {
        let max = self.cfg.max_raft_state?;
        let applied = self.store.applied();
        if raft_state_bytes < max || applied <= self.snapshot_index {
            return None;
        }
        self.snapshot_index = applied;
        Some(self.store.image())
    }

    /// Notices a change of term or leader. A leader that stopped leading (or
    /// moved to a new term) answers its waiting writes "not leader"; reads
    /// not yet confirmed are answered so on any change (the node dropped them).
    fn observe<N: RaftNode>(&mut self, node: &N) -> Replies<C> {
        let now = (node.term(), node.is_leader(), node.leader());
        if self.seen == Some(now) {
            return Vec::new();
        }
        let still_leading = matches!(self.seen, Some((t, true, _)) if now.1 && now.0 == t);
        self.seen = Some(now);
        let err = || KvError::NotLeader { leader: now.2 };
        let mut out = Vec::new();
        if !still_leading {
            for (_, w) in std::mem::take(&mut self.writes) {
                out.push((w.client, reply_err(w.id, err())));
            }
            self.write_bytes = 0;
        }
        for (_, r) in std::mem::take(&mut self.reads) {
            out.push((r.client, reply_err(r.id, err())));
        }
        out
    }

    /// Answers the confirmed reads whose index is applied.
    fn answer_reads(&mut self) -> Replies<C> {
        let later = self
            .confirmed
            .split_off(&self.store.applied().saturating_add(1));
        let ready = std::mem::replace(&mut self.confirmed, later);
        let mut out = Vec::new();
        for r in ready.into_values().flatten() {
            self.confirmed_len -= 1;
            let result = self.store.read(&r.op).map(Answer::Op);
            out.push((r.client, ClientReply { id: r.id, result }));
        }
        out
    }

    /// "Retry": the entry is gone or its fate cannot be told from here.
    fn lost(&self) -> KvError {
        KvError::EntryLost {
            leader: self.seen.and_then(|s| s.2),
        }
    }
}

/// Size limits for what a record carries.
fn body_check(cfg: &StoreConfig, body: &RecordBody) -> Result<(), KvError> {
    match body {
        RecordBody::Register => Ok(()),
        RecordBody::Request { op, .. }
        | RecordBody::Read { op }
        | RecordBody::PlainWrite { op } => cfg.check(op),
    }
}

fn reply_err(id: RequestId, e: KvError) -> ClientReply {
    ClientReply { id, result: Err(e) }
}

/// The client's answer for a record's outcome.
fn answer_of(outcome: Outcome) -> Result<Answer, KvError> {
    match outcome {
        Outcome::Registered { session } => Ok(Answer::Registered { session }),
        Outcome::Answered { answer, .. }
        | Outcome::Read { answer }
        | Outcome::Applied { answer } => answer.map(Answer::Op),
        Outcome::Rejected(e) => Err(KvError::BadRecord(e)),
        // Our own proposal is always a record; never reached.
        Outcome::Skipped => Err(KvError::EntryLost { leader: None }),
    }
}

/// A node's refusal, as the client sees it.
fn node_error(e: raft_core::Error) -> KvError {
    match e {
        raft_core::Error::NotLeader { leader } => KvError::NotLeader { leader },
        e => KvError::Unavailable {
            reason: e.to_string(),
        },
    }
}
