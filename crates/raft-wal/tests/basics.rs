//! Segment rolling, compaction by whole segments, reads across segments,
//! and restarts, on the real file system.

mod common;

use std::path::Path;

use common::{diff, ents, snap};
use raft_core::{HardState, MemStorage, Storage, StorageError};
use raft_wal::{SimFs, SyncMode, Wal, WalError, WalOptions};

fn opts(segment_bytes: u64, cache_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        sync: SyncMode::Always,
        cache_bytes,
    }
}

fn wal_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

/// Appends `1..=n` in batches of `batch`, each synced, to both.
fn fill(wal: &mut Wal, model: &mut MemStorage, n: u64, batch: u64, len: usize) {
    let mut i = wal.last_index() + 1;
    while i <= n {
        let es = ents(i..(i + batch).min(n + 1), 1, len);
        wal.append(&es).unwrap();
        model.append(&es).unwrap();
        wal.sync().unwrap();
        i += batch;
    }
}

#[test]
fn segments_roll_at_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(1024, 0)).unwrap();
    let mut model = MemStorage::new();
    fill(&mut wal, &mut model, 100, 4, 100);
    let paths = wal.segment_paths();
    assert!(
        paths.len() >= 10,
        "expected many segments, got {}",
        paths.len()
    );
    assert_eq!(wal_files(dir.path()).len(), paths.len());
    // Every sealed segment reached the limit, overshooting by less than a batch.
    for p in &paths[..paths.len() - 1] {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(
            (1024..1024 + 4 * 140).contains(&len),
            "{} is {len} bytes",
            p.display()
        );
    }
    assert_eq!(diff(&wal, &model), None);
}

#[test]
fn compaction_removes_whole_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(1024, 0)).unwrap();
    let mut model = MemStorage::new();
    fill(&mut wal, &mut model, 100, 4, 100);
    let before = wal.segment_paths();

    let s = snap(50, 1, 300);
    wal.apply_snapshot(&s).unwrap();
    model.apply_snapshot(&s).unwrap();
    wal.sync().unwrap();
    let after = wal.segment_paths();
    assert!(after.len() < before.len(), "no segment was removed");
    assert_eq!(after.last(), before.last());
    // The segments left are a suffix of the old ones (whole files removed,
    // none rewritten), and entry 51 on is still read from them (cache off).
    assert_eq!(&before[before.len() - after.len()..], &after[..]);
    assert_eq!(wal_files(dir.path()).len(), after.len());
    assert_eq!(diff(&wal, &model), None);
    drop(wal);

    let wal = Wal::open(dir.path(), opts(1024, 0)).unwrap();
    assert_eq!(wal.segment_paths(), after);
    assert_eq!(diff(&wal, &model), None);
    assert!(matches!(
        wal.entries(50, 52, u64::MAX),
        Err(StorageError::Compacted(50))
    ));
}

#[test]
fn snapshot_past_the_log_drops_everything_and_old_snapshots_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(512, 0)).unwrap();
    let mut model = MemStorage::new();
    fill(&mut wal, &mut model, 30, 3, 50);
    for s in [snap(10, 1, 40), snap(40, 5, 80)] {
        wal.apply_snapshot(&s).unwrap();
        model.apply_snapshot(&s).unwrap();
        wal.sync().unwrap();
    }
    assert_eq!((wal.first_index(), wal.last_index()), (41, 40));
    let snaps: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("snap-"))
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(wal.segment_paths().len(), 1);
    drop(wal);
    let wal = Wal::open(dir.path(), opts(512, 0)).unwrap();
    assert_eq!(diff(&wal, &model), None);
}

#[test]
fn reads_span_segments_from_disk_and_cache() {
    for cache in [0, 2_000, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), opts(700, cache)).unwrap();
        let mut model = MemStorage::new();
        fill(&mut wal, &mut model, 120, 5, 64);
        assert!(wal.segment_paths().len() > 5);
        for (lo, hi) in [(1, 121), (3, 77), (60, 61), (100, 121), (1, 2)] {
            assert_eq!(
                wal.entries(lo, hi, u64::MAX).unwrap(),
                model.entries(lo, hi, u64::MAX).unwrap()
            );
            for max in [0, 88, 500, 3000] {
                assert_eq!(
                    wal.entries(lo, hi, max).unwrap(),
                    model.entries(lo, hi, max).unwrap()
                );
            }
        }
        assert!(matches!(
            wal.entries(1, 122, u64::MAX),
            Err(StorageError::Unavailable(121))
        ));
        assert!(wal.entries(5, 5, u64::MAX).unwrap().is_empty());
        // Unsynced entries are readable too, also when not cached.
        let es = ents(121..131, 2, 64);
        wal.append(&es).unwrap();
        model.append(&es).unwrap();
        assert_eq!(diff(&wal, &model), None);
    }
}

#[test]
fn restart_preserves_everything_including_truncations() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(900, 500);
    let mut wal = Wal::open(dir.path(), o).unwrap();
    let mut model = MemStorage::new();
    fill(&mut wal, &mut model, 60, 4, 30);
    // A conflicting suffix spanning segments is replaced.
    let es = ents(25..31, 3, 12);
    wal.append(&es).unwrap();
    model.append(&es).unwrap();
    let hs = HardState {
        term: 3,
        vote: Some(2),
        commit: 24,
    };
    wal.set_hard_state(&hs).unwrap();
    model.set_hard_state(&hs).unwrap();
    wal.sync().unwrap();
    let s = snap(12, 1, 100);
    wal.apply_snapshot(&s).unwrap();
    model.apply_snapshot(&s).unwrap();
    wal.sync().unwrap();
    assert_eq!(diff(&wal, &model), None);
    drop(wal);
    for _ in 0..2 {
        let wal = Wal::open(dir.path(), o).unwrap();
        assert_eq!(diff(&wal, &model), None);
        assert_eq!(wal.recovery().torn_tail, None);
        assert!(wal.recovery().removed.is_empty(), "{:?}", wal.recovery());
    }
}

#[test]
fn unsynced_writes_are_dropped_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(1 << 20, 0)).unwrap();
    let mut model = MemStorage::new();
    fill(&mut wal, &mut model, 10, 5, 8);
    wal.append(&ents(11..20, 1, 8)).unwrap();
    wal.set_hard_state(&HardState {
        term: 9,
        vote: None,
        commit: 0,
    })
    .unwrap();
    wal.apply_snapshot(&snap(15, 1, 10)).unwrap();
    drop(wal); // no sync
    let wal = Wal::open(dir.path(), opts(1 << 20, 0)).unwrap();
    assert_eq!(diff(&wal, &model), None);
    // The unreferenced snapshot file was cleaned up.
    assert_eq!(wal.recovery().removed.len(), 1);
}

#[test]
fn sync_never_still_reaches_the_os() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        sync: SyncMode::Never,
        ..opts(600, 0)
    };
    let mut wal = Wal::open(dir.path(), o).unwrap();
    let mut model = MemStorage::new();
    fill(&mut wal, &mut model, 40, 3, 20);
    let s = snap(20, 1, 5);
    wal.apply_snapshot(&s).unwrap();
    model.apply_snapshot(&s).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), o).unwrap();
    assert_eq!(diff(&wal, &model), None);
}

#[test]
fn a_failed_fsync_poisons_the_wal() {
    let fs = SimFs::new();
    let mut wal = Wal::open_with(fs.clone(), "/w", opts(1 << 20, 0)).unwrap();
    wal.append(&ents(1..3, 1, 4)).unwrap();
    fs.fail_after(1); // the write succeeds, the fsync fails
    assert!(wal.sync().is_err());
    let poisoned = |r: Result<(), StorageError>| match r {
        Err(StorageError::Backend(e)) => {
            matches!(e.downcast_ref::<WalError>(), Some(WalError::Poisoned))
        }
        _ => false,
    };
    assert!(poisoned(wal.append(&ents(3..4, 1, 4))));
    assert!(poisoned(wal.sync()));
    // Reads of what is in memory still answer.
    assert_eq!(wal.last_index(), 2);
}

#[test]
fn contract_violations_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(1 << 20, 0)).unwrap();
    assert!(matches!(
        wal.append(&ents(2..3, 1, 1)),
        Err(StorageError::Unavailable(2))
    ));
    let mut gap = ents(1..3, 1, 1);
    gap[1].index = 5;
    assert!(matches!(wal.append(&gap), Err(StorageError::Backend(_))));
    wal.append(&ents(1..6, 1, 1)).unwrap();
    wal.apply_snapshot(&snap(3, 1, 1)).unwrap();
    assert!(matches!(
        wal.apply_snapshot(&snap(2, 1, 1)),
        Err(StorageError::SnapshotOutOfDate {
            offered: 2,
            stored: 3
        })
    ));
    assert!(matches!(wal.term(1), Err(StorageError::Compacted(1))));
    assert_eq!(wal.term(3).unwrap(), 1);
    assert!(matches!(wal.term(6), Err(StorageError::Unavailable(6))));
}

/// A snapshot keeps the configuration in force at its index (§7), across a
/// restart, and says it without reading the snapshot's data.
#[test]
fn the_snapshot_configuration_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let conf = raft_core::ConfState {
        voters: vec![1, 2, 4],
        learners: vec![5],
        voters_outgoing: vec![],
    };
    {
        let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.append(&ents(1..6, 1, 8)).unwrap();
        let mut s = snap(4, 1, 100);
        s.conf = conf.clone();
        wal.apply_snapshot(&s).unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.snapshot_conf().unwrap(), conf);
    }
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.snapshot_conf().unwrap(), conf);
    let s = wal.snapshot().unwrap();
    assert_eq!((s.meta.index, s.conf), (4, conf));
    assert_eq!(s.data, snap(4, 1, 100).data);
}
