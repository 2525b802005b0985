//! `raftkv server`: one node, from flags and/or a TOML file.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use raftkv_server::{logging, parse_peers, PeerAddrs, Server, ServerConfig, StartError};
use serde::Deserialize;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use crate::Failure;

/// Flags of `raftkv server`. Each may also come from the `--config` file;
/// a flag given on the command line wins.
#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    /// TOML file with these settings (keys as the flags, `_` for `-`; peers
    /// as `[[peers]]` tables with `id`, `raft` and `client`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id (1, 2, ...).
    #[arg(long)]
    pub id: Option<u64>,
    /// Every member, this node included: ID=RAFT_HOST:PORT/CLIENT_HOST:PORT,...
    #[arg(long, value_name = "LIST")]
    pub peers: Option<String>,
    /// Where the HTTP port binds (default: this node's client address in --peers).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Where the Raft port binds (default: this node's Raft address in --peers).
    #[arg(long, value_name = "HOST:PORT")]
    pub raft_listen: Option<String>,
    /// The data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The cluster's id; peers with another are refused [default: raftkv].
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Snapshot after this many bytes of entries applied [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub snapshot_bytes: Option<u64>,
    /// Largest HTTP request body [default: 2 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest peer frame [default: 16 MiB; at least 4 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Keep a reserve file of this size in the data directory, and refuse
    /// writes (507 nospace) when free space falls below it plus 1 MiB
    /// [default: 32 MiB; 0 disables].
    #[arg(long, value_name = "BYTES")]
    pub reserve_bytes: Option<u64>,
    /// Start a new WAL segment file past this size [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Never fsync the WAL. UNSAFE: a power cut can lose acknowledged writes.
    #[arg(long)]
    pub unsafe_no_fsync: bool,
    /// Join a running cluster through this member's client URL
    /// (http://HOST:PORT) when the data directory is new: added as a
    /// learner, then promoted once caught up. Needs --listen and --raft-listen.
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// With --join: stay a learner (never ask to be promoted).
    #[arg(long, requires = "join")]
    pub learner: bool,
}

/// The `--config` file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u64>,
    peers: Option<Vec<FilePeer>>,
    listen: Option<String>,
    raft_listen: Option<String>,
    data_dir: Option<PathBuf>,
    cluster_id: Option<String>,
    snapshot_bytes: Option<u64>,
    max_body_bytes: Option<usize>,
    max_frame_bytes: Option<usize>,
    reserve_bytes: Option<u64>,
    wal_segment_bytes: Option<u64>,
    fsync: Option<bool>,
    join: Option<String>,
    learner: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    id: u64,
    raft: String,
    client: String,
}

/// Builds the node's configuration from the file and the flags.
pub fn config(args: ServerArgs) -> anyhow::Result<ServerConfig> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?
        }
        None => FileConfig::default(),
    };
    let join = args.join.clone().or(file.join.clone());
    let data_dir = args.data_dir.clone().or(file.data_dir.clone());
    // A data directory in use knows its node: it restarts from it alone.
    let known = match &data_dir {
        Some(dir) => raftkv_server::identity::read(dir)
            .ok()
            .flatten()
            .filter(|i| !i.peers.is_empty()),
        None => None,
    };
    let id = args
        .id
        .or(file.id)
        .or(known.as_ref().map(|k| k.node_id))
        .ok_or_else(|| anyhow!("missing --id (or `id` in the config file)"))?;
    let peers = match (&args.peers, file.peers) {
        (Some(list), _) => parse_peers(list)?,
        (None, Some(list)) => {
            let mut peers = std::collections::BTreeMap::new();
            for p in list {
                let entry = format!("{}={}/{}", p.id, p.raft, p.client);
                let (id, addrs): (u64, PeerAddrs) = raftkv_server::config::parse_peer(&entry)?;
                if peers.insert(id, addrs).is_some() {
                    return Err(anyhow!("node {id} is listed twice in the config file"));
                }
            }
            peers
        }
        (None, None) => match &known {
            Some(k) if k.node_id == id => k.peer_map(),
            _ if join.is_some() => Default::default(),
            _ => {
                return Err(anyhow!(
                    "missing --peers (or `[[peers]]` in the config file), or --join"
                ))
            }
        },
    };
    let data_dir =
        data_dir.ok_or_else(|| anyhow!("missing --data-dir (or `data_dir` in the config file)"))?;
    let mut cfg = ServerConfig::new(id, peers, data_dir);
    if let Some(k) = known.as_ref().filter(|k| k.node_id == id) {
        cfg.cluster_id = k.cluster_id.clone();
    }
    cfg.join = join;
    cfg.learner = args.learner || file.learner.unwrap_or(false);
    cfg.listen = args.listen.or(file.listen);
    cfg.raft_listen = args.raft_listen.or(file.raft_listen);
    if let Some(c) = args.cluster_id.or(file.cluster_id) {
        cfg.cluster_id = c;
    }
    if let Some(b) = args.snapshot_bytes.or(file.snapshot_bytes) {
        cfg.snapshot_bytes = b;
    }
    if let Some(b) = args.max_body_bytes.or(file.max_body_bytes) {
        cfg.max_body_bytes = b;
    }
    if let Some(b) = args.max_frame_bytes.or(file.max_frame_bytes) {
        cfg.max_frame_bytes = b;
    }
    if let Some(b) = args.reserve_bytes.or(file.reserve_bytes) {
        cfg.reserve_bytes = b;
    }
    if let Some(b) = args.wal_segment_bytes.or(file.wal_segment_bytes) {
        cfg.segment_bytes = b;
    }
    cfg.fsync = !args.unsafe_no_fsync && file.fsync.unwrap_or(true);
    cfg.validate()?;
    Ok(cfg)
}

/// Runs one node until SIGTERM or Ctrl-C (clean stop) or a failure.
pub fn run(args: ServerArgs) -> Result<(), Failure> {
    let cfg = config(args).map_err(Failure::Usage)?;
    logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("raftkv-worker")
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    rt.block_on(async {
        let mut server = Server::start(cfg).await.map_err(|e| match e {
            StartError::Config(_) | StartError::JoinRefused(_) => Failure::Usage(e.into()),
            e if e.is_data_dir() => Failure::DataDir(e.into()),
            e => Failure::Runtime(e.into()),
        })?;
        let span = server.span().clone();
        let mut term = signal(SignalKind::terminate()).map_err(|e| Failure::Runtime(e.into()))?;
        let why = tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = term.recv() => "terminated",
            r = server.stopped() => return r.map_err(|e| Failure::Runtime(e.into())),
        };
        span.in_scope(|| info!("{why}; stopping"));
        server
            .shutdown()
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
        span.in_scope(|| info!("stopped"));
        Ok(())
    })
}
