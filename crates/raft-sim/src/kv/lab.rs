//! The lab's kvraft test drivers, shared by the 3A and 3B scenarios:
//! `GenericTest` (clients appending and getting while the network
//! partitions and servers crash) and `GenericTestSpeed`.
//!
//! Each scenario ends by checking the whole history with the
//! linearizability checker and that the replicas hold the same state.

use std::collections::BTreeMap;

use raft_core::NodeId;
use raft_kv::{Op, OpResult};

use super::harness::KvCluster;
use super::workload::{lab_value, Workload};
use super::ClerkId;
use crate::clock::MS;
use crate::error::SimError;
use crate::harness::ELECTION_TIMEOUT_MS;

/// The lab's `GenericTest` parameters.
#[derive(Clone, Debug)]
pub struct Generic {
    /// Concurrent clients.
    pub clients: usize,
    /// Servers.
    pub servers: usize,
    /// The lab's unreliable network (client messages too).
    pub unreliable: bool,
    /// Shut every server down and restart it after each iteration.
    pub crash: bool,
    /// Repartition the servers at random every 1–1.2 s.
    pub partitions: bool,
    /// The lab's maxraftstate (`None`: -1, no snapshots).
    pub max_raft_state: Option<u64>,
    /// Clients pick a random key for every call (and sometimes put).
    pub random_keys: bool,
    /// Iterations (the lab: 3).
    pub iterations: u32,
    /// Virtual time clients run in each iteration, in ms (the lab: 5,000).
    pub iteration_ms: u64,
    /// A client's pause between calls, uniform in ms. The lab's clients
    /// call back to back, but each of its calls takes a real RPC round
    /// trip and usually a few ms of Raft; a simulated call takes about two
    /// ms, so the pause keeps a client near the lab's pace (tens of calls a
    /// second) and a run's history near the lab's size. More than five
    /// clients pause longer, so that the cluster's load stays that of five.
    pub pause_ms: (u64, u64),
}

impl Generic {
    /// `clients` clients on `servers` servers, reliable, no crashes or
    /// partitions, no snapshots, each client on its own key; three
    /// iterations of 5 s, as the lab runs them; pauses of up to 40 ms (more
    /// with more than five clients).
    pub fn new(clients: usize, servers: usize) -> Self {
        Generic {
            clients,
            servers,
            unreliable: false,
            crash: false,
            partitions: false,
            max_raft_state: None,
            random_keys: false,
            iterations: 3,
            iteration_ms: 5_000,
            pause_ms: (0, 8 * clients.max(5) as u64),
        }
    }
}

/// The lab's `GenericTest`: in each iteration, clients call Append and Get
/// back to back while (optionally) a partitioner splits the servers at
/// random; then the network heals, (optionally) every server is shut down
/// and restarted, and each client's key must hold exactly its appends, in
/// order. With maxraftstate, the persisted Raft state stays under 8× it;
/// without, no snapshot is ever taken.
pub fn generic(name: &str, seed: u64, g: &Generic) -> Result<(), SimError> {
    let mut cfg = KvCluster::new(name, seed, g.servers, g.unreliable, g.max_raft_state)?;
    let all = cfg.all();
    let ck = cfg.make_client(&all);
    let clerks: Vec<ClerkId> = (0..g.clients).map(|_| cfg.make_client(&all)).collect();
    for _ in 0..g.iterations {
        let mark = cfg.kv().clerks().recorded().len();
        for (me, &c) in clerks.iter().enumerate() {
            // Values go on numbering across iterations, so each is unique.
            let j = writes(&cfg, c);
            let client = Workload::lab(me, g.clients, g.random_keys).numbered_from(j);
            cfg.run_workload(c, client, g.pause_ms)?;
        }
        let end = cfg.now() + g.iteration_ms * MS;
        if g.partitions {
            cfg.run_for(ELECTION_TIMEOUT_MS)?;
            partitioner(&mut cfg, end)?;
            // A client may have called a leader in a minority; its call
            // returns once that server learns of a newer term.
            cfg.connect_all();
            cfg.run_for(ELECTION_TIMEOUT_MS)?;
        } else {
            cfg.run_until(end)?;
            cfg.stop_clients();
        }
        if g.crash {
            for id in cfg.all() {
                cfg.shutdown_server(id);
            }
            cfg.run_for(ELECTION_TIMEOUT_MS)?;
            for id in cfg.all() {
                cfg.start_server(id)?;
            }
            cfg.connect_all();
        }
        cfg.wait_clients(&clerks, 30_000)?;
        for (me, &c) in clerks.iter().enumerate() {
            let v = cfg.get(ck, &me.to_string())?;
            if !g.random_keys {
                check_appends(&cfg, me, c, mark, &v)?;
            }
        }
        match g.max_raft_state {
            Some(max) => {
                let size = cfg.log_size();
                if size > 8 * max {
                    let msg = format!("logs were not trimmed ({size} > 8*{max})");
                    return Err(cfg.fatal(msg));
                }
            }
            None => {
                let size = cfg.snapshot_size();
                if size > 0 {
                    let msg = format!(
                        "snapshot too large ({size}), should not be used without maxraftstate"
                    );
                    return Err(cfg.fatal(msg));
                }
            }
        }
    }
    cfg.check_replicas(5_000)?;
    cfg.check_history()
}

/// Writes `clerk` has called so far.
fn writes<F: crate::StorageFactory>(cfg: &KvCluster<F>, clerk: ClerkId) -> u64 {
    let recorded = cfg.kv().clerks().recorded();
    let mine = recorded.iter().filter(|r| r.clerk == clerk);
    mine.filter(|r| !r.op.is_read()).count() as u64
}

/// The lab's `partitioner`: random two-way splits of the servers, each for
/// an election timeout plus up to 200 ms, until the clients stop at `end`
/// and the split in force has run its course.
fn partitioner(cfg: &mut KvCluster, end: u64) -> Result<(), SimError> {
    loop {
        let n = cfg.n();
        let side: Vec<u64> = (0..n).map(|_| cfg.rand_below(2)).collect();
        let ids = |s: u64| -> Vec<NodeId> {
            (0..n)
                .filter(|&i| side[i] == s)
                .map(|i| i as NodeId + 1)
                .collect()
        };
        cfg.partition(&ids(0), &ids(1));
        let until = cfg.now() + (ELECTION_TIMEOUT_MS + cfg.rand_below(200)) * MS;
        if until >= end {
            cfg.run_until(end)?;
            cfg.stop_clients();
            return cfg.run_until(until);
        }
        cfg.run_until(until)?;
    }
}

/// The lab's `checkClntAppends` and `checkConcurrentAppends`: a value
/// read as `v` holds each append `clerk` had acknowledged since history
/// position `mark` exactly once, and each of its appends whose outcome is
/// unknown at most once, in call order. The lab's clerks never give up;
/// ours end a call by a deadline, and such a call may take effect later.
/// Skipped if a put of `clerk` in that span has an unknown outcome (it may
/// have reset the value at any time); the history check covers that case.
pub fn check_appends<F: crate::StorageFactory>(
    cfg: &KvCluster<F>,
    me: usize,
    clerk: ClerkId,
    mark: usize,
    v: &[u8],
) -> Result<(), SimError> {
    let mine: Vec<_> = cfg.kv().clerks().recorded()[mark..]
        .iter()
        .filter(|r| r.clerk == clerk)
        .collect();
    let acked = |r: &crate::kv::Recorded| matches!(r.end, Some((_, Ok(_))));
    if mine
        .iter()
        .any(|r| matches!(r.op, Op::Put { .. }) && !acked(r))
    {
        return Ok(());
    }
    let shown = || String::from_utf8_lossy(v).into_owned();
    let elements = lab_elements(v);
    let mut last = None;
    for r in mine {
        let Op::Append { value, .. } = &r.op else {
            continue;
        };
        let found = elements.get(&value[..]).map_or(&[][..], Vec::as_slice);
        let wanted = String::from_utf8_lossy(value);
        match *found {
            [] if !acked(r) => {}
            [] => {
                let msg = format!("{me} missing element {wanted} in Append result {}", shown());
                return Err(cfg.fatal(msg));
            }
            [off] if last.is_some_and(|l| off <= l) => {
                let msg = format!(
                    "wrong order for element {wanted} in Append result {}",
                    shown()
                );
                return Err(cfg.fatal(msg));
            }
            [off] => last = Some(off),
            _ => {
                let msg = format!("duplicate element {wanted} in Append result {}", shown());
                return Err(cfg.fatal(msg));
            }
        }
    }
    Ok(())
}

/// Where each element of a value made of lab values (`x me j y`, see
/// [`lab_value`]) starts: each element ends at the first " y" after it.
fn lab_elements(v: &[u8]) -> BTreeMap<&[u8], Vec<usize>> {
    let mut found: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    let mut start = 0;
    let mut i = 0;
    while i + 2 <= v.len() {
        if &v[i..i + 2] == b" y" {
            found.entry(&v[start..i + 2]).or_default().push(start);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    found
}

/// The lab's heartbeat interval over the operations it demands per
/// interval: 100 ms / 3.
pub const SPEED_LIMIT_MS_PER_OP: f64 = 100.0 / 3.0;

/// The lab's `GenericTestSpeed`: after a first Get (a leader is up), one
/// clerk appends 1,000 times, one call after the other, on 3 servers; the
/// appends must average under 33 ms of virtual time (a command must not
/// wait for the next heartbeat). Returns the average, in ms per operation.
pub fn speed(name: &str, seed: u64, max_raft_state: Option<u64>) -> Result<f64, SimError> {
    const OPS: u64 = 1_000;
    let mut cfg = KvCluster::new(name, seed, 3, false, max_raft_state)?;
    let all = cfg.all();
    let ck = cfg.make_client(&all);
    cfg.get(ck, "x")?;
    let start = cfg.now();
    for i in 0..OPS {
        let op = Op::Append {
            key: b"x".to_vec(),
            value: lab_value(0, i),
        };
        match cfg.call(ck, op)? {
            Ok(OpResult::Appended { .. }) => {}
            other => return Err(cfg.fatal(format!("append {i} answered {other:?}"))),
        }
    }
    let per_op = (cfg.now() - start) as f64 / MS as f64 / OPS as f64;
    let v = cfg.get(ck, "x")?;
    check_appends(&cfg, 0, ck, 0, &v)?;
    if per_op > SPEED_LIMIT_MS_PER_OP {
        let msg = format!(
            "operations completed too slowly: {per_op:.2} ms/op > {SPEED_LIMIT_MS_PER_OP:.2} ms/op"
        );
        return Err(cfg.fatal(msg));
    }
    cfg.check_history()?;
    Ok(per_op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_splits_into_the_labs_elements() {
        let mut v = Vec::new();
        for (me, j) in [(0, 1), (1, 1), (0, 11), (0, 1)] {
            v.extend(lab_value(me, j));
        }
        let found = lab_elements(&v);
        assert_eq!(found[&b"x 0 1 y"[..]], [0, 22]);
        assert_eq!(found[&b"x 1 1 y"[..]], [7]);
        assert_eq!(found[&b"x 0 11 y"[..]].len(), 1);
        assert_eq!(found.len(), 3);
    }
}
