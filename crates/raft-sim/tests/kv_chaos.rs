//! The chaos schedule with KV clerks: crashes, partitions, lossy,
//! duplicating and reordering links, long delays and held replies, with
//! snapshots on, while clerks call get, put, append, delete, cas and range
//! on a few hot keys; the whole history must be linearizable and the
//! replicas must end in the same state. Snapshots are taken some Readies
//! after their image, as the server's snapshot thread does.

use raft_sim::kv::chaos::{run_kv_chaos, KvChaosConfig};
use raft_sim::kv::workload::RandomOps;
use raft_sim::kv::{KvCluster, Recorded, Workload};
use raft_sim::seeds;

#[test]
fn kv_chaos() {
    seeds::run("kv_chaos", |seed| {
        let report = run_kv_chaos("kv_chaos", seed, &KvChaosConfig::default())?;
        assert!(
            report.answered * 2 > report.calls,
            "seed {seed}: only {} of {} calls were answered",
            report.answered,
            report.calls
        );
        assert!(
            report.with_snapshot > 0,
            "seed {seed}: no server took a snapshot"
        );
        assert!(
            report.delayed_snapshots > 0,
            "seed {seed}: no snapshot was taken below the applied index"
        );
        seeds::figures(
            seed,
            &[
                ("calls", report.calls as f64),
                ("answered", report.answered as f64),
                ("crashes", report.faults.crashes as f64),
                ("partitions", report.faults.partitions as f64),
                ("delayed snapshots", report.delayed_snapshots as f64),
                ("refused snapshots", report.refused_snapshots as f64),
            ],
        );
        Ok(())
    });
}

/// A short KV run with faults: clerks on the unreliable network, a crash
/// and a partition; returns every recorded call and the event count.
fn fingerprint(seed: u64) -> (Vec<Recorded>, u64) {
    let mut cfg = KvCluster::new("kv_replay", seed, 3, true, Some(1_000)).expect("starts");
    let all = cfg.all();
    for me in 0..3 {
        let ck = cfg.make_client(&all);
        let ops = Workload::Random(RandomOps::new(me, 2));
        cfg.run_workload(ck, ops, (0, 20)).expect("starts");
    }
    cfg.run_for(1_500).expect("runs");
    cfg.shutdown_server(2);
    cfg.partition(&[1], &[2, 3]);
    cfg.run_for(1_500).expect("runs");
    cfg.start_server(2).expect("restarts");
    cfg.connect_all();
    cfg.stop_clients();
    cfg.run_for(3_000).expect("runs");
    let recorded = cfg.kv().clerks().recorded().to_vec();
    (recorded, cfg.cluster.sim().events())
}

/// The same seed gives the same calls, answers and times; another seed
/// does not.
#[test]
fn kv_replay_is_deterministic() {
    let seed = seeds::seeds()[0];
    let a = fingerprint(seed);
    assert!(a.0.len() > 20, "seed {seed}: only {} calls", a.0.len());
    assert!(
        a == fingerprint(seed),
        "seed {seed} did not replay identically"
    );
    assert!(
        a != fingerprint(seed + 1),
        "seeds {seed} and {} ran alike",
        seed + 1
    );
}
