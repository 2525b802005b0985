//! A linearizable replicated key-value service on [`raft_core`] (the 6.824
//! lab's KV service, 3A/3B, grown up): the operations ([`op`]), the state
//! machine with exactly-once client sessions, a sans-IO clerk, and a
//! linearizability checker used by every test that records a history.
//!
//! Like the core, everything here is sans-IO: no threads, clock, sockets or
//! disk. The simulator and the real server drive the same code.

pub mod api;
pub mod clerk;
pub mod command;
pub mod node;
pub mod op;
pub mod service;
pub mod session;
pub mod store;

pub use api::{
    Answer, ClientReply, ClientRequest, Consistency, KvError, RequestBody, RequestId, Seq,
    SessionId,
};
pub use clerk::{Action, CallId, Clerk, ClerkConfig};
pub use command::{Record, RecordBody, RecordError, RECORD_VERSION};
pub use node::RaftNode;
pub use op::{Key, Op, OpResult, Value};
pub use service::{ReadPath, Replies, Service, ServiceConfig};
pub use store::{Outcome, SnapshotError, Store, StoreConfig, StoreError, SNAPSHOT_VERSION};
