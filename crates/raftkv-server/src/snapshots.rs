//! Snapshots off the driver thread.
//!
//! When enough was applied, the driver takes an image of the store (O(1):
//! raft-kv's maps share their nodes, see `raft_kv::StoreImage`), the member
//! table as of the same index, the index's term and configuration, and a
//! snapshot file reserved in the WAL (`raft_wal::SnapshotWriter`), and hands
//! them to one snapshot thread. That thread encodes the image behind the
//! member table, writes the snapshot file and fsyncs it, and sends the bytes
//! and the staged file back; the driver then calls `Node::snapshot` for the
//! image's index and gives the staged file to the WAL, whose next persist
//! only records it. So the driver neither encodes a snapshot nor writes or
//! fsyncs its file: it goes on ticking, stepping, persisting and answering
//! while a snapshot of any size is made.
//!
//! At most one job runs at a time. Its result comes back on a channel of its
//! own, and the driver is woken by an [`Input::Snapshot`] (a `try_send`: a
//! full inbox wakes it anyway), so the thread never blocks on the inbox and
//! the driver can always wait for it: it does so before it stops and before
//! it reopens its WAL, so no snapshot file is written into a directory that
//! another WAL instance has opened.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft_core::{ConfState, Index, NodeId, Snapshot, SnapshotMeta, Term};
use raft_kv::StoreImage;
use raft_wal::{SnapshotWriter, StagedSnapshot, WalError};
use tokio::sync::mpsc;

use crate::config::SnapshotHook;
use crate::driver::Input;
use crate::members::{self, MemberTable};

/// Everything the snapshot thread needs, taken on the driver.
pub(crate) struct Job {
    pub image: StoreImage,
    /// The member table as of the image's index.
    pub table: MemberTable,
    /// The term of the entry at the image's index.
    pub term: Term,
    /// The configuration in force at the image's index.
    pub conf: ConfState,
    /// The WAL's reserved file, if it gave one.
    pub writer: Option<SnapshotWriter>,
    /// Entry bytes applied since the previous snapshot, up to the image.
    pub applied_bytes: u64,
}

/// What the snapshot thread hands back.
pub(crate) struct Done {
    pub index: Index,
    /// The snapshot data (member table, then the store's image).
    pub data: Vec<u8>,
    /// The file written and synced, if there was a writer.
    pub staged: Option<Result<StagedSnapshot, WalError>>,
    pub applied_bytes: u64,
    pub encode: Duration,
    pub write: Duration,
}

/// The driver's handle on its snapshot thread.
pub(crate) struct Snapshotter {
    id: NodeId,
    wake: mpsc::WeakSender<Input>,
    hook: SnapshotHook,
    running: Option<(JoinHandle<()>, std_mpsc::Receiver<Done>)>,
}

impl Snapshotter {
    pub fn new(id: NodeId, wake: mpsc::WeakSender<Input>, hook: SnapshotHook) -> Self {
        Snapshotter {
            id,
            wake,
            hook,
            running: None,
        }
    }

    /// Whether a job is under way (its result not yet taken).
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Starts `job` on a new snapshot thread. Call only when not [`busy`](Self::busy).
    pub fn start(&mut self, job: Job) -> std::io::Result<()> {
        debug_assert!(self.running.is_none(), "one snapshot job at a time");
        let (tx, rx) = std_mpsc::channel();
        let wake = self.wake.clone();
        let hook = self.hook.clone();
        let span = tracing::Span::current();
        let handle = std::thread::Builder::new()
            .name(format!("raftkv-snap-{}", self.id))
            .spawn(move || {
                let _entered = span.enter();
                let _ = tx.send(run(job, &hook));
                if let Some(inbox) = wake.upgrade() {
                    // A full inbox wakes the driver anyway.
                    let _ = inbox.try_send(Input::Snapshot);
                }
            })?;
        self.running = Some((handle, rx));
        Ok(())
    }

    /// The finished job's result, if it has finished (never blocks).
    pub fn poll(&mut self) -> Option<Done> {
        let (_, rx) = self.running.as_ref()?;
        let done = match rx.try_recv() {
            Ok(done) => Some(done),
            Err(std_mpsc::TryRecvError::Empty) => return None,
            // The thread panicked: nothing comes back.
            Err(std_mpsc::TryRecvError::Disconnected) => None,
        };
        if let Some((handle, _)) = self.running.take() {
            if handle.join().is_err() {
                tracing::error!("the snapshot thread panicked; snapshots go on");
            }
        }
        done
    }

    /// Waits for the job under way, if any, and returns its result.
    pub fn wait(&mut self) -> Option<Done> {
        let (handle, rx) = self.running.take()?;
        let _ = handle.join();
        rx.try_recv().ok()
    }
}

/// The snapshot thread's work: encode, then write and fsync the file.
fn run(job: Job, hook: &SnapshotHook) -> Done {
    let index = job.image.index();
    let injected = hook.call(index);
    let started = Instant::now();
    let head = members::envelope(&job.table, 0);
    let data = job.image.encode_into(head);
    drop(job.image);
    let encode = started.elapsed();
    let started = Instant::now();
    let (data, staged) = match (job.writer, injected) {
        (Some(_), Some(source)) => {
            let path = std::path::PathBuf::from("(a test's hook)");
            let failed = WalError::Io {
                op: "write",
                path,
                source,
            };
            (data, Some(Err(failed)))
        }
        (Some(writer), None) => {
            let snap = Snapshot {
                meta: SnapshotMeta::of(index, job.term, &data),
                conf: job.conf,
                data,
            };
            let staged = writer.write(&snap);
            (snap.data, Some(staged))
        }
        (None, _) => (data, None),
    };
    Done {
        index,
        data,
        staged,
        applied_bytes: job.applied_bytes,
        encode,
        write: started.elapsed(),
    }
}
