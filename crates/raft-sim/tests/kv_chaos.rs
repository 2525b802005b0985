//! The chaos schedule with KV clerks: crashes, partitions, lossy,
//! duplicating and reordering links, long delays and held replies, with
//! snapshots on, while clerks call get, put, append, delete, cas and range
//! on a few hot keys; the whole history must be linearizable and the
//! replicas must end in the same state.

use raft_sim::kv::chaos::{run_kv_chaos, KvChaosConfig};
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
        seeds::figures(
            seed,
            &[
                ("calls", report.calls as f64),
                ("answered", report.answered as f64),
                ("crashes", report.faults.crashes as f64),
                ("partitions", report.faults.partitions as f64),
            ],
        );
        Ok(())
    });
}
