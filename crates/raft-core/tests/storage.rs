//! `MemStorage` against the promises of the `Storage` trait: terms and
//! entries by absolute index, the byte limit, appends, snapshots, the hard
//! state, the trait's default methods, and the order in which `persist` and
//! `persist_owned` write a Ready.

use raft_core::{
    persist, persist_owned, Entry, HardState, Index, MemStorage, Ready, Snapshot, Storage,
    StorageError, Term,
};

fn ents(range: std::ops::RangeInclusive<u64>, term: Term) -> Vec<Entry> {
    range
        .map(|i| Entry::normal(i, term, vec![i as u8]))
        .collect()
}

/// Entries in `range` whose term is their index, so that reading the
/// wrong position shows in the term.
fn own_terms(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| Entry::normal(i, i, vec![i as u8])).collect()
}

/// A snapshot at 3 (term 3) followed by entries 4..=7, term = index.
fn compacted() -> MemStorage {
    let mut s = MemStorage::new();
    s.apply_snapshot(&Snapshot::new(3, 3, vec![3])).unwrap();
    s.append(&own_terms(4..=7)).unwrap();
    s
}

/// Everything `s` holds after its snapshot, with its bounds.
fn held(s: &MemStorage) -> (Index, Index, Vec<Entry>) {
    let (first, last) = (s.first_index(), s.last_index());
    (first, last, s.entries(first, last + 1, u64::MAX).unwrap())
}

#[test]
fn a_fresh_store_is_empty_at_index_zero() {
    let s = MemStorage::new();
    assert_eq!((s.first_index(), s.last_index()), (1, 0));
    assert_eq!(s.term(0).unwrap(), 0);
    assert!(matches!(s.term(1), Err(StorageError::Unavailable(1))));
    assert_eq!(s.hard_state().unwrap(), HardState::default());
    assert_eq!(s.snapshot().unwrap(), Snapshot::default());
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    assert_eq!(s.entries(1, 1, u64::MAX).unwrap(), vec![]);
}

#[test]
fn the_hard_state_is_what_was_set_last() {
    let mut s = MemStorage::new();
    let hs = |term, vote, commit| HardState { term, vote, commit };
    s.set_hard_state(&hs(2, Some(3), 0)).unwrap();
    s.set_hard_state(&hs(4, None, 1)).unwrap();
    assert_eq!(s.hard_state().unwrap(), hs(4, None, 1));
}

#[test]
fn terms_are_known_from_the_snapshot_to_the_last_entry() {
    let s = compacted();
    assert_eq!((s.first_index(), s.last_index()), (4, 7));
    for i in 3..=7 {
        assert_eq!(s.term(i).unwrap(), i, "term at {i}");
    }
    assert!(matches!(s.term(2), Err(StorageError::Compacted(2))));
    assert!(matches!(s.term(8), Err(StorageError::Unavailable(8))));
}

#[test]
fn entries_are_read_by_absolute_index_after_a_snapshot() {
    let s = compacted();
    assert_eq!(s.entries(5, 7, u64::MAX).unwrap(), own_terms(5..=6));
    assert_eq!(s.entries(4, 8, u64::MAX).unwrap(), own_terms(4..=7));
    assert_eq!(s.entries(7, 8, u64::MAX).unwrap(), own_terms(7..=7));
    // Empty ranges at either end of the held entries.
    assert_eq!(s.entries(4, 4, u64::MAX).unwrap(), vec![]);
    assert_eq!(s.entries(8, 8, u64::MAX).unwrap(), vec![]);
    assert!(matches!(
        s.entries(3, 5, u64::MAX),
        Err(StorageError::Compacted(3))
    ));
    assert!(matches!(
        s.entries(5, 9, u64::MAX),
        Err(StorageError::Unavailable(8))
    ));
    // A reversed range is empty; past the log it is an error, not a panic.
    assert_eq!(s.entries(6, 5, u64::MAX).unwrap(), vec![]);
    assert!(matches!(
        s.entries(10, 3, u64::MAX),
        Err(StorageError::Unavailable(9))
    ));
}

#[test]
fn a_byte_limit_is_exceeded_only_by_the_first_entry() {
    let mut s = MemStorage::new();
    s.append(&ents(1..=5, 1)).unwrap(); // 25 bytes each
    for (max, n) in [
        (0, 1),
        (25, 1),
        (49, 1),
        (50, 2),
        (74, 2),
        (75, 3),
        (125, 5),
    ] {
        assert_eq!(s.entries(1, 6, max).unwrap(), ents(1..=n, 1), "max {max}");
    }
}

#[test]
fn appends_start_at_most_one_past_the_last_entry() {
    let mut s = compacted();
    assert!(matches!(
        s.append(&own_terms(9..=9)),
        Err(StorageError::Unavailable(9))
    ));
    s.append(&own_terms(8..=9)).unwrap();
    assert_eq!(held(&s), (4, 9, own_terms(4..=9)));
    // Right after the snapshot: every held entry is replaced.
    s.append(&ents(4..=4, 9)).unwrap();
    assert_eq!(held(&s), (4, 4, ents(4..=4, 9)));
    assert_eq!(s.term(3).unwrap(), 3);
}

#[test]
fn entries_the_snapshot_covers_are_skipped() {
    let mut s = compacted();
    // Wholly covered: nothing changes.
    s.append(&ents(1..=3, 3)).unwrap();
    assert_eq!(held(&s), (4, 7, own_terms(4..=7)));
    // Partly covered: the rest replaces the held entries from 4 on.
    s.append(&ents(2..=5, 9)).unwrap();
    assert_eq!(held(&s), (4, 5, ents(4..=5, 9)));
    assert_eq!(s.term(3).unwrap(), 3);
}

/// Runs `append` on one copy of `s` and `append_owned` on another.
fn append_both_ways(s: &MemStorage, entries: Vec<Entry>) -> [Result<MemStorage, String>; 2] {
    let (mut lent, mut owned) = (s.clone(), s.clone());
    let a = lent.append(&entries).map(|()| lent);
    let b = owned.append_owned(entries).map(|()| owned);
    [a, b].map(|r| r.map_err(|e| e.to_string()))
}

#[test]
fn append_owned_stores_what_append_stores() {
    let cases = [
        own_terms(8..=9),
        ents(6..=8, 9),
        ents(4..=4, 9),
        ents(2..=5, 9),
        ents(1..=3, 3),
        vec![],
        own_terms(9..=9),
    ];
    for entries in cases {
        let what = format!("{entries:?}");
        let [lent, owned] = append_both_ways(&compacted(), entries);
        match (lent, owned) {
            (Ok(a), Ok(b)) => assert_eq!(held(&a), held(&b), "{what}"),
            (Err(a), Err(b)) => assert_eq!(a, b, "{what}"),
            (a, b) => panic!("{what}: append {a:?}, append_owned {b:?}"),
        }
    }
}

#[test]
fn a_snapshot_keeps_the_entries_after_it_only_if_its_term_matches() {
    // §7: "if existing log entry has same index and term as snapshot's last
    // included entry, retain log entries following it"; else discard the log.
    // At a held entry with its term: the entries after it stay.
    let mut s = compacted();
    s.apply_snapshot(&Snapshot::new(5, 5, vec![5])).unwrap();
    assert_eq!(held(&s), (6, 7, own_terms(6..=7)));
    assert_eq!((s.len(), s.is_empty()), (2, false));
    // At the stored snapshot's own index and term: nothing changes.
    s.apply_snapshot(&Snapshot::new(5, 5, vec![5])).unwrap();
    assert_eq!(held(&s), (6, 7, own_terms(6..=7)));
    // At a held entry with another term: the whole log goes.
    s.apply_snapshot(&Snapshot::new(6, 1, vec![6])).unwrap();
    assert_eq!((s.first_index(), s.last_index()), (7, 6));
    assert_eq!((s.len(), s.is_empty()), (0, true));
    assert_eq!(s.term(6).unwrap(), 1);
    // Past the last entry: the log starts after it.
    let mut s = compacted();
    s.apply_snapshot(&Snapshot::new(10, 8, vec![10])).unwrap();
    assert_eq!((s.first_index(), s.last_index()), (11, 10));
    assert_eq!(s.term(10).unwrap(), 8);
}

#[test]
fn only_a_snapshot_older_than_the_stored_one_is_refused() {
    let mut s = compacted();
    let err = s.apply_snapshot(&Snapshot::new(2, 2, vec![])).unwrap_err();
    assert!(matches!(
        err,
        StorageError::SnapshotOutOfDate {
            offered: 2,
            stored: 3
        }
    ));
    assert_eq!(held(&s), (4, 7, own_terms(4..=7)));
    // The same index is not older: a newer image of it replaces the old.
    let mut again = Snapshot::new(3, 3, vec![33]);
    again.conf.voters = vec![1, 2];
    s.apply_snapshot(&again).unwrap();
    assert_eq!(s.snapshot().unwrap(), again);
    assert_eq!(held(&s), (4, 7, own_terms(4..=7)));
}

#[test]
fn the_stored_snapshot_is_given_back_whole() {
    let mut s = compacted();
    let mut snap = Snapshot::new(5, 5, vec![1, 2, 3]);
    snap.conf.voters = vec![1, 2, 3];
    snap.conf.learners = vec![4];
    s.apply_snapshot(&snap).unwrap();
    assert_eq!(s.snapshot().unwrap(), snap);
    assert_eq!(s.snapshot_meta(), snap.meta);
    assert_eq!(s.snapshot_conf().unwrap(), snap.conf);
}

#[test]
fn the_raft_state_size_counts_the_hard_state_and_the_held_entries() {
    let mut s = MemStorage::new();
    assert_eq!(s.raft_state_size(), 24);
    s.append(&ents(1..=3, 1)).unwrap();
    assert_eq!(s.raft_state_size(), 24 + 3 * 25);
    s.append(&[Entry::normal(4, 1, vec![0; 100])]).unwrap();
    assert_eq!(s.raft_state_size(), 24 + 3 * 25 + 124);
    s.apply_snapshot(&Snapshot::new(2, 1, vec![])).unwrap();
    assert_eq!(s.raft_state_size(), 24 + 25 + 124);
}

/// A store implementing only what the trait requires (so its default
/// `snapshot_conf` and `append_owned` run), recording each write.
#[derive(Default)]
struct Plain(MemStorage, Vec<&'static str>);

impl Storage for Plain {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        self.0.hard_state()
    }
    fn first_index(&self) -> Index {
        self.0.first_index()
    }
    fn last_index(&self) -> Index {
        self.0.last_index()
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.0.term(index)
    }
    fn entries(&self, lo: Index, hi: Index, max: u64) -> Result<Vec<Entry>, StorageError> {
        self.0.entries(lo, hi, max)
    }
    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.0.snapshot()
    }
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.1.push("append");
        self.0.append(entries)
    }
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.1.push("hard state");
        self.0.set_hard_state(hs)
    }
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.1.push("snapshot");
        self.0.apply_snapshot(snapshot)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.1.push("sync");
        self.0.sync()
    }
}

#[test]
fn the_default_methods_read_the_snapshot_and_append_the_entries() {
    let mut s = Plain::default();
    let mut snap = Snapshot::new(3, 2, vec![7]);
    snap.conf.voters = vec![1, 2, 3];
    s.apply_snapshot(&snap).unwrap();
    assert_eq!(s.snapshot_conf().unwrap(), snap.conf);
    s.append_owned(ents(4..=6, 2)).unwrap();
    assert_eq!(s.0.entries(4, 7, u64::MAX).unwrap(), ents(4..=6, 2));
}

/// A Ready with a leader's snapshot at 2, entries 3..=4 and a hard state.
fn a_ready() -> Ready {
    let mut rd = Ready::default();
    rd.snapshot = Some(Snapshot::new(2, 1, vec![2]));
    rd.entries = ents(3..=4, 2);
    rd.hard_state = Some(HardState {
        term: 2,
        vote: Some(1),
        commit: 2,
    });
    rd
}

#[test]
fn persist_writes_snapshot_entries_hard_state_then_syncs() {
    let mut s = Plain::default();
    s.0.append(&ents(1..=4, 1)).unwrap();
    persist(&mut s, &a_ready()).unwrap();
    assert_eq!(s.1, ["snapshot", "append", "hard state", "sync"]);
    assert_eq!(held(&s.0), (3, 4, ents(3..=4, 2)));
    assert_eq!(s.0.hard_state().unwrap(), a_ready().hard_state.unwrap());

    let mut owned = Plain::default();
    owned.0.append(&ents(1..=4, 1)).unwrap();
    let mut rd = a_ready();
    persist_owned(&mut owned, &mut rd).unwrap();
    assert_eq!(owned.1, s.1);
    assert_eq!(held(&owned.0), held(&s.0));
    assert_eq!(owned.0.hard_state().unwrap(), s.0.hard_state().unwrap());
    assert_eq!(owned.0.snapshot().unwrap(), s.0.snapshot().unwrap());
    assert!(rd.entries.is_empty());
}

#[test]
fn a_ready_that_only_moves_the_commit_index_is_not_synced() {
    let commit_only = || {
        let mut rd = Ready::default();
        rd.hard_state = Some(HardState {
            term: 0,
            vote: None,
            commit: 1,
        });
        rd
    };
    let mut s = Plain::default();
    persist(&mut s, &commit_only()).unwrap();
    persist_owned(&mut s, &mut commit_only()).unwrap();
    assert_eq!(s.1, ["hard state", "hard state"]);
    assert_eq!(s.0.hard_state().unwrap().commit, 1);
}
