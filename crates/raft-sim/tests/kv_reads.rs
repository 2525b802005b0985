//! Reads are served by ReadIndex (thesis §6.4), never through the log, so
//! only the history check can tell a stale one. Here a leader is cut off
//! with a minority while a clerk that reaches only that side keeps reading
//! and another clerk writes through the majority's new leader: every read
//! the old side answers must fit the history.

use raft_core::NodeId;
use raft_kv::Op;
use raft_sim::kv::{KvCluster, Workload};
use raft_sim::seeds;

/// "A leader must check whether it has been deposed before processing a
/// read-only request" (Raft paper §8). Eight rounds: the leader and one
/// follower are split from the other three; clerk `r` reaches only those
/// two and reads key `k` every few ms; clerk `w` reaches only the three and
/// puts a new value every few ms. After 1.5 s the network heals.
#[test]
fn kv_deposed_leader_answers_no_read() {
    const NAME: &str = "kv_deposed_leader_answers_no_read";
    seeds::run(NAME, |seed| {
        let mut cfg = KvCluster::new(NAME, seed, 5, false, None)?;
        let all = cfg.all();
        let ck = cfg.make_client(&all);
        cfg.put(ck, "k", "0")?;
        let mut clerks = Vec::new();
        for round in 0..8u64 {
            let leader = cfg.cluster.check_one_leader()?;
            let minority: Vec<NodeId> = vec![leader, cfg.cluster.next(leader, 1)];
            let majority: Vec<NodeId> = (2..5).map(|k| cfg.cluster.next(leader, k)).collect();
            let r = cfg.make_client(&minority);
            let w = cfg.make_client(&majority);
            // Clerk r knows the leader before the split.
            cfg.get(r, "k")?;
            let gets = (0..2_000).map(|_| Op::Get { key: b"k".to_vec() });
            let puts = (0..2_000).map(|i| Op::Put {
                key: b"k".to_vec(),
                value: format!("{round}.{i}").into_bytes(),
            });
            cfg.partition(&minority, &majority);
            cfg.run_workload(r, Workload::Script(gets.collect()), (1, 5))?;
            cfg.run_workload(w, Workload::Script(puts.collect()), (1, 5))?;
            cfg.run_for(1_500)?;
            cfg.stop_clients();
            cfg.connect_all();
            clerks.extend([r, w]);
            cfg.wait_clients(&clerks, 30_000)?;
        }
        cfg.check_replicas(5_000)?;
        cfg.check_history()
    });
}
