//! Reading entries: from the cache of recent entries, from the unflushed
//! batch, or from disk with one positional read per run of adjacent records.

use raft_core::{Entry, Index, StorageError};

use crate::codec;
use crate::error::WalError;
use crate::state::{Slot, PENDING};
use crate::vfs::{Vfs, VfsFile};
use crate::wal::Wal;

/// Records in one read may be separated by at most this many other bytes
/// (frame headers, hard-state items, overwritten entries)...
const MAX_GAP: u64 = 4 << 10;
/// ...and one read spans at most this much.
const MAX_SPAN: u64 = 4 << 20;

impl<F: Vfs> Wal<F> {
    /// `Storage::entries`: `[lo, hi)`, cut after `max_bytes` but at least one.
    pub(crate) fn read_entries(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if lo < self.state.first_index() {
            return Err(StorageError::Compacted(lo));
        }
        if hi > self.state.last_index() + 1 {
            return Err(StorageError::Unavailable(hi - 1));
        }
        let mut size = 0u64;
        let mut end = lo;
        while end < hi {
            let Some(slot) = self.state.slot(end) else {
                break;
            };
            size += slot.entry_size();
            if end > lo && size > max_bytes {
                break;
            }
            end += 1;
        }
        let mut out = Vec::with_capacity((end - lo) as usize);
        let mut i = lo;
        while i < end {
            if let Some(e) = self.cache.get(i) {
                out.push(e.clone());
                i += 1;
                continue;
            }
            let slot = *self.slot(i)?;
            if slot.seg == PENDING {
                out.push(self.decode(&self.pending, slot.off, &slot, i)?);
                i += 1;
                continue;
            }
            let n = self.read_run(i, end, &slot, &mut out)?;
            i += n;
        }
        Ok(out)
    }

    fn slot(&self, index: Index) -> Result<&Slot, WalError> {
        self.state
            .slot(index)
            .ok_or_else(|| WalError::Invalid(format!("no slot for index {index}")))
    }

    /// Reads entries from `i` (at `first`) while they lie close together in
    /// the same segment and are not cached; returns how many it read.
    fn read_run(
        &self,
        i: Index,
        end: Index,
        first: &Slot,
        out: &mut Vec<Entry>,
    ) -> Result<u64, WalError> {
        let mut n = 1;
        let mut span_end = first.off + u64::from(first.len);
        while i + n < end && self.cache.get(i + n).is_none() {
            let s = self.slot(i + n)?;
            let s_end = s.off + u64::from(s.len);
            if s.seg != first.seg
                || s.off < span_end
                || s.off - span_end > MAX_GAP
                || s_end - first.off > MAX_SPAN
            {
                break;
            }
            span_end = s_end;
            n += 1;
        }
        let seg = self
            .segments
            .front()
            .and_then(|f| first.seg.checked_sub(f.seq))
            .and_then(|k| self.segments.get(usize::try_from(k).ok()?))
            .filter(|s| s.seq == first.seg)
            .ok_or_else(|| WalError::Invalid(format!("segment {} is not open", first.seg)))?;
        let mut buf = vec![0u8; (span_end - first.off) as usize];
        seg.file
            .read_exact_at(&mut buf, first.off)
            .map_err(WalError::io("read", &seg.path))?;
        for k in 0..n {
            let s = self.slot(i + k)?;
            let e = self
                .decode(&buf, s.off - first.off, s, i + k)
                .map_err(|e| match e {
                    WalError::Corrupt { reason, .. } => WalError::corrupt(&seg.path, s.off, reason),
                    other => other,
                })?;
            out.push(e);
        }
        Ok(n)
    }

    /// Decodes the entry item at `at` in `buf`, checking it is `index`.
    fn decode(&self, buf: &[u8], at: u64, slot: &Slot, index: Index) -> Result<Entry, WalError> {
        let bad = |reason: &str| WalError::corrupt(&self.dir, at, reason);
        let bytes = usize::try_from(at)
            .ok()
            .and_then(|a| buf.get(a..a + slot.len as usize))
            .ok_or_else(|| bad("entry lies outside the buffer"))?;
        let e = codec::decode_entry(bytes).map_err(bad)?;
        if e.index != index || e.term != slot.term {
            return Err(bad("the entry stored here is not the one indexed"));
        }
        Ok(e)
    }
}
