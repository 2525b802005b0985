//! Starting and stopping a node: check the data directory, open the WAL,
//! restore the state machine, bind the ports, and start the driver thread,
//! the peer transport, the ticker and the HTTP server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use raft_core::{ConfEntry, ConfState, EntryKind, Node, NodeId, Snapshot};
use raft_kv::{Service, ServiceConfig, StoreError};
use raft_wal::{SyncMode, Wal, WalError, WalOptions};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::binary;
use crate::config::{ConfigError, PeerAddrs, ServerConfig};
use crate::driver::{self, Driver, Input};
use crate::http::{self, AppState};
use crate::identity::{self, Identity, IdentityError};
use crate::join;
use crate::logging::{self, NodeLabel};
use crate::members::{self, MemberTable};
use crate::metrics::Metrics;
use crate::reconfig::Reconfig;
use crate::snapshots::Snapshotter;
use crate::space::Space;
use crate::transport::Transport;

/// How long shutdown waits for in-flight HTTP requests.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Why a node did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A port could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The data directory belongs to another node or cluster, or is unreadable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The WAL refused to open: locked, corrupt, or missing data.
    #[error("cannot open the WAL: {0}")]
    Wal(#[from] WalError),
    /// The stored snapshot or log cannot be loaded.
    #[error("cannot load the stored state: {0}")]
    Load(String),
    /// The driver thread could not be started.
    #[error("cannot start the driver thread: {0}")]
    Thread(std::io::Error),
    /// Joining the cluster failed (no answer in time).
    #[error("cannot join: {0}")]
    Join(String),
    /// The cluster refused to add this node (wrong cluster, an id in use
    /// or retired, an address no one can reach).
    #[error("the cluster refused to add this node: {0}")]
    JoinRefused(String),
}

impl StartError {
    /// Whether the data directory is at fault (wrong identity, locked,
    /// corrupt): the process exit code tells this apart from bad flags.
    pub fn is_data_dir(&self) -> bool {
        matches!(
            self,
            StartError::Identity(_) | StartError::Wal(_) | StartError::Load(_)
        )
    }
}

/// Why a running node stopped on its own.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The WAL failed (a write or fsync error, a full disk): the node cannot
    /// keep the contract and stops; a restart recovers what was synced.
    #[error("storage failed: {0}")]
    Storage(raft_core::Error),
    /// The state machine cannot follow the log (a snapshot that does not decode).
    #[error("state machine failed: {0}")]
    StateMachine(StoreError),
    /// A snapshot's member table does not decode.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// After a full disk, the WAL could not be opened again.
    #[error("cannot reopen the WAL after a full disk: {0}")]
    Reopen(String),
    /// The driver thread ended without saying why (a panic).
    #[error("the driver thread ended unexpectedly")]
    DriverLost,
}

/// A running node. Stop it with [`shutdown`](Server::shutdown); a node
/// whose storage fails stops by itself ([`stopped`](Server::stopped)).
pub struct Server {
    client_addr: SocketAddr,
    raft_addr: SocketAddr,
    inbox: mpsc::Sender<Input>,
    state: AppState,
    cancel: CancellationToken,
    http_stop: CancellationToken,
    http: JoinHandle<()>,
    /// The client port's accept loop and binary connections.
    binary: TaskTracker,
    done: Option<oneshot::Receiver<Result<(), ServerError>>>,
    metrics: Arc<Metrics>,
    span: tracing::Span,
}

impl Server {
    /// Starts a node. Blocking work (the identity file, opening the WAL,
    /// reading the snapshot) runs on a blocking thread, never on the
    /// runtime's workers.
    pub async fn start(mut cfg: ServerConfig) -> Result<Server, StartError> {
        cfg.validate()?;
        let bind = |what, addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let client_listener = bind("client port", cfg.client_bind()).await?;
        let raft_listener = bind("raft port", cfg.raft_bind()).await?;
        let local = |l: &TcpListener| l.local_addr().expect("a bound socket has an address");
        let (client_addr, raft_addr) = (local(&client_listener), local(&raft_listener));

        let label = NodeLabel::new(cfg.id);
        let span = logging::node_span(&label);
        let found = {
            let dir = cfg.data_dir.clone();
            tokio::task::spawn_blocking(move || identity::read(&dir))
                .await
                .map_err(|e| StartError::Load(e.to_string()))??
        };
        // A node that joined (now or before) has no bootstrap voters, and
        // asks to be promoted unless it is to stay a learner.
        let mut joined = None;
        match found {
            Some(f) if f.joined => {
                if !cfg.peers.contains_key(&cfg.id) {
                    cfg.peers = f.peer_map();
                }
                cfg.voters = Some(Vec::new());
                cfg.learner = f.learner;
                joined = Some(!f.learner);
            }
            Some(_) => {}
            None if cfg.join.is_some() => {
                cfg.peers = join::join(&cfg, client_addr, raft_addr)
                    .instrument(span.clone())
                    .await?;
                cfg.voters = Some(Vec::new());
                joined = Some(!cfg.learner);
            }
            None => {}
        }
        let (opened, space) = {
            let cfg = cfg.clone();
            let span = span.clone();
            let joined = joined.is_some();
            tokio::task::spawn_blocking(move || span.in_scope(|| open(&cfg, joined)))
                .await
                .map_err(|e| StartError::Load(e.to_string()))??
        };
        let Opened {
            node,
            service,
            reconfig,
            book,
        } = opened;

        let metrics = Arc::new(Metrics::new());
        let cancel = CancellationToken::new();
        let (inbox, inbox_rx) = mpsc::channel(cfg.inbox);
        let links: Vec<(NodeId, String)> =
            book.iter().map(|(&id, p)| (id, p.raft.clone())).collect();
        let peers = Arc::new(RwLock::new(book));
        let shared = Transport::shared(
            cfg.id,
            cfg.cluster_id.clone(),
            links,
            cfg.max_frame_bytes,
            cfg.peer_queue_messages,
            cfg.peer_queue_bytes,
            inbox.clone(),
            metrics.clone(),
            cancel.clone(),
        );
        let transport = {
            let _entered = span.enter();
            Transport::start(shared, raft_listener, span.clone())
        };
        let driver = Driver {
            node,
            service,
            space,
            cfg: Arc::new(cfg.clone()),
            next_ticket: 0,
            inbox: inbox_rx,
            transport,
            metrics: metrics.clone(),
            label,
            peers: peers.clone(),
            reconfig,
            cluster_id: cfg.cluster_id.clone(),
            tick: cfg.tick,
            snapshots: Snapshotter::new(cfg.id, inbox.downgrade(), cfg.snapshot_hook.clone()),
        };
        let done = driver::spawn(driver, span.clone()).map_err(|e| {
            cancel.cancel();
            StartError::Thread(e)
        })?;
        tokio::spawn(ticker(inbox.clone(), cfg.tick, cancel.clone()).instrument(span.clone()));
        if joined == Some(true) {
            let promote = join::promote(cfg.id, inbox.clone(), cfg.join.clone(), cancel.clone());
            tokio::spawn(promote.instrument(span.clone()));
        }

        let state = AppState::new(
            cfg.id,
            inbox.clone(),
            peers,
            cfg.max_body_bytes,
            cfg.max_pending_bytes as usize,
            metrics.clone(),
        );
        let http_stop = CancellationToken::new();
        let binary = TaskTracker::new();
        let http = {
            let app = axum::ServiceExt::into_make_service(http::Api::new(state.clone()));
            let stop = http_stop.clone();
            // Binary connections are served off this listener; the rest
            // come out of it to the HTTP server.
            let listener = binary::split(
                client_listener,
                client_addr,
                state.clone(),
                stop.clone(),
                binary.clone(),
                span.clone(),
            );
            tokio::spawn(
                async move {
                    let serve = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await });
                    if let Err(e) = serve.await {
                        warn!("the HTTP server failed: {e}");
                    }
                }
                .instrument(span.clone()),
            )
        };
        span.in_scope(|| {
            info!(
                "node {} of cluster {:?} serving clients on {client_addr}, peers on {raft_addr}, data in {}",
                cfg.id,
                cfg.cluster_id,
                cfg.data_dir.display()
            )
        });
        Ok(Server {
            client_addr,
            raft_addr,
            inbox,
            state,
            cancel,
            http_stop,
            http,
            binary,
            done: Some(done),
            metrics,
            span,
        })
    }

    /// The bound HTTP address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound Raft address.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The span the node's lines are logged in (it shows id, term and role).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Resolves when the driver ends by itself: `Err` when storage failed.
    /// (After [`shutdown`](Server::shutdown) it is not called.)
    pub async fn stopped(&mut self) -> Result<(), ServerError> {
        match self.done.as_mut() {
            Some(done) => {
                let r = done.await.unwrap_or(Err(ServerError::DriverLost));
                self.done = None;
                r
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the node gracefully: new requests get 503, the driver finishes
    /// its current turn (and fsync) and closes the WAL, requests still
    /// waiting get 503, then the ports close.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.span.in_scope(|| info!("shutting down"));
        self.state.close();
        self.http_stop.cancel();
        let _ = self.inbox.send(Input::Stop).await;
        let result = match self.done.take() {
            Some(done) => done.await.unwrap_or(Err(ServerError::DriverLost)),
            None => Ok(()),
        };
        self.cancel.cancel();
        if tokio::time::timeout(HTTP_DRAIN, &mut self.http)
            .await
            .is_err()
        {
            self.http.abort();
        }
        // Binary connections end on their own once their answers are out,
        // or a grace period after the stop for a client that stopped
        // reading (see binary::conn); this bound is only a backstop.
        self.binary.close();
        if tokio::time::timeout(HTTP_DRAIN, self.binary.wait())
            .await
            .is_err()
        {
            self.span
                .in_scope(|| warn!("binary client connections still open at shutdown"));
        }
        result
    }
}

/// A node's Raft state, state machine and member table, as the driver holds them.
pub(crate) struct Opened {
    pub node: Node<Wal>,
    pub service: Service<driver::ReplyTo>,
    pub reconfig: Reconfig,
    /// Every member's addresses known at start: the bootstrap peers, the
    /// snapshot's table, and the configuration entries in the log.
    pub book: BTreeMap<NodeId, PeerAddrs>,
}

/// Checks the data directory, sets up its reserve, opens the WAL and
/// restores the state machine from its snapshot. Blocking.
fn open(cfg: &ServerConfig, joined: bool) -> Result<(Opened, Space), StartError> {
    let mut expected =
        Identity::new(&cfg.cluster_id, cfg.id, cfg.bootstrap_voters()).with_peers(&cfg.peers);
    expected.joined = joined;
    expected.learner = joined && cfg.learner;
    identity::check_or_create(&cfg.data_dir, &expected)?;
    let space = Space::open(&cfg.data_dir, cfg.reserve_bytes).map_err(|e| {
        StartError::Load(format!(
            "cannot write the reserve file in {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    Ok((open_node(cfg)?, space))
}

/// Opens the WAL and restores the state machine and member table from its
/// snapshot: what a start does, and what the driver does again after a
/// full disk. Blocking.
pub(crate) fn open_node(cfg: &ServerConfig) -> Result<Opened, StartError> {
    let voters = cfg.bootstrap_voters();
    let opts = WalOptions {
        sync: if cfg.fsync {
            SyncMode::Always
        } else {
            SyncMode::Never
        },
        segment_bytes: cfg.segment_bytes,
        ..WalOptions::default()
    };
    let wal = Wal::open(cfg.data_dir.join(identity::WAL_DIR), opts)?;
    if let Some(torn) = &wal.recovery().torn_tail {
        warn!(
            "cut a torn write of {} bytes at the end of {} (offset {}): it was never acknowledged",
            torn.dropped,
            torn.path.display(),
            torn.offset
        );
    }
    let service_cfg = ServiceConfig {
        max_pending: cfg.max_pending,
        max_pending_bytes: cfg.max_pending_bytes,
        pending_timeout_ms: cfg.request_timeout.as_millis() as u64,
        max_raft_state: Some(cfg.snapshot_bytes),
        ..ServiceConfig::default()
    };
    let mut service = Service::new(service_cfg);
    let snapshot =
        raft_core::Storage::snapshot(&wal).map_err(|e| StartError::Load(e.to_string()))?;
    let mut table = None;
    if snapshot.meta.index > 0 {
        let (stored, image) = members::unwrap_snapshot(&snapshot.data)
            .map_err(|e| StartError::Load(format!("the stored snapshot: {e}")))?;
        table = stored;
        let inner = Snapshot {
            meta: snapshot.meta,
            conf: snapshot.conf.clone(),
            data: image.to_vec(),
        };
        service
            .restore(&inner)
            .map_err(|e| StartError::Load(format!("the stored snapshot: {e}")))?;
    }
    // A snapshot without a configuration stands for the bootstrap one.
    let conf = if snapshot.meta.index > 0 && !snapshot.conf.voters.is_empty() {
        snapshot.conf.clone()
    } else {
        ConfState::new(&voters)
    };
    let table = table.unwrap_or_else(|| MemberTable::new(cfg.peers.clone()));
    let raft = raft_core::Config {
        noop_on_election: true,
        async_leader_writes: cfg.async_leader_writes,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        seed: seed(cfg.id),
        ..raft_core::Config::new(cfg.id, voters)
    };
    let node = Node::new(raft, wal).map_err(|e| StartError::Load(e.to_string()))?;
    let mut book: BTreeMap<NodeId, PeerAddrs> = cfg.peers.clone();
    book.extend(table.addrs.clone());
    for (id, addrs) in logged_members(&node)? {
        book.entry(id).or_insert(addrs);
    }
    book.retain(|id, _| !table.retired.contains(id));
    let reconfig = Reconfig::new(table, conf, snapshot.meta.index);
    Ok(Opened {
        node,
        service,
        reconfig,
        book,
    })
}

/// The members added by configuration entries in the log (after the
/// snapshot), with the addresses their entries carry.
fn logged_members(node: &Node<Wal>) -> Result<Vec<(NodeId, PeerAddrs)>, StartError> {
    const CHUNK: u64 = 4096;
    let mut out = Vec::new();
    let (mut lo, hi) = (node.status().first_index, node.last_index() + 1);
    while lo < hi {
        let to = (lo + CHUNK).min(hi);
        let entries = node
            .entries(lo, to)
            .map_err(|e| StartError::Load(e.to_string()))?;
        for e in entries.iter().filter(|e| e.kind == EntryKind::Config) {
            let added =
                ConfEntry::decode(&e.data).and_then(|c| members::decode_context(&c.context));
            out.extend(added);
        }
        lo = to;
    }
    Ok(out)
}

/// A per-start seed for election timeouts: nodes must not draw the same ones.
fn seed(id: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ id.rotate_left(32) ^ u64::from(std::process::id())
}

/// Wakes the driver every tick; a full inbox already wakes it.
async fn ticker(inbox: mpsc::Sender<Input>, tick: Duration, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        match inbox.try_send(Input::Tick) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
