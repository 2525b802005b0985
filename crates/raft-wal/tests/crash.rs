//! Crash property: any sequence of appends (including truncating ones),
//! snapshots, hard-state changes, syncs and clean restarts, cut by a power
//! failure at any file-system call (torn writes included), and possibly a
//! second one during recovery, recovers to exactly the state after the last
//! completed `sync` — or, if the failure hit inside a `sync`, to the state
//! that sync was making durable. `raft_core::MemStorage` is the model.
//!
//! Raise the case count with PROPTEST_CASES (default 1000, about a second).

mod common;

use std::path::Path;

use common::{diff, ents, snap};
use proptest::prelude::*;
use raft_core::{HardState, MemStorage, Storage, StorageError};
use raft_wal::{SimFs, SyncMode, Wal, WalError, WalOptions};

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries starting `back` before the end (truncating).
    Append {
        back: u8,
        n: u8,
        new_term: bool,
        len: u8,
    },
    HardState {
        term: u8,
        vote: Option<u8>,
        commit: u8,
    },
    /// A snapshot at a position chosen by `pos`, matching the log's term there or not.
    Snapshot {
        pos: u8,
        same_term: bool,
        len: u8,
    },
    /// The same, its file written first by a `SnapshotWriter`; adopted and
    /// applied, or left staged and never adopted.
    Staged {
        pos: u8,
        same_term: bool,
        len: u8,
        adopt: bool,
    },
    Sync,
    /// Drop the WAL without syncing and open it again (no power cut).
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 1u8..6, any::<bool>(), 0u8..48)
            .prop_map(|(back, n, new_term, len)| Op::Append { back, n, new_term, len }),
        2 => (any::<u8>(), proptest::option::of(1u8..4), any::<u8>())
            .prop_map(|(term, vote, commit)| Op::HardState { term, vote, commit }),
        1 => (any::<u8>(), any::<bool>(), 0u8..64)
            .prop_map(|(pos, same_term, len)| Op::Snapshot { pos, same_term, len }),
        1 => (any::<u8>(), any::<bool>(), 0u8..64, any::<bool>())
            .prop_map(|(pos, same_term, len, adopt)| Op::Staged { pos, same_term, len, adopt }),
        4 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn dir() -> &'static Path {
    Path::new("/data/wal")
}

fn open(fs: &SimFs, opts: WalOptions) -> Result<Wal<SimFs>, WalError> {
    Wal::open_with(fs.clone(), dir(), opts)
}

/// The same error class from the WAL and the model.
fn same_outcome(a: &Result<(), StorageError>, b: &Result<(), StorageError>) -> bool {
    match (a, b) {
        (Ok(()), Ok(())) => true,
        (
            Err(StorageError::SnapshotOutOfDate { .. }),
            Err(StorageError::SnapshotOutOfDate { .. }),
        ) => true,
        (Err(StorageError::Unavailable(x)), Err(StorageError::Unavailable(y))) => x == y,
        _ => false,
    }
}

struct Run {
    /// Acknowledged state: the model after the last completed sync.
    synced: MemStorage,
    /// The state a sync interrupted by the power cut was writing.
    in_flight: Option<MemStorage>,
}

/// Applies `ops` to a WAL on `fs` and to the model until they end or the
/// power fails; checks reads against the model along the way.
fn drive(fs: &SimFs, opts: WalOptions, ops: &[Op]) -> Result<Run, TestCaseError> {
    let mut run = Run {
        synced: MemStorage::new(),
        in_flight: None,
    };
    let Ok(mut wal) = open(fs, opts) else {
        prop_assert!(
            fs.is_down(),
            "open of an empty dir failed without a power cut"
        );
        return Ok(run);
    };
    let mut model = MemStorage::new();
    let mut max_term = 1u64;
    for op in ops {
        let (got, want) = match *op {
            Op::Append {
                back,
                n,
                new_term,
                len,
            } => {
                max_term += u64::from(new_term);
                let start = (model.last_index() + 1)
                    .saturating_sub(u64::from(back))
                    .max(1);
                let es = ents(start..start + u64::from(n), max_term, usize::from(len));
                (wal.append(&es), model.append(&es))
            }
            Op::HardState { term, vote, commit } => {
                let hs = HardState {
                    term: term.into(),
                    vote: vote.map(u64::from),
                    commit: commit.into(),
                };
                (wal.set_hard_state(&hs), model.set_hard_state(&hs))
            }
            Op::Snapshot {
                pos,
                same_term,
                len,
            }
            | Op::Staged {
                pos,
                same_term,
                len,
                ..
            } => {
                let lo = model
                    .snapshot()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .meta
                    .index;
                let span = model.last_index() + 3 - lo;
                let index = if pos == 255 && lo > 0 {
                    lo - 1
                } else {
                    lo + u64::from(pos) % span
                };
                let term = match model.term(index) {
                    Ok(t) if same_term => t,
                    _ => max_term + 1,
                };
                let s = snap(index, term, usize::from(len));
                if let Op::Staged { adopt, .. } = *op {
                    match wal.snapshot_writer().and_then(|w| w.write(&s)) {
                        Ok(staged) if adopt => prop_assert!(wal.adopt(staged)),
                        Ok(_) => continue,
                        Err(e) => {
                            prop_assert!(fs.is_down(), "staging failed without a power cut: {e}");
                            return Ok(run);
                        }
                    }
                }
                (wal.apply_snapshot(&s), model.apply_snapshot(&s))
            }
            Op::Sync => match wal.sync() {
                Ok(()) => {
                    run.synced = model.clone();
                    (Ok(()), Ok(()))
                }
                Err(e) => {
                    prop_assert!(fs.is_down(), "sync failed without a power cut: {e}");
                    run.in_flight = Some(model);
                    return Ok(run);
                }
            },
            Op::Reopen => {
                drop(wal);
                wal = match open(fs, opts) {
                    Ok(w) => w,
                    Err(e) => {
                        prop_assert!(fs.is_down(), "reopen failed without a power cut: {e}");
                        return Ok(run);
                    }
                };
                model = run.synced.clone();
                if fs.is_down() {
                    return Ok(run);
                }
                if let Some(d) = diff(&wal, &model) {
                    return Err(TestCaseError::fail(format!("after a clean reopen:\n{d}")));
                }
                continue;
            }
        };
        if fs.is_down() {
            // The power failed inside this call (after a sync's fsync, the
            // batch counts as synced: `run.synced` was updated above).
            return Ok(run);
        }
        prop_assert!(
            same_outcome(&got, &want),
            "{op:?}: wal {got:?}, model {want:?}"
        );
        if let Some(d) = diff(&wal, &model) {
            return Err(TestCaseError::fail(format!("after {op:?}:\n{d}")));
        }
    }
    Ok(run)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Runs `ops` with the power cut after `crash_at` file-system calls (and,
/// if `second_crash`, again during recovery), then checks that the
/// recovered WAL holds the synced (or in-flight) state and keeps working.
fn check(
    ops: &[Op],
    opts: WalOptions,
    crash_at: u64,
    seed: u64,
    second_crash: Option<u64>,
) -> Result<(), TestCaseError> {
    let fs = SimFs::new();
    fs.fail_after(crash_at);
    let run = drive(&fs, opts, ops)?;

    // Power cut (now, if the budget did not run out), then recovery,
    // itself possibly cut by a second power failure.
    let mut disk = fs.crash(seed);
    if let Some(n) = second_crash {
        disk.fail_after(n);
        match open(&disk, opts) {
            Ok(_) => {}
            Err(e) => prop_assert!(disk.is_down(), "recovery failed: {e}"),
        }
        disk = disk.crash(seed.rotate_left(17));
    }
    let wal =
        open(&disk, opts).map_err(|e| TestCaseError::fail(format!("recovery failed: {e}")))?;
    let synced = diff(&wal, &run.synced);
    let in_flight = run.in_flight.as_ref().map(|m| diff(&wal, m));
    if let (Some(d), None | Some(Some(_))) = (&synced, &in_flight) {
        let other = in_flight
            .flatten()
            .map(|d| format!("\nvs the in-flight sync:\n{d}"))
            .unwrap_or_default();
        return Err(TestCaseError::fail(format!(
            "vs the last sync:\n{d}{other}"
        )));
    }

    // The recovered log keeps working: append, sync, reopen.
    let mut wal = wal;
    let mut model = if synced.is_none() {
        run.synced
    } else {
        run.in_flight.unwrap_or_default()
    };
    let es = ents(model.last_index() + 1..model.last_index() + 4, 200, 9);
    wal.append(&es)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    model
        .append(&es)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    wal.sync().map_err(|e| TestCaseError::fail(e.to_string()))?;
    drop(wal);
    let wal = open(&disk.crash(seed ^ 1), opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if let Some(d) = diff(&wal, &model) {
        return Err(TestCaseError::fail(format!(
            "after recovery, append and sync:\n{d}"
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn recovers_exactly_the_synced_state(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in prop_oneof![Just(1u64), Just(200), Just(1000), Just(1 << 20)],
        cache_bytes in prop_oneof![Just(0u64), Just(150), Just(1 << 20)],
        crash_at in 0u64..160,
        seed in any::<u64>(),
        second_crash in proptest::option::of(0u64..12),
    ) {
        let opts = WalOptions { segment_bytes, sync: SyncMode::Always, cache_bytes };
        check(&ops, opts, crash_at, seed, second_crash)?;
    }
}

/// A power cut at every file-system call of a run that rolls a segment on
/// every sync (temp file created, checkpoint written, fsynced, renamed,
/// directory fsynced), with snapshots and a reopen in between, and again
/// at every call of the recovery that follows.
#[test]
fn a_crash_at_any_step_of_segment_creation_or_rolling_recovers() {
    let mut ops = Vec::new();
    for k in 0..6u8 {
        ops.push(Op::Append {
            back: k % 3,
            n: 2,
            new_term: k == 3,
            len: 30,
        });
        ops.push(Op::HardState {
            term: 1 + k,
            vote: Some(1),
            commit: k,
        });
        if k == 2 || k == 4 {
            ops.push(Op::Snapshot {
                pos: 2,
                same_term: k == 2,
                len: 20,
            });
        }
        ops.push(Op::Sync);
        if k == 3 {
            ops.push(Op::Reopen);
        }
    }
    for segment_bytes in [1, 200] {
        let opts = WalOptions {
            segment_bytes,
            sync: SyncMode::Always,
            cache_bytes: 150,
        };
        for crash_at in 0..120 {
            for seed in 0..3u64 {
                for second_crash in std::iter::once(None).chain((0..12).map(Some)) {
                    if let Err(e) = check(&ops, opts, crash_at, seed, second_crash) {
                        panic!(
                            "segment_bytes {segment_bytes}, crash_at {crash_at}, \
                             seed {seed}, second crash {second_crash:?}: {e}"
                        );
                    }
                }
            }
        }
    }
}
