//! A deterministic simulator for raft-core, and the 6.824 lab's Raft tests
//! translated to run in it.
//!
//! One thread, a virtual clock and a seeded RNG drive N [`raft_core::Node`]s
//! through the Ready contract (persist, send, apply, advance). The network
//! drops, delays, reorders and duplicates messages and can be partitioned;
//! nodes crash (volatile state lost, storage kept) and restart. After every
//! event an [`invariants::Checker`] verifies Raft's safety properties, and
//! the lab's application side ([`app`]) checks what each node applies.
//! With [`SimConfig::kv`] each node runs the KV service instead, with
//! clerks calling through the same faulty network ([`kv`]): the lab's
//! 3A/3B scenarios, every history checked for linearizability.
//! The same seed gives the same run, byte for byte.
//!
//! ```
//! use raft_sim::{cmd, Cluster};
//!
//! let mut cfg = Cluster::new(3, 42).unwrap();
//! let leader = cfg.check_one_leader().unwrap();
//! assert_eq!(cfg.one(cmd(100), 3, false).unwrap(), 1);
//! cfg.disconnect(leader);
//! assert_eq!(cfg.one(cmd(101), 2, true).unwrap(), 2);
//! ```
//!
//! Modules, one job each: [`clock`] (virtual time, event queue), [`network`]
//! (links, faults, counters), [`factory`] (storage across crashes), `driver`
//! (the Ready loop), [`sim`] (the event loop), [`invariants`] (safety
//! checker), [`app`] (the lab's applier), [`kv`] (the KV service and its
//! clerks, in place of the applier), [`harness`] (the lab's
//! vocabulary), [`chaos`] (the random fault schedule), [`hold`] (messages
//! held into later terms), [`stats`] (what a run cost), [`trace`] and
//! [`timeline`] (what happened), [`seeds`] (seed handling for tests).

pub mod app;
pub mod chaos;
pub mod chaos_membership;
pub mod clock;
pub mod confs;
mod driver;
pub mod error;
pub mod factory;
pub mod harness;
pub mod hold;
pub mod invariants;
pub mod kv;
pub mod membership;
pub mod network;
pub mod seeds;
pub mod servers;
pub mod sim;
pub mod stats;
mod tasks;
pub mod timeline;
pub mod trace;
mod write;

pub use chaos::{run_chaos, ChaosConfig, ChaosReport};
pub use error::{FailureKind, SimError};
pub use factory::{MemFactory, OpenError, StorageFactory};
pub use harness::{cmd, Builder, Cluster, ELECTION_TIMEOUT_MS};
pub use hold::{Hold, HoldId, Release, Select};
pub use network::{LinkFaults, LongDelay};
pub use sim::{Sim, SimConfig};
pub use stats::Stats;
pub use tasks::{show_cmd, TaskId, TaskOutput};
