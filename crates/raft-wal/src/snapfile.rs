//! Snapshot files: written to a temp file, synced, renamed into place and
//! the directory synced, so a crash leaves either no new file or a whole one.
//! The WAL's snapshot record (written after) is what makes it current.
//!
//! ```text
//! snap-<seq>.snap = "RKVSNAP1" | seq u64 | index u64 | term u64 | len u64
//!                   | data crc u32 | header crc u32 | data[len]
//! ```

use std::io;
use std::path::{Path, PathBuf};

use raft_core::{Snapshot, SnapshotMeta};

use crate::codec::SnapRef;
use crate::error::WalError;
use crate::vfs::{write_new_file, Vfs, VfsFile};

const MAGIC: &[u8; 8] = b"RKVSNAP1";
/// Bytes before the snapshot data.
pub(crate) const HEADER: usize = 48;

/// File name of the snapshot with sequence number `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("snap-{seq:020}.snap")
}

/// Sequence number of a snapshot file name, if it is one; `tmp` tells
/// whether it is a leftover temp file.
pub(crate) fn parse_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("snap-")?;
    let (seq, tmp) = if let Some(s) = rest.strip_suffix(".snap") {
        (s, false)
    } else {
        (rest.strip_suffix(".snap.tmp")?, true)
    };
    if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seq.parse().ok()?, tmp))
}

fn header(r: &SnapRef) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&r.seq.to_le_bytes());
    h[16..24].copy_from_slice(&r.meta.index.to_le_bytes());
    h[24..32].copy_from_slice(&r.meta.term.to_le_bytes());
    h[32..40].copy_from_slice(&r.len.to_le_bytes());
    h[40..44].copy_from_slice(&r.crc.to_le_bytes());
    let crc = crc32c::crc32c(&h[..44]);
    h[44..48].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Writes `snap` as snapshot number `seq` (temp file, fsync, rename, fsync
/// of the directory; the fsyncs only when `sync`).
pub(crate) fn write<F: Vfs>(
    fs: &F,
    dir: &Path,
    seq: u64,
    snap: &Snapshot,
    sync: bool,
) -> Result<SnapRef, WalError> {
    if !snap.meta.matches(&snap.data) {
        return Err(WalError::Invalid(format!(
            "snapshot at index {} does not match its length and checksum",
            snap.meta.index
        )));
    }
    let r = SnapRef {
        seq,
        meta: snap.meta,
        len: snap.meta.size,
        crc: snap.meta.crc,
    };
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    let mut buf = Vec::with_capacity(HEADER + snap.data.len());
    buf.extend_from_slice(&header(&r));
    buf.extend_from_slice(&snap.data);
    write_new_file(fs, dir, &tmp, &path, &buf, sync)?;
    Ok(r)
}

/// Reads and verifies the snapshot `r` refers to.
pub(crate) fn read<F: Vfs>(fs: &F, dir: &Path, r: &SnapRef) -> Result<Snapshot, WalError> {
    if r.seq == 0 {
        return Ok(Snapshot {
            meta: r.meta,
            data: Vec::new(),
        });
    }
    let path: PathBuf = dir.join(file_name(r.seq));
    let file = match fs.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(WalError::MissingSnapshot(path))
        }
        Err(e) => return Err(WalError::io("open", &path)(e)),
    };
    let size = file.size().map_err(WalError::io("stat", &path))?;
    let Some(expected) = (HEADER as u64).checked_add(r.len) else {
        return Err(WalError::corrupt(
            &path,
            0,
            format!("the log gives an impossible snapshot length {}", r.len),
        ));
    };
    if size != expected {
        return Err(WalError::corrupt(
            &path,
            0,
            format!("snapshot file is {size} bytes, expected {expected}"),
        ));
    }
    let mut h = [0u8; HEADER];
    file.read_exact_at(&mut h, 0)
        .map_err(WalError::io("read", &path))?;
    if h != header(r) {
        return Err(WalError::corrupt(
            &path,
            0,
            "snapshot header does not match the log",
        ));
    }
    let len = usize::try_from(r.len).map_err(|_| WalError::TooLarge(r.len))?;
    let mut data = vec![0u8; len];
    file.read_exact_at(&mut data, HEADER as u64)
        .map_err(WalError::io("read", &path))?;
    if crc32c::crc32c(&data) != r.crc {
        return Err(WalError::corrupt(
            &path,
            HEADER as u64,
            "snapshot data checksum mismatch",
        ));
    }
    Ok(Snapshot {
        meta: SnapshotMeta::of(r.meta.index, r.meta.term, &data),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(42)), Some((42, false)));
        assert_eq!(
            parse_name(&format!("{}.tmp", file_name(7))),
            Some((7, true))
        );
        assert_eq!(parse_name("snap-12.snap"), None);
        assert_eq!(parse_name("LOCK"), None);
    }
}
