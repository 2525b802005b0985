//! A quick closed-loop write check: a 3-node cluster in this process (real
//! sockets on 127.0.0.1, a WAL in a temporary directory, fsync on), and C
//! HTTP clients each sending `PUT /v1/kv/{8-byte key}` with a 256-byte
//! value to the leader, one at a time, for a few seconds.
//!
//! ```text
//! cargo run --release -p raftkv-server --example throughput -- [--clients 1,64] [--seconds 5] [--dir DIR] [--no-fsync]
//! ```
//!
//! Prints writes/s and latency percentiles per client count. Not a test:
//! the full benchmark (`raftkv bench`, against etcd) comes later.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use raftkv_server::http_client::HttpClient;
use raftkv_server::{PeerAddrs, Server, ServerConfig};

struct Args {
    clients: Vec<usize>,
    seconds: u64,
    dir: Option<std::path::PathBuf>,
    fsync: bool,
}

fn args() -> Args {
    let mut a = Args {
        clients: vec![1, 64],
        seconds: 5,
        dir: None,
        fsync: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => {
                a.clients = value()
                    .split(',')
                    .map(|c| c.parse().expect("--clients 1,64"))
                    .collect()
            }
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--dir" => a.dir = Some(value().into()),
            "--no-fsync" => a.fsync = false,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main]
async fn main() {
    let args = args();
    if std::env::var_os("RUST_LOG").is_some() {
        raftkv_server::logging::init();
    }
    let temp = tempfile::tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir)).unwrap();
    let peers: BTreeMap<u64, PeerAddrs> = (1..=3)
        .map(|id| {
            let addrs = PeerAddrs {
                raft: format!("127.0.0.1:{}", port()),
                client: format!("127.0.0.1:{}", port()),
            };
            (id, addrs)
        })
        .collect();
    let mut servers = Vec::new();
    for id in 1..=3 {
        let mut cfg = ServerConfig::new(id, peers.clone(), temp.path().join(format!("n{id}")));
        cfg.fsync = args.fsync;
        servers.push(Server::start(cfg).await.expect("node starts"));
    }
    let http = HttpClient::new(Duration::from_secs(10));
    let leader = loop {
        let url = format!("http://{}/v1/status", peers[&1].client);
        if let Ok(r) = http.get(&url).await {
            if let Some(client) = r.json()["leader"]["client"].as_str() {
                break client.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "3 nodes in one process, fsync {}, data in {}; leader at {leader}",
        if args.fsync { "on" } else { "OFF" },
        temp.path().display()
    );
    println!("clients  writes/s     p50 ms   p99 ms   p999 ms");
    for &clients in &args.clients {
        let (count, mut lat) = run(&http, &leader, clients, args.seconds).await;
        lat.sort_unstable();
        let pct = |p: f64| {
            let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
            lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "{clients:>7}  {:>8.0}  {:>9.2}  {:>7.2}  {:>8.2}",
            count as f64 / args.seconds as f64,
            pct(0.50),
            pct(0.99),
            pct(0.999)
        );
    }
    for s in &servers {
        let text = s.metrics().render();
        let metric = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let n = metric("raftkv_fsync_seconds_count").max(1.0);
        println!(
            "node at {}: {n} fsyncs, mean {:.2} ms, {:.1} entries each; {} elections",
            s.client_addr(),
            metric("raftkv_fsync_seconds_sum") / n * 1e3,
            metric("raftkv_fsync_entries_sum") / n,
            metric("raftkv_elections_total")
        );
    }
    for s in servers {
        s.shutdown().await.unwrap();
    }
}

/// `clients` closed loops for `seconds`: writes acknowledged, and each latency.
async fn run(
    http: &HttpClient,
    leader: &str,
    clients: usize,
    seconds: u64,
) -> (usize, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let value = Bytes::from(vec![b'v'; 256]);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, stop, value) = (http.clone(), stop.clone(), value.clone());
            let leader = leader.to_string();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{:04x}{:04x}", c, i % 0x1_0000);
                    let url = format!("http://{leader}/v1/kv/{key}");
                    let t = Instant::now();
                    let r = http
                        .send_following(Method::PUT, &url, &[], value.clone())
                        .await;
                    match r {
                        Ok(r) if r.status == StatusCode::OK => lat.push(t.elapsed()),
                        Ok(r) if r.status == StatusCode::SERVICE_UNAVAILABLE => {}
                        Ok(r) => panic!("{}: {}", r.status, r.text()),
                        Err(e) => panic!("{e}"),
                    }
                    i += 1;
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len(), all)
}
