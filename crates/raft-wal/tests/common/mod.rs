//! Helpers shared by the integration tests.
#![allow(dead_code)]

use raft_core::{Entry, EntryKind, MemStorage, Snapshot, Storage};

/// Entries `range` of `term`, each with a payload of `len` bytes derived
/// from its index and term (so a misplaced entry is noticed).
pub fn ents(range: std::ops::Range<u64>, term: u64, len: usize) -> Vec<Entry> {
    range
        .map(|i| Entry {
            index: i,
            term,
            kind: if i.is_multiple_of(7) {
                EntryKind::Noop
            } else {
                EntryKind::Normal
            },
            data: payload(i, term, len).into(),
        })
        .collect()
}

pub fn payload(index: u64, term: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (index as usize * 31 + term as usize * 7 + k) as u8)
        .collect()
}

pub fn snap(index: u64, term: u64, len: usize) -> Snapshot {
    Snapshot::new(index, term, payload(index, term, len))
}

/// Describes how `s` differs from `model`, or `None` if it holds the same
/// hard state, snapshot and entries (read back in full and in small pieces).
pub fn diff(s: &impl Storage, model: &MemStorage) -> Option<String> {
    let mut out = Vec::new();
    macro_rules! cmp {
        ($what:expr, $a:expr, $b:expr) => {
            let (a, b) = ($a, $b);
            if a != b {
                out.push(format!("{}: got {:?}, want {:?}", $what, a, b));
            }
        };
    }
    cmp!("hard state", s.hard_state().ok(), model.hard_state().ok());
    cmp!("first index", s.first_index(), model.first_index());
    cmp!("last index", s.last_index(), model.last_index());
    cmp!("snapshot", s.snapshot().ok(), model.snapshot().ok());
    if !out.is_empty() {
        return Some(out.join("\n"));
    }
    let (first, last) = (model.first_index(), model.last_index());
    for i in first.saturating_sub(1)..=last {
        cmp!(format!("term({i})"), s.term(i).ok(), model.term(i).ok());
    }
    cmp!(
        "entries",
        s.entries(first, last + 1, u64::MAX)
            .map_err(|e| e.to_string()),
        model
            .entries(first, last + 1, u64::MAX)
            .map_err(|e| e.to_string())
    );
    // Byte-limited reads from every start.
    for lo in first..=last {
        cmp!(
            format!("entries({lo}.., 100 bytes)"),
            s.entries(lo, last + 1, 100).map_err(|e| e.to_string()),
            model.entries(lo, last + 1, 100).map_err(|e| e.to_string())
        );
    }
    (!out.is_empty()).then(|| out.join("\n"))
}
