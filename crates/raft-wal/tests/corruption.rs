//! Damage on disk: a flipped byte inside acknowledged data is reported with
//! its file and offset, a torn tail is cut off, a held directory is refused.

mod common;

use std::path::{Path, PathBuf};

use common::{diff, ents, snap};
use raft_core::{HardState, MemStorage, Storage};
use raft_wal::{SimFs, SyncMode, Wal, WalError, WalOptions};

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        sync: SyncMode::Always,
        cache_bytes: 0,
    }
}

/// `(start, end)` of each frame in a segment file (header: magic, length, crc).
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        out.push((pos, pos + 12 + len));
        pos += 12 + len;
    }
    out
}

/// A log of `batches` synced batches, with a model of what it holds.
fn build<S: Storage>(wal: &mut S, batches: u64) -> MemStorage {
    let mut model = MemStorage::new();
    for b in 0..batches {
        let es = ents(b * 3 + 1..b * 3 + 4, 1 + b / 4, 20);
        let hs = HardState {
            term: 1 + b / 4,
            vote: Some(1),
            commit: b * 3,
        };
        wal.append(&es).unwrap();
        wal.set_hard_state(&hs).unwrap();
        model.append(&es).unwrap();
        model.set_hard_state(&hs).unwrap();
        wal.sync().unwrap();
    }
    model
}

fn corrupt_at(err: WalError) -> (PathBuf, u64) {
    match err {
        WalError::Corrupt { path, offset, .. } => (path, offset),
        other => panic!("expected a corruption error, got {other}"),
    }
}

#[test]
fn every_flipped_byte_before_the_last_record_is_reported_with_file_and_offset() {
    let fs = SimFs::new();
    let dir = Path::new("/wal");
    let mut wal = Wal::open_with(fs.clone(), dir, opts(1 << 20)).unwrap();
    build(&mut wal, 8);
    let seg = wal.segment_paths()[0].clone();
    drop(wal);
    let good = fs.read(&seg).unwrap();
    let frames = frames(&good);
    assert_eq!(frames.len(), 9); // checkpoint + 8 batches
    let last = frames[frames.len() - 1];
    for &(start, end) in &frames[..frames.len() - 1] {
        for pos in start..end {
            let mut bad = good.clone();
            bad[pos] ^= 0x01;
            fs.overwrite(&seg, bad).unwrap();
            let err = Wal::open_with(fs.clone(), dir, opts(1 << 20)).unwrap_err();
            let (path, offset) = corrupt_at(err);
            assert_eq!(path, seg);
            // The damaged frame, or (when its length field was hit and now
            // points elsewhere) still the place where reading went wrong.
            assert_eq!(offset, start as u64, "flip at {pos}");
        }
    }
    // The same flips in the final record cannot be told from a torn write:
    // that record is cut off (and reported), the rest is intact.
    for pos in [last.0, last.0 + 5, last.0 + 12, last.1 - 1] {
        let mut bad = good.clone();
        bad[pos] ^= 0x80;
        fs.overwrite(&seg, bad).unwrap();
        let wal = Wal::open_with(fs.clone(), dir, opts(1 << 20)).unwrap();
        let torn = wal.recovery().torn_tail.clone().expect("reported");
        assert_eq!((torn.path, torn.offset), (seg.clone(), last.0 as u64));
        assert_eq!(wal.last_index(), 21);
        drop(wal);
        fs.overwrite(&seg, good.clone()).unwrap();
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_on_the_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(300)).unwrap();
    build(&mut wal, 12);
    let segs = wal.segment_paths();
    assert!(segs.len() >= 3);
    drop(wal);
    // Even the last record of an older segment: it was synced before the
    // next segment was started.
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let (start, end) = *frames(&bytes).last().unwrap();
    bytes[end - 3] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    let err = Wal::open(dir.path(), opts(300)).unwrap_err();
    let msg = err.to_string();
    assert_eq!(corrupt_at(err), (victim.clone(), start as u64));
    assert!(
        msg.contains(&victim.display().to_string()) && msg.contains(&start.to_string()),
        "{msg}"
    );
}

#[test]
fn a_bad_record_followed_by_good_data_is_corruption_not_a_tear() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    build(&mut wal, 5);
    let seg = wal.segment_paths()[0].clone();
    drop(wal);
    let mut bytes = std::fs::read(&seg).unwrap();
    let f = frames(&bytes);
    // Zero the length of the third frame: its extent is lost, yet good
    // frames follow it.
    bytes[f[2].0 + 4..f[2].0 + 8].fill(0xff);
    std::fs::write(&seg, &bytes).unwrap();
    let err = Wal::open(dir.path(), opts(1 << 20)).unwrap_err();
    assert!(err.to_string().contains("good record follows"), "{err}");
    assert_eq!(corrupt_at(err), (seg, f[2].0 as u64));
}

#[test]
fn a_truncated_tail_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    let mut model = build(&mut wal, 6);
    let seg = wal.segment_paths()[0].clone();
    drop(wal);
    let good = std::fs::read(&seg).unwrap();
    let (start, end) = *frames(&good).last().unwrap();
    // The state before the last batch.
    let mut before = MemStorage::new();
    before
        .append(&model.entries(1, 16, u64::MAX).unwrap())
        .unwrap();
    before
        .set_hard_state(&HardState {
            term: 2,
            vote: Some(1),
            commit: 12,
        })
        .unwrap();
    for cut in [1, 5, 12, end - start - 1] {
        std::fs::write(&seg, &good[..good.len() - cut]).unwrap();
        let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
        let torn = wal
            .recovery()
            .torn_tail
            .clone()
            .expect("a torn tail is reported");
        assert_eq!(
            (torn.path.clone(), torn.offset, torn.dropped),
            (seg.clone(), start as u64, (end - start - cut) as u64)
        );
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), start as u64);
        assert_eq!(diff(&wal, &before), None);
    }
    // Zeros after the end (a file extended but never written) are a tear too.
    let mut zeros = good.clone();
    zeros.extend_from_slice(&[0; 700]);
    std::fs::write(&seg, &zeros).unwrap();
    let mut wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(
        wal.recovery().torn_tail.as_ref().map(|t| t.dropped),
        Some(700)
    );
    assert_eq!(diff(&wal, &model), None);
    // After the repair the log takes appends, and reopens clean.
    let es = ents(19..22, 3, 5);
    wal.append(&es).unwrap();
    model.append(&es).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(wal.recovery().torn_tail, None);
    assert_eq!(diff(&wal, &model), None);
}

#[test]
fn a_second_open_of_a_held_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    match Wal::open(dir.path(), opts(1 << 20)) {
        Err(WalError::Locked(p)) => assert_eq!(p, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(wal);
    Wal::open(dir.path(), opts(1 << 20)).unwrap();
}

#[test]
fn snapshot_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    build(&mut wal, 3);
    wal.apply_snapshot(&snap(4, 1, 64)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .unwrap();
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    bad[60] ^= 1; // in the data
    std::fs::write(&file, &bad).unwrap();
    assert_eq!(
        corrupt_at(Wal::open(dir.path(), opts(1 << 20)).unwrap_err()),
        (file.clone(), 48)
    );
    bad = good.clone();
    bad[20] ^= 1; // in the header
    std::fs::write(&file, &bad).unwrap();
    assert_eq!(
        corrupt_at(Wal::open(dir.path(), opts(1 << 20)).unwrap_err()),
        (file.clone(), 0)
    );
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), opts(1 << 20)),
        Err(WalError::MissingSnapshot(p)) if p == file
    ));
}

#[test]
fn a_lost_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(300)).unwrap();
    build(&mut wal, 12);
    let segs = wal.segment_paths();
    drop(wal);
    std::fs::remove_file(&segs[1]).unwrap();
    let err = Wal::open(dir.path(), opts(300)).unwrap_err();
    assert!(
        matches!(&err, WalError::MissingEntries { index: 1, path } if *path == segs[1]),
        "{err}"
    );
    assert!(
        err.to_string().contains(&*segs[1].to_string_lossy()),
        "{err}"
    );
}

#[test]
fn random_garbage_never_panics() {
    // Whatever bytes a segment holds, opening returns Ok or an error.
    let fs = SimFs::new();
    let dir = Path::new("/g");
    let mut wal = Wal::open_with(fs.clone(), dir, opts(1 << 20)).unwrap();
    build(&mut wal, 4);
    let seg = wal.segment_paths()[0].clone();
    drop(wal);
    let good = fs.read(&seg).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut bad = good.clone();
        for _ in 0..1 + x % 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % bad.len() as u64) as usize;
            bad[at] = (x >> 32) as u8;
        }
        if x.is_multiple_of(3) {
            bad.truncate((x % good.len() as u64) as usize);
        }
        fs.overwrite(&seg, bad).unwrap();
        if let Ok(wal) = Wal::open_with(fs.clone(), dir, opts(1 << 20)) {
            let _ = wal
                .entries(wal.first_index(), wal.last_index() + 1, u64::MAX)
                .unwrap();
        }
    }
}

/// A frame around `body`, checksummed as the WAL does.
fn frame(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), body);
    [&b"RKW1"[..], &len, &crc.to_le_bytes(), body].concat()
}

/// A checkpoint item: segment, hard state, snapshot reference, last index.
fn checkpoint(
    segment: u64,
    snap_seq: u64,
    snap_index: u64,
    snap_len: u64,
    last_index: u64,
) -> Vec<u8> {
    let mut b = vec![4];
    b.extend_from_slice(&segment.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // term
    b.push(0); // no vote
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // commit
    b.extend_from_slice(&snap_seq.to_le_bytes());
    b.extend_from_slice(&snap_index.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // snapshot term
    b.extend_from_slice(&snap_len.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // data crc
    b.extend_from_slice(&last_index.to_le_bytes());
    b
}

#[test]
fn well_checksummed_nonsense_is_an_error_not_a_panic() {
    let seg1 = "00000000000000000001.wal";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge last index", frame(&checkpoint(1, 0, 0, 0, u64::MAX))),
        (
            "huge snapshot index",
            frame(&checkpoint(1, 1, u64::MAX, 0, u64::MAX)),
        ),
        (
            "absurd entry count",
            frame(&checkpoint(1, 0, 0, 0, 1 << 40)),
        ),
        ("wrong segment number", frame(&checkpoint(9, 0, 0, 0, 0))),
        (
            "unknown item",
            frame(&[&checkpoint(1, 0, 0, 0, 0)[..], &[77]].concat()),
        ),
        ("no checkpoint first", frame(&[2; 26])),
        (
            "entries a missing segment held",
            frame(&checkpoint(1, 0, 0, 0, 3)),
        ),
        (
            "snapshot of absurd length",
            frame(&checkpoint(1, 5, 3, u64::MAX, 3)),
        ),
        (
            "an entry leaving a gap",
            [
                frame(&checkpoint(1, 0, 0, 0, 0)),
                frame(&{
                    let mut e = vec![1];
                    e.extend_from_slice(&5u64.to_le_bytes()); // index 5 after index 0
                    e.extend_from_slice(&1u64.to_le_bytes());
                    e.push(0);
                    e.extend_from_slice(&0u32.to_le_bytes());
                    let crc = crc32c::crc32c(&e[1..]);
                    e.extend_from_slice(&crc.to_le_bytes());
                    e
                }),
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(seg1), &bytes).unwrap();
        // A good frame after it, so none of these counts as a torn tail.
        let mut with_tail = bytes.clone();
        with_tail.extend_from_slice(&frame(&[2; 26]));
        for content in [bytes, with_tail] {
            std::fs::write(dir.path().join(seg1), &content).unwrap();
            let got = Wal::open(dir.path(), opts(1 << 20));
            assert!(got.is_err(), "{what}: opened");
        }
    }
}

// Regressions from the recovery review: a segment without a readable
// checkpoint is damage, never an "interrupted roll" to delete.

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// 20 synced batches of one entry, hard state each time, then a snapshot
/// at 10; returns the segment paths.
fn populate(dir: &Path, segment_bytes: u64, with_snapshot: bool) -> Vec<PathBuf> {
    let mut wal = Wal::open(dir, opts(segment_bytes)).unwrap();
    for i in 1..=20u64 {
        wal.append(&ents(i..i + 1, 3, 40)).unwrap();
        wal.set_hard_state(&HardState {
            term: 3,
            vote: Some(2),
            commit: i,
        })
        .unwrap();
        wal.sync().unwrap();
    }
    if with_snapshot {
        wal.apply_snapshot(&snap(10, 3, 100)).unwrap();
        wal.sync().unwrap();
    }
    wal.segment_paths()
}

/// Opening must refuse with corruption at offset 0 of `seg` and touch nothing.
fn assert_refused_untouched(dir: &Path, segment_bytes: u64, seg: &Path) {
    let before = listing(dir);
    let contents: Vec<Vec<u8>> = before
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect();
    let err = Wal::open(dir, opts(segment_bytes)).unwrap_err();
    assert!(err.to_string().contains("checkpoint"), "{err}");
    assert_eq!(corrupt_at(err), (seg.to_path_buf(), 0));
    assert_eq!(listing(dir), before, "recovery removed or added files");
    let after: Vec<Vec<u8>> = before
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect();
    assert!(after == contents, "recovery changed a file");
}

#[test]
fn a_damaged_segment_1_is_refused_not_recreated() {
    // Emptied or zeroed: the hard state (vote) and the snapshot must not
    // be reset to an empty log.
    for zero in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let segs = populate(dir.path(), 1 << 20, true);
        assert_eq!(segs.len(), 1);
        let len = std::fs::metadata(&segs[0]).unwrap().len() as usize;
        std::fs::write(&segs[0], if zero { vec![0; len] } else { Vec::new() }).unwrap();
        assert!(listing(dir.path()).iter().any(|n| n.ends_with(".snap")));
        assert_refused_untouched(dir.path(), 1 << 20, &segs[0]);
    }
}

#[test]
fn a_zeroed_newest_segment_is_refused_not_dropped() {
    // With a snapshot (the newest segment holds its checkpoint and the
    // snapshot record) and without (it holds synced entries).
    for with_snapshot in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let segs = populate(dir.path(), 400, with_snapshot);
        assert!(segs.len() > 1);
        let newest = segs.last().unwrap();
        let len = std::fs::metadata(newest).unwrap().len() as usize;
        std::fs::write(newest, vec![0; len]).unwrap();
        assert_refused_untouched(dir.path(), 400, newest);
        // Emptied (length 0) is refused too.
        std::fs::write(newest, b"").unwrap();
        assert_refused_untouched(dir.path(), 400, newest);
    }
}

#[test]
fn a_leftover_segment_temp_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts(300)).unwrap();
    let model = build(&mut wal, 12);
    let segs = wal.segment_paths();
    drop(wal);
    let newest = segs.last().unwrap().file_name().unwrap().to_str().unwrap();
    let seq: u64 = newest.trim_end_matches(".wal").parse().unwrap();
    // An interrupted roll: the next segment's temp file, torn.
    let tmp = dir.path().join(format!("{:020}.wal.tmp", seq + 1));
    std::fs::write(&tmp, [0u8; 30]).unwrap();
    let wal = Wal::open(dir.path(), opts(300)).unwrap();
    assert!(wal.recovery().removed.contains(&tmp));
    assert!(!tmp.exists());
    assert_eq!(wal.segment_paths(), segs);
    assert_eq!(diff(&wal, &model), None);
}

#[test]
fn a_checkpoint_claiming_billions_of_entries_allocates_nothing() {
    let seg1 = "00000000000000000001.wal";
    // Valid CRC, 2^32 entries held by (absent) older segments: the missing
    // range is reported, without materialising it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(seg1),
        frame(&checkpoint(1, 0, 0, 0, 1 << 32)),
    )
    .unwrap();
    assert!(matches!(
        Wal::open(dir.path(), opts(1 << 20)),
        Err(WalError::MissingEntries { index: 1, .. })
    ));
    // A later entry at index 1 truncates the whole missing range away.
    let mut e = vec![1];
    e.extend_from_slice(&1u64.to_le_bytes()); // index
    e.extend_from_slice(&2u64.to_le_bytes()); // term
    e.push(0); // normal
    e.extend_from_slice(&0u32.to_le_bytes()); // no data
    let crc = crc32c::crc32c(&e[1..]);
    e.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(
        dir.path().join(seg1),
        [frame(&checkpoint(1, 0, 0, 0, 1 << 32)), frame(&e)].concat(),
    )
    .unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 1));
    assert_eq!(wal.term(1).unwrap(), 2);
}

#[test]
fn a_snapshot_length_near_u64_max_is_corruption_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("00000000000000000001.wal"),
        frame(&checkpoint(1, 5, 3, u64::MAX, 3)),
    )
    .unwrap();
    let file = dir.path().join("snap-00000000000000000005.snap");
    std::fs::write(&file, b"x").unwrap();
    let got = std::panic::catch_unwind(|| Wal::open(dir.path(), opts(1 << 20)).map(|_| ()));
    let err = got.expect("opening panicked").unwrap_err();
    assert_eq!(corrupt_at(err), (file, 0));
}
