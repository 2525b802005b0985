//! Opening a data directory: replay the segments, tell a torn tail (cut
//! away, with a warning) from corruption (refuse to start), verify the
//! snapshot, and clear leftovers of interrupted operations.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use raft_core::Index;
use tracing::{info, warn};

use crate::codec::{Checkpoint, Decoder, Item, FRAME_HEADER};
use crate::error::WalError;
use crate::segment::{self, Frame, Reader, Segment};
use crate::snapfile;
use crate::state::{LogState, Slot};
use crate::vfs::{Vfs, VfsFile};

/// What [`Wal::open`](crate::Wal::open) found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The unfinished write cut from the end of the log, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Files removed as leftovers: unfinished segments and snapshots,
    /// snapshots replaced by a newer one, segments already compacted.
    pub removed: Vec<PathBuf>,
}

/// A partial record at the end of the newest segment (a crash mid-write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the partial record started; the file now ends here.
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped: u64,
}

/// The state a data directory holds, ready for appending.
pub(crate) struct Recovered<Fi> {
    pub segments: VecDeque<Segment<Fi>>,
    pub state: LogState,
    pub next_snap_seq: u64,
    pub report: RecoveryReport,
    /// The configuration stored with the current snapshot.
    pub snap_conf: raft_core::ConfState,
}

/// Files found in the directory, by kind.
#[derive(Default)]
struct Listing {
    segments: Vec<u64>,
    snapshots: Vec<u64>,
    /// Snapshot temp files and staged files never recorded: number, name.
    temps: Vec<(u64, String)>,
    /// Segments being created (`.wal.tmp`): never part of the log.
    segment_temps: Vec<u64>,
}

fn list<F: Vfs>(fs: &F, dir: &Path) -> Result<Listing, WalError> {
    let mut out = Listing::default();
    for name in fs.list(dir).map_err(WalError::io("list", dir))? {
        if let Some(seq) = segment::parse_name(&name) {
            out.segments.push(seq);
        } else if let Some(seq) = segment::parse_temp_name(&name) {
            out.segment_temps.push(seq);
        } else if let Some((seq, tmp)) = snapfile::parse_name(&name) {
            if tmp {
                out.temps.push((seq, name));
            } else {
                out.snapshots.push(seq);
            }
        }
    }
    out.segments.sort_unstable();
    Ok(out)
}

/// Reads the directory and repairs what a crash can leave behind.
pub(crate) fn recover<F: Vfs>(
    fs: &F,
    dir: &Path,
    sync: bool,
) -> Result<Recovered<F::File>, WalError> {
    let found = list(fs, dir)?;
    if found.segments.is_empty() && !found.snapshots.is_empty() {
        return Err(WalError::corrupt(
            dir,
            0,
            "snapshot files but no log segments",
        ));
    }
    // Compaction removes segments oldest first; a crash can make an older
    // removal persist while a newer one does not. Only the newest run of
    // consecutive segments is the log; anything before a gap was compacted.
    let mut start = found.segments.len().saturating_sub(1);
    while start > 0 && found.segments[start - 1].checked_add(1) == Some(found.segments[start]) {
        start -= 1;
    }
    let (stale, run) = found.segments.split_at(start);

    let mut state = LogState::default();
    let mut segments = VecDeque::new();
    let mut report = RecoveryReport::default();
    let mut unfinished = None; // (path, offset, size) of a torn newest segment
    for (i, &seq) in run.iter().enumerate() {
        let newest = i + 1 == run.len();
        let path = dir.join(segment::file_name(seq));
        let file = fs.open(&path).map_err(WalError::io("open", &path))?;
        let size = file.size().map_err(WalError::io("stat", &path))?;
        let mut reader = Reader::new(&file, size);
        let (mut pos, mut frames) = (0u64, 0u64);
        loop {
            match reader.frame(pos).map_err(WalError::io("read", &path))? {
                Frame::End => break,
                Frame::Good(body) => {
                    replay_frame(&mut state, &body, seq, pos, frames == 0, i == 0, &path)?;
                    frames += 1;
                    pos += (FRAME_HEADER + body.len()) as u64;
                }
                Frame::Bad(reason) => {
                    if !newest {
                        return Err(WalError::corrupt(
                            &path,
                            pos,
                            format!("{reason} (in a sealed segment)"),
                        ));
                    }
                    if let Some(at) = reader
                        .good_frame_after(pos + 1)
                        .map_err(WalError::io("read", &path))?
                    {
                        let why = format!("{reason}; a good record follows at offset {at}");
                        return Err(WalError::corrupt(&path, pos, why));
                    }
                    break;
                }
            }
        }
        if frames == 0 {
            // Segments are renamed into place only once their checkpoint is
            // durable, so a live segment without one was damaged.
            let reason = if size == 0 {
                "segment is empty (no checkpoint)"
            } else {
                "segment has no readable checkpoint"
            };
            return Err(WalError::corrupt(&path, 0, reason));
        }
        if pos < size {
            unfinished = Some((path.clone(), pos, size));
        }
        segments.push_back(Segment {
            seq,
            path,
            file,
            len: pos,
        });
    }
    if let Some(index) = state.first_missing() {
        // Only the oldest segment's checkpoint can leave entries missing:
        // the segment numbered just before it held them.
        let before = run.first().map_or(0, |s| s.saturating_sub(1));
        let path = dir.join(segment::file_name(before));
        return Err(WalError::MissingEntries { index, path });
    }
    let snap_conf = snapfile::read(fs, dir, &state.snap)?.conf;

    // Everything is consistent: now repair.
    let mut removed_any = false;
    if let Some((path, offset, size)) = unfinished.take() {
        let dropped = size - offset;
        warn!(path = %path.display(), offset, dropped, "WAL: cutting off a torn write at the end of the log");
        let seg = segments
            .back_mut()
            .filter(|s| s.path == path)
            .ok_or_else(|| WalError::Invalid("torn tail outside the newest segment".into()))?;
        seg.file
            .set_len(offset)
            .map_err(WalError::io("truncate", &path))?;
        if sync {
            seg.file.sync().map_err(WalError::io("fsync", &path))?;
        }
        report.torn_tail = Some(crate::TornTail {
            path,
            offset,
            dropped,
        });
    }
    let mut leftovers: Vec<PathBuf> = stale
        .iter()
        .map(|&s| dir.join(segment::file_name(s)))
        .collect();
    leftovers.extend(
        found
            .segment_temps
            .iter()
            .map(|&s| dir.join(segment::temp_name(s))),
    );
    leftovers.extend(found.temps.iter().map(|(_, name)| dir.join(name)));
    leftovers.extend(
        found
            .snapshots
            .iter()
            .filter(|&&s| s != state.snap.seq)
            .map(|&s| dir.join(snapfile::file_name(s))),
    );
    for path in leftovers {
        info!(path = %path.display(), "WAL: removing a leftover file");
        fs.remove(&path).map_err(WalError::io("remove", &path))?;
        report.removed.push(path);
        removed_any = true;
    }
    if removed_any && sync {
        fs.sync_dir(dir)
            .map_err(WalError::io("fsync directory", dir))?;
    }
    if segments.is_empty() {
        let cp = Checkpoint {
            segment: 1,
            ..Checkpoint::default()
        };
        segments.push_back(segment::create(fs, dir, &cp, sync)?);
    }
    let next_snap_seq = found
        .snapshots
        .iter()
        .copied()
        .chain(found.temps.iter().map(|(s, _)| *s))
        .chain([state.snap.seq])
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    Ok(Recovered {
        segments,
        state,
        next_snap_seq,
        report,
        snap_conf,
    })
}

/// Applies the items of one good frame to `state`. A frame whose checksum
/// is right but whose contents make no sense is corruption too.
fn replay_frame(
    state: &mut LogState,
    body: &[u8],
    seq: u64,
    frame_at: u64,
    first_frame: bool,
    first_segment: bool,
    path: &Path,
) -> Result<(), WalError> {
    let mut d = Decoder::new(body);
    let mut first_item = first_frame;
    while !d.is_done() {
        let start = d.pos();
        let at = frame_at + (FRAME_HEADER + start) as u64;
        let bad = |reason: &str| WalError::corrupt(path, at, reason);
        let item = d.item().map_err(bad)?;
        let is_checkpoint = matches!(item, Item::Checkpoint(_));
        if first_item != is_checkpoint {
            return Err(bad(if first_item {
                "segment does not start with a checkpoint"
            } else {
                "checkpoint in the middle of a segment"
            }));
        }
        first_item = false;
        if !indexes_in_range(&item) {
            return Err(bad("index out of range"));
        }
        match item {
            Item::Entry { index, term, .. } => {
                let len = u32::try_from(d.pos() - start).map_err(|_| bad("entry too large"))?;
                let slot = Slot {
                    term,
                    seg: seq,
                    off: at,
                    len,
                };
                state.put_entry(index, slot).map_err(bad)?;
            }
            Item::HardState(hs) => state.hard_state = hs,
            Item::Snapshot { snap, keep } => state.put_snapshot(snap, keep).map_err(bad)?,
            Item::Checkpoint(cp) => {
                if cp.segment != seq {
                    return Err(bad("checkpoint names another segment"));
                }
                if first_segment {
                    *state = from_checkpoint(&cp)
                        .ok_or_else(|| bad("checkpoint entry count is impossible"))?;
                } else if cp.hard_state != state.hard_state
                    || cp.snapshot != state.snap
                    || cp.last_index != state.last_index()
                {
                    return Err(bad("checkpoint disagrees with the segments before it"));
                }
            }
        }
    }
    Ok(())
}

/// Indexes above this are taken as damage (and keep index arithmetic far
/// from overflow).
const MAX_INDEX: Index = u64::MAX >> 2;

fn indexes_in_range(item: &Item<'_>) -> bool {
    match item {
        Item::Entry { index, .. } => *index <= MAX_INDEX,
        Item::Snapshot { snap, .. } => snap.meta.index <= MAX_INDEX,
        Item::Checkpoint(cp) => cp.last_index <= MAX_INDEX && cp.snapshot.meta.index <= MAX_INDEX,
        Item::HardState(hs) => hs.commit <= MAX_INDEX,
    }
}

/// The state a checkpoint describes; its entries live in older segments
/// (a missing range, which later records must truncate or compact away).
fn from_checkpoint(cp: &Checkpoint) -> Option<LogState> {
    if cp.last_index < cp.snapshot.meta.index {
        return None;
    }
    Some(LogState::with_missing(
        cp.hard_state,
        cp.snapshot,
        cp.last_index,
    ))
}
