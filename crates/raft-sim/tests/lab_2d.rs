//! The 6.824 lab's 2D tests (log compaction), in virtual time. The
//! application snapshots every 10 applied entries, as the lab's does; the
//! harness checks that applied commands and installed snapshots arrive in
//! order with no gap, and that a restarted server never re-applies entries
//! below its snapshot.

use raft_core::NodeId;
use raft_sim::{seeds, Cluster, SimError};

/// The lab's `SnapShotInterval`.
const SNAPSHOT_INTERVAL: u64 = 10;
/// The lab's `MAXLOGSIZE`: persisted Raft state (bytes) with snapshots on.
const MAX_LOG_SIZE: u64 = 2000;

/// The lab's `snapcommon`: 30 rounds of cutting off (or crashing) a server,
/// sending enough commands for a snapshot, and bringing it back so that it
/// must catch up, possibly through InstallSnapshot.
fn snapcommon(seed: u64, disconnect: bool, reliable: bool, crash: bool) -> Result<(), SimError> {
    let servers = 3;
    let mut cfg = Cluster::builder(servers, seed)
        .unreliable(!reliable)
        .snapshot_every(SNAPSHOT_INTERVAL)
        .build()?;
    let c = cfg.rand_cmd();
    cfg.one(c, servers, true)?;
    let mut leader1 = cfg.check_one_leader()?;
    for i in 0..30 {
        let (mut victim, mut sender) = (cfg.next(leader1, 1), leader1);
        if i % 3 == 1 {
            sender = cfg.next(leader1, 1);
            victim = leader1;
        }
        if disconnect {
            cfg.disconnect(victim);
            let c = cfg.rand_cmd();
            cfg.one(c, servers - 1, true)?;
        }
        if crash {
            cfg.crash(victim);
            let c = cfg.rand_cmd();
            cfg.one(c, servers - 1, true)?;
        }
        // Perhaps send enough to get a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + cfg.rand_below(SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let c = cfg.rand_cmd();
            cfg.start(sender, c)?;
        }
        // Let the appliers catch up with the Start()s. Without faults, make
        // sure all followers caught up, so no InstallSnapshot is needed.
        let c = cfg.rand_cmd();
        if !disconnect && !crash {
            cfg.one(c, servers, true)?;
        } else {
            cfg.one(c, servers - 1, true)?;
        }
        let size = cfg.log_size();
        if size >= MAX_LOG_SIZE {
            return Err(cfg.fatal(format!("Log size too large: {size} bytes")));
        }
        if disconnect {
            // Reconnect a follower, who may be behind and need a snapshot.
            cfg.connect(victim);
            let c = cfg.rand_cmd();
            cfg.one(c, servers, true)?;
            leader1 = cfg.check_one_leader()?;
        }
        if crash {
            cfg.restart(victim)?;
            cfg.connect(victim);
            let c = cfg.rand_cmd();
            cfg.one(c, servers, true)?;
            leader1 = cfg.check_one_leader()?;
        }
    }
    Ok(())
}

/// TestSnapshotBasic2D.
#[test]
fn snapshot_basic() {
    seeds::run("snapshot_basic", |seed| {
        snapcommon(seed, false, true, false)
    });
}

/// TestSnapshotInstall2D: install snapshots (disconnect).
#[test]
fn snapshot_install() {
    seeds::run("snapshot_install", |seed| {
        snapcommon(seed, true, true, false)
    });
}

/// TestSnapshotInstallUnreliable2D: install snapshots (disconnect + unreliable).
#[test]
fn snapshot_install_unreliable() {
    seeds::run("snapshot_install_unreliable", |seed| {
        snapcommon(seed, true, false, false)
    });
}

/// TestSnapshotInstallCrash2D: install snapshots (crash).
#[test]
fn snapshot_install_crash() {
    seeds::run("snapshot_install_crash", |seed| {
        snapcommon(seed, false, true, true)
    });
}

/// TestSnapshotInstallUnCrash2D: install snapshots (unreliable + crash).
#[test]
fn snapshot_install_uncrash() {
    seeds::run("snapshot_install_uncrash", |seed| {
        snapcommon(seed, false, false, true)
    });
}

fn crash_and_revive_all(cfg: &mut Cluster) -> Result<(), SimError> {
    let servers = cfg.n() as NodeId;
    for i in 1..=servers {
        cfg.crash(i);
    }
    for i in 1..=servers {
        cfg.restart(i)?;
        cfg.connect(i);
    }
    Ok(())
}

/// TestSnapshotAllCrash2D: servers persist their snapshots and restart from
/// the snapshot plus the tail of the log.
#[test]
fn snapshot_all_crash() {
    seeds::run("snapshot_all_crash", |seed| {
        let servers = 3;
        let mut cfg = Cluster::builder(servers, seed)
            .snapshot_every(SNAPSHOT_INTERVAL)
            .build()?;
        let c = cfg.rand_cmd();
        cfg.one(c, servers, true)?;
        for _ in 0..5 {
            // Perhaps enough to get a snapshot.
            let nn = SNAPSHOT_INTERVAL / 2 + cfg.rand_below(SNAPSHOT_INTERVAL);
            for _ in 0..nn {
                let c = cfg.rand_cmd();
                cfg.one(c, servers, true)?;
            }
            let c = cfg.rand_cmd();
            let index1 = cfg.one(c, servers, true)?;
            crash_and_revive_all(&mut cfg)?;
            let c = cfg.rand_cmd();
            let index2 = cfg.one(c, servers, true)?;
            if index2 < index1 + 1 {
                return Err(cfg.fatal(format!("index decreased from {index1} to {index2}")));
            }
        }
        Ok(())
    });
}

/// TestSnapshotInit2D: after a restart, a server's in-memory copy of its
/// snapshot is right, so later writes to storage do not lose it.
#[test]
fn snapshot_init() {
    seeds::run("snapshot_init", |seed| {
        let servers = 3;
        let mut cfg = Cluster::builder(servers, seed)
            .snapshot_every(SNAPSHOT_INTERVAL)
            .build()?;
        let c = cfg.rand_cmd();
        cfg.one(c, servers, true)?;
        // Enough ops to make a snapshot.
        for _ in 0..=SNAPSHOT_INTERVAL {
            let c = cfg.rand_cmd();
            cfg.one(c, servers, true)?;
        }
        crash_and_revive_all(&mut cfg)?;
        // A single op, to get something written back to storage.
        let c = cfg.rand_cmd();
        cfg.one(c, servers, true)?;
        crash_and_revive_all(&mut cfg)?;
        // Another op, to trigger a potential bug.
        let c = cfg.rand_cmd();
        cfg.one(c, servers, true)?;
        Ok(())
    });
}

/// Not a lab test: with a snapshot every 100 applied entries, the retained
/// log (`last_index - first_index + 1`) stays bounded over 10,000 commands.
#[test]
fn snapshot_log_bounded() {
    seeds::run("snapshot_log_bounded", |seed| {
        const EVERY: u64 = 100;
        const BATCH: u64 = 50;
        let servers = 3;
        let mut cfg = Cluster::builder(servers, seed)
            .snapshot_every(EVERY)
            .build()?;
        let mut leader = cfg.check_one_leader()?;
        let mut sent = 0;
        while sent < 10_000 {
            for _ in 0..BATCH {
                let c = cfg.rand_cmd();
                if cfg.start(leader, c)?.is_some() {
                    sent += 1;
                }
            }
            cfg.run_for(100)?;
            if !cfg.get_state(leader).is_some_and(|(_, l)| l) {
                leader = cfg.check_one_leader()?;
            }
            let retained = cfg.max_retained();
            if retained > 2 * EVERY + BATCH {
                return Err(cfg.fatal(format!(
                    "{retained} entries retained after {sent} commands with a snapshot every {EVERY}"
                )));
            }
        }
        let c = cfg.rand_cmd();
        let last = cfg.one(c, servers, true)?;
        if last < 10_000 {
            return Err(cfg.fatal(format!("only {last} entries committed")));
        }
        for id in 1..=servers as NodeId {
            let first = cfg.sim().node(id).map_or(0, |n| n.status().first_index);
            if first + 2 * EVERY + BATCH < last {
                return Err(cfg.fatal(format!("node {id} still holds the log from {first}")));
            }
        }
        Ok(())
    });
}
