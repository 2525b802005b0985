//! openraft (0.9, the current stable line) over the same shape: three nodes,
//! each on its own thread (a single-threaded tokio runtime: openraft needs
//! one), a channel inbox per node, an in-memory log store and state machine
//! written here after openraft's storage traits, and clients that wait for
//! their write to be applied on the leader (`Raft::client_write`).

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    SnapshotPolicy, StorageError, StoredMembership, Vote,
};
use tokio::sync::{mpsc, oneshot};

use crate::workload::{payload, Cell, Outcome, COMPACT_EVERY, NODES};

openraft::declare_raft_types!(
    /// The bench's types: commands are shared buffers (the cheapest payload
    /// openraft allows: cloning one for a follower copies no bytes).
    pub TypeConfig:
        D = Bytes,
        R = u64,
);

type Raft = openraft::Raft<TypeConfig>;
type Nid = u64;

// ---------------------------------------------------------------- log store

#[derive(Default)]
struct LogInner {
    vote: Option<Vote<Nid>>,
    committed: Option<LogId<Nid>>,
    last_purged: Option<LogId<Nid>>,
    /// Entries after `last_purged`, in index order.
    entries: VecDeque<Entry<TypeConfig>>,
}

impl LogInner {
    /// Index of `entries[0]`.
    fn offset(&self) -> u64 {
        self.last_purged.map_or(0, |l| l.index + 1)
    }
}

/// The in-memory log: a deque behind a mutex, shared with the readers
/// openraft's replication tasks hold.
#[derive(Clone, Default)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<Nid>>
    where
        RB: std::ops::RangeBounds<u64> + Clone + std::fmt::Debug + Send,
    {
        use std::ops::Bound;
        let inner = self.lock();
        let off = inner.offset();
        let lo = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => off,
        }
        .max(off);
        let hi = match range.end_bound() {
            Bound::Included(&i) => i + 1,
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        }
        .min(off + inner.entries.len() as u64);
        if lo >= hi {
            return Ok(Vec::new());
        }
        Ok(inner
            .entries
            .range((lo - off) as usize..(hi - off) as usize)
            .cloned()
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<Nid>> {
        let inner = self.lock();
        let last = inner.entries.back().map(|e| e.log_id).or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<Nid>) -> Result<(), StorageError<Nid>> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<Nid>>, StorageError<Nid>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, c: Option<LogId<Nid>>) -> Result<(), StorageError<Nid>> {
        self.lock().committed = c;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<Nid>>, StorageError<Nid>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<Nid>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        self.lock().entries.extend(entries);
        // In memory, the write is durable as soon as it is made.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<Nid>) -> Result<(), StorageError<Nid>> {
        let mut inner = self.lock();
        let keep = log_id.index.saturating_sub(inner.offset()) as usize;
        inner.entries.truncate(keep);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<Nid>) -> Result<(), StorageError<Nid>> {
        let mut inner = self.lock();
        let drop = (log_id.index + 1).saturating_sub(inner.offset()) as usize;
        let drop = drop.min(inner.entries.len());
        inner.entries.drain(..drop);
        inner.last_purged = Some(log_id);
        Ok(())
    }
}

// ------------------------------------------------------------ state machine

/// What the state machine holds: how many commands it applied, and where.
#[derive(Clone, Default)]
struct SmState {
    last_applied: Option<LogId<Nid>>,
    membership: StoredMembership<Nid, BasicNode>,
    commands: u64,
}

#[derive(Default)]
struct SmInner {
    state: SmState,
    snapshot: Option<(SnapshotMeta<Nid, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine, shared with its snapshot builder.
#[derive(Clone, Default)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
}

impl StateMachine {
    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<Nid>> {
        let mut inner = self.lock();
        inner.snapshots_built += 1;
        let s = inner.state.clone();
        let meta = SnapshotMeta {
            last_log_id: s.last_applied,
            last_membership: s.membership.clone(),
            snapshot_id: format!("{}", inner.snapshots_built),
        };
        let data = s.commands.to_le_bytes().to_vec();
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<Nid>>, StoredMembership<Nid, BasicNode>), StorageError<Nid>> {
        let inner = self.lock();
        Ok((inner.state.last_applied, inner.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<u64>, StorageError<Nid>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let s = &mut inner.state;
        let mut out = Vec::new();
        for e in entries {
            s.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(_) => s.commands += 1,
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m)
                }
            }
            out.push(s.commands);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<Nid>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<Nid, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<Nid>> {
        let data = snapshot.into_inner();
        let commands = data
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let mut inner = self.lock();
        inner.state = SmState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            commands,
        };
        inner.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<Nid>> {
        Ok(self.lock().snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

// ---------------------------------------------------------------- network

type Reply<T, E = RaftError<Nid>> = oneshot::Sender<Result<T, E>>;

/// What a node's inbox carries: an RPC and where its answer goes.
enum Rpc {
    Append(
        AppendEntriesRequest<TypeConfig>,
        Reply<AppendEntriesResponse<Nid>>,
    ),
    Vote(VoteRequest<Nid>, Reply<VoteResponse<Nid>>),
    Snapshot(
        InstallSnapshotRequest<TypeConfig>,
        Reply<InstallSnapshotResponse<Nid>, RaftError<Nid, InstallSnapshotError>>,
    ),
    Stop,
}

/// The inboxes of all nodes.
#[derive(Clone)]
pub struct Network {
    inboxes: Arc<Vec<mpsc::UnboundedSender<Rpc>>>,
}

/// A connection to one node's inbox.
pub struct Connection {
    target: Nid,
    inbox: Option<mpsc::UnboundedSender<Rpc>>,
}

#[derive(Debug, thiserror::Error)]
#[error("node {0} is gone")]
struct Gone(Nid);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: Nid, _node: &BasicNode) -> Connection {
        let inbox = (target as usize)
            .checked_sub(1)
            .and_then(|i| self.inboxes.get(i))
            .cloned();
        Connection { target, inbox }
    }
}

impl Connection {
    async fn call<T, E: std::error::Error>(
        &self,
        make: impl FnOnce(Reply<T, E>) -> Rpc,
    ) -> Result<T, RPCError<Nid, BasicNode, E>> {
        let gone = || RPCError::Network(NetworkError::new(&Gone(self.target)));
        let inbox = self.inbox.as_ref().ok_or_else(gone)?;
        let (tx, rx) = oneshot::channel();
        inbox.send(make(tx)).map_err(|_| gone())?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(_) => Err(gone()),
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<Nid>, RPCError<Nid, BasicNode, RaftError<Nid>>> {
        self.call(|tx| Rpc::Append(rpc, tx)).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<Nid>,
        RPCError<Nid, BasicNode, RaftError<Nid, InstallSnapshotError>>,
    > {
        self.call(|tx| Rpc::Snapshot(rpc, tx)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<Nid>,
        _option: RPCOption,
    ) -> Result<VoteResponse<Nid>, RPCError<Nid, BasicNode, RaftError<Nid>>> {
        self.call(|tx| Rpc::Vote(rpc, tx)).await
    }
}

/// Serves one node's inbox: each RPC is handed to the node at once, on its
/// own task, so a slow one holds back no other.
async fn serve(raft: Raft, mut inbox: mpsc::UnboundedReceiver<Rpc>) {
    while let Some(rpc) = inbox.recv().await {
        let raft = raft.clone();
        match rpc {
            Rpc::Append(req, tx) => {
                tokio::spawn(async move {
                    let _ = tx.send(raft.append_entries(req).await);
                });
            }
            Rpc::Vote(req, tx) => {
                tokio::spawn(async move {
                    let _ = tx.send(raft.vote(req).await);
                });
            }
            Rpc::Snapshot(req, tx) => {
                tokio::spawn(async move {
                    let _ = tx.send(raft.install_snapshot(req).await);
                });
            }
            Rpc::Stop => break,
        }
    }
    let _ = raft.shutdown().await;
}

// ---------------------------------------------------------------- the run

/// openraft's configuration, set to raft-core's where they share a knob:
/// 100 ms heartbeats, 300–600 ms elections, 512 entries per AppendEntries,
/// a snapshot (and log purge) every `COMPACT_EVERY` entries.
fn config() -> anyhow::Result<Arc<openraft::Config>> {
    let cfg = openraft::Config {
        cluster_name: "bench".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        max_payload_entries: 512,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(COMPACT_EVERY),
        max_in_snapshot_log_to_keep: COMPACT_EVERY,
        ..Default::default()
    };
    Ok(Arc::new(cfg.validate()?))
}

/// One run of `cell` on a fresh three-node openraft cluster.
pub fn run(cell: Cell) -> anyhow::Result<Outcome> {
    let cfg = config()?;
    let (senders, receivers): (Vec<_>, Vec<_>) =
        NODES.iter().map(|_| mpsc::unbounded_channel()).unzip();
    let network = Network {
        inboxes: Arc::new(senders),
    };
    let (raft_tx, raft_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for (id, inbox) in NODES.iter().copied().zip(receivers) {
        let (cfg, network, raft_tx) = (cfg.clone(), network.clone(), raft_tx.clone());
        let h = thread::Builder::new()
            .name(format!("openraft-{id}"))
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let raft = Raft::new(
                        id,
                        cfg,
                        network,
                        LogStore::default(),
                        StateMachine::default(),
                    )
                    .await?;
                    let _ = raft_tx.send((id, raft.clone()));
                    serve(raft, inbox).await;
                    anyhow::Ok(())
                })
            })?;
        handles.push(h);
    }
    let mut rafts = BTreeMap::new();
    for _ in NODES {
        let (id, raft) = raft_rx.recv_timeout(Duration::from_secs(10))?;
        rafts.insert(id, raft);
    }
    let outcome = load(&rafts, cell);
    for inbox in network.inboxes.iter() {
        let _ = inbox.send(Rpc::Stop);
    }
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("openraft node panicked"))??;
    }
    outcome
}

/// Elects node 1 and runs the clients, each a task on this thread's own
/// runtime (the load generator, apart from the nodes as for the others).
fn load(rafts: &BTreeMap<Nid, Raft>, cell: Cell) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let first = rafts.get(&1).ok_or_else(|| anyhow::anyhow!("no node 1"))?;
        let members: BTreeMap<Nid, BasicNode> =
            NODES.iter().map(|&id| (id, BasicNode::default())).collect();
        first.initialize(members).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let leader = loop {
            if let Some(l) = first.metrics().borrow().current_leader {
                if let Some(r) = rafts.get(&l) {
                    if r.metrics().borrow().current_leader == Some(l) {
                        break r.clone();
                    }
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no openraft leader");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let begin = Instant::now();
        let t0 = begin + cell.warmup;
        let t1 = t0 + cell.measure;
        let tasks: Vec<_> = (0..cell.clients as u64)
            .map(|c| {
                let raft = leader.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let at = Instant::now();
                        if at >= t1 {
                            break;
                        }
                        let data = Bytes::from(payload(c, cell.payload));
                        if raft.client_write(data).await.is_err() {
                            break;
                        }
                        let now = Instant::now();
                        if now >= t0 && now <= t1 {
                            latencies.push((now - at).as_nanos() as u64);
                        }
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::with_capacity(1 << 20);
        for t in tasks {
            all.extend(t.await?);
        }
        Ok(Outcome::from_latencies(all, cell.measure))
    })
}
