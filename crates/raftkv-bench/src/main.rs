//! raftkv-bench: raft-core next to tikv/raft-rs and openraft on one
//! workload, in one process and one run.
//!
//! Three nodes in this process, each on its own thread with a channel inbox,
//! in-memory storage, 10 ms ticks; C closed-loop clients each propose a write
//! and wait until it is applied on the leader. The systems take turns cell
//! by cell (A, B, C, then B, C, A, ...), each cell repeated, and the report
//! gives the median, the range and raftkv's ratio to each other system.
//! See docs/BENCHMARKS.md.

mod inline;
mod openraft_sys;
mod plot;
mod raftkv;
mod raftrs;
mod report;
mod workload;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use report::{rate, size, Results};
use workload::Cell;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum System {
    /// raft-core (this repository).
    Raftkv,
    /// tikv/raft-rs through its RawNode.
    RaftRs,
    /// openraft.
    Openraft,
}

impl System {
    /// The name in tables and ratio lines.
    pub fn name(self) -> &'static str {
        match self {
            System::Raftkv => "raftkv",
            System::RaftRs => "raft-rs",
            System::Openraft => "openraft",
        }
    }
}

/// Throughput and commit latency of raft-core, raft-rs and openraft.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Repetitions of each cell, per system.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// CI mode: one short repetition per cell.
    #[arg(long)]
    quick: bool,
    /// Load before each measured window, in ms.
    #[arg(long, default_value_t = 300)]
    warmup_ms: u64,
    /// The measured window, in ms.
    #[arg(long, default_value_t = 1000)]
    measure_ms: u64,
    /// Numbers of closed-loop clients.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256,4096")]
    clients: Vec<usize>,
    /// Payload sizes in bytes (at least 8).
    #[arg(long, value_delimiter = ',', default_value = "8,1024")]
    payloads: Vec<usize>,
    /// Systems to run.
    #[arg(long, value_delimiter = ',', default_value = "raftkv,raft-rs,openraft")]
    systems: Vec<System>,
    /// raft-core without `async_leader_writes` (the leader persists before
    /// it sends).
    #[arg(long)]
    sync_leader_writes: bool,
    /// Instead of the matrix: raft-core alone on one thread (nodes taking
    /// turns, no clock), until this many writes are applied, at the first
    /// `--clients` and `--payloads` value. Exactly repeatable under
    /// callgrind: the measure for changes to raft-core.
    #[arg(long)]
    inline_writes: Option<u64>,
    /// Write an SVG plot of writes/s against clients to this file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
}

fn run_one(sys: System, cell: Cell, args: &Args) -> anyhow::Result<workload::Outcome> {
    match sys {
        System::Raftkv => raftkv::run(
            cell,
            raftkv::Options {
                async_leader_writes: !args.sync_leader_writes,
            },
        ),
        System::RaftRs => raftrs::run(cell),
        System::Openraft => openraft_sys::run(cell),
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.reps = 1;
        args.warmup_ms = 50;
        args.measure_ms = 150;
    }
    anyhow::ensure!(args.reps > 0, "--reps must be at least 1");
    anyhow::ensure!(
        args.payloads.iter().all(|&p| p >= 8),
        "payloads are at least 8 bytes (they carry the client's id)"
    );
    if let Some(writes) = args.inline_writes {
        let (clients, payload) = (args.clients[0], args.payloads[0]);
        let rate = inline::run(clients, payload, writes)?;
        println!(
            "inline raft-core: {writes} writes, {clients} clients, {}: {} writes/s",
            size(payload),
            report::rate(rate)
        );
        return Ok(());
    }
    let systems = args.systems.clone();
    let mut results = Results::default();
    eprintln!(
        "# {} rep(s) per cell, warmup {} ms, window {} ms, systems {:?}, allocator {}",
        args.reps,
        args.warmup_ms,
        args.measure_ms,
        systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
        if cfg!(feature = "mimalloc") {
            "mimalloc"
        } else {
            "system"
        }
    );
    for &payload in &args.payloads {
        for &clients in &args.clients {
            let cell = Cell {
                clients,
                payload,
                warmup: Duration::from_millis(args.warmup_ms),
                measure: Duration::from_millis(args.measure_ms),
            };
            for rep in 0..args.reps {
                // Interleaved, and the first system rotates each repetition
                // so no system always runs first (or right after another).
                for k in 0..systems.len() {
                    let sys = systems[(rep + k) % systems.len()];
                    let o = run_one(sys, cell, &args)
                        .with_context(|| format!("{} at {clients} clients", sys.name()))?;
                    eprintln!(
                        "{:>5} clients {:>6} rep {rep} {:>8}: {:>7} writes/s  p50 {:>8.0} µs  p99 {:>8.0} µs  p99.9 {:>8.0} µs",
                        clients,
                        size(payload),
                        sys.name(),
                        rate(o.writes_per_sec),
                        o.p50_us,
                        o.p99_us,
                        o.p999_us
                    );
                    results.add(clients, payload, sys, o);
                }
            }
        }
    }
    println!("\n## Writes/s (median of {} runs, range)\n", args.reps);
    println!("{}", results.throughput_table(&systems));
    println!("## Commit latency (median of the runs' percentiles)\n");
    println!("{}", results.latency_table(&systems));
    print!("{}", results.ratio_lines(&systems));
    if let Some(path) = &args.plot {
        let title = format!(
            "3 nodes in one process, closed-loop writes (median of {})",
            args.reps
        );
        std::fs::write(path, plot::svg(&results, &systems, &title))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}
