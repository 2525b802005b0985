//! The chaos schedule ([`crate::chaos`]) with the cluster changing shape
//! under it: servers join as learners, learners are promoted, members
//! (leaders too) are removed, joint changes move to random configurations,
//! and leadership is handed over, all proposed at whoever leads and left to
//! succeed or fail. Removed servers keep running a while, then stop for
//! good. With asynchronous leader writes on, a leader's write in progress
//! is now and then lost to a crash. At the end everything heals, one more
//! server joins and is promoted, and every command a client saw committed
//! must be on every member.

use std::collections::BTreeSet;

use raft_core::{ConfChange, ConfState, NodeId};

use crate::chaos::{heal_all, inject_fault, repair_one, ChaosReport};
use crate::error::SimError;
use crate::factory::StorageFactory;
use crate::harness::Cluster;
use crate::tasks::TaskOutput;

/// How long, how busy and how restless a membership chaos run is.
#[derive(Clone, Debug)]
pub struct MembershipChaos {
    /// Virtual time of the faulty phase, in ms.
    pub duration_ms: u64,
    /// Concurrent clients.
    pub clients: u64,
    /// Percent of steps that also attempt a membership change or a transfer.
    pub change_pct: u64,
    /// At most this many servers run at once (retired ones not counted).
    pub max_servers: usize,
    /// At most this many voters (promotions stop there).
    pub max_voters: usize,
    /// Arm lost writes (only bites with `Config::async_leader_writes`).
    pub lose_writes: bool,
}

impl Default for MembershipChaos {
    fn default() -> Self {
        MembershipChaos {
            duration_ms: 20_000,
            clients: 3,
            change_pct: 50,
            max_servers: 8,
            max_voters: 7,
            lose_writes: false,
        }
    }
}

/// What a membership chaos run did, on top of the faults.
#[derive(Clone, Debug, Default)]
pub struct MembershipReport {
    /// The faults, as in a plain chaos run.
    pub faults: ChaosReport,
    /// Servers started to join.
    pub joined: u64,
    /// Configuration changes the leader accepted (each may still be lost).
    pub changes: u64,
    /// Of those, joint ones.
    pub joint_changes: u64,
    /// Leadership transfers started.
    pub transfers: u64,
    /// Removed servers stopped for good.
    pub retired: u64,
    /// Leader writes armed to be lost to a crash.
    pub lost_writes: u64,
    /// Configuration entries committed over the run.
    pub committed_changes: usize,
    /// The configuration at the end.
    pub final_conf: ConfState,
}

/// The configuration the leader uses (its latest, committed or not).
fn leader_conf<F: StorageFactory>(c: &Cluster<F>, leader: NodeId) -> Option<ConfState> {
    c.sim().node(leader).map(|n| n.conf().clone())
}

fn pick<F: StorageFactory>(c: &mut Cluster<F>, from: &[NodeId]) -> Option<NodeId> {
    if from.is_empty() {
        return None;
    }
    Some(from[c.rand_below(from.len() as u64) as usize])
}

/// One attempt at a change or a transfer, at the current leader.
fn change_step<F: StorageFactory>(
    c: &mut Cluster<F>,
    cfg: &MembershipChaos,
    joining: &mut BTreeSet<NodeId>,
    r: &mut MembershipReport,
) -> Result<(), SimError> {
    let Some(leader) = c.leader() else {
        return Ok(());
    };
    let Some(conf) = leader_conf(c, leader) else {
        return Ok(());
    };
    let learners = conf.learners.clone();
    let voters: Vec<NodeId> = conf.voters.clone();
    let running = c.servers().len();
    let change = match c.rand_below(10) {
        0..=2 => {
            // A server joins as a learner (a new one, or one still waiting).
            let waiting: Vec<NodeId> = joining
                .iter()
                .copied()
                .filter(|&id| !conf.contains(id))
                .collect();
            let id = if !waiting.is_empty() && c.rand_below(2) == 0 {
                pick(c, &waiting)
            } else if running < cfg.max_servers {
                let id = c.add_server()?;
                joining.insert(id);
                r.joined += 1;
                Some(id)
            } else {
                None
            };
            id.map(ConfChange::AddLearner)
        }
        3..=4 if voters.len() < cfg.max_voters => pick(c, &learners).map(ConfChange::AddVoter),
        5..=6 => {
            // Remove a learner, or a voter (the leader too) while three remain.
            let mut candidates = learners.clone();
            if voters.len() > 3 {
                candidates.extend(&voters);
            }
            pick(c, &candidates).map(ConfChange::Remove)
        }
        7 => {
            // A random configuration of three to five voters from the
            // members and servers waiting to join; the rest stay learners.
            let mut pool: Vec<NodeId> = conf.members();
            pool.extend(joining.iter().filter(|id| !conf.contains(**id)));
            let want = (3 + c.rand_below(3) as usize).min(pool.len());
            let mut new_voters = Vec::new();
            while new_voters.len() < want {
                let i = c.rand_below(pool.len() as u64) as usize;
                new_voters.push(pool.swap_remove(i));
            }
            let learners: Vec<NodeId> = pool
                .into_iter()
                .filter(|id| conf.is_learner(*id) || joining.contains(id))
                .filter(|_| c.rand_below(2) == 0)
                .collect();
            Some(ConfChange::Joint {
                voters: new_voters,
                learners,
            })
        }
        _ => {
            let others: Vec<NodeId> = voters.iter().copied().filter(|&v| v != leader).collect();
            if let Some(to) = pick(c, &others) {
                if c.sim_mut().transfer_leader(leader, to)?.is_ok() {
                    r.transfers += 1;
                }
            }
            None
        }
    };
    let Some(change) = change else {
        return Ok(());
    };
    let joint = matches!(change, ConfChange::Joint { .. });
    if c.sim_mut().propose_conf_change(leader, change)?.is_ok() {
        r.changes += 1;
        r.joint_changes += u64::from(joint);
    }
    Ok(())
}

/// Stops, now and then, a server that was a member and no longer is in
/// the committed configuration.
fn retire_removed<F: StorageFactory>(
    c: &mut Cluster<F>,
    joining: &mut BTreeSet<NodeId>,
    r: &mut MembershipReport,
) {
    let committed = c.committed_conf();
    let mut ever: BTreeSet<NodeId> = c
        .sim()
        .checker()
        .committed_confs()
        .iter()
        .flat_map(|(_, conf)| conf.members())
        .collect();
    ever.extend(1..=c.sim().config().nodes as NodeId);
    for id in c.servers() {
        if committed.contains(id) {
            joining.remove(&id);
        } else if ever.contains(&id) && c.rand_below(4) == 0 {
            c.retire(id);
            joining.remove(&id);
            r.retired += 1;
        }
    }
}

/// Runs the membership chaos schedule on `c`, then heals it and checks
/// that every acknowledged command is on every member.
pub fn run_membership_chaos<F: StorageFactory>(
    c: &mut Cluster<F>,
    cfg: &MembershipChaos,
) -> Result<MembershipReport, SimError> {
    let mut r = MembershipReport::default();
    let mut joining = BTreeSet::new();
    let clients: Vec<_> = (0..cfg.clients).map(|me| c.spawn_client(me)).collect();
    let end = c.now() + cfg.duration_ms * crate::clock::MS;
    while c.now() < end {
        // The plain schedule's faults and repairs, and changes on top.
        if c.rand_below(100) < 45 {
            inject_fault(c, &mut r.faults)?;
        } else {
            repair_one(c, &mut r.faults)?;
        }
        if c.rand_below(100) < cfg.change_pct {
            change_step(c, cfg, &mut joining, &mut r)?;
        }
        if cfg.lose_writes && c.rand_below(100) < 10 {
            if let Some(l) = c.leader() {
                c.sim_mut().fail_next_write(l);
                r.lost_writes += 1;
            }
        }
        if c.rand_below(100) < 5 {
            heal_all(c)?;
        }
        retire_removed(c, &mut joining, &mut r);
        let pause = 100 + c.rand_below(900);
        c.run_for(pause)?;
    }
    for id in 1..=c.n() as NodeId {
        c.sim_mut().keep_next_write(id);
    }
    heal_all(c)?;
    c.sim_mut().release_all();
    c.stop_clients();
    let mut acked = Vec::new();
    for id in clients {
        if let TaskOutput::Committed(v) = c.join(id)? {
            acked.extend(v);
        }
    }
    c.run_for(1_000)?;
    // A joint configuration left behind is left by the next leader.
    let last = c.rand_cmd();
    c.one(last, 1, true)?;
    c.wait_conf(10_000, "the joint configuration to be left", |conf| {
        !conf.is_joint()
    })?;
    // One more server joins the healed cluster and becomes a voter.
    let id = c.add_server()?;
    c.add_learner(id)?;
    c.promote(id)?;
    let last = c.rand_cmd();
    let members = c.members();
    c.one(last, members.len(), true)?;
    for (index, cmd) in &acked {
        for &id in &members {
            if c.sim().apps().node(id).log.get(index) != Some(cmd) {
                return Err(c.fatal(format!(
                    "command acknowledged at index {index} is missing on member {id}"
                )));
            }
        }
    }
    r.faults.acknowledged = acked.len();
    r.committed_changes = c.sim().checker().committed_confs().len();
    r.final_conf = c.committed_conf();
    Ok(r)
}
