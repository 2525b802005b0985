//! The 6.824 lab's 2A tests (leader election), in virtual time.
//! Servers are numbered 1..=n; `cfg.next(i, k)` is the lab's `(i + k) % servers`.

use raft_sim::{seeds, Cluster, ELECTION_TIMEOUT_MS};

/// TestInitialElection2A: a leader is elected, all agree on its term, and
/// with no failures the leader and term stay.
#[test]
fn initial_election() {
    seeds::run("initial_election", |seed| {
        let mut cfg = Cluster::new(3, seed)?;
        cfg.check_one_leader()?;
        // Sleep a bit to avoid racing with followers learning of the election.
        cfg.run_for(50)?;
        let term1 = cfg.check_terms()?;
        if term1 < 1 {
            return Err(cfg.fatal(format!("term is {term1}, but should be at least 1")));
        }
        cfg.run_for(2 * ELECTION_TIMEOUT_MS)?;
        let term2 = cfg.check_terms()?;
        // The lab only warns here; with PreVote and CheckQuorum on a reliable
        // network the term must not move, so we insist.
        if term1 != term2 {
            return Err(cfg.fatal(format!(
                "term changed from {term1} to {term2} with no failures"
            )));
        }
        cfg.check_one_leader()?;
        Ok(())
    });
}

/// TestReElection2A: a new leader after the old one is cut off; the old one
/// rejoins without disturbing it; no leader without a quorum.
#[test]
fn re_election() {
    seeds::run("re_election", |seed| {
        let servers = 3;
        let mut cfg = Cluster::new(servers, seed)?;
        let leader1 = cfg.check_one_leader()?;

        // If the leader disconnects, a new one should be elected.
        cfg.disconnect(leader1);
        cfg.check_one_leader()?;

        // The old leader rejoins: it should not disturb the new leader.
        cfg.connect(leader1);
        let leader2 = cfg.check_one_leader()?;

        // No quorum: no leader should be elected.
        cfg.disconnect(leader2);
        cfg.disconnect(cfg.next(leader2, 1));
        cfg.run_for(ELECTION_TIMEOUT_MS)?;
        cfg.check_no_leader()?;

        // A quorum arises: it should elect a leader.
        cfg.connect(cfg.next(leader2, 1));
        cfg.run_for(2 * ELECTION_TIMEOUT_MS)?;
        cfg.check_one_leader()?;

        // Re-join of the last node should not prevent a leader from existing.
        cfg.connect(leader2);
        cfg.check_one_leader()?;
        Ok(())
    });
}

/// TestManyElections2A: seven servers, three random ones cut off at a time;
/// either the leader survives or the other four elect one.
#[test]
fn many_elections() {
    seeds::run("many_elections", |seed| {
        let servers = 7;
        let mut cfg = Cluster::new(servers, seed)?;
        cfg.check_one_leader()?;
        for _ in 1..10 {
            let i1 = cfg.rand_below(servers as u64) + 1;
            let i2 = cfg.rand_below(servers as u64) + 1;
            let i3 = cfg.rand_below(servers as u64) + 1;
            cfg.disconnect(i1);
            cfg.disconnect(i2);
            cfg.disconnect(i3);
            cfg.check_one_leader()?;
            cfg.connect(i1);
            cfg.connect(i2);
            cfg.connect(i3);
        }
        cfg.check_one_leader()?;
        Ok(())
    });
}
