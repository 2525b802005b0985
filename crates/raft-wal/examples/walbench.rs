//! WAL throughput next to the raw write+fsync rate of the same disk.
//!
//! ```text
//! cargo run --release -p raft-wal --example walbench -- [--dir DIR] [--secs S]
//! ```
//!
//! For entry sizes 64 B, 1 KiB, 16 KiB and batches of 1, 16 and 256 entries
//! per `sync` (one fsync each), it measures appends/s and MB/s of payload.
//! Each batch also sets the hard state, as a Ready with entries usually does.
//! Next to each cell it measures the disk alone: a loop appending the same
//! number of payload bytes to a plain file and fdatasync-ing it; plus the
//! classic 4 KiB write+fsync loop. Runs in a temp dir under DIR (default: .).
//! `--no-fsync` runs the WAL with `SyncMode::Never` to show its CPU cost;
//! `--only SIZE:BATCH` runs one cell.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft_core::{Entry, HardState, Snapshot, Storage};
use raft_wal::{SyncMode, Wal, WalOptions};

#[derive(Default)]
struct Rate {
    ops: u64,
    syncs: u64,
    bytes: u64,
    secs: f64,
}

impl Rate {
    fn per_sec(&self, x: u64) -> f64 {
        x as f64 / self.secs
    }

    fn mb(&self) -> f64 {
        self.per_sec(self.bytes) / 1e6
    }
}

/// The disk alone: appends `chunk` bytes to a plain file and fdatasyncs.
struct Raw {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    written: u64,
}

impl Raw {
    fn new(dir: &Path, chunk: usize) -> Raw {
        let path = dir.join("raw.bin");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        Raw {
            path,
            file,
            buf: vec![0xa5u8; chunk],
            written: 0,
        }
    }

    fn step(&mut self, rate: &mut Rate) {
        self.file.write_all(&self.buf).unwrap();
        self.file.sync_data().unwrap();
        self.written += self.buf.len() as u64;
        rate.ops += 1;
        rate.syncs += 1;
        rate.bytes += self.buf.len() as u64;
        if self.written > 256 << 20 {
            self.file.set_len(0).unwrap();
            self.written = 0;
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The WAL: batches of `batch` entries of `size` bytes, one sync each.
struct WalLoop {
    wal: Wal,
    entries: Vec<Entry>,
    last: u64,
    since_snapshot: u64,
}

impl WalLoop {
    fn new(dir: &Path, size: usize, batch: usize, sync: SyncMode) -> WalLoop {
        let opts = WalOptions {
            sync,
            ..WalOptions::default()
        };
        let wal = Wal::open(dir.join("wal"), opts).unwrap();
        let entries = (0..batch)
            .map(|i| Entry::normal(i as u64 + 1, 1, vec![(i % 251) as u8; size]))
            .collect();
        WalLoop {
            wal,
            entries,
            last: 0,
            since_snapshot: 0,
        }
    }

    fn step(&mut self, rate: &mut Rate) {
        for (k, e) in self.entries.iter_mut().enumerate() {
            e.index = self.last + 1 + k as u64;
        }
        self.wal.append(&self.entries).unwrap();
        self.last += self.entries.len() as u64;
        let hs = HardState {
            term: 1,
            vote: Some(1),
            commit: self.last,
        };
        self.wal.set_hard_state(&hs).unwrap();
        self.wal.sync().unwrap();
        let bytes: u64 = self.entries.iter().map(|e| e.data.len() as u64).sum();
        rate.ops += self.entries.len() as u64;
        rate.syncs += 1;
        rate.bytes += bytes;
        // Keep the disk use bounded, as an application snapshotting would.
        self.since_snapshot += bytes;
        if self.since_snapshot > 128 << 20 {
            let snap = Snapshot::new(self.last, 1, vec![1; 64]);
            self.wal.apply_snapshot(&snap).unwrap();
            self.since_snapshot = 0;
        }
    }
}

/// Runs the `steps` in turn, 50 ms slices each, for `budget` in all, so
/// that they see the same (shared, noisy) disk; returns their rates.
fn interleave(budget: Duration, steps: &mut [&mut dyn FnMut(&mut Rate)]) -> Vec<Rate> {
    let mut rates: Vec<Rate> = steps.iter().map(|_| Rate::default()).collect();
    let slice = Duration::from_millis(50);
    let start = Instant::now();
    while start.elapsed() < budget || rates.iter().any(|r| r.syncs < 3) {
        for (step, rate) in steps.iter_mut().zip(&mut rates) {
            let t = Instant::now();
            loop {
                step(rate);
                if t.elapsed() >= slice {
                    break;
                }
            }
            rate.secs += t.elapsed().as_secs_f64();
        }
    }
    rates
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut base, mut secs, mut only) = (PathBuf::from("."), 1.5f64, None::<(usize, usize)>);
    let mut sync = SyncMode::Always;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => base = args.next().expect("--dir needs a path").into(),
            "--secs" => {
                secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--secs needs a number")
            }
            "--no-fsync" => sync = SyncMode::Never,
            "--only" => {
                let v = args.next().unwrap_or_default();
                let (s, b) = v.split_once(':').expect("--only SIZE:BATCH");
                only = Some((s.parse().expect("size"), b.parse().expect("batch")));
            }
            _ => {
                eprintln!(
                    "usage: walbench [--dir DIR] [--secs S] [--only SIZE:BATCH] [--no-fsync]"
                );
                std::process::exit(2);
            }
        }
    }
    let budget = Duration::from_secs_f64(secs);
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");

    println!("machine: {}; data dir: {}", machine(), tmp.path().display());
    let mut raw4k = Raw::new(tmp.path(), 4096);
    let r4k = interleave(budget, &mut [&mut |r: &mut Rate| raw4k.step(r)]).remove(0);
    drop(raw4k);
    println!(
        "raw disk, 4 KiB append + fdatasync: {:.0} fsyncs/s, {:.1} MB/s\n",
        r4k.per_sec(r4k.syncs),
        r4k.mb()
    );
    println!("| entry | batch | appends/s | MB/s | fsyncs/s | raw fsyncs/s, same bytes | raw MB/s | WAL / raw |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in [64usize, 1024, 16384] {
        for batch in [1usize, 16, 256] {
            if only.is_some_and(|o| o != (size, batch)) {
                continue;
            }
            let cell = tempfile::tempdir_in(tmp.path()).expect("temp dir");
            let mut w = WalLoop::new(cell.path(), size, batch, sync);
            let mut r = Raw::new(cell.path(), size * batch);
            let mut rates = interleave(
                budget,
                &mut [&mut |x: &mut Rate| w.step(x), &mut |x: &mut Rate| r.step(x)],
            );
            let (r, w) = (rates.remove(1), rates.remove(0));
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0}% |",
                if size >= 1024 {
                    format!("{} KiB", size / 1024)
                } else {
                    format!("{size} B")
                },
                batch,
                w.per_sec(w.ops),
                w.mb(),
                w.per_sec(w.syncs),
                r.per_sec(r.syncs),
                r.mb(),
                100.0 * w.mb() / r.mb(),
            );
        }
    }
}
