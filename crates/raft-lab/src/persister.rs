//! The lab's `Persister`: two opaque byte strings, Raft's state and the
//! application's latest snapshot, replaced together.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a node keeps what must survive a crash (the lab's `persister.go`).
///
/// `raft state` is this crate's encoding of term, vote and log (the lab's
/// `persist()`/`readPersist()` bytes); `snapshot` is the application's own
/// bytes given to [`Node::snapshot`](crate::Node::snapshot) or received from
/// a leader. Implement it over a file, a database or memory.
///
/// Only `Send` is required: the node hands its persister to its driver
/// thread, the only one that ever calls it, so a persister with a `RefCell`
/// or a plain file inside is fine. To keep a handle of your own (to look at
/// the sizes, or to restart a server over the same state), pass a clone that
/// shares the storage, as [`MemPersister`] does, or an `Arc<P>` of a `Sync` one.
pub trait Persister: Send {
    /// Replaces the raft state and, when `snapshot` is `Some`, the snapshot,
    /// both at once (the lab's `Save`). `None` keeps the stored snapshot,
    /// which saves copying it on every save. Must be durable when it returns:
    /// the node sends messages that depend on it right after.
    fn save(&self, raft_state: &[u8], snapshot: Option<&[u8]>) -> io::Result<()>;
    /// The raft state saved last (empty for a fresh server).
    fn read_raft_state(&self) -> io::Result<Vec<u8>>;
    /// The snapshot saved last (empty when none).
    fn read_snapshot(&self) -> io::Result<Vec<u8>>;
    /// Size of the raft state in bytes (the lab's `RaftStateSize`, which a
    /// service compares with `maxraftstate` to decide when to snapshot).
    fn raft_state_size(&self) -> usize;
    /// Size of the snapshot in bytes.
    fn snapshot_size(&self) -> usize;
}

/// A shared persister: the node and the caller both hold it.
impl<P: Persister + Sync + ?Sized> Persister for Arc<P> {
    fn save(&self, raft_state: &[u8], snapshot: Option<&[u8]>) -> io::Result<()> {
        (**self).save(raft_state, snapshot)
    }
    fn read_raft_state(&self) -> io::Result<Vec<u8>> {
        (**self).read_raft_state()
    }
    fn read_snapshot(&self) -> io::Result<Vec<u8>> {
        (**self).read_snapshot()
    }
    fn raft_state_size(&self) -> usize {
        (**self).raft_state_size()
    }
    fn snapshot_size(&self) -> usize {
        (**self).snapshot_size()
    }
}

impl<P: Persister + ?Sized> Persister for Box<P> {
    fn save(&self, raft_state: &[u8], snapshot: Option<&[u8]>) -> io::Result<()> {
        (**self).save(raft_state, snapshot)
    }
    fn read_raft_state(&self) -> io::Result<Vec<u8>> {
        (**self).read_raft_state()
    }
    fn read_snapshot(&self) -> io::Result<Vec<u8>> {
        (**self).read_snapshot()
    }
    fn raft_state_size(&self) -> usize {
        (**self).raft_state_size()
    }
    fn snapshot_size(&self) -> usize {
        (**self).snapshot_size()
    }
}

#[derive(Debug, Default, Clone)]
struct Saved {
    raft_state: Arc<Vec<u8>>,
    snapshot: Arc<Vec<u8>>,
}

/// A [`Persister`] in memory: durable for as long as the value lives, which
/// is what tests need to model a crash (kill the node, keep the persister,
/// `make` again with it). Clones share the same storage; [`copy`] does not.
///
/// [`copy`]: MemPersister::copy
#[derive(Debug, Default, Clone)]
pub struct MemPersister {
    saved: Arc<Mutex<Saved>>,
}

impl MemPersister {
    /// An empty persister: a fresh server.
    pub fn new() -> Self {
        Self::default()
    }

    /// An independent copy of what is saved now (the lab's `Copy`): a killed
    /// node that still wrote late could not touch the copy.
    pub fn copy(&self) -> Self {
        let saved = self.lock().clone();
        MemPersister {
            saved: Arc::new(Mutex::new(saved)),
        }
    }

    /// Replaces the raft state bytes as they are, without decoding them
    /// (tests use it to plant corrupt state).
    pub fn overwrite_raft_state(&self, bytes: Vec<u8>) {
        self.lock().raft_state = Arc::new(bytes);
    }

    fn lock(&self) -> MutexGuard<'_, Saved> {
        // The lock guards plain data and no code panics while holding it, so
        // a poisoned lock still holds consistent bytes.
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Persister for MemPersister {
    fn save(&self, raft_state: &[u8], snapshot: Option<&[u8]>) -> io::Result<()> {
        let raft_state = Arc::new(raft_state.to_vec());
        let snapshot = snapshot.map(|s| Arc::new(s.to_vec()));
        let mut saved = self.lock();
        saved.raft_state = raft_state;
        if let Some(s) = snapshot {
            saved.snapshot = s;
        }
        Ok(())
    }

    fn read_raft_state(&self) -> io::Result<Vec<u8>> {
        let bytes = Arc::clone(&self.lock().raft_state);
        Ok(bytes.as_ref().clone())
    }

    fn read_snapshot(&self) -> io::Result<Vec<u8>> {
        let bytes = Arc::clone(&self.lock().snapshot);
        Ok(bytes.as_ref().clone())
    }

    fn raft_state_size(&self) -> usize {
        self.lock().raft_state.len()
    }

    fn snapshot_size(&self) -> usize {
        self.lock().snapshot.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_replaces_both_or_keeps_snapshot() {
        let p = MemPersister::new();
        p.save(b"s1", Some(b"snap1")).unwrap();
        p.save(b"s2", None).unwrap();
        assert_eq!(p.read_raft_state().unwrap(), b"s2");
        assert_eq!(p.read_snapshot().unwrap(), b"snap1");
        assert_eq!((p.raft_state_size(), p.snapshot_size()), (2, 5));
    }

    /// A persister that is `Send` but not `Sync` (a `RefCell` inside).
    struct Cell(std::cell::RefCell<Vec<u8>>);

    impl Persister for Cell {
        fn save(&self, raft_state: &[u8], _: Option<&[u8]>) -> io::Result<()> {
            *self.0.borrow_mut() = raft_state.to_vec();
            Ok(())
        }
        fn read_raft_state(&self) -> io::Result<Vec<u8>> {
            Ok(self.0.borrow().clone())
        }
        fn read_snapshot(&self) -> io::Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn raft_state_size(&self) -> usize {
            self.0.borrow().len()
        }
        fn snapshot_size(&self) -> usize {
            0
        }
    }

    #[test]
    fn send_only_persisters_are_accepted() {
        fn boxed(p: impl Persister + 'static) -> Box<dyn Persister> {
            Box::new(p)
        }
        let p = boxed(Cell(Default::default()));
        p.save(b"x", None).unwrap();
        let moved = std::thread::spawn(move || p.read_raft_state().unwrap());
        assert_eq!(moved.join().unwrap(), b"x");
        let shared: Arc<MemPersister> = Arc::new(MemPersister::new());
        let p = boxed(Arc::clone(&shared));
        p.save(b"y", Some(b"s")).unwrap();
        assert_eq!(shared.read_raft_state().unwrap(), b"y");
    }

    #[test]
    fn copy_is_independent_clone_is_shared() {
        let p = MemPersister::new();
        p.save(b"a", Some(b"x")).unwrap();
        let shared = p.clone();
        let copied = p.copy();
        p.save(b"b", None).unwrap();
        assert_eq!(shared.read_raft_state().unwrap(), b"b");
        assert_eq!(copied.read_raft_state().unwrap(), b"a");
    }
}
