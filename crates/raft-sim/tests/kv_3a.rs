//! The 6.824 lab's kvraft 3A tests (the KV service without snapshots), in
//! virtual time. Clerks reach the servers through the simulated network;
//! every scenario's history goes through the linearizability checker, and
//! reads are served by ReadIndex, never through the log.

use raft_kv::{KvError, Op, OpResult};
use raft_sim::kv::lab::{check_appends, generic, speed, Generic};
use raft_sim::kv::{KvCluster, Workload};
use raft_sim::{seeds, SimError};

fn run(name: &'static str, g: Generic) {
    seeds::run(name, |seed| generic(name, seed, &g));
}

/// TestBasic3A: one client.
#[test]
fn kv_basic() {
    run("kv_basic", Generic::new(1, 5));
}

/// TestSpeed3A: 1,000 appends, each under 33 ms of virtual time on average.
#[test]
fn kv_speed() {
    seeds::run("kv_speed", |seed| {
        let per_op = speed("kv_speed", seed, None)?;
        seeds::figures(seed, &[("ms_per_op", per_op)]);
        Ok(())
    });
}

/// TestConcurrent3A: five clients.
#[test]
fn kv_concurrent() {
    run("kv_concurrent", Generic::new(5, 5));
}

/// TestUnreliable3A: five clients, the lab's unreliable network.
#[test]
fn kv_unreliable() {
    run(
        "kv_unreliable",
        Generic {
            unreliable: true,
            ..Generic::new(5, 5)
        },
    );
}

/// TestUnreliableOneKey3A: five clients append ten values each to one key
/// over the unreliable network; every value is there once, in each
/// client's order.
#[test]
fn kv_unreliable_one_key() {
    const NAME: &str = "kv_unreliable_one_key";
    const CLIENTS: usize = 5;
    const UPTO: usize = 10;
    seeds::run(NAME, |seed| {
        let mut cfg = KvCluster::new(NAME, seed, 3, true, None)?;
        let all = cfg.all();
        let ck = cfg.make_client(&all);
        cfg.put(ck, "k", "")?;
        let mark = cfg.kv().clerks().recorded().len();
        let mut clerks = Vec::new();
        for me in 0..CLIENTS {
            let c = cfg.make_client(&all);
            let script = (0..UPTO)
                .map(|n| Op::Append {
                    key: b"k".to_vec(),
                    value: format!("x {me} {n} y").into_bytes(),
                })
                .collect();
            cfg.run_workload(c, Workload::Script(script), (0, 0))?;
            clerks.push(c);
        }
        cfg.wait_clients(&clerks, 120_000)?;
        let v = cfg.get(ck, "k")?;
        for (me, &c) in clerks.iter().enumerate() {
            check_appends(&cfg, me, c, mark, &v)?;
        }
        cfg.check_history()
    });
}

/// TestOnePartition3A: the majority side of a partition makes progress; a
/// put and a get sent only to the minority do not complete; once healed,
/// both complete and the put is applied exactly once, after the majority's.
#[test]
fn kv_one_partition() {
    const NAME: &str = "kv_one_partition";
    seeds::run(NAME, |seed| {
        let mut cfg = KvCluster::new(NAME, seed, 5, false, None)?;
        let all = cfg.all();
        let ck = cfg.make_client(&all);
        cfg.put(ck, "1", "13")?;

        // Progress in the majority.
        let (p1, p2) = cfg.make_partition()?;
        cfg.partition(&p1, &p2);
        let ckp1 = cfg.make_client(&p1);
        let ckp2a = cfg.make_client(&p2);
        let ckp2b = cfg.make_client(&p2);
        cfg.put(ckp1, "1", "14")?;
        cfg.check(ckp1, "1", "14")?;

        // No progress in the minority.
        let put = Op::Put {
            key: b"1".to_vec(),
            value: b"15".to_vec(),
        };
        let put = cfg.start(ckp2a, put);
        let get = cfg.start(ckp2b, Op::Get { key: b"1".to_vec() });
        cfg.run_for(1_000)?;
        if cfg.poll(ckp2a, put).is_some() {
            return Err(cfg.fatal("Put in minority completed"));
        }
        if cfg.poll(ckp2b, get).is_some() {
            return Err(cfg.fatal("Get in minority completed"));
        }
        cfg.check(ckp1, "1", "14")?;
        cfg.put(ckp1, "1", "16")?;
        cfg.check(ckp1, "1", "16")?;

        // Completion after heal.
        cfg.connect_all();
        cfg.connect_client(ckp2a, &all);
        cfg.connect_client(ckp2b, &all);
        cfg.run_for(1_000)?;
        match cfg.finish_within(ckp2a, put, 3_000)? {
            Some(Ok(OpResult::Replaced(_))) => {}
            other => return Err(cfg.fatal(format!("Put did not complete: {other:?}"))),
        }
        match cfg.finish_within(ckp2b, get, 3_000)? {
            Some(Ok(OpResult::Value(_))) => {}
            other => return Err(cfg.fatal(format!("Get did not complete: {other:?}"))),
        }
        cfg.check(ck, "1", "15")?;
        cfg.check_history()
    });
}

/// TestManyPartitionsOneClient3A.
#[test]
fn kv_many_partitions_one_client() {
    run(
        "kv_many_partitions_one_client",
        Generic {
            partitions: true,
            ..Generic::new(1, 5)
        },
    );
}

/// TestManyPartitionsManyClients3A.
#[test]
fn kv_many_partitions_many_clients() {
    run(
        "kv_many_partitions_many_clients",
        Generic {
            partitions: true,
            ..Generic::new(5, 5)
        },
    );
}

/// TestPersistOneClient3A: every server restarts after each iteration.
#[test]
fn kv_persist_one_client() {
    run(
        "kv_persist_one_client",
        Generic {
            crash: true,
            ..Generic::new(1, 5)
        },
    );
}

/// TestPersistConcurrent3A.
#[test]
fn kv_persist_concurrent() {
    run(
        "kv_persist_concurrent",
        Generic {
            crash: true,
            ..Generic::new(5, 5)
        },
    );
}

/// TestPersistConcurrentUnreliable3A.
#[test]
fn kv_persist_concurrent_unreliable() {
    run(
        "kv_persist_concurrent_unreliable",
        Generic {
            crash: true,
            unreliable: true,
            ..Generic::new(5, 5)
        },
    );
}

/// TestPersistPartition3A.
#[test]
fn kv_persist_partition() {
    run(
        "kv_persist_partition",
        Generic {
            crash: true,
            partitions: true,
            ..Generic::new(5, 5)
        },
    );
}

/// TestPersistPartitionUnreliable3A.
#[test]
fn kv_persist_partition_unreliable() {
    run(
        "kv_persist_partition_unreliable",
        Generic {
            crash: true,
            partitions: true,
            unreliable: true,
            ..Generic::new(5, 5)
        },
    );
}

/// TestPersistPartitionUnreliableLinearizable3A: fifteen clients on
/// random keys, seven servers.
#[test]
fn kv_persist_partition_unreliable_linearizable() {
    run(
        "kv_persist_partition_unreliable_linearizable",
        Generic {
            crash: true,
            partitions: true,
            unreliable: true,
            random_keys: true,
            // Calls over the unreliable network take tens of ms already.
            pause_ms: (0, 40),
            ..Generic::new(15, 7)
        },
    );
}

/// Not a lab test: a clerk's call to a cut-off cluster ends by its deadline
/// with a timeout, and the history marks it unknown rather than failed.
#[test]
fn kv_call_to_a_cut_off_cluster_times_out() -> Result<(), SimError> {
    let mut cfg = KvCluster::new("kv_cut_off", 1, 3, false, None)?;
    let ck = cfg.make_client(&[]);
    let put = Op::Put {
        key: b"a".to_vec(),
        value: b"1".to_vec(),
    };
    assert_eq!(cfg.call(ck, put)?, Err(KvError::Timeout));
    let history = cfg.kv().clerks().history();
    assert_eq!(history.len(), 1);
    assert_eq!(history.ops()[0].ret(), None);
    cfg.check_history()
}
