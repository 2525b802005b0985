//! Byte layout of WAL records (see docs/WAL.md): frames, and the items
//! inside a frame. All integers are little-endian.
//!
//! ```text
//! frame  = magic "RKW1" (4) | body length (u32) | crc32c(length ‖ body) (u32) | body
//! body   = item*
//! item   = 1 Entry      index u64, term u64, kind u8, len u32, crc u32, data[len]
//!        | 2 HardState  term u64, has_vote u8, vote u64, commit u64
//!        | 3 Snapshot   seq u64, index u64, term u64, len u64, data crc u32, keep u8
//!        | 4 Checkpoint segment u64, HardState fields, Snapshot fields (no keep), last index u64
//! ```
//!
//! An entry carries its own CRC (over its header fields and data) so that a
//! single entry read from disk later can be verified without its frame.

use raft_core::{Entry, EntryKind, HardState, Index, SnapshotMeta};

/// First bytes of every frame; zeros or stale data never start with it.
pub(crate) const FRAME_MAGIC: [u8; 4] = *b"RKW1";
/// Bytes of a frame header.
pub(crate) const FRAME_HEADER: usize = 12;
/// Bytes of an entry item before its data.
pub(crate) const ENTRY_HEADER: usize = 26;

const TAG_ENTRY: u8 = 1;
const TAG_HARD_STATE: u8 = 2;
const TAG_SNAPSHOT: u8 = 3;
const TAG_CHECKPOINT: u8 = 4;

/// Which snapshot file holds the snapshot, and how to check it. `seq` 0
/// means "no snapshot" (the empty snapshot at index 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapRef {
    pub seq: u64,
    pub meta: SnapshotMeta,
    pub len: u64,
    pub crc: u32,
}

/// The state at the start of a segment, so that older segments can go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub segment: u64,
    pub hard_state: HardState,
    pub snapshot: SnapRef,
    pub last_index: Index,
}

/// A decoded item; entries borrow their data from the frame body.
#[derive(Debug)]
pub(crate) enum Item<'a> {
    Entry {
        index: Index,
        term: u64,
        kind: EntryKind,
        data: &'a [u8],
    },
    HardState(HardState),
    Snapshot {
        snap: SnapRef,
        keep: bool,
    },
    Checkpoint(Checkpoint),
}

/// Starts a frame in `buf`; returns its start for [`finish_frame`].
pub(crate) fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Fills in the header of the frame that starts at `start` and runs to the
/// end of `buf`. The caller checks that the body fits in a u32.
pub(crate) fn finish_frame(buf: &mut [u8], start: usize) {
    let body_len = (buf.len() - start - FRAME_HEADER) as u32;
    let len = body_len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&FRAME_MAGIC);
    buf[start + 4..start + 8].copy_from_slice(&len);
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// The body length a frame header announces, if its magic is right.
pub(crate) fn frame_len(header: &[u8; FRAME_HEADER]) -> Option<u32> {
    if header[..4] != FRAME_MAGIC {
        return None;
    }
    Some(u32::from_le_bytes([
        header[4], header[5], header[6], header[7],
    ]))
}

/// Whether `body` matches the CRC in `header`.
pub(crate) fn frame_crc_ok(header: &[u8; FRAME_HEADER], body: &[u8]) -> bool {
    let want = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    crc32c::crc32c_append(crc32c::crc32c(&header[4..8]), body) == want
}

fn kind_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => 0,
        EntryKind::Noop => 1,
        EntryKind::Config => 2,
    }
}

/// Appends an entry item; the caller checks `data.len()` fits in a u32.
pub(crate) fn put_entry(buf: &mut Vec<u8>, e: &Entry) {
    let start = buf.len();
    buf.push(TAG_ENTRY);
    buf.extend_from_slice(&e.index.to_le_bytes());
    buf.extend_from_slice(&e.term.to_le_bytes());
    buf.push(kind_byte(e.kind));
    buf.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[start + 1..]), &e.data);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&e.data);
}

fn put_hs(buf: &mut Vec<u8>, hs: &HardState) {
    buf.extend_from_slice(&hs.term.to_le_bytes());
    buf.push(u8::from(hs.vote.is_some()));
    buf.extend_from_slice(&hs.vote.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&hs.commit.to_le_bytes());
}

fn put_snap(buf: &mut Vec<u8>, s: &SnapRef) {
    buf.extend_from_slice(&s.seq.to_le_bytes());
    buf.extend_from_slice(&s.meta.index.to_le_bytes());
    buf.extend_from_slice(&s.meta.term.to_le_bytes());
    buf.extend_from_slice(&s.len.to_le_bytes());
    buf.extend_from_slice(&s.crc.to_le_bytes());
}

/// Appends a hard-state item.
pub(crate) fn put_hard_state(buf: &mut Vec<u8>, hs: &HardState) {
    buf.push(TAG_HARD_STATE);
    put_hs(buf, hs);
}

/// Appends a snapshot item: the log now starts after `snap`, keeping the
/// entries that follow it when `keep`.
pub(crate) fn put_snapshot(buf: &mut Vec<u8>, snap: &SnapRef, keep: bool) {
    buf.push(TAG_SNAPSHOT);
    put_snap(buf, snap);
    buf.push(u8::from(keep));
}

/// Appends a checkpoint item.
pub(crate) fn put_checkpoint(buf: &mut Vec<u8>, c: &Checkpoint) {
    buf.push(TAG_CHECKPOINT);
    buf.extend_from_slice(&c.segment.to_le_bytes());
    put_hs(buf, &c.hard_state);
    put_snap(buf, &c.snapshot);
    buf.extend_from_slice(&c.last_index.to_le_bytes());
}

/// Reads fields off a byte slice; every read is bounds-checked.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Why bytes could not be decoded.
pub(crate) type DecodeError = &'static str;

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// Offset of the next unread byte.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let out = self.buf.get(self.pos..end).ok_or("record ends early")?;
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bad flag byte"),
        }
    }

    fn hs(&mut self) -> Result<HardState, DecodeError> {
        let term = self.u64()?;
        let has_vote = self.flag()?;
        let vote = self.u64()?;
        let commit = self.u64()?;
        Ok(HardState {
            term,
            vote: has_vote.then_some(vote),
            commit,
        })
    }

    fn snap(&mut self) -> Result<SnapRef, DecodeError> {
        let seq = self.u64()?;
        let index = self.u64()?;
        let term = self.u64()?;
        let len = self.u64()?;
        let crc = self.u32()?;
        Ok(SnapRef {
            seq,
            meta: SnapshotMeta {
                index,
                term,
                size: len,
                crc,
            },
            len,
            crc,
        })
    }

    /// Decodes the next item, verifying an entry's own CRC.
    pub(crate) fn item(&mut self) -> Result<Item<'a>, DecodeError> {
        match self.u8()? {
            TAG_ENTRY => {
                let head = self.bytes(ENTRY_HEADER - 5)?;
                let mut d = Decoder::new(head);
                let index = d.u64()?;
                let term = d.u64()?;
                let kind = match d.u8()? {
                    0 => EntryKind::Normal,
                    1 => EntryKind::Noop,
                    2 => EntryKind::Config,
                    _ => return Err("unknown entry kind"),
                };
                let len = d.u32()? as usize;
                let crc = self.u32()?;
                let data = self.bytes(len)?;
                if crc32c::crc32c_append(crc32c::crc32c(head), data) != crc {
                    return Err("entry checksum mismatch");
                }
                Ok(Item::Entry {
                    index,
                    term,
                    kind,
                    data,
                })
            }
            TAG_HARD_STATE => Ok(Item::HardState(self.hs()?)),
            TAG_SNAPSHOT => {
                let snap = self.snap()?;
                let keep = self.flag()?;
                Ok(Item::Snapshot { snap, keep })
            }
            TAG_CHECKPOINT => Ok(Item::Checkpoint(Checkpoint {
                segment: self.u64()?,
                hard_state: self.hs()?,
                snapshot: self.snap()?,
                last_index: self.u64()?,
            })),
            _ => Err("unknown item tag"),
        }
    }
}

/// Decodes one entry item that fills `buf` exactly (a read from disk).
pub(crate) fn decode_entry(buf: &[u8]) -> Result<Entry, DecodeError> {
    let mut d = Decoder::new(buf);
    match d.item()? {
        Item::Entry {
            index,
            term,
            kind,
            data,
        } if d.is_done() => Ok(Entry {
            index,
            term,
            kind,
            data: raft_core::Bytes::copy_from_slice(data),
        }),
        _ => Err("not a single entry item"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let mut buf = Vec::new();
        let start = begin_frame(&mut buf);
        let e = Entry::normal(7, 3, b"hello".to_vec());
        put_entry(&mut buf, &e);
        let hs = HardState {
            term: 3,
            vote: Some(2),
            commit: 5,
        };
        put_hard_state(&mut buf, &hs);
        let snap = SnapRef {
            seq: 4,
            meta: SnapshotMeta {
                index: 6,
                term: 2,
                size: 10,
                crc: 99,
            },
            len: 10,
            crc: 99,
        };
        put_snapshot(&mut buf, &snap, true);
        let cp = Checkpoint {
            segment: 9,
            hard_state: hs,
            snapshot: snap,
            last_index: 7,
        };
        put_checkpoint(&mut buf, &cp);
        finish_frame(&mut buf, start);

        let mut header = [0; FRAME_HEADER];
        header.copy_from_slice(&buf[..FRAME_HEADER]);
        let len = frame_len(&header).unwrap() as usize;
        let body = &buf[FRAME_HEADER..];
        assert_eq!(len, body.len());
        assert!(frame_crc_ok(&header, body));
        let mut d = Decoder::new(body);
        assert!(matches!(
            d.item().unwrap(),
            Item::Entry {
                index: 7,
                term: 3,
                data: b"hello",
                ..
            }
        ));
        assert!(matches!(d.item().unwrap(), Item::HardState(h) if h == hs));
        assert!(matches!(d.item().unwrap(), Item::Snapshot { snap: s, keep: true } if s == snap));
        assert!(matches!(d.item().unwrap(), Item::Checkpoint(c) if c == cp));
        assert!(d.is_done());
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let mut buf = Vec::new();
        put_entry(&mut buf, &Entry::normal(1, 1, vec![1, 2, 3]));
        assert_eq!(decode_entry(&buf).unwrap().data, vec![1, 2, 3]);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode_entry(&bad).is_err(), "flip at {i} went unnoticed");
            assert!(decode_entry(&buf[..i]).is_err());
        }
    }
}
