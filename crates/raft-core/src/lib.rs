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
//! Two more promises callers may build on:
//! - every request (RequestVote, AppendEntries, InstallSnapshot) that
//!   [`Node::step`] accepts puts exactly one reply to its sender in the next
//!   Ready, except a vote request ignored while a leader is known to be alive
//!   (thesis §4.2.3), which gets none; so a request/response RPC layer can hand
//!   that reply back as the call's response;
//! - only [`Error::Storage`] from `step`, `tick` or `ready` means the node can
//!   no longer keep the contract; [`Error::NotLeader`] and
//!   [`Error::BadSnapshotIndex`] are answers to the caller, and the node goes on.
//!
//! ```
//! use raft_core::{persist, Config, MemStorage, Node};
//!
//! let mut node = Node::new(Config::new(1, vec![1]), MemStorage::new()).unwrap();
//! while !node.is_leader() {
//!     node.tick().unwrap();
//! }
//! let (index, _term) = node.propose(b"x".to_vec()).unwrap();
//! let rd = node.ready().unwrap();
//! persist(node.storage_mut(), &rd).unwrap();
//! // send rd.messages, then apply rd.committed_entries ...
//! assert_eq!(rd.committed_entries.last().unwrap().index, index);
//! node.advance();
//! ```

mod config;
mod election;
mod error;
mod log;
mod message;
mod node;
mod progress;
mod quorum;
mod ready;
mod replication;
mod snapshot;
mod storage;
mod types;

pub use config::Config;
pub use error::{ConfigError, Error, StorageError};
pub use log::RaftLog;
pub use message::{AppendReply, Body, Message};
pub use node::{Node, Role, Status};
pub use progress::{Progress, ProgressState};
pub use quorum::{committed_index, majority};
pub use ready::Ready;
pub use storage::{persist, MemStorage, Storage};
pub use types::{Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMeta, Term};
