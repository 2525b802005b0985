//! An async Rust client for raftkv.
//!
//! Give it any of the cluster's client addresses; it finds the leader (a
//! follower's "not leader" answer names it, the nodes' status tells it),
//! sends writes there, and retries with backoff while the cluster cannot
//! answer (an election, a node down, back-pressure).
//!
//! - **Reads** ([`Client::get`], [`Client::list`]) are linearizable by
//!   default (ReadIndex on whichever node answers, Raft thesis §6.4), or
//!   [`Consistency::Stale`]. Reads are retried on any failure.
//! - **Plain writes** ([`Client::put`], [`Client::delete`],
//!   [`Client::append`], [`Client::cas`]) are at-least-once: retried only
//!   while nothing can have been applied; once an attempt may have reached
//!   the log and its answer is lost, the call ends in
//!   [`Error::OutcomeUnknown`].
//! - **Session writes** ([`Session`]) are exactly-once: each carries the
//!   session id and a sequence number, and a retry carries the same number,
//!   so the cluster applies it once however often it is sent (thesis §6.3).
//!   They are retried on any failure until the call's deadline.
//! - **Membership** ([`Client::members`], [`Client::add_learner`],
//!   [`Client::promote`], [`Client::remove`], [`Client::transfer_leader`]):
//!   answered once the change committed; retried like session writes (a
//!   change already made is answered "done").
//! - **Errors** are typed ([`Error`]); [`Error::may_have_applied`] says
//!   whether a failed write may still have taken effect.
//!
//! ```no_run
//! use raftkv_client::{Client, Error};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::new(["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"])?;
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
//!
//! // Exactly-once writes: retried with the same number, applied once.
//! let mut session = client.open_session().await?;
//! let len = session.append("log", "entry;").await?;
//! let swapped = session.cas("greeting", Some(b"hello"), "bye").await?;
//! assert!(swapped.matched);
//!
//! match client.put("k", "v").await {
//!     Ok(previous) => println!("replaced {previous:?}"),
//!     Err(e) if e.may_have_applied() => println!("maybe applied: {e}"),
//!     Err(e) => println!("not applied: {e}"),
//! }
//! # let _ = len;
//! # Ok(()) }
//! ```
//!
//! It speaks raftkv's binary protocol by default ([`proto`],
//! docs/PROTOCOL.md): one connection per node shared by every call, many
//! requests in flight on it. [`ClientConfig::protocol`] set to
//! [`Protocol::Http`] makes it speak the HTTP API (docs/SERVER.md)
//! instead, with the same retries and errors. Membership calls always use
//! HTTP.

mod admin;
mod client;
mod codec;
mod error;
mod http;
mod http_kv;
mod mux;
mod ops;
pub mod proto;
mod types;

pub use admin::{Member, Members, Transfer};
pub use client::Client;
pub use error::Error;
pub use ops::Session;
pub use types::{
    CasOutcome, ClientConfig, Consistency, LeaderInfo, Page, PeerInfo, Protocol, Status,
};
