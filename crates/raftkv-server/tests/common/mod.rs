//! Shared helpers: one-node servers on 127.0.0.1 and polling with deadlines.

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use raftkv_server::http_client::{HttpClient, Response};
use raftkv_server::{parse_peers, Server, ServerConfig};

/// Generous bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A free port on 127.0.0.1 (released before use; good enough on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A one-node cluster's configuration, on ephemeral ports.
pub fn single(dir: &Path) -> ServerConfig {
    let peers = parse_peers("1=127.0.0.1:0/127.0.0.1:0").unwrap();
    ServerConfig::new(1, peers, dir.to_path_buf())
}

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline.
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client and the server's base URL.
pub struct Api {
    pub http: HttpClient,
    pub base: String,
}

impl Api {
    pub fn new(server: &Server) -> Self {
        Api {
            http: HttpClient::new(Duration::from_secs(10)),
            base: format!("http://{}", server.client_addr()),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        let url = format!("{}{path}", self.base);
        self.http
            .send_following(method, &url, headers, body.into())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, &[], Bytes::new()).await
    }

    /// Waits until the node reports itself leader.
    pub async fn until_leader(&self) {
        wait_for("a leader", || async {
            let url = format!("{}/v1/status", self.base);
            let resp = self.http.get(&url).await.ok()?;
            (resp.json()["role"] == "leader").then_some(())
        })
        .await;
    }
}

/// Starts a one-node server in `dir` and waits until it leads.
pub async fn start_single(cfg: ServerConfig) -> (Server, Api) {
    let server = Server::start(cfg).await.expect("server starts");
    let api = Api::new(&server);
    api.until_leader().await;
    (server, api)
}

/// The value of a metric line `name value` in Prometheus text (summing the
/// lines whose name and labels start with `name`), 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
