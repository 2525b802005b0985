//! Sans-IO Raft consensus (Ongaro & Ousterhout, "In Search of an
//! Understandable Consensus Algorithm", extended version).
//!
//! A [`Node`] holds no threads, clock, sockets or files. The caller feeds it
//! ticks, messages and proposals, and collects its output as a [`Ready`].
//!
//! **The contract, in one sentence:** persist a Ready's snapshot, entries and
//! hard state (one sync), then send its messages, then apply its committed
//! entries in order, then call [`Node::advance`] before asking for the next
//! Ready.
//!
//! [`persist`] does the persisting; [`persist_owned`] does the same but
//! moves the Ready's entries into storage instead of cloning them.
//!
//! **And one for speed:** with `Config::async_leader_writes`, a leader's
//! [`Ready::early_messages`] may be sent at once, before or while the Ready
//! is persisted (the leader counts its own entries only once `advance` says
//! they are durable).
//!
//! Three more promises callers may build on:
//! - every request (RequestVote, AppendEntries, InstallSnapshot, Heartbeat)
//!   that [`Node::step`] accepts puts exactly one reply to its sender in the
//!   next Ready. A request gets no reply when it is refused at the door (it
//!   could not come from a correct peer: [`Status::rejected`] counts it and
//!   [`Status::last_rejection`] says why) or when it is a vote request ignored
//!   while a leader is known to be alive (thesis §4.2.3). A ReadIndex request
//!   is answered later, once the leader confirms its leadership, or never. So
//!   a request/response RPC layer can hand the reply back as the call's
//!   response;
//! - only [`Error::Storage`] from `step`, `tick` or `ready` means the node can
//!   no longer keep the contract; [`Error::NotLeader`] and
//!   [`Error::BadSnapshotIndex`] are answers to the caller, and the node goes on;
//! - input from peers never panics the node: terms and indices above
//!   [`MAX_TERM`] and [`MAX_INDEX`], malformed entries and snapshot chunks are
//!   refused before any handler sees them.
//!
//! Reads (thesis §6.4): [`Node::read_index`] hands back a [`ReadState`] in a
//! later Ready once the leader has confirmed it still leads; the application
//! serves the read after applying through its index. Run with
//! `Config::noop_on_election` so a new leader can serve reads promptly.
//!
//! ```
//! use raft_core::{persist, Config, MemStorage, Node};
//!
//! let mut node = Node::new(Config::new(1, vec![1]), MemStorage::new()).unwrap();
//! for _ in 0..100 {
//!     node.tick().unwrap(); // a single voter elects itself within 2T
//! }
//! assert!(node.is_leader());
//! let (index, _term) = node.propose(b"x".to_vec()).unwrap();
//! let rd = node.ready().unwrap();
//! persist(node.storage_mut(), &rd).unwrap();
//! // send rd.messages, then apply rd.committed_entries ...
//! assert_eq!(rd.committed_entries.last().unwrap().index, index);
//! node.advance();
//! ```

mod conf;
mod config;
mod election;
mod error;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod quorum;
mod read_only;
mod ready;
mod replication;
mod snapshot;
mod storage;
mod tracker;
mod types;
mod validate;

pub use bytes::Bytes;
pub use conf::{ConfChange, ConfChangeError, ConfEntry, ConfState};
pub use config::Config;
pub use error::{ConfigError, Error, StorageError};
pub use log::RaftLog;
pub use message::{AppendReply, Body, Message};
pub use node::{Node, Role, Status};
pub use progress::{Progress, ProgressState};
pub use quorum::{committed_index, majority};
pub use read_only::ReadState;
pub use ready::Ready;
pub use storage::{persist, persist_owned, MemStorage, Storage};
pub use types::{Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMeta, Term};
pub use validate::{Rejection, MAX_INDEX, MAX_TERM};
