//! Snapshots are made off the driver thread: while the snapshot thread
//! holds a job (here stopped by a hook before it encodes), the node goes
//! on answering writes, reads and status calls, starts no second job, and
//! when the job finishes it takes the snapshot at the image's index, below
//! what it has applied by then.

mod common;

use std::sync::{mpsc, Mutex};

use common::{start_single, wait_for};
use hyper::{Method, StatusCode};
use raftkv_server::config::SnapshotHook;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_serves_while_a_snapshot_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::single(dir.path());
    cfg.snapshot_bytes = 2048;
    let (entered_tx, entered) = mpsc::channel::<u64>();
    let (release, held) = mpsc::channel::<()>();
    let held = Mutex::new(held);
    cfg.snapshot_hook = SnapshotHook::new(move |index| {
        let _ = entered_tx.send(index);
        // Each job waits for a `release`, or for it to be dropped.
        let _ = held.lock().unwrap().recv();
    });
    let (server, api) = start_single(cfg.clone()).await;
    let put = |i: u32| {
        let api = &api;
        async move {
            let r = api
                .call(Method::PUT, &format!("/v1/kv/k{i}"), &[], vec![b'v'; 100])
                .await;
            assert_eq!(r.status, StatusCode::OK, "k{i}");
        }
    };

    // Write until the snapshot thread has taken a job.
    let mut i = 0;
    let index = loop {
        assert!(i < 200, "no snapshot started after {i} writes of 100 bytes");
        put(i).await;
        i += 1;
        if let Ok(index) = entered.try_recv() {
            break index;
        }
    };

    // The job is held: the node still answers everything, and writes well
    // past another snapshot's worth start no second job.
    for _ in 0..100 {
        put(i).await;
        i += 1;
    }
    let r = api.get("/v1/kv/k0").await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 100));
    let status = api.get("/v1/status").await.json();
    assert_eq!(status["role"], "leader", "{status}");
    assert_eq!(status["snapshot_index"], 0, "{status}");
    let applied = status["applied"].as_u64().unwrap();
    assert!(
        applied >= index + 100,
        "applied {applied}, image at {index}"
    );
    let m = api.get("/metrics").await.text();
    assert_eq!(common::metric(&m, "raftkv_snapshots_taken_total"), 0.0);
    assert!(entered.try_recv().is_err(), "a second job started");

    // Let it go: the node takes the snapshot at the image's index, below
    // what it applied meanwhile (the next job, for the writes since the
    // image, is held in its turn).
    release.send(()).unwrap();
    wait_for("the snapshot", || async {
        let status = api.get("/v1/status").await.json();
        (status["snapshot_index"].as_u64()? > 0).then_some(())
    })
    .await;
    let status = api.get("/v1/status").await.json();
    assert_eq!(status["snapshot_index"], index, "{status}");
    let m = api.get("/metrics").await.text();
    assert_eq!(common::metric(&m, "raftkv_snapshots_taken_total"), 1.0);
    // The WAL recorded the file the snapshot thread wrote (the first it
    // reserved) instead of writing another.
    assert_eq!(snap_files(dir.path()), ["snap-00000000000000000001.snap"]);
    drop(release);
    server.shutdown().await.unwrap();

    // What it wrote restores: every key is there after a restart.
    let (server, api) = start_single(cfg).await;
    let status = api.get("/v1/status").await.json();
    assert!(
        status["snapshot_index"].as_u64().unwrap() >= index,
        "{status}"
    );
    for k in [0, index as u32 / 2, i - 1] {
        let r = api.get(&format!("/v1/kv/k{k}")).await;
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 100), "k{k}");
    }
    server.shutdown().await.unwrap();
}

/// Names of the snapshot files under `dir`.
fn snap_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else if name.starts_with("snap-") {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// The bytes applied up to an image count for its snapshot only: once it
/// is taken, writes of less than `snapshot_bytes` start no other job (a
/// job is started in the turn that applies a write, so by the time the
/// last of these writes is answered the snapshot thread would have been
/// entered by one started at the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_snapshot_resets_what_counts_toward_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::single(dir.path());
    cfg.snapshot_bytes = 4096;
    let (entered_tx, entered) = mpsc::channel::<u64>();
    cfg.snapshot_hook = SnapshotHook::new(move |index| {
        let _ = entered_tx.send(index);
    });
    let (server, api) = start_single(cfg).await;
    let put = |i: u32, len: usize| {
        let api = &api;
        async move {
            let r = api
                .call(Method::PUT, &format!("/v1/kv/k{i}"), &[], vec![b'v'; len])
                .await;
            assert_eq!(r.status, StatusCode::OK, "k{i}");
        }
    };
    let mut i = 0;
    while entered.try_recv().is_err() {
        assert!(i < 200, "no snapshot started after {i} writes");
        put(i, 200).await;
        i += 1;
    }
    wait_for("the snapshot", || async {
        let status = api.get("/v1/status").await.json();
        (status["snapshot_index"].as_u64()? > 0).then_some(())
    })
    .await;
    for k in 0..8 {
        put(1000 + k, 8).await;
    }
    let late: Vec<u64> = entered.try_iter().collect();
    assert!(
        late.is_empty(),
        "jobs started for a few small writes: {late:?}"
    );
    server.shutdown().await.unwrap();
}

/// A snapshot whose file fails to write is not started again at once (the
/// node would encode its whole store over and over): the next job waits at
/// least a second, and then a snapshot is taken as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_snapshot_write_is_retried_after_a_pause() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::single(dir.path());
    cfg.snapshot_bytes = 4096;
    let (entered_tx, entered) = mpsc::channel::<std::time::Instant>();
    let jobs = std::sync::atomic::AtomicUsize::new(0);
    cfg.snapshot_hook = SnapshotHook::failing(move |_| {
        let _ = entered_tx.send(std::time::Instant::now());
        let first = jobs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        first.then(|| std::io::Error::from_raw_os_error(5)) // EIO
    });
    let (server, api) = start_single(cfg).await;
    let mut i = 0;
    let mut next_put = || {
        i += 1;
        let api = &api;
        let key = format!("/v1/kv/k{i}");
        async move {
            let r = api.call(Method::PUT, &key, &[], vec![b'v'; 200]).await;
            assert_eq!(r.status, StatusCode::OK, "{key}");
        }
    };
    // Writes until a second job starts: well past two snapshots' worth.
    let mut starts = Vec::new();
    while starts.len() < 2 {
        next_put().await;
        starts.extend(entered.try_iter());
    }
    let pause = starts[1] - starts[0];
    assert!(
        pause >= std::time::Duration::from_secs(1),
        "retried after {pause:?} only"
    );
    wait_for("a snapshot after the failed one", || async {
        let status = api.get("/v1/status").await.json();
        (status["snapshot_index"].as_u64()? > 0).then_some(())
    })
    .await;
    let m = api.get("/metrics").await.text();
    let count = |name| common::metric(&m, name);
    assert_eq!(count("raftkv_snapshot_write_failures_total"), 1.0);
    assert!(count("raftkv_snapshot_encode_seconds_count") >= 2.0, "{m}");
    assert!(count("raftkv_snapshot_write_seconds_count") >= 1.0, "{m}");
    server.shutdown().await.unwrap();
}
