//! How fast the linearizability checker decides histories.
//!
//! ```text
//! cargo run --release -p raft-kv --example checkbench [-- --quick]
//! ```
//!
//! 1. Throughput: histories of 10 clerks, 10,000 operations over 10 keys,
//!    from random concurrent runs against a sequential store; operations
//!    verified per second (median of 5 seeds), also with 5% unknown outcomes
//!    and with range reads (which join all keys into one partition).
//! 2. The hard case: one key, many concurrent clerks, 5% unknown outcomes.
//!    The history size doubles until a check no longer ends within 10 s,
//!    then a bisection finds the largest size decided within 10 s.
//!
//! `--quick` runs smaller versions of both (a smoke test of the binary).

use std::time::Duration;

use raft_kv::check::synth::{kv_run, RunConfig};
use raft_kv::check::{check_with_stats, Budget, KvModel, Stats, Verdict};

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Ok(_) => "ok",
        Verdict::Illegal(_) => "ILLEGAL",
        Verdict::Unknown(_) => "unknown",
    }
}

fn measure(seed: u64, cfg: &RunConfig, budget: &Budget) -> (Verdict, Stats) {
    let h = kv_run(seed, cfg);
    check_with_stats(&KvModel, h.ops(), budget)
}

fn throughput(name: &str, cfg: &RunConfig, seeds: u64) {
    let mut rates = Vec::new();
    let mut last = Stats::default();
    for seed in 1..=seeds {
        let (v, stats) = measure(seed, cfg, &Budget::time(Duration::from_secs(60)));
        assert!(v.is_ok(), "{name} seed {seed}: {}", verdict_name(&v));
        rates.push(cfg.ops as f64 / stats.elapsed.as_secs_f64());
        last = stats;
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{name:<34} {:>12.0} ops/s  (median of {seeds}; min {:.0}, max {:.0}; {} partitions, largest {} ops, {} steps)",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        last.partitions,
        last.largest,
        last.steps,
    );
}

/// Whether a history of `ops` operations is decided within `limit`.
fn decided(cfg: &RunConfig, ops: usize, limit: Duration) -> Option<Stats> {
    let cfg = RunConfig { ops, ..cfg.clone() };
    let (v, stats) = measure(1, &cfg, &Budget::time(limit));
    println!(
        "    {ops:>8} ops: {:<8} {:>8.3} s  {:>12} steps",
        verdict_name(&v),
        stats.elapsed.as_secs_f64(),
        stats.steps
    );
    assert!(!v.is_illegal(), "a run of a sequential store was rejected");
    v.is_ok().then_some(stats)
}

fn largest_decided(name: &str, cfg: &RunConfig, start: usize, limit: Duration) {
    println!("{name} (limit {limit:?}):");
    let mut lo = 0;
    let mut hi = None;
    let mut n = start;
    while hi.is_none() {
        match decided(cfg, n, limit) {
            Some(_) => {
                lo = n;
                n *= 2;
            }
            None => hi = Some(n),
        }
    }
    let mut hi = hi.expect("set above");
    while hi - lo > lo / 8 + 1 {
        let mid = (lo + hi) / 2;
        match decided(cfg, mid, limit) {
            Some(_) => lo = mid,
            None => hi = mid,
        }
    }
    println!("  largest decided within {limit:?}: {lo} ops (undecided at {hi})");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (ops, seeds, limit) = if quick {
        (1_000, 1, Duration::from_millis(200))
    } else {
        (10_000, 5, Duration::from_secs(10))
    };
    let base = RunConfig {
        clients: 10,
        ops,
        keys: 10,
        unknown_percent: 0,
        ranges: false,
        max_gap: 10,
    };
    println!("throughput, 10 clerks, {ops} operations, 10 keys:");
    throughput("get/put/append/delete/cas", &base, seeds);
    throughput(
        "  + 5% unknown outcomes",
        &RunConfig {
            unknown_percent: 5,
            ..base.clone()
        },
        seeds,
    );
    throughput(
        "  + ranges (one partition)",
        &RunConfig {
            ranges: true,
            ..base.clone()
        },
        seeds,
    );
    println!();
    for clients in [10, 50] {
        let hard = RunConfig {
            clients,
            ops: 0,
            keys: 1,
            unknown_percent: 5,
            ranges: false,
            max_gap: 10,
        };
        largest_decided(
            &format!("hard: 1 key, {clients} clerks, 5% unknown"),
            &hard,
            if quick { 250 } else { 1_000 },
            limit,
        );
    }
}
