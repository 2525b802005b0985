//! The `Storage` trait: the durable half of the log and the hard state, and
//! an in-memory implementation for tests and the simulator.
//!
//! The core only *reads* storage. Writes are the caller's part of the
//! contract: it hands each [`Ready`](crate::Ready) to [`persist`] (or does the
//! same steps itself) before sending the Ready's messages.

use crate::error::StorageError;
use crate::types::{Entry, HardState, Index, Snapshot, SnapshotMeta, Term};

/// Durable Raft state: hard state, the latest snapshot, and the log entries
/// after it. Indices are absolute and survive compaction.
pub trait Storage {
    /// The hard state saved last (all zero on a fresh node).
    fn hard_state(&self) -> Result<HardState, StorageError>;
    /// Index of the first entry still held: the snapshot's index plus one.
    fn first_index(&self) -> Index;
    /// Index of the last entry (the snapshot's index when no entry follows it).
    fn last_index(&self) -> Index;
    /// Term of the entry at `index`, for `first_index() - 1 ..= last_index()`
    /// (the snapshot's own term at `first_index() - 1`).
    fn term(&self, index: Index) -> Result<Term, StorageError>;
    /// Entries in `[lo, hi)`, stopping once `max_bytes` is exceeded but
    /// always returning at least one entry when the range is non-empty
    /// (`hi <= lo` is empty).
    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;
    /// The latest snapshot (empty, at index 0, when none was taken).
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
    /// The configuration stored with the latest snapshot. The default reads
    /// the whole snapshot; a store that keeps it apart should say it cheaply.
    fn snapshot_conf(&self) -> Result<crate::ConfState, StorageError> {
        Ok(self.snapshot()?.conf)
    }

    /// Appends `entries` (contiguous), first discarding every held entry at or
    /// after `entries[0].index`. The core hands out entries with
    /// `first_index() <= entries[0].index <= last_index() + 1`: never below
    /// the snapshot (a snapshot in the same Ready is stored first) and never
    /// leaving a gap.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    /// [`append`](Storage::append), taking the entries by value. The default
    /// lends them to `append`; a store that keeps entries in memory takes
    /// them over instead, which saves a clone of each (see [`persist_owned`]).
    fn append_owned(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        self.append(&entries)
    }
    /// Replaces the hard state.
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError>;
    /// Stores `snapshot`, discarding entries it covers. Entries after it are
    /// kept only if the entry at its index has its term; otherwise the whole
    /// log is dropped (§7: "if existing log entry has same index and term as
    /// snapshot's last included entry, retain log entries following it").
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;
    /// Makes every write so far durable (one call per Ready: group commit).
    ///
    /// After any write or sync fails, a store may refuse every later write
    /// (the node must stop then: see `StorageError::Backend`).
    fn sync(&mut self) -> Result<(), StorageError>;
}

/// Persists one Ready's durable parts in the order the contract needs:
/// snapshots, entries, hard state, then one sync. Call before sending the
/// Ready's messages.
pub fn persist<S: Storage + ?Sized>(
    storage: &mut S,
    ready: &crate::Ready,
) -> Result<(), StorageError> {
    for snapshot in ready.snapshot.iter().chain(&ready.local_snapshot) {
        storage.apply_snapshot(snapshot)?;
    }
    if !ready.entries.is_empty() {
        storage.append(&ready.entries)?;
    }
    if let Some(hs) = &ready.hard_state {
        storage.set_hard_state(hs)?;
    }
    if ready.must_sync() {
        storage.sync()?;
    }
    Ok(())
}

/// [`persist`], moving the Ready's entries into storage through
/// [`Storage::append_owned`] instead of lending them: the same steps in the
/// same order, one clone of each entry less. `ready.entries` is empty
/// afterwards (nothing after persisting reads it).
pub fn persist_owned<S: Storage + ?Sized>(
    storage: &mut S,
    ready: &mut crate::Ready,
) -> Result<(), StorageError> {
    let must_sync = ready.must_sync();
    for snapshot in ready.snapshot.iter().chain(&ready.local_snapshot) {
        storage.apply_snapshot(snapshot)?;
    }
    if !ready.entries.is_empty() {
        storage.append_owned(std::mem::take(&mut ready.entries))?;
    }
    if let Some(hs) = &ready.hard_state {
        storage.set_hard_state(hs)?;
    }
    if must_sync {
        storage.sync()?;
    }
    Ok(())
}

/// Everything in memory; "durable" for as long as the value lives. The
/// simulator keeps it across a simulated crash to model a disk.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Entries after the snapshot; `entries[0].index == snapshot.meta.index + 1`.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty log with no snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes this storage would occupy encoded: hard state plus entries (the
    /// lab's `RaftStateSize`; the snapshot is counted apart).
    pub fn raft_state_size(&self) -> u64 {
        24 + self.entries.iter().map(Entry::size).sum::<u64>()
    }

    /// The stored snapshot's metadata, without copying its data.
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot.meta
    }

    /// Number of entries held after the snapshot.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry follows the snapshot.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn offset(&self) -> Index {
        self.snapshot.meta.index + 1
    }

    /// Checks that `entries` can be appended and drops every held entry they
    /// replace. Returns how many of them to skip (covered by the snapshot,
    /// hence committed), or `None` when none is left to append.
    fn make_room(&mut self, entries: &[Entry]) -> Result<Option<usize>, StorageError> {
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        if first.index > self.last_index() + 1 {
            return Err(StorageError::Unavailable(first.index));
        }
        // Entries already covered by the snapshot are committed; skip them.
        let skip = self.offset().saturating_sub(first.index) as usize;
        let Some(first) = entries.get(skip) else {
            return Ok(None);
        };
        self.entries
            .truncate((first.index - self.offset()) as usize);
        Ok(Some(skip))
    }
}

impl Storage for MemStorage {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        Ok(self.hard_state)
    }

    fn first_index(&self) -> Index {
        self.offset()
    }

    fn last_index(&self) -> Index {
        self.snapshot.meta.index + self.entries.len() as Index
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == self.snapshot.meta.index {
            return Ok(self.snapshot.meta.term);
        }
        if index < self.snapshot.meta.index {
            return Err(StorageError::Compacted(index));
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        Ok(self.entries[(index - self.offset()) as usize].term)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo < self.offset() {
            return Err(StorageError::Compacted(lo));
        }
        // A reversed range is an empty one at `lo`, which must still lie
        // inside the log (no slice out of bounds whatever the caller asks).
        let hi = hi.max(lo);
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable(hi - 1));
        }
        let from = (lo - self.offset()) as usize;
        let to = (hi - self.offset()) as usize;
        Ok(take_within(&self.entries[from..to], max_bytes))
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }

    fn snapshot_conf(&self) -> Result<crate::ConfState, StorageError> {
        Ok(self.snapshot.conf.clone())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(skip) = self.make_room(entries)? else {
            return Ok(());
        };
        self.entries.extend_from_slice(&entries[skip..]);
        Ok(())
    }

    fn append_owned(&mut self, mut entries: Vec<Entry>) -> Result<(), StorageError> {
        let Some(skip) = self.make_room(&entries)? else {
            return Ok(());
        };
        if skip == 0 {
            self.entries.append(&mut entries);
        } else {
            self.entries.extend(entries.drain(skip..));
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hs;
        Ok(())
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.meta;
        if meta.index < self.snapshot.meta.index {
            return Err(StorageError::SnapshotOutOfDate {
                offered: meta.index,
                stored: self.snapshot.meta.index,
            });
        }
        let keep = matches!(self.term(meta.index), Ok(t) if t == meta.term);
        if keep {
            let drop = (meta.index + 1 - self.offset()) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snapshot = snapshot.clone();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// The longest prefix of `entries` within `max_bytes`, but at least one entry.
pub fn take_within(entries: &[Entry], max_bytes: u64) -> Vec<Entry> {
    let mut size = 0;
    let mut n = 0;
    for e in entries {
        size += e.size();
        if n > 0 && size > max_bytes {
            break;
        }
        n += 1;
    }
    entries[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(range: std::ops::RangeInclusive<u64>, term: Term) -> Vec<Entry> {
        range
            .map(|i| Entry::normal(i, term, vec![i as u8]))
            .collect()
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=5, 1)).unwrap();
        s.append(&ents(3..=4, 2)).unwrap();
        assert_eq!(s.last_index(), 4);
        assert_eq!(s.term(2).unwrap(), 1);
        assert_eq!(s.term(3).unwrap(), 2);
        assert!(matches!(
            s.append(&ents(7..=7, 2)),
            Err(StorageError::Unavailable(7))
        ));
    }

    #[test]
    fn snapshot_keeps_matching_suffix_only() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=5, 1)).unwrap();
        let snap = |index, term| Snapshot::new(index, term, vec![]);
        s.apply_snapshot(&snap(3, 1)).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (4, 5));
        assert_eq!(s.term(3).unwrap(), 1);
        assert!(matches!(s.term(2), Err(StorageError::Compacted(2))));
        assert!(matches!(
            s.entries(2, 5, u64::MAX),
            Err(StorageError::Compacted(2))
        ));
        s.apply_snapshot(&snap(4, 9)).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (5, 4));
        assert!(s.apply_snapshot(&snap(2, 1)).is_err());
    }

    #[test]
    fn entries_respect_byte_limit_but_return_one() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=5, 1)).unwrap();
        assert_eq!(s.entries(1, 6, 0).unwrap().len(), 1);
        assert_eq!(s.entries(1, 6, 50).unwrap().len(), 2);
        assert_eq!(s.entries(2, 6, u64::MAX).unwrap().len(), 4);
    }
}
