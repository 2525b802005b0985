//! The in-memory picture of the log: hard state, current snapshot, and for
//! each entry after it where it lives (segment, offset, length) and its term.
//! Recovery rebuilds it by replaying records; the write path updates it.

use std::collections::VecDeque;

use raft_core::{HardState, Index, Term};

use crate::codec::{SnapRef, ENTRY_HEADER};

/// Segment number of an entry still in the unflushed batch (its offset is
/// then relative to the batch buffer).
pub(crate) const PENDING: u64 = u64::MAX;
/// Where one entry's record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub term: Term,
    pub seg: u64,
    pub off: u64,
    /// Length of the whole entry item (header and data).
    pub len: u32,
}

impl Slot {
    /// `Entry::size()` of the entry, without reading it.
    pub fn entry_size(&self) -> u64 {
        u64::from(self.len).saturating_sub(ENTRY_HEADER as u64) + 24
    }
}

/// Hard state, snapshot and entry index.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogState {
    pub hard_state: HardState,
    pub snap: SnapRef,
    /// Entries `snap.meta.index + 1 ..= missing_through` are known to exist
    /// but are held by segments recovery did not read (a checkpoint's
    /// entries): later records must truncate or compact them away by the end
    /// of replay, or the log is missing data. Kept as a range, never as
    /// slots, so a checkpoint cannot make recovery allocate; no range when
    /// it is at most the snapshot index.
    pub missing_through: Index,
    /// `slots[i]` is the entry at `slots_start() + i`.
    pub slots: VecDeque<Slot>,
}

impl LogState {
    /// A state with entries up to `last_index` that no slot describes yet.
    pub fn with_missing(hard_state: HardState, snap: SnapRef, last_index: Index) -> Self {
        let mut s = LogState {
            hard_state,
            snap,
            missing_through: last_index,
            slots: VecDeque::new(),
        };
        s.normalize();
        s
    }

    fn normalize(&mut self) {
        if self.missing_through <= self.snap.meta.index {
            self.missing_through = 0;
        }
    }

    pub fn first_index(&self) -> Index {
        self.snap.meta.index + 1
    }

    /// The index of `slots[0]`.
    fn slots_start(&self) -> Index {
        self.snap.meta.index.max(self.missing_through) + 1
    }

    pub fn last_index(&self) -> Index {
        self.slots_start() - 1 + self.slots.len() as Index
    }

    /// The slot of `index`, if held.
    pub fn slot(&self, index: Index) -> Option<&Slot> {
        let i = index.checked_sub(self.slots_start())?;
        self.slots.get(usize::try_from(i).ok()?)
    }

    /// Term at `index` (the snapshot's term at its own index).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snap.meta.index {
            return Some(self.snap.meta.term);
        }
        self.slot(index).map(|s| s.term)
    }

    /// Drops every entry at or after `index`.
    pub fn truncate_from(&mut self, index: Index) {
        if index <= self.missing_through {
            self.missing_through = index.saturating_sub(1);
            self.slots.clear();
            self.normalize();
            return;
        }
        let keep = index.saturating_sub(self.slots_start());
        self.slots
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Records the entry at `index`, discarding any held at or after it.
    /// Entries covered by the snapshot are ignored.
    pub fn put_entry(&mut self, index: Index, slot: Slot) -> Result<(), &'static str> {
        if index <= self.snap.meta.index {
            return Ok(());
        }
        if index > self.last_index() + 1 {
            return Err("entry index leaves a gap in the log");
        }
        self.truncate_from(index);
        self.slots.push_back(slot);
        Ok(())
    }

    /// Installs `snap`: keeps the entries after it when `keep`, else drops all.
    pub fn put_snapshot(&mut self, snap: SnapRef, keep: bool) -> Result<(), &'static str> {
        let index = snap.meta.index;
        if index < self.snap.meta.index {
            return Err("snapshot older than the current one");
        }
        if keep {
            if index > self.last_index() {
                return Err("snapshot keeps entries the log does not have");
            }
            // Slots from the old start up to the new one go (at most all:
            // `index <= last_index`).
            let start = self.slots_start();
            let drop = (index.max(self.missing_through) + 1).saturating_sub(start);
            let drop = usize::try_from(drop).map_or(self.slots.len(), |d| d.min(self.slots.len()));
            self.slots.drain(..drop);
        } else {
            self.slots.clear();
            self.missing_through = 0;
        }
        self.snap = snap;
        self.normalize();
        Ok(())
    }

    /// The first index whose entry recovery could not find, if any.
    pub fn first_missing(&self) -> Option<Index> {
        (self.missing_through > self.snap.meta.index).then(|| self.first_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::SnapshotMeta;

    fn slot(term: Term) -> Slot {
        Slot {
            term,
            seg: 1,
            off: 0,
            len: ENTRY_HEADER as u32,
        }
    }

    fn snap(index: Index) -> SnapRef {
        SnapRef {
            seq: 1,
            meta: SnapshotMeta::of(index, 1, &[]),
            len: 0,
            crc: 0,
        }
    }

    #[test]
    fn a_missing_range_is_shrunk_by_truncation_entries_and_snapshots() {
        let hs = HardState::default();
        // Billions of missing entries cost nothing.
        let mut s = LogState::with_missing(hs, SnapRef::default(), 1 << 40);
        assert_eq!((s.last_index(), s.first_missing()), (1 << 40, Some(1)));
        assert!(s.slots.is_empty() && s.slot(5).is_none() && s.term(5).is_none());
        // An entry inside the range truncates it.
        s.put_entry(6, slot(2)).unwrap();
        assert_eq!((s.last_index(), s.first_missing()), (6, Some(1)));
        assert_eq!(s.term(6), Some(2));
        s.put_entry(7, slot(3)).unwrap();
        assert!(s.put_entry(9, slot(3)).is_err());
        // A snapshot keeping entries past the range ends it.
        s.put_snapshot(snap(6), true).unwrap();
        assert_eq!(
            (s.first_index(), s.last_index(), s.first_missing()),
            (7, 7, None)
        );
        assert_eq!(s.term(7), Some(3));
        // A snapshot inside the range keeps the rest missing.
        let mut s = LogState::with_missing(hs, SnapRef::default(), 10);
        s.put_snapshot(snap(4), true).unwrap();
        assert_eq!((s.last_index(), s.first_missing()), (10, Some(5)));
        // Truncation below the range start, and a snapshot dropping all.
        s.truncate_from(5);
        assert_eq!((s.last_index(), s.first_missing()), (4, None));
        let mut s = LogState::with_missing(hs, SnapRef::default(), 10);
        s.put_snapshot(snap(20), false).unwrap();
        assert_eq!((s.last_index(), s.first_missing()), (20, None));
    }
}
