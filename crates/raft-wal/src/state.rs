//! The in-memory picture of the log: hard state, current snapshot, and for
//! each entry after it where it lives (segment, offset, length) and its term.
//! Recovery rebuilds it by replaying records; the write path updates it.

use std::collections::VecDeque;

use raft_core::{HardState, Index, Term};

use crate::codec::{SnapRef, ENTRY_HEADER};

/// Segment number of an entry still in the unflushed batch (its offset is
/// then relative to the batch buffer).
pub(crate) const PENDING: u64 = u64::MAX;
/// Segment number of an entry known to exist but held by a segment that
/// recovery did not read (it must be truncated or compacted away by the end
/// of replay, or the log is missing data).
pub(crate) const MISSING: u64 = u64::MAX - 1;

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
    /// `slots[i]` is the entry at `snap.meta.index + 1 + i`.
    pub slots: VecDeque<Slot>,
}

impl LogState {
    pub fn first_index(&self) -> Index {
        self.snap.meta.index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snap.meta.index + self.slots.len() as Index
    }

    /// The slot of `index`, if held.
    pub fn slot(&self, index: Index) -> Option<&Slot> {
        let i = index.checked_sub(self.first_index())?;
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
        let keep = index.saturating_sub(self.first_index());
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
            let drop = (index - self.snap.meta.index) as usize;
            self.slots.drain(..drop);
        } else {
            self.slots.clear();
        }
        self.snap = snap;
        Ok(())
    }

    /// The first index whose entry recovery could not find, if any.
    pub fn first_missing(&self) -> Option<Index> {
        let i = self.slots.iter().position(|s| s.seg == MISSING)?;
        Some(self.first_index() + i as Index)
    }
}
