//! Starting and stopping a node: check the data directory, open the WAL,
//! restore the state machine, bind the ports, and start the driver thread,
//! the peer transport, the ticker and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raft_core::Node;
use raft_kv::{Service, ServiceConfig, StoreError};
use raft_wal::{SyncMode, Wal, WalError, WalOptions};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::config::{ConfigError, ServerConfig};
use crate::driver::{self, Driver, Input};
use crate::http::{self, AppState};
use crate::identity::{self, Identity, IdentityError};
use crate::logging::{self, NodeLabel};
use crate::metrics::Metrics;
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
    done: Option<oneshot::Receiver<Result<(), ServerError>>>,
    metrics: Arc<Metrics>,
    span: tracing::Span,
}

impl Server {
    /// Starts a node. Blocking work (the identity file, opening the WAL,
    /// reading the snapshot) runs on a blocking thread, never on the
    /// runtime's workers.
    pub async fn start(cfg: ServerConfig) -> Result<Server, StartError> {
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
        let (node, service) = {
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || open(&cfg))
                .await
                .map_err(|e| StartError::Load(e.to_string()))??
        };

        let metrics = Arc::new(Metrics::new());
        let cancel = CancellationToken::new();
        let (inbox, inbox_rx) = mpsc::channel(cfg.inbox);
        let peers = Arc::new(cfg.peers.clone());
        let shared = Transport::shared(
            cfg.id,
            cfg.cluster_id.clone(),
            peers.iter().map(|(&id, p)| (id, p.raft.clone())),
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
            inbox: inbox_rx,
            transport,
            metrics: metrics.clone(),
            label,
            peers: peers.clone(),
            cluster_id: cfg.cluster_id.clone(),
            tick: cfg.tick,
        };
        let done = driver::spawn(driver, span.clone()).map_err(|e| {
            cancel.cancel();
            StartError::Thread(e)
        })?;
        tokio::spawn(ticker(inbox.clone(), cfg.tick, cancel.clone()).instrument(span.clone()));

        let state = AppState::new(
            cfg.id,
            inbox.clone(),
            peers,
            cfg.max_body_bytes,
            cfg.max_pending_bytes as usize,
            metrics.clone(),
        );
        let http_stop = CancellationToken::new();
        let http = {
            let app = http::router(state.clone());
            let stop = http_stop.clone();
            let listener = axum::serve::ListenerExt::tap_io(client_listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
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
        result
    }
}

/// Checks the data directory, opens the WAL and restores the state
/// machine from its snapshot. Blocking.
fn open(cfg: &ServerConfig) -> Result<(Node<Wal>, Service<driver::ReplyTo>), StartError> {
    let members: Vec<_> = cfg.peers.keys().copied().collect();
    let expected = Identity::new(&cfg.cluster_id, cfg.id, members.clone());
    identity::check_or_create(&cfg.data_dir, &expected)?;
    let opts = WalOptions {
        sync: if cfg.fsync {
            SyncMode::Always
        } else {
            SyncMode::Never
        },
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
    service
        .restore(&snapshot)
        .map_err(|e| StartError::Load(format!("the stored snapshot: {e}")))?;
    let raft = raft_core::Config {
        noop_on_election: true,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        seed: seed(cfg.id),
        ..raft_core::Config::new(cfg.id, members)
    };
    let node = Node::new(raft, wal).map_err(|e| StartError::Load(e.to_string()))?;
    Ok((node, service))
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
