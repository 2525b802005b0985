//! An in-process cluster of raftkv servers on 127.0.0.1, and a proxy that
//! loses answers, for the client's tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use raftkv_client::proto::{self, Request};
use raftkv_server::{PeerAddrs, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// `n` distinct free ports, held together while chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n)
        .map(|_| StdListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A cluster of in-process servers.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub peers: BTreeMap<u64, PeerAddrs>,
    pub servers: BTreeMap<u64, Server>,
    /// Where a one-node cluster's HTTP port binds, when not its client address.
    pub listen: Option<String>,
}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        let ports = free_ports(2 * n as usize);
        let peers: BTreeMap<u64, PeerAddrs> = (1..=n)
            .map(|id| {
                let i = 2 * (id as usize - 1);
                let addrs = PeerAddrs {
                    raft: format!("127.0.0.1:{}", ports[i]),
                    client: format!("127.0.0.1:{}", ports[i + 1]),
                };
                (id, addrs)
            })
            .collect();
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            peers,
            servers: BTreeMap::new(),
            listen: None,
        };
        for id in 1..=n {
            c.spawn(id).await;
        }
        c
    }

    /// A one-node cluster that names `proxy` as its client address (in
    /// redirects and `/v1/status`) while it listens on `listen`: a node
    /// behind a proxy.
    pub async fn single_behind(proxy: &str, listen: &str) -> Cluster {
        let raft = format!("127.0.0.1:{}", free_ports(1)[0]);
        let peers = BTreeMap::from([(
            1,
            PeerAddrs {
                raft,
                client: proxy.to_string(),
            },
        )]);
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            peers,
            servers: BTreeMap::new(),
            listen: Some(listen.to_string()),
        };
        c.spawn(1).await;
        c
    }

    pub async fn spawn(&mut self, id: u64) {
        let mut cfg = ServerConfig::new(
            id,
            self.peers.clone(),
            self.dir.path().join(format!("node{id}")),
        );
        cfg.listen = self.listen.clone();
        let server = Server::start(cfg).await.expect("the node starts");
        self.servers.insert(id, server);
    }

    pub async fn stop(&mut self, id: u64) {
        let server = self.servers.remove(&id).expect("running");
        server.shutdown().await.unwrap();
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.peers.values().map(|p| p.client.clone()).collect()
    }

    pub fn client_addr(&self, id: u64) -> String {
        self.peers[&id].client.clone()
    }

    pub async fn shutdown(mut self) {
        for id in self.servers.keys().copied().collect::<Vec<_>>() {
            self.stop(id).await;
        }
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy in front of `upstream` that loses the answers of the first
/// `lose` key-value writes, in either protocol (HTTP `POST`/`PUT`/`DELETE
/// /v1/kv/...`, or a binary `Put`/`Delete`/`Append`/`Cas` frame): it
/// forwards the request, and when the answer comes it closes the
/// connection instead, so the client cannot tell whether its write was
/// applied. Returns the proxy's address and the count of answers still to
/// lose.
pub async fn answer_losing_proxy(upstream: String, lose: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let left = Arc::new(AtomicUsize::new(lose));
    let budget = left.clone();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let (upstream, budget) = (upstream.clone(), budget.clone());
            tokio::spawn(async move {
                if let Ok(up) = TcpStream::connect(&upstream).await {
                    relay(down, up, budget).await;
                }
            });
        }
    });
    (addr, left)
}

/// What a client has sent so far on one connection, to spot writes in.
#[derive(Default)]
struct Sent {
    binary: Option<bool>,
    buf: BytesMut,
}

impl Sent {
    /// Whether `chunk` holds (the end of) a key-value write.
    fn has_write(&mut self, chunk: &[u8]) -> bool {
        let binary = *self
            .binary
            .get_or_insert(chunk.first() == Some(&proto::MAGIC[0]));
        if !binary {
            return [&b"POST /v1/kv/"[..], b"PUT /v1/kv/", b"DELETE /v1/kv/"]
                .iter()
                .any(|m| chunk.windows(m.len()).any(|w| w == *m));
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.starts_with(&proto::MAGIC) && self.buf.len() >= proto::PREFACE_LEN {
            let _ = self.buf.split_to(proto::PREFACE_LEN);
        }
        let mut write = false;
        while let Ok(Some(frame)) = proto::take_frame(&mut self.buf, 1 << 30) {
            write |= matches!(
                proto::decode(&frame),
                Ok(Request::Put { .. }
                    | Request::Delete { .. }
                    | Request::Append { .. }
                    | Request::Cas { .. })
            );
        }
        write
    }
}

async fn relay(mut down: TcpStream, mut up: TcpStream, budget: Arc<AtomicUsize>) {
    let (mut a, mut b) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut lossy = false;
    let mut sent = Sent::default();
    loop {
        tokio::select! {
            n = down.read(&mut a) => {
                let Ok(n @ 1..) = n else { return };
                let chunk = &a[..n];
                if sent.has_write(chunk)
                    && budget
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                        .is_ok()
                {
                    lossy = true;
                }
                if up.write_all(chunk).await.is_err() {
                    return;
                }
            }
            n = up.read(&mut b) => {
                let Ok(n @ 1..) = n else { return };
                if lossy || down.write_all(&b[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
