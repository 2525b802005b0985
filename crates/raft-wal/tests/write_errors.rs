//! A failed write or fsync: the WAL refuses further writes, and the frame
//! it was writing is cut from the file, so that reopening the directory in
//! the same process (page cache and all) never takes bytes whose fsync
//! failed for synced ones.

mod common;

use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;

use common::ents;
use raft_core::Storage;
use raft_wal::{StdFs, Vfs, VfsFile, Wal, WalOptions};

/// The real file system, except that the file calls fail while `failing`
/// is set (with ENOSPC for writes, EIO for fsync), after doing their work:
/// a failed fsync has written the bytes to the page cache.
#[derive(Clone, Default)]
struct Flaky {
    failing: Rc<Cell<Option<Fail>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fail {
    /// `write` writes half its bytes, then fails.
    Write,
    /// `fsync` fails after the bytes were written.
    Fsync,
}

struct FlakyFile {
    file: std::fs::File,
    failing: Rc<Cell<Option<Fail>>>,
}

impl Vfs for Flaky {
    type File = FlakyFile;
    type Lock = <StdFs as Vfs>::Lock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Self::Lock>> {
        StdFs.try_lock(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<FlakyFile> {
        let file = StdFs.create(path)?;
        Ok(FlakyFile {
            file,
            failing: self.failing.clone(),
        })
    }
    fn open(&self, path: &Path) -> io::Result<FlakyFile> {
        let file = StdFs.open(path)?;
        Ok(FlakyFile {
            file,
            failing: self.failing.clone(),
        })
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

impl VfsFile for FlakyFile {
    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        VfsFile::read_exact_at(&self.file, buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.failing.get() == Some(Fail::Write) {
            VfsFile::write_all_at(&mut self.file, &buf[..buf.len() / 2], offset)?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        VfsFile::write_all_at(&mut self.file, buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        VfsFile::set_len(&mut self.file, len)
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.failing.get() == Some(Fail::Fsync) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.file.sync()
    }
}

fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: 1 << 20,
        ..WalOptions::default()
    }
}

#[test]
fn a_failed_write_or_fsync_poisons_the_wal_and_cuts_its_frame() {
    for fail in [Fail::Write, Fail::Fsync] {
        let dir = tempfile::tempdir().unwrap();
        let fs = Flaky::default();
        let mut wal = Wal::open_with(fs.clone(), dir.path(), opts()).unwrap();
        wal.append(&ents(1..6, 1, 100)).unwrap();
        wal.sync().unwrap();
        let seg = wal.segment_paths().pop().unwrap();
        let synced_len = std::fs::metadata(&seg).unwrap().len();

        fs.failing.set(Some(fail));
        wal.append(&ents(6..9, 1, 100)).unwrap();
        let err = wal.sync().unwrap_err();
        assert!(
            err.to_string().contains("fsync") || err.to_string().contains("write"),
            "{err}"
        );
        fs.failing.set(None);
        // Nothing of the failed frame is left in the file ...
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), synced_len);
        // ... and the WAL takes no more writes: an fsync error is never
        // retried as if it could succeed.
        let again = wal.append(&ents(6..7, 1, 10));
        assert!(again.is_err());
        drop(wal);

        // A reopen (same process, same page cache) has exactly what was synced.
        let wal = Wal::open(dir.path(), opts()).unwrap();
        assert_eq!(wal.last_index(), 5);
        assert!(wal.recovery().torn_tail.is_none());
        assert_eq!(wal.entries(1, 6, u64::MAX).unwrap(), ents(1..6, 1, 100));
    }
}
