//! Segment files: naming, creation (each starts with a checkpoint frame) and
//! reading frames back during recovery.

use std::io;
use std::path::{Path, PathBuf};

use crate::codec::{self, Checkpoint, FRAME_HEADER, FRAME_MAGIC};
use crate::error::WalError;
use crate::vfs::{write_new_file, Vfs, VfsFile};

/// One segment file of the log.
#[derive(Debug)]
pub(crate) struct Segment<Fi> {
    pub seq: u64,
    pub path: PathBuf,
    pub file: Fi,
    /// Bytes handed to the OS so far (the next frame goes here).
    pub len: u64,
}

/// File name of segment `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// Name of segment `seq` while it is being created.
pub(crate) fn temp_name(seq: u64) -> String {
    format!("{}.tmp", file_name(seq))
}

/// Sequence number of a segment temp file name, if it is one.
pub(crate) fn parse_temp_name(name: &str) -> Option<u64> {
    parse_name(name.strip_suffix(".tmp")?)
}

/// Sequence number of a segment file name, if it is one.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let seq = name.strip_suffix(".wal")?;
    if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

/// Creates segment `seq` holding only the checkpoint `cp`, durably, so that
/// every segment before it may go: the checkpoint is written to a temp file,
/// fsynced, and only then renamed into place and the directory fsynced (the
/// fsyncs only when `sync`). A segment under its final name therefore always
/// starts with a durable checkpoint; a crash leaves at most a temp file.
pub(crate) fn create<F: Vfs>(
    fs: &F,
    dir: &Path,
    cp: &Checkpoint,
    sync: bool,
) -> Result<Segment<F::File>, WalError> {
    let path = dir.join(file_name(cp.segment));
    let tmp = dir.join(temp_name(cp.segment));
    let mut buf = Vec::with_capacity(128);
    let start = codec::begin_frame(&mut buf);
    codec::put_checkpoint(&mut buf, cp);
    codec::finish_frame(&mut buf, start);
    let file = write_new_file(fs, dir, &tmp, &path, &buf, sync)?;
    Ok(Segment {
        seq: cp.segment,
        path,
        file,
        len: buf.len() as u64,
    })
}

/// What was found at a position of a segment.
pub(crate) enum Frame {
    /// A whole frame with a good checksum; its body.
    Good(Vec<u8>),
    /// The end of the file.
    End,
    /// Something that is not a good frame, and why.
    Bad(&'static str),
}

/// Sequential reader over one segment with read-ahead, for recovery.
pub(crate) struct Reader<'a, Fi> {
    file: &'a Fi,
    size: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

const READ_AHEAD: u64 = 1 << 20;

impl<'a, Fi: VfsFile> Reader<'a, Fi> {
    pub fn new(file: &'a Fi, size: u64) -> Self {
        Reader {
            file,
            size,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    /// `n` bytes at `pos`; the caller ensures `pos + n <= size`.
    fn bytes(&mut self, pos: u64, n: u64) -> io::Result<&[u8]> {
        let end = pos + n;
        if pos < self.buf_at || end > self.buf_at + self.buf.len() as u64 {
            let want = n.max(READ_AHEAD).min(self.size - pos);
            let len = usize::try_from(want).map_err(|_| io::ErrorKind::OutOfMemory)?;
            self.buf.resize(len, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_at = pos;
        }
        let from = (pos - self.buf_at) as usize;
        Ok(&self.buf[from..from + n as usize])
    }

    /// Reads the frame at `pos`.
    pub fn frame(&mut self, pos: u64) -> io::Result<Frame> {
        if pos >= self.size {
            return Ok(Frame::End);
        }
        if self.size - pos < FRAME_HEADER as u64 {
            return Ok(Frame::Bad("frame header cut short"));
        }
        let mut header = [0u8; FRAME_HEADER];
        header.copy_from_slice(self.bytes(pos, FRAME_HEADER as u64)?);
        let Some(len) = codec::frame_len(&header) else {
            return Ok(Frame::Bad("no frame magic"));
        };
        let body_at = pos + FRAME_HEADER as u64;
        if u64::from(len) > self.size - body_at {
            return Ok(Frame::Bad("frame runs past the end of the file"));
        }
        let body = self.bytes(body_at, u64::from(len))?;
        if !codec::frame_crc_ok(&header, body) {
            return Ok(Frame::Bad("frame checksum mismatch"));
        }
        Ok(Frame::Good(body.to_vec()))
    }

    /// The offset of the first good frame starting after `from`, if any:
    /// a bad frame followed by a good one is corruption, not a torn write.
    pub fn good_frame_after(&mut self, from: u64) -> io::Result<Option<u64>> {
        let mut pos = from;
        while pos + FRAME_HEADER as u64 <= self.size {
            let chunk = (self.size - pos).min(READ_AHEAD);
            let hit = self
                .bytes(pos, chunk)?
                .windows(FRAME_MAGIC.len())
                .position(|w| w == FRAME_MAGIC);
            match hit {
                Some(i) => {
                    let at = pos + i as u64;
                    if let Frame::Good(_) = self.frame(at)? {
                        return Ok(Some(at));
                    }
                    pos = at + 1;
                }
                // The magic may straddle the chunk's end: step back 3 bytes.
                None if pos + chunk >= self.size => break,
                None => pos += chunk - (FRAME_MAGIC.len() as u64 - 1),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(3)), Some(3));
        assert_eq!(parse_name("3.wal"), None);
        assert_eq!(parse_name("00000000000000000003.wal.tmp"), None);
        assert_eq!(parse_temp_name(&temp_name(3)), Some(3));
        assert_eq!(parse_temp_name(&file_name(3)), None);
    }
}
