//! The chaos schedule with the cluster changing shape under it: servers
//! join, learners are promoted, members and leaders are removed, joint
//! changes move to random configurations, leadership is handed over, and
//! removed servers keep running a while before they stop. Half the seeds
//! run with asynchronous leader writes, and lose a leader's write in
//! progress to a crash now and then; half carry unacknowledged entries
//! (`Config::carry_unacked`). At the end every command a client saw
//! committed is on every member of the final configuration.

use raft_core::Config;
use raft_sim::chaos_membership::{run_membership_chaos, MembershipChaos};
use raft_sim::{seeds, Cluster, SimError};

fn noop(c: &mut Config) {
    c.noop_on_election = true;
}

fn noop_async(c: &mut Config) {
    c.noop_on_election = true;
    c.async_leader_writes = true;
}

fn lab_async(c: &mut Config) {
    c.async_leader_writes = true;
}

// The same four with `Config::carry_unacked` on.
fn noop_carry(c: &mut Config) {
    noop(c);
    c.carry_unacked = 64;
}

fn noop_async_carry(c: &mut Config) {
    noop_async(c);
    c.carry_unacked = 64;
}

fn carry(c: &mut Config) {
    c.carry_unacked = 64;
}

fn lab_async_carry(c: &mut Config) {
    lab_async(c);
    c.carry_unacked = 64;
}

fn chaos_membership_run(seed: u64, nodes: usize, duration_ms: u64) -> Result<(), SimError> {
    // Four flavours: with or without the leader's empty entry (without
    // it, a new leader proposes no change until a client's command of
    // its term commits), with or without asynchronous leader writes.
    // Seeds 4–7 modulo 8 carry unacknowledged entries (`carry_unacked`).
    let (configure, lose_writes): (fn(&mut Config), bool) = match seed % 8 {
        0 => (noop, false),
        1 => (noop_async, true),
        2 => (|_| {}, false),
        3 => (lab_async, true),
        4 => (noop_carry, false),
        5 => (noop_async_carry, true),
        6 => (carry, false),
        _ => (lab_async_carry, true),
    };
    let mut c = Cluster::builder(nodes, seed)
        .snapshot_every(10)
        .configure(configure)
        .build()?;
    let cfg = MembershipChaos {
        duration_ms,
        lose_writes,
        ..MembershipChaos::default()
    };
    let r = run_membership_chaos(&mut c, &cfg)?;
    seeds::figures(
        seed,
        &[
            ("acked", r.faults.acknowledged as f64),
            ("joined", r.joined as f64),
            ("changes", r.changes as f64),
            ("committed", r.committed_changes as f64),
            ("joint", r.joint_changes as f64),
            ("transfers", r.transfers as f64),
            ("retired", r.retired as f64),
            ("lost_writes", c.stats().lost_writes as f64),
            ("voters", r.final_conf.voters.len() as f64),
        ],
    );
    if r.faults.acknowledged == 0 || r.committed_changes < 2 {
        return Err(c.fatal(format!(
            "{} commands acknowledged, {} configuration changes committed",
            r.faults.acknowledged, r.committed_changes
        )));
    }
    Ok(())
}

/// Five servers to start with, 20 s of virtual chaos.
#[test]
fn chaos_membership() {
    seeds::run("chaos_membership", |seed| {
        chaos_membership_run(seed, 5, 20_000)
    });
}

/// Three servers to start with (a removal leaves two), 15 s.
#[test]
fn chaos_membership_small() {
    seeds::run("chaos_membership_small", |seed| {
        chaos_membership_run(seed, 3, 15_000)
    });
}

/// A short membership chaos run as trace bytes and final configuration.
fn fingerprint(seed: u64, tag: &str) -> (Vec<u8>, String) {
    let path = std::env::temp_dir().join(format!(
        "raft-sim-membership-{}-{seed}-{tag}.jsonl",
        std::process::id()
    ));
    let mut c = Cluster::builder(5, seed)
        .snapshot_every(10)
        .configure(noop_async)
        .trace(Some(path.clone()))
        .build()
        .expect("cluster starts");
    let cfg = MembershipChaos {
        duration_ms: 5_000,
        lose_writes: true,
        ..MembershipChaos::default()
    };
    let outcome = run_membership_chaos(&mut c, &cfg);
    assert!(outcome.is_ok(), "seed {seed}: {outcome:?}");
    c.sim_mut().flush_trace().expect("trace written");
    let conf = format!("{:?}", c.committed_conf());
    drop(c);
    let trace = std::fs::read(&path).expect("trace readable");
    let _ = std::fs::remove_file(&path);
    (trace, conf)
}

/// Servers joining and leaving, asynchronous writes and lost writes
/// included, the same seed replays the same run byte for byte.
#[test]
fn membership_replay_is_deterministic() {
    let seed = seeds::seeds()[0];
    let a = fingerprint(seed, "a");
    let b = fingerprint(seed, "b");
    assert!(a.0.len() > 1000, "the trace is suspiciously short");
    assert!(a == b, "seed {seed} did not replay identically");
}
