//! A crash-safe write-ahead log implementing [`raft_core::Storage`].
//!
//! The log lives in one directory: numbered segment files of checksummed
//! frames (one frame per [`sync`](raft_core::Storage::sync), so each batch
//! the core hands out costs one write and one fsync and is all-or-nothing),
//! plus snapshot files written by temp file, fsync, rename and directory
//! fsync. Entries are read from disk on demand through an in-memory index;
//! a bounded cache keeps the most recent ones. Opening recovers the state,
//! cuts off a torn final write (with a warning) and refuses to start on
//! damage inside acknowledged data. The format and the crash rules are in
//! docs/WAL.md.
//!
//! ```
//! use raft_core::{persist, Config, Node, Storage};
//! use raft_wal::{Wal, WalOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
//! let mut node = Node::new(Config::new(1, vec![1]), wal).unwrap();
//! while !node.is_leader() {
//!     node.tick().unwrap();
//! }
//! let (index, _) = node.propose(b"x".to_vec()).unwrap();
//! let rd = node.ready().unwrap();
//! persist(node.storage_mut(), &rd).unwrap(); // one fsync
//! node.advance();
//! drop(node);
//!
//! // A restart recovers everything that was synced.
//! let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
//! assert_eq!(wal.entries(index, index + 1, u64::MAX).unwrap()[0].data, &b"x"[..]);
//! ```

mod cache;
mod codec;
mod error;
mod read;
mod recovery;
mod segment;
mod simfs;
mod snapfile;
mod state;
mod vfs;
mod wal;

pub use error::WalError;
pub use recovery::{RecoveryReport, TornTail};
pub use simfs::{SimFile, SimFs, SimLock};
pub use vfs::{StdFs, Vfs, VfsFile};
pub use wal::{SnapshotWriter, StagedSnapshot, SyncMode, Wal, WalOptions};
