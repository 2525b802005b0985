//! The few file-system calls the WAL makes, behind a trait so that crash
//! tests can run the same code on a simulated disk ([`SimFs`](crate::SimFs)).
//!
//! The semantics the WAL relies on are POSIX's: a file's bytes are durable
//! only after [`VfsFile::sync`]; a directory entry (a new file, a rename, a
//! removal) is durable only after [`Vfs::sync_dir`] of its directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::WalError;

/// A directory tree the WAL can keep its files in.
pub trait Vfs {
    /// An open file.
    type File: VfsFile;
    /// Holds an exclusive lock until dropped.
    type Lock;

    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path` (created if missing);
    /// `Ok(None)` when someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Self::Lock>>;
    /// Names of the files directly inside `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` empty (truncating it if it exists), open for read and write.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing `path` for read and write.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file: positional reads and writes, truncation and fsync.
pub trait VfsFile {
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; fails (`UnexpectedEof`) past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's contents and length durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
}

/// The real file system (Unix).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

impl Vfs for StdFs {
    type File = File;
    type Lock = File;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<File>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl VfsFile for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Writes `bytes` as a new file at `path` so that a crash leaves either no
/// file there or the whole of it: write to `tmp`, fsync, rename over `path`,
/// fsync `dir` (the fsyncs only when `sync`). Returns the open file.
pub(crate) fn write_new_file<F: Vfs>(
    fs: &F,
    dir: &Path,
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    sync: bool,
) -> Result<F::File, WalError> {
    let file = write_file(fs, tmp, bytes, sync)?;
    rename_synced(fs, dir, tmp, path, sync)?;
    Ok(file)
}

/// Creates `path` with `bytes` in it and fsyncs it (when `sync`); its
/// directory entry is not synced. Returns the open file.
pub(crate) fn write_file<F: Vfs>(
    fs: &F,
    path: &Path,
    bytes: &[u8],
    sync: bool,
) -> Result<F::File, WalError> {
    let mut file = fs.create(path).map_err(WalError::io("create", path))?;
    file.write_all_at(bytes, 0)
        .map_err(WalError::io("write", path))?;
    if sync {
        file.sync().map_err(WalError::io("fsync", path))?;
    }
    Ok(file)
}

/// Renames `from` to `to` in `dir` and fsyncs `dir` (when `sync`), so the
/// new name survives a crash.
pub(crate) fn rename_synced<F: Vfs>(
    fs: &F,
    dir: &Path,
    from: &Path,
    to: &Path,
    sync: bool,
) -> Result<(), WalError> {
    fs.rename(from, to).map_err(WalError::io("rename", from))?;
    if sync {
        fs.sync_dir(dir)
            .map_err(WalError::io("fsync directory", dir))?;
    }
    Ok(())
}
