//! Leadership transfer (thesis §3.10): "the prior leader sends a TimeoutNow
//! request to the target server. This request has the same effect as the
//! target server's election timer firing". The target campaigns at once,
//! without a PreVote round, and voters grant it their vote although they
//! hear from the current leader; a lagging target is caught up first; a
//! transfer that cannot finish is abandoned after an election timeout and
//! proposals resume. Clients write throughout.

use raft_core::{NodeId, Term};
use raft_sim::clock::MS;
use raft_sim::{cmd, seeds, Cluster, Hold, Release, Select, SimError, TaskId};

fn term_of(c: &Cluster, id: NodeId) -> Term {
    c.get_state(id).map_or(0, |(t, _)| t)
}

fn clients(c: &mut Cluster) -> Vec<TaskId> {
    (0..3).map(|me| c.spawn_client(me)).collect()
}

fn stop(c: &mut Cluster, ids: Vec<TaskId>) -> Result<(), SimError> {
    c.stop_clients();
    for id in ids {
        c.join(id)?;
    }
    Ok(())
}

/// Leadership moves to a caught-up follower in one election of the next
/// term, much faster than an election timeout, and clients go on.
#[test]
fn leader_transfer() {
    seeds::run("leader_transfer", |seed| {
        let mut c = Cluster::new(5, seed)?;
        let l = c.check_one_leader()?;
        c.one(cmd(1), 5, true)?;
        let tasks = clients(&mut c);
        c.run_for(500)?;
        let k = 1 + c.rand_below(4);
        let to = c.next(l, k);
        let (term, before) = (term_of(&c, l), c.stats());
        let ms = c.transfer_leader(to)?;
        let s = c.stats();
        seeds::figures(seed, &[("ms", ms as f64)]);
        // Measured 10 ms on every one of 1000 seeds: the target leads at
        // `transfer_leader`'s first 10 ms look. An election timeout alone
        // is 300–600 ms.
        if ms > 50 || s.elections - before.elections != 1 || term_of(&c, to) != term + 1 {
            return Err(c.fatal(format!(
                "{ms} ms, {} elections, term {} -> {}",
                s.elections - before.elections,
                term,
                term_of(&c, to)
            )));
        }
        let committed = c.sim().checker().committed_index();
        c.run_for(1_000)?;
        if c.sim().checker().committed_index() <= committed {
            return Err(c.fatal("nothing committed under the new leader"));
        }
        stop(&mut c, tasks)?;
        c.one(cmd(2), 5, true)?;
        Ok(())
    });
}

/// The target was cut off while the others committed; it returns and
/// leadership is handed to it at once. The leader sends it what it lacks
/// before TimeoutNow, so it wins (a lagging log could not, §5.4.1), still
/// well within an election timeout.
#[test]
fn leader_transfer_to_lagging_node() {
    seeds::run("leader_transfer_to_lagging_node", |seed| {
        let mut c = Cluster::new(5, seed)?;
        let l = c.check_one_leader()?;
        let k = 1 + c.rand_below(4);
        let to = c.next(l, k);
        c.disconnect(to);
        for i in 0..50 {
            c.one(cmd(i), 4, true)?;
        }
        let tasks = clients(&mut c);
        c.run_for(200)?;
        let behind = c.sim().node(l).map_or(0, |n| n.last_index())
            - c.sim().node(to).map_or(0, |n| n.last_index());
        c.connect(to);
        let term = term_of(&c, l);
        let ms = c.transfer_leader(to)?;
        seeds::figures(seed, &[("ms", ms as f64), ("behind", behind as f64)]);
        // Measured 90–110 ms over 1000 seeds, 113 entries behind: the
        // leader's probe to the node was lost while it was away, so the
        // next heartbeat (every 100 ms) finds it; then one batch of entries,
        // TimeoutNow and one election. An election timeout is 300–600 ms.
        if behind < 50 || ms > 150 || term_of(&c, to) != term + 1 {
            return Err(c.fatal(format!(
                "{behind} entries behind: {ms} ms to lead, term {term} -> {}",
                term_of(&c, to)
            )));
        }
        stop(&mut c, tasks)?;
        c.one(cmd(99), 5, true)?;
        Ok(())
    });
}

/// The target crashes before it is caught up. Proposals wait meanwhile
/// (`Error::Transferring`); after an election timeout (30 ticks, 300 ms)
/// the leader gives up, keeps leading in the same term, and takes
/// proposals again. Nobody else campaigned.
#[test]
fn leader_transfer_target_crashes() {
    seeds::run("leader_transfer_target_crashes", |seed| {
        let mut c = Cluster::new(5, seed)?;
        let l = c.check_one_leader()?;
        let k = 1 + c.rand_below(4);
        let to = c.next(l, k);
        c.disconnect(to);
        for i in 0..20 {
            c.one(cmd(i), 4, true)?;
        }
        c.connect(to);
        let (term, before) = (term_of(&c, l), c.stats());
        c.start_transfer(to)?;
        // Before the entries it lacks arrive (crash cuts them off in flight).
        c.crash(to);
        let t0 = c.now();
        let mut x = 100;
        while c.start(l, cmd(x))?.is_none() {
            if c.now() - t0 > 2_000_000 {
                return Err(c.fatal("proposals did not resume within 2 s"));
            }
            c.run_for(10)?;
            x += 1;
        }
        let ms = (c.now() - t0) / 1_000;
        let s = c.stats();
        seeds::figures(seed, &[("ms", ms as f64)]);
        // The leader gives up after 30 of its ticks (300 ms) and the next
        // 10 ms look sees it: measured 300 ms on every one of 1000 seeds.
        if x == 100 || !(280..=320).contains(&ms) {
            return Err(c.fatal(format!(
                "proposals resumed after {ms} ms ({} refused)",
                x - 100
            )));
        }
        if c.leader() != Some(l) || term_of(&c, l) != term || s.elections != before.elections {
            return Err(c.fatal("the abandoned transfer changed the leader or the term"));
        }
        c.restart(to)?;
        c.connect(to);
        c.one(cmd(999), 5, true)?;
        Ok(())
    });
}

/// A TimeoutNow that arrives a term late is a request from an older term,
/// refused like any other (Figure 2): the network holds the leader's
/// TimeoutNow to `to` for 1.5 s; meanwhile the transfer is abandoned and
/// leadership goes to a third server in the next term. `to` must not
/// campaign on the late TimeoutNow: the new leader keeps leading in its
/// term and nobody is elected.
#[test]
fn leader_transfer_stale_timeout_now_is_ignored() {
    seeds::run("leader_transfer_stale_timeout_now_is_ignored", |seed| {
        let mut c = Cluster::new(5, seed)?;
        let l = c.check_one_leader()?;
        c.one(cmd(1), 5, true)?;
        let k = 1 + c.rand_below(4);
        let to = c.next(l, k);
        // A third server, neither the leader nor the target.
        let other = (1..=5)
            .find(|&id| id != l && id != to)
            .expect("five servers");
        let hold = Hold::new(Select::Kind("TimeoutNow"), Release::AfterMs(1_500))
            .from(l)
            .to(to)
            .limit(1);
        let hold = c.sim_mut().hold(hold);
        let (t0, sent) = (term_of(&c, l), c.now());
        c.start_transfer(to)?;
        c.wait_for(100, "the TimeoutNow to be held", |c| {
            c.sim().hold_caught(hold) == 1
        })?;
        // Abandoned after an election timeout (300 ms); then a transfer
        // that goes through moves leadership to the third server.
        c.run_for(400)?;
        c.transfer_leader(other)?;
        c.one(cmd(2), 5, true)?;
        let (term, before) = (term_of(&c, other), c.stats());
        let arrives = sent + 1_500 * MS;
        if term <= t0 || c.now() >= arrives {
            return Err(c.fatal(format!(
                "the TimeoutNow of term {t0} arrived before a later term ({term}) began"
            )));
        }
        c.run_for((arrives - c.now()) / MS + 1_000)?;
        c.one(cmd(3), 5, true)?;
        let s = c.stats();
        let terms: Vec<Term> = (1..=5).map(|id| term_of(&c, id)).collect();
        if c.leader() != Some(other)
            || s.elections != before.elections
            || terms.iter().any(|&t| t != term)
        {
            return Err(c.fatal(format!(
                "a TimeoutNow of term {t0} made node {to} campaign in term {term}: leader {:?} \
                 (was {other}), {} elections, terms {terms:?}",
                c.leader(),
                s.elections - before.elections
            )));
        }
        Ok(())
    });
}
