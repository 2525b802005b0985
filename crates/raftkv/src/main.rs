//! `raftkv`: run a node of a raftkv cluster, or a whole local cluster.
//!
//! ```text
//! raftkv server --id 1 --peers 1=127.0.0.1:7001/127.0.0.1:8001,... --data-dir DIR
//! raftkv cluster --nodes 3
//! raftkv server --id 4 --join http://127.0.0.1:8001 --listen ... --raft-listen ... --data-dir DIR
//! raftkv member list|add-learner|promote|remove ...
//! raftkv transfer-leader --to 2
//! raftkv put greeting hello --endpoints 127.0.0.1:8001,127.0.0.1:8002
//! raftkv get greeting
//! raftkv bench
//! ```
//!
//! Exit codes: 0 after a clean stop; 1 when the node fails while running
//! (storage failure, a port in use); 2 for bad flags or configuration; 3
//! when the data directory is refused (another node's, locked, corrupt); 4
//! when the cluster refuses an admin call. The key-value commands have
//! their own (see [`client_cmd::ClientExit`]): 0 done, 1 "no" (not found,
//! no match), 2 bad flags, 4 refused, 5 outcome unknown, 6 unavailable, 7
//! disk full, 8 an answer not understood.

mod bench;
#[cfg(feature = "etcd")]
mod bench_etcd;
mod client_cmd;
mod cluster;
mod member;
mod plot;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc, not glibc's malloc: every request allocates and frees a few
/// dozen small blocks across threads, and glibc's free-list upkeep
/// (`malloc_consolidate`, `unlink_chunk`) was a fifth of a loaded leader's
/// CPU.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "raftkv",
    version,
    about = "A replicated key-value store on Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Server(server::ServerArgs),
    /// Run a local cluster of nodes on 127.0.0.1 until Ctrl-C.
    Cluster(cluster::ClusterArgs),
    /// List, add, promote or remove members of a running cluster.
    Member(member::MemberArgs),
    /// Hand leadership to another voter.
    TransferLeader(member::TransferArgs),
    #[command(flatten)]
    Client(client_cmd::ClientCommand),
    /// Measure throughput and latency of closed-loop clients on a cluster.
    Bench(bench::BenchArgs),
}

/// A failure and the exit code it gets.
pub(crate) enum Failure {
    /// Bad flags or configuration: exit 2.
    Usage(anyhow::Error),
    /// The data directory was refused: exit 3.
    DataDir(anyhow::Error),
    /// Anything else: exit 1.
    Runtime(anyhow::Error),
    /// The cluster refused an admin call: exit 4.
    Refused(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Member(args) => member::run(args),
        Command::TransferLeader(args) => member::transfer(args),
        Command::Client(cmd) => return ExitCode::from(client_cmd::run(cmd) as u8),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, e) = match failure {
                Failure::Usage(e) => (2, e),
                Failure::DataDir(e) => (3, e),
                Failure::Runtime(e) => (1, e),
                Failure::Refused(e) => (4, e),
            };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}
