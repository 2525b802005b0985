//! The raftkv server: a replicated key-value node over raft-core, raft-wal
//! and raft-kv, with a TCP peer transport and an HTTP client API.
//!
//! One node is:
//! - a **driver** thread ([`driver`]) that owns the raft-core `Node` on a
//!   raft-wal `Wal` and the raft-kv `Service`, takes every waiting input
//!   before asking for the next Ready, and keeps the contract: persist (one
//!   fsync, on this thread), send, apply, advance;
//! - the **peer transport** (`transport`): one TCP connection per pair of
//!   nodes (the lower id dials), a versioned handshake, batched
//!   length-delimited frames ([`wire`]), bounded per-peer queues;
//! - the **HTTP API** ([`http`], axum): `/v1/kv/{key}`, `/v1/kv`,
//!   `/v1/sessions`, `/v1/status`, `/metrics`;
//! - the **binary client protocol** (`binary`; `raftkv_client::proto`),
//!   on the same port: told apart from HTTP by a connection's first byte,
//!   many requests in flight per connection;
//! - a ticker task (every 10 ms) and the [`metrics`];
//! - membership: the [`admin`] API (`/v1/members`, `/v1/transfer-leader`),
//!   the replicated [`members`] table of addresses, and `join` for a node
//!   that joins a running cluster.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use raftkv_server::{parse_peers, Server, ServerConfig};
//!
//! let peers = parse_peers("1=127.0.0.1:7001/127.0.0.1:8001")?;
//! let server = Server::start(ServerConfig::new(1, peers, "data/node1".into())).await?;
//! // curl -X PUT --data-binary hello http://127.0.0.1:8001/v1/kv/greeting
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! How to run it, the API and the design: docs/SERVER.md.

pub mod admin;
mod binary;
pub mod config;
pub mod driver;
pub mod http;
pub mod http_client;
pub mod identity;
mod join;
pub mod logging;
pub mod members;
pub mod metrics;
mod reconfig;
mod server;
mod snapshots;
pub mod space;
pub mod status;
mod transport;
pub mod wire;

pub use admin::{MemberInfo, MembersReport, TransferReport};
pub use config::{format_peers, parse_peers, ConfigError, PeerAddrs, ServerConfig};
pub use server::{Server, ServerError, StartError};
pub use status::{LeaderRef, PeerStatus, StatusReport};
