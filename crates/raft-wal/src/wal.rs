//! The write-ahead log: open, the write path (one frame per `sync`), segment
//! rolling and compaction. Reads are in `read.rs`.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use raft_core::{ConfState, Entry, HardState, Snapshot, SnapshotMeta, StorageError};
use tracing::warn;

use crate::cache::Cache;
use crate::codec::{self, Checkpoint, SnapRef, ENTRY_HEADER, FRAME_HEADER};
use crate::error::WalError;
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, Segment};
use crate::snapfile;
use crate::state::{LogState, Slot, PENDING};
use crate::vfs::{StdFs, Vfs, VfsFile};

/// When the WAL calls fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Every [`sync`](raft_core::Storage::sync) fsyncs the log (one fsync per
    /// batch); snapshots and new segments are fsynced with their directory.
    Always,
    /// Never fsync: data reaches the OS but a power cut can lose any of it,
    /// or leave a log that refuses to open. **Unsafe**: only for tests and
    /// benchmarks that do not care about durability.
    Never,
}

/// How a [`Wal`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it holds at least this
    /// many bytes (a single batch larger than this makes a larger segment).
    pub segment_bytes: u64,
    /// Whether `sync` really fsyncs.
    pub sync: SyncMode,
    /// Bytes of recent entries kept decoded in memory for reads (entries
    /// before them are read from disk on demand).
    pub cache_bytes: u64,
}

impl Default for WalOptions {
    /// 64 MiB segments, fsync always, 4 MiB of cached entries.
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            sync: SyncMode::Always,
            cache_bytes: 4 << 20,
        }
    }
}

/// Largest frame body the format can hold.
const MAX_BODY: u64 = u32::MAX as u64;
/// A batch buffer bigger than this is freed after its sync, not reused.
const KEEP_BUFFER: usize = 16 << 20;
const LOCK_FILE: &str = "LOCK";

/// Numbers each opened [`Wal`] in this process, so that a staged snapshot
/// is only ever adopted by the instance that reserved its file.
static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// Writes one snapshot file away from the thread that owns the [`Wal`]
/// (write and fsync), under a sequence number the WAL reserved for it
/// ([`Wal::snapshot_writer`]) and a staged name that carries the WAL
/// instance's number. The file takes its snapshot name (a rename and a
/// directory fsync, on the WAL's thread) only when the WAL that reserved it
/// [adopts](Wal::adopt) the [`StagedSnapshot`] and records it, so a writer
/// that outlives its WAL can never touch another instance's files. One
/// never recorded is a leftover that the next open removes: a crash at any
/// point loses nothing the log refers to.
#[derive(Debug)]
pub struct SnapshotWriter<F: Vfs = StdFs> {
    fs: F,
    dir: PathBuf,
    seq: u64,
    sync: bool,
    instance: u64,
}

impl<F: Vfs> SnapshotWriter<F> {
    /// Writes `snap` to its file and makes it durable (with
    /// [`SyncMode::Always`]); the token to hand to [`Wal::adopt`].
    pub fn write(self, snap: &Snapshot) -> Result<StagedSnapshot, WalError> {
        let r = snapfile::write_staged(
            &self.fs,
            &self.dir,
            self.seq,
            self.instance,
            snap,
            self.sync,
        )?;
        Ok(StagedSnapshot {
            r,
            conf: snap.conf.clone(),
            instance: self.instance,
        })
    }
}

/// A snapshot file written and synced by a [`SnapshotWriter`], not yet
/// recorded in the log. Give it to [`Wal::adopt`] before the Ready that
/// carries the same snapshot is persisted: `apply_snapshot` then records
/// the file instead of writing it again.
#[derive(Debug)]
pub struct StagedSnapshot {
    r: SnapRef,
    conf: ConfState,
    instance: u64,
}

impl StagedSnapshot {
    /// The metadata of the snapshot in the file.
    pub fn meta(&self) -> SnapshotMeta {
        self.r.meta
    }
}

/// A crash-safe Raft log in a directory: segmented, checksummed, with one
/// fsync per [`sync`](raft_core::Storage::sync). It implements
/// [`raft_core::Storage`]; see docs/WAL.md for the format and guarantees.
pub struct Wal<F: Vfs = StdFs> {
    pub(crate) fs: F,
    pub(crate) dir: PathBuf,
    pub(crate) opts: WalOptions,
    /// Consecutive segments, oldest first; the last one takes appends.
    pub(crate) segments: VecDeque<Segment<F::File>>,
    pub(crate) state: LogState,
    /// The frame being built until the next sync (empty: none begun).
    pub(crate) pending: Vec<u8>,
    pub(crate) cache: Cache,
    next_snap_seq: u64,
    /// The configuration stored with the current snapshot.
    snap_conf: raft_core::ConfState,
    /// Snapshot files replaced since the last sync, removed after it.
    replaced: Vec<u64>,
    /// A snapshot file written elsewhere, waiting for its `apply_snapshot`.
    staged: Option<StagedSnapshot>,
    /// This instance's number (see [`INSTANCES`]).
    instance: u64,
    poisoned: bool,
    report: RecoveryReport,
    _lock: F::Lock,
}

impl Wal<StdFs> {
    /// Opens (or creates) the log in `dir`, recovering what it holds.
    /// Fails if another process has it open, or if acknowledged data is
    /// damaged; a torn write at the end is cut off (see [`Wal::recovery`]).
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Self, WalError> {
        Self::open_with(StdFs, dir, opts)
    }
}

impl<F: Vfs> Wal<F> {
    /// [`Wal::open`] on a given file system (a [`SimFs`](crate::SimFs) in tests).
    pub fn open_with(fs: F, dir: impl AsRef<Path>, opts: WalOptions) -> Result<Self, WalError> {
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir)
            .map_err(WalError::io("create directory", &dir))?;
        if opts.sync == SyncMode::Always {
            // The directory may have just been created: make its own entry
            // durable before anything in it is acknowledged.
            let parent = match dir.parent() {
                Some(p) if p.as_os_str().is_empty() => Path::new("."),
                Some(p) => p,
                None => dir.as_path(),
            };
            fs.sync_dir(parent)
                .map_err(WalError::io("fsync directory", parent))?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs
            .try_lock(&lock_path)
            .map_err(WalError::io("lock", &lock_path))?
            .ok_or_else(|| WalError::Locked(dir.clone()))?;
        let rec = recovery::recover(&fs, &dir, opts.sync == SyncMode::Always)?;
        Ok(Wal {
            fs,
            dir,
            opts,
            segments: rec.segments,
            state: rec.state,
            pending: Vec::new(),
            cache: Cache::new(opts.cache_bytes),
            next_snap_seq: rec.next_snap_seq,
            snap_conf: rec.snap_conf,
            replaced: Vec::new(),
            staged: None,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            poisoned: false,
            report: rec.report,
            _lock: lock,
        })
    }

    /// What opening found and repaired (a torn tail, leftover files).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.report
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths of the segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// Reserves a snapshot file for a [`SnapshotWriter`], which writes and
    /// syncs it on another thread while this WAL goes on.
    pub fn snapshot_writer(&mut self) -> Result<SnapshotWriter<F>, WalError>
    where
        F: Clone,
    {
        self.writable()?;
        Ok(SnapshotWriter {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            seq: self.reserve_snap_seq()?,
            sync: self.syncs(),
            instance: self.instance,
        })
    }

    /// Takes a staged snapshot file: the next `apply_snapshot` of a snapshot
    /// with the same metadata and configuration records it without writing
    /// it again. Any other `apply_snapshot` removes it and writes its own.
    /// A file staged by another `Wal` instance (before a reopen) is removed
    /// (under its staged name, which only that instance used) and `false`
    /// returned.
    pub fn adopt(&mut self, staged: StagedSnapshot) -> bool {
        if staged.instance != self.instance {
            self.remove_staged(&staged);
            return false;
        }
        if let Some(old) = self.staged.replace(staged) {
            self.remove_staged(&old);
        }
        true
    }

    /// Removes a staged snapshot file that will not be adopted (its
    /// snapshot was refused). Leaving it is safe too: the next open
    /// removes it.
    pub fn discard(&mut self, staged: StagedSnapshot) {
        self.remove_staged(&staged);
    }

    fn remove_staged(&self, staged: &StagedSnapshot) {
        let name = snapfile::staged_name(staged.r.seq, staged.instance);
        let path = self.dir.join(name);
        if let Err(e) = self.fs.remove(&path) {
            warn!(path = %path.display(), error = %e, "WAL: could not remove a staged snapshot");
        }
    }

    fn reserve_snap_seq(&mut self) -> Result<u64, WalError> {
        let seq = self.next_snap_seq;
        self.next_snap_seq = seq
            .checked_add(1)
            .ok_or_else(|| WalError::Invalid("snapshot numbers exhausted".into()))?;
        Ok(seq)
    }

    /// Whether writes are fsynced ([`SyncMode::Always`]).
    fn syncs(&self) -> bool {
        self.opts.sync == SyncMode::Always
    }

    fn writable(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Marks the WAL unusable after a failed write; returns the error.
    fn poison(&mut self, e: WalError) -> WalError {
        self.poisoned = true;
        e
    }

    /// Makes room for `bytes` more in the pending frame, beginning it if needed.
    fn reserve(&mut self, bytes: u64) -> Result<(), WalError> {
        let body = self.pending.len().saturating_sub(FRAME_HEADER) as u64;
        if body + bytes > MAX_BODY {
            return Err(WalError::TooLarge(body + bytes));
        }
        if self.pending.is_empty() {
            codec::begin_frame(&mut self.pending);
        }
        Ok(())
    }

    fn append_entries(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.writable()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index > self.state.last_index() + 1 {
            return Err(StorageError::Unavailable(first.index));
        }
        if let Some(w) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            let msg = format!("entries not contiguous: {} then {}", w[0].index, w[1].index);
            return Err(WalError::Invalid(msg).into());
        }
        // Entries the snapshot already covers are committed: skip them.
        let skip = self.state.first_index().saturating_sub(first.index);
        let entries = entries.get(skip as usize..).unwrap_or(&[]);
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut bytes = 0u64;
        for e in entries {
            let len = (ENTRY_HEADER + e.data.len()) as u64;
            if len > MAX_BODY {
                return Err(WalError::TooLarge(len).into());
            }
            bytes += len;
        }
        self.reserve(bytes)?;
        self.state.truncate_from(first.index);
        for e in entries {
            let off = self.pending.len() as u64;
            codec::put_entry(&mut self.pending, e);
            let len = (self.pending.len() as u64 - off) as u32;
            self.state.slots.push_back(Slot {
                term: e.term,
                seg: PENDING,
                off,
                len,
            });
        }
        self.cache.append(entries);
        Ok(())
    }

    fn put_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.writable()?;
        self.reserve(32)?;
        codec::put_hard_state(&mut self.pending, hs);
        self.state.hard_state = *hs;
        Ok(())
    }

    fn put_snapshot(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        self.writable()?;
        let (index, current) = (snap.meta.index, self.state.snap.meta.index);
        if index < current {
            return Err(StorageError::SnapshotOutOfDate {
                offered: index,
                stored: current,
            });
        }
        self.reserve(64)?;
        let keep = self.state.term(index) == Some(snap.meta.term);
        let sync = self.syncs();
        let r = match self.staged.take() {
            // Written and synced by a `SnapshotWriter`: name it and record it.
            Some(st) if st.r.meta == snap.meta && st.conf == snap.conf => {
                snapfile::promote(&self.fs, &self.dir, st.r.seq, st.instance, sync)
                    .map_err(|e| self.poison(e))?;
                st.r
            }
            other => {
                if let Some(st) = other {
                    warn!(
                        staged = ?st.r.meta,
                        offered = ?snap.meta,
                        "WAL: the staged snapshot file is not this snapshot; writing it here"
                    );
                    self.remove_staged(&st);
                }
                let seq = self.reserve_snap_seq()?;
                snapfile::write(&self.fs, &self.dir, seq, snap, sync).map_err(|e| self.poison(e))?
            }
        };
        codec::put_snapshot(&mut self.pending, &r, keep);
        self.snap_conf = snap.conf.clone();
        let old = self.state.snap.seq;
        self.state
            .put_snapshot(r, keep)
            .map_err(|e| WalError::Invalid(e.to_owned()))?;
        if keep {
            self.cache.drop_through(index);
        } else {
            self.cache.clear();
        }
        if old != 0 {
            self.replaced.push(old);
        }
        Ok(())
    }

    /// Writes the pending frame with one write and one fsync, then rolls
    /// and compacts segments if due.
    fn flush(&mut self) -> Result<(), WalError> {
        self.writable()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        codec::finish_frame(&mut self.pending, 0);
        let sync = self.syncs();
        let Some(seg) = self.segments.back_mut() else {
            return Err(WalError::Invalid("no active segment".into()));
        };
        let base = seg.len;
        let written = seg
            .file
            .write_all_at(&self.pending, base)
            .map_err(WalError::io("write", &seg.path))
            .and_then(|()| match sync {
                true => seg.file.sync().map_err(WalError::io("fsync", &seg.path)),
                false => Ok(()),
            });
        if let Err(e) = written {
            // Cut what this frame may have left in the file: after a failed
            // write or fsync its bytes may sit in the page cache without
            // being on disk, and a reopen in this process must not read them
            // as synced. (If even the cut fails, a restart's recovery sees a
            // torn tail or a whole frame nobody was told of; both are safe.)
            if let Err(cut) = seg.file.set_len(base) {
                warn!(path = %seg.path.display(), error = %cut, "WAL: could not cut a failed write");
            }
            return Err(self.poison(e));
        }
        seg.len += self.pending.len() as u64;
        let (seq, full) = (seg.seq, seg.len >= self.opts.segment_bytes);
        for slot in self.state.slots.iter_mut().rev() {
            if slot.seg != PENDING {
                break;
            }
            slot.seg = seq;
            slot.off += base;
        }
        if self.pending.capacity() > KEEP_BUFFER {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        // The new snapshot record is durable: the files it replaced can go.
        for s in std::mem::take(&mut self.replaced) {
            let path = self.dir.join(snapfile::file_name(s));
            if let Err(e) = self.fs.remove(&path) {
                warn!(path = %path.display(), error = %e, "WAL: could not remove an old snapshot");
            }
        }
        if full {
            self.roll().map_err(|e| self.poison(e))?;
        }
        self.compact();
        Ok(())
    }

    /// Starts a new segment with a checkpoint of the (now durable) state.
    fn roll(&mut self) -> Result<(), WalError> {
        let last = self.segments.back().map_or(0, |s| s.seq);
        let next = last
            .checked_add(1)
            .ok_or_else(|| WalError::Invalid("segment numbers exhausted".into()))?;
        let cp = Checkpoint {
            segment: next,
            hard_state: self.state.hard_state,
            snapshot: self.state.snap,
            last_index: self.state.last_index(),
        };
        let seg = segment::create(&self.fs, &self.dir, &cp, self.syncs())?;
        self.segments.push_back(seg);
        Ok(())
    }

    /// Removes whole segments that hold no live entry, oldest first. Their
    /// removal need not be durable: a resurrected one replays to the same state.
    fn compact(&mut self) {
        let Some(active) = self.segments.back().map(|s| s.seq) else {
            return;
        };
        let keep_from = self
            .state
            .slots
            .front()
            .map_or(active, |s| s.seg)
            .min(active);
        while let Some(seg) = self.segments.front() {
            if seg.seq >= keep_from {
                break;
            }
            if let Err(e) = self.fs.remove(&seg.path) {
                warn!(path = %seg.path.display(), error = %e, "WAL: could not remove a compacted segment");
                break;
            }
            self.segments.pop_front();
        }
    }
}

impl<F: Vfs> raft_core::Storage for Wal<F> {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        Ok(self.state.hard_state)
    }

    fn first_index(&self) -> u64 {
        self.state.first_index()
    }

    fn last_index(&self) -> u64 {
        self.state.last_index()
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index < self.state.snap.meta.index {
            return Err(StorageError::Compacted(index));
        }
        self.state
            .term(index)
            .ok_or(StorageError::Unavailable(index))
    }

    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(lo, hi, max_bytes)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(snapfile::read(&self.fs, &self.dir, &self.state.snap)?)
    }

    fn snapshot_conf(&self) -> Result<raft_core::ConfState, StorageError> {
        Ok(self.snap_conf.clone())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.append_entries(entries)
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.put_hard_state(hs)
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.put_snapshot(snapshot)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(self.flush()?)
    }
}

impl<F: Vfs> fmt::Debug for Wal<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("first_index", &self.state.first_index())
            .field("last_index", &self.state.last_index())
            .field("hard_state", &self.state.hard_state)
            .field("snapshot", &self.state.snap.meta)
            .field("segments", &self.segments.len())
            .field("pending_bytes", &self.pending.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}
