//! The 6.824 lab's 2C tests (persistence, Figure 8, unreliable networks,
//! churn), in virtual time. `cfg.restart(i)` is the lab's `start1(i)` (it
//! leaves the server disconnected); `cfg.crash(i)` is `crash1(i)`.
//!
//! `persist1_on`, `figure8_on` and `churn_on` take the storage factory, so
//! the same scenarios run on another `Storage` (e.g. a WAL that is dropped
//! on crash and reopened on restart): the `*_on_wal` tests at the end run
//! them with every node on raft-wal, once on a real temp directory and once
//! on raft-wal's simulated disk, where a crash also loses unsynced writes.

use std::collections::BTreeMap;

use raft_core::NodeId;
use raft_sim::{
    cmd, seeds, show_cmd, Cluster, MemFactory, OpenError, SimError, StorageFactory, TaskOutput,
    ELECTION_TIMEOUT_MS as ET,
};
use raft_wal::{SimFs, SyncMode, Wal, WalOptions};

/// TestPersist12C: basic persistence.
#[test]
fn persist1() {
    seeds::run("persist1", |seed| persist1_on(seed, MemFactory::new()));
}

/// TestPersist12C on any storage (e.g. a write-ahead log).
pub fn persist1_on<F: StorageFactory>(seed: u64, storage: F) -> Result<(), SimError> {
    let servers = 3;
    let mut cfg = Cluster::builder(servers, seed).build_with(storage)?;
    cfg.one(cmd(11), servers, true)?;
    // Crash and restart all.
    for i in 1..=servers as NodeId {
        cfg.restart(i)?;
    }
    for i in 1..=servers as NodeId {
        cfg.disconnect(i);
        cfg.connect(i);
    }
    cfg.one(cmd(12), servers, true)?;

    let leader1 = cfg.check_one_leader()?;
    cfg.disconnect(leader1);
    cfg.restart(leader1)?;
    cfg.connect(leader1);
    cfg.one(cmd(13), servers, true)?;

    let leader2 = cfg.check_one_leader()?;
    cfg.disconnect(leader2);
    cfg.one(cmd(14), servers - 1, true)?;
    cfg.restart(leader2)?;
    cfg.connect(leader2);
    // Wait for leader2 to join before killing i3.
    cfg.wait(4, servers, None)?;

    let leader3 = cfg.check_one_leader()?;
    let i3 = cfg.next(leader3, 1);
    cfg.disconnect(i3);
    cfg.one(cmd(15), servers - 1, true)?;
    cfg.restart(i3)?;
    cfg.connect(i3);
    cfg.one(cmd(16), servers, true)?;
    Ok(())
}

/// TestPersist22C: more persistence.
#[test]
fn persist2() {
    seeds::run("persist2", |seed| {
        let servers = 5;
        let mut cfg = Cluster::new(servers, seed)?;
        let mut index = 1;
        for _ in 0..5 {
            cfg.one(cmd(10 + index), servers, true)?;
            index += 1;
            let leader1 = cfg.check_one_leader()?;
            let at = |k| cfg.next(leader1, k);
            let (l0, l1, l2, l3, l4) = (at(0), at(1), at(2), at(3), at(4));
            cfg.disconnect(l1);
            cfg.disconnect(l2);
            cfg.one(cmd(10 + index), servers - 2, true)?;
            index += 1;
            cfg.disconnect(l0);
            cfg.disconnect(l3);
            cfg.disconnect(l4);
            cfg.restart(l1)?;
            cfg.restart(l2)?;
            cfg.connect(l1);
            cfg.connect(l2);
            cfg.run_for(ET)?;
            cfg.restart(l3)?;
            cfg.connect(l3);
            cfg.one(cmd(10 + index), servers - 2, true)?;
            index += 1;
            cfg.connect(l4);
            cfg.connect(l0);
        }
        cfg.one(cmd(1000), servers, true)?;
        Ok(())
    });
}

/// TestPersist32C: partitioned leader and one follower crash, leader restarts.
#[test]
fn persist3() {
    seeds::run("persist3", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.one(cmd(101), 3, true)?;
        let leader = cfg.check_one_leader()?;
        let (l0, l1, l2) = (leader, cfg.next(leader, 1), cfg.next(leader, 2));
        cfg.disconnect(l2);
        cfg.one(cmd(102), 2, true)?;
        cfg.crash(l0);
        cfg.crash(l1);
        cfg.connect(l2);
        cfg.restart(l0)?;
        cfg.connect(l0);
        cfg.one(cmd(103), 2, true)?;
        cfg.restart(l1)?;
        cfg.connect(l1);
        cfg.one(cmd(104), servers, true)?;
        Ok(())
    });
}

/// The lab's pause between Figure 8 iterations: usually under 13 ms,
/// one time in ten up to half an election timeout.
fn figure8_pause<F: StorageFactory>(cfg: &mut Cluster<F>) -> Result<(), SimError> {
    let ms = if cfg.rand_below(1000) < 100 {
        cfg.rand_below(ET / 2)
    } else {
        cfg.rand_below(13)
    };
    cfg.run_for(ms)
}

/// TestFigure82C: leaders crash quickly, often before committing; new
/// leaders must not commit entries of earlier terms by counting replicas.
#[test]
fn figure8() {
    seeds::run("figure8", |seed| figure8_on(seed, MemFactory::new()));
}

/// TestFigure82C on any storage.
pub fn figure8_on<F: StorageFactory>(seed: u64, storage: F) -> Result<(), SimError> {
    let servers = 5;
    let mut cfg = Cluster::builder(servers, seed).build_with(storage)?;
    let c = cfg.rand_cmd();
    cfg.one(c, 1, true)?;
    let mut nup = servers;
    for _ in 0..1000 {
        let mut leader = None;
        for i in 1..=servers as NodeId {
            if cfg.is_up(i) {
                let c = cfg.rand_cmd();
                if cfg.start(i, c)?.is_some() {
                    leader = Some(i);
                }
            }
        }
        figure8_pause(&mut cfg)?;
        if let Some(l) = leader {
            cfg.crash(l);
            nup -= 1;
        }
        if nup < 3 {
            let s = cfg.rand_below(servers as u64) + 1;
            if !cfg.is_up(s) {
                cfg.restart(s)?;
                cfg.connect(s);
                nup += 1;
            }
        }
    }
    for i in 1..=servers as NodeId {
        if !cfg.is_up(i) {
            cfg.restart(i)?;
            cfg.connect(i);
        }
    }
    let c = cfg.rand_cmd();
    cfg.one(c, servers, true)?;
    Ok(())
}

/// TestUnreliableAgree2C: agreement on a lossy network with concurrent clients.
#[test]
fn unreliable_agree() {
    seeds::run("unreliable_agree", |seed| {
        let servers = 5;
        let mut cfg = Cluster::builder(servers, seed).unreliable(true).build()?;
        for iters in 1..50 {
            for j in 0..4 {
                cfg.spawn_one(cmd(100 * iters + j), 1, true);
            }
            cfg.one(cmd(iters), 1, true)?;
        }
        cfg.set_unreliable(false);
        cfg.join_all()?;
        cfg.one(cmd(100), servers, true)?;
        Ok(())
    });
}

/// TestFigure8Unreliable2C: Figure 8 with leaders cut off instead of
/// crashed, on a lossy network that from iteration 200 also holds back
/// replies for up to 2.2 s.
#[test]
fn figure8_unreliable() {
    seeds::run("figure8_unreliable", |seed| {
        let servers = 5;
        let mut cfg = Cluster::builder(servers, seed).unreliable(true).build()?;
        let c = cmd(cfg.rand_below(10_000));
        cfg.one(c, 1, true)?;
        let mut nup = servers;
        for iters in 0..1000 {
            if iters == 200 {
                cfg.set_long_reordering(true);
            }
            let mut leader = None;
            for i in 1..=servers as NodeId {
                let c = cmd(cfg.rand_below(10_000));
                if cfg.start(i, c)?.is_some() && cfg.is_connected(i) {
                    leader = Some(i);
                }
            }
            figure8_pause(&mut cfg)?;
            if let Some(l) = leader {
                if cfg.rand_below(1000) < ET / 2 {
                    cfg.disconnect(l);
                    nup -= 1;
                }
            }
            if nup < 3 {
                let s = cfg.rand_below(servers as u64) + 1;
                if !cfg.is_connected(s) {
                    cfg.connect(s);
                    nup += 1;
                }
            }
        }
        for i in 1..=servers as NodeId {
            if !cfg.is_connected(i) {
                cfg.connect(i);
            }
        }
        let c = cmd(cfg.rand_below(10_000));
        cfg.one(c, servers, true)?;
        Ok(())
    });
}

/// The lab's `internalChurn`: clients propose throughout while servers are
/// cut off, restarted and crashed; every value a client saw committed must
/// be in the final log.
pub fn churn_on<F: StorageFactory>(
    seed: u64,
    unreliable: bool,
    storage: F,
    lab_settings: bool,
) -> Result<(), SimError> {
    let servers = 5;
    // With `lab_settings`, raft-lab's settings for the lab's network (resend
    // after 4 ticks, carry unacknowledged entries), so the figures below
    // compare with raft-lab's own run of this test; else the core's
    // defaults (plain pipelining).
    let lab: fn(&mut raft_core::Config) = match lab_settings {
        true => |c| {
            c.resend_tick = 4;
            c.carry_unacked = 64;
        },
        false => |_| {},
    };
    let mut cfg = Cluster::builder(servers, seed)
        .configure(lab)
        .unreliable(unreliable)
        .build_with(storage)?;
    let clients: Vec<_> = (0..3).map(|me| cfg.spawn_client(me)).collect();
    let mut majority_rounds = 0;
    for _ in 0..20 {
        if cfg.rand_below(1000) < 200 {
            let i = cfg.rand_below(servers as u64) + 1;
            cfg.disconnect(i);
        }
        if cfg.rand_below(1000) < 500 {
            let i = cfg.rand_below(servers as u64) + 1;
            if !cfg.is_up(i) {
                cfg.restart(i)?;
            }
            cfg.connect(i);
        }
        if cfg.rand_below(1000) < 200 {
            let i = cfg.rand_below(servers as u64) + 1;
            if cfg.is_up(i) {
                cfg.crash(i);
            }
        }
        // Often enough that the cluster rarely settles, not so often that
        // it never catches up: a bit under an election timeout.
        cfg.run_for(ET * 7 / 10)?;
        let up = (1..=servers as NodeId)
            .filter(|&i| cfg.is_up(i) && cfg.is_connected(i))
            .count();
        majority_rounds += u32::from(up > servers / 2);
    }
    cfg.run_for(ET)?;
    cfg.set_unreliable(false);
    for i in 1..=servers as NodeId {
        if !cfg.is_up(i) {
            cfg.restart(i)?;
        }
        cfg.connect(i);
    }
    cfg.stop_clients();
    let mut values = Vec::new();
    for id in clients {
        if let TaskOutput::Committed(v) = cfg.join(id)? {
            values.extend(v);
        }
    }
    cfg.run_for(ET)?;
    let c = cfg.rand_cmd();
    let last_index = cfg.one(c, servers, true)?;
    // For the record: how many commands the churn let through, and in how
    // many rounds a majority was up (the random schedule decides that).
    seeds::figures(
        seed,
        &[
            ("commands", last_index as f64),
            ("majority_rounds", f64::from(majority_rounds)),
        ],
    );
    let mut really = Vec::new();
    for index in 1..=last_index {
        match cfg.wait(index, servers, None)? {
            Some(v) => really.push(v),
            None => return Err(cfg.fatal(format!("no command at index {index}"))),
        }
    }
    for (index, v) in &values {
        if really.get(*index as usize - 1) != Some(v) {
            return Err(cfg.fatal(format!(
                "didn't find value {} at index {index}",
                show_cmd(v)
            )));
        }
    }
    Ok(())
}

/// TestReliableChurn2C.
#[test]
fn reliable_churn() {
    seeds::run("reliable_churn", |seed| {
        churn_on(seed, false, MemFactory::new(), false)
    });
}

/// TestUnreliableChurn2C, with raft-lab's settings for the lab's network
/// (the runs on raft-wal below keep plain pipelining).
#[test]
fn unreliable_churn() {
    seeds::run("unreliable_churn", |seed| {
        churn_on(seed, true, MemFactory::new(), true)
    });
}

/// Every node on a raft-wal in its own folder of a temp directory. A crash
/// drops the WAL and the restart reopens the folder (recovery included).
/// fsync is off: a simulated crash is not a power cut, and thousands of real
/// fsyncs per run would only measure the disk.
struct DirWals {
    dir: tempfile::TempDir,
}

impl DirWals {
    fn new() -> Self {
        DirWals {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

impl StorageFactory for DirWals {
    type Storage = Wal;

    fn open(&mut self, id: NodeId) -> Result<Wal, OpenError> {
        let opts = WalOptions {
            segment_bytes: 64 << 10,
            sync: SyncMode::Never,
            ..WalOptions::default()
        };
        Ok(Wal::open(self.dir.path().join(format!("n{id}")), opts)?)
    }

    fn crash(&mut self, _id: NodeId, wal: Wal) {
        drop(wal);
    }
}

/// Every node on a raft-wal over raft-wal's simulated disk. A crash is a
/// power cut: writes not yet synced are lost or torn, chosen by the seed.
struct PowerCutWals {
    disks: BTreeMap<NodeId, SimFs>,
    seed: u64,
}

impl PowerCutWals {
    fn new(seed: u64) -> Self {
        PowerCutWals {
            disks: BTreeMap::new(),
            seed,
        }
    }
}

impl StorageFactory for PowerCutWals {
    type Storage = Wal<SimFs>;

    fn open(&mut self, id: NodeId) -> Result<Wal<SimFs>, OpenError> {
        let fs = self.disks.entry(id).or_default().clone();
        let opts = WalOptions {
            segment_bytes: 64 << 10,
            ..WalOptions::default()
        };
        Ok(Wal::open_with(fs, "/raft", opts)?)
    }

    fn crash(&mut self, id: NodeId, wal: Wal<SimFs>) {
        drop(wal);
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(id);
        if let Some(disk) = self.disks.get(&id) {
            let after = disk.crash(self.seed);
            self.disks.insert(id, after);
        }
    }
}

/// TestPersist12C with every node on raft-wal in a temp directory.
#[test]
fn persist1_on_wal() {
    seeds::run("persist1_on_wal", |seed| persist1_on(seed, DirWals::new()));
}

/// TestFigure82C with every node on raft-wal in a temp directory.
#[test]
fn figure8_on_wal() {
    seeds::run("figure8_on_wal", |seed| figure8_on(seed, DirWals::new()));
}

/// TestUnreliableChurn2C with every node on raft-wal in a temp directory.
#[test]
fn unreliable_churn_on_wal() {
    seeds::run("unreliable_churn_on_wal", |seed| {
        churn_on(seed, true, DirWals::new(), false)
    });
}

/// persist1, figure8 and unreliable_churn on raft-wal with power cuts.
#[test]
fn persistence_on_wal_with_power_cuts() {
    seeds::run("persistence_on_wal_with_power_cuts", |seed| {
        persist1_on(seed, PowerCutWals::new(seed))?;
        figure8_on(seed, PowerCutWals::new(seed))?;
        churn_on(seed, true, PowerCutWals::new(seed), false)
    });
}
