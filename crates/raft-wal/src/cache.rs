//! A bounded cache of the most recent entries: the ones a leader sends to
//! followers and applies right after writing them, so they need no disk read.
//! It always holds a contiguous run that ends at the last index.

use std::collections::VecDeque;

use raft_core::{Entry, Index};

#[derive(Debug)]
pub(crate) struct Cache {
    entries: VecDeque<Entry>,
    bytes: u64,
    budget: u64,
}

impl Cache {
    pub fn new(budget: u64) -> Self {
        Cache {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    fn first(&self) -> Option<Index> {
        self.entries.front().map(|e| e.index)
    }

    /// Drops cached entries at or after `index`.
    pub fn truncate_from(&mut self, index: Index) {
        while self.entries.back().is_some_and(|e| e.index >= index) {
            if let Some(e) = self.entries.pop_back() {
                self.bytes -= e.size();
            }
        }
    }

    /// Drops cached entries at or before `index`.
    pub fn drop_through(&mut self, index: Index) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.size();
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Adds entries just appended to the log (contiguous, the new tail).
    pub fn append(&mut self, new: &[Entry]) {
        let Some(first) = new.first() else {
            return;
        };
        self.truncate_from(first.index);
        if self
            .entries
            .back()
            .is_some_and(|e| e.index + 1 != first.index)
        {
            self.clear();
        }
        // Only the part that can fit is worth copying.
        let mut skip = new.len();
        let mut room = self.budget;
        while skip > 0 && new[skip - 1].size() <= room {
            room -= new[skip - 1].size();
            skip -= 1;
        }
        if skip > 0 {
            self.clear();
        }
        for e in &new[skip..] {
            self.bytes += e.size();
            self.entries.push_back(e.clone());
        }
        while self.bytes > self.budget {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.size();
            }
        }
    }

    /// The cached entry at `index`, if any.
    pub fn get(&self, index: Index) -> Option<&Entry> {
        let i = index.checked_sub(self.first()?)?;
        self.entries.get(usize::try_from(i).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(r: std::ops::Range<u64>, term: u64) -> Vec<Entry> {
        r.map(|i| Entry::normal(i, term, vec![0; 8])).collect()
    }

    #[test]
    fn stays_within_budget_and_contiguous() {
        let mut c = Cache::new(32 * 4);
        c.append(&ents(1..10, 1));
        assert!(c.get(5).is_none());
        assert_eq!(c.get(9).map(|e| e.index), Some(9));
        assert_eq!(c.get(6).map(|e| e.index), Some(6));
        c.append(&ents(8..9, 2));
        assert_eq!(c.get(8).map(|e| e.term), Some(2));
        assert!(c.get(9).is_none());
        c.append(&ents(20..21, 2)); // not contiguous: start over
        assert!(c.get(8).is_none());
        assert!(c.get(20).is_some());
        c.drop_through(20);
        assert!(c.get(20).is_none());
        assert_eq!(c.bytes, 0);
    }
}
