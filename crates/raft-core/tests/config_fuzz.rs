//! Randomized whole-cluster runs over seeds, each seed choosing a
//! configuration (cluster size, no-op on election, PreVote, CheckQuorum, tiny
//! message and window limits, fast ticks, carried entries) and fault rates (loss, duplication,
//! delay, crash and restart from storage, isolation, snapshots).
//!
//! The harness checks safety throughout (see `common`); after the faults stop
//! each run must also make progress: a new command commits and every node
//! applies the same log.
//!
//! `RAFT_SEEDS=<n>` runs seeds `0..n` (default 100); `RAFT_SEED=<n>` replays
//! one seed and prints its configuration and final state.

mod common;

use std::cell::RefCell;
use std::panic;

use common::{Faults, Sim};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Ticks of faults and load per run.
const FAULTY_TICKS: u64 = 3000;
/// Ticks after healing before the liveness check starts.
const SETTLE_TICKS: u64 = 300;
/// Ticks the healed cluster gets to commit a command everywhere.
const LIVENESS_TICKS: u64 = 20_000;

/// The cluster for `seed`: size and config from the seed's residues, fault
/// rates and snapshot size from an RNG seeded with it.
fn cluster(seed: u64) -> Sim {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0xabc);
    let faults = Faults {
        drop: r.gen_range(0.0..0.3),
        dup: r.gen_range(0.0..0.2),
        max_delay: r.gen_range(1..12),
        crash: r.gen_range(0.0..0.01),
        isolate: r.gen_range(0.0..0.02),
        snapshot: r.gen_range(0.0..0.1),
        propose: r.gen_range(0.05..0.8),
        crash_mid_write: if seed % 4 == 3 {
            r.gen_range(0.0..0.05)
        } else {
            0.0
        },
    };
    let pad = r.gen_range(0..200);
    let n = if seed.is_multiple_of(2) { 3 } else { 5 };
    let mut s = Sim::new(seed, n, faults, |c| {
        c.noop_on_election = seed.is_multiple_of(3);
        if seed.is_multiple_of(4) {
            c.max_msg_bytes = 70;
            c.max_inflight = 1 + (seed / 4 % 4) as usize;
            c.max_msg_entries = 1 + (seed / 16 % 8) as usize;
        }
        if seed.is_multiple_of(6) {
            c.heartbeat_tick = 1;
            c.election_tick = 4 + (seed % 11) as u32;
        }
        c.pre_vote = seed % 5 != 1;
        c.async_leader_writes = seed % 4 == 3;
        c.check_quorum = seed % 7 != 1;
        // A third of the seeds carry unacknowledged entries, with every
        // other setting above (tiny limits, asynchronous leader writes).
        if seed % 3 == 2 {
            c.carry_unacked = [1, 4, 64][(seed / 3 % 3) as usize];
        }
    });
    s.pad = pad;
    s
}

/// Runs one seed; panics on a broken rule or if the healed cluster does not
/// commit a new command on every node.
fn run(s: &mut Sim) {
    for _ in 0..FAULTY_TICKS {
        s.tick();
    }
    s.heal();
    for _ in 0..SETTLE_TICKS {
        s.tick();
    }
    // Propose a marker (again, if a new leader dropped it) until it is
    // applied and every node has applied exactly what it has committed.
    let mut marker = None;
    for _ in 0..LIVENESS_TICKS {
        if let Some(at) = marker {
            if s.is_applied(at) && converged(s, at.0) {
                return;
            }
        }
        if let Some(l) = s.leader() {
            let stale = match marker {
                None => true,
                Some(at) => !s.is_applied(at) && s.node(l).term() > at.1,
            };
            if stale {
                marker = Some(s.propose(l, vec![9, 9]));
            }
        }
        s.tick();
    }
    panic!(
        "liveness: marker {marker:?} not applied everywhere after healing\n{}",
        s.describe()
    );
}

/// Every node applied the same last index, at least `index`, and has
/// nothing committed left to apply.
fn converged(s: &Sim, index: u64) -> bool {
    let last = s.app(1).last;
    last >= index
        && (1..=s.len()).all(|id| s.app(id).last == last && s.node(id).status().commit == last)
}

/// Runs one seed; on failure returns where and why it panicked.
fn try_seed(seed: u64) -> Result<(), String> {
    thread_local!(static PANIC: RefCell<String> = const { RefCell::new(String::new()) });
    // Record the panic instead of printing it, so each failure prints once.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        PANIC.with(|p| *p.borrow_mut() = info.to_string())
    }));
    let result = panic::catch_unwind(|| run(&mut cluster(seed)));
    panic::set_hook(default_hook);
    result.map_err(|_| PANIC.with(|p| p.take()))
}

/// The value of environment variable `name`, if set.
fn env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[test]
fn config_fuzz() {
    if let Some(seed) = env("RAFT_SEED") {
        let mut s = cluster(seed);
        eprintln!("seed {seed}: {:?}\n{:?}", s.faults, s.config(1));
        run(&mut s);
        eprintln!("{}", s.describe());
        return;
    }
    let seeds = env("RAFT_SEEDS").unwrap_or(100);
    let mut failed = Vec::new();
    for seed in 0..seeds {
        if let Err(e) = try_seed(seed) {
            eprintln!("seed {seed} failed: {e}");
            eprintln!("  replay: RAFT_SEED={seed} cargo test -p raft-core --test config_fuzz");
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {seeds} seeds failed: {failed:?}",
        failed.len()
    );
}
