//! etcd as a second target of `raftkv bench` (feature `etcd`): the same
//! closed-loop rounds, through etcd's v3 API.
//!
//! Clients share gRPC connections sixteen to one (HTTP/2 multiplexes their
//! calls), so 1 and 16 clients use one connection and 256 use sixteen, and
//! each connection knows every endpoint, as etcd's own clients do.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use etcd_client::{Client, KvClient};

/// Clients per connection.
const CLIENTS_PER_CONN: usize = 16;
/// Connections opened (enough for 256 clients).
const CONNS: usize = 16;
/// How long the cluster gets to take a first write.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A pool of connections to one etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    conns: Vec<KvClient>,
}

impl Etcd {
    /// Connects to `urls` and waits until the cluster takes a write.
    pub async fn connect(urls: &[String]) -> anyhow::Result<Etcd> {
        let mut conns = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            let c = Client::connect(urls, None)
                .await
                .with_context(|| format!("cannot connect to etcd at {urls:?}"))?;
            conns.push(c.kv_client());
        }
        let mut probe = conns[0].clone();
        let started = Instant::now();
        while probe.put("raftkv-bench-probe", "x", None).await.is_err() {
            if started.elapsed() > READY_WITHIN {
                bail!("etcd at {urls:?} took no write within {READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Etcd { conns })
    }

    /// The handle for client `i` of a round: its share of a connection.
    pub fn for_client(&self, i: usize) -> Etcd {
        let conn = self.conns[(i / CLIENTS_PER_CONN) % self.conns.len()].clone();
        Etcd { conns: vec![conn] }
    }

    /// One put; the error that refused it, if any.
    pub async fn put(&mut self, key: String, value: Bytes) -> Result<(), String> {
        self.conns[0]
            .put(key, value.to_vec(), None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
