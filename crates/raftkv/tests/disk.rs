//! Disk faults on real `raftkv server` processes: damage inside synced WAL
//! data or a lost segment refuses to start with a message naming the file;
//! a torn last write is cut with a warning and the node starts; a full disk
//! (a small tmpfs filled up) refuses writes with 507 while reads go on, and
//! writes resume once space is freed. Nothing acknowledged is ever lost.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_for, Cluster, BIN, DEADLINE};
use hyper::StatusCode;
use raftkv_client::{Client, ClientConfig, Error, Session};

fn client_cfg() -> ClientConfig {
    ClientConfig {
        attempt_timeout: Duration::from_secs(3),
        call_timeout: Duration::from_secs(15),
        ..ClientConfig::default()
    }
}

/// The WAL segment files of a data directory, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs
}

/// Copies a data directory (files only, one level of subdirectories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Runs `raftkv server` on `data` and expects it to refuse to start:
/// its exit code and stderr (it is killed, and the test fails, if it runs).
fn refused_start(c: &Cluster, data: &Path) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(["server", "--id", "1", "--peers", &c.peers])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("the node started on damaged data in {}", data.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_missing_wal_data_is_refused_by_name_and_a_torn_tail_is_cut() {
    // Small segments, so the log spans several files.
    let mut c = Cluster::start(1, &["--wal-segment-bytes", "32768"]);
    let client = Client::with_config(c.endpoints(), client_cfg()).unwrap();
    let mut session = client.open_session().await.unwrap();
    let value = vec![b'v'; 2048];
    for i in 0..80 {
        session.put(format!("k{i}"), value.clone()).await.unwrap();
    }
    assert!(c.stop(1).success());
    let data = c.data_dir(1);
    let segs = segments(&data);
    assert!(segs.len() >= 4, "{segs:?}");
    let pristine = c.dir.path().join("pristine");
    copy_dir(&data, &pristine);
    let case = |name: &str| {
        let dir = c.dir.path().join(name);
        copy_dir(&pristine, &dir);
        let segs = segments(&dir);
        (dir, segs)
    };

    // A bit flipped inside a sealed segment, and inside the newest one
    // before its last record: refused, naming the file and the offset.
    for (name, which) in [("flip-sealed", 1), ("flip-newest", usize::MAX)] {
        let (dir, segs) = case(name);
        let seg = &segs[which.min(segs.len() - 1)];
        let mut bytes = std::fs::read(seg).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x10;
        std::fs::write(seg, bytes).unwrap();
        let (code, stderr) = refused_start(&c, &dir);
        assert_eq!(code, 3, "{name}: {stderr}");
        assert!(
            stderr.contains("corrupt data in") && stderr.contains(&*seg.to_string_lossy()),
            "{name}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }

    // A segment in the middle of the log deleted: refused, naming it.
    let (dir, segs) = case("lost-segment");
    std::fs::remove_file(&segs[1]).unwrap();
    let (code, stderr) = refused_start(&c, &dir);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("missing") && stderr.contains(&*segs[1].to_string_lossy()),
        "{stderr}"
    );

    // A torn last write (the start of a record that never finished, so
    // never acknowledged) is cut with a warning; nothing else is lost.
    let newest = segments(&data).pop().unwrap();
    let mut torn = b"RKW1".to_vec();
    torn.extend_from_slice(&4000u32.to_le_bytes());
    torn.extend_from_slice(&[0xab; 40]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(&torn)
        .unwrap();
    c.spawn(1);
    for i in [0, 40, 79] {
        let r = c.get(1, &format!("/v1/kv/k{i}")).await;
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 2048), "k{i}");
    }
    let log = std::fs::read_to_string(c.log(1)).unwrap();
    assert!(
        log.contains("WARN") && log.contains("torn") && log.contains(&*newest.to_string_lossy()),
        "{log}"
    );
    assert!(c.stop(1).success());
}

/// A tmpfs mounted for one test, unmounted (lazily) when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "32m"), or says loudly why not.
    fn mount_or_skip(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path, _dir: dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                eprintln!("************************************************************");
                eprintln!("SKIPPED {test}: cannot mount a tmpfs ({why}).");
                eprintln!("The full-disk test needs root (or CAP_SYS_ADMIN) to mount one.");
                eprintln!("************************************************************");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system holding `dir` to the last byte; the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [256 << 10, 4 << 10, 512] {
        let buf = vec![0x5a; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    path
}

/// Session writes, remembering what was acknowledged.
struct Writer {
    session: Session,
    acked: BTreeMap<String, Vec<u8>>,
    n: u32,
}

impl Writer {
    async fn new(client: &Client) -> Writer {
        Writer {
            session: client.open_session().await.unwrap(),
            acked: BTreeMap::new(),
            n: 0,
        }
    }

    /// Writes the next key; records it when acknowledged.
    async fn write(&mut self, bytes: usize) -> Result<(), Error> {
        self.n += 1;
        let key = format!("k{:04}", self.n);
        let value = format!("{key}=").into_bytes().repeat(bytes / 6 + 1);
        self.session.put(&key, value.clone()).await?;
        self.acked.insert(key, value);
        Ok(())
    }

    /// Every acknowledged write is there, read through node `via`.
    async fn check(&self, c: &Cluster, via: u64) {
        for (key, value) in &self.acked {
            let r = c.get(via, &format!("/v1/kv/{key}")).await;
            assert_eq!(r.status, StatusCode::OK, "{key} via node {via}");
            assert!(r.body == value[..], "{key} via node {via}: wrong value");
        }
    }
}

fn alive(c: &mut Cluster, id: u64) -> bool {
    c.procs.get_mut(&id).unwrap().try_wait().unwrap().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_takes_writes_again_when_freed() {
    let Some(disk) = Tmpfs::mount_or_skip("48m", "full disk, shared by the cluster") else {
        return;
    };
    let mut c = Cluster::new(3, &["--reserve-bytes", "2097152"]);
    for id in 1..=3 {
        c.data.insert(id, disk.path().join(format!("node{id}")));
        c.spawn(id);
    }
    let client = Client::with_config(c.endpoints(), client_cfg()).unwrap();
    let mut w = Writer::new(&client).await;
    for _ in 0..20 {
        w.write(1024).await.unwrap();
    }
    let filler = fill(disk.path());

    // Writes end in 507 nospace (one may still slip in before the check
    // sees the disk full; it is acknowledged, then, and kept).
    let start = Instant::now();
    let refused = loop {
        match w.write(1024).await {
            Ok(()) => {}
            Err(Error::NoSpace(msg)) => break msg,
            Err(e) if !e.may_have_applied() => {}
            Err(e) => eprintln!("a write with an unknown outcome: {e}"),
        }
        assert!(start.elapsed() < DEADLINE, "writes were never refused");
    };
    assert!(refused.contains("disk is full"), "{refused}");
    let raw = c.call(1, hyper::Method::PUT, "/v1/kv/raw", b"x").await;
    assert_eq!(
        raw.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        raw.text()
    );
    assert_eq!(raw.json()["error"], "nospace");

    // Reads keep working, on every node; every node is up; the leader
    // says why it refuses writes.
    for id in 1..=3 {
        w.check(&c, id).await;
        assert!(alive(&mut c, id), "node {id} exited");
    }
    let (leader, _) = c.agreed_leader(&[1, 2, 3]).await;
    assert_eq!(c.status(leader).await.unwrap()["no_space"], true);
    assert!(c.metric(leader, "raftkv_no_space").await >= 1.0);

    // Space freed: writes go through again, by themselves.
    std::fs::remove_file(filler).unwrap();
    let start = Instant::now();
    while w.write(1024).await.is_err() {
        assert!(start.elapsed() < DEADLINE, "writes were not taken again");
    }
    for _ in 0..10 {
        w.write(1024).await.unwrap();
    }
    w.check(&c, 1).await;

    // The log is intact: a restart of every node recovers all of it.
    for id in 1..=3 {
        assert!(c.stop(id).success(), "node {id} stopped cleanly");
    }
    for id in 1..=3 {
        c.spawn(id);
    }
    for id in 1..=3 {
        w.check(&c, id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_disk_fills_reopens_its_log_stays_up_and_catches_up() {
    let Some(disk) = Tmpfs::mount_or_skip("16m", "full disk, one follower") else {
        return;
    };
    let mut c = Cluster::new(3, &["--reserve-bytes", "1048576"]);
    c.data.insert(3, disk.path().join("node3"));
    // Nodes 1 and 2 lead; node 3, on the small disk, follows.
    c.spawn(1);
    c.spawn(2);
    let (leader, _) = c.agreed_leader(&[1, 2]).await;
    c.spawn(3);
    c.agreed_leader(&[1, 2, 3]).await;
    let client = Client::with_config([c.clients[&leader].clone()], client_cfg()).unwrap();
    let mut w = Writer::new(&client).await;
    w.write(100).await.unwrap();
    let filler = fill(disk.path());

    // The majority goes on; node 3 runs out of room (past its reserve too).
    for _ in 0..60 {
        w.write(48 << 10).await.unwrap();
    }
    wait_for("node 3 to reopen its WAL and refuse more log", || async {
        let s = c.status(3).await?;
        let reopened = c.metric(3, "raftkv_storage_reopens_total").await;
        (s["no_space"] == true && reopened >= 1.0).then_some(())
    })
    .await;
    assert!(alive(&mut c, 3), "node 3 exited");
    let r = c.get(3, "/v1/kv/k0001?consistency=stale").await;
    assert_eq!(r.status, StatusCode::OK, "a stale read on node 3");
    let log = std::fs::read_to_string(c.log(3)).unwrap();
    assert!(log.contains("the disk is full: reopening the WAL"), "{log}");

    // Space freed: node 3 takes its reserve back and catches up.
    std::fs::remove_file(filler).unwrap();
    let commit = c.status(leader).await.unwrap()["commit"].as_u64().unwrap();
    wait_for("node 3 to catch up", || async {
        let s = c.status(3).await?;
        (s["applied"].as_u64()? >= commit && s["no_space"] == false).then_some(())
    })
    .await;
    w.check(&c, 3).await;
    assert!(c.stop(3).success());
    c.spawn(3);
    w.check(&c, 3).await;
}
