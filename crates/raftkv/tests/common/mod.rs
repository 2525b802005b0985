//! Real `raftkv server` processes on 127.0.0.1: start, kill -9, SIGTERM,
//! restart from the data directory; HTTP calls that follow redirects and
//! retry while a cluster has no leader; polling with deadlines.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use raftkv_server::http_client::{HttpClient, Response};
use serde_json::Value;

/// Generous bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const BIN: &str = env!("CARGO_BIN_EXE_raftkv");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some`, or panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for a child to exit, at most `DEADLINE`.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "process {} did not exit",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sigterm(child: &Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
}

/// A cluster of `raftkv server` processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub peers: String,
    pub clients: BTreeMap<u64, String>,
    pub procs: BTreeMap<u64, Child>,
    pub extra: Vec<String>,
    pub http: HttpClient,
    /// Data directories placed elsewhere than `dir/node{id}`.
    pub data: BTreeMap<u64, PathBuf>,
    /// `--peers` lists that differ from `peers` for some nodes (peers
    /// reached through a proxy).
    pub node_peers: BTreeMap<u64, String>,
}

impl Cluster {
    /// Starts `n` nodes with `extra` flags each.
    pub fn start(n: u64, extra: &[&str]) -> Self {
        let mut c = Cluster::new(n, extra);
        for id in 1..=n {
            c.spawn(id);
        }
        c
    }

    /// The addresses and flags of `n` nodes, none started yet.
    pub fn new(n: u64, extra: &[&str]) -> Self {
        let mut clients = BTreeMap::new();
        let mut entries = Vec::new();
        for id in 1..=n {
            let client = format!("127.0.0.1:{}", free_port());
            entries.push(format!("{id}=127.0.0.1:{}/{client}", free_port()));
            clients.insert(id, client);
        }
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            peers: entries.join(","),
            clients,
            procs: BTreeMap::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            http: HttpClient::new(Duration::from_secs(5)),
            data: BTreeMap::new(),
            node_peers: BTreeMap::new(),
        }
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.data
            .get(&id)
            .cloned()
            .unwrap_or_else(|| self.dir.path().join(format!("node{id}")))
    }

    /// Client addresses of every node, for `raftkv_client::Client`.
    pub fn endpoints(&self) -> Vec<String> {
        self.clients.values().cloned().collect()
    }

    pub fn log(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    /// Starts (or restarts, from its data directory) node `id`.
    pub fn spawn(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(id))
            .unwrap();
        let child = Command::new(BIN)
            .arg("server")
            .args(["--id", &id.to_string(), "--peers"])
            .arg(self.node_peers.get(&id).unwrap_or(&self.peers))
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(id, child);
    }

    /// kill -9.
    pub fn kill9(&mut self, id: u64) {
        let mut child = self.procs.remove(&id).expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self, id: u64) -> ExitStatus {
        let mut child = self.procs.remove(&id).expect("running");
        sigterm(&child);
        wait_exit(&mut child)
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("http://{}{path}", self.clients[&id])
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        let resp = self.http.get(&self.url(id, "/v1/status")).await.ok()?;
        (resp.status == StatusCode::OK).then(|| resp.json())
    }

    pub async fn metric(&self, id: u64, name: &str) -> f64 {
        let resp = self.http.get(&self.url(id, "/metrics")).await.unwrap();
        resp.text()
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The leader among `among` that every node in `among` agrees on, and
    /// its term (a node that still names a dead leader does not count).
    pub async fn agreed_leader(&self, among: &[u64]) -> (u64, u64) {
        wait_for("a leader every node agrees on", || async {
            let mut seen = None;
            for &id in among {
                let s = self.status(id).await?;
                let leader = (s["leader"]["id"].as_u64()?, s["term"].as_u64()?);
                if seen.is_some_and(|l| l != leader) || !among.contains(&leader.0) {
                    return None;
                }
                seen = Some(leader);
            }
            seen
        })
        .await
    }

    /// Sends a request through `via`, following redirects and retrying
    /// (connection errors, 503) until it gets another answer.
    pub async fn call(&self, via: u64, method: Method, path: &str, body: &[u8]) -> Response {
        let url = self.url(via, path);
        let body = Bytes::copy_from_slice(body);
        wait_for(&format!("{method} {path} via node {via}"), || async {
            let r = self
                .http
                .send_following(method.clone(), &url, &[], body.clone())
                .await
                .ok()?;
            (r.status != StatusCode::SERVICE_UNAVAILABLE).then_some(r)
        })
        .await
    }

    pub async fn put(&self, via: u64, key: &str, value: &[u8]) {
        let r = self
            .call(via, Method::PUT, &format!("/v1/kv/{key}"), value)
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "PUT {key} via {via}: {}",
            r.text()
        );
    }

    pub async fn get(&self, via: u64, path: &str) -> Response {
        self.call(via, Method::GET, path, b"").await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.procs.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for id in self.clients.keys() {
                let log = std::fs::read_to_string(self.log(*id)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- node {id} log (last lines) ---");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
