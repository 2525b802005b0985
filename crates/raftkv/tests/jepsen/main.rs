//! Jepsen-style test on real `raftkv server` processes.
//!
//! Three nodes, each reaching its peers only through fault-injecting TCP
//! proxies (one per direction of every pair; each node's `--peers` list
//! names its proxies). Five clients do random get/put/cas on a few
//! registers and get/append on a few logs for a bounded time, most writes
//! through exactly-once sessions and a quarter as plain calls, while a nemesis, one fault at a time, kill -9s
//! and restarts a node, SIGSTOPs and SIGCONTs one, or cuts one off from the
//! others (severed: connections reset; stalled: bytes held and delivered
//! late). Targets are the leader or a random node.
//!
//! Every call is recorded (a call whose answer never came is an unknown
//! outcome; a refused one is left out: it did nothing). After the faults
//! heal, a final linearizable read of every key joins the history, and:
//! - the history must be linearizable (raft-kv's checker);
//! - every acknowledged append is in its log exactly once, an unknown one
//!   at most once, and nothing else is there;
//! - every node converges on the same values.
//!
//! The seed and the nemesis mix are printed; `RAFTKV_JEPSEN_SEED=<seed>`
//! reruns the same choices (timings differ: these are real processes), and
//! `RAFTKV_JEPSEN_SECS` sets the workload's length (default 15 s).

#[path = "../common/mod.rs"]
mod common;
mod nemesis;
mod proxy;
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, Cluster};
use raft_kv::check::{check_and_draw, Budget, History, KvModel, Operation, Outcome};
use raft_kv::{Op, OpResult};
use raftkv_client::{Client, ClientConfig, Consistency};
use raftkv_server::{format_peers, parse_peers};

use nemesis::Nemesis;
use proxy::Link;
use workload::{Workload, APPEND_KEYS, REGISTERS};

const SEED_ENV: &str = "RAFTKV_JEPSEN_SEED";
const SECS_ENV: &str = "RAFTKV_JEPSEN_SECS";
const NODES: u64 = 3;
const CLIENTS: u64 = 5;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
        Err(_) => default,
    }
}

/// Starts proxies for every ordered pair of nodes and gives each node a
/// `--peers` list that reaches the others through them.
async fn proxied(c: &mut Cluster) -> BTreeMap<(u64, u64), Arc<Link>> {
    let real = parse_peers(&c.peers).unwrap();
    let mut links = BTreeMap::new();
    for &from in real.keys() {
        let mut mine = real.clone();
        for (&to, addrs) in &real {
            if from == to {
                continue;
            }
            let link = Link::start(addrs.raft.clone()).await;
            mine.get_mut(&to).unwrap().raft = link.addr.clone();
            links.insert((from, to), link);
        }
        c.node_peers.insert(from, format_peers(&mine));
    }
    links
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jepsen_kill_pause_and_partition_under_concurrent_clients() {
    let seed: u64 = env_or(SEED_ENV, rand::random::<u32>() as u64);
    let secs: f64 = env_or(SECS_ENV, 15.0);
    eprintln!("jepsen: seed {seed} ({SEED_ENV}={seed} reruns these choices), {secs} s of workload");
    let started = Instant::now();

    // Small snapshots, so restarts and lagging nodes go through them too.
    let mut c = Cluster::new(NODES, &["--snapshot-bytes", "262144"]);
    let links = proxied(&mut c).await;
    for id in 1..=NODES {
        c.spawn(id);
    }
    let all: Vec<u64> = (1..=NODES).collect();
    c.agreed_leader(&all).await;

    let cfg = ClientConfig {
        attempt_timeout: Duration::from_millis(1000),
        call_timeout: Duration::from_secs(3),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(250),
        consistency: Consistency::Linearizable,
        ..ClientConfig::default()
    };
    let client = Client::with_config(c.endpoints(), cfg).unwrap();
    let base = Instant::now();
    let end = base + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let w = Workload::new(id, seed, client.clone(), base, end);
        tasks.push(tokio::spawn(w.run()));
    }

    let mut nemesis = Nemesis::new(seed, links, base);
    nemesis.run(&mut c, end).await;
    let mut ops: Vec<Operation> = Vec::new();
    for t in tasks {
        ops.extend(t.await.expect("a client task panicked"));
    }
    let workload_done = base.elapsed();

    // Healed: every node is up and they agree on a leader.
    nemesis.heal_all(&mut c);
    let (leader, _) = c.agreed_leader(&all).await;
    let finals = final_reads(&client, base, &mut ops).await;
    converged(&c, leader, &finals).await;

    let summary = workload::summary(&ops);
    eprintln!("jepsen: nemesis {}", nemesis.mix());
    eprintln!("jepsen: {summary}");
    appends_intact(&ops, &finals);

    let check_start = Instant::now();
    let name = format!("jepsen-seed-{seed}");
    let history = History::from_ops(ops);
    if let Err(e) = check_and_draw(
        &KvModel,
        history.ops(),
        &Budget::time(Duration::from_secs(30)),
        &name,
    ) {
        panic!("seed {seed} ({SEED_ENV}={seed}): the history is not shown linearizable: {e}");
    }
    eprintln!(
        "jepsen: seed {seed}: linearizable ({} ops); workload {:.1} s, checked in {:.1} s, {:.1} s in all",
        history.len(),
        workload_done.as_secs_f64(),
        check_start.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for id in all {
        assert!(c.stop(id).success(), "node {id} did not stop cleanly");
    }
}

/// Reads every key, linearizably, once all faults healed; the reads join
/// the history.
async fn final_reads(
    client: &Client,
    base: Instant,
    ops: &mut Vec<Operation>,
) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let now = || base.elapsed().as_nanos() as u64;
    let mut finals = BTreeMap::new();
    for key in REGISTERS.iter().chain(APPEND_KEYS.iter()) {
        // A restarted node may still be catching up: retry until the deadline.
        let (call, value) = wait_for(&format!("the final read of {key}"), || async {
            let call = now();
            let value = client.get(key).await.ok()?;
            Some((call, value.map(|b| b.to_vec())))
        })
        .await;
        ops.push(Operation {
            client: u64::MAX,
            call,
            input: Op::Get {
                key: key.as_bytes().to_vec(),
            },
            outcome: Outcome::Returned {
                time: now(),
                output: OpResult::Value(value.clone()),
            },
        });
        finals.insert(key.as_bytes().to_vec(), value);
    }
    finals
}

/// Every node applies all the leader committed and holds the same values.
async fn converged(c: &Cluster, leader: u64, finals: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    let commit = c.status(leader).await.unwrap()["commit"].as_u64().unwrap();
    for id in 1..=NODES {
        wait_for(&format!("node {id} to apply index {commit}"), || async {
            (c.status(id).await?["applied"].as_u64()? >= commit).then_some(())
        })
        .await;
        for (key, value) in finals {
            let key = String::from_utf8_lossy(key);
            let r = c.get(id, &format!("/v1/kv/{key}?consistency=stale")).await;
            let got = (r.status == hyper::StatusCode::OK).then(|| r.body.to_vec());
            assert_eq!(&got, value, "node {id} disagrees on {key}");
        }
    }
}

/// Every acknowledged append is in its key's final value exactly once, an
/// unknown one at most once, and nothing else is there.
fn appends_intact(ops: &[Operation], finals: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    for key in APPEND_KEYS {
        let value = finals[key.as_bytes()].clone().unwrap_or_default();
        let text = String::from_utf8(value).expect("appends are text");
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for token in text.split(';').filter(|t| !t.is_empty()) {
            *seen.entry(token).or_default() += 1;
        }
        let mut acked = 0;
        for op in ops {
            let Op::Append { key: k, value } = &op.input else {
                continue;
            };
            if k != key.as_bytes() {
                continue;
            }
            let token = std::str::from_utf8(value).unwrap().trim_end_matches(';');
            let n = seen.remove(token).unwrap_or(0);
            match op.outcome {
                Outcome::Returned { .. } => {
                    acked += 1;
                    assert_eq!(
                        n, 1,
                        "{key}: acknowledged append {token} is there {n} times"
                    );
                }
                _ => assert!(
                    n <= 1,
                    "{key}: append {token} (unknown outcome) is there {n} times"
                ),
            }
        }
        assert!(seen.is_empty(), "{key}: appends nobody made: {seen:?}");
        eprintln!("jepsen: {key}: all {acked} acknowledged appends present, once each");
    }
}
