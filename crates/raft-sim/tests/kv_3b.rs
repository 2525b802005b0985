//! The 6.824 lab's kvraft 3B tests (the KV service with snapshots), in
//! virtual time: the service snapshots once the persisted Raft state
//! reaches maxraftstate (1,000 bytes, as MemStorage measures it), a
//! restarted server restores the stored snapshot, and a follower that fell
//! behind the leader's snapshot catches up by InstallSnapshot. Every
//! history goes through the linearizability checker.

use raft_sim::kv::lab::{generic, Generic};
use raft_sim::kv::KvCluster;
use raft_sim::{seeds, SimError};

/// The lab's maxraftstate in its 3B tests.
const MAX_RAFT_STATE: u64 = 1_000;
/// The lab's bound on the snapshot for TestSnapshotSize3B.
const MAX_SNAPSHOT_STATE: u64 = 500;

fn snapshots(clients: usize, servers: usize) -> Generic {
    Generic {
        max_raft_state: Some(MAX_RAFT_STATE),
        ..Generic::new(clients, servers)
    }
}

fn run(name: &'static str, g: Generic) {
    seeds::run(name, |seed| generic(name, seed, &g));
}

/// The lab's check after a burst of writes: the servers threw most of
/// their log away.
fn check_trimmed(cfg: &KvCluster) -> Result<(), SimError> {
    let size = cfg.log_size();
    if size > 8 * MAX_RAFT_STATE {
        let msg = format!("logs were not trimmed ({size} > 8*{MAX_RAFT_STATE})");
        return Err(cfg.fatal(msg));
    }
    Ok(())
}

/// TestSnapshotRPC3B: a server cut off while the majority writes and
/// compacts its log must catch up by InstallSnapshot once it is needed for
/// a majority.
#[test]
fn kv_snapshot_rpc() {
    const NAME: &str = "kv_snapshot_rpc";
    seeds::run(NAME, |seed| {
        let mut cfg = KvCluster::new(NAME, seed, 3, false, Some(MAX_RAFT_STATE))?;
        let all = cfg.all();
        let ck = cfg.make_client(&all);
        cfg.put(ck, "a", "A")?;
        cfg.check(ck, "a", "A")?;

        // A bunch of puts into the majority partition.
        cfg.partition(&[1, 2], &[3]);
        let ck1 = cfg.make_client(&[1, 2]);
        for i in 0..50 {
            cfg.put(ck1, &i.to_string(), &i.to_string())?;
        }
        cfg.run_for(1_000)?;
        cfg.put(ck1, "b", "B")?;
        check_trimmed(&cfg)?;

        // A majority that needs the lagging server, so it has to catch up.
        let installs = cfg.kv().installs();
        cfg.partition(&[1, 3], &[2]);
        let ck2 = cfg.make_client(&[1, 3]);
        cfg.put(ck2, "c", "C")?;
        cfg.put(ck2, "d", "D")?;
        cfg.check(ck2, "a", "A")?;
        cfg.check(ck2, "b", "B")?;
        cfg.check(ck2, "1", "1")?;
        cfg.check(ck2, "49", "49")?;
        if cfg.kv().installs() == installs {
            return Err(cfg.fatal("server 3 caught up without InstallSnapshot"));
        }

        // Now everybody.
        cfg.partition(&all, &[]);
        cfg.put(ck, "e", "E")?;
        cfg.check(ck, "c", "C")?;
        cfg.check(ck, "e", "E")?;
        cfg.check(ck, "1", "1")?;
        cfg.check_replicas(5_000)?;
        cfg.check_history()
    });
}

/// TestSnapshotSize3B: 200 rounds of put and check on one key; the
/// persisted Raft state stays under 8× maxraftstate and the snapshot
/// under 500 bytes.
#[test]
fn kv_snapshot_size() {
    const NAME: &str = "kv_snapshot_size";
    seeds::run(NAME, |seed| {
        let mut cfg = KvCluster::new(NAME, seed, 3, false, Some(MAX_RAFT_STATE))?;
        let all = cfg.all();
        let ck = cfg.make_client(&all);
        for _ in 0..200 {
            cfg.put(ck, "x", "0")?;
            cfg.check(ck, "x", "0")?;
            cfg.put(ck, "x", "1")?;
            cfg.check(ck, "x", "1")?;
        }
        check_trimmed(&cfg)?;
        let size = cfg.snapshot_size();
        if size == 0 {
            return Err(cfg.fatal("no snapshot was taken"));
        }
        if size > MAX_SNAPSHOT_STATE {
            let msg = format!("snapshot too large ({size} > {MAX_SNAPSHOT_STATE})");
            return Err(cfg.fatal(msg));
        }
        seeds::figures(
            seed,
            &[
                ("raft_state_bytes", cfg.log_size() as f64),
                ("snapshot_bytes", size as f64),
            ],
        );
        cfg.check_history()
    });
}

/// TestSnapshotRecover3B.
#[test]
fn kv_snapshot_recover() {
    run(
        "kv_snapshot_recover",
        Generic {
            crash: true,
            ..snapshots(1, 5)
        },
    );
}

/// TestSnapshotRecoverManyClients3B: twenty clients.
#[test]
fn kv_snapshot_recover_many_clients() {
    run(
        "kv_snapshot_recover_many_clients",
        Generic {
            crash: true,
            ..snapshots(20, 5)
        },
    );
}

/// TestSnapshotUnreliable3B.
#[test]
fn kv_snapshot_unreliable() {
    run(
        "kv_snapshot_unreliable",
        Generic {
            unreliable: true,
            ..snapshots(5, 5)
        },
    );
}

/// TestSnapshotUnreliableRecover3B.
#[test]
fn kv_snapshot_unreliable_recover() {
    run(
        "kv_snapshot_unreliable_recover",
        Generic {
            unreliable: true,
            crash: true,
            ..snapshots(5, 5)
        },
    );
}

/// TestSnapshotUnreliableRecoverConcurrentPartition3B.
#[test]
fn kv_snapshot_unreliable_recover_concurrent_partition() {
    run(
        "kv_snapshot_unreliable_recover_concurrent_partition",
        Generic {
            unreliable: true,
            crash: true,
            partitions: true,
            ..snapshots(5, 5)
        },
    );
}

/// TestSnapshotUnreliableRecoverConcurrentPartitionLinearizable3B: fifteen
/// clients on random keys, seven servers.
#[test]
fn kv_snapshot_unreliable_recover_concurrent_partition_linearizable() {
    run(
        "kv_snapshot_unreliable_recover_concurrent_partition_linearizable",
        Generic {
            unreliable: true,
            crash: true,
            partitions: true,
            random_keys: true,
            // Calls over the unreliable network take tens of ms already.
            pause_ms: (0, 40),
            ..snapshots(15, 7)
        },
    );
}
