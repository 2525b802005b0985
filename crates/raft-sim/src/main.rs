//! `raft-sim`: runs a seeded chaos schedule over a simulated raft-core
//! cluster and prints leaders, terms, commits and whether the invariants
//! held. The output for a seed is identical on every run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use raft_core::NodeId;
use raft_sim::{run_chaos, ChaosConfig, Cluster, MemFactory};

/// Deterministic Raft simulator: a chaos run over raft-core nodes.
#[derive(Parser, Debug)]
#[command(name = "raft-sim", version)]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// The run's seed; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Virtual milliseconds of faults before everything heals.
    #[arg(long, default_value_t = 30_000)]
    duration_ms: u64,
    /// Snapshot every this many applied entries (0: never).
    #[arg(long, default_value_t = 10)]
    snapshot_every: u64,
    /// Concurrent clients proposing commands.
    #[arg(long, default_value_t = 3)]
    clients: u64,
    /// Size of each client command in bytes (large ones make snapshots
    /// that travel in several chunks).
    #[arg(long, default_value_t = 8)]
    command_bytes: usize,
    /// Write the event trace (JSON lines) to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Print a timeline of role changes, crashes, partitions and commits.
    #[arg(long)]
    timeline: bool,
    /// Also print the wall-clock time taken (makes output differ run to run).
    #[arg(long)]
    wall_clock: bool,
}

fn summary(c: &Cluster<MemFactory>, out: &mut String) {
    let sim = c.sim();
    let leaders = sim.checker().leaders();
    let _ = writeln!(out, "leaders by term ({} terms had one):", leaders.len());
    let mut line = String::from(" ");
    for (term, id) in leaders {
        if line.len() > 72 {
            let _ = writeln!(out, "{line}");
            line = String::from(" ");
        }
        let _ = write!(line, " t{term}:n{id}");
    }
    let _ = writeln!(out, "{line}");
    let _ = writeln!(out, "final state:");
    for id in 1..=c.n() as NodeId {
        match sim.node(id) {
            Some(n) => {
                let st = n.status();
                let _ = writeln!(
                    out,
                    "  n{id}  {:<12} term {:<4} commit {:<6} applied {:<6} log {}..={}",
                    format!("{:?}", st.role),
                    st.term,
                    st.commit,
                    st.applied,
                    st.first_index,
                    st.last_index
                );
            }
            None => {
                let _ = writeln!(out, "  n{id}  down");
            }
        }
    }
    let k = &sim.net().counters;
    let _ = writeln!(
        out,
        "network: {} requests ({} bytes), {} replies, {} lost, {} duplicated",
        k.sent.iter().sum::<u64>(),
        k.bytes,
        k.replies,
        k.dropped,
        k.duplicated
    );
    let _ = writeln!(
        out,
        "late arrivals: {} messages long-delayed, {} replies and {} requests delivered into a later term",
        k.long_delayed, k.late_replies, k.late_requests
    );
    let _ = writeln!(
        out,
        "events: {}, virtual time {} ms",
        sim.events(),
        sim.now() / 1_000
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes == 0 || args.nodes > 64 {
        bail!("--nodes must be between 1 and 64");
    }
    let started = Instant::now();
    println!(
        "raft-sim: chaos run, {} nodes, seed {}, {} ms of faults, snapshot every {} entries, {} clients",
        args.nodes, args.seed, args.duration_ms, args.snapshot_every, args.clients
    );
    let mut cluster = Cluster::builder(args.nodes, args.seed)
        .snapshot_every(args.snapshot_every)
        .trace(args.trace.clone())
        .timeline(args.timeline)
        .build()
        .context("starting the cluster")?;
    let cfg = ChaosConfig {
        duration_ms: args.duration_ms,
        clients: args.clients,
        command_bytes: args.command_bytes,
    };
    let outcome = run_chaos(&mut cluster, &cfg);
    let mut out = String::new();
    summary(&cluster, &mut out);
    print!("{out}");
    if args.timeline {
        println!("timeline:\n{}", cluster.sim().timeline());
    }
    cluster
        .sim_mut()
        .flush_trace()
        .context("writing the trace")?;
    if args.wall_clock {
        println!("wall clock: {} ms", started.elapsed().as_millis());
    }
    match outcome {
        Ok(r) => {
            println!(
                "faults: {} crashes, {} restarts, {} partitions, {} link faults, {} mode changes, \
                 {} long delays, {} holds",
                r.crashes,
                r.restarts,
                r.partitions,
                r.link_faults,
                r.mode_changes,
                r.long_delays,
                r.holds
            );
            println!(
                "commands acknowledged: {}, final command at index {} on all nodes",
                r.acknowledged, r.final_index
            );
            println!("invariants: held");
            Ok(())
        }
        Err(e) => {
            let kind = if e.is_invariant() {
                "VIOLATED"
            } else {
                "held, but a check failed"
            };
            println!("invariants: {kind}");
            println!("{e}");
            bail!("seed {} failed", args.seed)
        }
    }
}
