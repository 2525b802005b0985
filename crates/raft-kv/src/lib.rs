//! A linearizable replicated key-value service on [`raft_core`] (the 6.824
//! lab's KV service, 3A/3B, grown up): the operations ([`op`]), the state
//! machine with exactly-once client sessions, a sans-IO clerk, and a
//! linearizability checker used by every test that records a history.
//!
//! Like the core, everything here is sans-IO: no threads, clock, sockets or
//! disk. The simulator and the real server drive the same code.

pub mod check;
pub mod op;

pub use op::{Key, Op, OpResult, Value};
