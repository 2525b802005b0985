//! Where each simulated node's storage comes from, and where it goes when
//! the node crashes. The default keeps a [`MemStorage`] across a crash, as a
//! disk would; a disk-backed store can instead be dropped and reopened.

use std::collections::BTreeMap;
use std::error::Error;

use raft_core::{MemStorage, NodeId, Storage};

/// Why a factory could not open a node's storage.
pub type OpenError = Box<dyn Error + Send + Sync>;

/// Opens and closes the durable state of simulated nodes.
///
/// A crash hands the storage back with [`crash`](StorageFactory::crash); the
/// restart that follows asks for it again with [`open`](StorageFactory::open),
/// which must return exactly what was persisted (for a WAL: drop the handle
/// on crash, reopen the directory on open).
pub trait StorageFactory {
    /// The storage type the nodes run on.
    type Storage: Storage;

    /// Node `id`'s storage: empty at first start, what survived after a crash.
    fn open(&mut self, id: NodeId) -> Result<Self::Storage, OpenError>;

    /// Takes back the storage of node `id`, which just crashed.
    fn crash(&mut self, id: NodeId, storage: Self::Storage);

    /// The persisted Raft state's size in bytes (the lab's `RaftStateSize`),
    /// when this storage can tell it.
    fn raft_state_size(&self, _storage: &Self::Storage) -> Option<u64> {
        None
    }
}

/// [`MemStorage`] per node, kept across crashes.
#[derive(Debug, Default)]
pub struct MemFactory {
    saved: BTreeMap<NodeId, MemStorage>,
}

impl MemFactory {
    /// A factory that has saved nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StorageFactory for MemFactory {
    type Storage = MemStorage;

    fn open(&mut self, id: NodeId) -> Result<MemStorage, OpenError> {
        Ok(self.saved.remove(&id).unwrap_or_default())
    }

    fn crash(&mut self, id: NodeId, storage: MemStorage) {
        self.saved.insert(id, storage);
    }

    fn raft_state_size(&self, storage: &MemStorage) -> Option<u64> {
        Some(storage.raft_state_size())
    }
}
