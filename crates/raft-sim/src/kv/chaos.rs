//! The chaos schedule ([`crate::chaos`]: crashes, partitions, lossy,
//! duplicating and reordering links, the lab's modes, long delays, held
//! replies), plus splits of the leader into a minority, with KV clerks calling get, put, append, delete, cas and range
//! on a few hot keys throughout, and snapshots on. Then everything heals,
//! every clerk finishes, each key is read once more, and the replicas and
//! the whole history are checked.

use raft_core::{NodeId, Storage};

use super::harness::KvCluster;
use super::workload::{RandomOps, Workload};
use super::ClerkId;
use crate::chaos::{heal_all, inject_fault, repair_one, ChaosReport};
use crate::clock::MS;
use crate::error::SimError;

/// How long and how busy a KV chaos run is.
#[derive(Clone, Debug)]
pub struct KvChaosConfig {
    /// Servers.
    pub nodes: usize,
    /// Virtual time of the faulty phase, in ms.
    pub duration_ms: u64,
    /// Concurrent clerks.
    pub clients: usize,
    /// Hot keys `h/0`, `h/1`...
    pub keys: usize,
    /// Pause between a clerk's calls, uniform in ms.
    pub pause_ms: (u64, u64),
    /// The lab's maxraftstate.
    pub max_raft_state: Option<u64>,
}

impl Default for KvChaosConfig {
    /// Five servers, 20 s, four clerks on three keys pausing up to 30 ms,
    /// snapshots past 2,000 bytes of Raft state.
    fn default() -> Self {
        KvChaosConfig {
            nodes: 5,
            duration_ms: 20_000,
            clients: 4,
            keys: 3,
            pause_ms: (0, 30),
            max_raft_state: Some(2_000),
        }
    }
}

/// What a KV chaos run did.
#[derive(Clone, Debug, Default)]
pub struct KvChaosReport {
    /// The faults injected.
    pub faults: ChaosReport,
    /// Calls made.
    pub calls: usize,
    /// Calls that returned an answer (the rest have unknown outcomes).
    pub answered: usize,
    /// Times the leader was split off with a minority.
    pub leader_isolations: u64,
    /// Servers holding a snapshot at the end.
    pub with_snapshot: usize,
    /// Snapshots taken at an index below the applied one (the image was
    /// taken some Readies before, see `KvConfig::snapshot_delay`).
    pub delayed_snapshots: u64,
    /// Delayed snapshots the node refused (a newer one came meanwhile).
    pub refused_snapshots: u64,
}

/// The fault that tests reads: the leader and a minority are split from the
/// rest, and so are the clerks: the first (a reader) reaches only the old
/// leader's side, the others only the majority, which soon elects a new
/// leader and writes; a deposed leader that still answered reads would
/// answer stale ones (Raft paper §8). Clerks reach every server again once
/// no partition is in force.
fn isolate_leader(kv: &mut KvCluster, clerks: &[ClerkId], report: &mut KvChaosReport) {
    let leader = kv
        .all()
        .into_iter()
        .filter_map(|id| kv.cluster.get_state(id).filter(|s| s.1).map(|s| (s.0, id)))
        .max()
        .map(|(_, id)| id);
    let Some(leader) = leader else {
        return;
    };
    let n = kv.n() as u64;
    let minority: Vec<NodeId> = (0..(n - 1) / 2)
        .map(|k| kv.cluster.next(leader, k))
        .collect();
    let majority: Vec<NodeId> = ((n - 1) / 2..n)
        .map(|k| kv.cluster.next(leader, k))
        .collect();
    kv.partition(&minority, &majority);
    // Clerks near one side: the first reaches only the old leader's side,
    // the others only the majority, which soon elects a new leader.
    for (i, &ck) in clerks.iter().enumerate() {
        kv.connect_client(ck, if i == 0 { &minority } else { &majority });
    }
    report.faults.partitions += 1;
    report.leader_isolations += 1;
}

/// Runs the KV chaos schedule for scenario `name` with `seed`.
pub fn run_kv_chaos(name: &str, seed: u64, cfg: &KvChaosConfig) -> Result<KvChaosReport, SimError> {
    let mut kv = KvCluster::new(name, seed, cfg.nodes, false, cfg.max_raft_state)?;
    let all = kv.all();
    let clerks: Vec<ClerkId> = (0..cfg.clients).map(|_| kv.make_client(&all)).collect();
    for (me, &ck) in clerks.iter().enumerate() {
        // The first clerk mostly reads: it stays with a leader as long as
        // it answers, deposed or not.
        let reads = if me == 0 { 90 } else { 40 };
        let ops = Workload::Random(RandomOps::new(me, cfg.keys).reads(reads));
        kv.run_workload(ck, ops, cfg.pause_ms)?;
    }
    let mut report = KvChaosReport::default();
    let end = kv.now() + cfg.duration_ms * MS;
    while kv.now() < end {
        match kv.rand_below(100) {
            0..=14 => isolate_leader(&mut kv, &clerks, &mut report),
            15..=49 => inject_fault(&mut kv.cluster, &mut report.faults)?,
            _ => repair_one(&mut kv.cluster, &mut report.faults)?,
        }
        if kv.rand_below(100) < 5 {
            heal_all(&mut kv.cluster)?;
        }
        if kv
            .all()
            .iter()
            .all(|&id| kv.cluster.sim().net().group_of(id) == 0)
        {
            for &ck in &clerks {
                kv.connect_client(ck, &all);
            }
        }
        let pause = 100 + kv.rand_below(900);
        kv.run_for(pause)?;
    }
    for &ck in &clerks {
        kv.connect_client(ck, &all);
    }
    heal_all(&mut kv.cluster)?;
    kv.cluster.sim_mut().release_all();
    kv.stop_clients();
    kv.wait_clients(&clerks, 30_000)?;
    let ck = kv.make_client(&all);
    for k in 0..cfg.keys {
        kv.get(ck, &format!("h/{k}"))?;
    }
    kv.check_replicas(10_000)?;
    kv.check_history()?;
    let recorded = kv.kv().clerks.recorded();
    report.calls = recorded.len();
    report.answered = recorded
        .iter()
        .filter(|r| matches!(r.end, Some((_, Ok(_)))))
        .count();
    report.with_snapshot = (1..=cfg.nodes as NodeId)
        .filter_map(|id| kv.cluster.sim().node(id))
        .filter(|n| n.storage().snapshot().is_ok_and(|s| s.meta.index > 0))
        .count();
    (report.delayed_snapshots, report.refused_snapshots) = kv.kv().delayed_snapshots();
    Ok(report)
}
