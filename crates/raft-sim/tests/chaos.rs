//! Long random runs: partitions, crashes, restarts, lost, duplicated and
//! reordered messages, with clients proposing throughout and snapshots on;
//! at the end every command a client saw committed is on every node.
//! Odd seeds run with `Config::carry_unacked` on.
//! Also: the same seed replays the same run, byte for byte.

use raft_sim::{run_chaos, seeds, ChaosConfig, Cluster, SimError};

fn chaos_run(
    nodes: usize,
    seed: u64,
    duration_ms: u64,
    command_bytes: usize,
) -> Result<(), SimError> {
    // Odd seeds carry unacknowledged entries in every AppendEntries
    // (`Config::carry_unacked`), so both ways of sending meet every fault.
    let carry: fn(&mut raft_core::Config) = match seed % 2 {
        1 => |c| c.carry_unacked = 64,
        _ => |_| {},
    };
    let mut cfg = Cluster::builder(nodes, seed)
        .snapshot_every(10)
        .configure(carry)
        .build()?;
    let chaos = ChaosConfig {
        duration_ms,
        clients: 3,
        command_bytes,
    };
    let report = run_chaos(&mut cfg, &chaos)?;
    if report.acknowledged == 0 {
        return Err(cfg.fatal("no command was acknowledged in the whole run"));
    }
    Ok(())
}

/// Five nodes, 30 s of virtual chaos.
#[test]
fn chaos() {
    seeds::run("chaos", |seed| chaos_run(5, seed, 30_000, 8));
}

/// Three and seven nodes, 15 s each.
#[test]
fn chaos_other_sizes() {
    seeds::run("chaos_other_sizes", |seed| {
        chaos_run(3, seed, 15_000, 8)?;
        chaos_run(7, seed, 15_000, 8)
    });
}

/// Commands of 300 bytes: snapshots grow past the 64 KiB chunk size, so
/// InstallSnapshot travels in several chunks through lossy, duplicating links.
#[test]
fn chaos_large_snapshots() {
    seeds::run("chaos_large_snapshots", |seed| {
        chaos_run(5, seed, 15_000, 300)
    });
}

/// Runs a short chaos schedule and returns its timeline, trace bytes and
/// final commit indices.
fn fingerprint(seed: u64, tag: &str) -> (String, Vec<u8>, Vec<u64>) {
    let path = std::env::temp_dir().join(format!(
        "raft-sim-determinism-{}-{seed}-{tag}.jsonl",
        std::process::id()
    ));
    let mut cfg = Cluster::builder(5, seed)
        .snapshot_every(10)
        .trace(Some(path.clone()))
        .timeline(true)
        .build()
        .expect("cluster starts");
    let outcome = run_chaos(
        &mut cfg,
        &ChaosConfig {
            duration_ms: 5_000,
            clients: 2,
            command_bytes: 8,
        },
    );
    assert!(outcome.is_ok(), "seed {seed}: {outcome:?}");
    cfg.sim_mut().flush_trace().expect("trace written");
    let commits = (1..=5)
        .map(|id| cfg.sim().node(id).map_or(0, |n| n.status().commit))
        .collect();
    let timeline = cfg.sim().timeline();
    drop(cfg);
    let trace = std::fs::read(&path).expect("trace readable");
    let _ = std::fs::remove_file(&path);
    (timeline, trace, commits)
}

/// The same seed gives a byte-identical trace; another seed does not.
#[test]
fn replay_is_deterministic() {
    let seed = seeds::seeds()[0];
    let a = fingerprint(seed, "a");
    let b = fingerprint(seed, "b");
    assert!(a.1.len() > 1000, "the trace is suspiciously short");
    assert!(a == b, "seed {seed} did not replay identically");
    let c = fingerprint(seed + 1, "c");
    assert!(
        a.1 != c.1,
        "seeds {seed} and {} gave the same trace",
        seed + 1
    );
}
