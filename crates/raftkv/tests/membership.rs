//! Changing a running cluster of real `raftkv server` processes under load:
//! three nodes grow to five (two nodes join with `--join`, catch up from a
//! snapshot and are promoted), leadership is handed to a new node, two of
//! the first members are replaced (two learners promoted and two members
//! removed, each pair in one joint change), and the cluster shrinks back to
//! three (removing the leader itself). A joined node restarts from its data
//! directory alone. Meanwhile clients write and read through sessions; at
//! the end every acknowledged append is still there and the whole history
//! checks linearizable.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, wait_for, Cluster, BIN};
use raft_kv::check::{check_and_draw, Budget, History, KvModel};
use raft_kv::{Op, OpResult};
use raftkv_client::{Client, ClientConfig, Error};
use serde_json::Value;

/// Concurrent clients, each with its own session.
const WORKERS: u64 = 4;
/// Keys only ever appended to (checked for lost writes at the end).
const APPEND_KEYS: u64 = 3;
/// Keys put and read.
const PUT_KEYS: u64 = 2;

fn client_cfg() -> ClientConfig {
    ClientConfig {
        attempt_timeout: Duration::from_secs(3),
        call_timeout: Duration::from_secs(20),
        ..ClientConfig::default()
    }
}

/// What the workers share: the history, the acknowledged appends, the clock.
struct Load {
    history: Mutex<History>,
    acked: Mutex<Vec<(String, String)>>,
    start: Instant,
    stop: AtomicBool,
}

impl Load {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn invoke(&self, client: u64, op: Op) -> usize {
        self.history.lock().unwrap().invoke(client, op, self.now())
    }

    fn done(&self, id: usize, result: Result<OpResult, Error>) {
        let now = self.now();
        let mut h = self.history.lock().unwrap();
        match result {
            Ok(out) => h.complete(id, out, now),
            // A session write that failed may have been applied.
            Err(_) => h.unknown(id),
        }
    }
}

/// One client: appends unique tokens, puts, and reads, until told to stop.
async fn worker(w: u64, client: Client, load: Arc<Load>) {
    let mut session = client.open_session().await.expect("a session");
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        match n % 4 {
            0 | 1 => {
                let key = format!("a{}", (w + n) % APPEND_KEYS);
                let token = format!("<{w}.{n}>");
                let op = Op::Append {
                    key: key.clone().into_bytes(),
                    value: token.clone().into_bytes(),
                };
                let id = load.invoke(w, op);
                let r = session.append(&key, &token).await;
                if r.is_ok() {
                    load.acked.lock().unwrap().push((key, token));
                }
                load.done(id, r.map(|len| OpResult::Appended { len }));
            }
            2 => {
                let key = format!("p{}", n % PUT_KEYS);
                let value = format!("{w}.{n}");
                let op = Op::Put {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                };
                let id = load.invoke(w, op);
                let r = session.put(&key, value).await;
                load.done(id, r.map(|p| OpResult::Replaced(p.map(|b| b.to_vec()))));
            }
            _ => {
                let key = format!("p{}", n % PUT_KEYS);
                let id = load.invoke(
                    w,
                    Op::Get {
                        key: key.clone().into_bytes(),
                    },
                );
                let r = client.get(&key).await;
                load.done(id, r.map(|v| OpResult::Value(v.map(|b| b.to_vec()))));
            }
        }
    }
}

/// Runs `raftkv args... --json`: its exit code, stdout and stderr.
async fn cli_run(args: &[&str], endpoints: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .args(["--endpoints", endpoints, "--json", "--timeout", "20"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Runs `raftkv args... --json` and returns its JSON answer; fails the
/// test on a non-zero exit.
async fn cli(args: &[&str], endpoints: &str) -> Value {
    let (code, stdout, stderr) = cli_run(args, endpoints).await;
    assert_eq!(code, 0, "raftkv {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("raftkv {args:?}: {e}: {stdout}"))
}

/// The voters' ids in a `--json` member list.
fn voter_ids(m: &Value) -> Vec<u64> {
    m["voters"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// Starts node `id` with `raftkv server --join`.
fn join(c: &mut Cluster, id: u64, raft: &str, extra: &[&str]) {
    let log = std::fs::File::create(c.log(id)).unwrap();
    let child = std::process::Command::new(BIN)
        .args(["server", "--id", &id.to_string()])
        .args(["--join", &format!("http://{}", c.clients[&1])])
        .args(["--listen", &c.clients[&id], "--raft-listen", raft])
        .arg("--data-dir")
        .arg(c.data_dir(id))
        .args(&c.extra)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    c.procs.insert(id, child);
}

/// Waits until node `id` reports exactly these voters and learners.
async fn wait_conf(c: &Cluster, id: u64, voters: &[u64], learners: &[u64]) {
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    wait_for(
        &format!("node {id} to see voters {voters:?}, learners {learners:?}"),
        || async {
            let s = c.status(id).await?;
            let ok = ids(&s["voters"]) == voters
                && ids(&s["learners"]) == learners
                && ids(&s["voters_outgoing"]).is_empty();
            ok.then_some(())
        },
    )
    .await;
}

/// Waits until node `id` has applied everything node `leader` committed.
async fn wait_caught_up(c: &Cluster, id: u64, leader: u64) {
    let target = c.status(leader).await.unwrap()["commit"].as_u64().unwrap();
    wait_for(&format!("node {id} to apply index {target}"), || async {
        let s = c.status(id).await?;
        (s["applied"].as_u64()? >= target).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_replace_shrink_and_transfer_under_load() {
    let started = Instant::now();
    // Small snapshots, so a joining node must be sent one.
    let mut c = Cluster::start(3, &["--reserve-bytes", "0", "--snapshot-bytes", "32768"]);
    let mut rafts = BTreeMap::new();
    for id in 4..=7 {
        c.clients.insert(id, format!("127.0.0.1:{}", free_port()));
        rafts.insert(id, format!("127.0.0.1:{}", free_port()));
    }
    let all = c.endpoints().join(",");
    c.agreed_leader(&[1, 2, 3]).await;

    // Enough data for the leader to have taken a snapshot.
    let client = Client::with_config(c.endpoints(), client_cfg()).unwrap();
    for i in 0..40 {
        client
            .put(format!("seed{i}"), vec![b's'; 2048])
            .await
            .unwrap();
    }
    wait_for("a snapshot on every first node", || async {
        for id in 1..=3 {
            (c.status(id).await?["snapshot_index"].as_u64()? > 0).then_some(())?;
        }
        Some(())
    })
    .await;

    let load = Arc::new(Load {
        history: Mutex::new(History::new()),
        acked: Mutex::new(Vec::new()),
        start: Instant::now(),
        stop: AtomicBool::new(false),
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, client.clone(), load.clone())))
        .collect();

    // 3 -> 5: two nodes join, catch up from a snapshot, and are promoted.
    join(&mut c, 4, &rafts[&4], &[]);
    join(&mut c, 5, &rafts[&5], &[]);
    wait_conf(&c, 3, &[1, 2, 3, 4, 5], &[]).await;
    for id in [4, 5] {
        assert!(
            c.metric(id, "raftkv_snapshots_installed_total").await >= 1.0,
            "node {id} joined without a snapshot"
        );
    }

    // A joined node restarts from its data directory alone.
    assert!(c.stop(5).success());
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(c.log(5))
        .unwrap();
    let child = std::process::Command::new(BIN)
        .arg("server")
        .arg("--data-dir")
        .arg(c.data_dir(5))
        .args(&c.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    c.procs.insert(5, child);
    let (leader, _) = c.agreed_leader(&[1, 2, 3, 4, 5]).await;
    wait_caught_up(&c, 5, leader).await;

    // Leadership to a node that joined.
    let t = cli(&["transfer-leader", "--to", "4"], &all).await;
    assert_eq!(t["to"], 4, "{t}");
    assert_eq!(c.agreed_leader(&[1, 2, 3, 4, 5]).await.0, 4);

    // Replace 1 and 2 by 6 and 7: two learners, promoted together, then
    // the two old members removed together (two joint changes).
    join(&mut c, 6, &rafts[&6], &["--learner"]);
    join(&mut c, 7, &rafts[&7], &["--learner"]);
    wait_conf(&c, 4, &[1, 2, 3, 4, 5], &[6, 7]).await;
    // (An answer may say "changed": false when the first attempt's leader
    // lost its leadership and the retry found the change done: the
    // configuration it reports is what counts.)
    let m = cli(&["member", "promote", "6", "7"], &all).await;
    assert_eq!(voter_ids(&m), [1, 2, 3, 4, 5, 6, 7], "{m}");
    assert_eq!(m["joint"], false, "answered once C_new applied: {m}");
    let m = cli(&["member", "remove", "1", "2"], &all).await;
    assert_eq!(voter_ids(&m), [3, 4, 5, 6, 7], "{m}");
    wait_conf(&c, 4, &[3, 4, 5, 6, 7], &[]).await;
    for id in [1, 2] {
        assert!(c.stop(id).success(), "node {id} stops cleanly");
    }
    // Repeating a change is harmless; a removed id never comes back.
    let m = cli(&["member", "remove", "1"], &all).await;
    assert_eq!(m["changed"], false, "{m}");
    let (code, _, stderr) = cli_run(
        &[
            "member",
            "add-learner",
            "1",
            "--raft",
            "127.0.0.1:1",
            "--client",
            "127.0.0.1:2",
        ],
        &all,
    )
    .await;
    assert!(
        code == 4 && stderr.contains("id_retired"),
        "{code}: {stderr}"
    );

    // 5 -> 3, removing the leader (4) too: it hands leadership over.
    let m = cli(&["member", "remove", "3", "4"], &all).await;
    assert_eq!(voter_ids(&m), [5, 6, 7], "{m}");
    let (leader, _) = c.agreed_leader(&[5, 6, 7]).await;
    assert!([5, 6, 7].contains(&leader));
    wait_conf(&c, leader, &[5, 6, 7], &[]).await;
    for id in [3, 4] {
        assert!(c.stop(id).success(), "node {id} stops cleanly");
    }
    let m = cli(&["member", "list"], &all).await;
    assert_eq!(voter_ids(&m), [5, 6, 7], "{m}");
    // Every remaining member knows every other's addresses.
    for id in [5, 6, 7] {
        let s = c.status(id).await.unwrap();
        let peers: Vec<(u64, &str)> = s["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_u64().unwrap(), p["client"].as_str().unwrap()))
            .collect();
        let expected: Vec<(u64, &str)> = [5, 6, 7]
            .into_iter()
            .filter(|&p| p != id)
            .map(|p| (p, c.clients[&p].as_str()))
            .collect();
        assert_eq!(peers, expected, "node {id}: {s}");
    }

    // Let the clients run a moment on the final cluster, then stop them.
    let ops_before = load.history.lock().unwrap().len();
    wait_for("more calls on the final cluster", || async {
        (load.history.lock().unwrap().len() > ops_before + 20).then_some(())
    })
    .await;
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    // Every acknowledged append is in the final values (read as calls too).
    let acked = load.acked.lock().unwrap().clone();
    for k in 0..APPEND_KEYS {
        let key = format!("a{k}");
        let id = load.invoke(
            WORKERS,
            Op::Get {
                key: key.clone().into_bytes(),
            },
        );
        let value = client.get(&key).await.unwrap();
        let text = String::from_utf8(value.clone().unwrap_or_default().to_vec()).unwrap();
        load.done(id, Ok(OpResult::Value(value.map(|b| b.to_vec()))));
        for (_, token) in acked.iter().filter(|(k, _)| *k == key) {
            assert!(
                text.contains(token.as_str()),
                "acknowledged {token} missing from {key}"
            );
        }
    }
    let history = load.history.lock().unwrap().clone();
    let unknown = history.ops().iter().filter(|o| o.ret().is_none()).count();
    eprintln!(
        "{} calls ({} acknowledged appends, {unknown} with unknown outcome) in {:?}",
        history.len(),
        acked.len(),
        started.elapsed()
    );
    assert!(acked.len() > 50, "too little load: {} appends", acked.len());
    if let Err(e) = check_and_draw(&KvModel, history.ops(), &Budget::default(), "membership") {
        panic!("the history is not linearizable: {e}");
    }
}
