//! Disk space: a reserve file, a free-space check before writes, and the
//! "no space" mode a node enters when its disk fills up.
//!
//! A full disk must not stop a node: it should refuse new writes with a
//! clear answer, keep serving reads, and go back to normal by itself once
//! space is freed. Two things make that work:
//!
//! - **The check.** Before the driver proposes a client write, it looks at
//!   the free space of the data directory's file system (`statvfs`, at most
//!   every [`CHECK_EVERY`]). Below the reserve's size plus [`HEADROOM`],
//!   the node enters no-space mode *before* the WAL ever sees `ENOSPC`.
//! - **The reserve.** At start the node writes a `RESERVE` file of
//!   `reserve_bytes` in its data directory. When the WAL fails with
//!   `ENOSPC` anyway (another process filled the disk between two checks,
//!   or a follower received entries), the driver deletes the reserve, so
//!   that Raft's own small writes (a term, a vote, a leader's empty entry,
//!   the commit index) still fit: elections and reads keep working.
//!
//! In no-space mode a leader answers client writes 507 `nospace` without
//! proposing them. Every [`probe`](Space::probe) (backing off from 100 ms
//! to 5 s) the node looks again; once there is room for the reserve and the
//! headroom, it writes the reserve back and takes writes again.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// The reserve file's name in the data directory.
pub const RESERVE_FILE: &str = "RESERVE";
/// Free space a node wants beyond its reserve before it takes writes.
pub const HEADROOM: u64 = 1 << 20;
/// How often the free space is looked at while writes are taken.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
const PROBE_FIRST: Duration = Duration::from_millis(100);
const PROBE_MAX: Duration = Duration::from_secs(5);

/// Whether an error (or one of its sources) is the disk being full
/// (`ENOSPC`, or `EDQUOT` for a user's quota).
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            let code = io.raw_os_error();
            if code == Some(nix::errno::Errno::ENOSPC as i32)
                || code == Some(nix::errno::Errno::EDQUOT as i32)
                || io.kind() == io::ErrorKind::StorageFull
            {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// The no-space mode, while it lasts.
#[derive(Debug)]
struct Full {
    next_probe: Instant,
    backoff: Duration,
}

/// A node's view of its disk space. Owned by the driver thread.
#[derive(Debug)]
pub struct Space {
    dir: PathBuf,
    reserve_bytes: u64,
    /// Whether the reserve file is in place.
    reserve_held: bool,
    last_check: Option<Instant>,
    full: Option<Full>,
    /// The disk filled up again after the reserve was given up.
    exhausted: bool,
}

impl Space {
    /// Opens the data directory's space: writes the reserve file if it is
    /// missing. A disk too full for it starts the node in no-space mode.
    pub fn open(dir: &Path, reserve_bytes: u64) -> io::Result<Space> {
        let mut s = Space {
            dir: dir.to_path_buf(),
            reserve_bytes,
            reserve_held: false,
            last_check: None,
            full: None,
            exhausted: false,
        };
        match s.take_reserve() {
            Ok(()) => {}
            Err(e) if is_no_space(&e) => {
                warn!("no space for the {reserve_bytes}-byte reserve file in {}: refusing writes until space is freed", dir.display());
                s.enter();
            }
            Err(e) => return Err(e),
        }
        Ok(s)
    }

    /// Whether the node refuses writes for lack of space.
    pub fn is_full(&self) -> bool {
        self.full.is_some()
    }

    /// Free bytes the node needs before it takes writes.
    fn wanted(&self) -> u64 {
        self.reserve_bytes + HEADROOM
    }

    /// Whether a client write may be proposed now. Looks at the free space
    /// at most every [`CHECK_EVERY`]; too little enters no-space mode.
    pub fn writes_allowed(&mut self, now: Instant) -> bool {
        if self.full.is_some() {
            return false;
        }
        if self.last_check.is_some_and(|t| now < t + CHECK_EVERY) {
            return true;
        }
        self.last_check = Some(now);
        match free_bytes(&self.dir) {
            Ok(free) if free < self.wanted() => {
                warn!("{free} bytes free on the data directory's disk (below {}): refusing writes until space is freed", self.wanted());
                self.enter();
                false
            }
            Ok(_) => true,
            Err(e) => {
                warn!("cannot see the free space of {}: {e}", self.dir.display());
                true
            }
        }
    }

    /// Whether the disk filled up even after the reserve was given up: the
    /// node should not take more log data (entries from a leader) until
    /// space is freed.
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// The WAL failed with `ENOSPC`: gives up the reserve (so Raft's own
    /// small writes fit) and enters no-space mode.
    pub fn on_no_space(&mut self) {
        if !self.reserve_held && self.full.is_some() {
            self.exhausted = true;
        }
        if self.reserve_held {
            let path = self.dir.join(RESERVE_FILE);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.reserve_held = false;
                    warn!("released the {}-byte reserve file", self.reserve_bytes);
                }
                Err(e) => warn!("cannot remove {}: {e}", path.display()),
            }
        }
        self.enter();
    }

    /// A snapshot file could not be written for lack of space: enters
    /// no-space mode (writes refused until a probe finds room) but keeps
    /// the reserve, which is for Raft's small writes, not for snapshots.
    pub fn on_snapshot_no_space(&mut self) {
        self.enter();
    }

    fn enter(&mut self) {
        if self.full.is_none() {
            self.full = Some(Full {
                next_probe: Instant::now() + PROBE_FIRST,
                backoff: PROBE_FIRST,
            });
        }
    }

    /// In no-space mode, when a probe is due: is there room again? Takes
    /// the reserve back and leaves the mode if so (returns `true`).
    pub fn probe(&mut self, now: Instant) -> bool {
        let Some(full) = &mut self.full else {
            return false;
        };
        if now < full.next_probe {
            return false;
        }
        full.backoff = (full.backoff * 2).min(PROBE_MAX);
        full.next_probe = now + full.backoff;
        let missing = if self.reserve_held {
            0
        } else {
            self.reserve_bytes
        };
        match free_bytes(&self.dir) {
            Ok(free) if free >= missing + self.wanted() => {}
            _ => return false,
        }
        if let Err(e) = self.take_reserve() {
            warn!("cannot write the reserve file back: {e}");
            return false;
        }
        self.full = None;
        self.exhausted = false;
        self.last_check = Some(now);
        info!("disk space is back: taking writes again");
        true
    }

    /// Writes the reserve file (real blocks, not a sparse file) if it is
    /// not there in full. On failure the partial file is removed.
    fn take_reserve(&mut self) -> io::Result<()> {
        let path = self.dir.join(RESERVE_FILE);
        let have = std::fs::metadata(&path).map_or(0, |m| m.len());
        if have >= self.reserve_bytes {
            self.reserve_held = true;
            return Ok(());
        }
        if self.reserve_bytes == 0 {
            return Ok(());
        }
        let written = write_zeros(&path, self.reserve_bytes);
        if written.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        written?;
        self.reserve_held = true;
        Ok(())
    }
}

fn write_zeros(path: &Path, bytes: u64) -> io::Result<()> {
    let mut file: File = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_errors_are_recognised_through_their_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let enospc = io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        assert!(is_no_space(&Outer(enospc)));
        assert!(!is_no_space(&Outer(io::Error::from_raw_os_error(5))));
    }

    #[test]
    fn the_reserve_is_written_released_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Space::open(dir.path(), 64 << 10).unwrap();
        let reserve = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 64 << 10);
        assert!(!s.is_full());
        s.on_no_space();
        assert!(s.is_full() && !reserve.exists() && !s.exhausted());
        s.on_no_space();
        assert!(s.exhausted(), "full again with the reserve gone");
        let now = Instant::now();
        assert!(!s.writes_allowed(now));
        // The first probe is not due yet; once due, a roomy disk ends the mode.
        assert!(!s.probe(now));
        assert!(free_bytes(dir.path()).unwrap() > (64 << 10) + HEADROOM);
        assert!(s.probe(now + PROBE_FIRST));
        assert!(!s.is_full() && !s.exhausted() && s.writes_allowed(now + PROBE_FIRST));
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 64 << 10);
    }
}
