//! A node's settings: who it is, who its peers are and where they listen,
//! where its data lives, and the limits that bound its memory.
//!
//! Peers are named by id. Each entry gives the peer's Raft address (where
//! peers dial it) and its client address (where HTTP clients reach it, named
//! in redirects and `/v1/status`). Two nodes may list the same peer at
//! different addresses (a proxy, NAT, a container network): only the ids and
//! the cluster id must agree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use raft_core::NodeId;
use thiserror::Error;

/// The cluster id used when none is given.
pub const DEFAULT_CLUSTER_ID: &str = "raftkv";
/// The smallest frame limit allowed: an AppendEntries holds up to 1 MiB of
/// entries plus one more entry (a value of up to 1 MiB and its key), so
/// every message raft-core hands out fits in 4 MiB.
pub const MIN_FRAME_BYTES: usize = 4 << 20;
/// Longest cluster id, in bytes.
pub const MAX_CLUSTER_ID: usize = 64;

/// Where one member listens.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerAddrs {
    /// `host:port` of its Raft (peer) port.
    pub raft: String,
    /// `host:port` of its HTTP (client) port.
    pub client: String,
}

/// Everything a node needs to start. Build it with [`ServerConfig::new`],
/// change what you need, and [`validate`](ServerConfig::validate) it (the
/// server does so too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// This node's id (non-zero, one of `peers`).
    pub id: NodeId,
    /// The cluster's name. Peers with another cluster id are refused at the
    /// handshake, and the data directory records it.
    pub cluster_id: String,
    /// Every member, this node included.
    pub peers: BTreeMap<NodeId, PeerAddrs>,
    /// Where to bind the HTTP port (default: this node's client address).
    pub listen: Option<String>,
    /// Where to bind the Raft port (default: this node's Raft address).
    pub raft_listen: Option<String>,
    /// The data directory: the identity file and the WAL.
    pub data_dir: PathBuf,
    /// Whether the WAL fsyncs. Off only for tests and benchmarks that do not
    /// care about durability: a power cut may then lose acknowledged writes.
    pub fsync: bool,
    /// A leader sends new entries to the followers while it writes them
    /// (raft-core's `async_leader_writes`), so its fsync and theirs overlap.
    /// It counts itself toward a commit only once its own write is durable,
    /// so no acknowledged write depends on an unsynced disk. Followers
    /// always write before they answer.
    pub async_leader_writes: bool,
    /// Take a snapshot once this many bytes of entries were applied since the
    /// last one (the WAL then drops the log before it).
    pub snapshot_bytes: u64,
    /// Largest peer frame, sent or accepted.
    pub max_frame_bytes: usize,
    /// Largest HTTP request body.
    pub max_body_bytes: usize,
    /// Most messages queued for one peer; past it the oldest are dropped.
    pub peer_queue_messages: usize,
    /// Most bytes queued for one peer; past it the oldest are dropped.
    pub peer_queue_bytes: u64,
    /// Most inputs (client requests, peer batches) waiting for the driver.
    pub inbox: usize,
    /// Most client requests waiting in the KV service; past it, `Busy`.
    pub max_pending: usize,
    /// Most bytes of keys and values in client requests not yet answered
    /// (queued for the driver or waiting in the service); past it, `Busy`.
    pub max_pending_bytes: u64,
    /// A request still unanswered after this long gets a timeout error.
    pub request_timeout: Duration,
    /// One logical tick of raft-core.
    pub tick: Duration,
    /// Election timeout, in ticks (each follower waits [T, 2T)).
    pub election_ticks: u32,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// Size of the reserve file kept in the data directory, and the free
    /// space (plus 1 MiB) below which the node refuses writes: see
    /// [`space`](crate::space). 0 disables both.
    pub reserve_bytes: u64,
    /// The WAL starts a new segment file past this size.
    pub segment_bytes: u64,
    /// Join a running cluster through this member's client URL
    /// (`http://host:port`) when the data directory is new: the node asks
    /// to be added as a learner, receives the log or a snapshot, and asks to
    /// be promoted once caught up. Ignored once the directory is in use.
    pub join: Option<String>,
    /// With `join`: stay a learner, never ask to be promoted.
    pub learner: bool,
    /// The bootstrap voters (raft-core's `Config::voters`). `None`: every
    /// node in `peers`. Empty: a node that joined a running cluster, which
    /// learns the configuration from its leader.
    pub voters: Option<Vec<NodeId>>,
    /// How long a joining node keeps asking to be added.
    pub join_timeout: Duration,
    /// Called on the snapshot thread with the image's index before it is
    /// encoded: tests hold a snapshot there to watch the driver go on.
    #[doc(hidden)]
    pub snapshot_hook: SnapshotHook,
}

/// What a [`SnapshotHook`] may do to a job: fail its file write.
type HookFn = dyn Fn(raft_core::Index) -> Option<std::io::Error> + Send + Sync;

/// A function the snapshot thread calls before encoding an image (tests
/// only); an error it returns stands for the file write's. Configurations
/// compare equal whatever their hooks.
#[derive(Clone, Default)]
#[doc(hidden)]
pub struct SnapshotHook(pub Option<std::sync::Arc<HookFn>>);

impl SnapshotHook {
    /// A hook that calls `f`.
    pub fn new(f: impl Fn(raft_core::Index) + Send + Sync + 'static) -> Self {
        SnapshotHook(Some(std::sync::Arc::new(move |i| {
            f(i);
            None
        })))
    }

    /// A hook that calls `f` and fails the job's write with what it returns.
    pub fn failing(
        f: impl Fn(raft_core::Index) -> Option<std::io::Error> + Send + Sync + 'static,
    ) -> Self {
        SnapshotHook(Some(std::sync::Arc::new(f)))
    }

    pub(crate) fn call(&self, index: raft_core::Index) -> Option<std::io::Error> {
        self.0.as_ref().and_then(|f| f(index))
    }
}

impl std::fmt::Debug for SnapshotHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SnapshotHook(set)"
        } else {
            "SnapshotHook(none)"
        })
    }
}

impl PartialEq for SnapshotHook {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SnapshotHook {}

impl ServerConfig {
    /// A configuration with the defaults: 10 ms ticks, elections after
    /// 300–600 ms, heartbeats every 100 ms, fsync on, a snapshot every
    /// 64 MiB applied, 16 MiB frames, 2 MiB request bodies, 64 MiB
    /// segments, a 32 MiB reserve.
    pub fn new(id: NodeId, peers: BTreeMap<NodeId, PeerAddrs>, data_dir: PathBuf) -> Self {
        ServerConfig {
            id,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            peers,
            listen: None,
            raft_listen: None,
            data_dir,
            fsync: true,
            async_leader_writes: true,
            snapshot_bytes: 64 << 20,
            max_frame_bytes: 16 << 20,
            max_body_bytes: 2 << 20,
            peer_queue_messages: 4_096,
            peer_queue_bytes: 64 << 20,
            inbox: 8_192,
            max_pending: 4_096,
            max_pending_bytes: 64 << 20,
            request_timeout: Duration::from_secs(10),
            tick: Duration::from_millis(10),
            election_ticks: 30,
            heartbeat_ticks: 10,
            reserve_bytes: 32 << 20,
            segment_bytes: 64 << 20,
            join: None,
            snapshot_hook: SnapshotHook::default(),
            learner: false,
            voters: None,
            join_timeout: Duration::from_secs(60),
        }
    }

    /// The bootstrap voters: [`voters`](Self::voters), or every peer.
    pub fn bootstrap_voters(&self) -> Vec<NodeId> {
        self.voters
            .clone()
            .unwrap_or_else(|| self.peers.keys().copied().collect())
    }

    /// This node's own entry in `peers`.
    pub fn me(&self) -> Option<&PeerAddrs> {
        self.peers.get(&self.id)
    }

    /// The address the HTTP port binds.
    pub fn client_bind(&self) -> String {
        self.listen
            .clone()
            .or_else(|| self.me().map(|p| p.client.clone()))
            .unwrap_or_default()
    }

    /// The address the Raft port binds.
    pub fn raft_bind(&self) -> String {
        self.raft_listen
            .clone()
            .or_else(|| self.me().map(|p| p.raft.clone()))
            .unwrap_or_default()
    }

    /// Checks the settings before anything is opened or bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        check_cluster_id(&self.cluster_id)?;
        if self.peers.contains_key(&0) {
            return Err(ConfigError::ZeroId);
        }
        if let Some(url) = &self.join {
            let authority = url.strip_prefix("http://").unwrap_or(url);
            let authority = authority.strip_suffix('/').unwrap_or(authority);
            check_addr(authority).map_err(|_| ConfigError::BadJoinUrl(url.clone()))?;
            if !self.peers.contains_key(&self.id)
                && (self.listen.is_none() || self.raft_listen.is_none())
            {
                return Err(ConfigError::JoinNeedsListen);
            }
        } else if !self.peers.contains_key(&self.id) {
            return Err(ConfigError::NotAMember(self.id));
        }
        for p in self.peers.values() {
            check_addr(&p.raft)?;
            check_addr(&p.client)?;
        }
        for addr in self.listen.iter().chain(&self.raft_listen) {
            check_addr(addr)?;
        }
        if self.max_frame_bytes < MIN_FRAME_BYTES {
            return Err(ConfigError::FrameTooSmall {
                bytes: self.max_frame_bytes,
                min: MIN_FRAME_BYTES,
            });
        }
        let limits = [
            ("snapshot_bytes", self.snapshot_bytes),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("peer_queue_messages", self.peer_queue_messages as u64),
            ("peer_queue_bytes", self.peer_queue_bytes),
            ("inbox", self.inbox as u64),
            ("max_pending", self.max_pending as u64),
            ("max_pending_bytes", self.max_pending_bytes),
            ("tick", self.tick.as_millis() as u64),
            ("heartbeat_ticks", u64::from(self.heartbeat_ticks)),
            ("segment_bytes", self.segment_bytes),
        ];
        if let Some((name, _)) = limits.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.max_body_bytes as u64 > self.max_pending_bytes {
            return Err(ConfigError::BodyOverPending {
                body: self.max_body_bytes,
                pending: self.max_pending_bytes,
            });
        }
        if self.heartbeat_ticks >= self.election_ticks {
            return Err(ConfigError::Timing {
                heartbeat: self.heartbeat_ticks,
                election: self.election_ticks,
            });
        }
        Ok(())
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Node id 0 means "nobody" in raft-core.
    #[error("node id 0 is reserved; ids start at 1")]
    ZeroId,
    /// This node's id is not in the peer list.
    #[error("node {0} is not in the peer list (every member, this node included, must be listed)")]
    NotAMember(NodeId),
    /// One `--peers` entry does not parse.
    #[error("bad peer entry {entry:?}: {reason} (expected ID=RAFT_HOST:PORT/CLIENT_HOST:PORT)")]
    BadPeer { entry: String, reason: String },
    /// Two entries with one id.
    #[error("node {0} is listed twice in the peer list")]
    DuplicatePeer(NodeId),
    /// An address that is not `host:port`.
    #[error("bad address {addr:?}: expected HOST:PORT")]
    BadAddress { addr: String },
    /// The cluster id is empty, too long, or has spaces or control characters.
    #[error("bad cluster id {id:?}: 1 to 64 printable characters without spaces")]
    BadClusterId { id: String },
    /// The frame limit cannot hold the largest Raft message.
    #[error("max frame of {bytes} bytes is below the minimum of {min}")]
    FrameTooSmall { bytes: usize, min: usize },
    /// A limit that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// One request could fill the whole in-flight budget.
    #[error("max body ({body} bytes) must not exceed max pending bytes ({pending})")]
    BodyOverPending { body: usize, pending: u64 },
    /// `--join` names no member's client address.
    #[error("bad join URL {0:?}: expected http://HOST:PORT of a member's client port")]
    BadJoinUrl(String),
    /// A joining node must say where it listens (its address for the others).
    #[error("--join needs --listen and --raft-listen (the addresses the other members reach this node at)")]
    JoinNeedsListen,
    /// The heartbeat must come well within the election timeout.
    #[error("heartbeat ({heartbeat} ticks) must be shorter than the election timeout ({election} ticks)")]
    Timing { heartbeat: u32, election: u32 },
}

/// Parses a peer list: `ID=RAFT/CLIENT` entries separated by commas, e.g.
/// `1=127.0.0.1:7001/127.0.0.1:8001,2=127.0.0.1:7002/127.0.0.1:8002`.
pub fn parse_peers(list: &str) -> Result<BTreeMap<NodeId, PeerAddrs>, ConfigError> {
    let mut peers = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, peer) = parse_peer(entry)?;
        if peers.insert(id, peer).is_some() {
            return Err(ConfigError::DuplicatePeer(id));
        }
    }
    Ok(peers)
}

/// Parses one `ID=RAFT/CLIENT` entry.
pub fn parse_peer(entry: &str) -> Result<(NodeId, PeerAddrs), ConfigError> {
    let bad = |reason: &str| ConfigError::BadPeer {
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let (id, addrs) = entry.split_once('=').ok_or_else(|| bad("no '='"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| bad("the id is not a number"))?;
    if id == 0 {
        return Err(bad("id 0 is reserved"));
    }
    let (raft, client) = addrs
        .split_once('/')
        .ok_or_else(|| bad("no '/' between the Raft and the client address"))?;
    let peer = PeerAddrs {
        raft: raft.trim().to_string(),
        client: client.trim().to_string(),
    };
    for addr in [&peer.raft, &peer.client] {
        check_addr(addr).map_err(|_| bad(&format!("{addr:?} is not HOST:PORT")))?;
    }
    Ok((id, peer))
}

/// Formats peers back into the `--peers` syntax.
pub fn format_peers(peers: &BTreeMap<NodeId, PeerAddrs>) -> String {
    peers
        .iter()
        .map(|(id, p)| format!("{id}={}/{}", p.raft, p.client))
        .collect::<Vec<_>>()
        .join(",")
}

/// `host:port` with a non-empty host and a numeric port.
pub fn check_addr(addr: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::BadAddress {
        addr: addr.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

fn check_cluster_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLUSTER_ID
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadClusterId { id: id.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_format_back() {
        let s = "1=127.0.0.1:7001/127.0.0.1:8001, 2=node2:7002/10.0.0.2:80";
        let peers = parse_peers(s).unwrap();
        assert_eq!(peers[&2].raft, "node2:7002");
        assert_eq!(peers[&2].client, "10.0.0.2:80");
        assert_eq!(parse_peers(&format_peers(&peers)).unwrap(), peers);
    }

    #[test]
    fn bad_peer_lists_say_what_is_wrong() {
        let err = |s: &str| parse_peers(s).unwrap_err().to_string();
        assert!(err("1=a:1").contains("no '/'"));
        assert!(err("x=a:1/b:2").contains("not a number"));
        assert!(err("0=a:1/b:2").contains("reserved"));
        assert!(err("1=a/b:2").contains("\"a\" is not HOST:PORT"));
        assert!(err("1=a:99999/b:2").contains("not HOST:PORT"));
        assert_eq!(
            parse_peers("1=a:1/b:2,1=c:1/d:2"),
            Err(ConfigError::DuplicatePeer(1))
        );
    }

    #[test]
    fn validation() {
        let peers = parse_peers("1=a:1/b:2,2=c:1/d:2").unwrap();
        let cfg = ServerConfig::new(1, peers.clone(), "d".into());
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(
            ServerConfig::new(3, peers.clone(), "d".into()).validate(),
            Err(ConfigError::NotAMember(3))
        );
        let mut c = cfg.clone();
        c.cluster_id = "two words".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadClusterId { .. })
        ));
        let mut c = cfg.clone();
        c.max_frame_bytes = 1024;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::FrameTooSmall { .. })
        ));
        let mut c = cfg.clone();
        c.inbox = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("inbox")));
        let mut c = cfg;
        c.heartbeat_ticks = 30;
        assert!(matches!(c.validate(), Err(ConfigError::Timing { .. })));
    }
}
