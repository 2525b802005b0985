//! A simulated disk for crash tests: it remembers, per file, which bytes were
//! synced and, per directory, which entries were synced, and a [`SimFs::crash`]
//! keeps only those (plus, at random, a torn piece of what was not synced).
//!
//! The model is deliberately harsher than most real file systems: nothing
//! unsynced is promised to survive, a directory change is lost unless its
//! directory was synced, and an unsynced append may survive as any prefix,
//! followed by zeros or garbage up to the length that was written.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::vfs::{Vfs, VfsFile};

/// An in-memory file system with fsync semantics and crash injection.
/// Clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Debug, Default)]
struct Disk {
    inodes: BTreeMap<u64, Inode>,
    /// Directory entries as the running process sees them.
    names: BTreeMap<PathBuf, u64>,
    /// Directory entries as they were when their directory was last synced.
    durable_names: BTreeMap<PathBuf, u64>,
    next_inode: u64,
    locks: BTreeSet<PathBuf>,
    /// Mutating calls still allowed before the simulated power cut.
    budget: Option<u64>,
    /// Set once the budget ran out: every later call fails.
    down: bool,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
pub struct SimFile {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
}

/// The lock handle of a [`SimFs`]; releases the lock when dropped.
#[derive(Debug)]
pub struct SimLock {
    disk: Arc<Mutex<Disk>>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        lock(&self.disk).locks.remove(&self.path);
    }
}

fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn power_cut() -> io::Error {
    io::Error::other("simulated power cut")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl Disk {
    /// Accounts for one mutating call; fails once the budget is spent.
    fn spend(&mut self) -> io::Result<()> {
        if self.down {
            return Err(power_cut());
        }
        match &mut self.budget {
            Some(0) => {
                self.down = true;
                Err(power_cut())
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn alive(&self) -> io::Result<()> {
        if self.down {
            Err(power_cut())
        } else {
            Ok(())
        }
    }

    fn inode(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "stale inode"))
    }
}

/// SplitMix64: a tiny deterministic generator for tearing decisions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// What an unsynced file looks like after the power cut, chosen by `rng`.
fn torn(inode: &Inode, rng: &mut Rng) -> Vec<u8> {
    let (old, new) = (&inode.durable, &inode.data);
    if old == new {
        return old.clone();
    }
    if !new.starts_with(old) {
        // Truncated or overwritten since the last sync: old or new, whole.
        return if rng.below(2) == 0 {
            old.clone()
        } else {
            new.clone()
        };
    }
    let extra = &new[old.len()..];
    let kept = rng.below(extra.len() as u64 + 1) as usize;
    let mut out = old.clone();
    out.extend_from_slice(&extra[..kept]);
    match rng.below(4) {
        0 => out.truncate(old.len()),
        1 => {}
        2 => out.resize(new.len(), 0),
        _ => {
            while out.len() < new.len() {
                out.push(rng.next() as u8);
            }
        }
    }
    out
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `n` more mutating calls (create, write, truncate, sync, rename,
    /// remove, directory sync) succeed; the next one fails, and so does every
    /// call after it, as if the power went out. Use [`crash`](Self::crash) to
    /// get the disk that a reboot would find.
    pub fn fail_after(&self, n: u64) {
        lock(&self.disk).budget = Some(n);
    }

    /// Whether the simulated power cut has happened.
    pub fn is_down(&self) -> bool {
        lock(&self.disk).down
    }

    /// The disk after a power cut now: directory entries as last synced,
    /// file contents as last synced plus, chosen by `seed`, a torn part of
    /// what was written since. The result is a fresh, fully synced disk with
    /// no locks held; this one is left as it was.
    pub fn crash(&self, seed: u64) -> SimFs {
        let disk = lock(&self.disk);
        let mut rng = Rng(seed);
        let mut out = Disk {
            next_inode: disk.next_inode,
            ..Disk::default()
        };
        for (name, &ino) in &disk.durable_names {
            out.inodes.entry(ino).or_insert_with(|| {
                let data = disk
                    .inodes
                    .get(&ino)
                    .map(|i| torn(i, &mut rng))
                    .unwrap_or_default();
                Inode {
                    durable: data.clone(),
                    data,
                }
            });
            out.names.insert(name.clone(), ino);
        }
        out.durable_names = out.names.clone();
        SimFs {
            disk: Arc::new(Mutex::new(out)),
        }
    }

    /// The current contents of `path`, if it exists (for tests).
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = lock(&self.disk);
        let ino = disk.names.get(path)?;
        disk.inodes.get(ino).map(|i| i.data.clone())
    }

    /// Replaces the contents of `path`, synced (for corruption tests).
    pub fn overwrite(&self, path: &Path, data: Vec<u8>) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        let ino = *disk.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = disk.inode(ino)?;
        inode.durable = data.clone();
        inode.data = data;
        Ok(())
    }
}

impl Vfs for SimFs {
    type File = SimFile;
    type Lock = SimLock;

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        lock(&self.disk).alive()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<SimLock>> {
        let mut disk = lock(&self.disk);
        disk.alive()?;
        if !disk.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(SimLock {
            disk: self.disk.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = lock(&self.disk);
        disk.alive()?;
        Ok(disk
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut disk = lock(&self.disk);
        disk.spend()?;
        let ino = match disk.names.get(path) {
            Some(&ino) => {
                disk.inode(ino)?.data.clear();
                ino
            }
            None => {
                disk.next_inode += 1;
                let ino = disk.next_inode;
                disk.inodes.insert(ino, Inode::default());
                disk.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        Ok(SimFile {
            disk: self.disk.clone(),
            inode: ino,
        })
    }

    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let disk = lock(&self.disk);
        disk.alive()?;
        let ino = *disk.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(SimFile {
            disk: self.disk.clone(),
            inode: ino,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.spend()?;
        let ino = disk.names.remove(from).ok_or_else(|| not_found(from))?;
        disk.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.spend()?;
        disk.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.spend()?;
        disk.durable_names.retain(|p, _| p.parent() != Some(dir));
        let current: Vec<(PathBuf, u64)> = disk
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        disk.durable_names.extend(current);
        Ok(())
    }
}

impl VfsFile for SimFile {
    fn size(&self) -> io::Result<u64> {
        let mut disk = lock(&self.disk);
        disk.alive()?;
        Ok(disk.inode(self.inode)?.data.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.alive()?;
        let data = &disk.inode(self.inode)?.data;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.spend()?;
        let data = &mut disk.inode(self.inode)?.data;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.spend()?;
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        disk.inode(self.inode)?.data.resize(len, 0);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut disk = lock(&self.disk);
        disk.spend()?;
        let inode = disk.inode(self.inode)?;
        inode.durable = inode.data.clone();
        Ok(())
    }
}
