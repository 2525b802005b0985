//! Snapshot files: written to a temp file, synced, renamed into place and
//! the directory synced, so a crash leaves either no new file or a whole one.
//! The WAL's snapshot record (written after) is what makes it current.
//!
//! ```text
//! snap-<seq>.snap = "RKVSNAP2" | seq u64 | index u64 | term u64 | len u64
//!                   | data crc u32 | header crc u32
//!                   | conf len u32 | conf crc u32 | conf[conf len] | data[len]
//! conf            = 3 × (count u32 | id u64 × count): voters, learners,
//!                   outgoing voters
//! ```
//!
//! Files written before configurations were stored ("RKVSNAP1": the header
//! then the data) are still read; their configuration is empty, which the
//! core reads as "the bootstrap voters".

use std::io;
use std::path::{Path, PathBuf};

use raft_core::{ConfState, Snapshot, SnapshotMeta};

use crate::codec::SnapRef;
use crate::error::WalError;
use crate::vfs::{rename_synced, write_file, write_new_file, Vfs, VfsFile};

const MAGIC_V1: &[u8; 8] = b"RKVSNAP1";
const MAGIC: &[u8; 8] = b"RKVSNAP2";
/// Bytes of the fixed header.
pub(crate) const HEADER: usize = 48;
/// Bytes of the configuration block's own header (length, CRC).
const CONF_HEADER: usize = 8;
/// The most ids a stored configuration may list (a bound on what a damaged
/// length can make us allocate).
const MAX_CONF_IDS: usize = 1 << 16;

/// File name of the snapshot with sequence number `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("snap-{seq:020}.snap")
}

/// File name of snapshot `seq` staged by WAL instance `instance` (see
/// [`write_staged`]): it becomes [`file_name`]`(seq)` only when that
/// instance records it, so no other instance's file can ever be touched.
pub(crate) fn staged_name(seq: u64, instance: u64) -> String {
    format!("snap-{seq:020}.{instance}.staged")
}

/// Sequence number of a snapshot file name, if it is one; `tmp` tells
/// whether it is a leftover (a temp file, or a staged file never recorded).
pub(crate) fn parse_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("snap-")?;
    let (seq, tmp) = if let Some(s) = rest.strip_suffix(".snap") {
        (s, false)
    } else if let Some(s) = rest.strip_suffix(".staged") {
        let (seq, instance) = s.split_once('.')?;
        if instance.is_empty() || !instance.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (seq, true)
    } else {
        (rest.strip_suffix(".snap.tmp")?, true)
    };
    if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seq.parse().ok()?, tmp))
}

fn header(r: &SnapRef, magic: &[u8; 8]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(magic);
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
    check(snap)?;
    let (r, buf) = encode(seq, snap);
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    write_new_file(fs, dir, &tmp, &path, &buf, sync)?;
    Ok(r)
}

/// Refuses a snapshot whose data does not match its length and checksum.
fn check(snap: &Snapshot) -> Result<(), WalError> {
    if snap.meta.matches(&snap.data) {
        return Ok(());
    }
    Err(WalError::Invalid(format!(
        "snapshot at index {} does not match its length and checksum",
        snap.meta.index
    )))
}

/// The file's bytes for `snap` as number `seq`.
fn encode(seq: u64, snap: &Snapshot) -> (SnapRef, Vec<u8>) {
    let r = SnapRef {
        seq,
        meta: snap.meta,
        len: snap.meta.size,
        crc: snap.meta.crc,
    };
    let conf = encode_conf(&snap.conf);
    let mut buf = Vec::with_capacity(HEADER + CONF_HEADER + conf.len() + snap.data.len());
    buf.extend_from_slice(&header(&r, MAGIC));
    buf.extend_from_slice(&(conf.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&conf).to_le_bytes());
    buf.extend_from_slice(&conf);
    buf.extend_from_slice(&snap.data);
    (r, buf)
}

/// Writes `snap` as number `seq` under its staged name for WAL instance
/// `instance` (and fsyncs it when `sync`). A failed write removes what it
/// left, so a full disk gets its room back at once.
pub(crate) fn write_staged<F: Vfs>(
    fs: &F,
    dir: &Path,
    seq: u64,
    instance: u64,
    snap: &Snapshot,
    sync: bool,
) -> Result<SnapRef, WalError> {
    check(snap)?;
    let (r, buf) = encode(seq, snap);
    let path = dir.join(staged_name(seq, instance));
    if let Err(e) = write_file(fs, &path, &buf, sync) {
        let _ = fs.remove(&path);
        return Err(e);
    }
    Ok(r)
}

/// Gives staged file `seq` of `instance` its snapshot name (and fsyncs the
/// directory when `sync`): after this, a log record may name it.
pub(crate) fn promote<F: Vfs>(
    fs: &F,
    dir: &Path,
    seq: u64,
    instance: u64,
    sync: bool,
) -> Result<(), WalError> {
    let staged = dir.join(staged_name(seq, instance));
    rename_synced(fs, dir, &staged, &dir.join(file_name(seq)), sync)
}

/// Reads and verifies the snapshot `r` refers to.
pub(crate) fn read<F: Vfs>(fs: &F, dir: &Path, r: &SnapRef) -> Result<Snapshot, WalError> {
    if r.seq == 0 {
        return Ok(Snapshot {
            meta: r.meta,
            conf: ConfState::default(),
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
    let corrupt = |offset, why: String| WalError::corrupt(&path, offset, why);
    let mut h = [0u8; HEADER];
    if size < HEADER as u64 {
        return Err(corrupt(0, format!("snapshot file is only {size} bytes")));
    }
    file.read_exact_at(&mut h, 0)
        .map_err(WalError::io("read", &path))?;
    let (conf, data_at) = if h == header(r, MAGIC) {
        let mut ch = [0u8; CONF_HEADER];
        file.read_exact_at(&mut ch, HEADER as u64)
            .map_err(WalError::io("read", &path))?;
        let len = u32::from_le_bytes(ch[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(ch[4..].try_into().expect("4 bytes"));
        if len > 12 + 8 * MAX_CONF_IDS {
            return Err(corrupt(
                HEADER as u64,
                format!("configuration of {len} bytes"),
            ));
        }
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, (HEADER + CONF_HEADER) as u64)
            .map_err(WalError::io("read", &path))?;
        let conf = (crc32c::crc32c(&bytes) == crc)
            .then(|| decode_conf(&bytes))
            .flatten()
            .ok_or_else(|| corrupt(HEADER as u64, "snapshot configuration is damaged".into()))?;
        (conf, (HEADER + CONF_HEADER + len) as u64)
    } else if h == header(r, MAGIC_V1) {
        (ConfState::default(), HEADER as u64)
    } else {
        return Err(corrupt(0, "snapshot header does not match the log".into()));
    };
    let Some(expected) = data_at.checked_add(r.len) else {
        return Err(corrupt(
            0,
            format!("the log gives an impossible snapshot length {}", r.len),
        ));
    };
    if size != expected {
        return Err(corrupt(
            0,
            format!("snapshot file is {size} bytes, expected {expected}"),
        ));
    }
    let len = usize::try_from(r.len).map_err(|_| WalError::TooLarge(r.len))?;
    let mut data = vec![0u8; len];
    file.read_exact_at(&mut data, data_at)
        .map_err(WalError::io("read", &path))?;
    if crc32c::crc32c(&data) != r.crc {
        return Err(corrupt(data_at, "snapshot data checksum mismatch".into()));
    }
    Ok(Snapshot {
        meta: SnapshotMeta::of(r.meta.index, r.meta.term, &data),
        conf,
        data,
    })
}

fn encode_conf(conf: &ConfState) -> Vec<u8> {
    let mut out = Vec::new();
    for list in [&conf.voters, &conf.learners, &conf.voters_outgoing] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for id in list {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

fn decode_conf(mut bytes: &[u8]) -> Option<ConfState> {
    let mut lists = Vec::with_capacity(3);
    for _ in 0..3 {
        let (n, rest) = bytes.split_at_checked(4)?;
        let n = u32::from_le_bytes(n.try_into().ok()?) as usize;
        let (ids, rest) = rest.split_at_checked(n.checked_mul(8)?)?;
        lists.push(
            ids.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect::<Vec<u64>>(),
        );
        bytes = rest;
    }
    let outgoing = lists.pop()?;
    let learners = lists.pop()?;
    let voters = lists.pop()?;
    bytes.is_empty().then_some(ConfState {
        voters,
        learners,
        voters_outgoing: outgoing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_round_trip() {
        let conf = ConfState {
            voters: vec![1, 2, 4],
            learners: vec![7],
            voters_outgoing: vec![1, 2, 3],
        };
        assert_eq!(decode_conf(&encode_conf(&conf)), Some(conf.clone()));
        let bytes = encode_conf(&conf);
        assert_eq!(decode_conf(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_conf(&[0xff; 12]), None);
    }

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
