//! A raft-core [`Storage`] over a lab [`Persister`]: the log lives in a
//! [`MemStorage`], and every sync writes it whole into the persister's
//! raft-state bytes (plus the snapshot when it changed), in one `save`.
//!
//! Rewriting the whole log per Ready is what the lab's `persist()` does; an
//! application that snapshots regularly keeps it short.

use raft_core::{Entry, HardState, Index, MemStorage, Snapshot, Storage, StorageError, Term};

use crate::codec;
use crate::error::{DecodeError, MakeError};
use crate::persister::Persister;

/// The node's durable state: in memory, mirrored to the persister on sync.
pub(crate) struct LabStorage {
    mem: MemStorage,
    persister: Box<dyn Persister>,
    /// Something changed since the last save.
    dirty: bool,
    /// A snapshot stored since the last save, to go out with the next one.
    new_snapshot: Option<Vec<u8>>,
}

impl LabStorage {
    /// Recovers term, vote, log and snapshot from `persister` (empty for a
    /// fresh server); refuses corrupt state with a typed error.
    pub(crate) fn open(persister: Box<dyn Persister>) -> Result<Self, MakeError> {
        let bytes = persister.read_raft_state().map_err(MakeError::Read)?;
        let mut mem = MemStorage::new();
        if let Some(state) = codec::decode(&bytes)? {
            if state.snapshot_index > 0 {
                let data = persister.read_snapshot().map_err(MakeError::Read)?;
                // The lab's clusters never change membership: the bootstrap
                // voters are the configuration, so none is stored.
                let snapshot = Snapshot::new(state.snapshot_index, state.snapshot_term, data);
                mem.apply_snapshot(&snapshot).map_err(DecodeError::from)?;
            }
            mem.append(&state.entries).map_err(DecodeError::from)?;
            mem.set_hard_state(&state.hard_state)
                .map_err(DecodeError::from)?;
        }
        Ok(LabStorage {
            mem,
            persister,
            dirty: false,
            new_snapshot: None,
        })
    }

    fn save(&mut self) -> Result<(), StorageError> {
        let hs = self.mem.hard_state()?;
        let snap_index = self.mem.first_index() - 1;
        let meta = self.mem.snapshot_meta();
        let entries = self
            .mem
            .entries(snap_index + 1, self.mem.last_index() + 1, u64::MAX)?;
        let bytes =
            codec::encode(&hs, &meta, &entries).map_err(|e| StorageError::Backend(Box::new(e)))?;
        self.persister
            .save(&bytes, self.new_snapshot.as_deref())
            .map_err(|e| StorageError::Backend(Box::new(e)))?;
        self.dirty = false;
        self.new_snapshot = None;
        Ok(())
    }
}

impl Storage for LabStorage {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        self.mem.hard_state()
    }

    fn first_index(&self) -> Index {
        self.mem.first_index()
    }

    fn last_index(&self) -> Index {
        self.mem.last_index()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.mem.term(index)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.mem.entries(lo, hi, max_bytes)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.mem.snapshot()
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.mem.append(entries)?;
        self.dirty = true;
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.mem.set_hard_state(hs)?;
        self.dirty = true;
        Ok(())
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.mem.apply_snapshot(snapshot)?;
        self.new_snapshot = Some(snapshot.data.clone());
        self.dirty = true;
        Ok(())
    }

    /// One `Persister::save` per Ready that changed anything.
    fn sync(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.save()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persister::MemPersister;

    #[test]
    fn sync_saves_and_open_recovers() {
        let p = MemPersister::new();
        let mut s = LabStorage::open(Box::new(p.clone())).unwrap();
        let ents: Vec<Entry> = (1..=5)
            .map(|i| Entry::normal(i, 1, vec![i as u8]))
            .collect();
        s.append(&ents).unwrap();
        s.set_hard_state(&HardState {
            term: 2,
            vote: Some(1),
            commit: 4,
        })
        .unwrap();
        let snap = Snapshot::new(3, 1, b"app".to_vec());
        s.apply_snapshot(&snap).unwrap();
        assert_eq!(p.raft_state_size(), 0, "nothing saved before sync");
        s.sync().unwrap();
        assert_eq!(p.read_snapshot().unwrap(), b"app");

        let r = LabStorage::open(Box::new(p.clone())).unwrap();
        assert_eq!(r.hard_state().unwrap().commit, 4);
        assert_eq!((r.first_index(), r.last_index()), (4, 5));
        assert_eq!(r.snapshot().unwrap(), snap);
        assert_eq!(r.entries(4, 6, u64::MAX).unwrap(), ents[3..].to_vec());
    }

    #[test]
    fn corrupt_state_refuses_to_open() {
        let p = MemPersister::new();
        p.overwrite_raft_state(b"RLAB\x02\xff\xff".to_vec());
        assert!(matches!(
            LabStorage::open(Box::new(p)),
            Err(MakeError::Corrupt(_))
        ));
    }
}
