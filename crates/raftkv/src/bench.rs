//! `raftkv bench`: closed-loop clients writing to a cluster, and the
//! throughput and latency they see.
//!
//! Each of N clients sends one `PUT` (an 8-byte key, a 256-byte value),
//! waits for its answer, and sends the next; a round runs for `--secs`
//! after a short warm-up, for each N in `--clients`. Without `--endpoints`
//! the bench starts its own local cluster of `raftkv server` processes
//! (fsync on) and stops it at the end. It prints one line per N: writes
//! per second, and the 50th, 99th and 99.9th percentile latency.
//!
//! Built with the `etcd` feature, `--etcd URL,...` runs the same rounds
//! against an etcd cluster through its v3 API, interleaved with raftkv's
//! (see `scripts/bench-etcd.sh`), and prints both with their ratio. On a
//! local cluster, `--memory` samples each node's resident memory during
//! every round, and `--fill N` loads N distinct keys at the end and reports
//! what each node holds in memory against the raw bytes stored. `--plot
//! FILE.svg` draws writes/s against clients for every system in the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use raftkv_client::{Client, ClientConfig, Protocol};
use raftkv_server::{format_peers, PeerAddrs};
use rand::Rng;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::Failure;

/// Key size, bytes.
pub const KEY_BYTES: usize = 8;
/// Value size, bytes.
pub const VALUE_BYTES: usize = 256;
/// Distinct keys written (so the store stays small and keys collide).
const KEYS: u64 = 100_000;
/// How long a started cluster gets to elect a leader.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Flags of `raftkv bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Benchmark this cluster (client addresses, comma-separated) instead
    /// of starting a local one.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub endpoints: Option<String>,
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Where the local cluster keeps its data (default: a temporary
    /// directory; fsync costs what this file system's fsync costs).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client counts, one round each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64, 256])]
    pub clients: Vec<usize>,
    /// Seconds measured per round.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Seconds of warm-up (not measured) before each round.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Start the local cluster without fsync (UNSAFE; to see fsync's cost).
    #[arg(long)]
    pub unsafe_no_fsync: bool,
    /// Print one JSON object per round instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Rounds per client count (and per system), interleaved; the table
    /// shows the median by writes/s.
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Write an SVG plot of writes/s against clients (log scale), one line
    /// per system, to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also sample each local node's resident memory during every round.
    #[arg(long)]
    pub memory: bool,
    /// After the rounds, write this many distinct keys and report each
    /// local node's resident memory against the raw bytes it holds.
    #[arg(long, value_name = "KEYS")]
    pub fill: Option<u64>,
    /// The protocol raftkv's clients speak: the native binary protocol
    /// (all clients share one connection per node) or HTTP/1.1 (one
    /// request at a time per connection).
    #[arg(long, value_enum, default_value_t = WireProtocol::Binary)]
    pub protocol: WireProtocol,
    /// With `--protocol binary`: connections per node that all clients share.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Also run every round against this etcd cluster (client URLs,
    /// comma-separated), interleaved with raftkv's.
    #[cfg(feature = "etcd")]
    #[arg(long, value_name = "URL,...")]
    pub etcd: Option<String>,
}

/// `--protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WireProtocol {
    /// raftkv's native binary protocol.
    Binary,
    /// The HTTP API.
    Http,
}

impl WireProtocol {
    pub(crate) fn client(self) -> Protocol {
        match self {
            WireProtocol::Binary => Protocol::Binary,
            WireProtocol::Http => Protocol::Http,
        }
    }

    fn name(self) -> &'static str {
        match self {
            WireProtocol::Binary => "binary",
            WireProtocol::Http => "http",
        }
    }
}

/// What a round writes to.
#[derive(Clone)]
pub enum Target {
    /// A raftkv cluster, through raftkv-client (plain writes, leader found
    /// by the client).
    Raftkv(Client),
    /// An etcd cluster, through etcd's v3 API.
    #[cfg(feature = "etcd")]
    Etcd(crate::bench_etcd::Etcd),
}

impl Target {
    /// The system's name in tables and ratio lines.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Raftkv(_) => "raftkv",
            #[cfg(feature = "etcd")]
            Target::Etcd(_) => "etcd",
        }
    }

    /// The handle client `i` of a round writes through.
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    fn for_client(&self, i: usize) -> Target {
        match self {
            Target::Raftkv(c) => Target::Raftkv(c.clone()),
            #[cfg(feature = "etcd")]
            Target::Etcd(e) => Target::Etcd(e.for_client(i)),
        }
    }

    /// One write; the error that refused it, if any.
    async fn put(&mut self, key: String, value: Bytes) -> Result<(), String> {
        match self {
            Target::Raftkv(c) => c
                .put(key, value)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Target::Etcd(e) => e.put(key, value).await,
        }
    }
}

/// One round's figures.
#[derive(Debug, Clone)]
pub struct Round {
    /// Clients.
    pub clients: usize,
    /// Writes acknowledged in the measured time.
    pub ops: u64,
    /// Writes that failed.
    pub errors: u64,
    /// What refused the first failed write, if one failed.
    pub first_error: Option<String>,
    /// Measured seconds.
    pub secs: f64,
    /// Latency percentiles, in microseconds: p50, p99, p999.
    pub p: [u64; 3],
}

/// Runs the bench.
pub fn run(args: BenchArgs) -> Result<(), Failure> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        return Err(Failure::Usage(anyhow!("--clients needs counts above 0")));
    }
    if !(args.secs > 0.0 && args.warmup >= 0.0) {
        return Err(Failure::Usage(anyhow!(
            "--secs must be above 0 and --warmup not below"
        )));
    }
    if !(1..=9).contains(&args.nodes) {
        return Err(Failure::Usage(anyhow!("--nodes must be between 1 and 9")));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    rt.block_on(bench(args)).map_err(Failure::Runtime)
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let mut local = None;
    let endpoints: Vec<String> = match &args.endpoints {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => {
            let c = LocalCluster::start(&args).await?;
            let e = c.endpoints();
            local = Some(c);
            e
        }
    };
    let pids = local.as_ref().map(LocalCluster::pids).unwrap_or_default();
    let result = rounds(&args, &endpoints, &pids).await;
    if let Some(c) = local {
        c.stop().await;
    }
    result
}

async fn rounds(args: &BenchArgs, endpoints: &[String], pids: &[(u64, u32)]) -> anyhow::Result<()> {
    let cfg = ClientConfig {
        attempt_timeout: Duration::from_secs(10),
        call_timeout: Duration::from_secs(20),
        protocol: args.protocol.client(),
        connections_per_node: args.connections.max(1),
        ..ClientConfig::default()
    };
    let client = Client::with_config(endpoints, cfg)?;
    let start = Instant::now();
    while client.discover_leader().await.is_none() {
        if start.elapsed() > READY_WITHIN {
            bail!("no leader among {endpoints:?} after {READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let targets: Vec<Target> = [Some(Target::Raftkv(client)), etcd_target(args).await?]
        .into_iter()
        .flatten()
        .collect();
    if !args.json {
        println!(
            "raftkv bench: {KEY_BYTES} B keys, {VALUE_BYTES} B values, closed-loop PUTs, raftkv over {}{}, {} s per round, {} round(s) per cell; load average {}",
            args.protocol.name(),
            match args.protocol {
                WireProtocol::Binary => format!(" ({} connection(s) per node)", args.connections.max(1)),
                WireProtocol::Http => String::new(),
            },
            args.secs,
            args.reps.max(1),
            load_average()
        );
        println!(
            "{:>8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}",
            "system", "clients", "writes/s", "p50 ms", "p99 ms", "p999 ms", "errors"
        );
    }
    let mut table: Vec<(usize, Vec<Round>)> = Vec::new();
    // Each cell's lowest and highest writes/s, per system, for the plot.
    let mut ranges: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
    for &n in &args.clients {
        let mut by_system: Vec<Vec<Round>> = vec![Vec::new(); targets.len()];
        for rep in 0..args.reps.max(1) {
            // Alternate who goes first, so neither always runs on a warmer machine.
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if rep % 2 == 1 {
                order.reverse();
            }
            for i in order {
                // Only raftkv's nodes are sampled (their pids are known).
                let own = matches!(targets[i], Target::Raftkv(_));
                let sampler = (args.memory && own).then(|| Sampler::start(pids.to_vec()));
                let r = round(&targets[i], n, args.warmup, args.secs).await;
                let memory = match sampler {
                    Some(s) => s.stop().await,
                    None => Vec::new(),
                };
                print_round(args, targets[i].name(), &r, &memory);
                by_system[i].push(r);
            }
        }
        for (i, rounds) in by_system.iter().enumerate() {
            let rates = rounds.iter().map(rate);
            let lo = rates.clone().fold(f64::INFINITY, f64::min);
            ranges[i].push((lo, rates.fold(0.0, f64::max)));
        }
        table.push((n, by_system.into_iter().map(median).collect()));
    }
    if targets.len() > 1 && !args.json {
        print_comparison(&targets, &table);
    }
    if let Some(path) = &args.plot {
        write_plot(path, &targets, &table, &ranges)?;
        if !args.json {
            println!("plot written to {}", path.display());
        }
    }
    if let Some(keys) = args.fill {
        fill(&targets[0], keys, pids, args.json).await;
    }
    if !args.json {
        println!("load average after: {}", load_average());
    }
    Ok(())
}

fn print_round(args: &BenchArgs, system: &str, r: &Round, memory: &[(u64, u64, u64)]) {
    let ms = |us: u64| us as f64 / 1000.0;
    if args.json {
        let memory: Vec<_> = memory
            .iter()
            .map(|(id, lo, hi)| json!({"node": id, "rss_min_bytes": lo, "rss_max_bytes": hi}))
            .collect();
        println!(
            "{}",
            json!({
                "system": system,
                "clients": r.clients, "ops": r.ops, "errors": r.errors, "first_error": r.first_error, "secs": r.secs,
                "writes_per_sec": r.ops as f64 / r.secs,
                "p50_ms": ms(r.p[0]), "p99_ms": ms(r.p[1]), "p999_ms": ms(r.p[2]),
                "memory": memory,
                "load_average": load_average(),
            })
        );
        return;
    }
    println!(
        "{:>8} {:>8} {:>10.0} {:>10.2} {:>10.2} {:>10.2} {:>7}",
        system,
        r.clients,
        r.ops as f64 / r.secs,
        ms(r.p[0]),
        ms(r.p[1]),
        ms(r.p[2]),
        r.errors
    );
    if let Some(e) = &r.first_error {
        println!("{:>8} first error: {e}", "");
    }
    for (id, lo, hi) in memory {
        println!(
            "{:>8} node {id} resident memory {:.1}–{:.1} MiB during the round",
            "",
            mib(*lo),
            mib(*hi)
        );
    }
}

/// etcd as the second target, when `--etcd` names one.
#[cfg(feature = "etcd")]
async fn etcd_target(args: &BenchArgs) -> anyhow::Result<Option<Target>> {
    let Some(urls) = &args.etcd else {
        return Ok(None);
    };
    let urls: Vec<String> = urls.split(',').map(|s| s.trim().to_string()).collect();
    let etcd = crate::bench_etcd::Etcd::connect(&urls).await?;
    Ok(Some(Target::Etcd(etcd)))
}

/// Without the `etcd` feature there is no second target.
#[cfg(not(feature = "etcd"))]
async fn etcd_target(_: &BenchArgs) -> anyhow::Result<Option<Target>> {
    Ok(None)
}

/// A round's writes per second.
fn rate(r: &Round) -> f64 {
    r.ops as f64 / r.secs
}

/// The median round of a cell, by writes/s.
fn median(mut rounds: Vec<Round>) -> Round {
    rounds.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    rounds.swap_remove(rounds.len() / 2)
}

/// Writes the plot of every system's medians (and ranges) to `path`.
fn write_plot(
    path: &Path,
    targets: &[Target],
    table: &[(usize, Vec<Round>)],
    ranges: &[Vec<(f64, f64)>],
) -> anyhow::Result<()> {
    let series: Vec<crate::plot::Series> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| crate::plot::Series {
            name: t.name().to_string(),
            points: table
                .iter()
                .zip(&ranges[i])
                .map(|((n, rounds), &(lo, hi))| (*n, rate(&rounds[i]), lo, hi))
                .collect(),
        })
        .collect();
    let title = format!(
        "raftkv bench: {KEY_BYTES} B keys, {VALUE_BYTES} B values, fsync on, 3 nodes on loopback"
    );
    std::fs::write(path, crate::plot::svg(&title, &series))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The table of medians with raftkv's ratio to each other system, and one
/// `ratio raftkv/<system> at N clients: R` line per cell.
fn print_comparison(targets: &[Target], table: &[(usize, Vec<Round>)]) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!();
    println!("medians:");
    for (n, rounds) in table {
        let mut line = format!("{n:>6} clients:");
        for (t, r) in targets.iter().zip(rounds) {
            line += &format!(
                "  {} {:.0} writes/s (p50 {:.2} / p99 {:.2} / p999 {:.2} ms)",
                t.name(),
                rate(r),
                ms(r.p[0]),
                ms(r.p[1]),
                ms(r.p[2])
            );
        }
        println!("{line}");
    }
    for (i, t) in targets.iter().enumerate().skip(1) {
        for (n, rounds) in table {
            let ratio = rate(&rounds[0]) / rate(&rounds[i]).max(f64::MIN_POSITIVE);
            println!("ratio raftkv/{} at {n} clients: {ratio:.2}", t.name());
        }
    }
}

/// Writes `keys` distinct keys with 256 clients, then reports each local
/// node's resident memory against the raw key and value bytes.
async fn fill(target: &Target, keys: u64, pids: &[(u64, u32)], json: bool) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..256 {
        let mut t = target.for_client(i);
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
            let mut failed = 0u64;
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= keys {
                    break;
                }
                let key = format!("{k:0width$}", width = KEY_BYTES);
                // A failed write is retried: the fill must hold every key.
                while t.put(key.clone(), value.clone()).await.is_err() {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    let raw = keys * (KEY_BYTES + VALUE_BYTES) as u64;
    let rss: Vec<(u64, u64)> = pids
        .iter()
        .filter_map(|&(id, pid)| resident(pid).map(|r| (id, r)))
        .collect();
    if json {
        let nodes: Vec<_> = rss
            .iter()
            .map(|(id, r)| json!({"node": id, "rss_bytes": r}))
            .collect();
        println!(
            "{}",
            json!({"fill_keys": keys, "secs": secs, "retries": retries, "raw_bytes": raw, "nodes": nodes})
        );
        return;
    }
    println!();
    println!(
        "fill: {keys} keys of {KEY_BYTES} B with {VALUE_BYTES} B values ({:.1} MiB raw) in {secs:.1} s, {retries} retried writes",
        mib(raw)
    );
    for (id, r) in rss {
        println!(
            "node {id}: resident memory {:.1} MiB, {:.2}x the raw bytes",
            mib(r),
            r as f64 / raw as f64
        );
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// A process's resident memory in bytes, from `/proc/<pid>/status`.
fn resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples the nodes' resident memory every 200 ms while a round runs.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(u64, u64, u64)>>,
}

impl Sampler {
    fn start(pids: Vec<(u64, u32)>) -> Sampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen: Vec<(u64, u64, u64)> =
                pids.iter().map(|&(id, _)| (id, u64::MAX, 0)).collect();
            loop {
                for (slot, &(_, pid)) in seen.iter_mut().zip(&pids) {
                    if let Some(r) = resident(pid) {
                        slot.1 = slot.1.min(r);
                        slot.2 = slot.2.max(r);
                    }
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            seen.retain(|s| s.1 != u64::MAX);
            seen
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> Vec<(u64, u64, u64)> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// One round: `n` clients, `warmup` seconds unmeasured, then `secs` measured.
pub async fn round(target: &Target, n: usize, warmup: f64, secs: f64) -> Round {
    let begin = Instant::now() + Duration::from_secs_f64(warmup);
    let end = begin + Duration::from_secs_f64(secs);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut target = target.for_client(i);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
            loop {
                let key = format!(
                    "{:0width$}",
                    rand::thread_rng().gen_range(0..KEYS),
                    width = KEY_BYTES
                );
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let result = target.put(key, value.clone()).await;
                let done = Instant::now();
                if t >= begin && done <= end {
                    match result {
                        Ok(()) => lat.push(done.duration_since(t).as_micros() as u64),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        if let Ok((lat, e, first)) = t.await {
            all.extend(lat);
            errors += e;
            first_error = first_error.or(first);
        }
    }
    all.sort_unstable();
    Round {
        clients: n,
        ops: all.len() as u64,
        errors,
        first_error,
        secs,
        p: [
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            percentile(&all, 0.999),
        ],
    }
}

/// The `q` quantile of sorted samples (nearest rank); 0 when empty.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` has them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A local cluster of `raftkv server` processes the bench started.
struct LocalCluster {
    peers: BTreeMap<u64, PeerAddrs>,
    children: Vec<Child>,
    _temp: Option<tempfile::TempDir>,
}

impl LocalCluster {
    async fn start(args: &BenchArgs) -> anyhow::Result<LocalCluster> {
        let (root, temp) = match &args.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new().prefix("raftkv-bench-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let peers = crate::cluster::loopback_peers(args.nodes)?;
        let exe = std::env::current_exe().context("cannot find the raftkv executable")?;
        let mut children = Vec::new();
        for &id in peers.keys() {
            children.push(spawn(&exe, id, &peers, &root, args.unsafe_no_fsync)?);
        }
        if !args.json {
            println!(
                "started a local cluster of {} nodes, data in {}",
                args.nodes,
                root.display()
            );
        }
        Ok(LocalCluster {
            peers,
            children,
            _temp: temp,
        })
    }

    /// Each node's id and process id.
    fn pids(&self) -> Vec<(u64, u32)> {
        self.peers
            .keys()
            .zip(&self.children)
            .filter_map(|(&id, c)| c.id().map(|pid| (id, pid)))
            .collect()
    }

    fn endpoints(&self) -> Vec<String> {
        self.peers.values().map(|a| a.client.clone()).collect()
    }

    /// SIGTERM, then SIGKILL for any node still running after 10 s.
    async fn stop(mut self) {
        for c in &self.children {
            if let Some(pid) = c.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }
}

fn spawn(
    exe: &Path,
    id: u64,
    peers: &BTreeMap<u64, PeerAddrs>,
    root: &Path,
    no_fsync: bool,
) -> anyhow::Result<Child> {
    let log = root.join(format!("node{id}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(["server", "--id", &id.to_string()])
        .arg("--peers")
        .arg(format_peers(peers))
        .arg("--data-dir")
        .arg(root.join(format!("node{id}")))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .kill_on_drop(true);
    if no_fsync {
        cmd.arg("--unsafe-no-fsync");
    }
    cmd.spawn()
        .with_context(|| format!("cannot start node {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&s, 0.5), 500);
        assert_eq!(percentile(&s, 0.99), 990);
        assert_eq!(percentile(&s, 0.999), 999);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
