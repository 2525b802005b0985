//! The node's metrics, in Prometheus text form at `GET /metrics`.
//!
//! Every metric is an atomic (histograms a short lock) updated where the
//! event happens: the driver for Raft and the WAL, the transport for peers,
//! the HTTP layer for client answers. Names start with `raftkv_`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use raft_core::{NodeId, Role};

/// A metric's label naming a peer.
pub type PeerLabel = [(&'static str, u64); 1];
/// A metric's label naming a client answer's status code.
pub type CodeLabel = [(&'static str, u16); 1];

type HistogramFamily = Family<PeerLabel, Histogram, fn() -> Histogram>;

/// Every metric of one node.
pub struct Metrics {
    registry: Registry,
    /// Entries this node appended to its log as leader.
    pub proposals: Counter,
    /// The commit index.
    pub commit_index: Gauge,
    /// The last applied index.
    pub applied_index: Gauge,
    /// Entries applied to the state machine.
    pub applied: Counter,
    /// Duration of each WAL write + fsync.
    pub fsync_seconds: Histogram,
    /// Entries made durable by each fsync (group commit).
    pub fsync_entries: Histogram,
    /// Elections this node started.
    pub elections: Counter,
    /// Times this node saw a new leader.
    pub leader_changes: Counter,
    /// The current term.
    pub term: Gauge,
    /// 0 follower, 1 pre-candidate, 2 candidate, 3 leader.
    pub role: Gauge,
    /// Snapshots this node took of its state machine.
    pub snapshots_taken: Counter,
    /// Snapshots from a leader this node installed.
    pub snapshots_installed: Counter,
    /// Encoding one snapshot image, on the snapshot thread.
    pub snapshot_encode_seconds: Histogram,
    /// Writing and fsyncing one snapshot file, on the snapshot thread.
    pub snapshot_write_seconds: Histogram,
    /// Snapshot files that failed to write.
    pub snapshot_write_failures: Counter,
    /// Messages sent, per peer.
    pub peer_messages_sent: Family<PeerLabel, Counter>,
    /// Bytes sent, per peer (frames included).
    pub peer_bytes_sent: Family<PeerLabel, Counter>,
    /// Messages received, per peer.
    pub peer_messages_received: Family<PeerLabel, Counter>,
    /// Bytes received, per peer.
    pub peer_bytes_received: Family<PeerLabel, Counter>,
    /// Messages dropped from a full send queue (or too large to send).
    pub peer_messages_dropped: Family<PeerLabel, Counter>,
    /// Round-trip time of a transport ping, per peer.
    pub peer_rtt_seconds: HistogramFamily,
    /// Connections established, per peer.
    pub peer_connections: Family<PeerLabel, Counter>,
    /// Peer connections closed for a protocol error (bad frame, bad handshake).
    pub peer_protocol_errors: Counter,
    /// Client answers, by HTTP status code.
    pub http_responses: Family<CodeLabel, Counter>,
    /// Binary-protocol answers, by the status code they carry (200: done).
    pub binary_responses: Family<CodeLabel, Counter>,
    /// Binary-protocol connections closed for a bad preface or frame.
    pub binary_protocol_errors: Counter,
    /// 1 while the node refuses writes for lack of disk space.
    pub no_space: Gauge,
    /// Times the WAL was reopened after a full disk.
    pub storage_reopens: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let latency = || Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        // 1 ms to about 65 s.
        let slow = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let rtt: fn() -> Histogram = || Histogram::new(exponential_buckets(0.000_02, 2.0, 18));
        let m = Metrics {
            registry: Registry::with_prefix("raftkv"),
            proposals: Counter::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            applied: Counter::default(),
            fsync_seconds: latency(),
            fsync_entries: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            elections: Counter::default(),
            leader_changes: Counter::default(),
            term: Gauge::default(),
            role: Gauge::default(),
            snapshots_taken: Counter::default(),
            snapshots_installed: Counter::default(),
            snapshot_encode_seconds: slow(),
            snapshot_write_seconds: slow(),
            snapshot_write_failures: Counter::default(),
            peer_messages_sent: Family::default(),
            peer_bytes_sent: Family::default(),
            peer_messages_received: Family::default(),
            peer_bytes_received: Family::default(),
            peer_messages_dropped: Family::default(),
            peer_rtt_seconds: Family::new_with_constructor(rtt),
            peer_connections: Family::default(),
            peer_protocol_errors: Counter::default(),
            http_responses: Family::default(),
            binary_responses: Family::default(),
            binary_protocol_errors: Counter::default(),
            no_space: Gauge::default(),
            storage_reopens: Counter::default(),
        };
        m.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "proposals",
            "Entries appended to the log as leader",
            self.proposals.clone(),
        );
        r.register("commit_index", "Commit index", self.commit_index.clone());
        r.register(
            "applied_index",
            "Last applied index",
            self.applied_index.clone(),
        );
        r.register("applied", "Entries applied", self.applied.clone());
        r.register_with_unit(
            "fsync",
            "WAL write and fsync of one batch",
            Unit::Seconds,
            self.fsync_seconds.clone(),
        );
        r.register(
            "fsync_entries",
            "Entries made durable by one fsync",
            self.fsync_entries.clone(),
        );
        r.register("elections", "Elections started", self.elections.clone());
        r.register(
            "leader_changes",
            "New leaders seen",
            self.leader_changes.clone(),
        );
        r.register("term", "Current term", self.term.clone());
        r.register(
            "role",
            "0 follower, 1 pre-candidate, 2 candidate, 3 leader",
            self.role.clone(),
        );
        r.register(
            "snapshots_taken",
            "State machine snapshots taken",
            self.snapshots_taken.clone(),
        );
        r.register(
            "snapshots_installed",
            "Leader snapshots installed",
            self.snapshots_installed.clone(),
        );
        r.register_with_unit(
            "snapshot_encode",
            "Encoding one snapshot image (snapshot thread)",
            Unit::Seconds,
            self.snapshot_encode_seconds.clone(),
        );
        r.register_with_unit(
            "snapshot_write",
            "Writing and fsyncing one snapshot file (snapshot thread)",
            Unit::Seconds,
            self.snapshot_write_seconds.clone(),
        );
        r.register(
            "snapshot_write_failures",
            "Snapshot files that failed to write",
            self.snapshot_write_failures.clone(),
        );
        r.register(
            "peer_messages_sent",
            "Raft messages sent",
            self.peer_messages_sent.clone(),
        );
        r.register_with_unit(
            "peer_sent",
            "Frame bytes sent",
            Unit::Bytes,
            self.peer_bytes_sent.clone(),
        );
        r.register(
            "peer_messages_received",
            "Raft messages received",
            self.peer_messages_received.clone(),
        );
        r.register_with_unit(
            "peer_received",
            "Frame bytes received",
            Unit::Bytes,
            self.peer_bytes_received.clone(),
        );
        r.register(
            "peer_messages_dropped",
            "Raft messages dropped (send queue full, or too large)",
            self.peer_messages_dropped.clone(),
        );
        r.register_with_unit(
            "peer_rtt",
            "Transport ping round trip",
            Unit::Seconds,
            self.peer_rtt_seconds.clone(),
        );
        r.register(
            "peer_connections",
            "Peer connections established",
            self.peer_connections.clone(),
        );
        r.register(
            "peer_protocol_errors",
            "Peer connections closed for a protocol error",
            self.peer_protocol_errors.clone(),
        );
        r.register(
            "http_responses",
            "Client answers by status code",
            self.http_responses.clone(),
        );
        r.register(
            "binary_responses",
            "Binary-protocol answers by the status code they carry",
            self.binary_responses.clone(),
        );
        r.register(
            "binary_protocol_errors",
            "Binary-protocol connections closed for a bad preface or frame",
            self.binary_protocol_errors.clone(),
        );
        r.register(
            "no_space",
            "1 while writes are refused for lack of disk space",
            self.no_space.clone(),
        );
        r.register(
            "storage_reopens",
            "WAL reopened after a full disk",
            self.storage_reopens.clone(),
        );
        self
    }

    /// The metrics in Prometheus (OpenMetrics) text form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Sets the role gauge.
    pub fn set_role(&self, role: Role) {
        self.role.set(role_number(role));
    }

    /// The label of `peer`.
    pub fn peer(peer: NodeId) -> PeerLabel {
        [("peer", peer)]
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn role_number(role: Role) -> i64 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}
