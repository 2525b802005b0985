//! The MIT 6.824 (6.5840) Raft lab's API over [`raft_core`], for people who
//! learned Raft with the lab: [`make`], [`Node::start`], [`Node::get_state`],
//! [`Node::snapshot`], [`Node::kill`], an apply channel of [`ApplyMsg`], and a
//! [`Persister`]. Same core, same invariants as the rest of raftkv; real
//! threads and real time (a tick every 10 ms, heartbeats every 100 ms).
//!
//! Each node runs one driver thread that owns the `raft_core::Node` and keeps
//! its contract (persist, then send, then apply), taking every input already
//! waiting before each Ready so that one save and one message per peer carry
//! many of them. Every call to a peer runs on a caller of its own — a thread
//! for a blocking [`Transport`], a task on your executor for an
//! [`AsyncTransport`] — so a call that hangs for seconds, as the lab's RPC
//! layer makes lost calls do, holds back no other message. An applier thread
//! feeds the apply channel, so a slow reader never stalls the node. `start`,
//! `get_state` and `kill` return at once.
//!
//! Plug in your own RPC system by implementing [`Transport`] (client side:
//! one call, one reply) and calling [`Node::handle`] from your server, or
//! [`AsyncTransport`] with [`make_async`] and [`Node::handle_async`] for an
//! async one; [`ChannelNetwork`] is an in-process implementation with the
//! lab network's faults (disconnects, lost and delayed messages, long
//! reordering, slow failures), used by the tests. Peers are indexed `0..n`
//! as in the lab; in raft-core messages server `i` is id `i + 1`
//! ([`node_id`]).
//!
//! Features: `tokio` adds `Spawner::tokio` and makes tokio's mpsc senders
//! an [`ApplySink`]; `futures` does the same for futures' mpsc senders.
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::{Duration, Instant};
//! use raft_lab::{make, ApplyMsg, ChannelNetwork, MemPersister};
//!
//! let net = ChannelNetwork::new(3);
//! let (mut nodes, mut apply_rx) = (Vec::new(), Vec::new());
//! for me in 0..3 {
//!     let (apply_tx, rx) = mpsc::channel();
//!     let node = make(net.ends(me), me, MemPersister::new(), apply_tx)?;
//!     net.register(me, node.clone()); // the network delivers calls to node.handle
//!     nodes.push(node);
//!     apply_rx.push(rx);
//! }
//! // Only the leader accepts a command; the others answer NotLeader.
//! let deadline = Instant::now() + Duration::from_secs(5);
//! let (index, _term) = loop {
//!     if let Some(at) = nodes.iter().find_map(|n| n.start(b"x=1".to_vec()).ok()) {
//!         break at;
//!     }
//!     assert!(Instant::now() < deadline, "no leader");
//!     std::thread::sleep(Duration::from_millis(20));
//! };
//! let leader = nodes.iter().position(|n| n.get_state().1).unwrap();
//! for rx in &apply_rx {
//!     match rx.recv_timeout(Duration::from_secs(5))? {
//!         ApplyMsg::Command { index: i, command, .. } => assert_eq!((i, command), (index, b"x=1".to_vec())),
//!         ApplyMsg::Snapshot { .. } => unreachable!("nobody took a snapshot yet"),
//!     }
//! }
//! // The application saved its state through `index`: the log can shrink.
//! nodes[leader].snapshot(index, b"x=1".to_vec())?;
//! nodes.iter().for_each(|n| n.kill());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod apply;
mod codec;
mod driver;
mod error;
mod faults;
mod network;
mod node;
mod persister;
mod queue;
mod sender;
mod shared;
mod spawn;
mod storage;
mod transport;

pub use apply::{ApplyMsg, ApplySink};
pub use error::{DecodeError, MakeError, SnapshotError, StartError};
pub use network::ChannelNetwork;
pub use node::{make, make_async, make_with, Node, Options};
pub use persister::{MemPersister, Persister};
pub use shared::NodeStatus;
pub use spawn::Spawner;
pub use transport::{node_id, peer_index, AsyncTransport, Handler, Transport};

/// The raft-core types that [`Transport`] carries and the API speaks in.
pub use raft_core::{AppendReply, Body, Entry, Index, Message, NodeId, SnapshotMeta, Term};
