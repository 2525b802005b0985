//! The chaos schedule: random partitions, crashes, restarts, lossy,
//! duplicating and reordering links, long delays and held replies that
//! arrive terms later, over a long run, with clients proposing
//! throughout; then everything heals, and every command a client saw
//! committed must be applied, at its index, on every node.

use raft_core::{Index, NodeId};

use crate::error::SimError;
use crate::factory::StorageFactory;
use crate::harness::Cluster;
use crate::hold::{Hold, Release, Select};
use crate::network::{LinkFaults, LongDelay};
use crate::tasks::TaskOutput;

/// How long and how busy a chaos run is.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Virtual time of the faulty phase, in ms.
    pub duration_ms: u64,
    /// Concurrent clients.
    pub clients: u64,
    /// Size of each client command in bytes (at least 8); large commands
    /// make large snapshots, sent in several InstallSnapshot chunks.
    pub command_bytes: usize,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            duration_ms: 30_000,
            clients: 3,
            command_bytes: 8,
        }
    }
}

/// What a chaos run did.
#[derive(Clone, Debug, Default)]
pub struct ChaosReport {
    /// Commands the clients saw committed.
    pub acknowledged: usize,
    /// Index of the final command, committed on every node.
    pub final_index: Index,
    /// Nodes crashed.
    pub crashes: u64,
    /// Crashed nodes restarted (besides the final healing).
    pub restarts: u64,
    /// Partitions imposed.
    pub partitions: u64,
    /// Times link faults were set.
    pub link_faults: u64,
    /// Switches of the lab's unreliable or long-reordering mode.
    pub mode_changes: u64,
    /// Times the long delay on every link was switched on.
    pub long_delays: u64,
    /// Holds set on a follower's replies to the leader.
    pub holds: u64,
}

fn random_faults<F: StorageFactory>(c: &mut Cluster<F>) -> LinkFaults {
    let drop = c.rand_below(40) as f64 / 100.0;
    let duplicate = c.rand_below(20) as f64 / 100.0;
    // One link in four is very slow: requests and replies from old terms
    // arrive long after the cluster moved on.
    let delay_ms = if c.rand_below(4) == 0 {
        (100, 100 + c.rand_below(1400))
    } else {
        (0, c.rand_below(50))
    };
    // One link in five sometimes holds a message for several election
    // timeouts, so it arrives terms later.
    let long_delay = if c.rand_below(5) == 0 {
        let p = (1 + c.rand_below(20)) as f64 / 100.0;
        LongDelay::new(p, 500, 1_000 + c.rand_below(4_000))
    } else {
        LongDelay::default()
    };
    LinkFaults {
        drop,
        duplicate,
        delay_ms,
        long_delay,
    }
}

/// The leader of the newest term among running nodes, if any.
fn leader<F: StorageFactory>(c: &Cluster<F>) -> Option<NodeId> {
    (1..=c.n() as NodeId)
        .filter_map(|i| c.get_state(i).filter(|&(_, l)| l).map(|(t, _)| (t, i)))
        .max()
        .map(|(_, i)| i)
}

/// One random fault: crash, disconnect, partition, faulty links, lab
/// modes, long delays, held replies.
pub(crate) fn inject_fault<F: StorageFactory>(
    c: &mut Cluster<F>,
    r: &mut ChaosReport,
) -> Result<(), SimError> {
    let n = c.n() as u64;
    let node = c.rand_below(n) + 1;
    match c.rand_below(14) {
        0..=2 => {
            if c.is_up(node) {
                c.crash(node);
                r.crashes += 1;
            }
        }
        3 => c.disconnect(node),
        4 => {
            // Hit the leader, as Figure 8 does.
            if let Some(l) = leader(c) {
                if c.rand_below(2) == 0 {
                    c.crash(l);
                    r.crashes += 1;
                } else {
                    c.disconnect(l);
                }
            }
        }
        5..=6 => {
            let groups = (0..n).map(|_| c.rand_below(2) as u32).collect();
            c.sim_mut().partition(groups);
            r.partitions += 1;
        }
        7..=8 => {
            let k = 1 + c.rand_below(n.max(2) - 1);
            let to = c.next(node, k);
            let f = random_faults(c);
            c.sim_mut().set_faults(node, to, f);
            r.link_faults += 1;
        }
        9 => {
            // Every link a little lossy, duplicating and reordering.
            for from in 1..=n {
                for to in 1..=n {
                    let f = LinkFaults {
                        drop: 0.05,
                        duplicate: 0.05,
                        delay_ms: (0, 20),
                        ..LinkFaults::default()
                    };
                    c.sim_mut().set_faults(from, to, f);
                }
            }
            r.link_faults += 1;
        }
        10 => {
            let reliable = c.sim().net().reliable;
            c.set_unreliable(reliable);
            r.mode_changes += 1;
        }
        11 => {
            let long = c.sim().net().long_reordering;
            c.set_long_reordering(!long);
            r.mode_changes += 1;
        }
        12 => {
            // A few messages on every link held one to five seconds.
            let p = (1 + c.rand_below(5)) as f64 / 100.0;
            let d = LongDelay::new(p, 1_000, 1_000 + c.rand_below(4_000));
            c.sim_mut().set_long_delay(d);
            r.long_delays += 1;
        }
        _ => {
            // A follower's next replies to the leader wait until that node
            // leads again in a later term.
            if let Some(l) = leader(c).filter(|&l| l != node) {
                let hold = Hold::new(Select::Replies, Release::AddresseeLeadsLater)
                    .from(node)
                    .to(l)
                    .limit(1 + c.rand_below(20));
                c.sim_mut().hold(hold);
                r.holds += 1;
            }
        }
    }
    Ok(())
}

/// Undoes one kind of fault, if any is in force. Retired servers stay down.
pub(crate) fn repair_one<F: StorageFactory>(
    c: &mut Cluster<F>,
    r: &mut ChaosReport,
) -> Result<(), SimError> {
    let n = c.n() as NodeId;
    let down: Vec<NodeId> = (1..=n)
        .filter(|&i| !c.is_up(i) && !c.sim().is_retired(i))
        .collect();
    let cut: Vec<NodeId> = (1..=n)
        .filter(|&i| c.is_up(i) && !c.is_connected(i))
        .collect();
    match c.rand_below(4) {
        0 if !down.is_empty() => {
            let id = down[c.rand_below(down.len() as u64) as usize];
            c.restart(id)?;
            c.connect(id);
            r.restarts += 1;
        }
        1 if !cut.is_empty() => {
            let id = cut[c.rand_below(cut.len() as u64) as usize];
            c.connect(id);
        }
        2 => c.sim_mut().heal(),
        3 if c.rand_below(2) == 0 => c.sim_mut().set_long_delay(LongDelay::default()),
        _ => c.sim_mut().clear_faults(),
    }
    Ok(())
}

/// Runs the chaos schedule on `c`, then heals it and checks the outcome.
pub fn run_chaos<F: StorageFactory>(
    c: &mut Cluster<F>,
    cfg: &ChaosConfig,
) -> Result<ChaosReport, SimError> {
    let mut report = ChaosReport::default();
    let clients: Vec<_> = (0..cfg.clients)
        .map(|me| c.spawn_client_sized(me, cfg.command_bytes))
        .collect();
    let end = c.now() + cfg.duration_ms * crate::clock::MS;
    while c.now() < end {
        if c.rand_below(100) < 45 {
            inject_fault(c, &mut report)?;
        } else {
            repair_one(c, &mut report)?;
        }
        if c.rand_below(100) < 5 {
            // Now and then a quiet spell, so the cluster makes progress.
            heal_all(c)?;
        }
        let pause = 100 + c.rand_below(900);
        c.run_for(pause)?;
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
    let last = c.rand_cmd();
    report.final_index = c.one(last, c.n(), true)?;
    for (index, cmd) in &acked {
        for id in 1..=c.n() as NodeId {
            if c.sim().apps().node(id).log.get(index) != Some(cmd) {
                return Err(c.fatal(format!(
                    "command acknowledged at index {index} is missing on node {id}"
                )));
            }
        }
    }
    report.acknowledged = acked.len();
    Ok(report)
}

/// Removes every fault: partitions, link faults, lab modes, long delays;
/// restarts and connects every node but the retired ones. Holds stop
/// catching; what they caught waits until its addressee leads again, or
/// until the run ends.
pub fn heal_all<F: StorageFactory>(c: &mut Cluster<F>) -> Result<(), SimError> {
    c.sim_mut().heal();
    c.sim_mut().stop_holds();
    c.sim_mut().clear_faults();
    c.sim_mut().set_network_mode(true, false);
    if c.sim().net().long_delay != LongDelay::default() {
        c.sim_mut().set_long_delay(LongDelay::default());
    }
    for id in c.sim().servers() {
        if !c.is_up(id) {
            c.restart(id)?;
        }
        c.connect(id);
    }
    Ok(())
}
