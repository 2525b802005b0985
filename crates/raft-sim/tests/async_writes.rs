//! Asynchronous leader writes (`Config::async_leader_writes`): a leader's
//! AppendEntries leave before its own write of the same entries is durable,
//! and it counts itself toward a commit only once the write has landed. The
//! simulator gives each such write a disk's time, longer than a round trip,
//! so followers' acknowledgements often arrive first; the checker counts
//! only persisted copies, so a leader that counted its own unpersisted
//! entries would be caught committing without a majority. A crash between
//! sending and persisting loses that Ready's writes.

use raft_core::{Config, NodeId};
use raft_sim::{cmd, run_chaos, seeds, ChaosConfig, Cluster, SimError, TaskOutput};

fn async_writes(c: &mut Config) {
    c.async_leader_writes = true;
}

fn cluster(n: usize, seed: u64) -> Result<Cluster, SimError> {
    Cluster::builder(n, seed).configure(async_writes).build()
}

/// Checks that every acknowledged command is on every node.
fn all_have(c: &mut Cluster, acked: &[(u64, Vec<u8>)]) -> Result<(), SimError> {
    let last = c.one(cmd(u64::MAX), c.n(), true)?;
    let ids: Vec<NodeId> = (1..=c.n() as NodeId).collect();
    c.wait_applied(2_000, &ids, last)?;
    for (index, command) in acked {
        for &id in &ids {
            if c.sim().apps().node(id).log.get(index) != Some(command) {
                return Err(c.fatal(format!("command acknowledged at {index} missing on {id}")));
            }
        }
    }
    Ok(())
}

/// Three clients write for five seconds: the leader's writes overlap
/// replication, commits go on, and the checker sees every commit made with
/// a majority of persisted copies.
#[test]
fn async_leader_writes_agree() {
    seeds::run("async_leader_writes_agree", |seed| {
        let mut c = cluster(5, seed)?;
        c.check_one_leader()?;
        let ids: Vec<_> = (0..3).map(|me| c.spawn_client(me)).collect();
        c.run_for(5_000)?;
        c.stop_clients();
        let mut acked = Vec::new();
        for id in ids {
            if let TaskOutput::Committed(v) = c.join(id)? {
                acked.extend(v);
            }
        }
        let s = c.stats();
        if acked.len() < 100 || s.async_writes < 100 {
            return Err(c.fatal(format!(
                "{} commands acknowledged, {} writes in parallel",
                acked.len(),
                s.async_writes
            )));
        }
        all_have(&mut c, &acked)
    });
}

/// Twenty times, the leader crashes after its early messages left and
/// before its write landed: it comes back without that Ready's entries,
/// which followers may hold and a new leader may keep or overwrite. Nothing
/// a client saw committed is lost.
#[test]
fn leader_crashes_between_send_and_persist() {
    seeds::run("leader_crashes_between_send_and_persist", |seed| {
        let mut c = cluster(5, seed)?;
        c.check_one_leader()?;
        let ids: Vec<_> = (0..3).map(|me| c.spawn_client(me)).collect();
        for _ in 0..20 {
            c.wait_for(2_000, "a leader", |c| c.leader().is_some())?;
            let Some(l) = c.leader() else { continue };
            c.sim_mut().fail_next_write(l);
            c.wait_for(2_000, "the leader to crash mid-write", |c| !c.is_up(l))?;
            let pause = 100 + c.rand_below(400);
            c.run_for(pause)?;
            c.restart(l)?;
            c.connect(l);
        }
        c.stop_clients();
        let mut acked = Vec::new();
        for id in ids {
            if let TaskOutput::Committed(v) = c.join(id)? {
                acked.extend(v);
            }
        }
        if c.stats().lost_writes != 20 {
            return Err(c.fatal(format!("{} writes lost", c.stats().lost_writes)));
        }
        all_have(&mut c, &acked)
    });
}

/// The plain chaos schedule with asynchronous leader writes: a crash that
/// hits a leader may land between its early messages and its write.
#[test]
fn chaos_with_async_leader_writes() {
    seeds::run("chaos_with_async_leader_writes", |seed| {
        let mut c = Cluster::builder(5, seed)
            .snapshot_every(10)
            .configure(async_writes)
            .build()?;
        let chaos = ChaosConfig {
            duration_ms: 15_000,
            ..ChaosConfig::default()
        };
        let report = run_chaos(&mut c, &chaos)?;
        if report.acknowledged == 0 || c.stats().async_writes == 0 {
            return Err(c.fatal("no command acknowledged, or no write in parallel"));
        }
        Ok(())
    });
}
