//! `raftkv cluster`: a local cluster of `raftkv server` child processes on
//! 127.0.0.1, with free ports and data in a temporary directory unless one
//! is given. Prints each node's endpoints and a curl line to paste, follows
//! leader changes by polling `/v1/status`, and stops every node on Ctrl-C.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use raftkv_server::config::DEFAULT_CLUSTER_ID;
use raftkv_server::http_client::HttpClient;
use raftkv_server::{format_peers, PeerAddrs, StatusReport};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::Failure;

/// How often the leader is looked up.
const POLL: Duration = Duration::from_millis(300);
/// How long a node gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Flags of `raftkv cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// How many nodes (1 to 9).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Keep the nodes' data here (node1/, node2/, ... and their logs);
    /// default: a temporary directory removed on exit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The cluster's id.
    #[arg(long, default_value = DEFAULT_CLUSTER_ID)]
    pub cluster_id: String,
    /// Passed to every node: snapshot after this many bytes applied.
    #[arg(long, value_name = "BYTES")]
    pub snapshot_bytes: Option<u64>,
}

struct Member {
    id: u64,
    addrs: PeerAddrs,
    child: Option<Child>,
    log: PathBuf,
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub fn run(args: ClusterArgs) -> Result<(), Failure> {
    if !(1..=9).contains(&args.nodes) {
        return Err(Failure::Usage(anyhow!("--nodes must be between 1 and 9")));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    rt.block_on(cluster(args)).map_err(Failure::Runtime)
}

async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let (root, _temp) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("raftkv-cluster-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let peers = loopback_peers(args.nodes)?;
    let exe = std::env::current_exe().context("cannot find the raftkv executable")?;
    let mut members = Vec::new();
    for (&id, addrs) in &peers {
        let log = root.join(format!("node{id}.log"));
        let child = spawn(&exe, id, &peers, &root, &args, &log)?;
        members.push(Member {
            id,
            addrs: addrs.clone(),
            child: Some(child),
            log,
        });
    }
    let kept = if args.data_dir.is_some() {
        "kept"
    } else {
        "removed on exit"
    };
    println!(
        "raftkv cluster {:?}: {} nodes, data in {} ({kept})",
        args.cluster_id,
        members.len(),
        root.display()
    );
    for m in &members {
        println!(
            "  node {}  client http://{}  raft {}  log {}",
            m.id,
            m.addrs.client,
            m.addrs.raft,
            m.log.display()
        );
    }
    let first = &members[0].addrs.client;
    println!("try:");
    println!("  curl -L -X PUT --data-binary 'hello' http://{first}/v1/kv/greeting");
    println!("  curl http://{first}/v1/kv/greeting");
    println!("  curl http://{first}/v1/status");
    println!("Ctrl-C stops every node.");

    let result = follow(&mut members).await;
    println!("stopping {} nodes ...", members.len());
    stop_all(&mut members).await;
    println!("stopped");
    result
}

/// Nodes 1..=`nodes` on 127.0.0.1, each with a free Raft and client port.
pub(crate) fn loopback_peers(nodes: u64) -> anyhow::Result<BTreeMap<u64, PeerAddrs>> {
    let ports = free_ports(2 * nodes as usize)?;
    Ok((1..=nodes)
        .map(|id| {
            let i = 2 * (id as usize - 1);
            let addrs = PeerAddrs {
                raft: format!("127.0.0.1:{}", ports[i]),
                client: format!("127.0.0.1:{}", ports[i + 1]),
            };
            (id, addrs)
        })
        .collect())
}

/// `n` distinct free ports on 127.0.0.1 (held open together while chosen).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn spawn(
    exe: &Path,
    id: u64,
    peers: &BTreeMap<u64, PeerAddrs>,
    root: &Path,
    args: &ClusterArgs,
    log: &Path,
) -> anyhow::Result<Child> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))
    };
    let mut cmd = Command::new(exe);
    cmd.arg("server")
        .arg("--id")
        .arg(id.to_string())
        .arg("--peers")
        .arg(format_peers(peers))
        .arg("--data-dir")
        .arg(root.join(format!("node{id}")))
        .arg("--cluster-id")
        .arg(&args.cluster_id)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .kill_on_drop(true);
    if let Some(b) = args.snapshot_bytes {
        cmd.arg("--snapshot-bytes").arg(b.to_string());
    }
    cmd.spawn()
        .with_context(|| format!("cannot start node {id}"))
}

/// Prints leader changes and node exits until Ctrl-C or SIGTERM.
async fn follow(members: &mut [Member]) -> anyhow::Result<()> {
    let http = HttpClient::new(Duration::from_secs(1));
    let started = Instant::now();
    let mut term_signal = signal(SignalKind::terminate())?;
    let mut shown: Option<Option<(u64, u64)>> = None;
    let mut interval = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term_signal.recv() => return Ok(()),
        }
        for m in members.iter_mut() {
            let exited = match m.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                m.child = None;
                println!(
                    "[{:>6.1}s] node {} exited ({status}); see {}",
                    started.elapsed().as_secs_f64(),
                    m.id,
                    m.log.display()
                );
            }
        }
        let mut best: Option<StatusReport> = None;
        for m in members.iter().filter(|m| m.child.is_some()) {
            let url = format!("http://{}/v1/status", m.addrs.client);
            let Ok(resp) = http.get(&url).await else {
                continue;
            };
            let Ok(report) = serde_json::from_slice::<StatusReport>(&resp.body) else {
                continue;
            };
            if report.role == "leader" && best.as_ref().is_none_or(|b| report.term > b.term) {
                best = Some(report);
            }
        }
        let now = best.as_ref().map(|b| (b.id, b.term));
        if shown != Some(now) {
            let at = started.elapsed().as_secs_f64();
            match &best {
                Some(b) => {
                    let client = &members[b.id as usize - 1].addrs.client;
                    println!(
                        "[{at:>6.1}s] leader: node {} (term {}) at http://{client}",
                        b.id, b.term
                    );
                }
                None if shown.is_some() => println!("[{at:>6.1}s] no leader"),
                None => {}
            }
            shown = Some(now);
        }
    }
}

/// SIGTERM to every node, then SIGKILL to any still running after the grace.
async fn stop_all(members: &mut [Member]) {
    for m in members.iter() {
        if let Some(pid) = m.child.as_ref().and_then(Child::id) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for m in members.iter_mut() {
        let Some(child) = m.child.as_mut() else {
            continue;
        };
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => println!("node {} exited ({status}); see {}", m.id, m.log.display()),
            _ => {
                println!("node {} did not stop in time; killing it", m.id);
                let _ = child.kill().await;
            }
        }
    }
}
