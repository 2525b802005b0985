//! The Raft log as the core sees it: the stable part read through
//! [`Storage`], plus an unstable tail (and possibly a snapshot) that the
//! caller has not persisted yet.

use crate::error::StorageError;
use crate::storage::Storage;
use crate::types::{Entry, Index, Snapshot, Term};

/// Entries and a snapshot not yet handed to storage.
#[derive(Debug, Default)]
struct Unstable {
    /// A snapshot received from the leader, waiting to be persisted.
    snapshot: Option<Snapshot>,
    /// Entries at `offset..`; they shadow any stored entry at the same index.
    entries: Vec<Entry>,
    offset: Index,
}

/// The log: stable storage, unstable tail, and the commit and apply cursors.
#[derive(Debug)]
pub struct RaftLog<S> {
    storage: S,
    unstable: Unstable,
    /// Figure 2 `commitIndex`.
    committed: Index,
    /// Figure 2 `lastApplied`: everything up to here was handed out to apply.
    applied: Index,
}

impl<S: Storage> RaftLog<S> {
    /// Opens the log over `storage`, with everything up to the snapshot applied.
    pub fn new(storage: S, committed: Index) -> Self {
        let first = storage.first_index();
        let last = storage.last_index();
        RaftLog {
            unstable: Unstable {
                snapshot: None,
                entries: Vec::new(),
                offset: last + 1,
            },
            committed: committed.clamp(first - 1, last),
            applied: first - 1,
            storage,
        }
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    pub fn committed(&self) -> Index {
        self.committed
    }

    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Index and term of the latest snapshot (stored or pending).
    pub fn snapshot_index(&self) -> Index {
        self.first_index() - 1
    }

    /// First index still held as an entry.
    pub fn first_index(&self) -> Index {
        match &self.unstable.snapshot {
            Some(s) => s.meta.index + 1,
            None => self.storage.first_index(),
        }
    }

    /// Index of the last entry (or of the snapshot when the log is empty).
    pub fn last_index(&self) -> Index {
        if !self.unstable.entries.is_empty() {
            return self.unstable.offset + self.unstable.entries.len() as Index - 1;
        }
        match &self.unstable.snapshot {
            Some(s) => s.meta.index,
            None => self.storage.last_index(),
        }
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> Term {
        self.term(self.last_index()).unwrap_or(0)
    }

    /// Term of the entry at `index`; 0 for index 0.
    pub fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable(index));
        }
        if index >= self.unstable.offset && !self.unstable.entries.is_empty() {
            return Ok(self.unstable.entries[(index - self.unstable.offset) as usize].term);
        }
        if let Some(s) = &self.unstable.snapshot {
            return if index == s.meta.index {
                Ok(s.meta.term)
            } else {
                Err(StorageError::Compacted(index))
            };
        }
        self.storage.term(index)
    }

    /// Term at `index` if the log holds it (or its snapshot ends there).
    pub fn term_of(&self, index: Index) -> Option<Term> {
        self.term(index).ok()
    }

    /// Whether the entry at `index` has `term` (the consistency check).
    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term_of(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours if its last
    /// term is greater, or equal with a last index at least as large.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Entries in `[lo, hi)`, at most `max_bytes` (at least one entry).
    pub fn entries(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let hi = hi.min(self.last_index() + 1);
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index() {
            return Err(StorageError::Compacted(lo));
        }
        let split = self.unstable.offset;
        let mut out = Vec::new();
        if lo < split {
            out = self.storage.entries(lo, hi.min(split), max_bytes)?;
            if (out.len() as u64) < hi.min(split) - lo {
                return Ok(out); // the byte limit stopped it
            }
        }
        let mut size: u64 = out.iter().map(Entry::size).sum();
        if hi > split {
            let from = (lo.max(split) - split) as usize;
            let tail = &self.unstable.entries[from..(hi - split) as usize];
            // Count what fits first, then clone it in one go (one allocation).
            let mut n = 0;
            for e in tail {
                if (!out.is_empty() || n > 0) && size + e.size() > max_bytes {
                    break;
                }
                size += e.size();
                n += 1;
            }
            out.extend_from_slice(&tail[..n]);
        }
        Ok(out)
    }

    /// Appends entries after `entries[0].index - 1`, dropping any entries at or
    /// after it (callers only do so on a real conflict). Returns the last index.
    pub fn append(&mut self, entries: &[Entry]) -> Index {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        let at = first.index;
        let u = &mut self.unstable;
        if at == u.offset + u.entries.len() as Index {
            u.entries.extend_from_slice(entries);
        } else if at <= u.offset {
            // Replaces stored entries from `at` on; storage truncates on persist.
            u.offset = at;
            u.entries = entries.to_vec();
        } else {
            u.entries.truncate((at - u.offset) as usize);
            u.entries.extend_from_slice(entries);
        }
        self.last_index()
    }

    /// [`append`](RaftLog::append), taking the entries by value: they are
    /// moved into the log, not cloned (a proposal's or an AppendEntries'
    /// entries have no other owner).
    pub fn append_owned(&mut self, mut entries: Vec<Entry>) -> Index {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        let at = first.index;
        let u = &mut self.unstable;
        if at <= u.offset {
            u.offset = at;
            u.entries.clear();
        } else {
            u.entries.truncate((at - u.offset) as usize);
        }
        u.entries.append(&mut entries);
        self.last_index()
    }

    /// Appends one entry, moved in (a leader's own proposal).
    pub fn append_one(&mut self, entry: Entry) -> Index {
        let u = &mut self.unstable;
        if entry.index == u.offset + u.entries.len() as Index {
            u.entries.push(entry);
            return self.last_index();
        }
        self.append_owned(vec![entry])
    }

    /// The last index known to be in storage: entries after it wait in the
    /// unstable tail.
    pub fn persisted_index(&self) -> Index {
        if self.unstable.entries.is_empty() {
            self.last_index()
        } else {
            self.unstable.offset - 1
        }
    }

    /// The entries not yet persisted.
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    /// The snapshot not yet persisted.
    pub fn unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.snapshot.as_ref()
    }

    /// Marks entries through `(index, term)` as persisted.
    pub fn stable_to(&mut self, index: Index, term: Term) {
        let u = &mut self.unstable;
        if index < u.offset || index >= u.offset + u.entries.len() as Index {
            return;
        }
        if u.entries[(index - u.offset) as usize].term != term {
            return;
        }
        u.entries.drain(..=(index - u.offset) as usize);
        u.offset = index + 1;
    }

    /// Marks the pending snapshot at `index` as persisted.
    pub fn stable_snapshot_to(&mut self, index: Index) {
        if self.unstable.snapshot.as_ref().map(|s| s.meta.index) == Some(index) {
            self.unstable.snapshot = None;
        }
    }

    /// Raises the commit index (never lowers it).
    pub fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            debug_assert!(index <= self.last_index());
            self.committed = index.min(self.last_index());
        }
    }

    /// Records that everything through `index` was handed out to apply.
    pub fn applied_to(&mut self, index: Index) {
        if index > self.applied && index <= self.committed {
            self.applied = index;
        }
    }

    /// Committed entries not yet handed out, at most `max_bytes` worth.
    pub fn next_committed(&self, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let lo = self.applied.max(self.first_index() - 1) + 1;
        self.entries(lo, self.committed + 1, max_bytes)
    }

    /// Whether committed entries wait to be handed out.
    pub fn has_next_committed(&self) -> bool {
        self.committed > self.applied.max(self.first_index() - 1)
    }

    /// Replaces the log with a snapshot from the leader (§7), keeping a suffix
    /// that follows and matches it. The snapshot waits to be persisted.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let meta = snapshot.meta;
        if self.matches(meta.index, meta.term) && meta.index < self.last_index() {
            let tail = self
                .entries(meta.index + 1, self.last_index() + 1, u64::MAX)
                .unwrap_or_default();
            self.unstable.entries = tail;
        } else {
            self.unstable.entries.clear();
        }
        self.unstable.offset = meta.index + 1;
        self.unstable.snapshot = Some(snapshot);
        self.committed = self.committed.max(meta.index);
        self.applied = self.applied.max(meta.index);
    }

    /// The first index of the term held at `index`, not going below `floor + 1`
    /// (used for the conflict hint: §5.3's optimisation).
    pub fn first_index_of_term(&self, index: Index, floor: Index) -> Index {
        let Some(term) = self.term_of(index) else {
            return floor + 1;
        };
        let mut i = index;
        while i > floor + 1 && self.term_of(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// The last index at or below `index` whose term is `term`, if the log
    /// holds one (stops at the first smaller term).
    pub fn last_index_of_term(&self, term: Term, index: Index) -> Option<Index> {
        let mut i = index.min(self.last_index());
        loop {
            let t = self.term_of(i)?;
            if t == term {
                return Some(i);
            }
            if t < term || i == 0 {
                return None;
            }
            i -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn ents(range: std::ops::RangeInclusive<u64>, term: Term) -> Vec<Entry> {
        range.map(|i| Entry::normal(i, term, vec![0; 8])).collect()
    }

    #[test]
    fn unstable_tail_shadows_storage() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=5, 1)).unwrap();
        let mut log = RaftLog::new(s, 0);
        assert_eq!(log.last_index(), 5);
        log.append(&ents(3..=6, 2));
        assert_eq!(log.last_index(), 6);
        assert_eq!(log.term(2).unwrap(), 1);
        assert_eq!(log.term(3).unwrap(), 2);
        let all = log.entries(1, 7, u64::MAX).unwrap();
        assert_eq!(
            all.iter().map(|e| e.term).collect::<Vec<_>>(),
            [1, 1, 2, 2, 2, 2]
        );
        log.stable_to(6, 2);
        assert!(log.unstable_entries().is_empty());
    }

    #[test]
    fn up_to_date_compares_term_then_index() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=3, 2)).unwrap();
        let log = RaftLog::new(s, 0);
        assert!(log.is_up_to_date(1, 3));
        assert!(log.is_up_to_date(3, 2));
        assert!(!log.is_up_to_date(2, 2));
        assert!(!log.is_up_to_date(9, 1));
    }

    #[test]
    fn term_boundaries() {
        let mut s = MemStorage::new();
        s.append(&ents(1..=2, 1)).unwrap();
        s.append(&ents(3..=5, 3)).unwrap();
        let log = RaftLog::new(s, 0);
        assert_eq!(log.first_index_of_term(5, 0), 3);
        assert_eq!(log.first_index_of_term(5, 4), 5);
        assert_eq!(log.last_index_of_term(1, 5), Some(2));
        assert_eq!(log.last_index_of_term(2, 5), None);
        assert_eq!(log.last_index_of_term(3, 9), Some(5));
        // An index the log does not hold: the first index above the floor.
        assert_eq!(log.first_index_of_term(9, 0), 1);
        assert_eq!(log.first_index_of_term(9, 2), 3);
    }
    /// A log of `stored` entries in storage (term 1) and `tail` more in the
    /// unstable tail (term 2), each entry 32 bytes.
    fn split_log(stored: u64, tail: u64) -> RaftLog<MemStorage> {
        let mut s = MemStorage::new();
        s.append(&ents(1..=stored, 1)).unwrap();
        let mut log = RaftLog::new(s, 0);
        log.append(&ents(stored + 1..=stored + tail, 2));
        log
    }

    fn indexes(entries: &[Entry]) -> Vec<Index> {
        entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn a_pending_snapshot_answers_for_its_own_index_only() {
        let mut log = split_log(3, 0);
        log.restore(Snapshot::new(10, 4, vec![1, 2, 3]));
        assert_eq!(log.term(10).ok(), Some(4));
        assert!(matches!(log.term(9), Err(StorageError::Compacted(9))));
        assert!(matches!(log.term(11), Err(StorageError::Unavailable(11))));
        assert_eq!((log.first_index(), log.last_index()), (11, 10));
    }

    #[test]
    fn the_byte_limit_stops_in_storage_before_the_tail() {
        // Entries are 32 bytes: 70 bytes hold two from storage, and the
        // unstable tail must not be appended after the cut.
        let log = split_log(4, 2);
        assert_eq!(indexes(&log.entries(1, 7, 70).unwrap()), [1, 2]);
        // A limit that takes all of storage goes on into the tail.
        assert_eq!(indexes(&log.entries(2, 7, 32 * 4).unwrap()), [2, 3, 4, 5]);
        assert_eq!(
            indexes(&log.entries(1, 7, u64::MAX).unwrap()),
            [1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn the_byte_limit_counts_within_the_tail() {
        let log = split_log(0, 5);
        // Always at least one entry, even past the limit.
        assert_eq!(indexes(&log.entries(1, 6, 1).unwrap()), [1]);
        assert_eq!(indexes(&log.entries(1, 6, 32).unwrap()), [1]);
        assert_eq!(indexes(&log.entries(1, 6, 63).unwrap()), [1]);
        assert_eq!(indexes(&log.entries(1, 6, 64).unwrap()), [1, 2]);
        assert_eq!(indexes(&log.entries(2, 6, 100).unwrap()), [2, 3, 4]);
        assert_eq!(
            indexes(&log.entries(1, 6, 32 * 5).unwrap()),
            [1, 2, 3, 4, 5]
        );
        // Storage's bytes count against the same limit as the tail's.
        let log = split_log(2, 3);
        assert_eq!(indexes(&log.entries(1, 6, 32 * 3).unwrap()), [1, 2, 3]);
        assert_eq!(indexes(&log.entries(2, 6, 32 * 3 + 31).unwrap()), [2, 3, 4]);
    }

    #[test]
    fn a_conflict_inside_the_unstable_tail_truncates_it() {
        let mut log = split_log(2, 6); // 1..=2 stored, 3..=8 unstable
        assert_eq!(log.append(&ents(5..=6, 3)), 6);
        let terms: Vec<Term> = log
            .entries(1, 9, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.term)
            .collect();
        assert_eq!(terms, [1, 1, 2, 2, 3, 3]);

        let mut log = split_log(2, 6);
        assert_eq!(log.append_owned(ents(5..=6, 3)), 6);
        let terms: Vec<Term> = log
            .entries(1, 9, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.term)
            .collect();
        assert_eq!(terms, [1, 1, 2, 2, 3, 3]);
        assert_eq!(indexes(log.unstable_entries()), [3, 4, 5, 6]);
    }

    #[test]
    fn a_byte_limit_hit_in_storage_never_skips_to_the_tail() {
        // Entry 3 (stored) is large, entry 4 (unstable) small: a cut before
        // 3 must not let 4 in after 2, which would leave a gap.
        let mut s = MemStorage::new();
        s.append(&ents(1..=2, 1)).unwrap();
        s.append(&[Entry::normal(3, 1, vec![0; 200])]).unwrap();
        let mut log = RaftLog::new(s, 0);
        log.append(&ents(4..=5, 2));
        assert_eq!(indexes(&log.entries(1, 6, 100).unwrap()), [1, 2]);
    }

    #[test]
    fn persisting_outside_the_tail_changes_nothing() {
        let mut log = split_log(2, 3); // 1..=2 stored, 3..=5 unstable
        log.stable_to(2, 1); // already stored
        log.stable_to(9, 2); // past the tail
        log.stable_to(4, 1); // the tail holds term 2 there
        assert_eq!(indexes(log.unstable_entries()), [3, 4, 5]);
        log.stable_to(4, 2);
        assert_eq!(indexes(log.unstable_entries()), [5]);
        assert_eq!(log.persisted_index(), 4);
    }
    #[test]
    fn the_apply_cursor_never_moves_back_nor_past_the_commit() {
        let mut log = split_log(5, 0);
        log.commit_to(3);
        log.applied_to(2);
        log.applied_to(4); // not committed yet
        assert_eq!(log.applied(), 2);
        log.applied_to(3);
        log.applied_to(1); // behind
        assert_eq!(log.applied(), 3);
        assert!(!log.has_next_committed());
        log.commit_to(5);
        assert!(log.has_next_committed());
        assert_eq!(indexes(&log.next_committed(u64::MAX).unwrap()), [4, 5]);
    }

    #[test]
    fn committed_entries_after_a_snapshot_wait_to_be_applied() {
        let mut log = split_log(0, 0);
        log.restore(Snapshot::new(10, 2, Vec::new()));
        assert!(!log.has_next_committed());
        log.append(&ents(11..=12, 2));
        log.commit_to(11);
        assert!(log.has_next_committed());
        assert_eq!(indexes(&log.next_committed(u64::MAX).unwrap()), [11]);
    }

    #[test]
    fn a_snapshot_that_conflicts_with_the_log_drops_the_whole_tail() {
        let mut log = split_log(5, 0); // term 1 throughout
        log.restore(Snapshot::new(3, 2, Vec::new()));
        assert_eq!(log.last_index(), 3);
        assert!(log.unstable_entries().is_empty());
        // One that matches keeps what follows it.
        let mut log = split_log(5, 0);
        log.restore(Snapshot::new(3, 1, Vec::new()));
        assert_eq!(log.last_index(), 5);
        assert_eq!(indexes(log.unstable_entries()), [4, 5]);
    }
}
