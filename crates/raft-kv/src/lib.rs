//! A linearizable replicated key-value service on [`raft_core`] (the 6.824
//! lab's KV service, 3A/3B, grown up).
//!
//! Like the core, everything here is sans-IO: no threads, clock, sockets or
//! disk; time is passed in by the caller. The simulator and the real server
//! drive the same code.
//!
//! - [`op`]: the operations (get, put, append, delete, compare-and-swap,
//!   range) and what each answers.
//! - [`command`]: the log record format (a version byte, then postcard); the
//!   leader stamps each record with its clock (thesis §6.3).
//! - [`store`] and [`session`]: the state machine. An ordered map of keys
//!   and a session table for exactly-once writes: a retry is answered from
//!   the table, never applied twice; sessions expire by the clock carried in
//!   the log, the same on every replica. Snapshots are deterministic bytes;
//!   both maps are persistent (`imbl`), so an image to encode is taken in
//!   O(1) ([`StoreImage`]).
//! - [`service`]: one replica's server side between client requests and its
//!   `raft_core::Node` (which it never owns): proposes stamped records,
//!   serves linearizable reads by ReadIndex (thesis §6.4), answers clients
//!   when their entries apply, says "retry" when an entry is lost or the
//!   leader steps down, pushes back when too much waits, decides snapshots.
//! - [`clerk`]: the client side: registers a session, numbers its writes,
//!   follows the leader, retries with the same number, ends each call by a
//!   deadline.
//! - [`api`]: what travels between clerks and servers, with typed errors.
//! - [`check`]: the linearizability checker every recorded history goes
//!   through (Wing–Gong/Lowe search with memoisation, partitioned by key),
//!   with an HTML picture of any history it refuses.
//!
//! # Example
//!
//! One server and one clerk, with the network reduced to function calls.
//! A driver's loop: the clerk's [`Action`]s go to the server's
//! [`Service::on_request`]; the node's Ready is persisted, then handed to
//! [`Service::on_ready`], whose replies go back to [`Clerk::on_reply`].
//!
//! ```
//! use raft_core::{persist, Config, MemStorage, Node};
//! use raft_kv::{Action, Clerk, ClerkConfig, Op, OpResult, Service, ServiceConfig};
//!
//! let cfg = Config { noop_on_election: true, ..Config::new(1, vec![1]) };
//! let mut node = Node::new(cfg, MemStorage::new()).unwrap();
//! let mut service: Service<()> = Service::new(ServiceConfig::default());
//! let mut clerk = Clerk::new(ClerkConfig::new(vec![1]));
//! while !node.is_leader() {
//!     node.tick().unwrap();
//! }
//!
//! let mut run = |op: Op| {
//!     let (call, mut actions) = clerk.call(op, 0);
//!     while let Some(action) = actions.pop() {
//!         match action {
//!             Action::Send { request, .. } => {
//!                 let mut replies = service.on_request(&mut node, (), request, 0);
//!                 while node.has_ready() {
//!                     let rd = node.ready().unwrap();
//!                     persist(node.storage_mut(), &rd).unwrap();
//!                     // (send rd.messages to the other servers here)
//!                     replies.extend(service.on_ready(&node, &rd).unwrap());
//!                     node.advance();
//!                 }
//!                 for ((), reply) in replies {
//!                     actions.extend(clerk.on_reply(1, reply, 0));
//!                 }
//!             }
//!             Action::Done { call: done, result } if done == call => return result,
//!             _ => {} // Timers: a real driver calls clerk.on_timer when due.
//!         }
//!     }
//!     unreachable!("a single node answers at once")
//! };
//!
//! let put = Op::Put { key: b"k".to_vec(), value: b"v".to_vec() };
//! assert_eq!(run(put), Ok(OpResult::Replaced(None)));
//! let append = Op::Append { key: b"k".to_vec(), value: b"w".to_vec() };
//! assert_eq!(run(append), Ok(OpResult::Appended { len: 2 }));
//! ```

pub mod api;
pub mod check;
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
pub use command::{Record, RecordBody, RecordError, OLDEST_RECORD_VERSION, RECORD_VERSION};
pub use node::RaftNode;
pub use op::{Key, Op, OpResult, Value};
pub use service::{ReadPath, Replies, Service, ServiceConfig};
pub use store::{
    KvMap, Outcome, Shared, SharedValue, SnapshotError, Store, StoreConfig, StoreError, StoreImage,
    SNAPSHOT_VERSION,
};
