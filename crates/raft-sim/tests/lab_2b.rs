//! The 6.824 lab's 2B tests (log replication), in virtual time.
//! Servers are numbered 1..=n; `cfg.next(i, k)` is the lab's `(i + k) % servers`.

use raft_sim::{cmd, seeds, show_cmd, Cluster, ELECTION_TIMEOUT_MS as ET};

/// TestBasicAgree2B: three commands commit at indices 1, 2, 3.
#[test]
fn basic_agree() {
    seeds::run("basic_agree", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        for index in 1..=3 {
            if cfg.n_committed(index).0 > 0 {
                return Err(cfg.fatal("some have committed before Start()"));
            }
            let xindex = cfg.one(cmd(index * 100), servers, false)?;
            if xindex != index {
                return Err(cfg.fatal(format!("got index {xindex} but expected {index}")));
            }
        }
        Ok(())
    });
}

/// TestRPCBytes2B: each command is sent to each peer just once.
#[test]
fn rpc_bytes() {
    seeds::run("rpc_bytes", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.one(cmd(99), servers, false)?;
        let bytes0 = cfg.bytes_total();
        let mut sent = 0;
        for index in 2..12 {
            let c = cfg.rand_bytes(5000);
            let xindex = cfg.one(c, servers, false)?;
            if xindex != index {
                return Err(cfg.fatal(format!("got index {xindex} but expected {index}")));
            }
            sent += 5000;
        }
        let got = cfg.bytes_total() - bytes0;
        let expected = servers as u64 * sent;
        if got > expected + 50_000 {
            return Err(cfg.fatal(format!(
                "too many RPC bytes; got {got}, expected {expected}"
            )));
        }
        Ok(())
    });
}

/// TestFollowerFailure2B: progressive failure of followers.
#[test]
fn follower_failure() {
    seeds::run("follower_failure", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.one(cmd(101), servers, false)?;
        // Disconnect one follower; the leader and the other still agree.
        let leader1 = cfg.check_one_leader()?;
        cfg.disconnect(cfg.next(leader1, 1));
        cfg.one(cmd(102), servers - 1, false)?;
        cfg.run_for(ET)?;
        cfg.one(cmd(103), servers - 1, false)?;
        // Disconnect the remaining follower.
        let leader2 = cfg.check_one_leader()?;
        cfg.disconnect(cfg.next(leader2, 1));
        cfg.disconnect(cfg.next(leader2, 2));
        let Some((index, _)) = cfg.start(leader2, cmd(104))? else {
            return Err(cfg.fatal("leader rejected Start()"));
        };
        if index != 4 {
            return Err(cfg.fatal(format!("expected index 4, got {index}")));
        }
        cfg.run_for(2 * ET)?;
        let n = cfg.n_committed(index).0;
        if n > 0 {
            return Err(cfg.fatal(format!("{n} committed but no majority")));
        }
        Ok(())
    });
}

/// TestLeaderFailure2B: progressive failure of leaders.
#[test]
fn leader_failure() {
    seeds::run("leader_failure", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.one(cmd(101), servers, false)?;
        let leader1 = cfg.check_one_leader()?;
        cfg.disconnect(leader1);
        // The remaining followers elect a new leader.
        cfg.one(cmd(102), servers - 1, false)?;
        cfg.run_for(ET)?;
        cfg.one(cmd(103), servers - 1, false)?;
        let leader2 = cfg.check_one_leader()?;
        cfg.disconnect(leader2);
        // Submit a command to each server.
        for i in 1..=servers as u64 {
            cfg.start(i, cmd(104))?;
        }
        cfg.run_for(2 * ET)?;
        let n = cfg.n_committed(4).0;
        if n > 0 {
            return Err(cfg.fatal(format!("{n} committed but no majority")));
        }
        Ok(())
    });
}

/// TestFailAgree2B: a follower participates again after disconnect and reconnect.
#[test]
fn fail_agree() {
    seeds::run("fail_agree", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.one(cmd(101), servers, false)?;
        let leader = cfg.check_one_leader()?;
        cfg.disconnect(cfg.next(leader, 1));
        cfg.one(cmd(102), servers - 1, false)?;
        cfg.one(cmd(103), servers - 1, false)?;
        cfg.run_for(ET)?;
        cfg.one(cmd(104), servers - 1, false)?;
        cfg.one(cmd(105), servers - 1, false)?;
        cfg.connect(cfg.next(leader, 1));
        cfg.one(cmd(106), servers, true)?;
        cfg.run_for(ET)?;
        cfg.one(cmd(107), servers, true)?;
        Ok(())
    });
}

/// TestFailNoAgree2B: no agreement if too many followers disconnect.
#[test]
fn fail_no_agree() {
    seeds::run("fail_no_agree", |seed| {
        let servers = 5;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.one(cmd(10), servers, false)?;
        // Three of five followers disconnect.
        let leader = cfg.check_one_leader()?;
        for k in 1..=3 {
            cfg.disconnect(cfg.next(leader, k));
        }
        let Some((index, _)) = cfg.start(leader, cmd(20))? else {
            return Err(cfg.fatal("leader rejected Start()"));
        };
        if index != 2 {
            return Err(cfg.fatal(format!("expected index 2, got {index}")));
        }
        cfg.run_for(2 * ET)?;
        let n = cfg.n_committed(index).0;
        if n > 0 {
            return Err(cfg.fatal(format!("{n} committed but no majority")));
        }
        // Repair. The disconnected majority may have chosen a leader from
        // among their own ranks, forgetting index 2.
        for k in 1..=3 {
            cfg.connect(cfg.next(leader, k));
        }
        let leader2 = cfg.check_one_leader()?;
        let Some((index2, _)) = cfg.start(leader2, cmd(30))? else {
            return Err(cfg.fatal("leader2 rejected Start()"));
        };
        if !(2..=3).contains(&index2) {
            return Err(cfg.fatal(format!("unexpected index {index2}")));
        }
        cfg.one(cmd(1000), servers, true)?;
        Ok(())
    });
}

/// TestConcurrentStarts2B: several Start()s in one term all commit.
#[test]
fn concurrent_starts() {
    seeds::run("concurrent_starts", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        'tries: for attempt in 0..5 {
            if attempt > 0 {
                // Give the cluster some time to settle.
                cfg.run_for(3_000)?;
            }
            let leader = cfg.check_one_leader()?;
            let Some((_, term)) = cfg.start(leader, cmd(1))? else {
                continue; // The leader moved on really quickly.
            };
            let mut indices = Vec::new();
            for ii in 0..5 {
                if let Some((index, term1)) = cfg.start(leader, cmd(100 + ii))? {
                    if term1 == term {
                        indices.push(index);
                    }
                }
            }
            for j in 1..=servers as u64 {
                if cfg.get_state(j).is_some_and(|(t, _)| t != term) {
                    continue 'tries; // The term changed.
                }
            }
            let mut cmds = Vec::new();
            for index in indices {
                match cfg.wait(index, servers, Some(term))? {
                    // Peers moved on to later terms: not all Start()s can succeed.
                    None => continue 'tries,
                    Some(c) => cmds.push(c),
                }
            }
            for ii in 0..5 {
                let x = cmd(100 + ii);
                if !cmds.contains(&x) {
                    let got: Vec<_> = cmds.iter().map(|c| show_cmd(c)).collect();
                    return Err(cfg.fatal(format!("cmd {} missing in {got:?}", 100 + ii)));
                }
            }
            return Ok(());
        }
        Err(cfg.fatal("term changed too often"))
    });
}

/// TestRejoin2B: a partitioned leader rejoins and its uncommitted entries go.
#[test]
fn rejoin() {
    seeds::run("rejoin", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.one(cmd(101), servers, true)?;
        // Leader network failure.
        let leader1 = cfg.check_one_leader()?;
        cfg.disconnect(leader1);
        // Make the old leader try to agree on some entries.
        for c in [102, 103, 104] {
            cfg.start(leader1, cmd(c))?;
        }
        // The new leader commits, also at index 2.
        cfg.one(cmd(103), 2, true)?;
        // New leader network failure.
        let leader2 = cfg.check_one_leader()?;
        cfg.disconnect(leader2);
        // Old leader connected again.
        cfg.connect(leader1);
        cfg.one(cmd(104), 2, true)?;
        // All together now.
        cfg.connect(leader2);
        cfg.one(cmd(105), servers, true)?;
        Ok(())
    });
}

/// TestBackup2B: a leader backs up quickly over incorrect follower logs.
/// Fast backtracking skips a whole conflicting term per round trip, so the
/// catch-up after each partition takes a handful of AppendEntries, not one
/// per conflicting entry.
#[test]
fn backup() {
    seeds::run("backup", |seed| {
        let servers = 5;
        let mut cfg = Cluster::new(servers, seed)?;
        let c = cfg.rand_cmd();
        cfg.one(c, servers, true)?;
        // Put the leader and one follower in a partition.
        let leader1 = cfg.check_one_leader()?;
        for k in 2..=4 {
            cfg.disconnect(cfg.next(leader1, k));
        }
        // Submit lots of commands that won't commit.
        for _ in 0..50 {
            let c = cfg.rand_cmd();
            cfg.start(leader1, c)?;
        }
        cfg.run_for(ET / 2)?;
        cfg.disconnect(leader1);
        cfg.disconnect(cfg.next(leader1, 1));
        // Allow the other partition to recover.
        for k in 2..=4 {
            cfg.connect(cfg.next(leader1, k));
        }
        // Lots of successful commands to the new group.
        for _ in 0..50 {
            let c = cfg.rand_cmd();
            cfg.one(c, 3, true)?;
        }
        // Now another partitioned leader and one follower.
        let leader2 = cfg.check_one_leader()?;
        let mut other = cfg.next(leader1, 2);
        if leader2 == other {
            other = cfg.next(leader2, 1);
        }
        cfg.disconnect(other);
        // Lots more commands that won't commit.
        for _ in 0..50 {
            let c = cfg.rand_cmd();
            cfg.start(leader2, c)?;
        }
        cfg.run_for(ET / 2)?;
        // Bring the original leader back to life.
        for i in 1..=servers as u64 {
            cfg.disconnect(i);
        }
        cfg.connect(leader1);
        cfg.connect(cfg.next(leader1, 1));
        cfg.connect(other);
        // Lots of successful commands to the new group. The first one needs
        // two followers to back up over 50 entries of a stale term.
        let rpcs0 = cfg.rpc_total();
        let c = cfg.rand_cmd();
        cfg.one(c, 3, true)?;
        let catch_up = cfg.rpc_total() - rpcs0;
        if catch_up > 50 {
            return Err(cfg.fatal(format!(
                "{catch_up} RPCs to elect and back up over 50 stale entries: backtracking is slow"
            )));
        }
        for _ in 1..50 {
            let c = cfg.rand_cmd();
            cfg.one(c, 3, true)?;
        }
        // Now everyone.
        for i in 1..=servers as u64 {
            cfg.connect(i);
        }
        let c = cfg.rand_cmd();
        cfg.one(c, servers, true)?;
        Ok(())
    });
}

/// TestCount2B: RPC counts aren't too high.
#[test]
fn count() {
    seeds::run("count", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.check_one_leader()?;
        let mut total1 = cfg.rpc_total();
        if !(1..=30).contains(&total1) {
            return Err(cfg.fatal(format!(
                "too many or few RPCs ({total1}) to elect initial leader"
            )));
        }
        let mut total2 = 0;
        let mut success = false;
        'tries: for attempt in 0..5 {
            if attempt > 0 {
                cfg.run_for(3_000)?;
            }
            let leader = cfg.check_one_leader()?;
            total1 = cfg.rpc_total();
            let iters = 10;
            let Some((starti, term)) = cfg.start(leader, cmd(1))? else {
                continue; // The leader moved on really quickly.
            };
            let mut cmds = Vec::new();
            for i in 1..iters + 2 {
                let x = cfg.rand_cmd();
                cmds.push(x.clone());
                match cfg.start(leader, x)? {
                    Some((index1, term1)) if term1 == term => {
                        if starti + i != index1 {
                            return Err(cfg.fatal("Start() failed"));
                        }
                    }
                    _ => continue 'tries, // The term changed while starting.
                }
            }
            for i in 1..iters + 1 {
                let got = cfg.wait(starti + i, servers, Some(term))?;
                if got.is_none() {
                    continue 'tries; // The term changed: try again.
                }
                cfg.expect_cmd(starti + i, &got, &cmds[i as usize - 1])?;
            }
            total2 = cfg.rpc_total();
            if (1..=servers as u64).any(|j| cfg.get_state(j).is_some_and(|(t, _)| t != term)) {
                continue; // The term changed: can't expect low RPC counts.
            }
            if total2 - total1 > (iters + 1 + 3) * 3 {
                return Err(cfg.fatal(format!(
                    "too many RPCs ({}) for {iters} entries",
                    total2 - total1
                )));
            }
            success = true;
            break;
        }
        if !success {
            return Err(cfg.fatal("term changed too often"));
        }
        cfg.run_for(ET)?;
        let total3 = cfg.rpc_total();
        if total3 - total2 > 3 * 20 {
            return Err(cfg.fatal(format!(
                "too many RPCs ({}) for 1 second of idleness",
                total3 - total2
            )));
        }
        Ok(())
    });
}
