//! Node configuration, validated before a node starts.

use std::collections::BTreeSet;

use crate::error::ConfigError;
use crate::types::NodeId;

/// How a node behaves. Times are in ticks; the caller decides how long a
/// tick is (the simulator and the server use 10 ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The bootstrap configuration: every voting member, this node included.
    /// Used only until the node's storage holds a snapshot or a
    /// configuration entry, which then say who is in the cluster (§6). Empty
    /// for a server that will be added to a running cluster: it waits to
    /// hear from the leader and never campaigns before it is a voter.
    pub voters: Vec<NodeId>,
    /// Base election timeout T: each follower waits a random time in [T, 2T)
    /// without hearing from a leader before it campaigns (§5.2).
    pub election_tick: u32,
    /// Leader heartbeat interval; must be well below `election_tick`.
    pub heartbeat_tick: u32,
    /// A leader sends a follower its entries again when the oldest
    /// AppendEntries to it has gone this many ticks without an answer (the
    /// message or its reply is presumed lost). A little over the longest
    /// round trip (with the follower's fsync); too low resends what is only
    /// slow. Default 10, one default heartbeat interval.
    pub resend_tick: u32,
    /// Ask for votes in a PreVote round before raising the term, so a node
    /// that cannot win never disturbs the cluster (thesis §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority within an
    /// election timeout, and servers that heard from a leader within one
    /// ignore vote requests, PreVote or not (thesis §6.2, §4.2.3).
    pub check_quorum: bool,
    /// A new leader appends an empty entry of its term (§8). Off for the lab
    /// scenarios, which expect the first command at index 1.
    pub noop_on_election: bool,
    /// Most entries in one AppendEntries.
    pub max_msg_entries: usize,
    /// Most entry bytes in one AppendEntries (at least one entry is sent).
    pub max_msg_bytes: u64,
    /// Most AppendEntries in flight to one follower (pipelining window).
    pub max_inflight: usize,
    /// While at most this many entries sent to a follower are unacknowledged,
    /// each new AppendEntries carries them again with the new ones (it
    /// follows the match index, not the last message). For transports that
    /// reorder or lose single messages (the lab's RPC layer, datagrams): a
    /// message that overtakes an earlier one, or follows a lost one, is then
    /// accepted on its own instead of failing the consistency check and
    /// dropping the window to a probe. Such a message holds up to this many
    /// entries beyond `max_msg_entries` (still within `max_msg_bytes`): it
    /// trades bytes for round trips (on the lab's network, 1 KiB commands
    /// cost about 30% more bytes per entry, a quarter fewer messages).
    /// 0 (the default) sends each entry once, right for an ordered stream
    /// such as one TCP connection per peer.
    pub carry_unacked: usize,
    /// Most bytes of snapshot data in one InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Most entry bytes handed out to apply in one Ready (at least one entry),
    /// so a restart with a long committed log does not load it all at once.
    pub max_apply_bytes: u64,
    /// Serve reads under a leader lease (thesis §6.4.1) instead of a
    /// heartbeat round per read. Needs `check_quorum`. Safe only if no
    /// server's clock runs faster than another's by more than
    /// `lease_drift_permille`: the lease lasts from when the confirming
    /// heartbeat left for `election_tick × (1 − drift)` ticks, which is never
    /// longer than the thesis's bound, election timeout / (1 + drift)
    /// (Figure 6.3). Off by default: ReadIndex assumes nothing about clocks.
    pub lease_reads: bool,
    /// The clock-drift margin of leases, in thousandths of an election
    /// timeout (100: a lease lasts 90% of `election_tick`).
    pub lease_drift_permille: u32,
    /// A leader may send its AppendEntries before its own write of the same
    /// entries is durable, so its fsync runs in parallel with replication
    /// (like etcd's asynchronous storage writes). It then counts itself
    /// toward a commit only once its write is durable. Such messages come in
    /// [`Ready::early_messages`](crate::Ready::early_messages); followers
    /// still persist before they reply. Off by default.
    pub async_leader_writes: bool,
    /// Seed of the node's random number generator (election timeouts only).
    pub seed: u64,
}

impl Config {
    /// A configuration with the defaults: with a 10 ms tick, elections time
    /// out after 300–600 ms and heartbeats go every 100 ms (the lab's limit
    /// of ten per second).
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        Config {
            id,
            voters,
            election_tick: 30,
            heartbeat_tick: 10,
            resend_tick: 10,
            pre_vote: true,
            check_quorum: true,
            noop_on_election: false,
            max_msg_entries: 512,
            max_msg_bytes: 1 << 20,
            max_inflight: 64,
            carry_unacked: 0,
            snapshot_chunk_bytes: 64 << 10,
            max_apply_bytes: 16 << 20,
            lease_reads: false,
            lease_drift_permille: 100,
            async_leader_writes: false,
            seed: id,
        }
    }

    /// Checks the values before a node uses them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        let mut seen = BTreeSet::new();
        for &v in &self.voters {
            if v == 0 {
                return Err(ConfigError::ZeroId);
            }
            if !seen.insert(v) {
                return Err(ConfigError::DuplicateVoter(v));
            }
        }
        if !seen.is_empty() && !seen.contains(&self.id) {
            return Err(ConfigError::NotAVoter(self.id));
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.heartbeat_tick >= self.election_tick {
            return Err(ConfigError::HeartbeatNotBelowElection {
                heartbeat: self.heartbeat_tick,
                election: self.election_tick,
            });
        }
        if self.resend_tick == 0 {
            return Err(ConfigError::ZeroLimit("resend_tick"));
        }
        if self.max_msg_entries == 0 {
            return Err(ConfigError::ZeroLimit("max_msg_entries"));
        }
        if self.max_msg_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_msg_bytes"));
        }
        if self.max_inflight == 0 {
            return Err(ConfigError::ZeroLimit("max_inflight"));
        }
        if self.max_apply_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_apply_bytes"));
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(ConfigError::ZeroLimit("snapshot_chunk_bytes"));
        }
        if self.lease_reads && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        if self.lease_drift_permille >= 1000 {
            return Err(ConfigError::LeaseDrift(self.lease_drift_permille));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(1, vec![1, 2, 3]).validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(
            Config::new(1, vec![]).validate(),
            Ok(()),
            "a server waiting to be added"
        );
        assert_eq!(
            Config::new(1, vec![1, 2, 2]).validate(),
            Err(ConfigError::DuplicateVoter(2))
        );
        assert_eq!(
            Config::new(4, vec![1, 2, 3]).validate(),
            Err(ConfigError::NotAVoter(4))
        );
        assert_eq!(Config::new(0, vec![0]).validate(), Err(ConfigError::ZeroId));
        let mut c = Config::new(1, vec![1]);
        c.heartbeat_tick = c.election_tick;
        assert_eq!(
            c.validate(),
            Err(ConfigError::HeartbeatNotBelowElection {
                heartbeat: 30,
                election: 30
            })
        );
        c.heartbeat_tick = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroHeartbeat));
        let mut c = Config::new(1, vec![1]);
        c.resend_tick = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroLimit("resend_tick")));
        let mut c = Config::new(1, vec![1]);
        c.max_inflight = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroLimit("max_inflight")));
        let mut c = Config::new(1, vec![1]);
        c.lease_reads = true;
        c.check_quorum = false;
        assert_eq!(c.validate(), Err(ConfigError::LeaseWithoutCheckQuorum));
        c.check_quorum = true;
        c.lease_drift_permille = 1000;
        assert_eq!(c.validate(), Err(ConfigError::LeaseDrift(1000)));
    }
}
